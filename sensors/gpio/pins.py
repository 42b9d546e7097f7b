"""The small pin interface every GPIO backend implements (sensors/gpio/rpi.py, sensors/gpio/emulated.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sensors.errors import SensorError

EdgeCallback = Callable[[int, bool], None]  # (BCM pin, level read right after the edge)
PULLS = ("up", "down", "off")


class GpioError(SensorError):
    """GPIO cannot be used (library missing, not a Pi, Pi 5 without rpi-lgpio, no permission)."""


class PinBackend(Protocol):
    name: str

    def setup_input(self, pin: int, pull: str) -> None:
        """Configure a BCM pin as an input with a pull-up, pull-down or none ("up" | "down" | "off")."""

    def add_edge_callback(self, pin: int, callback: EdgeCallback, bounce_ms: int = 0) -> None:
        """Call callback(pin, level) on both edges, from the backend's thread; edges within bounce_ms are dropped."""

    def read(self, pin: int) -> bool:
        """The pin's level now (True = high)."""

    def cleanup(self) -> None:
        """Release every pin this backend set up."""
