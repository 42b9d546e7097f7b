"""The calendar reader against hostile feeds, and feeds that do not hold each other up.

Every feed here is made in memory (tests/icsgen.py) and read by the real reader child process, with its real
limits unless a test lowers one to reach it quickly; the server-level test runs `python -m server` against a real
local HTTP server and measures its memory from /proc. bench/bench_calendar.py prints the same figures.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import resource
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.config import CalendarConfig, CalendarFeedConfig
from server.sources.calendar import GATHER_S, CalendarSource
from server.sources.calendar_ics import MAX_OCCURRENCES, MEMORY_LIMIT_BYTES
from server.sources.calendar_reader import MAX_ANSWER_BYTES, Reader, ReaderError, ReaderLimits
from server.sources.calendar_text import MAX_TEXT_CHARS
from tests import icsgen
from tests.browser import HomeboardProcess
from tests.fakeapi import FakeApi, Reply
from tests.mqttbroker import wait_until

TODAY = dt.date(2026, 10, 26)
NOW = dt.datetime(2026, 10, 26, 0, 30, tzinfo=dt.UTC).timestamp()  # 01:30 in Stockholm, the Monday
MEMORY_HIGH_BYTES = 192 * 2**20  # systemd/homeboard.service


def read(body: bytes) -> dict[str, Any]:
    """The reader's answer for `body` (its own limits), streamed to it in chunks as a download would be."""
    reader = Reader("Europe/Stockholm", TODAY, TODAY + dt.timedelta(days=13))
    for at in range(0, len(body), 65536):
        reader.write(body[at : at + 65536])
    return reader.finish()


def titles(answer: dict[str, Any]) -> list[str]:
    return [e["title"] for e in answer["events"]]


# ---------------------------------------------------------------- each hostile feed, in the reader's limits


def test_a_runaway_rule_expands_lazily_and_is_cut() -> None:
    """FREQ=SECONDLY without an end: 1.2 million occurrences in the days read, built one by one until the cut."""
    answer = read(icsgen.runaway_feed(TODAY))
    assert len(answer["events"]) == MAX_OCCURRENCES
    assert "Dentist" in titles(answer)
    assert (answer["too_many"], answer["unreadable"]) == (1, 0)
    assert answer["peak_rss_kb"] * 1024 < MEMORY_LIMIT_BYTES / 2


def test_a_runaway_rule_begun_years_ago_runs_out_of_steps() -> None:
    """Five years of seconds before the first one in view: the rule gives up, the rest of the feed shows."""
    answer = read(icsgen.runaway_feed(TODAY, years_before=5))
    assert titles(answer) == ["Dentist"]
    assert answer["too_many"] == 1


def test_a_feed_crowded_with_events_in_the_window_is_refused_whole() -> None:
    """19 MB of distinct events in the next two weeks: more than the parser may take. Refused before parsing,
    so the reader's memory stays near the download's size."""
    body = icsgen.crowded_feed(TODAY)
    assert len(body) > 19_000_000
    with pytest.raises(ReaderError) as err:
        read(body)
    assert err.value.limit
    assert "the reader takes at most 5000 events" in err.value.message
    assert err.value.peak_rss_kb is not None
    assert err.value.peak_rss_kb * 1024 < MEMORY_LIMIT_BYTES * 0.75


def test_a_megabyte_title_reaches_the_wall_clipped() -> None:
    answer = read(icsgen.long_text_feed(TODAY))
    long_one = next(e for e in answer["events"] if e["title"].startswith("Meeting about"))
    assert len(long_one["title"]) == MAX_TEXT_CHARS
    assert long_one["title"].endswith("…")
    assert len(long_one["location"]) == MAX_TEXT_CHARS
    assert "Dentist" in titles(answer)


def test_events_no_arithmetic_can_take_are_left_out_and_counted() -> None:
    answer = read(icsgen.broken_events_feed(TODAY))
    assert titles(answer) == ["Dentist"]
    assert answer["unreadable"] == 4


