"""A slow or full SD card under a real server: strace injects delays and ENOSPC into its syscalls.

The event loop must not wait for the disk (the database writer is a thread of its own), /healthz must say
what is wrong, and writes must resume when the disk does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.conftest import REPO, free_port, require_tool

TOKEN = "slow-disk-token"


def start_under_strace(tmp_path: Path, inject: str) -> tuple[subprocess.Popen, int, Path]:
    strace = require_tool("strace")
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "var"), "remote_sensors": [{"id": "b", "token": TOKEN}]}))
    log = tmp_path / "server.log"
    proc = subprocess.Popen(
        [
            strace,
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            f"inject={inject}",
            sys.executable,
            "-m",
            "server",
            "--config",
            str(cfg),
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return proc, port, log
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(log.read_text())


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server itself (strace's child); strace exits when it does."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    for pid in children:
        subprocess.run(["kill", "-TERM", pid], check=False)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def post(port: int, value: float, timeout_s: float = 10) -> tuple[int, float]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/sensors/b/readings",
        data=json.dumps({"temperature_c": value}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.status, time.monotonic() - t0
    except urllib.error.HTTPError as err:
        return err.code, time.monotonic() - t0


def test_slow_fsync_does_not_stall_the_loop(tmp_path: Path) -> None:
    # Every fsync/fdatasync takes 0.5 s: an SD card having a bad day.
    proc, port, _log = start_under_strace(tmp_path, "fsync,fdatasync:delay_enter=500000")
    try:
        # Opening the database fsyncs several times (0.5 s each here): wait for that before timing anything.
        assert post(port, 9.5, timeout_s=30)[0] == 201
        results: list[tuple[int, float]] = []
        posters = [threading.Thread(target=lambda i=i: results.append(post(port, 10 + i))) for i in range(10)]
        for t in posters:
            t.start()
        lags = []
        end = time.monotonic() + 3
        while time.monotonic() < end:
            t0 = time.monotonic()
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=5).read()
            lags.append(time.monotonic() - t0)
            time.sleep(0.05)
        for t in posters:
            t.join(20)
        assert [s for s, _ in results] == [201] * 10
        assert max(d for _, d in results) < 2.5, results
        lags.sort()
        assert lags[int(len(lags) * 0.99)] < 0.1, f"the loop waited for the disk: {lags[-3:]}"
    finally:
        stop(proc)


def test_disk_full_degrades_health_and_serving_goes_on(tmp_path: Path) -> None:
    # After start-up, every write to a file fails with ENOSPC (sockets use sendto/writev, so serving goes on).
    proc, port, log = start_under_strace(tmp_path, "pwrite64:error=ENOSPC:when=3+")
    try:
        status, _ = post(port, 12.5, timeout_s=15)
        assert status in (201, 503), status  # stored in memory for later, or refused: never a 500 or a hang
        deadline = time.monotonic() + 10
        health = {}
        while time.monotonic() < deadline:
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read())
            if health["status"] == "degraded":
                break
            time.sleep(0.3)
        assert health["status"] == "degraded", health
        assert "history" in health
        assert health["history"]["status"] != "ok"
        state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=2).read())
        assert "topics" in state
        assert proc.poll() is None, "the server is still up"
    finally:
        stop(proc)
    assert "Traceback" not in log.read_text()
