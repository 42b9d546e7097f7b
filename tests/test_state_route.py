"""GET /api/state on its lean path (server/web/state_route.py) answers as every JSON route does; else 405."""

from __future__ import annotations

import json
import socket

from tests.serverthread import ServerThread


def raw_exchange(port: int, request: bytes, answers: int) -> list[tuple[bytes, dict[str, str], bytes]]:
    """Send raw bytes; read `answers` responses framed by Content-Length. Returns (status line, headers, body)."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        buf = b""
        for _ in range(answers):
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                assert chunk, f"closed early after {len(out)} answers"
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            status, *lines = head.split(b"\r\n")
            headers = {k.decode().lower(): v.decode() for k, _, v in (ln.partition(b": ") for ln in lines)}
            size = int(headers["content-length"])
            while len(buf) < size:
                chunk = s.recv(65536)
                assert chunk, "closed inside a body"
                buf += chunk
            out.append((status, headers, buf[:size]))
            buf = buf[size:]
        s.settimeout(2)
        try:
            rest = s.recv(1)  # b"" once the server has closed the connection
        except TimeoutError:
            rest = None
        out.append((b"", {"closed": str(rest == b"")}, b""))
    return out


def test_get_answers_with_the_json_headers_on_keep_alive(server: ServerThread) -> None:
    req = b"GET /api/state HTTP/1.1\r\nHost: localhost\r\n\r\n"
    answers = raw_exchange(server.port, req + req + b"GET /api/state?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n", 3)
    for status, headers, body in answers[:3]:
        assert status == b"HTTP/1.1 200 OK"
        assert headers["content-type"] == "application/json; charset=utf-8"
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert "date" in headers
        assert "server" not in headers
        doc = json.loads(body)
        assert set(doc) == {"server_time", "topics"}
        assert isinstance(doc["topics"], dict)
    assert answers[3][1]["closed"] == "False"  # HTTP/1.1: the connection stays open


def test_http10_closes_after_the_answer(server: ServerThread) -> None:
    answers = raw_exchange(server.port, b"GET /api/state HTTP/1.0\r\n\r\n", 1)
    assert answers[0][0] == b"HTTP/1.1 200 OK"
    assert json.loads(answers[0][2])["topics"] is not None
    assert answers[1][1]["closed"] == "True"


def test_other_methods_get_405_as_json(server: ServerThread) -> None:
    for method in (b"POST", b"PUT", b"DELETE", b"HEAD"):
        req = method + b" /api/state HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(req)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 405"), (method, head)
        assert b"nosniff" in head
        if method != b"HEAD":
            assert json.loads(body) == {"error": "Method Not Allowed"}
