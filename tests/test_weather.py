"""WeatherAPI.com forecast.json → topic `weather`: the parser on recorded-format payloads, the source over HTTP."""

from __future__ import annotations

import copy
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.config import WeatherConfig
from server.core.jsonutil import dumps
from server.core.source import AuthError, PayloadError, RateLimitedError, TransientError
from server.demo import world
from server.demo.standin import demo_urls, make_standin_app
from server.sources.weather import (
    ICON_NAMES,
    KNOWN_CODES,
    WeatherSource,
    icon_name,
    parse_forecast,
    weatherapi_lang,
)
from tests.fakeapi import JSON_VALUES, FakeApi, Reply, json_paths, replace_at, serve_app

STHLM = ZoneInfo("Europe/Stockholm")
API_KEY = "wk-0123456789abcdef0123"


def _hour(epoch: int, temp_c: Any, code: int, text: str, is_day: int, chance: Any) -> dict[str, Any]:  # noqa: PLR0917 - one hour entry, fields in order
    local = dt.datetime.fromtimestamp(epoch, STHLM)
    return {
        "time_epoch": epoch,
        "time": f"{local:%Y-%m-%d %H:%M}",
        "temp_c": temp_c,
        "temp_f": 35.6,
        "is_day": is_day,
        "condition": {"text": text, "icon": f"//cdn.weatherapi.com/weather/64x64/day/{code}.png", "code": code},
        "wind_mph": 9.4,
        "wind_kph": 15.1,
        "wind_degree": 240,
        "wind_dir": "WSW",
        "pressure_mb": 1008.0,
        "pressure_in": 29.77,
        "precip_mm": 0.1,
        "precip_in": 0.0,
        "snow_cm": 0.0,
        "humidity": 87,
        "cloud": 75,
        "feelslike_c": -0.4,
        "windchill_c": -0.4,
        "heatindex_c": 2.0,
        "dewpoint_c": 0.1,
        "will_it_rain": 0,
        "chance_of_rain": chance,
        "will_it_snow": 0,
        "chance_of_snow": 0,
        "vis_km": 10.0,
        "gust_kph": 24.5,
        "uv": 0,
        "short_rad": 0,  # newer fields the parser must ignore
        "diff_rad": 0,
    }


