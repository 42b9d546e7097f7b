"""Demo mode in one place: what `--demo` adds to a config, and the emulated world it runs against.

- every remote source is on, pointed at the built-in stand-in (server.demo.standin) on its own loopback port;
- the sensors are register-level emulated chips (a fake I2C bus, fake sysfs under data_dir) read through the real
  drivers, three of them when the config lists none, with values that drift like real rooms;
- the configured LAN sensors report every minute through the same reading path as a real POST;
- someone walks past the emulated PIR now and then;
- a day of history is backfilled so the sparklines have a past.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.netutil import bind_sockets

from sensors import Sensor
from server.config import (
    Config,
    DeparturesConfig,
    PinConfig,
    RemoteSensorConfig,
    SensorConfig,
    StravaConfig,
    WeatherConfig,
    replace,
)
from server.demo.calendars import DEMO_CALENDAR
from server.readings.history import History, HistoryError
from server.readings.path import ReadingPath
from server.readings.reading import Reading, make_reading
from server.sensing.gpio_inputs import GpioInputs

log = logging.getLogger(__name__)

DEMO_SECRET = "demo"  # noqa: S105 - the demo stand-in accepts any credentials
DEMO_PIR = PinConfig(pin=17, pull="down", bounce_ms=200)
BACKFILL_S = 86400.0  # a day of history so the sparklines have a past
BACKFILL_STEP_S = 300.0
LAN_INTERVAL_S = 60.0


def demo_config(cfg: Config) -> Config:
    """What demo mode runs: every remote source (against the stand-in), emulated sensors and a PIR."""
    s = cfg.sources
    strava = s.strava or StravaConfig(client_id="demo", client_secret=DEMO_SECRET)
    if strava.refresh_token is None:  # a real one comes from `setup`; the stand-in takes any
        strava = replace(strava, refresh_token=DEMO_SECRET)
    sources = replace(
        s,
        weather=s.weather or WeatherConfig(api_key="demo-key"),
        departures=s.departures or DeparturesConfig(site_id=9192),
        strava=strava,
        calendar=s.calendar or DEMO_CALENDAR,
    )
    gpio = replace(cfg.gpio, backend="emulated", pir=cfg.gpio.pir or DEMO_PIR, pir_warmup_s=0.0)
    return replace(cfg, demo=True, sources=sources, sensors=cfg.sensors or _default_sensors(), gpio=gpio)


def _default_sensors() -> tuple[SensorConfig, ...]:
    from sensors.demo import DEFAULT_SENSORS

    names = {f.name for f in dataclasses.fields(SensorConfig)}
    return tuple(SensorConfig(**{k: v for k, v in spec.items() if k in names}) for spec in DEFAULT_SENSORS)


class Demo:
    """The emulated world of demo mode. Built with the rest (the stand-in's port is known before the sources
    are made); started after the history opens; stopped before it closes."""

    def __init__(self, config: Config, data_dir: str) -> None:
        from sensors.demo import DemoHardware
        from server.demo import standin

        self.config = config
        self.root = tempfile.mkdtemp(prefix="demo-sysfs-", dir=data_dir)
        self.hardware = DemoHardware(self.root, [s.spec() for s in config.sensors])
        self._sockets = bind_sockets(0, "127.0.0.1")
        port = self._sockets[0].getsockname()[1]
        self.urls = standin.demo_urls(f"http://127.0.0.1:{port}")
        self._standin = HTTPServer(standin.make_standin_app())
        self._timers: list[Any] = []
        self._pir_handle: Any = None
        self._lan_callback: PeriodicCallback | None = None
        self._pir_level = False
        log.info("demo mode: API stand-in on http://127.0.0.1:%d", port)

    def open_sensor(self, spec: dict[str, Any]) -> Sensor:
        return self.hardware.open(spec)

    def climate(self, sensor_id: str) -> Any:
        from sensors.demo import climate_for

        return self.hardware.climates.get(sensor_id) or self.hardware.climates.setdefault(
            sensor_id, climate_for(sensor_id)
        )

    async def start(self, history: History, readings: ReadingPath, gpio: GpioInputs) -> None:
        self._standin.add_sockets(self._sockets)
        ids = [s.id for s in self.config.sensors] + [r.id for r in self.config.remote_sensors]
        await self.backfill(history, ids, time.time())
        loop = IOLoop.current()
        lan = list(self.config.remote_sensors)
        if lan:
            self._lan_callback = PeriodicCallback(lambda: self.report_lan(readings, lan), LAN_INTERVAL_S * 1000)
            self._lan_callback.start()
            self._timers.append(loop.call_later(1.0, self.report_lan, readings, lan))
        self._pir_handle = loop.call_later(25.0, self._toggle_pir, gpio)

    async def stop(self) -> None:
        loop = IOLoop.current()
        for handle in [*self._timers, self._pir_handle]:
            if handle is not None:
                loop.remove_timeout(handle)
        if self._lan_callback is not None:
            self._lan_callback.stop()
        self._standin.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    async def backfill(self, history: History, sensor_ids: list[str], now: float) -> None:
        """A day of emulated history for sensors that have none yet, from the same drifting climates the
        emulated chips measure, marked as such in `source`."""
        for sensor_id in sensor_ids:
            climate = self.climate(sensor_id)
            if await history.latest(sensor_id) is not None:
                continue
            readings: list[Reading] = []
            t = now - BACKFILL_S
            while t < now - BACKFILL_STEP_S / 2:
                temperature_c, humidity_pct, pressure_hpa = climate.sample(t)
                values = {"temperature_c": temperature_c, "humidity_pct": humidity_pct, "pressure_hpa": pressure_hpa}
                readings.append(
                    make_reading(
                        sensor_id,
                        values,
                        measured_at_s=t,
                        now_s=now,
                        max_age_s=2 * BACKFILL_S,
                        source="emulated (demo backfill)",
                    )
                )
                t += BACKFILL_STEP_S
            for reading in readings[:-1]:
                history.record(reading)
            await history.store(readings[-1])  # committed (with all the others) before the page asks

    async def report_lan(self, readings: ReadingPath, sensors: list[RemoteSensorConfig]) -> None:
        """The configured LAN sensors report, through the path a real POST takes."""
        for sensor in sensors:
            temperature_c, humidity_pct, _ = self.climate(sensor.id).sample()
            # Sent as a real device sends them: one decimal, its battery level.
            values = {
                "temperature_c": round(temperature_c, 1),
                "humidity_pct": round(humidity_pct, 1),
                "battery_pct": 87,
            }
            now = time.time()
            reading = make_reading(
                sensor.id, values, measured_at_s=now, now_s=now, max_age_s=BACKFILL_S, source="lan (demo)"
            )
            try:
                await readings.submit(reading)
            except HistoryError as err:
                log.warning("demo LAN sensor %s: %s", sensor.id, err)

    def _toggle_pir(self, gpio: GpioInputs, on_s: float = 20.0, off_s: float = 100.0) -> None:
        """Someone walks past the emulated PIR now and then (motion for ~20 s every ~2 min)."""
        pins, pir = gpio.pins, gpio.config.pir
        if pins is None or pir is None or not hasattr(pins, "drive"):
            return
        self._pir_level = not self._pir_level
        pins.drive(pir.pin, self._pir_level)
        delay = on_s if self._pir_level else off_s
        self._pir_handle = IOLoop.current().call_later(delay, self._toggle_pir, gpio)
