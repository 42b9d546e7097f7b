"""Strava's activities, parsed (pure): SummaryActivity → Activity, this week's totals, the topic `strava` data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from server.sources.fields import Reader
from server.sources.http import upstream_text
from server.sources.strava.oauth import SOURCE


def week_start(now_s: float, tz: dt.tzinfo) -> dt.datetime:
    """Monday 00:00 local time of the week containing now."""
    local = dt.datetime.fromtimestamp(now_s, tz)
    monday = local.date() - dt.timedelta(days=local.weekday())
    return dt.datetime(monday.year, monday.month, monday.day, tzinfo=tz)


def _utc_epoch(text: str) -> float:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if value.tzinfo is None:
        raise ValueError("no offset")
    return value.timestamp()


@dataclass
class Activity:
    start_s: float
    distance_m: float
    moving_time_s: int
    sport_type: str
    data: dict[str, Any] = field(repr=False)


def parse_activity(item: Any, path: str, tz: dt.tzinfo) -> Activity:
    """One SummaryActivity → Activity; raises PayloadError naming the field."""
    r = Reader(SOURCE)
    if not isinstance(item, dict):
        raise r.error(path, "expected an object")
    # start_date is real UTC; start_date_local ends in "Z" too but is wall-clock time: never use it as UTC.
    start_text = r.text(item, "start_date", path)
    try:
        start_s = r.check_epoch(_utc_epoch(start_text), f"{path}.start_date")
    except (ValueError, OverflowError):
        raise r.error(f"{path}.start_date", f'expected an ISO time, got "{upstream_text(start_text, 30)}"') from None
    distance_m = r.number(item, "distance", path, within=(0.0, 1e7))  # up to 10,000 km
    moving_time_s = r.integer(item, "moving_time", path, within=(0.0, 1e7))
    sport_type = r.text(item, "sport_type", path, optional=True) or r.text(item, "type", path)
    heartrate = r.number(item, "average_heartrate", path, optional=True, within=(0.0, 300.0))
    data = {
        "id": r.integer(item, "id", path, within=(1.0, 2.0**63)),
        "name": r.text(item, "name", path, optional=True) or "",  # user text, HTML and all: the page shows text
        "sport_type": sport_type,
        "distance_km": distance_m / 1000.0,  # as received: the page rounds once, for display
        "moving_time_s": moving_time_s,
        "elevation_m": r.number(item, "total_elevation_gain", path, optional=True, within=(0.0, 1e5)),
        "start": dt.datetime.fromtimestamp(start_s, tz).isoformat(timespec="seconds"),
        "average_heartrate": heartrate,
    }
    return Activity(start_s, distance_m, moving_time_s, sport_type, data)


def parse_activities(payload: Any, tz: dt.tzinfo, path: str = "activities") -> list[Activity]:
    r = Reader(SOURCE)
    if not isinstance(payload, list):
        raise r.error(path, "expected a list of activities")
    return [parse_activity(item, f"{path}[{i}]", tz) for i, item in enumerate(payload)]


def week_totals(activities: Sequence[Activity], start_s: float) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(totals, totals by sport_type) of activities from `start_s` on; metres summed, never rounded here."""
    seen: set[Any] = set()
    total_m, total_s, count = 0.0, 0, 0
    by_sport: dict[str, list[float]] = {}
    for activity in activities:
        if activity.start_s < start_s or activity.data["id"] in seen:
            continue
        seen.add(activity.data["id"])
        total_m += activity.distance_m
        total_s += activity.moving_time_s
        count += 1
        sums = by_sport.setdefault(activity.sport_type, [0.0, 0, 0])
        sums[0] += activity.distance_m
        sums[1] += activity.moving_time_s
        sums[2] += 1
    totals = {"distance_km": total_m / 1000.0, "moving_time_s": total_s, "count": count}
    sports = {
        sport: {"distance_km": m / 1000.0, "moving_time_s": int(s), "count": int(n)}
        for sport, (m, s, n) in sorted(by_sport.items())
    }
    return totals, sports


def build_strava_data(
    recent: Sequence[Activity], week: Sequence[Activity], tz: dt.tzinfo, now_s: float, limit: int
) -> dict[str, Any]:
    """Topic `strava` data: newest first (sorted here: Strava's order flips with `after`)."""
    start = week_start(now_s, tz)
    newest = sorted(recent, key=lambda a: a.start_s, reverse=True)[:limit]
    totals, by_sport = week_totals(week, start.timestamp())
    return {
        "activities": [a.data for a in newest],
        "week": totals,
        "week_by_sport": by_sport,
        "week_start": start.isoformat(timespec="seconds"),
    }
