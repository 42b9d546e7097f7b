"""Local sensors, GPIO inputs, LAN sensor ingest and the history endpoint, wired into the server.

install(services): one Source per configured sensor (read in the runner's executor, published as
`sensor/{id}`), remote sensors declared so they go stale, GPIO inputs, and the two HTTP routes. In demo mode
the sensors are register-level emulated chips (fake I2C bus, fake sysfs under data_dir) read through the
real drivers, with values that drift like a real room.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from sensors import (
    CalibrationError,
    NoBusError,
    NoDeviceError,
    Sensor,
    SensorError,
    WrongChipError,
    open_sensor,
)
from server import history as history_mod
from server.config import PinConfig, SensorConfig
from server.gpio_inputs import GpioInputs
from server.ingest import IngestHandler, Reading, publish_reading, store_reading
from server.services import Services
from server.sources.base import UnavailableError, stale_after_s
from server.timeutil import iso

log = logging.getLogger(__name__)

FAILURES_BEFORE_UNAVAILABLE = 3
DEMO_PIR = PinConfig(pin=17, pull="down", bounce_ms=200)
DEMO_BACKFILL_S = 86400.0  # demo: a day of history so the sparklines have a past
DEMO_BACKFILL_STEP_S = 300.0
# Errors after which the sensor is opened afresh next time (identity check included): it was unplugged,
# replaced or never there. Other errors (CRC, implausible, stuck) keep the driver and its state.
REOPEN_ERRORS = (NoDeviceError, NoBusError, WrongChipError, CalibrationError)


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


class SensorSource:
    """A Source (server.sources.base) for one local sensor."""

    failures_before_error = FAILURES_BEFORE_UNAVAILABLE

    def __init__(
        self,
        config: SensorConfig,
        opener: Callable[[dict[str, Any]], Sensor],
        tz: Any,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.name = f"sensor:{config.id}"
        self.topic = f"sensor/{config.id}"
        self.topics = (self.topic,)
        self.interval_s = config.interval_s
        self.max_age_s = stale_after_s(config.max_age_s, config.interval_s)
        self.timeout_s = config.timeout_s
        self.opener = opener
        self.tz = tz
        self.clock = clock
        self._spec = config.spec()
        self._sensor: Sensor | None = None
        self._lock = threading.Lock()  # fetch runs in executor threads; the runner never overlaps them, but close() may

    def fetch(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            try:
                if self._sensor is None:
                    self._sensor = self.opener(self._spec)
                reading = self._sensor.read()
                source = self._sensor.source
            except REOPEN_ERRORS as err:
                self._drop()
                raise UnavailableError(str(err)) from err
            except SensorError as err:
                raise UnavailableError(str(err)) from err
        return {
            self.topic: {
                "name": self.config.name or self.config.id,
                "temperature_c": round(reading.temperature_c, 2),
                "humidity_pct": _round(reading.humidity_pct),
                "pressure_hpa": _round(reading.pressure_hpa),
                "measured_at": iso(self.clock(), self.tz),
                "source": source,
            }
        }

    def _drop(self) -> None:
        sensor, self._sensor = self._sensor, None
        if sensor is not None:
            try:
                sensor.close()
            except Exception:  # closing a vanished device must not hide why it vanished
                log.debug("closing %s failed", self.name, exc_info=True)

    def close(self) -> None:
        # Never wait here (this runs on the loop at shutdown): a read hung on the bus keeps its driver.
        if self._lock.acquire(blocking=False):
            try:
                self._drop()
            finally:
                self._lock.release()


class DemoSensors:
    """The emulated hardware of demo mode, in a temp dir under data_dir (removed at stop)."""

    def __init__(self, data_dir: str, specs: list[dict[str, Any]]) -> None:
        from sensors.demo import DemoHardware

        self.root = tempfile.mkdtemp(prefix="demo-sysfs-", dir=data_dir)
        self.hardware = DemoHardware(self.root, specs)

    def open(self, spec: dict[str, Any]) -> Sensor:
        return self.hardware.open(spec)

    def climate(self, sensor_id: str) -> Any:
        from sensors.demo import climate_for

        return self.hardware.climates.get(sensor_id) or self.hardware.climates.setdefault(
            sensor_id, climate_for(sensor_id)
        )

    async def backfill(self, history: history_mod.History, sensor_ids: list[str], now: float) -> None:
        """A day of emulated history for sensors that have none yet (the demo's sparklines need a past).

        Sampled from the same drifting climates the emulated chips measure, marked as such in `source`.
        """
        for sensor_id in sensor_ids:
            climate = self.climate(sensor_id)
            if await history.latest(sensor_id) is not None:
                continue
            readings = []
            t = now - DEMO_BACKFILL_S
            while t < now - DEMO_BACKFILL_STEP_S / 2:
                temperature_c, humidity_pct, pressure_hpa = climate.sample(t)
                readings.append(
                    history_mod.HistoryReading(
                        sensor_id,
                        round(t * 1000),
                        round(temperature_c, 2),
                        round(humidity_pct, 2),
                        round(pressure_hpa, 2),
                        None,
                        "emulated (demo backfill)",
                    )
                )
                t += DEMO_BACKFILL_STEP_S
            for reading in readings[:-1]:
                history.record(reading)
            await history.store(readings[-1])  # committed (with all the others) before the page asks

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _demo_sensor_configs() -> tuple[SensorConfig, ...]:
    from sensors.demo import DEFAULT_SENSORS

    names = {f.name for f in dataclasses.fields(SensorConfig)}
    return tuple(SensorConfig(**{k: v for k, v in spec.items() if k in names}) for spec in DEFAULT_SENSORS)


def _gpio_factory(kind: str) -> Callable[[], Any]:
    def make() -> Any:
        from sensors.gpio import open_backend

        return open_backend(kind)

    return make


def install(services: Services) -> list[Any]:
    cfg = services.config
    hub = services.hub
    history = history_mod.setup(services)

    # ------------------------------------------------------------ local sensors
    sensor_configs = cfg.sensors
    demo: DemoSensors | None = None
    if cfg.demo:
        sensor_configs = sensor_configs or _demo_sensor_configs()
        demo = DemoSensors(services.data_dir, [s.spec() for s in sensor_configs])
        services.extras["demo_sensors"] = demo  # tests and the demo reach the emulated chips through it
    opener = demo.open if demo is not None else open_sensor
    sources = [SensorSource(s, opener, hub.tz) for s in sensor_configs]
    for source in sources:
        services.runner.add(source)
    services.extras["sensor_sources"] = sources

    # ------------------------------------------------------------ LAN sensors
    remote = {r.id: r for r in cfg.remote_sensors}
    for r in cfg.remote_sensors:
        hub.declare(f"sensor/{r.id}", r.max_age_s)  # stale when the device stops reporting

    # ------------------------------------------------------------ GPIO
    gpio_cfg = cfg.gpio
    backend = gpio_cfg.backend
    if cfg.demo:
        backend = "emulated"
        if gpio_cfg.pir is None:
            gpio_cfg = dataclasses.replace(gpio_cfg, pir=DEMO_PIR)
    warmup_s = 0.0 if backend == "emulated" else gpio_cfg.pir_warmup_s  # nothing to settle on emulated pins
    gpio = GpioInputs(hub, gpio_cfg, _gpio_factory(backend), pir_warmup_s=warmup_s)
    services.extras["gpio"] = gpio
    services.on_start.append(gpio.start)
    services.on_stop.append(gpio.stop)

    if demo is not None:
        ids = [s.id for s in sensor_configs] + list(remote)
        presence = DemoPresence(gpio)
        lan = DemoLanDevices(demo, list(remote.values()), history, hub)

        async def demo_start() -> None:
            await demo.backfill(history, ids, time.time())
            presence.start()
            lan.start()

        async def demo_stop() -> None:
            presence.stop()
            lan.stop()
            demo.remove()

        services.on_start.append(demo_start)
        services.on_stop.append(demo_stop)

    async def close_sensors() -> None:
        for source in sources:
            source.close()

    services.on_stop.append(close_sensors)

    # ------------------------------------------------------------ routes
    known = {s.id for s in sensor_configs} | set(remote)
    return [
        (
            r"/api/sensors/([^/]+)/history",
            history_mod.history_handler(),
            {
                "history": history,
                # server/mqtt adds MQTT sensors and a leader's sensors, which have history here too
                "known": lambda: known | services.extras.get("more_sensor_ids", set()),
                "clock": time.time,
            },
        ),
        (r"/api/sensors/([^/]+)/readings", IngestHandler, {"sensors": remote, "history": history, "hub": hub}),
    ]


class DemoLanDevices:
    """Demo: the configured LAN sensors report every minute, through the ingest path's store-then-publish."""

    def __init__(self, demo: DemoSensors, sensors: list[Any], history: history_mod.History, hub: Any) -> None:
        self.demo = demo
        self.sensors = sensors
        self.history = history
        self.hub = hub
        self.interval_s = 60.0
        self._callback: Any = None
        self._timeout: Any = None

    def start(self) -> None:
        from tornado.ioloop import IOLoop, PeriodicCallback

        if not self.sensors:
            return
        self._callback = PeriodicCallback(self.report, self.interval_s * 1000)
        self._callback.start()
        self._timeout = IOLoop.current().call_later(1.0, self.report)

    async def report(self) -> None:
        for sensor in self.sensors:
            temperature_c, humidity_pct, _ = self.demo.climate(sensor.id).sample()
            reading = Reading(round(temperature_c, 1), round(humidity_pct, 1), None, 87.0, time.time())
            try:
                await store_reading(sensor, reading, self.history, source="lan (demo)")
            except history_mod.HistoryError as err:
                log.warning("demo LAN sensor %s: %s", sensor.id, err)
                continue
            publish_reading(sensor, reading, self.hub, source="lan (demo)")

    def stop(self) -> None:
        from tornado.ioloop import IOLoop

        if self._callback is not None:
            self._callback.stop()
        if self._timeout is not None:
            IOLoop.current().remove_timeout(self._timeout)


class DemoPresence:
    """Demo: someone walks past the emulated PIR now and then (motion for ~20 s every ~2 min)."""

    def __init__(self, gpio: GpioInputs, on_s: float = 20.0, off_s: float = 100.0) -> None:
        self.gpio = gpio
        self.on_s = on_s
        self.off_s = off_s
        self._handle: Any = None
        self._level = False

    def start(self) -> None:
        from tornado.ioloop import IOLoop

        self._loop = IOLoop.current()
        self._handle = self._loop.call_later(self.off_s / 4, self._toggle)

    def _toggle(self) -> None:
        pins, pir = self.gpio.pins, self.gpio.config.pir
        if pins is None or pir is None or not hasattr(pins, "drive"):
            return
        self._level = not self._level
        pins.drive(pir.pin, self._level)
        self._handle = self._loop.call_later(self.on_s if self._level else self.off_s, self._toggle)

    def stop(self) -> None:
        if self._handle is not None:
            self._loop.remove_timeout(self._handle)
            self._handle = None


def sensor_ids(services: Services) -> list[str]:
    """Every sensor id this server knows (local and remote), for other features."""
    return [s.config.id for s in services.extras.get("sensor_sources", [])] + [
        r.id for r in services.config.remote_sensors
    ]
