"""Calendar feeds → topic `calendar`: real ICS from the RFC and the providers' quirks, over a local HTTP server,
at fixed instants around both DST changes; each way a feed fails; conditional GET; config rules."""

from __future__ import annotations

import datetime as dt
import logging
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from server.config import CalendarConfig, CalendarFeedConfig, ConfigError, parse_config, replace
from server.core.source import TransientError
from server.demo.calendars import DEMO_CALENDAR
from server.demo.standin import demo_urls, make_standin_app
from server.sources.calendar import CalendarSource, fetch_url
from server.sources.calendar_ics import MAX_OCCURRENCES, expand
from server.sources.calendar_text import FeedError, check_feed, might_show, unfold
from tests.fakeapi import FakeApi, Recorded, Reply, serve_app
from tests.icsgen import big_feed

FEEDS = Path(__file__).parent / "feeds"
STHLM = ZoneInfo("Europe/Stockholm")
TOKEN = "cnryCalendarToken4e1d9f"
OK_ENTRY = {"status": "ok", "error": None, "skipped": 0, "skipped_reason": None}  # a calendars entry, read whole

# A Google event with a VALARM (its own DESCRIPTION and SUMMARY), escaped TEXT, and a SUMMARY folded in the
# middle of the two bytes of "å" (libical and ical4j fold by octets).
FIKA = (
    b"BEGIN:VEVENT\r\nUID:fika@google.com\r\nDTSTART:20261027T130000Z\r\nDTEND:20261027T140000Z\r\n"
    b"SUMMARY:Fika p\xc3\r\n \xa5 kontoret\r\nLOCATION:Room 3\\, floor 2\\; east\r\n"
    b"BEGIN:VALARM\r\nACTION:EMAIL\r\nSUMMARY:Alarm text\r\nDESCRIPTION:Reminder\r\nTRIGGER:-PT10M\r\nEND:VALARM\r\n"
    b"END:VEVENT\r\n"
)


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def family_oct() -> bytes:
    body = crlf((FEEDS / "family_oct2026.ics").read_text(encoding="utf-8"))
    return body.replace(b"END:VCALENDAR", FIKA + b"END:VCALENDAR")


def vcal(*events: str, header: str = "") -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Test//EN", *header.split("\n"), *events, "END:VCALENDAR"]
    return crlf("\n".join(line for line in lines if line))


def vevent(uid: str, *lines: str) -> str:
    return "\n".join(["BEGIN:VEVENT", f"UID:{uid}", *lines, "END:VEVENT"])


WEST_EUROPE_TZ = (FEEDS / "work_oct2026.ics").read_text(encoding="utf-8").split("BEGIN:VTIMEZONE", 2)[1]
WEST_EUROPE_TZ = "BEGIN:VTIMEZONE" + WEST_EUROPE_TZ.strip()


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi().start()
    yield server
    server.stop()


