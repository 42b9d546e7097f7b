"""Bosch BME280 / BMP280: calibration parsing and the datasheet's integer compensation (pure), and the driver.

Register map: BME280 datasheet BST-BME280-DS002 Table 18; compensation: sec. 4.2.3 (= Linux bmp280-core.c).
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from sensors.descriptor import SensorType, i2c_keys
from sensors.errors import CalibrationError, NotReadyError, WrongChipError
from sensors.i2c import ENABLE_I2C, I2CPort
from sensors.reading import Reading, StuckDetector, check_range

ADDRESSES = (0x76, 0x77)  # SDO to GND / to VDDIO
REG_CALIB_TP = 0x88  # calib00..25, 26 bytes
REG_CHIP_ID = 0xD0
REG_RESET = 0xE0
REG_CALIB_H = 0xE1  # calib26..32, 7 bytes (BME280 only)
REG_CTRL_HUM = 0xF2
REG_STATUS = 0xF3
REG_CTRL_MEAS = 0xF4
REG_CONFIG = 0xF5
REG_DATA = 0xF7  # press msb/lsb/xlsb, temp msb/lsb/xlsb, hum msb/lsb

CHIP_ID_BME280 = 0x60
CHIP_IDS_BMP280 = (0x58, 0x56, 0x57)  # mass production, samples
RESET_WORD = 0xB6
STATUS_MEASURING = 0x08
STATUS_IM_UPDATE = 0x01
MODE_FORCED = 0b01
OSRS_X1 = 1  # oversampling code for x1 (0 would skip the channel)

# Data register reset values: read back when a channel was skipped or never measured (kernel: -EIO).
SKIPPED_20BIT = 0x80000
SKIPPED_16BIT = 0x8000

# Operating range (Bosch driver clamp limits), used as the plausibility window.
TEMPERATURE_RANGE_C = (-40.0, 85.0)
PRESSURE_RANGE_HPA = (300.0, 1100.0)
HUMIDITY_RANGE_PCT = (0.0, 100.0)


@dataclass(frozen=True)
class Calibration:
    """Factory trim values (datasheet Table 16). The humidity ones are 0 on a BMP280."""

    dig_T1: int
    dig_T2: int
    dig_T3: int
    dig_P1: int
    dig_P2: int
    dig_P3: int
    dig_P4: int
    dig_P5: int
    dig_P6: int
    dig_P7: int
    dig_P8: int
    dig_P9: int
    dig_H1: int = 0
    dig_H2: int = 0
    dig_H3: int = 0
    dig_H4: int = 0
    dig_H5: int = 0
    dig_H6: int = 0


def _sign_extend(value: int, bits: int) -> int:
    sign = 1 << (bits - 1)
    return (value & (sign - 1)) - (value & sign)


def parse_calibration(tp: bytes, h: bytes | None = None) -> Calibration:
    """calib00..25 (from 0x88) and, for a BME280, calib26..32 (from 0xE1) → Calibration.

    dig_H4/dig_H5 are 12-bit signed values packed into nibbles around 0xE5 (Bosch bme280.c:1505-1549);
    several libraries read them unsigned, which only shows on rare chips.
    """
    if len(tp) != 26 or (h is not None and len(h) != 7):
        raise ValueError("calibration blocks must be 26 and 7 bytes")
    t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9 = struct.unpack("<HhhHhhhhhhhh", tp[:24])
    cal = Calibration(t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9)
    if h is None:
        return cal
    return Calibration(
        *(t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9),
        dig_H1=tp[25],
        dig_H2=struct.unpack("<h", h[0:2])[0],
        dig_H3=h[2],
        dig_H4=_sign_extend((h[3] << 4) | (h[4] & 0x0F), 12),
        dig_H5=_sign_extend((h[5] << 4) | (h[4] >> 4), 12),
        dig_H6=_sign_extend(h[6], 8),
    )


def check_calibration(cal: Calibration, where: str) -> None:
    """Garbage trim (erased NVM, a floating bus) would give a plausible-looking number: refuse it."""
    if cal.dig_T1 in (0, 0xFFFF) or cal.dig_P1 in (0, 0xFFFF) or cal.dig_T2 in (0, -1):
        raise CalibrationError(
            f"{where}: the factory calibration reads as garbage (dig_T1={cal.dig_T1}, dig_P1={cal.dig_P1}): "
            "a damaged chip or a noisy bus; check wiring and power"
        )


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero); Python's // floors, which differs for negatives."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def compensate_temperature(adc_t: int, cal: Calibration) -> tuple[int, int]:
    """Raw 20-bit temperature → (T in 0.01 °C, t_fine). Python's >> is an arithmetic shift, like gcc's."""
    var1 = (((adc_t >> 3) - (cal.dig_T1 << 1)) * cal.dig_T2) >> 11
    var2 = (((((adc_t >> 4) - cal.dig_T1) * ((adc_t >> 4) - cal.dig_T1)) >> 12) * cal.dig_T3) >> 14
    t_fine = var1 + var2
    return (t_fine * 5 + 128) >> 8, t_fine


def compensate_pressure(adc_p: int, t_fine: int, cal: Calibration) -> int | None:
    """Raw 20-bit pressure → Pa in Q24.8 (divide by 256), or None when the divisor is 0 (bad trim)."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * cal.dig_P6
    var2 += (var1 * cal.dig_P5) << 17
    var2 += cal.dig_P4 << 35
    var1 = ((var1 * var1 * cal.dig_P3) >> 8) + ((var1 * cal.dig_P2) << 12)
    var1 = (((1 << 47) + var1) * cal.dig_P1) >> 33
    if var1 == 0:
        return None
    p = 1048576 - adc_p
    p = _cdiv(((p << 31) - var2) * 3125, var1)
    var1 = (cal.dig_P9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.dig_P8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (cal.dig_P7 << 4)


def compensate_humidity(adc_h: int, t_fine: int, cal: Calibration) -> int:
    """Raw 16-bit humidity → %RH in Q22.10 (divide by 1024), clamped to 0..100 % as the datasheet does."""
    v = t_fine - 76800
    v = ((((adc_h << 14) - (cal.dig_H4 << 20) - (cal.dig_H5 * v)) + 16384) >> 15) * (
        ((((((v * cal.dig_H6) >> 10) * (((v * cal.dig_H3) >> 11) + 32768)) >> 10) + 2097152) * cal.dig_H2 + 8192) >> 14
    )
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * cal.dig_H1) >> 4)
    v = min(max(v, 0), 419430400)
    return v >> 12


