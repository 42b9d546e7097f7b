"""MCP9808: 13-bit two's complement with the flag bits masked (the datasheet sample code's sign bug), ids, bytes."""

from __future__ import annotations

import pytest

from sensors import NoDeviceError, StuckSensorError, WrongChipError, open_sensor
from sensors import mcp9808 as chip
from sensors.emulated import Climate, EmulatedMcp9808, FakeBus


@pytest.mark.parametrize(
    ("word", "celsius"),
    [
        (0x0190, 25.0),  # 0000 0001 1001 0000: 400 / 16
        (0xC19C, 25.75),  # T_crit and T_upper flags set: masked off
        (0x1F5C, -10.25),  # the datasheet sample code would give +10.25
        (0x3F5C, -10.25),  # same with the T_lower flag
        (0x1FFF, -0.0625),
        (0x1000, -256.0),  # the most negative code
        (0x0000, 0.0),
        (0x07D0, 125.0),
        (0x1D80, -40.0),
    ],
)
def test_temperature_vectors(word: int, celsius: float) -> None:
    assert chip.temperature_c(word) == celsius


def test_datasheet_sample_code_sign_error() -> None:
    upper, lower = 0x1F, 0x5C
    datasheet = 256 - ((upper & 0x0F) * 16 + lower / 16)  # DS25095A p.25, for T_A < 0
    assert datasheet == pytest.approx(10.25)
    assert chip.temperature_c((upper << 8) | lower) == pytest.approx(-10.25)


def make(climate: Climate | None = None) -> tuple[FakeBus, EmulatedMcp9808]:
    bus = FakeBus(1)
    device = EmulatedMcp9808(0x18, climate or Climate(23.4))
    bus.attach(device)
    return bus, device


def test_read_word_data_is_byte_swapped() -> None:
    bus, _ = make()
    wire = bus.read_i2c_block_data(0x18, chip.REG_MANUFACTURER_ID, 2)
    assert wire == [0x00, 0x54]
    assert bus.read_word_data(0x18, chip.REG_MANUFACTURER_ID) == 0x5400  # SMBus order: first byte low


@pytest.mark.parametrize("t", [23.4, -10.25, -0.0625, -39.9, 0.0, 124.9])
def test_driver_on_emulated_chip(t: float) -> None:
    bus, _ = make(Climate(t))
    reading = open_sensor({"type": "mcp9808", "address": 0x18}, bus=bus).read()
    assert reading.temperature_c == pytest.approx(t, abs=0.0625)
    assert reading.humidity_pct is None


def test_flag_bits_do_not_leak_into_the_value() -> None:
    bus, device = make(Climate(-5.0))
    device.words[chip.REG_T_LOWER] = 0x0050  # +5 °C: below it, so bit 13 is set
    word = int.from_bytes(bytes(bus.read_i2c_block_data(0x18, chip.REG_T_A, 2)), "big")
    assert word & 0x2000
    assert open_sensor({"type": "mcp9808"}, bus=bus).read().temperature_c == -5.0


def test_ids_checked_at_open() -> None:
    bus, device = make()
    device.words[chip.REG_DEVICE_ID] = 0x0200
    with pytest.raises(WrongChipError, match="not an MCP9808"):
        open_sensor({"type": "mcp9808"}, bus=bus)
    device.words[chip.REG_DEVICE_ID] = 0x0401  # revision 1 is fine
    assert open_sensor({"type": "mcp9808"}, bus=bus).revision == 1  # type: ignore[attr-defined]


def test_absent_unplugged_stuck() -> None:
    with pytest.raises(NoDeviceError, match="nothing answers at i2c-1 0x1a"):
        open_sensor({"type": "mcp9808", "address": 0x1A}, bus=FakeBus(1))
    bus, device = make()
    sensor = open_sensor({"type": "mcp9808", "stuck_reads": 2}, bus=bus)
    device.unplug()
    with pytest.raises(NoDeviceError):
        sensor.read()
    device.replug()
    device.stuck = True
    sensor.read()
    with pytest.raises(StuckSensorError):
        sensor.read()
