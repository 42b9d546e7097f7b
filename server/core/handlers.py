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
