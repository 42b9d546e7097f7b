"""Helpers for the page tests: Debian's Chromium via Playwright, a Homeboard process on a chosen port, and a
small stand-in server for the client behaviours the real server cannot be steered into (a new version)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tornado.web
import tornado.websocket
import yaml
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from server.web.page import PageStaticHandler
from tests.conftest import REPO, free_port, require_tool

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
KIOSK_DIR = REPO / "kiosk"
ARTIFACTS = REPO / "tests" / "artifacts"

# Runs before the page's own scripts (injected over CDP, so the page's CSP does not apply to it): records CSP
# violations and errors the page would otherwise swallow.
WATCH_SCRIPT = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def require_chromium() -> str:
    """Chromium's path. Missing: a failure naming how to install it."""
    return require_tool("chromium", search_path=os.path.dirname(CHROMIUM))


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)


class PageProbe:
    """A page plus what it said: console errors, uncaught exceptions, CSP violations."""

    def __init__(self, browser: Any, width: int = 1920, height: int = 1080) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
        self.page = self.context.new_page()
        self.page.add_init_script(WATCH_SCRIPT)
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda err: self.page_errors.append(str(err)))
        self.requests: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("websocket", lambda socket: self.requests.append(socket.url))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} [{message.location.get('url', '')}]")

    def open(self, url: str, timeout_s: float = 10) -> PageProbe:
        self.page.goto(url)
        # Playwright's wait_for_function evaluates strings with eval, which the page's CSP forbids: poll instead.
        self.page.wait_for_selector('body[data-ready="1"]', state="attached", timeout=timeout_s * 1000)
        return self

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def wait_for(self, expression: str, timeout_s: float = 10, interval_s: float = 0.02, arg: Any = None) -> Any:
        """Poll a JS function (as text, `() => ...`) until it returns something truthy; returns that value."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.page.evaluate(expression, arg)
            except Exception as err:  # the page is reloading: its old context is gone, the new one is coming
                if "context was destroyed" not in str(err) and "navigat" not in str(err):
                    raise
                last = None
            if last:
                return last
            time.sleep(interval_s)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {expression} (last value {last!r})")

    def csp_violations(self) -> list[str]:
        return self.page.evaluate("() => window.__cspViolations")

    def text(self, selector: str) -> str:
        return self.page.evaluate("(s) => document.querySelector(s)?.textContent ?? null", selector)

    def close(self) -> None:
        self.context.close()


class HomeboardProcess:
    """`python -m server` on a given (or free) loopback port; restartable on the same port."""

    def __init__(self, tmp_path: Path, doc: dict[str, Any], *, demo: bool = True, port: int | None = None) -> None:
        self.tmp_path = tmp_path
        self.port = port or free_port()
        self.doc = {"data_dir": str(tmp_path / "var"), **doc}
        self.demo = demo
        self.config_path = tmp_path / f"config-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(self.doc))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = tmp_path / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20) -> HomeboardProcess:
        args = [sys.executable, "-m", "server", "--config", str(self.config_path), "--port", str(self.port)]
        if self.demo:
            args.append("--demo")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"server did not answer in {timeout_s} s:\n{self.log()}")

    def stop(self, timeout_s: float = 10) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def post_reading(self, sensor_id: str, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{self.url}/api/sensors/{sensor_id}/readings",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return json.loads(r.read())


class _StandinSocket(tornado.websocket.WebSocketHandler):
    def initialize(self, standin: KioskStandin) -> None:
        self.standin = standin

    def open(self) -> None:
        self.standin.sockets.add(self)
        self.standin.connects += 1
        self.write_message(json.dumps(self.standin.snapshot()))

    def on_message(self, message: str | bytes) -> None:
        self.standin.heartbeats.append(json.loads(message))

    def on_close(self) -> None:
        self.standin.sockets.discard(self)


class _StandinJson(tornado.web.RequestHandler):
    def initialize(self, body: Callable[[], Any]) -> None:
        self.body = body

    def get(self) -> None:
        value = self.body()
        if value is None:
            self.send_error(503)
            return
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(value))


class KioskStandin:
    """The real kiosk/ files (served by the real PageStaticHandler, CSP and all) with a scripted /ws and
    /api/config, in a thread: for a version change, a reload command, and schedules in page config."""

    def __init__(self, page: dict[str, Any], version: str = "1.0.0", timezone: str = "Europe/Stockholm") -> None:
        self.page = page
        self.version = version
        self.timezone = timezone
        self.topics: dict[str, Any] = {}
        self.healthy = True
        self.sockets: set[_StandinSocket] = set()
        self.heartbeats: list[dict[str, Any]] = []
        self.connects = 0
        self.config_requests = 0
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def snapshot(self) -> dict[str, Any]:
        return {"type": "snapshot", "server_time": None, "version": self.version, "topics": self.topics}

    def _config(self) -> dict[str, Any]:
        self.config_requests += 1
        return {"version": self.version, "timezone": self.timezone, "page": self.page}

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = tornado.web.Application(
            [
                (r"/ws", _StandinSocket, {"standin": self}),
                (r"/api/config", _StandinJson, {"body": self._config}),
                (r"/healthz", _StandinJson, {"body": lambda: {"status": "ok"} if self.healthy else None}),
                (r"/(.*)", PageStaticHandler, {"path": str(KIOSK_DIR), "default_filename": "index.html"}),
            ],
            log_function=lambda _handler: None,  # 404s for sensor history are expected here: no history
        )
        server = HTTPServer(app)
        sockets = bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> KioskStandin:
        self._thread.start()
        assert self._ready.wait(10), "stand-in did not start"
        return self

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def call(self, fn: Callable[[], Any]) -> None:
        """Run fn on the stand-in's loop (Tornado handlers are not thread-safe)."""
        assert self.loop is not None
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(10)

    def send(self, message: dict[str, Any]) -> None:
        self.call(lambda: [s.write_message(json.dumps(message)) for s in list(self.sockets)])

    def drop_clients(self) -> None:
        self.call(lambda: [s.close() for s in list(self.sockets)])
