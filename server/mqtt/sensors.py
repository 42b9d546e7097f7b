"""Sensors that report over MQTT (Zigbee2MQTT, Tasmota, ESPHome, any JSON or plain topic) → `sensor/{id}`.

Each reading takes the one reading path (server.readings.path): validated like a LAN POST's body, shown at once
unless an newer one is shown, stored durably in the history — and only then is the MQTT message acknowledged (the
MQTT counterpart of the 201 a POST gets). A broken payload puts its error on the sensor's topic (the last good
value stays, marked by the error); nothing crashes. A device that says it is back online is shown as such at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from server.config import MqttSensorConfig
from server.core.timeutil import iso
from server.mqtt.link import Inbound, MqttLink
from server.mqtt.payloads import (
    PRESET_FIELDS,
    PayloadError,
    explain,
    field_map,
    parse_json_reading,
    parse_number,
    parse_tasmota_reading,
)
from server.readings.body import reading_from_body
from server.readings.history import HistoryError
from server.readings.path import ReadingPath
from server.readings.reading import ReadingError

log = logging.getLogger(__name__)

# ESPHome publishes temperature and humidity on separate topics a few ms apart: wait this long after the
# first so that one reading carries both, instead of two readings each with the other's previous value.
SPLIT_WINDOW_S = 0.25
SPLIT_KEYS = {"humidity_topic": "humidity_pct", "pressure_topic": "pressure_hpa", "battery_topic": "battery_pct"}


def default_availability_topic(sensor: MqttSensorConfig) -> str | None:
    """Where the preset's device says it went offline (Zigbee2MQTT availability, Tasmota LWT, ESPHome status)."""
    if sensor.availability_topic is not None:
        return sensor.availability_topic
    if sensor.preset == "zigbee2mqtt":
        return f"{sensor.topic}/availability"
    if sensor.preset == "tasmota" and sensor.topic.endswith("/SENSOR"):
        return sensor.topic[: -len("SENSOR")] + "LWT"
    if sensor.preset == "esphome" and "/" in sensor.topic:
        return sensor.topic.split("/", 1)[0] + "/status"
    return None


def _availability(payload: bytes) -> str | None:
    """ "online" / "offline" from the shapes devices use: plain text in any case (ESPHome, Tasmota's LWT) or a JSON
    object with a "state" (Zigbee2MQTT), however it is spaced. Anything else: None (ignored, not a state)."""
    text = payload.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        text = doc.get("state") if isinstance(doc, dict) else None
        if not isinstance(text, str):
            return None
    lowered = text.strip().lower()
    return lowered if lowered in ("online", "offline") else None


@dataclass
class SensorState:
    """One MQTT sensor's moving parts (loop thread only)."""

    config: MqttSensorConfig
    topic: str  # the hub topic, sensor/{id}
    partial: dict[str, tuple[float, float]] = field(default_factory=dict)  # split topics: key → (value, at)
    pending: asyncio.Future[None] | None = None
    last_reading_at: float | None = None
    last_error: str | None = None
    ignored_retained: int = 0


