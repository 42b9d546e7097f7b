"""The assembly: every part of a running Homeboard, built in one place, started and stopped in one visible order.

`python -m server`, the tests (tests/serverthread.py) and the benchmarks all run this object; none of them has a
start/stop sequence of its own. What the config leaves out is built inert (no sensors: no sensor sources; no
`mqtt:` section: no MQTT), so there is one shape of server, not a list of features picked by name.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server import __version__
from server.config import Config
from server.core.hub import Hub
from server.core.laststate import LastStateStore
from server.core.parts import SOURCES, Part, Parts, verdict
from server.core.runner import SourceRunner
from server.core.timeutil import zone
from server.display.backends import make_backend
from server.display.controller import STATE_FILE as DISPLAY_STATE_FILE
from server.display.controller import DisplayController
from server.readings.history import DB_NAME, History
from server.readings.path import ReadingPath
from server.sensing.gpio_inputs import GpioInputs
from server.sensing.sampling import SensorSource
from server.sources.calendar import CalendarSource
from server.sources.sl import DeparturesSource
from server.sources.strava import DEMO_TOKEN_FILE_NAME, TOKEN_FILE_NAME, StravaSource
from server.sources.weather import WeatherSource
from server.wall.watch import STATE_FILE as WALL_STATE_FILE
from server.wall.watch import WallWatch

if TYPE_CHECKING:
    from server.demo.mode import Demo
    from server.mqtt.feature import MqttFeature

log = logging.getLogger(__name__)

MQTT = "mqtt"  # the MQTT part's name: its /healthz section


@dataclass
class Homeboard:
    config: Config
    data_dir: str
    version: str
    hub: Hub
    executor: concurrent.futures.ThreadPoolExecutor
    runner: SourceRunner
    history: History
    readings: ReadingPath
    laststate: LastStateStore
    sensors: list[SensorSource]
    gpio: GpioInputs
    display: DisplayController
    wall: WallWatch
    mqtt: MqttFeature | None
    demo: Demo | None
    started_monotonic: float

    # ------------------------------------------------------------------ building

    @classmethod
    def build(cls, config: Config) -> Homeboard:
        """Everything, from the config, in dependency order. Declares every topic the config has."""
        if config.demo:
            from server.demo.mode import demo_config

            config = demo_config(config)
        data_dir = config.data_dir
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        tz = zone(config.timezone)
        hub = Hub(tz, __version__)
        # A small pool: I2C reads, HTTP polls and SQLite are short; more threads only cost memory on a Pi.
        executor = concurrent.futures.ThreadPoolExecutor(config.server.executor_threads, thread_name_prefix="hb-io")

        def run_blocking(fn: Callable[..., Any], *args: Any) -> Any:
            return asyncio.get_running_loop().run_in_executor(executor, fn, *args)

        runner = SourceRunner(hub, executor)
        history = History(os.path.join(data_dir, DB_NAME), config.history, tz)
        readings = ReadingPath(hub, history)

        demo: Demo | None = None
        if config.demo:
            from server.demo.mode import Demo

            demo = Demo(config, data_dir)  # binds the stand-in's port now: the sources below need its URLs

        # Sensors: the Pi's own (sampled on the runner), LAN ones (POSTed), all through the reading path.
        opener = demo.open_sensor if demo is not None else _open_sensor
        sensors = [SensorSource(s, opener, readings.retention_s) for s in config.sensors]
        for source in sensors:
            readings.add_sensor(source.config.id, source.config.name, source.max_age_s)
            runner.add(source, deliver=readings.record)
        for remote in config.remote_sensors:
            readings.add_sensor(remote.id, remote.name, remote.max_age_s)  # stale when the device stops reporting

        _add_remote_sources(config, tz, runner, data_dir, demo)

        gpio_config = config.gpio
        backend = gpio_config.backend
        # Emulated pins have nothing to settle; a real PIR module needs about a minute after power-up.
        warmup_s = 0.0 if backend == "emulated" else gpio_config.pir_warmup_s
        gpio = GpioInputs(hub, gpio_config, _gpio_factory(backend), pir_warmup_s=warmup_s)

        display_config = config.display
        display = DisplayController(
            hub,
            display_config,
            None if display_config.backend == "none" else make_backend(display_config.backend, display_config),
            tz=tz,
            run_blocking=run_blocking,
            state_path=Path(data_dir) / DISPLAY_STATE_FILE,
        )
        wall = WallWatch(
            hub, config.wall, tz=tz, run_blocking=run_blocking, state_path=Path(data_dir) / WALL_STATE_FILE
        )

        board = cls(
            config=config,
            data_dir=data_dir,
            version=__version__,
            hub=hub,
            executor=executor,
            runner=runner,
            history=history,
            readings=readings,
            laststate=LastStateStore(data_dir),
            sensors=sensors,
            gpio=gpio,
            display=display,
            wall=wall,
            mqtt=None,
            demo=demo,
            started_monotonic=time.monotonic(),
        )
        if config.mqtt is not None:
            from server.mqtt.feature import MqttFeature  # paho is imported only when MQTT is configured

            board.mqtt = MqttFeature(
                config.mqtt,
                hub=hub,
                readings=readings,
                executor=executor,
                data_dir=data_dir,
                version=__version__,
                own_sensors=board.own_sensors,
                display=display,
                health=board.problems,
            )
        return board

    # ------------------------------------------------------------------ running

    @cached_property
    def parts(self) -> Parts:
        """Every part, in the order they start: the history before anything that stores, the demo world and the
        inputs and outputs, MQTT (taking readings into the history; its sharing sees the first fetches), the
        sensors (closed once the runner has stopped), the sources last. They stop in the reverse order, so MQTT
        stops before the history closes: no message is taken and acknowledged that cannot be stored."""
        parts = [Part("history", self.history.open, self.history.close, self.history.health)]
        if self.demo is not None:
            parts.append(Part("demo", partial(self.demo.start, self.history, self.readings, self.gpio), self.demo.stop))
        parts += [
            Part("gpio", self.gpio.start, self.gpio.stop),
            Part("display", self.display.start, self.display.stop, self.display.health),
            Part("wall", self.wall.start, self.wall.stop, self.wall.health),
        ]
        if self.mqtt is not None:
            parts.append(Part(MQTT, self.mqtt.start, self.mqtt.stop, self.mqtt.health))
        parts += [
            Part("sensors", stop=self._close_sensors),
            Part(SOURCES, self.runner.start, self.runner.stop, self.runner.health_report),
        ]
        calendar = self.runner.sources.get("calendar")
        if isinstance(calendar, CalendarSource):
            # Its own section: a dead link needs a person even while the other feeds work (the runner runs it).
            parts.append(Part("calendar", health=calendar.health))
        return Parts(parts)

    async def start(self, restore: bool = True) -> None:
        """Last-known values into the declared topics first (before anything publishes), then every part."""
        if restore:
            restored = self.laststate.load_into(self.hub)
            self.readings.name_restored()
            if restored:
                log.info("restored %d topics from last-known state (stale until refreshed)", restored)
        await self.parts.start()

    async def stop(self) -> None:
        """Every part in reverse order (the history last: it commits what is queued), then the last-known state."""
        await self.parts.stop()
        blob = self.laststate.snapshot_blob(self.hub)
        await asyncio.get_running_loop().run_in_executor(self.executor, self.laststate.save_blob, blob)

    async def _close_sensors(self) -> None:
        for source in self.sensors:
            source.close()

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        """The /healthz body: "degraded" when the one verdict finds a problem in any part's section."""
        sections = self.parts.health()
        return {
            "status": verdict(sections).status,
            "version": self.version,
            "uptime_s": round(time.monotonic() - self.started_monotonic, 1),
            "clients": len(self.hub.clients),
            **sections,
        }

    def problems(self) -> tuple[bool, dict[str, Any]]:
        """(problem?, attributes) for Home Assistant's problem sensor: the same verdict as /healthz."""
        # Not MQTT's own section: we are connected, or nobody would read this.
        found = verdict(self.parts.health(), ignore=(MQTT,))
        return bool(found.problems), {"status": found.status, "problems": list(found.problems), "version": self.version}

    def own_sensors(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """This Pi's sensors (wired and LAN): id → (name, what it measures). MQTT and a leader's are not ours."""
        from sensors.registry import quantities_of

        result: dict[str, tuple[str, tuple[str, ...]]] = {}
        for source in self.sensors:
            cfg = source.config
            result[cfg.id] = (cfg.name or cfg.id, quantities_of(cfg.type))  # its type's descriptor says
        for remote in self.config.remote_sensors:
            result[remote.id] = (remote.name or remote.id, ("temperature_c",))  # the others once it sends them
        return result


def _open_sensor(spec: dict[str, Any]) -> Any:
    from sensors import open_sensor

    return open_sensor(spec)


def _gpio_factory(kind: str) -> Callable[[], Any]:
    def make() -> Any:
        from sensors.gpio import open_backend

        return open_backend(kind)

    return make


def _add_remote_sources(config: Config, tz: dt.tzinfo, runner: SourceRunner, data_dir: str, demo: Demo | None) -> None:
    """A poller for each of sources.weather / departures / strava / calendar that the config has (absent: off).

    In demo mode the same sources point at the built-in stand-in: the production code path, other endpoints.
    """
    if config.mqtt is not None and config.mqtt.role == "follower":
        # One set of pollers per household: API limits count per application, not per screen (server/mqtt).
        log.info("remote sources: none (MQTT follower: they come from %s)", config.mqtt.leader)
        return
    urls = demo.urls if demo is not None else {}
    sources = config.sources
    if sources.weather is not None:
        runner.add(WeatherSource(sources.weather, tz, base_url=urls.get("weather"), locale=config.page.locale))
    if sources.departures is not None:
        runner.add(DeparturesSource(sources.departures, tz, data_dir=data_dir, base_url=urls.get("departures")))
    if sources.strava is not None:
        runner.add(
            StravaSource(
                sources.strava,
                tz,
                data_dir,
                base_url=urls.get("strava_api"),
                token_url=urls.get("strava_token"),
                # A demo run in a real data_dir must not replace the real (rotating) refresh token.
                token_file_name=DEMO_TOKEN_FILE_NAME if demo is not None else TOKEN_FILE_NAME,
            )
        )
    if sources.calendar is not None:
        calendar = CalendarSource(
            sources.calendar,
            config.timezone,
            base_url=urls.get("calendar"),
            data_dir=data_dir,
            rerun=lambda: runner.trigger_from_thread(CalendarSource.name),  # a feed read after its poll returned
        )
        runner.add(calendar)
    enabled = [name for name in ("weather", "departures", "strava", "calendar") if getattr(sources, name) is not None]
    log.info("remote sources: %s%s", ", ".join(enabled) or "none", " (demo stand-in)" if demo else "")
