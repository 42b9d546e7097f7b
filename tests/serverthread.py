"""A real Homeboard server on a loopback port, running its own event loop in a thread, for tests.

Tests talk to it over real HTTP and WebSocket from their own loop; `call()` runs a function on the
server's loop thread (the hub is not thread-safe, by design).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from server.app import Upkeep, build_services, install_features, make_app
from server.config import Config
from server.laststate import LastStateStore
from server.services import Services


class ServerThread:
    def __init__(self, config: Config, features: tuple[str, ...] = (), restore: bool = True) -> None:
        self.config = config
        self.features = features
        self.restore = restore
        self.services: Services | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-server", daemon=True)

    # -------------------------------------------------------------- lifecycle
    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("test server did not start in 15 s")
        if self._error:
            raise self._error
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # surfaced to the test through start()
            self._error = err
            self._ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        services = self.services = build_services(self.config)
        routes = install_features(services, self.features)
        app = make_app(services, routes)
        self.laststate = LastStateStore(services.data_dir)
        if self.restore:
            self.laststate.load_into(services.hub)
        http = HTTPServer(app, max_body_size=self.config.server.max_body_bytes)
        sockets = bind_sockets(0, "127.0.0.1")
        http.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        for hook in services.on_start:
            await hook()
        services.runner.start()
        self.upkeep = Upkeep(services, self.laststate)
        self.upkeep.start()
        self._ready.set()
        await self._stop.wait()
        http.stop()
        self.upkeep.stop()
        await services.runner.stop()
        for hook in services.on_stop:
            await hook()
        self.laststate.save_blob(self.laststate.snapshot_blob(services.hub))
        services.executor.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    # -------------------------------------------------------------- helpers
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float = 10) -> Any:
        """Run fn(*args) on the server's loop thread and return its result (awaiting it if a coroutine)."""
        assert self.loop is not None
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()

        async def runner() -> None:
            try:
                value = fn(*args)
                if asyncio.iscoroutine(value):
                    value = await value
                result.set_result(value)
            except BaseException as err:
                result.set_exception(err)

        asyncio.run_coroutine_threadsafe(runner(), self.loop)
        return result.result(timeout_s)

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        self.call(lambda: self.services.hub.publish(topic, data))  # type: ignore[union-attr]
