"""Real local HTTP servers standing in for remote APIs in tests: a scriptable Tornado app and a raw-socket server.

Both listen on 127.0.0.1 port 0 and run in a thread of their own, so the blocking pollers under test talk
to them over real sockets exactly as they talk to the internet. At the end: helpers that damage a payload
one field at a time, for the parsers' property tests.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tornado.iostream
import tornado.web
from hypothesis import strategies as st
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets


@dataclass
class Reply:
    """One scripted answer. `body` may be a JSON-able object (dict/list) or bytes/str sent as they are."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drip_bytes: bytes = b""  # sent one byte at a time, `drip_interval_s` apart, after the headers
    drip_interval_s: float = 0.1
    gzip_body: bool = False


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    host: str


Responder = Callable[[Recorded], Reply]


class _Handler(tornado.web.RequestHandler):
    def initialize(self, api: FakeApi) -> None:
        self.api = api

    def compute_etag(self) -> None:
        return None

    async def _serve(self) -> None:
        request = self.request
        recorded = Recorded(
            method=request.method or "",
            path=request.path,
            query={k: [v.decode() for v in vs] for k, vs in request.query_arguments.items()},
            headers=dict(request.headers.items()),
            body=request.body,
            host=request.host_name,
        )
        self.api.requests.append(recorded)
        responder = self.api.routes.get(request.path)
        reply = Reply(404, {"message": "no such path in this test"}) if responder is None else responder(recorded)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        self.set_status(reply.status)
        for name, value in reply.headers.items():
            self.set_header(name, value)
        body = reply.body
        if isinstance(body, dict | list):
            body = json.dumps(body, ensure_ascii=False).encode("utf-8")
            if "Content-Type" not in reply.headers:
                self.set_header("Content-Type", "application/json; charset=utf-8")
        elif isinstance(body, str):
            body = body.encode("utf-8")
        if reply.gzip_body:
            body = gzip.compress(body)
            self.set_header("Content-Encoding", "gzip")
        if reply.drip_bytes:
            await self.flush()
            for i in range(len(reply.drip_bytes)):
                self.write(reply.drip_bytes[i : i + 1])
                try:
                    await self.flush()
                except tornado.iostream.StreamClosedError:
                    return  # the client gave up: what the test wants
                await asyncio.sleep(reply.drip_interval_s)
        self.finish(body)

    get = post = put = delete = _serve


class FakeApi:
    """A scriptable HTTP server: `api.route("/path", Reply(...))` or a function of the recorded request."""

    def __init__(self) -> None:
        self.routes: dict[str, Responder] = {}
        self.requests: list[Recorded] = []
        self.port = 0
        self.app = tornado.web.Application([(r"/.*", _Handler, {"api": self})], log_function=lambda h: None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-api", daemon=True)
        self.extra_app: tornado.web.Application | None = None

    def route(self, path: str, reply: Reply | Responder) -> None:
        self.routes[path] = reply if callable(reply) else (lambda _req, r=reply: r)

    def url(self, path: str = "", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def start(self, app: tornado.web.Application | None = None, ssl_options: Any = None) -> FakeApi:
        self.served_app = app or self.app
        self._ssl = ssl_options
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake API did not start")
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            server = HTTPServer(self.served_app, ssl_options=self._ssl)
            sockets = bind_sockets(0, "127.0.0.1")
            server.add_sockets(sockets)
            self.port = sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            server.stop()

        asyncio.run(main())

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run fn on the server's loop thread (the stand-in's state lives there) and return its result."""
        assert self._loop is not None
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = fn()
            except BaseException as err:
                box["error"] = err
            done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(10):
            raise RuntimeError("fake API loop did not run the call")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)


class RawServer:
    """A TCP server that reads one request head and then runs `script(conn)`: for answers HTTP servers refuse
    to produce (a cut-off body, headers dripped a byte at a time)."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="raw-server", daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _run(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            try:
                self.script(conn)
            except OSError:
                pass  # the client hung up first: expected in timeout tests

    def close(self) -> None:
        self._closed = True
        self.sock.close()


def serve_app(app: tornado.web.Application) -> FakeApi:
    """Serve any Tornado app (e.g. the demo stand-in) on a loopback port in a thread."""
    return FakeApi().start(app)


# ---------------------------------------------------------------- damaged payloads (property tests of the parsers)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def json_paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into a JSON document (the first two items of each list), for damaging one field."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += json_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:2]):
            out += json_paths(v, (*prefix, i))
    return out


def replace_at(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
