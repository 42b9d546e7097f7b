"""HTTP handlers of the core: the page, /api/state, /api/config, /healthz, /metrics."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

import tornado.web

from server.core.jsonutil import dumpb
from server.core.metrics import render_metrics

if TYPE_CHECKING:
    from server.homeboard import Homeboard

# Everything the page needs is served from here; nothing inline, nothing from elsewhere.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'none'"
)


# On every answer of ours (no server banner either), and on every JSON answer; server/core/state_route.py uses them too.
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


class StateHandler(BaseHandler):
    def initialize(self, board: Homeboard) -> None:
        self.board = board

    def get(self) -> None:
        self.write_json(self.board.hub.state_body())


class ConfigHandler(BaseHandler):
    """What the page needs to know about itself; nothing secret lives in these sections."""

    def initialize(self, board: Homeboard) -> None:
        self.board = board

    def get(self) -> None:
        cfg = self.board.config
        self.write_json(
            {
                "version": self.board.version,
                "timezone": cfg.timezone,
                "demo": cfg.demo,
                "page": dataclasses.asdict(cfg.page),
                # Names and colours only: a calendar's address is a secret and never leaves the server.
                "calendars": [
                    {"name": c.name, "color": c.color}
                    for c in (cfg.sources.calendar.calendars if cfg.sources.calendar else ())
                ],
                # Names for sensors still waiting for their first reading (a reading carries its own name).
                "sensor_names": {sensor_id: entry.name for sensor_id, entry in self.board.readings.sensors.items()},
            }
        )


class HealthHandler(BaseHandler):
    def initialize(self, board: Homeboard) -> None:
        self.board = board

    def get(self) -> None:
        board = self.board
        sources = board.runner.health_report()
        body: dict[str, Any] = {
            "status": "ok",
            "version": board.version,
            "uptime_s": round(time.monotonic() - board.started_monotonic, 1),
            "clients": len(board.hub.clients),
            "sources": sources,
        }
        degraded = any(v["failing"] for v in sources.values())
        for name, fn in board.health_sections().items():
            try:
                extra = fn()
            except Exception as err:  # a broken health probe is itself a degraded state, not a 500
                extra = {"status": "degraded", "error": f"health check failed: {type(err).__name__}"}
            body[name] = extra
            if isinstance(extra, dict) and extra.get("status") not in (None, "ok"):
                degraded = True
        if degraded:
            body["status"] = "degraded"
        self.write_json(body)


class MetricsHandler(BaseHandler):
    def initialize(self, board: Homeboard) -> None:
        self.board = board

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(render_metrics(self.board))


# The files the page loads, by folder of kiosk/ ("" is the top) and extension. Everything else under kiosk/
# (the launcher and its Python, READMEs, dotfiles, editor backups) is 404: the web root is not a file share.
PAGE_FILES: dict[str, frozenset[str]] = {
    "": frozenset({".html"}),
    "css": frozenset({".css"}),
    "js": frozenset({".js", ".mjs"}),
    "icons": frozenset({".svg"}),
    "fonts": frozenset({".woff2", ".woff", ".ttf", ".otf"}),
}


def is_page_file(url_path: str) -> bool:
    """Is kiosk/<url_path> one of the page's own files? "" (the page itself, index.html) is."""
    if url_path == "":
        return True
    parts = url_path.split("/")
    if any(part.startswith(".") or part == "" for part in parts):
        return False  # dotfiles and dot-folders (.git, .env, ..), and empty segments
    folder = parts[0] if len(parts) > 1 else ""
    name = parts[-1]
    extension = name[name.rfind(".") :].lower() if "." in name else ""
    return extension in PAGE_FILES.get(folder, frozenset())


class PageStaticHandler(tornado.web.StaticFileHandler):
    """kiosk/ files with the CSP; '/' is index.html. Only PAGE_FILES are served; Tornado's
    validate_absolute_path keeps requests in the root."""

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")

    def parse_url_path(self, url_path: str) -> str:
        # A NUL byte makes os.path.realpath raise ValueError (a 500 in Tornado): refuse it up front.
        if "\x00" in url_path or "\\" in url_path:
            raise tornado.web.HTTPError(400)
        if not is_page_file(url_path):
            raise tornado.web.HTTPError(404)
        return super().parse_url_path(url_path)

    def set_extra_headers(self, path: str) -> None:
        # The wall must pick up a new version after an update: revalidate every time (cheap on loopback).
        self.set_header("Cache-Control", "no-cache")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}\n")


class DebugBlockHandler(BaseHandler):
    """GET /debug/block?s=N blocks the event loop N seconds: the fault suite's hung loop (watchdog test).

    Routed only when HOMEBOARD_DEBUG_ROUTES=1 is in the environment; no unit or config sets it.
    """

    def get(self) -> None:
        seconds = min(float(self.get_argument("s", "1")), 120.0)
        time.sleep(seconds)  # deliberately on the loop thread
        self.write_json({"blocked_s": seconds})


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)
