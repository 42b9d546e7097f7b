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
NATIVE_ARCH = "amd64"  # this machine's Debian architecture (CI's too)
REBOOT_STATUS = 133  # systemd-nspawn's exit status when the container asked for a reboot


# Foreign architectures run through qemu-user-static (Debian's), registered with binfmt_misc. Flags: F opens
# the interpreter now, so it works inside the container's root too; C takes credentials from the binary, not
# the interpreter, so setuid programs (sudo) work.
QEMU_USER = {
    "arm64": (
        "qemu-aarch64",
        "/usr/bin/qemu-aarch64-static",
        r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
        r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    )
}
BINFMT = Path("/proc/sys/fs/binfmt_misc")


def ensure_binfmt(arch: str) -> None:
    """qemu-user registered for `arch` (mounting binfmt_misc if it is not). An entry of the same name without
    flags F and C (Debian's own registration has no C) is replaced: sudo inside the machine needs C."""
    if arch == NATIVE_ARCH:
        return
    name, interpreter, magic, mask = QEMU_USER[arch]
    if not Path(interpreter).exists():
        raise RuntimeError(f"{interpreter} is missing: apt install qemu-user-static (make test-arm64 does)")
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
    entry = BINFMT / name
    if entry.exists():
        text = entry.read_text()
        flags = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("flags:")), "")
        if f"interpreter {interpreter}" in text and {"F", "C"} <= set(flags) and text.startswith("enabled"):
            return
        entry.write_text("-1")  # removes it
    (BINFMT / "register").write_text(f":{name}:M::{magic}:{mask}:{interpreter}:FC")


def cache_dir() -> Path:
    return Path(os.environ.get("HOMEBOARD_TEST_CACHE", "/var/cache/homeboard-tests"))


def recipe_key(arch: str = NATIVE_ARCH) -> str:
    # The native recipe's key stays what it was before other architectures existed (its cache stays valid).
    foreign = [] if arch == NATIVE_ARCH else [f"arch={arch}"]
    recipe = "\n".join([SUITE, "variant=apt", *foreign, *sorted(PACKAGES), HOOK])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


@dataclass
class Build:
    path: Path
    built_s: float | None  # None: taken from the cache


def root_fs(arch: str = NATIVE_ARCH) -> Build:
    """The cached root file system for a Debian architecture (amd64, arm64), built first if this recipe has none
    yet. A foreign one runs its package scripts through qemu-user (ensure_binfmt registers it)."""
    name = f"bookworm-{recipe_key(arch)}" if arch == NATIVE_ARCH else f"bookworm-{arch}-{recipe_key(arch)}"
    dest = cache_dir() / name
    ensure_binfmt(arch)
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
            f"--architectures={arch}",
            "--skip=cleanup/apt/lists",  # apt-cache answers offline, as on an installed system
            f"--include={','.join(PACKAGES)}",
            f"--customize-hook={HOOK}",
            SUITE,
            str(tmp),
        ],
        capture_output=True,
        text=True,
        timeout=3600,  # arm64, every package script emulated: 14-15 minutes on the 2-core development VM
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
    arch: str = NATIVE_ARCH
    proc: subprocess.Popen[bytes] | None = None
    boots: int = 0
    stand_ins: list[str] = field(default_factory=list)  # what qemu-user needed, as written into the machine

    @property
    def root(self) -> Path:
        return self.base / "merged"

    @property
    def ssh_probe_s(self) -> float:
        return 5 if self.arch == NATIVE_ARCH else 30  # an emulated sshd's key exchange takes seconds

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
        if self.arch != NATIVE_ARCH:
            self._qemu_user_stand_ins()

    def _drop_in(self, unit: str, why: str, body: str) -> None:
        d = self.root / "etc" / "systemd" / "system" / f"{unit}.d"
        d.mkdir(parents=True, exist_ok=True)
        label = f"# Stand-in, only because this machine runs under qemu-user: {why}\n"
        (d / "90-qemu-user-stand-in.conf").write_text(label + body)
        self.stand_ins.append(f"{unit}: {body.splitlines()[-1]} ({why})")

    def _qemu_user_stand_ins(self) -> None:
        """What a real arm64 machine does not need, only qemu-user (each one is labelled in the machine)."""
        units = self.root / "usr" / "lib" / "systemd" / "system"
        for unit in sorted(units.glob("*.service")):
            text = unit.read_text(errors="replace")
            # systemd sets up credentials with a mount API qemu-user does not pass on: "Invalid argument".
            if "\nLoadCredential=" in text:
                self._drop_in(unit.name, "LoadCredential= fails with Invalid argument", "[Service]\nLoadCredential=")
        # A user namespace cannot be set up for an emulated process: the unit fails at start.
        self._drop_in("homeboard.service", "PrivateUsers= fails", "[Service]\nPrivateUsers=no")
        # sd-bus asks for a peer's groups with SO_PEERGROUPS and retries with a larger buffer on ERANGE, which
        # qemu-user returns for ever when the peer is in several groups: the user manager of provisioning's
        # account (gpio, i2c, video, ...) and every `systemctl --user` talking to it spin at full CPU. That
        # account's user manager does not start here (its session's units are covered by the native test).
        self._drop_in(
            "user@.service",
            "sd-bus loops on SO_PEERGROUPS for a user in several groups",
            "[Service]\nExecCondition=/bin/sh -c 'test \"$(id -un)\" != homeboard'",
        )

    def host_key(self) -> str:
        pub = (self.root / "etc" / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
        return f"[127.0.0.1]:{self.ssh_port} {pub[0]} {pub[1]}\n"

    def boot(self, timeout_s: float | None = None) -> float:
        """Start the container and wait until sshd answers. Returns the seconds it took."""
        assert self.proc is None or self.proc.poll() is not None
        if timeout_s is None:
            timeout_s = 90 if self.arch == NATIVE_ARCH else 600  # every program emulated: minutes
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
            with contextlib.suppress(subprocess.TimeoutExpired):  # sshd up, its emulated key exchange not done
                if self.ssh("true", check=False, timeout_s=self.ssh_probe_s).returncode == 0:
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
        # From inside, not by signal: under qemu-user SIGRTMIN+4 (the "power off" signal nspawn would send
        # systemd) arrives as another signal.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.ssh("sudo systemctl poweroff", check=False, timeout_s=self.ssh_probe_s * 2)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def unmount(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["umount", str(self.root)], check=True, capture_output=True)


@contextlib.contextmanager
def booted(
    base: Path, ssh_port: int, binds: list[str], arch: str = NATIVE_ARCH
) -> Iterator[tuple[Machine, Build, float]]:
    """(machine, the root fs build, seconds to boot) for a session; powered off and unmounted afterwards."""
    build = root_fs(arch)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "key")], check=True)
    machine = Machine(build.path, base, ssh_port, (base / "key.pub").read_text(), binds, arch)
    machine.mount()
    (base / "known_hosts").write_text(machine.host_key())
    (base / "ssh_config").write_text(
        f"Host *\n  UserKnownHostsFile {base / 'known_hosts'}\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
        f"  BatchMode yes\n  ConnectTimeout {machine.ssh_probe_s:.0f}\n"
    )
    try:
        boot_s = machine.boot()
        yield machine, build, boot_s
    finally:
        machine.poweroff()
        machine.unmount()
