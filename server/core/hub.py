"""The topic hub: latest state per topic, stale marking, and one-encode fan-out to live clients.

Lives on the event-loop thread only (no locks). Sources hand it values or errors; it decides what
the page shows. Each change is encoded once into one WebSocket frame that every client gets as is.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from server.core.jsonutil import dumpb
from server.core.message import Message
from server.core.timeutil import iso

log = logging.getLogger(__name__)

Status = str  # "ok" | "waiting" | "error" | "unavailable"
WAITING: Status = "waiting"  # configured, nothing received yet: not a fault (data, updated_at, error all null)


class Client(Protocol):
    """A live connection as the hub sees it (server.web.ws.LiveSocket)."""

    client_id: int
    role: str

    def send(self, message: Message) -> None: ...


@dataclass
class TopicState:
    data: dict[str, Any] | None = None
    updated_at: float | None = None  # epoch s of the last good value
    status: Status = WAITING
    error: str | None = None
    stale: bool = False
    max_age_s: float | None = None
    restored: bool = False  # loaded from last-known state: stale until a fresh value arrives
    encoded: bytes = b""

    def to_dict(self, tz: dt.tzinfo) -> dict[str, Any]:
        return {
            "data": self.data,
            "updated_at": iso(self.updated_at, tz),
            "stale": self.stale,
            "status": self.status,
            "error": self.error,
        }


Listener = Callable[[str, TopicState], None]
HeartbeatListener = Callable[[int, dict[str, Any]], None]


class Hub:
    def __init__(self, tz: dt.tzinfo, version: str, clock: Callable[[], float] = time.time) -> None:
        self.tz = tz
        self.version = version
        self.clock = clock
        self.topics: dict[str, TopicState] = {}
        self.clients: dict[int, Client] = {}
        self._listeners: list[Listener] = []
        self._heartbeat_listeners: list[HeartbeatListener] = []
        self._topics_json: bytes | None = None  # cached '{"t":{...},...}', rebuilt when a topic changes
        self._state_body: tuple[int, bytes, bytes] | None = None  # (second, topics bytes, body) of /api/state
        self.updates_sent = 0  # messages fanned out (for /metrics)
        self.frames_written = 0
        self.clients_evicted = 0

    # ------------------------------------------------------------ topics

    def declare(self, topic: str, max_age_s: float | None) -> TopicState:
        """Make a topic known (waiting until its first value) and set the age after which it is stale.

        The topics are exactly those the config declares: only a declared topic takes a restored value.
        """
        state = self.topics.get(topic)
        if state is None:
            state = self.topics[topic] = TopicState(max_age_s=max_age_s)
            self._changed(topic, state)
        else:
            state.max_age_s = max_age_s
        return state

    def get(self, topic: str) -> TopicState | None:
        return self.topics.get(topic)

    def publish(self, topic: str, data: dict[str, Any], updated_at: float | None = None) -> None:
        """A fresh, good value. Non-finite numbers are refused here, so no frame can ever carry NaN.

        `updated_at` (epoch s): when the value was made elsewhere (a leader's topic over MQTT); it may be stale.
        """
        state = self.topics.setdefault(topic, TopicState())
        now = self.clock()
        fresh = TopicState(
            data=data,
            updated_at=now if updated_at is None else updated_at,
            status="ok",
            error=None,
            max_age_s=state.max_age_s,
        )
        fresh.stale = updated_at is not None and self._is_stale(fresh, now)
        try:
            # Encoded once, here: the same bytes validate the value (no NaN, nothing unserialisable) and go out.
            encoded = dumpb(fresh.to_dict(self.tz))
        except (ValueError, TypeError) as err:
            log.error("refused a value for %s: %s", topic, err)
            self.publish_error(topic, f"refused a value that is not valid JSON: {err}")
            return
        state.data, state.updated_at, state.status, state.error = fresh.data, fresh.updated_at, "ok", None
        state.restored, state.stale = False, fresh.stale
        self._changed(topic, state, encoded)

    def publish_error(
        self, topic: str, message: str, status: Status = "error", *, data: dict[str, Any] | None = None
    ) -> None:
        """The source failed: keep the last good value and its time, say what is wrong. `data`: what the failed
        thing really is now, when that is known (a screen that did not switch reads back its old state)."""
        state = self.topics.setdefault(topic, TopicState())
        if state.status == status and state.error == message and (data is None or data == state.data):
            return
        if data is not None:
            state.data, state.updated_at = data, self.clock()
        state.status = status
        state.error = message
        state.stale = self._is_stale(state, self.clock())
        self._changed(topic, state)

    def restore(self, topic: str, data: dict[str, Any] | None, updated_at: float | None) -> bool:
        """A last-known value (from disk, or stale at a leader): shown at once, stale until a fresh value replaces
        it. A topic the config does not declare (a removed sensor or source) takes none: False."""
        state = self.topics.get(topic)
        if state is None:
            return False
        state.data, state.updated_at, state.restored = data, updated_at, True
        state.status, state.error, state.stale = "ok", None, True
        self._changed(topic, state)
        return True

    def recover(self, topic: str) -> None:
        """The thing behind a failed topic is back (a device says "online"): clear the error now. Its last value
        shows as ok, stale if it is old; without one, the topic is waiting again."""
        state = self.topics.get(topic)
        if state is None or state.status in ("ok", WAITING):
            return
        state.status = "ok" if state.data is not None else WAITING
        state.error = None
        state.stale = self._is_stale(state, self.clock())
        self._changed(topic, state)

    def check_stale(self) -> None:
        """Called every second: topics that just aged past their max age are pushed as stale."""
        now = self.clock()
        for topic, state in self.topics.items():
            stale = self._is_stale(state, now)
            if stale != state.stale:
                state.stale = stale
                self._changed(topic, state)

    @staticmethod
    def _is_stale(state: TopicState, now: float) -> bool:
        if state.updated_at is None:
            return False  # nothing shown, nothing stale
        if state.restored:
            return True
        return state.max_age_s is not None and now - state.updated_at > state.max_age_s

    def _changed(self, topic: str, state: TopicState, encoded: bytes | None = None) -> None:
        state.encoded = encoded if encoded is not None else dumpb(state.to_dict(self.tz))
        self._topics_json = None
        payload = b'{"type":"update","topic":' + dumpb(topic) + b"," + state.encoded[1:]
        self.broadcast(Message.of(payload))
        for fn in self._listeners:
            try:
                fn(topic, state)
            except Exception:  # a listener's bug must not stop publishing or the other listeners
                log.exception("listener %r failed on %s", fn, topic)

    # ------------------------------------------------------------ encoding

    def _topics_bytes(self) -> bytes:
        if self._topics_json is None:
            parts = [dumpb(t) + b":" + s.encoded for t, s in sorted(self.topics.items())]
            self._topics_json = b"{" + b",".join(parts) + b"}"
        return self._topics_json

    def state_body(self) -> bytes:
        """The body of GET /api/state, from the pre-encoded topics: the same bytes until a topic changes or the
        second turns (server_time has second precision), so a burst of requests costs one concatenation."""
        second = int(self.clock())
        topics = self._topics_bytes()
        cached = self._state_body
        if cached is None or cached[0] != second or cached[1] is not topics:
            body = b'{"server_time":' + dumpb(iso(second, self.tz)) + b',"topics":' + topics + b"}"
            cached = self._state_body = (second, topics, body)
        return cached[2]

    def snapshot_message(self) -> Message:
        now = dumpb(iso(self.clock(), self.tz))
        payload = (
            b'{"type":"snapshot","server_time":'
            + now
            + b',"version":'
            + dumpb(self.version)
            + b',"topics":'
            + self._topics_bytes()
            + b"}"
        )
        return Message.of(payload)

    def export(self) -> dict[str, Any]:
        """What the last-known-state store persists."""
        return {t: {"data": s.data, "updated_at": s.updated_at} for t, s in self.topics.items() if s.data is not None}

    # ------------------------------------------------------------ clients

    def add_client(self, client: Client) -> None:
        """A new client gets the snapshot first, then every update."""
        self.clients[client.client_id] = client
        client.send(self.snapshot_message())

    def remove_client(self, client: Client) -> None:
        self.clients.pop(client.client_id, None)

    def broadcast(self, message: Message, clients: Iterable[Client] | None = None) -> None:
        """The same bytes to every client. A client that fails or lags is its own problem (it evicts itself)."""
        targets = list(self.clients.values()) if clients is None else list(clients)
        self.updates_sent += 1
        for client in targets:
            try:
                client.send(message)
            except Exception:  # one broken socket must never keep the others from their update
                log.exception("sending to client %s failed", client.client_id)
        self.frames_written += len(targets)

    def send_command(self, command: dict[str, Any], role: str | None = None) -> int:
        """Push a control message (e.g. {"type": "reload"}) to clients of a role (or all). Returns the count."""
        targets = [c for c in self.clients.values() if role is None or c.role == role]
        self.broadcast(Message.of(dumpb(command)), targets)
        return len(targets)

    # ------------------------------------------------------------ listeners

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def add_heartbeat_listener(self, fn: HeartbeatListener) -> None:
        self._heartbeat_listeners.append(fn)

    def heartbeat(self, client_id: int, message: dict[str, Any]) -> None:
        for fn in self._heartbeat_listeners:
            try:
                fn(client_id, message)
            except Exception:
                log.exception("heartbeat listener %r failed", fn)
