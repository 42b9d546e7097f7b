"""iCalendar feed → occurrences in one time zone: check, pre-select, parse, expand. Pure; also a child process.

The server never imports icalendar / recurring-ical-events itself: measured with bench/bench_calendar.py, parsing a
5 MB feed in the server process costs 3 MB of imports and leaves it 11 MB larger for good, where this child costs
the server only the download. CalendarSource runs this module as
`python -m server.sources.calendar_ics --zone Europe/Stockholm --from 2026-12-01 --until 2026-12-12` with the
ICS on stdin, and reads one compact JSON object from stdout (see main()).

Why a text-level pre-selection before the libraries: private feeds carry a calendar's whole history (thousands of
past VEVENTs) and icalendar builds a heavy object per property. A one-off event whose dates are far outside the
window cannot show up, so its block is dropped before parsing; anything that might recur (RRULE, RDATE) or move
(RECURRENCE-ID) near the window is kept, and anything the scanner cannot read is kept for the real parser to judge.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

MAX_OCCURRENCES = 3000  # per feed and expansion: a FREQ=MINUTELY rule must not flood the server and the page
SELECT_MARGIN_DAYS = 2  # a date written in any zone is within ±14 h of the same date in ours
_LINE_RE = re.compile(r"\r\n|\n|\r")
_DURATION_RE = re.compile(r"^([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_SELECT_PROPS = ("DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "RECURRENCE-ID")


class FeedError(Exception):
    """The body is not a usable calendar as a whole (not ICS, cut off). The message says what to check."""


def check_feed(body: bytes) -> None:
    """Raise FeedError unless `body` looks like one whole iCalendar file. Cheap: looks at both ends only."""
    head = body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").upper()
    if not head:
        raise FeedError("the link answers with an empty file, not a calendar")
    if not head.startswith(b"BEGIN:VCALENDAR"):
        if head.startswith(b"<") or b"<HTML" in head:
            raise FeedError(
                "the link answers with a web page, not a calendar: use the calendar's ICS (iCal) address, "
                "not the one for viewing it in a browser"
            )
        raise FeedError("the link answers with something that is not a calendar (no BEGIN:VCALENDAR)")
    if b"END:VCALENDAR" not in body[-256:].upper():
        raise FeedError(f"the calendar file was cut off after {len(body)} bytes (no END:VCALENDAR); will retry")


# ---------------------------------------------------------------- text-level split and pre-selection


@dataclass
class RawFeed:
    """The feed cut into text blocks: calendar properties, VTIMEZONEs, VEVENTs (each with its VALARMs)."""

    header: list[str] = field(default_factory=list)
    timezones: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    unterminated: int = 0  # VEVENTs without END:VEVENT (a broken export): left out and counted


# String searches and regexes over the whole text, not a Python loop per line: a 5 MB feed has 150,000 lines.
# Component names are matched as written by every generator seen (upper case), as the libraries' own parsers do.
_TIMEZONE_RE = re.compile(r"(?ms)^BEGIN:VTIMEZONE\r?$.*?^END:VTIMEZONE\r?$")
_UNTIL_RE = re.compile(r"(?i)UNTIL=(\d{8})")


def unfold(body: bytes) -> str:
    """Unfold at the octet level, then decode: a fold may split a UTF-8 character (libical, ical4j do)."""
    for fold in (b"\r\n ", b"\r\n\t", b"\n ", b"\n\t"):  # CRLF first; LF-only files exist too
        if fold in body:
            body = body.replace(fold, b"")
    return body.decode("utf-8", errors="replace").lstrip("\ufeff")


_DELIMITER_RE = re.compile(r"(?im)^(BEGIN|END):(VCALENDAR|VEVENT|VTIMEZONE|VALARM|STANDARD|DAYLIGHT)[ \t]*(?=\r?$)")


def split_feed(text: str) -> RawFeed:
    """VEVENT blocks (a VEVENT cannot nest, so each runs to the first END:VEVENT), VTIMEZONEs, calendar lines."""
    feed = RawFeed()
    if "\nBEGIN:VEVENT" not in text and "\nbegin:vevent" in text.lower():
        # Names are case-insensitive (RFC 5545 §2); every generator seen writes them in capitals, so only a feed
        # that does not pays for this pass.
        text = _DELIMITER_RE.sub(lambda m: f"{m.group(1).upper()}:{m.group(2).upper()}", text)
    parts = text.split("\nBEGIN:VEVENT")
    preamble = parts[0]
    for part in parts[1:]:
        end = part.find("\nEND:VEVENT")
        if end < 0:
            feed.unterminated += 1  # runs into the next BEGIN:VEVENT or the end of the file
            continue
        feed.events.append("BEGIN:VEVENT" + part[: end + len("\nEND:VEVENT")])
    feed.timezones = _TIMEZONE_RE.findall(text) if "BEGIN:VTIMEZONE" in text else []
    depth = 0
    for line in _LINE_RE.split(_TIMEZONE_RE.sub("", preamble)):
        upper = line[:6].upper()
        if upper == "BEGIN:":
            depth += 1
        elif line[:4].upper() == "END:":
            depth -= 1
        elif depth == 1 and line:
            feed.header.append(line)  # VERSION, PRODID, X-WR-TIMEZONE, ...
    return feed


def _split_property(line: str) -> tuple[str, str]:
    """'DTSTART;TZID="a:b":20261201T100000' → ('DTSTART', '20261201T100000'); quoted parameters may hold ':'."""
    if '"' not in line:  # the common case, without a loop over characters
        head, _, value = line.partition(":")
        return head.split(";", 1)[0].upper(), value
    quoted = False
    name_end = -1
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif not quoted:
            if ch in ";:" and name_end < 0:
                name_end = i
            if ch == ":":
                return line[: name_end if name_end >= 0 else i].upper(), line[i + 1 :]
    return line.upper(), ""


def _date_of(value: str) -> dt.date | None:
    try:
        return dt.date(int(value[0:4]), int(value[4:6]), int(value[6:8]))
    except (ValueError, IndexError):
        return None


def _duration_days(value: str) -> int | None:
    m = _DURATION_RE.match(value.strip().upper())
    if not m or m.group(1) == "-":
        return None
    weeks, days, hours = (int(g or 0) for g in m.group(2, 3, 4))
    return weeks * 7 + days + (hours + 23) // 24 + 1


def own_properties(block: str) -> dict[str, str]:
    """The values of the VEVENT's own DTSTART, DTEND, ... (first of each), not those of a nested VALARM."""
    nested: list[tuple[int, int]] = []
    begin = block.find("\nBEGIN:")
    while begin >= 0:
        end = block.find("\nEND:", begin)
        nested.append((begin, len(block) if end < 0 else end))
        begin = -1 if end < 0 else block.find("\nBEGIN:", end)
    props: dict[str, str] = {}
    for name in _SELECT_PROPS:
        at = block.find("\n" + name)
        while at >= 0:
            after = at + 1 + len(name)
            if block[after : after + 1] in (";", ":") and not any(lo <= at < hi for lo, hi in nested):
                line_end = block.find("\n", after)
                props[name] = _split_property(block[at + 1 : None if line_end < 0 else line_end].rstrip("\r"))[1]
                break
            at = block.find("\n" + name, at + 1)
    return props


