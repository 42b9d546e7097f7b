"""Crash-safe file replacement: temp file in the same dir, fsync, os.replace, fsync(dir); and the start-up sweep."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

# Temp files are named ".<target name>.<random>.atomic.tmp" so the sweep only ever touches files this module made.
TEMP_SUFFIX = ".atomic.tmp"


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` so that after a crash or power cut it holds either the old or the new bytes.

    The steps follow Pillai et al., OSDI '14: write a temp file in the same directory (os.replace is only atomic
    within one file system), set its mode before any data lands in it (a secret is never briefly world-readable),
    fsync the file, os.replace it over the target, then fsync the directory so the rename itself is durable.
    Raises OSError (disk full, read-only, permission); the temp file is removed in that case.
    """
    target = Path(path)
    directory = target.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=directory)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, target)
    except BaseException:
        # BaseException too: a KeyboardInterrupt mid-write must not leave a temp file behind.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or unlink in `directory` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def sweep_temp_files(directory: str | os.PathLike[str], *, min_age_s: float = 0.0) -> list[str]:
    """Remove the temp files a crashed atomic_write_bytes left in `directory`; returns the names removed.

    Call at start-up, before anything writes. `min_age_s` spares temp files younger than that, for a sweep that
    runs while another thread may be mid-write (its temp file would vanish under it and os.replace would fail).
    A missing directory (or a file where it should be) is fine: nothing to sweep.
    """
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    now = time.time()
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if min_age_s and now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                continue
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        removed.append(entry.name)
    if removed:
        fsync_dir(directory)
        log.info("removed %d stray temp file(s) from %s", len(removed), directory)
    return removed
