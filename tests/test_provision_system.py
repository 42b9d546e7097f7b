"""provision.sh against a booted Debian bookworm with systemd as PID 1 (systemd-nspawn), over real SSH.

Nothing is a stand-in here: systemd runs the units provisioning installs (Type=notify, the watchdog, the
sandbox, restarts), apt and dpkg answer from the container's own database, useradd and loginctl change it.
The container has no console (no /dev/tty1), so the wall session cannot start: provisioning must say so as a
warning with the reason and leave the healthy server healthy. What a container cannot show (raspi-config,
the hardware watchdog, a compositor on a real VT) stays in tests/test_provision.py and tests/test_wall_sway.py.

The timings the README and the report quote are printed (pytest -s) and written to
tests/artifacts/system-timings.json. tests/test_provision_arm64.py runs the same on an emulated arm64 machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import nspawn
from tests.conftest import REPO, free_port, require, require_tool
from tests.wheelhouse import arm64_wheelhouse, build_wheelhouse, snapshot_repo, write_pi_config

SECRET = "s3cr3t-nspawn-token-91c2"
ARTIFACTS = REPO / "tests" / "artifacts"


@dataclass
class System:
    machine: nspawn.Machine
    repo: Path
    config: Path
    server_port: int
    timings: dict[str, float] = field(default_factory=dict)
    runs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    def provision(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.machine.base),
            "HOMEBOARD_SSH_CONFIG": str(self.machine.base / "ssh_config"),
            "HOMEBOARD_PYTHON": sys.executable,
            "HOMEBOARD_WALL_SETTLE_S": "3",
            "BALCONY_TOKEN": SECRET,
        }
        cmd = [str(self.repo / "provisioning" / "provision.sh"), *args, "-c", str(config or self.config)]
        cmd += ["-p", str(self.machine.ssh_port), "-i", str(self.machine.base / "key"), "pi@127.0.0.1"]
        started = time.monotonic()
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        self.timings[f"provision run {len(self.runs) + 1} s"] = round(time.monotonic() - started, 1)
        self.runs.append(run)
        return run

    def sh(self, command: str) -> str:
        return self.machine.ssh(command).stdout.strip()

    def show(self, unit: str, prop: str) -> str:
        return self.sh(f"systemctl show -p {prop} --value {unit}")

    def healthz(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.server_port}/healthz", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_served_by_new_pid(self, old_pid: str, timeout_s: float) -> float:
        """Seconds until the server answers again from a process other than old_pid."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            pid = self.machine.ssh("systemctl show -p MainPID --value homeboard.service", check=False).stdout.strip()
            if pid not in ("", "0", old_pid) and self.healthz():
                return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"the server did not come back within {timeout_s} s")


def _need_root_and_tools(arch: str) -> None:
    for tool in ("mmdebstrap", "systemd-nspawn", "ssh", "ssh-keygen", "rsync"):
        require_tool(tool, hint="apt install mmdebstrap systemd-container openssh-client rsync")
    if arch != nspawn.NATIVE_ARCH:
        require_tool("arch-test", hint="make test-arm64 installs it (apt install arch-test qemu-user-static)")
        require_tool(Path(nspawn.QEMU_USER[arch][1]).name, hint="make test-arm64 installs it (qemu-user-static)")
    require(os.geteuid() == 0, "the systemd tests need root (mmdebstrap, mount, systemd-nspawn)")


@contextlib.contextmanager
def provisioned_machine(
    tmp_path_factory: pytest.TempPathFactory, arch: str = nspawn.NATIVE_ARCH, **config: Any
) -> Iterator[System]:
    """A booted Debian bookworm of `arch`, ready for provision.sh, its pip offline (a wheelhouse bound in);
    `config`: more sections for the config it is provisioned with."""
    _need_root_and_tools(arch)
    base = tmp_path_factory.mktemp(f"nspawn-{arch}")
    repo = snapshot_repo(base / "repo")
    if arch == nspawn.NATIVE_ARCH:
        wheels = base / "wheels"
        build_wheelhouse(wheels, repo / "pyproject.toml")
    else:  # what `make` installs too, so a fresh clone can be set up in the machine as well
        wheels = arm64_wheelhouse(repo / "pyproject.toml", ("test", "dev"))
    server_port = free_port()
    config_path = base / "config.yaml"
    write_pi_config(config_path, server_port, "the container's config; ${NOT_A_VALUE} is only a comment", **config)
    machine_dir = base / "machine"
    machine_dir.mkdir()
    binds = [f"{wheels}:/var/cache/homeboard-wheels"]
    with nspawn.booted(machine_dir, free_port(), binds, arch) as (machine, build, boot):
        sys_ = System(machine, repo, config_path, server_port)
        sys_.timings["root fs build s"] = round(build.built_s, 1) if build.built_s is not None else -1
        sys_.timings["boot to sshd s"] = round(boot, 1)
        # pip in the container installs from the wheelhouse only: no index, no network.
        machine.ssh(
            "printf '[global]\\nno-index = true\\nfind-links = /var/cache/homeboard-wheels\\n' | sudo tee /etc/pip.conf"
        )
        timings = ARTIFACTS / ("system-timings.json" if arch == nspawn.NATIVE_ARCH else f"system-timings-{arch}.json")
        try:
            yield sys_
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            timings.write_text(json.dumps(sys_.timings, indent=2) + "\n")
            print(f"\nsystem timings ({arch}):", json.dumps(sys_.timings))


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with provisioned_machine(tmp_path_factory) as sys_:
        yield sys_


