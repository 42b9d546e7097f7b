"""An iCalendar feed at the text level, before any parser sees it: check, cut, pre-select, reduce. No libraries.

Private feeds carry a calendar's whole history (thousands of past VEVENTs), and icalendar builds a heavy object
per property, so the reader hands the parser only what can matter for the days shown:

- Pre-selection: a VEVENT whose dates are far outside the window cannot show up, so its block is left out. Blocks
  that share a UID are one series (a master, its moved instances, "this and future" edits): once any block of a
  UID might show, every block of it goes to the parser, because the library decides each instance from the whole
  series. Nothing is decided on a value the scanner cannot read or on arithmetic that could fail: when in doubt,
  the block is kept and the parser judges (and reports) it.
- Reduction: a kept VEVENT keeps only the properties the wall and the recurrence expansion read (dates, rules,
  UID, SEQUENCE, STATUS, title, place); alarms, attendees and descriptions never reach the parser. Titles and
  places are clipped; a date or rule line longer than any real one makes its event unreadable (left out and
  counted), never half-read.

The whole body is scanned as bytes (one byte per byte; a str of a feed with one emoji in it would take four) and
only the chosen blocks are decoded for good.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

SELECT_MARGIN_DAYS = 2  # a date written in any zone is within ±14 h of the same date in ours
MAX_TEXT_CHARS = 200  # a title or a place on the wall; longer ones end in "…"
MAX_LINE_CHARS = 2000  # a date, rule, UID or status line: real ones are < 300 (long Outlook TZIDs included)
MAX_LIST_LINE_CHARS = 100_000  # an EXDATE or RDATE line: a list of dates
MAX_HEADER_LINE_CHARS = 500  # X-WR-TIMEZONE, CALSCALE, VERSION
MAX_PARSE_EVENTS = 5000  # VEVENTs near the shown days handed to the parser (a busy calendar has a few hundred)
MAX_PARSE_CHARS = 4_000_000  # their reduced text, with the VTIMEZONEs they use

# The VEVENT properties that decide when an event occurs (RFC 5545 §3.8.2, §3.8.4.4, §3.8.5, what
# recurring-ical-events reads) and what the wall shows. Everything else is left out before parsing.
_WHEN_PROPS = frozenset({"UID", "DTSTART", "DTEND", "DURATION", "RRULE", "RECURRENCE-ID", "SEQUENCE", "STATUS"})
_LIST_PROPS = frozenset({"RDATE", "EXDATE"})
_TEXT_PROPS = frozenset({"SUMMARY", "LOCATION"})
_HEADER_PROPS = frozenset({"VERSION", "CALSCALE", "X-WR-TIMEZONE"})
_SELECT_PROPS = ("UID", "DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "RECURRENCE-ID")

_LINE_RE = re.compile(r"[^\r\n]+")  # one line, found lazily: a hostile block may hold millions
_NESTED_RE = re.compile(r"(?s)\nBEGIN:.*?(?:\nEND:[^\r\n]*|$)")  # a VALARM (or any component) in a VEVENT
_DURATION_RE = re.compile(r"^([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_UNTIL_RE = re.compile(r"(?i)UNTIL=(\d{8})")
_THIS_AND_FUTURE_RE = re.compile(r"(?im)^RECURRENCE-ID;[^\r\n]*RANGE=THISANDFUTURE")
_TIMEZONE_RE = re.compile(rb"(?ms)^BEGIN:VTIMEZONE\r?$.*?^END:VTIMEZONE\r?$")
_VTIMEZONE_TZID_RE = re.compile(r"(?im)^TZID[;:][^\r\n]*")
_DELIMITER_RE = re.compile(rb"(?im)^(BEGIN|END):(VCALENDAR|VEVENT|VTIMEZONE|VALARM|STANDARD|DAYLIGHT)[ \t]*(?=\r?$)")
_BEGIN_EVENT, _END_EVENT = b"\nBEGIN:VEVENT", b"\nEND:VEVENT"


class FeedError(Exception):
    """The body is not a usable calendar as a whole (not ICS, cut off, over a limit). Says what to check.

    `limit`: the feed is over one of the reader's limits, so the same bytes would fail again.
    """

    def __init__(self, message: str, *, limit: bool = False) -> None:
        super().__init__(message)
        self.limit = limit


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


def unfold(body: bytes) -> str:
    """Unfold at the octet level, then decode: a fold may split a UTF-8 character (libical, ical4j do)."""
    for fold in (b"\r\n ", b"\r\n\t", b"\n ", b"\n\t"):  # CRLF first; LF-only files exist too
        if fold in body:
            body = body.replace(fold, b"")
    return body.decode("utf-8", errors="replace").lstrip("\ufeff")


# ---------------------------------------------------------------- reading single properties


def split_property(line: str) -> tuple[str, str]:
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


def _name_of(line: str) -> str:
    end = len(line)
    for sep in (";", ":"):
        at = line.find(sep, 0, end)
        if at >= 0:
            end = at
    return line[:end].upper()


def _date_of(value: str) -> dt.date | None:
    try:
        return dt.date(int(value[0:4]), int(value[4:6]), int(value[6:8]))
    except (ValueError, IndexError):
        return None


def _duration_days(value: str) -> int | None:
    """Whole days an event of this DURATION can reach past its start day; None when unreadable or negative."""
    m = _DURATION_RE.match(value.strip().upper())
    if not m or m.group(1) == "-":
        return None
    weeks, days, hours, minutes, seconds = (int(g or 0) for g in m.group(2, 3, 4, 5, 6))
    total_s = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds
    return -(-total_s // 86400) + 1  # rounded up, and the start may be late in its day


def _unescape(value: str) -> str:
    """TEXT escapes (RFC 5545 §3.3.11), as the parser decodes a UID before grouping blocks by it."""
    if "\\" not in value:
        return value
    return re.sub(r"\\([\\;,nN])", lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def own_properties(block: str) -> dict[str, str]:
    """The values of the VEVENT's own UID, DTSTART, ... (first of each), not those of a nested VALARM."""
    if "\nBEGIN:" in block:
        block = _NESTED_RE.sub("", block)  # each nested BEGIN runs to the next END, as the parsers pair them
    props: dict[str, str] = {}
    for name in _SELECT_PROPS:
        at = block.find("\n" + name)
        while at >= 0:
            after = at + 1 + len(name)
            if block[after : after + 1] in (";", ":"):
                line_end = block.find("\n", after)
                props[name] = split_property(block[at + 1 : None if line_end < 0 else line_end].rstrip("\r"))[1]
                break
            at = block.find("\n" + name, at + 1)
    return props


