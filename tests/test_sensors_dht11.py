"""DHT11 through the kernel's dht11 IIO driver, at the sysfs level: the chip's 40-bit frame, the kernel's decode
into milli-units, whole units only, 0-50 °C and 20-90 %RH; outside that an error, never a value."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from sensors import BusError, ImplausibleValueError, WrongChipError, open_sensor
from sensors.demo import DemoHardware
from sensors.dht22 import DHT11, Dht11
from sensors.emulated import Climate, EmulatedDht, FakeSysfs
from sensors.emulated.sysfs import dht11_frame, dht22_frame, kernel_dht11_decode
from tests.test_sensors_dht22 import FakeTime

SPEC = {"type": "dht11", "iio_device": "iio:device0"}


def make(tmp_path: Path, climate: Climate, **kwargs: object) -> tuple[EmulatedDht, Dht11, FakeTime]:
    clock = FakeTime()
    tree = FakeSysfs(str(tmp_path / "iio"))
    device = tree.add(EmulatedDht("iio:device0", climate, clock.monotonic, frame=dht11_frame))
    sensor = Dht11("iio:device0", tree.root, tree.reader, sleep=clock.sleep, monotonic=clock.monotonic, **kwargs)
    return device, sensor, clock


def test_frames_decode_as_the_kernel_does() -> None:
    assert dht11_frame(23.4, 40.6) == bytes([41, 0, 23, 0, 64])  # whole units, decimal bytes 0, checksum
    assert kernel_dht11_decode(dht11_frame(23.4, 40.6)) == (23000, 41000)
    # A DHT22's frame: tenths in 16 bits, sign-magnitude temperature; the kernel tells them apart by RH's high byte.
    assert dht22_frame(-7.3, 91.0) == bytes([0x03, 0x8E, 0x80, 0x49, 0x5A])
    assert kernel_dht11_decode(dht22_frame(-7.3, 91.0)) == (-7300, 91000)
    with pytest.raises(OSError) as err:
        kernel_dht11_decode(bytes([41, 0, 23, 0, 65]))  # checksum off by one
    assert err.value.errno == errno.EIO
    with pytest.raises(OSError):
        kernel_dht11_decode(bytes([41, 3, 23, 0, 67]))  # a decimal byte on a DHT11-looking frame: undecodable


def test_reads_whole_units_in_milli_units_from_sysfs(tmp_path: Path) -> None:
    _, sensor, _ = make(tmp_path, Climate(21.4, 44.6))
    reading = sensor.read()
    assert (reading.temperature_c, reading.humidity_pct, reading.pressure_hpa) == (21.0, 45.0, None)
    assert sensor.source == "iio:dht11/iio:device0"
    assert sensor.where == "DHT11 at iio:device0"


def test_plain_sysfs_files_through_open_sensor(tmp_path: Path) -> None:
    dev = tmp_path / "iio:device4"
    dev.mkdir()
    (dev / "name").write_text("dht11\n")
    (dev / "in_temp_input").write_text("24000\n")
    (dev / "in_humidityrelative_input").write_text("51000\n")
    sensor = open_sensor({"type": "dht11", "iio_device": "iio:device4"}, sysfs_root=str(tmp_path))
    assert (sensor.read().temperature_c, sensor.read().humidity_pct) == (24.0, 51.0)
    (dev / "in_temp_input").write_text("24500\n")  # tenths: the kernel decoded a DHT22's frame
    with pytest.raises(WrongChipError, match="set type: dht22"):
        sensor.read()


@pytest.mark.parametrize(
    ("temperature_c", "humidity_pct", "message"),
    [
        (55.0, 45.0, r"temperature 55.00 °C is outside the chip's range 0..50 °C"),
        (21.0, 95.0, r"humidity 95.00 % is outside the chip's range 20..90 %"),
        (21.0, 12.0, r"humidity 12.00 % is outside the chip's range 20..90 %"),
    ],
)
def test_a_value_outside_the_dht11_range_is_an_error(
    tmp_path: Path, temperature_c: float, humidity_pct: float, message: str
) -> None:
    _, sensor, _ = make(tmp_path, Climate(temperature_c, humidity_pct))
    with pytest.raises(ImplausibleValueError, match=message):
        sensor.read()


def test_range_edges_are_readings(tmp_path: Path) -> None:
    climate = Climate(0.0, 20.0)
    device, sensor, clock = make(tmp_path, climate)
    assert (sensor.read().temperature_c, sensor.read().humidity_pct) == (0.0, 20.0)
    climate.set(50.0, 90.0)
    clock.now += 2.0  # past the kernel's 2 s cache
    reading = sensor.read()
    assert (reading.temperature_c, reading.humidity_pct) == (50.0, 90.0)
    assert device.reads == 2


def test_below_zero_the_kernel_cannot_decode_and_no_value_is_made_up(tmp_path: Path) -> None:
    device, sensor, clock = make(tmp_path, Climate(-3.0, 60.0), deadline_s=5.0)
    with pytest.raises(BusError, match=r"no good read within 5 s \(bad data, errno 5\)"):
        sensor.read()
    assert device.reads == 3  # retried 2 s apart until the deadline
    assert clock.sleeps == [2.0, 2.0]


def test_a_corrupt_frame_is_retried_after_the_kernel_cache(tmp_path: Path) -> None:
    device, sensor, clock = make(tmp_path, Climate(22.0, 50.0))
    device.corrupt_next = 1  # a bit flips on the wire: the kernel's checksum says EIO
    reading = sensor.read()
    assert (reading.temperature_c, reading.humidity_pct) == (22.0, 50.0)
    assert clock.sleeps == [2.0]


def test_a_dht22_configured_as_dht11_is_named(tmp_path: Path) -> None:
    tree = FakeSysfs(str(tmp_path / "iio"))
    tree.add_dht22("iio:device0", Climate(21.3, 44.7))
    with pytest.raises(WrongChipError, match=r"reads 21.3 °C, 44.7 %RH with tenths.*set type: dht22"):
        open_sensor(SPEC, sysfs_root=tree.root, reader=tree.reader).read()


def test_the_descriptor_is_all_the_rest_needs(tmp_path: Path) -> None:
    assert (DHT11.names, DHT11.connection, DHT11.location_key) == (("dht11",), "iio", "iio_device")
    assert dict(DHT11.quantities) == {"temperature_c": (0.0, 50.0), "humidity_pct": (20.0, 90.0)}
    hardware = DemoHardware(str(tmp_path), [{"id": "kids_room", **SPEC}])
    reading = hardware.open({"id": "kids_room", **SPEC}).read()
    assert reading.temperature_c.is_integer()
    assert reading.humidity_pct is not None
    assert reading.humidity_pct.is_integer()


def test_whole_units_repeating_in_a_steady_room_are_not_stuck(tmp_path: Path) -> None:
    _, sensor, clock = make(tmp_path, Climate(21.2, 44.8), stuck_reads=3)
    for _ in range(10):
        assert sensor.read().temperature_c == 21.0
        clock.now += 60.0
