"""The wall watchdog against a real server and a real WebSocket client, with systemctl as a recording stand-in."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from server.config import Config, ConfigError, WallConfig, replace
from server.core.hub import Hub
from server.wall.watch import WallWatch
from tests.conftest import make_config
from tests.serverthread import ServerThread

FAST = {
    "enabled": True,
    "silence_s": 0.8,
    "startup_grace_s": 0.8,
    "step_wait_s": 0.8,
    "check_interval_s": 0.1,
    "browser_restarts": 1,
    "reboot_min_uptime_min": 0,
    "command_timeout_s": 5,
}
SECRET_ENV = "HOMEBOARD_TEST_STRAVA_SECRET"


def fast_config(tmp_path: Path, **wall: Any) -> Config:
    """A config whose watchdog acts within a second. parse_config refuses silence_s below the page's 30 s
    heartbeat (right for a real wall); the test swaps the checked section for a fast one after parsing."""
    return replace(make_config(tmp_path, wall={"enabled": True}), wall=WallConfig(**{**FAST, **wall}))


@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`systemctl` first on PATH: records its argv and the environment it got, one JSON line per call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.jsonl"
    stub = bin_dir / "systemctl"
    stub.write_text(
        "#!/bin/sh\n"
        'python3 -c \'import json, os, sys; print(json.dumps({"argv": sys.argv[1:], "env": dict(os.environ)}))\' '
        f'"$@" >>"{log}"\n'
        f'if [ -e "{tmp_path}/fail" ]; then echo "Failed to connect to bus: No medium found" >&2; exit 1; fi\n'
        # "block": like `supervisorctl restart`, return only once the browser is back (the test says when).
        f'if [ -e "{tmp_path}/block" ]; then while [ ! -e "{tmp_path}/unblock" ]; do sleep 0.05; done; fi\n'
    )
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv(SECRET_ENV, "never-in-a-child")
    return log


def recorded(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def commands(log: Path) -> list[str]:
    return [" ".join(c["argv"]) for c in recorded(log)]


def health(srv: ServerThread) -> dict[str, Any]:
    with urllib.request.urlopen(srv.url + "/healthz", timeout=5) as r:
        return json.load(r)


def steps(srv: ServerThread) -> list[str]:
    return [h["step"] for h in health(srv)["wall"]["history"]]


async def wait_until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def heartbeat(conn: WebSocketClientConnection) -> None:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    await conn.write_message(json.dumps({"type": "heartbeat", "role": "wall", "version": "0.1.0", "rendered_at": now}))


@pytest.fixture
def server(tmp_path: Path, systemctl: Path) -> Iterator[ServerThread]:
    srv = ServerThread(fast_config(tmp_path)).start()
    yield srv
    srv.stop()


def test_silent_wall_is_reloaded_then_browser_restarted_then_rebooted_and_recovery_ends_it(
    server: ServerThread, systemctl: Path, tmp_path: Path
) -> None:
    async def scenario() -> None:
        conn = await websocket_connect(server.ws_url)
        assert json.loads(await conn.read_message())["type"] == "snapshot"
        for _ in range(10):  # 2 s of a healthy wall: nothing happens
            await heartbeat(conn)
            await asyncio.sleep(0.2)
        wall = health(server)["wall"]
        assert wall["status"] == "ok"
        assert wall["version"] == "0.1.0"
        assert wall["last_heartbeat"] is not None
        assert wall["history"] == []
        assert recorded(systemctl) == []

        # The page hangs: no more heartbeats. Step 1 arrives over the same socket.
        while True:
            msg = json.loads(await asyncio.wait_for(conn.read_message(), 5))
            if msg.get("type") == "reload":
                break
        await wait_until(lambda: "--user restart homeboard-kiosk.service" in commands(systemctl), 5, "browser restart")
        await wait_until(lambda: "reboot" in commands(systemctl), 5, "reboot")
        wall = health(server)
        assert wall["status"] == "degraded"
        assert wall["wall"]["escalation"] == "reboot asked"
        assert steps(server) == ["reload", "restart_browser", "reboot"]
        assert commands(systemctl) == ["--user restart homeboard-kiosk.service", "reboot"]
        state = json.loads((tmp_path / "var" / "wallwatch.json").read_text())
        assert len(state["reboots"]) == 1  # written before the reboot command ran

        # The page comes back: the escalation ends, and says so.
        await heartbeat(conn)
        await wait_until(lambda: steps(server)[-1] == "recovered", 3, "recovery")
        assert health(server)["wall"]["status"] == "ok"
        assert health(server)["status"] == "ok"
        conn.close()

    asyncio.run(scenario())
    env = recorded(systemctl)[0]["env"]
    assert env["XDG_RUNTIME_DIR"] == str(tmp_path / "run")  # how systemctl --user finds the user manager
    assert SECRET_ENV not in env  # the server's secrets stay in the server


def test_reboot_guard_keeps_restarting_the_browser_instead(tmp_path: Path, systemctl: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    (var / "wallwatch.json").write_text(json.dumps({"reboots": [time.time() - 3600], "history": []}))
    srv = ServerThread(fast_config(tmp_path, browser_restarts=1))
    srv.start()
    try:

        async def scenario() -> None:
            # No wall page connected at all: the reload step cannot reach anyone and says so.
            await wait_until(lambda: "reboot_suppressed" in steps(srv), 8, "the suppressed reboot")
            await wait_until(lambda: len(commands(systemctl)) == 2, 3, "the restart after it")

        asyncio.run(scenario())
        history = health(srv)["wall"]["history"]
        assert [h["step"] for h in history][:3] == ["reload", "restart_browser", "reboot_suppressed"]
        assert "no wall page connected" in history[0]["detail"]
        assert "the last one was 1.0 h ago (at most one per 6 h)" in history[2]["detail"]
        assert commands(systemctl) == ["--user restart homeboard-kiosk.service"] * 2  # restarts go on, no reboot
    finally:
        srv.stop()


def test_a_failing_restart_command_is_recorded_with_its_reason(tmp_path: Path, systemctl: Path) -> None:
    (tmp_path / "fail").touch()
    srv = ServerThread(fast_config(tmp_path, browser_restarts=3))
    srv.start()
    try:
        asyncio.run(wait_until(lambda: steps(srv).count("restart_browser") >= 2, 8, "a failed restart attempt"))
        attempt, failure = [h for h in health(srv)["wall"]["history"] if h["step"] == "restart_browser"][:2]
        assert attempt["detail"] == "attempt 1: systemctl --user restart homeboard-kiosk.service"  # before it ran
        assert "failed" not in attempt
        assert failure["failed"] is True
        assert failure["detail"].startswith("attempt 1 failed: ")
        assert "exit 1: Failed to connect to bus: No medium found" in failure["detail"]
    finally:
        srv.stop()


def test_a_blocking_restart_command_keeps_the_history_in_order(tmp_path: Path, systemctl: Path) -> None:
    """The page's heartbeat arrives while the restart command still runs: the step is already recorded."""
    (tmp_path / "block").touch()
    srv = ServerThread(fast_config(tmp_path, browser_restarts=3)).start()
    try:

        async def scenario() -> None:
            await wait_until(lambda: len(commands(systemctl)) == 1, 8, "the restart command to start")
            assert steps(srv) == ["reload", "restart_browser"]  # recorded before the command returned
            conn = await websocket_connect(srv.ws_url)
            await heartbeat(conn)  # the browser is back before its restart command returns
            await wait_until(lambda: steps(srv)[-1:] == ["recovered"], 3, "recovery")
            (tmp_path / "unblock").touch()
            await asyncio.sleep(0.5)
            conn.close()

        asyncio.run(scenario())
        history = health(srv)["wall"]["history"]
        assert [h["step"] for h in history] == ["reload", "restart_browser", "recovered"]
        assert history[1]["detail"] == "attempt 1: systemctl --user restart homeboard-kiosk.service"
        assert history[2]["detail"] == "the wall page is back (last step: restart_browser)"
        assert health(srv)["wall"]["escalation"] == "none"
    finally:
        srv.stop()