class MqttSensorFeed:
    def __init__(
        self,
        link: MqttLink,
        readings: ReadingPath,
        sensors: tuple[MqttSensorConfig, ...],
        *,
        clock: Callable[[], float] = time.time,
        split_window_s: float = SPLIT_WINDOW_S,
    ) -> None:
        self.link = link
        self.readings = readings
        self.clock = clock
        self.split_window_s = split_window_s
        self.sensors = [SensorState(s, f"sensor/{s.id}") for s in sensors]
        self._tasks: set[asyncio.Task[None]] = set()
        for state in self.sensors:
            self._wire(state)

    def _wire(self, state: SensorState) -> None:
        cfg = state.config
        self.readings.add_sensor(cfg.id, cfg.name, cfg.max_age_s)  # waiting until the first reading
        if cfg.preset in ("esphome", "plain"):
            self.link.subscribe(cfg.topic, self._split_handler(state, "temperature_c"))
            for key, reading_key in SPLIT_KEYS.items():
                topic = getattr(cfg, key)
                if topic is not None:
                    self.link.subscribe(topic, self._split_handler(state, reading_key))
        else:
            self.link.subscribe(cfg.topic, lambda inbound: self._on_json(state, inbound))
        availability = default_availability_topic(cfg)
        if availability:
            self.link.subscribe(availability, lambda inbound: self._on_availability(state, inbound))

    @property
    def max_history_age_s(self) -> float:
        return self.readings.retention_s

    # ------------------------------------------------------------------ JSON presets

    async def _on_json(self, state: SensorState, inbound: Inbound) -> None:
        cfg = state.config
        try:
            if cfg.preset == "tasmota":
                body, origin = parse_tasmota_reading(inbound.topic, inbound.payload, cfg)
            else:
                fields = field_map(cfg, PRESET_FIELDS[cfg.preset])
                body, origin = parse_json_reading(inbound.topic, inbound.payload, fields)
        except PayloadError as err:
            self._failed(state, str(err), err.status)
            return
        if inbound.retain and "measured_at" not in body:
            self._retained_without_time(state, inbound)
            return
        await self._accept(state, body, origin, inbound.received_at)

    def _retained_without_time(self, state: SensorState, inbound: Inbound) -> None:
        # A retained message may be hours old and says nothing about when it was measured: showing it as
        # "now" would be a made-up time. Wait for a live one.
        state.ignored_retained += 1
        log.debug("mqtt sensor %s: ignored a retained message on %s without a time", state.config.id, inbound.topic)

    # ------------------------------------------------------------------ plain values on several topics

    def _split_handler(self, state: SensorState, key: str) -> Callable[[Inbound], Awaitable[None] | None]:
        def handle(inbound: Inbound) -> Awaitable[None] | None:
            if inbound.retain:
                self._retained_without_time(state, inbound)
                return None
            try:
                value = parse_number(inbound.topic, inbound.payload, state.config.preset)
            except PayloadError as err:
                if key == "temperature_c":
                    state.partial.pop(key, None)
                    self._failed(state, str(err), err.status)
                else:
                    # A broken companion value is left out of the reading; the temperature still counts.
                    state.partial.pop(key, None)
                    self._note(state, str(err))
                return None
            state.partial[key] = (value, inbound.received_at)
            return self._schedule_split(state)

        return handle

    def _schedule_split(self, state: SensorState) -> asyncio.Future[None]:
        if state.pending is None:
            loop = asyncio.get_running_loop()
            state.pending = loop.create_future()
            loop.call_later(self.split_window_s, self._start_emit, state)
        return state.pending

    def _start_emit(self, state: SensorState) -> None:
        task = asyncio.ensure_future(self._emit_split(state))
        self._tasks.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _emit_split(self, state: SensorState) -> None:
        pending, state.pending = state.pending, None
        try:
            now = self.clock()
            max_age_s = state.config.max_age_s
            fresh = {k: v for k, v in state.partial.items() if now - v[1] <= max_age_s}
            if not fresh:
                return
            newest_at = max(at for _, at in fresh.values())
            body: dict[str, Any] = {k: v for k, (v, _) in fresh.items()}
            body["measured_at"] = dt.datetime.fromtimestamp(newest_at, dt.UTC).isoformat(timespec="milliseconds")
            topics = {"temperature_c": state.config.topic}
            topics.update({k: getattr(state.config, t) for t, k in SPLIT_KEYS.items()})
            await self._accept(state, body, {k: topics[k] for k in body if k in topics}, now)
        finally:
            if pending is not None and not pending.done():
                pending.set_result(None)

    # ------------------------------------------------------------------ availability

    def _on_availability(self, state: SensorState, inbound: Inbound) -> None:
        availability = _availability(inbound.payload)
        if availability == "offline":
            self._failed(state, f"{inbound.topic}: the device is offline", "unavailable")
        elif availability == "online":
            # Back now, not at its next reading (a sleepy Zigbee sensor reports hourly): its last reading is
            # shown again, stale if it is old.
            if state.last_error is not None:
                log.info("mqtt sensor %s: the device is online again", state.config.id)
                state.last_error = None
            self.readings.available(state.config.id)

    # ------------------------------------------------------------------ the ingest path

    async def _accept(self, state: SensorState, body: dict[str, Any], origin: dict[str, str], now_s: float) -> None:
        cfg = state.config
        try:
            reading = reading_from_body(
                cfg.id, body, now_s=now_s, max_age_s=self.max_history_age_s, source=f"mqtt:{cfg.topic}"
            )
        except ReadingError as err:
            self._failed(state, explain(cfg.topic, err, origin), "error")
            return
        state.last_reading_at = self.clock()
        if state.last_error is not None:
            log.info("mqtt sensor %s: readings are good again", cfg.id)
            state.last_error = None
        # Shown first, then stored durably, then acknowledged (by the link, when this returns). A crash in
        # between loses nothing: the broker still holds the unacknowledged message and sends it again.
        try:
            await self.readings.submit(reading)
        except HistoryError as err:
            # The history keeps it in memory and retries: acknowledged all the same, or a full disk would stall
            # every MQTT sensor behind the broker's window of unacknowledged messages.
            log.warning("mqtt sensor %s: %s", cfg.id, err)

    def _failed(self, state: SensorState, message: str, status: str) -> None:
        self._note(state, message)
        self.readings.fail(state.config.id, message, status)

    def _note(self, state: SensorState, message: str) -> None:
        if message != state.last_error:
            log.warning("mqtt sensor %s: %s", state.config.id, message)  # once per new problem, not per message
        state.last_error = message

    # ------------------------------------------------------------------ health

    def health(self, tz: Any) -> dict[str, Any]:
        return {
            s.config.id: {
                "topic": s.config.topic,
                "preset": s.config.preset,
                "last_reading": iso(s.last_reading_at, tz),
                "last_error": s.last_error,
                "ignored_retained": s.ignored_retained,
            }
            for s in self.sensors
        }
