"""`python -m server --doctor`: what `provision.sh doctor` asks of this machine that the server's own rules answer.

One `name=value` line each, for provisioning/doctor.sh to judge (it owns the OK / WARN / FAIL wording):

    wayland_live       the live wayland-N sockets in --runtime-dir, space-separated (the display backends' rule)
    gpio_library       lgpio | rpi.gpio | none: the RPi.GPIO installed beside the server
    browser_exit_type  the kiosk profile's profile.exit_type (Crashed, Normal, ...), absent or unreadable
    display_backend    display.backend of --config as the server reads it, or unknown when it cannot be read

Changes nothing, binds nothing, starts nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from sensors.gpio import installed_library
from server.config import ConfigError, DisplayConfig, read_document
from server.display.backends import live_wayland_sockets


def browser_exit_type(preferences: Path) -> str:
    """Chromium's profile.exit_type in a profile's Default/Preferences ("Crashed" after a crash or power cut)."""
    try:
        doc = json.loads(preferences.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "absent"
    except (OSError, ValueError):
        return "unreadable"
    profile = doc.get("profile", {}) if isinstance(doc, dict) else None
    if not isinstance(profile, dict):
        return "unreadable"
    return str(profile.get("exit_type"))


def display_backend(config_path: str) -> str:
    """display.backend as written in the config (the default when it says nothing), without checking the rest:
    a doctor must answer about a config that may not start."""
    try:
        doc = read_document(config_path) or {}
    except ConfigError:
        return "unknown"
    display = doc.get("display") if isinstance(doc, dict) else None
    if display is None:
        return DisplayConfig().backend
    backend = display.get("backend", DisplayConfig().backend) if isinstance(display, dict) else None
    return backend if isinstance(backend, str) else "unknown"


def facts(config_path: str, runtime_dir: str, browser_profile: str) -> dict[str, str]:
    return {
        "wayland_live": " ".join(live_wayland_sockets(runtime_dir)),
        "gpio_library": installed_library(),
        "browser_exit_type": browser_exit_type(Path(browser_profile) / "Default" / "Preferences"),
        "display_backend": display_backend(config_path),
    }
