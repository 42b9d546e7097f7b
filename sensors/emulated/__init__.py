"""Register-level emulated sensors behind a fake I2C bus and a fake sysfs tree, used by tests and demo mode
through the real drivers. Every chip follows its datasheet closely enough that the driver cannot tell."""

from __future__ import annotations

from sensors.emulated.bme280 import EmulatedBme280
from sensors.emulated.bus import EmulatedDevice, FakeBus
from sensors.emulated.chips import emulate
from sensors.emulated.climate import Climate
from sensors.emulated.mcp9808 import EmulatedMcp9808
from sensors.emulated.sht3x import EmulatedSht3x
from sensors.emulated.sysfs import EmulatedDht, EmulatedDs18b20, FakeSysfs

__all__ = [
    "Climate",
    "EmulatedBme280",
    "EmulatedDevice",
    "EmulatedDht",
    "EmulatedDs18b20",
    "EmulatedMcp9808",
    "EmulatedSht3x",
    "FakeBus",
    "FakeSysfs",
    "emulate",
]
