"""A local stand-in for WeatherAPI.com, SL's Transport API and Strava, in their real formats, for demo mode.

Paths, relative to the stand-in's root URL (demo_urls() builds the base URLs the sources take):

  weather       {root}/weatherapi/v1        GET  forecast.json?key=&q=&days=&alerts=&aqi=&lang=
  departures    {root}/sl/v1                GET  sites?expand=true, sites/{site_id}/departures?transport=&line=
                                                 &direction=&forecast=
  strava_api    {root}/strava/api/v3        GET  athlete/activities?per_page=&page=&before=&after=  (Bearer token)
  strava_token  {root}/strava/oauth/token   POST grant_type=refresh_token | authorization_code
                {root}/strava/oauth/authorize    GET, redirects to redirect_uri?code=...&scope=... (for `setup`)
  calendar      {root}/calendar                  GET  {i}.ics: the demo's calendar feeds (server/demo/calendars.py),
                                                 with ETag; If-None-Match gets 304 while the feed is unchanged

Like the real Strava, every refresh issues a NEW refresh token and the old one dies at once. A refresh
token the stand-in has never seen is accepted once (so a demo survives restarts of the stand-in, whose
memory is lost, while the server's token file persists); one it has seen rotated away gets 400.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import tornado.web

from server.core.jsonutil import dumps
from server.demo import calendars, world

ACCESS_TOKEN_LIFETIME_S = 6 * 3600  # "Access tokens expire six hours after they are created"

log = logging.getLogger(__name__)


def demo_urls(root: str) -> dict[str, str]:
    """The base URLs the sources use in demo mode (services.demo_urls), for a stand-in served at `root`."""
    root = root.rstrip("/")
    return {
        "weather": f"{root}/weatherapi/v1",
        "departures": f"{root}/sl/v1",
        "strava_api": f"{root}/strava/api/v3",
        "strava_token": f"{root}/strava/oauth/token",
        "calendar": f"{root}/calendar",
    }


class StandinState:
    """What the stand-in remembers: issued tokens and request counts. Lives on the event-loop thread."""

    def __init__(
        self,
        clock: Callable[[], float],
        strava_limits: tuple[int, int] = (200, 2000),
        strava_read_limits: tuple[int, int] = (100, 1000),
    ) -> None:
        self.clock = clock
        self.strava_limits = strava_limits
        self.strava_read_limits = strava_read_limits
        self.issued_refresh: list[str] = []  # every refresh token handed out, in order
        self.live_refresh: set[str] = set()
        self.dead_refresh: set[str] = set()
        self.access: dict[str, float] = {}  # token → expires_at
        self.codes: set[str] = set()
        self.used_codes: set[str] = set()
        self.requests: dict[tuple[str, int], int] = {}  # (counter, window index) → count
        self.refreshes = 0

    def count(self, counter: str) -> tuple[int, int]:
        """Count one request; returns this quarter hour's and today's (UTC) usage, as Strava reports them."""
        now = self.clock()
        quarter, day = (f"{counter}:15", math.floor(now / 900)), (f"{counter}:day", math.floor(now / 86400))
        self.requests[quarter] = self.requests.get(quarter, 0) + 1
        self.requests[day] = self.requests.get(day, 0) + 1
        return self.requests[quarter], self.requests[day]

    def usage(self, counter: str) -> tuple[int, int]:
        now = self.clock()
        return (
            self.requests.get((f"{counter}:15", math.floor(now / 900)), 0),
            self.requests.get((f"{counter}:day", math.floor(now / 86400)), 0),
        )

    def issue_tokens(self) -> dict[str, Any]:
        refresh, access = secrets.token_hex(20), secrets.token_hex(20)
        expires_at = int(self.clock()) + ACCESS_TOKEN_LIFETIME_S
        self.live_refresh.add(refresh)
        self.issued_refresh.append(refresh)
        self.access[access] = expires_at
        self.refreshes += 1
        return {
            "token_type": "Bearer",
            "access_token": access,
            "expires_at": expires_at,
            "expires_in": ACCESS_TOKEN_LIFETIME_S,
            "refresh_token": refresh,
        }


class _JsonHandler(tornado.web.RequestHandler):
    def initialize(self, state: StandinState) -> None:
        self.state = state

    def compute_etag(self) -> None:
        return None

    def send_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(dumps(obj))


# ---------------------------------------------------------------- WeatherAPI


class ForecastHandler(_JsonHandler):
    def get(self) -> None:
        key = self.get_query_argument("key", "")
        query = self.get_query_argument("q", "").strip()
        if not key:
            self.send_json({"error": {"code": 1002, "message": "API key is invalid or not provided."}}, 401)
            return
        if key in ("invalid", "bad-key"):
            self.send_json({"error": {"code": 2006, "message": "API key provided is invalid"}}, 401)
            return
        if not query:
            self.send_json({"error": {"code": 1003, "message": "Parameter q is missing."}}, 400)
            return
        if query.lower() in ("nowhere", "atlantis"):
            self.send_json({"error": {"code": 1006, "message": "No matching location found."}}, 400)
            return
        try:
            days = int(self.get_query_argument("days", "1"))
        except ValueError:
            days = 1
        payload = world.forecast_payload(
            self.state.clock(),
            days,
            query=query,
            alerts=self.get_query_argument("alerts", "no") == "yes",
            aqi=self.get_query_argument("aqi", "no") == "yes",
            lang=self.get_query_argument("lang", None),
        )
        self.send_json(payload)


# ---------------------------------------------------------------- SL


class SitesHandler(_JsonHandler):
    def get(self) -> None:
        self.send_json(world.sites_payload(self.get_query_argument("expand", "false") == "true"))


class DeparturesHandler(_JsonHandler):
    def get(self, site_id: str) -> None:
        args: dict[str, Any] = {}
        try:
            forecast = int(self.get_query_argument("forecast", "60"))
            if not 5 <= forecast <= 1200:
                raise ValueError
            for name in ("line", "direction"):
                value = self.get_query_argument(name, None)
                args[name] = int(value) if value is not None else None
        except ValueError:
            self.send_json({"message": "Bad request"}, 400)
            return
        transport = self.get_query_argument("transport", None)
        if transport is not None and transport not in ("BUS", "TRAM", "METRO", "TRAIN", "FERRY", "SHIP", "TAXI"):
            self.send_json({"message": "Bad request"}, 400)
            return
        payload = world.departures_payload(
            int(site_id), self.state.clock(), transport=transport, forecast_min=forecast, **args
        )
        self.send_json(payload)


# ---------------------------------------------------------------- Strava


def _strava_error(message: str, resource: str, field: str, code: str) -> dict[str, Any]:
    return {"message": message, "errors": [{"resource": resource, "field": field, "code": code}]}


class TokenHandler(_JsonHandler):
    def post(self) -> None:
        self.state.count("all")
        args = {k: self.get_body_argument(k, "") for k in ("client_id", "client_secret", "grant_type")}
        if not args["client_id"] or not args["client_secret"]:
            self.send_json(_strava_error("Bad Request", "Application", "client_id", "invalid"), 400)
            return
        if args["grant_type"] == "refresh_token":
            token = self.get_body_argument("refresh_token", "")
            if not token or token in self.state.dead_refresh:
                self.send_json(_strava_error("Bad Request", "RefreshToken", "refresh_token", "invalid"), 400)
                return
            self.state.live_refresh.discard(token)
            self.state.dead_refresh.add(token)  # rotation: the old token dies the moment a new one exists
            self.send_json(self.state.issue_tokens())
            return
        if args["grant_type"] == "authorization_code":
            code = self.get_body_argument("code", "")
            if not code or code in self.state.used_codes:
                self.send_json(_strava_error("Bad Request", "AuthorizationCode", "code", "invalid"), 400)
                return
            self.state.used_codes.add(code)
            self.send_json({**self.state.issue_tokens(), "athlete": world.ATHLETE})
            return
        self.send_json(_strava_error("Bad Request", "Application", "grant_type", "invalid"), 400)


class AuthorizeHandler(_JsonHandler):
    def get(self) -> None:
        redirect_uri = self.get_query_argument("redirect_uri", "")
        if not redirect_uri.startswith(("http://localhost", "http://127.0.0.1")):
            self.send_json(_strava_error("Bad Request", "Application", "redirect_uri", "invalid"), 400)
            return
        code = secrets.token_hex(16)
        self.state.codes.add(code)
        query = {"state": "", "code": code, "scope": "read," + self.get_query_argument("scope", "read")}
        self.redirect(f"{redirect_uri}?{urlencode(query, safe=':,')}")


class ActivitiesHandler(_JsonHandler):
    def get(self) -> None:
        state = self.state
        usage = state.count("all")
        read_usage = state.count("read")
        self.set_header("X-RateLimit-Limit", "{},{}".format(*state.strava_limits))
        self.set_header("X-RateLimit-Usage", "{},{}".format(*usage))
        self.set_header("X-ReadRateLimit-Limit", "{},{}".format(*state.strava_read_limits))
        self.set_header("X-ReadRateLimit-Usage", "{},{}".format(*read_usage))
        over = any(u > limit for u, limit in zip(usage, state.strava_limits, strict=True)) or any(
            u > limit for u, limit in zip(read_usage, state.strava_read_limits, strict=True)
        )
        if over:
            self.send_json(_strava_error("Rate Limit Exceeded", "Application", "rate limit", "exceeded"), 429)
            return
        auth = self.request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        if state.access.get(token, 0) <= state.clock():
            self.send_json(_strava_error("Authorization Error", "Athlete", "access_token", "invalid"), 401)
            return
        try:
            per_page = min(max(int(self.get_query_argument("per_page", "30")), 1), 200)
            page = max(int(self.get_query_argument("page", "1")), 1)
            before = self.get_query_argument("before", None)
            after = self.get_query_argument("after", None)
            before_s = float(before) if before is not None else state.clock() + 1
            after_s = float(after) if after is not None else state.clock() - 120 * 86400
        except ValueError:
            self.send_json(_strava_error("Bad Request", "Activity", "per_page", "invalid"), 400)
            return
        items = world.activities_between(after_s, before_s, state.clock())
        if after is None:
            items.reverse()  # newest first; with `after`, oldest first (as community reports say Strava does)
        self.send_json(items[(page - 1) * per_page : page * per_page])


# ---------------------------------------------------------------- calendar feeds


class CalendarFeedHandler(tornado.web.RequestHandler):
    """One demo ICS feed; Tornado's own ETag handling answers If-None-Match with 304 while it is unchanged."""

    def initialize(self, state: StandinState) -> None:
        self.state = state

    def get(self, index: str) -> None:
        self.set_header("Content-Type", "text/calendar; charset=utf-8")
        self.finish(calendars.feed_ics(int(index), self.state.clock()))


