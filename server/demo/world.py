"""The demo's pretend world as pure functions of time: Stockholm weather, an SL timetable, a training log.

Everything is deterministic (hash of the time slot), so the same instant always gives the same answer and
values change smoothly as the clock moves. Payloads follow the real APIs' formats, traps included
(as recorded from the live APIs): trailing spaces in condition texts, numbers as strings, naive Stockholm times,
cancelled departures, departures without `expected`, missing heart rates. The texts are what a real household
would see (a new user's first impression); hostile strings (markup in user text) live in the tests instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")
LAT, LON = 59.3293, 18.0686


def unit_hash(*parts: Any) -> float:
    """A stable pseudo-random number in [0, 1) for these parts (not random.Random: no state to carry)."""
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:6], "big") / float(1 << 48)


def _wave(t: float, period_h: float, phase: float) -> float:
    return math.sin(2 * math.pi * (t / 3600.0 / period_h + phase))


def _local(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, STOCKHOLM)


# ---------------------------------------------------------------- weather

# code: (day text, night text), from WeatherAPI's conditions list.
CONDITIONS: dict[int, tuple[str, str]] = {
    1000: ("Sunny", "Clear"),
    1003: ("Partly cloudy", "Partly cloudy"),
    1006: ("Cloudy", "Cloudy"),
    1009: ("Overcast", "Overcast"),
    1030: ("Mist", "Mist"),
    1063: ("Patchy rain possible", "Patchy rain possible"),
    1066: ("Patchy snow possible", "Patchy snow possible"),
    1069: ("Patchy sleet possible", "Patchy sleet possible"),
    1135: ("Fog", "Fog"),
    1153: ("Light drizzle", "Light drizzle"),
    1183: ("Light rain", "Light rain"),
    1189: ("Moderate rain", "Moderate rain"),
    1195: ("Heavy rain", "Heavy rain"),
    1204: ("Light sleet", "Light sleet"),
    1213: ("Light snow", "Light snow"),
    1219: ("Moderate snow", "Moderate snow"),
    1240: ("Light rain shower", "Light rain shower"),
    1276: ("Moderate or heavy rain with thunder", "Moderate or heavy rain with thunder"),
}
# The same conditions in Swedish, for lang=sv (WeatherAPI translates condition texts only).
CONDITIONS_BY_LANG: dict[str, dict[int, tuple[str, str]]] = {
    "sv": {
        1000: ("Soligt", "Klart"),
        1003: ("Delvis molnigt", "Delvis molnigt"),
        1006: ("Molnigt", "Molnigt"),
        1009: ("Mulet", "Mulet"),
        1030: ("Dis", "Dis"),
        1063: ("Lokalt regn möjligt", "Lokalt regn möjligt"),
        1066: ("Lokalt snöfall möjligt", "Lokalt snöfall möjligt"),
        1069: ("Lokalt snöblandat regn möjligt", "Lokalt snöblandat regn möjligt"),
        1135: ("Dimma", "Dimma"),
        1153: ("Lätt duggregn", "Lätt duggregn"),
        1183: ("Lätt regn", "Lätt regn"),
        1189: ("Måttligt regn", "Måttligt regn"),
        1195: ("Kraftigt regn", "Kraftigt regn"),
        1204: ("Lätt snöblandat regn", "Lätt snöblandat regn"),
        1213: ("Lätt snöfall", "Lätt snöfall"),
        1219: ("Måttligt snöfall", "Måttligt snöfall"),
        1240: ("Lätta regnskurar", "Lätta regnskurar"),
        1276: ("Måttligt eller kraftigt regn med åska", "Måttligt eller kraftigt regn med åska"),
    },
}
_ICON_NUMBER = {1000: 113, 1003: 116, 1006: 119, 1009: 122, 1030: 143, 1063: 176, 1066: 179, 1069: 182, 1135: 248}
_WIND_DIRS = ["N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW"]


def temperature_c(t: float) -> float:
    """Season + day/night + slow weather systems: changes by tenths of a degree per minute at most."""
    doy = _local(t).timetuple().tm_yday
    seasonal = 8.0 - 10.0 * math.cos(2 * math.pi * (doy - 15) / 365.25)
    hour = _local(t).hour + _local(t).minute / 60.0
    diurnal = 3.5 * math.cos(2 * math.pi * (hour - 15.0) / 24.0)
    synoptic = 3.0 * _wave(t, 97.0, 0.1) + 1.5 * _wave(t, 41.0, 0.7)
    return seasonal + diurnal + synoptic


def cloud_fraction(t: float) -> float:
    return min(1.0, max(0.0, 0.55 + 0.35 * _wave(t, 53.0, 0.3) + 0.2 * _wave(t, 11.0, 0.9)))


def precip_index(t: float) -> float:
    return min(1.0, max(0.0, 0.35 + 0.4 * _wave(t, 53.0, 0.25) + 0.25 * _wave(t, 7.0, 0.5)))


def wind_kph(t: float) -> float:
    return max(0.0, 14.0 + 9.0 * _wave(t, 61.0, 0.4) + 4.0 * _wave(t, 5.0, 0.2))


def humidity_pct(t: float) -> int:
    return round(min(100.0, max(35.0, 70 + 20 * precip_index(t) - 10 * _wave(t, 24.0, 0.1))))


def sun_times(day: dt.date) -> tuple[float, float]:
    """Sunrise and sunset (epoch s) in Stockholm: the textbook declination formula, good to a few minutes."""
    doy = day.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
    x = -math.tan(math.radians(LAT)) * math.tan(decl)
    half_day_h = math.degrees(math.acos(min(1.0, max(-1.0, x)))) / 15.0
    noon_utc_h = 12.0 - LON / 15.0
    midnight_utc = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
    return midnight_utc + (noon_utc_h - half_day_h) * 3600, midnight_utc + (noon_utc_h + half_day_h) * 3600


def is_day(t: float) -> bool:
    sunrise, sunset = sun_times(_local(t).date())
    return sunrise <= t < sunset


def condition_code(t: float) -> int:
    temp, p, c = temperature_c(t), precip_index(t), cloud_fraction(t)
    if p > 0.62:
        if temp < -0.5:
            return 1219 if p > 0.85 else 1213
        if temp < 1.5:
            return 1204
        if temp > 16 and p > 0.9:
            return 1276
        return 1195 if p > 0.9 else 1189 if p > 0.78 else 1183
    if p > 0.55:
        return 1066 if temp < 0 else 1063
    hour = _local(t).hour
    if humidity_pct(t) > 92 and 4 <= hour <= 8:
        return 1135
    if c < 0.25:
        return 1000
    if c < 0.5:
        return 1003
    return 1006 if c < 0.75 else 1009


def condition_text(code: int, day: bool, lang: str | None) -> str:
    """The condition text as WeatherAPI words it for `lang`; English for no or an unknown language, as the API."""
    return CONDITIONS_BY_LANG.get(lang or "", CONDITIONS).get(code, CONDITIONS[code])[0 if day else 1]


def _condition(t: float, day: bool, *, sloppy: bool, lang: str | None = None) -> dict[str, Any]:
    code = condition_code(t)
    text = condition_text(code, day, lang)
    if sloppy and code in (1000, 1003, 1006, 1009):
        # The real API's hourly/daily texts: "Partly Cloudy " in title case with a trailing space.
        text = (text if lang in CONDITIONS_BY_LANG else text.title()) + " "
    icon = _ICON_NUMBER.get(code, 296)
    return {
        "text": text,
        "icon": f"//cdn.weatherapi.com/weather/64x64/{'day' if day else 'night'}/{icon}.png",
        "code": code,
    }


def _hour_entry(t: float, lang: str | None) -> dict[str, Any]:
    day = is_day(t)
    temp = temperature_c(t)
    wind = wind_kph(t)
    p = precip_index(t)
    chance = round(min(100.0, max(0.0, (p - 0.45) * 250)))
    return {
        "time_epoch": int(t),
        "time": _local(t).strftime("%Y-%m-%d %H:%M"),
        "temp_c": round(temp, 1),
        "temp_f": round(temp * 9 / 5 + 32, 1),
        "is_day": 1 if day else 0,
        "condition": _condition(t, day, sloppy=True, lang=lang),
        "wind_kph": round(wind, 1),
        "wind_degree": round(180 + 120 * _wave(t, 61.0, 0.9)) % 360,
        "wind_dir": _WIND_DIRS[round((180 + 120 * _wave(t, 61.0, 0.9)) % 360 / 22.5) % 16],
        "pressure_mb": round(1013 + 12 * _wave(t, 83.0, 0.6)),
        "precip_mm": round(max(0.0, p - 0.62) * 6, 1),
        "humidity": humidity_pct(t),
        "cloud": round(cloud_fraction(t) * 100),
        "feelslike_c": round(temp - wind / 10.0, 1),
        "will_it_rain": 1 if chance >= 50 and temp > 0 else 0,
        "chance_of_rain": chance if temp > 0 else 0,
        "will_it_snow": 1 if chance >= 50 and temp <= 0 else 0,
        "chance_of_snow": chance if temp <= 0 else 0,
        "gust_kph": round(wind * 1.6, 1),
        "uv": round(max(0.0, 5 * math.sin(math.pi * (_local(t).hour - 6) / 14)) if day else 0.0, 1),
    }


def _ampm(t: float) -> str:
    return _local(t).strftime("%I:%M %p")


def forecast_payload(
    now: float, days: int, *, query: str, alerts: bool, aqi: bool, lang: str | None = None
) -> dict[str, Any]:
    """A WeatherAPI forecast.json answer for `now`; condition texts in `lang` (WeatherAPI's code, e.g. "sv")."""
    local_now = _local(now)
    observed = math.floor(now / 900) * 900  # the real API updates `current` every 15 minutes or so
    day_now = is_day(observed)
    temp = temperature_c(observed)
    wind = wind_kph(observed)
    current: dict[str, Any] = {
        "last_updated_epoch": int(observed),
        "last_updated": _local(observed).strftime("%Y-%m-%d %H:%M"),
        "temp_c": round(temp, 1),
        "temp_f": round(temp * 9 / 5 + 32, 1),
        "is_day": 1 if day_now else 0,
        "condition": _condition(observed, day_now, sloppy=False, lang=lang),
        "wind_mph": round(wind / 1.609, 1),
        "wind_kph": round(wind, 1),
        "wind_degree": round(180 + 120 * _wave(observed, 61.0, 0.9)) % 360,
        "wind_dir": _WIND_DIRS[round((180 + 120 * _wave(observed, 61.0, 0.9)) % 360 / 22.5) % 16],
        "pressure_mb": float(round(1013 + 12 * _wave(observed, 83.0, 0.6))),
        "precip_mm": round(max(0.0, precip_index(observed) - 0.62) * 6, 1),
        "humidity": humidity_pct(observed),
        "cloud": round(cloud_fraction(observed) * 100),
        "feelslike_c": round(temp - wind / 10.0, 1),
        "vis_km": 10.0,
        "uv": 1.0 if day_now else 0.0,
        "gust_kph": round(wind * 1.6, 1),
    }
    if aqi:
        current["air_quality"] = {"co": 210.3, "no2": 8.1, "o3": 52.0, "pm2_5": 4.2, "pm10": 6.3, "us-epa-index": 1}
    forecastday = []
    for i in range(max(1, min(days, 14))):
        date = local_now.date() + dt.timedelta(days=i)
        midnight = dt.datetime(date.year, date.month, date.day, tzinfo=STOCKHOLM).timestamp()
        hours = []
        t = midnight
        while _local(t).date() == date:  # 23 or 25 entries on DST days: one per real hour
            hours.append(_hour_entry(t, lang))
            t += 3600
        temps = [h["temp_c"] for h in hours]
        noon = midnight + 13 * 3600
        sunrise, sunset = sun_times(date)
        rain_chance = max(h["chance_of_rain"] for h in hours)
        day: dict[str, Any] = {
            "maxtemp_c": max(temps),
            "mintemp_c": min(temps),
            "avgtemp_c": round(sum(temps) / len(temps), 1),
            "maxwind_kph": max(h["wind_kph"] for h in hours),
            "totalprecip_mm": round(sum(h["precip_mm"] for h in hours), 1),
            "avghumidity": round(sum(h["humidity"] for h in hours) / len(hours)),
            "daily_will_it_rain": 1 if rain_chance >= 50 else 0,
            "daily_chance_of_rain": rain_chance,
            "daily_will_it_snow": 1 if max(h["chance_of_snow"] for h in hours) >= 50 else 0,
            "daily_chance_of_snow": max(h["chance_of_snow"] for h in hours),
            "condition": _condition(noon, True, sloppy=True, lang=lang),
            "uv": 2.0,
        }
        if i == 1:
            # Types drift between API versions (a 2021 fixture had these as strings): keep parsers honest.
            day["daily_chance_of_rain"] = str(day["daily_chance_of_rain"])
            day["avghumidity"] = float(day["avghumidity"])
        forecastday.append(
            {
                "date": date.isoformat(),
                "date_epoch": int(dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC).timestamp()),
                "day": day,
                "astro": {
                    "sunrise": _ampm(sunrise),
                    "sunset": _ampm(sunset),
                    "moonrise": "No moonrise" if i == 2 else "10:41 PM",
                    "moonset": "01:12 PM",
                    "moon_phase": "Waxing Gibbous",
                    "moon_illumination": 76,
                },
                "hour": hours,
            }
        )
    payload: dict[str, Any] = {
        "location": {
            "name": query if query and not any(ch.isdigit() for ch in query) else "Stockholm",
            "region": "Stockholms Lan",
            "country": "Sweden",
            "lat": LAT,
            "lon": LON,
            "tz_id": "Europe/Stockholm",
            "localtime_epoch": int(now),
            "localtime": f"{local_now:%Y-%m-%d} {local_now.hour}:{local_now:%M}",  # hour not zero-padded, as real
        },
        "current": current,
        "forecast": {"forecastday": forecastday},
    }
    if alerts:
        payload["alerts"] = {"alert": weather_alerts(now)}
    return payload


