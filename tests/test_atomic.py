"""server.core.atomic: crash-safe replace and the start-up sweep of stray temp files."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from server.core.atomic import TEMP_SUFFIX, atomic_write_bytes, sweep_temp_files


def test_writes_replaces_and_sets_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "token.json"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    atomic_write_bytes(target, b"shared", mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["token.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write_bytes(target, b"good")
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "missing-dir" / "state.json", b"x")
    (tmp_path / "blocker").mkdir()
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "blocker", b"cannot replace a directory with a file")
    assert target.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "state.json"]


def test_sweep_removes_only_our_temp_files(tmp_path: Path) -> None:
    ours = tmp_path / f".token.json.abc123{TEMP_SUFFIX}"
    ours.write_bytes(b"half written")
    young = tmp_path / f".state.json.def456{TEMP_SUFFIX}"
    young.write_bytes(b"being written right now")
    theirs = [tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / "token.json"]
    for path in theirs:
        path.write_bytes(b"keep")
    old = time.time() - 120
    os.utime(ours, (old, old))
    assert sweep_temp_files(tmp_path, min_age_s=60) == [ours.name]
    assert young.exists(), "a temp file younger than min_age_s may belong to a write in progress"
    assert sweep_temp_files(tmp_path) == [young.name]
    assert all(path.exists() for path in theirs)
    assert sweep_temp_files(tmp_path / "nope") == []
