"""Home Assistant MQTT discovery: this Pi's own sensors, the display power as a switch, Homeboard's health.

Discovery messages (retained, QoS 1) go to <discovery_prefix>/<component>/<node_id>/<object_id>/config, the
shape of Home Assistant's MQTT discovery schema (homeassistant/components/mqtt: discovery.py TOPIC_MATCHER,
schemas.py MQTT_ENTITY_COMMON_SCHEMA, sensor.py, switch.py, binary_sensor.py). Every entity belongs to one
device, carries a unique_id, and is available while <base>/status says "online" (our last will says
"offline"). States are retained, so Home Assistant has them after its own restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from server.config import MqttConfig
from server.core.hub import Hub, TopicState
from server.core.jsonutil import dumpb
from server.mqtt.link import STATUS_OFFLINE, STATUS_ONLINE, Inbound, MqttLink
from server.mqtt.retained import RetainedRecord

log = logging.getLogger(__name__)

# Reading key → (device_class, unit, label). Units are the ones Home Assistant accepts for each device class.
QUANTITIES: dict[str, tuple[str, str, str]] = {
    "temperature_c": ("temperature", "°C", "temperature"),
    "humidity_pct": ("humidity", "%", "humidity"),
    "pressure_hpa": ("atmospheric_pressure", "hPa", "pressure"),
    "battery_pct": ("battery", "%", "battery"),
}
PAYLOAD_ON = "ON"
PAYLOAD_OFF = "OFF"
PAYLOAD_AUTO = "AUTO"  # not a switch state: an automation may send it to give the display back to its rules


def node_id_of(config: MqttConfig) -> str:
    return config.home_assistant.node_id or f"homeboard_{config.name}"


def device_block(config: MqttConfig, version: str) -> dict[str, Any]:
    return {
        "identifiers": [node_id_of(config)],
        "name": f"Homeboard {config.name}",
        "manufacturer": "Homeboard",
        "model": "Wall dashboard",
        "sw_version": version,
    }


def _common(config: MqttConfig, version: str, unique: str, name: str) -> dict[str, Any]:
    return {
        "~": config.base,
        "name": name,
        "unique_id": f"{node_id_of(config)}_{unique}",
        "availability_topic": "~/status",
        "payload_available": STATUS_ONLINE,
        "payload_not_available": STATUS_OFFLINE,
        "device": device_block(config, version),
        "origin": {"name": "Homeboard", "sw_version": version},
    }


def discovery_topic(config: MqttConfig, component: str, object_id: str) -> str:
    return f"{config.home_assistant.discovery_prefix}/{component}/{node_id_of(config)}/{object_id}/config"


def sensor_state_topic(config: MqttConfig, sensor_id: str) -> str:
    return f"{config.base}/sensor/{sensor_id}/state"


def value_template(key: str) -> str:
    """Reads one key of the JSON state. An empty or non-JSON payload (the state topic being cleared while Home
    Assistant still listens) renders as "", which Home Assistant ignores for a numeric sensor; a bare
    {{ value_json.key }} would log "Template variable error: 'value_json' is undefined" instead."""
    return "{%% if value_json is defined %%}{{ value_json.%s }}{%% endif %%}" % key  # noqa: UP031 - Jinja braces


def sensor_discovery(
    config: MqttConfig, version: str, *, sensor_id: str, sensor_name: str, quantity: str, max_age_s: float | None
) -> tuple[str, dict[str, Any]]:
    """(config topic, payload) for one measured quantity of one of this Pi's sensors."""
    device_class, unit, label = QUANTITIES[quantity]
    payload = _common(config, version, f"{sensor_id}_{label}", f"{sensor_name} {label}")
    payload.update(
        {
            "state_topic": f"~/sensor/{sensor_id}/state",
            "value_template": value_template(quantity),
            "device_class": device_class,
            "unit_of_measurement": unit,
            "state_class": "measurement",
        }
    )
    if max_age_s is not None and max_age_s >= 1:
        payload["expire_after"] = int(max_age_s)  # unavailable in Home Assistant when it goes stale here
    return discovery_topic(config, "sensor", f"{sensor_id}_{label}"), payload


