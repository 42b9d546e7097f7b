"""A stand-in for smbus2.SMBus that routes every transaction to register-level emulated chips, with faults."""

from __future__ import annotations

import ctypes
import errno
import os
import threading
import time
from typing import Any

I2C_M_RD = 0x0001  # linux/i2c.h: the message is a read


def nack() -> OSError:
    """What Linux reports when no chip ACKs its address: errno 121 (EREMOTEIO)."""
    return OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))


class EmulatedDevice:
    """Base of every emulated I2C chip: address, fault injection, and the raw-transfer interface.

    Faults: unplug() / replug() (no ACK → errno 121; replug is a power-on reset), fail_next(errno, n)
    (the next n transfers fail with that errno, e.g. EIO), hang(seconds) (every transfer blocks).
    """

    def __init__(self, address: int) -> None:
        self.address = address
        self.unplugged = False
        self.hang_s = 0.0
        self._fail_errno = 0
        self._fail_count = 0
        self.transfers = 0

    # ---------------------------------------------------------------- faults

    def unplug(self) -> None:
        self.unplugged = True

    def replug(self) -> None:
        self.unplugged = False
        self.power_on_reset()

    def fail_next(self, err: int = errno.EIO, count: int = 1) -> None:
        self._fail_errno, self._fail_count = err, count

    def hang(self, seconds: float) -> None:
        self.hang_s = seconds

    def begin_transfer(self) -> None:
        """Called by the bus before every transfer to this address."""
        if self.hang_s:
            time.sleep(self.hang_s)
        if self.unplugged:
            raise nack()
        if self._fail_count > 0:
            self._fail_count -= 1
            raise OSError(self._fail_errno, os.strerror(self._fail_errno))
        self.transfers += 1

    # ---------------------------------------------------------------- chip behaviour (subclasses)

    def power_on_reset(self) -> None:
        """Registers back to their reset values."""

    def write_bytes(self, data: bytes) -> None:
        """A bare write: for register chips the first byte is the register pointer."""
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def read_bytes(self, length: int) -> bytes:
        """A bare read of `length` bytes."""
        raise OSError(errno.EIO, os.strerror(errno.EIO))


class RegisterDevice(EmulatedDevice):
    """A chip with a register pointer that auto-increments on burst reads (BME280 style)."""

    def __init__(self, address: int) -> None:
        super().__init__(address)
        self.pointer = 0

    def read_register(self, register: int) -> int:
        raise NotImplementedError

    def write_register(self, register: int, value: int) -> None:
        raise NotImplementedError

    def start_transaction(self) -> None:
        """Hook run once per transfer (e.g. to latch a finished conversion into the data registers)."""

    def write_bytes(self, data: bytes) -> None:
        self.start_transaction()
        if not data:
            return
        self.pointer = data[0]
        for i, value in enumerate(data[1:]):
            self.write_register((self.pointer + i) & 0xFF, value)

    def read_bytes(self, length: int) -> bytes:
        self.start_transaction()
        out = bytes(self.read_register((self.pointer + i) & 0xFF) for i in range(length))
        self.pointer = (self.pointer + length) & 0xFF
        return out


class FakeBus:
    """smbus2.SMBus's methods over emulated chips. One lock per bus, as the kernel's adapter lock."""

    def __init__(self, bus_number: int = 1) -> None:
        self.bus_number = bus_number
        self.devices: dict[int, EmulatedDevice] = {}
        self.closed = False
        self._lock = threading.Lock()

    def attach(self, device: EmulatedDevice) -> EmulatedDevice:
        self.devices[device.address] = device
        return device

    def detach(self, address: int) -> None:
        self.devices.pop(address, None)

    def _device(self, address: int) -> EmulatedDevice:
        if self.closed:
            raise OSError(errno.EBADF, "the bus is closed")
        device = self.devices.get(address)
        if device is None:
            raise nack()
        device.begin_transfer()
        return device

    def _write(self, address: int, data: bytes) -> None:
        with self._lock:
            self._device(address).write_bytes(data)

    def _write_read(self, address: int, data: bytes, length: int) -> bytes:
        # An SMBus "read data" is a register-pointer write plus a repeated-start read: one transaction.
        with self._lock:
            device = self._device(address)
            device.write_bytes(data)
            return device.read_bytes(length)

    # ---------------------------------------------------------------- smbus2.SMBus API

    def write_quick(self, i2c_addr: int, force: Any = None) -> None:
        with self._lock:
            self._device(i2c_addr)

    def read_byte(self, i2c_addr: int, force: Any = None) -> int:
        with self._lock:
            return self._device(i2c_addr).read_bytes(1)[0]

    def write_byte(self, i2c_addr: int, value: int, force: Any = None) -> None:
        self._write(i2c_addr, bytes([value]))

    def read_byte_data(self, i2c_addr: int, register: int, force: Any = None) -> int:
        return self._write_read(i2c_addr, bytes([register]), 1)[0]

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force: Any = None) -> None:
        self._write(i2c_addr, bytes([register, value]))

    def read_word_data(self, i2c_addr: int, register: int, force: Any = None) -> int:
        data = self._write_read(i2c_addr, bytes([register]), 2)
        return data[0] | (data[1] << 8)  # SMBus order: the first byte on the wire is the low byte

    def write_word_data(self, i2c_addr: int, register: int, value: int, force: Any = None) -> None:
        self._write(i2c_addr, bytes([register, value & 0xFF, value >> 8]))

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int, force: Any = None) -> list[int]:
        if not 0 < length <= 32:
            raise ValueError("Desired block length over 32 bytes")  # smbus2's own limit (I2C_SMBUS_BLOCK_MAX)
        return list(self._write_read(i2c_addr, bytes([register]), length))

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int], force: Any = None) -> None:
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        self._write(i2c_addr, bytes([register, *data]))

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        """Messages in one combined transaction (repeated starts), as the I2C_RDWR ioctl does."""
        with self._lock:
            for msg in i2c_msgs:
                device = self._device(msg.addr)
                if msg.flags & I2C_M_RD:
                    data = device.read_bytes(msg.len)
                    ctypes.memmove(msg.buf, data, msg.len)
                else:
                    device.write_bytes(bytes(msg))

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
