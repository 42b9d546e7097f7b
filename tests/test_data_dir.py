"""A data_dir that cannot be created or written stops a start with one line naming it, exit 2."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from server.config import ConfigError
from server.core.datadir import prepare_data_dir
from tests.conftest import REPO, require, require_tool


def start(data_dir: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("timezone: UTC\n")
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "-m", "server", "--config", str(cfg), "--data-dir", data_dir, "--port", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_created_private(tmp_path: Path) -> None:
    target = tmp_path / "a" / "var"
    assert prepare_data_dir(target) == target
    assert stat.S_IMODE(target.stat().st_mode) & 0o077 == 0
    assert prepare_data_dir(target) == target  # again: already there is fine


def test_a_file_in_the_way(tmp_path: Path) -> None:
    blocker = tmp_path / "var"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=rf"^data_dir: {blocker} exists and is not a folder$"):
        prepare_data_dir(blocker)
    with pytest.raises(ConfigError, match=rf"^data_dir: cannot create {blocker}/sub: Not a directory$"):
        prepare_data_dir(blocker / "sub")


def test_start_stops_with_one_line(tmp_path: Path) -> None:
    # /sys refuses new folders to everyone, root included: a stand-in for a read-only file system or a folder
    # owned by someone else.
    target = "/sys/homeboard-test/var"
    proc = start(target, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    # sysfs says EPERM to root, EACCES to others; a container may mount /sys read-only (EROFS).
    reasons = ("Operation not permitted", "Permission denied", "Read-only file system")
    assert lines[0] in [f"homeboard: config error: data_dir: cannot create {target}: {r}" for r in reasons]
    assert "Traceback" not in proc.stderr


def test_read_only_file_system(tmp_path: Path) -> None:
    """The case from the field: data_dir on a file system mounted read-only (errno 30), in a mount namespace."""
    unshare = require_tool("unshare", hint="util-linux provides it")
    ns = [unshare, "--user", "--map-root-user", "--mount", "--propagation", "private"]
    probe = subprocess.run([*ns, "true"], capture_output=True, text=True, timeout=10)
    require(probe.returncode == 0, f"cannot make a mount namespace here: {probe.stderr.strip()}")
    ro = tmp_path / "ro"
    ro.mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("timezone: UTC\n")
    script = (
        f'mount --bind "{ro}" "{ro}" && mount -o remount,bind,ro "{ro}" && '
        f'exec "{sys.executable}" -m server --config "{cfg}" --data-dir "{ro}/var" --port 0'
    )
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    proc = subprocess.run([*ns, "sh", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"homeboard: config error: data_dir: cannot create {ro}/var: Read-only file system"
