"""GET /api/sensors/{id}/history: a sensor's history between two times, downsampled by the history's query."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from server.core.timeutil import parse_iso
from server.readings.history import History, as_iso
from server.web.base import BaseHandler

log = logging.getLogger(__name__)


def _parse_time_arg(name: str, text: str | None, default: float) -> float:
    if text is None or text == "":
        return default
    # An unencoded "+01:00" in a query string arrives as " 01:00": put the plus back.
    if len(text) > 6 and text[-6] == " " and text[-5:-3].isdigit():
        text = text[:-6] + "+" + text[-5:]
    try:
        return parse_iso(text)
    except ValueError as err:
        raise ValueError(f"{name}: expected an ISO 8601 time with offset, like 2026-11-25T14:05:00+01:00") from err


class HistoryHandler(BaseHandler):
    """GET /api/sensors/{id}/history?since=&until=&max_points=: the points, oldest first, downsampled."""

    def initialize(self, history: History, knows: Callable[[str], bool], clock: Callable[[], float]) -> None:
        self.history = history
        self.knows = knows  # the reading path's sensors: wired, LAN, MQTT and a leader's
        self.clock = clock

    async def get(self, sensor_id: str) -> None:
        if not self.knows(sensor_id):
            self.write_json({"error": f"unknown sensor {sensor_id[:64]!r}"}, 404)
            return
        now = self.clock()
        try:
            until_s = _parse_time_arg("until", self.get_query_argument("until", None), now)
            since_s = _parse_time_arg("since", self.get_query_argument("since", None), until_s - 86400)
            max_points = int(self.get_query_argument("max_points", "1000"))
        except ValueError as err:
            message = str(err) if str(err).startswith(("since", "until")) else "max_points: expected 1..1000"
            self.write_json({"error": message}, 400)
            return
        if not 1 <= max_points <= 1000:
            self.write_json({"error": "max_points: expected 1..1000"}, 400)
            return
        if since_s > until_s:
            self.write_json({"error": "since: must not be later than until"}, 400)
            return
        try:
            points = await self.history.query(sensor_id, since_s, until_s, max_points)
        except sqlite3.Error as err:
            log.warning("history query for %s failed: %s", sensor_id, err)
            self.write_json({"error": "history database unavailable"}, 503)
            return
        tz = self.history.tz
        self.write_json(
            {
                "sensor_id": sensor_id,
                "since": as_iso(since_s * 1000, tz),
                "until": as_iso(until_s * 1000, tz),
                "points": points,
            }
        )
