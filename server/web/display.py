"""GET /api/display: the screen's state; POST switches it by hand ("on", "off") or gives it back to its rules."""

from __future__ import annotations

import json
from typing import Any

from server.display.controller import MODES, DisplayController
from server.web.base import SmallBodyHandler


class DisplayHandler(SmallBodyHandler):
    """GET: the display state. POST {"power": "on" | "off" | "auto"} with Authorization: Bearer <display.token>."""

    MAX_BODY_BYTES = 1024  # {"power": "auto"} and room to spare

    def initialize(self, controller: DisplayController, token: str | None) -> None:
        self.controller = controller
        self.token = token

    def get(self) -> None:
        self.write_json(self.controller.report())

    def before_body(self) -> tuple[int, dict[str, Any]] | None:
        if not self.token:
            return (403, {"error": "manual display control is off: set display.token in config.yaml"})
        if not self.has_bearer(self.token):
            return (401, {"error": "missing or wrong bearer token"})
        return None

    async def post(self) -> None:
        if self.answered():
            return
        try:
            body = json.loads(self.body() or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.write_json({"error": 'body must be a JSON object: {"power": "on" | "off" | "auto"}'}, 400)
            return
        power = body.get("power")
        if power not in MODES:
            self.write_json({"error": 'power: expected "on", "off" or "auto"'}, 400)
            return
        if self.controller.backend is None:
            self.write_json({"error": "display.backend is none: there is no screen switch to control"}, 409)
            return
        self.write_json(await self.controller.set_mode(power))
