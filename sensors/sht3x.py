"""Sensirion SHT3x (SHT30/31/35): CRC-8 and conversion (pure), and a single-shot driver over bare I2C transfers.

The chip has no register address, so commands go out as bare writes through i2c_rdwr. Clock stretching
is avoided (the BCM283x I2C master mishandles it): command 0x2400, then wait, then a separate read.
Datasheet SHT3x-DIS sec. 4.4, 4.13, Table 9, Table 20.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sensors.descriptor import SensorType, i2c_keys
from sensors.errors import CrcError
from sensors.i2c import ENABLE_I2C, I2CPort
from sensors.reading import Reading, StuckDetector, check_range

ADDRESSES = (0x44, 0x45)  # ADDR pin low / high
CMD_MEASURE_HIGH_NO_STRETCH = 0x2400
CMD_SOFT_RESET = 0x30A2
CMD_READ_STATUS = 0xF32D
CMD_CLEAR_STATUS = 0x3041
MEASURE_WAIT_S = 0.016  # high repeatability: 15.5 ms max (datasheet); Sensirion's driver waits 16 ms
RESET_WAIT_S = 0.002
COMMAND_WAIT_S = 0.001  # the chip needs 1 ms between commands (tIDLE)

TEMPERATURE_RANGE_C = (-40.0, 125.0)
HUMIDITY_RANGE_PCT = (0.0, 100.0)


def crc8(data: bytes) -> int:
    """Sensirion CRC-8: polynomial 0x31, init 0xFF, no reflection, no final XOR. crc8(b"\\xbe\\xef") == 0x92."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def split_words(data: bytes, where: str) -> list[int]:
    """[msb, lsb, crc] * n → n 16-bit words, every CRC checked."""
    words = []
    for i in range(0, len(data), 3):
        chunk = data[i : i + 3]
        if len(chunk) != 3 or crc8(chunk[:2]) != chunk[2]:
            raise CrcError(
                f"{where}: CRC mismatch in the measurement data: noise on the I2C lines "
                "(check cable length and pull-ups)"
            )
        words.append((chunk[0] << 8) | chunk[1])
    return words


def temperature_c(raw: int) -> float:
    """S_T → °C (datasheet sec. 4.13): T = -45 + 175 · S_T / (2^16 - 1)."""
    return -45 + 175 * raw / 65535


def humidity_pct(raw: int) -> float:
    """S_RH → %RH: RH = 100 · S_RH / (2^16 - 1)."""
    return 100 * raw / 65535


def decode(data: bytes, where: str) -> tuple[Reading, tuple[int, int]]:
    """The 6-byte answer to a measurement → a checked Reading and the raw words."""
    raw_t, raw_rh = split_words(data, where)
    t = check_range(where, "temperature", temperature_c(raw_t), TEMPERATURE_RANGE_C, "°C")
    rh = check_range(where, "humidity", humidity_pct(raw_rh), HUMIDITY_RANGE_PCT, "%")
    return Reading(t, rh, None), (raw_t, raw_rh)


class Sht3x:
    """Single-shot, high repeatability, no clock stretching. A CRC failure is retried once with a new
    measurement; a second one in a row soft-resets the chip and is reported."""

    def __init__(self, port: I2CPort, stuck_reads: int = 0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.port = port
        self.sleep = sleep
        self.source = f"i2c:sht3x@0x{port.address:02x}"
        self.where = port.where
        self._stuck = StuckDetector(self.where, stuck_reads)
        self.crc_resets = 0
        self.status = self.read_status()  # proves an SHT3x answers: a status word with a valid CRC

    def _command(self, command: int) -> None:
        self.port.write_raw([command >> 8, command & 0xFF])

    def read_status(self) -> int:
        self._command(CMD_READ_STATUS)
        self.sleep(COMMAND_WAIT_S)
        return split_words(self.port.read_raw(3), self.where)[0]

    def soft_reset(self) -> None:
        self._command(CMD_SOFT_RESET)
        self.sleep(RESET_WAIT_S)

    def _measure(self) -> bytes:
        self._command(CMD_MEASURE_HIGH_NO_STRETCH)
        # Separate transfers: a read before the conversion ends is NACKed (errno 121), not stretched.
        self.sleep(MEASURE_WAIT_S)
        return self.port.read_raw(6)

    def read(self) -> Reading:
        try:
            reading, raw = decode(self._measure(), self.where)
        except CrcError:
            try:
                reading, raw = decode(self._measure(), self.where)
            except CrcError as err:
                self.soft_reset()
                self.crc_resets += 1
                raise CrcError(f"{err} (twice in a row; the chip was soft-reset)") from err
        self._stuck.check(raw)
        return reading

    def close(self) -> None:
        self.port.close()


def probe(port: I2CPort) -> str:
    """What answers at an SHT3x address: its status word with a valid CRC (for `python -m sensors scan`)."""
    port.write_raw([CMD_READ_STATUS >> 8, CMD_READ_STATUS & 0xFF])
    data = port.read_raw(3)
    if crc8(data[:2]) != data[2]:
        return "something without a valid SHT3x status CRC"
    return f"SHT3x (status 0x{(data[0] << 8) | data[1]:04x}) → type: sht31"


def _open(port: I2CPort, type_name: str, stuck_reads: int) -> Sht3x:
    return Sht3x(port, stuck_reads)


# SHT30, SHT31 and SHT35 differ in accuracy only: same commands, conversion and range.
SHT3X = SensorType(
    names=("sht31", "sht30", "sht35", "sht3x"),
    title="SHT3x",
    connection="i2c",
    quantities={"temperature_c": TEMPERATURE_RANGE_C, "humidity_pct": HUMIDITY_RANGE_PCT},
    keys=i2c_keys(ADDRESSES),
    location_key="address",
    open=_open,
    enable=ENABLE_I2C,
    addresses=ADDRESSES,
    probe=probe,
)
