"""A big private calendar feed as Google exports one: years of history, made in memory (never committed).

Every day of the history has a few one-off events (UTC times, folded DESCRIPTION, attendees, a VALARM), and there
are weekly series in a named zone, some ended with UNTIL ("this and following" edits), with EXDATEs and moved
instances. Deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

VTIMEZONE = """BEGIN:VTIMEZONE
TZID:Europe/Stockholm
X-LIC-LOCATION:Europe/Stockholm
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE"""

DESCRIPTION = (
    "Agenda:\\n1. Review of last week's actions\\n2. Status per project\\, risks and blockers\\n3. AOB\\n\\n"
    "Join: https://meet.example.com/abc-defg-hij \\; dial-in +46 8 123 456 78 PIN 1234567#"
)

ATTENDEE = (
    "ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;CN=Anna Svensson;X-NUM-GUESTS=0:"
    "mailto:anna@example.com"
)


def fold(line: str) -> list[str]:
    """RFC 5545 §3.1: at most 75 octets per line (ASCII here, so characters)."""
    out = [line[:75]]
    rest = line[75:]
    while rest:
        out.append(" " + rest[:74])
        rest = rest[74:]
    return out


def _stamp(value: dt.datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%SZ")


def one_off(day: dt.date, n: int) -> list[str]:
    start = dt.datetime.combine(day, dt.time(7 + 3 * n, 0), dt.UTC)
    lines = [
        "BEGIN:VEVENT",
        f"DTSTART:{_stamp(start)}",
        f"DTEND:{_stamp(start + dt.timedelta(minutes=45))}",
        f"DTSTAMP:{_stamp(start)}",
        f"UID:{day:%Y%m%d}-{n}-0a1b2c3d4e5f6a7b8c9d0e1f@google.com",
        f"CREATED:{_stamp(start - dt.timedelta(days=7))}",
        f"LAST-MODIFIED:{_stamp(start - dt.timedelta(days=2))}",
        *fold(f"DESCRIPTION:{DESCRIPTION}"),
        "LOCATION:Room Saturnus\\, floor 4",
        "SEQUENCE:0",
        "STATUS:CONFIRMED",
        f"SUMMARY:Meeting {n} on {day:%d %b %Y}",
        "TRANSP:OPAQUE",
        *fold(ATTENDEE),
        "BEGIN:VALARM",
        "ACTION:DISPLAY",
        "DESCRIPTION:This is an event reminder",
        "TRIGGER:-P0DT0H10M0S",
        "END:VALARM",
        "END:VEVENT",
    ]
    return lines


def series(index: int, first: dt.date, until: dt.date | None) -> list[str]:
    start = first + dt.timedelta(days=index % 7)
    local = f"{start:%Y%m%d}T{8 + index % 10:02d}{(index * 5) % 60:02d}00"
    rule = "RRULE:FREQ=WEEKLY" + (f";UNTIL={until:%Y%m%d}T225959Z" if until else "")
    exdates = [start + dt.timedelta(weeks=w) for w in (3, 10, 20)]
    return [
        "BEGIN:VEVENT",
        f"DTSTART;TZID=Europe/Stockholm:{local}",
        f"DTEND;TZID=Europe/Stockholm:{local[:9]}{int(local[9:11]) + 1:02d}{local[11:]}",
        rule,
        *[f"EXDATE;TZID=Europe/Stockholm:{d:%Y%m%d}{local[8:]}" for d in exdates],
        f"DTSTAMP:{start:%Y%m%d}T000000Z",
        f"UID:series-{index}@google.com",
        f"SUMMARY:Weekly series {index}",
        "END:VEVENT",
    ]


def big_feed(today: dt.date, *, years: float = 10.0, per_day: int = 3, series_count: int = 60) -> bytes:
    """A feed with `years` of history up to two weeks after `today` (about 0.5 MB per year at per_day=3)."""
    history_start = today - dt.timedelta(days=round(365 * years))
    lines = [
        "BEGIN:VCALENDAR",
        "PRODID:-//Google Inc//Google Calendar 70.9054//EN",
        "VERSION:2.0",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "X-WR-CALNAME:Work",
        "X-WR-TIMEZONE:Europe/Stockholm",
        *VTIMEZONE.split("\n"),
    ]
    day = history_start
    while day <= today + dt.timedelta(days=14):
        for n in range(per_day):
            lines += one_off(day, n)
        day += dt.timedelta(days=1)
    for i in range(series_count):
        # Half the series ended long ago (a "this and following" edit), half run on.
        until = history_start + dt.timedelta(days=200 + 30 * i) if i % 2 else None
        lines += series(i, history_start, until)
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


# ---------------------------------------------------------------- hostile feeds (for the reader's bounds)


def _calendar(events: list[list[str]]) -> bytes:
    lines = ["BEGIN:VCALENDAR", "PRODID:-//Test//Hostile//EN", "VERSION:2.0"]
    for event in events:
        lines += event
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _event(uid: str, *lines: str) -> list[str]:
    return ["BEGIN:VEVENT", f"UID:{uid}", *lines, "END:VEVENT"]


def good_event(today: dt.date) -> list[str]:
    """The one real event every hostile feed carries: it must still reach the wall."""
    start = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(9, 0), dt.UTC)
    return _event("good@test", f"DTSTART:{_stamp(start)}", "DURATION:PT1H", "SUMMARY:Dentist")


def runaway_feed(today: dt.date, *, years_before: int = 0) -> bytes:
    """RRULE:FREQ=SECONDLY without an end (a typo for DAILY), from today or from years before."""
    start = dt.datetime.combine(today.replace(year=today.year - years_before), dt.time(), dt.UTC)
    tick = _event("tick@test", f"DTSTART:{_stamp(start)}", "DURATION:PT1S", "RRULE:FREQ=SECONDLY", "SUMMARY:Tick")
    return _calendar([tick, good_event(today)])


def crowded_feed(today: dt.date, *, mb: float = 19.0) -> bytes:
    """`mb` of distinct one-off events, all inside the next two weeks (thousands more than any real calendar)."""
    events = [good_event(today)]
    size, n = 0, 0
    while size < mb * 1e6:
        event = [line.replace("UID:", f"UID:{n}-") for line in one_off(today + dt.timedelta(days=n % 14), n % 5)]
        events.append(event)
        size += sum(len(line) + 2 for line in event)
        n += 1
    return _calendar(events)


def long_text_feed(today: dt.date, *, chars: int = 1_000_000) -> bytes:
    """A SUMMARY and a LOCATION of `chars` characters each (folded, as a generator would write them)."""
    start = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(11, 0), dt.UTC)
    long_one = [
        "BEGIN:VEVENT",
        "UID:long@test",
        f"DTSTART:{_stamp(start)}",
        "DURATION:PT1H",
        *fold("SUMMARY:" + "Meeting about " + "x" * chars),
        *fold("LOCATION:" + "Room " + "y" * chars),
        "END:VEVENT",
    ]
    return _calendar([long_one, good_event(today)])


def broken_events_feed(today: dt.date) -> bytes:
    """Events no parser or date arithmetic can take: a duration of 3,000,000 days (a typo), a duration of 10^20
    weeks, a TZID of 300+ characters without a VTIMEZONE, a date past year 9999."""
    day = f"{today + dt.timedelta(days=1):%Y%m%d}"
    long_tzid = "(UTC+03:00) " + ", ".join(["Somewhere far away"] * 15)
    return _calendar(
        [
            _event("typo@test", f"DTSTART:{day}T100000Z", "DURATION:P3000000D", "SUMMARY:Typo"),
            _event("huge@test", f"DTSTART:{day}T100000Z", "DURATION:P99999999999999999999W", "SUMMARY:Huge"),
            _event("zone@test", f"DTSTART;TZID={long_tzid}:{day}T100000", "DURATION:PT1H", "SUMMARY:Long zone"),
            _event("late@test", f"DTSTART:{day}T100000Z", "DTEND:99999999T000000Z", "SUMMARY:Never ends"),
            good_event(today),
        ]
    )


def slow_feed(today: dt.date, *, series: int = 40) -> bytes:
    """Minutely rules begun years ago: each runs through the reader's step limit before the window (CPU only)."""
    start = dt.datetime.combine(today.replace(year=today.year - 5), dt.time(), dt.UTC)
    rules = [
        _event(f"slow-{i}@test", f"DTSTART:{_stamp(start)}", "DURATION:PT1M", "RRULE:FREQ=MINUTELY", "SUMMARY:x")
        for i in range(series)
    ]
    return _calendar([*rules, good_event(today)])


