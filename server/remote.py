"""Feature module: the remote-data pollers (WeatherAPI, SL departures, Strava), each on only when configured."""

from __future__ import annotations

import logging
from typing import Any

from server.services import Services
from server.sources.calendar import CalendarSource
from server.sources.sl import DeparturesSource
from server.sources.strava import DEMO_TOKEN_FILE_NAME, TOKEN_FILE_NAME, StravaSource
from server.sources.weather import WeatherSource
from server.timeutil import zone

log = logging.getLogger(__name__)


def install(services: Services) -> list[Any]:
    """Add a source for each of sources.weather / departures / strava that the config has (absent → off).

    In demo mode services.demo_urls points the same sources at the local stand-in (server.demo.standin):
    the production code path, other endpoints.
    """
    config = services.config
    if config.mqtt is not None and config.mqtt.role == "follower":
        # One set of pollers per household: API limits count per application, not per screen (server/mqtt).
        log.info("remote sources: none (MQTT follower: weather, departures, strava come from %s)", config.mqtt.leader)
        return []
    tz = zone(config.timezone)
    urls = services.demo_urls
    sources = config.sources
    if sources.weather is not None:
        services.runner.add(WeatherSource(sources.weather, tz, base_url=urls.get("weather")))
    if sources.departures is not None:
        services.runner.add(
            DeparturesSource(sources.departures, tz, data_dir=services.data_dir, base_url=urls.get("departures"))
        )
    if sources.strava is not None:
        services.runner.add(
            StravaSource(
                sources.strava,
                tz,
                services.data_dir,
                base_url=urls.get("strava_api"),
                token_url=urls.get("strava_token"),
                # A demo run in a real data_dir must not replace the real (rotating) refresh token.
                token_file_name=DEMO_TOKEN_FILE_NAME if urls else TOKEN_FILE_NAME,
            )
        )
    if sources.calendar is not None:
        services.runner.add(CalendarSource(sources.calendar, config.timezone, base_url=urls.get("calendar")))
    enabled = [name for name in ("weather", "departures", "strava", "calendar") if getattr(sources, name) is not None]
    log.info("remote sources: %s%s", ", ".join(enabled) or "none", " (demo stand-in)" if urls else "")
    return []
