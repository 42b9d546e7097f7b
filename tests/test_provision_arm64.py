"""provision.sh against a booted Debian bookworm **arm64**, the architecture of a Pi 4 or 5: the same machine and
helpers as tests/test_provision_system.py, built by mmdebstrap for arm64 and run by qemu-user (binfmt_misc).

What it shows: the wheels exist for aarch64 and nothing needs a compiler (there is none in the machine), the
server reaches READY under its real unit, a second run changes nothing, the GPIO library (rpi-lgpio, lgpio)
imports under the unit's sandbox, and a fresh clone installs for `make run` / `make test` there.

What qemu-user itself cannot do is replaced, and only in this machine (tests/nspawn.py labels each drop-in):
`LoadCredential=` in Debian's units, `PrivateUsers=` in ours, the homeboard account's user manager (sd-bus
loops on SO_PEERGROUPS for a user in several groups), SIGRTMIN+4 (powered off from inside instead).
What no emulator shows: seccomp (`SystemCallFilter=`, `MemoryDenyWriteExecute=`; qemu-user applies no filter),
`PrivateUsers=`, a real /dev/gpiochip, I2C and 1-Wire, a Pi's speed. Slow: `make test-arm64`, not `make test`.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import free_port
from tests.test_provision_system import System, assert_first_run_installed, assert_no_changes, provisioned_machine

# Every program in the machine is emulated: a first provisioning run takes minutes, not the suite's 180 s.
pytestmark = [pytest.mark.arm64, pytest.mark.timeout(1800)]

ARCH = "arm64"
PI5_REVISION = "c04170"  # a Pi 5 Model B's board revision code, as /proc/device-tree/system/linux,revision has it
VENV_PY = "/opt/homeboard/.venv/bin/python"
# The PIR on a GPIO pin, read by the server through rpi-lgpio (the machine has no GPIO chip: see below).
GPIO = {"backend": "rpi", "pir": {"pin": 17, "pull": "down", "bounce_ms": 0}, "pir_warmup_s": 0}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with provisioned_machine(tmp_path_factory, ARCH, gpio=GPIO) as sys_:
        # Not a qemu-user stand-in but a "not a Pi" one: the board revision a Pi 5's device tree would give
        # rpi-lgpio, so that the import goes as far as it can on a machine without GPIO hardware.
        sys_.sh(
            "sudo mkdir -p /etc/systemd/system/homeboard.service.d && printf '# Test stand-in: this is not a Pi"
            f"\\n[Service]\\nEnvironment=RPI_LGPIO_REVISION={PI5_REVISION}\\n' | sudo tee "
            "/etc/systemd/system/homeboard.service.d/80-test-not-a-pi.conf >/dev/null"
        )
        print("\nqemu-user stand-ins:", json.dumps(sys_.machine.stand_ins, indent=1))
        yield sys_


def test_1_first_run_installs_on_arm64_without_a_compiler(system: System) -> None:
    assert system.sh("uname -m") == "aarch64"
    assert system.sh("dpkg --print-architecture") == "arm64"
    compilers = system.sh("command -v gcc cc aarch64-linux-gnu-gcc c99 || true")
    assert compilers == "", f"the machine must have no compiler: {compilers}"
    assert_first_run_installed(system, system.provision())
    assert system.sh(f"{VENV_PY} -c 'import platform; print(platform.machine())'") == "aarch64"
    installed = system.sh(f"{VENV_PY} -m pip list --format=freeze")
    for wheel in ("rpi-lgpio==", "lgpio==", "tornado==", "PyYAML=="):
        assert wheel.lower() in installed.lower(), installed
    assert "RPi.GPIO==" not in installed  # one GPIO library, not classic RPi.GPIO beside it


def test_2_a_second_run_changes_nothing(system: System) -> None:
    pid = system.show("homeboard.service", "MainPID")
    assert_no_changes(system.provision())
    assert system.show("homeboard.service", "MainPID") == pid


def _gpio_motion(system: System) -> dict:
    topics = json.loads(system.sh(f"curl -fsS http://127.0.0.1:{system.server_port}/api/state"))["topics"]
    return topics["gpio/motion"]


def test_3_the_gpio_library_imports_under_the_units_sandbox(system: System) -> None:
    """The server, under homeboard.service as installed (ProtectSystem=strict: /opt/homeboard read-only),
    imports rpi-lgpio and lgpio: lgpio's FIFO is in the unit's runtime directory, and what stops the PIR is the
    missing GPIO chip, said in one line. Without LG_WD the real lgpio fails, and says why in one line too."""
    unit = system.sh("systemctl cat homeboard.service")
    assert "ProtectSystem=strict" in unit
    assert "RuntimeDirectory=homeboard" in unit
    assert "Environment=LG_WD=/run/homeboard" in unit
    motion = _gpio_motion(system)
    assert motion["status"] == "unavailable"
    assert motion["error"].startswith("cannot open the Pi's /dev/gpiochip* (can not open gpiochip): "), motion
    assert ".lgd-nfy" not in motion["error"]
    fifo = system.sh("sudo find /run/homeboard -maxdepth 1 -name '.lgd-nfy*' -type p -user homeboard")
    assert fifo.startswith("/run/homeboard/.lgd-nfy"), fifo
    journal = system.sh("sudo journalctl -b -u homeboard.service --no-pager -o cat")
    assert "GPIO unavailable: cannot open the Pi's /dev/gpiochip*" in journal
    # The same import as the service's account, without LG_WD, from the read-only /opt/homeboard.
    probe = "from sensors.gpio import open_backend; open_backend('rpi')"
    run = system.machine.ssh(
        f"cd /opt/homeboard && sudo -u homeboard env -u LG_WD RPI_LGPIO_REVISION={PI5_REVISION} "
        f"{VENV_PY} -c {shlex.quote(probe)}",
        check=False,
    )
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    pipe = r"sensors\.gpio(\.\w+)?\.GpioError: lgpio cannot create its notification pipe in /opt/homeboard "
    assert re.match(pipe, last), last
    assert "set LG_WD to a directory this user can write" in last


# What of `make test` runs in the emulated machine, from the clone: GPIO with rpi-lgpio installed, drivers with
# their emulated chips, the config rules, the server's state route on a loopback port. Not here: what needs root,
# Chromium, Mosquitto or a machine of its own (nspawn in nspawn), and whatever times itself: under emulation
# test_ingest's 1000 concurrent POSTs get 503s, test_sensors_sampling's hung-bus bounds and a BME280's slow
# conversion miss their deadlines (and the whole suite would take hours).
CLONE_TESTS = " ".join(
    f"tests/test_{name}.py"
    for name in ("sensors_gpio", "sensors_mcp9808", "sensors_ds18b20", "sensors_registry", "config", "state_route")
)
CLONE = "/home/pi/homeboard"


def _in_clone(system: System, command: str, timeout_s: float = 1800) -> subprocess.CompletedProcess[str]:
    return system.machine.ssh(f"cd {CLONE} && {command}", check=False, timeout_s=timeout_s)


def test_4_a_fresh_clone_installs_for_make_run_and_make_test_without_a_compiler(system: System) -> None:
    """What `make` does on a fresh clone (the Makefile's venv and `pip install -e '.[test,dev]'`), in the arm64
    machine as its admin user, from the same offline wheels; then `make run`'s server answers, `make lint` passes
    and part of the suite runs."""
    system.machine.ssh(f"rm -rf {CLONE} && mkdir -p {CLONE}")
    subprocess.run(
        ["rsync", "-a", "--exclude=/tests/artifacts/", "-e", shlex.join(system.machine.ssh_args()),
         f"{system.repo}/", f"pi@127.0.0.1:{CLONE}/"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    started = time.monotonic()
    install = _in_clone(system, "python3 -m venv .venv && .venv/bin/python -m pip install -q -e '.[test,dev]'")
    system.timings["fresh clone: venv + pip install -e .[test,dev] s"] = round(time.monotonic() - started, 1)
    assert install.returncode == 0, install.stdout + install.stderr
    assert "rpi-lgpio" in _in_clone(system, ".venv/bin/python -m pip list").stdout

    port = free_port()
    server = _in_clone(system, f"(.venv/bin/python -m server --demo --port {port} >/tmp/demo.log 2>&1 & echo $!)")
    started = time.monotonic()
    try:
        while system.machine.ssh(f"curl -fsS -o /dev/null http://127.0.0.1:{port}/healthz", check=False).returncode:
            assert time.monotonic() - started < 180, system.sh("cat /tmp/demo.log")
            time.sleep(1)
        system.timings["fresh clone: make run answering s"] = round(time.monotonic() - started, 1)
        weather = json.loads(system.sh(f"curl -fsS http://127.0.0.1:{port}/api/state"))["topics"]["weather"]
        assert weather["status"] in ("ok", "waiting"), weather
    finally:
        system.machine.ssh(f"kill {server.stdout.strip()}", check=False)

    started = time.monotonic()
    lint = _in_clone(system, ".venv/bin/python -m ruff check . && .venv/bin/python -m ruff format --check .")
    system.timings["fresh clone: make lint s"] = round(time.monotonic() - started, 1)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    started = time.monotonic()
    tests = _in_clone(system, f".venv/bin/python -m pytest -q -p no:cacheprovider {CLONE_TESTS}")
    system.timings["fresh clone: part of make test s"] = round(time.monotonic() - started, 1)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    passed = re.search(r"(\d+) passed", tests.stdout)
    assert passed, tests.stdout[-2000:]
    system.timings["fresh clone: tests passed"] = int(passed.group(1))


def test_5_idle_rss_of_the_demo_server_without_the_emulator_is_within_budget(system: System) -> None:
    """`make bench`'s idle RSS figure, measured in the arm64 machine (bench/run.py separates qemu-user's own
    memory from the server's: see rss_split_kb)."""
    run = _in_clone(system, ".venv/bin/python bench/run.py --only rss --runs 3 --out /tmp/rss.json", 900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rss = json.loads(system.sh("cat /tmp/rss.json"))["rss"]
    system.timings["idle RSS without the emulator MB"] = rss["rss_program_mb"]["median"]
    system.timings["idle RSS of qemu-user itself MB"] = rss["rss_emulator_mb"]["median"]
    print("\n" + "\n".join(line for line in run.stdout.splitlines() if "RSS" in line))
    assert rss["rss_emulator_mb"]["min"] > 0  # the split found the emulator: it measured what it says
    assert rss["rss_program_mb"]["median"] <= 40, rss