def unpack_data(data: bytes) -> tuple[int, int, int | None]:
    """Burst from 0xF7 (6 or 8 bytes) → (adc_P, adc_T, adc_H or None)."""
    adc_p = (data[0] << 12) | (data[1] << 4) | (data[2] >> 4)
    adc_t = (data[3] << 12) | (data[4] << 4) | (data[5] >> 4)
    adc_h = (data[6] << 8) | data[7] if len(data) >= 8 else None
    return adc_p, adc_t, adc_h


def measurement_time_ms(osrs_t: int, osrs_p: int, osrs_h: int | None) -> float:
    """Maximum forced-mode conversion time (datasheet appendix B); arguments are multipliers, 0 = skipped."""
    t = 1.25 + 2.3 * osrs_t
    if osrs_p:
        t += 2.3 * osrs_p + 0.575
    if osrs_h:
        t += 2.3 * osrs_h + 0.575
    return t


def decode(data: bytes, cal: Calibration, where: str) -> tuple[Reading, tuple[int, ...]]:
    """Burst data → a checked Reading and the raw values (for stuck detection). Raises SensorError."""
    adc_p, adc_t, adc_h = unpack_data(data)
    if SKIPPED_20BIT in (adc_t, adc_p) or adc_h == SKIPPED_16BIT:
        raise NotReadyError(
            f"{where}: the data registers hold their reset value (measurement skipped or not done): "
            "the chip did not measure; check its power"
        )
    t_centi, t_fine = compensate_temperature(adc_t, cal)
    p_q24 = compensate_pressure(adc_p, t_fine, cal)
    if p_q24 is None:
        raise CalibrationError(f"{where}: pressure compensation divides by zero: the calibration data is invalid")
    temperature_c = check_range(where, "temperature", t_centi / 100, TEMPERATURE_RANGE_C, "°C")
    pressure_hpa = check_range(where, "pressure", p_q24 / 25600, PRESSURE_RANGE_HPA, "hPa")
    humidity_pct = None
    if adc_h is not None:
        humidity_pct = check_range(
            where, "humidity", compensate_humidity(adc_h, t_fine, cal) / 1024, HUMIDITY_RANGE_PCT, "%"
        )
    raw = (adc_t, adc_p) if adc_h is None else (adc_t, adc_p, adc_h)
    return Reading(temperature_c, humidity_pct, pressure_hpa), raw


