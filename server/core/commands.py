"""Running the system's tools (wlopm, cec-ctl, systemctl): a timeout that really holds, and no secrets passed on."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping


def command_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A small environment for a tool: the server's own holds API keys (EnvironmentFile=), a child gets none.

    XDG_RUNTIME_DIR is what wlopm (the Wayland socket) and `systemctl --user` (the user manager) need; a
    system service has none set, so it is derived from the uid (the server runs as the kiosk session's user).
    """
    environ = os.environ if environ is None else environ
    env = {
        "PATH": environ.get("PATH", "/usr/bin:/bin"),
        "HOME": environ.get("HOME", "/"),
        "LC_ALL": "C",  # stable output to parse
        "XDG_RUNTIME_DIR": environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}",
        "DISPLAY": environ.get("DISPLAY", ":0"),  # xset only
    }
    if environ.get("DBUS_SESSION_BUS_ADDRESS"):
        env["DBUS_SESSION_BUS_ADDRESS"] = environ["DBUS_SESSION_BUS_ADDRESS"]
    return env


def run_command(argv: list[str], env: Mapping[str, str], timeout_s: float) -> tuple[int | None, str, str]:
    """(exit status, or None on a timeout; stdout; stderr). Blocking: call it in the executor.

    On a timeout the whole process group is killed: a child of the tool that keeps the output pipe open
    would otherwise block this thread past the timeout.
    """
    try:
        proc = subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except OSError as err:
        return 127, "", f"cannot run {argv[0]}: {err.strerror}"
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, "", ""
    return proc.returncode, out, err
