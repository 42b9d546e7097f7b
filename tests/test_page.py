"""The dashboard page in real headless Chromium against a real server (demo stand-ins for the remote APIs)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import tornado.web
from playwright import sync_api
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.netutil import bind_sockets

from server.demo import world
from server.demo.standin import make_standin_app
from tests.browser import ARTIFACTS, HomeboardProcess, KioskStandin, PageProbe, launch
from tests.fakeapi import FakeApi, Reply, serve_app

TZ = ZoneInfo("Europe/Stockholm")
TOKEN = "test-ingest-token-0123456789"
XSS = '<img src=x onerror="window.__xss=1">'
WALL_SIZES = {"1920x1080": (1920, 1080), "1280x720": (1280, 720), "800x480": (800, 480), "1080x1920": (1080, 1920)}


def page_doc(**extra: Any) -> dict[str, Any]:
    """A test config: English words, no night theme or daily reload to race with, two LAN sensors."""
    doc: dict[str, Any] = {
        "timezone": "Europe/Stockholm",
        "page": {"locale": "en-GB", "night_from": None, "night_until": None, "reload_at": None},
        "remote_sensors": [
            {"id": "balcony", "name": "Balcony", "token": TOKEN},
            {"id": "attic", "name": "Attic", "token": TOKEN, "max_age_s": 2},
        ],
        "history": {"commit_interval_s": 0.05},
    }
    doc.update(extra)
    return doc


@pytest.fixture(scope="module")
def page_browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeboardProcess]:
    """One demo server shared by the tests that do not stop it."""
    server = HomeboardProcess(tmp_path_factory.mktemp("page"), page_doc()).start()
    yield server
    server.stop()


@pytest.fixture
def page_probe(page_browser: Any) -> Iterator[Any]:
    probes: list[PageProbe] = []

    def make(width: int = 1920, height: int = 1080) -> PageProbe:
        probe = PageProbe(page_browser, width, height)
        probes.append(probe)
        return probe

    yield make
    for probe in probes:
        probe.close()


def filled(probe: PageProbe) -> dict[str, Any]:
    """What each widget shows right now, from the DOM."""
    return probe.js(
        """() => {
        const visible = (sel) => [...document.querySelectorAll(sel)].filter((e) => !e.hidden && e.offsetParent);
        const txt = (sel) => document.querySelector(sel)?.textContent ?? "";
        return {
          clock: txt(".clock-main"),
          date: txt(".clock-date"),
          temp: txt(".now-temp"),
          condition: txt(".now-condition"),
          departures: visible(".dep").map((r) => [r.querySelector(".dep-line").textContent,
            r.querySelector(".dep-destination").textContent, r.querySelector(".dep-count").textContent]),
          sensors: visible(".sensor").map((r) => [r.querySelector(".sensor-name").textContent,
            r.querySelector(".sensor-temp").textContent, r.querySelector(".spark-line").getAttribute("d").length]),
          // Rows a small screen has no room for still get their sparkline.
          sparklines: [...document.querySelectorAll(".spark-line")].filter((p) => p.getAttribute("d")).length,
          days: visible(".day").map((r) => r.textContent),
          hours: visible(".hour").length,
          activities: visible(".act").map((r) => r.textContent),
          week: visible(".week-sport").map((r) => r.textContent),
          body: document.body.innerText,
        };
      }"""
    )


def wait_filled(probe: PageProbe, timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = filled(probe)
        if (
            state["temp"] not in ("", "–")
            and state["departures"]
            and state["sensors"]
            and state["sparklines"]
            and state["days"]
            and state["activities"]
            and state["week"]
        ):
            return state
        time.sleep(0.1)
    raise AssertionError(f"widgets not filled in {timeout_s} s: {state}")


def assert_clean(probe: PageProbe) -> None:
    assert probe.page_errors == []
    assert probe.console_errors == []
    assert probe.csp_violations() == []


def test_every_widget_renders_with_data(page_server: HomeboardProcess, page_probe: Any) -> None:
    probe = page_probe().open(page_server.url + "/?wall=1")
    state = wait_filled(probe)
    assert re.fullmatch(r"\d\d:\d\d", state["clock"]), state["clock"]
    assert re.search(r"\d", state["date"])
    assert re.fullmatch(r"[-−]?\d+°", state["temp"]), state["temp"]
    assert state["condition"] not in ("", "–")
    line, destination, count = state["departures"][0]
    assert line
    assert destination
    assert count
    assert state["hours"] >= 3
    assert all(re.fullmatch(r"[-−]?\d+(\.\d)?°", temp) for _name, temp, _d in state["sensors"] if temp != "–")
    assert any(re.search(r"\d+(\.\d+)? km", a) for a in state["activities"])
    # Never a made-up or broken value on screen.
    for bad in ("NaN", "undefined", "null", "[object"):
        assert bad not in state["body"], bad
    info = probe.js(
        "() => ({version: window.__homeboard.version, topics: [...window.__homeboard.store.topics.keys()]})"
    )
    assert info["version"] == page_server.get_json("/api/config")["version"]
    assert {"weather", "departures", "strava"} <= set(info["topics"])
    # Everything comes from Homeboard itself: the wall works with the internet down.
    ws_url = page_server.url.replace("http://", "ws://")
    foreign = [u for u in probe.requests if not u.startswith((page_server.url + "/", ws_url + "/", "data:"))]
    assert foreign == []
    assert ws_url + "/ws" in probe.requests
    assert_clean(probe)


def test_value_change_appears_within_500_ms(page_server: HomeboardProcess, page_probe: Any) -> None:
    probe = page_probe().open(page_server.url)
    wait_filled(probe)
    status, _ = page_server.post_reading("balcony", TOKEN, {"temperature_c": 3.25})
    assert status == 201
    probe.wait_for("() => [...document.querySelectorAll('.sensor-temp')].some((n) => n.textContent === '3.3°')")
    # Arm an observer, then change the value on the server and time how long until the page shows it.
    probe.js(
        """() => {
          window.__seenAt = null;
          const obs = new MutationObserver(() => {
            const shown = [...document.querySelectorAll('.sensor-temp')].some((n) => n.textContent === '7.8°');
            if (shown && window.__seenAt === null) window.__seenAt = Date.now();
          });
          obs.observe(document.querySelector('.sensors'), {childList: true, subtree: true, characterData: true});
        }"""
    )
    sent_ms = time.time() * 1000
    status, _ = page_server.post_reading("balcony", TOKEN, {"temperature_c": 7.8, "humidity_pct": 61.0})
    assert status == 201
    seen_ms = probe.wait_for("() => window.__seenAt", timeout_s=5)
    latency_ms = seen_ms - sent_ms
    print(f"ingest POST → value on screen: {latency_ms:.0f} ms")
    assert latency_ms < 500, latency_ms
    assert_clean(probe)


def test_stale_topic_greys_out_and_shows_its_age(page_server: HomeboardProcess, page_probe: Any) -> None:
    probe = page_probe().open(page_server.url)
    wait_filled(probe)
    status, _ = page_server.post_reading("attic", TOKEN, {"temperature_c": 12.5})
    assert status == 201
    updated = dt.datetime.now(TZ)
    row = """() => [...document.querySelectorAll('.sensor')].find((r) =>
      r.querySelector('.sensor-name').textContent === 'Attic')"""
    probe.wait_for(f"() => ({row})()?.querySelector('.sensor-temp').textContent === '12.5°'")
    # attic's max_age_s is 2: the server marks it stale, the page greys it and says since when.
    stale = probe.wait_for(
        f"""() => {{ const r = ({row})(); return r && r.classList.contains('is-stale') &&
          r.querySelector('.sensor-status').textContent; }}""",
        timeout_s=8,
    )
    expected = {updated.strftime("%H:%M"), (updated - dt.timedelta(minutes=1)).strftime("%H:%M")}
    assert any(stale == f"updated {hhmm}" for hhmm in expected), stale
    assert probe.js(f"() => getComputedStyle(({row})().querySelector('.sensor-now')).opacity") == "0.45"
    assert_clean(probe)


def test_server_down_shows_banner_then_recovers_without_reload(tmp_path: Path, page_probe: Any) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    doc = page_doc()
    doc["remote_sensors"].append({"id": "gone", "name": "Gone", "token": TOKEN})
    first = HomeboardProcess(tmp_path / "a", doc).start()
    try:
        probe = page_probe().open(first.url)
        wait_filled(probe)
        assert first.post_reading("gone", TOKEN, {"temperature_c": 1.5})[0] == 201
        probe.wait_for("() => [...document.querySelectorAll('.sensor-name')].some((n) => n.textContent === 'Gone')")
        probe.js("() => { window.__sameDocument = true; }")
        before = filled(probe)
        stopped_at = time.monotonic()
        first.stop()
        banner = probe.wait_for(
            "() => { const b = document.getElementById('offline'); return !b.hidden && b.textContent; }",
            timeout_s=20,
        )
        banner_s = time.monotonic() - stopped_at
        print(f"server stopped → offline banner: {banner_s:.1f} s")
        assert re.fullmatch(r"offline since \d\d:\d\d", banner), banner
        # The last values stay on the wall while the server is away (nothing blanks, nothing changes).
        during = filled(probe)
        assert during["temp"] == before["temp"]
        assert during["departures"]
        assert during["activities"] == before["activities"]
        # Every sensor value on the wall before is still there, unchanged (sensors still waiting for their first
        # reading are on the wall too, saying so).
        had = {name: temp for name, temp, _d in before["sensors"] if re.search(r"\d", temp)}
        assert had.get("Gone") == "1.5°", before["sensors"]
        assert {name: temp for name, temp, _d in during["sensors"] if name in had} == had, during["sensors"]
        probe.page.wait_for_timeout(1500)
        assert [s[:2] for s in filled(probe)["sensors"]] == [s[:2] for s in during["sensors"]]
    finally:
        first.stop()

    # Same port, a config without the "gone" sensor: the snapshot on reconnect replaces everything.
    second = HomeboardProcess(tmp_path / "b", page_doc(), port=first.port)
    restarted_at = time.monotonic()
    second.start()
    try:
        probe.wait_for("() => document.getElementById('offline').hidden", timeout_s=35)
        back_s = time.monotonic() - restarted_at
        print(f"server restarted → page live again: {back_s:.1f} s")
        assert probe.js("() => window.__sameDocument === true"), "the page reloaded instead of reconnecting"
        probe.wait_for("() => ![...document.querySelectorAll('.sensor-name')].some((n) => n.textContent === 'Gone')")
        assert second.post_reading("balcony", TOKEN, {"temperature_c": -4.0})[0] == 201
        probe.wait_for(
            "() => [...document.querySelectorAll('.sensor-temp')].some((n) => /^[-−]4\\.0°$/.test(n.textContent))"
        )
        assert probe.page_errors == []
        assert probe.csp_violations() == []
    finally:
        second.stop()


class StravaStandin:
    """Strava's token endpoint and activity list in their real formats, with names (and distance) the test chooses."""

    def __init__(self, names: list[str], *, distance_m: float = 5000.0, sport: str = "Run") -> None:
        self.names = names
        self.distance_m = distance_m
        self.sport = sport
        self.port = 0
        self._loop: IOLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import asyncio

        async def main() -> None:
            standin = self

            class Token(tornado.web.RequestHandler):
                def post(self) -> None:
                    self.finish(
                        {
                            "token_type": "Bearer",
                            "access_token": "access-1",
                            "refresh_token": "refresh-2",
                            "expires_at": int(time.time()) + 21600,
                            "expires_in": 21600,
                        }
                    )

            class Activities(tornado.web.RequestHandler):
                def get(self) -> None:
                    now = dt.datetime.now(dt.UTC)
                    items = [
                        {
                            "id": 900 + i,
                            "name": name,
                            "type": standin.sport,
                            "sport_type": standin.sport,
                            "start_date": (now - dt.timedelta(hours=2 + i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "start_date_local": (now - dt.timedelta(hours=2 + i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "distance": standin.distance_m + i,
                            "moving_time": 1500,
                            "elapsed_time": 1600,
                            "total_elevation_gain": 12.0,
                            "average_heartrate": 150.0,
                        }
                        for i, name in enumerate(standin.names)
                    ]
                    self.set_header("Content-Type", "application/json")
                    self.finish(json.dumps(items))

            app = tornado.web.Application([(r"/oauth/token", Token), (r"/api/v3/athlete/activities", Activities)])
            server = HTTPServer(app)
            sockets = bind_sockets(0, "127.0.0.1")
            server.add_sockets(sockets)
            self.port = sockets[0].getsockname()[1]
            self._loop = IOLoop.current()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            server.stop()

        asyncio.run(main())

    def start(self) -> StravaStandin:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.add_callback(self._stop.set)
            self._thread.join(10)


def hostile_departures(_request: Any) -> Reply:
    """SL's departures answer (the demo's timetable, now) with markup in the deviation texts."""
    payload = world.departures_payload(9192, time.time())
    for dep in payload["departures"]:
        dep["deviations"] = [{"importance_level": 5, "consequence": "INFORMATION", "message": XSS}]
    payload["stop_deviations"][0]["message"] = "Hissen <b>ur funktion</b> & <script>window.__xss=3</script>"
    return Reply(200, payload)


def test_third_party_strings_render_as_text_and_run_nothing(tmp_path: Path, page_probe: Any) -> None:
    strava = StravaStandin([XSS, "</script><script>window.__xss=2</script>", "\u202eevil.exe"]).start()
    sl = FakeApi().start()
    sl.route("/v1/sites/9192/departures", hostile_departures)
    base = f"http://127.0.0.1:{strava.port}"
    doc = page_doc(
        sources={
            "strava": {
                "client_id": "1",
                "client_secret": "test-secret",
                "refresh_token": "refresh-1",
                "base_url": base + "/api/v3",
                "token_url": base + "/oauth/token",
            },
            "departures": {"site_id": 9192, "base_url": sl.url("/v1")},
        },
        remote_sensors=[{"id": "evil", "name": XSS, "token": TOKEN}],
    )
    server = HomeboardProcess(tmp_path, doc, demo=False).start()
    try:
        assert server.post_reading("evil", TOKEN, {"temperature_c": 20.0})[0] == 201
        probe = page_probe().open(server.url)
        names = probe.wait_for(
            "() => { const n = [...document.querySelectorAll('.act-name')].filter((e) => e.textContent)"
            ".map((e) => e.textContent); return n.length ? n : null; }",
            timeout_s=20,
        )
        assert XSS in names
        assert "</script><script>window.__xss=2</script>" in names
        probe.wait_for(
            "() => [...document.querySelectorAll('.sensor-name')].some((n) => n.textContent.includes('<img'))"
        )
        deviations = probe.wait_for(
            "() => { const d = [...document.querySelectorAll('.dep-deviation')].filter((e) => e.textContent)"
            ".map((e) => e.textContent); return d.length ? d : null; }"
        )
        assert XSS in deviations
        assert probe.text(".dep-notice") == "Hissen <b>ur funktion</b> & <script>window.__xss=3</script>"
        time.sleep(0.5)  # give an injected onerror every chance to fire
        assert probe.js("() => window.__xss") is None
        # Shown as text: no element was made from the strings.
        inside = ".act-name *, .sensor-name *, .dep-deviation *, .dep-notice *, img[src=x]"
        assert probe.js(f"() => document.querySelectorAll('{inside}').length") == 0
        assert_clean(probe)
    finally:
        server.stop()
        strava.stop()
        sl.stop()


@pytest.fixture
def remote_apis() -> Iterator[FakeApi]:
    """The demo's WeatherAPI and SL stand-in, in their real formats on loopback, for a server run without --demo."""
    apis = serve_app(make_standin_app())
    yield apis
    apis.stop()


def page_words(probe: PageProbe) -> dict[str, Any]:
    """The words, numbers and widgets on the page, from the DOM."""
    return probe.js(
        """() => {
          const txt = (sel) => document.querySelector(sel)?.textContent ?? null;
          const all = (sel) => [...document.querySelectorAll(sel)].filter((e) => !e.hidden && e.offsetParent)
            .map((e) => e.textContent);
          return {
            lang: document.documentElement.lang,
            widgets: [...document.querySelectorAll('section.w')].map((s) => s.dataset.widget),
            titles: all('.kicker-title'),
            clock: [txt('.clock-main'), txt('.clock-suffix')],
            temp: txt('.now-temp'), condition: txt('.now-condition'), wind: txt('.now-wind'),
            feels: txt('.now-feels'), humidity: txt('.now-humidity'), sun: all('.now-sun'),
            hours: all('.hour-time'), days: all('.day-name'),
            deps: [...document.querySelectorAll('.dep')].filter((e) => !e.hidden).map((e) =>
              [e.querySelector('.dep-count').textContent, e.querySelector('.dep-unit').textContent]),
            distances: all('.act-distance'), paces: all('.act-pace'),
            sensors: [...document.querySelectorAll('.sensor')].map((r) => ({
              name: r.querySelector('.sensor-name').textContent, temp: r.querySelector('.sensor-temp').textContent,
              humidity: r.querySelector('.sensor-humidity').textContent,
              pressure: r.querySelector('.sensor-pressure').textContent,
              status: r.querySelector('.sensor-status').textContent,
              waiting: r.classList.contains('is-waiting')})),
          };
        }"""
    )


def assert_fits(probe: PageProbe, width: int, height: int, label: str) -> None:
    """No scrolling, every widget inside the screen and of a usable size."""
    geometry = probe.js(
        """() => ({
          scroll: [document.documentElement.scrollWidth, document.documentElement.scrollHeight],
          widgets: [...document.querySelectorAll('section.w')].map((s) => {
            const r = s.getBoundingClientRect();
            return [s.dataset.widget, Math.round(r.left), Math.round(r.top), Math.round(r.right),
              Math.round(r.bottom), Math.round(r.width), Math.round(r.height)];
          }),
        })"""
    )
    assert geometry["scroll"] == [width, height], (label, geometry)
    for widget, left, top, right, bottom, w, h in geometry["widgets"]:
        assert (left, top) >= (0, 0), (label, widget)
        assert right <= width, (label, widget)
        assert bottom <= height, (label, widget)
        assert min(w, h) > 100, (label, widget, w, h)


def test_swedish_wall_shows_only_what_is_configured(tmp_path: Path, page_probe: Any, remote_apis: FakeApi) -> None:
    """sv-SE: Swedish words, weather texts and decimal commas; a 4246.0 m walk is 4,2 km; no sensors configured,
    so no sensors widget (not "waiting for data" forever), and the layout still fits at every wall size."""
    strava = StravaStandin(["Lunchpromenad"], distance_m=4246.0, sport="Walk").start()
    base = f"http://127.0.0.1:{strava.port}"
    doc = page_doc(
        page={"locale": "sv-SE", "night_from": None, "night_until": None, "reload_at": None},
        remote_sensors=[],
        sources={
            "weather": {"api_key": "test-key", "query": "Stockholm", "base_url": remote_apis.url("/weatherapi/v1")},
            "departures": {"site_id": 9192, "base_url": remote_apis.url("/sl/v1")},
            "strava": {
                "client_id": "1",
                "client_secret": "test-secret",
                "refresh_token": "refresh-1",
                "base_url": base + "/api/v3",
                "token_url": base + "/oauth/token",
            },
        },
    )
    server = HomeboardProcess(tmp_path, doc, demo=False).start()
    ready = """() => document.querySelector('.act-distance')?.textContent && document.querySelectorAll(
      '.dep:not([hidden])').length && !['', '–'].includes(document.querySelector('.now-condition')?.textContent)"""
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        probe = page_probe().open(server.url + "/?wall=1")
        probe.wait_for(ready, timeout_s=20)
        for size, (width, height) in WALL_SIZES.items():
            # One page, the screen resized (as a rotated or another panel would): the layout must follow.
            probe.page.set_viewport_size({"width": width, "height": height})
            probe.page.wait_for_timeout(300)  # the lists' fit pass
            probe.page.screenshot(path=str(ARTIFACTS / f"page-sv-no-sensors-{size}.png"))
            assert_fits(probe, width, height, size)
            assert_clean(probe)
        shown = page_words(probe)
        assert shown["lang"] == "sv-SE"
        assert shown["widgets"] == ["clock", "weather", "departures", "forecast", "strava"]  # no sensors widget
        assert {"Avgångar", "Prognos", "Träning"} <= set(shown["titles"])
        swedish = {text for pair in world.CONDITIONS_BY_LANG["sv"].values() for text in pair}
        assert shown["condition"] in swedish, shown["condition"]  # WeatherAPI asked with lang=sv
        assert shown["feels"].startswith("känns som ")
        assert re.fullmatch(r"vind \d+ m/s [NSOV]{1,3}", shown["wind"]), shown["wind"]  # SSV, not SSW
        assert "Idag" in shown["days"]
        assert shown["distances"] == ["4,2 km"]  # 4246.0 m: rounded once, on the page; never 4,3
        # Countdowns: "Nu", seconds or whole minutes with their unit (or "inställd"): never "3:38".
        for count, unit in shown["deps"]:
            assert (count, unit) == ("Nu", "") or (count.isdigit() and unit in ("s", "min")) or count == "inställd", (
                shown["deps"]
            )
        assert all(re.fullmatch(r"\d\d", h) for h in shown["hours"]), shown["hours"]
    finally:
        server.stop()
        strava.stop()


def fahrenheit(celsius: float, digits: int = 0) -> str:
    """What the page should show: converted, then rounded once, half away from zero."""
    f = celsius * 9 / 5 + 32
    factor = 10**digits
    rounded = math.copysign(math.floor(abs(f) * factor + 0.5), f) / factor
    return f"{rounded:.{digits}f}°"


def test_imperial_english_12_hour_wall(tmp_path: Path, page_probe: Any, remote_apis: FakeApi) -> None:
    """en-US, imperial, 12-hour clock: °F, mph, inHg, "2:52 PM" times; no departures or Strava configured, so
    neither widget is on the wall."""
    doc = page_doc(
        page={
            "locale": "en-US",
            "units": "imperial",
            "clock_24h": False,
            "night_from": None,
            "night_until": None,
            "reload_at": None,
        },
        remote_sensors=[
            {"id": "balcony", "name": "Balcony", "token": TOKEN},
            {"id": "attic", "name": "Attic", "token": TOKEN},  # never reports: waiting, not a fault
        ],
        sources={
            "weather": {"api_key": "test-key", "query": "Stockholm", "base_url": remote_apis.url("/weatherapi/v1")}
        },
    )
    server = HomeboardProcess(tmp_path, doc, demo=False).start()
    try:
        assert (
            server.post_reading(
                "balcony", TOKEN, {"temperature_c": 21.5, "humidity_pct": 40.2, "pressure_hpa": 1013.25}
            )[0]
            == 201
        )
        probe = page_probe(1280, 720).open(server.url + "/?wall=1")
        probe.wait_for(
            """() => document.querySelector('.sensor-temp')?.textContent.includes('°') &&
              !['', '–'].includes(document.querySelector('.now-temp')?.textContent)""",
            timeout_s=20,
        )
        shown = page_words(probe)
        weather = server.get_json("/api/state")["topics"]["weather"]["data"]
        assert shown["lang"] == "en-US"
        assert shown["widgets"] == ["clock", "weather", "sensors", "forecast"]  # no departures, no strava
        assert re.fullmatch(r"[1-9]\d?:\d\d", shown["clock"][0]), shown["clock"]  # "2:52", no leading zero
        assert shown["clock"][1] in ("AM", "PM")
        assert shown["temp"] == fahrenheit(weather["current"]["temperature_c"])
        assert re.fullmatch(r"wind \d+ mph [NSEW]{1,3}", shown["wind"]), shown["wind"]
        english = {text for pair in world.CONDITIONS.values() for text in pair}
        assert shown["condition"] in english, shown["condition"]  # English: no lang parameter
        assert all(re.fullmatch(r"(sunrise|sunset) [1-9]\d?:\d\d\s[AP]M", sun) for sun in shown["sun"]), shown["sun"]
        assert all(re.fullmatch(r"[1-9]\d?\s[AP]M", h) for h in shown["hours"]), shown["hours"]
        assert "Today" in shown["days"]
        balcony, attic = shown["sensors"]
        assert attic["name"] == "Attic"
        assert attic["waiting"] is True
        assert attic["status"] == "waiting for data"
        assert attic["temp"] == "–"
        assert balcony["name"] == "Balcony"
        assert balcony["temp"] == "70.7°"  # 21.5 °C
        assert balcony["humidity"] == "40%"
        assert balcony["pressure"] == "29.92 inHg"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for size, (width, height) in WALL_SIZES.items():
            # Longer 12-hour labels ("10 PM") and no departures or Strava: the layout still fits everywhere.
            probe.page.set_viewport_size({"width": width, "height": height})
            probe.page.wait_for_timeout(300)
            probe.page.screenshot(path=str(ARTIFACTS / f"page-en-us-imperial-{size}.png"))
            assert_fits(probe, width, height, size)
        assert_clean(probe)
    finally:
        server.stop()


def test_screenshots_fit_without_scrolling(page_server: HomeboardProcess, page_probe: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, (width, height) in WALL_SIZES.items():
        probe = page_probe(width, height).open(page_server.url + "/?wall=1")
        wait_filled(probe)
        probe.page.wait_for_timeout(300)  # late icons and the lists' fit pass
        probe.page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"))
        assert_fits(probe, width, height, name)
        # A sensor is never dropped silently: on screen, or named in the card's "+N more" note.
        sensors = probe.js(SENSOR_ROWS)
        left_out = [r["name"] for r in sensors["rows"] if not r["visible"]]
        assert len(sensors["rows"]) == 5, (name, sensors)  # the demo's three local sensors and two LAN ones
        assert sensors["more"] == (f"+{len(left_out)} more · {', '.join(left_out)}" if left_out else None), name
        # The demo forecasts three days: tighter day rows make room for all three rather than cutting one.
        days = probe.js(
            "() => [document.querySelectorAll('.day:not([hidden])').length, "
            "document.querySelectorAll('.day[data-fit-hidden]').length]"
        )
        assert days == [3, 0], (name, days)
        assert_clean(probe)
    phone = page_probe(390, 844).open(page_server.url + "/?wall=0")
    wait_filled(phone)
    phone.page.screenshot(path=str(ARTIFACTS / "page-phone-390x844.png"), full_page=True)
    columns = phone.js(
        "() => new Set([...document.querySelectorAll('section.w')]"
        ".map((s) => Math.round(s.getBoundingClientRect().left))).size"
    )
    assert columns == 1  # one column on a phone
    assert phone.js("() => document.documentElement.scrollWidth") == 390


# Five local sensors (emulated chips in demo mode, read through the real drivers) and the demo LAN sensor.
SIX_SENSORS = {
    "sensors": [
        {"id": "living_room", "name": "Living room", "type": "bme280", "bus": 1, "address": 0x76, "interval_s": 15},
        {"id": "bedroom", "name": "Bedroom", "type": "sht31", "bus": 1, "address": 0x44, "interval_s": 15},
        {"id": "outdoor", "name": "Outdoor", "type": "ds18b20", "device": "28-0316a2794aff", "interval_s": 15},
        {"id": "kitchen", "name": "Kitchen", "type": "mcp9808", "bus": 1, "address": 0x18, "interval_s": 15},
        {"id": "bathroom", "name": "Bathroom", "type": "sht31", "bus": 1, "address": 0x45, "interval_s": 15},
    ],
    "remote_sensors": [{"id": "balcony", "name": "Balcony", "token": TOKEN}],
}
SIX_NAMES = {"Living room", "Bedroom", "Outdoor", "Kitchen", "Bathroom", "Balcony"}

# Per sensor row: is its name on screen (inside the viewport and inside its card, which clips), whole (not cut
# with an ellipsis), and its value; plus the "+N more" note. Shared by the tests below.
SENSOR_ROWS = """() => {
  const card = document.querySelector('.w-sensors').getBoundingClientRect();
  const inside = (r, box) => r.width > 0 && r.height > 0 && r.left >= box.left - 0.5 && r.right <= box.right + 0.5
    && r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5;
  const view = {left: 0, top: 0, right: innerWidth, bottom: innerHeight};
  const note = document.querySelector('.sensors-more');
  return {
    rows: [...document.querySelectorAll('.sensor')].map((row) => {
      const name = row.querySelector('.sensor-name');
      const r = name.getBoundingClientRect();
      return {
        name: name.textContent,
        visible: !row.hidden && name.offsetParent !== null && inside(r, view) && inside(r, card),
        whole: name.scrollWidth <= name.clientWidth + 1,
        temp: row.querySelector('.sensor-temp').textContent,
      };
    }),
    compact: document.querySelector('.sensors').classList.contains('is-compact'),
    more: note && !note.hidden && note.offsetParent !== null && inside(note.getBoundingClientRect(), card)
      ? note.textContent : null,
  };
}"""


def test_every_sensor_is_shown_at_every_wall_size(tmp_path: Path, page_probe: Any) -> None:
    """Six sensors: all on screen at 1920x1080, 1280x720 and 1080x1920; at least four at 800x480, and the rest
    named on the card. A sensor never silently disappears."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = HomeboardProcess(tmp_path, page_doc(**SIX_SENSORS)).start()
    try:
        for size, (width, height) in WALL_SIZES.items():
            probe = page_probe(width, height).open(server.url + "/?wall=1")
            probe.wait_for(
                r"""() => { const t = [...document.querySelectorAll('.sensor-temp')].map((n) => n.textContent);
                  return t.length === 6 && t.every((v) => /\d/.test(v)); }""",
                timeout_s=20,
            )
            # Every row's sparkline drawn (the history answered): the rows have their final height.
            probe.wait_for("() => document.querySelectorAll('.spark-line[d^=\"M\"]').length === 6", timeout_s=10)
            probe.page.wait_for_timeout(300)
            probe.page.screenshot(path=str(ARTIFACTS / f"page-sensors6-{size}.png"))
            state = probe.js(SENSOR_ROWS)
            names = {r["name"] for r in state["rows"]}
            assert names == SIX_NAMES, (size, names)
            shown = [r for r in state["rows"] if r["visible"]]
            left_out = [r["name"] for r in state["rows"] if not r["visible"]]
            print(f"{size}: {len(shown)} of 6 sensors shown, compact={state['compact']}, note={state['more']!r}")
            assert all(r["whole"] for r in shown), (size, state)
            assert all(re.search(r"\d", r["temp"]) for r in shown), (size, state)
            if size == "800x480":
                assert len(shown) >= 4, (size, state)
            else:
                assert left_out == [], (size, state)
            # What does not fit is said on the card, by name; when everything fits there is no note.
            if left_out:
                assert state["more"] == f"+{len(left_out)} more · {', '.join(left_out)}", (size, state)
            else:
                assert state["more"] is None, (size, state)
            assert state["compact"] is True, size  # six roomy rows fit nowhere: the compact rows are in use
            assert_clean(probe)
    finally:
        server.stop()


def test_sensors_roomy_when_they_fit_and_named_when_they_cannot(page_standin: Any, page_probe: Any) -> None:
    """Two sensors keep the roomy rows; twelve on a small screen end in a note naming every one left out."""
    standin = page_standin(widgets=["clock", "weather", "departures", "sensors", "forecast", "strava"])
    names = [f"Room {i:02d}" for i in range(12)]
    standin.topics = {
        f"sensor/room{i:02d}": topic({"name": name, "temperature_c": 20.0 + i / 10, "measured_at": iso_in(0)})
        for i, name in enumerate(names)
    }
    small = page_probe(800, 480).open(standin.url + "/?wall=1")
    state = small.wait_for(
        f"() => {{ const s = ({SENSOR_ROWS})(); return s.rows.length === 12 && s.more ? s : null; }}"
    )
    shown = [r["name"] for r in state["rows"] if r["visible"]]
    left_out = [r["name"] for r in state["rows"] if not r["visible"]]
    assert state["compact"] is True
    assert len(shown) >= 4, state
    assert shown + left_out == names  # in the server's order: the first ones shown, the rest named
    assert state["more"] == f"+{len(left_out)} more · {', '.join(left_out)}"
    small.page.screenshot(path=str(ARTIFACTS / "page-sensors12-800x480.png"))

    # Ten sensors go (a snapshot replaces everything): the note goes with them, the two left get roomy rows.
    standin.topics = {k: v for k, v in standin.topics.items() if k in ("sensor/room00", "sensor/room01")}
    standin.send(standin.snapshot())
    state = small.wait_for(f"() => {{ const s = ({SENSOR_ROWS})(); return s.rows.length === 2 ? s : null; }}")
    assert [r["visible"] for r in state["rows"]] == [True, True]
    assert state["more"] is None
    assert state["compact"] is False

    wide = page_probe(1920, 1080).open(standin.url + "/?wall=1")
    wide.wait_for("() => document.querySelectorAll('.sensor').length === 2")
    state = wide.js(SENSOR_ROWS)
    assert [r["visible"] for r in state["rows"]] == [True, True]
    assert state["compact"] is False  # two fit as roomy rows: no need to shrink them
    assert wide.js("() => getComputedStyle(document.querySelector('.spark')).height") != "0px"
    for probe in (small, wide):
        # The stand-in has no history endpoint: those 404s are the one error allowed.
        probe.console_errors = [e for e in probe.console_errors if "/history" not in e]
        assert_clean(probe)


def test_one_broken_widget_does_not_blank_the_wall(page_server: HomeboardProcess, page_probe: Any) -> None:
    probe = page_probe()
    probe.page.route(
        "**/js/widgets/strava.js",
        lambda route: route.fulfill(body="export const = ;", status=200, content_type="text/javascript"),
    )
    probe.open(page_server.url)
    state = probe.wait_for(
        "() => document.querySelector('.w-strava.is-broken') && document.querySelector('.now-temp').textContent"
    )
    assert state not in ("", "–")
    assert probe.js("() => document.querySelectorAll('.sensor').length") > 0


# ---------------------------------------------------------------- client behaviours, against a scripted stand-in
# The real server cannot be made to change its version or ask for a reload on cue; this stand-in serves the real
# kiosk/ files through the real PageStaticHandler (CSP included) and scripts /ws and /api/config.

STANDIN_PAGE = {
    "title": "Homeboard",
    "locale": "en-GB",
    "clock_24h": True,
    "night_from": None,
    "night_until": None,
    "widgets": ["clock", "sensors"],
    "large": [],
    "reload_at": None,
}


@pytest.fixture
def page_standin() -> Iterator[Any]:
    standins: list[KioskStandin] = []

    def make(**page: Any) -> KioskStandin:
        standin = KioskStandin({**STANDIN_PAGE, **page}).start()
        standins.append(standin)
        return standin

    yield make
    for standin in standins:
        standin.stop()


def wait_py(predicate: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_heartbeat_says_role_version_and_render_time(page_standin: Any, page_probe: Any) -> None:
    standin = page_standin()
    page_probe().open(standin.url + "/?wall=1")
    wait_py(lambda: standin.heartbeats)
    beat = standin.heartbeats[0]
    assert beat["type"] == "heartbeat"
    assert beat["role"] == "wall"
    assert beat["version"] == "1.0.0"
    rendered = dt.datetime.fromisoformat(beat["rendered_at"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - rendered).total_seconds()) < 90
    page_probe().open(standin.url + "/?wall=0")
    wait_py(lambda: any(b["role"] == "viewer" for b in standin.heartbeats))
    assert set(beat) == {"type", "role", "version", "rendered_at"}


def test_new_server_version_reloads_the_page(page_standin: Any, page_probe: Any) -> None:
    standin = page_standin()
    probe = page_probe().open(standin.url)
    wait_py(lambda: standin.connects == 1)
    probe.js("() => { window.__before = true; }")
    # Same version back after a restart: reconnect, no reload.
    standin.drop_clients()
    wait_py(lambda: standin.connects == 2)
    probe.page.wait_for_timeout(300)
    assert probe.js("() => window.__before === true")
    # A new version: the page reloads itself and shows what the new server serves.
    standin.version = "1.1.0"
    standin.drop_clients()
    probe.wait_for("() => window.__before === undefined && window.__homeboard?.version === '1.1.0'", timeout_s=15)
    assert standin.config_requests == 2
    assert probe.page_errors == []


def test_reload_command_from_the_server(page_standin: Any, page_probe: Any) -> None:
    standin = page_standin()
    probe = page_probe().open(standin.url)
    wait_py(lambda: standin.sockets)
    probe.js("() => { window.__before = true; }")
    standin.send({"type": "reload"})
    probe.wait_for("() => window.__before === undefined && document.body.dataset.ready === '1'")
    # Asked again at once: refused, so a confused server cannot put the wall in a reload loop.
    wait_py(lambda: standin.connects >= 2)
    probe.js("() => { window.__again = true; }")
    standin.send({"type": "reload"})
    probe.page.wait_for_timeout(500)
    assert probe.js("() => window.__again === true")


def hhmm(moment: dt.datetime) -> str:
    return moment.strftime("%H:%M")


def test_night_theme_follows_the_schedule(page_standin: Any, page_probe: Any) -> None:
    now = dt.datetime.now(TZ)
    night = page_standin(night_from=hhmm(now - dt.timedelta(minutes=5)), night_until=hhmm(now + dt.timedelta(hours=2)))
    day = page_standin(night_from=hhmm(now + dt.timedelta(hours=2)), night_until=hhmm(now + dt.timedelta(hours=3)))
    assert page_probe().open(night.url).js("() => document.body.dataset.theme") == "night"
    assert page_probe().open(day.url).js("() => document.body.dataset.theme") == "day"


def test_daily_reload_only_when_the_server_answers(page_standin: Any, page_probe: Any) -> None:
    start = dt.datetime.now(TZ).replace(hour=3, minute=56, second=30, microsecond=0)
    for healthy in (False, True):
        standin = page_standin(reload_at="04:00")
        standin.healthy = healthy
        probe = page_probe()
        probe.page.clock.install(time=start)
        probe.open(standin.url)
        probe.js("() => { window.__before = true; }")
        # To just past 04:00 on the page's clock (not further: the /healthz request's 5 s timeout runs on it too).
        probe.page.clock.run_for(210_000 + 200)
        probe.page.wait_for_timeout(500)
        if healthy:
            probe.wait_for("() => window.__before === undefined && document.body.dataset.ready === '1'")
            assert standin.config_requests == 2
        else:
            assert probe.js("() => window.__before === true"), "reloaded although /healthz failed"
            assert standin.config_requests == 1


def test_formatting_and_rules_in_the_browser(page_standin: Any, page_probe: Any) -> None:
    """The pure parts of the page (formatting, countdown, trend, back-off, schedules, states), run by Chromium."""
    probe = page_probe().open(page_standin().url)
    r = probe.js(
        """async () => {
          const f = await import('/js/format.js');
          const sched = await import('/js/schedule.js');
          const sock = await import('/js/socket.js');
          const dep = await import('/js/widgets/departures.js');
          const sen = await import('/js/widgets/sensors.js');
          const strava = await import('/js/widgets/strava.js');
          const card = await import('/js/card.js');
          const words = await import('/js/strings.js');
          words.setLanguage('en-GB');
          f.configure({locale: 'en-GB', timeZone: 'Europe/Stockholm', clock24h: true});
          const now = Date.parse('2026-11-25T14:05:00+01:00');
          const H = 3600000;
          const out = {
            temps: [f.temperature(-0.4), f.temperature(NaN), f.temperature('5'), f.temperature(21.46, 1),
                    f.temperature(null), f.temperature(Infinity), f.temperature(-3)],
            percent: f.percent(40.4),
            windEn: f.wind(36),
            wall: [f.wallTime('07:58 PM'), f.wallTime('2026-11-25T08:30:00+01:00'), f.wallTime('bogus'),
                   f.wallTime('25:00'), f.wallTime(undefined)],
            pace: [f.paceOrSpeed('Run', 10, 3000), f.paceOrSpeed('Ride', 20, 3600), f.paceOrSpeed('Swim', 1.5, 1800),
                   f.paceOrSpeed('Run', 0, 100), f.paceOrSpeed('Walk', 5, null)],
            duration: [f.duration(3720), f.duration(2700), f.duration(-1)],
            distance: [f.distance(8.42), f.distance(0), f.distance(123.4), f.distance(4.246)],
            week: [f.isoWeek(Date.parse('2026-01-01T12:00:00+01:00')), f.isoWeek(Date.parse('2024-12-30T12:00:00Z')),
                   f.isoWeek(now)],
            since: [f.since(now - 60000, now), f.since(now - 2 * 24 * H, now), f.since(now - 30 * 24 * H, now)],
            hr: [f.heartRate(null), f.heartRate(151.6)],
            dayKey: f.dayKey(Date.parse('2026-11-25T23:30:00Z')),
            night: [sched.inRange(23 * 60, 22 * 60, 390), sched.inRange(5 * 60, 22 * 60, 390),
                    sched.inRange(7 * 60, 22 * 60, 390), sched.inRange(12 * 60, null, 390),
                    sched.inRange(13 * 60, 12 * 60, 14 * 60), sched.hhmm('24:00'), sched.hhmm('7:05')],
            backoff: [sock.backoffMs(0, () => 0), sock.backoffMs(0, () => 1), sock.backoffMs(3, () => 1),
                      sock.backoffMs(20, () => 0), sock.backoffMs(20, () => 1)],
            countdown: [dep.countdown(now + 10000, now), dep.countdown(now + 45000, now),
                        dep.countdown(now + 60000, now), dep.countdown(now + 218000, now),
                        dep.countdown(now + 34 * 60000, now), dep.countdown(now + 2 * H, now)],
            trend: [sen.trend([{ms: now - H, c: 20}, {ms: now, c: 21}])?.glyph,
                    sen.trend([{ms: now - H, c: 20}, {ms: now, c: 20.05}])?.glyph,
                    sen.trend([{ms: now - H, c: 20}, {ms: now, c: 19.7}])?.glyph,
                    sen.trend([{ms: now - 60000, c: 20}, {ms: now, c: 25}])],
            spark: [sen.sparkPath([{ms: now - 3 * H, c: 1}, {ms: now - 2.9 * H, c: 2}, {ms: now - 0.5 * H, c: 3},
                                   {ms: now, c: 4}], now),
                    sen.sparkPath([{ms: now - 60000, c: 1}, {ms: now, c: 30}], now)],
            icons: [strava.sportIcon('TrailRun'), strava.sportIcon('EBikeRide'), strava.sportIcon('Kitesurf'),
                    strava.sportIcon(undefined)],
            states: [card.describe(undefined),
                     card.describe({data: null, updated_at: null, stale: false, status: 'waiting', error: null}),
                     card.describe({data: null, status: 'unavailable', error: 'Strava needs re-authorizing',
                                    updated_at: '2026-11-25T12:00:00+01:00'}),
                     card.describe({data: {}, status: 'ok', stale: true, error: null,
                                    updated_at: new Date(Date.now() - 60000).toISOString()}),
                     card.describe({data: {}, status: 'error', stale: false, error: 'timed out', updated_at: null}),
                     card.describe({data: {}, status: 'ok', stale: false, error: null, updated_at: null})],
          };
          f.configure({locale: 'sv-SE', timeZone: 'Europe/Stockholm', clock24h: false});
          out.sv = [f.wind(36), f.temperature(-3.25, 1), f.clockParts(now)];
          // Swedish words and numbers, 24 h.
          words.setLanguage('sv-SE');
          f.configure({locale: 'sv-SE', timeZone: 'Europe/Stockholm', clock24h: true});
          const cd = (ms) => { const c = dep.countdown(now + ms, now); return `${c.main} ${c.unit}`.trim(); };
          out.svMore = {
            distance: f.distance(4.246), percent: f.percent(40.4), time: f.time(now), hour: f.hour(now),
            countdown: [cd(10000), cd(45000), cd(218000)], compass: words.t('compass')('SSW'),
            leave: words.t('leaveIn')(3), waiting: card.describe({data: null, updated_at: null, stale: false,
              status: 'waiting', error: null}).text,
          };
          // English, 12-hour clock: no leading zero.
          words.setLanguage('en-US');
          f.configure({locale: 'en-US', timeZone: 'Europe/Stockholm', clock24h: false});
          out.h12 = [f.time(now), f.time(now - 5 * H), f.hour(now), f.wallTime('07:58 PM'), f.wallTime('06:05'),
                     f.clockParts(now - 5 * H)];
          // Imperial units, converted and rounded once, here.
          f.configure({locale: 'en-US', timeZone: 'Europe/Stockholm', clock24h: false, units: 'imperial'});
          out.imperial = [f.temperature(20), f.temperature(-40), f.temperature(37, 1), f.wind(16.09344),
                          f.distance(4.246), f.distance(160.9344), f.paceOrSpeed('Run', 1.609344, 480),
                          f.paceOrSpeed('Ride', 32.18688, 3600), f.pressure(1013.25), f.percent(61)];
          // Every language has every word the English list has.
          const en = Object.keys(words.wordsFor('en')).sort();
          out.missing = Object.fromEntries(words.LANGUAGES.map((lang) =>
            [lang, en.filter((k) => !(k in words.wordsFor(lang)))]));
          return out;
        }"""
    )
    assert r["temps"] == ["0°", "–", "–", "21.5°", "–", "–", "-3°"]
    assert r["percent"] == "40%"  # English: no space (Swedish has one, below)
    assert r["windEn"] == "36 km/h"
    assert r["wall"] == ["19:58", "08:30", "–", "–", "–"]
    assert r["pace"] == ["5:00 /km", "20.0 km/h", "2:00 /100 m", "–", "–"]
    assert r["duration"] == ["1:02 h", "45 min", "–"]
    assert r["distance"] == ["8.4 km", "–", "123 km", "4.2 km"]  # 4.246 km is 4.2 km, never 4.3
    assert r["week"] == [1, 1, 48]
    assert r["since"][0] == "14:04"
    assert re.fullmatch(r"Mon 14:05", r["since"][1]), r["since"]
    assert re.fullmatch(r"\w+ 26 Oct 14:05|Sun 26 Oct 14:05", r["since"][2]), r["since"]
    assert r["hr"] == ["–", "152"]
    assert r["dayKey"] == "2026-11-26"  # 23:30 UTC is already tomorrow in Stockholm
    assert r["night"] == [True, True, False, False, True, None, 425]
    assert r["backoff"] == [500, 1000, 8000, 15000, 30000]
    # Never "m:ss" (read as a time of day across the room): seconds only within the last minute.
    assert [f"{c['main']} {c['unit']}".strip() for c in r["countdown"]] == [
        "Now",
        "45 s",
        "1 min",
        "3 min",
        "34 min",
        "16:05",
    ]
    assert r["trend"] == ["↑", "→", "↘", None]
    assert r["spark"][0].count("M") == 2  # a 2.4 h hole breaks the line instead of drawing a made-up slope
    assert r["spark"][1] == ""  # two readings a minute apart are not a trend
    assert r["icons"] == [
        "/icons/sport-run.svg",
        "/icons/sport-ride.svg",
        "/icons/sport-generic.svg",
        "/icons/sport-generic.svg",
    ]
    kinds = [s["kind"] for s in r["states"]]
    assert kinds == ["waiting", "waiting", "unavailable", "stale", "error", "ok"]
    assert r["states"][2]["text"] == "Strava needs re-authorizing"
    assert re.fullmatch(r"updated \d\d:\d\d", r["states"][3]["text"])
    assert r["states"][4]["text"] == "timed out"
    assert r["sv"][0] == "10 m/s"
    assert r["sv"][1] == "−3,3°"  # sv-SE: decimal comma and a real minus sign
    assert r["sv"][2]["suffix"] != ""  # 12 h clock: AM/PM shown apart from the digits
    assert r["svMore"] == {
        "distance": "4,2 km",
        "percent": "40\u00a0%",  # a no-break space: the sign never wraps away from its number
        "time": "14:05",
        "hour": "14",
        "countdown": ["Nu", "45 s", "3 min"],
        "compass": "SSV",
        "leave": "gå om 3 min",
        "waiting": "väntar på data",
    }
    spaced = [x if isinstance(x, dict) else x.replace("\u202f", " ").replace("\xa0", " ") for x in r["h12"]]
    assert spaced[:5] == ["2:05 PM", "9:05 AM", "2 PM", "7:58 PM", "6:05 AM"]
    assert spaced[5] == {"main": "9:05", "suffix": "AM"}
    assert r["imperial"] == [
        "68°",
        "-40°",
        "98.6°",
        "10 mph",
        "2.6 mi",
        "100 mi",
        "8:00 /mi",
        "20.0 mph",
        "29.92 inHg",
        "61%",
    ]
    assert r["missing"] == {"en": [], "sv": []}


def iso_in(seconds: float) -> str:
    return (dt.datetime.now(TZ) + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")


def topic(data: dict[str, Any], **state: Any) -> dict[str, Any]:
    return {"data": data, "updated_at": iso_in(0), "stale": False, "status": "ok", "error": None, **state}


def test_hostile_strings_alerts_and_screen_off(page_standin: Any, page_probe: Any) -> None:
    long = "Å" * 10_000
    weird = [XSS, "\u202eevil.exe", "👩‍👩‍👧‍👦 family", "javascript:alert(1)", long]
    standin = page_standin(widgets=["clock", "weather", "departures", "sensors", "forecast", "strava"])
    standin.topics = {
        "weather": topic(
            {
                "location": long,
                "current": {"temperature_c": 2.0, "condition": long, "icon": "../../etc/passwd", "wind_kph": None},
                "days": [{"date": "2026-11-25", "max_c": 5, "min_c": -1, "icon": "snow", "condition": XSS}],
                "hours": [],
                "alerts": [
                    {"headline": XSS + long, "severity": "Severe", "event": "", "expires": iso_in(3600), "desc": long},
                    {"headline": "Expired", "severity": "Minor", "event": "Old", "expires": iso_in(-60), "desc": ""},
                ],
            }
        ),
        "departures": topic(
            {
                "site_name": long,
                "stop_deviations": [long],
                "departures": [
                    {
                        "line": name[:40],
                        "transport_mode": "<script>",
                        "destination": name,
                        "expected": iso_in(300 + i),
                        "deviations": [name],
                        "cancelled": False,
                    }
                    for i, name in enumerate(weird)
                ],
            }
        ),
        "strava": topic(
            {
                "activities": [
                    {"id": i, "name": name, "sport_type": name, "distance_km": 5.0, "moving_time_s": 1500}
                    for i, name in enumerate(weird)
                ],
                "week_by_sport": {name: {"distance_km": 1.0, "moving_time_s": 60, "count": 1} for name in weird},
            }
        ),
        "sensor/x": topic({"name": long, "temperature_c": 20.0, "measured_at": iso_in(0)}),
        "display": topic({"power": "off", "reason": "schedule"}),
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wall = page_probe(1280, 720).open(standin.url + "/?wall=1")
    wall.wait_for("() => document.querySelectorAll('.act:not([hidden])').length > 0")
    wall.page.wait_for_timeout(300)
    # The server said the screen is off: the wall goes dark even if the panel stays lit.
    assert wall.js("() => document.body.dataset.display") == "off"
    assert wall.js("() => getComputedStyle(document.querySelector('.board')).visibility") == "hidden"
    wall.js("() => { document.body.dataset.display = 'on'; }")
    wall.page.screenshot(path=str(ARTIFACTS / "page-hostile-strings.png"))
    geometry = wall.js(
        """() => ({
          page: [document.documentElement.scrollWidth, document.documentElement.scrollHeight],
          sections: [...document.querySelectorAll('section.w, #alerts')].map((s) => {
            const r = s.getBoundingClientRect();
            return [s.dataset.widget || s.id, Math.round(r.right), Math.round(r.bottom)];
          }),
          overflowing: [...document.querySelectorAll('section.w')].filter((s) => s.scrollWidth > s.clientWidth + 1
            || s.scrollHeight > s.clientHeight + 1).map((s) => s.dataset.widget),
          sensorShown: [...document.querySelectorAll('.sensor')].some((r) => !r.hidden),
          alerts: [...document.querySelectorAll('.alert:not([hidden]) .alert-headline')].map((n) => n.textContent),
          icon: document.querySelector('.now-icon').hidden,
          badges: [...document.querySelectorAll('.dep-badge')].map((b) => b.className),
        })"""
    )
    assert geometry["page"] == [1280, 720], geometry  # no text pushes the page wider or taller
    for name, right, bottom in geometry["sections"]:
        assert right <= 1280, name
        assert bottom <= 720, name
    assert geometry["overflowing"] == []  # nothing sticks out of its card
    assert geometry["sensorShown"] is True  # a 10 kB name is cut, not allowed to push its row out
    assert geometry["alerts"] == [XSS + long]  # the expired alert is gone, the live one is text
    assert geometry["icon"] is True  # an icon name that is not ours is not loaded
    assert all(c.startswith("dep-badge mode-other") for c in geometry["badges"][:5])
    assert wall.js("() => window.__xss") is None
    # The stand-in has no history endpoint: its 404 is the one error allowed (the page carries on without it).
    wall.console_errors = [e for e in wall.console_errors if "/api/sensors/x/history" not in e]
    assert_clean(wall)
    # A phone viewer keeps showing the page when the wall's screen is off.
    viewer = page_probe(390, 844).open(standin.url + "/?wall=0")
    assert viewer.js("() => document.body.dataset.display") == "on"


WAITING = {"data": None, "updated_at": None, "stale": False, "status": "waiting", "error": None}


def test_widgets_follow_the_topics_and_waiting_is_not_a_fault(page_standin: Any, page_probe: Any) -> None:
    """A widget is on the wall only while the server has its topic; a configured topic with nothing yet says
    "waiting", not a fault. A snapshot from a server restarted with another config re-lays the wall out."""
    standin = page_standin(widgets=["clock", "weather", "departures", "sensors", "forecast", "strava"])
    standin.topics = {"weather": dict(WAITING), "sensor/attic": dict(WAITING)}
    probe = page_probe(1280, 720).open(standin.url + "/?wall=1")
    widgets = "() => [...document.querySelectorAll('section.w')].map((s) => s.dataset.widget).join(' ')"
    probe.wait_for(f"() => ({widgets})() === 'clock weather sensors forecast'")
    shown = probe.js(
        """() => ({
          weather: [document.querySelector('.w-weather').className, document.querySelector('.w-weather .card-status')
            .textContent],
          sensor: [document.querySelector('.sensor').className, document.querySelector('.sensor-status').textContent,
            document.querySelector('.sensor-temp').textContent],
        })"""
    )
    assert "is-waiting" in shown["weather"][0]
    assert shown["weather"][1] == "waiting for data"
    assert "is-waiting" in shown["sensor"][0]
    assert "is-unavailable" not in shown["sensor"][0]
    assert shown["sensor"][1:] == ["waiting for data", "–"]
    # Restarted with Strava and without weather: Strava comes on, weather and its forecast go, nothing reloads.
    probe.js("() => { window.__sameDocument = true; }")
    standin.topics = {
        "sensor/attic": dict(WAITING),
        "strava": topic(
            {
                "activities": [
                    {"id": 1, "name": "Lunch walk", "sport_type": "Walk", "distance_km": 4.246, "moving_time_s": 2700}
                ],
                "week": {"distance_km": 4.246, "count": 1},
            }
        ),
    }
    standin.send(standin.snapshot())
    probe.wait_for(f"() => ({widgets})() === 'clock sensors strava'")
    assert probe.js("() => window.__sameDocument") is True
    assert probe.wait_for("() => document.querySelector('.act-distance').textContent") == "4.2 km"
    probe.page.screenshot(path=str(ARTIFACTS / "page-topics-follow-1280x720.png"))
    assert_fits(probe, 1280, 720, "clock sensors strava")
    probe.console_errors = [e for e in probe.console_errors if "/history" not in e]  # the stand-in has none
    assert_clean(probe)


def test_departures_tick_every_second_on_the_page_clock(page_standin: Any, page_probe: Any) -> None:
    standin = page_standin(widgets=["clock", "departures"])

    def departure(line: str, in_s: float, **extra: Any) -> dict[str, Any]:
        return {
            "line": line,
            "transport_mode": "METRO",
            "destination": f"To {line}",
            "scheduled": iso_in(in_s),
            "expected": iso_in(in_s),
            "cancelled": False,
            "deviations": [],
            **extra,
        }

    standin.topics = {
        "departures": topic(
            {
                "site_name": "Odenplan",
                "walk_time_min": 4,
                "stop_deviations": ["Lift out of service"],
                "departures": [
                    departure("gone", -40),  # left 40 s ago: the page drops it without the server
                    departure("16", 50),
                    departure("17", 300, leave_in_min=2.5),  # unrounded, as the server sends it
                    departure("18", 600, cancelled=True, deviations=["Signal failure"]),
                    departure("19", 40 * 60),
                ],
            }
        )
    }
    probe = page_probe().open(standin.url)
    rows = probe.wait_for(
        """() => { const r = [...document.querySelectorAll('.dep')].filter((e) => !e.hidden).map((e) => [
          e.querySelector('.dep-line').textContent, e.querySelector('.dep-count').textContent,
          e.querySelector('.dep-unit').textContent, e.querySelector('.dep-leave').textContent,
          e.classList.contains('is-cancelled')]); return r.length ? r : null; }"""
    )
    assert [r[0] for r in rows] == ["16", "17", "18", "19"]
    # Within the last minute the seconds count down, with their unit; beyond it whole minutes: never "m:ss".
    assert re.fullmatch(r"4\d|50", rows[0][1]), rows
    assert rows[0][2] == "s", rows
    assert rows[1][1] in ("4", "5"), rows
    assert rows[1][2] == "min", rows
    assert rows[1][3] == "leave in 2 min"  # 2.5 min left: whole minutes, rounded down once, on the page
    assert rows[2][1:3] == ["cancelled", ""]
    assert rows[2][4] is True
    assert rows[3][1] in ("39", "40"), rows  # whole minutes left, as SL's signs count
    assert rows[3][2] == "min", rows
    # Record every countdown change for 2.5 s: the server sends nothing in that time.
    changes = probe.js(
        """() => new Promise((resolve) => {
          const node = [...document.querySelectorAll('.dep')].find((r) => !r.hidden).querySelector('.dep-count');
          const seen = [];
          const obs = new MutationObserver(() => seen.push(node.textContent));
          obs.observe(node, {childList: true, subtree: true, characterData: true});
          setTimeout(() => { obs.disconnect(); resolve(seen); }, 2500);
        })"""
    )
    assert len(changes) >= 2, changes
    seconds = [int(c) for c in changes]
    assert all(b == a - 1 for a, b in itertools.pairwise(seconds)), changes
    assert probe.text(".dep-notice") == "Lift out of service"
    assert_clean(probe)
