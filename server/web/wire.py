"""The WebSocket wire: an update is framed once (RFC 6455) and that frame is written as is to every client.

Tornado's `write_message` frames each message again for every connection; with hundreds of clients that is
most of a broadcast's cost. So the hub builds one `Message` (the JSON and its ready-made frame, framed in
server/core/message.py) and `write_frame` puts the frame straight onto each connection's stream. That step goes
past Tornado's public API, and this module is the only place that does: it relies on these internals of
`tornado.websocket.WebSocketProtocol13` (checked when this module is imported, and again on the first
connection; tests/test_wire.py fails on a Tornado release that changes them):

- `stream`: the connection's IOStream, used through its public API (`writing()`, `closed()`, `socket`,
  `write(bytes) -> Future`): a frame goes straight to the socket when nothing is queued, else behind the queue;
- `_compressor`: None unless permessage-deflate was negotiated (a pre-built frame is only right uncompressed;
  with a compressor the message goes through `write_message` instead);
- `mask_outgoing`: False on the server side (server frames are never masked);
- `_wire_bytes_out`: the connection's byte counter, kept in step as `_write_frame` does.

The Tornado versions this was tested with are the range pinned in pyproject.toml (TESTED_TORNADO below).
"""

from __future__ import annotations

import asyncio

import tornado
from tornado.iostream import IOStream
from tornado.websocket import WebSocketProtocol13

from server.core.message import Message

# The range pyproject.toml allows; tests/test_wire.py checks both agree and that the installed one is in it.
TESTED_TORNADO = ((6, 6, 1), (6, 7))  # [from, to)
# What WebSocketProtocol13 must still set and use for write_frame to be right (attribute names in its code).
_REQUIRED_ATTRIBUTES = ("stream", "_compressor", "mask_outgoing", "_wire_bytes_out")


class WireUnsupported(RuntimeError):
    """This Tornado does not have the internals write_frame relies on: pin Tornado to TESTED_TORNADO."""


def _check_tornado() -> None:
    """At import: the connection class still uses every attribute we rely on (names in its methods' bytecode)."""
    names: set[str] = set()
    for cls in WebSocketProtocol13.__mro__:
        for member in vars(cls).values():
            code = getattr(member, "__code__", None)
            if code is not None:
                names.update(code.co_names)
    missing = [name for name in _REQUIRED_ATTRIBUTES if name not in names]
    if missing:
        raise WireUnsupported(
            f"tornado {tornado.version}: WebSocketProtocol13 no longer sets {', '.join(missing)}; the pre-built "
            f"frame writer (server/web/wire.py) was tested with tornado >= {_dotted(TESTED_TORNADO[0])}, "
            f"< {_dotted(TESTED_TORNADO[1])}"
        )


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


_check_tornado()
_connection_checked = False


def check_connection(conn: object) -> None:
    """On a live connection: the attributes exist and hold what write_frame expects. Raises WireUnsupported."""
    if not isinstance(conn, WebSocketProtocol13):
        raise WireUnsupported(f"tornado {tornado.version}: the connection is a {type(conn).__name__}")
    missing = [name for name in _REQUIRED_ATTRIBUTES if not hasattr(conn, name)]
    if missing:
        raise WireUnsupported(f"tornado {tornado.version}: a WebSocket connection has no {', '.join(missing)}")
    if conn.mask_outgoing:
        raise WireUnsupported("a server-side connection masks its frames: a pre-built frame would be wrong")


def write_frame(conn: WebSocketProtocol13, message: Message) -> asyncio.Future[None] | None:
    """Write one pre-built message to a server-side connection.

    Returns None when the whole frame went to the kernel at once (the usual case: nothing left to wait for),
    else a Future that resolves when the rest has drained. Raises tornado.iostream.StreamClosedError (or
    WebSocketClosedError) when the connection is gone.
    """
    global _connection_checked  # noqa: PLW0603 - once per process: the first connection proves the rest
    if not _connection_checked:
        check_connection(conn)
        _connection_checked = True
    if conn._compressor is not None:  # permessage-deflate: the frame must be compressed per connection
        return conn.write_message(message.payload.decode("utf-8"))
    frame = message.frame
    conn._wire_bytes_out += len(frame)
    stream = conn.stream
    # Nothing queued in the stream: send now, as IOStream.write would, but without its Future and two
    # callbacks per client (a third of a broadcast's CPU at 1000 clients). Plain TCP only: TLS goes the
    # ordinary way. Anything queued: append behind it, so frames never overtake each other.
    if type(stream) is IOStream and not stream.writing() and not stream.closed():
        try:
            sent = stream.socket.send(frame)
        except OSError:  # would block, or the peer is gone: IOStream.write below meets it and closes its way
            sent = 0
        if sent == len(frame):
            return None
        frame = frame[sent:]
    return stream.write(frame)


def abort(conn: WebSocketProtocol13) -> None:
    """Drop the connection at once, without a close frame (it would queue behind data the peer is not reading)."""
    stream = getattr(conn, "stream", None)
    if stream is not None:
        stream.close()
