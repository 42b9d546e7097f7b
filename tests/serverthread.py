"""A real Homeboard server on a loopback port, running its own event loop in a thread, for tests.

It runs the product's own assembly (server.homeboard.Homeboard) and start/stop (server.web.app.Serving), exactly as
`python -m server` does. Tests talk to it over real HTTP and WebSocket from their own loop; `call()` runs a
function on the server's loop thread (the hub is not thread-safe, by design).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from server.config import Config
from server.homeboard import Homeboard
from server.web.app import Serving


class ServerThread:
    def __init__(self, config: Config, restore: bool = True) -> None:
        self.config = config
        self.restore = restore
        self.board: Homeboard | None = None
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
        board = self.board = Homeboard.build(self.config)
        serving = await Serving.start(board, host="127.0.0.1", port=0, restore=self.restore)
        self.port = serving.port
        self._ready.set()
        await self._stop.wait()
        await serving.stop()
        board.executor.shutdown(wait=False, cancel_futures=True)

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
        self.call(lambda: self.board.hub.publish(topic, data))  # type: ignore[union-attr]
