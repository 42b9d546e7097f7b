"""WeatherAPI.com forecast.json → topic `weather` (current, days, next hours, alerts, local icon names)."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.config import WeatherConfig
from server.core.source import AuthError, SourceError, TransientError, stale_after_s
from server.sources.fields import Reader
from server.sources.http import HttpClient, HttpResponse, upstream_text

SOURCE = "weather"
HOURS_AHEAD = 12

# WeatherAPI condition codes (https://www.weatherapi.com/docs/weather_conditions.json, all 48 of them) → the
# icon names the page draws. "day"-less names are the same by day and night.
_ICON_BY_CODE: dict[int, str] = {
    1000: "clear",  # Sunny / Clear
    1003: "partly-cloudy",  # Partly cloudy
    1006: "cloudy",  # Cloudy
    1009: "cloudy",  # Overcast
    1030: "fog",  # Mist
    1063: "rain",  # Patchy rain possible
    1066: "snow",  # Patchy snow possible
    1069: "sleet",  # Patchy sleet possible
    1072: "drizzle",  # Patchy freezing drizzle possible
    1087: "thunder",  # Thundery outbreaks possible
    1114: "snow",  # Blowing snow
    1117: "snow",  # Blizzard
    1135: "fog",  # Fog
    1147: "fog",  # Freezing fog
    1150: "drizzle",  # Patchy light drizzle
    1153: "drizzle",  # Light drizzle
    1168: "drizzle",  # Freezing drizzle
    1171: "drizzle",  # Heavy freezing drizzle
    1180: "rain",  # Patchy light rain
    1183: "rain",  # Light rain
    1186: "rain",  # Moderate rain at times
    1189: "rain",  # Moderate rain
    1192: "heavy-rain",  # Heavy rain at times
    1195: "heavy-rain",  # Heavy rain
    1198: "sleet",  # Light freezing rain (ice on the ground: drawn as sleet)
    1201: "sleet",  # Moderate or heavy freezing rain
    1204: "sleet",  # Light sleet
    1207: "sleet",  # Moderate or heavy sleet
    1210: "snow",  # Patchy light snow
    1213: "snow",  # Light snow
    1216: "snow",  # Patchy moderate snow
    1219: "snow",  # Moderate snow
    1222: "snow",  # Patchy heavy snow
    1225: "snow",  # Heavy snow
    1237: "sleet",  # Ice pellets
    1240: "rain",  # Light rain shower
    1243: "heavy-rain",  # Moderate or heavy rain shower
    1246: "heavy-rain",  # Torrential rain shower
    1249: "sleet",  # Light sleet showers
    1252: "sleet",  # Moderate or heavy sleet showers
    1255: "snow",  # Light snow showers
    1258: "snow",  # Moderate or heavy snow showers
    1261: "sleet",  # Light showers of ice pellets
    1264: "sleet",  # Moderate or heavy showers of ice pellets
    1273: "thunder",  # Patchy light rain with thunder
    1276: "thunder",  # Moderate or heavy rain with thunder
    1279: "thunder",  # Patchy light snow with thunder
    1282: "thunder",  # Moderate or heavy snow with thunder
}
_DAY_NIGHT = {"clear", "partly-cloudy"}
ICON_NAMES = (
    "clear-day",
    "clear-night",
    "partly-cloudy-day",
    "partly-cloudy-night",
    "cloudy",
    "fog",
    "drizzle",
    "rain",
    "heavy-rain",
    "sleet",
    "snow",
    "thunder",
)
KNOWN_CODES = tuple(_ICON_BY_CODE)

# Error codes from https://www.weatherapi.com/docs/error-codes/, turned into what a person should do.
_KEY_HINT = "check sources.weather.api_key"
_ERROR_MEANINGS: dict[int, tuple[str, bool]] = {
    # code: (message, long wait?) — a long wait because retrying cannot fix it; a person must act.
    1002: (f"WeatherAPI: no API key was sent: {_KEY_HINT} (usually ${{WEATHERAPI_KEY}})", True),
    1003: ("WeatherAPI: the location query is empty: check sources.weather.query", True),
    1005: ("WeatherAPI: the request URL is invalid: check sources.weather.base_url", True),
    1006: ("WeatherAPI: location not found: check sources.weather.query", True),
    2006: (f"WeatherAPI: the API key is invalid: {_KEY_HINT}", True),
    2007: ("WeatherAPI: the API key has used up its monthly call quota: wait for next month or upgrade the plan", True),
    2008: ("WeatherAPI: the API key has been disabled: check your account at weatherapi.com", True),
    2009: ("WeatherAPI: the API key's plan has no access to forecast.json: check your plan at weatherapi.com", True),
    9999: ("WeatherAPI: internal error at weatherapi.com", False),
}

# The languages WeatherAPI translates condition texts into (https://www.weatherapi.com/docs/multilingual/).
# English is the default and needs no parameter; a language not listed here gets English texts.
_LANGS_TEXT = """
ar bn bg zh zh_tw cs da nl fi fr de el hi hu it ja jv ko zh_cmn mr pl pt pa ro ru sr si sk es sv ta te tr uk ur vi
zh_wuu zh_hsn zh_yue zu
"""
WEATHERAPI_LANGS = frozenset(_LANGS_TEXT.split())


def weatherapi_lang(locale: str) -> str | None:
    """The `lang` parameter for the page's BCP 47 locale ("sv-SE" → "sv"); None for English or an unknown language."""
    subtags = [part.lower() for part in locale.replace("_", "-").split("-") if part]
    if not subtags:
        return None
    lang = subtags[0]
    if lang == "zh" and ({"hant", "tw", "hk", "mo"} & set(subtags[1:])):
        lang = "zh_tw"  # Traditional characters
    return lang if lang in WEATHERAPI_LANGS else None


