"""BME280/BMP280: calibration parsing, the datasheet's integer compensation, and the driver on an emulated chip."""

from __future__ import annotations

import errno

import pytest

from sensors import (
    BusError,
    CalibrationError,
    ImplausibleValueError,
    NoDeviceError,
    NotReadyError,
    StuckSensorError,
    WrongChipError,
    open_sensor,
)
from sensors import bme280 as chip
from sensors.emulated import Climate, EmulatedBme280, FakeBus
from sensors.emulated.bme280 import REAL_TRIM, calibration_bytes

# BMP280 datasheet, section 3.12 worked example (trim and raw values).
DATASHEET_TRIM = chip.Calibration(27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)


def float_compensation(adc_t: int, adc_p: int, adc_h: int | None, cal: chip.Calibration) -> tuple[float, float, float]:
    """The datasheet's double-precision formulas (sec. 4.2.3 / 8.1): an independent check of the integer path."""
    var1 = (adc_t / 16384.0 - cal.dig_T1 / 1024.0) * cal.dig_T2
    var2 = (adc_t / 131072.0 - cal.dig_T1 / 8192.0) ** 2 * cal.dig_T3
    t_fine = var1 + var2
    v1 = t_fine / 2.0 - 64000.0
    v2 = v1 * v1 * cal.dig_P6 / 32768.0 + v1 * cal.dig_P5 * 2.0
    v2 = v2 / 4.0 + cal.dig_P4 * 65536.0
    v1 = (cal.dig_P3 * v1 * v1 / 524288.0 + cal.dig_P2 * v1) / 524288.0
    v1 = (1.0 + v1 / 32768.0) * cal.dig_P1
    p = 1048576.0 - adc_p
    p = (p - v2 / 4096.0) * 6250.0 / v1
    p = p + (cal.dig_P9 * p * p / 2147483648.0 + p * cal.dig_P8 / 32768.0 + cal.dig_P7) / 16.0
    h = float("nan")
    if adc_h is not None:
        x = t_fine - 76800.0
        x = (adc_h - (cal.dig_H4 * 64.0 + cal.dig_H5 / 16384.0 * x)) * (
            cal.dig_H2 / 65536.0 * (1.0 + cal.dig_H6 / 67108864.0 * x * (1.0 + cal.dig_H3 / 67108864.0 * x))
        )
        h = min(100.0, max(0.0, x * (1.0 - cal.dig_H1 * x / 524288.0)))
    return t_fine / 5120.0, p / 100.0, h


# ---------------------------------------------------------------------------------- pure functions


def test_datasheet_worked_example_exact() -> None:
    t_centi, t_fine = chip.compensate_temperature(519888, DATASHEET_TRIM)
    assert t_fine == 128422
    assert t_centi == 2508  # 25.08 °C
    # The int64 path gives 25767233 / 256 = 100653.25 Pa (the datasheet's 100653.27 is the double formula).
    assert chip.compensate_pressure(415148, t_fine, DATASHEET_TRIM) == 25767233


def test_below_zero_uses_arithmetic_shifts() -> None:
    # adc_T 420000 by hand: var1 = ((52500 - 55008) * 26435) >> 11 = -66298980 >> 11 = -32373 (floor),
    # var2 = ((((26250 - 27504)^2) >> 12) * -1000) >> 14 = (383 * -1000) >> 14 = -24, t_fine = -32397,
    # T = (-32397 * 5 + 128) >> 8 = -161857 >> 8 = -633 → -6.33 °C. (C truncation would give -632.)
    assert chip.compensate_temperature(420000, DATASHEET_TRIM) == (-633, -32397)
    assert chip.compensate_temperature(300000, DATASHEET_TRIM) == (-4436, -227131)  # -44.36 °C


@pytest.mark.parametrize("adc_t", [300000, 380000, 400000, 420000, 440000, 460000, 519888, 560000])
@pytest.mark.parametrize("adc_p", [300000, 415148, 520000])
def test_integer_path_matches_double_formulas(adc_t: int, adc_p: int) -> None:
    t_centi, t_fine = chip.compensate_temperature(adc_t, DATASHEET_TRIM)
    p = chip.compensate_pressure(adc_p, t_fine, DATASHEET_TRIM)
    assert p is not None
    t_ref, p_ref, _ = float_compensation(adc_t, adc_p, None, DATASHEET_TRIM)
    assert abs(t_centi / 100 - t_ref) <= 0.011
    assert abs(p / 25600 - p_ref) < 0.02


