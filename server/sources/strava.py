"""Strava: rotating OAuth tokens kept safe on disk, recent activities and this week's totals → topic `strava`.

`python -m server.sources.strava setup` (server/sources/strava_setup.py) gets the first refresh token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.config import StravaConfig
from server.core.atomic import atomic_write_bytes, sweep_temp_files
from server.core.source import AuthError, RateLimitedError, SourceError, TransientError, stale_after_s
from server.sources.fields import Reader
from server.sources.http import HttpClient, HttpResponse, upstream_text

SOURCE = "strava"
TOKEN_FILE_NAME = "strava_token.json"  # noqa: S105 - a file name, not a secret
DEMO_TOKEN_FILE_NAME = "strava_token.demo.json"  # noqa: S105 - demo tokens never overwrite the real ones
TOKEN_FILE_VERSION = 1
REFRESH_MARGIN_S = 300.0  # refresh this long before the access token expires (clock skew, slow requests)
REAUTH_MESSAGE = "Strava needs re-authorizing: run python -m server.sources.strava setup"
NOT_SET_UP_MESSAGE = "Strava is not set up yet: run python -m server.sources.strava setup"
NOT_SET_UP_RETRY_S = 60.0  # only a local file is looked at: find the token soon after setup writes it
SCOPE = "activity:read_all"
DEFAULT_BASE_URL = "https://www.strava.com/api/v3"
DEFAULT_TOKEN_URL = "https://www.strava.com/oauth/token"  # noqa: S105 - an endpoint, not a secret
DEFAULT_AUTHORIZE_URL = "https://www.strava.com/oauth/authorize"
DEFAULT_REDIRECT_URI = "http://localhost/exchange_token"
WEEK_PAGE_SIZE = 100
WEEK_MAX_PAGES = 3
QUARTER_HOUR_S = 900.0
DAY_S = 86400.0
RATE_BOUNDARY_SLACK_S = 5.0  # wait a little past the window boundary: the two clocks are not in step

log = logging.getLogger(__name__)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- token file


@dataclass
class TokenState:
    """What strava_token.json holds. `config_sha256` is the hash of the config's refresh token this state was
    last reconciled with: if the config's token changes later, the person put a newer one there on purpose."""

    refresh_token: str
    access_token: str | None = None
    expires_at: float = 0.0
    config_sha256: str | None = None
    updated_at: float = 0.0
    scope: str | None = None

    def to_json(self) -> bytes:
        doc = {
            "version": TOKEN_FILE_VERSION,
            "refresh_token": self.refresh_token,
            "access_token": self.access_token,
            "expires_at": self.expires_at,
            "config_sha256": self.config_sha256,
            "updated_at": self.updated_at,
            "scope": self.scope,
        }
        return json.dumps(doc, indent=1).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> TokenState:
        """Raises ValueError naming the problem."""
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != TOKEN_FILE_VERSION:
            raise ValueError("unknown format")
        refresh = doc.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            raise ValueError("refresh_token missing")
        access = doc.get("access_token")
        expires_at = doc.get("expires_at", 0)
        if not isinstance(expires_at, int | float) or isinstance(expires_at, bool):
            raise ValueError("expires_at is not a number")
        sha = doc.get("config_sha256")
        return cls(
            refresh_token=refresh,
            access_token=access if isinstance(access, str) and access else None,
            expires_at=float(expires_at),
            config_sha256=sha if isinstance(sha, str) else None,
            updated_at=float(doc.get("updated_at") or 0),
            scope=doc.get("scope") if isinstance(doc.get("scope"), str) else None,
        )


class TokenStore:
    """strava_token.json in data_dir, written with server.atomic (temp, fsync, rename, fsync dir; mode 0600)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> TokenState | None:
        """The stored state, or None when there is none or it cannot be used (logged)."""
        sweep_temp_files(self.path.parent)
        try:
            raw = self.path.read_bytes()
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except FileNotFoundError:
            return None
        except OSError as err:
            log.error("cannot read the Strava token file %s: %s", self.path, err.strerror)
            return None
        if mode & 0o077:
            log.warning("%s was readable by others (mode %04o); setting it to 0600", self.path, mode)
            try:
                os.chmod(self.path, 0o600)
            except OSError:
                pass
        try:
            return TokenState.from_json(raw)
        except ValueError as err:
            log.error("ignoring the damaged Strava token file %s: %s", self.path, err)
            return None

    def save(self, state: TokenState) -> None:
        """Raises OSError when the file cannot be written durably."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the tokens' folder is private
        atomic_write_bytes(self.path, state.to_json(), mode=0o600)