def payload(now_epoch: int = 1764097200) -> dict[str, Any]:
    """forecast.json for Stockholm in the real format (2025-11-25 20:00 local by default), traps included."""
    today = dt.datetime.fromtimestamp(now_epoch, STHLM).date()
    days = []
    for i in range(3):
        date = today + dt.timedelta(days=i)
        midnight = int(dt.datetime(date.year, date.month, date.day, tzinfo=STHLM).timestamp())
        hours = [
            _hour(midnight + h * 3600, round(1.0 + h / 10, 1), 1003, "Partly Cloudy ", 1 if 8 <= h < 15 else 0, 0)
            for h in range(24)
        ]
        days.append(
            {
                "date": date.isoformat(),
                "date_epoch": int(dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC).timestamp()),
                "day": {
                    "maxtemp_c": 4.2 + i,
                    "maxtemp_f": 39.6,
                    "mintemp_c": -1.3,
                    "mintemp_f": 29.7,
                    "avgtemp_c": 1.4,
                    "maxwind_kph": 22.3,
                    "totalprecip_mm": 1.2,
                    "totalsnow_cm": 0.0,
                    "avgvis_km": 9.6,
                    "avghumidity": 88.0 if i else 88,
                    "daily_will_it_rain": 1,
                    # 2021-era payloads sent these as strings; 2023+ as numbers.
                    "daily_chance_of_rain": "76" if i == 1 else 80,
                    "daily_will_it_snow": 0,
                    "daily_chance_of_snow": 0,
                    "condition": {"text": "Patchy rain nearby ", "icon": "//cdn.weatherapi.com/x.png", "code": 1063},
                    "uv": 0.0,
                },
                "astro": {
                    "sunrise": "08:31 AM",
                    "sunset": "03:03 PM",
                    "moonrise": "11:40 AM",
                    "moonset": "No moonset",
                    "moon_phase": "Waxing Crescent",
                    "moon_illumination": "23" if i == 1 else 23,
                    "is_moon_up": 0,
                    "is_sun_up": 0,
                },
                "hour": hours,
            }
        )
    local_now = dt.datetime.fromtimestamp(now_epoch, STHLM)
    return {
        "location": {
            "name": "Stockholm",
            "region": "Stockholms Lan",
            "country": "Sweden",
            "lat": 59.33,
            "lon": 18.05,
            "tz_id": "Europe/Stockholm",
            "localtime_epoch": now_epoch,
            "localtime": f"{local_now:%Y-%m-%d} {local_now.hour}:{local_now:%M}",
        },
        "current": {
            "last_updated_epoch": now_epoch - 300,
            "last_updated": "2025-11-25 19:55",
            "temp_c": 2.1,
            "temp_f": 35.8,
            "is_day": 0,
            "condition": {
                "text": "Partly cloudy",
                "icon": "//cdn.weatherapi.com/weather/64x64/night/116.png",
                "code": 1003,
            },
            "wind_mph": 9.4,
            "wind_kph": 15.1,
            "wind_degree": 240,
            "wind_dir": "WSW",
            "pressure_mb": 1008.0,
            "pressure_in": 29.77,
            "precip_mm": 0.0,
            "precip_in": 0.0,
            "humidity": 87,
            "cloud": 75,
            "feelslike_c": -1.2,
            "feelslike_f": 29.8,
            "vis_km": 10.0,
            "vis_miles": 6.0,
            "uv": 0.0,
            "gust_mph": 15.2,
            "gust_kph": 24.5,
        },
        "forecast": {"forecastday": days},
        "alerts": {
            "alert": [
                {
                    "headline": "SMHI: Gul varning – Halka",
                    "msgtype": "Alert",
                    "severity": "Moderate",
                    "urgency": "Immediate",
                    "areas": "Stockholms län",
                    "category": "Met",
                    "certainty": "Likely",
                    "event": "Halka <is> & snö",
                    "note": "",
                    "effective": "2025-11-25T18:00:00+00:00",
                    "expires": "2025-11-26T09:00:00+00:00",
                    "desc": "Risk för <b>ishalka</b> på vägarna.\n",
                    "instruction": "",
                },
                {  # the same warning again for another area: shown once
                    "headline": "SMHI: Gul varning – Halka",
                    "severity": "Moderate",
                    "event": "Halka <is> & snö",
                    "effective": "2025-11-25T18:00:00+00:00",
                    "expires": "2025-11-26T09:00:00+00:00",
                    "desc": "Risk för <b>ishalka</b> på vägarna.\n",
                    "areas": "Uppsala län",
                },
            ]
        },
    }


# ---------------------------------------------------------------- the parser


def test_parse_forecast_maps_every_field() -> None:
    data = parse_forecast(payload(), STHLM, now_s=1764097200)
    assert data["location"] == "Stockholm"
    assert data["current"] == {
        "temperature_c": 2.1,
        "feels_like_c": -1.2,
        "condition": "Partly cloudy",
        "condition_code": 1003,
        "icon": "partly-cloudy-night",
        "wind_kph": 15.1,
        "wind_gust_kph": 24.5,
        "wind_dir": "WSW",
        "humidity_pct": 87.0,
        "pressure_hpa": 1008.0,
        "precip_mm": 0.0,
        "uv": 0.0,
        "is_day": False,
        "observed_at": "2025-11-25T19:55:00+01:00",
    }
    assert [d["date"] for d in data["days"]] == ["2025-11-25", "2025-11-26", "2025-11-27"]
    day = data["days"][1]
    assert day["max_c"] == 5.2
    assert day["min_c"] == -1.3
    assert day["chance_of_rain_pct"] == 76, "a number sent as a string is coerced"
    assert day["condition"] == "Patchy rain nearby", "trailing space stripped"
    assert day["condition_code"] == 1063
    assert day["icon"] == "rain"
    assert day["sunrise"] == "2025-11-26T08:31:00+01:00"
    assert day["sunset"] == "2025-11-26T15:03:00+01:00"


