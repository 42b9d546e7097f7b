"""The wall under a real compositor: sway (headless wlroots), the launcher, Chromium on Wayland, the server.

What a Pi's screen would show, without a screen: sway runs with the headless backend and the pixman renderer
(no /dev/dri here), started the way homeboard-wall.service starts it (kiosk/session/homeboard-session, with
the sway config provisioning installs on plain Debian), as an unprivileged account. supervisord keeps the
launcher running (the systemd user unit's job on a Pi) and gives the wall watchdog a restart command that
blocks until the browser is up, like a supervisord deployment; a non-blocking one is tested too. The server
is `python -m server` with the wall watchdog on. Only the reboot is a stand-in (`true`).

Timings (browser start to first heartbeat, kill -9 to heartbeat, each escalation) are printed (pytest -s)
and written to tests/artifacts/wall-timings.json.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, free_port, require_tool

TIMINGS = REPO / "tests" / "artifacts" / "wall-timings.json"
SILENCE_S = 35  # the smallest the config allows is the page's 30 s heartbeat; a little margin above it
STEP_WAIT_S = 30  # longer than a browser start under load (17 s seen on a busy 2-core machine)
KIOSK = "homeboard-kiosk"


@dataclass
class Wall:
    base: Path
    env: dict[str, str]  # the session's environment (the account's HOME, XDG_RUNTIME_DIR, WAYLAND_DISPLAY)
    uid: int
    gid: int
    server_url: str
    supervisor_conf: Path
    profile: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.server_url + "/healthz", timeout=5) as r:
            return json.load(r)

    def last_heartbeat(self) -> str | None:
        return self.health()["wall"]["last_heartbeat"]

    def wait_heartbeat_after(self, previous: str | None, timeout_s: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            beat = self.last_heartbeat()
            if beat is not None and beat != previous:
                return time.monotonic() - started
            time.sleep(0.25)
        raise AssertionError(f"no new heartbeat within {timeout_s} s; kiosk log:\n{self.kiosk_log()[-3000:]}")

    def supervisorctl(self, *args: str) -> str:
        ctl = shutil.which("supervisorctl", path=str(Path(sys.executable).parent))
        assert ctl is not None
        run = subprocess.run([ctl, "-c", str(self.supervisor_conf), *args], capture_output=True, text=True)
        return run.stdout.strip()

    def browser_pid(self) -> int:
        return int(self.supervisorctl("pid", KIOSK))

    def kiosk_log(self) -> str:
        path = self.base / "kiosk.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def as_account(self, *cmd: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            list(cmd), env=self.env, user=self.uid, group=self.gid, extra_groups=[], capture_output=True, timeout=30
        )

    def screenshot(self) -> tuple[int, int, bytes]:
        """grim's PPM of the whole output: (width, height, RGB bytes)."""
        run = self.as_account(require_tool("grim"), "-t", "ppm", "-")
        assert run.returncode == 0, run.stderr
        header, data = run.stdout.split(b"\n", 3)[:3], run.stdout.split(b"\n", 3)[3]
        assert header[0] == b"P6"
        width, height = map(int, header[1].split())
        return width, height, data

    def renderer_pids(self) -> list[int]:
        """Chromium's renderer processes under the browser supervisord runs (the page lives in one of them)."""
        browser = self.browser_pid()
        out = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
                ancestors = _ancestors(int(proc.name))
            except OSError:
                continue
            if b"--type=renderer" in cmdline and browser in ancestors:
                out.append(int(proc.name))
        return out


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        chain.append(pid)
    return chain


def _blank(width: int, height: int, rgb: bytes) -> bool:
    """An empty output (sway's grey) or a black one has a colour or two; the page's text and icons, hundreds
    (anti-aliasing). The dashboard is dark: most pixels are its background, so count colours, not shares."""
    assert len(rgb) == width * height * 3
    colours = Counter(rgb[i : i + 3] for i in range(0, len(rgb), 3))
    return len(colours) < 50


