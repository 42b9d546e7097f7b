"""The one HTTP policy for every poller: timeouts, a deadline, a size cap, safe redirects, redaction, error mapping."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, urljoin, urlsplit

import requests
import requests.adapters

from server import __version__
from server.core.source import AuthError, RateLimitedError, SourceError, TransientError
from server.sources.http.deadline import Deadline, WatchedAdapter
from server.sources.http.redact import LOGGED_SECRETS, REDACTED, host_of, redact_text, redact_url, strip_secret_params
from server.sources.http.response import HttpResponse, parse_retry_after

log = logging.getLogger(__name__)

USER_AGENT = f"Homeboard/{__version__} (+wall dashboard)"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Asked once an answer's status and headers are in (never for a redirect that is followed): returns where the
# body's chunks go instead of into HttpResponse.body, or None to keep the body as usual.
BodySink = Callable[[int, Mapping[str, str]], Callable[[bytes], object] | None]


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, (parts.hostname or "").lower(), parts.port or default_port)


class HttpClient:
    """One requests.Session per source, with the project's HTTP policy. Not shared between sources.

    Every error raised is a server.core.source.SourceError whose message names the host and never contains a
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
        adapter = WatchedAdapter(max_retries=0)
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
        LOGGED_SECRETS.update(forms)

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
        with Deadline(self.deadline_s) as deadline:
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
                    next_url = strip_secret_params(next_url)
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
        deadline: Deadline,
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

    def _transport_error(self, err: requests.RequestException, host: str, deadline: Deadline) -> TransientError:
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
