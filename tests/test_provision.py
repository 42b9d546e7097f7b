"""provisioning/provision.sh for real, over SSH, into a sandbox root.

The test starts its own sshd on a loopback port (its own host key and authorized_keys). The "Pi" is a
directory (HOMEBOARD_ROOT): /etc/os-release says Bookworm, /etc/rpi-issue is there, /proc/device-tree/model
says Raspberry Pi 5. Commands that would change this machine — apt-get, apt-cache, dpkg-query, systemctl,
raspi-config, loginctl, useradd, usermod, groupadd, getent, chown, udevadm, journalctl, timedatectl — are
recording stand-ins first on the remote PATH. What a container cannot show (raspi-config, the hardware
watchdog, a wall session that starts) is tested here; tests/test_provision_system.py runs the same
provisioning against a booted Debian with systemd as PID 1. Everything else is real: ssh, rsync, bash,
python3 -m venv, pip (offline, from wheels repacked from this interpreter's installed packages), and the
server itself, which the systemctl stand-in starts from the ExecStart= of the unit file provisioning
installed, with its EnvironmentFile=.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, require_tool
from tests.wheelhouse import build_wheelhouse, snapshot_repo, write_pi_config

SECRET = "s3cr3t-balcony-token-5d1f"  # a test value that must never show up in any output
DEBIAN_ARCHIVE = (
    *("rsync", "curl", "python3-venv", "wlr-randr", "wtype", "v4l-utils", "i2c-tools", "fonts-noto-color-emoji"),
    *("sway", "chromium"),
    "python3-rpi.gpio",
)
RPIOS_ARCHIVE = (*DEBIAN_ARCHIVE, "labwc", "wlopm", "python3-rpi-lgpio", "chromium-browser")

# ------------------------------------------------------------------------------------------ stand-ins

STANDINS: dict[str, str] = {
    "systemctl": r"""
R=${HOMEBOARD_ROOT:?}; S=$R/.standin
mkdir -p "$S/enabled" "$S/active"
echo "systemctl $*" >>"$S/calls.log"
user=0; args=(); prop=""
while [ $# -gt 0 ]; do
  case "$1" in --user) user=1 ;; -M) shift ;; --no-pager | -q | --quiet | --value) ;; -p) prop=$2; shift ;;
  --version) echo "systemd 252 (252.38-1~deb12u1)"; exit 0 ;; *) args+=("$1") ;; esac
  shift
done
cmd=${args[0]:-}; unit=${args[1]:-}
if [ "$user" = 1 ]; then
  case "$cmd" in is-active) echo inactive; exit 3 ;; *) exit 0 ;; esac
fi
server_alive() { p=$(cat "$S/server.pid" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }
stop_server() {
  if server_alive; then
    kill "$(cat "$S/server.pid")"
    for _ in $(seq 100); do server_alive || break; sleep 0.1; done
  fi
  rm -f "$S/server.pid"
}
start_server() {  # what systemd would run: ExecStart= in WorkingDirectory= with EnvironmentFile=
  uf=$R/etc/systemd/system/homeboard.service
  [ -f "$uf" ] || { echo "Unit homeboard.service not found." >&2; exit 5; }
  line=$(sed -n 's/^ExecStart=//p' "$uf" |
    sed -e "s#/opt/#$R/opt/#g" -e "s#/etc/#$R/etc/#g" -e "s#/var/lib/#$R/var/lib/#g")
  wd=$(sed -n 's/^WorkingDirectory=//p' "$uf")
  envf=$(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$uf")
  mkdir -p "$R/var/lib/homeboard"
  (
    set -a
    if [ -f "$R$envf" ]; then . "$R$envf"; fi
    set +a
    cd "$R$wd" && exec setsid $line
  ) >>"$S/server.log" 2>&1 </dev/null &
  echo $! >"$S/server.pid"
}
# The wall session: "wall-dead" makes its compositor die a second after each start (no screen), so the
# unit is always between restarts ("activating") and NRestarts grows every time it is looked at.
wall_dead() { [ "$unit" = homeboard-wall.service ] && [ -e "$S/wall-dead" ]; }
case "$cmd" in
is-enabled)
  if [ -e "$S/masked/$unit" ]; then echo masked
  elif [ -e "$S/enabled/$unit" ]; then echo enabled; else echo disabled; exit 1; fi ;;
enable) touch "$S/enabled/$unit" ;;
mask) mkdir -p "$S/masked"; for u in "${args[@]:1}"; do touch "$S/masked/$u"; done ;;
show)
  n=$(cat "$S/nrestarts" 2>/dev/null || echo 0)
  case "$prop" in
  NRestarts) if wall_dead; then n=$((n + 1)); echo "$n" >"$S/nrestarts"; fi; echo "$n" ;;
  Result) if wall_dead; then echo exit-code; else echo success; fi ;;
  ConditionResult) echo yes ;;
  esac ;;
