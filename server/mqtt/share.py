"""Several displays, one set of pollers: a leader shares its topics over MQTT, followers show them.

Leader: every change of a shared topic (weather, departures, strava, calendar, sensor/* by default) is published
retained under <base>/topics/<topic> as the TOPIC_STATE of /api/state plus the topic's max_age_s.
Follower: takes <leader>/topics/# into its own hub with the leader's updated_at, so the same freshness and stale
rules hold; when the leader's status turns "offline" (its last will), its topics become unavailable and stale
with "leader offline", until the leader publishes again.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from server.core.hub import WAITING, Hub, TopicState
from server.core.jsonutil import dumpb
from server.core.timeutil import parse_iso
from server.mqtt.link import STATUS_OFFLINE, STATUS_ONLINE, Inbound, MqttLink
from server.mqtt.retained import RetainedRecord
from server.readings.path import ReadingPath
from server.readings.reading import QUANTITIES, Reading, ReadingError, make_reading

log = logging.getLogger(__name__)

MAX_TOPIC_PAYLOAD_BYTES = 1 << 20
LEADER_OFFLINE = "leader offline"
STATUSES = ("ok", WAITING, "error", "unavailable")


def matches(patterns: tuple[str, ...], topic: str) -> bool:
    """ "weather" matches itself; "sensor/*" matches sensor/<anything>."""
    for pattern in patterns:
        if pattern.endswith("/*"):
            if topic.startswith(pattern[:-1]) and len(topic) > len(pattern) - 1:
                return True
        elif topic == pattern:
            return True
    return False


def shared_payload(state: TopicState, tz: Any) -> bytes:
    return dumpb({**state.to_dict(tz), "max_age_s": state.max_age_s})


class TopicSharer:
    """Leader side: hub listener that publishes shared topics retained (loop thread)."""

    def __init__(self, link: MqttLink, hub: Hub, patterns: tuple[str, ...], record: RetainedRecord) -> None:
        self.link = link
        self.hub = hub
        self.patterns = patterns
        self.record = record
        self.prefix = f"{link.base}/topics/"
        self.published = 0

    def on_topic(self, topic: str, state: TopicState) -> None:
        if self.link.connected and matches(self.patterns, topic):
            self._publish(topic, state)

    def _publish(self, topic: str, state: TopicState) -> str:
        mqtt_topic = self.prefix + topic
        self.link.publish(mqtt_topic, shared_payload(state, self.hub.tz), qos=1, retain=True)
        self.record.add(mqtt_topic)
        self.published += 1
        return mqtt_topic

    def publish_all(self) -> set[str]:
        """After each connect: every shared topic as it is now."""
        return {self._publish(t, s) for t, s in sorted(self.hub.topics.items()) if matches(self.patterns, t)}


class SharedStateError(ValueError):
    """A leader's message that is not a TOPIC_STATE; str() names the field."""


