"""The web side of a Homeboard (server.homeboard): its route table, the once-a-second upkeep, and Serving.

The assembly builds the parts; this module is the only one that hands them to Tornado. Each handler gets the one
thing it needs through `initialize()` from the route table below (the hub, the reading path, a health callable,
a config section), never the whole board.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets

from server.core.memory import HeapTrimmer
from server.homeboard import Homeboard
from server.web.base import NotFoundHandler
from server.web.display import DisplayHandler
from server.web.handlers import ConfigHandler, DebugBlockHandler, HealthHandler, MetricsHandler, StateHandler
from server.web.history import HistoryHandler
from server.web.hostcheck import HostCheckedApplication, HostPolicy
from server.web.ingest import IngestHandler
from server.web.page import KIOSK_DIR, PageStaticHandler
from server.web.state_route import StateRoute
from server.web.ws import LiveSocket

log = logging.getLogger(__name__)

LAST_STATE_SAVE_S = 10.0
MAX_INCOMING_WS_BYTES = 4096


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log without query strings (no token or key can leak through a URL) and quiet on success."""
    status = handler.get_status()
    if status < 400:
        level = logging.DEBUG
    elif status < 500:
        level = logging.INFO
    else:
        level = logging.ERROR
    if log.isEnabledFor(level):
        r = handler.request
        log.log(level, "%d %s %s (%s) %.1f ms", status, r.method, r.path[:200], r.remote_ip, 1000 * r.request_time())


def make_app(board: Homeboard) -> tornado.web.Application:
    """The route table: every route of the server, with the objects each handler needs passed in."""
    cfg = board.config.server
    ws_kwargs = {
        "hub": board.hub,
        "allowed_origins": cfg.allowed_origins,
        "max_pending_bytes": cfg.ws_max_pending_bytes,
        "max_drain_s": cfg.ws_max_drain_s,
    }
    remote = {r.id: r for r in board.config.remote_sensors}
    history_kwargs = {"history": board.history, "knows": board.readings.knows, "clock": time.time}
    display_kwargs = {"controller": board.display, "token": board.config.display.token}
    config_kwargs = {"about": page_facts(board), "readings": board.readings}
    routes: list[Any] = [
        (r"/api/state", StateRoute(board.hub)),  # GET, without a RequestHandler (server/web/state_route.py)
        (r"/api/state", StateHandler, {"hub": board.hub}),  # other methods: 405
        (r"/api/config", ConfigHandler, config_kwargs),
        (r"/healthz", HealthHandler, {"health": board.health}),
        (r"/metrics", MetricsHandler, {"hub": board.hub, "runner": board.runner}),
        (r"/ws", LiveSocket, ws_kwargs),
        (r"/api/sensors/([^/]+)/history", HistoryHandler, history_kwargs),
        (r"/api/sensors/([^/]+)/readings", IngestHandler, {"sensors": remote, "readings": board.readings}),
        (r"/api/display", DisplayHandler, display_kwargs),
        *([(r"/debug/block", DebugBlockHandler)] if os.environ.get("HOMEBOARD_DEBUG_ROUTES") == "1" else []),
        (r"/api/.*", NotFoundHandler),
        (r"/(.*)", PageStaticHandler, {"path": str(KIOSK_DIR), "default_filename": "index.html"}),
    ]
    return HostCheckedApplication(
        routes,
        host_policy=HostPolicy.for_server(cfg.host, cfg.allowed_hosts),
        log_function=log_request,
        websocket_ping_interval=cfg.ws_ping_interval_s,
        websocket_ping_timeout=cfg.ws_ping_interval_s,
        websocket_max_message_size=MAX_INCOMING_WS_BYTES,
        compress_response=False,
        xsrf_cookies=False,  # no cookie auth anywhere: ingest and display use bearer tokens in headers
    )


def page_facts(board: Homeboard) -> dict[str, Any]:
    """What /api/config tells the page about itself, built once: nothing secret lives in these fields."""
    cfg = board.config
    return {
        "version": board.version,
        "timezone": cfg.timezone,
        "demo": cfg.demo,
        "page": dataclasses.asdict(cfg.page),
        # Names and colours only: a calendar's address is a secret and never leaves the server.
        "calendars": [
            {"name": c.name, "color": c.color} for c in (cfg.sources.calendar.calendars if cfg.sources.calendar else ())
        ],
    }


class Upkeep:
    """The once-a-second chores on the loop: stale marking, slow-client eviction, state saving, cert reload."""

    def __init__(self, board: Homeboard, cert: Any = None, save_state: bool = True) -> None:
        self.board = board
        self.laststate = board.laststate if save_state else None
        self.cert = cert
        self._callbacks: list[PeriodicCallback] = []
        self._saving = False
        self._heap = HeapTrimmer()  # freed memory back to the OS after start-up, then hourly (server/core/memory.py)

    def start(self) -> None:
        self._callbacks.append(PeriodicCallback(self.tick, 1000))
        if self.laststate is not None:
            self._callbacks.append(PeriodicCallback(self.save_state, LAST_STATE_SAVE_S * 1000))
        if self.cert is not None:
            interval_ms = self.board.config.server.tls.reload_check_s * 1000
            self._callbacks.append(PeriodicCallback(self.cert.reload_if_changed, interval_ms))
        for cb in self._callbacks:
            cb.start()
        self._heap.start()

    def stop(self) -> None:
        for cb in self._callbacks:
            cb.stop()
        self._heap.stop()

    def tick(self) -> None:
        self.board.hub.check_stale()
        now = time.monotonic()
        for client in list(self.board.hub.clients.values()):
            check = getattr(client, "check_drain", None)
            if check is not None:
                check(now)

    async def save_state(self) -> None:
        if self._saving or self.laststate is None:
            return
        self._saving = True
        try:
            blob = self.laststate.snapshot_blob(self.board.hub)
            await asyncio.wrap_future(self.board.executor.submit(self.laststate.save_blob, blob))
        finally:
            self._saving = False


class Serving:
    """A Homeboard answering HTTP on a bound socket: `python -m server`, the tests and the bench all run this."""

    def __init__(self, board: Homeboard, http: HTTPServer, upkeep: Upkeep, port: int) -> None:
        self.board = board
        self.http = http
        self.upkeep = upkeep
        self.port = port

    @classmethod
    async def start(
        cls,
        board: Homeboard,
        *,
        host: str,
        port: int,
        cert: Any = None,
        restore: bool = True,
        save_state: bool = True,
    ) -> Serving:
        """Bind (an OSError here means the address is taken: nothing has started yet), then start the board."""
        cfg = board.config.server
        http = HTTPServer(
            make_app(board),
            ssl_options=cert.context if cert is not None else None,
            max_body_size=cfg.max_body_bytes,
            max_header_size=cfg.max_header_bytes,
            idle_connection_timeout=cfg.idle_connection_timeout_s,
            body_timeout=10,
        )
        sockets = bind_sockets(port, host, backlog=2048)
        http.add_sockets(sockets)
        await board.start(restore=restore)
        upkeep = Upkeep(board, cert, save_state=save_state)
        upkeep.start()
        return cls(board, http, upkeep, sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """No new connections, the WebSockets told goodbye (1001), then the board stops in its order."""
        self.http.stop()
        self.upkeep.stop()
        for client in list(self.board.hub.clients.values()):
            close = getattr(client, "close", None)
            if close is not None:
                close(1001, "server shutting down")
        await self.board.stop()
