"""The Pi's own sensors, sampled on the source runner: one SensorSource per configured sensor.

A read runs in the runner's executor (I2C, 1-Wire and IIO reads block); its Reading goes to the reading path
(server.readings.path), which shows it and stores it, like a reading from anywhere else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sensors import CalibrationError, NoBusError, NoDeviceError, Sensor, SensorError, WrongChipError
from server.config import SensorConfig
from server.core.source import SourceError, UnavailableError, stale_after_s
from server.readings.reading import Reading, ReadingError, make_reading

log = logging.getLogger(__name__)

FAILURES_BEFORE_UNAVAILABLE = 3
# Errors after which the sensor is opened afresh next time (identity check included): it was unplugged,
# replaced or never there. Other errors (CRC, implausible, stuck) keep the driver and its state.
REOPEN_ERRORS = (NoDeviceError, NoBusError, WrongChipError, CalibrationError)


class SensorSource:
    """A Source (server.core.source) for one local sensor; fetch() returns a validated Reading."""

    failures_before_error = FAILURES_BEFORE_UNAVAILABLE

    def __init__(
        self,
        config: SensorConfig,
        opener: Callable[[dict[str, Any]], Sensor],
        history_max_age_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.name = f"sensor:{config.id}"
        self.topics = (f"sensor/{config.id}",)
        self.interval_s = config.interval_s
        self.max_age_s = stale_after_s(config.max_age_s, config.interval_s)
        self.timeout_s = config.timeout_s
        self.opener = opener
        self.history_max_age_s = history_max_age_s
        self.clock = clock
        self._spec = config.spec()
        self._sensor: Sensor | None = None
        self._lock = threading.Lock()  # fetch runs in executor threads; the runner never overlaps them, but close() may

    def fetch(self) -> Reading:
        with self._lock:
            try:
                if self._sensor is None:
                    self._sensor = self.opener(self._spec)
                measured = self._sensor.read()
                source = self._sensor.source
            except REOPEN_ERRORS as err:
                self._drop()
                raise UnavailableError(str(err)) from err
            except SensorError as err:
                raise UnavailableError(str(err)) from err
        values = {
            "temperature_c": measured.temperature_c,
            "humidity_pct": measured.humidity_pct,
            "pressure_hpa": measured.pressure_hpa,
        }
        try:
            return make_reading(
                self.config.id,
                values,
                measured_at_s=None,
                now_s=self.clock(),
                max_age_s=self.history_max_age_s,
                source=source,
            )
        except ReadingError as err:  # the driver's range check should have caught it; never show it either way
            raise SourceError(f"{self._spec.get('type')}: {err}") from err

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
