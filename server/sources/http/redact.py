"""Secrets never leave in a message or a log line: URLs, free text and urllib3's own log lines are redacted."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

# Query parameters and form fields whose values are secrets wherever they appear (URLs, bodies, messages).
SECRET_PARAMS = frozenset(
    {
        "key",
        "api_key",
        "apikey",
        "appid",
        "access_token",
        "refresh_token",
        "client_secret",
        "code",
        "token",
        "password",
        "secret",
    }
)
REDACTED = "REDACTED"
_SECRET_PARAM_RE = re.compile(
    r"(?i)\b(" + "|".join(sorted(SECRET_PARAMS, key=len, reverse=True)) + r")=[^&\s'\"<>;,)]*"
)
_BEARER_RE = re.compile(r"(?i)\b(Bearer)\s+[A-Za-z0-9._~+/=-]+")


def redact_url(url: str) -> str:
    """The URL with secret query values and any userinfo password replaced by REDACTED; never raises."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{REDACTED}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, REDACTED if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe=":/,", quote_via=quote
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return redact_text(url)


def redact_text(text: str) -> str:
    """Secret-looking `name=value` pairs and bearer tokens in free text replaced by REDACTED."""
    text = _SECRET_PARAM_RE.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    return _BEARER_RE.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def host_of(url: str) -> str:
    """`host[:port]` of a URL, for messages (never the path or query, which may hold a key)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "?"


def strip_secret_params(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in SECRET_PARAMS]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs), parts.fragment))


LOGGED_SECRETS: set[str] = set()  # every HttpClient's secrets, for urllib3's own log lines (not ours to format)


def _scrub_logged(text: str) -> str:
    for secret in sorted(LOGGED_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class _RedactingFilter(logging.Filter):
    """urllib3 logs full request URLs at DEBUG ("GET /v1/forecast.json?key=..."); scrub them before any handler.

    Also every value a client registered with add_secret(): a calendar's private link is a token in the path.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to break; let logging report it
            return True
        cleaned = _scrub_logged(redact_text(message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = _RedactingFilter()
for _name in ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection", "urllib3.response"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _RedactingFilter) for f in _logger.filters):
        _logger.addFilter(_FILTER)
