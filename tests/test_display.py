"""Display power: schedule, PIR timeout, manual override over HTTP, and every backend with recording stand-ins."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.config import DisplayConfig, parse_config
from server.core.hub import Hub
from server.display import controller as display_mod
from server.display.backends import (
    BacklightBackend,
    Commands,
    DisplayError,
    make_backend,
    parse_cec_power,
    parse_wlopm,
    parse_wlr_randr,
    probe,
)
from server.display.controller import DisplayController
from server.display.decide import Motion, decide, in_window, parse_hhmm
from tests.conftest import REPO, make_config
from tests.serverthread import ServerThread

TZ = dt.timezone(dt.timedelta(hours=1))
SECRET_ENV = "HOMEBOARD_TEST_API_KEY"

# ------------------------------------------------------------------------------------------ stand-ins

# Each stand-in records its argv and environment (one JSON line) and keeps the screen state in a file,
# so reading back returns what was last set — unless the test makes the screen "stuck".
STANDINS = {
    "wlopm": r"""
state=$(cat "$D/state" 2>/dev/null || echo on)
json=0; action=""
while [ $# -gt 0 ]; do
  case "$1" in --json) json=1 ;; --on) action=on; shift ;; --off) action=off; shift ;; esac
  shift
done
if [ -n "$action" ]; then
  if [ -e "$D/fail" ]; then
    echo "wlopm: failed to connect to the power manager" >&2
    exit 1
  fi
  if [ -e "$D/refuse" ]; then
    echo '[{"output":"HDMI-A-1","error":"output power management is not supported"}]'
    exit 0
  fi
  [ -e "$D/stuck" ] || echo "$action" >"$D/state"
  [ "$json" = 1 ] && echo '[]'
  exit 0
fi
if [ "$json" = 1 ]; then printf '[{"output":"HDMI-A-1","power-mode":"%s"}]\n' "$state"; else echo "HDMI-A-1 $state"; fi
""",
    "wlr-randr": r"""
state=$(cat "$D/state" 2>/dev/null || echo yes)
if [ "$1" = --output ]; then
  case "$3" in --on) echo yes >"$D/state" ;; --off) echo no >"$D/state" ;; esac
  exit 0
fi
printf 'HDMI-A-1 "Dell Inc. DELL P2419H (HDMI-A-1)"\n  Make: Dell Inc.\n  Enabled: %s\n' "$state"
printf '  Modes:\n    1920x1080 px, 60.000000 Hz (preferred, current)\n'
""",
    "cec-ctl": r"""
state=$(cat "$D/state" 2>/dev/null || echo on)
case "$*" in
*--playback*) echo "Driver Info:"; exit 0 ;;
*--standby*) echo standby >"$D/state" ;;
*--image-view-on*)
  echo 2 >"$D/transition"   # this TV answers "in transition" twice before it is on
  echo on >"$D/state" ;;
*--give-device-power-status*)
  n=$(cat "$D/transition" 2>/dev/null || echo 0)
  if [ "$n" -gt 0 ]; then echo $((n - 1)) >"$D/transition"; state=in-transition-standby-to-on; fi
  printf 'Transmit from Playback Device 1 to TV (4 to 0):\nGIVE_DEVICE_POWER_STATUS (0x8f)\n'
  printf '\tReceived from TV (0 to 4): REPORT_POWER_STATUS (0x90):\n\t\tpwr-state: %s (0x00)\n' "$state" ;;
esac
""",
    "xset": r"""
state=$(cat "$D/state" 2>/dev/null || echo On)
case "$1" in
dpms) if [ "$3" = on ]; then echo On >"$D/state"; else echo Off >"$D/state"; fi ;;
q)
  printf 'DPMS (Energy Star):\n  Standby: 600    Suspend: 600    Off: 600\n'
  printf '  DPMS is Enabled\n  Monitor is %s\n' "$state" ;;
esac
""",
    "vcgencmd": r"""
