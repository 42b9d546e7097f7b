"""Shared fixtures: a real server on a loopback port, configs in temp dirs, the strictness rule (nothing skips)."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.config import Config, parse_config
from tests.serverthread import ServerThread

REPO = Path(__file__).resolve().parent.parent


def require(ok: object, message: str) -> None:
    """What a test needs from the machine (root, an address, a tool). Missing: a failure that says what to install,
    in CI and on a laptop alike: a skipped test would hide the gap it was written to cover."""
    if not ok:
        pytest.fail(message)


def require_tool(name: str, *, search_path: str | None = None, hint: str = "make system-deps installs it") -> str:
    """Path of a tool the test drives for real. Missing: a failure naming the tool and how to install it.

    `search_path` (os.pathsep-separated) is searched before PATH: supervisord beside the venv's interpreter,
    Debian's /usr/bin/chromium.
    """
    path = (shutil.which(name, path=search_path) if search_path else None) or shutil.which(name)
    require(path, f"{name} is not installed ({hint})")
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_config(tmp_path: Path, **overrides: object) -> Config:
    data: dict[str, object] = {"data_dir": str(tmp_path / "var")}
    data.update(overrides)
    return parse_config(data, env={})


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def server(config: Config) -> Iterator[ServerThread]:
    srv = ServerThread(config).start()
    yield srv
    srv.stop()