def _no_constant(name: str) -> Any:
    raise SharedStateError(f"{name} is not a finite number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise SharedStateError(f"{text[:20]} is not a finite number")
    return value


def _strict_json(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
    except SharedStateError:
        raise
    except RecursionError:
        raise SharedStateError("payload: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise SharedStateError(f"payload: not valid JSON ({err})") from None
    if not isinstance(doc, dict):
        raise SharedStateError("payload: expected a JSON object")
    return doc


def parse_shared(payload: bytes) -> dict[str, Any]:
    """Strict: the follower's hub must never get a value the leader's could not have had."""
    if len(payload) > MAX_TOPIC_PAYLOAD_BYTES:
        raise SharedStateError(f"payload larger than {MAX_TOPIC_PAYLOAD_BYTES} bytes")
    doc = _strict_json(payload)
    data = doc.get("data")
    if data is not None and not isinstance(data, dict):
        raise SharedStateError("data: expected an object or null")
    updated_at = doc.get("updated_at")
    updated_at_s: float | None = None
    if updated_at is not None:
        if not isinstance(updated_at, str):
            raise SharedStateError("updated_at: expected an ISO 8601 time or null")
        try:
            updated_at_s = parse_iso(updated_at)
        except ValueError:
            raise SharedStateError("updated_at: not an ISO 8601 time with offset") from None
    if data is not None and updated_at_s is None:
        raise SharedStateError("updated_at: required when there is data")
    status = doc.get("status")
    if status not in STATUSES:
        raise SharedStateError(f"status: expected one of {', '.join(STATUSES)}")
    error = doc.get("error")
    if error is not None and not isinstance(error, str):
        raise SharedStateError("error: expected a string or null")
    stale = doc.get("stale", False)
    if not isinstance(stale, bool):
        raise SharedStateError("stale: expected true or false")
    max_age_s = doc.get("max_age_s")
    if max_age_s is not None and (
        isinstance(max_age_s, bool) or not isinstance(max_age_s, int | float) or not math.isfinite(max_age_s)
    ):
        raise SharedStateError("max_age_s: expected a number or null")
    return {
        "data": data,
        "updated_at_s": updated_at_s,
        "status": status,
        "error": error,
        "stale": stale,
        "max_age_s": None if max_age_s is None else float(max_age_s),
    }


class LeaderFollower:
    """Follower side: the leader's topics into this hub (loop thread)."""

    def __init__(
        self,
        link: MqttLink,
        hub: Hub,
        readings: ReadingPath,
        leader: str,
        patterns: tuple[str, ...],
        *,
        max_age_override_s: float | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.link = link
        self.hub = hub
        self.readings = readings  # a leader's sensor readings take the one reading path (and its history)
        self.leader = leader
        self.patterns = patterns
        self.max_age_override_s = max_age_override_s
        self.clock = clock
        self.prefix = f"{leader}/topics/"
        self.leader_online: bool | None = None  # None: not heard yet
        self.topics: dict[str, float | None] = {}  # followed topic → its max age (from the leader or config)
        self.last_error: str | None = None
        self.received = 0
        link.subscribe(f"{leader}/status", self.on_status)
        link.subscribe(f"{leader}/topics/#", self.on_shared)
        link.on_disconnected(self.on_link_lost)

    def on_status(self, inbound: Inbound) -> None:
        word = inbound.payload.decode("utf-8", "replace").strip()
        if word == STATUS_OFFLINE:
            if self.leader_online is not False:
                log.warning("mqtt: the leader %s is offline; its topics are unavailable until it is back", self.leader)
            self.leader_online = False
            for topic in self.topics:
                self._mark(topic, LEADER_OFFLINE)
        elif word == STATUS_ONLINE:
            if self.leader_online is False:
                log.info("mqtt: the leader %s is back online", self.leader)
            self.leader_online = True  # its topics recover as it publishes them again

    def on_link_lost(self, message: str) -> None:
        for topic in self.topics:
            self.hub.publish_error(topic, f"no connection to the MQTT broker ({message})", "unavailable")

    def _mark(self, topic: str, message: str) -> None:
        # Nothing from a leader that is gone is fresh: a max age of 0 makes the hub show it stale at once;
        # the leader's next message for the topic sets the real max age again.
        self.hub.declare(topic, 0.0)
        self.hub.publish_error(topic, message, "unavailable")

    def on_shared(self, inbound: Inbound) -> None:
        topic = inbound.topic[len(self.prefix) :]
        if not topic or not matches(self.patterns, topic):
            return
        self.received += 1
        if not inbound.payload:
            if topic in self.topics:  # the leader no longer shares it (removed from its config)
                self.hub.publish_error(topic, "no longer published by the leader", "unavailable")
            return
        try:
            shared = parse_shared(inbound.payload)
        except SharedStateError as err:
            message = f"the leader sent a broken message on {inbound.topic}: {err}"
            if message != self.last_error:
                log.warning("mqtt: %s", message)
            self.last_error = message
            self.topics.setdefault(topic, None)
            self.hub.publish_error(topic, message, "error")
            return
        self.last_error = None
        max_age_s = self.max_age_override_s or shared["max_age_s"]
        self.topics[topic] = max_age_s
        data, updated_at_s = shared["data"], shared["updated_at_s"]
        sensor_id = topic[len("sensor/") :] if topic.startswith("sensor/") else None
        if sensor_id is not None:
            name = data.get("name") if isinstance(data, dict) else None
            self.readings.add_sensor(sensor_id, name if isinstance(name, str) else sensor_id, max_age_s)
        else:
            self.hub.declare(topic, max_age_s)
        if data is not None:
            if shared["stale"]:
                # Stale at the leader (e.g. restored from its disk after a restart): stale here too, until fresh.
                self.hub.restore(topic, data, updated_at_s)
            elif sensor_id is not None:
                self._sensor_reading(topic, sensor_id, data)
            else:
                self.hub.publish(topic, data, updated_at=updated_at_s)
        if shared["status"] not in ("ok", WAITING):
            self.hub.publish_error(topic, shared["error"] or shared["status"], shared["status"])
        if self.leader_online is False:
            self._mark(topic, LEADER_OFFLINE)

    def _sensor_reading(self, topic: str, sensor_id: str, data: dict[str, Any]) -> None:
        """A leader's sensor value → a Reading through the one path (validation, ordering, history)."""
        try:
            reading = reading_from_shared(sensor_id, data, now_s=self.clock(), max_age_s=self.readings.retention_s)
        except ReadingError as err:
            self.hub.publish_error(topic, f"the leader sent an unusable reading: {err}", "error")
            return
        self.readings.record(reading)

    def health(self) -> dict[str, Any]:
        return {
            "leader": self.leader,
            "leader_online": self.leader_online,
            "topics": sorted(self.topics),
            "last_error": self.last_error,
        }


def reading_from_shared(sensor_id: str, data: dict[str, Any], *, now_s: float, max_age_s: float) -> Reading:
    """A leader's `sensor/{id}` data → a Reading (validated as any other). Raises ReadingError."""
    measured_at = data.get("measured_at")
    if not isinstance(measured_at, str):
        raise ReadingError("measured_at", "missing")
    try:
        measured_at_s = parse_iso(measured_at)
    except ValueError:
        raise ReadingError("measured_at", "not an ISO 8601 time with offset") from None
    source = data.get("source")
    return make_reading(
        sensor_id,
        {q: data.get(q) for q in QUANTITIES},
        measured_at_s=measured_at_s,
        now_s=now_s,
        max_age_s=max_age_s,
        source=source if isinstance(source, str) else "",
    )
