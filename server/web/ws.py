"""The /ws endpoint: a snapshot, then updates; a bounded send buffer per client; heartbeats in."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from server.core.hub import Hub
from server.core.message import Message
from server.web.wire import abort, write_frame

log = logging.getLogger(__name__)

_ids = itertools.count(1)
MAX_INCOMING_BYTES = 4096  # a heartbeat is ~150 bytes; anything large is not from our page


def origin_allowed(origin: str, host_header: str, allowed: tuple[str, ...]) -> bool:
    """Same host as the request (any scheme/port the browser used to reach us), or listed in config."""
    origin = origin.strip().lower().rstrip("/")
    if origin in {a.lower().rstrip("/") for a in allowed}:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc == host_header.strip().lower()


class LiveSocket(WebSocketHandler):
    """One browser. Writes never wait: a client that falls behind is closed, the others go on."""

    def initialize(
        self, hub: Hub, allowed_origins: tuple[str, ...], max_pending_bytes: int, max_drain_s: float
    ) -> None:
        self.hub = hub
        self.allowed_origins = allowed_origins
        self.max_pending_bytes = max_pending_bytes
        self.max_drain_s = max_drain_s
        self.client_id = next(_ids)
        self.role = "viewer"
        self.last_heartbeat: dict[str, Any] | None = None
        self._pending: deque[tuple[float, int]] = deque()  # (queued_at, bytes) per unflushed write, in order
        self._pending_bytes = 0
        self._closed = False
        self.evicted_reason: str | None = None

    def check_origin(self, origin: str) -> bool:
        ok = origin_allowed(origin, self.request.host or "", self.allowed_origins)
        if not ok:
            log.warning("refused a WebSocket from foreign origin %r", origin[:200])
        return ok

    def open(self) -> None:
        # Updates are small and must not wait: without this, Nagle's algorithm holds a frame back until the
        # previous one is acknowledged, and the peer's delayed ACK makes that up to tens of milliseconds.
        self.set_nodelay(True)
        self.hub.add_client(self)

    def on_close(self) -> None:
        self._closed = True
        self.hub.remove_client(self)

    def on_message(self, message: str | bytes) -> None:
        # The only thing a page sends is a small heartbeat; anything else means a confused or hostile peer.
        try:
            msg = json.loads(message) if len(message) <= MAX_INCOMING_BYTES else None
        except ValueError:
            msg = None
        if not isinstance(msg, dict) or msg.get("type") != "heartbeat":
            self.close(1008, "only heartbeat messages are accepted")
            return
        role = msg.get("role")
        self.role = role if role in ("wall", "viewer") else "viewer"
        self.last_heartbeat = {**msg, "received_at": time.time()}
        self.hub.heartbeat(self.client_id, msg)

    # ------------------------------------------------------------ sending

    def send(self, message: Message) -> None:
        """Queue one pre-encoded message; evict instead of buffering without bound."""
        if self._closed:
            return
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return
        if self._pending_bytes > self.max_pending_bytes:
            self.evict(f"more than {self.max_pending_bytes} bytes pending")
            return
        size = len(message.frame)
        try:
            future = write_frame(conn, message)  # the frame built once for all clients (server/web/wire.py)
        except (StreamClosedError, WebSocketClosedError):
            self._closed = True
            return
        if future is None:  # all of it is with the kernel already
            return
        self._pending.append((time.monotonic(), size))
        self._pending_bytes += size
        future.add_done_callback(self._flushed)

    def _flushed(self, future: Any) -> None:
        # Stream write futures resolve in order, so the oldest pending entry is the one that just drained.
        if self._pending:
            _, size = self._pending.popleft()
            self._pending_bytes -= size
        if future.exception() is not None:  # the stream closed under us; on_close cleans up
            self._pending.clear()
            self._pending_bytes = 0

    def check_drain(self, now_monotonic: float) -> None:
        """Called every second by the app: a write that has not drained in max_drain_s means a stuck reader."""
        if self._pending and now_monotonic - self._pending[0][0] > self.max_drain_s:
            self.evict(f"a write has not drained in {self.max_drain_s:.0f} s")

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def evict(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.evicted_reason = reason
        self.hub.remove_client(self)
        log.warning("dropped slow client %s (%s): %s", self.client_id, self.request.remote_ip, reason)
        self.hub.clients_evicted += 1
        # Abort rather than a polite close: a close frame would queue behind the data the client is not reading.
        conn = self.ws_connection
        if conn is not None:
            abort(conn)
