"""The Raspberry Pi backend: the one place the GPIO library is imported (lazily). That library is rpi-lgpio, from
pip on every Pi: the RPi.GPIO API on top of lgpio and /dev/gpiochip, pure Python over lgpio's aarch64/armv7l
wheels (no compiler), and the Pi 3, 4 and 5 alike (classic RPi.GPIO cannot drive a Pi 5's RP1 chip).

Whatever goes wrong, at import or later, becomes a GpioError of one line that names the cause and the fix."""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sensors.gpio.pins import EdgeCallback, GpioError

log = logging.getLogger(__name__)

LIBRARY = "rpi-lgpio"
REINSTALL = "run provision.sh again, or: .venv/bin/pip install rpi-lgpio"


def _one_line(err: BaseException) -> str:
    # lgpio.error's text is the repr of its message ("'can not open gpiochip'"): without the quotes.
    return " ".join(str(err).strip("'").split()) or type(err).__name__


def explain_import(err: BaseException, environ: Mapping[str, str] = os.environ, cwd: str | None = None) -> str:
    """Why `import RPi.GPIO` failed, and what fixes it."""
    text = _one_line(err)
    if isinstance(err, ModuleNotFoundError) and err.name in ("RPi", "RPi.GPIO", "lgpio", "_lgpio"):
        return f"no GPIO library: {err.name} is not installed ({LIBRARY} provides it): {REINSTALL}"
    if isinstance(err, OSError) and ".lgd-nfy" in f"{text} {err.filename}":
        # lgpio makes a notification FIFO at import, in $LG_WD or else the working directory.
        where = environ.get("LG_WD") or cwd or os.getcwd()
        return (
            f"lgpio cannot create its notification pipe in {where} ({text}): set LG_WD to a directory this user "
            "can write (homeboard.service has RuntimeDirectory=homeboard and LG_WD=/run/homeboard)"
        )
    if isinstance(err, RuntimeError) and "Raspberry Pi" in text:
        # rpi-lgpio reads the board revision from /proc/device-tree at import.
        return f"not a Raspberry Pi ({LIBRARY}: {text}): set gpio.backend: emulated on this machine"
    if isinstance(err, ImportError):
        return f"{LIBRARY} is installed but cannot load ({text}): {REINSTALL}"
    return f"{LIBRARY} failed at import ({type(err).__name__}: {text}): {REINSTALL}"


def explain(err: BaseException) -> str:
    """Why a call into the GPIO library failed, and what fixes it."""
    text = _one_line(err)
    lowered = text.lower()
    if "soc peripheral base address" in lowered:
        return f"classic RPi.GPIO is installed, which cannot drive a Pi 5 ({text}): use {LIBRARY}: {REINSTALL}"
    if "gpiochip" in lowered:
        chip = os.environ.get("RPI_LGPIO_CHIP")
        which = f"/dev/gpiochip{chip}" if chip else "the Pi's /dev/gpiochip*"
        return (
            f"cannot open {which} ({text}): add the service user to the gpio group; on an old kernel without "
            "gpiochip devices, update Raspberry Pi OS"
        )
    if "busy" in lowered:
        return f"the pin is in use ({text}): by the kernel (1-Wire is on GPIO4 by default) or by another program"
    if "/dev/mem" in text or "ermission" in text:
        return f"GPIO access refused ({text}): add the service user to the gpio group"
    return f"GPIO error ({type(err).__name__}: {text})"


def load_gpio(import_module: Callable[[str], Any] = importlib.import_module) -> Any:
    """The RPi.GPIO module (rpi-lgpio's). Raises GpioError with one line for any failure."""
    cwd = os.getcwd()
    try:
        return import_module("RPi.GPIO")
    except Exception as err:  # a boundary: anything the library raises at import becomes one line
        raise GpioError(explain_import(err, cwd=cwd)) from err
    finally:
        # lgpio moves the process into $LG_WD at import (its FIFO is open by then): a relative path of the
        # server's must not move with it.
        os.chdir(cwd)


class RpiPins:
    name = "rpi"

    def __init__(self, gpio: Any = None) -> None:
        self.gpio = gpio if gpio is not None else load_gpio()
        self._pins: set[int] = set()
        self._lock = threading.Lock()
        try:
            self.gpio.setmode(self.gpio.BCM)
        except Exception as err:  # RuntimeError from rpi-lgpio, lgpio.error from below it
            raise GpioError(explain(err)) from err

    def setup_input(self, pin: int, pull: str) -> None:
        pud = {"up": self.gpio.PUD_UP, "down": self.gpio.PUD_DOWN, "off": self.gpio.PUD_OFF}[pull]
        try:
            self.gpio.setup(pin, self.gpio.IN, pull_up_down=pud)
        except Exception as err:
            raise GpioError(f"BCM pin {pin}: {explain(err)}") from err
        self._pins.add(pin)

    def add_edge_callback(self, pin: int, callback: EdgeCallback, bounce_ms: int = 0) -> None:
        def on_edge(channel: int) -> None:
            # Runs on the library's own thread, where an exception would only be printed.
            # bouncetime only drops close edges, it does not re-read the level: read it now, hand both over.
            try:
                callback(channel, bool(self.gpio.input(channel)))
            except Exception:  # never let it reach the library's thread, which would print it and go on silently
                log.exception("GPIO edge on BCM pin %d could not be handed over", channel)

        kwargs = {"bouncetime": bounce_ms} if bounce_ms > 0 else {}
        try:
            self.gpio.add_event_detect(pin, self.gpio.BOTH, callback=on_edge, **kwargs)
        except Exception as err:
            raise GpioError(f"BCM pin {pin}: cannot watch edges: {explain(err)}") from err

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