def test_hours_are_the_next_twelve_from_now_across_midnight() -> None:
    data = parse_forecast(payload(), STHLM, now_s=1764097200 + 1800)  # 20:30 local
    times = [h["time"] for h in data["hours"]]
    assert len(times) == 12
    assert times[0] == "2025-11-25T20:00:00+01:00", "the current hour is included"
    assert times[4] == "2025-11-26T00:00:00+01:00"
    assert times[-1] == "2025-11-26T07:00:00+01:00"
    first = data["hours"][0]
    assert first["condition"] == "Partly Cloudy"
    assert first["icon"] == "partly-cloudy-night"
    assert first["chance_of_rain_pct"] == 0
    assert first["temperature_c"] == 3.0
    assert first["condition_code"] == 1003


def test_alerts_are_plain_text_and_deduplicated() -> None:
    alerts = parse_forecast(payload(), STHLM, now_s=1764097200)["alerts"]
    assert alerts == [
        {
            "headline": "SMHI: Gul varning – Halka",
            "severity": "Moderate",
            "event": "Halka <is> & snö",
            "effective": "2025-11-25T19:00:00+01:00",
            "expires": "2025-11-26T10:00:00+01:00",
            "desc": "Risk för <b>ishalka</b> på vägarna.",
        }
    ]


def test_no_alerts_and_odd_astro_values() -> None:
    p = payload()
    p["alerts"] = {"alert": []}
    p["forecast"]["forecastday"][0]["astro"]["sunrise"] = "No sunrise"
    del p["forecast"]["forecastday"][1]["astro"]
    data = parse_forecast(p, STHLM, now_s=1764097200)
    assert data["alerts"] == []
    assert data["days"][0]["sunrise"] is None
    assert data["days"][0]["sunset"] == "2025-11-25T15:03:00+01:00"
    assert data["days"][1]["sunrise"] is None


def test_empty_hour_entries_are_skipped() -> None:
    p = payload()
    p["forecast"]["forecastday"][0]["hour"][21] = {}
    data = parse_forecast(p, STHLM, now_s=1764097200)
    assert "2025-11-25T21:00:00+01:00" not in [h["time"] for h in data["hours"]]
    assert len(data["hours"]) == 12


def test_hours_across_the_october_dst_change() -> None:
    # 2025-10-26: 03:00 CEST becomes 02:00 CET, so local 02:00 happens twice; epochs are the truth.
    start = int(dt.datetime(2025, 10, 26, 0, 0, tzinfo=STHLM).timestamp())
    p = payload(start)
    p["forecast"]["forecastday"][0]["hour"] = [_hour(start + h * 3600, 5.0, 1000, "Clear ", 0, 0) for h in range(25)]
    times = [h["time"] for h in parse_forecast(p, STHLM, now_s=start)["hours"]]
    assert times[:5] == [
        "2025-10-26T00:00:00+02:00",
        "2025-10-26T01:00:00+02:00",
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:00:00+01:00",
        "2025-10-26T03:00:00+01:00",
    ]


def test_hours_across_the_march_dst_change() -> None:
    start = int(dt.datetime(2025, 3, 30, 0, 0, tzinfo=STHLM).timestamp())
    p = payload(start)
    p["forecast"]["forecastday"][0]["hour"] = [_hour(start + h * 3600, 5.0, 1000, "Clear ", 0, 0) for h in range(23)]
    times = [h["time"] for h in parse_forecast(p, STHLM, now_s=start)["hours"]]
    assert times[:4] == [
        "2025-03-30T00:00:00+01:00",
        "2025-03-30T01:00:00+01:00",
        "2025-03-30T03:00:00+02:00",
        "2025-03-30T04:00:00+02:00",
    ]


def test_icons_cover_every_documented_code() -> None:
    assert len(KNOWN_CODES) == 48
    for code in KNOWN_CODES:
        for is_day in (True, False):
            assert icon_name(code, is_day) in ICON_NAMES
    assert icon_name(1000, True) == "clear-day"
    assert icon_name(1000, False) == "clear-night"
    assert icon_name(1195, False) == "heavy-rain"
    assert icon_name(1282, True) == "thunder"
    assert icon_name(1147, True) == "fog"
    assert icon_name(1207, True) == "sleet"
    assert icon_name(1153, True) == "drizzle"
    assert icon_name(4242, True) is None, "an undocumented code gets no made-up icon"