echo "display_power=-1"
""",
    "systemctl": "exit 0\n",
}


@pytest.fixture
def standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-ins first on PATH, a secret in the server's environment (it must not reach them), a live
    Wayland socket in XDG_RUNTIME_DIR."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STANDINS.items():
        d = tmp_path / "state" / name
        d.mkdir(parents=True)
        path = bin_dir / name
        path.write_text(
            f"#!/bin/bash\nD={d}\n"
            'python3 -c \'import json, os, sys; print(json.dumps({"argv": sys.argv[1:], "env": dict(os.environ)}))\' '
            f'"$@" >>"{d}/calls.jsonl"\n' + body.lstrip("\n")
        )
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv(SECRET_ENV, "sk-live-never-in-a-child")
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return tmp_path


@pytest.fixture
def compositor(standins: Path) -> Iterator[str]:
    """labwc, as far as a client can tell: a listening wayland-1 (and a stale wayland-0 from a crash)."""
    runtime = standins / "run"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(runtime / "wayland-0"))
    stale.close()
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(runtime / "wayland-1"))
    live.listen(1024)  # never accepted: every probe of the socket stays queued
    yield "wayland-1"
    live.close()


def calls(standins: Path, tool: str) -> list[dict[str, Any]]:
    log = standins / "state" / tool / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def argvs(standins: Path, tool: str) -> list[list[str]]:
    return [c["argv"] for c in calls(standins, tool)]


# ------------------------------------------------------------------------------------------ deciding


def test_schedule_window_including_one_past_midnight() -> None:
    day = (parse_hhmm("07:00"), parse_hhmm("23:00"))
    assert in_window(dt.time(7, 0), *day)
    assert in_window(dt.time(22, 59), *day)
    assert not in_window(dt.time(23, 0), *day)
    assert not in_window(dt.time(6, 59), *day)
    night_shift = (parse_hhmm("18:00"), parse_hhmm("02:00"))
    assert in_window(dt.time(23, 30), *night_shift)
    assert in_window(dt.time(1, 59), *night_shift)
    assert not in_window(dt.time(2, 0), *night_shift)
    assert not in_window(dt.time(12, 0), *night_shift)


def _decide(mode: str = "auto", at: str = "12:00", *, now: float = 10_000.0, motion: Motion | None = None, **cfg: Any):
    config = DisplayConfig(backend="wlopm", **cfg)
    return decide(mode, now, now_local=parse_hhmm(at), config=config, motion=motion or Motion(), started_at=0.0)


def test_decisions_schedule_motion_and_manual_override() -> None:
    sched = {"on_at": "07:00", "off_at": "23:00"}
    assert _decide(at="12:00", **sched) == display_mod.Decision(True, "schedule: on until 23:00")
    assert _decide(at="23:30", **sched) == display_mod.Decision(False, "schedule: off until 07:00")
    assert _decide() == display_mod.Decision(True, "always on")
    # Motion: on while seen within the timeout, off after it; the schedule still wins at night.
    pir = {"motion_timeout_min": 5.0, **sched}
    recent = Motion(active=False, last_at=10_000.0 - 299)
    old = Motion(active=False, last_at=10_000.0 - 301)
    assert _decide(motion=recent, **pir) == display_mod.Decision(True, "motion")
    assert _decide(motion=old, **pir) == display_mod.Decision(False, "no motion for 5 min")
    assert _decide(motion=Motion(active=True, last_at=0.0), **pir).power is True  # someone still standing there
    assert _decide(at="03:00", motion=Motion(active=True, last_at=10_000.0), **pir).power is False
    # A failed PIR keeps the screen on rather than dark by mistake; before any PIR data, a start-up grace.
    assert _decide(motion=Motion(failing=True), **pir) == display_mod.Decision(
        True, "motion sensor unavailable: kept on"
    )
    assert _decide(now=60.0, motion=Motion(), **pir) == display_mod.Decision(True, "start-up")
    assert _decide(now=400.0, motion=Motion(), **pir).power is False
    # Manual beats everything.
    assert _decide("on", at="03:00", motion=old, **pir) == display_mod.Decision(True, "manual: on")
    assert _decide("off", at="12:00", motion=recent, **pir) == display_mod.Decision(False, "manual: off")


# ------------------------------------------------------------------------------------------ controller


def _sysfs(tmp_path: Path, bl_power: str = "0") -> Path:
    dev = tmp_path / "sys" / "class" / "backlight" / "10-0045"
    dev.mkdir(parents=True)
    (dev / "bl_power").write_text(bl_power)
    (dev / "brightness").write_text("255")
    (dev / "max_brightness").write_text("255")
    return dev


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


async def _direct(fn: Any, *args: Any) -> Any:
    return fn(*args)  # the executor, minus the thread: these backends only touch files


def test_pir_timeout_and_schedule_switch_a_real_backend_at_the_right_moments(tmp_path: Path) -> None:
    dev = _sysfs(tmp_path)
    start = dt.datetime(2026, 11, 25, 21, 0, tzinfo=TZ).timestamp()
    clock = Clock(start)
    hub = Hub(TZ, "test", clock=clock)
    config = DisplayConfig(backend="backlight", on_at="07:00", off_at="22:00", motion_timeout_min=10.0)
    backend = BacklightBackend(str(tmp_path / "sys"), None, None)
    ctl = DisplayController(
        hub, config, backend, tz=TZ, run_blocking=_direct, state_path=tmp_path / "display.json", clock=clock
    )

    async def scenario() -> None:
        await ctl.start()
        await ctl.stop()  # ticks are driven by hand below
        assert hub.get("display").data == {"power": "on", "reason": "start-up", "mode": "auto"}
        hub.publish("gpio/motion", {"motion": True, "changed_at": "2026-11-25T21:00:00+01:00"})
        await asyncio.sleep(0)
        hub.publish("gpio/motion", {"motion": False, "changed_at": "2026-11-25T21:00:30+01:00"})
        await asyncio.sleep(0)
        clock.now += 9 * 60
        await ctl.tick()
        assert (dev / "bl_power").read_text() == "0"
        assert hub.get("display").data["reason"] == "motion"
        clock.now += 61  # 10 min after the last motion
        await ctl.tick()
        assert (dev / "bl_power").read_text() == "4"
        assert hub.get("display").data == {"power": "off", "reason": "no motion for 10 min", "mode": "auto"}
        hub.publish("gpio/motion", {"motion": True, "changed_at": "2026-11-25T21:11:00+01:00"})
        await asyncio.sleep(0.01)  # the listener re-evaluates at once, not at the next tick
        assert (dev / "bl_power").read_text() == "0"
        clock.now = dt.datetime(2026, 11, 25, 22, 0, tzinfo=TZ).timestamp()
        await ctl.tick()
        assert (dev / "bl_power").read_text() == "4"
        assert hub.get("display").data["reason"] == "schedule: off until 07:00"
        # Someone switched the screen on behind our back (a swayidle, a TV remote): it is switched off again.
        (dev / "bl_power").write_text("0")
        clock.now += config.verify_interval_s
        await ctl.tick()
        assert (dev / "bl_power").read_text() == "4"
        # The PIR dies: the screen stays lit in the on-hours rather than going dark by mistake.
        clock.now = dt.datetime(2026, 11, 26, 8, 0, tzinfo=TZ).timestamp()
        hub.publish_error("gpio/motion", "GPIO unavailable: /dev/gpiochip0 is missing")
        await asyncio.sleep(0.01)
        assert (dev / "bl_power").read_text() == "0"
        assert hub.get("display").data["reason"] == "motion sensor unavailable: kept on"

    asyncio.run(scenario())


def test_a_screen_that_does_not_follow_is_reported_not_believed(tmp_path: Path) -> None:
    dev = _sysfs(tmp_path)
    hub = Hub(TZ, "test")
    backend = BacklightBackend(str(tmp_path / "sys"), None, 40)

    class Stuck(BacklightBackend):
        def set_power(self, on: bool) -> None:
            super().set_power(on)
            (dev / "bl_power").write_text("0")  # the panel ignores "off"

    ctl = DisplayController(
        hub,
        DisplayConfig(backend="backlight", brightness_pct=40),
        Stuck(str(tmp_path / "sys"), None, 40),
        tz=TZ,
        run_blocking=_direct,
        state_path=tmp_path / "display.json",
    )

    async def scenario() -> None:
        await ctl.start()
        await ctl.stop()
        assert (dev / "brightness").read_text() == "102"  # 40 % of 255
        await ctl.set_mode("off")

    asyncio.run(scenario())
    state = hub.get("display")
    assert state.status == "error"
    assert state.error == "backlight: asked to switch the screen off, but it reads back on"
    assert backend.read_power() is True


# ------------------------------------------------------------------------------------------ backends


def test_wlopm_switches_the_named_output_on_the_live_socket_and_reads_back(standins: Path, compositor: str) -> None:
    backend = make_backend("wlopm", DisplayConfig(backend="wlopm", output="HDMI-A-1"))
    backend.set_power(False)
    assert backend.read_power() is False
    backend.set_power(True)
    assert backend.read_power() is True
    recorded = calls(standins, "wlopm")
    assert [c["argv"] for c in recorded] == [
        ["--json", "--off", "HDMI-A-1"],
        ["--json"],
        ["--json", "--on", "HDMI-A-1"],
        ["--json"],
    ]
    assert {c["env"]["WAYLAND_DISPLAY"] for c in recorded} == {compositor}  # not the stale wayland-0
    assert all(SECRET_ENV not in c["env"] for c in recorded)  # API keys stay in the server
    (standins / "state" / "wlopm" / "refuse").touch()
    with pytest.raises(DisplayError, match="output power management is not supported"):
        backend.set_power(False)  # wlopm exits 0 here: the error is only in its JSON


def test_wayland_backends_without_a_compositor_say_so(standins: Path) -> None:
    with pytest.raises(DisplayError, match="no live wayland-\\* socket"):
        make_backend("wlopm", DisplayConfig()).read_power()


def test_wlr_randr_finds_the_output_and_reads_enabled(standins: Path, compositor: str) -> None:
    backend = make_backend("wlr-randr", DisplayConfig(backend="wlr-randr"))
    backend.set_power(False)
    assert backend.read_power() is False
    backend.set_power(True)
    assert backend.read_power() is True
    assert ["--output", "HDMI-A-1", "--off"] in argvs(standins, "wlr-randr")
    with pytest.raises(DisplayError, match="no output 'HDMI-A-2'"):
        make_backend("wlr-randr", DisplayConfig(output="HDMI-A-2")).read_power()


def test_cec_addresses_the_tv_and_waits_out_its_transition(standins: Path, tmp_path: Path) -> None:
    hub = Hub(TZ, "test")
    config = DisplayConfig(backend="cec", readback_wait_s=10)
    backend = make_backend("cec", config)
    ctl = DisplayController(hub, config, backend, tz=TZ, run_blocking=_direct, state_path=tmp_path / "d.json")
    display_mod.READBACK_POLL_S, saved = 0.05, display_mod.READBACK_POLL_S
    try:

        async def scenario() -> None:
            await ctl.start()
            await ctl.stop()
            await ctl.set_mode("off")
            await ctl.set_mode("on")

        asyncio.run(scenario())
    finally:
        display_mod.READBACK_POLL_S = saved
    recorded = argvs(standins, "cec-ctl")
    assert recorded[0] == ["-d", "/dev/cec0", "--playback"]  # configured once, as a playback device
    assert ["-d", "/dev/cec0", "--skip-info", "--to", "0", "--standby"] in recorded  # the TV, never broadcast
    assert ["-d", "/dev/cec0", "--skip-info", "--to", "0", "--image-view-on"] in recorded
    assert not [a for a in recorded if "15" in a]
    polls = [a for a in recorded if "--give-device-power-status" in a]
    assert len(polls) >= 4  # start-up read + off read + two "in transition" answers + the final "on"
    assert hub.get("display").data == {"power": "on", "reason": "manual: on", "mode": "on"}
    assert hub.get("display").status == "ok"


def test_cec_output_parsing() -> None:
    assert parse_cec_power("\t\tpwr-state: standby (0x01)\n") is False
    assert parse_cec_power("pwr-state: on (0x00)") is True
    assert parse_cec_power("pwr-state: in-transition-standby-to-on (0x02)") is None
    with pytest.raises(DisplayError, match="did not report its power state"):
        parse_cec_power("Transmit from Playback Device 1 to TV (4 to 0):\n\tTx, Not Acknowledged (4), Max Retries\n")


def test_backlight_power_and_brightness_through_sysfs(tmp_path: Path) -> None:
    dev = _sysfs(tmp_path)
    backend = make_backend("backlight", DisplayConfig(brightness_pct=50), sysfs_root=str(tmp_path / "sys"))
    backend.set_power(False)
    assert (dev / "bl_power").read_text() == "4"
    assert backend.read_power() is False
    backend.set_power(True)
    assert (dev / "bl_power").read_text() == "0"
    assert (dev / "brightness").read_text() == "128"
    (dev / "bl_power").chmod(0o444)
    if os.geteuid() != 0:  # root ignores file modes
        with pytest.raises(DisplayError, match="udev rule"):
            backend.set_power(False)
    with pytest.raises(DisplayError, match="no backlight in"):
        make_backend("backlight", DisplayConfig(), sysfs_root=str(tmp_path / "none")).read_power()


def test_xset_and_vcgencmd(standins: Path) -> None:
    xset = make_backend("xset", DisplayConfig())
    xset.set_power(False)
    assert xset.read_power() is False
    assert argvs(standins, "xset")[0] == ["dpms", "force", "off"]
    assert calls(standins, "xset")[0]["env"]["DISPLAY"] == ":0"
    with pytest.raises(DisplayError, match="KMS"):
        make_backend("vcgencmd", DisplayConfig()).read_power()


def test_missing_tools_and_hung_tools_are_clear_errors(standins: Path, tmp_path: Path) -> None:
    with pytest.raises(DisplayError, match=r"ddcutil is not installed \(sudo apt install ddcutil\)"):
        Commands({"PATH": str(standins / "bin")}, 1).run(["ddcutil", "getvcp", "d6"])
    hang = standins / "bin" / "hang"
    hang.write_text("#!/bin/sh\n/bin/sleep 30 &\n/bin/sleep 30\n")  # a child keeps the output pipe open
    hang.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(DisplayError, match=r"did not finish within 0\.3 s"):
        Commands({"PATH": str(standins / "bin")}, 0.3).run(["hang"])
    assert time.monotonic() - started < 3


def test_parsers_of_recorded_outputs() -> None:
    assert (
        parse_wlopm('[{"output":"HDMI-A-1","power-mode":"off"},{"output":"HDMI-A-2","power-mode":"on"}]', None) is None
    )
    assert parse_wlopm("HDMI-A-1 off\n", "HDMI-A-1") is False
    assert parse_wlr_randr('DSI-1 "Raspberry Pi 7"" (DSI-1)"\n  Enabled: no\n', None) is False
    with pytest.raises(DisplayError, match="lists no outputs"):
        parse_wlopm("[]", None)


def test_probe_says_which_backends_work(standins: Path, compositor: str, tmp_path: Path) -> None:
    _sysfs(tmp_path)
    lines = probe(DisplayConfig(backend="wlopm"), sysfs_root=str(tmp_path / "sys"))
    text = "\n".join(lines)
    assert "* wlopm      works: the screen is on" in text
    assert "  wlr-randr  works: the screen is on" in text
    assert "  backlight  works: the screen is on" in text
    assert "  vcgencmd   no: vcgencmd display_power does not work with the KMS driver" in text


# ------------------------------------------------------------------------------------------ over HTTP


TOKEN = "wall-token-1234"


def _post(url: str, body: Any, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + "/api/display", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _topic(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/api/state", timeout=5) as r:
        return json.load(r)["topics"]["display"]


@pytest.fixture
def wall_server(standins: Path, compositor: str, tmp_path: Path) -> Iterator[ServerThread]:
    cfg = make_config(
        tmp_path,
        display={"backend": "wlopm", "output": "HDMI-A-1", "token": "wall-token-1234"},
    )
    srv = ServerThread(cfg).start()
    yield srv
    srv.stop()


def test_manual_override_over_http_with_a_token(wall_server: ServerThread, standins: Path, tmp_path: Path) -> None:
    url = wall_server.url
    assert _topic(url)["data"] == {"power": "on", "reason": "always on", "mode": "auto"}
    assert _post(url, {"power": "off"}, token=None) == (401, {"error": "missing or wrong bearer token"})
    assert _post(url, {"power": "off"}, token="wall-token-123")[0] == 401
    assert _post(url, {"power": "dim"}) == (400, {"error": 'power: expected "on", "off" or "auto"'})
    assert _post(url, b"power=off")[0] == 400
    assert ["--json", "--off", "HDMI-A-1"] not in argvs(standins, "wlopm")  # nothing refused got through

    status, body = _post(url, {"power": "off"})
    assert status == 200
    assert body == {"mode": "off", "power": "off", "reason": "manual: off", "status": "ok", "error": None}
    assert ["--json", "--off", "HDMI-A-1"] in argvs(standins, "wlopm")
    assert _topic(url)["data"] == {"power": "off", "reason": "manual: off", "mode": "off"}
    assert json.loads((tmp_path / "var" / "display.json").read_text()) == {"mode": "off"}
    with urllib.request.urlopen(url + "/api/display", timeout=5) as r:
        assert json.load(r)["mode"] == "off"

    # A restart keeps the manual mode (a watchdog restart must not light up a screen someone switched off).
    wall_server.stop()
    again = ServerThread(wall_server.config).start()
    try:
        assert _topic(again.url)["data"]["reason"] == "manual: off"
        assert _post(again.url, {"power": "auto"})[1]["power"] == "on"
    finally:
        again.stop()


def test_motion_over_the_hub_switches_the_screen_through_the_server(
    standins: Path, compositor: str, tmp_path: Path
) -> None:
    cfg = make_config(
        tmp_path,
        display={"backend": "wlopm", "motion_timeout_min": 0.01},
        gpio={"backend": "emulated", "pir": {"pin": 17}},
    )
    srv = ServerThread(cfg).start()
    try:
        srv.publish("gpio/motion", {"motion": False, "changed_at": "2026-11-25T21:00:00+01:00"})
        # motion_timeout_min 0.01 = 0.6 s; the next 5-s tick switches off.
        deadline = asyncio.run(_wait_for(lambda: _topic(srv.url)["data"]["power"] == "off", 8))
        assert deadline, _topic(srv.url)
        assert _topic(srv.url)["data"]["reason"] == "no motion for 0.01 min"
        srv.publish("gpio/motion", {"motion": True, "changed_at": "2026-11-25T21:00:09+01:00"})
        assert asyncio.run(_wait_for(lambda: _topic(srv.url)["data"]["power"] == "on", 2))
        assert argvs(standins, "wlopm")[-2:] == [["--json", "--on", "*"], ["--json"]]
    finally:
        srv.stop()


async def _wait_for(check: Any, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return bool(check())


def test_no_token_configured_means_no_remote_control(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path, display={"backend": "none"})).start()
    try:
        status, body = _post(srv.url, {"power": "off"})
        assert status == 403
        assert "display.token" in body["error"]
        assert _topic(srv.url)["data"] == {
            "power": "on",
            "reason": "not switched (display.backend: none)",
            "mode": "auto",
        }
    finally:
        srv.stop()


def test_display_config_errors_name_the_key() -> None:
    with pytest.raises(Exception, match=r"display\.backend: expected one of none, wlopm"):
        parse_config({"display": {"backend": "hdmi"}}, env={})
    with pytest.raises(Exception, match=r"display\.off_at: set both"):
        parse_config({"display": {"on_at": "07:00"}}, env={})
    with pytest.raises(Exception, match=r"display.motion_timeout_min: needs a PIR"):
        parse_config({"display": {"motion_timeout_min": 5}}, env={})
    with pytest.raises(Exception, match=r"display.brightness_pct: expected 1-100"):
        parse_config({"display": {"brightness_pct": 0}}, env={})


def test_probe_command_line(standins: Path, compositor: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text('display: {backend: wlopm, output: HDMI-A-1}\nsources: {weather: {api_key: "${UNSET_KEY}"}}\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-m", "server.display", "probe", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "* wlopm      works: the screen is on" in run.stdout
    assert "  cec        works" in run.stdout  # the cec-ctl stand-in answers too
    assert ["--json"] in argvs(standins, "wlopm")  # read only: probing never switches a screen
    assert not [a for a in argvs(standins, "wlopm") if "--off" in a or "--on" in a]


def test_a_failing_backend_is_an_error_on_the_topic_and_is_retried_later(tmp_path: Path) -> None:
    clock = Clock(1_800_000_000.0)
    hub = Hub(TZ, "test", clock=clock)
    config = DisplayConfig(backend="backlight")
    backend = BacklightBackend(str(tmp_path / "sys"), None, None)  # no touchscreen detected (yet)
    ctl = DisplayController(
        hub, config, backend, tz=TZ, run_blocking=_direct, state_path=tmp_path / "display.json", clock=clock
    )

    async def scenario() -> None:
        await ctl.start()
        await ctl.stop()
        state = hub.get("display")
        assert state.status == "error"
        assert state.error.startswith("backlight: could not switch the screen on: no backlight in")
        assert state.data is None  # never a made-up "on"
        dev = _sysfs(tmp_path, bl_power="4")  # the panel shows up (cable reseated)
        clock.now += 10
        await ctl.tick()
        assert (dev / "bl_power").read_text() == "4"  # not hammered: the next try waits for the retry interval
        clock.now += display_mod.RETRY_S
        await ctl.tick()
        assert (dev / "bl_power").read_text() == "0"
        assert hub.get("display").status == "ok"
        assert hub.get("display").data == {"power": "on", "reason": "always on", "mode": "auto"}

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------------ the truth, everywhere


def _health(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
            return json.load(r)
    except urllib.error.HTTPError as err:
        return json.load(err)


def test_a_failed_switch_is_an_error_with_the_state_read_back_and_healthz_degraded(
    wall_server: ServerThread, standins: Path
) -> None:
    url = wall_server.url
    wlopm = standins / "state" / "wlopm"
    assert _topic(url)["status"] == "ok"
    assert _health(url)["display"] == {"status": "ok", "backend": "wlopm", "power": "on", "mode": "auto"}

    # The command fails (exit 1): the screen is still on, and every surface says so.
    (wlopm / "fail").touch()
    status, body = _post(url, {"power": "off"})
    assert status == 200
    assert body["status"] == "error"
    assert body["power"] == "on", "the requested state is never reported as the real one"
    error = "wlopm: could not switch the screen off: wlopm --json --off HDMI-A-1 failed (exit 1): "
    assert body["error"] == error + "wlopm: failed to connect to the power manager"
    topic = _topic(url)
    assert topic["status"] == "error"
    assert topic["error"] == body["error"]
    assert topic["data"] == {"power": "on", "reason": "switching off failed (manual: off)", "mode": "off"}
    health = _health(url)
    assert health["status"] == "degraded"
    assert health["display"]["status"] == "degraded"
    assert health["display"]["error"] == body["error"]
    assert health["display"]["power"] == "on"

    # Recovery: the next switch that works (back to the rules: always on) clears it.
    (wlopm / "fail").unlink()
    status, body = _post(url, {"power": "auto"})
    assert (body["status"], body["power"], body["error"]) == ("ok", "on", None)
    assert _topic(url)["data"] == {"power": "on", "reason": "always on", "mode": "auto"}
    assert _health(url)["status"] == "ok"

    # The command succeeds but the screen does not follow: the read-back is what counts.
    (wlopm / "stuck").touch()
    status, body = _post(url, {"power": "off"})
    assert body["error"] == "wlopm: asked to switch the screen off, but it reads back on"
    assert _topic(url)["data"]["power"] == "on"
    assert _health(url)["display"]["status"] == "degraded"
    (wlopm / "stuck").unlink()
    status, body = _post(url, {"power": "auto"})
    assert body["status"] == "ok", body["error"]
    assert _health(url)["status"] == "ok"


def test_after_a_switch_from_outside_a_failure_reports_what_the_screen_really_shows(tmp_path: Path) -> None:
    """Published "on"; someone switches the panel off; switching it back on fails: the topic says "off"."""
    dev = _sysfs(tmp_path)
    clock = Clock(1_800_000_000.0)
    hub = Hub(TZ, "test", clock=clock)

    class Failing(BacklightBackend):
        broken = False

        def set_power(self, on: bool) -> None:
            if self.broken:
                raise DisplayError("cannot write bl_power: permission denied")
            super().set_power(on)

    backend = Failing(str(tmp_path / "sys"), None, None)
    config = DisplayConfig(backend="backlight")
    ctl = DisplayController(
        hub, config, backend, tz=TZ, run_blocking=_direct, state_path=tmp_path / "display.json", clock=clock
    )

    async def scenario() -> None:
        await ctl.start()
        await ctl.stop()
        assert hub.get("display").data["power"] == "on"
        (dev / "bl_power").write_text("4")  # switched off from outside
        backend.broken = True
        clock.now += config.verify_interval_s
        await ctl.tick()
        state = hub.get("display")
        assert state.status == "error"
        assert state.error == "backlight: could not switch the screen on: cannot write bl_power: permission denied"
        assert state.data == {"power": "off", "reason": "switching on failed (always on)", "mode": "auto"}
        assert ctl.health()["status"] == "degraded"
        backend.broken = False
        clock.now += display_mod.RETRY_S
        await ctl.tick()
        assert (dev / "bl_power").read_text() == "0"
        assert hub.get("display").status == "ok"
        assert hub.get("display").data == {"power": "on", "reason": "always on", "mode": "auto"}
        assert ctl.health() == {"status": "ok", "backend": "backlight", "power": "on", "mode": "auto"}

    asyncio.run(scenario())


def test_a_screen_that_never_settles_is_an_error_not_the_state_asked_for(tmp_path: Path) -> None:
    hub = Hub(TZ, "test")

    class Transitioning:
        name = "cec"

        def set_power(self, on: bool) -> None:
            pass

        def read_power(self) -> bool | None:
            return None  # "in transition", for ever

    ctl = DisplayController(
        hub,
        DisplayConfig(backend="cec", readback_wait_s=0),
        Transitioning(),
        tz=TZ,
        run_blocking=_direct,
        state_path=tmp_path / "display.json",
    )
    asyncio.run(ctl.start())
    asyncio.run(ctl.stop())
    state = hub.get("display")
    assert state.status == "error"
    assert state.error == "cec: asked to switch the screen on, but after 0 s it is not"
    assert state.data is None  # never read back: no made-up "on"


def test_at_boot_the_screen_is_waiting_for_the_wall_session_not_failing(standins: Path, tmp_path: Path) -> None:
    """The server is up before the compositor: the topic stays `waiting` (never an error, never a made-up
    "on"), healthz stays ok, and the first tick after the session appears switches and reads back. A session
    that has not come within SESSION_WAIT_S is an error."""
    clock = Clock(1_800_000_000.0)
    hub = Hub(TZ, "test", clock=clock)
    config = DisplayConfig(backend="wlopm", output="HDMI-A-1")
    ctl = DisplayController(
        hub, config, make_backend("wlopm", config), tz=TZ, run_blocking=_direct,
        state_path=tmp_path / "display.json", clock=clock,
    )  # fmt: skip

    async def scenario() -> None:
        await ctl.start()
        await ctl.stop()
        state = hub.get("display")
        assert (state.status, state.data, state.error) == ("waiting", None, None)
        assert ctl.health()["status"] == "ok"
        clock.now += 20
        await ctl.tick()
        assert hub.get("display").status == "waiting"
        live = socket.socket(socket.AF_UNIX)  # labwc comes up
        live.bind(str(standins / "run" / "wayland-0"))
        live.listen(16)
        try:
            clock.now += display_mod.TICK_S  # the next tick, not RETRY_S later
            await ctl.tick()
        finally:
            live.close()
        state = hub.get("display")
        assert state.status == "ok", state.error
        assert state.data == {"power": "on", "reason": "always on", "mode": "auto"}
        assert ["--json", "--on", "HDMI-A-1"] in argvs(standins, "wlopm")

    asyncio.run(scenario())

    late = DisplayController(
        Hub(TZ, "test", clock=clock), config, make_backend("wlopm", config), tz=TZ, run_blocking=_direct,
        state_path=tmp_path / "display2.json", clock=clock,
    )  # fmt: skip

    async def no_session_ever() -> None:
        await late.start()
        await late.stop()
        assert late.hub.get("display").status == "waiting"
        clock.now += display_mod.SESSION_WAIT_S
        await late.tick()
        state = late.hub.get("display")
        assert state.status == "error"
        assert "is the wall session running?" in state.error
        assert state.data is None
        assert late.health()["status"] == "degraded"

    asyncio.run(no_session_ever())