def test_a_million_lines_in_one_event_and_a_zone_nested_deep_are_read() -> None:
    """What the parser never needs (attendees, components nested in a VTIMEZONE) never reaches it."""
    body = icsgen.many_lines_feed(TODAY)
    answer = read(body)
    starts = {e["title"]: e["start"] for e in answer["events"]}
    assert starts == {
        "Big": "2026-10-27T13:00:00+01:00",
        "Deep zone": "2026-10-27T13:00:00+01:00",  # 15:00 at +03:00, as the VTIMEZONE defines it
        "Dentist": "2026-10-27T10:00:00+01:00",
    }
    assert answer["peak_rss_kb"] * 1024 < MEMORY_LIMIT_BYTES


def test_twenty_megabytes_of_history_read_in_a_fraction_of_the_limit() -> None:
    body = icsgen.big_feed(TODAY, years=36, per_day=2)
    assert len(body) > 19_000_000
    answer = read(body)
    assert answer["parsed"] < 100  # of 26,000 VEVENTs: the rest cannot reach the days read
    assert answer["peak_rss_kb"] * 1024 < MEMORY_LIMIT_BYTES / 2


def test_the_largest_answer_within_the_caps_fits_what_the_server_reads() -> None:
    """A rule every five minutes with a title and a place of 1000 emoji each: the caps make the answer at most
    MAX_ANSWER_BYTES, so the server's cap on the reader's output never cuts a real answer."""
    start = f"{TODAY:%Y%m%d}T000000Z"
    rule = ["DURATION:PT1M", "RRULE:FREQ=MINUTELY;INTERVAL=5", "SUMMARY:" + "🎉" * 1000, "LOCATION:" + "📍" * 1000]
    body = icsgen._calendar([icsgen._event("emoji@test", f"DTSTART:{start}", *rule)])
    answer = read(body)
    size = len(json.dumps(answer["events"], ensure_ascii=False, separators=(",", ":")).encode())
    assert len(answer["events"]) == MAX_OCCURRENCES
    assert MAX_ANSWER_BYTES * 0.7 < size < MAX_ANSWER_BYTES


# ---------------------------------------------------------------- over a limit: the last good events stay


def source_for(api: FakeApi, names: list[str], **kwargs: Any) -> CalendarSource:
    feeds = tuple(
        CalendarFeedConfig(name=n, url=api.url(f"/feed/{i}/private-bounds-token")) for i, n in enumerate(names)
    )
    return CalendarSource(CalendarConfig(calendars=feeds), "Europe/Stockholm", clock=lambda: NOW, **kwargs)


def serve(api: FakeApi, i: int, body: bytes) -> None:
    api.route(f"/feed/{i}/private-bounds-token", Reply(200, body, {"Content-Type": "text/calendar"}))


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi().start()
    yield server
    server.stop()


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_a_reader_out_of_memory_says_so_and_the_last_good_events_stay(api: FakeApi) -> None:
    serve(api, 0, icsgen._calendar([icsgen.good_event(TODAY)]))
    src = source_for(api, ["Family"], reader_limits=ReaderLimits(memory_bytes=64 * 2**20), gather_s=120)
    assert [e["title"] for e in src.fetch()["calendar"]["events"]] == ["Dentist"]
    serve(api, 0, icsgen.many_dates_feed(TODAY))  # ~115 MB to read: over this reader's 64 MB
    data = src.fetch()["calendar"]
    assert [e["title"] for e in data["events"]] == ["Dentist"]
    assert data["calendars"][0]["error"] == "reading the calendar needs more than 64 MB of memory"