def weather_alerts(now: float) -> list[dict[str, Any]]:
    """A wind warning when it blows, sent twice (as the real API does for several areas)."""
    if max(wind_kph(now + h * 3600) for h in range(0, 24, 3)) < 24:
        return []
    start = math.floor(now / 21600) * 21600
    alert = {
        "headline": "SMHI: Gul varning – Kuling",
        "msgtype": "Alert",
        "severity": "Moderate",
        "urgency": "Expected",
        "areas": "Stockholms län",
        "category": "Met",
        "certainty": "Likely",
        "event": "Kuling",
        "note": "",
        "effective": _local(start).isoformat(timespec="seconds"),
        "expires": _local(start + 43200).isoformat(timespec="seconds"),
        "desc": "Nordlig kuling 14–18 m/s i byarna.\nRisk för nedfallna grenar och förseningar i trafiken.",
        "instruction": "",
    }
    return [alert, dict(alert, areas="Uppsala län")]


# ---------------------------------------------------------------- SL


@dataclass(frozen=True)
class Line:
    id: int
    mode: str
    group: str | None
    destinations: tuple[str, str]  # direction 1, direction 2
    headway_min: int
    offset_min: int
    stop_area_type: str
    designation: str = ""


LINES: tuple[Line, ...] = (
    Line(17, "METRO", "Tunnelbanans gröna linje", ("Åkeshov", "Skarpnäck"), 10, 1, "METROSTN"),
    Line(18, "METRO", "Tunnelbanans gröna linje", ("Alvik", "Farsta strand"), 10, 4, "METROSTN"),
    Line(19, "METRO", "Tunnelbanans gröna linje", ("Hässelby strand", "Hagsätra"), 10, 7, "METROSTN"),
    Line(13, "METRO", "Tunnelbanans röda linje", ("Ropsten", "Norsborg"), 8, 2, "METROSTN"),
    Line(14, "METRO", "Tunnelbanans röda linje", ("Mörby centrum", "Fruängen"), 8, 6, "METROSTN"),
    Line(2, "BUS", None, ("Sofia", "Norrtull"), 7, 3, "BUSTERM"),
    Line(53, "BUS", None, ("Karolinska institutet", "Henriksdalsberget"), 12, 5, "BUSTERM"),
    Line(76, "BUS", "Blåbuss", ("Ropsten", "Norra Hammarbyhamnen"), 10, 0, "BUSTERM", "76X"),
    Line(40, "TRAIN", "Pendeltåg", ("Uppsala C", "Södertälje centrum"), 15, 9, "RAILWSTN"),
    Line(80, "SHIP", "Pendelbåt", ("Saltsjöqvarn", "Nybroplan"), 30, 12, "SHIPBER"),
)