def _wall_warning(run: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in run.stdout.splitlines() if "warning: the wall session is not running" in line]
    assert lines, run.stdout
    return lines[0]


def assert_first_run_installed(system: System, run: subprocess.CompletedProcess[str]) -> None:
    """A first run on plain Debian: installed, the server READY (a Type=notify unit is active only after READY=1)
    and answering, the wall's failure to start (no console) a warning, the secret in place."""
    assert run.returncode == 0, run.stdout + run.stderr
    assert "plain Debian: the wall runs Debian's sway" in run.stdout
    assert "all packages present" in run.stdout
    assert "Done:" in run.stdout
    assert "done: start" not in run.stdout
    # No console in a container: a warning naming the reason, never "done", never an error.
    warning = _wall_warning(run)
    assert "no console /dev/tty1" in warning
    assert "ConditionPathExists=/dev/tty1" in warning
    assert "does not answer" not in run.stderr
    assert system.healthz()
    assert system.sh("systemctl is-active homeboard.service") == "active"
    assert system.sh("systemctl is-enabled homeboard-wall.service") == "enabled"
    assert system.sh("systemctl is-enabled getty@tty1.service || true") == "masked"
    # Restarts that never run out: systemd itself says the start limit is off.
    assert system.show("homeboard-wall.service", "StartLimitIntervalUSec") == "0"
    assert system.sh("sudo cat /etc/homeboard/secrets.env").count(SECRET) == 1
    assert "NOT_A_VALUE" not in run.stdout + run.stderr
    assert system.sh("systemctl get-default") == "graphical.target"