def test_a_reader_out_of_cpu_says_so_and_the_same_bytes_are_not_read_again(api: FakeApi) -> None:
    serve(api, 0, icsgen._calendar([icsgen.good_event(TODAY)]))
    src = source_for(api, ["Family"], reader_limits=ReaderLimits(cpu_s=1), gather_s=120)
    src.fetch()
    serve(api, 0, icsgen.slow_feed(TODAY, series=400))  # 10 million steps of rules begun five years ago
    before = children_cpu_s()
    data = src.fetch()["calendar"]
    first_s = children_cpu_s() - before
    assert [e["title"] for e in data["events"]] == ["Dentist"]
    assert data["calendars"][0]["error"] == "reading the calendar took more than 1 s of CPU"
    assert first_s > 0.9  # (the kernel counts it at its tick)
    before = children_cpu_s()
    again = src.fetch()["calendar"]
    assert again["calendars"][0]["error"] == "reading the calendar took more than 1 s of CPU"
    assert children_cpu_s() - before < 0.5  # the reader was started for the download, and stopped unasked
    assert len(api.requests) == 3


# ---------------------------------------------------------------- a slow feed holds up no other


def trickle(body: bytes, seconds: float) -> Reply:
    """A real HTTP answer whose body arrives a byte at a time over about `seconds`."""
    return Reply(200, b"", {"Content-Type": "text/calendar"}, drip_bytes=body, drip_interval_s=seconds / len(body))


def test_a_trickling_feed_delays_no_other(api: FakeApi) -> None:
    slow_body = icsgen._calendar([icsgen.good_event(TODAY)])
    api.route("/feed/0/private-bounds-token", trickle(slow_body, 4.0))
    serve(api, 1, icsgen._calendar([icsgen._event("w@test", f"DTSTART:{TODAY:%Y%m%d}T120000Z", "SUMMARY:Work")]))
    reran = threading.Event()
    src = source_for(api, ["Family", "Work"], gather_s=1.0, rerun=reran.set)
    started = time.monotonic()
    first = src.fetch()["calendar"]
    assert time.monotonic() - started < 3.0  # not the trickle's 4 s
    assert [e["title"] for e in first["events"]] == ["Work"]
    assert first["calendars"][0] == {
        "name": "Family",
        "status": "ok",
        "error": None,
        "skipped": 0,
        "skipped_reason": None,
    }  # still being read
    assert reran.wait(15), "the late feed asked for no publish"
    requests_before = len(api.requests)
    second = src.fetch()["calendar"]  # what the runner does when asked: publish, start nothing
    assert [e["title"] for e in second["events"]] == ["Work", "Dentist"]
    assert len(api.requests) == requests_before
    src.gather_s = 30.0  # (so that nothing is left running after the test)
    src.fetch()  # the next regular poll reads both again
    assert len(api.requests) == requests_before + 2


# ---------------------------------------------------------------- the server, with every hostile feed at once


