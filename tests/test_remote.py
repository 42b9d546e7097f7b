"""The remote feature module end to end: a real server polls the demo stand-in and publishes all three topics."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import time
import urllib.request
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from server.config import ConfigError, parse_config
from server.demo import world
from server.demo.standin import demo_urls, make_standin_app
from server.homeboard import Homeboard
from tests.fakeapi import serve_app
from tests.serverthread import ServerThread

TOPICS = ("weather", "departures", "strava")
STHLM = ZoneInfo("Europe/Stockholm")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_all_three_topics_arrive_through_the_real_pollers(tmp_path: Path) -> None:
    standin = serve_app(make_standin_app())
    urls = demo_urls(standin.url())
    config = parse_config(
        {
            "data_dir": str(tmp_path / "var"),
            "sources": {
                "weather": {"api_key": "wk-local-0123456789", "base_url": urls["weather"]},
                "departures": {"site_id": 9192, "base_url": urls["departures"], "walk_time_min": 3},
                "strava": {
                    "client_id": "1",
                    "client_secret": "cs-local-0123456789",
                    "refresh_token": "rt-local-0123456789",
                    "base_url": urls["strava_api"],
                    "token_url": urls["strava_token"],
                },
            },
        },
        env={},
    )
    server = ServerThread(config).start()
    try:
        deadline = time.monotonic() + 15
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = _get_json(server.url + "/api/state")["topics"]
            if all(state.get(t, {}).get("status") == "ok" and state[t]["data"] for t in TOPICS):
                break
            time.sleep(0.1)
        for topic in TOPICS:
            assert state[topic]["status"] == "ok", (topic, state.get(topic))
        assert state["weather"]["data"]["location"] == "Stockholm"
        assert state["departures"]["data"]["site_name"] == "Slussen"
        assert "week" in state["strava"]["data"]
        health = json.dumps(_get_json(server.url + "/healthz"))
        for secret in ("wk-local-0123456789", "cs-local-0123456789", "rt-local-0123456789"):
            assert secret not in health
            assert secret not in json.dumps(state)
        assert set(_get_json(server.url + "/healthz")["sources"]) >= set(TOPICS)
    finally:
        server.stop()
        standin.stop()


def built(config: object) -> Homeboard:
    """The assembly as `python -m server` builds it (nothing started), torn down again at once."""

    async def build_and_stop() -> Homeboard:
        board = Homeboard.build(config)  # type: ignore[arg-type]
        await board.stop()
        board.executor.shutdown(wait=False)
        return board

    return asyncio.run(build_and_stop())


def test_absent_sources_are_off(tmp_path: Path) -> None:
    config = parse_config(
        {"data_dir": str(tmp_path / "var"), "sources": {"weather": {"api_key": "k" * 12}}},
        env={},
    )
    board = built(config)
    assert set(board.runner.sources) == {"weather"}, "departures and strava are not configured: off"
    assert board.runner.sources["weather"].base_url == "https://api.weatherapi.com/v1"
    assert not {"departures", "strava"} & set(board.hub.topics), "no topic (and no widget) for what is off"


def test_demo_runs_every_source_against_the_stand_in(tmp_path: Path) -> None:
    config = parse_config(
        {"data_dir": str(tmp_path / "var"), "demo": True, "sources": {"weather": {"api_key": "k" * 12}}},
        env={},
    )
    board = built(config)
    assert set(board.runner.sources) >= {"weather", "departures", "strava"}
    assert board.demo is not None
    assert board.runner.sources["weather"].base_url == board.demo.urls["weather"]
    assert board.demo.urls["weather"].startswith("http://127.0.0.1:")


def test_demo_strava_keeps_its_tokens_apart_from_the_real_ones(tmp_path: Path) -> None:
    strava = {"client_id": "1", "client_secret": "s" * 12, "refresh_token": "r" * 12}
    config = parse_config({"data_dir": str(tmp_path / "var"), "demo": True, "sources": {"strava": strava}}, env={})
    board = built(config)
    assert board.demo is not None
    source = board.runner.sources["strava"]
    assert source.auth.store.path.name == "strava_token.demo.json"
    assert source.auth.token_url == board.demo.urls["strava_token"]
    assert source.base_url == board.demo.urls["strava_api"]


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ({"weather": {"api_key": "k", "days": 20}}, "sources.weather.days: expected 1-14"),
        (
            {"weather": {"api_key": "k", "base_url": "api.weatherapi.com/v1"}},
            "sources.weather.base_url: expected an http(s) URL",
        ),
        ({"departures": {"site_id": 9192, "transport": "ROCKET"}}, "sources.departures.transport: expected one of BUS"),
        ({"departures": {"site_id": 9192, "direction": 3}}, "sources.departures.direction: expected 1 or 2"),
        ({"departures": {"site_id": 9192, "forecast_min": 2000}}, "sources.departures.forecast_min: expected 5-1200"),
        ({"departures": {"site_id": 9192, "walk_time_min": -1}}, "sources.departures.walk_time_min: must be 0 or more"),
        (
            {"strava": {"client_id": "1", "client_secret": "s", "refresh_token": "r", "token_url": "ftp://x"}},
            "sources.strava.token_url: expected an http(s) URL",
        ),
        (
            {"strava": {"client_id": "1", "client_secret": "s", "refresh_token": "r", "max_activities": 0}},
            "sources.strava.max_activities: expected 1-200",
        ),
    ],
)
def test_remote_config_errors_name_the_key(sources: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"sources": sources}, env={})
    assert str(info.value).startswith(message)


# ---------------------------------------------------------------- the demo stand-in itself


def test_standin_serves_the_real_formats_with_their_traps() -> None:
    clock = [dt.datetime(2026, 1, 15, 8, 0, tzinfo=STHLM).timestamp()]
    standin = serve_app(make_standin_app(clock=lambda: clock[0]))
    urls = demo_urls(standin.url())
    try:
        forecast = requests.get(
            urls["weather"] + "/forecast.json",
            params={"key": "k", "q": "Stockholm", "days": 3, "alerts": "yes"},
            timeout=5,
        ).json()
        hourly_texts = [h["condition"]["text"] for d in forecast["forecast"]["forecastday"] for h in d["hour"]]
        assert any(t.endswith(" ") for t in hourly_texts), "trailing spaces, as the real API sends"
        assert isinstance(forecast["forecast"]["forecastday"][1]["day"]["daily_chance_of_rain"], str)
        assert forecast["location"]["localtime"] == "2026-01-15 8:00", "hour not zero-padded"
        assert "alerts" in forecast

        # Across a day, some departure is cancelled and some has no realtime `expected`.
        cancelled = no_expected = 0
        for _ in range(0, 24 * 60, 20):
            clock[0] += 20 * 60
            deps = requests.get(urls["departures"] + "/sites/9192/departures", timeout=5).json()["departures"]
            assert all(len(d["scheduled"]) == 19 and "+" not in d["scheduled"] for d in deps), "naive local times"
            cancelled += sum(d["state"] == "CANCELLED" for d in deps)
            no_expected += sum("expected" not in d for d in deps)
        assert cancelled > 0
        assert no_expected > 0

        grant = requests.post(
            urls["strava_token"],
            data={"client_id": "1", "client_secret": "s", "grant_type": "refresh_token", "refresh_token": "first"},
            timeout=5,
        ).json()
        again = requests.post(
            urls["strava_token"],
            data={"client_id": "1", "client_secret": "s", "grant_type": "refresh_token", "refresh_token": "first"},
            timeout=5,
        )
        assert again.status_code == 400, "the old refresh token died when the new one was issued"
        answer = requests.get(
            urls["strava_api"] + "/athlete/activities",
            params={"per_page": 30},
            headers={"Authorization": f"Bearer {grant['access_token']}"},
            timeout=5,
        )
        assert answer.headers["X-ReadRateLimit-Limit"] == "100,1000"
        assert answer.headers["X-RateLimit-Usage"].count(",") == 1
        items = answer.json()
        # The demo is a first impression: realistic names, no markup (the escaping is proven with hostile names in
        # the page tests, against the real server).
        assert items
        assert not any("<" in a["name"] for a in items), "markup in the demo's activity names"
        assert any(a.get("average_heartrate", "absent") is None for a in items), "a null heart rate"
        assert any("average_heartrate" not in a for a in items), "an absent heart rate"
        assert all(a["start_date_local"].endswith("Z") for a in items), "local time dressed as UTC"
    finally:
        standin.stop()


def test_standin_weather_changes_slowly_and_departures_move() -> None:
    t0 = dt.datetime(2026, 7, 1, 12, 0, tzinfo=STHLM).timestamp()
    temps = [world.temperature_c(t0 + m * 60) for m in range(0, 180)]
    assert max(abs(a - b) for a, b in itertools.pairwise(temps)) < 0.1, "no jumps between minutes"
    assert max(temps) - min(temps) > 0.2, "but it does change"
    first = world.departures_payload(9192, t0)["departures"]
    later = world.departures_payload(9192, t0 + 600)["departures"]
    assert first
    assert later
    assert first != later
