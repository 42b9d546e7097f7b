"""A register-level MCP9808: 16-bit registers sent MSB first, ids, resolution, limits and the T_A flag bits."""

from __future__ import annotations

import math

from sensors import mcp9808 as chip
from sensors.emulated.bus import RegisterDevice
from sensors.emulated.climate import Climate

RESOLUTION_STEP_C = (0.5, 0.25, 0.125, 0.0625)


def encode_temperature(temperature_c: float, step_c: float = 0.0625) -> int:
    """°C → the 13-bit two's-complement field of T_A (bits 12..0), quantised down like the ADC."""
    value = math.floor(temperature_c / step_c) * step_c
    return round(value * 16) & 0x1FFF


def decode_limit(word: int) -> float:
    return chip.temperature_c(word & 0x1FFC)


class EmulatedMcp9808(RegisterDevice):
    def __init__(self, address: int = 0x18, climate: Climate | None = None, *, revision: int = 0x00) -> None:
        super().__init__(address)
        self.climate = climate or Climate()
        self.revision = revision
        self.stuck = False
        self.power_on_reset()

    def power_on_reset(self) -> None:
        self.words = {
            chip.REG_CONFIG: 0x0000,
            chip.REG_T_UPPER: 0x0000,  # limits power up at 0 °C, so the flag bits are set in any warm room
            chip.REG_T_LOWER: 0x0000,
            chip.REG_T_CRIT: 0x0000,
            chip.REG_MANUFACTURER_ID: chip.MANUFACTURER_ID,
            chip.REG_DEVICE_ID: (chip.DEVICE_ID << 8) | self.revision,
        }
        self.resolution = 0x03
        self._last_t_a: int | None = None
        self._byte_index = 0

    def _t_a(self) -> int:
        if self.stuck and self._last_t_a is not None:
            return self._last_t_a
        t_c = self.climate.sample()[0]
        word = encode_temperature(t_c, RESOLUTION_STEP_C[self.resolution])
        if t_c >= decode_limit(self.words[chip.REG_T_CRIT]):
            word |= 0x8000
        if t_c > decode_limit(self.words[chip.REG_T_UPPER]):
            word |= 0x4000
        if t_c < decode_limit(self.words[chip.REG_T_LOWER]):
            word |= 0x2000
        self._last_t_a = word
        return word

    def start_transaction(self) -> None:
        self._byte_index = 0
        self._word_cache: int | None = None

    def read_register(self, register: int) -> int:
        # The pointer does not auto-increment on this chip: a burst returns the pointed register's bytes.
        reg = self.pointer
        index, self._byte_index = self._byte_index, self._byte_index + 1
        if reg == chip.REG_RESOLUTION:
            return self.resolution if index == 0 else 0xFF
        if reg == chip.REG_T_A:
            if self._word_cache is None:
                self._word_cache = self._t_a()
            word = self._word_cache
        else:
            word = self.words.get(reg, 0x0000)
        return (word >> 8, word & 0xFF)[index] if index < 2 else 0xFF

    def read_bytes(self, length: int) -> bytes:
        self.start_transaction()
        return bytes(self.read_register(self.pointer) for _ in range(length))

    def write_bytes(self, data: bytes) -> None:
        self.start_transaction()
        if not data:
            return
        self.pointer = data[0]
        payload = data[1:]
        if self.pointer == chip.REG_RESOLUTION and payload:
            self.resolution = payload[0] & 0x03
        elif (
            self.pointer in (chip.REG_CONFIG, chip.REG_T_UPPER, chip.REG_T_LOWER, chip.REG_T_CRIT) and len(payload) >= 2
        ):
            word = (payload[0] << 8) | payload[1]
            self.words[self.pointer] = word & (0x07FF if self.pointer == chip.REG_CONFIG else 0x1FFC)

    def write_register(self, register: int, value: int) -> None:  # pragma: no cover - write_bytes handles writes
        raise NotImplementedError