@pytest.mark.parametrize(
    ("mutate", "field", "problem"),
    [
        (lambda p: p["current"].pop("temp_c"), "current.temp_c", "missing"),
        (lambda p: p["current"].__setitem__("temp_c", "warm"), "current.temp_c", "expected a number"),
        (lambda p: p["current"].__setitem__("temp_c", True), "current.temp_c", "expected a number"),
        (lambda p: p["current"].__setitem__("temp_c", 451), "current.temp_c", "outside the plausible range -90 to 60"),
        (lambda p: p["current"].__setitem__("humidity", 10**400), "current.humidity", "expected a number"),
        (lambda p: p["current"].__setitem__("wind_kph", "NaN"), "current.wind_kph", "expected a finite number"),
        (lambda p: p["current"]["condition"].pop("code"), "current.condition.code", "missing"),
        (lambda p: p["current"].__setitem__("is_day", 7), "current.is_day", "expected 0 or 1"),
        (lambda p: p.pop("location"), "location", "missing"),
        (lambda p: p["forecast"].__setitem__("forecastday", []), "forecast.forecastday", "empty"),
        (
            lambda p: p["forecast"]["forecastday"][1]["day"].pop("maxtemp_c"),
            "forecast.forecastday[1].day.maxtemp_c",
            "missing",
        ),
        (
            lambda p: p["forecast"]["forecastday"][0].__setitem__("date", "25/11"),
            "forecast.forecastday[0].date",
            "YYYY-MM-DD",
        ),
        (
            lambda p: p["forecast"]["forecastday"][0]["hour"][22].__setitem__("temp_c", None),
            "hour[22].temp_c",
            "missing",
        ),
    ],
)
def test_a_bad_field_is_named(mutate: Any, field: str, problem: str) -> None:
    p = payload()
    mutate(p)
    with pytest.raises(PayloadError) as info:
        parse_forecast(p, STHLM, now_s=1764097200)
    assert field in info.value.message
    assert problem in info.value.message


def test_not_an_object_at_all() -> None:
    with pytest.raises(PayloadError):
        parse_forecast([], STHLM)
    with pytest.raises(PayloadError) as info:
        parse_forecast({}, STHLM)
    assert "location: missing" in info.value.message


# ---------------------------------------------------------------- the source over HTTP


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi().start()
    yield server
    server.stop()


def source(api: FakeApi, **overrides: Any) -> WeatherSource:
    cfg = WeatherConfig(**{"api_key": API_KEY, "query": "Stockholm", **overrides})
    return WeatherSource(cfg, STHLM, base_url=api.url("/v1"), clock=lambda: 1764097200)


def test_fetch_sends_the_documented_query(api: FakeApi) -> None:
    api.route("/v1/forecast.json", Reply(200, payload()))
    data = source(api).fetch()["weather"]
    assert data["current"]["temperature_c"] == 2.1
    query = api.requests_to("/v1/forecast.json")[0].query
    assert query == {"key": [API_KEY], "q": ["Stockholm"], "days": ["3"], "alerts": ["yes"], "aqi": ["no"]}


@pytest.mark.parametrize(
    ("locale", "lang"),
    [
        ("sv-SE", "sv"),
        ("sv", "sv"),
        ("de-AT", "de"),
        ("zh-CN", "zh"),
        ("zh-Hant-TW", "zh_tw"),
        ("en-GB", None),  # English is WeatherAPI's default: no parameter
        ("en-US", None),
        ("nb-NO", None),  # a language WeatherAPI does not translate into: English texts, no parameter
    ],
)
def test_lang_follows_the_page_locale(locale: str, lang: str | None) -> None:
    assert weatherapi_lang(locale) == lang


def test_fetch_asks_for_texts_in_the_page_language(api: FakeApi) -> None:
    api.route("/v1/forecast.json", Reply(200, payload()))
    cfg = WeatherConfig(api_key=API_KEY, query="Stockholm")
    WeatherSource(cfg, STHLM, base_url=api.url("/v1"), clock=lambda: 1764097200, locale="sv-SE").fetch()
    WeatherSource(cfg, STHLM, base_url=api.url("/v1"), clock=lambda: 1764097200, locale="en-US").fetch()
    swedish, english = (r.query for r in api.requests_to("/v1/forecast.json"))
    assert swedish["lang"] == ["sv"]
    assert "lang" not in english


