"""make bench: figures on this machine, as a table and one JSON line.

- GET /api/state requests/s and p99 (wrk, against the demo server)
- WebSocket delivery latency p50/p99/max and lost messages, 100 and 1000 clients at 20 updates/s
- server RSS: idle in demo mode, and with 1000 clients connected
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def demo_server(tmp: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [PY, "-m", "server", "--demo", "--port", str(port), "--data-dir", tmp, "--config", str(REPO / "config.yaml")],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc, port


def bench_state(port: int) -> dict:
    wrk = shutil.which("wrk")
    url = f"http://127.0.0.1:{port}/api/state"
    if wrk:
        out = subprocess.run(
            [wrk, "-t1", "-c20", "-d10s", "--latency", url], capture_output=True, text=True, check=True
        ).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
        scale = {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
        return {"tool": "wrk -t1 -c20 -d10s", "rps": round(rps), "p99_ms": round(float(m.group(1)) * scale, 2)}
    # Fallback without wrk: sequential keep-alive requests (a lower bound on throughput).
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port)
    lat = []
    t_end = time.monotonic() + 5
    while time.monotonic() < t_end:
        t0 = time.perf_counter()
        conn.request("GET", "/api/state")
        conn.getresponse().read()
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    return {"tool": "python keep-alive loop", "rps": round(len(lat) / 5), "p99_ms": round(lat[int(len(lat) * 0.99)], 2)}


def bench_fanout(clients: int, rate: float = 20, count: int = 200) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [PY, str(REPO / "bench/fanout_server.py"), "--port", str(port), "--data-dir", tmp],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            rss_before = rss_kb(server.pid)
            proc = subprocess.Popen(
                [
                    PY,
                    str(REPO / "bench/ws_clients.py"),
                    "--port",
                    str(port),
                    "--clients",
                    str(clients),
                    "--rate",
                    str(rate),
                    "--count",
                    str(count),
                    "--start",
                ],
                stdout=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            first = json.loads(proc.stdout.readline())
            time.sleep(0.3)
            rss_connected = rss_kb(server.pid)
            cpu0 = cpu_s(server.pid)
            result = json.loads(proc.stdout.readline())
            cpu_used = cpu_s(server.pid) - cpu0
            proc.wait(30)
            time.sleep(0.5)
            rss_after = rss_kb(server.pid)
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            evicted = int(re.search(r"^homeboard_clients_evicted_total (\d+)", metrics, re.M).group(1))
            result.update(
                connected=first["connected"],
                rss_growth_mb=round((rss_after - rss_connected) / 1024, 2),
                evicted=evicted,
                rate_per_s=rate,
                server_rss_mb=round(rss_connected / 1024, 1),
                per_connection_kb=round((rss_connected - rss_before) / max(1, clients), 1),
                server_cpu_ms_per_broadcast=round(cpu_used * 1000 / count, 2),
            )
            return result
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(10)


def cpu_at_rest_with_clients(pid: int, port: int, clients: int, duration_s: float) -> float:
    """CPU of the demo server over `duration_s` with `clients` idle WebSocket clients connected."""
    holder = subprocess.Popen(
        [
            PY,
            str(REPO / "bench/ws_clients.py"),
            "--port",
            str(port),
            "--clients",
            str(clients),
            "--count",
            "0",
            "--hold",
            str(duration_s + 5),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    json.loads(holder.stdout.readline())  # connected
    c0, t0 = cpu_s(pid), time.monotonic()
    time.sleep(duration_s)
    pct = 100 * (cpu_s(pid) - c0) / (time.monotonic() - t0)
    holder.terminate()
    holder.wait(10)
    return round(pct, 2)


def bench_ingest() -> dict:
    """Readings/s stored durably through POST /api/sensors/{id}/readings (bench/bench_sensors.py measures it)."""
    script = REPO / "bench" / "bench_sensors.py"
    if not script.exists():
        return {"error": "bench/bench_sensors.py missing"}
    out = subprocess.run(
        [PY, str(script)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=600,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"error": out.stderr[-500:]}
    figures = json.loads(lines[-1])
    return {k: v for k, v in figures.items() if k.startswith("ingest")}


def main() -> int:
    results: dict = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = demo_server(tmp)
        try:
            time.sleep(15)  # let every demo source publish and the allocator settle
            results["idle_rss_mb_demo"] = round(rss_kb(proc.pid) / 1024, 1)
            state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state").read())
            results["demo_topics_ok"] = sorted(t for t, s in state["topics"].items() if s["status"] == "ok")
            c0, t0 = cpu_s(proc.pid), time.monotonic()
            time.sleep(10)
            results["idle_cpu_pct_demo"] = round(100 * (cpu_s(proc.pid) - c0) / (time.monotonic() - t0), 2)
            results["rest_cpu_pct_10_clients_60s"] = cpu_at_rest_with_clients(proc.pid, port, 10, 60)
            results["api_state"] = bench_state(port)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    for n in (100, 1000):
        results[f"ws_{n}"] = bench_fanout(n)
    # Memory after 100,000 updates to 4 clients at 1,000/s: growth means a leak.
    results["ws_100k"] = bench_fanout(4, rate=1000, count=100_000)
    results["ingest"] = bench_ingest()

    print(f"\nHomeboard bench — {results['machine']} — {results['date']}")
    print(f"{'figure':48} {'value':>14}   target")
    rows = [
        ("idle RSS, demo mode (MB)", results["idle_rss_mb_demo"], "≤ 40"),
        ("idle CPU, demo mode (% of a core, 10 s)", results["idle_cpu_pct_demo"], "< 1"),
        (f"GET /api/state req/s ({results['api_state']['tool']})", results["api_state"]["rps"], ""),
        ("GET /api/state p99 (ms)", results["api_state"]["p99_ms"], ""),
    ]
    for n in (100, 1000):
        r = results[f"ws_{n}"]
        rows += [
            (
                f"WS {n} clients @20/s: p50 / p99 / max (ms)",
                f"{r['p50_ms']} / {r['p99_ms']} / {r['max_ms']}",
                "p99 ≤ 50" if n == 1000 else "",
            ),
            (f"WS {n} clients: lost messages", r["lost"], "0"),
            (f"WS {n} clients: server RSS (MB)", r["server_rss_mb"], ""),
            (f"WS {n} clients: RSS per connection (KB)", r["per_connection_kb"], ""),
            (f"WS {n} clients: server CPU per broadcast (ms)", r["server_cpu_ms_per_broadcast"], ""),
        ]
    r = results["ws_100k"]
    rows += [
        ("RSS growth after 100,000 updates, 4 clients (MB)", r["rss_growth_mb"], "< 2"),
        ("100,000 updates: lost messages", r["lost"], "0"),
        ("CPU at rest, 10 clients, 60 s (% of a core)", results["rest_cpu_pct_10_clients_60s"], "< 1"),
        ("ingest, 50 concurrent: readings/s stored durably", results["ingest"].get("ingest_readings_per_s"), ""),
        ("ingest, 50 concurrent: p99 (ms)", results["ingest"].get("ingest_p99_ms"), ""),
    ]
    for name, value, target in rows:
        print(f"{name:48} {value!s:>14}   {target}")
    print(json.dumps(results))
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