def test_silence_below_the_page_heartbeat_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, wall={"silence_s": 20})
    assert str(err.value) == (
        "wall.silence_s: must be 30 or more (the page sends a heartbeat every 30 s; less restarts a healthy wall), "
        "got 20"
    )
    assert make_config(tmp_path, wall={"silence_s": 30}).wall.silence_s == 30


def test_a_screen_switched_off_excuses_silence(tmp_path: Path, systemctl: Path) -> None:
    srv = ServerThread(fast_config(tmp_path)).start()
    try:
        srv.publish("display", {"power": "off", "reason": "schedule: off until 07:00"})
        time.sleep(2.0)  # well past silence_s and the start-up grace
        assert steps(srv) == []
        assert health(srv)["wall"]["screen_on"] is False
        srv.publish("display", {"power": "on", "reason": "schedule: on until 23:00"})
        time.sleep(0.4)
        assert steps(srv) == []  # silence counts afresh from the moment the screen came on
        asyncio.run(wait_until(lambda: steps(srv)[:1] == ["reload"], 5, "the first step"))
    finally:
        srv.stop()


def test_disabled_watchdog_reports_but_never_acts(tmp_path: Path, systemctl: Path) -> None:
    srv = ServerThread(fast_config(tmp_path, enabled=False)).start()
    try:
        time.sleep(2.0)
        wall = health(srv)["wall"]
        assert wall["enabled"] is False
        assert wall["status"] == "ok"
        assert wall["last_heartbeat"] is None
        assert recorded(systemctl) == []
    finally:
        srv.stop()


def _watch(tmp_path: Path, *, uptime_s: float, now: float, state: str | None = None) -> WallWatch:
    path = tmp_path / "wallwatch.json"
    if state is not None:
        path.write_text(state)

    async def direct(fn: Any, *args: Any) -> Any:
        return fn(*args)

    watch = WallWatch(
        Hub(dt.UTC, "t"),
        WallConfig(enabled=True),
        tz=dt.UTC,
        run_blocking=direct,
        state_path=path,
        clock=lambda: now,
        uptime=lambda: uptime_s,
    )
    watch._load()
    return watch


def test_reboot_guard_rules(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    assert _watch(tmp_path, uptime_s=3600, now=now).reboot_allowed() == (True, "")
    allowed, why = _watch(tmp_path, uptime_s=300, now=now).reboot_allowed()
    assert not allowed
    assert "up only 5 min (no reboot within 30 min of boot)" in why
    future = json.dumps({"reboots": [now + 7200]})  # no RTC: the clock is behind until NTP syncs
    allowed, why = _watch(tmp_path, uptime_s=3600, now=now, state=future).reboot_allowed()
    assert not allowed
    assert "clock not synced" in why
    old = json.dumps({"reboots": [now - 7 * 3600]})
    assert _watch(tmp_path, uptime_s=3600, now=now, state=old).reboot_allowed()[0] is True
    # A torn state file must not switch the guard off.
    allowed, why = _watch(tmp_path, uptime_s=3600, now=now, state='{"reboots": [17').reboot_allowed()
    assert not allowed
    assert "0.0 h ago" in why