# The first four are SL's documented examples; the rest are named stops with invented ids for the demo.
SITES: tuple[dict[str, Any], ...] = (
    {"id": 9192, "name": "Slussen", "abbreviation": "SLU", "lat": 59.3195, "lon": 18.0722, "stop_areas": [1031, 1032]},
    {"id": 9001, "name": "T-Centralen", "abbreviation": "TCE", "lat": 59.3313, "lon": 18.0604, "stop_areas": [1051]},
    {"id": 9117, "name": "Odenplan", "abbreviation": "ODP", "lat": 59.3429, "lon": 18.0498, "stop_areas": [1131]},
    {
        "id": 1079,
        "name": "Stockholm Odenplan",
        "abbreviation": "SOD",
        "lat": 59.343,
        "lon": 18.046,
        "stop_areas": [1131, 10151, 5320],
    },
    {
        "id": 9200,
        "name": "Hässelby strand",
        "alias": ["Hässelby str"],
        "lat": 59.3612,
        "lon": 17.8325,
        "stop_areas": [2001],
    },
    {"id": 9190, "name": "Hagsätra", "lat": 59.2626, "lon": 18.0124, "stop_areas": [2002]},
    {
        "id": 9520,
        "name": "Södertälje centrum",
        "abbreviation": "SÖC",
        "lat": 59.1925,
        "lon": 17.6262,
        "stop_areas": [2003],
    },
    {"id": 9180, "name": "Gullmarsplan", "lat": 59.2991, "lon": 18.0808, "stop_areas": [2004]},
    {"id": 9119, "name": "Odengatan", "lat": 59.3447, "lon": 18.0571, "stop_areas": [2005]},
)