def _log_request(handler: tornado.web.RequestHandler) -> None:
    # Path only: query strings carry the (demo) API key, and no key goes into a log line, demo or not.
    request = handler.request
    log.debug("%d %s %s %.1f ms", handler.get_status(), request.method, request.path, 1000 * request.request_time())


def make_standin_app(
    clock: Callable[[], float] = time.time,
    *,
    strava_limits: tuple[int, int] = (200, 2000),
    strava_read_limits: tuple[int, int] = (100, 1000),
) -> tornado.web.Application:
    """The stand-in as a Tornado app; serve it on a loopback port. `clock` drives every time it reports."""
    state = StandinState(clock, strava_limits, strava_read_limits)
    kwargs = {"state": state}
    app = tornado.web.Application(
        [
            (r"/weatherapi/v1/forecast\.json", ForecastHandler, kwargs),
            (r"/sl/v1/sites", SitesHandler, kwargs),
            (r"/sl/v1/sites/([0-9]{1,9})/departures", DeparturesHandler, kwargs),
            (r"/strava/oauth/token", TokenHandler, kwargs),
            (r"/strava/oauth/authorize", AuthorizeHandler, kwargs),
            (r"/strava/api/v3/athlete/activities", ActivitiesHandler, kwargs),
            (r"/calendar/([0-9]{1,3})\.ics", CalendarFeedHandler, kwargs),
        ],
        compress_response=True,
        log_function=_log_request,
    )
    app.settings["standin_state"] = state  # for tests that want to look inside
    return app
