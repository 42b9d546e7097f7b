"""The systemd units: `systemd-analyze verify` says nothing at all, the sandbox scores ≤ 2.5, the promises hold."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, require_tool

SYSTEMD = REPO / "systemd"
SERVER_UNIT = SYSTEMD / "homeboard.service"
KIOSK_UNIT = SYSTEMD / "homeboard-kiosk.service"
WALL_UNIT = SYSTEMD / "homeboard-wall.service"
HOST_UNITS = Path("/usr/lib/systemd/system")


def directives(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every line: unit files repeat keys, which configparser cannot hold."""
    out: list[tuple[str, str, str]] = []
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(path: Path, section: str, key: str) -> list[str]:
    return [v for s, k, v in directives(path) if s == section and k == key]


def one(path: Path, section: str, key: str) -> str:
    found = values(path, section, key)
    assert len(found) == 1, (section, key, found)
    return found[0]


def staged_root(tmp_path: Path, unit: Path) -> tuple[Path, Path]:
    """A root where the unit's ExecStart exists (/opt/homeboard/.venv/bin/python) and the targets it names do."""
    root = tmp_path / "root"
    units = root / "usr" / "lib" / "systemd" / "system"
    if not HOST_UNITS.is_dir():
        pytest.fail(f"{HOST_UNITS} is missing: the systemd package provides it")
    shutil.copytree(HOST_UNITS, units, symlinks=True)
    for exe in (".venv/bin/python", "kiosk/session/homeboard-session"):
        path = root / "opt" / "homeboard" / exe
        path.parent.mkdir(parents=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    target = root / "etc" / "systemd" / "system" / unit.name
    target.parent.mkdir(parents=True)
    shutil.copy(unit, target)
    return root, target


def verify(tmp_path: Path, unit: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("systemd-analyze")
    root, target = staged_root(tmp_path, unit)
    return subprocess.run([tool, "verify", f"--root={root}", "--man=no", str(target)], capture_output=True, text=True)


def test_server_unit_verifies_without_a_single_line_of_output(tmp_path: Path) -> None:
    run = verify(tmp_path, SERVER_UNIT)
    # verify returns 0 for unknown keys and only prints a warning: any output at all is a failure.
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert run.stderr == ""


def test_the_verify_gate_catches_a_typo(tmp_path: Path) -> None:
    broken = tmp_path / "homeboard.service"
    broken.write_text(SERVER_UNIT.read_text().replace("WatchdogSec=20", "WatchdogSecs=20"))
    run = verify(tmp_path, broken)
    assert "Unknown key 'WatchdogSecs'" in run.stderr


def test_kiosk_user_unit_verifies_without_output(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze")
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    # --root cannot be combined with --user; ExecStart is /usr/bin/python3, which the test host has too.
    run = subprocess.run(
        [tool, "--user", "verify", "--man=no", str(KIOSK_UNIT)],
        capture_output=True,
        text=True,
        env={"XDG_RUNTIME_DIR": str(runtime), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout + run.stderr == ""


def exposure(unit: Path, threshold: int = 100) -> tuple[int, float]:
    tool = require_tool("systemd-analyze")
    run = subprocess.run(
        [tool, "security", "--offline=yes", f"--threshold={threshold}", str(unit)], capture_output=True, text=True
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", run.stdout)
    assert m, run.stdout + run.stderr
    return run.returncode, float(m.group(1))


def test_server_unit_sandbox_scores_at_most_2_5() -> None:
    # --threshold counts in tenths (0-100): 25 is an exposure of 2.5.
    status, score = exposure(SERVER_UNIT, threshold=25)
    assert status == 0
    assert score <= 2.5
    print(f"exposure {score}")  # the figure for the report (pytest -s)


def test_the_security_gate_fails_a_thinly_hardened_unit(tmp_path: Path) -> None:
    thin = tmp_path / "thin.service"
    keep = ("Type", "ExecStart", "User", "NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp")
    lines = ["[Service]"] + [f"{k}={v}" for s, k, v in directives(SERVER_UNIT) if s == "Service" and k in keep]
    thin.write_text("\n".join(lines) + "\n")
    status, score = exposure(thin, threshold=25)
    assert status != 0
    assert score > 2.5


def test_server_unit_keeps_its_promises() -> None:
    u = SERVER_UNIT
    assert one(u, "Service", "Type") == "notify"
    assert one(u, "Service", "WatchdogSec") == "20"
    # "serving again within 30 s" (README): 20 s to the kill at worst, RestartSec, then the start-up.
    assert int(one(u, "Service", "RestartSec")) <= 2
    assert one(u, "Service", "Restart") == "on-failure"
    assert one(u, "Service", "RestartPreventExitStatus") == "2"  # a config error is not retried
    assert one(u, "Service", "NotifyAccess") == "main"
    # The start limit lives in [Unit] (in [Service] systemd ≥ 241 ignores it) and bounds a crash loop.
    assert one(u, "Unit", "StartLimitIntervalSec") == "600"
    assert one(u, "Unit", "StartLimitBurst") == "10"
    assert not values(u, "Service", "StartLimitIntervalSec")
    env = " ".join(values(u, "Service", "Environment"))
    assert "PYTHONFAULTHANDLER=1" in env
    assert one(u, "Service", "User") == "homeboard"
    assert one(u, "Service", "SupplementaryGroups") == "gpio i2c"
    assert one(u, "Service", "StateDirectory") == "homeboard"
    assert one(u, "Service", "StateDirectoryMode") == "0700"
    assert one(u, "Service", "EnvironmentFile") == "-/etc/homeboard/secrets.env"
    assert one(u, "Service", "WorkingDirectory") == "/opt/homeboard"
    assert one(u, "Service", "ExecStart") == (
        "/opt/homeboard/.venv/bin/python -m server --config /etc/homeboard/config.yaml --data-dir /var/lib/homeboard"
    )
    assert one(u, "Service", "ProtectSystem") == "strict"
    assert one(u, "Service", "NoNewPrivileges") == "yes"
    assert one(u, "Service", "CapabilityBoundingSet") == ""
    assert "network-online.target" not in " ".join(values(u, "Unit", "After") + values(u, "Unit", "Wants"))


def test_wall_unit_verifies_without_a_single_line_of_output(tmp_path: Path) -> None:
    run = verify(tmp_path, WALL_UNIT)
    assert run.returncode == 0, run.stderr
    assert run.stdout + run.stderr == ""


def test_wall_session_restarts_for_ever_and_owns_its_console() -> None:
    u = WALL_UNIT
    # The default start limit (5 starts in 10 s) is what left the wall dark after greetd gave up.
    assert one(u, "Unit", "StartLimitIntervalSec") == "0"
    assert not values(u, "Service", "StartLimitIntervalSec")
    assert one(u, "Service", "Restart") == "always"
    assert int(one(u, "Service", "RestartSec")) >= 1  # never a busy loop
    assert one(u, "Service", "TTYPath") == "/dev/tty1"
    assert one(u, "Unit", "Conflicts") == "getty@tty1.service"  # provision.sh masks it as well
    assert one(u, "Unit", "ConditionPathExists") == "/dev/tty1"
    assert one(u, "Service", "PAMName") == "login"  # a logind session: seat devices and XDG_RUNTIME_DIR
    assert one(u, "Service", "User") == "homeboard"
    assert one(u, "Service", "ExecStart") == "/opt/homeboard/kiosk/session/homeboard-session"
    assert one(u, "Install", "WantedBy") == "graphical.target"


def _systemd_version() -> int:
    out = subprocess.run([require_tool("systemctl"), "--version"], capture_output=True, text=True).stdout
    return int(out.split()[1])


def test_growing_restart_delays_are_a_drop_in_because_bookworm_does_not_know_them(tmp_path: Path) -> None:
    """RestartSteps=/RestartMaxDelaySec= need systemd 254; in a unit file, 252 (bookworm) warns about them."""
    assert values(WALL_UNIT, "Service", "RestartSteps") == []
    with_backoff = tmp_path / "homeboard-wall.service"
    with_backoff.write_text(WALL_UNIT.read_text().replace("RestartSec=5", "RestartSec=5\nRestartSteps=8"))
    run = verify(tmp_path, with_backoff)
    if _systemd_version() < 254:
        assert "Unknown key 'RestartSteps'" in run.stderr
    else:
        assert "RestartSteps" not in run.stderr


def test_kiosk_unit_restarts_the_browser_for_ever() -> None:
    u = KIOSK_UNIT
    assert one(u, "Service", "Restart") == "always"
    assert one(u, "Service", "ExecStart") == "/usr/bin/python3 /opt/homeboard/kiosk/launcher/homeboard_kiosk.py"
    assert one(u, "Service", "LimitCORE") == "0"  # a crash loop must not fill the SD card with core dumps
    assert one(u, "Unit", "StartLimitIntervalSec") == "0"
    assert int(one(u, "Service", "RestartSec")) >= 1
    assert values(u, "Service", "MemoryMax")
    assert "?wall=1" in one(u, "Service", "Environment")


def test_hardware_watchdog_stays_within_what_the_pi_can_count() -> None:
    conf = SYSTEMD / "hardware-watchdog.conf"
    seconds = one(conf, "Manager", "RuntimeWatchdogSec")
    assert seconds.endswith("s")
    assert int(seconds[:-1]) <= 15  # the BCM2835 maximum; more fails silently before kernel 6.8
    assert one(conf, "Manager", "RebootWatchdogSec") == "2min"
    journal = SYSTEMD / "journald.conf"
    assert one(journal, "Journal", "Storage") == "volatile"
    assert one(journal, "Journal", "RuntimeMaxUse") == "32M"
