"""A sensor reading: the one type every path uses (wired, LAN POST, MQTT, a leader's share), and its rules.

What a reading may hold is declared once, here: the quantities with their units and plausible ranges, and the
time rules (never in the future, never older than the history keeps). Every way a reading arrives builds it with
`make_reading`, so one validation holds for all of them; the ordering rule lives in server.readings.path.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

MAX_FUTURE_S = 300.0  # a device clock a little ahead is fine; more is a wrong clock


@dataclass(frozen=True, slots=True)
class Quantity:
    """A physical quantity a reading may carry: its unit and the range a real one can have."""

    low: float
    high: float
    unit: str


# The plausible ranges of anything measured in a home: wider than any one chip (a chip's own range is in its
# descriptor under sensors/), narrow enough that a garbage value never reaches the wall or the history.
QUANTITIES: dict[str, Quantity] = {
    "temperature_c": Quantity(-60.0, 85.0, "°C"),
    "humidity_pct": Quantity(0.0, 100.0, "%"),
    "pressure_hpa": Quantity(300.0, 1100.0, "hPa"),
    "battery_pct": Quantity(0.0, 100.0, "%"),
}
SHOWN = ("temperature_c", "humidity_pct", "pressure_hpa")  # what the wall and the history chart show


class ReadingError(ValueError):
    """A reading that must not be shown or stored; str() starts with the field it is about."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement of one sensor, in physical units; a quantity it did not measure is None.

    Built only by make_reading (validated); `measured_at_s` is epoch seconds and stays a number all the way to
    the history and the topic, where it is written as ISO 8601 once.
    """

    sensor_id: str
    measured_at_s: float
    temperature_c: float | None = None
    humidity_pct: float | None = None
    pressure_hpa: float | None = None
    battery_pct: float | None = None
    source: str = ""

    def topic_data(self, name: str, tz: dt.tzinfo) -> dict[str, Any]:
        """The `sensor/{id}` topic's data (CONTRACT): the values as measured, unrounded."""
        data: dict[str, Any] = {
            "name": name,
            "temperature_c": self.temperature_c,
            "humidity_pct": self.humidity_pct,
            "pressure_hpa": self.pressure_hpa,
            "measured_at": iso_time(self.measured_at_s, tz),
            "source": self.source,
        }
        if self.battery_pct is not None:
            data["battery_pct"] = self.battery_pct
        return data


def check_quantity(field: str, value: Any) -> float:
    """A number for `field`: finite, not a bool, within its plausible range. Raises ReadingError."""
    quantity = QUANTITIES[field]
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = {str: "a string", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
        raise ReadingError(field, f"expected a number, got {kind}")
    number = float(value)
    if not math.isfinite(number):
        raise ReadingError(field, "is not a finite number")
    if not quantity.low <= number <= quantity.high:
        low, high, unit = quantity.low, quantity.high, quantity.unit
        raise ReadingError(field, f"{number:g} {unit} is outside the plausible range {low:g}..{high:g} {unit}")
    return number


def make_reading(
    sensor_id: str,
    values: dict[str, Any],
    *,
    measured_at_s: float | None,
    now_s: float,
    max_age_s: float,
    source: str,
) -> Reading:
    """The one validation: every quantity finite and plausible, at least one present, a sane time.

    `values` maps quantity names to numbers (None or absent: not measured); `measured_at_s` None means "now"
    (a device without a clock). Raises ReadingError naming the first bad field.
    """
    checked: dict[str, float | None] = {}
    for field in QUANTITIES:
        value = values.get(field)
        checked[field] = None if value is None else check_quantity(field, value)
    if all(checked[field] is None for field in SHOWN):
        raise ReadingError("body", f"no quantity: send at least one of {', '.join(SHOWN)}")
    at = now_s if measured_at_s is None else measured_at_s
    if not math.isfinite(at):
        raise ReadingError("measured_at", "is not a finite time")
    if at > now_s + MAX_FUTURE_S:
        raise ReadingError("measured_at", "more than 5 minutes in the future: check the device's clock")
    if at < now_s - max_age_s:
        raise ReadingError(
            "measured_at", f"older than the history keeps ({max_age_s / 86400:g} days): check the device's clock"
        )
    return Reading(sensor_id, at, source=source, **checked)


def iso_time(epoch_s: float, tz: dt.tzinfo) -> str:
    """ISO 8601 with offset; milliseconds only when the time has them (a device's own stamp may)."""
    ms = round(epoch_s * 1000)
    spec = "milliseconds" if ms % 1000 else "seconds"
    return dt.datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec=spec)