def site_name(site_id: int) -> str:
    for site in SITES:
        if site["id"] == site_id:
            return str(site["name"])
    return f"Hållplats {site_id}"


def sites_payload(expand: bool) -> list[dict[str, Any]]:
    out = []
    for site in SITES:
        item = {"gid": 9091001000000000 + site["id"], **site, "valid": {"from": "2018-08-10T00:00:00"}}
        if not expand:
            item.pop("stop_areas", None)
        out.append(item)
    return out


def _naive(t: float) -> str:
    """SL's localDatetime: Stockholm wall-clock time with no offset (ambiguous in the repeated October hour)."""
    return _local(t).strftime("%Y-%m-%dT%H:%M:%S")


def _display(now: float, t: float) -> str:
    minutes = math.floor((t - now) / 60)
    if minutes <= 0:
        return "Nu"
    if minutes < 60:
        return f"{minutes} min"
    return _local(t).strftime("%H:%M")


STOP_DEVIATION = "Hissen mellan plattformen och Götgatan är ur funktion. Använd hissen vid Ryssgården."
BUS_2_DEVIATION = "Linje 2 kör omväg via Götgatan och Ringvägen på grund av vägarbete."


def departures_payload(
    site_id: int,
    now: float,
    *,
    transport: str | None = None,
    line: int | None = None,
    direction: int | None = None,
    forecast_min: int = 60,
) -> dict[str, Any]:
    """An SL /sites/{id}/departures answer for `now` (at most 3 per line and direction, as the real one)."""
    name = site_name(site_id)
    departures: list[tuple[float, dict[str, Any]]] = []
    for ln in LINES:
        if (transport and ln.mode != transport) or (line is not None and ln.id != line):
            continue
        headway_s, offset_s = ln.headway_min * 60, ln.offset_min * 60
        for dcode, destination in ((1, ln.destinations[0]), (2, ln.destinations[1])):
            if direction is not None and dcode != direction:
                continue
            k = math.ceil((now - 900 - offset_s) / headway_s)
            count = 0
            while count < 3:
                scheduled = k * headway_s + offset_s
                k += 1
                if scheduled > now + forecast_min * 60:
                    break
                roll = unit_hash("sl", ln.id, dcode, scheduled)
                delay_s = (
                    0 if roll < 0.5 else 60 * (1 + int(roll * 10) % 3) if roll < 0.9 else 60 * (5 + int(roll * 100) % 5)
                )
                expected = scheduled + delay_s
                if expected < now - 20:
                    continue  # gone
                cancelled = unit_hash("cancel", ln.id, dcode, scheduled) < 0.05
                has_expected = unit_hash("realtime", ln.id, dcode, scheduled) >= 0.12
                deviations = []
                if cancelled:
                    deviations.append(
                        {
                            "importance": 7,
                            "importance_level": 7,
                            "consequence": "CANCELLED",
                            "message": "Inställd avgång på grund av personalbrist.",
                        }
                    )
                if ln.id == 2:
                    deviations.append(
                        {
                            "importance": 5,
                            "importance_level": 5,
                            "consequence": "INFORMATION",
                            "message": BUS_2_DEVIATION,
                        }
                    )
                shown = expected if has_expected else scheduled
                item: dict[str, Any] = {
                    "destination": destination,
                    "direction_code": dcode,
                    "direction": destination,
                    "state": "CANCELLED" if cancelled else ("ATSTOP" if shown - now < 60 else "EXPECTED"),
                    "display": _display(now, shown),
                    "scheduled": _naive(scheduled),
                    "journey": {
                        "id": 2025000000000 + ln.id * 100000 + int(scheduled // 60) % 100000,
                        "state": "CANCELLED" if cancelled else "NORMALPROGRESS",
                        "prediction_state": "NORMAL",
                    },
                    "stop_area": {"id": 1000 + ln.id, "name": name, "type": ln.stop_area_type},
                    "stop_point": {"id": 10000 + ln.id * 10 + dcode, "name": name, "designation": str(dcode)},
                    "line": {"id": ln.id, "designation": ln.designation or str(ln.id), "transport_mode": ln.mode},
                    "deviations": deviations,
                }
                if ln.group:
                    item["line"]["group_of_lines"] = ln.group
                if has_expected:
                    item["expected"] = _naive(expected)
                departures.append((scheduled, item))
                count += 1
    departures.sort(key=lambda d: d[0])  # by timetable, as it comes: clients must sort by expected themselves
    return {
        "departures": [d for _, d in departures],
        "stop_deviations": [
            {
                "id": 9081,
                "importance_level": 3,
                "level": 3,
                "message": STOP_DEVIATION,
                "scope": {"stop_areas": [{"id": 1031, "name": name, "type": "METROSTN"}]},
            }
        ],
    }


# ---------------------------------------------------------------- Strava

ATHLETE = {"id": 4242424, "username": "demo", "firstname": "Demo", "lastname": "Löpare", "city": "Stockholm"}

# weekday → list of (hh, mm, sport_type, legacy type, name, km range, pace s/km, heart rate mode)
_PLAN: dict[int, list[tuple[int, int, str, str, str, tuple[float, float], float, str]]] = {
    0: [(7, 5, "Run", "Run", "Morgonlöpning", (6.0, 9.0), 330, "hr")],
    1: [
        (7, 50, "Ride", "Ride", "Pendling → jobbet 🚲", (8.0, 9.0), 150, "hr"),
        (17, 20, "Ride", "Ride", "Hem via Söder och Skanstull", (9.0, 11.0), 160, "hr"),
    ],
    2: [(18, 0, "Run", "Run", "Intervaller 6×800 m", (8.0, 10.0), 300, "hr")],
    3: [(6, 45, "Swim", "Swim", "Simning Eriksdalsbadet", (1.5, 2.5), 1400, "none")],
    4: [(12, 10, "Walk", "Walk", "Lunchpromenad", (3.0, 5.0), 720, "null")],
    5: [(9, 30, "TrailRun", "Run", "Långpass i Nackareservatet 🌲", (14.0, 21.0), 380, "hr")],
    6: [(10, 0, "Ride", "Ride", "Söndagstur till Vaxholm", (40.0, 70.0), 130, "hr")],
}


def activities_between(start_s: float, end_s: float, now: float) -> list[dict[str, Any]]:
    """SummaryActivity objects that started in [start_s, end_s) and were finished by `now`, oldest first."""
    out: list[dict[str, Any]] = []
    day = _local(start_s).date() - dt.timedelta(days=1)
    last = _local(min(end_s, now)).date()
    while day <= last:
        for slot, (hh, mm, sport, legacy, name, km, pace, hr) in enumerate(_PLAN[day.weekday()]):
            if unit_hash("rest", day.isoformat(), slot) < 0.15:
                continue  # a day off
            start_local = dt.datetime(day.year, day.month, day.day, hh, mm, tzinfo=STOCKHOLM)
            start = start_local.timestamp() + 600 * unit_hash("late", day.isoformat(), slot)
            distance_m = 1000 * (km[0] + (km[1] - km[0]) * unit_hash("km", day.isoformat(), slot))
            moving = round(distance_m / 1000 * pace * (0.95 + 0.1 * unit_hash("pace", day.isoformat(), slot)))
            elapsed = moving + round(120 * unit_hash("stops", day.isoformat(), slot))
            if not (start_s <= start < end_s) or start + elapsed > now:
                continue
            out.append(
                _activity(
                    day,
                    slot,
                    start=start,
                    distance_m=distance_m,
                    moving=moving,
                    elapsed=elapsed,
                    sport=sport,
                    legacy=legacy,
                    name=name,
                    hr=hr,
                )
            )
        day += dt.timedelta(days=1)
    out.sort(key=lambda a: a["start_date"])
    return out


def _activity(
    day: dt.date,
    slot: int,
    *,
    start: float,
    distance_m: float,
    moving: int,
    elapsed: int,
    sport: str,
    legacy: str,
    name: str,
    hr: str,
) -> dict[str, Any]:
    local = _local(start)
    offset_s = int(local.utcoffset().total_seconds())  # type: ignore[union-attr]
    manual = hr == "null"
    item: dict[str, Any] = {
        "resource_state": 2,
        "athlete": {"id": ATHLETE["id"], "resource_state": 1},
        "id": 10_000_000_000 + int(day.strftime("%Y%m%d")) * 10 + slot,
        "name": name,
        "distance": round(distance_m, 1),
        "moving_time": moving,
        "elapsed_time": elapsed,
        "total_elevation_gain": round(distance_m / 1000 * (12 if sport == "TrailRun" else 4), 1)
        if sport != "Swim"
        else 0,
        "type": legacy,
        "sport_type": sport,
        "workout_type": None,
        "start_date": dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        # Strava's trap: local wall-clock time, yet with a "Z".
        "start_date_local": local.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timezone": "(GMT+01:00) Europe/Stockholm",  # the standard offset, even in summer
        "utc_offset": float(offset_s),
        "location_country": "Sweden",
        "achievement_count": int(3 * unit_hash("ach", start)),
        "kudos_count": int(12 * unit_hash("kudos", start)),
        "comment_count": 0,
        "athlete_count": 1,
        "photo_count": 0,
        "map": {"id": f"a{int(start)}", "summary_polyline": "" if manual else "u{~vFvyys@fS]", "resource_state": 2},
        "trainer": False,
        "commute": legacy == "Ride" and slot in (0, 1) and day.weekday() == 1,
        "manual": manual,
        "private": False,
        "visibility": "everyone",
        "flagged": False,
        "start_latlng": [] if manual else [59.3195, 18.0722],
        "end_latlng": [] if manual else [59.3201, 18.0711],
        "average_speed": round(distance_m / moving, 3) if moving else 0.0,
        "max_speed": round(distance_m / moving * 1.6, 3) if moving else 0.0,
        "has_heartrate": hr == "hr",
        "pr_count": 0,
        "total_photo_count": 0,
        "has_kudoed": False,
    }
    if hr == "hr":
        item["average_heartrate"] = round(128 + 30 * unit_hash("hr", start), 1)
        item["max_heartrate"] = float(round(item["average_heartrate"] + 25))
    elif hr == "null":
        item["average_heartrate"] = None  # a manual entry: the field is there, but null
        item["max_heartrate"] = None
    return item