def test_unicode_location(api: FakeApi) -> None:
    p = payload()
    p["location"]["name"] = "Södertälje"
    api.route("/v1/forecast.json", Reply(200, p))
    assert source(api, query="Södertälje").fetch()["weather"]["location"] == "Södertälje"
    assert api.requests[0].query["q"] == ["Södertälje"]


@pytest.mark.parametrize(
    ("status", "code", "message", "error", "words"),
    [
        (401, 1002, "API key is invalid or not provided.", AuthError, "no API key was sent"),
        (401, 2006, "API key provided is invalid", AuthError, "the API key is invalid: check sources.weather.api_key"),
        (403, 2007, "API key has exceeded calls per month quota.", AuthError, "monthly call quota"),
        (403, 2008, "API key has been disabled.", AuthError, "has been disabled"),
        (403, 2009, "API key does not have access to the resource.", AuthError, "no access"),
        (400, 1006, "No matching location found.", AuthError, "location not found: check sources.weather.query"),
        (400, 1003, "Parameter q is missing.", AuthError, "check sources.weather.query"),
        (400, 1005, "API request url is invalid", AuthError, "check sources.weather.base_url"),
        (400, 9000, "Json body passed in bulk request is invalid.", AuthError, "code 9000"),
        (500, 9999, "Internal application error.", TransientError, "internal error"),
    ],
)
def test_error_bodies_are_reported_by_meaning(  # noqa: PLR0917 - pytest fixtures and parameters
    api: FakeApi, status: int, code: int, message: str, error: type, words: str
) -> None:
    api.route("/v1/forecast.json", Reply(status, {"error": {"code": code, "message": message}}))
    with pytest.raises(error) as info:
        source(api).fetch()
    assert words in info.value.message
    assert API_KEY not in info.value.message
    if error is AuthError:
        assert info.value.retry_after_s >= 3600, "a person must act: retry rarely"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (
            Reply(500, "<html><body><h1>500 Internal Server Error</h1></body></html>", {"Content-Type": "text/html"}),
            TransientError,
        ),
        (Reply(502, b""), TransientError),
        (Reply(429, b"", headers={"Retry-After": "600"}), RateLimitedError),
        (Reply(401, b"Unauthorized"), AuthError),
        (Reply(200, "<html>Service temporarily unavailable</html>", {"Content-Type": "text/html"}), TransientError),
        (Reply(200, b'{"location": {"name": "Stockholm"}, "current": {"temp_c": 2.'), TransientError),
    ],
)
def test_errors_without_a_weatherapi_body(api: FakeApi, reply: Reply, error: type) -> None:
    api.route("/v1/forecast.json", reply)
    with pytest.raises(error):
        source(api).fetch()


def test_a_timeout_is_transient(api: FakeApi) -> None:
    api.route("/v1/forecast.json", Reply(200, payload(), delay_s=2))
    src = source(api)
    src.client.read_timeout_s = 0.3
    with pytest.raises(TransientError) as info:
        src.fetch()
    assert "did not answer" in info.value.message


