"""What every answer of ours shares: JSON errors, the security headers, small JSON bodies, bearer tokens, 404."""

from __future__ import annotations

import hmac
from typing import Any

import tornado.web

from server.core.jsonutil import dumpb

# On every answer of ours (no server banner either), and on every JSON answer; server/web/state_route.py uses them too.
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
JSON_BODY_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"}
JSON_HEADERS = {**JSON_BODY_HEADERS, **SECURITY_HEADERS}


class BaseHandler(tornado.web.RequestHandler):
    """JSON errors everywhere, security headers, no server banner."""

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def write_json(self, body: bytes | dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        for name, value in JSON_BODY_HEADERS.items():
            self.set_header(name, value)
        self.finish(body if isinstance(body, bytes) else dumpb(body))

    def has_bearer(self, token: str) -> bool:
        """Authorization: Bearer <token>, compared in constant time (a wrong token takes as long to refuse whatever
        its prefix). False also sets the 401's WWW-Authenticate header."""
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        # Header text is latin-1 in tornado: back to its raw bytes.
        given_bytes = given.strip().encode("latin-1", "replace")
        if scheme.lower() == "bearer" and hmac.compare_digest(given_bytes, token.encode("utf-8")):
            return True
        self.set_header("WWW-Authenticate", 'Bearer realm="homeboard"')
        return False

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Never a traceback or exception text to a client: just the HTTP reason.
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(dumpb({"error": self._reason}))


# A body whose answer is known before it is read (401, 403, 404, 413) is drained up to this size before the JSON
# answer, so the client reads it instead of a connection reset; anything larger is answered at once and the
# connection closed.
DRAIN_LIMIT_BYTES = 4 << 20


@tornado.web.stream_request_body
class SmallBodyHandler(BaseHandler):
    """A POST whose body is a small JSON document. Every answer is JSON, whatever the body's size.

    Subclasses set MAX_BODY_BYTES, decide in `before_body()` what can be answered from the headers alone (an
    unknown id, a bad token), and read `self.body()` in post() after `if self.answered(): return`. Tornado's
    own size limit would cut in first with a bare 400 and no body; this answers 413 with JSON instead. Answering
    while the client still sends is often lost in the connection reset that follows, so a body up to
    DRAIN_LIMIT_BYTES is read and dropped first; a larger one is answered at once and the connection closed.
    """

    MAX_BODY_BYTES = 4096

    def before_body(self) -> tuple[int, dict[str, Any]] | None:
        """(status, JSON) to answer without reading the body, or None to read it."""
        return None

    def too_large(self) -> dict[str, Any]:
        return {"error": f"body: larger than {self.MAX_BODY_BYTES} bytes"}

    def prepare(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._early: tuple[int, dict[str, Any]] | None = None  # an answer decided before the body was read
        if self.request.method != "POST":
            return
        early = self.before_body()
        length = self.request.headers.get("Content-Length")
        if early is None and length is not None and (not length.isdigit() or int(length) > self.MAX_BODY_BYTES):
            early = (413, self.too_large())
        if early is not None:
            self._answer_after_drain(early, length)

    def _answer_after_drain(self, early: tuple[int, dict[str, Any]], length: str | None) -> None:
        """The answer is decided before the body is read: read the body and drop it, then answer (answered())."""
        self._early = early
        if length is not None and (not length.isdigit() or int(length) > DRAIN_LIMIT_BYTES):
            status, body = early
            self.write_json(body, status)  # not worth reading: answer and close the connection
            return
        connection = self.request.connection
        if connection is not None and hasattr(connection, "set_max_body_size"):
            # A declared length: exactly that much is read. Chunked: data_received stops at DRAIN_LIMIT_BYTES.
            connection.set_max_body_size(int(length) if length is not None else 1 << 62)
        self._chunks.clear()

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._finished:
            return
        if self._early is not None:  # the answer is decided: drain and drop
            if self._size > DRAIN_LIMIT_BYTES:
                status, body = self._early
                self.write_json(body, status)  # a chunked body past the drain limit: answer and close
            return
        if self._size <= self.MAX_BODY_BYTES:
            self._chunks.append(chunk)
        else:  # a chunked body without a length grew too large while being read
            self._answer_after_drain((413, self.too_large()), None)

    def answered(self) -> bool:
        """In post(), first: True when the answer was decided before the body (now sent) or already sent."""
        if self._finished:
            return True
        if self._early is not None:
            status, body = self._early
            self.write_json(body, status)
            return True
        return False

    def body(self) -> bytes:
        return b"".join(self._chunks)


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)
