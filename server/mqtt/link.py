"""The one MQTT connection: paho's network thread, reconnects with back-off, and every message handed to the loop.

paho runs in its own thread (loop_start). Nothing here touches the hub from that thread: each callback is handed
to the event loop with call_soon_threadsafe, and handlers run there. QoS 1 messages are acknowledged by hand
(manual_ack) once their handler has finished — for a sensor reading, once it is stored durably — so a broker
with a persistent session redelivers whatever we had not finished when the connection or the process died.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from server.config import MqttConfig
from server.core.timeutil import iso

log = logging.getLogger(__name__)

STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"
MAX_QUEUED_MESSAGES = 1000  # QoS 1 publishes paho keeps while disconnected; state is republished whole anyway
CONNECT_TIMEOUT_S = 10.0
STOP_WAIT_S = 2.0  # shutdown must finish within systemd's budget even while a connect attempt hangs


@dataclass(frozen=True)
class Inbound:
    """A received message, as handlers on the loop see it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool  # True: a stored retained message sent at subscribe time, not a live one
    mid: int
    generation: int  # which connection it came on (an ack is only valid on that connection)
    received_at: float  # epoch s


Handler = Callable[[Inbound], Awaitable[None] | None]


class _Client(paho.Client):
    """paho's client, telling us why a connection attempt failed (paho itself only retries, silently)."""

    connect_error: Callable[[BaseException], None] | None = None

    def reconnect(self) -> paho.MQTTErrorCode:
        try:
            return super().reconnect()
        except Exception as err:
            if self.connect_error is not None:
                self.connect_error(err)
            raise