def assert_no_changes(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No changes" in run.stdout, run.stdout
    assert "done:" not in run.stdout
    assert "no console /dev/tty1" in _wall_warning(run)


def test_1_first_run_installs_and_reports_the_wall_it_cannot_start(system: System) -> None:
    assert_first_run_installed(system, system.provision())
    # The browser's unit, in the account's own user manager, restarts for ever too.
    assert (
        system.sh("sudo systemctl --user -M homeboard@ show -p StartLimitIntervalUSec --value homeboard-kiosk.service")
        == "0"
    )


def test_2_second_and_third_runs_change_nothing(system: System) -> None:
    pid = system.show("homeboard.service", "MainPID")
    for _ in range(2):
        assert_no_changes(system.provision())
    assert system.show("homeboard.service", "MainPID") == pid  # nothing was restarted


def test_3_an_edited_config_is_kept(system: System) -> None:
    system.sh("sudo sed -i 's#timezone: Europe/Stockholm#timezone: Europe/Oslo#' /etc/homeboard/config.yaml")
    try:
        run = system.provision()
        assert run.returncode == 0, run.stdout + run.stderr
        assert "was kept" in run.stdout
        assert "-timezone: Europe/Oslo" in run.stdout.replace("    ", "")
        assert "No changes" in run.stdout
        assert "Europe/Oslo" in system.sh("sudo cat /etc/homeboard/config.yaml")
    finally:
        system.sh("sudo sed -i 's#timezone: Europe/Oslo#timezone: Europe/Stockholm#' /etc/homeboard/config.yaml")


def test_4_kill_9_comes_back(system: System) -> None:
    pid = system.show("homeboard.service", "MainPID")
    system.sh(f"sudo kill -9 {pid}")
    took = system.wait_served_by_new_pid(pid, 60)
    system.timings["kill -9 to serving again s"] = round(took, 1)
    restart_s = float(system.show("homeboard.service", "RestartUSec").rstrip("s") or 0)
    assert took < restart_s + 15


def test_5_a_hung_server_is_killed_by_the_watchdog_and_restarted(system: System) -> None:
    """SIGSTOP right after a watchdog ping: the worst case the README's promise must cover."""
    pid = system.show("homeboard.service", "MainPID")
    last = system.show("homeboard.service", "WatchdogTimestampMonotonic")
    deadline = time.monotonic() + 40
    while system.show("homeboard.service", "WatchdogTimestampMonotonic") == last:
        assert time.monotonic() < deadline, "no watchdog ping seen"
        time.sleep(0.1)
    system.sh(f"sudo kill -STOP {pid}")
    took = system.wait_served_by_new_pid(pid, 90)
    system.timings["hang (SIGSTOP after a ping) to serving again s"] = round(took, 1)
    journal = system.sh("sudo journalctl -b -u homeboard.service --no-pager -o cat -n 300")
    assert "Watchdog timeout" in journal
    assert re.search(r'File ".*/server/.*\.py", line \d+', journal)  # the Python stack, from faulthandler
    readme = (REPO / "README.md").read_text()
    promised = re.search(r"serving again within (\d+) s", readme)
    assert promised, "the README states how fast a hung server is back"
    assert took <= int(promised.group(1)), (took, promised.group(0))


def test_6_after_a_reboot_it_comes_back_and_a_run_still_changes_nothing(system: System) -> None:
    machine = system.machine
    machine.ssh("sudo systemctl reboot", check=False, timeout_s=15)
    assert machine.wait_exit(60) == nspawn.REBOOT_STATUS
    started = time.monotonic()
    system.timings["reboot: boot to sshd s"] = round(machine.boot(), 1)
    while not system.healthz():
        assert time.monotonic() - started < 90, "the server did not come back after the reboot"
        time.sleep(0.2)
    system.timings["reboot: boot to serving s"] = round(time.monotonic() - started, 1)
    run = system.provision()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No changes" in run.stdout, run.stdout
    assert "no console /dev/tty1" in _wall_warning(run)


def test_7_doctor_reports_the_real_wall_state(system: System) -> None:
    run = subprocess.run(
        [
            str(system.repo / "provisioning" / "provision.sh"),
            "doctor",
            "-p",
            str(system.machine.ssh_port),
            "-i",
            str(system.machine.base / "key"),
            "pi@127.0.0.1",
        ],
        env={
            **os.environ,
            "HOMEBOARD_SSH_CONFIG": str(system.machine.base / "ssh_config"),
            "HOMEBOARD_WALL_SETTLE_S": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "OK    homeboard.service is running" in run.stdout, run.stdout
    assert re.search(r"FAIL  wall session: homeboard-wall.service is inactive.*no console /dev/tty1", run.stdout)
    assert "getty@tty1.service also runs" not in run.stdout
    assert run.returncode == 1


def test_8_the_wall_session_restarts_for_ever(system: System) -> None:
    """The installed unit, with only its start made to fail fast: far past systemd's default start limit
    (5 in 10 s, where greetd gave up) it is still restarting, never "failed"."""
    dropin = "/etc/systemd/system/homeboard-wall.service.d/90-test-fails.conf"
    system.sh(
        "sudo mkdir -p /etc/systemd/system/homeboard-wall.service.d && printf '"
        "[Unit]\\nConditionPathExists=\\n[Service]\\nTTYPath=\\nStandardInput=null\\nPAMName=\\n"
        "ExecStart=\\nExecStart=/bin/false\\nRestartSec=200ms\\n' | sudo tee " + dropin + " >/dev/null"
        " && sudo systemctl daemon-reload && sudo systemctl reset-failed homeboard-wall.service"
        " && sudo systemctl restart homeboard-wall.service || true"
    )
    try:
        deadline = time.monotonic() + 30
        while int(system.show("homeboard-wall.service", "NRestarts") or 0) < 15:
            assert time.monotonic() < deadline, system.sh("systemctl status homeboard-wall.service --no-pager || true")
            time.sleep(0.5)
        assert system.sh("systemctl is-active homeboard-wall.service || true") in ("activating", "active")
        assert system.show("homeboard-wall.service", "Result") != "start-limit-hit"
    finally:
        system.sh(
            f"sudo rm -f {dropin} && sudo systemctl daemon-reload && sudo systemctl stop homeboard-wall.service"
            " && sudo systemctl reset-failed homeboard-wall.service || true"
        )