def might_show(block: str, lo: dt.date, hi: dt.date) -> bool:
    """Can this VEVENT have an occurrence overlapping [lo, hi] (dates, any zone)? True when unsure."""
    props = own_properties(block)
    lo_m, hi_m = lo - dt.timedelta(days=SELECT_MARGIN_DAYS), hi + dt.timedelta(days=SELECT_MARGIN_DAYS)
    start = _date_of(props.get("DTSTART", ""))
    if start is None:
        return True  # let the parser decide (and report) what this is
    if "RDATE" in props:
        return True
    if "RRULE" in props:
        if start > hi_m:
            return False
        until = _UNTIL_RE.search(props["RRULE"])
        return until is None or (_date_of(until.group(1)) or hi_m) >= lo_m
    moved_from = _date_of(props.get("RECURRENCE-ID", ""))
    if moved_from is not None and lo_m <= moved_from <= hi_m:
        return True  # an override of an instance in the window: needed to take the original's place
    if start > hi_m:
        return False
    if "DTEND" in props:
        end = _date_of(props["DTEND"])
    elif "DURATION" in props:
        days = _duration_days(props["DURATION"])
        end = None if days is None else start + dt.timedelta(days=days)
    else:
        end = start + dt.timedelta(days=1)
    return end is None or end >= lo_m


