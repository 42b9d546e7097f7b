"""server/web/wire.py writes pre-built frames past Tornado's public API: these fail loudly on a Tornado that breaks it.

A real Tornado server on a loopback port writes frames with wire.write_frame; Tornado's own websocket_connect
client and a raw socket reader must receive them intact, byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import tomllib
from pathlib import Path

import pytest
import tornado
import tornado.web
import tornado.websocket
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.websocket import WebSocketHandler, websocket_connect

from server.core.message import Message, ws_text_frame
from server.web import wire
from server.web.wire import WireUnsupported, check_connection, write_frame

REPO = Path(__file__).resolve().parent.parent
# Every header form of RFC 6455 §5.2 (7-bit, 16-bit, 64-bit length) and its edges; multi-byte UTF-8 too.
PAYLOADS = [
    b"",
    b'{"type":"update"}',
    b"x" * 125,
    b"y" * 126,
    ("Vardagsrum åäö 🌡" * 3000).encode()[:65532].decode("utf-8", "ignore").encode().ljust(65535, b"."),
    b"z" * 65536,
    ('{"t":"' + "ö" * 40000 + '"}').encode(),
]


class Sender(WebSocketHandler):
    """On open: check the connection, then write every payload as a pre-built frame."""

    checks: list[Exception | None]

    def initialize(self, checks: list[Exception | None]) -> None:
        self.checks = checks

    def open(self) -> None:
        try:
            check_connection(self.ws_connection)
            self.checks.append(None)
        except WireUnsupported as err:
            self.checks.append(err)
        for payload in PAYLOADS:
            write_frame(self.ws_connection, Message.of(payload))


async def serve(checks: list[Exception | None]) -> tuple[HTTPServer, int]:
    server = HTTPServer(tornado.web.Application([(r"/ws", Sender, {"checks": checks})]))
    sockets = bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


def test_pyproject_pins_the_tested_tornado_range_and_it_is_installed() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if re.match(r"tornado\b", d)).split("#")[0].replace(" ", "")
    low, high = wire.TESTED_TORNADO
    assert spec == f"tornado>={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
    assert low <= tornado.version_info[: len(low)], tornado.version
    assert tornado.version_info[: len(high)] < high, tornado.version


def test_frames_reach_tornados_own_client_intact() -> None:
    async def run() -> list[str | bytes | None]:
        checks: list[Exception | None] = []
        server, port = await serve(checks)
        try:
            conn = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
            got = [await asyncio.wait_for(conn.read_message(), 10) for _ in PAYLOADS]
            conn.close()
        finally:
            server.stop()
        assert checks == [None], checks  # the internals wire.py relies on exist on a live connection
        return got

    got = asyncio.run(run())
    assert got == [p.decode("utf-8") for p in PAYLOADS]


def test_frames_are_byte_exact_on_a_raw_socket() -> None:
    """What a browser reads: the 101 answer, then exactly our frames, nothing re-framed, masked or compressed."""

    async def run() -> bytes:
        checks: list[Exception | None] = []
        server, port = await serve(checks)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            key = base64.b64encode(os.urandom(16)).decode()
            # Offering permessage-deflate: the server must not negotiate it, or pre-built frames would be wrong.
            writer.write(
                (
                    f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
                ).encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 101"), head
            assert b"permessage-deflate" not in head.lower()
            expected = sum(len(ws_text_frame(p)) for p in PAYLOADS)
            body = await asyncio.wait_for(reader.readexactly(expected), 10)
            writer.close()
        finally:
            server.stop()
        return body

    assert asyncio.run(run()) == b"".join(ws_text_frame(p) for p in PAYLOADS)


def test_a_tornado_without_the_internals_is_refused_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    class Renamed(tornado.websocket.WebSocketProtocol):
        """As if a release renamed everything but the stream."""

        def _accept_connection(self, handler: object) -> None:
            self.stream = None

    monkeypatch.setattr(wire, "WebSocketProtocol13", Renamed)
    with pytest.raises(WireUnsupported, match=r"_compressor, mask_outgoing, _wire_bytes_out.*tested with tornado"):
        wire._check_tornado()
    with pytest.raises(WireUnsupported, match="is a object"):
        check_connection(object())
