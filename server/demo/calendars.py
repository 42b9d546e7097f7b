"""The demo's two calendars as real ICS text: a family feed (Google-style) and a work feed (Outlook-style).

Both are functions of the clock, so the wall always has something today: recurring events (weekly, every other
week, weekdays with a cancelled and a moved instance), all-day events (a birthday, a school break over several
days) and one event in progress. Plain words only: hostile strings live in the tests.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from server.config import CalendarConfig, CalendarFeedConfig

DEMO_CALENDAR = CalendarConfig(
    calendars=(
        CalendarFeedConfig(name="Family", url="demo-family", color="#e07a5f"),
        CalendarFeedConfig(name="Work", url="demo-work", color="#5b8def"),
    )
)
_STOCKHOLM = ZoneInfo("Europe/Stockholm")
_SERIES_START = dt.date(2025, 1, 6)  # a Monday: the recurring series began long ago, as real ones do

_OUTLOOK_TZ = """BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE"""


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _day(value: dt.date) -> str:
    return value.strftime("%Y%m%d")


def _event(uid: str, *lines: str) -> str:
    return "\n".join(["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20250101T000000Z", *lines, "END:VEVENT"])


def _wrap(name: str, extra: list[str], events: list[str]) -> bytes:
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Homeboard//Demo//EN", "CALSCALE:GREGORIAN"]
    text = "\n".join([*head, f"X-WR-CALNAME:{name}", *extra, *events, "END:VCALENDAR"])
    return (text.replace("\n", "\r\n") + "\r\n").encode("utf-8")


def family_ics(now_s: float) -> bytes:
    now = dt.datetime.fromtimestamp(now_s, _STOCKHOLM)
    today = now.date()
    hour_start = now.replace(minute=0, second=0, microsecond=0)
    monday = today - dt.timedelta(days=today.weekday())
    break_start = monday + dt.timedelta(days=9)  # Wednesday next week
    events = [
        _event(
            "swim@family",
            f"DTSTART;TZID=Europe/Stockholm:{_day(_SERIES_START)}T173000",
            f"DTEND;TZID=Europe/Stockholm:{_day(_SERIES_START)}T183000",
            "RRULE:FREQ=WEEKLY;BYDAY=TU",
            "SUMMARY:Swimming lessons",
            "LOCATION:Eriksdalsbadet",
        ),
        _event(
            "football@family",
            f"DTSTART;TZID=Europe/Stockholm:{_day(_SERIES_START)}T180000",
            f"DTEND;TZID=Europe/Stockholm:{_day(_SERIES_START)}T193000",
            "RRULE:FREQ=WEEKLY;BYDAY=TH,SA",
            "SUMMARY:Football practice",
            "LOCATION:Zinkensdamms IP",
        ),
        _event(
            "recycling@family",
            f"DTSTART;VALUE=DATE:{_day(_SERIES_START + dt.timedelta(days=3))}",
            "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TH",
            "SUMMARY:Recycling day",
        ),
        _event(
            "birthday@family",
            f"DTSTART;VALUE=DATE:{_day(today + dt.timedelta(days=2))}",
            f"DTEND;VALUE=DATE:{_day(today + dt.timedelta(days=3))}",
            "SUMMARY:Grandma's birthday",
        ),
        _event(
            "break@family",
            f"DTSTART;VALUE=DATE:{_day(break_start)}",
            f"DTEND;VALUE=DATE:{_day(break_start + dt.timedelta(days=3))}",
            "SUMMARY:School break",
        ),
        _event(
            f"now-{_day(today)}@family",
            f"DTSTART:{_utc(hour_start - dt.timedelta(minutes=30))}",
            f"DTEND:{_utc(hour_start + dt.timedelta(minutes=150))}",
            "SUMMARY:Visit from the neighbours" if 8 <= now.hour < 20 else "Movie night",
            "LOCATION:Home",
        ),
        _event(
            f"dentist-{_day(today)}@family",
            f"DTSTART:{_utc(dt.datetime.combine(today + dt.timedelta(days=1), dt.time(8, 15), _STOCKHOLM))}",
            f"DTEND:{_utc(dt.datetime.combine(today + dt.timedelta(days=1), dt.time(9, 0), _STOCKHOLM))}",
            "SUMMARY:Dentist, Elsa",
            "LOCATION:Folktandvården Hornstull",
        ),
    ]
    return _wrap("Family", ["X-WR-TIMEZONE:Europe/Stockholm"], events)


def work_ics(now_s: float) -> bytes:
    today = dt.datetime.fromtimestamp(now_s, _STOCKHOLM).date()
    monday = today - dt.timedelta(days=today.weekday())
    skipped = monday + dt.timedelta(days=7 + 2)  # next week's Wednesday stand-up is cancelled
    moved = monday + dt.timedelta(days=7 + 3)  # next week's Thursday stand-up is in the afternoon
    tz = "TZID=W. Europe Standard Time"
    events = [
        _event(
            "standup@work",
            f"DTSTART;{tz}:{_day(_SERIES_START)}T091500",
            f"DTEND;{tz}:{_day(_SERIES_START)}T093000",
            "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
            f"EXDATE;{tz}:{_day(skipped)}T091500",
            "SUMMARY:Stand-up",
            "LOCATION:Teams",
        ),
        _event(
            "standup@work",
            f"RECURRENCE-ID;{tz}:{_day(moved)}T091500",
            f"DTSTART;{tz}:{_day(moved)}T140000",
            f"DTEND;{tz}:{_day(moved)}T141500",
            "SUMMARY:Stand-up (moved)",
            "LOCATION:Teams",
        ),
        _event(
            "one-on-one@work",
            f"DTSTART;{tz}:{_day(_SERIES_START + dt.timedelta(days=1))}T130000",
            "DURATION:PT45M",
            "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU",
            "SUMMARY:1:1 with Maria",
        ),
        _event(
            "review@work",
            f"DTSTART;{tz}:{_day(_SERIES_START + dt.timedelta(days=4))}T150000",
            f"DTEND;{tz}:{_day(_SERIES_START + dt.timedelta(days=4))}T160000",
            "RRULE:FREQ=MONTHLY;BYDAY=-1FR",
            "SUMMARY:Monthly review",
            "LOCATION:Room Saturnus",
        ),
        _event(
            f"offsite-{_day(monday)}@work",
            f"DTSTART;VALUE=DATE:{_day(monday + dt.timedelta(days=11))}",
            f"DTEND;VALUE=DATE:{_day(monday + dt.timedelta(days=13))}",
            "SUMMARY:Team offsite",
            "LOCATION:Sigtuna",
        ),
    ]
    return _wrap("Work", [_OUTLOOK_TZ], events)


def feed_ics(index: int, now_s: float) -> bytes:
    """Feed `index` of the demo config (any further configured calendars repeat the two)."""
    return (family_ics, work_ics)[index % 2](now_s)
