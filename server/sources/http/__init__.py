"""The one HTTP policy for every poller: client.py (HttpClient: timeouts, size cap, safe redirects, error mapping),
deadline.py (the whole exchange's deadline), response.py (HttpResponse, Retry-After), redact.py (no secret in a
message or a log line)."""

from server.sources.http.client import USER_AGENT, HttpClient
from server.sources.http.redact import host_of, redact_text, redact_url
from server.sources.http.response import HttpResponse, parse_retry_after, upstream_text

__all__ = [
    "USER_AGENT",
    "HttpClient",
    "HttpResponse",
    "host_of",
    "parse_retry_after",
    "redact_text",
    "redact_url",
    "upstream_text",
]
