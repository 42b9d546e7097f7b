"""What a driver's read() returns, and the helpers every driver shares (range checks, stuck detection)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sensors.errors import ImplausibleValueError, StuckSensorError


@dataclass(frozen=True)
class Reading:
    """One measurement in physical units; a quantity the chip does not have is None."""

    temperature_c: float
    humidity_pct: float | None = None
    pressure_hpa: float | None = None


class Sensor(Protocol):
    """What open_sensor returns."""

    source: str  # where it is, for people and the topic's "source": "i2c:bme280@0x76"

    def read(self) -> Reading: ...

    def close(self) -> None: ...


def check_range(where: str, quantity: str, value: float, limits: tuple[float, float], unit: str) -> float:
    """Raise ImplausibleValueError unless limits[0] <= value <= limits[1] (the chip's specified range)."""
    low, high = limits
    if not low <= value <= high:
        raise ImplausibleValueError(
            f"{where}: {quantity} {value:.2f} {unit} is outside the chip's range {low:g}..{high:g} {unit}: "
            "a faulty sensor or a bad connection"
        )
    return value


class StuckDetector:
    """Counts identical raw values in a row; `limit` of 0 turns it off.

    Real ADCs have noise in their low bits, so an exactly repeated raw value over many reads means a
    frozen sensor (or a forced-mode chip that is no longer triggered), not a steady room.
    """

    def __init__(self, where: str, limit: int) -> None:
        self.where = where
        self.limit = limit
        self._last: object = None
        self._count = 0

    def check(self, raw: object) -> None:
        if self.limit <= 0:
            return
        if raw == self._last:
            self._count += 1
        else:
            self._last, self._count = raw, 1
        if self._count >= self.limit:
            raise StuckSensorError(
                f"{self.where}: the same raw value came back {self._count} times in a row: "
                "the sensor looks stuck; power-cycle it or check its supply"
            )
