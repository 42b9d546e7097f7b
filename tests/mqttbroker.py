"""A real Mosquitto on a loopback port for the MQTT tests, and a small paho client to talk to it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from tornado.websocket import websocket_connect

from tests.conftest import free_port, require_tool

SBIN_MOSQUITTO = "/usr/sbin/mosquitto"  # Debian installs it here, often not on a user's PATH


def mosquitto_path() -> str:
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.access(SBIN_MOSQUITTO, os.X_OK):
        return SBIN_MOSQUITTO
    return require_tool("mosquitto")  # missing: a failure naming the fix


class Broker:
    """mosquitto -c <conf> with persistence in its own directory; restartable on the same port."""

    def __init__(self, directory: Path, extra_conf: str = "", port: int | None = None) -> None:
        self.exe = mosquitto_path()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "mosquitto.log"

    def conf(self) -> str:
        return (
            f"listener {self.port} 127.0.0.1\n"
            + ("allow_anonymous true\n" if "allow_anonymous" not in self.extra_conf else "")
            + f"persistence true\npersistence_location {self.dir}/\n"
            + "user root\n"  # as root, mosquitto would switch to user "mosquitto", who cannot write here
            + f"log_dest file {self.log_path}\nlog_type all\n"
            + self.extra_conf
        )

    def start(self, timeout_s: float = 10.0) -> Broker:
        path = self.dir / "mosquitto.conf"
        path.write_text(self.conf())
        self.proc = subprocess.Popen([self.exe, "-c", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err}\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port} in {timeout_s} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: a clean shutdown that writes the persistence file (queued QoS 1 messages, retained ones)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


class Client:
    """A test-side MQTT client (a device, Home Assistant, a publisher): records what it receives."""

    def __init__(self, port: int, client_id: str = "", *, clean: bool = True, **kwargs: Any) -> None:
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            clean_session=clean,
            **kwargs,
        )
        self.messages: list[paho.MQTTMessage] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_connect = lambda *a: self.connected.set()
        self.acked_mids: set[int] = set()  # PUBACKs from the broker (QoS 1 publishes it has taken)
        self.client.on_publish = lambda _c, _u, mid, *_: self.acked_mids.add(mid)
        self.port = port

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)

    def connect(self, timeout_s: float = 10.0) -> Client:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(timeout_s), "test client did not connect"
        return self

    def subscribe(self, topic: str, qos: int = 1) -> None:
        result, _mid = self.client.subscribe(topic, qos)
        assert result == 0

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False, wait: bool = True) -> Any:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if wait:
            info.wait_for_publish(10)
            assert info.is_published(), f"broker did not acknowledge {topic}"
        return info

    def received(self, topic: str | None = None) -> list[paho.MQTTMessage]:
        with self.lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def latest(self, topic: str) -> paho.MQTTMessage | None:
        found = self.received(topic)
        return found[-1] if found else None

    def wait_for(self, check: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.02)
        return check()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(check: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    return check()


# ------------------------------------------------------------------------------------------ the server's side


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def topic_state(base_url: str, topic: str) -> dict[str, Any] | None:
    return get_json(base_url + "/api/state")["topics"].get(topic)


def health(base_url: str) -> dict[str, Any]:
    try:
        return get_json(base_url + "/healthz")
    except urllib.error.HTTPError as err:  # 503 when degraded still carries the report
        return json.load(err)


def mqtt_settings(broker_port: int, **more: Any) -> dict[str, Any]:
    """An mqtt config section for tests: this broker, fast reconnects."""
    return {"host": "127.0.0.1", "port": broker_port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, **more}


class Page:
    """A real WebSocket client of /ws, as the kiosk page is: the snapshot, then every update."""

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self.conn: Any = None
        self.updates: list[dict[str, Any]] = []

    async def open(self) -> dict[str, Any]:
        self.conn = await websocket_connect(self.ws_url)
        first = await self.read(5)
        assert first is not None
        assert first["type"] == "snapshot"
        return first

    async def read(self, timeout_s: float) -> dict[str, Any] | None:
        try:
            raw = await asyncio.wait_for(self.conn.read_message(), timeout_s)
        except TimeoutError:
            return None
        if raw is None:
            raise AssertionError("the server closed the WebSocket")
        msg = json.loads(raw)
        if msg.get("type") == "update":
            self.updates.append(msg)
        return msg

    async def until(self, check: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0) -> dict[str, Any]:
        """The first update (from now on) for which check(update) is true."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (left := deadline - loop.time()) > 0:
            msg = await self.read(left)
            if msg is not None and msg.get("type") == "update" and check(msg):
                return msg
        raise AssertionError(f"no matching update in {timeout_s} s; got {[u['topic'] for u in self.updates][-20:]}")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