def many_dates_feed(today: dt.date, *, events: int = 4000) -> bytes:
    """Events with long EXDATE lists: within the parser's caps, but with more objects than its memory limit."""
    day = today + dt.timedelta(days=1)
    dates = ",".join(f"{today - dt.timedelta(days=7 * k):%Y%m%d}T090000Z" for k in range(1, 25))
    return _calendar(
        [
            _event(
                f"dates-{n}@test",
                f"DTSTART:{day:%Y%m%d}T090000Z",
                "DURATION:PT1H",
                "RRULE:FREQ=WEEKLY;COUNT=3",
                *fold(f"EXDATE:{dates}"),
                f"SUMMARY:Event {n}",
            )
            for n in range(events)
        ]
    )


def many_lines_feed(today: dt.date, *, lines: int = 550_000, depth: int = 50_000) -> bytes:
    """A VEVENT of `lines` ATTENDEE lines and a VTIMEZONE with components nested `depth` deep inside it: 19 MB."""
    day = f"{today + dt.timedelta(days=1):%Y%m%d}"
    zone = [
        "BEGIN:VTIMEZONE",
        "TZID:Deep",
        *["BEGIN:X-NESTED"] * depth,
        *["END:X-NESTED"] * depth,
        *("BEGIN:STANDARD", "DTSTART:16010101T000000", "TZOFFSETFROM:+0300", "TZOFFSETTO:+0300", "END:STANDARD"),
        "END:VTIMEZONE",
    ]
    big = _event("big@test", f"DTSTART:{day}T120000Z", "SUMMARY:Big", *["ATTENDEE:mailto:a@example.com"] * lines)
    deep = _event("deep@test", f"DTSTART;TZID=Deep:{day}T150000", "DURATION:PT1H", "SUMMARY:Deep zone")
    return _calendar([zone, big, deep, good_event(today)])


# Each hostile case by what it is: what the bench measures and the server-level test serves.
HOSTILE_FEEDS: dict[str, Callable[[dt.date], bytes]] = {
    "FREQ=SECONDLY, no end": runaway_feed,
    "FREQ=SECONDLY since 5 years": lambda today: runaway_feed(today, years_before=5),
    "19 MB of events in the window": crowded_feed,
    "1 MB SUMMARY and LOCATION": long_text_feed,
    "P3000000D, 10^20 weeks, 300-char TZID": broken_events_feed,
    "40 minutely rules since 5 years": slow_feed,
    "4500 events with EXDATE lists": lambda today: many_dates_feed(today, events=4500),
    "a million lines, a zone nested 50,000 deep": many_lines_feed,
    "20 MB of history (36 years)": lambda today: big_feed(today, years=36, per_day=2),
}