def select(feed: RawFeed, lo: dt.date, hi: dt.date) -> list[str]:
    return [block for block in feed.events if might_show(block, lo, hi)]


# ---------------------------------------------------------------- parse, expand, convert


@dataclass
class Expansion:
    events: list[dict[str, Any]]
    skipped: int  # events or series that could not be read (the rest are shown)
    scanned: int  # VEVENTs in the feed
    parsed: int  # VEVENTs handed to the parser after pre-selection


def _as_text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def _to_zone(value: dt.datetime, tz: dt.tzinfo, floating_tz: dt.tzinfo) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=floating_tz)  # a floating time: the same wall time where it is read
    return value.astimezone(tz).replace(microsecond=0)


def floating_zone(header: list[str], tz: dt.tzinfo) -> dt.tzinfo:
    """Where floating times are: the feed's X-WR-TIMEZONE (IANA or a Windows name, as CLDR maps it), else `tz`.

    Only floating times: unlike x_wr_timezone.to_standard (which recurring_ical_events.of applies), a UTC
    DTSTART keeps its UTC time through a DST change, as RFC 5545 §3.8.5.3 says.
    """
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    for line in header:
        name, value = _split_property(line)
        if name == "X-WR-TIMEZONE":
            value = value.strip().strip('"')
            try:
                return ZoneInfo(WINDOWS_TO_OLSON.get(value, value))
            except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError; a bad name a ValueError
                return tz
    return tz


def occurrence(component: Any, tz: dt.tzinfo, floating_tz: dt.tzinfo | None = None) -> dict[str, Any] | None:
    """One expanded VEVENT → the topic's event shape (without `calendar`); None when cancelled."""
    if _as_text(component.get("STATUS")).upper() == "CANCELLED":
        return None
    start = component.decoded("DTSTART")
    if "DTEND" in component:
        end = component.decoded("DTEND")
    elif "DURATION" in component:
        end = start + component.decoded("DURATION")
    else:
        end = start  # RFC 5545 §3.6.1: a DATE lasts one day (fixed below), a DATE-TIME ends when it starts
    location = _as_text(component.get("LOCATION")) or None
    title = _as_text(component.get("SUMMARY"))
    if not isinstance(start, dt.datetime):
        end_day = end.date() if isinstance(end, dt.datetime) else end
        if end_day <= start:
            end_day = start + dt.timedelta(days=1)  # DTEND = DTSTART exists in the wild: one day
        return {
            "title": title,
            "start": start.isoformat(),
            "end": end_day.isoformat(),
            "all_day": True,
            "location": location,
        }
    if not isinstance(end, dt.datetime):
        end = dt.datetime.combine(end, dt.time(), start.tzinfo)
    start_z, end_z = _to_zone(start, tz, floating_tz or tz), _to_zone(end, tz, floating_tz or tz)
    end_z = max(end_z, start_z)
    return {
        "title": title,
        "start": start_z.isoformat(timespec="seconds"),
        "end": end_z.isoformat(timespec="seconds"),
        "all_day": False,
        "location": location,
    }


def _calendar_text(feed: RawFeed, events: list[str]) -> str:
    lines = ["BEGIN:VCALENDAR", *feed.header, *feed.timezones, *events, "END:VCALENDAR"]
    return "\r\n".join(block.strip("\r\n") for block in lines) + "\r\n"


# ---------------------------------------------------------------- TZIDs the libraries cannot place