disable) rm -f "$S/enabled/$unit" ;;
is-failed)  # the server was started and its process is gone
  if [ "$unit" = homeboard.service ] && [ -e "$S/server.pid" ] && ! server_alive; then echo failed; exit 0; fi
  echo active; exit 1 ;;
is-active)
  if [ "$unit" = homeboard.service ]; then
    if server_alive; then echo active; else echo inactive; exit 3; fi
  elif wall_dead && [ -e "$S/active/$unit" ]; then echo activating; exit 3
  elif [ -e "$S/active/$unit" ]; then echo active; else echo inactive; exit 3; fi ;;
start | restart)
  if [ "$unit" = homeboard.service ]; then
    if [ "$cmd" = restart ]; then stop_server; fi
    server_alive || start_server
  else touch "$S/active/$unit"; fi ;;
stop) if [ "$unit" = homeboard.service ]; then stop_server; else rm -f "$S/active/$unit"; fi ;;
get-default) cat "$S/default-target" 2>/dev/null || echo multi-user.target ;;
set-default) echo "$unit" >"$S/default-target" ;;
daemon-reload | reset-failed) ;;
*) echo "systemctl stand-in: $cmd is not emulated" >&2; exit 1 ;;
esac
""",
    "apt-get": r"""
S=${HOMEBOARD_ROOT:?}/.standin
echo "apt-get $*" >>"$S/calls.log"
if [ -e "$S/fail-apt" ]; then
  echo "E: Failed to fetch http://archive.raspberrypi.com/debian/pool/main/w/wtype.deb" \
    " Temporary failure resolving 'archive.raspberrypi.com'" >&2
  exit 100
fi
for a in "$@"; do case "$a" in -* | install | update) ;; *) echo "$a" >>"$S/dpkg-installed" ;; esac; done
""",
    # The target's archives: $S/archive lists the packages apt could install (a Raspberry Pi OS archive by
    # default; a plain Debian one without labwc and wlopm in other tests).
    "apt-cache": r"""
S=${HOMEBOARD_ROOT:?}/.standin
echo "apt-cache $*" >>"$S/calls.log"
pkg=${*: -1}
echo "$pkg:"
if grep -qx "$pkg" "$S/archive" 2>/dev/null; then echo "  Candidate: 1.0-1"; else echo "  Candidate: (none)"; fi
""",
    "dpkg-query": r"""
S=${HOMEBOARD_ROOT:?}/.standin
pkg=${*: -1}
if grep -qx "$pkg" "$S/dpkg-installed" 2>/dev/null; then printf 'install ok installed'; else exit 1; fi
""",
    "raspi-config": r"""
S=${HOMEBOARD_ROOT:?}/.standin
echo "raspi-config $*" >>"$S/calls.log"
case "$2" in
get_*) if [ -e "$S/raspi-${2#get_}" ]; then echo 0; else echo 1; fi ;;
do_*) if [ "$3" = 0 ]; then touch "$S/raspi-${2#do_}"; else rm -f "$S/raspi-${2#do_}"; fi ;;
esac
""",
    "loginctl": r"""
R=${HOMEBOARD_ROOT:?}
echo "loginctl $*" >>"$R/.standin/calls.log"
[ "$1" = enable-linger ] && mkdir -p "$R/var/lib/systemd/linger" && touch "$R/var/lib/systemd/linger/$2"
""",
    "getent": r"""
R=${HOMEBOARD_ROOT:?}
grep "^$2:" "$R/etc/$1" || exit 2
""",
    "useradd": r"""
R=${HOMEBOARD_ROOT:?}
echo "useradd $*" >>"$R/.standin/calls.log"
home=""; name=""
while [ $# -gt 0 ]; do
  case "$1" in --home-dir | -d) home=$2; shift ;; --shell | -s | --comment | -c) shift ;; -*) ;; *) name=$1 ;; esac
  shift
done
uid=$((1000 + $(wc -l <"$R/etc/passwd")))
echo "$name:x:$uid:$uid:Homeboard wall:$home:/usr/sbin/nologin" >>"$R/etc/passwd"
echo "$name:x:$uid:" >>"$R/etc/group"
mkdir -p "$home"
""",
    "usermod": r"""
