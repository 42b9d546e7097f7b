"""The contract between a data source and the source runner (server/core/runner.py): what a source is and how it
fails. Below both: the runner and every source (sources/, sensing/) import it from here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_MAX_AGE_INTERVALS = 3  # a topic is stale once it is older than this many intervals


def stale_after_s(configured_s: float | None, interval_s: float) -> float:
    """A source's max age: the configured one, else DEFAULT_MAX_AGE_INTERVALS × its interval."""
    return configured_s or DEFAULT_MAX_AGE_INTERVALS * interval_s


class SourceError(Exception):
    """A fetch failed in a way the runner understands.

    `message` is shown to people (page, /healthz): say what to check, never include a secret.
    `retry_after_s` overrides the runner's exponential back-off when the upstream said how long to wait.
    `status` is the topic status to publish: "error" (data may come back) or "unavailable".
    """

    status = "error"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class TransientError(SourceError):
    """Network down, timeout, 5xx, garbage body: back off exponentially and try again."""


class RateLimitedError(SourceError):
    """429 or a quota: wait `retry_after_s` (required) before the next try."""


class AuthError(SourceError):
    """Bad key, revoked token, 401/403 a refresh cannot fix: a person must act; retry rarely."""

    DEFAULT_RETRY_S = 3600.0

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message, retry_after_s=retry_after_s or self.DEFAULT_RETRY_S)


class PayloadError(SourceError):
    """The upstream answered, but the payload is missing a field or has a wrong type (names the field)."""


class UnavailableError(SourceError):
    """The device or service is gone (sensor unplugged); the topic status becomes "unavailable"."""

    status = "unavailable"


class Source(Protocol):
    """What the runner needs from a source. `fetch` is blocking and runs in the executor thread pool.

    fetch() returns {topic: data} for every topic it refreshed; data must be JSON-serialisable with
    finite numbers only. (A sensor returns a Reading instead, delivered to the reading path: see runner.add.)
    It raises SourceError (or any exception, treated as a bug and logged once).
    """

    name: str  # key in /healthz "sources", e.g. "weather", "sensor:living_room"
    topics: tuple[str, ...]  # the topics it owns: marked error/stale when it fails
    interval_s: float
    max_age_s: float  # a topic older than this is stale (default 3 × interval_s)
    timeout_s: float  # a fetch running longer than this is reported as hung
    failures_before_error: int  # consecutive failures before the topic shows the error (sensors: 3)

    def fetch(self) -> Any: ...


@dataclass
class SimpleSource:
    """A Source built from a function; handy for sources with no state of their own (and tests)."""

    name: str
    func: object  # Callable[[], dict[str, dict]]
    interval_s: float
    topics: tuple[str, ...] = ()
    max_age_s: float = 0.0
    timeout_s: float = 30.0
    failures_before_error: int = 1
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.max_age_s = stale_after_s(self.max_age_s, self.interval_s)

    def fetch(self) -> dict[str, dict]:
        return self.func()  # type: ignore[operator]
