#!/usr/bin/env python3
"""Starts Chromium as the wall: finds the browser and display, waits for the server, repairs the profile, execs.

Standard library only (it runs with the system python3, not the server's venv). Run by the user unit
homeboard-kiosk.service (Restart=always), so every browser start — after a crash, an OOM kill or a power
cut — goes through the profile repair first. Settings come from flags or environment variables:

  HOMEBOARD_URL            page to open (default http://127.0.0.1:8080/?wall=1)
  HOMEBOARD_BROWSER        browser binary (default: chromium, then chromium-browser, on PATH)
  HOMEBOARD_PROFILE_DIR    Chromium user data dir (default ~/.config/chromium)
  HOMEBOARD_PLATFORM       auto | wayland | x11 | headless (default auto: the live Wayland socket, else X11)
  HOMEBOARD_CHROMIUM_FLAGS extra flags, shell-quoted (e.g. "--force-device-scale-factor=1.5")

Exit status: 0 never (on success the process becomes Chromium), 1 when something a person must fix is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import re
import shlex
import shutil
import socket
import ssl
import stat
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("homeboard-kiosk")

DEFAULT_URL = "http://127.0.0.1:8080/?wall=1"
BROWSER_NAMES = ("chromium", "chromium-browser")  # Debian / newer Pi OS, older Pi OS
POLL_S = 1.0
LOG_EVERY_S = 60.0  # while waiting, say so once a minute, not once a second

# Features switched off in one flag: Chromium honours only the last --disable-features on a command line.
DISABLED_FEATURES = (
    "Translate",  # the "Translate this page?" bar
    "TranslateUI",
    "MediaRouter",  # Cast discovery: LAN chatter and a dialog nobody can click
    "GlobalMediaControls",
    "HardwareMediaKeyHandling",
    "OverscrollHistoryNavigation",  # a swipe on a touch wall must not navigate back
    "PrivacySandboxSettings4",  # the "ad privacy" dialog on first start
)

# Flags for a wall nobody stands at: no dialog, bubble, bar, nag, scrollbar or first-run page, ever.
# Sources: FullPageOS (guysoft/FullPageOS, start_chromium_browser) and freddanastrom/rpi-kiosk, checked on Bookworm.
BASE_FLAGS = (
    "--kiosk",
    "--start-maximized",  # Wayfire drew --kiosk as a 1-px line without it (bookworm-feedback #31)
    "--noerrdialogs",
    "--disable-infobars",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-session-crashed-bubble",  # "Restore pages?": older Chromium
    "--hide-crash-restore-bubble",  # "Restore pages?": Chromium ≥ 120 (the flag above was removed)
    "--disable-translate",
    "--password-store=basic",  # no keyring-unlock popup
    "--disable-component-update",  # update nag and background downloads
    "--check-for-update-interval=31536000",
    "--simulate-outdated-no-au=Tue, 31 Dec 2099 23:59:59 GMT",
    "--disable-background-networking",
    "--disable-sync",
    "--no-memcheck",  # Raspberry Pi OS's chromium wrapper: skip its low-memory warning dialog
    "--hide-scrollbars",
    "--enable-features=OverlayScrollbar",
    "--disable-pinch",
    "--overscroll-history-navigation=0",
    "--touch-events=enabled",
    "--disk-cache-size=33554432",  # 32 MB: fewer SD-card writes
    "--enable-logging=stderr",  # errors go to the journal, not to a file in the profile
    "--log-level=2",
    "--disable-features=" + ",".join(DISABLED_FEATURES),
)


class LauncherError(Exception):
    """Something a person must fix (no browser installed, a display that never appears)."""


# ------------------------------------------------------------------------------------ browser


def find_browser(explicit: str | None, path: str | None = None) -> str:
    """The browser binary: `explicit` if given, else chromium, else chromium-browser on PATH."""
    if explicit:
        found = shutil.which(explicit, path=path)
        if found is None:
            raise LauncherError(f"browser {explicit!r} (HOMEBOARD_BROWSER) is not an executable on PATH")
        return found
    for name in BROWSER_NAMES:
        found = shutil.which(name, path=path)
        if found is not None:
            return found
    raise LauncherError("neither chromium nor chromium-browser is on PATH; install it: sudo apt install chromium")


def chromium_command(
    browser: str, url: str, profile_dir: Path, platform: str, extra: Sequence[str] = (), *, incognito: bool = False
) -> list[str]:
    """The full command line. `platform` is wayland, x11 or headless."""
    cmd = [browser, f"--user-data-dir={profile_dir}", *BASE_FLAGS]
    if platform == "wayland":
        cmd.append("--ozone-platform=wayland")  # Chromium 124 fell back to XWayland unless told (labwc #1709)
    elif platform == "x11":
        cmd.append("--ozone-platform=x11")
    elif platform == "headless":
        cmd.append("--headless=new")  # tests and screenshots: the same flags without a display
    else:
        raise LauncherError(f"unknown platform {platform!r} (expected wayland, x11 or headless)")
    if incognito:
        cmd.append("--incognito")
    cmd.extend(extra)
    cmd.append(f"--app={url}")
    return cmd


# ------------------------------------------------------------------------------------ profile


def preferences_path(profile_dir: Path) -> Path:
    return profile_dir / "Default" / "Preferences"


# profile.exit_type values that mean the last session ended cleanly: "Normal" (quit) and "SessionEnded"
# (SIGTERM, a shutdown). "Crashed" is what the running browser writes (Chromium 156 about 10 s after its
# start), so it is what a kill -9 or a power cut leaves behind, and what shows "Restore pages?".
CLEAN_EXIT_TYPES = ("Normal", "SessionEnded")


def repair_preferences(profile_dir: Path, now: Callable[[], float] = time.time) -> str:
    """Mark the last session as ended cleanly, so Chromium shows no "Restore pages?" bubble.

    After a crash or power cut Chromium leaves profile.exit_type = "Crashed" in Default/Preferences. Older
    Chromium also kept profile.exited_cleanly = false there; Chromium 156 (Debian bookworm's) no longer
    writes that key (its clean-exit flag lives in Local State, for crash statistics, not for the bubble):
    it is set to true only where the browser still has it, never added.
    The file is JSON: it is parsed and written back as JSON (sed scripts in other kiosks ship typos that
    silently do nothing), atomically, and then read back and checked. A file that is not valid JSON (torn
    by a power cut) is moved aside: Chromium would otherwise show a "profile error" dialog.
    Returns what was done. Raises LauncherError when the result cannot be verified.
    """
    prefs = preferences_path(profile_dir)
    try:
        raw = prefs.read_bytes()
    except FileNotFoundError:
        return "no Preferences yet (first start)"
    except OSError as err:
        raise LauncherError(f"cannot read {prefs}: {err.strerror}") from err
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        stamp = dt.datetime.fromtimestamp(now()).strftime("%Y%m%dT%H%M%S")
        aside = prefs.with_name(f"Preferences.corrupt-{stamp}")
        os.replace(prefs, aside)
        return f"Preferences was not valid JSON; moved aside to {aside.name} (Chromium starts with defaults)"
    profile = doc.get("profile")
    if not isinstance(profile, dict):
        profile = doc["profile"] = {}
    exit_type = profile.get("exit_type")
    legacy = "exited_cleanly" in profile
    if exit_type in CLEAN_EXIT_TYPES and (not legacy or profile["exited_cleanly"] is True):
        verify_preferences(prefs)
        return f"profile already marked clean (exit_type={exit_type!r})"
    before = f"exit_type={exit_type!r}" + (f" exited_cleanly={profile['exited_cleanly']!r}" if legacy else "")
    profile["exit_type"] = "Normal"
    if legacy:
        profile["exited_cleanly"] = True
    write_atomically(prefs, json.dumps(doc, separators=(",", ":")).encode("utf-8"))
    verify_preferences(prefs)
    return f"repaired {before} → 'Normal'" + (" True" if legacy else "")


def verify_preferences(prefs: Path) -> None:
    """Read the file back from disk and check it; raises LauncherError when it would still show the bubble."""
    try:
        doc = json.loads(prefs.read_text(encoding="utf-8"))
        profile = doc["profile"]
        exit_type = profile["exit_type"]
        clean = profile.get("exited_cleanly", True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise LauncherError(f"{prefs}: cannot verify the repair: {err}") from err
    if exit_type not in CLEAN_EXIT_TYPES or clean is not True:
        raise LauncherError(f"{prefs}: repair did not stick (exit_type={exit_type!r}, exited_cleanly={clean!r})")


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename: a power cut leaves the old or the new file, never half."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(prefix=".Preferences.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def clear_stale_singleton(profile_dir: Path, hostname: str | None = None) -> str | None:
    """Remove a profile lock left by a Chromium that no longer runs (power cut, kill -9).

    SingletonLock is a symlink to "<host>-<pid>". After a reboot that pid may belong to another process,
    and Chromium then refuses the profile with a dialog. Raises LauncherError if a Chromium really holds it.
    """
    lock = profile_dir / "SingletonLock"
    try:
        target = os.readlink(lock)
    except (FileNotFoundError, OSError):
        return None
    host, _, pid_text = target.rpartition("-")
    hostname = hostname or socket.gethostname()
    if host == hostname and pid_text.isdigit() and _is_browser_process(int(pid_text)):
        raise LauncherError(f"a browser (pid {pid_text}) is already running with {profile_dir}")
    for name in ("SingletonLock", "SingletonSocket", "SingletonCookie"):
        with contextlib.suppress(FileNotFoundError):
            (profile_dir / name).unlink()
    return f"removed a stale profile lock ({target})"


def _is_browser_process(pid: int) -> bool:
    """Is pid a Chromium? By its name, and by its argv[0] (the name is set last during exec)."""
    names = []
    with contextlib.suppress(OSError):
        names.append(Path(f"/proc/{pid}/comm").read_text().strip())
    with contextlib.suppress(OSError):
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
        names.append(os.path.basename(argv0.decode(errors="replace")))
    return any("chrom" in n.lower() for n in names)


# ------------------------------------------------------------------------------------ display


def _socket_alive(path: str) -> bool:
    """True when something accepts connections on this Unix socket (a dead compositor leaves the file behind)."""
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


def _socket_number(name: str) -> int:
    m = re.fullmatch(r"wayland-(\d+)", name)
    return int(m.group(1)) if m else 1_000_000


def find_wayland_display(runtime_dir: str | None, preferred: str | None) -> str | None:
    """The name (or absolute path) of a live Wayland socket, or None.

    WAYLAND_DISPLAY may be stale or wrong (wayland-1 while labwc listens on wayland-0: the crash loop in
    MagicMirror PR #4268), so every candidate is checked by connecting to it, the preferred one first.
    The server's screen switch (server/display/backends.py) has its own copy of this rule, as this file may
    import nothing of the server's; tests/test_launcher.py checks that both pick alike.
    """
    candidates: list[str] = []
    if preferred:
        candidates.append(preferred)
    if runtime_dir and os.path.isdir(runtime_dir):
        names = [n for n in os.listdir(runtime_dir) if n.startswith("wayland-") and not n.endswith(".lock")]
        candidates.extend(sorted(names, key=_socket_number))
    for name in candidates:
        path = name if os.path.isabs(name) else os.path.join(runtime_dir or "", name)
        if _socket_alive(path):
            return name
    return None


def resolve_platform(
    requested: str,
    env: dict[str, str],
    wait_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[str, dict[str, str]]:
    """Pick wayland / x11 / headless and the environment for it, waiting for the compositor if needed.

    wait_s = 0 waits for ever: at boot the browser unit may start before the compositor has created its socket.
    """
    if requested == "headless":
        return "headless", {}
    if requested not in ("auto", "wayland", "x11"):
        raise LauncherError(f"unknown platform {requested!r} (expected auto, wayland, x11 or headless)")
    runtime_dir = env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    started = last_log = clock()
    logged = False
    while True:
        if requested in ("auto", "wayland"):
            name = find_wayland_display(runtime_dir, env.get("WAYLAND_DISPLAY"))
            if name is not None:
                if env.get("WAYLAND_DISPLAY") and name != env["WAYLAND_DISPLAY"]:
                    log.warning("WAYLAND_DISPLAY=%s is not a live socket; using %s", env["WAYLAND_DISPLAY"], name)
                return "wayland", {"WAYLAND_DISPLAY": name, "XDG_RUNTIME_DIR": runtime_dir}
        if requested in ("auto", "x11") and env.get("DISPLAY"):
            return "x11", {"DISPLAY": env["DISPLAY"]}
        now = clock()
        if wait_s and now - started >= wait_s:
            raise LauncherError(
                f"no display after {wait_s:.0f} s: no live wayland-* socket in {runtime_dir}"
                + (" and DISPLAY is not set" if requested == "auto" else "")
                + " (is the wall session running? sudo systemctl status homeboard-wall; provision.sh doctor)"
            )
        if not logged or now - last_log >= LOG_EVERY_S:
            log.info("waiting for the display (Wayland socket in %s)", runtime_dir)
            logged, last_log = True, now
        sleep(POLL_S)


# ------------------------------------------------------------------------------------ server


def healthz_url(page_url: str) -> str:
    parts = urllib.parse.urlsplit(page_url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/healthz", "", ""))


def server_answers(url: str, timeout_s: float = 2.0) -> bool:
    context = None
    if urllib.parse.urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1"):
        # Only "is our own server up?": a self-signed certificate on loopback must not keep the wall waiting.
        context = ssl._create_unverified_context()  # noqa: S323 - loopback liveness probe, no data trusted
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as r:  # noqa: S310 - our server
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_for_server(
    url: str,
    wait_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Block until GET url answers 200. Opening the page before that would leave Chromium on its own error
    page, which never retries. wait_s = 0 waits for ever."""
    started = last_log = clock()
    logged = False
    while not server_answers(url):
        now = clock()
        if wait_s and now - started >= wait_s:
            raise LauncherError(f"the server did not answer {url} within {wait_s:.0f} s")
        if not logged or now - last_log >= LOG_EVERY_S:
            log.info("waiting for the server: %s", url)
            logged, last_log = True, now
        sleep(POLL_S)
    if logged:
        log.info("server answers after %.0f s", clock() - started)


# ------------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None, env: dict[str, str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="homeboard-kiosk", description="Start Chromium as the Homeboard wall.")
    p.add_argument("--url", default=env.get("HOMEBOARD_URL", DEFAULT_URL))
    p.add_argument("--browser", default=env.get("HOMEBOARD_BROWSER"))
    default_profile = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "chromium"
    p.add_argument("--profile-dir", type=Path, default=Path(env.get("HOMEBOARD_PROFILE_DIR") or default_profile))
    p.add_argument("--platform", default=env.get("HOMEBOARD_PLATFORM", "auto"))
    p.add_argument("--wait-display-s", type=float, default=0.0, help="give up after this long (0: never)")
    p.add_argument("--wait-server-s", type=float, default=0.0, help="give up after this long (0: never)")
    p.add_argument("--print-command", action="store_true", help="repair, then print the command instead of exec")
    p.add_argument("extra", nargs="*", help="more Chromium flags (after --)")
    return p.parse_args(argv)


def prepare(args: argparse.Namespace, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Everything before exec: browser, display, server, profile. Returns (argv, environment)."""
    browser = find_browser(args.browser, env.get("PATH"))
    platform, display_env = resolve_platform(args.platform, env, args.wait_display_s)
    wait_for_server(healthz_url(args.url), args.wait_server_s)
    args.profile_dir.mkdir(parents=True, exist_ok=True)
    stale = clear_stale_singleton(args.profile_dir)
    if stale:
        log.info("%s", stale)
    incognito = False
    try:
        log.info("profile: %s", repair_preferences(args.profile_dir))
    except (LauncherError, OSError) as err:
        # A restore bubble is bad, a black wall is worse: start without the profile's session instead.
        log.error("profile repair failed (%s); starting incognito so no restore bubble can appear", err)
        incognito = True
    extra = [*shlex.split(env.get("HOMEBOARD_CHROMIUM_FLAGS", "")), *args.extra]
    cmd = chromium_command(browser, args.url, args.profile_dir, platform, extra, incognito=incognito)
    return cmd, {**env, **display_env}


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="homeboard-kiosk: %(message)s", stream=sys.stderr)
    env = dict(os.environ)
    args = parse_args(argv, env)
    try:
        cmd, run_env = prepare(args, env)
    except LauncherError as err:
        log.error("%s", err)
        return 1
    if args.print_command:
        print(shlex.join(cmd))
        return 0
    log.info("starting %s on %s", os.path.basename(cmd[0]), args.url)
    sys.stderr.flush()
    # exec, not a child: systemd (or supervisord) then watches Chromium itself and restarts it when it dies.
    os.execve(cmd[0], cmd, run_env)  # noqa: S606 - an argument list, no shell involved
    return 1  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main())
