"""Strava's rate limits: the X-RateLimit-* figures of the last answer, in 15-minute and daily windows (UTC)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

QUARTER_HOUR_S = 900.0
DAY_S = 86400.0


def _pair(value: str | None) -> tuple[int, int] | None:
    """'100,1000' → (100, 1000); None when absent or malformed."""
    if not value:
        return None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def next_quarter_hour_s(now_s: float) -> float:
    """Seconds until the next :00/:15/:30/:45 (Strava's 15-minute windows)."""
    return (math.floor(now_s / QUARTER_HOUR_S) + 1) * QUARTER_HOUR_S - now_s


def next_utc_midnight_s(now_s: float) -> float:
    return (math.floor(now_s / DAY_S) + 1) * DAY_S - now_s


@dataclass
class RateLimits:
    """The last X-RateLimit-* / X-ReadRateLimit-* figures ("15min,daily") and when they were seen."""

    overall_limit: tuple[int, int] | None = None
    overall_usage: tuple[int, int] | None = None
    read_limit: tuple[int, int] | None = None
    read_usage: tuple[int, int] | None = None
    observed_s: float | None = None

    def update(self, headers: Mapping[str, str], now_s: float) -> None:
        seen = False
        for attr, name in (
            ("overall_limit", "X-RateLimit-Limit"),
            ("overall_usage", "X-RateLimit-Usage"),
            ("read_limit", "X-ReadRateLimit-Limit"),
            ("read_usage", "X-ReadRateLimit-Usage"),
        ):
            value = _pair(headers.get(name))
            if value is not None:
                setattr(self, attr, value)
                seen = True
        if seen:
            self.observed_s = now_s

    def _pairs(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        pairs = []
        if self.overall_limit and self.overall_usage:
            pairs.append((self.overall_limit, self.overall_usage))
        if self.read_limit and self.read_usage:
            pairs.append((self.read_limit, self.read_usage))
        return pairs

    def daily_spent(self, now_s: float, reserve: int = 0) -> bool:
        if self.observed_s is None or math.floor(self.observed_s / DAY_S) != math.floor(now_s / DAY_S):
            return False
        return any(usage[1] >= limit[1] - reserve for limit, usage in self._pairs())

    def quarter_spent(self, now_s: float, reserve: int = 0) -> bool:
        if self.observed_s is None:
            return False
        if math.floor(self.observed_s / QUARTER_HOUR_S) != math.floor(now_s / QUARTER_HOUR_S):
            return False
        return any(usage[0] >= limit[0] - reserve for limit, usage in self._pairs())

    def describe(self) -> str:
        parts = []
        if self.read_limit and self.read_usage:
            parts.append(
                f"read {self.read_usage[0]}/{self.read_limit[0]} per 15 min, "
                f"{self.read_usage[1]}/{self.read_limit[1]} a day"
            )
        if self.overall_limit and self.overall_usage:
            parts.append(
                f"all {self.overall_usage[0]}/{self.overall_limit[0]} per 15 min, "
                f"{self.overall_usage[1]}/{self.overall_limit[1]} a day"
            )
        return "; ".join(parts) or "no figures"
