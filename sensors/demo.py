"""Emulated hardware for demo mode and `--demo` CLI runs: one fake I2C bus and fake 1-Wire / IIO trees holding a
drifting-room chip for every sensor spec, opened through the real drivers."""

from __future__ import annotations

import os
import zlib
from typing import Any

from sensors import DEFAULT_ADDRESSES, I2C_TYPES, Sensor, SensorSpecError, open_sensor
from sensors.emulated import Climate, EmulatedBme280, EmulatedMcp9808, EmulatedSht3x, FakeBus, FakeSysfs
from sensors.emulated.bme280 import REAL_TRIM

# What the demo shows when the config lists no sensors: three local sensors, three kinds of chip.
DEFAULT_SENSORS: tuple[dict[str, Any], ...] = (
    {"id": "living_room", "name": "Living room", "type": "bme280", "bus": 1, "address": 0x76, "interval_s": 15.0},
    {"id": "bedroom", "name": "Bedroom", "type": "sht31", "bus": 1, "address": 0x44, "interval_s": 15.0},
    {"id": "outdoor", "name": "Outdoor", "type": "ds18b20", "device": "28-0316a2794aff", "interval_s": 15.0},
)


def climate_for(sensor_id: str) -> Climate:
    """A drifting climate whose level suits the sensor's name; seeded by the id so runs look alike."""
    seed = zlib.crc32(sensor_id.encode())
    name = sensor_id.lower()
    # Periods of hours, not minutes: a 24-hour sparkline of a real room is a gentle curve (the day outdoors,
    # heating cycles indoors), not a zigzag.
    if any(w in name for w in ("out", "balcony", "garden", "ute")):
        return Climate.drifting_room(4.0, 78.0, 1012.0, seed=seed, period_s=86_400, temperature_swing_c=3.0)
    if "bed" in name:
        return Climate.drifting_room(19.5, 48.0, 1012.0, seed=seed, period_s=12 * 3600, temperature_swing_c=0.8)
    if "bath" in name:
        return Climate.drifting_room(23.0, 62.0, 1012.0, seed=seed, period_s=3 * 3600, temperature_swing_c=1.2)
    return Climate.drifting_room(21.5, 41.0, 1012.0, seed=seed, period_s=8 * 3600, temperature_swing_c=1.0)


class DemoHardware:
    """Builds the emulated chips for `specs` under `root` (a temp dir: the fake sysfs trees live there)."""

    def __init__(self, root: str, specs: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> None:
        self.root = root
        self.buses: dict[int, FakeBus] = {}
        self.w1 = FakeSysfs(os.path.join(root, "w1", "devices"))
        self.iio = FakeSysfs(os.path.join(root, "iio", "devices"))
        self.climates: dict[str, Climate] = {}
        for spec in specs:
            self._add(spec)

    def bus(self, number: int = 1) -> FakeBus:
        return self.buses.setdefault(number, FakeBus(number))

    def _add(self, spec: dict[str, Any]) -> None:
        kind = spec.get("type")
        sensor_id = str(spec.get("id", kind))
        climate = self.climates[sensor_id] = climate_for(sensor_id)
        if kind in I2C_TYPES:
            chip = I2C_TYPES[kind]
            address = spec.get("address") or DEFAULT_ADDRESSES[chip]
            bus = self.bus(int(spec.get("bus", 1)))
            if chip == "bme280":
                bus.attach(EmulatedBme280(address, climate, calibration=REAL_TRIM))
            elif chip == "bmp280":
                bus.attach(EmulatedBme280(address, climate, chip_id=0x58))
            elif chip == "sht3x":
                bus.attach(EmulatedSht3x(address, climate))
            else:
                bus.attach(EmulatedMcp9808(address, climate))
        elif kind == "ds18b20":
            self.w1.add_ds18b20(str(spec.get("device")), climate)
        elif kind == "dht22":
            self.iio.add_dht22(str(spec.get("iio_device")), climate)
        else:
            raise SensorSpecError(f"type: unknown sensor type {kind!r}")

    def open(self, spec: dict[str, Any]) -> Sensor:
        """open_sensor on the emulated hardware."""
        kind = spec.get("type")
        if kind == "ds18b20":
            return open_sensor(spec, sysfs_root=self.w1.root, reader=self.w1.reader)
        if kind == "dht22":
            return open_sensor(spec, sysfs_root=self.iio.root, reader=self.iio.reader)
        return open_sensor(spec, bus=self.bus(int(spec.get("bus", 1))))