def test_real_chip_vector_with_humidity() -> None:
    # pimoroni/bme280-python tests: raw 529191 / 326816 / 30281 → 24.7894877676 °C, 1006.61517564 hPa, 68.66996649 %RH
    t_centi, t_fine = chip.compensate_temperature(529191, REAL_TRIM)
    p = chip.compensate_pressure(326816, t_fine, REAL_TRIM)
    h = chip.compensate_humidity(30281, t_fine, REAL_TRIM)
    assert t_centi == 2479
    assert p is not None
    assert abs(p / 25600 - 1006.61517564) < 0.01
    assert abs(h / 1024 - 68.66996648709039) < 0.01


@pytest.mark.parametrize(("adc_t", "adc_h"), [(420000, 20000), (460000, 30281), (529191, 40000), (380000, 25000)])
def test_humidity_matches_double_formula_including_subzero(adc_t: int, adc_h: int) -> None:
    _, t_fine = chip.compensate_temperature(adc_t, REAL_TRIM)
    h = chip.compensate_humidity(adc_h, t_fine, REAL_TRIM) / 1024
    _, _, h_ref = float_compensation(adc_t, 400000, adc_h, REAL_TRIM)
    assert abs(h - h_ref) < 0.05


def test_humidity_is_clamped_like_the_datasheet() -> None:
    _, t_fine = chip.compensate_temperature(529191, REAL_TRIM)
    assert chip.compensate_humidity(0, t_fine, REAL_TRIM) == 0
    assert chip.compensate_humidity(0xFFFF, t_fine, REAL_TRIM) == 100 * 1024


def test_calibration_layout_signed_nibbles() -> None:
    tp = (
        bytes.fromhex("706b") + bytes.fromhex("4367") + bytes.fromhex("18fc") + bytes(20)
    )  # T1 27504, T2 26435, T3 -1000
    tp = tp[:25] + bytes([75])  # dig_H1 at 0xA1
    # 0xE1..0xE7: H2 = 0x0178 (376), H3 = 0, 0xE4 = 0xF1, 0xE5 = 0xA2, 0xE6 = 0xFE, H6 = 0xE2.
    # H4 = 0xF1 << 4 | 0x2 = 0xF12 → 12-bit signed -238; H5 = 0xFE << 4 | 0xA = 0xFEA → -22; H6 = -30.
    h = bytes([0x78, 0x01, 0x00, 0xF1, 0xA2, 0xFE, 0xE2])
    cal = chip.parse_calibration(tp, h)
    assert (cal.dig_T1, cal.dig_T2, cal.dig_T3) == (27504, 26435, -1000)
    assert (cal.dig_H1, cal.dig_H2, cal.dig_H3) == (75, 376, 0)
    assert (cal.dig_H4, cal.dig_H5, cal.dig_H6) == (-238, -22, -30)
    # and the positive case from a real chip: H4 286 = 0x11E → 0xE4 = 0x11, 0xE5 low nibble 0xE; H5 50 = 0x032
    real = chip.parse_calibration(*calibration_bytes(REAL_TRIM))
    assert real == REAL_TRIM


def test_calibration_packing_round_trips_negative_values() -> None:
    trim = chip.Calibration(28009, 25654, 50, 39145, -10750, 3024, 5667, -120, -7, 15500, -14600, 6000, 75, 376, 0,
                            -238, -22, -30)  # fmt: skip
    assert chip.parse_calibration(*calibration_bytes(trim)) == trim


def test_garbage_calibration_is_refused() -> None:
    for fill in (0x00, 0xFF):
        cal = chip.parse_calibration(bytes([fill]) * 26, bytes([fill]) * 7)
        with pytest.raises(CalibrationError, match="calibration reads as garbage"):
            chip.check_calibration(cal, "BME280 at i2c-1 0x76")


