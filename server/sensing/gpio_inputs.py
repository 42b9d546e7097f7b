"""PIR motion and buttons on GPIO → topics `gpio/motion` and `gpio/button/{id}`.

Edges arrive on the GPIO backend's thread (RPi.GPIO's poll thread); they are handed to the event loop with
`IOLoop.add_callback` (thread-safe) and published there, because the hub lives on the loop thread only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tornado.ioloop import IOLoop

from server.config import GpioConfig, PinConfig
from server.core.hub import Hub
from server.core.timeutil import iso

log = logging.getLogger(__name__)

MOTION_TOPIC = "gpio/motion"


@dataclass
class _Input:
    topic: str
    pin: PinConfig
    kind: str  # "motion" | "button"
    value: bool | None = None

    def value_of(self, level: bool) -> bool:
        if self.kind == "motion":
            return level  # a PIR module's output is active high
        return level != (self.pin.pull == "up")  # a button pulls against its pull resistor


class GpioInputs:
    """Owns the pin backend; start() on the loop, stop() at shutdown."""

    def __init__(
        self,
        hub: Hub,
        config: GpioConfig,
        backend_factory: Callable[[], Any],
        clock: Callable[[], float] = time.time,
        pir_warmup_s: float = 0.0,
    ) -> None:
        self.hub = hub
        self.config = config
        self.backend_factory = backend_factory
        self.clock = clock
        self.pir_warmup_s = pir_warmup_s
        self.pins: Any = None
        self.inputs: dict[int, _Input] = {}
        self.loop: IOLoop | None = None
        self._warm_at = 0.0
        if config.pir is not None:
            self.inputs[config.pir.pin] = _Input(MOTION_TOPIC, config.pir, "motion")
        for i, button in enumerate(config.buttons[:2]):
            self.inputs[button.pin] = _Input(f"gpio/button/{button.id or f'button{i + 1}'}", button, "button")
        for item in self.inputs.values():
            hub.declare(item.topic, None)  # events, not measurements: they never go stale

    @property
    def topics(self) -> list[str]:
        return [i.topic for i in self.inputs.values()]

    async def start(self) -> None:
        if not self.inputs:
            return
        self.loop = IOLoop.current()
        try:
            self.pins = self.backend_factory()
            for pin, item in self.inputs.items():
                self.pins.setup_input(pin, item.pin.pull)
        except Exception as err:  # GpioError, or whatever a broken GPIO stack raises: the topics say so
            message = str(err) or type(err).__name__
            log.error("GPIO unavailable: %s", message)
            for item in self.inputs.values():
                self.hub.publish_error(item.topic, message, "unavailable")
            return
        # A PIR output can go high a few times while it settles (~1 min after power-up, HC-SR501).
        self._warm_at = time.monotonic() + self.pir_warmup_s
        for pin, item in self.inputs.items():
            self._publish(item, self.pins.read(pin) if item.kind == "button" or not self.pir_warmup_s else False)
            self.pins.add_edge_callback(pin, self._edge_from_thread, item.pin.bounce_ms)
        if self.pir_warmup_s and self.config.pir is not None:
            self.loop.call_later(self.pir_warmup_s, self._warmed_up)

    def _edge_from_thread(self, pin: int, level: bool) -> None:
        """Called on the backend's thread: only hand over."""
        loop = self.loop
        if loop is not None:
            loop.add_callback(self._on_edge, pin, level)

    def _on_edge(self, pin: int, level: bool) -> None:
        item = self.inputs.get(pin)
        if item is None:
            return
        if item.kind == "motion" and time.monotonic() < self._warm_at:
            return
        self._publish(item, level)

    def _warmed_up(self) -> None:
        if self.pins is not None and self.config.pir is not None:
            self._on_edge(self.config.pir.pin, self.pins.read(self.config.pir.pin))

    def _publish(self, item: _Input, level: bool) -> None:
        value = item.value_of(level)
        if value == item.value:
            return  # a bounce that read back the same level
        item.value = value
        key = "motion" if item.kind == "motion" else "pressed"
        self.hub.publish(item.topic, {key: value, "changed_at": iso(self.clock(), self.hub.tz)})

    async def stop(self) -> None:
        pins, self.pins = self.pins, None
        self.loop = None
        if pins is not None:
            pins.cleanup()
