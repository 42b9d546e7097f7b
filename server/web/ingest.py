"""POST /api/sensors/{id}/readings: a LAN sensor's reading, handed to the reading path (shown at once, stored
durably); the 201 comes after the commit. The body's rules are server/readings/body.py's."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import tornado.web

from server.config import RemoteSensorConfig
from server.readings.body import decode_json, quote, reading_from_body
from server.readings.history import HistoryError
from server.readings.path import ReadingPath
from server.readings.reading import ReadingError, iso_time
from server.web.base import SmallBodyHandler


class IngestHandler(SmallBodyHandler):
    """Order of checks: unknown sensor 404 → token 401 → size 413 → body 400 → shown → durable store → 201."""

    MAX_BODY_BYTES = 4096  # a reading is a few dozen bytes; a device that sends more has a bug

    def initialize(
        self,
        sensors: dict[str, RemoteSensorConfig],
        readings: ReadingPath,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sensors = sensors
        self.readings = readings
        self.clock = clock
        self._sensor: RemoteSensorConfig | None = None

    def before_body(self) -> tuple[int, dict[str, Any]] | None:
        sensor = self.sensors.get(self.path_args[0])
        if sensor is None:
            return (404, {"error": f"unknown sensor {quote(self.path_args[0], 64)}"})
        if not self.has_bearer(sensor.token):
            return (401, {"error": "unauthorized"})
        self._sensor = sensor
        return None

    async def post(self, sensor_id: str) -> None:
        if self.answered():
            return
        sensor = self._sensor
        if sensor is None:  # pragma: no cover - prepare() sets either _sensor or _early
            raise tornado.web.HTTPError(500)
        try:
            reading = reading_from_body(
                sensor.id,
                decode_json(self.body()),
                now_s=self.clock(),
                max_age_s=self.readings.retention_s,
                source="lan",
            )
        except ReadingError as err:
            self.write_json({"error": str(err)}, 400)
            return
        try:
            await self.readings.submit(reading)  # shown at once; returns after the durable commit
        except HistoryError as err:
            # The device keeps the reading and retries on any non-2xx: nothing is lost by saying no.
            self.write_json({"error": str(err)}, 503)
            return
        measured_at = iso_time(reading.measured_at_s, self.readings.hub.tz)
        self.write_json({"sensor_id": sensor.id, "stored": True, "measured_at": measured_at}, 201)