# ---------------------------------------------------------------- the pre-selection


def _might_show(props: dict[str, str], lo: dt.date, hi: dt.date) -> bool:
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


def _judge(props: dict[str, str], lo: dt.date, hi: dt.date) -> bool:
    try:
        return _might_show(props, lo, hi)
    except Exception:  # a date past year 9999, a duration of 3,000,000 days: not ours to judge
        return True


def might_show(block: str, lo: dt.date, hi: dt.date) -> bool:
    """Can this VEVENT on its own have an occurrence overlapping [lo, hi] (dates, any zone)? True when unsure."""
    return _judge(own_properties(block), lo, hi)


def vtimezone_tzid(block: str) -> str | None:
    line = _VTIMEZONE_TZID_RE.search(block)
    return None if line is None else split_property(line.group(0))[1].strip().strip('"')


@dataclass
class Selection:
    """What goes to the parser: calendar properties, the VTIMEZONEs in use, reduced VEVENTs that might show."""

    header: list[str] = field(default_factory=list)
    timezones: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    scanned: int = 0  # VEVENTs in the feed
    unreadable: int = 0  # left out here: no END:VEVENT, or a line no real calendar writes


def _event_spans(body: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    """(VEVENT blocks, the stretches between them, unterminated count) as byte offsets. A VEVENT cannot nest, so
    each runs from its BEGIN to the first END:VEVENT before the next BEGIN:VEVENT."""
    events: list[tuple[int, int]] = []
    rest: list[tuple[int, int]] = []
    unterminated = 0
    at = body.find(_BEGIN_EVENT)
    rest.append((0, len(body) if at < 0 else at))
    while at >= 0:
        following = body.find(_BEGIN_EVENT, at + 1)
        limit = len(body) if following < 0 else following
        end = body.find(_END_EVENT, at, limit)
        if end < 0:
            unterminated += 1  # runs into the next BEGIN:VEVENT or the end of the file
        else:
            end += len(_END_EVENT)
            events.append((at + 1, end))
            rest.append((end, limit))
        at = following
    return events, rest, unterminated


def _header_lines(preamble: str) -> list[str]:
    """The calendar's own properties that the reader uses (depth 1, before the first VEVENT)."""
    lines: list[str] = []
    depth = 0
    for m in _LINE_RE.finditer(preamble):
        line = m.group(0)
        if line[:6].upper() == "BEGIN:":
            depth += 1
        elif line[:4].upper() == "END:":
            depth -= 1
        elif depth == 1 and len(line) <= MAX_HEADER_LINE_CHARS and _name_of(line) in _HEADER_PROPS:
            lines.append(line)
    return lines


class Unreadable(ValueError):
    """One VEVENT that no real calendar would write (a date line of megabytes): left out and counted."""


def _clip_text(line: str) -> str:
    """SUMMARY or LOCATION cut to what a wall can show (the decoded text is cut to MAX_TEXT_CHARS later)."""
    if len(line) <= MAX_TEXT_CHARS * 4:
        return line
    name, value = split_property(line[: MAX_LINE_CHARS + MAX_TEXT_CHARS * 4])
    value = value[: MAX_TEXT_CHARS * 4]
    trailing = len(value) - len(value.rstrip("\\"))
    if trailing % 2:
        value = value[:-1]  # never end in half an escape
    return f"{name}:{value}"  # parameters (LANGUAGE, ALTREP) are not shown


def reduce_event(block: str) -> str:
    """The VEVENT with only its own properties that decide when it occurs and what the wall shows."""
    out = ["BEGIN:VEVENT"]
    depth = 0
    for m in _LINE_RE.finditer(block):
        raw = m.group(0)
        head = raw[:6].upper()
        if head == "BEGIN:":
            depth += 1
            continue
        if raw[:4].upper() == "END:":
            depth -= 1
            continue
        if depth != 1:
            continue  # VALARMs and anything else nested
        name = _name_of(raw[: MAX_LINE_CHARS + 1])
        line = name + raw[len(name) :]  # names are case-insensitive; the steps after this read capitals
        if name in _TEXT_PROPS:
            out.append(_clip_text(line))
        elif name in _WHEN_PROPS or name in _LIST_PROPS:
            if len(line) > (MAX_LIST_LINE_CHARS if name in _LIST_PROPS else MAX_LINE_CHARS):
                raise Unreadable(name)
            out.append(line)
    out.append("END:VEVENT")
    return "\r\n".join(out)


def reduce_timezone(block: str) -> str:
    """The VTIMEZONE with its own properties and its STANDARD / DAYLIGHT observances only (RFC 5545 §3.6.5):
    anything else nested in it, to any depth, never reaches the parser."""
    out: list[str] = []
    path: list[str] = []
    for m in _LINE_RE.finditer(block):
        line = m.group(0)
        upper = line[:16].upper()
        if upper.startswith("BEGIN:"):
            path.append(upper[6:].strip())
        wanted = len(path) == 1 or (len(path) == 2 and path[1] in ("STANDARD", "DAYLIGHT"))
        if wanted:
            out.append(line)
        if upper.startswith("END:") and path:
            path.pop()
    return "\r\n".join(out)


def _too_many(what: str) -> FeedError:
    return FeedError(
        f"the calendar has {what} near the days shown; the reader takes at most {MAX_PARSE_EVENTS} events "
        f"({MAX_PARSE_CHARS // 1000} kB)",
        limit=True,
    )


def select(body: bytes, lo: dt.date, hi: dt.date) -> Selection:
    """The blocks the parser needs for the days lo..hi, whole series together, reduced; the VTIMEZONEs they use.

    Raises FeedError (a limit) when they are more than the parser may take: the feed's last good events stay."""
    if b"\nBEGIN:VEVENT" not in body and b"\nbegin:vevent" in body.lower():
        # Names are case-insensitive (RFC 5545 §2); every generator seen writes them in capitals, so only a feed
        # that does not pays for this pass.
        body = _DELIMITER_RE.sub(lambda m: m.group(1).upper() + b":" + m.group(2).upper(), body)
    spans, rest, unterminated = _event_spans(body)
    selection = Selection(scanned=len(spans) + unterminated, unreadable=unterminated)
    selection.header = _header_lines(unfold(body[rest[0][0] : rest[0][1]]))

    # Pass 1: each block on its own; a kept block keeps its whole series.
    decided: list[tuple[int, int, str | None, bool]] = []
    kept_uids: set[str] = set()
    for start, end in spans:
        text = unfold(body[start:end])
        props = own_properties(text)
        uid = _unescape(props["UID"].strip()) if "UID" in props else None
        keep = _judge(props, lo, hi) or bool(_THIS_AND_FUTURE_RE.search(text))
        if keep and uid is not None:
            kept_uids.add(uid)
        decided.append((start, end, uid, keep))

    # Pass 2: the chosen blocks, reduced; no more than the parser may take.
    chosen = [(start, end) for start, end, uid, keep in decided if keep or (uid is not None and uid in kept_uids)]
    if len(chosen) > MAX_PARSE_EVENTS:
        raise _too_many(f"{len(chosen)} events")
    chars = 0
    for start, end in chosen:
        try:
            selection.events.append(reduce_event(unfold(body[start:end])))
        except Unreadable:
            selection.unreadable += 1
            continue
        chars += len(selection.events[-1])
        if chars > MAX_PARSE_CHARS:
            raise _too_many(f"more than {MAX_PARSE_CHARS // 1000} kB of events")

    # The VTIMEZONEs the chosen events name (a feed may carry hundreds it never uses).
    named = {tzid for event in selection.events for tzid in tzids_named(event)}
    for lo_at, hi_at in rest:
        for m in _TIMEZONE_RE.finditer(body, lo_at, hi_at):
            block = unfold(m.group(0))
            if vtimezone_tzid(block) in named:
                selection.timezones.append(reduce_timezone(block))
                chars += len(block)
    if chars > MAX_PARSE_CHARS:
        raise _too_many(f"more than {MAX_PARSE_CHARS // 1000} kB of events and time zones")
    return selection


# ---------------------------------------------------------------- TZID parameters


_TZID_PROPS = ("DTSTART", "DTEND", "EXDATE", "RDATE", "RECURRENCE-ID")
_VALUE_PARAM_RE = re.compile(r";VALUE=[A-Za-z-]+$")
_DATE_VALUE_RE = re.compile(r"^[0-9A-Z,/+-]+$")  # dates, date-times, periods (…/PT1H)


def tzid_parameter(line: str) -> tuple[str, str, str] | None:
    """'DTSTART;TZID=(UTC+01:00) Berlin:20261026T090000' → ('DTSTART;TZID=', '(UTC+01:00) Berlin', ':2026…').

    Quoted or not: Outlook writes display names such as "(UTC+01:00) Amsterdam, Berlin, ..." and some exports
    leave them unquoted although they hold ':' (RFC 5545 §3.2 wants quotes), which makes a parser read
    "00) Amsterdam..." as the value. Linear in the line's length (no backtracking on a hostile line).
    """
    at = line.upper().find(";TZID=")
    if at < 0:
        return None
    start = at + len(";TZID=")
    if line[start : start + 1] == '"':
        close = line.find('"', start + 1)
        if close < 0:
            return None
        return line[:start], line[start + 1 : close], line[close + 1 :]
    colon = line.rfind(":")
    if colon < start or not _DATE_VALUE_RE.match(line[colon + 1 :].rstrip("\r")):
        return None
    params = line[start:colon]
    if ":" not in params:  # a plain TZID, maybe followed by other parameters
        tzid = params.split(";", 1)[0]
        return line[:start], tzid, line[start + len(tzid) :]
    value_param = _VALUE_PARAM_RE.search(params)
    tzid = params[: value_param.start()] if value_param else params
    return line[:start], tzid, line[start + len(tzid) :]


def tzids_named(event: str) -> set[str]:
    """The TZIDs the event's date properties name."""
    names: set[str] = set()
    for line in event.split("\r\n"):
        if line.startswith(_TZID_PROPS) and ";TZID=" in line.upper():
            parts = tzid_parameter(line)
            if parts is not None:
                names.add(parts[1].strip())
    return names


# Display names that name no city.
_DISPLAY_NAME_RE = re.compile(r"^\(UTC(?:([+-])(\d{1,2}):(\d{2}))?\)\s*(.+)$")
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


def is_zone_name(name: str) -> bool:
    """An IANA zone this machine knows. Never raises: a TZID is any string (RFC 5545 §3.2.19), and ZoneInfo raises
    ValueError, KeyError or, for a name longer than a file name may be, OSError."""
    try:
        ZoneInfo(name)
    except Exception:
        return False
    return True


def place_tzids(events: list[str], timezones: list[str], year: int) -> list[str]:
    """Quote TZID parameters that need it, and name an IANA zone for a display-name TZID without a VTIMEZONE
    (one in the feed always wins: it says what the organiser's clock did)."""
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    defined = {vtimezone_tzid(block) for block in timezones}
    known: dict[str, str] = {}

    def resolve(tzid: str) -> str:
        if tzid.strip() in defined or tzid in WINDOWS_TO_OLSON or is_zone_name(tzid):
            return tzid
        return zone_for_display_name(tzid, year) or tzid  # unknown: the parser decides

    def fix(line: str) -> str:
        parts = tzid_parameter(line) if line.startswith(_TZID_PROPS) else None
        if parts is None:
            return line
        prefix, tzid, suffix = parts
        if tzid not in known:
            known[tzid] = resolve(tzid)
        value = known[tzid]
        quoted = f'"{value}"' if any(c in value for c in ":;,") else value
        return f"{prefix}{quoted}{suffix}"

    return [
        "\r\n".join(fix(line) for line in event.split("\r\n")) if ";TZID=" in event.upper() else event
        for event in events
    ]
