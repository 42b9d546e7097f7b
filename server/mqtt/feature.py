"""The MQTT feature assembled: one connection, MQTT sensors, Home Assistant discovery, leader/follower roles."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

from tornado.ioloop import PeriodicCallback

from server.config import MqttConfig
from server.core.hub import Hub
from server.display.controller import DisplayController
from server.mqtt.homeassistant import HomeAssistantBridge
from server.mqtt.link import MqttLink
from server.mqtt.retained import RetainedRecord, remove_gone
from server.mqtt.sensors import MqttSensorFeed
from server.mqtt.share import LeaderFollower, TopicSharer
from server.readings.path import ReadingPath

log = logging.getLogger(__name__)

HEALTH_CHECK_S = 5.0  # how often Homeboard's own health is looked at for Home Assistant's problem sensor

OwnSensors = dict[str, tuple[str, tuple[str, ...]]]  # id → (name, the quantities it measures)


class MqttFeature:
    """Everything MQTT, built from the config by the assembly (server.homeboard) and started/stopped with it."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        hub: Hub,
        readings: ReadingPath,
        executor: concurrent.futures.Executor,
        data_dir: str,
        version: str,
        own_sensors: Callable[[], OwnSensors],
        display: DisplayController | None,
        health: Callable[[], tuple[bool, dict[str, Any]]],
    ) -> None:
        self.config = config
        self.executor = executor
        self.display = display
        tz = hub.tz
        self.tz = tz
        self.link = MqttLink(config, tz)
        self.record = RetainedRecord(data_dir, self._run_blocking)
        self.sensors = MqttSensorFeed(self.link, readings, config.sensors)
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
                readings,
                config.leader,
                config.share_topics,
                max_age_override_s=config.follow_max_age_s,
            )
        if config.home_assistant.enabled:
            self.bridge = HomeAssistantBridge(
                self.link,
                hub,
                config,
                self.record,
                version=version,
                own_sensors=own_sensors,
                display=lambda: display,
                health=health,
            )
            hub.add_listener(self.bridge.on_topic)
        self.link.on_connected(self.on_connected)
        self._health_cb: PeriodicCallback | None = None
        self._connects = 0

    def _run_blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

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
        await self.record.save()
        await remove_gone(self.link, self.record, wanted, self.config.home_assistant.discovery_prefix)

    def health(self) -> dict[str, Any]:
        report = self.link.health()
        if self.config.sensors:
            report["sensors"] = self.sensors.health(self.tz)
        if self.follower is not None:
            report["follower"] = self.follower.health()
        if self.sharer is not None:
            report["shared_messages"] = self.sharer.published
        if self.bridge is not None:
            controller = self.display
            if controller is None:
                report["display_control"] = "unavailable: the display feature is not installed"
            elif controller.backend is None:
                report["display_control"] = "unavailable: display.backend is none"
            else:
                report["display_control"] = "ok"
        return report