# Physically plausible ranges: a value outside is damaged data, reported by field, never shown.
TEMP_C = (-90.0, 60.0)
PCT = (0.0, 100.0)
WIND_KPH = (0.0, 500.0)
_ASTRO_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*([AaPp][Mm])\s*$")


def icon_name(code: int, is_day: bool) -> str | None:
    """The page's icon name for a WeatherAPI condition code; None for a code WeatherAPI has not documented."""
    base = _ICON_BY_CODE.get(code)
    if base is None:
        return None
    if base in _DAY_NIGHT:
        return f"{base}-day" if is_day else f"{base}-night"
    return base


def _iso(epoch_s: float, tz: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(epoch_s, tz).isoformat(timespec="seconds")


def _astro_time(text: str | None, date: str, location_tz: dt.tzinfo, tz: dt.tzinfo) -> str | None:
    """'05:46 AM' on `date` in the location's zone → ISO in `tz`; None for 'No sunrise' and the like."""
    if not text:
        return None
    m = _ASTRO_RE.match(text)
    if not m:
        return None  # "No sunrise", "No moonset": polar day/night; not an error
    hour, minute = int(m.group(1)) % 12, int(m.group(2))
    if m.group(3).upper() == "PM":
        hour += 12
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        return None
    if minute > 59:
        return None
    local = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=location_tz)
    try:
        return local.astimezone(tz).isoformat(timespec="seconds")
    except (OverflowError, ValueError):
        return None  # a date at the very end of the calendar: damaged, and not worth failing the forecast


def _alert_time(text: str | None, tz: dt.tzinfo) -> str | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        return None  # a wall time without zone cannot be placed honestly
    try:
        return value.astimezone(tz).isoformat(timespec="seconds")
    except (OverflowError, ValueError):
        return None  # year 1 or 9999 with an offset: not a real alert time


def _condition(r: Reader, parent: dict[str, Any], path: str) -> tuple[str, int]:
    cond = r.req_obj(parent, "condition", path)
    cpath = r.join(path, "condition")
    # Texts come with trailing spaces ("Partly Cloudy ") in hourly and daily entries: strip.
    return r.text(cond, "text", cpath), r.integer(cond, "code", cpath)