R=${HOMEBOARD_ROOT:?}
echo "usermod $*" >>"$R/.standin/calls.log"
awk -F: -v g="$2" -v u="$3" 'BEGIN { OFS = ":" } $1 == g { $4 = ($4 == "" ? u : $4 "," u) } { print }' \
  "$R/etc/group" >"$R/etc/group.new" && mv "$R/etc/group.new" "$R/etc/group"
""",
    "groupadd": r"""
R=${HOMEBOARD_ROOT:?}
echo "groupadd $*" >>"$R/.standin/calls.log"
echo "${*: -1}:x:$((900 + $(wc -l <"$R/etc/group"))):" >>"$R/etc/group"
""",
    "chown": 'echo "chown $*" >>"${HOMEBOARD_ROOT:?}/.standin/calls.log"\n',
    # When the tests run unprivileged, sshd logs in as that same user: "sudo" then runs the command as is
    # (every tool that needs root is a stand-in, and every path is inside the sandbox).
    "sudo": '[ "$1" = -n ] && shift\nexec "$@"\n',
    "udevadm": 'echo "udevadm $*" >>"${HOMEBOARD_ROOT:?}/.standin/calls.log"\n',
    "journalctl": r"""
S=${HOMEBOARD_ROOT:?}/.standin
case "$*" in
*homeboard-wall.service*)
  if [ -e "$S/wall-dead" ]; then
    t=2026-01-05T06:00:01+0100
    echo "$t pi systemd[1]: Started homeboard-wall.service - Homeboard wall session (compositor on tty1)."
    echo "$t pi labwc[812]: 00:00:01.000 [ERROR] [wlr] [backend/backend.c:217] Found 0 GPUs, cannot create backend"
    echo "$t pi systemd[1]: homeboard-wall.service: Main process exited, code=exited, status=1/FAILURE"
    echo "$t pi systemd[1]: homeboard-wall.service: Scheduled restart job, restart counter is at 3."
  fi ;;