def display_discovery(config: MqttConfig, version: str) -> tuple[str, dict[str, Any]]:
    payload = _common(config, version, "display", "Display")
    payload.update(
        {
            "command_topic": "~/display/set",
            "state_topic": "~/display/state",
            "payload_on": PAYLOAD_ON,
            "payload_off": PAYLOAD_OFF,
            "icon": "mdi:monitor",
        }
    )
    return discovery_topic(config, "switch", "display"), payload


def problem_discovery(config: MqttConfig, version: str) -> tuple[str, dict[str, Any]]:
    payload = _common(config, version, "problem", "Problem")
    payload.update(
        {
            "state_topic": "~/health/state",
            "json_attributes_topic": "~/health/attributes",
            "device_class": "problem",
            "payload_on": PAYLOAD_ON,
            "payload_off": PAYLOAD_OFF,
            "entity_category": "diagnostic",
        }
    )
    return discovery_topic(config, "binary_sensor", "problem"), payload


def sensor_state_payload(data: dict[str, Any]) -> bytes:
    """Every quantity always present: a missing one is null, which Home Assistant shows as unknown."""
    return dumpb({key: data.get(key) for key in (*QUANTITIES, "measured_at")})


class HomeAssistantBridge:
    """Announces entities and keeps their states on the broker (loop thread)."""

    def __init__(
        self,
        link: MqttLink,
        hub: Hub,
        config: MqttConfig,
        record: RetainedRecord,
        *,
        version: str,
        own_sensors: Callable[[], dict[str, tuple[str, tuple[str, ...]]]],
        display: Callable[[], Any],
        health: Callable[[], tuple[bool, dict[str, Any]]],
    ) -> None:
        self.link = link
        self.hub = hub
        self.config = config
        self.record = record
        self.version = version
        self.own_sensors = own_sensors  # sensor id → (name, quantities its type measures): this Pi's and LAN ones
        self.display = display  # the display controller (server/display/controller.py), or None
        self.health = health
        self.base = config.base
        self._last_health: bytes | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        link.subscribe(f"{self.base}/display/set", self.on_command)

    # ------------------------------------------------------------------ what exists

    def _controller(self) -> Any:
        controller = self.display()
        if controller is None or getattr(controller, "backend", None) is None:
            return None
        return controller

    def _quantities(self, sensor_id: str, static: tuple[str, ...]) -> list[str]:
        found = set(static) | set(self.record.fields.get(sensor_id, ())) | {"temperature_c"}
        state = self.hub.get(f"sensor/{sensor_id}")
        if state is not None and state.data:
            found |= {q for q in QUANTITIES if state.data.get(q) is not None}
        return [q for q in QUANTITIES if q in found]

    # ------------------------------------------------------------------ publishing

    def _retain(self, topic: str, payload: bytes | str) -> None:
        self.link.publish(topic, payload, qos=1, retain=True)
        self.record.add(topic)

    def publish_all(self) -> set[str]:
        """After each connect: every discovery message and state. Returns the retained topics that are ours now."""
        wanted: set[str] = set()
        own = self.own_sensors()
        for sensor_id, (name, static) in own.items():
            quantities = self._quantities(sensor_id, static)
            if self.record.fields.get(sensor_id) != quantities:
                self.record.fields[sensor_id] = quantities
                self.record.changed()
            for quantity in quantities:
                wanted.add(self._announce_sensor(sensor_id, name, quantity))
            state_topic = sensor_state_topic(self.config, sensor_id)
            wanted.add(state_topic)
            state = self.hub.get(f"sensor/{sensor_id}")
            if state is not None:
                self._sensor_state(sensor_id, state)
        for gone in set(self.record.fields) - set(own):
            del self.record.fields[gone]
            self.record.changed()
        if self._controller() is not None:
            topic, payload = display_discovery(self.config, self.version)
            self._retain(topic, dumpb(payload))
            wanted |= {topic, f"{self.base}/display/state"}
            state = self.hub.get("display")
            if state is not None:
                self._display_state(state)
        topic, payload = problem_discovery(self.config, self.version)
        self._retain(topic, dumpb(payload))
        wanted |= {topic, f"{self.base}/health/state", f"{self.base}/health/attributes"}
        self._last_health = None
        self.check_health()
        return wanted

    def _announce_sensor(self, sensor_id: str, name: str, quantity: str) -> str:
        state = self.hub.get(f"sensor/{sensor_id}")
        max_age_s = state.max_age_s if state is not None else None
        topic, payload = sensor_discovery(
            self.config,
            self.version,
            sensor_id=sensor_id,
            sensor_name=name,
            quantity=quantity,
            max_age_s=max_age_s,
        )
        self._retain(topic, dumpb(payload))
        return topic

    def on_topic(self, topic: str, state: TopicState) -> None:
        """Hub listener: own sensors' readings and the display's power go to their state topics."""
        if not self.link.connected:
            return  # everything is published again after the next connect
        if topic == "display":
            if self._controller() is not None:
                self._display_state(state)
                self.check_health()  # a screen that stopped obeying shows on the Problem sensor now, not in 5 s
            return
        if not topic.startswith("sensor/"):
            return
        sensor_id = topic[len("sensor/") :]
        own = self.own_sensors()
        if sensor_id not in own:
            return
        if state.status == "ok" and state.data:
            known = self.record.fields.get(sensor_id, [])
            name, static = own[sensor_id]
            quantities = self._quantities(sensor_id, static)
            if quantities != known:
                for quantity in set(quantities) - set(known):
                    self._announce_sensor(sensor_id, name, quantity)  # e.g. a LAN sensor that started sending humidity
                self.record.fields[sensor_id] = quantities
                self.record.changed()
                self._spawn(self.record.save())
        self._sensor_state(sensor_id, state)

    def _sensor_state(self, sensor_id: str, state: TopicState) -> None:
        # Only fresh, good values: a stale or restored one is left to expire_after in Home Assistant.
        if state.status != "ok" or state.stale or state.restored or not state.data:
            return
        self._retain(sensor_state_topic(self.config, sensor_id), sensor_state_payload(state.data))

    def _display_state(self, state: TopicState) -> None:
        # The power the screen was read back as, also when switching failed: after a refused OFF the switch
        # flips back to ON, as the screen did; the failure itself is on the Problem sensor.
        power = (state.data or {}).get("power")
        if power in ("on", "off"):
            self._retain(f"{self.base}/display/state", PAYLOAD_ON if power == "on" else PAYLOAD_OFF)

    def check_health(self) -> None:
        """Every few seconds: the problem sensor and its attributes, sent when they change."""
        if not self.link.connected:
            return
        problem, attributes = self.health()
        blob = dumpb(attributes)
        if blob == self._last_health:
            return
        self._last_health = blob
        self._retain(f"{self.base}/health/attributes", blob)
        self._retain(f"{self.base}/health/state", PAYLOAD_ON if problem else PAYLOAD_OFF)

    # ------------------------------------------------------------------ commands

    def on_command(self, inbound: Inbound) -> Any:
        """<base>/display/set: ON / OFF (from the switch) or AUTO → the display's manual override."""
        if inbound.retain:
            # A retained command would switch the screen at every reconnect, long after someone meant it.
            log.warning("mqtt: ignored a retained command on %s (publish commands without retain)", inbound.topic)
            return None
        word = inbound.payload.decode("utf-8", "replace").strip().upper()
        if not word:
            return None  # an empty message clears a retained one: not a command
        if word not in (PAYLOAD_ON, PAYLOAD_OFF, PAYLOAD_AUTO):
            log.warning("mqtt: %s: expected ON, OFF or AUTO, got %r", inbound.topic, word[:20])
            return None
        controller = self._controller()
        if controller is None:
            log.warning("mqtt: %s: no display control here (display.backend is none or the feature is off)", word)
            return None
        log.info("display: %s from MQTT (%s)", word, inbound.topic)
        return controller.set_mode(word.lower())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