# ---------------------------------------------------------------- OAuth


def _token_error(response: HttpResponse) -> SourceError:
    """A token-endpoint refusal in words a person can act on."""
    body = response.error_body()
    errors = body.get("errors") if isinstance(body, dict) else None
    fields = {e.get("field") for e in errors if isinstance(e, dict)} if isinstance(errors, list) else set()
    if fields & {"client_id", "client_secret"}:
        return AuthError("Strava rejected the app credentials: check sources.strava.client_id and client_secret")
    return AuthError(REAUTH_MESSAGE)


def parse_token_response(payload: Any, now_s: float) -> tuple[str, str, float]:
    """(access_token, refresh_token, expires_at) from a token-endpoint answer; raises PayloadError."""
    r = Reader(SOURCE)
    if not isinstance(payload, dict):
        raise r.error("token answer", "expected an object")
    access = payload.get("access_token")
    refresh = payload.get("refresh_token")
    if not isinstance(access, str) or not access:
        raise r.error("token answer.access_token", "missing")
    if not isinstance(refresh, str) or not refresh:
        raise r.error("token answer.refresh_token", "missing")
    expires_at = r.number(payload, "expires_at", "token answer", optional=True)
    if expires_at is None:
        expires_in = r.number(payload, "expires_in", "token answer")
        expires_at = now_s + expires_in
    return access, refresh, expires_at


class StravaAuth:
    """Keeps a valid access token. One refresh at a time (a lock); a rotated refresh token is on disk before the
    new access token is used, because Strava invalidates the old refresh token the moment it issues a new one."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        config_refresh_token: str | None,
        token_url: str,
        store: TokenStore,
        client: HttpClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_url = token_url
        self.store = store
        self.client = client
        self.clock = clock
        self._lock = threading.Lock()
        self._dirty = False  # in-memory state newer than the file (a save failed)
        self.client.add_secret(client_secret)
        self.client.add_secret(config_refresh_token)
        self.state: TokenState | None = self._initial_state(config_refresh_token)
        self.on_response: Callable[[HttpResponse], None] | None = None

    def _initial_state(self, config_token: str | None) -> TokenState | None:
        stored = self.store.load()
        if config_token is None:
            # No token in the config: the file `setup` writes is the only one (None until it has run).
            if stored is not None:
                self.client.add_secret(stored.refresh_token)
                self.client.add_secret(stored.access_token)
            return stored
        config_sha = _sha256(config_token)
        if stored is not None:
            self.client.add_secret(stored.refresh_token)
            self.client.add_secret(stored.access_token)
            if stored.refresh_token == config_token or stored.config_sha256 in (None, config_sha):
                # The file descends from this config token (or came from `setup`): it is the newer one.
                if stored.config_sha256 != config_sha:
                    stored.config_sha256 = config_sha
                    self._dirty = True
                return stored
            log.info("using the Strava refresh token from the config: it changed since %s was written", self.store.path)
        return TokenState(refresh_token=config_token, config_sha256=config_sha)

    def access_token(self, *, force_refresh: bool = False, rejected: str | None = None) -> str:
        """A usable access token, refreshing it first when it is (nearly) expired or was `rejected` with a 401.

        Raises AuthError (re-authorize), TransientError (network, or the new token could not be saved yet).
        """
        with self._lock:
            if self._dirty:
                self._persist()
            if self.state is None:
                self.state = self._initial_state(None)
            state = self.state
            if state is None:
                raise AuthError(NOT_SET_UP_MESSAGE, retry_after_s=NOT_SET_UP_RETRY_S)
            if rejected is not None and state.access_token and state.access_token != rejected:
                return state.access_token  # another caller refreshed while we waited for the lock
            if not force_refresh and state.access_token and state.expires_at - self.clock() > REFRESH_MARGIN_S:
                return state.access_token
            return self._refresh(state)

    def _refresh(self, current: TokenState) -> str:
        """POST grant_type=refresh_token with `current`'s token; save the answer; return the new access token."""
        form = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": current.refresh_token,
        }
        response = self.client.request("POST", self.token_url, data=form)
        if self.on_response is not None:
            self.on_response(response)
        if response.status in (400, 401):
            raise _token_error(response)
        self.client.check_status(response, auth_hint="check sources.strava.client_id and client_secret")
        access, refresh, expires_at = parse_token_response(response.json(), self.clock())
        self.client.add_secret(access)
        self.client.add_secret(refresh)
        rotated = refresh != current.refresh_token
        self.state = TokenState(
            refresh_token=refresh,
            access_token=access,
            expires_at=expires_at,
            config_sha256=current.config_sha256,
            updated_at=self.clock(),
            scope=current.scope,
        )
        self._dirty = True
        self._persist()
        if rotated:
            log.info("Strava issued a new refresh token; saved to %s", self.store.path)
        return access

    def _persist(self) -> None:
        if self.state is None:  # nothing to save before setup has run
            self._dirty = False
            return
        try:
            self.store.save(self.state)
        except OSError as err:
            # Keep the new token in memory (the old one is already dead) and retry the save before any use.
            raise TransientError(
                f"could not save the new Strava token to {self.store.path} ({err.strerror}); will retry"
            ) from None
        self._dirty = False