def _shows_the_page(wall: Wall, timeout_s: float = 20) -> bool:
    """The first heartbeat can come before the window is mapped: give the compositor a moment."""
    deadline = time.monotonic() + timeout_s
    while _blank(*wall.screenshot()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _account() -> tuple[int, int]:
    """An unprivileged account for the session: nobody when the tests run as root, else the current user."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


def _wait(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def wall() -> Iterator[Wall]:
    for tool in ("sway", "grim", "chromium"):
        require_tool(tool, hint="apt install sway grim chromium")
    supervisord = require_tool("supervisord", search_path=str(Path(sys.executable).parent))
    # Not under pytest's tmp directory: it is 0700 root, and the session's account must reach its files.
    base = Path(tempfile.mkdtemp(prefix="homeboard-wall-"))
    base.chmod(0o755)
    uid, gid = _account()
    home, runtime = base / "home", base / "run"
    for d in (home, runtime, home / ".config" / "sway"):
        d.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "kiosk" / "session" / "sway.config", home / ".config" / "sway" / "config")
    for d in (home, runtime, home / ".config", home / ".config" / "sway", home / ".config" / "sway" / "config"):
        os.chown(d, uid, gid)
    runtime.chmod(0o700)
    profile = home / "chromium"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "WLR_BACKENDS": "headless",
        "WLR_LIBINPUT_NO_DEVICES": "1",
        "WLR_RENDERER": "pixman",
    }
    wall = None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # The compositor, as homeboard-wall.service starts it.
        sway = subprocess.Popen(
            [str(REPO / "kiosk" / "session" / "homeboard-session")],
            env=env,
            user=uid,
            group=gid,
            extra_groups=[],
            stdout=open(base / "sway.log", "wb"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(sway)
        _wait(lambda: any(p.name.startswith("wayland-") and p.is_socket() for p in runtime.iterdir()), 20, "sway")
        session_env = {
            **env,
            "WAYLAND_DISPLAY": next(
                p.name for p in runtime.iterdir() if p.is_socket() and p.name.startswith("wayland-")
            ),
        }

        # The server, with the wall watchdog acting fast and a restart command whose blocking the test chooses.
        port = free_port()
        mode = base / "restart-mode"
        mode.write_text("blocking")
        conf = base / "supervisord.conf"
        restart = base / "restart-browser"
        ctl = Path(sys.executable).parent / "supervisorctl"
        restart.write_text(
            "#!/bin/sh\n# blocking: return once the browser is up (supervisorctl waits startsecs); else at once.\n"
            f'if [ "$(cat {mode})" = blocking ]; then exec {ctl} -c {conf} restart {KIOSK}; fi\n'
            f"{ctl} -c {conf} restart {KIOSK} >/dev/null 2>&1 &\n"
        )
        restart.chmod(0o755)
        config = base / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(base / "var"),
                    "server": {"host": "127.0.0.1", "port": port},
                    "wall": {
                        "enabled": True,
                        "silence_s": SILENCE_S,
                        "startup_grace_s": 120,
                        "step_wait_s": STEP_WAIT_S,
                        "check_interval_s": 0.5,
                        "browser_restarts": 5,
                        "restart_command": [str(restart)],
                        "reboot_command": ["true"],
                        "reboot_min_uptime_min": 100000,  # the reboot step stays out of reach
                        "command_timeout_s": 60,
                    },
                }
            )
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "server", "--config", str(config)],
            cwd=REPO,
            stdout=open(base / "server.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        procs.append(server)

        # The launcher under supervisord, as the session's account (the user unit's job on a Pi).
        kiosk_env = {
            **session_env,
            "HOMEBOARD_URL": f"http://127.0.0.1:{port}/?wall=1",
            "HOMEBOARD_PROFILE_DIR": str(profile),
            # No GPU here (no /dev/dri): software compositing. A Pi has one and needs no such flag.
            "HOMEBOARD_CHROMIUM_FLAGS": "--disable-gpu",
        }
        environment = ",".join(f'{k}="{v}"' for k, v in kiosk_env.items() if not k.startswith("WLR_"))
        user_line = f"user={pwd.getpwuid(uid).pw_name}\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"[supervisord]\nnodaemon=true\nlogfile={base}/supervisord.log\npidfile={base}/supervisord.pid\n"
            f"[unix_http_server]\nfile={base}/supervisor.sock\nchmod=0700\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
            f"[supervisorctl]\nserverurl=unix://{base}/supervisor.sock\n"
            f"[program:{KIOSK}]\ncommand=/usr/bin/python3 {REPO}/kiosk/launcher/homeboard_kiosk.py\n"
            f"{user_line}environment={environment}\ndirectory={home}\nautostart=true\nautorestart=true\n"
            "startsecs=5\nstartretries=20\nstopsignal=TERM\nstopwaitsecs=10\nstopasgroup=true\nkillasgroup=true\n"
            f"redirect_stderr=true\nstdout_logfile={base}/kiosk.log\n"
        )
        started = time.monotonic()
        procs.append(
            subprocess.Popen([supervisord, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        wall = Wall(base, session_env, uid, gid, f"http://127.0.0.1:{port}", conf, profile, procs)
        _wait(lambda: _answers(wall), 30, "the server")
        wall.wait_heartbeat_after(None, 90)
        wall.timings["start to first heartbeat s"] = round(time.monotonic() - started, 1)
        yield wall
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(base, ignore_errors=True)
        if wall is not None:
            TIMINGS.parent.mkdir(exist_ok=True)
            TIMINGS.write_text(json.dumps(wall.timings, indent=2) + "\n")
            print("\nwall timings:", json.dumps(wall.timings))


def _answers(wall: Wall) -> bool:
    try:
        wall.health()
    except OSError:
        return False
    return True


def test_1_the_wall_renders_on_wayland_and_its_heartbeat_reaches_healthz(wall: Wall) -> None:
    health = wall.health()["wall"]
    assert health["status"] == "ok"
    assert health["last_heartbeat"] is not None
    assert "--ozone-platform=wayland" in Path(f"/proc/{wall.browser_pid()}/cmdline").read_text()
    # What the screen shows: the page, not sway's empty grey.
    width, height, rgb = wall.screenshot()
    assert (width, height) != (0, 0)
    assert not _blank(width, height, rgb)
    TIMINGS.parent.mkdir(exist_ok=True)  # a picture for people: what the wall showed
    shot = wall.as_account(require_tool("grim"), "-t", "png", "-")
    (TIMINGS.parent / "wall-sway.png").write_bytes(shot.stdout)


def test_2_a_killed_browser_comes_back_with_its_profile_repaired(wall: Wall) -> None:
    prefs = wall.profile / "Default" / "Preferences"
    # Chromium 156 marks its running session "Crashed" about 10 s after its start.
    _wait(
        lambda: prefs.exists() and json.loads(prefs.read_text())["profile"].get("exit_type") == "Crashed",
        40,
        "Chromium to mark its session",
    )
    before = wall.last_heartbeat()
    log_size = len(wall.kiosk_log())
    os.kill(wall.browser_pid(), signal.SIGKILL)  # as far as the profile can tell, a power cut
    took = wall.wait_heartbeat_after(before, 90)
    wall.timings["kill -9 to heartbeat s"] = round(took, 1)
    after = wall.kiosk_log()[log_size:]
    assert "profile: repaired exit_type='Crashed' → 'Normal'" in after
    assert "removed a stale profile lock" in after
    assert _shows_the_page(wall)


def _escalate(wall: Wall, mode: str) -> list[dict[str, Any]]:
    """Freeze the page's renderer: no heartbeats. The watchdog asks for a reload (the frozen page cannot),
    then restarts the browser; the new page's heartbeat ends it. The silence counts from the last heartbeat,
    up to 30 s before the freeze: "freeze to recovered" varies by that much, "restart to heartbeat" not."""
    (wall.base / "restart-mode").write_text(mode)
    history_before = len(wall.health()["wall"]["history"])
    frozen = wall.renderer_pids()
    assert frozen
    started = time.monotonic()
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)

    def recovered() -> bool:
        return any(h["step"] == "recovered" for h in wall.health()["wall"]["history"][history_before:])

    _wait(recovered, SILENCE_S + 2 * STEP_WAIT_S + 90, f"recovery after a {mode} restart")
    wall.timings[f"{mode} restart: freeze to recovered s"] = round(time.monotonic() - started, 1)
    history = wall.health()["wall"]["history"][history_before:]
    at = {h["step"]: dt.datetime.fromisoformat(h["at"]) for h in reversed(history)}  # the first of each
    wall.timings[f"{mode} restart: restart to heartbeat s"] = (at["recovered"] - at["restart_browser"]).seconds
    for pid in frozen:  # whatever the restart left of them
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    return history


def _in_order(history: list[dict[str, Any]]) -> None:
    """reload, then the browser restart(s) — each recorded before its command ran — then recovered, last."""
    steps = [h["step"] for h in history]
    assert steps[0] == "reload", history
    assert steps[-1] == "recovered", history
    assert set(steps[1:-1]) == {"restart_browser"}, history
    assert history[1]["detail"].startswith("attempt 1: "), history
    assert history[-1]["detail"] == "the wall page is back (last step: restart_browser)"
    assert all(not h.get("failed") for h in history), history


def test_3_escalation_with_a_non_blocking_restart_command(wall: Wall) -> None:
    history = _escalate(wall, "background")
    _in_order(history)
    assert wall.health()["wall"]["escalation"] == "none"
    assert _shows_the_page(wall)


def test_4_escalation_with_a_restart_command_that_blocks_until_the_browser_is_up(wall: Wall) -> None:
    history = _escalate(wall, "blocking")
    # The heartbeat may arrive while supervisorctl still waits: the history keeps its order all the same,
    # and nothing is recorded after "recovered" (the old code logged the restart late, with attempt 0).
    _in_order(history)
    time.sleep(7)  # supervisorctl returns once the browser has run startsecs=5: after the recovery
    assert wall.health()["wall"]["history"][-1]["step"] == "recovered"
    assert wall.health()["wall"]["browser_restarts"] == 0  # the counter was reset by the recovery, once
    assert _shows_the_page(wall)