def at(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def source(api: FakeApi, names: list[str], now: str, **overrides: Any) -> CalendarSource:
    feeds = tuple(
        CalendarFeedConfig(name=name, url=api.url(f"/calendar/ical/{i}/private-{TOKEN}/basic.ics"))
        for i, name in enumerate(names)
    )
    cfg = CalendarConfig(calendars=feeds, **overrides)
    return CalendarSource(cfg, "Europe/Stockholm", clock=lambda: at(now))


def path(i: int) -> str:
    return f"/calendar/ical/{i}/private-{TOKEN}/basic.ics"


def serve(api: FakeApi, i: int, body: bytes | Reply) -> None:
    reply = body if isinstance(body, Reply) else Reply(200, body, {"Content-Type": "text/calendar; charset=UTF-8"})
    api.route(path(i), reply)


def listing(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(e["start"], e["end"], e["title"], e["calendar"]) for e in data["events"]]


# ---------------------------------------------------------------- the traps, at both DST changes


def test_october_dst_change_every_trap(api: FakeApi) -> None:
    """Saturday before the change to CET (25 Oct 2026), 12:00 Stockholm; the US changes a week later."""
    serve(api, 0, family_oct())
    serve(api, 1, (FEEDS / "newyork_oct2026.ics").read_bytes())  # LF line ends, as some exporters write
    serve(api, 2, crlf((FEEDS / "work_oct2026.ics").read_text(encoding="utf-8")))
    src = source(api, ["Family", "Aunt", "Work"], "2026-10-24T12:00:00+02:00")
    data = src.fetch()["calendar"]
    ok = OK_ENTRY
    assert data["calendars"] == [{"name": "Family", **ok}, {"name": "Aunt", **ok}, {"name": "Work", **ok}]
    F, A, W = "Family", "Aunt", "Work"
    assert listing(data) == [
        ("2026-10-23", "2026-10-26", "Autumn break", F),  # started before now, still running
        ("2026-10-24T11:00:00+02:00", "2026-10-24T13:00:00+02:00", "In progress", F),
        ("2026-10-24T13:00:00+02:00", "2026-10-24T14:00:00+02:00", "Market", F),  # INTERVAL=2;BYDAY=SA
        ("2026-10-24T23:30:00+02:00", "2026-10-25T00:00:00+02:00", "Late daily", F),
        ("2026-10-25T23:30:00+01:00", "2026-10-26T00:00:00+01:00", "Late daily", F),  # same wall time after
        ("2026-10-26", "2026-10-27", "Recycling", F),  # DATE without DTEND: one day; before 00:00 timed
        ("2026-10-26T00:00:00+01:00", "2026-10-26T00:30:00+01:00", "Midnight start", F),
        ("2026-10-26T09:00:00+01:00", "2026-10-26T09:15:00+01:00", "Outlook standup", W),  # 1601 VTIMEZONE
        ("2026-10-26T09:00:00+01:00", "2026-10-26T10:00:00+01:00", "Floating local", W),  # no X-WR: our zone
        ("2026-10-26T09:00:00+01:00", "2026-10-26T10:00:00+01:00", "Weekly UTC", F),  # UTC time kept
        ("2026-10-26T10:00:00+01:00", "2026-10-26T11:00:00+01:00", "Weekly local", F),  # local time kept
        ("2026-10-26T14:00:00+01:00", "2026-10-26T15:00:00+01:00", "NY floating", A),  # X-WR-TIMEZONE, EDT
        ("2026-10-26T16:00:00+01:00", "2026-10-26T16:30:00+01:00", "Pacific call", W),  # Windows name, CLDR
        ("2026-10-26T16:00:00+01:00", "2026-10-26T17:00:00+01:00", "Piano", F),
        ("2026-10-26T23:30:00+01:00", "2026-10-27T00:00:00+01:00", "Late daily", F),
        ("2026-10-27", "2026-10-28", "Birthday", F),  # DATE series with a UTC UNTIL
        ("2026-10-27", "2026-10-28", "Flag day", F),  # DTEND = DTSTART: one day
        ("2026-10-27T10:00:00+01:00", "2026-10-27T11:00:00+01:00", "Quarterly review", W),  # quoted TZID
        ("2026-10-27T14:00:00+01:00", "2026-10-27T15:00:00+01:00", "Fika på kontoret", F),  # folded UTF-8
        ("2026-10-27T23:30:00+01:00", "2026-10-28T00:00:00+01:00", "Late daily", F),  # UNTIL is inclusive
        ("2026-10-28T05:30:00+01:00", "2026-10-28T06:30:00+01:00", "Call with Pune", W),  # Customized zone
        ("2026-10-28T09:00:00+01:00", "2026-10-28T10:30:00+01:00", "Dentist", F),  # DURATION
        ("2026-10-28T14:00:00+01:00", "2026-10-28T15:00:00+01:00", "Shared meeting", F),  # ties: config order
        ("2026-10-28T14:00:00+01:00", "2026-10-28T15:00:00+01:00", "Shared meeting", W),
        ("2026-10-29T15:00:00+01:00", "2026-10-29T16:00:00+01:00", "Lunch (moved)", F),  # RECURRENCE-ID
        ("2026-10-30T14:00:00+01:00", "2026-10-30T15:00:00+01:00", "Piano", F),  # RDATE
        ("2026-10-30T19:00:00+01:00", "2026-10-30T20:00:00+01:00", "Book club", F),  # BYDAY=-1FR;COUNT=3
        ("2026-10-30T23:00:00+01:00", "2026-10-30T23:30:00+01:00", "Late Friday", F),  # last in the window
    ]
    # Absent: Ended, Too late (the window's end), Tuesday class (EXDATE), Lunch 28 Oct (moved away),
    # Thursday run (cancelled instance), Cancelled party, Old. Alarm text never shows as the event's.
    by_title = {e["title"]: e for e in data["events"]}
    assert by_title["Fika på kontoret"]["location"] == "Room 3, floor 2; east"
    assert by_title["Outlook standup"]["location"] == "Teams"
    assert by_title["Weekly local"]["location"] is None  # "LOCATION:" with nothing: null
    assert by_title["Recycling"]["all_day"] is True
    assert by_title["Dentist"]["all_day"] is False
    assert set(by_title["Dentist"]) == {"title", "start", "end", "all_day", "calendar", "location"}

    # The window moves with the clock, without a new download: later that Monday morning.
    later = src.topic_data(at("2026-10-26T10:30:00+01:00"))
    titles = [e["title"] for e in later["events"]]
    assert titles[:3] == ["Recycling", "Weekly local", "NY floating"]  # in progress first; 09:00 ones ended


MARCH_FAMILY = vcal(
    vevent(
        "weekly-local",
        "DTSTART;TZID=Europe/Stockholm:20270104T100000",
        "DTEND;TZID=Europe/Stockholm:20270104T110000",
        "RRULE:FREQ=WEEKLY;BYDAY=MO",
        "SUMMARY:Weekly local",
    ),
    vevent(
        "weekly-utc", "DTSTART:20270104T090000Z", "DTEND:20270104T100000Z", "RRULE:FREQ=WEEKLY", "SUMMARY:Weekly UTC"
    ),
    vevent(
        "late",
        "DTSTART;TZID=Europe/Stockholm:20270325T233000",
        "DTEND;TZID=Europe/Stockholm:20270326T000000",
        "RRULE:FREQ=DAILY;COUNT=5",
        "SUMMARY:Late daily",
    ),
    vevent(
        "choir",  # EXDATE written in UTC for a series in a named zone: 18:00 CEST is 16:00Z
        "DTSTART;TZID=Europe/Stockholm:20270106T180000",
        "DTEND;TZID=Europe/Stockholm:20270106T190000",
        "RRULE:FREQ=WEEKLY;BYDAY=WE",
        "EXDATE:20270331T160000Z",
        "SUMMARY:Choir",
    ),
    vevent("easter", "DTSTART;VALUE=DATE:20270328", "DTEND;VALUE=DATE:20270329", "SUMMARY:Easter Sunday"),
    header="X-WR-TIMEZONE:Europe/Stockholm",  # no VTIMEZONE at all: an IANA TZID is enough
)
MARCH_WORK = vcal(
    WEST_EUROPE_TZ,
    vevent(
        "tuesday",
        "DTSTART;TZID=W. Europe Standard Time:20270105T090000",
        "DTEND;TZID=W. Europe Standard Time:20270105T093000",
        "RRULE:FREQ=WEEKLY;BYDAY=TU",
        "SUMMARY:Outlook Tuesday",
    ),
    vevent(
        "pacific",
        "DTSTART;TZID=Pacific Standard Time:20270201T080000",
        "DTEND;TZID=Pacific Standard Time:20270201T083000",
        "RRULE:FREQ=WEEKLY;BYDAY=MO",
        "SUMMARY:Pacific weekly",
    ),
)
MARCH_NY = vcal(
    vevent("ny", "DTSTART:20270329T090000", "DTEND:20270329T100000", "SUMMARY:NY floating"),
    header="X-WR-TIMEZONE:America/New_York",
)


def test_march_dst_change_every_trap(api: FakeApi) -> None:
    """Saturday before the change to CEST (28 Mar 2027), 12:00 Stockholm; the US changed on 14 March."""
    serve(api, 0, MARCH_FAMILY)
    serve(api, 1, MARCH_NY)
    serve(api, 2, MARCH_WORK)
    data = source(api, ["Family", "Aunt", "Work"], "2027-03-27T12:00:00+01:00").fetch()["calendar"]
    F, A, W = "Family", "Aunt", "Work"
    assert listing(data) == [
        ("2027-03-27T23:30:00+01:00", "2027-03-28T00:00:00+01:00", "Late daily", F),
        ("2027-03-28", "2027-03-29", "Easter Sunday", F),
        ("2027-03-28T23:30:00+02:00", "2027-03-29T00:00:00+02:00", "Late daily", F),
        ("2027-03-29T10:00:00+02:00", "2027-03-29T11:00:00+02:00", "Weekly local", F),
        ("2027-03-29T11:00:00+02:00", "2027-03-29T12:00:00+02:00", "Weekly UTC", F),
        ("2027-03-29T15:00:00+02:00", "2027-03-29T16:00:00+02:00", "NY floating", A),
        ("2027-03-29T17:00:00+02:00", "2027-03-29T17:30:00+02:00", "Pacific weekly", W),
        ("2027-03-29T23:30:00+02:00", "2027-03-30T00:00:00+02:00", "Late daily", F),  # COUNT=5 ends here
        ("2027-03-30T09:00:00+02:00", "2027-03-30T09:30:00+02:00", "Outlook Tuesday", W),
    ]


def test_configured_zone_overrides_the_top_level_one(api: FakeApi) -> None:
    serve(api, 0, MARCH_WORK)
    # Sunday 18:00 in New York; two days shown: Monday 08:00 Pacific is 11:00 there, Tuesday 09:00 Berlin 03:00.
    src = source(api, ["Work"], "2027-03-29T00:00:00+02:00", timezone="America/New_York", days=2)
    events = src.fetch()["calendar"]["events"]
    assert [(e["start"], e["title"]) for e in events] == [("2027-03-29T11:00:00-04:00", "Pacific weekly")]


# ---------------------------------------------------------------- failures


BROKEN_EVENT = vcal(
    vevent("good-1", "DTSTART:20261026T090000Z", "DTEND:20261026T100000Z", "SUMMARY:Good one"),
    vevent("bad-date", "DTSTART:2026XX26T090000Z", "SUMMARY:Bad date"),
    vevent("bad-rule", "DTSTART:20261026T110000Z", "RRULE:FREQ=SOMETIMES;BYDAY=XX", "SUMMARY:Bad rule"),
    vevent("bad-zone", "DTSTART;TZID=Nowhere/Atlantis:20261026T120000", "SUMMARY:Unknown zone"),
    "BEGIN:VEVENT\nUID:bad-structure\nDTSTART:20261026T130000Z\nSUMMARY:No end line",
    vevent("good-2", "DTSTART:20261027T090000Z", "DTEND:20261027T100000Z", "SUMMARY:Good two"),
)


def test_a_broken_event_never_hides_the_rest(api: FakeApi) -> None:
    serve(api, 0, BROKEN_EVENT)
    data = source(api, ["Family"], "2026-10-24T12:00:00+02:00").fetch()["calendar"]
    titles = [e["title"] for e in data["events"]]
    assert "Good one" in titles
    assert "Good two" in titles
    assert "Bad date" not in titles
    assert data["calendars"][0]["status"] == "ok"


FAILURES = [
    (Reply(404, b"Not Found"), "the link answers 404: was the calendar's private address reset?"),
    (Reply(410, b"Gone"), "the link answers 410"),
    (Reply(403, b"Forbidden"), "no longer shared"),
    (Reply(503, b"busy"), "the calendar server answers 503"),
    (
        Reply(200, b"<!DOCTYPE html><html><body>Sign in</body></html>", {"Content-Type": "text/html"}),
        "a web page, not a calendar",
    ),
    (Reply(200, b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x\r\nDTST"), "cut off after 55 bytes"),
    (Reply(200, b"", {"Content-Type": "text/calendar"}), "empty"),
    (Reply(200, b'{"error": "nope"}', {"Content-Type": "application/json"}), "not a calendar"),
]


def test_a_failing_feed_keeps_its_last_good_events_and_the_others(api: FakeApi) -> None:
    serve(api, 0, vcal(vevent("a", "DTSTART:20261026T090000Z", "DTEND:20261026T100000Z", "SUMMARY:Family thing")))
    work = vcal(vevent("b", "DTSTART:20261026T110000Z", "DTEND:20261026T120000Z", "SUMMARY:Work thing"))
    api.route(
        path(1),
        lambda req: (
            Reply(304, None) if req.headers.get("If-None-Match") == '"w"' else Reply(200, work, {"ETag": '"w"'})
        ),
    )
    src = source(api, ["Family", "Work"], "2026-10-24T12:00:00+02:00")
    assert [e["title"] for e in src.fetch()["calendar"]["events"]] == ["Family thing", "Work thing"]
    for reply, words in FAILURES:
        serve(api, 0, reply)
        data = src.fetch()["calendar"]
        assert [e["title"] for e in data["events"]] == ["Family thing", "Work thing"], words  # last good stay
        family, work_entry = data["calendars"]
        assert family["status"] == "error"
        assert words in family["error"]
        assert TOKEN not in family["error"]
        assert work_entry == {"name": "Work", **OK_ENTRY}
    serve(api, 0, vcal(vevent("a", "DTSTART:20261026T090000Z", "DTEND:20261026T100000Z", "SUMMARY:Family again")))
    data = src.fetch()["calendar"]
    assert data["calendars"][0] == {"name": "Family", **OK_ENTRY}
    assert [e["title"] for e in data["events"]] == ["Family again", "Work thing"]
    assert len(api.requests_to(path(1))) == len(FAILURES) + 2  # the healthy feed: one 200, then 304s


def test_last_good_events_survive_a_restart_while_the_feed_fails(api: FakeApi, tmp_path: Path) -> None:
    serve(api, 0, vcal(vevent("a", "DTSTART:20261026T090000Z", "DTEND:20261026T100000Z", "SUMMARY:Kept")))
    feeds = (CalendarFeedConfig(name="Family", url=api.url(path(0))),)
    clock = lambda: at("2026-10-24T12:00:00+02:00")  # noqa: E731
    first = CalendarSource(CalendarConfig(calendars=feeds), "Europe/Stockholm", clock=clock, data_dir=str(tmp_path))
    assert [e["title"] for e in first.fetch()["calendar"]["events"]] == ["Kept"]
    assert (tmp_path / "calendar_cache.json").stat().st_mode & 0o077 == 0
    serve(api, 0, Reply(500, b"down"))
    again = CalendarSource(CalendarConfig(calendars=feeds), "Europe/Stockholm", clock=clock, data_dir=str(tmp_path))
    data = again.fetch()["calendar"]
    assert [e["title"] for e in data["events"]] == ["Kept"]
    assert data["calendars"][0]["status"] == "error"
    assert "If-None-Match" not in api.requests[-1].headers  # nothing to validate against after a restart


def test_too_big_a_feed_says_which_key_to_raise(api: FakeApi) -> None:
    serve(api, 0, vcal(vevent("a", "DTSTART:20261026T090000Z", "SUMMARY:x", "DESCRIPTION:" + "y" * 20_000)))
    with pytest.raises(TransientError, match=r"raise sources\.calendar\.max_bytes"):
        source(api, ["Family"], "2026-10-24T12:00:00+02:00", max_bytes=10_000).fetch()


def test_no_feed_ever_read_is_an_error_naming_each(api: FakeApi, caplog: pytest.LogCaptureFixture) -> None:
    serve(api, 0, Reply(404, b"Not Found"))
    src = source(api, ["Family"], "2026-10-24T12:00:00+02:00")
    with caplog.at_level(logging.DEBUG), pytest.raises(TransientError) as err:
        src.fetch()
    assert "Family: the link answers 404" in err.value.message
    assert TOKEN not in caplog.text
    assert TOKEN not in err.value.message


# ---------------------------------------------------------------- HTTP: conditional GET, webcal


def test_an_unchanged_feed_costs_one_304(api: FakeApi) -> None:
    body = vcal(vevent("a", "DTSTART:20261026T090000Z", "DTEND:20261026T100000Z", "SUMMARY:Same"))

    def answer(req: Recorded) -> Reply:
        if req.headers.get("If-None-Match") == '"v1"':
            return Reply(304, None, {"ETag": '"v1"'})
        return Reply(200, body, {"ETag": '"v1"', "Last-Modified": "Thu, 22 Oct 2026 10:00:00 GMT"})

    api.route(path(0), answer)
    now = ["2026-10-24T12:00:00+02:00"]
    src = source(api, ["Family"], now[0])
    src.clock = lambda: at(now[0])
    first = src.fetch()["calendar"]
    second = src.fetch()["calendar"]
    assert first == second
    sent = api.requests_to(path(0))
    assert "If-None-Match" not in sent[0].headers
    assert sent[1].headers["If-None-Match"] == '"v1"'
    assert sent[1].headers["If-Modified-Since"] == "Thu, 22 Oct 2026 10:00:00 GMT"
    assert "text/calendar" in sent[1].headers["Accept"]
    # Past what was expanded (the shown days plus a week), the feed is fetched whole again.
    now[0] = "2026-11-05T12:00:00+01:00"
    src.fetch()
    assert "If-None-Match" not in api.requests_to(path(0))[2].headers


def test_retry_after_pauses_only_that_feed(api: FakeApi) -> None:
    serve(api, 0, Reply(429, b"slow down", {"Retry-After": "3600"}))
    serve(api, 1, vcal(vevent("b", "DTSTART:20261026T110000Z", "DTEND:20261026T120000Z", "SUMMARY:Work thing")))
    src = source(api, ["Family", "Work"], "2026-10-24T12:00:00+02:00")
    first = src.fetch()["calendar"]
    assert "429" in first["calendars"][0]["error"]
    second = src.fetch()["calendar"]
    assert second["calendars"] == first["calendars"]
    assert len(api.requests_to(path(0))) == 1  # asked to wait an hour: not asked again within it
    assert len(api.requests_to(path(1))) == 2


def test_webcal_is_fetched_as_https() -> None:
    assert (
        fetch_url("webcal://p52-caldav.icloud.com/published/2/abc") == "https://p52-caldav.icloud.com/published/2/abc"
    )
    assert fetch_url("WEBCALS://example.org/x.ics") == "https://example.org/x.ics"
    assert fetch_url("https://example.org/x.ics") == "https://example.org/x.ics"


# ---------------------------------------------------------------- the pure parts


def test_check_feed_and_unfold() -> None:
    check_feed(b"\xef\xbb\xbfBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
    with pytest.raises(FeedError, match="web page"):
        check_feed(b"  <html><head><title>Outlook</title></head></html>")
    assert unfold(b"SUMMARY:Fika p\xc3\r\n \xa5\r\n\tx") == "SUMMARY:Fika påx"


def test_preselection_keeps_what_might_show() -> None:
    lo, hi = dt.date(2026, 10, 24), dt.date(2026, 10, 30)

    def keeps(*lines: str) -> bool:
        return might_show("\r\n".join(["BEGIN:VEVENT", *lines, "END:VEVENT"]), lo, hi)

    assert not keeps("DTSTART:20150101T100000Z", "DTEND:20150101T110000Z")
    assert keeps("DTSTART;VALUE=DATE:20261001", "DTEND;VALUE=DATE:20261025")  # long and still running
    assert keeps("DTSTART:20261001T100000Z", "DURATION:P30D")
    assert keeps("DTSTART:20150101T100000Z", "RRULE:FREQ=YEARLY")
    assert not keeps("DTSTART:20150101T100000Z", "RRULE:FREQ=WEEKLY;UNTIL=20160101T000000Z")
    assert keeps("DTSTART:20150101T100000Z", "RDATE:20261026T100000Z")
    assert keeps("DTSTART:20261201T100000Z", "RECURRENCE-ID:20261026T100000Z")  # moved out of the window
    assert keeps('DTSTART;TZID="a:b":garbage')  # unreadable: the parser decides
    # A VALARM's own DTSTART-like lines are not the event's.
    assert not keeps("DTSTART:20150101T100000Z", "BEGIN:VALARM", "RDATE:20261026T100000Z", "END:VALARM")
    assert keeps("DTSTART:20261001T100000Z", "DURATION:PT43200M")  # 30 days in minutes: still running
    assert not keeps("DTSTART:20261001T100000Z", "DURATION:PT90M")
    # Arithmetic that cannot be done (past year 9999) decides nothing: the block goes to the parser.
    assert keeps("DTSTART:20261020T090000Z", "DURATION:P3000000D")
    assert keeps("DTSTART:20261020T090000Z", "DURATION:P99999999999999999999W")
    assert keeps("DTSTART:99991231T090000Z", "DTEND:99991231T100000Z") is False  # far after: no arithmetic
    assert keeps("DTSTART:20261020T090000Z", "RRULE:FREQ=DAILY;UNTIL=" + "9" * 5000)


# ---------------------------------------------------------------- a series is one thing; a bad event is one event
# Each feed is the smallest one that showed the case on the test calendars of recurring-ical-events and icalendar,
# compared there with plain recurring_ical_events.of(cal).between(a, b) on the same library versions.


def shown(body: bytes, first: str, days: int = 7) -> list[tuple[str, str]]:
    """(start, title) of what the wall shows for `days` days from `first` (all-day starts as dates)."""
    lo = dt.date.fromisoformat(first)
    hi = lo + dt.timedelta(days=days - 1)
    end = (hi + dt.timedelta(days=1)).isoformat()
    events = expand(body, "Europe/Stockholm", lo, hi).events
    return sorted((e["start"], e["title"]) for e in events if e["start"] < end and e["end"] > first)


# A fortnightly series ended by a newer version (SEQUENCE 2); an older copy of one instance, moved two weeks on,
# still carries its own RRULE.
MOVED_WITH_RULE = vcal(
    vevent(
        "swim",
        "SEQUENCE:2",
        "DTSTART;TZID=Europe/Stockholm:20261005T170000",
        "DTEND;TZID=Europe/Stockholm:20261005T180000",
        "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;UNTIL=20261025T000000Z",
        "SUMMARY:Swim",
    ),
    vevent(
        "swim",
        "SEQUENCE:1",
        "RECURRENCE-ID;TZID=Europe/Stockholm:20261019T170000",
        "DTSTART;TZID=Europe/Stockholm:20261102T170000",
        "DTEND;TZID=Europe/Stockholm:20261102T180000",
        "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO",
        "SUMMARY:Swim (moved)",
    ),
)

# The same shape, but the old copy's RECURRENCE-ID is not an instance of the (ended) master.
ENDED_MASTER = vcal(
    vevent(
        "choir",
        "SEQUENCE:2",
        "DTSTART;VALUE=DATE:20261005",
        "DTEND;VALUE=DATE:20261006",
        "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;UNTIL=20261024",
        "SUMMARY:Choir",
    ),
    vevent(
        "choir",
        "SEQUENCE:1",
        "RECURRENCE-ID;VALUE=DATE:20261102",
        "DTSTART;VALUE=DATE:20261102",
        "DTEND;VALUE=DATE:20261103",
        "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO",
        "SUMMARY:Choir (old copy)",
    ),
)

THIS_AND_FUTURE = vcal(
    vevent(
        "stand-up",
        "DTSTART;TZID=Europe/Stockholm:20261001T090000",
        "DURATION:PT15M",
        "RRULE:FREQ=DAILY",
        "SUMMARY:Stand-up",
    ),
    vevent(
        "stand-up",
        "RECURRENCE-ID;RANGE=THISANDFUTURE;TZID=Europe/Stockholm:20261020T090000",
        "DTSTART;TZID=Europe/Stockholm:20261020T110000",
        "DURATION:PT15M",
        "SUMMARY:Stand-up (later)",
    ),
)


def test_a_moved_instance_with_its_own_rule_leaves_its_old_date() -> None:
    assert shown(MOVED_WITH_RULE, "2026-10-19") == []  # not at 17:00 on the 19th: it moved
    assert shown(MOVED_WITH_RULE, "2026-11-01") == [("2026-11-02T17:00:00+01:00", "Swim (moved)")]


def test_what_an_ended_series_shows_does_not_change_as_days_pass() -> None:
    """The master ends before the window: its block must still reach the parser, which decides from it that the
    old copy is obsolete. Leaving the master out would show the copy once the master's UNTIL was far enough back."""
    assert shown(ENDED_MASTER, "2026-10-19") == [("2026-10-19", "Choir")]
    assert shown(ENDED_MASTER, "2026-10-26") == []
    assert shown(ENDED_MASTER, "2026-11-01") == []


def test_a_this_and_future_edit_moves_the_later_instances() -> None:
    """The library applies RANGE=THISANDFUTURE; the pre-selection must not hide the edit from it."""
    later = [(f"2026-10-{d}T11:00:00+01:00", "Stand-up (later)") for d in range(26, 32)]
    assert shown(THIS_AND_FUTURE, "2026-10-26", days=6) == later
    assert shown(THIS_AND_FUTURE, "2026-10-19", days=2) == [
        ("2026-10-19T09:00:00+02:00", "Stand-up"),
        ("2026-10-20T11:00:00+02:00", "Stand-up (later)"),
    ]


LONG_TZID = "(UTC+03:00) " + ", ".join(["Somewhere far away"] * 15)  # 300+ characters: more than a file name


def test_one_unreadable_event_is_left_out_counted_and_the_rest_shows(api: FakeApi) -> None:
    serve(
        api,
        0,
        vcal(
            vevent("typo", "DTSTART:20261026T090000Z", "DURATION:P3000000D", "SUMMARY:Typo in the duration"),
            vevent("huge", "DTSTART:20261026T090000Z", "DURATION:P99999999999999999999W", "SUMMARY:Huge"),
            vevent("zone", f"DTSTART;TZID={LONG_TZID}:20261026T090000", "DURATION:PT1H", "SUMMARY:Long zone"),
            vevent("rule", "DTSTART:20261026T110000Z", "RRULE:FREQ=WEEKLY;UNTIL=2026XX", "SUMMARY:Bad until"),
            vevent("good", "DTSTART:20261026T120000Z", "DURATION:PT1H", "SUMMARY:Good"),
            vevent("also", "DTSTART;VALUE=DATE:20261027", "SUMMARY:Also good"),
        ),
    )
    src = source(api, ["Family"], "2026-10-24T12:00:00+02:00")
    data = src.fetch()["calendar"]
    assert [e["title"] for e in data["events"]] == ["Good", "Also good"]
    assert data["calendars"] == [
        {"name": "Family", "status": "ok", "error": None, "skipped": 4, "skipped_reason": "4 could not be read"}
    ]
    health = src.health()
    assert (health["status"], health["skipped"]) == ("ok", 4)  # nothing a person here can mend: not degraded
    assert health["calendars"] == data["calendars"]


def test_a_long_tzid_with_its_vtimezone_is_read() -> None:
    """A TZID is any string (RFC 5545 §3.2.19); one the feed defines is the organiser's clock."""
    zone = "\n".join(
        [
            *("BEGIN:VTIMEZONE", f"TZID:{LONG_TZID}", "BEGIN:STANDARD", "DTSTART:16010101T000000"),
            *("TZOFFSETFROM:+0300", "TZOFFSETTO:+0300", "END:STANDARD", "END:VTIMEZONE"),
        ]
    )
    body = vcal(zone, vevent("x", f'DTSTART;TZID="{LONG_TZID}":20261026T090000', "DURATION:PT1H", "SUMMARY:Far"))
    assert shown(body, "2026-10-26", days=1) == [("2026-10-26T07:00:00+01:00", "Far")]


# ---------------------------------------------------------------- config


def calendar_config(**calendar: Any) -> Any:
    doc = {"sources": {"calendar": {"calendars": [{"name": "Family", "url": "${FAMILY_ICS}"}], **calendar}}}
    return parse_config(doc, env={"FAMILY_ICS": f"https://calendar.example/private-{TOKEN}/basic.ics"})


def test_config_reads_the_calendar_section() -> None:
    cfg = calendar_config(days=5, timezone="Europe/London")
    cal = cfg.sources.calendar
    assert cal is not None
    assert (cal.days, cal.timezone, cal.interval_s) == (5, "Europe/London", 900.0)
    assert cal.calendars[0].url.endswith("basic.ics")


@pytest.mark.parametrize(
    ("calendar", "message"),
    [
        ({"days": 0}, "sources.calendar.days: expected 1-31"),
        ({"timezone": "Mars/Olympus"}, "sources.calendar.timezone: unknown time zone"),
        ({"calendars": []}, "sources.calendar.calendars: list at least one"),
        ({"calendars": [{"name": "A", "url": "ftp://x/y"}]}, "sources.calendar.calendars[0].url: expected"),
        ({"calendars": [{"name": "A", "url": "https://x/y", "color": "red;x"}]}, "calendars[0].color"),
        ({"calendars": [{"name": "A", "url": "https://x/1"}, {"name": "A", "url": "https://x/2"}]}, "duplicate"),
    ],
)
def test_config_errors_name_the_key_and_never_the_address(calendar: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        calendar_config(**calendar)
    assert message in str(err.value)
    assert "x/1" not in str(err.value)
    assert "ftp://" not in str(err.value)


# ---------------------------------------------------------------- a big feed


def test_a_5_mb_feed_with_years_of_history_stays_cheap(api: FakeApi) -> None:
    """Generated here (never committed): 9 years of a busy Google calendar, 5 MB. bench/bench_calendar.py has
    the memory figures; this checks the result and the CPU time of the child that expands it."""
    today = dt.date(2026, 10, 26)
    body = big_feed(today, years=9, per_day=2)
    assert len(body) > 5_000_000
    serve(api, 0, body)
    src = source(api, ["Work"], "2026-10-26T00:00:00+01:00")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    data = src.fetch()["calendar"]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu_s < 2.0, f"expanding a 5 MB feed took {cpu_s:.2f} s of CPU"
    # Seven days: two one-off meetings a day, and the 30 weekly series still running (the other 30 ended).
    assert len(data["events"]) == 7 * 2 + 30
    first = data["events"][0]
    assert (first["title"], first["start"]) == ("Meeting 0 on 26 Oct 2026", "2026-10-26T08:00:00+01:00")
    assert "Weekly series 0" in {e["title"] for e in data["events"]}
    # What the server keeps is the window's occurrences, not the feed: it does not grow with the history.
    assert len(src.states[0].events or []) < 200


def test_a_runaway_rule_is_cut_and_pushes_nothing_else_off_the_wall() -> None:
    feed = vcal(
        vevent("m", "DTSTART:20261024T000000Z", "DURATION:PT1S", "RRULE:FREQ=SECONDLY", "SUMMARY:Tick"),
        vevent("g", "DTSTART:20261030T090000Z", "DTEND:20261030T100000Z", "SUMMARY:Good"),
        vevent("w", "DTSTART:20261026T080000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY", "SUMMARY:Daily"),
    )
    result = expand(feed, "Europe/Stockholm", dt.date(2026, 10, 24), dt.date(2026, 11, 6))
    assert len(result.events) == MAX_OCCURRENCES
    titles = [e["title"] for e in result.events]
    assert titles.count("Good") == 1
    assert titles.count("Daily") == 13  # 26 Oct - 7 Nov: the whole series in the days read
    assert titles.count("Tick") == MAX_OCCURRENCES - 14  # the soonest, from 00:00Z on the 24th
    assert result.too_many == 1
    starts = [e["start"] for e in result.events]
    assert starts == sorted(starts, key=dt.datetime.fromisoformat)


def test_outlook_display_name_zones_without_a_vtimezone(api: FakeApi) -> None:
    """Outlook feeds seen with TZIDs that are display names, unquoted although they hold ':', and no VTIMEZONE;
    and Microsoft Graph's tzone://Microsoft/Utc. Monday after the European change, the US still on summer time."""
    names = [
        ("tzone://Microsoft/Utc", "2026-10-26T10:00:00+01:00"),
        ("(UTC+00:00) Dublin, Edinburgh, Lisbon, London", "2026-10-26T10:00:00+01:00"),
        ("(UTC-08:00) Pacific Time (US & Canada)", "2026-10-26T17:00:00+01:00"),
        ("(UTC+10:00) Canberra, Melbourne, Sydney", "2026-10-25T23:00:00+01:00"),  # AEDT, +11
        ("(UTC+05:30) Chennai, Kolkata, Mumbai, New Delhi", "2026-10-26T04:30:00+01:00"),
    ]
    events = [
        vevent(f"dn{i}", f"DTSTART;TZID={tzid}:20261026T090000", "DURATION:PT30M", f"SUMMARY:{i}")
        for i, (tzid, _) in enumerate(names)
    ]
    serve(api, 0, vcal(*events))
    data = source(api, ["Work"], "2026-10-24T12:00:00+02:00").fetch()["calendar"]
    starts = {int(e["title"]): e["start"] for e in data["events"]}
    assert starts == {i: start for i, (_, start) in enumerate(names)}


def test_a_vtimezone_in_the_feed_wins_over_a_guessed_zone() -> None:
    feed = vcal(
        "\n".join(
            [
                "BEGIN:VTIMEZONE",
                "TZID:(UTC+01:00) Amsterdam, Berlin",
                "BEGIN:STANDARD",
                "DTSTART:16010101T000000",
                "TZOFFSETFROM:+0300",
                "TZOFFSETTO:+0300",
                "END:STANDARD",
                "END:VTIMEZONE",
            ]
        ),
        vevent("x", 'DTSTART;TZID="(UTC+01:00) Amsterdam, Berlin":20261026T090000', "DURATION:PT1H", "SUMMARY:x"),
    )
    result = expand(feed, "Europe/Stockholm", dt.date(2026, 10, 24), dt.date(2026, 10, 30))
    assert [e["start"] for e in result.events] == ["2026-10-26T07:00:00+01:00"]  # +03:00 as the feed defines it


# ---------------------------------------------------------------- the demo's feeds


def test_the_demo_feeds_from_the_standin() -> None:
    now = at("2026-10-26T10:00:00+01:00")  # the Monday after the October change
    standin = serve_app(make_standin_app(clock=lambda: now))
    try:
        base = demo_urls(standin.url())["calendar"]
        cfg = replace(DEMO_CALENDAR, days=14)
        data = CalendarSource(cfg, "Europe/Stockholm", base_url=base, clock=lambda: now).fetch()["calendar"]
        assert [c["status"] for c in data["calendars"]] == ["ok", "ok"]
        events = data["events"]
        in_progress = [e for e in events if not e["all_day"] and at(e["start"]) <= now < at(e["end"])]
        assert [e["title"] for e in in_progress] == ["Visit from the neighbours"]
        assert {"Grandma's birthday", "School break", "Team offsite"} <= {e["title"] for e in events if e["all_day"]}
        standups = [e["start"] for e in events if e["title"] == "Stand-up"]
        assert standups[0] == "2026-10-27T09:15:00+01:00"  # today's has ended; the Outlook zone kept 09:15
        assert "2026-11-04T09:15:00+01:00" not in standups  # EXDATE
        assert len(standups) == 7
        moved = [e["start"] for e in events if e["title"] == "Stand-up (moved)"]
        assert moved == ["2026-11-05T14:00:00+01:00"]  # RECURRENCE-ID
        assert "2026-10-27T17:30:00+01:00" in [e["start"] for e in events if e["title"] == "Swimming lessons"]
        for e in events:  # the demo's data holds no markup: that lives in the tests
            assert not set("<>&") & set(e["title"] + (e["location"] or ""))
        first = requests.get(f"{base}/0.ics", timeout=5)
        again = requests.get(f"{base}/0.ics", headers={"If-None-Match": first.headers["ETag"]}, timeout=5)
        assert (first.status_code, again.status_code) == (200, 304)
    finally:
        standin.stop()


def test_lower_case_names_are_read() -> None:
    """Names are case-insensitive (RFC 5545 §2), though every real generator writes capitals."""
    feed = crlf(
        "begin:vcalendar\nversion:2.0\nbegin:vevent\nuid:x\ndtstart:20261026T090000Z\ndtend:20261026T100000Z\n"
        "summary:Lower case\nend:vevent\nend:vcalendar\n"
    )
    result = expand(feed, "Europe/Stockholm", dt.date(2026, 10, 24), dt.date(2026, 10, 30))
    assert [(e["title"], e["start"]) for e in result.events] == [("Lower case", "2026-10-26T10:00:00+01:00")]
