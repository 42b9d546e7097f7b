"""Timestamps as the contract wants them: ISO 8601 with offset, in the configured time zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo


def iso(epoch_s: float | None, tz: dt.tzinfo) -> str | None:
    """Epoch seconds → '2026-11-25T14:05:00+01:00' (second precision), or None."""
    if epoch_s is None:
        return None
    return dt.datetime.fromtimestamp(epoch_s, tz).isoformat(timespec="seconds")


def parse_iso(text: str) -> float:
    """ISO 8601 with offset → epoch seconds. Raises ValueError when there is no offset or it is malformed."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if value.tzinfo is None:
        raise ValueError(f"timestamp without a UTC offset: {text!r}")
    return value.timestamp()


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)