# A TZID parameter on a date property, quoted or not: Outlook writes display names such as
# "(UTC+01:00) Amsterdam, Berlin, ..." and some exports leave them unquoted although they hold ':' (RFC 5545 §3.2
# wants quotes), which makes the parser read "00) Amsterdam..." as the value.
_TZID_PARAM_RE = re.compile(
    r'(?im)^((?:DTSTART|DTEND|EXDATE|RDATE|RECURRENCE-ID)[^\r\n]*?;TZID=)("[^"\r\n]*"|[^\r\n]*?)'
    r"((?:;VALUE=[A-Z-]+)?:[0-9TZ,]+\r?)$"
)
_DISPLAY_NAME_RE = re.compile(r"^\(UTC(?:([+-])(\d{1,2}):(\d{2}))?\)\s*(.+)$")
_VTIMEZONE_TZID_RE = re.compile(r"(?m)^TZID[;:]([^\r\n]*)")
# The display names that name no city.
_DISPLAY_NAME_ZONES = {
    "coordinated universal time": "UTC",
    "pacific time (us & canada)": "America/Los_Angeles",
    "mountain time (us & canada)": "America/Denver",
    "central time (us & canada)": "America/Chicago",
    "eastern time (us & canada)": "America/New_York",
    "atlantic time (canada)": "America/Halifax",
    "alaska": "America/Anchorage",
    "hawaii": "Pacific/Honolulu",
}


@functools.lru_cache(maxsize=1)
def _zones_by_city() -> dict[str, list[str]]:
    import zoneinfo

    by_city: dict[str, list[str]] = {}
    for name in sorted(zoneinfo.available_timezones()):
        by_city.setdefault(name.rsplit("/", 1)[-1].lower(), []).append(name)
    return by_city


def zone_for_display_name(tzid: str, year: int) -> str | None:
    """'(UTC+01:00) Amsterdam, Berlin, Bern' → 'Europe/Amsterdam': a listed city that is an IANA zone with that
    standard or summer offset. Windows display names are not in CLDR's table; their cities mostly are zones."""
    m = _DISPLAY_NAME_RE.match(tzid.strip())
    if not m:
        return "UTC" if tzid.strip().lower() == "tzone://microsoft/utc" else None
    if m.group(4).strip().lower() in _DISPLAY_NAME_ZONES:
        return _DISPLAY_NAME_ZONES[m.group(4).strip().lower()]
    sign = -1 if m.group(1) == "-" else 1
    offset = dt.timedelta(hours=int(m.group(2) or 0), minutes=int(m.group(3) or 0)) * sign
    for city in re.split(r",|\band\b", m.group(4)):
        for name in _zones_by_city().get(city.strip().replace(" ", "_").lower(), []):
            zone = ZoneInfo(name)
            offsets = {dt.datetime(year, month, 15, 12, tzinfo=zone).utcoffset() for month in (1, 7)}
            if offset in offsets:
                return name
    return None


def place_tzids(events: list[str], timezones: list[str], year: int) -> list[str]:
    """Quote TZID parameters that need it, and name an IANA zone for a display-name TZID without a VTIMEZONE
    (one in the feed always wins: it says what the organiser's clock did)."""
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    defined = {value.strip().strip('"') for block in timezones for value in _VTIMEZONE_TZID_RE.findall(block)}
    known: dict[str, str] = {}

    def resolve(tzid: str) -> str:
        if tzid in defined or tzid in WINDOWS_TO_OLSON:
            return tzid
        try:
            ZoneInfo(tzid)
            return tzid
        except (ValueError, KeyError):  # not an IANA name (ZoneInfoNotFoundError is a KeyError)
            pass
        return zone_for_display_name(tzid, year) or tzid  # unknown: the parser treats it as floating

    def fix(m: re.Match[str]) -> str:
        tzid = m.group(2).strip('"')
        if tzid not in known:
            known[tzid] = resolve(tzid)
        value = known[tzid]
        quoted = f'"{value}"' if any(c in value for c in ":;,") else value
        return f"{m.group(1)}{quoted}{m.group(3)}"

    return [_TZID_PARAM_RE.sub(fix, block) if ";TZID=" in block.upper() else block for block in events]