# ---------------------------------------------------------------- rate limits


def _pair(value: str | None) -> tuple[int, int] | None:
    """'100,1000' → (100, 1000); None when absent or malformed."""
    if not value:
        return None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def next_quarter_hour_s(now_s: float) -> float:
    """Seconds until the next :00/:15/:30/:45 (Strava's 15-minute windows)."""
    return (math.floor(now_s / QUARTER_HOUR_S) + 1) * QUARTER_HOUR_S - now_s


def next_utc_midnight_s(now_s: float) -> float:
    return (math.floor(now_s / DAY_S) + 1) * DAY_S - now_s


@dataclass
class RateLimits:
    """The last X-RateLimit-* / X-ReadRateLimit-* figures ("15min,daily") and when they were seen."""

    overall_limit: tuple[int, int] | None = None
    overall_usage: tuple[int, int] | None = None
    read_limit: tuple[int, int] | None = None
    read_usage: tuple[int, int] | None = None
    observed_s: float | None = None

    def update(self, headers: Mapping[str, str], now_s: float) -> None:
        seen = False
        for attr, name in (
            ("overall_limit", "X-RateLimit-Limit"),
            ("overall_usage", "X-RateLimit-Usage"),
            ("read_limit", "X-ReadRateLimit-Limit"),
            ("read_usage", "X-ReadRateLimit-Usage"),
        ):
            value = _pair(headers.get(name))
            if value is not None:
                setattr(self, attr, value)
                seen = True
        if seen:
            self.observed_s = now_s

    def _pairs(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        pairs = []
        if self.overall_limit and self.overall_usage:
            pairs.append((self.overall_limit, self.overall_usage))
        if self.read_limit and self.read_usage:
            pairs.append((self.read_limit, self.read_usage))
        return pairs

    def daily_spent(self, now_s: float, reserve: int = 0) -> bool:
        if self.observed_s is None or math.floor(self.observed_s / DAY_S) != math.floor(now_s / DAY_S):
            return False
        return any(usage[1] >= limit[1] - reserve for limit, usage in self._pairs())

    def quarter_spent(self, now_s: float, reserve: int = 0) -> bool:
        if self.observed_s is None:
            return False
        if math.floor(self.observed_s / QUARTER_HOUR_S) != math.floor(now_s / QUARTER_HOUR_S):
            return False
        return any(usage[0] >= limit[0] - reserve for limit, usage in self._pairs())

    def describe(self) -> str:
        parts = []
        if self.read_limit and self.read_usage:
            parts.append(
                f"read {self.read_usage[0]}/{self.read_limit[0]} per 15 min, "
                f"{self.read_usage[1]}/{self.read_limit[1]} a day"
            )
        if self.overall_limit and self.overall_usage:
            parts.append(
                f"all {self.overall_usage[0]}/{self.overall_limit[0]} per 15 min, "
                f"{self.overall_usage[1]}/{self.overall_limit[1]} a day"
            )
        return "; ".join(parts) or "no figures"


# ---------------------------------------------------------------- parsing (pure)


def week_start(now_s: float, tz: dt.tzinfo) -> dt.datetime:
    """Monday 00:00 local time of the week containing now."""
    local = dt.datetime.fromtimestamp(now_s, tz)
    monday = local.date() - dt.timedelta(days=local.weekday())
    return dt.datetime(monday.year, monday.month, monday.day, tzinfo=tz)


def _utc_epoch(text: str) -> float:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if value.tzinfo is None:
        raise ValueError("no offset")
    return value.timestamp()


@dataclass
class Activity:
    start_s: float
    distance_m: float
    moving_time_s: int
    sport_type: str
    data: dict[str, Any] = field(repr=False)


def parse_activity(item: Any, path: str, tz: dt.tzinfo) -> Activity:
    """One SummaryActivity → Activity; raises PayloadError naming the field."""
    r = Reader(SOURCE)
    if not isinstance(item, dict):
        raise r.error(path, "expected an object")
    # start_date is real UTC; start_date_local ends in "Z" too but is wall-clock time: never use it as UTC.
    start_text = r.text(item, "start_date", path)
    try:
        start_s = r.check_epoch(_utc_epoch(start_text), f"{path}.start_date")
    except (ValueError, OverflowError):
        raise r.error(f"{path}.start_date", f'expected an ISO time, got "{upstream_text(start_text, 30)}"') from None
    distance_m = r.number(item, "distance", path, within=(0.0, 1e7))  # up to 10,000 km
    moving_time_s = r.integer(item, "moving_time", path, within=(0.0, 1e7))
    sport_type = r.text(item, "sport_type", path, optional=True) or r.text(item, "type", path)
    heartrate = r.number(item, "average_heartrate", path, optional=True, within=(0.0, 300.0))
    data = {
        "id": r.integer(item, "id", path, within=(1.0, 2.0**63)),
        "name": r.text(item, "name", path, optional=True) or "",  # user text, HTML and all: the page shows text
        "sport_type": sport_type,
        "distance_km": distance_m / 1000.0,  # as received: the page rounds once, for display
        "moving_time_s": moving_time_s,
        "elevation_m": r.number(item, "total_elevation_gain", path, optional=True, within=(0.0, 1e5)),
        "start": dt.datetime.fromtimestamp(start_s, tz).isoformat(timespec="seconds"),
        "average_heartrate": heartrate,
    }
    return Activity(start_s, distance_m, moving_time_s, sport_type, data)


def parse_activities(payload: Any, tz: dt.tzinfo, path: str = "activities") -> list[Activity]:
    r = Reader(SOURCE)
    if not isinstance(payload, list):
        raise r.error(path, "expected a list of activities")
    return [parse_activity(item, f"{path}[{i}]", tz) for i, item in enumerate(payload)]


def week_totals(activities: Sequence[Activity], start_s: float) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(totals, totals by sport_type) of activities from `start_s` on; metres summed, never rounded here."""
    seen: set[Any] = set()
    total_m, total_s, count = 0.0, 0, 0
    by_sport: dict[str, list[float]] = {}
    for activity in activities:
        if activity.start_s < start_s or activity.data["id"] in seen:
            continue
        seen.add(activity.data["id"])
        total_m += activity.distance_m
        total_s += activity.moving_time_s
        count += 1
        sums = by_sport.setdefault(activity.sport_type, [0.0, 0, 0])
        sums[0] += activity.distance_m
        sums[1] += activity.moving_time_s
        sums[2] += 1
    totals = {"distance_km": total_m / 1000.0, "moving_time_s": total_s, "count": count}
    sports = {
        sport: {"distance_km": m / 1000.0, "moving_time_s": int(s), "count": int(n)}
        for sport, (m, s, n) in sorted(by_sport.items())
    }
    return totals, sports


def build_strava_data(
    recent: Sequence[Activity], week: Sequence[Activity], tz: dt.tzinfo, now_s: float, limit: int
) -> dict[str, Any]:
    """Topic `strava` data: newest first (sorted here: Strava's order flips with `after`)."""
    start = week_start(now_s, tz)
    newest = sorted(recent, key=lambda a: a.start_s, reverse=True)[:limit]
    totals, by_sport = week_totals(week, start.timestamp())
    return {
        "activities": [a.data for a in newest],
        "week": totals,
        "week_by_sport": by_sport,
        "week_start": start.isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------- the source


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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "setup":
        print("usage: python -m server.sources.strava setup [--help]", file=sys.stderr)
        return 2
    from server.sources.strava_setup import setup  # the command only: the poller does not carry it

    return setup(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
