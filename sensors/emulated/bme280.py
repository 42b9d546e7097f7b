"""A register-level BME280/BMP280: calibration NVM, soft reset, forced/normal mode with conversion time,
the status bits, reset values in the data registers, and raw values made from physical quantities through
the inverse of the datasheet compensation (so the real driver decodes them)."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from sensors import bme280 as chip
from sensors.emulated.bus import RegisterDevice
from sensors.emulated.climate import Climate

# A real chip's trim (pimoroni/bme280-python tests/calibration.py).
REAL_TRIM = chip.Calibration(
    28009, 25654, 50, 39145, -10750, 3024, 5667, -120, -7, 15500, -14600, 6000, 75, 376, 0, 286, 50, 30
)
OVERSAMPLING = (0, 1, 2, 4, 8, 16, 16, 16)  # osrs code → multiplier (0: skipped)


def calibration_bytes(cal: chip.Calibration) -> tuple[bytes, bytes]:
    """The inverse of parse_calibration: (calib00..25 at 0x88, calib26..32 at 0xE1), nibble packing included."""
    tp = struct.pack(
        "<HhhHhhhhhhhh",
        *(cal.dig_T1, cal.dig_T2, cal.dig_T3, cal.dig_P1, cal.dig_P2, cal.dig_P3),
        *(cal.dig_P4, cal.dig_P5, cal.dig_P6, cal.dig_P7, cal.dig_P8, cal.dig_P9),
    )
    tp += bytes([0x00, cal.dig_H1])  # 0xA0 is reserved
    h4, h5 = cal.dig_H4 & 0xFFF, cal.dig_H5 & 0xFFF
    h = struct.pack("<h", cal.dig_H2) + bytes([cal.dig_H3, h4 >> 4, (h4 & 0x0F) | ((h5 & 0x0F) << 4), h5 >> 4])
    return tp, h + bytes([cal.dig_H6 & 0xFF])


def _search(lo: int, hi: int, too_low: Callable[[int], bool]) -> int:
    """The smallest x in [lo, hi] with not too_low(x) (or hi): a bisection over a monotonic function."""
    while lo < hi:
        mid = (lo + hi) // 2
        if too_low(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo


def raw_temperature(temperature_c: float, cal: chip.Calibration) -> int:
    """adc_T whose compensated t_fine is closest above temperature_c · 5120 (T = t_fine / 5120)."""
    target = temperature_c * 5120
    return _search(0, 0xFFFFF, lambda adc: chip.compensate_temperature(adc, cal)[1] < target)


def raw_pressure(pressure_hpa: float, t_fine: int, cal: chip.Calibration) -> int:
    """adc_P for pressure_hpa at t_fine; compensated pressure falls as adc_P rises."""
    target = pressure_hpa * 25600

    def too_low(adc: int) -> bool:
        p = chip.compensate_pressure(adc, t_fine, cal)
        return p is not None and p > target

    return _search(0, 0xFFFFF, too_low)


def raw_humidity(humidity_pct: float, t_fine: int, cal: chip.Calibration) -> int:
    target = humidity_pct * 1024
    return _search(0, 0xFFFF, lambda adc: chip.compensate_humidity(adc, t_fine, cal) < target)


def _avoid_reset_value(raw: int, reset: int) -> int:
    # A real conversion can in theory produce the reset pattern; keep the emulation unambiguous.
    return raw + 1 if raw == reset else raw


class EmulatedBme280(RegisterDevice):
    """Faults on top of the bus ones: stuck (data registers freeze), ignore_trigger (the chip never converts,
    its data registers keep their reset values), slow_s (conversions take longer than the datasheet maximum)."""

    def __init__(
        self,
        address: int = 0x76,
        climate: Climate | None = None,
        *,
        chip_id: int = chip.CHIP_ID_BME280,
        calibration: chip.Calibration = REAL_TRIM,
        nvm: tuple[bytes, bytes] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(address)
        self.climate = climate or Climate()
        self.chip_id = chip_id
        self.has_humidity = chip_id == chip.CHIP_ID_BME280
        self.calibration = calibration
        self.nvm = nvm or calibration_bytes(calibration)
        self.clock = clock
        self.stuck = False
        self.ignore_trigger = False
        self.slow_s = 0.0
        self.conversions = 0
        self.regs = bytearray(256)
        self.power_on_reset()

    def power_on_reset(self) -> None:
        regs = self.regs
        regs[:] = bytes(256)
        regs[chip.REG_CHIP_ID] = self.chip_id
        tp, h = self.nvm
        regs[chip.REG_CALIB_TP : chip.REG_CALIB_TP + 26] = tp
        if self.has_humidity:
            regs[chip.REG_CALIB_H : chip.REG_CALIB_H + 7] = h
        regs[chip.REG_DATA : chip.REG_DATA + 8] = bytes([0x80, 0, 0, 0x80, 0, 0, 0x80, 0])
        self._done_at: float | None = None
        self._pending: bytes | None = None
        self._im_update_until = self.clock() + 0.001
        self._osrs_h = 0

    # ---------------------------------------------------------------- conversions

    def _convert(self, osrs_t: int, osrs_p: int, osrs_h: int) -> bytes:
        """Data registers 0xF7..0xFE for the climate now; skipped channels keep their reset values."""
        t_c, h_pct, p_hpa = self.climate.sample()
        cal = self.calibration
        adc_t = _avoid_reset_value(raw_temperature(t_c, cal), chip.SKIPPED_20BIT) if osrs_t else chip.SKIPPED_20BIT
        t_fine = chip.compensate_temperature(adc_t, cal)[1]
        adc_p = chip.SKIPPED_20BIT
        if osrs_p:
            adc_p = _avoid_reset_value(raw_pressure(p_hpa, t_fine, cal), chip.SKIPPED_20BIT)
        adc_h = chip.SKIPPED_16BIT
        if osrs_h and self.has_humidity:
            adc_h = _avoid_reset_value(raw_humidity(h_pct, t_fine, cal), chip.SKIPPED_16BIT)
        pressure = [adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4]
        temperature = [adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4]
        return bytes([*pressure, *temperature, adc_h >> 8, adc_h & 0xFF])

    def _start(self) -> None:
        meas = self.regs[chip.REG_CTRL_MEAS]
        osrs_t, osrs_p = OVERSAMPLING[meas >> 5], OVERSAMPLING[(meas >> 2) & 7]
        osrs_h = OVERSAMPLING[self._osrs_h] if self.has_humidity else 0
        # Typical conversion time (datasheet appendix B): 1 + 2·t + (2·p + 0.5) + (2·h + 0.5) ms.
        typical_ms = 1 + 2 * osrs_t + (2 * osrs_p + 0.5 if osrs_p else 0) + (2 * osrs_h + 0.5 if osrs_h else 0)
        self._done_at = self.clock() + typical_ms / 1000 + self.slow_s
        self._pending = self._convert(osrs_t, osrs_p, osrs_h)
        self.conversions += 1

    def start_transaction(self) -> None:
        mode = self.regs[chip.REG_CTRL_MEAS] & 0x03
        if mode == 0b11 and self._done_at is None:
            self._start()  # normal mode: convert continuously (t_standby is not modelled)
        if self._done_at is not None and self.clock() >= self._done_at:
            if not self.stuck:
                self.regs[chip.REG_DATA : chip.REG_DATA + 8] = self._pending or b""
            self._done_at, self._pending = None, None
            if mode in (0b01, 0b10):
                self.regs[chip.REG_CTRL_MEAS] &= 0xFC  # forced mode: back to sleep after one conversion

    # ---------------------------------------------------------------- registers

    def read_register(self, register: int) -> int:
        if register == chip.REG_STATUS:
            measuring = self._done_at is not None
            im_update = self.clock() < self._im_update_until
            return (chip.STATUS_MEASURING if measuring else 0) | (chip.STATUS_IM_UPDATE if im_update else 0)
        if register == chip.REG_RESET:
            return 0x00
        if register == chip.REG_CTRL_HUM and not self.has_humidity:
            return 0x00
        return self.regs[register]

    def write_register(self, register: int, value: int) -> None:
        if register == chip.REG_RESET:
            if value == chip.RESET_WORD:  # other values are ignored (datasheet 5.4.2)
                self.power_on_reset()
        elif register == chip.REG_CTRL_HUM and self.has_humidity:
            self.regs[register] = value & 0x07  # latched only by the next ctrl_meas write
        elif register == chip.REG_CTRL_MEAS:
            self.regs[register] = value
            self._osrs_h = self.regs[chip.REG_CTRL_HUM]
            if value & 0x03 in (0b01, 0b10) and not self.ignore_trigger:
                self._start()
        elif register == chip.REG_CONFIG:
            self.regs[register] = value & 0xFD
        # Chip id, calibration and data registers are read-only: writes are ignored, as on the chip.