def vm_kb(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    assert match is not None
    return int(match.group(1))


# What each hostile feed of icsgen.HOSTILE_FEEDS leaves on the wall: (titles shown, events left out) or the reason
# the whole feed was refused. The EXDATE one needs about 125 MB, at the reader's limit: either outcome is right.
OUTCOMES: dict[str, tuple[set[str], int] | str] = {
    "FREQ=SECONDLY, no end": ({"Dentist", "Tick"}, 1),
    "FREQ=SECONDLY since 5 years": ({"Dentist"}, 1),
    "19 MB of events in the window": "the reader takes at most 5000 events",
    "1 MB SUMMARY and LOCATION": ({"Dentist", "Meeting about " + "x" * (MAX_TEXT_CHARS - 15) + "…"}, 0),
    "P3000000D, 10^20 weeks, 300-char TZID": ({"Dentist"}, 4),
    "40 minutely rules since 5 years": ({"Dentist"}, 40),
    "a million lines, a zone nested 50,000 deep": ({"Dentist", "Big", "Deep zone"}, 0),
}


@pytest.mark.timeout(600)
def test_the_server_stays_small_with_every_hostile_feed(tmp_path: Path, api: FakeApi) -> None:
    """`python -m server` with every hostile feed and a trickling one (20 s): the good events of each show, each bad
    one is left out or refused with its reason, and the server's own memory stays where it was."""
    today = dt.datetime.now().astimezone().date()
    names = list(icsgen.HOSTILE_FEEDS)
    for i, name in enumerate(names):
        serve(api, i, icsgen.HOSTILE_FEEDS[name](today))
    slow = len(names)
    api.route(f"/feed/{slow}/private-bounds-token", trickle(icsgen._calendar([icsgen.good_event(today)]), 20.0))
    feeds = [{"name": n, "url": api.url(f"/feed/{i}/private-bounds-token")} for i, n in enumerate([*names, "Slow"])]
    doc = {"log_level": "debug", "sources": {"calendar": {"calendars": feeds}}}
    server = HomeboardProcess(tmp_path, doc, demo=False).start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        rss_start_kb = vm_kb(pid, "VmRSS")

        def calendar() -> dict[str, Any]:
            return server.get_json("/api/state")["topics"]["calendar"].get("data") or {"events": [], "calendars": []}

        def shown(data: dict[str, Any]) -> set[tuple[str, str]]:
            return {(e["calendar"], e["title"]) for e in data["events"]}

        def every_feed_read() -> dict[str, Any] | None:
            """Every feed read (or refused): all but the first few published after their poll had returned."""
            data = calendar()
            done = {e["name"] for e in data["calendars"] if e["error"]} | {name for name, _ in shown(data)}
            return data if done == {*names, "Slow"} else None

        started = time.monotonic()
        data = wait_until(every_feed_read, timeout_s=400, interval_s=1.0)
        assert data, f"not every feed was read: {calendar()['calendars']}\n{server.log()[-3000:]}"
        read_s = time.monotonic() - started
        entries = {e["name"]: e for e in data["calendars"]}
        for name, outcome in OUTCOMES.items():
            if isinstance(outcome, str):
                assert outcome in (entries[name]["error"] or ""), name
            else:
                titles = {title for calendar_name, title in shown(data) if calendar_name == name}
                assert (titles >= outcome[0] - {"Tick"}, entries[name]["skipped"]) == (True, outcome[1]), (
                    name,
                    titles,
                    entries[name],
                )
        limit = entries["4500 events with EXDATE lists"]
        assert limit["skipped"] > 0 or limit["error"] == "reading the calendar needs more than 128 MB of memory"
        assert max(len(title) for _, title in shown(data)) <= MAX_TEXT_CHARS
        state_bytes = len(urllib.request.urlopen(server.url + "/api/state", timeout=5).read())
        assert state_bytes < 1_500_000

        # The poll that started them returned after GATHER_S: the rest came in when each was done, not at the
        # next poll (15 min on), the trickling one too.
        assert read_s > GATHER_S
        health = server.get_json("/healthz")["calendar"]
        assert health["skipped"] == sum(e["skipped"] for e in health["calendars"]) > 0

        peaks_kb = [int(kb) for kb in re.findall(r"reader peak (\d+) kB", server.log())]
        assert len(peaks_kb) >= len(names) - 2  # every feed but the refused one (and the one at the limit)
        rss_end_kb, hwm_kb = vm_kb(pid, "VmRSS"), vm_kb(pid, "VmHWM")
        print(
            f"server RSS {rss_start_kb / 1024:.1f} MB at start, {rss_end_kb / 1024:.1f} MB after, peak "
            f"{hwm_kb / 1024:.1f} MB; readers' peaks {[round(kb / 1024, 1) for kb in peaks_kb]} MB; "
            f"{len(names)} feeds read in {read_s:.1f} s; /api/state {state_bytes} bytes"
        )
        # The server at its peak and a reader at its limit fit under the unit's MemoryHigh.
        assert hwm_kb * 1024 + MEMORY_LIMIT_BYTES < MEMORY_HIGH_BYTES
        assert rss_end_kb - rss_start_kb < 15 * 1024  # what stays: the windows' occurrences, not the feeds
    finally:
        server.stop()