def describe_error(err: BaseException) -> str:
    """A connect error for people: what failed, never a credential (paho's errors carry none)."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate is not trusted ({err.verify_message}); check mqtt.tls.ca_certs"
    if isinstance(err, ssl.SSLError):
        return f"TLS: {err.reason or err}"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused (is the broker running, and on this port?)"
    if isinstance(err, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT_S:g} s"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return f"{type(err).__name__}: {err}"


class MqttLink:
    """Owns the paho client. Subscriptions are declared before start(); handlers run on the event loop."""

    def __init__(self, config: MqttConfig, tz: Any, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.tz = tz
        self.clock = clock
        self.base = config.base
        self.status_topic = f"{self.base}/status"
        self._subs: list[tuple[str, int, Handler]] = []
        self._connect_listeners: list[Callable[[bool], Awaitable[None] | None]] = []
        self._disconnect_listeners: list[Callable[[str], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: _Client | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Loop-thread state (read by /healthz).
        self.connected = False
        self.generation = 0
        self.last_error: str | None = None
        self.last_connected_at: float | None = None
        self.last_disconnected_at: float | None = None
        self.received = 0
        self.handler_errors = 0
        self._stopping = False

    # ------------------------------------------------------------------ wiring (before start)

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Subscribe on every (re)connect; `handler(inbound)` runs on the loop for each matching message."""
        self._subs.append((topic_filter, qos, handler))

    @property
    def topic_filters(self) -> list[str]:
        return sorted({f for f, _, _ in self._subs})

    def on_connected(self, fn: Callable[[bool], Awaitable[None] | None]) -> None:
        """fn(session_present) on the loop after each CONNACK that accepted us."""
        self._connect_listeners.append(fn)

    def on_disconnected(self, fn: Callable[[str], None]) -> None:
        self._disconnect_listeners.append(fn)

    # ------------------------------------------------------------------ lifecycle

    def _make_client(self) -> _Client:
        cfg = self.config
        v5 = cfg.protocol == "mqttv5"
        kwargs: dict[str, Any] = {
            "callback_api_version": CallbackAPIVersion.VERSION2,
            "client_id": cfg.client,
            "protocol": paho.MQTTv5 if v5 else paho.MQTTv311,
            "manual_ack": True,
        }
        if not v5:
            kwargs["clean_session"] = False  # the broker keeps our subscriptions and queues QoS 1 while we are away
        client = _Client(**kwargs)
        client.connect_error = self._paho_connect_error
        client.connect_timeout = CONNECT_TIMEOUT_S
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls is not None:
            context = ssl.create_default_context(cafile=cfg.tls.ca_certs)
            if cfg.tls.certfile is not None:
                context.load_cert_chain(cfg.tls.certfile, cfg.tls.keyfile)
            client.tls_set_context(context)
            client.tls_insecure_set(cfg.tls.insecure)
        # Last will: the broker says "offline" for us when the connection dies without a goodbye.
        client.will_set(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_message = self._paho_message
        return client

    async def start(self) -> None:
        """Start connecting in paho's thread; returns at once (a broker that is down never blocks start-up)."""
        self._loop = asyncio.get_running_loop()
        self._client = self._make_client()
        cfg = self.config
        kwargs: dict[str, Any] = {}
        if cfg.protocol == "mqttv5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = cfg.session_expiry_s
            kwargs = {"clean_start": False, "properties": props}
        self._client.connect_async(cfg.host, cfg.port, cfg.keepalive_s, **kwargs)
        self._client.loop_start()
        log.info("mqtt: connecting to %s as %s (base topic %s)", self.broker, cfg.client, self.base)

    async def stop(self, goodbye: bool = True) -> None:
        """Say "offline" (a clean disconnect does not trigger the will), disconnect, join paho's thread."""
        client = self._client
        if client is None:
            return
        self._stopping = True
        if goodbye and self.connected:
            info = client.publish(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
            await self.wait_published([info], timeout_s=2.0)
        client.disconnect()
        # Joined from a daemon thread of our own, not the executor: paho's thread may sit in a connect attempt
        # to a host that does not answer (up to CONNECT_TIMEOUT_S), and shutdown must not wait for that.
        stopped = threading.Event()
        threading.Thread(target=lambda: (client.loop_stop(), stopped.set()), name="mqtt-stop", daemon=True).start()
        deadline = time.monotonic() + STOP_WAIT_S
        while not stopped.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if not stopped.is_set():
            log.warning("mqtt: the network thread did not stop within %g s; leaving it behind", STOP_WAIT_S)
        for task in list(self._tasks):
            task.cancel()
        self._client = None
        self.connected = False

    @property
    def broker(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    # ------------------------------------------------------------------ publishing (loop thread)

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> Any:
        """Queue a message; returns paho's MQTTMessageInfo, or None when not connected (state is resent whole)."""
        if self._client is None or not self.connected:
            return None
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    async def wait_published(self, infos: list[Any], timeout_s: float = 10.0) -> bool:
        """Until the broker acknowledged each message (QoS 1) or timeout_s passed. Never blocks the loop."""
        deadline = time.monotonic() + timeout_s
        pending = [i for i in infos if i is not None]
        failed = len(pending) < len(infos)
        while pending and time.monotonic() < deadline:
            still = []
            for info in pending:
                try:
                    if not info.is_published():
                        still.append(info)
                except (ValueError, RuntimeError):  # paho: not queued (disconnected meanwhile, queue full)
                    failed = True
            pending = still
            if pending:
                await asyncio.sleep(0.02)
        return not pending and not failed

    def unsubscribe(self, topics: list[str]) -> None:
        if self._client is not None and topics and self.connected:
            self._client.unsubscribe(topics)

    # ------------------------------------------------------------------ paho thread → loop

    def _to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed between the check and the call (shutdown)
            pass

    def _paho_connect_error(self, err: BaseException) -> None:
        self._to_loop(self._connect_failed, describe_error(err))

    def _paho_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._to_loop(self._connect_failed, f"the broker refused the connection: {reason}")
            return
        # Subscribe here, in paho's thread, before any message of the new connection is read.
        topics = sorted({(f, q) for f, q, _ in self._subs})
        if topics:
            client.subscribe(topics)
        client.publish(self.status_topic, STATUS_ONLINE, qos=1, retain=True)
        self._to_loop(self._connected, bool(getattr(flags, "session_present", False)))

    def _paho_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._to_loop(self._disconnected, str(reason))

    def _paho_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        inbound = Inbound(
            topic=msg.topic,
            payload=bytes(msg.payload),
            qos=msg.qos,
            retain=bool(msg.retain),
            mid=msg.mid,
            generation=-1,  # set on the loop, where the generation is kept
            received_at=time.time(),
        )
        self._to_loop(self._dispatch, inbound)

    # ------------------------------------------------------------------ loop thread

    def _connect_failed(self, message: str) -> None:
        if message != self.last_error:
            log.warning("mqtt: cannot connect to %s: %s (retrying with back-off)", self.broker, message)
        self.last_error = message

    def _connected(self, session_present: bool) -> None:
        self.generation += 1
        self.connected = True
        self.last_connected_at = self.clock()
        if self.last_error is not None or self.generation > 1:
            log.info("mqtt: connected to %s%s", self.broker, " (session resumed)" if session_present else "")
        else:
            log.info("mqtt: connected to %s", self.broker)
        self.last_error = None
        for fn in self._connect_listeners:
            self._run(fn, session_present)

    def _disconnected(self, reason: str) -> None:
        was = self.connected
        self.connected = False
        self.last_disconnected_at = self.clock()
        if self._stopping:
            return
        if was:
            message = f"disconnected: {reason}"
            log.warning("mqtt: %s; reconnecting with back-off", message)
            self.last_error = message
            for fn in self._disconnect_listeners:
                try:
                    fn(message)
                except Exception:  # one listener's bug must not keep the others from hearing
                    log.exception("mqtt: disconnect listener %r failed", fn)

    def _run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Task[Any] | None:
        try:
            result = fn(*args)
        except Exception:  # a handler bug: logged, counted, the connection and other handlers go on
            self.handler_errors += 1
            log.exception("mqtt: handler %r failed", fn)
            return None
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
            return task
        return None

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.handler_errors += 1
            log.error("mqtt: handler failed", exc_info=task.exception())

    def _dispatch(self, inbound: Inbound) -> None:
        inbound = dataclasses.replace(inbound, generation=self.generation)
        self.received += 1
        waits = []
        for topic_filter, _qos, handler in self._subs:
            if paho.topic_matches_sub(topic_filter, inbound.topic):
                task = self._run(handler, inbound)
                if task is not None:
                    waits.append(task)
        if not waits:
            self._ack(inbound)
            return
        done = asyncio.ensure_future(asyncio.wait(waits))
        done.add_done_callback(lambda _f: self._ack_if_handled(inbound, waits))

    def _ack_if_handled(self, inbound: Inbound, tasks: list[asyncio.Task[Any]]) -> None:
        # A handler that raised did not finish with the message: no ack, so the broker sends it again
        # after the next connect (persistent session).
        if not any(t.cancelled() or t.exception() is not None for t in tasks):
            self._ack(inbound)

    def _ack(self, inbound: Inbound) -> None:
        # An ack belongs to the connection the message came on: after a reconnect the broker resends it instead.
        # None while stopping: what is still in hand then is redelivered after the restart, not lost.
        if inbound.qos == 0 or self._client is None or self._stopping:
            return
        if inbound.generation == self.generation and self.connected:
            self._client.ack(inbound.mid, inbound.qos)

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "status": "ok" if self.connected else "degraded",
            "connected": self.connected,
            "broker": self.broker,
            "tls": cfg.tls is not None,
            "client_id": cfg.client,
            "base_topic": self.base,
            "role": cfg.role,
            "last_error": self.last_error,
            "last_connected": iso(self.last_connected_at, self.tz),
            "last_disconnected": iso(self.last_disconnected_at, self.tz),
            "messages_received": self.received,
            "handler_errors": self.handler_errors,
        }
