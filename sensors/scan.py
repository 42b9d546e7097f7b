"""What `python -m sensors scan` finds: known chips on an I2C bus (with their ids), 1-Wire and IIO devices."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sensors import bme280, mcp9808, sht3x
from sensors.errors import SensorError
from sensors.i2c import I2CPort
from sensors.sysfs import IIO_ROOT, W1_ROOT, Reader, read_text


@dataclass(frozen=True)
class Found:
    where: str  # "i2c-1 0x76", "1-Wire", "IIO"
    what: str  # "BME280 (chip id 0x60)"


def _probe_bosch(port: I2CPort) -> str | None:
    chip_id = port.read_u8(bme280.REG_CHIP_ID)
    if chip_id == bme280.CHIP_ID_BME280:
        return f"BME280 (chip id 0x{chip_id:02x}) → type: bme280"
    if chip_id in bme280.CHIP_IDS_BMP280:
        return f"BMP280 (chip id 0x{chip_id:02x}) → type: bmp280"
    return f"unknown chip (id 0x{chip_id:02x} at 0xD0)"


def _probe_sht(port: I2CPort) -> str | None:
    port.write_raw([sht3x.CMD_READ_STATUS >> 8, sht3x.CMD_READ_STATUS & 0xFF])
    data = port.read_raw(3)
    if sht3x.crc8(data[:2]) != data[2]:
        return "something without a valid SHT3x status CRC"
    return f"SHT3x (status 0x{(data[0] << 8) | data[1]:04x}) → type: sht31"


def _probe_mcp(port: I2CPort) -> str | None:
    manufacturer = int.from_bytes(port.read_block(mcp9808.REG_MANUFACTURER_ID, 2), "big")
    device = int.from_bytes(port.read_block(mcp9808.REG_DEVICE_ID, 2), "big")
    if manufacturer == mcp9808.MANUFACTURER_ID and device >> 8 == mcp9808.DEVICE_ID:
        return f"MCP9808 (manufacturer 0x{manufacturer:04x}, device 0x{device:04x}) → type: mcp9808"
    return f"unknown chip (ids 0x{manufacturer:04x}/0x{device:04x})"


PROBES = [
    *((a, _probe_mcp) for a in mcp9808.ADDRESSES),
    *((a, _probe_sht) for a in sht3x.ADDRESSES),
    *((a, _probe_bosch) for a in bme280.ADDRESSES),
]


def scan_i2c(bus: Any, bus_number: int) -> list[Found]:
    found = []
    for address, probe in PROBES:
        port = I2CPort(bus, bus_number, address, "probe")
        try:
            what = probe(port)
        except SensorError:
            continue  # nothing (known) answers there
        if what:
            found.append(Found(f"i2c-{bus_number} 0x{address:02x}", what))
    return found


def scan_w1(root: str = W1_ROOT) -> list[Found] | None:
    """1-Wire temperature sensors under root; None when the w1 bus is not there at all."""
    if not os.path.isdir(root):
        return None
    from sensors.ds18b20 import FAMILIES

    found = []
    for name in sorted(os.listdir(root)):
        family = name.split("-", 1)[0].lower()
        if "-" in name and family in FAMILIES:
            found.append(Found("1-Wire", f"{name} {FAMILIES[family]} → type: ds18b20, device: {name}"))
    return found


def scan_iio(root: str = IIO_ROOT, reader: Reader = read_text) -> list[Found] | None:
    if not os.path.isdir(root):
        return None
    found = []
    for name in sorted(os.listdir(root)):
        try:
            driver = reader(os.path.join(root, name, "name")).strip()
        except OSError:
            continue
        hint = f" → type: dht22, iio_device: {name}" if driver == "dht11" else ""
        found.append(Found("IIO", f"{name} ({driver}){hint}"))
    return found
