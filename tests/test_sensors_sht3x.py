"""SHT3x: CRC-8 and conversion from the datasheet, and the single-shot driver on an emulated chip."""

from __future__ import annotations

import errno

import pytest

from sensors import CrcError, ImplausibleValueError, NoDeviceError, StuckSensorError, open_sensor
from sensors import sht3x as chip
from sensors.emulated import Climate, EmulatedSht3x, FakeBus
from sensors.i2c import msg_read, msg_write


def test_crc_datasheet_example() -> None:
    assert chip.crc8(b"\xbe\xef") == 0x92  # SHT3x-DIS Table 20
    assert chip.crc8(b"\x00\x00") == 0x81
    assert chip.crc8(b"") == 0xFF  # the init value


@pytest.mark.parametrize(
    ("raw", "celsius"),
    [(0x0000, -45.0), (0xFFFF, 130.0), (0x6666, -45 + 175 * 0x6666 / 65535), (0x4000, -45 + 175 * 16384 / 65535)],
)
def test_temperature_conversion(raw: int, celsius: float) -> None:
    assert chip.temperature_c(raw) == pytest.approx(celsius, abs=1e-9)


def test_subzero_and_humidity_vectors() -> None:
    # T = -45 + 175 · S / 65535: S = 12345 → -45 + 2160375 / 65535 = -12.03479 °C;
    # S = 0x3333 = 13107 = 65535 / 5 → -45 + 35 = -10 °C exactly.
    assert chip.temperature_c(12345) == pytest.approx(-12.0347906, abs=1e-6)
    assert chip.temperature_c(0x3333) == -10.0
    assert chip.humidity_pct(0x8000) == pytest.approx(50.0008, abs=1e-4)
    assert chip.humidity_pct(0xFFFF) == 100.0


def test_decode_checks_every_word() -> None:
    good = bytes([0x66, 0x66, chip.crc8(b"\x66\x66"), 0x80, 0x00, chip.crc8(b"\x80\x00")])
    reading, raw = chip.decode(good, "x")
    assert raw == (0x6666, 0x8000)
    assert reading.pressure_hpa is None
    with pytest.raises(CrcError, match="CRC mismatch"):
        chip.decode(good[:5] + bytes([good[5] ^ 1]), "x")
    with pytest.raises(CrcError):
        chip.decode(bytes([good[0] ^ 0x80]) + good[1:], "x")


def test_out_of_spec_temperature_is_implausible() -> None:
    word = 0xFFFF  # 130 °C > 125 °C
    data = bytes([0xFF, 0xFF, chip.crc8(b"\xff\xff"), 0x80, 0x00, chip.crc8(b"\x80\x00")])
    assert chip.temperature_c(word) > 125
    with pytest.raises(ImplausibleValueError, match=r"-40..125"):
        chip.decode(data, "x")


def make(climate: Climate | None = None) -> tuple[FakeBus, EmulatedSht3x]:
    bus = FakeBus(1)
    device = EmulatedSht3x(0x44, climate or Climate(22.0, 48.0))
    bus.attach(device)
    return bus, device


@pytest.mark.parametrize(("t", "h"), [(22.0, 48.0), (-12.5, 85.0), (-39.9, 0.0), (60.0, 100.0)])
def test_driver_decodes_the_emulated_chip(t: float, h: float) -> None:
    bus, _ = make(Climate(t, h))
    reading = open_sensor({"type": "sht31", "address": 0x44}, bus=bus).read()
    assert reading.temperature_c == pytest.approx(t, abs=0.003)
    assert reading.humidity_pct == pytest.approx(h, abs=0.002)


def test_reading_before_the_conversion_ends_is_nacked() -> None:
    # Why the driver waits: without clock stretching the chip NACKs its address while it converts.
    bus, _ = make()
    bus.i2c_rdwr(msg_write(0x44, [0x24, 0x00]))
    with pytest.raises(OSError) as info:
        bus.i2c_rdwr(msg_read(0x44, 6))
    assert info.value.errno == errno.EREMOTEIO


def test_chip_has_no_register_address() -> None:
    bus, _ = make()
    with pytest.raises(OSError):  # read_i2c_block_data writes one byte first: not a command for this chip
        bus.read_i2c_block_data(0x44, 0x24, 6)


def test_one_crc_failure_is_retried_with_a_new_measurement() -> None:
    bus, device = make()
    sensor = open_sensor({"type": "sht31"}, bus=bus)
    device.corrupt_crc = 1
    assert sensor.read().temperature_c == pytest.approx(22.0, abs=0.003)
    assert device.resets == 0


def test_repeated_crc_failures_soft_reset_the_chip() -> None:
    bus, device = make()
    sensor = open_sensor({"type": "sht31"}, bus=bus)
    device.corrupt_crc = 2
    with pytest.raises(CrcError, match="soft-reset"):
        sensor.read()
    assert device.resets == 1
    assert sensor.read().humidity_pct == pytest.approx(48.0, abs=0.002)


def test_status_with_valid_crc_is_required_at_open() -> None:
    bus, device = make()
    device.corrupt_crc = 1
    with pytest.raises(CrcError):
        open_sensor({"type": "sht31"}, bus=bus)
    assert open_sensor({"type": "sht31"}, bus=bus).status == 0x8010  # type: ignore[attr-defined]


def test_unplugged_and_absent() -> None:
    with pytest.raises(NoDeviceError, match="nothing answers at i2c-1 0x45"):
        open_sensor({"type": "sht3x", "address": 0x45}, bus=FakeBus(1))
    bus, device = make()
    sensor = open_sensor({"type": "sht31"}, bus=bus)
    device.unplug()
    with pytest.raises(NoDeviceError):
        sensor.read()
    device.replug()
    assert sensor.read().temperature_c == pytest.approx(22.0, abs=0.003)


def test_stuck() -> None:
    bus, device = make()
    sensor = open_sensor({"type": "sht31", "stuck_reads": 2}, bus=bus)
    device.stuck = True
    sensor.read()
    with pytest.raises(StuckSensorError):
        sensor.read()
