"""The live path: snapshot first, fan-out, slow clients, stale pushes, origins, incoming messages."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest
import tornado.httpclient
from tornado.websocket import WebSocketClientConnection, websocket_connect

from tests.conftest import make_config
from tests.serverthread import ServerThread


async def connect(srv: ServerThread, origin: str | None = None) -> WebSocketClientConnection:
    headers = {"Origin": origin} if origin else {}
    req = tornado.httpclient.HTTPRequest(srv.ws_url, headers=headers)
    return await websocket_connect(req)


async def read_json(conn: WebSocketClientConnection, timeout_s: float = 5) -> dict:
    msg = await asyncio.wait_for(conn.read_message(), timeout_s)
    assert msg is not None, "socket closed"
    return json.loads(msg)


def test_snapshot_comes_first_then_updates(server: ServerThread) -> None:
    server.publish("weather", {"temperature_c": 3.5})

    async def scenario() -> None:
        conn = await connect(server)
        first = await read_json(conn)
        assert first["type"] == "snapshot"
        assert first["version"]
        assert first["topics"]["weather"]["data"] == {"temperature_c": 3.5}
        assert first["topics"]["weather"]["status"] == "ok"
        assert first["topics"]["weather"]["stale"] is False
        server.publish("weather", {"temperature_c": 4.0})
        update = await read_json(conn)
        assert update["type"] == "update"
        assert update["topic"] == "weather"
        assert update["data"] == {"temperature_c": 4.0}
        assert update["updated_at"].endswith(("+01:00", "+02:00"))
        conn.close()

    asyncio.run(scenario())


def test_api_state_matches_contract_shape(server: ServerThread) -> None:
    server.publish("sensor/x", {"name": "X", "temperature_c": 20.25})
    body = json.loads(tornado.httpclient.HTTPClient().fetch(server.url + "/api/state").body)
    assert set(body) == {"server_time", "topics"}
    state = body["topics"]["sensor/x"]
    assert set(state) == {"data", "updated_at", "stale", "status", "error"}
    assert state["data"]["temperature_c"] == 20.25


def test_one_update_fans_out_to_200_clients_as_identical_bytes(server: ServerThread) -> None:
    async def scenario() -> None:
        conns = await asyncio.gather(*(connect(server) for _ in range(200)))
        await asyncio.gather(*(read_json(c) for c in conns))  # snapshots
        assert server.call(lambda: len(server.board.hub.clients)) == 200
        sent = time.perf_counter()
        server.publish("departures", {"n": 1, "text": "Hässelby strand"})
        raw = await asyncio.gather(*(asyncio.wait_for(c.read_message(), 5) for c in conns))
        elapsed_s = time.perf_counter() - sent
        assert len(set(raw)) == 1, "every client must get the very same encoded message"
        msg = json.loads(raw[0])
        assert msg["data"] == {"n": 1, "text": "Hässelby strand"}
        assert elapsed_s < 2.0
        for c in conns:
            c.close()

    asyncio.run(scenario())


def _raw_ws_handshake(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads: the slow consumer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert b"101" in head.split(b"\r\n")[0]
    return sock


def test_slow_client_is_evicted_and_the_others_keep_their_latency(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, server={"ws_max_pending_bytes": 1_000_000})
    srv = ServerThread(cfg).start()
    try:
        slow = _raw_ws_handshake(srv.port)
        blob = "x" * 20_000

        async def scenario() -> list[float]:
            conns = await asyncio.gather(*(connect(srv) for _ in range(5)))
            await asyncio.gather(*(read_json(c) for c in conns))
            latencies: list[float] = []
            for i in range(200):  # 4 MB in total: far more than the slow client's buffers can hold
                sent = time.perf_counter()
                srv.publish("bulk", {"i": i, "blob": blob})
                msgs = await asyncio.gather(*(read_json(c) for c in conns))
                latencies.append(time.perf_counter() - sent)
                assert all(m["data"]["i"] == i for m in msgs), "a healthy client missed an update"
            for c in conns:
                c.close()
            return latencies

        latencies = asyncio.run(scenario())
        assert srv.call(lambda: srv.board.hub.clients_evicted) == 1
        assert srv.call(lambda: len(srv.board.hub.clients)) == 0
        latencies.sort()
        assert latencies[int(len(latencies) * 0.99)] < 0.25, latencies[-5:]
        slow.close()
    finally:
        srv.stop()


def test_stuck_write_is_evicted_after_the_drain_limit(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, server={"ws_max_drain_s": 1.0, "ws_max_pending_bytes": 50_000_000})
    srv = ServerThread(cfg).start()
    try:
        slow = _raw_ws_handshake(srv.port)
        for i in range(400):  # 8 MB: more than the kernel buffers hold, well under the byte limit
            srv.publish("bulk", {"i": i, "blob": "y" * 20_000})
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and srv.call(lambda: srv.board.hub.clients_evicted) == 0:
            time.sleep(0.2)
        assert srv.call(lambda: srv.board.hub.clients_evicted) == 1
        slow.close()
    finally:
        srv.stop()


def test_topic_goes_stale_after_its_max_age_and_the_change_is_pushed(server: ServerThread) -> None:
    server.call(lambda: server.board.hub.declare("weather", 1.0))
    server.publish("weather", {"temperature_c": 1.0})

    async def scenario() -> None:
        conn = await connect(server)
        snap = await read_json(conn)
        assert snap["topics"]["weather"]["stale"] is False
        update = await read_json(conn, timeout_s=4)
        assert update["topic"] == "weather"
        assert update["stale"] is True
        assert update["data"] == {"temperature_c": 1.0}, "stale keeps the last good value"
        conn.close()

    asyncio.run(scenario())


def test_error_keeps_last_value_and_time(server: ServerThread) -> None:
    server.publish("strava", {"activities": []})
    server.call(lambda: server.board.hub.publish_error("strava", "Strava needs re-authorizing"))
    state = json.loads(tornado.httpclient.HTTPClient().fetch(server.url + "/api/state").body)["topics"]["strava"]
    assert state["status"] == "error"
    assert state["error"] == "Strava needs re-authorizing"
    assert state["data"] == {"activities": []}
    assert state["updated_at"] is not None


def test_non_finite_value_never_reaches_the_wire(server: ServerThread) -> None:
    server.publish("sensor/a", {"temperature_c": float("nan")})
    body = tornado.httpclient.HTTPClient().fetch(server.url + "/api/state").body
    assert b"NaN" not in body
    state = json.loads(body)["topics"]["sensor/a"]
    assert state["data"] is None
    assert "not valid JSON" in state["error"]


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "null",
        "http://127.0.0.1.evil.example",
        "https://evil.example:8080",
        "file://",
    ],
)
def test_foreign_origin_is_refused(server: ServerThread, origin: str) -> None:
    async def scenario() -> None:
        with pytest.raises(tornado.httpclient.HTTPClientError) as err:
            await connect(server, origin=origin)
        assert err.value.code == 403

    asyncio.run(scenario())


def test_own_origin_and_configured_origins_are_accepted(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path, server={"allowed_origins": ["http://homeboard.local:8080"]})).start()
    try:

        async def scenario() -> None:
            for origin in (f"http://127.0.0.1:{srv.port}", "http://homeboard.local:8080"):
                conn = await connect(srv, origin=origin)
                assert (await read_json(conn))["type"] == "snapshot"
                conn.close()

        asyncio.run(scenario())
    finally:
        srv.stop()


def test_heartbeat_is_accepted_and_anything_else_closes_the_socket(server: ServerThread) -> None:
    seen: list[dict] = []
    server.call(lambda: server.board.hub.add_heartbeat_listener(lambda cid, msg: seen.append(msg)))

    async def scenario() -> None:
        conn = await connect(server)
        await read_json(conn)
        await conn.write_message(json.dumps({"type": "heartbeat", "role": "wall", "version": "x"}))
        for _ in range(50):
            if seen:
                break
            await asyncio.sleep(0.05)
        assert seen
        assert seen[0]["role"] == "wall"
        await conn.write_message(json.dumps({"type": "subscribe", "topic": "x"}))
        assert await asyncio.wait_for(conn.read_message(), 5) is None
        assert conn.close_code == 1008

        big = await connect(server)
        await read_json(big)
        await big.write_message("x" * 100_000)
        assert await asyncio.wait_for(big.read_message(), 5) is None
        assert big.close_code == 1009

    asyncio.run(scenario())


def test_reload_command_reaches_wall_clients_only(server: ServerThread) -> None:
    async def scenario() -> None:
        wall, viewer = await connect(server), await connect(server)
        await read_json(wall), await read_json(viewer)
        await wall.write_message(json.dumps({"type": "heartbeat", "role": "wall"}))
        await asyncio.sleep(0.3)
        n = server.call(lambda: server.board.hub.send_command({"type": "reload"}, role="wall"))
        assert n == 1
        assert (await read_json(wall))["type"] == "reload"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(viewer.read_message(), 0.5)

    asyncio.run(scenario())


def test_half_open_client_is_dropped_by_ping_timeout(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path, server={"ws_ping_interval_s": 0.3})).start()
    try:
        silent = _raw_ws_handshake(srv.port)  # completes the handshake, then never answers a ping
        assert srv.call(lambda: len(srv.board.hub.clients)) == 1
        # Tornado sends a close frame on ping timeout and aborts 5 s later if the peer does not answer it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and srv.call(lambda: len(srv.board.hub.clients)):
            time.sleep(0.1)
        assert srv.call(lambda: len(srv.board.hub.clients)) == 0
        silent.close()
    finally:
        srv.stop()
