"""Builds a running Homeboard from a Config: services, features, routes, periodic upkeep."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import tornado.web
from tornado.ioloop import PeriodicCallback

from server import __version__
from server.config import Config
from server.handlers import (
    ConfigHandler,
    DebugBlockHandler,
    HealthHandler,
    MetricsHandler,
    NotFoundHandler,
    PageStaticHandler,
    StateHandler,
)
from server.hub import Hub
from server.laststate import LastStateStore
from server.runner import SourceRunner
from server.services import Services
from server.state_route import StateRoute
from server.timeutil import zone
from server.ws import LiveSocket

log = logging.getLogger(__name__)

KIOSK_DIR = Path(__file__).resolve().parent.parent / "kiosk"

# Feature modules: each has install(services) -> list of routes. Order matters only for route precedence.
FEATURES: tuple[str, ...] = ("server.sensing", "server.remote", "server.display", "server.wallwatch", "server.mqtt")

LAST_STATE_SAVE_S = 10.0
MAX_INCOMING_WS_BYTES = 4096


def build_services(config: Config, data_dir: str | None = None) -> Services:
    data_dir = data_dir or config.data_dir
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    hub = Hub(zone(config.timezone), __version__)
    # A small pool: I2C reads, HTTP polls and SQLite are short; more threads only cost memory on a Pi.
    executor = concurrent.futures.ThreadPoolExecutor(config.server.executor_threads, thread_name_prefix="hb-io")
    runner = SourceRunner(hub, executor)
    return Services(config=config, hub=hub, runner=runner, executor=executor, data_dir=data_dir, version=__version__)


def install_features(services: Services, features: tuple[str, ...] = FEATURES) -> list[Any]:
    routes: list[Any] = []
    for name in features:
        module = importlib.import_module(name)
        routes.extend(module.install(services))
    return routes


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


def make_app(services: Services, feature_routes: list[Any] | None = None) -> tornado.web.Application:
    cfg = services.config.server
    ws_kwargs = {
        "hub": services.hub,
        "allowed_origins": cfg.allowed_origins,
        "max_pending_bytes": cfg.ws_max_pending_bytes,
        "max_drain_s": cfg.ws_max_drain_s,
    }
    routes: list[Any] = [
        (r"/api/state", StateRoute(services.hub)),  # GET, without a RequestHandler (server/state_route.py)
        (r"/api/state", StateHandler, {"services": services}),  # other methods: 405
        (r"/api/config", ConfigHandler, {"services": services}),
        (r"/healthz", HealthHandler, {"services": services}),
        (r"/metrics", MetricsHandler, {"services": services}),
        (r"/ws", LiveSocket, ws_kwargs),
        *(feature_routes or []),
        *([(r"/debug/block", DebugBlockHandler)] if os.environ.get("HOMEBOARD_DEBUG_ROUTES") == "1" else []),
        (r"/api/.*", NotFoundHandler),
        (r"/(.*)", PageStaticHandler, {"path": str(KIOSK_DIR), "default_filename": "index.html"}),
    ]
    return tornado.web.Application(
        routes,
        log_function=log_request,
        websocket_ping_interval=cfg.ws_ping_interval_s,
        websocket_ping_timeout=cfg.ws_ping_interval_s,
        websocket_max_message_size=MAX_INCOMING_WS_BYTES,
        compress_response=False,
        xsrf_cookies=False,  # no cookie auth anywhere: ingest and display use bearer tokens in headers
    )


class Upkeep:
    """The once-a-second chores on the loop: stale marking, slow-client eviction, state saving, cert reload."""

    def __init__(self, services: Services, laststate: LastStateStore | None, cert: Any = None) -> None:
        self.services = services
        self.laststate = laststate
        self.cert = cert
        self._callbacks: list[PeriodicCallback] = []
        self._saving = False

    def start(self) -> None:
        self._callbacks.append(PeriodicCallback(self.tick, 1000))
        if self.laststate is not None:
            self._callbacks.append(PeriodicCallback(self.save_state, LAST_STATE_SAVE_S * 1000))
        if self.cert is not None:
            interval_ms = self.services.config.server.tls.reload_check_s * 1000
            self._callbacks.append(PeriodicCallback(self.cert.reload_if_changed, interval_ms))
        for cb in self._callbacks:
            cb.start()

    def stop(self) -> None:
        for cb in self._callbacks:
            cb.stop()

    def tick(self) -> None:
        self.services.hub.check_stale()
        now = time.monotonic()
        for client in list(self.services.hub.clients.values()):
            check = getattr(client, "check_drain", None)
            if check is not None:
                check(now)

    async def save_state(self) -> None:
        if self._saving or self.laststate is None:
            return
        self._saving = True
        try:
            blob = self.laststate.snapshot_blob(self.services.hub)
            await asyncio.wrap_future(self.services.executor.submit(self.laststate.save_blob, blob))
        finally:
            self._saving = False