class Bme280:
    """A BME280 (T, P, RH) or BMP280 (T, P) in forced mode, oversampling x1 on every channel.

    Forced mode measures once and sleeps, so every read() triggers a new conversion; reading again
    without the trigger would return the same stale numbers forever.
    """

    def __init__(
        self,
        port: I2CPort,
        kind: str = "bme280",
        stuck_reads: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.port = port
        self.kind = kind
        self.sleep = sleep
        self.source = f"i2c:{kind}@0x{port.address:02x}"
        self.where = port.where
        self.has_humidity = kind == "bme280"
        self._stuck = StuckDetector(self.where, stuck_reads)
        self.chip_id = self._check_chip_id()
        self._reset()
        tp = self.port.read_block(REG_CALIB_TP, 26)
        h = self.port.read_block(REG_CALIB_H, 7) if self.has_humidity else None
        self.calibration = parse_calibration(tp, h)
        check_calibration(self.calibration, self.where)
        # Round the datasheet's maximum up to whole ms: Bosch's integer division truncates 9.3 to 9.
        self.wait_s = math.ceil(measurement_time_ms(1, 1, 1 if self.has_humidity else None)) / 1000

    def _check_chip_id(self) -> int:
        chip_id = self.port.read_u8(REG_CHIP_ID)
        if (chip_id == CHIP_ID_BME280 and self.kind == "bme280") or (
            chip_id in CHIP_IDS_BMP280 and self.kind == "bmp280"
        ):
            return chip_id
        if chip_id == CHIP_ID_BME280:
            found = "a BME280; set type: bme280"
        elif chip_id in CHIP_IDS_BMP280:
            found = "a BMP280 (no humidity); set type: bmp280"
        else:
            found = "not a Bosch BME280/BMP280; check the address"
        raise WrongChipError(f"{self.where}: chip id 0x{chip_id:02x} is {found}")

    def _reset(self) -> None:
        """Soft reset, then wait for the NVM copy (status.im_update) as Bosch's init does."""
        self.port.write_u8(REG_RESET, RESET_WORD)
        self.sleep(0.002)
        for _ in range(5):
            if not self.port.read_u8(REG_STATUS) & STATUS_IM_UPDATE:
                return
            self.sleep(0.002)
        raise NotReadyError(f"{self.where}: still copying its calibration 12 ms after a reset: check the supply")

    def read(self) -> Reading:
        if self.has_humidity:
            self.port.write_u8(REG_CTRL_HUM, OSRS_X1)  # takes effect only with the ctrl_meas write below
        self.port.write_u8(REG_CTRL_MEAS, (OSRS_X1 << 5) | (OSRS_X1 << 2) | MODE_FORCED)
        self.sleep(self.wait_s)
        for _ in range(10):
            if not self.port.read_u8(REG_STATUS) & STATUS_MEASURING:
                break
            self.sleep(0.002)
        else:
            raise NotReadyError(f"{self.where}: still measuring 20 ms after the maximum conversion time")
        data = self.port.read_block(REG_DATA, 8 if self.has_humidity else 6)  # one burst: T/P/H of one conversion
        reading, raw = decode(data, self.calibration, self.where)
        self._stuck.check(raw)
        return reading

    def close(self) -> None:
        self.port.close()


def probe(port: I2CPort) -> str:
    """What answers at a BME280/BMP280 address, by its chip id (for `python -m sensors scan`). Raises SensorError
    when nothing answers."""
    chip_id = port.read_u8(REG_CHIP_ID)
    if chip_id == CHIP_ID_BME280:
        return f"BME280 (chip id 0x{chip_id:02x}) → type: bme280"
    if chip_id in CHIP_IDS_BMP280:
        return f"BMP280 (chip id 0x{chip_id:02x}) → type: bmp280"
    return f"unknown chip (id 0x{chip_id:02x} at 0xD0)"


def _open(port: I2CPort, type_name: str, stuck_reads: int) -> Bme280:
    return Bme280(port, type_name, stuck_reads)


BME280 = SensorType(
    names=("bme280",),
    title="BME280",
    connection="i2c",
    quantities={
        "temperature_c": TEMPERATURE_RANGE_C,
        "humidity_pct": HUMIDITY_RANGE_PCT,
        "pressure_hpa": PRESSURE_RANGE_HPA,
    },
    keys=i2c_keys(ADDRESSES),
    location_key="address",
    open=_open,
    enable=ENABLE_I2C,
    addresses=ADDRESSES,
    probe=probe,
)
# The BMP280 is the same die without the humidity channel; its chip id tells them apart.
BMP280 = SensorType(
    names=("bmp280",),
    title="BMP280",
    connection="i2c",
    quantities={"temperature_c": TEMPERATURE_RANGE_C, "pressure_hpa": PRESSURE_RANGE_HPA},
    keys=i2c_keys(ADDRESSES),
    location_key="address",
    open=_open,
    enable=ENABLE_I2C,
    addresses=ADDRESSES,
    probe=probe,
)
