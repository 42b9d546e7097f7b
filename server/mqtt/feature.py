"""The MQTT feature assembled: one connection, MQTT sensors, Home Assistant discovery, leader/follower roles."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from tornado.ioloop import PeriodicCallback

from server import history as history_mod
from server.mqtt.homeassistant import TYPE_QUANTITIES, HomeAssistantBridge
from server.mqtt.link import MqttLink
from server.mqtt.retained import RetainedRecord
from server.mqtt.sensors import MqttSensorFeed
from server.mqtt.share import LeaderFollower, TopicSharer
from server.services import Services
from server.timeutil import zone

log = logging.getLogger(__name__)

HEALTH_CHECK_S = 5.0  # how often Homeboard's own health is looked at for Home Assistant's problem sensor


def own_health(services: Services) -> tuple[bool, dict[str, Any]]:
    """(problem?, attributes): the same verdict as /healthz, from the sources and the other features' checks."""
    problems = [
        f"{name}: {h['last_error']}" for name, h in sorted(services.runner.health_report().items()) if h["failing"]
    ]
    for name, fn in sorted(services.health_extra.items()):
        if name == "mqtt":
            continue  # we are connected, or nobody would read this
        try:
            extra = fn()
        except Exception as err:  # the same rule as /healthz: a broken check is a problem, not a crash
            problems.append(f"{name}: health check failed: {type(err).__name__}")
            continue
        if isinstance(extra, dict) and extra.get("status") not in (None, "ok"):
            problems.append(f"{name}: {extra.get('error') or extra.get('status')}")
    status = "degraded" if problems else "ok"
    return bool(problems), {"status": status, "problems": problems, "version": services.version}


def own_sensors(services: Services) -> dict[str, tuple[str, tuple[str, ...]]]:
    """This Pi's sensors (wired and LAN): id → (name, what its type measures). MQTT and a leader's are not ours."""
    result: dict[str, tuple[str, tuple[str, ...]]] = {}
    for source in services.extras.get("sensor_sources", []):
        cfg = source.config
        result[cfg.id] = (cfg.name or cfg.id, TYPE_QUANTITIES.get(cfg.type, ("temperature_c",)))
    for remote in services.config.remote_sensors:
        result[remote.id] = (remote.name or remote.id, ("temperature_c",))  # the others once it sends them
    return result


class MqttFeature:
    """Everything MQTT, built from the config and started/stopped with the server."""

    def __init__(self, services: Services) -> None:
        config = services.config.mqtt
        assert config is not None  # noqa: S101 - install() checks
        self.services = services
        self.config = config
        tz = zone(services.config.timezone)
        self.tz = tz
        hub = services.hub
        self.link = MqttLink(config, tz)
        self.record = RetainedRecord(services.data_dir, self._run_blocking)
        history = history_mod.setup(services)
        more_ids: set[str] = services.extras.setdefault("more_sensor_ids", set())
        more_ids.update(s.id for s in config.sensors)
        self.sensors = MqttSensorFeed(self.link, hub, history, config.sensors)
        self.sharer: TopicSharer | None = None
        self.follower: LeaderFollower | None = None
        self.bridge: HomeAssistantBridge | None = None
        if config.role == "leader":
            self.sharer = TopicSharer(self.link, hub, config.share_topics, self.record)
            hub.add_listener(self.sharer.on_topic)
        elif config.role == "follower":
            assert config.leader is not None  # noqa: S101 - config check
            self.follower = LeaderFollower(
                self.link,
                hub,
                config.leader,
                config.share_topics,
                max_age_override_s=config.follow_max_age_s,
                on_sensor=more_ids.add,
            )
        if config.home_assistant.enabled:
            self.bridge = HomeAssistantBridge(
                self.link,
                hub,
                config,
                self.record,
                version=services.version,
                own_sensors=lambda: own_sensors(services),
                display=lambda: services.extras.get("display"),
                health=lambda: own_health(services),
            )
            hub.add_listener(self.bridge.on_topic)
        self.link.on_connected(self.on_connected)
        self._health_cb: PeriodicCallback | None = None
        self._connects = 0

    def _run_blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return asyncio.get_running_loop().run_in_executor(self.services.executor, fn, *args)

    async def start(self) -> None:
        await self.link.start()
        if self.bridge is not None:
            self._health_cb = PeriodicCallback(self.bridge.check_health, HEALTH_CHECK_S * 1000)
            self._health_cb.start()

    async def stop(self) -> None:
        if self._health_cb is not None:
            self._health_cb.stop()
        await self.link.stop()
        await self.record.save()

    async def on_connected(self, session_present: bool) -> None:
        """After each connect: drop subscriptions of an older config, publish all state, remove what is gone."""
        self._connects += 1
        current = set(self.link.topic_filters)
        old = sorted(self.record.subscriptions - current)
        if old:
            self.link.unsubscribe(old)
            log.info("mqtt: unsubscribed from topics no longer configured: %s", ", ".join(old))
        if self.record.subscriptions != current:
            self.record.subscriptions = current
            self.record.changed()
        wanted: set[str] = set()
        if self.bridge is not None:
            wanted |= self.bridge.publish_all()
        if self.sharer is not None:
            wanted |= self.sharer.publish_all()
        gone = sorted(self.record.topics - wanted)
        infos = [self.link.publish(topic, b"", qos=1, retain=True) for topic in gone]
        await self.record.save()
        if gone and await self.link.wait_published(infos):
            # Only once the broker has them: a removal lost to a disconnect is tried again after the next connect.
            self.record.topics -= set(gone)
            self.record.changed()
            await self.record.save()
            log.info("mqtt: removed %d retained topics no longer published (e.g. %s)", len(gone), gone[0])

    def health(self) -> dict[str, Any]:
        report = self.link.health()
        if self.config.sensors:
            report["sensors"] = self.sensors.health(self.tz)
        if self.follower is not None:
            report["follower"] = self.follower.health()
        if self.sharer is not None:
            report["shared_messages"] = self.sharer.published
        if self.bridge is not None:
            controller = self.services.extras.get("display")
            if controller is None:
                report["display_control"] = "unavailable: the display feature is not installed"
            elif getattr(controller, "backend", None) is None:
                report["display_control"] = "unavailable: display.backend is none"
            else:
                report["display_control"] = "ok"
        return report
