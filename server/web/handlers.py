"""The API's own answers: /api/state (other methods than GET), /api/config, /healthz, /metrics, /debug/block.

Each handler gets the one thing it reads through `initialize()` from the route table (server/web/app.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from server.core.hub import Hub
from server.core.runner import SourceRunner
from server.readings.path import ReadingPath
from server.web.base import BaseHandler
from server.web.metrics import render_metrics


class StateHandler(BaseHandler):
    """GET is answered before any handler (server/web/state_route.py); every other method reaches this: 405."""

    def initialize(self, hub: Hub) -> None:
        self.hub = hub

    def get(self) -> None:
        self.write_json(self.hub.state_body())


class ConfigHandler(BaseHandler):
    """What the page needs to know about itself: `about` (built once from the config, nothing secret in it) and
    the names of the sensors still waiting for their first reading (a reading carries its own name)."""

    def initialize(self, about: dict[str, Any], readings: ReadingPath) -> None:
        self.about = about
        self.readings = readings

    def get(self) -> None:
        names = {sensor_id: entry.name for sensor_id, entry in self.readings.sensors.items()}
        self.write_json({**self.about, "sensor_names": names})


class HealthHandler(BaseHandler):
    def initialize(self, health: Callable[[], dict[str, Any]]) -> None:
        self.health = health

    def get(self) -> None:
        self.write_json(self.health())


class MetricsHandler(BaseHandler):
    def initialize(self, hub: Hub, runner: SourceRunner) -> None:
        self.hub = hub
        self.runner = runner

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(render_metrics(self.hub, self.runner))


class DebugBlockHandler(BaseHandler):
    """GET /debug/block?s=N blocks the event loop N seconds: the fault suite's hung loop (watchdog test).

    Routed only when HOMEBOARD_DEBUG_ROUTES=1 is in the environment; no unit or config sets it.
    """

    def get(self) -> None:
        seconds = min(float(self.get_argument("s", "1")), 120.0)
        time.sleep(seconds)  # deliberately on the loop thread
        self.write_json({"blocked_s": seconds})