def _parse_isolated(feed: RawFeed, events: list[str]) -> tuple[Any, int]:
    """The calendar with every VEVENT that parses on its own; the count of those that do not."""
    import icalendar

    good: list[str] = []
    for block in events:
        try:
            icalendar.Calendar.from_ical(_calendar_text(RawFeed(header=feed.header), [block]))
        except Exception:  # noqa: S112 - any parser failure means "this event cannot be read": leave it out
            continue
        good.append(block)
    return icalendar.Calendar.from_ical(_calendar_text(feed, good)), len(events) - len(good)


def expand(body: bytes, zone: str, first: dt.date, last: dt.date) -> Expansion:
    """Occurrences overlapping the local days first..last (inclusive), in `zone`, unsorted.

    Raises FeedError when the file as a whole is unusable; a bad event or series is skipped and counted.
    """
    import icalendar
    import recurring_ical_events

    class _Query(recurring_ical_events.CalendarQuery):
        # One broken series (a bad RRULE, an UNTIL dateutil refuses) must never hide the rest of the feed.
        suppressed_errors = [Exception]  # noqa: RUF012 - the library's own class attribute

    check_feed(body)
    tz = ZoneInfo(zone)
    feed = split_feed(unfold(body))
    chosen = select(feed, first, last)
    skipped = feed.unterminated
    chosen = place_tzids(chosen, feed.timezones, first.year)
    try:
        calendar = icalendar.Calendar.from_ical(_calendar_text(feed, chosen))
    except Exception:
        try:
            calendar, bad = _parse_isolated(feed, chosen)
            skipped += bad
        except Exception as err:
            raise FeedError(f"the calendar file could not be read ({type(err).__name__})") from None
    # Not recurring_ical_events.of(): it would move UTC times into X-WR-TIMEZONE first (see floating_zone).
    query = _Query(calendar, skip_bad_series=True)
    floating_tz = floating_zone(feed.header, tz)
    lo = first - dt.timedelta(days=1)
    hi = last + dt.timedelta(days=2)
    try:
        components = query.between(lo, hi)
    except Exception as err:
        raise FeedError(f"the calendar's events could not be expanded ({type(err).__name__})") from None
    events: list[dict[str, Any]] = []
    for component in components:
        try:
            item = occurrence(component, tz, floating_tz)
        except Exception:
            skipped += 1
            continue
        if item is not None:
            events.append(item)
    if len(events) > MAX_OCCURRENCES:
        events.sort(
            key=lambda e: e["start"] if e["all_day"] else dt.datetime.fromisoformat(e["start"]).date().isoformat()
        )
        del events[MAX_OCCURRENCES:]  # the soonest days are what the wall shows
    return Expansion(events=events, skipped=skipped, scanned=len(feed.events), parsed=len(chosen))


# ---------------------------------------------------------------- child process


def main(argv: list[str] | None = None) -> int:
    """ICS on stdin → one JSON line on stdout: {"events", "skipped", "scanned", "parsed"} or {"error"} (exit 3)."""
    parser = argparse.ArgumentParser(prog="python -m server.sources.calendar_ics", description=__doc__)
    parser.add_argument("--zone", required=True, help="IANA zone for timed events and floating times")
    parser.add_argument("--from", dest="first", required=True, type=dt.date.fromisoformat, help="first local day")
    parser.add_argument("--until", dest="last", required=True, type=dt.date.fromisoformat, help="last local day")
    args = parser.parse_args(argv)
    body = sys.stdin.buffer.read()
    try:
        result = expand(body, args.zone, args.first, args.last)
    except FeedError as err:
        sys.stdout.write(json.dumps({"error": str(err)}) + "\n")
        return 3
    out = {"events": result.events, "skipped": result.skipped, "scanned": result.scanned, "parsed": result.parsed}
    sys.stdout.write(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
