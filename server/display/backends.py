"""Screen power backends: one class per way of switching a screen, each able to read the state back.

All methods block (they run a command or touch sysfs): call them in the executor, never on the loop.
Which one works where (python -m server.display probe tries them):
  wlopm      Wayland DPMS on labwc (Raspberry Pi OS Bookworm): the first choice for HDMI monitors.
  wlr-randr  disables the output; on labwc it drops Chromium out of fullscreen (RPi-Distro/chromium #54).
  cec        a TV over HDMI-CEC (cec-ctl from v4l-utils); the TV reports its own power state.
  backlight  the official DSI touchscreen (/sys/class/backlight); brightness too.
  xset       X11 sessions only.
  vcgencmd   legacy firmware only: does nothing under the KMS driver Bookworm uses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from server.config import DisplayConfig
from server.core.commands import command_env, run_command

BACKEND_NAMES = ("wlopm", "wlr-randr", "cec", "backlight", "xset", "vcgencmd")
PACKAGES = {"wlopm": "wlopm", "wlr-randr": "wlr-randr", "cec-ctl": "v4l-utils", "xset": "x11-xserver-utils"}
BL_POWER_ON = "0"  # FB_BLANK_UNBLANK
BL_POWER_OFF = "4"  # FB_BLANK_POWERDOWN


class DisplayError(Exception):
    """Switching or reading the screen failed. The message says what to check; it never contains a secret."""


class NoSession(DisplayError):
    """No live Wayland session to talk to: at boot the server is up before the wall session, for a while."""


class Backend(Protocol):
    name: str

    def set_power(self, on: bool) -> None:
        """Switch the screen. Raises DisplayError."""

    def read_power(self) -> bool | None:
        """True on, False off, None in transition (a TV waking up). Raises DisplayError."""


# ------------------------------------------------------------------------------------------ commands


def _socket_alive(path: str) -> bool:
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def find_wayland_display(runtime_dir: str, preferred: str | None = None) -> str | None:
    """The live Wayland socket: `preferred` if it answers, else the lowest wayland-N that does.

    Not simply $WAYLAND_DISPLAY: the compositor may have come back on wayland-1 while a stale wayland-0
    file stays behind (MagicMirror PR #4268). The kiosk launcher has the same rule in its own copy (it runs with
    the system python3 and the standard library alone); tests/test_launcher.py checks that both pick alike.
    """
    names = ([preferred] if preferred else []) + _wayland_names(runtime_dir)
    for name in names:
        if _socket_alive(name if os.path.isabs(name) else os.path.join(runtime_dir, name)):
            return name
    return None


def live_wayland_sockets(runtime_dir: str) -> list[str]:
    """Every wayland-N in `runtime_dir` that a compositor answers on, lowest first (`provision.sh doctor`)."""
    return [name for name in _wayland_names(runtime_dir) if _socket_alive(os.path.join(runtime_dir, name))]


def _wayland_names(runtime_dir: str) -> list[str]:
    try:
        found = [n for n in os.listdir(runtime_dir) if re.fullmatch(r"wayland-\d+", n)]
    except OSError:
        found = []
    return sorted(found, key=lambda n: int(n.split("-")[1]))


class Commands:
    """Runs a tool with a timeout and turns every way it can fail into a DisplayError a person can act on."""

    def __init__(self, env: Mapping[str, str], timeout_s: float) -> None:
        self.env = dict(env)
        self.timeout_s = timeout_s

    def run(self, argv: list[str]) -> str:
        tool = argv[0]
        path = shutil.which(tool, path=self.env.get("PATH"))
        if path is None:
            package = PACKAGES.get(tool, tool)
            raise DisplayError(f"{tool} is not installed (sudo apt install {package})")
        returncode, out, err = run_command([path, *argv[1:]], self.env, self.timeout_s)
        if returncode is None:
            raise DisplayError(f"{' '.join(argv)} did not finish within {self.timeout_s:g} s")
        if returncode != 0:
            lines = (err or out).strip().splitlines()
            why = lines[-1][:200] if lines else "no message"
            raise DisplayError(f"{' '.join(argv)} failed (exit {returncode}): {why}")
        return out


class WaylandCommands(Commands):
    """Commands that talk to the compositor: WAYLAND_DISPLAY is found afresh for every call."""

    def __init__(self, env: Mapping[str, str], timeout_s: float, wayland_display: str | None) -> None:
        super().__init__(env, timeout_s)
        self.preferred = wayland_display

    def run(self, argv: list[str]) -> str:
        runtime_dir = self.env["XDG_RUNTIME_DIR"]
        name = find_wayland_display(runtime_dir, self.preferred)
        if name is None:
            raise NoSession(
                f"no Wayland display: no live wayland-* socket in {runtime_dir} (is the wall session running?)"
            )
        self.env["WAYLAND_DISPLAY"] = name
        return super().run(argv)


# ------------------------------------------------------------------------------------------ parsers


def parse_wlopm(text: str, output: str | None) -> bool | None:
    """`wlopm --json` ([{"output": "HDMI-A-1", "power-mode": "on"}]) or plain `wlopm` ("HDMI-A-1 on")."""
    modes: dict[str, str] = {}
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, list):
        for entry in doc:
            if isinstance(entry, dict) and isinstance(entry.get("output"), str):
                if entry.get("error"):
                    raise DisplayError(f"wlopm: {entry['output']}: {entry['error']}")
                modes[entry["output"]] = str(entry.get("power-mode", ""))
    else:
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2:
                modes[parts[0]] = parts[1]
    return _pick(modes, output, "wlopm", {"on": True, "off": False})


def parse_wlr_randr(text: str, output: str | None) -> bool | None:
    """Plain `wlr-randr`: an unindented line per output, then "  Enabled: yes|no" among its properties."""
    modes: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if line and not line[0].isspace():
            current = line.split()[0]
        elif current and line.strip().startswith("Enabled:"):
            modes[current] = line.split(":", 1)[1].strip()
    return _pick(modes, output, "wlr-randr", {"yes": True, "no": False})


def first_wlr_output(text: str) -> str | None:
    for line in text.splitlines():
        if line and not line[0].isspace():
            return line.split()[0]
    return None


def parse_cec_power(text: str) -> bool | None:
    """`cec-ctl --give-device-power-status`: "pwr-state: on (0x00)", "standby (0x01)", or in transition."""
    m = re.search(r"pwr-state:\s*([a-z-]+)", text)
    if m is None:
        raise DisplayError("the TV did not report its power state over CEC (is CEC on in the TV's settings?)")
    state = m.group(1)
    if state == "on":
        return True
    if state == "standby":
        return False
    return None  # in-transition-standby-to-on / -on-to-standby: some TVs take 20-30 s


def parse_xset(text: str) -> bool | None:
    """`xset q`: "Monitor is On" / "Off" / "in Standby" / "in Suspend"."""
    m = re.search(r"Monitor is (?:in )?(\w+)", text)
    if m is None:
        raise DisplayError("xset q shows no monitor state (DPMS is disabled: xset +dpms)")
    return m.group(1) == "On"


def parse_vcgencmd(text: str) -> bool | None:
    m = re.search(r"display_power=(-?\d+)", text)
    if m is None:
        raise DisplayError(f"unexpected vcgencmd output: {text.strip()[:80]!r}")
    if m.group(1) == "-1":
        raise DisplayError("vcgencmd display_power does not work with the KMS driver (Bookworm): use wlopm")
    return m.group(1) == "1"


def _pick(modes: dict[str, str], output: str | None, tool: str, meaning: dict[str, bool]) -> bool | None:
    if not modes:
        raise DisplayError(f"{tool} lists no outputs (is a screen connected?)")
    if output is not None:
        if output not in modes:
            raise DisplayError(f"{tool}: no output {output!r} (found: {', '.join(sorted(modes))}); fix display.output")
        values = {modes[output]}
    else:
        values = set(modes.values())
    if len(values) != 1:
        return None  # some outputs on, some off: not a state we asked for
    (value,) = values
    if value not in meaning:
        raise DisplayError(f"{tool}: unexpected state {value!r}")
    return meaning[value]


# ------------------------------------------------------------------------------------------ backends


class WlopmBackend:
    name = "wlopm"

    def __init__(self, commands: Commands, output: str | None) -> None:
        self.commands = commands
        self.output = output

    def set_power(self, on: bool) -> None:
        # wlopm exits 0 even when an output refused (it lists the errors): parse them.
        text = self.commands.run(["wlopm", "--json", "--on" if on else "--off", self.output or "*"])
        if text.strip():
            parse_errors = [e for e in _json_list(text) if isinstance(e, dict) and e.get("error")]
            if parse_errors:
                raise DisplayError(f"wlopm: {parse_errors[0].get('output', '?')}: {parse_errors[0]['error']}")

    def read_power(self) -> bool | None:
        return parse_wlopm(self.commands.run(["wlopm", "--json"]), self.output)


class WlrRandrBackend:
    name = "wlr-randr"

    def __init__(self, commands: Commands, output: str | None) -> None:
        self.commands = commands
        self.output = output

    def set_power(self, on: bool) -> None:
        output = self.output or first_wlr_output(self.commands.run(["wlr-randr"]))
        if output is None:
            raise DisplayError("wlr-randr lists no outputs (is a screen connected?)")
        self.commands.run(["wlr-randr", "--output", output, "--on" if on else "--off"])

    def read_power(self) -> bool | None:
        return parse_wlr_randr(self.commands.run(["wlr-randr"]), self.output)


class CecBackend:
    """A TV over HDMI-CEC. Addresses the TV directly (logical address 0): a broadcast would put every
    device on the bus to sleep."""

    name = "cec"

    def __init__(self, commands: Commands, device: str) -> None:
        self.commands = commands
        self.device = device
        self._configured = False

    def _cec(self, *args: str) -> str:
        if not self._configured:
            # The adapter needs a logical address before it may talk; once per process (or after a failure).
            self.commands.run(["cec-ctl", "-d", self.device, "--playback"])
            self._configured = True
        try:
            return self.commands.run(["cec-ctl", "-d", self.device, "--skip-info", "--to", "0", *args])
        except DisplayError:
            self._configured = False
            raise

    def set_power(self, on: bool) -> None:
        self._cec("--image-view-on" if on else "--standby")

    def read_power(self) -> bool | None:
        return parse_cec_power(self._cec("--give-device-power-status"))


class BacklightBackend:
    """The official DSI touchscreen: bl_power 0 = on, 4 = off; brightness 0..max_brightness."""

    name = "backlight"

    def __init__(self, sysfs_root: str, device: str | None, brightness_pct: int | None) -> None:
        self.base = Path(sysfs_root) / "class" / "backlight"
        self.device = device
        self.brightness_pct = brightness_pct

    def _dir(self) -> Path:
        if self.device:
            path = self.base / self.device
            if not path.is_dir():
                raise DisplayError(f"no backlight {self.device!r} in {self.base}; fix display.output")
            return path
        try:
            devices = sorted(p for p in self.base.iterdir() if p.is_dir())
        except OSError:
            devices = []
        if not devices:
            raise DisplayError(f"no backlight in {self.base} (is the DSI touchscreen connected and detected?)")
        return devices[0]

    def _write(self, path: Path, value: str) -> None:
        try:
            path.write_text(value)
        except PermissionError as err:
            raise DisplayError(
                f"cannot write {path}: permission denied (provision.sh installs a udev rule for the video group; "
                "reboot once after installing)"
            ) from err
        except OSError as err:
            raise DisplayError(f"cannot write {path}: {err.strerror}") from err

    def set_power(self, on: bool) -> None:
        d = self._dir()
        if on and self.brightness_pct is not None:
            self.set_brightness(self.brightness_pct)
        self._write(d / "bl_power", BL_POWER_ON if on else BL_POWER_OFF)

    def set_brightness(self, pct: int) -> None:
        d = self._dir()
        try:
            top = int((d / "max_brightness").read_text())
        except (OSError, ValueError) as err:
            raise DisplayError(f"cannot read {d / 'max_brightness'}") from err
        self._write(d / "brightness", str(max(1, round(top * pct / 100))))

    def read_power(self) -> bool | None:
        path = self._dir() / "bl_power"
        try:
            return path.read_text().strip() == BL_POWER_ON
        except OSError as err:
            raise DisplayError(f"cannot read {path}: {err.strerror}") from err


class XsetBackend:
    name = "xset"

    def __init__(self, commands: Commands) -> None:
        self.commands = commands

    def set_power(self, on: bool) -> None:
        self.commands.run(["xset", "dpms", "force", "on" if on else "off"])

    def read_power(self) -> bool | None:
        return parse_xset(self.commands.run(["xset", "q"]))


class VcgencmdBackend:
    name = "vcgencmd"

    def __init__(self, commands: Commands) -> None:
        self.commands = commands

    def set_power(self, on: bool) -> None:
        self.commands.run(["vcgencmd", "display_power", "1" if on else "0"])

    def read_power(self) -> bool | None:
        return parse_vcgencmd(self.commands.run(["vcgencmd", "display_power"]))


def _json_list(text: str) -> list[object]:
    try:
        doc = json.loads(text)
    except ValueError:
        return []
    return doc if isinstance(doc, list) else []


def make_backend(
    name: str, config: DisplayConfig, environ: Mapping[str, str] | None = None, sysfs_root: str = "/sys"
) -> Backend:
    """The backend called `name`, set up from the display section of the config."""
    env = command_env(environ)
    timeout_s = config.command_timeout_s
    if name == "wlopm":
        return WlopmBackend(WaylandCommands(env, timeout_s, config.wayland_display), config.output)
    if name == "wlr-randr":
        return WlrRandrBackend(WaylandCommands(env, timeout_s, config.wayland_display), config.output)
    if name == "cec":
        return CecBackend(Commands(env, timeout_s), config.cec_device)
    if name == "backlight":
        return BacklightBackend(sysfs_root, config.output, config.brightness_pct)
    if name == "xset":
        return XsetBackend(Commands(env, timeout_s))
    if name == "vcgencmd":
        return VcgencmdBackend(Commands(env, timeout_s))
    raise ValueError(f"unknown display backend {name!r}")


def probe(config: DisplayConfig, environ: dict[str, str] | None = None, sysfs_root: str = "/sys") -> list[str]:
    """One line per backend: does reading the screen state work here? Switches nothing."""
    lines = []
    for name in BACKEND_NAMES:
        backend = make_backend(name, config, environ, sysfs_root)
        mark = "*" if name == config.backend else " "
        try:
            state = backend.read_power()
        except DisplayError as err:
            lines.append(f"{mark} {name:<10} no: {err}")
            continue
        shown = "in transition" if state is None else ("on" if state else "off")
        lines.append(f"{mark} {name:<10} works: the screen is {shown}")
    return lines
