"""A complete upstream answer (status, headers, the whole capped body) and what is read from it."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import time
from dataclasses import dataclass, field
from typing import Any

from requests.structures import CaseInsensitiveDict

from server.core.source import PayloadError, TransientError
from server.sources.http.redact import host_of


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonFinite(name)


@dataclass
class HttpResponse:
    """A complete answer: status, headers and the whole (capped) body."""

    status: int
    reason: str
    headers: CaseInsensitiveDict[str]
    body: bytes
    url: str  # redacted
    elapsed_s: float
    source: str = ""
    raw_url: str = field(default="", repr=False)  # unredacted, for urljoin of a relative Location; never shown

    @property
    def host(self) -> str:
        return host_of(self.url)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def looks_like_html(self) -> bool:
        """For a body that is not JSON: is it an HTML (or XML) page, by its type or its first bytes?"""
        first = self.body.lstrip()[:1]
        if first in (b"{", b"["):
            return False  # JSON that went wrong (cut off), whatever the Content-Type claims
        return first == b"<" or "html" in self.headers.get("Content-Type", "").lower()

    def json(self) -> Any:
        """The body as JSON. Raises TransientError (empty, HTML page, cut off, garbage) or PayloadError (NaN)."""
        where = f"{self.source}: {self.host}" if self.source else self.host
        if not self.body.strip():
            raise TransientError(f"{where} sent an empty answer (HTTP {self.status})")
        try:
            return json.loads(self.body, parse_constant=_reject_constant)
        except _NonFinite as err:
            raise PayloadError(f"{where} sent {err} in its JSON, which is not a number") from None
        except (ValueError, UnicodeDecodeError) as err:
            if self.looks_like_html():
                raise TransientError(
                    f"{where} sent an HTML page instead of JSON (HTTP {self.status}; a proxy, captive portal or "
                    "maintenance page?)"
                ) from None
            position = getattr(err, "pos", None)
            ended_early = getattr(err, "msg", "").startswith("Unterminated string")
            if ended_early or (position is not None and position >= len(self.body.rstrip()) - 1):
                raise TransientError(f"{where} sent JSON that was cut off after {len(self.body)} bytes") from None
            raise TransientError(f"{where} sent a body that is not valid JSON ({len(self.body)} bytes)") from None

    def error_body(self) -> Any:
        """The body parsed as JSON if it is JSON (error bodies), else None; never raises."""
        try:
            return json.loads(self.body, parse_constant=_reject_constant)
        except ValueError:
            return None


def parse_retry_after(value: str | None, now_s: float | None = None, *, max_s: float = 86400.0) -> float | None:
    """Retry-After as seconds to wait: delta-seconds or an HTTP date; None when absent or unreadable.

    Clamped to [1, max_s] so a hostile or broken header can neither spin us nor stop polling for a year.
    """
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(int(text))
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = when.timestamp() - (time.time() if now_s is None else now_s)
    return min(max(seconds, 1.0), max_s)


def upstream_text(value: Any, limit: int = 200) -> str:
    """A short, single-line rendering of a string an upstream sent (for error messages)."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
