"""Microchip MCP9808: T_A decoding (pure) and the driver. Datasheet DS25095A.

The datasheet's sample code gets negative temperatures wrong (256 - x instead of x - 256); the value is a
13-bit two's-complement number in 1/16 °C once the three flag bits are masked off.
"""

from __future__ import annotations

from sensors.descriptor import SensorType, i2c_keys
from sensors.errors import WrongChipError
from sensors.i2c import ENABLE_I2C, I2CPort
from sensors.reading import Reading, StuckDetector, check_range

ADDRESSES = tuple(range(0x18, 0x20))  # 0011 A2 A1 A0
REG_CONFIG = 0x01
REG_T_UPPER = 0x02
REG_T_LOWER = 0x03
REG_T_CRIT = 0x04
REG_T_A = 0x05
REG_MANUFACTURER_ID = 0x06
REG_DEVICE_ID = 0x07
REG_RESOLUTION = 0x08
MANUFACTURER_ID = 0x0054
DEVICE_ID = 0x04  # upper byte of register 7; the lower byte is the revision

TEMPERATURE_RANGE_C = (-40.0, 125.0)


def temperature_c(word: int) -> float:
    """The T_A register (MSB first) → °C: flags (bits 15..13) masked, bits 12..0 two's complement, LSB 1/16 °C."""
    value = word & 0x1FFF
    if value & 0x1000:
        value -= 0x2000
    return value / 16


def _word(data: bytes) -> int:
    # The chip sends the MSB first; smbus2's read_word_data would put it in the low byte (SMBus order).
    return (data[0] << 8) | data[1]


class Mcp9808:
    """Continuous conversion (power-up default), 0.0625 °C resolution; read() returns the latest conversion."""

    def __init__(self, port: I2CPort, stuck_reads: int = 0) -> None:
        self.port = port
        self.source = f"i2c:mcp9808@0x{port.address:02x}"
        self.where = port.where
        self._stuck = StuckDetector(self.where, stuck_reads)
        manufacturer = _word(port.read_block(REG_MANUFACTURER_ID, 2))
        device = _word(port.read_block(REG_DEVICE_ID, 2))
        if manufacturer != MANUFACTURER_ID or device >> 8 != DEVICE_ID:
            raise WrongChipError(
                f"{self.where}: manufacturer id 0x{manufacturer:04x} / device id 0x{device:04x} is not an MCP9808 "
                "(expects 0x0054 / 0x04xx): check the address"
            )
        self.revision = device & 0xFF

    def read(self) -> Reading:
        word = _word(self.port.read_block(REG_T_A, 2))
        self._stuck.check(word & 0x1FFF)
        return Reading(check_range(self.where, "temperature", temperature_c(word), TEMPERATURE_RANGE_C, "°C"))

    def close(self) -> None:
        self.port.close()


def probe(port: I2CPort) -> str:
    """What answers at an MCP9808 address: its manufacturer and device ids (for `python -m sensors scan`)."""
    manufacturer = _word(port.read_block(REG_MANUFACTURER_ID, 2))
    device = _word(port.read_block(REG_DEVICE_ID, 2))
    if manufacturer == MANUFACTURER_ID and device >> 8 == DEVICE_ID:
        return f"MCP9808 (manufacturer 0x{manufacturer:04x}, device 0x{device:04x}) → type: mcp9808"
    return f"unknown chip (ids 0x{manufacturer:04x}/0x{device:04x})"


def _open(port: I2CPort, type_name: str, stuck_reads: int) -> Mcp9808:
    return Mcp9808(port, stuck_reads)


MCP9808 = SensorType(
    names=("mcp9808",),
    title="MCP9808",
    connection="i2c",
    quantities={"temperature_c": TEMPERATURE_RANGE_C},
    keys=i2c_keys(ADDRESSES),
    location_key="address",
    open=_open,
    enable=ENABLE_I2C,
    addresses=ADDRESSES,
    probe=probe,
)