def test_skipped_measurement_raw_values_are_rejected() -> None:
    skipped_t = bytes([0x65, 0x5A, 0xC0, 0x80, 0x00, 0x00, 0x6E, 0x8F])
    with pytest.raises(NotReadyError, match="reset value"):
        chip.decode(skipped_t, REAL_TRIM, "x")
    skipped_h = bytes([0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x80, 0x00])
    with pytest.raises(NotReadyError):
        chip.decode(skipped_h, REAL_TRIM, "x")


def test_pressure_divisor_zero_is_an_error_not_zero() -> None:
    cal = chip.Calibration(27504, 26435, -1000, 0, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
    assert chip.compensate_pressure(415148, 128422, cal) is None
    data = bytes([0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00])
    with pytest.raises(CalibrationError, match="divides by zero"):
        chip.decode(data, cal, "x")


def test_out_of_range_value_is_implausible() -> None:
    # adc_T 1000000 with the datasheet trim compensates to far above 85 °C.
    data = bytes([0x65, 0x5A, 0xC0, 1000000 >> 12, (1000000 >> 4) & 0xFF, (1000000 & 0xF) << 4])
    with pytest.raises(ImplausibleValueError, match=r"outside the chip's range -40..85"):
        chip.decode(data, DATASHEET_TRIM, "BME280 at i2c-1 0x76")


def test_measurement_time_from_the_datasheet() -> None:
    assert chip.measurement_time_ms(1, 1, 1) == pytest.approx(9.3)
    assert chip.measurement_time_ms(16, 16, 16) == pytest.approx(112.8)
    assert chip.measurement_time_ms(1, 1, None) == pytest.approx(6.425)


# ---------------------------------------------------------------------------------- driver on an emulated chip


def make(climate: Climate | None = None, **kwargs: object) -> tuple[FakeBus, EmulatedBme280]:
    bus = FakeBus(1)
    device = EmulatedBme280(0x76, climate or Climate(21.5, 45.0, 1013.25), **kwargs)  # type: ignore[arg-type]
    bus.attach(device)
    return bus, device


@pytest.mark.parametrize(("t", "h", "p"), [(21.5, 45.0, 1013.25), (-12.35, 80.0, 985.5), (-39.5, 5.0, 305.0),
                                           (84.0, 99.0, 1099.0), (0.0, 50.0, 1000.0)])  # fmt: skip
def test_driver_decodes_what_the_emulated_chip_measures(t: float, h: float, p: float) -> None:
    bus, _ = make(Climate(t, h, p))
    reading = open_sensor({"type": "bme280", "bus": 1, "address": 0x76}, bus=bus).read()
    assert reading.temperature_c == pytest.approx(t, abs=0.01)
    assert reading.humidity_pct == pytest.approx(h, abs=0.01)
    assert reading.pressure_hpa == pytest.approx(p, abs=0.01)


def test_driver_with_negative_h4_h5_chip() -> None:
    # A rare chip with small negative H4/H5 (the case unsigned parsers get wrong).
    trim = chip.Calibration(28009, 25654, 50, 39145, -10750, 3024, 5667, -120, -7, 15500, -14600, 6000, 75, 376, 0,
                            -20, -22, -30)  # fmt: skip
    bus, _ = make(Climate(-5.0, 63.0, 990.0), calibration=trim)
    sensor = open_sensor({"type": "bme280", "address": 0x76}, bus=bus)
    assert sensor.calibration == trim  # type: ignore[attr-defined]
    assert sensor.read().humidity_pct == pytest.approx(63.0, abs=0.01)


def test_every_read_triggers_a_new_forced_conversion() -> None:
    climate = Climate(20.0, 40.0, 1000.0)
    bus, device = make(climate)
    sensor = open_sensor({"type": "bme280"}, bus=bus)
    assert sensor.read().temperature_c == pytest.approx(20.0, abs=0.01)
    climate.set(temperature_c=22.0)
    assert sensor.read().temperature_c == pytest.approx(22.0, abs=0.01)
    assert device.conversions == 2
    assert device.regs[chip.REG_CTRL_MEAS] & 0x03 == 0  # back in sleep mode after each forced conversion


def test_without_a_new_trigger_the_chip_returns_stale_data() -> None:
    # The trap the driver avoids: a forced-mode chip read again without a trigger gives the old numbers.
    climate = Climate(20.0, 40.0, 1000.0)
    bus, device = make(climate)
    sensor = open_sensor({"type": "bme280"}, bus=bus)
    sensor.read()
    climate.set(temperature_c=30.0)
    stale = chip.decode(bytes(bus.read_i2c_block_data(0x76, chip.REG_DATA, 8)), device.calibration, "x")[0]
    assert stale.temperature_c == pytest.approx(20.0, abs=0.01)


def test_bmp280_has_no_humidity() -> None:
    bus = FakeBus(1)
    bus.attach(EmulatedBme280(0x77, Climate(18.0, 50.0, 1005.0), chip_id=0x58))
    reading = open_sensor({"type": "bmp280", "address": 0x77}, bus=bus).read()
    assert reading.humidity_pct is None
    assert reading.pressure_hpa == pytest.approx(1005.0, abs=0.01)


def test_wrong_chip_ids_are_named() -> None:
    bus = FakeBus(1)
    bus.attach(EmulatedBme280(0x76, chip_id=0x58))
    with pytest.raises(WrongChipError, match=r"0x58 is a BMP280 .*set type: bmp280"):
        open_sensor({"type": "bme280", "address": 0x76}, bus=bus)
    bus.attach(EmulatedBme280(0x77, chip_id=0x60))
    with pytest.raises(WrongChipError, match="set type: bme280"):
        open_sensor({"type": "bmp280", "address": 0x77}, bus=bus)
    bus.devices[0x76].chip_id = 0x33
    bus.devices[0x76].power_on_reset()
    with pytest.raises(WrongChipError, match="0x33 is not a Bosch"):
        open_sensor({"type": "bme280", "address": 0x76}, bus=bus)


def test_nothing_at_the_address() -> None:
    with pytest.raises(NoDeviceError, match=r"nothing answers at i2c-1 0x77 .*check the wiring and the address"):
        open_sensor({"type": "bme280", "address": 0x77}, bus=FakeBus(1))


def test_unplug_and_bus_errors() -> None:
    bus, device = make()
    sensor = open_sensor({"type": "bme280"}, bus=bus)
    device.unplug()
    with pytest.raises(NoDeviceError, match="errno 121"):
        sensor.read()
    device.replug()  # a power-on reset: the driver's per-read setup brings it back
    assert sensor.read().temperature_c == pytest.approx(21.5, abs=0.01)
    device.fail_next(errno.EIO)
    with pytest.raises(NoDeviceError, match="errno 5"):
        sensor.read()
    device.fail_next(errno.EBUSY)
    with pytest.raises(BusError, match="bus error"):
        sensor.read()
    assert sensor.read().temperature_c == pytest.approx(21.5, abs=0.01)


def test_chip_that_never_measures_gives_an_error_not_a_number() -> None:
    bus, device = make()
    device.ignore_trigger = True
    with pytest.raises(NotReadyError, match="reset value"):
        open_sensor({"type": "bme280"}, bus=bus).read()


def test_slow_conversion_is_waited_for_then_refused() -> None:
    bus, device = make()
    sensor = open_sensor({"type": "bme280"}, bus=bus)
    device.slow_s = 0.006  # still measuring after the datasheet maximum: the driver polls the status bit
    assert sensor.read().temperature_c == pytest.approx(21.5, abs=0.01)
    device.slow_s = 0.2
    with pytest.raises(NotReadyError, match="still measuring"):
        sensor.read()


def test_stuck_sensor_detected_after_configured_repeats() -> None:
    bus, device = make()
    sensor = open_sensor({"type": "bme280", "stuck_reads": 3}, bus=bus)
    sensor.read()
    device.stuck = True
    sensor.read()  # same raw values: 2 in a row
    with pytest.raises(StuckSensorError, match="3 times in a row"):
        sensor.read()


def test_erased_calibration_is_refused_at_open() -> None:
    bus, _ = make(nvm=(bytes(26), bytes(7)))
    with pytest.raises(CalibrationError):
        open_sensor({"type": "bme280"}, bus=bus)
