"""The data folder (history, last-known state, tokens): created 0700 before anything else, or one clear error."""

from __future__ import annotations

import os
from pathlib import Path

from server.config import ConfigError


def prepare_data_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` (mode 0700) if missing and check this user can write in it.

    Raises ConfigError naming the folder and why (read-only file system, permission, a file in the way), so a
    start stops with one line instead of a traceback from deep inside the first writer.
    """
    p = Path(path)
    try:
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError as err:
        raise ConfigError(f"data_dir: {p} exists and is not a folder") from err
    except OSError as err:
        raise ConfigError(f"data_dir: cannot create {p}: {err.strerror or err}") from err
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"data_dir: {p} is not writable by this user (uid {os.getuid()})")
    return p
