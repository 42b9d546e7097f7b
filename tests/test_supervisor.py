"""provisioning/supervisord.conf under a real supervisord: kill -9 the server and it serves again within 5 s."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, free_port, require_tool


def _supervisor_tool(name: str) -> str:
    """supervisord comes from pip (the `test` extra), so it is found beside this interpreter."""
    return require_tool(name, search_path=str(Path(sys.executable).parent), hint="pip install supervisor")


def _healthz(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status
    except OSError:
        return None


@pytest.fixture
def stage() -> Iterator[Path]:
    """An install tree like /opt/homeboard: the real conf file, the real code, a config on a free port.

    A short path under /tmp: supervisord's control socket lives in it, and Unix socket paths are limited
    to 107 bytes.
    """
    root = Path(tempfile.mkdtemp(prefix="hb-sv-", dir="/tmp"))
    (root / "provisioning").mkdir()
    shutil.copy(REPO / "provisioning" / "supervisord.conf", root / "provisioning" / "supervisord.conf")
    for name in ("server", "sensors", "kiosk"):
        (root / name).symlink_to(REPO / name)
    (root / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (root / "var" / "log").mkdir(parents=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_kill_9_server_serves_again_within_5_s(stage: Path) -> None:
    supervisord = _supervisor_tool("supervisord")
    supervisorctl = _supervisor_tool("supervisorctl")
    port = free_port()
    (stage / "config.yaml").write_text(yaml.safe_dump({"server": {"port": port}}))
    conf = str(stage / "provisioning" / "supervisord.conf")
    runtime = stage / "run"  # no compositor here: the kiosk launcher waits for one, as on a headless host
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(stage)}
    env.pop("WAYLAND_DISPLAY", None)
    env.pop("DISPLAY", None)
    sup = subprocess.Popen(
        [supervisord, "-c", conf], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/"
    )
    try:
        deadline = time.monotonic() + 30
        while _healthz(port) != 200:
            assert sup.poll() is None, (stage / "var" / "log" / "supervisord.log").read_text()
            assert time.monotonic() < deadline, (stage / "var" / "log" / "homeboard-server.log").read_text()
            time.sleep(0.1)

        def ctl(*args: str) -> str:
            return subprocess.run([supervisorctl, "-c", conf, *args], capture_output=True, text=True).stdout

        pid = int(ctl("pid", "homeboard-server").strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert b"-m\0server\0" in f.read()

        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        while _healthz(port) == 200 and time.monotonic() - killed_at < 1:  # the old process may answer briefly
            time.sleep(0.02)
        while _healthz(port) != 200:
            assert time.monotonic() - killed_at < 5, (stage / "var" / "log" / "homeboard-server.log").read_text()
            time.sleep(0.05)
        back_after_s = time.monotonic() - killed_at
        new_pid = int(ctl("pid", "homeboard-server").strip())
        assert new_pid != pid
        assert back_after_s < 5
        print(f"serving again {back_after_s:.2f} s after kill -9")  # the figure for the report (pytest -s)

        # Both programs settle in RUNNING (startsecs passed); the kiosk is waiting for a display, not crash-looping.
        deadline = time.monotonic() + 10
        while not re.search(r"homeboard-kiosk +RUNNING[^\n]*\nhomeboard-server +RUNNING", ctl("status")):
            assert time.monotonic() < deadline, ctl("status")
            time.sleep(0.2)
        # Bounded log files, in the place the conf says.
        logs = {p.name for p in (stage / "var" / "log").iterdir()}
        assert {"supervisord.log", "homeboard-server.log", "homeboard-kiosk.log"} <= logs
        assert "waiting for the display" in (stage / "var" / "log" / "homeboard-kiosk.log").read_text()
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(20)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait()
    assert _healthz(port) is None  # stopping supervisord stopped the server too