def parse_forecast(payload: Any, tz: dt.tzinfo, *, now_s: float | None = None) -> dict[str, Any]:
    """A forecast.json payload → topic `weather` data. Pure; raises PayloadError naming the bad field.

    `now_s` picks the next hours (default: the payload's own location.localtime_epoch).
    """
    r = Reader(SOURCE)
    if not isinstance(payload, dict):
        raise r.error("(top level)", "expected an object")
    location = r.req_obj(payload, "location")
    current = r.req_obj(payload, "current")
    forecast = r.req_obj(payload, "forecast")
    if now_s is None:
        now_s = r.epoch(location, "localtime_epoch", "location")
    try:
        location_tz: dt.tzinfo = ZoneInfo(r.text(location, "tz_id", "location", optional=True) or "")
    except (ZoneInfoNotFoundError, ValueError):
        location_tz = tz

    is_day = r.flag(current, "is_day", "current")
    text, code = _condition(r, current, "current")
    current_data = {
        "temperature_c": r.number(current, "temp_c", "current", within=TEMP_C),
        "feels_like_c": r.number(current, "feelslike_c", "current", within=TEMP_C),
        "condition": text,
        "condition_code": code,
        "icon": icon_name(code, is_day),
        "wind_kph": r.number(current, "wind_kph", "current", within=WIND_KPH),
        "wind_gust_kph": r.number(current, "gust_kph", "current", optional=True, within=WIND_KPH),
        "wind_dir": r.text(current, "wind_dir", "current"),
        "humidity_pct": r.number(current, "humidity", "current", within=PCT),
        "pressure_hpa": r.number(current, "pressure_mb", "current", optional=True, within=(800.0, 1100.0)),
        "precip_mm": r.number(current, "precip_mm", "current", optional=True, within=(0.0, 500.0)),
        "uv": r.number(current, "uv", "current", optional=True, within=(0.0, 30.0)),
        "is_day": is_day,
        "observed_at": _iso(r.epoch(current, "last_updated_epoch", "current"), tz),
    }

    days: list[dict[str, Any]] = []
    hours: list[tuple[float, dict[str, Any]]] = []
    for i, fday in enumerate(r.items(forecast, "forecastday", "forecast")):
        dpath = f"forecast.forecastday[{i}]"
        date = r.text(fday, "date", dpath)
        try:
            dt.date.fromisoformat(date)
        except ValueError:
            raise r.error(f"{dpath}.date", f'expected YYYY-MM-DD, got "{upstream_text(date, 30)}"') from None
        day = r.req_obj(fday, "day", dpath)
        daypath = f"{dpath}.day"
        astro = r.obj(fday, "astro", dpath, optional=True) or {}
        sunrise = r.text(astro, "sunrise", f"{dpath}.astro", optional=True)
        sunset = r.text(astro, "sunset", f"{dpath}.astro", optional=True)
        dtext, dcode = _condition(r, day, daypath)
        days.append(
            {
                "date": date,
                "max_c": r.number(day, "maxtemp_c", daypath, within=TEMP_C),
                "min_c": r.number(day, "mintemp_c", daypath, within=TEMP_C),
                "chance_of_rain_pct": r.number(day, "daily_chance_of_rain", daypath, optional=True, within=PCT),
                "chance_of_snow_pct": r.number(day, "daily_chance_of_snow", daypath, optional=True, within=PCT),
                "total_precip_mm": r.number(day, "totalprecip_mm", daypath, optional=True, within=(0.0, 2000.0)),
                "condition": dtext,
                "condition_code": dcode,
                "icon": icon_name(dcode, True),
                "sunrise": _astro_time(sunrise, date, location_tz, tz),
                "sunset": _astro_time(sunset, date, location_tz, tz),
            }
        )
        for j, hour in enumerate(r.items(fday, "hour", dpath, optional=True)):
            hpath = f"{dpath}.hour[{j}]"
            if not isinstance(hour, dict) or hour.get("time_epoch") in (None, ""):
                continue  # "Sometimes the hourly forecast is empty" (iprak/weatherapi): skip, do not fail
            epoch = r.epoch(hour, "time_epoch", hpath)
            if epoch + 3600 <= now_s:
                continue
            hour_is_day = r.flag(hour, "is_day", hpath)
            htext, hcode = _condition(r, hour, hpath)
            hours.append(
                (
                    epoch,
                    {
                        "time": _iso(epoch, tz),
                        "temperature_c": r.number(hour, "temp_c", hpath, within=TEMP_C),
                        "chance_of_rain_pct": r.number(hour, "chance_of_rain", hpath, optional=True, within=PCT),
                        "condition": htext,
                        "condition_code": hcode,
                        "icon": icon_name(hcode, hour_is_day),
                        "is_day": hour_is_day,
                    },
                )
            )
    if not days:
        raise r.error("forecast.forecastday", "empty: no forecast days")
    hours.sort(key=lambda item: item[0])

    alerts: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    alerts_obj = r.obj(payload, "alerts", optional=True) or {}
    for k, alert in enumerate(r.items(alerts_obj, "alert", "alerts", optional=True)):
        apath = f"alerts.alert[{k}]"
        if not isinstance(alert, dict):
            raise r.error(apath, "expected an object")
        item = {
            "headline": r.text(alert, "headline", apath, optional=True),
            "severity": r.text(alert, "severity", apath, optional=True),
            "event": r.text(alert, "event", apath, optional=True),
            "effective": _alert_time(r.text(alert, "effective", apath, optional=True), tz),
            "expires": _alert_time(r.text(alert, "expires", apath, optional=True), tz),
            "desc": r.text(alert, "desc", apath, optional=True),
        }
        # The same warning often arrives once per area or language: show it once.
        fingerprint = (item["headline"], item["event"], item["effective"], item["desc"])
        if fingerprint in seen or not (item["headline"] or item["event"] or item["desc"]):
            continue
        seen.add(fingerprint)
        alerts.append(item)

    return {
        "location": r.text(location, "name", "location"),
        "current": current_data,
        "days": days,
        "hours": [h for _, h in hours[:HOURS_AHEAD]],
        "alerts": alerts,
    }


