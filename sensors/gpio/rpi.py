"""The RPi.GPIO backend: the one place RPi.GPIO is imported (lazily). rpi-lgpio provides the same module
on gpiochip kernels and on the Pi 5, where classic RPi.GPIO fails."""

from __future__ import annotations

import logging
import threading
from typing import Any

from sensors.gpio.pins import EdgeCallback, GpioError

log = logging.getLogger(__name__)


def _import_gpio() -> Any:
    try:
        from RPi import GPIO  # lazy on purpose: it raises on import off a Pi
    except ImportError as err:
        raise GpioError(
            "RPi.GPIO is not installed: sudo apt install python3-rpi-lgpio (or pip install rpi-lgpio)"
        ) from err
    except RuntimeError as err:
        # "This module can only be run on a Raspberry Pi!", raised at import time.
        raise GpioError(f"RPi.GPIO refuses to run here: {err}; set gpio.backend: emulated off a Pi") from err
    return GPIO


class RpiPins:
    name = "rpi"

    def __init__(self) -> None:
        self.gpio = _import_gpio()
        self._pins: set[int] = set()
        self._lock = threading.Lock()
        try:
            self.gpio.setmode(self.gpio.BCM)
        except RuntimeError as err:
            raise GpioError(self._explain(err)) from err

    @staticmethod
    def _explain(err: Exception) -> str:
        text = str(err)
        if "SOC peripheral base address" in text:
            return "RPi.GPIO does not work on a Pi 5: replace it with rpi-lgpio (sudo apt install python3-rpi-lgpio)"
        if "/dev/mem" in text or "ermission" in text or "busy" in text.lower():
            return f"GPIO access refused ({text}): add the service user to the gpio group; a pin used by 1-Wire is busy"
        return f"GPIO error: {text}"

    def setup_input(self, pin: int, pull: str) -> None:
        pud = {"up": self.gpio.PUD_UP, "down": self.gpio.PUD_DOWN, "off": self.gpio.PUD_OFF}[pull]
        try:
            self.gpio.setup(pin, self.gpio.IN, pull_up_down=pud)
        except (RuntimeError, ValueError) as err:
            raise GpioError(f"BCM pin {pin}: {self._explain(err)}") from err
        self._pins.add(pin)

    def add_edge_callback(self, pin: int, callback: EdgeCallback, bounce_ms: int = 0) -> None:
        def on_edge(channel: int) -> None:
            # Runs on RPi.GPIO's poll thread; an exception here would be printed and swallowed by the C code.
            # bouncetime only drops close edges, it does not re-read the level: read it now, hand both over.
            try:
                callback(channel, bool(self.gpio.input(channel)))
            except Exception:  # never let it reach the C layer, which would print it and go on silently
                log.exception("GPIO edge on BCM pin %d could not be handed over", channel)

        kwargs = {"bouncetime": bounce_ms} if bounce_ms > 0 else {}
        try:
            self.gpio.add_event_detect(pin, self.gpio.BOTH, callback=on_edge, **kwargs)
        except RuntimeError as err:
            raise GpioError(f"BCM pin {pin}: cannot watch edges: {self._explain(err)}") from err

    def read(self, pin: int) -> bool:
        return bool(self.gpio.input(pin))

    def cleanup(self) -> None:
        with self._lock:
            pins, self._pins = list(self._pins), set()
        for pin in pins:
            try:
                self.gpio.remove_event_detect(pin)
            except RuntimeError:
                pass
        if pins:
            self.gpio.cleanup(pins)
