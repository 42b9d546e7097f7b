"""GPIO inputs (PIR, buttons) behind one small pin interface, with an RPi.GPIO/rpi-lgpio backend and an
emulated one. Edge callbacks arrive on the backend's own thread: hand them to your event loop.

    pins = open_backend("auto")
    pins.setup_input(17, "down")
    pins.add_edge_callback(17, lambda pin, level: loop.add_callback(on_edge, pin, level), bounce_ms=200)
"""

from __future__ import annotations

from sensors.gpio.pins import PULLS, EdgeCallback, GpioError, PinBackend

__all__ = ["PULLS", "EdgeCallback", "GpioError", "PinBackend", "installed_library", "is_raspberry_pi", "open_backend"]

MODEL_FILE = "/proc/device-tree/model"


def is_raspberry_pi(model_file: str = MODEL_FILE) -> bool:
    try:
        with open(model_file, encoding="ascii", errors="replace") as f:
            return "Raspberry Pi" in f.read()
    except OSError:
        return False


def installed_library() -> str:
    """Which RPi.GPIO is installed: "lgpio" (rpi-lgpio, the one that works on a Pi 5), "rpi.gpio" (the original,
    which fails on a Pi 5) or "none". Looks at the installed distributions; imports neither."""
    import importlib.metadata

    for distribution, label in (("rpi-lgpio", "lgpio"), ("RPi.GPIO", "rpi.gpio")):
        try:
            importlib.metadata.distribution(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
        return label
    return "none"


def open_backend(kind: str = "auto") -> PinBackend:
    """ "rpi": RPi.GPIO (or rpi-lgpio's drop-in); "emulated": no hardware; "auto": rpi on a Raspberry Pi, else
    emulated. Raises GpioError when "rpi" (or "auto" on a Pi) cannot be used: a Pi must never fall back
    silently to emulated pins."""
    if kind == "emulated" or (kind == "auto" and not is_raspberry_pi()):
        from sensors.gpio.emulated import EmulatedPins

        return EmulatedPins()
    if kind in ("rpi", "auto"):
        from sensors.gpio.rpi import RpiPins

        return RpiPins()
    raise GpioError(f"unknown GPIO backend {kind!r} (known: auto, rpi, emulated)")
