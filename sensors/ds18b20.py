"""Maxim DS18B20 through the kernel's w1_therm sysfs files: parsing (pure) and the driver.

`w1_slave` line 1 ends in YES/NO (the kernel's CRC verdict); line 2's `t=` is computed even from bytes that
failed the CRC, so it is never trusted alone. Kernel Documentation/w1/slaves/w1_therm.rst; DS18B20 datasheet
Table 1.
"""

from __future__ import annotations

import errno
import os
import re

from sensors.descriptor import SensorType, sysfs_key
from sensors.errors import BusError, CrcError, NoDeviceError, NotReadyError, PowerOnValueError, WrongChipError
from sensors.reading import Reading, StuckDetector, check_range
from sensors.sysfs import W1_ROOT, Reader, SysfsDevice, read_text

FAMILIES = {"28": "DS18B20", "22": "DS1822", "3b": "DS1825", "42": "DS28EA00"}  # same 12-bit format
RAW_POWER_ON = 0x0550  # +85 °C: the register's reset value, i.e. no conversion happened
RAW_LOW_POWER = 0x07FF  # 127.94 °C: what a starved parasite-powered sensor reports (kernel doc)
TEMPERATURE_RANGE_C = (-55.0, 125.0)

_LINE1 = re.compile(r"^((?:[0-9a-f]{2} ){9}): crc=([0-9a-f]{2}) (YES|NO)$")
_LINE2 = re.compile(r"^((?:[0-9a-f]{2} ){9})t=(-?\d+)$")

_WIRING = "check the wiring, the 4.7 kΩ pull-up and dtoverlay=w1-gpio in /boot/firmware/config.txt"


def dallas_crc8(data: bytes) -> int:
    """Dallas/Maxim 1-Wire CRC-8 (x^8+x^5+x^4+1, LSB first: reflected 0x8C, init 0)."""
    crc = 0
    for byte in data:
        bits = byte
        for _ in range(8):
            mix = (crc ^ bits) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            bits >>= 1
    return crc


def kernel_millidegrees(raw: int) -> int:
    """What the kernel prints after t=: (s16)raw * 1000 / 16 in C, truncated toward zero."""
    value = raw * 1000
    return value // 16 if value >= 0 else -((-value) // 16)


def _check_raw(raw: int, where: str) -> float:
    if raw == RAW_POWER_ON:
        raise PowerOnValueError(
            f"{where}: reads 85 °C, the power-on value: no conversion happened (check the supply; "
            "in parasite mode the pull-up may be too weak)"
        )
    if raw == RAW_LOW_POWER:
        raise PowerOnValueError(f"{where}: reads 127.94 °C: the sensor lacks power (parasite mode?); {_WIRING}")
    return check_range(where, "temperature", raw / 16, TEMPERATURE_RANGE_C, "°C")


def parse_w1_slave(text: str, where: str) -> tuple[float, int]:
    """The two-line w1_slave text → (°C, raw). Raises SensorError for every way it can be bad."""
    if not text.strip():
        raise NotReadyError(f"{where}: empty read: the kernel could not complete a conversion; {_WIRING}")
    lines = text.strip().splitlines()
    m1 = _LINE1.match(lines[0].strip()) if lines else None
    m2 = _LINE2.match(lines[1].strip()) if len(lines) > 1 else None
    if m1 is None or m2 is None:
        raise BusError(f"{where}: w1_slave is not in the expected two-line format: {text[:80]!r}")
    scratchpad = bytes(int(b, 16) for b in m1.group(1).split())
    if scratchpad == b"\xff" * 9:
        raise NoDeviceError(f"{where}: reads all ff: the sensor does not answer; {_WIRING}")
    if m1.group(3) != "YES" or dallas_crc8(scratchpad[:8]) != scratchpad[8]:
        raise CrcError(f"{where}: CRC mismatch (crc={m1.group(2)} NO): noise on a long cable or a weak pull-up")
    if scratchpad == bytes(9):
        # Eight zero bytes have CRC 0x00, so the kernel says YES: a data line shorted to ground.
        raise NoDeviceError(f"{where}: reads all zeros: the data line may be shorted to ground; {_WIRING}")
    raw = int.from_bytes(scratchpad[0:2], "little", signed=True)
    return _check_raw(raw, where), raw


def parse_temperature_file(text: str, where: str) -> tuple[float, int]:
    """The newer `temperature` attribute (millidegrees, kernel ≥ 5.8) → (°C, millidegrees)."""
    text = text.strip()
    if not text:
        raise NotReadyError(f"{where}: no value yet (a bulk conversion is pending); try again later")
    try:
        milli = int(text)
    except ValueError as err:
        raise BusError(f"{where}: the temperature file holds {text[:40]!r}, not a number") from err
    for raw in (RAW_POWER_ON, RAW_LOW_POWER):
        if milli == kernel_millidegrees(raw):
            _check_raw(raw, where)  # raises with the matching explanation
    return check_range(where, "temperature", milli / 1000, TEMPERATURE_RANGE_C, "°C"), milli


class Ds18b20:
    """Reads `w1_slave` (with its CRC verdict), or the newer `temperature` file where w1_slave is absent."""

    def __init__(self, device: str, root: str = W1_ROOT, reader: Reader = read_text, stuck_reads: int = 0) -> None:
        self.device = device
        self.root = root
        self.reader = reader
        self.where = f"DS18B20 1-Wire {device}"
        self.source = f"w1:ds18b20/{device}"
        family = device.split("-", 1)[0].lower()
        if family not in FAMILIES or "-" not in device:
            raise WrongChipError(
                f"{self.where}: family code {family!r} is not a DS18B20-type sensor (28-…); check the device id"
            )
        self.path = os.path.join(root, device)
        if not os.path.isdir(self.path):
            raise NoDeviceError(f"no 1-Wire device {device} under {root}: {_WIRING}")
        self._stuck = StuckDetector(self.where, stuck_reads)

    def read(self) -> Reading:
        slave = os.path.join(self.path, "w1_slave")
        use_slave = os.path.exists(slave) or not os.path.exists(os.path.join(self.path, "temperature"))
        try:
            text = self.reader(slave if use_slave else os.path.join(self.path, "temperature"))
        except FileNotFoundError as err:
            raise NoDeviceError(f"{self.where}: the sensor is gone from {self.root}: {_WIRING}") from err
        except OSError as err:
            if err.errno in (errno.ENXIO, errno.ENODEV):
                raise NoDeviceError(f"{self.where}: the sensor does not answer: {_WIRING}") from err
            raise BusError(f"{self.where}: read failed: {err.strerror or err}") from err
        value, raw = parse_w1_slave(text, self.where) if use_slave else parse_temperature_file(text, self.where)
        self._stuck.check(raw)
        return Reading(value)

    def close(self) -> None:
        pass


def _open(device: SysfsDevice, type_name: str, stuck_reads: int) -> Ds18b20:
    return Ds18b20(device.name, device.root, device.reader, stuck_reads)


DS18B20 = SensorType(
    names=("ds18b20",),
    title="DS18B20",
    connection="w1",
    quantities={"temperature_c": TEMPERATURE_RANGE_C},
    keys=(sysfs_key("device", "its 1-Wire id", "28-0316a2794aff"),),
    location_key="device",
    open=_open,
    enable="add dtoverlay=w1-gpio (data on GPIO4, 4.7 kΩ pull-up) to /boot/firmware/config.txt",
    sysfs_ids=FAMILIES,
)
