"""The process: last-known state across restarts, systemd notify, clean SIGTERM, TLS with reload."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from tornado.websocket import websocket_connect

from tests.conftest import make_config, require_tool
from tests.procutil import ServerProcess
from tests.serverthread import ServerThread


def test_restart_restores_last_known_state_marked_stale(tmp_path: Path) -> None:
    # A configured source (its upstream never answers here: the interval is long, the first poll fails later).
    weather = {"api_key": "k" * 12, "base_url": "http://127.0.0.1:9/v1", "interval_s": 3600}
    cfg = make_config(tmp_path, sources={"weather": weather})
    first = ServerThread(cfg).start()
    first.publish("weather", {"temperature_c": -4.5, "condition": "Snow"})
    first.stop()
    assert (tmp_path / "var" / "last_state.json").stat().st_mode & 0o777 == 0o600

    second = ServerThread(cfg).start()
    try:
        with urllib.request.urlopen(second.url + "/api/state") as r:
            state = json.load(r)["topics"]["weather"]
        assert state["data"] == {"temperature_c": -4.5, "condition": "Snow"}
        assert state["stale"] is True
        assert state["updated_at"] is not None
        second.publish("weather", {"temperature_c": -3.0})
        with urllib.request.urlopen(second.url + "/api/state") as r:
            fresh = json.load(r)["topics"]["weather"]
        assert fresh["stale"] is False
    finally:
        second.stop()


def test_damaged_last_state_is_ignored_not_fatal(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    (var / "last_state.json").write_text('{"format": 1, "topics": {"w": {"data": {"t": NaN}, "updated_at": 1}}')
    (var / "last_state.json.tmp.123").write_text("half")
    srv = ServerThread(make_config(tmp_path)).start()
    try:
        with urllib.request.urlopen(srv.url + "/api/state") as r:
            assert "w" not in json.load(r)["topics"]
    finally:
        srv.stop()


def _notify_listener(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    return sock, path


def test_ready_and_watchdog_pings_reach_systemd(tmp_path: Path) -> None:
    sock, path = _notify_listener(tmp_path)
    srv = ServerProcess(tmp_path, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    try:
        first = sock.recv(1024).decode()
        assert first.startswith("READY=1")
        with urllib.request.urlopen(srv.url + "/healthz", timeout=2) as r:
            assert r.status == 200, "READY is sent only once the port is bound"
        t0 = time.monotonic()
        pings = []
        while len(pings) < 3:
            msg = sock.recv(1024).decode()
            if msg == "WATCHDOG=1":
                pings.append(time.monotonic())
        gaps = [b - a for a, b in zip([t0, *pings], pings, strict=False)][1:]
        assert all(0.3 < g < 0.8 for g in gaps), gaps  # half of WATCHDOG_USEC
    finally:
        assert srv.stop() == 0
        sock.close()


def test_sigterm_with_clients_connected_exits_cleanly_within_5_s(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path)
    srv.wait_ready()

    async def clients() -> list:
        conns = [await websocket_connect(srv.url.replace("http", "ws") + "/ws") for _ in range(20)]
        for c in conns:
            await c.read_message()
        return conns

    loop = asyncio.new_event_loop()
    try:
        conns = loop.run_until_complete(clients())
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)

        async def drain() -> list[int | None]:
            for c in conns:
                await asyncio.wait_for(c.read_message(), 5)
            return [c.close_code for c in conns]

        codes = loop.run_until_complete(drain())
        rc = srv.proc.wait(5)
        elapsed_s = time.monotonic() - t0
    finally:
        loop.close()
    assert rc == 0
    assert elapsed_s < 5
    assert codes == [1001] * 20
    srv.stop()


def _make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    openssl = require_tool("openssl")
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def _served_cert_cn(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-subject"], input=pem, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().split("CN")[-1].strip(" =")


def test_tls_serves_https_and_wss_and_reloads_a_renewed_certificate(tmp_path: Path) -> None:
    cert, key = _make_cert(tmp_path, "first")
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live_cert.write_bytes(cert.read_bytes())
    live_key.write_bytes(key.read_bytes())
    doc = {"server": {"tls": {"certfile": str(live_cert), "keyfile": str(live_key), "reload_check_s": 0.3}}}
    srv = ServerProcess(tmp_path, doc, scheme="https")
    ctx = ssl.create_default_context(cafile=str(cert))
    try:
        srv.wait_ready(context=ctx)
        with urllib.request.urlopen(srv.url + "/api/state", context=ctx) as r:
            assert "topics" in json.load(r)

        async def wss() -> str:
            from tornado.httpclient import HTTPRequest

            conn = await websocket_connect(HTTPRequest(f"wss://127.0.0.1:{srv.port}/ws", ssl_options=ctx))
            msg = json.loads(await conn.read_message())
            conn.close()
            return msg["type"]

        assert asyncio.run(wss()) == "snapshot"
        # Old protocols are refused: the context the server uses has TLS 1.2 as its floor.
        from server.core.tls import ReloadingCertificate

        assert ReloadingCertificate(str(cert), str(key)).context.minimum_version == ssl.TLSVersion.TLSv1_2

        assert _served_cert_cn(srv.port) == "first"
        new_cert, new_key = _make_cert(tmp_path, "renewed")
        live_key.write_bytes(new_key.read_bytes())
        live_cert.write_bytes(new_cert.read_bytes())
        os.utime(live_cert, (time.time() + 5, time.time() + 5))
        deadline = time.monotonic() + 5
        while _served_cert_cn(srv.port) != "renewed" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _served_cert_cn(srv.port) == "renewed"

        third_cert, third_key = _make_cert(tmp_path, "hup")
        live_key.write_bytes(third_key.read_bytes())
        live_cert.write_bytes(third_cert.read_bytes())
        os.utime(live_cert, (1, 1))  # an mtime the periodic check might not notice: SIGHUP must
        os.utime(live_key, (1, 1))
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while _served_cert_cn(srv.port) != "hup" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _served_cert_cn(srv.port) == "hup"
    finally:
        assert srv.stop() == 0


def test_unreadable_tls_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    cert, _key = _make_cert(tmp_path, "x")
    doc = {"server": {"tls": {"certfile": str(cert), "keyfile": str(tmp_path / "missing.key")}}}
    srv = ServerProcess(tmp_path, doc)
    assert srv.proc.wait(20) == 2
    assert "server.tls.keyfile: cannot read" in srv.log()
    srv.stop()


def test_static_files_stay_inside_the_kiosk_root(server: ServerThread) -> None:
    for path in (
        "/../config.yaml",
        "/%2e%2e/config.yaml",
        "/..%2fconfig.yaml",
        "/%252e%252e/config.yaml",
        "/css/../../config.yaml",
        "/..\\config.yaml",
        "/%00",
        "//etc/passwd",
    ):
        try:
            with urllib.request.urlopen(server.url + path) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as err:
            status, body = err.code, b""
        assert status in (400, 403, 404), (path, status)
        assert b"api_key" not in body, path
