"""The calendar on the wall, end to end: a real server polls ICS feeds from a local HTTP server, headless Chromium
shows them (HTML in a title stays text, the event in progress is marked, all-day as a band, 12-hour clock), and
the feed's private address never reaches a route, a WebSocket frame, /healthz or a log line."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright import sync_api
from tornado.websocket import websocket_connect

from tests.browser import ARTIFACTS, HomeboardProcess, PageProbe, launch
from tests.fakeapi import FakeApi, Recorded, Reply

STHLM = ZoneInfo("Europe/Stockholm")
XSS = '<img src=x onerror="window.__xss=1">'
TOKEN = "cnryCalFeedToken93b7e2"
BROKEN_TOKEN = "cnryCalBrokenToken51f0"


def utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def family_feed(_req: Recorded) -> Reply:
    """Built at request time around the real clock: one event in progress, one all-day today, hostile text."""
    now = dt.datetime.now(STHLM).replace(second=0, microsecond=0)
    today = now.date()
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Test//EN",
        "BEGIN:VEVENT",
        "UID:now@test",
        f"DTSTART:{utc(now - dt.timedelta(minutes=30))}",
        f"DTEND:{utc(now + dt.timedelta(minutes=90))}",
        f"SUMMARY:{XSS.replace(',', chr(92) + ',')}",
        "LOCATION:</li><script>window.__xss=2</script>",
        "END:VEVENT",
        "BEGIN:VEVENT",
        "UID:allday@test",
        f"DTSTART;VALUE=DATE:{today:%Y%m%d}",
        f"DTEND;VALUE=DATE:{today + dt.timedelta(days=1):%Y%m%d}",
        "SUMMARY:Flag day",
        "END:VEVENT",
        "BEGIN:VEVENT",
        "UID:later@test",
        f"DTSTART:{utc(now + dt.timedelta(days=1, hours=2))}",
        f"DTEND:{utc(now + dt.timedelta(days=1, hours=3))}",
        "SUMMARY:Dentist",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return Reply(200, "\r\n".join(lines) + "\r\n", {"Content-Type": "text/calendar"})


@pytest.fixture
def feeds() -> Iterator[FakeApi]:
    api = FakeApi()
    api.route(f"/calendars/private-{TOKEN}/basic.ics", family_feed)
    api.route(f"/calendars/private-{BROKEN_TOKEN}/basic.ics", Reply(404, b"Not Found"))
    api.start()
    yield api
    api.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = launch(pw)
        yield chromium
        chromium.close()


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode("utf-8")


async def read_frames(ws_url: str, seconds: float) -> list[str]:
    frames: list[str] = []
    conn = await websocket_connect(ws_url)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            message = await asyncio.wait_for(conn.read_message(), 0.3)
        except TimeoutError:
            continue
        if message is None:
            break
        frames.append(message if isinstance(message, str) else message.decode("utf-8"))
    conn.close()
    return frames


def test_calendar_on_the_wall_and_its_addresses_stay_secret(tmp_path: Path, feeds: FakeApi, browser: Any) -> None:
    # webcal:// for a plain-http test server would become https://, so the test links are http://.
    doc = {
        "timezone": "Europe/Stockholm",
        "log_level": "debug",
        "page": {"locale": "en-US", "clock_24h": False, "night_from": None, "night_until": None, "reload_at": None},
        "sources": {
            "calendar": {
                "interval_s": 1,
                "calendars": [
                    {"name": "Family", "url": "${FAMILY_ICS_URL}", "color": "#e07a5f"},
                    {"name": "Old work", "url": "${WORK_ICS_URL}"},
                ],
            }
        },
    }
    secrets = tmp_path / "secrets.env"
    secrets.write_text(
        f"FAMILY_ICS_URL={feeds.url(f'/calendars/private-{TOKEN}/basic.ics')}\n"
        f"WORK_ICS_URL={feeds.url(f'/calendars/private-{BROKEN_TOKEN}/basic.ics')}\n"
    )
    secrets.chmod(0o600)
    doc["secrets_file"] = str(secrets)
    server = HomeboardProcess(tmp_path, doc, demo=False).start()
    probe = PageProbe(browser, 1280, 720)
    try:
        probe.open(server.url + "/?wall=1")
        rows = probe.wait_for(
            """() => {
              // Rows with data, whether or not the hero had room for them (fit-hidden ones count).
              const rows = [...document.querySelectorAll('.w-calendar .cal-item')]
                .filter((r) => !r.hidden || r.dataset.fitHidden);
              return rows.some((r) => r.classList.contains('is-now')) ? rows.map((r) => ({
                cls: r.className, when: r.querySelector('.cal-when').textContent,
                title: r.querySelector('.cal-title').textContent, where: r.querySelector('.cal-where').textContent,
                color: r.style.getPropertyValue('--cal-color')})) : null;
            }""",
            timeout_s=30,
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        probe.page.wait_for_timeout(300)  # the list's fit pass
        probe.page.screenshot(path=str(ARTIFACTS / "calendar-1280x720.png"))
        titles = [r["title"] for r in rows]
        assert titles[:4] == ["Today", "Flag day", XSS, "Tomorrow"], rows
        band, now_row = rows[1], rows[2]
        assert "is-allday" in band["cls"]
        assert band["color"] == "#e07a5f"
        assert "is-now" in now_row["cls"]
        assert now_row["where"] == "</li><script>window.__xss=2</script>"
        assert "M" in now_row["when"]  # the page's 12-hour clock: "1:30 PM–3:30 PM" (AM/PM in en-US)
        time.sleep(0.5)  # give an injected onerror every chance to fire
        assert probe.js("() => window.__xss") is None
        assert probe.js("() => document.querySelectorAll('.w-calendar .cal-list img, .w-calendar script').length") == 0
        problems = probe.text(".w-calendar .cal-problems")
        assert "Old work: the link answers 404: was the calendar's private address reset?" in problems
        assert probe.js("() => !document.querySelector('.w-calendar .cal-item.is-now').hidden")  # on screen
        # The day plan, in the page's zone (Stockholm): Friday 23 Oct 2026, 22:00. A timed event over midnight
        # is under today; a three-day band shows on each of its days; an empty tomorrow says so; later days only
        # when they have something.
        plan = probe.js(
            """async () => {
              const { plan } = await import('/js/widgets/calendar.js');
              const now = Date.parse('2026-10-23T22:00:00+02:00');
              const events = [
                {title: 'Night shift', start: '2026-10-23T21:00:00+02:00', end: '2026-10-24T06:00:00+02:00',
                 all_day: false, calendar: 'Family', location: null},
                {title: 'Ended', start: '2026-10-23T08:00:00+02:00', end: '2026-10-23T09:00:00+02:00',
                 all_day: false, calendar: 'Family', location: null},
                {title: 'Break', start: '2026-10-25', end: '2026-10-28', all_day: true, calendar: 'Family',
                 location: null},
              ];
              return plan(events, now).map((r) => [r.kind, r.key ?? r.e?.title ?? '', r.now ?? null]);
            }"""
        )
        assert plan == [
            ["day", "2026-10-23", None],
            ["event", "Night shift", True],
            ["day", "2026-10-24", None],
            ["empty", "", None],
            ["day", "2026-10-25", None],
            ["allday", "Break", None],
            ["day", "2026-10-26", None],
            ["allday", "Break", None],
            ["day", "2026-10-27", None],
            ["allday", "Break", None],
        ]
        assert probe.page_errors == []
        assert probe.csp_violations() == []

        # The secrets canary: every route the page or a person reads, the live frames, and the server's log.
        state = json.loads(get_text(server.url + "/api/state"))
        calendar = state["topics"]["calendar"]["data"]
        assert [c["status"] for c in calendar["calendars"]] == ["ok", "error"]
        health = json.loads(get_text(server.url + "/healthz"))
        assert health["status"] == "degraded"
        assert health["calendar"]["error"].startswith("Old work: the link answers 404")
        seen = [get_text(server.url + p) for p in ("/", "/api/state", "/api/config", "/healthz", "/metrics")]
        # Playwright's sync API owns this thread's event loop: the WebSocket client runs on a thread of its own.
        ws_url = server.url.replace("http://", "ws://") + "/ws"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            frames = pool.submit(asyncio.run, read_frames(ws_url, 2.5)).result(timeout=15)
        assert any('"calendar"' in frame for frame in frames)
        seen += frames
        seen.append(server.log())
        assert "REDACTED" in seen[-1]  # the debug log did write the request lines, with the address scrubbed
        for text in seen:
            for secret in (TOKEN, BROKEN_TOKEN, "/calendars/private-"):
                assert secret not in text
    finally:
        probe.close()
        server.stop()


def test_the_card_says_how_many_events_were_left_out_and_why(tmp_path: Path, browser: Any) -> None:
    """One event no date arithmetic can take (a duration of 3,000,000 days): the rest shows, and the card and
    /healthz say one was left out. The page words the count (here in Swedish), the server the reason."""
    tomorrow = dt.datetime.now(STHLM).date() + dt.timedelta(days=1)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Test//EN",
        "BEGIN:VEVENT",
        "UID:typo@test",
        f"DTSTART:{tomorrow:%Y%m%d}T080000Z",
        "DURATION:P3000000D",
        "SUMMARY:Typo in the duration",
        "END:VEVENT",
        "BEGIN:VEVENT",
        "UID:fine@test",
        f"DTSTART:{tomorrow:%Y%m%d}T090000Z",
        "DURATION:PT1H",
        "SUMMARY:Dentist",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    api = FakeApi()
    api.route(f"/calendars/private-{TOKEN}/basic.ics", Reply(200, "\r\n".join(lines) + "\r\n"))
    api.start()
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"FAMILY_ICS_URL={api.url(f'/calendars/private-{TOKEN}/basic.ics')}\n")
    secrets.chmod(0o600)
    doc = {
        "timezone": "Europe/Stockholm",
        "secrets_file": str(secrets),
        "page": {"locale": "sv-SE", "night_from": None, "night_until": None, "reload_at": None},
        "sources": {"calendar": {"calendars": [{"name": "Familj", "url": "${FAMILY_ICS_URL}"}]}},
    }
    server = HomeboardProcess(tmp_path, doc, demo=False).start()
    probe = PageProbe(browser, 1280, 720)
    try:
        probe.open(server.url + "/?wall=1")
        note = probe.wait_for(
            """() => {
              const p = document.querySelector('.w-calendar .cal-problems');
              return p && !p.hidden && p.textContent.includes('utelämnad') ? p.textContent : null;
            }""",
            timeout_s=30,
        )
        assert note == "Familj: 1 händelse utelämnad (1 could not be read)"
        titles = probe.js("() => [...document.querySelectorAll('.w-calendar .cal-title')].map((t) => t.textContent)")
        assert "Dentist" in titles
        assert "Typo in the duration" not in titles
        health = json.loads(get_text(server.url + "/healthz"))["calendar"]
        assert (health["status"], health["skipped"]) == ("ok", 1)
        assert health["calendars"][0]["skipped_reason"] == "1 could not be read"
        assert probe.page_errors == []
    finally:
        probe.close()
        server.stop()
        api.stop()
