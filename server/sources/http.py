"""The one HTTP policy for every poller: timeouts, a deadline, a size cap, safe redirects, redaction, error mapping."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urljoin, urlsplit, urlunsplit

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
from requests.structures import CaseInsensitiveDict

from server import __version__
from server.sources.base import AuthError, PayloadError, RateLimitedError, SourceError, TransientError

log = logging.getLogger(__name__)

USER_AGENT = f"Homeboard/{__version__} (+wall dashboard)"

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

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Asked once an answer's status and headers are in (never for a redirect that is followed): returns where the
# body's chunks go instead of into HttpResponse.body, or None to keep the body as usual.
BodySink = Callable[[int, Mapping[str, str]], Callable[[bytes], object] | None]


# ---------------------------------------------------------------- redaction


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


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, (parts.hostname or "").lower(), parts.port or default_port)


def _strip_secret_params(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in SECRET_PARAMS]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs), parts.fragment))


_LOGGED_SECRETS: set[str] = set()  # every HttpClient's secrets, for urllib3's own log lines (not ours to format)


def _scrub_logged(text: str) -> str:
    for secret in sorted(_LOGGED_SECRETS, key=len, reverse=True):
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


# ---------------------------------------------------------------- deadline watchdog
# A read timeout bounds each recv(), not the whole exchange: a server dripping one byte every few seconds would
# hold a worker thread for ever. The watchdog shuts the socket down when the overall deadline passes, which wakes
# the blocked recv() in the worker thread; the request then fails and is reported as "no complete answer in N s".

_current = threading.local()


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _current.deadline = None

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: nothing left to wake


def _watch_current(sock: socket.socket | None) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def getresponse(self) -> Any:  # type: ignore[override]
        _watch_current(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def getresponse(self) -> Any:  # type: ignore[override]
        _watch_current(self.sock)
        return super().getresponse()


class _WatchedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


# ---------------------------------------------------------------- responses


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


# ---------------------------------------------------------------- the client


class HttpClient:
    """One requests.Session per source, with the project's HTTP policy. Not shared between sources.

    Every error raised is a server.sources.base.SourceError whose message names the host and never contains a
    secret: URLs are redacted, and every value passed to add_secret() (API keys, tokens) is scrubbed as well.
    """

    def __init__(
        self,
        source: str,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 15.0,
        deadline_s: float = 30.0,
        max_body_bytes: int = 2_000_000,
        max_redirects: int = 3,
        default_rate_limit_wait_s: float = 60.0,
        secrets: Iterable[str | None] = (),
    ) -> None:
        self.source = source
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.deadline_s = deadline_s
        self.max_body_bytes = max_body_bytes
        self.max_redirects = max_redirects
        self.default_rate_limit_wait_s = default_rate_limit_wait_s
        self._secrets: set[str] = set()
        for value in secrets:
            self.add_secret(value)
        self.session = requests.Session()
        # trust_env=False: no proxy variables and no ~/.netrc. .netrc credentials would be re-attached to a
        # redirect target by requests' rebuild_auth, and an appliance has no business picking up a stray proxy.
        self.session.trust_env = False
        self.session.verify = True
        adapter = _WatchedAdapter(max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})

    # -- secrets

    def add_secret(self, value: str | None) -> None:
        """Scrub this value (and its URL-encoded forms) from every message and log line this client writes."""
        if not value or len(value) < 4:  # a 1-3 character "secret" would shred ordinary words
            return
        forms = {value, quote(value, safe=""), quote_plus(value), quote(value, safe="/:@")}
        self._secrets.update(forms)
        _LOGGED_SECRETS.update(forms)

    def scrub(self, text: str) -> str:
        text = redact_text(text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def close(self) -> None:
        self.session.close()

    # -- requests

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        max_body_bytes: int | None = None,
        sink: BodySink | None = None,
    ) -> HttpResponse:
        """Send one request and read the whole answer, whatever its status.

        With `sink`, a body it takes goes chunk by chunk to the writer it returned (the response's body is then
        empty), so a big download never sits in memory whole; the size cap and the deadline apply the same, and
        an error the writer raises ends the download and reaches the caller as it is.

        Raises TransientError when no complete answer arrived: connection refused, DNS, TLS, a timeout, the
        overall deadline, a body over the size cap, a cut-off body, too many or unsafe redirects.
        """
        cap = self.max_body_bytes if max_body_bytes is None else max_body_bytes
        method = method.upper()
        send_headers = dict(headers or {})
        first_origin = _origin(url)
        current_url, current_params = url, params
        started = time.monotonic()
        with _Deadline(self.deadline_s) as deadline:
            for hop in range(self.max_redirects + 1):
                response = self._send_once(
                    method,
                    url=current_url,
                    params=current_params,
                    data=data,
                    headers=send_headers,
                    cap=cap,
                    deadline=deadline,
                    sink=sink,
                )
                location = response.headers.get("Location")
                if response.status not in REDIRECT_STATUSES or not location:
                    response.elapsed_s = time.monotonic() - started
                    log.debug(
                        "%s: %s %s -> %d (%d bytes, %.0f ms)",
                        self.source,
                        method,
                        self.scrub(response.url),
                        response.status,
                        len(response.body),
                        response.elapsed_s * 1000,
                    )
                    return response
                if hop == self.max_redirects:
                    break
                if method != "GET":
                    # A POST body holds secrets (client_secret, refresh_token): never replay it anywhere.
                    raise TransientError(
                        f"{self.source}: {host_of(current_url)} redirected a {method} to "
                        f"{host_of(location)}; not following (check the configured URL)"
                    )
                next_url = urljoin(response.raw_url, location)
                next_origin = _origin(next_url)
                if next_origin[0] not in ("http", "https"):
                    raise TransientError(f"{self.source}: {host_of(current_url)} redirected to a non-HTTP URL")
                if first_origin[0] == "https" and next_origin[0] != "https":
                    raise TransientError(
                        f"{self.source}: {host_of(current_url)} redirected from https to plain http; refusing"
                    )
                if next_origin != first_origin:
                    # Another host gets neither our Authorization header nor our API key (query parameters).
                    send_headers = {k: v for k, v in send_headers.items() if k.lower() != "authorization"}
                    next_url = _strip_secret_params(next_url)
                log.debug("%s: redirected to %s", self.source, self.scrub(redact_url(next_url)))
                current_url, current_params = next_url, None
        raise TransientError(f"{self.source}: more than {self.max_redirects} redirects from {host_of(url)}")

    def _send_once(
        self,
        method: str,
        *,
        url: str,
        params: Mapping[str, Any] | None,
        data: Mapping[str, Any] | None,
        headers: Mapping[str, str],
        cap: int,
        deadline: _Deadline,
        sink: BodySink | None = None,
    ) -> HttpResponse:
        host = host_of(url)
        prefix = f"{self.source}: "
        try:
            resp = self.session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=(self.connect_timeout_s, self.read_timeout_s),
                stream=True,
                allow_redirects=False,
            )
        except requests.RequestException as err:
            raise self._transport_error(err, host, deadline) from None
        try:
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > cap:
                raise TransientError(f"{prefix}{host} sent {int(declared)} bytes; the limit is {cap} bytes")
            chunks: list[bytes] = []
            redirect = resp.status_code in REDIRECT_STATUSES and bool(resp.headers.get("Location"))
            write = sink(resp.status_code, resp.headers) if sink is not None and not redirect else None
            total = 0
            try:
                for chunk in resp.iter_content(chunk_size=65536):
                    total += len(chunk)
                    if total > cap:  # counted after decompression, so a gzip bomb is capped too
                        raise TransientError(f"{prefix}{host} sent more than {cap} bytes; giving up")
                    if write is None:
                        chunks.append(chunk)
                    else:
                        write(chunk)
            except requests.RequestException as err:
                raise self._transport_error(err, host, deadline) from None
            if deadline.expired:
                # A body without Content-Length ends at EOF: a shut-down socket looks like a complete answer.
                self.session.close()
                raise TransientError(f"{prefix}no complete answer from {host} within {deadline.seconds:g} s")
        finally:
            resp.close()
        result = HttpResponse(
            status=resp.status_code,
            reason=resp.reason or "",
            headers=resp.headers,
            body=b"".join(chunks),
            url=self.scrub(redact_url(resp.url)),
            elapsed_s=0.0,
            source=self.source,
            raw_url=resp.url,
        )
        return result

    def _transport_error(self, err: requests.RequestException, host: str, deadline: _Deadline) -> TransientError:
        prefix = f"{self.source}: "
        if deadline.expired:
            # Sockets shut down by the watchdog may sit in the pool; start afresh next time.
            self.session.close()
            return TransientError(f"{prefix}no complete answer from {host} within {deadline.seconds:g} s")
        if isinstance(err, requests.exceptions.ConnectTimeout):
            return TransientError(f"{prefix}could not connect to {host} within {self.connect_timeout_s:g} s")
        if isinstance(err, requests.exceptions.SSLError):
            return TransientError(f"{prefix}TLS check failed for {host} (certificate not trusted or wrong host)")
        if isinstance(err, requests.exceptions.ReadTimeout) or _caused_by(err, TimeoutError):
            return TransientError(f"{prefix}{host} did not answer within {self.read_timeout_s:g} s")
        if isinstance(err, requests.exceptions.ChunkedEncodingError):
            return TransientError(f"{prefix}the answer from {host} was cut off")
        if isinstance(err, requests.exceptions.ContentDecodingError):
            return TransientError(f"{prefix}the answer from {host} could not be decompressed")
        if isinstance(err, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
            return TransientError(f"{prefix}the configured URL is not valid (host {host})")
        if isinstance(err, requests.exceptions.ConnectionError):
            if _caused_by(err, ConnectionRefusedError):
                return TransientError(f"{prefix}cannot connect to {host}: connection refused")
            if _caused_by(err, socket.gaierror) or "NameResolution" in repr(err):
                return TransientError(f"{prefix}cannot resolve {host} (DNS or network down?)")
            if _caused_by(err, ConnectionResetError):
                return TransientError(f"{prefix}{host} reset the connection")
            return TransientError(f"{prefix}{host} closed the connection without a complete answer")
        return TransientError(f"{prefix}request to {host} failed ({type(err).__name__})")

    # -- status mapping

    def check_status(self, response: HttpResponse, *, auth_hint: str = "check the API key") -> None:
        """Map a non-2xx answer onto the SourceError vocabulary; return quietly on 2xx."""
        if response.ok:
            return
        where = f"{self.source}: {response.host}"
        status_text = f"HTTP {response.status} {response.reason}".rstrip()
        if response.status == 429:
            wait_s = parse_retry_after(response.headers.get("Retry-After")) or self.default_rate_limit_wait_s
            message = f"{where} is rate limiting us ({status_text}); waiting {wait_s:.0f} s"
            raise RateLimitedError(message, retry_after_s=wait_s)
        if response.status in (401, 403):
            raise AuthError(f"{where} refused the credentials ({status_text}): {auth_hint}")
        if response.status >= 500:
            wait_s = parse_retry_after(response.headers.get("Retry-After"))
            raise TransientError(f"{where} answered {status_text}", retry_after_s=wait_s)
        if response.status in REDIRECT_STATUSES:
            raise TransientError(f"{where} answered {status_text} without a usable Location")
        raise TransientError(f"{where} answered {status_text}")

    def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth_hint: str = "check the API key",
    ) -> tuple[Any, HttpResponse]:
        """GET, check the status, parse JSON. Returns (payload, response)."""
        response = self.request("GET", url, params=params, headers=headers)
        self.check_status(response, auth_hint=auth_hint)
        return response.json(), response

    def safe_error(self, err: SourceError) -> SourceError:
        """The same error with its message scrubbed once more (for messages built from upstream text)."""
        err.message = self.scrub(err.message)
        err.args = (err.message,)
        return err


def _caused_by(err: BaseException, *types: type[BaseException]) -> bool:
    seen: set[int] = set()
    stack: list[BaseException | None] = [err]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, types):
            return True
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        stack.extend(e for e in linked if isinstance(e, BaseException))
    return False


def upstream_text(value: Any, limit: int = 200) -> str:
    """A short, single-line rendering of a string an upstream sent (for error messages)."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
