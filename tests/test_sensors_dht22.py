"""DHT22 through the kernel dht11 IIO driver: milli-units, retries no sooner than 2 s apart, a deadline."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from sensors import BusError, ImplausibleValueError, NoDeviceError, StuckSensorError, WrongChipError, open_sensor
from sensors.dht22 import Dht22, parse_milli
from sensors.emulated import Climate, FakeSysfs


class FakeTime:
    """sleep() advances monotonic(): the retry schedule is checked without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make(tmp_path: Path, climate: Climate | None = None, **kwargs: object) -> tuple[FakeSysfs, object, FakeTime]:
    clock = FakeTime()
    tree = FakeSysfs(str(tmp_path / "iio"))
    device = tree.add_dht22("iio:device0", climate or Climate(21.3, 44.7), clock=clock.monotonic)
    sensor = Dht22("iio:device0", tree.root, tree.reader, sleep=clock.sleep, monotonic=clock.monotonic, **kwargs)  # type: ignore[arg-type]
    return tree, (device, sensor), clock


def test_parse_milli_units() -> None:
    assert parse_milli("21300\n", "x", "temperature") == 21300
    assert parse_milli("-9800\n", "x", "temperature") == -9800
    with pytest.raises(BusError, match="not a number"):
        parse_milli("", "x", "humidity")


def test_plain_files(tmp_path: Path) -> None:
    dev = tmp_path / "iio:device2"
    dev.mkdir()
    (dev / "name").write_text("dht11\n")
    (dev / "in_temp_input").write_text("-9800\n")
    (dev / "in_humidityrelative_input").write_text("87300\n")
    reading = open_sensor({"type": "dht22", "iio_device": "iio:device2"}, sysfs_root=str(tmp_path)).read()
    assert (reading.temperature_c, reading.humidity_pct, reading.pressure_hpa) == (-9.8, 87.3, None)


def test_emulated_read(tmp_path: Path) -> None:
    _, (_, sensor), _ = make(tmp_path, Climate(-7.26, 91.04))
    reading = sensor.read()  # type: ignore[attr-defined]
    assert (reading.temperature_c, reading.humidity_pct) == (-7.3, 91.0)  # 0.1-unit resolution, in milli-units


@pytest.mark.parametrize("err", [errno.EIO, errno.ETIMEDOUT, errno.EAGAIN])
def test_routine_failures_are_retried_2_s_apart(tmp_path: Path, err: int) -> None:
    _, (device, sensor), clock = make(tmp_path)
    device.fail_next(err, 2)  # type: ignore[attr-defined]
    start = clock.now
    assert sensor.read().temperature_c == 21.3  # type: ignore[attr-defined]
    assert clock.sleeps == [2.0, 2.0]
    assert clock.now - start == 4.0


def test_deadline_then_an_error_naming_the_overlay(tmp_path: Path) -> None:
    _, (device, sensor), clock = make(tmp_path, deadline_s=5.0)
    device.fail_next(errno.ETIMEDOUT, 10)  # type: ignore[attr-defined]
    with pytest.raises(BusError, match=r"no good read within 5 s \(no answer, errno 110\).*dtoverlay=dht11"):
        sensor.read()  # type: ignore[attr-defined]
    assert all(s >= 2.0 for s in clock.sleeps)
    assert len(clock.sleeps) == 2  # attempts at 0, 2, 4 s; a fourth would start after the deadline


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    tree, (device, sensor), clock = make(tmp_path)
    device.fail_next(errno.EACCES)  # type: ignore[attr-defined]
    with pytest.raises(BusError, match="read failed"):
        sensor.read()  # type: ignore[attr-defined]
    assert clock.sleeps == []
    tree.remove("iio:device0")
    with pytest.raises(NoDeviceError, match="gone"):
        sensor.read()  # type: ignore[attr-defined]


def test_open_checks_the_driver_name(tmp_path: Path) -> None:
    dev = tmp_path / "iio:device0"
    dev.mkdir()
    (dev / "name").write_text("bmp280\n")
    with pytest.raises(WrongChipError, match="'bmp280', not the dht11 driver"):
        open_sensor({"type": "dht22", "iio_device": "iio:device0"}, sysfs_root=str(tmp_path))
    with pytest.raises(NoDeviceError, match="dtoverlay=dht11"):
        open_sensor({"type": "dht22", "iio_device": "iio:device9"}, sysfs_root=str(tmp_path))


def test_out_of_range_is_implausible(tmp_path: Path) -> None:
    _, (_, sensor), _ = make(tmp_path, Climate(95.0, 50.0))
    with pytest.raises(ImplausibleValueError, match=r"-40..80"):
        sensor.read()  # type: ignore[attr-defined]


def test_kernel_cache_repeats_are_not_stuck_but_real_repeats_are(tmp_path: Path) -> None:
    _, (_, sensor), clock = make(tmp_path, stuck_reads=2)
    sensor.read()  # type: ignore[attr-defined]
    clock.now += 0.5
    sensor.read()  # type: ignore[attr-defined]  # within 2 s: the kernel's cached value, not counted
    clock.now += 5
    with pytest.raises(StuckSensorError):
        sensor.read()  # type: ignore[attr-defined]
