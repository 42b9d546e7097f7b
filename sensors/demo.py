"""Emulated hardware for demo mode and `--demo` CLI runs: one fake I2C bus and fake 1-Wire / IIO trees holding a
drifting-room chip for every sensor spec, opened through the real drivers."""

from __future__ import annotations

import os
import zlib
from typing import Any

from sensors import Sensor, open_sensor
from sensors.emulated import Climate, FakeBus, FakeSysfs, emulate
from sensors.registry import lookup

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
    """Builds the emulated chips for `specs` under `root` (a temp dir: the fake sysfs trees live there): the
    emulated chip of each type (sensors/emulated/chips.py), where its descriptor says it goes."""

    def __init__(self, root: str, specs: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> None:
        self.root = root
        self.buses: dict[int, FakeBus] = {}
        self.w1 = FakeSysfs(os.path.join(root, "w1", "devices"))
        self.iio = FakeSysfs(os.path.join(root, "iio", "devices"))
        self.trees = {"w1": self.w1, "iio": self.iio}  # by sensors.descriptor.Connection
        self.climates: dict[str, Climate] = {}
        for spec in specs:
            self._add(spec)

    def bus(self, number: int = 1) -> FakeBus:
        return self.buses.setdefault(number, FakeBus(number))

    def _add(self, spec: dict[str, Any]) -> None:
        kind = lookup(spec.get("type"))
        settings = kind.settings(spec, str(spec["type"]))
        sensor_id = str(spec.get("id", spec["type"]))
        climate = self.climates[sensor_id] = climate_for(sensor_id)
        device = emulate(kind, settings[kind.location_key], climate)
        if kind.connection == "i2c":
            self.bus(settings["bus"]).attach(device)
        else:
            self.trees[kind.connection].add(device)

    def open(self, spec: dict[str, Any]) -> Sensor:
        """open_sensor on the emulated hardware."""
        kind = lookup(spec.get("type"))
        if kind.connection == "i2c":
            return open_sensor(spec, bus=self.bus(kind.settings(spec, str(spec["type"]))["bus"]))
        tree = self.trees[kind.connection]
        return open_sensor(spec, sysfs_root=tree.root, reader=tree.reader)
