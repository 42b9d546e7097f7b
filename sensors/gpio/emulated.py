"""Emulated GPIO pins: drive levels by hand (tests, demo); edges are delivered from a separate thread, the way
RPi.GPIO's poll thread delivers them, with the same "drop edges within bouncetime" behaviour."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from sensors.gpio.pins import PULLS, EdgeCallback, GpioError

log = logging.getLogger(__name__)


class EmulatedPins:
    name = "emulated"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.levels: dict[int, bool] = {}
        self.pulls: dict[int, str] = {}
        self._callbacks: dict[int, tuple[EdgeCallback, int]] = {}
        self._last_edge: dict[int, float] = {}
        self._lock = threading.Lock()
        self._events: queue.Queue[tuple[int, bool] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.dropped_edges = 0

    def setup_input(self, pin: int, pull: str) -> None:
        if pull not in PULLS:
            raise GpioError(f"BCM pin {pin}: pull must be one of {', '.join(PULLS)}")
        with self._lock:
            self.pulls[pin] = pull
            self.levels[pin] = pull == "up"  # nothing connected: the pull decides the level

    def add_edge_callback(self, pin: int, callback: EdgeCallback, bounce_ms: int = 0) -> None:
        with self._lock:
            if pin not in self.levels:
                raise GpioError(f"BCM pin {pin}: you must set it up as an input first")
            if pin in self._callbacks:
                raise GpioError(f"BCM pin {pin}: edge detection is already enabled")
            self._callbacks[pin] = (callback, bounce_ms)
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver, name="gpio-emulated", daemon=True)
                self._thread.start()

    def read(self, pin: int) -> bool:
        with self._lock:
            if pin not in self.levels:
                raise GpioError(f"BCM pin {pin}: not set up")
            return self.levels[pin]

    # ---------------------------------------------------------------- wiring, as a test or the demo drives it

    def drive(self, pin: int, level: bool) -> None:
        """Set the pin's level from outside (a PIR output, a button contact); an edge fires the callback."""
        with self._lock:
            if pin not in self.levels:
                raise GpioError(f"BCM pin {pin}: not set up")
            changed = self.levels[pin] != level
            self.levels[pin] = level
            registered = self._callbacks.get(pin)
            if not changed or registered is None:
                return
            now = self.clock()
            last = self._last_edge.get(pin)
            self._last_edge[pin] = now  # like RPi.GPIO 0.5.x, a dropped edge still restarts the bounce window
            if last is not None and (now - last) * 1000 < registered[1]:
                self.dropped_edges += 1
                return
        self._events.put((pin, level))

    def drive_high(self, pin: int) -> None:
        self.drive(pin, True)

    def drive_low(self, pin: int) -> None:
        self.drive(pin, False)

    def press(self, pin: int) -> None:
        """Close a button contact: to ground with a pull-up, to 3.3 V otherwise."""
        self.drive(pin, self.pulls.get(pin) != "up")

    def release(self, pin: int) -> None:
        self.drive(pin, self.pulls.get(pin) == "up")

    def _deliver(self) -> None:
        while True:
            item = self._events.get()
            if item is None:
                return
            # The level of the edge itself: the real backend reads the pin right after the edge, which is the
            # same unless another edge followed within microseconds (and tests need short pulses to be exact).
            pin, level = item
            with self._lock:
                registered = self._callbacks.get(pin)
            if registered is None:
                continue
            try:
                registered[0](pin, level)
            except Exception:  # a callback's bug must not kill the delivery thread (RPi.GPIO prints and goes on)
                log.exception("GPIO callback for pin %d failed", pin)

    def wait_idle(self, timeout_s: float = 2.0) -> None:
        """Block until queued edges are delivered (tests)."""
        deadline = time.monotonic() + timeout_s
        while not self._events.empty() and time.monotonic() < deadline:
            time.sleep(0.001)

    def cleanup(self) -> None:
        with self._lock:
            self._callbacks.clear()
            thread, self._thread = self._thread, None
        if thread is not None:
            self._events.put(None)
            thread.join(timeout=2)