*) tail -n 25 "$S/server.log" 2>/dev/null ;;
esac
""",
    "timedatectl": "echo yes\n",
}


def _write_standins(stubs: Path) -> None:
    stubs.mkdir()
    for name, body in STANDINS.items():
        path = stubs / name
        path.write_text("#!/bin/bash\n# Recording stand-in for the provisioning sandbox.\n" + body.lstrip("\n"))
        path.chmod(0o755)


# ------------------------------------------------------------------------------------------ sandbox


@dataclass
class Sandbox:
    base: Path
    repo: Path  # the snapshot provisioned from
    port: int  # sshd
    key: Path
    ssh_config: Path
    user: str
    server_port: int
    config: Path  # the local config.yaml provisioning installs
    first: subprocess.CompletedProcess[str] | None = None
    roots: list[Path] = field(default_factory=list)

    def make_root(
        self,
        name: str,
        *,
        codename: str = "bookworm",
        model: str = "Raspberry Pi 5 Model B Rev 1.0",
        archive: tuple[str, ...] = RPIOS_ARCHIVE,
        rpi_issue: bool = True,
    ) -> Path:
        """A fresh "Pi": Raspberry Pi OS files, the groups it ships with, a few packages already installed."""
        root = self.base / name
        (root / "etc").mkdir(parents=True)
        if rpi_issue:
            (root / "etc" / "rpi-issue").write_text("Raspberry Pi reference 2024-11-19\n")
        (root / "etc" / "os-release").write_text(
            f'PRETTY_NAME="Debian GNU/Linux 12 ({codename})"\nNAME="Debian GNU/Linux"\n'
            f"VERSION_CODENAME={codename}\nID=debian\n"
        )
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n")
        (root / "etc" / "group").write_text(
            "root:x:0:\nvideo:x:44:pi\ninput:x:101:pi\nrender:x:105:pi\ngpio:x:997:pi\ni2c:x:998:pi\npi:x:1000:\n"
        )
        (root / "proc" / "device-tree").mkdir(parents=True)
        (root / "proc" / "device-tree" / "model").write_bytes(model.encode() + b"\0")
        (root / "boot" / "firmware").mkdir(parents=True)
        (root / "boot" / "firmware" / "config.txt").write_text("[all]\ndtparam=audio=on\n")
        (root / "opt").mkdir()
        (root / ".standin").mkdir()
        (root / ".standin" / "dpkg-installed").write_text("rsync\ncurl\npython3-venv\n")
        (root / ".standin" / "archive").write_text("".join(f"{p}\n" for p in archive))
        self.roots.append(root)
        return root

    def run(
        self,
        root: Path,
        *args: str,
        env: dict[str, str] | None = None,
        timeout_s: float = 240,
        config: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.base),
            "HOMEBOARD_ROOT": str(root),
            "HOMEBOARD_SSH_CONFIG": str(self.ssh_config),
            "HOMEBOARD_MIN_FREE_MB": "50",
            "HOMEBOARD_HEALTHZ_WAIT_S": "40",
            "HOMEBOARD_WALL_SETTLE_S": "0",
            "HOMEBOARD_PYTHON": sys.executable,  # the config check on "the laptop": this test's interpreter
            "BALCONY_TOKEN": SECRET,
            **(env or {}),
        }
        cmd = [str(self.provision), *args]
        if "doctor" not in args:
            cmd[1:1] = ["-c", str(config or self.config)]
        cmd += ["-p", str(self.port), "-i", str(self.key), f"{self.user}@127.0.0.1"]
        return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout_s)

    @property
    def provision(self) -> Path:
        return self.repo / "provisioning" / "provision.sh"

    def calls(self, root: Path) -> list[str]:
        log = root / ".standin" / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def server_pid(self, root: Path) -> int | None:
        try:
            pid = int((root / ".standin" / "server.pid").read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid


def _wait_port(port: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"sshd did not listen on {port}")


def _sshd() -> str:
    # PATH first, then where Debian puts daemons (root's PATH has it, a user's may not).
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return require_tool("sshd", search_path=search, hint="apt install openssh-server")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sshd = _sshd()
    for tool in ("ssh", "ssh-keygen", "rsync"):
        require_tool(tool)
    base = tmp_path_factory.mktemp("provision")
    user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / name)], check=True)
    (base / "authorized_keys").write_text((base / "client_key.pub").read_text())
    repo = snapshot_repo(base / "repo")
    stubs = base / "stubs"
    _write_standins(stubs)
    wheels = base / "wheels"
    build_wheelhouse(wheels, repo / "pyproject.toml")
    # The login environment of the "Pi": its PATH (stand-ins first) and pip without an index. A wrapper
    # rather than SetEnv, because this machine's own shell start-up files would rewrite PATH.
    login = base / "login-env"
    login.write_text(
        "#!/bin/sh\n"
        f"export PATH={stubs}:/usr/bin:/bin:/usr/sbin:/sbin\n"
        f"export PIP_NO_INDEX=1 PIP_FIND_LINKS={wheels} PIP_DISABLE_PIP_VERSION_CHECK=1\n"
        'exec /bin/bash -c "$SSH_ORIGINAL_COMMAND"\n'
    )
    login.chmod(0o755)
    port = free_port()
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\nPidFile {base / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {base / 'authorized_keys'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
        f"AllowUsers {user}\nForceCommand {login}\nLogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    daemon = subprocess.Popen([sshd, "-D", "-e", "-f", str(base / "sshd_config")], stderr=subprocess.DEVNULL)
    host_pub = (base / "host_key.pub").read_text().split()
    (base / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (base / "ssh_config").write_text(
        f"Host *\n  UserKnownHostsFile {base / 'known_hosts'}\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
    )
    server_port = free_port()
    config = base / "config.yaml"
    write_pi_config(
        config, server_port, "config for the sandbox Pi. Not a value, so not a secret it needs: ${COMMENTED_OUT}"
    )
    sb = Sandbox(base, repo, port, base / "client_key", base / "ssh_config", user, server_port, config)
    try:
        _wait_port(port)
        root = sb.make_root("pi")
        sb.first = sb.run(root)
        yield sb
    finally:
        for root in sb.roots:
            pid = sb.server_pid(root)
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
        daemon.terminate()
        daemon.wait(10)


def _tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mode of every installed file (not the server's data or the stand-ins' records)."""
    out: dict[str, tuple[str, int]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith((".standin", "var/lib/homeboard")) or "__pycache__" in rel:
            continue
        st = path.lstat()
        if path.is_symlink():
            out[rel] = (os.readlink(path), st.st_mode)
        elif path.is_file():
            out[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mode)
        else:
            out[rel] = ("dir", st.st_mode)
    return out


# ------------------------------------------------------------------------------------------ tests


def test_first_run_installs_a_working_wall(sandbox: Sandbox) -> None:
    run = sandbox.first
    assert run is not None
    assert run.returncode == 0, run.stdout + run.stderr
    root = sandbox.roots[0]
    out = run.stdout
    assert "Raspberry Pi 5 Model B" in out
    assert "Done:" in out
    assert f"Dashboard: http://127.0.0.1:{sandbox.server_port}/" in out
    assert "only the Pi's own screen" in out  # server.host is loopback
    assert "Reboot once to apply: i2c onewire watchdog  →" in out

    calls = sandbox.calls(root)
    (install,) = [c for c in calls if c.startswith("apt-get install")]
    assert "python3-rpi" not in install  # the GPIO library is rpi-lgpio from pip, on every Pi: no apt copy
    for package in ("labwc", "chromium", "wlopm"):
        assert package in install
    assert "greetd" not in install
    assert "sway" not in install
    assert "raspi-config nonint do_i2c 0" in calls
    assert "raspi-config nonint do_onewire 0" in calls
    assert "loginctl enable-linger homeboard" in calls
    assert "systemctl enable homeboard.service" in calls
    assert "systemctl enable homeboard-wall.service" in calls
    assert "systemctl mask getty@tty1.service autovt@tty1.service" in calls  # one owner of tty1
    start = calls.index("systemctl restart homeboard-wall.service")
    assert "systemctl reset-failed homeboard-wall.service" in calls[:start]
    assert "starting the wall session (it was inactive)" in out
    assert "the wall session runs (homeboard-wall.service active" in out
    assert "done: start" not in out
    assert "Warnings:" not in out
    assert "systemctl set-default graphical.target" in calls
    assert "systemctl restart homeboard.service" in calls
    assert any(c.startswith("useradd") and c.endswith(" homeboard") for c in calls)

    # The files, as the units and the server expect them.
    opt = root / "opt" / "homeboard"
    assert (opt / "server" / "__main__.py").read_bytes() == (sandbox.repo / "server" / "__main__.py").read_bytes()
    assert not (opt / "tests").exists()
    assert not (opt / ".git").exists()
    assert os.access(opt / ".venv" / "bin" / "python", os.X_OK)
    unit = root / "etc" / "systemd" / "system" / "homeboard.service"
    assert unit.read_bytes() == (sandbox.repo / "systemd" / "homeboard.service").read_bytes()
    kiosk_unit = root / "home" / "homeboard" / ".config" / "systemd" / "user" / "homeboard-kiosk.service"
    assert kiosk_unit.read_bytes() == (sandbox.repo / "systemd" / "homeboard-kiosk.service").read_bytes()
    url_dropin = kiosk_unit.parent / "homeboard-kiosk.service.d" / "10-url.conf"
    assert f"Environment=HOMEBOARD_URL=http://127.0.0.1:{sandbox.server_port}/?wall=1" in url_dropin.read_text()
    wants = kiosk_unit.parent / "default.target.wants" / "homeboard-kiosk.service"
    assert os.readlink(wants) == "../homeboard-kiosk.service"
    wall_unit = root / "etc" / "systemd" / "system" / "homeboard-wall.service"
    assert wall_unit.read_bytes() == (sandbox.repo / "systemd" / "homeboard-wall.service").read_bytes()
    assert not (root / "etc" / "greetd").exists()
    assert not (
        root / "etc" / "systemd" / "system" / "homeboard-wall.service.d"
    ).exists()  # systemd 252: no back-off keys
    assert "homeboard-kiosk.service" in (root / "home" / "homeboard" / ".config" / "labwc" / "autostart").read_text()
    assert (root / "var" / "lib" / "systemd" / "linger" / "homeboard").exists()
    config_txt = (root / "boot" / "firmware" / "config.txt").read_text()
    assert config_txt.splitlines().count("dtparam=watchdog=on") == 1
    assert "RuntimeWatchdogSec=15s" in (root / "etc/systemd/system.conf.d/homeboard-watchdog.conf").read_text()
    assert 'subject.user == "homeboard"' in (root / "etc/polkit-1/rules.d/50-homeboard.rules").read_text()
    groups = {line.split(":")[0]: line.strip().split(":")[3] for line in (root / "etc" / "group").open()}
    for g in ("gpio", "i2c", "video", "render", "input"):
        assert "homeboard" in groups[g].split(","), g

    config = root / "etc" / "homeboard" / "config.yaml"
    assert config.read_bytes() == sandbox.config.read_bytes()
    assert config.stat().st_mode & 0o777 == 0o640
    secrets = root / "etc" / "homeboard" / "secrets.env"
    assert secrets.stat().st_mode & 0o777 == 0o600
    assert f"BALCONY_TOKEN='{SECRET}'" in secrets.read_text()
    assert "from your environment: BALCONY_TOKEN" in out
    assert SECRET not in out + run.stderr  # never printed

    # The server the unit describes really runs, with the secret from the EnvironmentFile.
    assert "the server answers on http://127.0.0.1" in out
    with urllib.request.urlopen(f"http://127.0.0.1:{sandbox.server_port}/healthz", timeout=5) as r:
        assert r.status == 200
    pid = sandbox.server_pid(root)
    assert pid is not None
    with open(f"/proc/{pid}/environ", "rb") as f:
        assert f"BALCONY_TOKEN={SECRET}".encode() in f.read().split(b"\0")


def test_second_run_changes_nothing_and_says_so(sandbox: Sandbox) -> None:
    root = sandbox.roots[0]
    before = _tree_digest(root)
    pid = sandbox.server_pid(root)
    calls_before = len(sandbox.calls(root))
    run = sandbox.run(root)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No changes" in run.stdout, run.stdout
    assert "done:" not in run.stdout
    assert "code unchanged" in run.stdout
    assert "dependencies unchanged" in run.stdout
    assert _tree_digest(root) == before  # not a byte or a mode changed
    assert sandbox.server_pid(root) == pid  # and nothing was restarted
    new_calls = sandbox.calls(root)[calls_before:]
    assert not [c for c in new_calls if re.match(r"(apt-get install|useradd|usermod|systemctl (restart|enable))", c)]
    assert SECRET not in run.stdout + run.stderr


def test_an_edited_config_on_the_pi_is_kept_and_the_difference_shown(sandbox: Sandbox) -> None:
    root = sandbox.roots[0]
    config = root / "etc" / "homeboard" / "config.yaml"
    original = config.read_text()
    edited = original.replace("timezone: Europe/Stockholm", "timezone: Europe/Oslo")
    assert edited != original
    config.write_text(edited)
    try:
        run = sandbox.run(root)
        assert run.returncode == 0, run.stdout + run.stderr
        assert config.read_text() == edited
        assert "was kept" in run.stdout
        assert "-timezone: Europe/Oslo" in run.stdout.replace("    ", "")
        assert "+timezone: Europe/Stockholm" in run.stdout.replace("    ", "")
        assert "No changes" in run.stdout, run.stdout
    finally:
        config.write_text(original)


def test_a_failing_step_is_named_and_the_previous_version_keeps_running(sandbox: Sandbox) -> None:
    root = sandbox.roots[0]
    installed = root / ".standin" / "dpkg-installed"
    before_pkgs = installed.read_text()
    installed.write_text(before_pkgs.replace("wtype\n", ""))  # a package went missing...
    (root / ".standin" / "fail-apt").touch()  # ...and the mirror is unreachable
    before = _tree_digest(root)
    pid = sandbox.server_pid(root)
    try:
        run = sandbox.run(root)
    finally:
        (root / ".standin" / "fail-apt").unlink()
        installed.write_text(before_pkgs)
    assert run.returncode != 0
    assert 'FAILED at step "packages"' in run.stderr
    assert "Temporary failure resolving" in run.stderr  # apt's own reason
    assert "apt-get update failed: is the Pi online" in run.stderr, run.stderr
    assert "still runs the previous version" in run.stderr
    assert _tree_digest(root) == before
    assert sandbox.server_pid(root) == pid
    with urllib.request.urlopen(f"http://127.0.0.1:{sandbox.server_port}/healthz", timeout=5) as r:
        assert r.status == 200


def test_wrong_os_no_space_and_unreachable_host_are_reported_before_any_change(sandbox: Sandbox) -> None:
    bullseye = sandbox.make_root("bullseye", codename="bullseye")
    run = sandbox.run(bullseye)
    assert run.returncode != 0
    assert 'FAILED at step "check_target"' in run.stderr
    assert "wrong OS" in run.stderr
    assert "Bookworm" in run.stderr

    full = sandbox.make_root("full")
    run = sandbox.run(full, env={"HOMEBOARD_MIN_FREE_MB": str(10**9)})
    assert run.returncode != 0
    assert "no space" in run.stderr
    assert not sandbox.calls(full)  # nothing was touched

    nobody = free_port()
    run = subprocess.run(
        [str(sandbox.provision), "-p", str(nobody), "-i", str(sandbox.key), f"{sandbox.user}@127.0.0.1"],
        env={**os.environ, "HOMEBOARD_SSH_CONFIG": str(sandbox.ssh_config), "HOMEBOARD_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "unreachable host" in run.stderr
    assert 'FAILED at step "check_target"' in run.stderr


def test_dry_run_lists_the_changes_and_makes_none(sandbox: Sandbox) -> None:
    fresh = sandbox.make_root("fresh", model="Raspberry Pi 4 Model B Rev 1.5")
    before = _tree_digest(fresh)
    run = sandbox.run(fresh, "--dry-run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "dry run" in run.stdout
    assert "would: install" in run.stdout
    assert "python3-rpi" not in run.stdout  # a Pi 4 too: no GPIO library from apt
    assert "would: create user homeboard" in run.stdout
    assert "would: build the Python environment" in run.stdout
    assert "would: update" in run.stdout
    assert "Dry run:" in run.stdout
    assert _tree_digest(fresh) == before
    read_only = (
        "raspi-config nonint get_",
        "systemctl is-",
        "systemctl get-default",
        "systemctl --version",
        "apt-cache ",
    )
    assert [c for c in sandbox.calls(fresh) if not c.startswith(read_only)] == []


def test_a_wall_that_cannot_start_is_a_warning_and_runs_converge(sandbox: Sandbox) -> None:
    """No screen: the compositor dies a second after every start. The server stays healthy, the run says why
    the wall is dark (the journal's last error), never "done", and the next runs say "No changes"."""
    root = sandbox.roots[0]
    (root / ".standin" / "wall-dead").touch()
    (root / ".standin" / "active" / "homeboard-wall.service").unlink(missing_ok=True)  # as after a crash
    pid = sandbox.server_pid(root)
    try:
        runs = [sandbox.run(root) for _ in range(3)]
    finally:
        (root / ".standin" / "wall-dead").unlink()
    for n, run in enumerate(runs, 1):
        assert run.returncode == 0, (n, run.stdout + run.stderr)
        assert "done:" not in run.stdout, (n, run.stdout)
        assert "No changes" in run.stdout, (n, run.stdout)
        warning = next(line for line in run.stdout.splitlines() if "warning: the wall session is not running" in line)
        assert "homeboard-wall.service is activating, restarted 1 time(s)" in warning
        assert "(result: exit-code)" in warning
        assert "last error: 00:00:01.000 [ERROR] [wlr] [backend/backend.c:217] Found 0 GPUs" in warning
        assert "Warnings:" in run.stdout
        assert "does not answer" not in run.stderr
    assert "starting the wall session (it was inactive)" in runs[0].stdout
    assert "starting the wall session" not in runs[1].stdout  # between restarts is not "not running": no kick
    assert sandbox.server_pid(root) == pid  # the healthy server was left alone
    with urllib.request.urlopen(f"http://127.0.0.1:{sandbox.server_port}/healthz", timeout=5) as r:
        assert r.status == 200


def test_secrets_in_comments_are_not_asked_for(sandbox: Sandbox) -> None:
    assert sandbox.first is not None
    out = sandbox.first.stdout + sandbox.first.stderr
    assert "COMMENTED_OUT" not in out  # the sandbox config names it in a comment only
    # The stock config.yaml: whole-line and end-of-line comments name ${DISPLAY_TOKEN}, ${MQTT_PASSWORD},
    # ${STRAVA_REFRESH_TOKEN} and ${NAME}; only the values count.
    run = subprocess.run(
        [sys.executable, str(REPO / "provisioning" / "secret_names.py"), str(REPO / "config.yaml")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.split() == ["BALCONY_TOKEN", "STRAVA_CLIENT_SECRET", "WEATHERAPI_KEY"]
    text = (REPO / "config.yaml").read_text()
    for commented in ("DISPLAY_TOKEN", "MQTT_PASSWORD", "NAME", "STRAVA_REFRESH_TOKEN"):
        assert f"${{{commented}}}" in text  # still there, in comments


def test_a_config_typo_never_reaches_the_pi(sandbox: Sandbox) -> None:
    typo = sandbox.base / "typo.yaml"
    typo.write_text(sandbox.config.read_text().replace("timezone:", "timezon:"))
    fresh = sandbox.make_root("typo")
    before = _tree_digest(fresh)
    run = sandbox.run(fresh, env={}, config=typo)
    assert run.returncode != 0
    assert 'FAILED at step "check_config"' in run.stderr
    (error,) = [line for line in run.stderr.splitlines() if line.startswith("provision: config error")]
    assert str(typo) in error
    assert "timezon" in error
    assert "Nothing was sent to the Pi" in run.stderr
    assert sandbox.calls(fresh) == []
    assert _tree_digest(fresh) == before


def test_files_that_exist_only_on_the_pi_pass_the_laptop_check(sandbox: Sandbox) -> None:
    """A TLS certificate and an MQTT CA under /etc on the Pi (as config.yaml's comments suggest) are not on the
    laptop: the local check takes their paths as written and the run goes on (here a dry run)."""
    pi_files = sandbox.base / "pi-files.yaml"
    pi_files.write_text(
        sandbox.config.read_text()
        + "mqtt: {host: broker.lan, port: 8883, tls: {ca_certs: /etc/homeboard-not-here/mqtt-ca.pem}}\n"
    )
    fresh = sandbox.make_root("pi-files")
    run = sandbox.run(fresh, "--dry-run", config=pi_files)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "the config is valid" in run.stdout + run.stderr
    assert "Dry run:" in run.stdout


def test_plain_debian_gets_debian_packages_and_sway(sandbox: Sandbox) -> None:
    mini_pc = sandbox.make_root("debian", model="", archive=DEBIAN_ARCHIVE, rpi_issue=False)
    run = sandbox.run(mini_pc, "--dry-run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "plain Debian: the wall runs Debian's sway" in run.stdout
    (install,) = [line for line in run.stdout.splitlines() if "would: install" in line]
    for package in ("sway", "chromium", "wlr-randr"):
        assert f" {package}" in install
    for package in ("labwc", "wlopm", "chromium-browser", "python3-rpi"):
        assert package not in install


def test_a_target_without_either_archive_is_refused_before_any_change(sandbox: Sandbox) -> None:
    bare = sandbox.make_root("bare", model="", archive=("rsync", "curl"), rpi_issue=False)
    before = _tree_digest(bare)
    run = sandbox.run(bare)
    assert run.returncode != 0
    assert 'FAILED at step "check_target"' in run.stderr
    assert "unsupported target" in run.stderr
    assert "no labwc, no wlopm" in run.stderr
    assert "still runs the previous version" in run.stderr
    changing = [c for c in sandbox.calls(bare) if not c.startswith(("apt-cache ", "apt-get update"))]
    assert changing == []
    assert _tree_digest(bare) == before


def test_doctor_names_the_pitfalls_and_the_fixes(sandbox: Sandbox) -> None:
    root = sandbox.roots[0]
    uid = next(line.split(":")[2] for line in (root / "etc" / "passwd").open() if line.startswith("homeboard:"))
    runtime = root / "run" / "user" / uid
    runtime.mkdir(parents=True, exist_ok=True)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(runtime / "wayland-0"))
    dead.close()  # a compositor that died
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(runtime / "wayland-1"))
    live.listen(1)
    prefs = root / "home" / "homeboard" / ".config" / "chromium" / "Default" / "Preferences"
    prefs.parent.mkdir(parents=True, exist_ok=True)
    prefs.write_text('{"profile": {"exit_type": "Crashed", "exited_cleanly": false}}')
    try:
        run = sandbox.run(root, "doctor")
    finally:
        live.close()
    out = run.stdout
    assert "OK    homeboard.service is running" in out
    assert "OK    wall session: homeboard-wall.service is running" in out
    assert "OK    Wayland socket: wayland-1" in out  # the dead wayland-0 is not counted
    assert "OK    no swayidle in the wall session" in out
    assert "OK    clock synchronised" in out
    assert "OK    lingering is on for homeboard" in out
    assert re.search(r"(OK    browser: |FAIL  neither chromium nor chromium-browser)", out)
    # A Pi 5 whose environment has no rpi-lgpio (this x86 machine's pip does not install it): named, with the fix.
    assert "FAIL  no GPIO library for the PIR and buttons → run provision.sh again (it installs rpi-lgpio" in out
    assert "WARN  the browser profile says its last session crashed" in out
    assert "WARN  display.backend is none" in out
    assert run.returncode == 1
    assert "problem(s) to fix" in out


def test_every_shell_script_passes_shellcheck() -> None:
    shellcheck = require_tool("shellcheck")
    scripts = [REPO / "provisioning" / "provision.sh", REPO / "provisioning" / "remote.sh"]
    scripts += [p for p in REPO.rglob("*.sh") if ".venv" not in p.parts and p not in scripts]
    run = subprocess.run([shellcheck, "-x", *map(str, scripts)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    # The stand-ins this test puts on the sandbox's PATH are shell too.
    for name, body in STANDINS.items():
        check = subprocess.run(
            [shellcheck, "-s", "bash", "-e", "SC2086,SC1090,SC2034", "-"],
            input="#!/bin/bash\n" + body,
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, (name, check.stdout)
