"""A booted Debian bookworm with systemd as PID 1, for the provisioning tests: mmdebstrap + systemd-nspawn.

The root file system is built once by mmdebstrap and cached outside the clone (HOMEBOARD_TEST_CACHE,
default /var/cache/homeboard-tests), keyed by a hash of everything that goes into it (suite, packages,
hook). Each test session boots it through an overlay (the cache stays pristine; the overlay's upper layer
survives a reboot of the container), with sshd on a loopback port and the host's network, so the server
inside answers on 127.0.0.1 like on a Pi. Needs root (mmdebstrap, mount, systemd-nspawn).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SUITE = "bookworm"
# The target a mini PC on a wall would be: plain Debian, with what provisioning installs for it already in
# place (packages are not what these tests test, and a test must not download a browser every run).
PACKAGES = [
    *("systemd-sysv", "dbus", "libpam-systemd", "openssh-server", "sudo", "python3", "python3-venv", "rsync"),
    *("curl", "ca-certificates", "procps", "iproute2", "sway", "wlr-randr", "wtype", "chromium"),
    *("fonts-noto-color-emoji", "v4l-utils", "i2c-tools"),
]
# The admin account Raspberry Pi Imager would create: passwordless sudo, a key login (added per session).
HOOK = (
    'chroot "$1" useradd --create-home --shell /bin/bash --user-group pi && '
    "echo 'pi ALL=(ALL) NOPASSWD: ALL' > \"$1/etc/sudoers.d/010_pi\" && "
    'chmod 0440 "$1/etc/sudoers.d/010_pi" && '
    # No host keys in the cache: each session gets its own (below).
    'rm -f "$1"/etc/ssh/ssh_host_*'
)
REBOOT_STATUS = 133  # systemd-nspawn's exit status when the container asked for a reboot


def cache_dir() -> Path:
    return Path(os.environ.get("HOMEBOARD_TEST_CACHE", "/var/cache/homeboard-tests"))


def recipe_key() -> str:
    recipe = "\n".join([SUITE, "variant=apt", *sorted(PACKAGES), HOOK])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


@dataclass
class Build:
    path: Path
    built_s: float | None  # None: taken from the cache


def root_fs() -> Build:
    """The cached root file system, built first if this recipe has none yet."""
    dest = cache_dir() / f"bookworm-{recipe_key()}"
    if (dest / "etc" / "os-release").exists():
        return Build(dest, None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.monotonic()
    run = subprocess.run(
        [
            "mmdebstrap",
            "--variant=apt",
            "--skip=cleanup/apt/lists",  # apt-cache answers offline, as on an installed system
            f"--include={','.join(PACKAGES)}",
            f"--customize-hook={HOOK}",
            SUITE,
            str(tmp),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if run.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"mmdebstrap failed ({run.returncode}):\n{run.stderr[-3000:]}")
    os.replace(tmp, dest)  # whole or not at all: an interrupted build leaves no half cache
    return Build(dest, time.monotonic() - started)


@dataclass
class Machine:
    """One booted container. `boot()` again after a reboot: the overlay keeps what provisioning wrote."""

    lower: Path
    base: Path  # per-session: overlay layers, logs
    ssh_port: int
    authorized_key: str
    binds: list[str] = field(default_factory=list)  # "HOST:CONTAINER", read-only
    proc: subprocess.Popen[bytes] | None = None
    boots: int = 0

    @property
    def root(self) -> Path:
        return self.base / "merged"

    def mount(self) -> None:
        for d in ("upper", "work", "merged"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        opts = f"lowerdir={self.lower},upperdir={self.base / 'upper'},workdir={self.base / 'work'}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.root)], check=True)
        self._personalise()

    def _personalise(self) -> None:
        r = self.root
        ssh = r / "home" / "pi" / ".ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        (ssh / "authorized_keys").write_text(self.authorized_key)
        os.chown(ssh, 1000, 1000)
        os.chown(ssh / "authorized_keys", 1000, 1000)
        (r / "etc" / "ssh" / "sshd_config.d" / "homeboard-test.conf").write_text(
            f"Port {self.ssh_port}\nListenAddress 127.0.0.1\nPasswordAuthentication no\n"
        )
        subprocess.run(["ssh-keygen", "-q", "-A", "-f", str(r)], check=True)
        (r / "etc" / "hostname").write_text("homeboard-test\n")
        (r / "etc" / "hosts").write_text("127.0.0.1 localhost\n127.0.1.1 homeboard-test\n::1 localhost\n")

    def host_key(self) -> str:
        pub = (self.root / "etc" / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
        return f"[127.0.0.1]:{self.ssh_port} {pub[0]} {pub[1]}\n"

    def boot(self, timeout_s: float = 90) -> float:
        """Start the container and wait until sshd answers. Returns the seconds it took."""
        assert self.proc is None or self.proc.poll() is not None
        cmd = ["systemd-nspawn", "-D", str(self.root), "-b", "--register=no", "--keep-unit", "--console=pipe"]
        cmd += [f"--bind-ro={b}" for b in self.binds]
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        log = open(self.base / f"console-{self.boots}.log", "wb")  # noqa: SIM115 - owned by the Popen
        started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.boots += 1
        while time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}: {self.console()[-2000:]}")
            if self.ssh("true", check=False, timeout_s=5).returncode == 0:
                return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"the container did not answer ssh within {timeout_s} s: {self.console()[-2000:]}")

    def console(self) -> str:
        return (self.base / f"console-{self.boots - 1}.log").read_text(errors="replace")

    def ssh_args(self) -> list[str]:
        return ["ssh", "-F", str(self.base / "ssh_config"), "-p", str(self.ssh_port), "-i", str(self.base / "key")]

    def ssh(self, command: str, *, check: bool = True, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        run = subprocess.run(
            [*self.ssh_args(), "pi@127.0.0.1", command],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
        if check and run.returncode != 0:
            raise AssertionError(f"{command}: exit {run.returncode}: {run.stderr}")
        return run

    def wait_exit(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def poweroff(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.ssh("sudo systemctl poweroff", check=False, timeout_s=10)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def unmount(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["umount", str(self.root)], check=True, capture_output=True)


@contextlib.contextmanager
def booted(base: Path, ssh_port: int, binds: list[str]) -> Iterator[tuple[Machine, Build, float]]:
    """(machine, the root fs build, seconds to boot) for a session; powered off and unmounted afterwards."""
    build = root_fs()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "key")], check=True)
    machine = Machine(build.path, base, ssh_port, (base / "key.pub").read_text(), binds)
    machine.mount()
    (base / "known_hosts").write_text(machine.host_key())
    (base / "ssh_config").write_text(
        f"Host *\n  UserKnownHostsFile {base / 'known_hosts'}\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
        "  BatchMode yes\n  ConnectTimeout 5\n"
    )
    try:
        boot_s = machine.boot()
        yield machine, build, boot_s
    finally:
        machine.poweroff()
        machine.unmount()
