"""python -m server --doctor: the facts provisioning/doctor.sh judges, read by the server's own rules."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def _doctor(tmp_path: Path, config: Path) -> dict[str, str]:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "server",
            "--doctor",
            "--config",
            str(config),
            "--runtime-dir",
            str(tmp_path / "run"),
            "--browser-profile",
            str(tmp_path / "chromium"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return dict(line.split("=", 1) for line in run.stdout.splitlines())


def test_doctor_names_the_live_sockets_the_crash_flag_and_the_backend(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(runtime / "wayland-0"))
    dead.close()  # a compositor that died leaves its socket file behind
    (runtime / "wayland-1.lock").write_text("")
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(runtime / "wayland-1"))
    live.listen(1)
    prefs = tmp_path / "chromium" / "Default" / "Preferences"
    prefs.parent.mkdir(parents=True)
    prefs.write_text('{"profile": {"exit_type": "Crashed"}}')
    config = tmp_path / "config.yaml"
    config.write_text("display:\n  backend: wlopm\n  token: ${NOT_SET_ANYWHERE}\n")  # an unset secret is no matter
    try:
        facts = _doctor(tmp_path, config)
    finally:
        live.close()
    assert facts["wayland_live"] == "wayland-1"
    assert facts["browser_exit_type"] == "Crashed"
    assert facts["display_backend"] == "wlopm"
    assert facts["gpio_library"] in ("lgpio", "rpi.gpio", "none")


def test_doctor_says_what_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "chromium" / "Default").mkdir(parents=True)
    (tmp_path / "chromium" / "Default" / "Preferences").write_text("{not json")
    config = tmp_path / "config.yaml"
    config.write_text("display: {backend: none}\ndisplay: {backend: cec}\n")  # a key written twice
    facts = _doctor(tmp_path, config)
    assert (facts["wayland_live"], facts["browser_exit_type"], facts["display_backend"]) == (
        "",
        "unreadable",
        "unknown",
    )
    assert _doctor(tmp_path / "nothing", tmp_path / "missing.yaml")["browser_exit_type"] == "absent"
