"""The one place smbus2 is imported (lazily), and an address-bound port that turns OSError into SensorError."""

from __future__ import annotations

import errno
import os
import re
from typing import Any

from sensors.errors import BusError, NoBusError, NoDeviceError

# errnos with which Linux reports "no ACK from that address" (smbus2 doc/troubleshooting.md);
# EIO is also what a data-byte NAK or a floating bus gives, so it is read as "nothing answers" too.
NO_ANSWER_ERRNOS = frozenset({errno.EREMOTEIO, errno.EIO, errno.ENXIO, errno.ENODEV})
DEV_DIR = "/dev"
ENABLE_I2C = "enable I2C with raspi-config or dtparam=i2c_arm=on in /boot/firmware/config.txt"


def _smbus2() -> Any:
    try:
        import smbus2  # lazy on purpose: only real hardware access needs it
    except ImportError as err:
        raise NoBusError(
            "the smbus2 package is not installed: pip install smbus2 (or apt install python3-smbus2)"
        ) from err
    return smbus2


def i2c_buses(dev_dir: str = DEV_DIR) -> list[int]:
    """The I2C bus numbers that exist here: /dev/i2c-N, in order."""
    try:
        names = os.listdir(dev_dir)
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in map(re.compile(r"i2c-(\d+)").fullmatch, names) if m)


def missing_bus_message(bus_number: int, dev_dir: str = DEV_DIR) -> str:
    """Why /dev/i2c-N cannot be opened: I2C is off, or the number is wrong (then the ones that exist are named)."""
    node = os.path.join(dev_dir, f"i2c-{bus_number}")
    buses = i2c_buses(dev_dir)
    if not buses:
        return f"no I2C bus i2c-{bus_number} ({node} is missing): {ENABLE_I2C}"
    there = ", ".join(f"i2c-{b}" for b in buses)
    # I2C is on (some bus exists): raspi-config would not help; the bus number is what is wrong.
    return f"no I2C bus i2c-{bus_number} ({node} is missing); the I2C buses here are {there}: use one of those numbers"


def open_smbus(bus_number: int, dev_dir: str = DEV_DIR) -> Any:
    """smbus2.SMBus(bus_number), with the usual failures said plainly."""
    smbus2 = _smbus2()
    node = os.path.join(dev_dir, f"i2c-{bus_number}")
    try:
        return smbus2.SMBus(node)
    except FileNotFoundError as err:
        raise NoBusError(missing_bus_message(bus_number, dev_dir)) from err
    except PermissionError as err:
        raise NoBusError(f"no permission to open {node}: add the service user to the i2c group") from err
    except OSError as err:
        raise NoBusError(f"cannot open {node}: {err.strerror or err}") from err


def msg_write(address: int, data: list[int]) -> Any:
    """A bare I2C write (no register byte): smbus2.i2c_msg.write."""
    return _smbus2().i2c_msg.write(address, data)


def msg_read(address: int, length: int) -> Any:
    """A bare I2C read of `length` bytes: smbus2.i2c_msg.read; iterate the message for the bytes."""
    return _smbus2().i2c_msg.read(address, length)


class I2CPort:
    """One chip on one bus. Every method raises SensorError subclasses, never a bare OSError."""

    def __init__(self, bus: Any, bus_number: int, address: int, chip: str, owns_bus: bool = False) -> None:
        self.bus = bus
        self.owns_bus = owns_bus  # opened by open_sensor: close() closes it
        self.bus_number = bus_number
        self.address = address
        self.chip = chip
        self.where = f"{chip} at i2c-{bus_number} 0x{address:02x}"

    def _fail(self, err: OSError) -> Exception:
        if err.errno in NO_ANSWER_ERRNOS:
            return NoDeviceError(
                f"nothing answers at i2c-{self.bus_number} 0x{self.address:02x} ({self.chip}, errno {err.errno}): "
                # The bus opened, so I2C is on: the chip is unplugged, miswired or at another address.
                "check the wiring and the address (python -m sensors scan lists what answers)"
            )
        return BusError(f"{self.where}: bus error: {err.strerror or err}")

    def read_u8(self, register: int) -> int:
        try:
            return int(self.bus.read_byte_data(self.address, register))
        except OSError as err:
            raise self._fail(err) from err

    def write_u8(self, register: int, value: int) -> None:
        try:
            self.bus.write_byte_data(self.address, register, value)
        except OSError as err:
            raise self._fail(err) from err

    def read_block(self, register: int, length: int) -> bytes:
        """A burst read starting at `register` (bytes in wire order)."""
        try:
            data = self.bus.read_i2c_block_data(self.address, register, length)
        except OSError as err:
            raise self._fail(err) from err
        if len(data) != length:
            raise BusError(f"{self.where}: asked for {length} bytes, got {len(data)}")
        return bytes(data)

    def write_raw(self, data: list[int]) -> None:
        """A bare write (command-based chips such as the SHT3x)."""
        try:
            self.bus.i2c_rdwr(msg_write(self.address, data))
        except OSError as err:
            raise self._fail(err) from err

    def read_raw(self, length: int) -> bytes:
        """A bare read of `length` bytes, as its own transfer (no repeated start after a write)."""
        msg = msg_read(self.address, length)
        try:
            self.bus.i2c_rdwr(msg)
        except OSError as err:
            raise self._fail(err) from err
        return bytes(list(msg))

    def close(self) -> None:
        """Closes the bus if it was opened for this chip."""
        if self.owns_bus:
            try:
                self.bus.close()
            except OSError:  # closing a vanished device node must not mask the original problem
                pass
