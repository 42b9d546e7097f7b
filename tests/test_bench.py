"""`make bench` still runs on a fresh machine: its latency figures, small (20 clients, 2 s), end to end.

The figures themselves are for a quiet machine and are quoted in the README; this checks that the bench
drives the real `python -m server` through a POST and an MQTT publish and accounts for every frame."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.mqttbroker import mosquitto_path

CLIENTS = 20
SECONDS = 2
RATE = 20
WARMUP = 10  # bench/ws_clients.py: the first readings are sent and not counted


def test_bench_measures_post_and_mqtt_to_every_client(tmp_path: Path) -> None:
    mosquitto_path()  # missing Mosquitto: a failure naming the fix
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "run.py"),
            "--only=post,mqtt",
            "--runs=1",
            f"--clients={CLIENTS}",
            f"--seconds={SECONDS}",
            f"--rate={RATE}",
            f"--out={out}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(out.read_text())
    for figure in ("post", "mqtt"):
        (one,) = results[figure]["runs"]
        readings = RATE * SECONDS
        assert one["clients"] == CLIENTS, one
        assert one["disconnected"] == 0, one
        assert one["sent"] == one["accepted"] == readings, one
        assert one["lost"] == 0, one
        assert one["frames"] == CLIENTS * (readings - WARMUP), one
        assert one["unstamped_reads"] == 0, one  # every read carried the kernel's receive time
        # The socket's time stamp comes before this process reads the frame, and both after the send.
        assert 0 < one["p50_ms"] <= one["read_p50_ms"], one
        assert all(math.isfinite(one[k]) for k in ("p99_ms", "max_ms", "read_p99_ms")), one
        assert one["server_cpu_ms_per_reading"] > 0, one
    assert "MQTT publish → frame" in run.stdout
