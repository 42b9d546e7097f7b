"""The sensors package's one error hierarchy; every message says what a person should check."""

from __future__ import annotations


class SensorError(Exception):
    """A failed or implausible read. The driver never returns a made-up value instead."""


class SensorSpecError(SensorError):
    """The sensor spec (a config.yaml entry) cannot be used: unknown type, bad address."""


class NoBusError(SensorError):
    """The I2C bus device node is missing or not accessible."""


class NoDeviceError(SensorError):
    """Nothing answers where the sensor should be: unplugged, wrong address, wrong wiring."""


class BusError(SensorError):
    """The bus answered with an error that is not "nobody there" (busy, timeout, I/O error)."""


class WrongChipError(SensorError):
    """Something answers, but it is not the chip the config names."""


class CalibrationError(SensorError):
    """The chip's factory calibration reads as garbage (all 0x00 / 0xFF, divisor 0)."""


class CrcError(SensorError):
    """The data's checksum does not match: noise on the bus or a long cable."""


class NotReadyError(SensorError):
    """The chip has no fresh measurement (skipped, still converting, empty read)."""


class PowerOnValueError(SensorError):
    """The chip reports its power-on reset value (DS18B20: 85 °C), not a measurement."""


class ImplausibleValueError(SensorError):
    """A decoded value lies outside what the chip can measure."""


class StuckSensorError(SensorError):
    """The same raw value came back too many times in a row."""