class WeatherSource:
    """Polls WeatherAPI.com forecast.json (Source protocol)."""

    name = SOURCE
    topics = (SOURCE,)
    failures_before_error = 1

    def __init__(
        self,
        config: WeatherConfig,
        tz: dt.tzinfo,
        *,
        base_url: str | None = None,
        client: HttpClient | None = None,
        clock: Callable[[], float] = time.time,
        locale: str = "en",
    ) -> None:
        self.config = config
        self.tz = tz
        self.lang = weatherapi_lang(locale)  # condition texts in the page's language
        self.base_url = (base_url or config.base_url).rstrip("/")
        self.interval_s = config.interval_s
        self.max_age_s = stale_after_s(config.max_age_s, config.interval_s)
        self.client = client or HttpClient(SOURCE, secrets=[config.api_key])
        self.client.add_secret(config.api_key)
        self.timeout_s = self.client.deadline_s + 5.0
        self.clock = clock

    def fetch(self) -> dict[str, dict]:
        params = {"key": self.config.api_key, "q": self.config.query, "days": self.config.days}
        params |= {"alerts": "yes", "aqi": "no"}
        if self.lang is not None:
            params["lang"] = self.lang
        response = self.client.request("GET", f"{self.base_url}/forecast.json", params=params)
        try:
            check_error_body(response)
            self.client.check_status(response, auth_hint=_KEY_HINT)
        except SourceError as err:
            raise self.client.safe_error(err) from None
        return {SOURCE: parse_forecast(response.json(), self.tz, now_s=self.clock())}


def check_error_body(response: HttpResponse) -> None:
    """Turn WeatherAPI's {"error": {"code", "message"}} into an error by meaning; no-op without one."""
    if response.ok and b'"error"' not in response.body[:200]:
        return
    body = response.error_body()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return
    code = error.get("code")
    upstream = upstream_text(error.get("message", ""), 120)
    if isinstance(code, int) and code in _ERROR_MEANINGS:
        message, long_wait = _ERROR_MEANINGS[code]
        if long_wait:
            raise AuthError(f"{message} (code {code})")
        raise TransientError(f"{message} (code {code})")
    if response.status == 429:
        return  # let the generic 429 handling read Retry-After
    detail = f"code {code}: {upstream}" if upstream else f"code {code}"
    if response.status >= 500 or response.ok:
        raise TransientError(f"WeatherAPI answered HTTP {response.status} ({detail})")
    if response.status in (401, 403):
        raise AuthError(f"WeatherAPI refused the request (HTTP {response.status}, {detail}): {_KEY_HINT}")
    raise AuthError(f"WeatherAPI refused the request (HTTP {response.status}, {detail}): check sources.weather")
