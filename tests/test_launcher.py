"""The kiosk launcher: Chromium flags, profile repair after a crash, the Wayland socket, waiting for /healthz."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from server.display.backends import find_wayland_display as server_find_wayland_display
from tests.conftest import REPO, free_port, require_tool

LAUNCHER = REPO / "kiosk" / "launcher" / "homeboard_kiosk.py"
# The unit runs the launcher with the system python3 and the standard library only: test it that way.
SYSTEM_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("homeboard_kiosk", LAUNCHER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kiosk = _load()


def _stand_in_browser(bin_dir: Path, name: str = "chromium") -> Path:
    """A browser that records its argv (one JSON line) and exits."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(
        f"#!{SYSTEM_PYTHON}\nimport json, os, sys\n"
        "with open(os.environ['BROWSER_LOG'], 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv, 'wayland': os.environ.get('WAYLAND_DISPLAY')}) + '\\n')\n"
    )
    path.chmod(0o755)
    return path


def _crashed_profile(profile: Path, **profile_keys: object) -> Path:
    """What Chromium 156 leaves after a kill -9: exit_type "Crashed" and no exited_cleanly key any more."""
    prefs = profile / "Default" / "Preferences"
    prefs.parent.mkdir(parents=True)
    doc = {
        "profile": {"exit_type": "Crashed", "name": "Person 1", **profile_keys},
        "browser": {"window_placement": {"maximized": True}},
        "translate": {"enabled": False},
    }
    prefs.write_text(json.dumps(doc, indent=3))
    prefs.chmod(0o600)
    return prefs


