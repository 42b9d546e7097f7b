"""The emulation layer itself: the drifting room, the fake bus's smbus2 semantics, the fake sysfs tree."""

from __future__ import annotations

import errno
import itertools
from pathlib import Path

import pytest

from sensors import open_sensor
from sensors.demo import DEFAULT_SENSORS, DemoHardware
from sensors.emulated import Climate, EmulatedBme280, FakeBus, FakeSysfs
from sensors.i2c import msg_read, msg_write


def test_drifting_room_moves_slowly_around_its_base() -> None:
    climate = Climate.drifting_room(21.5, 42.0, 1012.0, seed=7, period_s=1800, temperature_swing_c=0.8)
    samples = [climate.sample(1_800_000_000 + 60 * i) for i in range(120)]  # two hours, once a minute
    temperatures = [s[0] for s in samples]
    assert 21.5 - 0.9 < min(temperatures) < 21.5 - 0.5  # it swings...
    assert 21.5 + 0.5 < max(temperatures) < 21.5 + 0.9
    steps = [abs(b - a) for a, b in itertools.pairwise(temperatures)]
    assert max(steps) < 0.3  # ...slowly, like a room, with a little noise
    assert all(0 <= s[1] <= 100 for s in samples)
    assert all(1005 < s[2] < 1019 for s in samples)


def test_drift_reaches_the_driver_through_the_registers() -> None:
    now = [1_800_000_000.0]
    climate = Climate.drifting_room(21.5, seed=3, clock=lambda: now[0])
    bus = FakeBus(1)
    bus.attach(EmulatedBme280(0x76, climate))
    sensor = open_sensor({"type": "bme280"}, bus=bus)
    readings = []
    for _ in range(5):
        readings.append(sensor.read().temperature_c)
        now[0] += 300
    assert len(set(readings)) == 5
    assert all(20.0 < t < 23.0 for t in readings)


def test_fake_bus_follows_smbus2() -> None:
    bus = FakeBus(1)
    bus.attach(EmulatedBme280(0x76))
    with pytest.raises(OSError) as info:
        bus.read_byte_data(0x40, 0x00)
    assert info.value.errno == errno.EREMOTEIO
    assert bus.read_byte_data(0x76, 0xD0) == 0x60
    assert bus.read_word_data(0x76, 0x88) == 28009  # dig_T1, little-endian on the chip and in SMBus order
    bus.i2c_rdwr(msg_write(0x76, [0xD0]))
    msg = msg_read(0x76, 1)
    bus.i2c_rdwr(msg)
    assert list(msg) == [0x60]
    with pytest.raises(ValueError, match="32 bytes"):
        bus.read_i2c_block_data(0x76, 0x88, 33)
    bus.close()
    with pytest.raises(OSError) as info:
        bus.read_byte_data(0x76, 0xD0)
    assert info.value.errno == errno.EBADF


def test_fake_sysfs_tree_is_real_on_disk(tmp_path: Path) -> None:
    tree = FakeSysfs(str(tmp_path / "w1"))
    tree.add_ds18b20("28-000000000001")
    assert (tmp_path / "w1" / "28-000000000001" / "w1_slave").is_file()
    with pytest.raises(FileNotFoundError):
        tree.reader(str(tmp_path / "w1" / "28-000000000002" / "w1_slave"))


def test_demo_hardware_serves_the_default_sensors(tmp_path: Path) -> None:
    hardware = DemoHardware(str(tmp_path), DEFAULT_SENSORS)
    sources = [hardware.open(spec).source for spec in DEFAULT_SENSORS]
    assert sources == ["i2c:bme280@0x76", "i2c:sht3x@0x44", "w1:ds18b20/28-0316a2794aff"]
    outdoor = hardware.open(DEFAULT_SENSORS[2]).read().temperature_c
    assert -10 < outdoor < 15  # an outdoor climate, not a living room's
