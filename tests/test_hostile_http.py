"""HTTP parser abuse against the real server: every attempt is refused or closed, never a 5xx, never a hang."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.procutil import ServerProcess


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory):
    tmp: Path = tmp_path_factory.mktemp("hostile")
    srv = ServerProcess(tmp, {"server": {"idle_connection_timeout_s": 2}})
    srv.wait_ready()
    yield srv
    assert srv.stop() == 0, srv.log()


def raw(port: int, data: bytes, timeout_s: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        try:
            s.sendall(data)
        except OSError:  # the server may close while we are still sending: that is a refusal too
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return out


def status_of(response: bytes) -> int | None:
    if not response.startswith(b"HTTP/1."):
        return None  # closed without an answer
    return int(response.split(b" ", 2)[1])


def healthy(srv: ServerProcess) -> None:
    resp = raw(srv.port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert status_of(resp) == 200


CASES = {
    "huge header": b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
    "many headers": b"GET / HTTP/1.1\r\nHost: localhost\r\n"
    + b"".join(b"X-%d: y\r\n" % i for i in range(10_000))
    + b"\r\n",
    "obs-fold flood": b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Fold: a\r\n" + b" b\r\n" * 16_000 + b"\r\n",
    "CL and TE together": (
        b"POST /api/sensors/balcony/readings HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "double chunked": (
        b"POST /api/state HTTP/1.1\r\nHost: localhost\r\n"
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "bad content-length": b"POST /api/state HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n",
    "oversize body": b"POST /api/state HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 70_000,
    "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n",
    "many cookies": b"GET /api/state HTTP/1.1\r\nHost: localhost\r\nCookie: "
    + b"; ".join(b"c%d=v" % i for i in range(5000))
    + b"\r\nConnection: close\r\n\r\n",
    "urlencoded query flood": b"GET /api/state?"
    + b"&".join(b"a%d=1" % i for i in range(3000))
    + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
}


@pytest.mark.parametrize("name", list(CASES))
def test_parser_abuse_is_refused_without_a_5xx(proc: ServerProcess, name: str) -> None:
    t0 = time.monotonic()
    code = status_of(raw(proc.port, CASES[name]))
    assert code is None or code < 500, f"{name}: {code}"
    assert time.monotonic() - t0 < 5
    healthy(proc)


def test_slowloris_connections_are_closed_and_others_are_served(proc: ServerProcess) -> None:
    slow = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", proc.port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")  # and never finish the headers
        slow.append(s)
    t0 = time.monotonic()
    healthy(proc)
    assert time.monotonic() - t0 < 0.5, "other clients are served while slow ones dangle"
    time.sleep(3.5)  # idle_connection_timeout_s: 2 (the header timeout too)
    closed = 0
    for s in slow:
        s.settimeout(0.5)
        try:
            if s.recv(1) == b"":
                closed += 1
        except OSError:
            closed += 1
        s.close()
    assert closed == 100
    assert "Traceback" not in proc.log()
