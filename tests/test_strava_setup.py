"""Strava from zero, as the README tells it: a config without a refresh token passes the check, the server says
what to do, `setup` in a terminal (as over `ssh -t` on the Pi) asks for the client secret, writes the token into
the server's data_dir (file 0600, folder 0700), and the restarted server shows the workouts. Against the local
stand-in for Strava's OAuth and API."""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from server.demo.standin import demo_urls, make_standin_app
from server.sources.strava import TOKEN_FILE_NAME
from tests.conftest import REPO, require
from tests.fakeapi import FakeApi, serve_app
from tests.procutil import ServerProcess

CLIENT_SECRET = "cl1ent-s3cret-typed-at-the-prompt"


@pytest.fixture
def standin() -> Iterator[FakeApi]:
    server = serve_app(make_standin_app())
    yield server
    server.stop()


def strava_doc(standin: FakeApi, data_dir: Path) -> dict[str, Any]:
    urls = demo_urls(standin.url())
    return {
        "data_dir": str(data_dir),
        "sources": {
            "strava": {
                "client_id": "12345",
                "client_secret": "${STRAVA_CLIENT_SECRET}",
                "base_url": urls["strava_api"],
                "token_url": urls["strava_token"],
            }
        },
    }


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env["PYTHONPATH"] = str(REPO)
    return env


# Run in the child's own session: take the pty as its controlling terminal, as sshd does for `ssh -t`, then
# become the command (a wrapper instead of preexec_fn, which is unsafe with the stand-in's thread running).
TAKE_TTY = "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execv(sys.argv[1], sys.argv[1:])"


class Terminal:
    """A command on a pseudo-terminal: read what it prints, type answers."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TAKE_TTY, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout_s: float = 20) -> str:
        deadline = time.monotonic() + timeout_s
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"waited for {text!r}; the terminal shows:\n{self.seen}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # EIO: the command exited
                    chunk = b""
                assert chunk, f"the command ended before {text!r}:\n{self.seen}"
                self.seen += chunk.decode("utf-8", "replace")
        return self.seen

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self, timeout_s: float = 30) -> int:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode("utf-8", "replace")
                except OSError:
                    break
        code = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        os.close(self.master)
        return code


def strava_topic(srv: ServerProcess, want: str, timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    topic: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(srv.url + "/api/state", timeout=2) as r:
            topic = json.load(r)["topics"].get("strava", {})
        if topic.get("status") == want:
            return topic
        time.sleep(0.2)
    raise AssertionError(f"strava never became {want}: {topic}\n{srv.log()}")


def test_from_zero_to_a_wall_showing_workouts(standin: FakeApi, tmp_path: Path) -> None:
    data_dir = tmp_path / "lib" / "homeboard"
    doc = strava_doc(standin, data_dir)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(doc))

    # On the laptop: the config is fine without any refresh token.
    env = {**base_env(), "STRAVA_CLIENT_SECRET": CLIENT_SECRET}
    checked = subprocess.run(
        [sys.executable, "-m", "server", "--check-config", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr

    # The server before setup: says what to run, shows nothing made up.
    srv = ServerProcess(tmp_path, doc, env={"STRAVA_CLIENT_SECRET": CLIENT_SECRET})
    try:
        srv.wait_ready()
        before = strava_topic(srv, "error")
        assert before["data"] is None
        assert "run python -m server.sources.strava setup" in before["error"]
    finally:
        srv.stop()

    # On the Pi, as the service's user: its secrets file is not readable, so setup asks for the client secret.
    args = [sys.executable, "-m", "server.sources.strava", "setup", "--config", str(config)]
    args += ["--data-dir", str(data_dir), "--authorize-url", standin.url("/strava/oauth/authorize")]
    term = Terminal(args, base_env())
    term.expect("Strava client secret")
    term.type(CLIENT_SECRET)
    url = term.expect("Address (or code): ").split("   ", 1)[1].split()[0]
    redirect = requests.get(url, allow_redirects=False, timeout=5)
    assert redirect.status_code == 302
    term.type(redirect.headers["Location"])
    assert term.finish() == 0, term.seen
    assert "Done for" in term.seen
    assert CLIENT_SECRET not in term.seen, "the secret was echoed"

    token = data_dir / TOKEN_FILE_NAME
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    saved = json.loads(token.read_text())
    assert saved["refresh_token"] not in term.seen

    # Restarted, the server finds the token and the wall shows the workouts.
    srv = ServerProcess(tmp_path, doc, env={"STRAVA_CLIENT_SECRET": CLIENT_SECRET})
    try:
        srv.wait_ready()
        after = strava_topic(srv, "ok")
        assert after["data"]["activities"], "the stand-in's athlete has workouts"
        assert saved["refresh_token"] not in srv.log()
    finally:
        srv.stop()


def test_without_a_terminal_an_unset_secret_is_named(standin: FakeApi, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(strava_doc(standin, tmp_path / "var")))
    proc = subprocess.run(
        [sys.executable, "-m", "server.sources.strava", "setup", "--config", str(config)],
        env=base_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(
        "error: sources.strava.client_secret: ${STRAVA_CLIENT_SECRET} is not set here"
    )
    assert not (tmp_path / "var").exists()


def test_config_errors_read_like_a_start(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("sources:\n  strava: {client_id: '1', client_secret: s, token_url: ftp://x}\nsources: {}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "server.sources.strava", "setup", "--config", str(config)],
        env=base_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == f"homeboard: config error: sources: written twice in {config} (lines 1 and 3); keep one"
    )


def test_a_loose_data_dir_is_made_private(standin: FakeApi, tmp_path: Path) -> None:
    from server.sources.strava.setup_cli import private_folder

    loose = tmp_path / "var"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    assert private_folder(loose) == loose
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


def test_root_is_sent_to_the_service_user(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "only root can write into another user's folder")
    from server.sources.strava.setup_cli import SetupError, private_folder

    theirs = tmp_path / "var"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(SetupError, match=r"belongs to uid 65534, not root: run setup as that user"):
        private_folder(theirs)
