"""Strava: recent activities and this week's totals → topic `strava` (the Source the runner polls).

`python -m server.sources.strava setup` (server/sources/strava/setup_cli.py) gets the first refresh token.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from server.config import StravaConfig
from server.core.source import AuthError, RateLimitedError, stale_after_s
from server.sources.http import HttpClient, HttpResponse
from server.sources.strava.activities import build_strava_data, parse_activities, week_start
from server.sources.strava.limits import RateLimits, next_quarter_hour_s, next_utc_midnight_s
from server.sources.strava.oauth import REAUTH_MESSAGE, SCOPE, SOURCE, StravaAuth
from server.sources.strava.tokens import TOKEN_FILE_NAME, TokenStore

WEEK_PAGE_SIZE = 100
WEEK_MAX_PAGES = 3
RATE_BOUNDARY_SLACK_S = 5.0  # wait a little past the window boundary: the two clocks are not in step

log = logging.getLogger(__name__)


class StravaSource:
    """Polls GET /athlete/activities (Source protocol)."""

    name = SOURCE
    topics = (SOURCE,)
    failures_before_error = 1

    def __init__(
        self,
        config: StravaConfig,
        tz: dt.tzinfo,
        data_dir: str | os.PathLike[str],
        *,
        base_url: str | None = None,
        token_url: str | None = None,
        token_file_name: str = TOKEN_FILE_NAME,
        client: HttpClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.tz = tz
        self.base_url = (base_url or config.base_url).rstrip("/")
        self.interval_s = config.interval_s
        self.max_age_s = stale_after_s(config.max_age_s, config.interval_s)
        self.client = client or HttpClient(SOURCE, read_timeout_s=20.0, deadline_s=30.0)
        # Up to four requests per fetch (refresh, activities, retry after a 401, week pages).
        self.timeout_s = 4 * self.client.deadline_s + 5.0
        self.clock = clock
        self.rate = RateLimits()
        self.limit = max(1, config.max_activities)
        self.auth = StravaAuth(
            client_id=config.client_id,
            client_secret=config.client_secret,
            config_refresh_token=config.refresh_token,
            token_url=token_url or config.token_url,
            store=TokenStore(Path(data_dir) / token_file_name),
            client=self.client,
            clock=clock,
        )
        self.auth.on_response = lambda response: self.rate.update(response.headers, self.clock())
        self._pausing = False

    def fetch(self) -> dict[str, dict]:
        now = self.clock()
        if self.rate.daily_spent(now, reserve=3):
            wait_s = next_utc_midnight_s(now) + RATE_BOUNDARY_SLACK_S
            raise RateLimitedError(
                f"Strava's daily API limit is used up ({self.rate.describe()}); next try after 00:00 UTC",
                retry_after_s=wait_s,
            )
        if self.rate.quarter_spent(now, reserve=3):
            # Near the 15-minute limit: skip this round quietly; the last data stays (and goes stale if needed).
            if not self._pausing:
                log.info(
                    "Strava rate limit nearly used (%s); pausing until the next quarter hour", self.rate.describe()
                )
            self._pausing = True
            return {}
        self._pausing = False
        recent = parse_activities(self._get("/athlete/activities", {"per_page": self.limit}), self.tz)
        start_s = week_start(now, self.tz).timestamp()
        week = list(recent)
        if len(recent) >= self.limit and min(a.start_s for a in recent) >= start_s:
            # The page may not reach back to Monday: ask for the whole week explicitly.
            week = []
            for page in range(1, WEEK_MAX_PAGES + 1):
                params = {"after": int(start_s), "per_page": WEEK_PAGE_SIZE, "page": page}
                items = parse_activities(self._get("/athlete/activities", params), self.tz, f"week page {page}")
                week.extend(items)
                if len(items) < WEEK_PAGE_SIZE:
                    break
        return {SOURCE: build_strava_data(recent, week, self.tz, now, self.limit)}

    def _get(self, path: str, params: Mapping[str, Any]) -> Any:
        token = self.auth.access_token()
        response = self._send(path, params, token)
        if response.status == 401:
            if _missing_scope(response):
                raise AuthError(f"the Strava token lacks the {SCOPE} permission: {REAUTH_MESSAGE} (and allow it)")
            # Revoked or expired early: one refresh and one retry, then it is a person's job.
            token = self.auth.access_token(force_refresh=True, rejected=token)
            response = self._send(path, params, token)
            if response.status == 401:
                raise AuthError(REAUTH_MESSAGE)
        if response.status == 429:
            now = self.clock()
            daily = self.rate.daily_spent(now)
            wait_s = (next_utc_midnight_s(now) if daily else next_quarter_hour_s(now)) + RATE_BOUNDARY_SLACK_S
            until = "00:00 UTC" if daily else "the next quarter hour"
            raise RateLimitedError(
                f"Strava rate limit reached ({self.rate.describe()}); waiting until {until}", retry_after_s=wait_s
            )
        if response.status == 403:
            raise AuthError(
                "Strava refused access (HTTP 403): the API application may be inactive; "
                "check https://www.strava.com/settings/api"
            )
        self.client.check_status(response)
        return response.json()

    def _send(self, path: str, params: Mapping[str, Any], token: str) -> HttpResponse:
        response = self.client.request(
            "GET", f"{self.base_url}{path}", params=params, headers={"Authorization": f"Bearer {token}"}
        )
        self.rate.update(response.headers, self.clock())
        return response


def _missing_scope(response: HttpResponse) -> bool:
    body = response.error_body()
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return False
    return any(
        isinstance(e, dict) and str(e.get("field", "")).endswith("_permission") and e.get("code") == "missing"
        for e in errors
    )