def _listening_socket(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(64)  # never accepted: each probe of the socket stays queued
    return s


def _dead_socket(path: Path) -> None:
    """What a crashed compositor leaves: the socket file, with nobody listening."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()


# --------------------------------------------------------------------------------------------- flags


def test_flags_keep_every_dialog_bubble_bar_and_nag_away() -> None:
    cmd = kiosk.chromium_command("/usr/bin/chromium", "http://127.0.0.1:8080/?wall=1", Path("/p"), "wayland")
    for flag in (
        "--kiosk",
        "--noerrdialogs",
        "--disable-infobars",
        "--no-first-run",
        "--disable-session-crashed-bubble",
        "--hide-crash-restore-bubble",
        "--disable-translate",
        "--disable-component-update",
        "--check-for-update-interval=31536000",
        "--password-store=basic",
        "--hide-scrollbars",
        "--ozone-platform=wayland",
        "--user-data-dir=/p",
        "--app=http://127.0.0.1:8080/?wall=1",
    ):
        assert flag in cmd, flag
    assert cmd[0] == "/usr/bin/chromium"
    assert cmd[-1] == "--app=http://127.0.0.1:8080/?wall=1"
    assert any(f.startswith("--simulate-outdated-no-au=") and "2099" in f for f in cmd)
    # Chromium honours only the last --disable-features: everything must be in one.
    disabled = [f for f in cmd if f.startswith("--disable-features=")]
    assert len(disabled) == 1
    assert {"Translate", "TranslateUI", "OverscrollHistoryNavigation"} <= set(disabled[0].split("=", 1)[1].split(","))
    assert len([f for f in cmd if f.startswith("--enable-features=")]) == 1
    # Nothing that weakens the browser or leaks an API surface.
    assert not any(f.startswith(("--remote-debugging", "--no-sandbox", "--disable-web-security")) for f in cmd)


def test_platform_flags_and_incognito_fallback() -> None:
    x11 = kiosk.chromium_command("chromium", "http://h/", Path("/p"), "x11")
    headless = kiosk.chromium_command("chromium", "http://h/", Path("/p"), "headless", ["--no-sandbox"], incognito=True)
    assert "--ozone-platform=x11" in x11
    assert "--headless=new" in headless
    assert "--incognito" in headless
    assert "--no-sandbox" in headless
    with pytest.raises(kiosk.LauncherError, match="unknown platform"):
        kiosk.chromium_command("chromium", "http://h/", Path("/p"), "framebuffer")


def test_finds_chromium_or_chromium_browser(tmp_path: Path) -> None:
    older = tmp_path / "older"
    newer = tmp_path / "newer"
    _stand_in_browser(older, "chromium-browser")
    _stand_in_browser(newer, "chromium")
    _stand_in_browser(newer, "chromium-browser")
    assert kiosk.find_browser(None, str(older)) == str(older / "chromium-browser")
    assert kiosk.find_browser(None, str(newer)) == str(newer / "chromium")
    with pytest.raises(kiosk.LauncherError, match="apt install chromium"):
        kiosk.find_browser(None, str(tmp_path / "empty"))
    with pytest.raises(kiosk.LauncherError, match="HOMEBOARD_BROWSER"):
        kiosk.find_browser("firefox", str(newer))


# --------------------------------------------------------------------------------------------- profile


def test_crashed_preferences_are_repaired_with_a_json_parser(tmp_path: Path) -> None:
    profile = tmp_path / "chromium"
    prefs = _crashed_profile(profile)
    result = kiosk.repair_preferences(profile)
    assert "repaired" in result
    doc = json.loads(prefs.read_text())
    assert doc["profile"]["exit_type"] == "Normal"
    assert "exited_cleanly" not in doc["profile"]  # a key this Chromium no longer has is not added
    # Everything else in the profile survives, and so does the file mode.
    assert doc["profile"]["name"] == "Person 1"
    assert doc["browser"] == {"window_placement": {"maximized": True}}
    assert prefs.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in prefs.parent.iterdir()] == ["Preferences"]  # no temp file left behind
    assert kiosk.repair_preferences(profile) == "profile already marked clean (exit_type='Normal')"


def test_an_older_chromium_s_exited_cleanly_is_repaired_too(tmp_path: Path) -> None:
    profile = tmp_path / "chromium"
    prefs = _crashed_profile(profile, exited_cleanly=False)
    assert kiosk.repair_preferences(profile) == "repaired exit_type='Crashed' exited_cleanly=False → 'Normal' True"
    assert json.loads(prefs.read_text())["profile"]["exited_cleanly"] is True


def test_a_session_ended_by_sigterm_is_already_clean(tmp_path: Path) -> None:
    """Chromium 156 writes exit_type "SessionEnded" when it is stopped with SIGTERM (systemctl stop)."""
    profile = tmp_path / "chromium"
    prefs = _crashed_profile(profile, exit_type="SessionEnded")
    before = prefs.read_bytes()
    assert kiosk.repair_preferences(profile) == "profile already marked clean (exit_type='SessionEnded')"
    assert prefs.read_bytes() == before


def test_torn_preferences_are_moved_aside(tmp_path: Path) -> None:
    profile = tmp_path / "chromium"
    prefs = _crashed_profile(profile)
    prefs.write_bytes(prefs.read_bytes()[:40])  # a power cut in the middle of Chromium's write
    result = kiosk.repair_preferences(profile, now=lambda: 1_700_000_000)
    assert "not valid JSON" in result
    assert not prefs.exists()
    assert len(list(prefs.parent.glob("Preferences.corrupt-*"))) == 1


def test_preferences_without_a_profile_section_get_one(tmp_path: Path) -> None:
    profile = tmp_path / "chromium"
    prefs = _crashed_profile(profile)
    prefs.write_text('{"profile": "odd", "other": 1}')
    kiosk.repair_preferences(profile)
    assert json.loads(prefs.read_text()) == {"profile": {"exit_type": "Normal"}, "other": 1}


def test_a_repair_that_does_not_stick_is_detected(tmp_path: Path) -> None:
    prefs = _crashed_profile(tmp_path / "chromium")
    with pytest.raises(kiosk.LauncherError, match="did not stick"):
        kiosk.verify_preferences(prefs)


def test_stale_profile_lock_is_removed_but_a_live_one_is_respected(tmp_path: Path) -> None:
    profile = tmp_path / "chromium"
    profile.mkdir()
    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()
    (profile / "SingletonLock").symlink_to(f"{socket.gethostname()}-{dead.pid}")
    (profile / "SingletonCookie").symlink_to("1234")
    assert "stale" in kiosk.clear_stale_singleton(profile)
    assert not os.path.lexists(profile / "SingletonLock")
    assert not os.path.lexists(profile / "SingletonCookie")

    fake_chromium = tmp_path / "chromium-bin"
    shutil.copy("/bin/sleep", fake_chromium)
    live = subprocess.Popen([str(fake_chromium), "30"])  # its /proc/<pid>/comm says "chromium-bin"...
    try:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{live.pid}/comm").read_text().strip() != "chromium-bin":  # ...once exec has finished
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (profile / "SingletonLock").symlink_to(f"{socket.gethostname()}-{live.pid}")
        with pytest.raises(kiosk.LauncherError, match="already running"):
            kiosk.clear_stale_singleton(profile)
    finally:
        live.kill()
        live.wait()


# --------------------------------------------------------------------------------------------- display


def test_the_live_wayland_socket_wins_over_a_stale_or_wrong_one(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    _dead_socket(runtime / "wayland-0")
    (runtime / "wayland-0.lock").write_text("")
    live = _listening_socket(runtime / "wayland-1")
    try:
        assert kiosk.find_wayland_display(str(runtime), None) == "wayland-1"
        # WAYLAND_DISPLAY says wayland-0, but nobody listens there any more.
        assert kiosk.find_wayland_display(str(runtime), "wayland-0") == "wayland-1"
        platform, env = kiosk.resolve_platform("auto", {"XDG_RUNTIME_DIR": str(runtime)}, wait_s=1)
        assert (platform, env["WAYLAND_DISPLAY"]) == ("wayland", "wayland-1")
        # The server's screen switch runs in the venv and the launcher with the system python3 alone, so each has
        # its copy of the rule: they must pick the same socket, or the browser and wlopm talk to different ones.
        for preferred in (None, "wayland-0", "wayland-1"):
            assert server_find_wayland_display(str(runtime), preferred) == "wayland-1"
        live2 = _listening_socket(runtime / "wayland-2")
        try:
            for preferred in (None, "wayland-2"):
                assert server_find_wayland_display(str(runtime), preferred) == kiosk.find_wayland_display(
                    str(runtime), preferred
                )
        finally:
            live2.close()
    finally:
        live.close()
    assert kiosk.find_wayland_display(str(runtime), None) is None
    assert server_find_wayland_display(str(runtime), None) is None


def test_no_display_is_a_clear_error_after_the_wait(tmp_path: Path) -> None:
    clock = iter(range(0, 1000, 5))
    with pytest.raises(kiosk.LauncherError, match="no live wayland-\\* socket"):
        kiosk.resolve_platform(
            "auto", {"XDG_RUNTIME_DIR": str(tmp_path)}, wait_s=30, sleep=lambda _s: None, clock=lambda: next(clock)
        )
    platform, env = kiosk.resolve_platform("auto", {"XDG_RUNTIME_DIR": str(tmp_path), "DISPLAY": ":0"}, wait_s=1)
    assert (platform, env) == ("x11", {"DISPLAY": ":0"})


# --------------------------------------------------------------------------------------------- end to end


def _run_launcher(args: list[str], env: dict[str, str], **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SYSTEM_PYTHON, str(LAUNCHER), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def _start_server(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "var")}))
    return subprocess.Popen(
        [sys.executable, "-m", "server", "--config", str(cfg), "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_launcher_waits_for_healthz_then_starts_the_browser_on_the_live_socket(tmp_path: Path) -> None:
    port = free_port()
    bin_dir = tmp_path / "bin"
    _stand_in_browser(bin_dir)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    _dead_socket(runtime / "wayland-0")
    compositor = _listening_socket(runtime / "wayland-1")
    profile = tmp_path / "profile"
    prefs = _crashed_profile(profile)
    browser_log = tmp_path / "browser.jsonl"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(runtime),
        "WAYLAND_DISPLAY": "wayland-0",
        "HOMEBOARD_URL": f"http://127.0.0.1:{port}/?wall=1",
        "HOMEBOARD_PROFILE_DIR": str(profile),
        "BROWSER_LOG": str(browser_log),
    }
    launcher = _run_launcher([], env)
    server = None
    try:
        time.sleep(2.0)
        assert launcher.poll() is None, launcher.communicate()
        assert not browser_log.exists()  # no browser before the server answers
        server = _start_server(tmp_path, port)
        _out, err = launcher.communicate(timeout=30)
        assert launcher.returncode == 0, err
        (record,) = [json.loads(line) for line in browser_log.read_text().splitlines()]
        assert record["wayland"] == "wayland-1"
        assert record["argv"][-1] == f"--app=http://127.0.0.1:{port}/?wall=1"
        assert "--ozone-platform=wayland" in record["argv"]
        assert "waiting for the server" in err
        assert json.loads(prefs.read_text())["profile"]["exit_type"] == "Normal"
    finally:
        compositor.close()
        if launcher.poll() is None:
            launcher.kill()
        if server is not None:
            server.terminate()
            server.wait(10)


def test_missing_browser_exits_1_with_the_fix(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "HOMEBOARD_PLATFORM": "headless"}
    proc = _run_launcher([], env)
    _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert "apt install chromium" in err


def _exit_type(prefs: Path) -> str | None:
    try:
        return json.loads(prefs.read_text()).get("profile", {}).get("exit_type")
    except (OSError, ValueError):
        return None


def test_real_chromium_killed_then_relaunched_starts_with_a_clean_profile(tmp_path: Path) -> None:
    """K1 on a dev box: the real launcher execs the real Chromium; kill -9; the next start is repaired."""
    chromium = require_tool("chromium")
    port = free_port()
    server = _start_server(tmp_path, port)
    profile = tmp_path / "profile"
    prefs = profile / "Default" / "Preferences"
    env = {
        "PATH": f"{Path(chromium).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HOMEBOARD_URL": f"http://127.0.0.1:{port}/?wall=1",
        "HOMEBOARD_PROFILE_DIR": str(profile),
        "HOMEBOARD_PLATFORM": "headless",
        # root in a container needs --no-sandbox; never added by the launcher itself (see the flags test).
        "HOMEBOARD_CHROMIUM_FLAGS": "--no-sandbox --disable-gpu",
    }
    browser = _run_launcher(["--wait-server-s", "30"], env, start_new_session=True)
    try:
        # The launcher became Chromium (exec): same pid. Chromium marks the session "Crashed" while it runs.
        deadline = time.monotonic() + 40
        while _exit_type(prefs) != "Crashed" and time.monotonic() < deadline:
            assert browser.poll() is None, browser.communicate()
            time.sleep(0.5)
        assert _exit_type(prefs) == "Crashed"
        # The Chromium the tests run (Debian's 156) no longer keeps exited_cleanly in Preferences: the repair
        # follows exit_type. Should a browser update bring the key back, this says so.
        assert "exited_cleanly" not in json.loads(prefs.read_text())["profile"]
        with open(f"/proc/{browser.pid}/cmdline", "rb") as f:
            assert b"--hide-crash-restore-bubble" in f.read()
        os.killpg(browser.pid, signal.SIGKILL)  # a power cut, as far as the profile can tell
        browser.wait(10)
        assert os.path.lexists(profile / "SingletonLock")

        again = _run_launcher(["--print-command", "--wait-server-s", "30"], env)
        out, err = again.communicate(timeout=30)
        assert again.returncode == 0, err
        assert "repaired exit_type='Crashed' → 'Normal'" in err  # Chromium 156: no exited_cleanly any more
        assert "stale profile lock" in err
        doc = json.loads(prefs.read_text())
        assert doc["profile"]["exit_type"] == "Normal"
        assert "exited_cleanly" not in doc["profile"]
        assert not os.path.lexists(profile / "SingletonLock")
        assert shlex.split(out)[-1] == f"--app=http://127.0.0.1:{port}/?wall=1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
    finally:
        if browser.poll() is None:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.wait(10)
        server.terminate()
        server.wait(10)
