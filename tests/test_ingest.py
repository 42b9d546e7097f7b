"""POST /api/sensors/{id}/readings on a real server: every bad input gets its 4xx naming the problem, tokens are
checked in constant time and never logged, 1000 concurrent posts are all stored and published, and a kill -9
of a real server process loses no acknowledged reading."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import yaml
from tornado.websocket import websocket_connect

from server.readings.history import DB_NAME
from tests.conftest import REPO, free_port, make_config
from tests.serverthread import ServerThread

TOKEN = "s3cret-balcony-token-0123456789abcdef"
URL = "/api/sensors/balcony/readings"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerThread]:
    remote = [{"id": "balcony", "name": "Balcony", "token": TOKEN, "max_age_s": 600}]
    remote += [{"id": f"dev{i}", "token": f"token-{i}"} for i in range(10)]
    server = ServerThread(make_config(tmp_path, remote_sensors=remote)).start()
    yield server
    server.stop()


def raw_post(srv: ServerThread, body: bytes, headers: dict[str, str] | None = None, path: str = URL) -> tuple[int, Any]:
    """One request over a plain socket, so that any bytes (invalid UTF-8, chunked) can be sent as they are."""
    head = {"Host": "127.0.0.1", "Authorization": f"Bearer {TOKEN}", "Content-Length": str(len(body))}
    head.update(headers or {})
    lines = [f"POST {path} HTTP/1.1", *(f"{k}: {v}" for k, v in head.items() if v is not None), "Connection: close"]
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)
        response = b""
        while chunk := s.recv(65536):
            response += chunk
    status_line, _, rest = response.partition(b"\r\n")
    body_bytes = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body_bytes) if body_bytes else None


def post(srv: ServerThread, doc: Any) -> tuple[int, Any]:
    return raw_post(srv, json.dumps(doc).encode())


def state(srv: ServerThread, topic: str) -> dict[str, Any]:
    return json.loads(tornado.httpclient.HTTPClient().fetch(srv.url + "/api/state").body)["topics"].get(topic)


def db_rows(srv: ServerThread, sql: str) -> list[tuple]:
    assert srv.board is not None
    conn = sqlite3.connect(os.path.join(srv.board.data_dir, DB_NAME))
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def iso_now(offset_s: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + offset_s))


# ------------------------------------------------------------------------------ the good path


def test_valid_reading_is_stored_then_published(srv: ServerThread) -> None:
    measured = iso_now(-60)
    status, body = post(srv, {"temperature_c": -3.5, "humidity_pct": 81.2, "pressure_hpa": 1003.4,
                              "battery_pct": 88, "measured_at": measured})  # fmt: skip
    assert status == 201
    assert body["stored"] is True
    assert db_rows(srv, "SELECT temperature_c, humidity_pct, pressure_hpa, battery_pct, source FROM readings") == [
        (-3.5, 81.2, 1003.4, 88.0, "lan")
    ]
    topic = state(srv, "sensor/balcony")
    assert topic["status"] == "ok"
    assert topic["data"] == {
        "name": "Balcony",
        "temperature_c": -3.5,
        "humidity_pct": 81.2,
        "pressure_hpa": 1003.4,
        "battery_pct": 88.0,
        "measured_at": body["measured_at"],
        "source": "lan",
    }
    assert body["measured_at"].endswith(("+01:00", "+02:00"))  # the configured time zone


def test_only_temperature_is_required_and_time_defaults_to_now(srv: ServerThread) -> None:
    before = time.time()
    assert post(srv, {"temperature_c": 21})[0] == 201
    (measured_ms,) = db_rows(srv, "SELECT measured_at_ms FROM readings")[0]
    assert before - 1 <= measured_ms / 1000 <= time.time() + 1
    data = state(srv, "sensor/balcony")["data"]
    assert data["humidity_pct"] is None
    assert data["pressure_hpa"] is None
    assert "battery_pct" not in data


def test_remote_sensor_is_declared_and_goes_stale(tmp_path: Path) -> None:
    remote = [{"id": "balcony", "token": TOKEN, "max_age_s": 1}]
    server = ServerThread(make_config(tmp_path, remote_sensors=remote)).start()
    try:
        waiting = state(server, "sensor/balcony")
        assert (waiting["status"], waiting["error"], waiting["data"], waiting["stale"]) == (
            "waiting",
            None,
            None,
            False,
        )
        assert post(server, {"temperature_c": 5.0})[0] == 201
        assert state(server, "sensor/balcony")["stale"] is False
        deadline = time.monotonic() + 5
        while not state(server, "sensor/balcony")["stale"]:
            assert time.monotonic() < deadline, "never went stale"
            time.sleep(0.1)
    finally:
        server.stop()


def test_a_retried_reading_is_stored_once(srv: ServerThread) -> None:
    doc = {"temperature_c": 7.25, "measured_at": iso_now(-5)}
    assert post(srv, doc)[0] == 201
    assert post(srv, doc)[0] == 201  # the device did not see the first 201
    assert db_rows(srv, "SELECT count(*) FROM readings") == [(1,)]


# ------------------------------------------------------------------------------ bad input


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("nan", b'{"temperature_c": NaN}', "temperature_c: NaN is not a finite number"),
    ("infinity", b'{"temperature_c": 20, "humidity_pct": Infinity}', "humidity_pct: Infinity is not a finite number"),
    ("-infinity", b'{"temperature_c": -Infinity}', "temperature_c: -Infinity is not a finite number"),
    ("1e999", b'{"temperature_c": 1e999}', "temperature_c: 1e999 is out of range"),
    (
        "huge int",
        b'{"temperature_c": 1' + b"0" * 4000 + b"}",
        "temperature_c: an integer with 4001 digits is too large",
    ),
    ("deep nesting", b'{"temperature_c": 1, "x": ' + b"[" * 2000 + b"]" * 2000 + b"}", "body: nested too deeply"),
    ("duplicate keys", b'{"temperature_c": 1, "temperature_c": 2}', "temperature_c: duplicate key"),
    (
        "lone surrogate value",
        b'{"temperature_c": 1, "measured_at": "\\ud800"}',
        "measured_at: contains a lone surrogate",
    ),
    ("lone surrogate key", b'{"\\udc00": 1}', "body: a key contains a lone surrogate"),
    ("invalid utf-8", b'{"temperature_c": 1, "x": "\xff\xfe"}', "body: not valid UTF-8"),
    ("bom", b'\xef\xbb\xbf{"temperature_c": 1}', "byte-order mark"),
    ("empty", b"", "body: empty"),
    ("not json", b"temperature=21", "body: not valid JSON"),
    ("truncated", b'{"temperature_c": 2', "body: not valid JSON"),
    ("array", b"[21.5]", "body: expected a JSON object"),
    ("unknown field", b'{"temperature_c": 1, "temp": 2}', "temp: unknown field"),
    ("no quantity", b'{"battery_pct": 40}', "body: no quantity: send at least one of temperature_c"),
    ("null temperature", b'{"temperature_c": null}', "body: no quantity"),
    ("string number", b'{"temperature_c": "21.5"}', "temperature_c: expected a number, got a string"),
    ("bool", b'{"temperature_c": true}', "temperature_c: expected a number, got bool"),
    ("nested value", b'{"temperature_c": [21]}', "temperature_c: expected a number, got a list"),
    ("too cold", b'{"temperature_c": -60.5}', "temperature_c: -60.5 °C is outside the plausible range -60..85"),
    ("too hot", b'{"temperature_c": 85.01}', "temperature_c: 85.01 °C is outside"),
    ("humidity", b'{"temperature_c": 1, "humidity_pct": 100.5}', "humidity_pct: 100.5 % is outside"),
    ("pressure", b'{"temperature_c": 1, "pressure_hpa": 250}', "pressure_hpa: 250 hPa is outside the plausible range"),
    ("battery", b'{"temperature_c": 1, "battery_pct": -1}', "battery_pct: -1 % is outside"),
    ("time type", b'{"temperature_c": 1, "measured_at": 1732540000}', "measured_at: expected an ISO 8601 time string"),
    ("time text", b'{"temperature_c": 1, "measured_at": "yesterday"}', 'measured_at: "yesterday" is not an ISO'),
    ("naive time", b'{"temperature_c": 1, "measured_at": "2026-11-25T14:05:00"}', "with offset"),
]


@pytest.mark.parametrize(("body", "message"), [(b, m) for _, b, m in BAD_BODIES], ids=[n for n, _, _ in BAD_BODIES])
def test_bad_bodies_get_400_naming_the_problem(srv: ServerThread, body: bytes, message: str) -> None:
    status, answer = raw_post(srv, body)
    assert status == 400
    assert message in answer["error"]
    assert db_rows(srv, "SELECT count(*) FROM readings") == [(0,)]


def test_time_too_far_in_the_future_or_past(srv: ServerThread) -> None:
    status, answer = post(srv, {"temperature_c": 1, "measured_at": iso_now(6 * 60)})
    assert status == 400
    assert answer["error"] == "measured_at: more than 5 minutes in the future: check the device's clock"
    assert post(srv, {"temperature_c": 1, "measured_at": iso_now(4 * 60)})[0] == 201
    status, answer = post(srv, {"temperature_c": 1, "measured_at": "1970-01-01T00:00:00Z"})
    assert status == 400
    assert "measured_at: older than the history keeps" in answer["error"]


def test_nothing_non_finite_reaches_a_websocket_frame(srv: ServerThread) -> None:
    async def scenario() -> list[str]:
        conn = await websocket_connect(srv.ws_url)
        await conn.read_message()  # snapshot
        for body in (b'{"temperature_c": NaN}', b'{"temperature_c": 1e999}', b'{"temperature_c": 20.5}'):
            await asyncio.get_running_loop().run_in_executor(None, raw_post, srv, body)
        frames = [await asyncio.wait_for(conn.read_message(), 5)]
        conn.close()
        return [f for f in frames if isinstance(f, str)]

    frames = asyncio.run(scenario())
    assert len(frames) == 1
    update = json.loads(frames[0], parse_constant=lambda c: pytest.fail(f"{c} in a frame"))
    assert update["data"]["temperature_c"] == 20.5


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": None},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},  # a prefix
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer token-0"},  # another sensor's token
        {"Authorization": "Bearer " + "a" * 10000},
        {"Authorization": "Bearer t\xf6ken"},  # non-ASCII
    ],
)
def test_bad_tokens_get_401_without_details(srv: ServerThread, headers: dict[str, Any]) -> None:
    status, answer = raw_post(srv, b'{"temperature_c": 1}', headers)
    assert status == 401
    assert answer == {"error": "unauthorized"}
    assert db_rows(srv, "SELECT count(*) FROM readings") == [(0,)]


def test_token_comparison_is_constant_time() -> None:
    source = (REPO / "server" / "web" / "base.py").read_text()  # the one bearer check (ingest and display)
    assert "hmac.compare_digest" in source
    assert "== sensor.token" not in source
    assert "token ==" not in source


def test_unknown_sensor_is_404(srv: ServerThread) -> None:
    status, answer = raw_post(srv, b'{"temperature_c": 1}', path="/api/sensors/attic/readings")
    assert status == 404
    assert "unknown sensor" in answer["error"]


@pytest.mark.parametrize("size", [4097, 70000, 2_000_000])
def test_too_large_bodies_get_413(srv: ServerThread, size: int) -> None:
    body = b'{"temperature_c": 1, "pad": "' + b"x" * size + b'"}'
    try:
        status, answer = raw_post(srv, body)
    except ConnectionResetError:
        assert size > 1_000_000  # past the drain limit the connection may be cut instead
        return
    assert status == 413
    assert answer == {"error": "body: larger than 4096 bytes"}


def test_chunked_body_over_the_limit_gets_413(srv: ServerThread) -> None:
    chunks = b"".join(b"%x\r\n%s\r\n" % (1000, b" " * 1000) for _ in range(5)) + b"0\r\n\r\n"
    status, answer = raw_post(srv, chunks, {"Content-Length": None, "Transfer-Encoding": "chunked"})
    assert status == 413
    assert "4096" in answer["error"]
    small = b'{"temperature_c": 3}'
    chunked = {"Content-Length": None, "Transfer-Encoding": "chunked"}
    assert raw_post(srv, b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small), chunked)[0] == 201


def test_token_never_logged_nor_shown(srv: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    raw_post(srv, b'{"temperature_c": NaN}')
    raw_post(srv, b'{"temperature_c": 1}', {"Authorization": f"Bearer {TOKEN}wrong"})
    raw_post(srv, b'{"temperature_c": 1}')
    client = tornado.httpclient.HTTPClient()
    pages = [client.fetch(srv.url + p, raise_error=False).body.decode() for p in ("/healthz", "/api/state")]
    text = caplog.text + "".join(pages)
    assert TOKEN not in text
    assert TOKEN[:12] not in text


# ------------------------------------------------------------------------------ load


def test_1000_concurrent_posts_are_all_stored_and_published(srv: ServerThread) -> None:
    base = time.time() - 600

    async def scenario() -> tuple[list[int], int]:
        conn = await websocket_connect(srv.ws_url)
        await conn.read_message()  # snapshot
        client = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=1000)

        async def one(i: int) -> int:
            sensor = f"dev{i % 10}"
            doc = {"temperature_c": round(-20 + i * 0.05, 2),
                   "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + i // 10)) + "Z"}  # fmt: skip
            response = await client.fetch(
                f"{srv.url}/api/sensors/{sensor}/readings",
                method="POST",
                body=json.dumps(doc),
                headers={"Authorization": f"Bearer token-{i % 10}"},
                raise_error=False,
                request_timeout=60,
                connect_timeout=60,
            )
            return response.code

        codes = await asyncio.gather(*(one(i) for i in range(1000)))
        # Posts overtake each other: a reading measured before the one already shown goes to the history only.
        assert srv.board is not None
        kept_back = srv.call(lambda: srv.board.readings.older_kept)
        updates = 0
        while updates < 1000 - kept_back:
            message = await asyncio.wait_for(conn.read_message(), 10)
            assert message is not None
            frame = json.loads(message)
            if frame.get("type") == "update" and frame["topic"].startswith("sensor/dev"):
                updates += 1
        conn.close()
        client.close()
        return codes, updates

    codes, updates = asyncio.run(scenario())
    assert codes == [201] * 1000
    assert 10 <= updates <= 1000
    newest = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + 99))
    for i in range(10):  # each sensor shows its newest reading, whatever order the posts arrived in
        shown = state(srv, f"sensor/dev{i}")["data"]["measured_at"]
        assert dt.datetime.fromisoformat(shown) == dt.datetime.fromisoformat(newest + "+00:00")
    assert db_rows(srv, "SELECT count(*) FROM readings") == [(1000,)]
    assert db_rows(srv, "SELECT count(DISTINCT sensor_id) FROM readings") == [(10,)]


# ------------------------------------------------------------------------------ kill -9


def start_server(config: Path, port: int, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "server", "--config", str(config), "--port", str(port), "--data-dir", str(data_dir)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"server did not start:\n{log.read_text()}")


def test_kill_9_loses_no_acknowledged_reading(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"remote_sensors": [{"id": f"dev{i}", "token": f"token-{i}"} for i in range(8)],
                                      "history": {"commit_interval_s": 2}}))  # fmt: skip
    data_dir, log, port = tmp_path / "var", tmp_path / "server.log", free_port()
    proc = start_server(config, port, data_dir, log)
    acked: list[tuple[str, str]] = []
    lock = threading.Lock()
    stop = threading.Event()
    base = time.time() - 3000

    def device(i: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            measured_ms = round((base + i * 300 + n * 0.01) * 1000)
            measured = (
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(measured_ms // 1000)) + f".{measured_ms % 1000:03d}Z"
            )
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/sensors/dev{i}/readings",
                data=json.dumps({"temperature_c": 20.0, "measured_at": measured}).encode(),
                headers={"Authorization": f"Bearer token-{i}", "Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    if r.status == 201:
                        with lock:
                            acked.append((f"dev{i}", measured_ms))
            except OSError:
                return  # the server is gone

    threads = [threading.Thread(target=device, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 400 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of the ingest
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) >= 400, log.read_text()

    conn = sqlite3.connect(data_dir / DB_NAME)  # opening replays the WAL, as the next start would
    stored = set(conn.execute("SELECT sensor_id, measured_at_ms FROM readings").fetchall())
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    missing = [a for a in acked if a not in stored]
    assert missing == []

    proc = start_server(config, port, data_dir, log)  # and the server comes back on the same data
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            history = json.loads(r.read())["history"]
        assert history["status"] == "ok"
        assert history["moved_aside"] is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