def test_key_never_logged(api: FakeApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api.route("/v1/forecast.json", Reply(200, payload()))
    source(api).fetch()
    api.route("/v1/forecast.json", Reply(401, {"error": {"code": 2006, "message": f"key {API_KEY} is invalid"}}))
    with pytest.raises(AuthError) as info:
        source(api).fetch()
    assert API_KEY not in info.value.message
    lines = [r.getMessage() for r in caplog.records]
    assert any("forecast.json" in line for line in lines), "control: the request was logged"
    assert not any(API_KEY in line for line in lines)


def test_against_the_demo_standin() -> None:
    now = dt.datetime(2026, 3, 29, 1, 40, tzinfo=STHLM).timestamp()  # the night of the March DST change
    standin = serve_app(make_standin_app(clock=lambda: now))
    try:
        cfg = WeatherConfig(api_key="demo-key", days=3)
        url = demo_urls(standin.url())["weather"]
        data = WeatherSource(cfg, STHLM, base_url=url, clock=lambda: now).fetch()["weather"]
        assert data["location"] == "Stockholm"
        assert len(data["days"]) == 3
        assert len(data["hours"]) == 12
        assert data["hours"][1]["time"] == "2026-03-29T03:00:00+02:00", "02:00 does not exist that night"
        for entry in [data["current"], *data["days"], *data["hours"]]:
            assert entry["icon"] in ICON_NAMES
            assert entry["condition"] == entry["condition"].strip()
        bad = WeatherSource(WeatherConfig(api_key="bad-key"), STHLM, base_url=url)
        with pytest.raises(AuthError):
            bad.fetch()
        nowhere = WeatherSource(WeatherConfig(api_key="demo-key", query="Nowhere"), STHLM, base_url=url)
        with pytest.raises(AuthError, match="location not found"):
            nowhere.fetch()
    finally:
        standin.stop()


def test_the_demo_standin_answers_in_the_page_language() -> None:
    now = dt.datetime(2026, 11, 25, 14, 5, tzinfo=STHLM).timestamp()
    standin = serve_app(make_standin_app(clock=lambda: now))
    try:
        url = demo_urls(standin.url())["weather"]
        cfg = WeatherConfig(api_key="demo-key", days=3)
        texts = {}
        for locale in ("sv-SE", "en-GB"):
            data = WeatherSource(cfg, STHLM, base_url=url, clock=lambda: now, locale=locale).fetch()["weather"]
            entries = [data["current"], *data["days"], *data["hours"]]
            texts[locale] = [(e["condition_code"], e["condition"]) for e in entries]
        swedish = {text for _code, text in texts["sv-SE"]}
        english = {text for _code, text in texts["en-GB"]}
        sv_words = {day for day, _night in world.CONDITIONS_BY_LANG["sv"].values()}
        sv_words |= {night for _day, night in world.CONDITIONS_BY_LANG["sv"].values()}
        assert swedish <= sv_words, swedish
        assert not swedish & english, "the same words in both languages: lang did not reach the stand-in"
        # Same weather, other words: the codes are the same, only the texts differ.
        assert [c for c, _t in texts["sv-SE"]] == [c for c, _t in texts["en-GB"]]
    finally:
        standin.stop()


def test_parse_does_not_modify_its_input() -> None:
    p = payload()
    before = copy.deepcopy(p)
    parse_forecast(p, STHLM, now_s=1764097200)
    assert p == before


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_damaged_field_is_a_payload_error_never_a_crash(data: st.DataObject) -> None:
    p = payload()
    for _ in range(data.draw(st.integers(1, 3))):
        replace_at(p, data.draw(st.sampled_from(json_paths(p))), data.draw(JSON_VALUES))
    problem: str | None = None
    try:
        dumps(parse_forecast(p, STHLM, now_s=1764097200))  # whatever gets through is valid, finite JSON
    except PayloadError as err:
        problem = err.message
    assert problem is None or problem.startswith("weather: ")


@pytest.mark.parametrize("epoch", [1e20, -1e19, 0, 5_000_000_000])
def test_impossible_times_are_payload_errors(epoch: float) -> None:
    p = payload()
    p["current"]["last_updated_epoch"] = epoch
    with pytest.raises(PayloadError, match=r"current\.last_updated_epoch: time out of range"):
        parse_forecast(p, STHLM, now_s=1764097200)
    p = payload()
    p["forecast"]["forecastday"][0]["hour"][23]["time_epoch"] = epoch
    with pytest.raises(PayloadError, match=r"hour\[23\]\.time_epoch: time out of range"):
        parse_forecast(p, STHLM, now_s=1764097200)
    p = payload()
    p["forecast"]["forecastday"][2]["date"] = "9999-12-31"
    p["alerts"]["alert"][0]["expires"] = "9999-12-31T23:59:59-12:00"
    data = parse_forecast(p, STHLM, now_s=1764097200)
    assert data["days"][2]["sunset"] is None or data["days"][2]["sunset"].startswith("9999")
    assert data["alerts"][0]["expires"] is None
