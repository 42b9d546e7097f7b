"""Canary secrets in every credential; crawl every route, record every WebSocket frame and every log line
across the failure paths (401, 500, redirects, rotation) → not one occurrence, plain, URL-encoded or base64."""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tornado.websocket import websocket_connect

from server.demo import world
from tests.fakeapi import FakeApi, Recorded, Reply
from tests.procutil import ServerProcess

CANARIES = {
    "WEATHERAPI_KEY": "cnryWeatherKey7f3a9",
    "STRAVA_CLIENT_SECRET": "cnryStravaSecret51c2",
    "STRAVA_REFRESH_TOKEN": "cnryRefreshFirst88e1",
    "BALCONY_TOKEN": "cnryBalconyToken0d4b",
    "DISPLAY_TOKEN": "cnryDisplayToken9a7e",
}
ISSUED = {"access": "cnryAccessIssued3b6f", "refresh": "cnryRefreshRotated2c9d"}


def forms(secret: str) -> set[str]:
    """Every way a secret could leak in text."""
    b64 = base64.b64encode(secret.encode()).decode()
    return {
        secret,
        urllib.parse.quote(secret),
        b64,
        b64.rstrip("="),
        base64.urlsafe_b64encode(secret.encode()).decode(),
    }


class Upstream:
    def __init__(self) -> None:
        self.api = FakeApi()
        self.weather_calls = 0
        self.activity_calls = 0
        self.api.route("/weather/v1/forecast.json", self.weather)
        self.api.route("/elsewhere/forecast.json", lambda r: Reply(200, {"error": {"code": 9999, "message": "x"}}))
        self.api.route("/sl/v1/sites/9192/departures", lambda r: Reply(500, b"<html>boom</html>"))
        self.api.route("/strava/oauth/token", self.token)
        self.api.route("/strava/api/v3/athlete/activities", self.activities)
        self.api.start()

    def weather(self, req: Recorded) -> Reply:
        self.weather_calls += 1
        step = self.weather_calls
        if step == 1:
            return Reply(500, b"Internal Server Error")
        if step == 2:  # a redirect to another host must not carry the key along
            return Reply(302, b"", {"Location": self.api.url("/elsewhere/forecast.json", host="localhost")})
        if step == 4:  # a bad key, as WeatherAPI says it (then the poller waits long)
            return Reply(401, {"error": {"code": 2006, "message": "API key provided is invalid"}})
        return Reply(200, world.forecast_payload(time.time(), 3, query="Stockholm", alerts=True, aqi=False))

    def token(self, req: Recorded) -> Reply:
        return Reply(
            200,
            {
                "token_type": "Bearer",
                "access_token": ISSUED["access"],
                "expires_at": int(time.time()) + 21600,
                "expires_in": 21600,
                "refresh_token": ISSUED["refresh"],
            },
        )

    def activities(self, req: Recorded) -> Reply:
        self.activity_calls += 1
        if self.activity_calls == 2:  # the access token was revoked: a refresh must follow
            return Reply(
                401,
                {
                    "message": "Authorization Error",
                    "errors": [{"resource": "Athlete", "field": "access_token", "code": "invalid"}],
                },
            )
        now = time.time()
        return Reply(200, world.activities_between(now - 14 * 86400, now, now)[::-1])


def test_no_secret_reaches_a_browser_a_log_line_or_healthz(tmp_path: Path) -> None:
    up = Upstream()
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text("".join(f"{k}={v}\n" for k, v in CANARIES.items()))
    secrets_file.chmod(0o600)
    doc = {
        "secrets_file": str(secrets_file),
        "log_level": "debug",
        "sources": {
            "weather": {"api_key": "${WEATHERAPI_KEY}", "base_url": up.api.url("/weather/v1"), "interval_s": 1},
            "departures": {"site_id": 9192, "base_url": up.api.url("/sl/v1"), "interval_s": 1},
            "strava": {
                "client_id": "42",
                "client_secret": "${STRAVA_CLIENT_SECRET}",
                "refresh_token": "${STRAVA_REFRESH_TOKEN}",
                "interval_s": 1,
                "base_url": up.api.url("/strava/api/v3"),
                "token_url": up.api.url("/strava/oauth/token"),
            },
        },
        "remote_sensors": [{"id": "balcony", "token": "${BALCONY_TOKEN}"}],
        "display": {"token": "${DISPLAY_TOKEN}"},
    }
    srv = ServerProcess(tmp_path, doc)
    seen: list[str] = []
    try:
        srv.wait_ready()

        async def record_frames(seconds: float) -> None:
            conn = await websocket_connect(f"ws://127.0.0.1:{srv.port}/ws")
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    msg = await asyncio.wait_for(conn.read_message(), 0.5)
                except TimeoutError:
                    continue
                if msg is not None:
                    seen.append(msg)
            conn.close()

        def fetch(path: str, **kw: object) -> None:
            req = urllib.request.Request(srv.url + path, **kw)  # type: ignore[arg-type]
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    seen.append(r.read().decode("utf-8", "replace"))
                    seen.append(str(r.headers))
            except urllib.error.HTTPError as err:
                seen.append(err.read().decode("utf-8", "replace"))

        asyncio.run(record_frames(9))  # every poller goes through its failure paths meanwhile
        assert up.weather_calls >= 4, "the weather poller went through 401, 500 and the redirect"
        assert up.activity_calls >= 3, "Strava went through a 401 and a refresh"
        # Crawl every route, with right and wrong credentials where there are any.
        for path in (
            "/",
            "/api/state",
            "/api/config",
            "/healthz",
            "/metrics",
            "/api/display",
            "/api/sensors/balcony/history",
            "/index.html",
            "/js/main.js",
            "/nope",
            "/api/nope",
        ):
            fetch(path)
        good = {"Authorization": f"Bearer {CANARIES['BALCONY_TOKEN']}", "Content-Type": "application/json"}
        bad = {"Authorization": f"Bearer {CANARIES['BALCONY_TOKEN']}x"}
        fetch("/api/sensors/balcony/readings", data=b'{"temperature_c": 3.5}', method="POST", headers=good)
        fetch("/api/sensors/balcony/readings", data=b'{"temperature_c": NaN}', method="POST", headers=good)
        fetch("/api/sensors/balcony/readings", data=b'{"temperature_c": 3.5}', method="POST", headers=bad)
        fetch(
            "/api/display",
            data=b'{"power": "maybe"}',
            method="POST",
            headers={"Authorization": f"Bearer {CANARIES['DISPLAY_TOKEN']}"},
        )
        fetch(
            "/api/display",
            data=b'{"power": "on"}',
            method="POST",
            headers={"Authorization": f"Bearer {CANARIES['DISPLAY_TOKEN'][:-1]}"},
        )
        fetch(f"/api/state?token={CANARIES['BALCONY_TOKEN']}&key=x")  # even a secret in a URL is not logged back
    finally:
        srv.stop()
        up.api.stop()
    log = srv.log()
    assert "source weather failed" in log, "the failure paths were logged (so the log was really checked)"
    browser_text = "\n".join(seen)
    assert '"weather"' in browser_text
    secrets = [*CANARIES.values(), *ISSUED.values()]
    for secret in secrets:
        for form in forms(secret):
            assert form not in browser_text, f"{secret} reached a browser (as {form!r})"
            # The query-string canary above was sent by us: the log may not echo it either.
            assert form not in log, f"{secret} reached the log (as {form!r})"
