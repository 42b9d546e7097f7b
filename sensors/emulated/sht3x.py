"""A command-level SHT3x: single-shot measurements with the conversion time (reads before it ends are NACKed),
status register, soft reset, CRC on every word; faults: corrupt CRC, stuck."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable

from sensors import sht3x as chip
from sensors.emulated.bus import EmulatedDevice, nack
from sensors.emulated.climate import Climate

SINGLE_SHOT_NO_STRETCH = {0x2400: 0.0125, 0x240B: 0.0045, 0x2416: 0.0025}  # typical durations (datasheet Table 4)
SINGLE_SHOT_STRETCH = {0x2C06, 0x2C0D, 0x2C10}
STATUS_AFTER_RESET = 0x8010  # alert pending + "system reset detected"


def encode_words(*words: int) -> bytes:
    return b"".join(bytes([w >> 8, w & 0xFF, chip.crc8(bytes([w >> 8, w & 0xFF]))]) for w in words)


def raw_temperature(temperature_c: float) -> int:
    return min(0xFFFF, max(0, round((temperature_c + 45) * 65535 / 175)))


def raw_humidity(humidity_pct: float) -> int:
    return min(0xFFFF, max(0, round(humidity_pct * 65535 / 100)))


class EmulatedSht3x(EmulatedDevice):
    def __init__(
        self, address: int = 0x44, climate: Climate | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(address)
        self.climate = climate or Climate()
        self.clock = clock
        self.corrupt_crc = 0  # corrupt the CRC of the next n answers
        self.stuck = False
        self.resets = 0
        self.power_on_reset()

    def power_on_reset(self) -> None:
        self.status = STATUS_AFTER_RESET
        self._answer: bytes | None = None
        self._ready_at = 0.0
        self._last_raw: tuple[int, int] | None = None

    def write_bytes(self, data: bytes) -> None:
        now = self.clock()
        if now < self._ready_at:
            raise nack()  # busy converting: the address is not acknowledged
        if len(data) != 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))  # not a 16-bit command: the chip NAKs the data byte
        command = (data[0] << 8) | data[1]
        if command in SINGLE_SHOT_NO_STRETCH or command in SINGLE_SHOT_STRETCH:
            t_c, h_pct, _ = self.climate.sample()
            raw = (raw_temperature(t_c), raw_humidity(h_pct))
            if self.stuck and self._last_raw is not None:
                raw = self._last_raw
            self._last_raw = raw
            self._answer = encode_words(*raw)
            # With clock stretching the read would simply wait; emulated as "ready at once".
            self._ready_at = now + SINGLE_SHOT_NO_STRETCH.get(command, 0.0)
        elif command == chip.CMD_READ_STATUS:
            self._answer = encode_words(self.status)
        elif command == chip.CMD_CLEAR_STATUS:
            self.status &= ~0x8C13 & 0xFFFF  # clears alert, trackings, reset-detected, command/CRC status
        elif command == chip.CMD_SOFT_RESET:
            self.resets += 1
            self.power_on_reset()
            self._ready_at = now + 0.0015
        else:
            self.status |= 0x0002  # "last command not processed"
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    def read_bytes(self, length: int) -> bytes:
        if self._answer is None or self.clock() < self._ready_at:
            raise nack()  # no data yet, or already fetched
        answer, self._answer = self._answer, None
        if self.corrupt_crc > 0:
            self.corrupt_crc -= 1
            answer = bytes(b ^ 0x01 if i % 3 == 2 else b for i, b in enumerate(answer))
        return (answer + b"\xff" * length)[:length]
