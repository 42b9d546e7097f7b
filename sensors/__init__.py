"""Drivers for the Homeboard's local sensors (I2C, 1-Wire, IIO), their emulated stand-ins, and GPIO inputs.

    sensor = open_sensor({"type": "bme280", "bus": 1, "address": 0x76})
    reading = sensor.read()   # Reading(temperature_c, humidity_pct, pressure_hpa); raises SensorError

Nothing here imports smbus2 or RPi.GPIO at import time: they are loaded lazily in sensors.i2c and
sensors.gpio.rpi, so the package runs (and is tested) on machines without them.
"""

from __future__ import annotations

from typing import Any

from sensors.errors import (
    BusError,
    CalibrationError,
    CrcError,
    ImplausibleValueError,
    NoBusError,
    NoDeviceError,
    NotReadyError,
    PowerOnValueError,
    SensorError,
    SensorSpecError,
    StuckSensorError,
    WrongChipError,
)
from sensors.reading import Reading, Sensor
from sensors.sysfs import IIO_ROOT, W1_ROOT, Reader, read_text

__all__ = [
    "DEFAULT_ADDRESSES",
    "SENSOR_TYPES",
    "BusError",
    "CalibrationError",
    "CrcError",
    "ImplausibleValueError",
    "NoBusError",
    "NoDeviceError",
    "NotReadyError",
    "PowerOnValueError",
    "Reading",
    "Sensor",
    "SensorError",
    "SensorSpecError",
    "StuckSensorError",
    "WrongChipError",
    "open_sensor",
]

I2C_TYPES = {"bme280": "bme280", "bmp280": "bmp280", "sht31": "sht3x", "sht3x": "sht3x", "mcp9808": "mcp9808"}
SENSOR_TYPES = (*I2C_TYPES, "ds18b20", "dht22")
DEFAULT_ADDRESSES = {"bme280": 0x76, "bmp280": 0x76, "sht3x": 0x44, "mcp9808": 0x18}
VALID_ADDRESSES = {"bme280": (0x76, 0x77), "bmp280": (0x76, 0x77), "sht3x": (0x44, 0x45), "mcp9808": range(0x18, 0x20)}


def _address(spec: dict[str, Any], chip: str) -> int:
    value = spec.get("address")
    if value is None:
        return DEFAULT_ADDRESSES[chip]
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError as err:
            raise SensorSpecError(f"address: {value!r} is not a number (write it like 0x76)") from err
    if isinstance(value, bool) or not isinstance(value, int):
        raise SensorSpecError(f"address: expected a number like 0x76, got {value!r}")
    if value not in VALID_ADDRESSES[chip]:
        allowed = ", ".join(f"0x{a:02x}" for a in VALID_ADDRESSES[chip])
        raise SensorSpecError(f"address: a {chip} can only be at {allowed}, not 0x{value:02x}")
    return value


def open_sensor(
    spec: dict[str, Any],
    bus: Any = None,
    sysfs_root: str | None = None,
    *,
    reader: Reader | None = None,
) -> Sensor:
    """Open the sensor a config entry describes; checks the chip's identity. Raises SensorError.

    bus: an object with smbus2.SMBus's methods (default: smbus2.SMBus(spec["bus"]), closed by close()).
    sysfs_root: replaces /sys/bus/w1/devices (ds18b20) or /sys/bus/iio/devices (dht22).
    reader: replaces the sysfs file read (path → text), e.g. an emulated kernel.
    """
    kind = spec.get("type")
    stuck_reads = int(spec.get("stuck_reads") or 0)
    if kind in I2C_TYPES:
        from sensors.i2c import I2CPort, open_smbus

        chip = I2C_TYPES[kind]
        address = _address(spec, chip)
        bus_number = spec.get("bus", 1)
        if isinstance(bus_number, bool) or not isinstance(bus_number, int) or bus_number < 0:
            raise SensorSpecError(f"bus: expected an I2C bus number like 1, got {bus_number!r}")
        port = I2CPort(
            bus if bus is not None else open_smbus(bus_number), bus_number, address, kind.upper(), bus is None
        )
        try:
            return _open_i2c(chip, kind, port, stuck_reads)
        except BaseException:
            port.close()
            raise
    if kind == "ds18b20":
        from sensors.ds18b20 import Ds18b20

        device = spec.get("device")
        if not isinstance(device, str) or not device:
            raise SensorSpecError("device: a ds18b20 needs its 1-Wire id, like 28-0316a2794aff")
        return Ds18b20(device, sysfs_root or W1_ROOT, reader or read_text, stuck_reads)
    if kind == "dht22":
        from sensors.dht22 import Dht22

        iio_device = spec.get("iio_device")
        if not isinstance(iio_device, str) or not iio_device:
            raise SensorSpecError("iio_device: a dht22 needs its IIO device, like iio:device0")
        return Dht22(iio_device, sysfs_root or IIO_ROOT, reader or read_text, stuck_reads=stuck_reads)
    raise SensorSpecError(f"type: unknown sensor type {kind!r} (known: {', '.join(SENSOR_TYPES)})")


def _open_i2c(chip: str, kind: str, port: Any, stuck_reads: int) -> Sensor:
    if chip in ("bme280", "bmp280"):
        from sensors.bme280 import Bme280

        return Bme280(port, kind, stuck_reads)
    if chip == "sht3x":
        from sensors.sht3x import Sht3x

        return Sht3x(port, stuck_reads)
    from sensors.mcp9808 import Mcp9808

    return Mcp9808(port, stuck_reads)
