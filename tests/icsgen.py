"""A big private calendar feed as Google exports one: years of history, made in memory (never committed).

Every day of the history has a few one-off events (UTC times, folded DESCRIPTION, attendees, a VALARM), and there
are weekly series in a named zone, some ended with UNTIL ("this and following" edits), with EXDATEs and moved
instances. Deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import datetime as dt

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
