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
from sensors.sysfs import ROOTS, Reader, SysfsDevice, read_text

__all__ = [
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


def open_sensor(
    spec: dict[str, Any],
    bus: Any = None,
    sysfs_root: str | None = None,
    *,
    reader: Reader | None = None,
) -> Sensor:
    """Open the sensor a config entry describes; checks the chip's identity. Raises SensorError.

    bus: an object with smbus2.SMBus's methods (default: smbus2.SMBus(spec["bus"]), closed by close()).
    sysfs_root: replaces /sys/bus/w1/devices (1-Wire types) or /sys/bus/iio/devices (IIO types).
    reader: replaces the sysfs file read (path → text), e.g. an emulated kernel.
    """
    from sensors.registry import lookup

    kind = lookup(spec.get("type"))
    type_name = str(spec["type"])
    settings = kind.settings(spec, type_name)
    stuck_reads = int(spec.get("stuck_reads") or 0)
    if kind.connection == "i2c":
        from sensors.i2c import I2CPort, open_smbus

        bus_number, address = settings["bus"], settings["address"]
        port = I2CPort(
            bus if bus is not None else open_smbus(bus_number), bus_number, address, type_name.upper(), bus is None
        )
        try:
            return kind.open(port, type_name, stuck_reads)
        except BaseException:
            port.close()
            raise
    device = SysfsDevice(sysfs_root or ROOTS[kind.connection], settings[kind.location_key], reader or read_text)
    return kind.open(device, type_name, stuck_reads)
