"""Sensor-side figures on this machine: event-loop time per sampling cycle, history query time, ingest throughput.

    .venv/bin/python bench/bench_sensors.py [--cycles 200] [--ingest 2000] [--concurrency 50]

1. Event-loop CPU time per sampling cycle of 4 emulated sensors (BME280, SHT31, MCP9808, DS18B20) read through
   the real drivers by the real runner (target < 2 ms: the I/O runs in the executor, off the loop).
   Measured with time.thread_time() on the loop thread, so executor work and idle waits are not counted.
2. History query over 7 days of 1-minute readings (10 080 rows of that sensor, 4 sensors in the database),
   downsampled to ≤ 1000 points (target < 50 ms).
3. Ingest: POST /api/sensors/{id}/readings to a real `python -m server` subprocess; every 201 means the reading
   is committed (WAL, synchronous=FULL). Readings/s and latency percentiles, at a given concurrency and one by one.

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server.config import parse_config  # noqa: E402
from server.homeboard import Homeboard  # noqa: E402
from server.readings.history import History  # noqa: E402
from server.readings.reading import Reading  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# ------------------------------------------------------------------------------------------ 1. sampling


async def bench_sampling(cycles: int, data_dir: str) -> dict[str, float]:
    config = parse_config(
        {
            "data_dir": data_dir,
            "demo": True,
            "sensors": [
                {"id": "living_room", "type": "bme280", "address": 0x76},
                {"id": "bedroom", "type": "sht31", "address": 0x44},
                {"id": "hall", "type": "mcp9808", "address": 0x18},
                {"id": "outdoor", "type": "ds18b20", "device": "28-0316a2794aff"},
            ],
        },
        env={},
    )
    board = Homeboard.build(config)
    await board.history.open()
    sources = board.sensors
    runner = board.runner
    loop_ms: list[float] = []
    wall_ms: list[float] = []
    for i in range(cycles + 10):
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        await asyncio.gather(*(runner.run_once(s) for s in sources))
        cpu1, wall1 = time.thread_time(), time.perf_counter()
        if i >= 10:  # warm-up: imports, first opens, first encodes
            loop_ms.append((cpu1 - cpu0) * 1000)
            wall_ms.append((wall1 - wall0) * 1000)
    failures = sum(h.failures for h in runner.health.values())
    await board.stop()
    board.executor.shutdown(wait=True)
    return {
        "loop_ms_median": statistics.median(loop_ms),
        "loop_ms_p99": percentile(loop_ms, 99),
        "wall_ms_median": statistics.median(wall_ms),
        "failures": failures,
    }


# ------------------------------------------------------------------------------------------ 2. history query


async def bench_history(data_dir: str, repeats: int = 200) -> dict[str, float]:
    from server.config import HistoryConfig
    from server.core.timeutil import zone

    history = History(os.path.join(data_dir, "bench-history.sqlite3"), HistoryConfig(), zone("Europe/Stockholm"))
    await history.open()
    now = time.time()
    for sensor in ("living_room", "bedroom", "hall", "outdoor"):
        for i in range(7 * 1440):
            t = now - i * 60
            history.record(Reading(sensor, t, 20 + (i % 50) / 10, 40.0, 1010.0))
    await history.store(Reading("living_room", now + 0.001, 21.0))
    timings = []
    points = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = await history.query("living_room", now - 7 * 86400, now + 1)
        timings.append((time.perf_counter() - t0) * 1000)
        points = len(result)
    day = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        await history.query("living_room", now - 86400, now + 1)
        day.append((time.perf_counter() - t0) * 1000)
    await history.close()
    return {
        "query_7d_ms_median": statistics.median(timings),
        "query_7d_ms_p99": percentile(timings, 99),
        "query_7d_points": points,
        "query_24h_ms_median": statistics.median(day),
    }


# ------------------------------------------------------------------------------------------ 3. ingest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: str) -> tuple[subprocess.Popen[bytes], int]:
    import yaml

    port = free_port()
    config = Path(tmp) / "config.yaml"
    sensors = [{"id": f"dev{i}", "token": f"token-{i}"} for i in range(10)]
    config.write_text(yaml.safe_dump({"remote_sensors": sensors, "log_level": "warning"}))
    args = [sys.executable, "-m", "server", "--config", str(config), "--port", str(port), "--data-dir", f"{tmp}/var"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the server did not start")


async def bench_ingest(port: int, total: int, concurrency: int, offset: int) -> dict[str, float]:
    import tornado.httpclient

    client = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=concurrency)
    base = time.time() - 3600
    latencies: list[float] = []
    codes: dict[int, int] = {}
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        n = offset + i
        body = json.dumps({"temperature_c": 20.5, "measured_at": _iso_ms(base + n / 1000)})  # unique per reading
        async with semaphore:
            t0 = time.perf_counter()
            response = await client.fetch(
                f"http://127.0.0.1:{port}/api/sensors/dev{n % 10}/readings",
                method="POST",
                body=body,
                headers={"Authorization": f"Bearer token-{n % 10}"},
                raise_error=False,
                request_timeout=60,
            )
            latencies.append((time.perf_counter() - t0) * 1000)
        codes[response.code] = codes.get(response.code, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = time.perf_counter() - t0
    client.close()
    return {
        "readings_per_s": codes.get(201, 0) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "stored": codes.get(201, 0),
        "errors": total - codes.get(201, 0),
    }


def _iso_ms(t: float) -> str:
    ms = round(t * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--ingest", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sensors-") as tmp:
        sampling = asyncio.run(bench_sampling(args.cycles, os.path.join(tmp, "sampling")))
        history = asyncio.run(bench_history(tmp))
        proc, port = start_server(tmp)
        try:
            concurrent = asyncio.run(bench_ingest(port, args.ingest, args.concurrency, 0))
            serial = asyncio.run(bench_ingest(port, min(500, args.ingest), 1, args.ingest))
        finally:
            proc.terminate()
            proc.wait(10)

    rows = [
        ("sampling: loop CPU per cycle of 4 sensors, median", f"{sampling['loop_ms_median']:.3f} ms", "< 2 ms"),
        ("sampling: loop CPU per cycle, p99", f"{sampling['loop_ms_p99']:.3f} ms", "< 2 ms"),
        ("sampling: wall time per cycle (I/O incl.), median", f"{sampling['wall_ms_median']:.1f} ms", "-"),
        ("history: 7 days of 1-min readings, median", f"{history['query_7d_ms_median']:.1f} ms", "< 50 ms"),
        ("history: 7 days, p99", f"{history['query_7d_ms_p99']:.1f} ms", "< 50 ms"),
        ("history: 7 days, points returned", f"{history['query_7d_points']}", "≤ 1000"),
        ("history: 24 h, median", f"{history['query_24h_ms_median']:.1f} ms", "-"),
        (f"ingest ×{args.concurrency} concurrent: stored durably", f"{concurrent['readings_per_s']:.0f} /s", "-"),
        (
            f"ingest ×{args.concurrency}: latency p50 / p99",
            f"{concurrent['p50_ms']:.1f} / {concurrent['p99_ms']:.1f} ms",
            "-",
        ),
        ("ingest one by one: stored durably", f"{serial['readings_per_s']:.0f} /s", "-"),
        ("ingest one by one: latency p50 / p99", f"{serial['p50_ms']:.2f} / {serial['p99_ms']:.2f} ms", "< 50 ms dev"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>18}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>18}  {target}")
    if sampling["failures"] or concurrent["errors"] or serial["errors"]:
        print(
            f"WARNING: {sampling['failures']} sensor failures, {concurrent['errors'] + serial['errors']} ingest errors"
        )
    print(
        json.dumps(
            {
                "bench": "sensors",
                "sampling_loop_ms_median": round(sampling["loop_ms_median"], 3),
                "sampling_loop_ms_p99": round(sampling["loop_ms_p99"], 3),
                "history_query_7d_ms_median": round(history["query_7d_ms_median"], 2),
                "history_query_7d_ms_p99": round(history["query_7d_ms_p99"], 2),
                "ingest_concurrency": args.concurrency,
                "ingest_readings_per_s": round(concurrent["readings_per_s"]),
                "ingest_p99_ms": round(concurrent["p99_ms"], 2),
                "ingest_serial_readings_per_s": round(serial["readings_per_s"]),
                "ingest_serial_p99_ms": round(serial["p99_ms"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
