"""make bench: Homeboard's figures on this machine, each measured on the real `python -m server` through its
public routes (no bench-only server, no hooks).

  post   LAN sensor POST /api/sensors/{id}/readings → WebSocket frame: p50 / p99 / max and lost frames, with
         1000 WebSocket clients connected and 20 readings/s from 10 devices (bench/ws_clients.py, another process).
         The frame's time is when it reached the client's socket (the kernel's receive time stamp); "read" is
         when the one client process got to it, behind the other 999 clients' frames (a thousand browsers
         would read in parallel, so that figure is an upper bound that includes the bench's own queue)
  mqtt   MQTT publish (QoS 1, a real Mosquitto on a loopback port) → WebSocket frame, same load
  rss    idle RSS of the demo server (`python -m server --demo`), 15 s after start; under qemu-user (an emulated
         arm64 machine) the server's own memory and the emulator's apart (rss_split_kb)
  state  GET /api/state: requests/s and CPU µs per request, server pinned to one core and wrk to the other;
         with --compare-url/--compare-pid, the same for another server, in paired runs A B B A

Every figure is measured --runs times (default 3) and quoted as median and min–max. This machine may be shared:
prefer the CPU time per request and the paired ratio to wall-clock throughput.

  .venv/bin/python bench/run.py [--only post,mqtt,rss,state] [--runs 3]
  .venv/bin/python bench/run.py --only state --save-state /tmp/state.json     # the document, for another server
  .venv/bin/python bench/run.py --only state --compare-url http://127.0.0.1:9292/api/state --compare-pid PID
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
FIGURES = ("post", "mqtt", "rss", "state")
SENSOR_ID = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# Under qemu-user (an arm64 machine emulated on x86-64, as in tests/test_provision_arm64.py) one host process
# holds the program and its emulator. The emulator's own mappings (its binary, its heap, the translated code,
# its allocations) are placed by the host kernel high in the address space; the program's are placed by qemu at
# the guest's own addresses (its binary where it was linked, libraries and anonymous memory from 0x55_0000_0000),
# far below 1 TiB. Natively nothing is the emulator's.
GUEST_TOP = 1 << 40


def rss_split_kb(pid: int) -> tuple[int, int]:
    """(the program's, the emulator's) resident kB of a process, from /proc/PID/smaps."""
    emulated = False
    parts = [0, 0]
    start = 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            start = int(fields[0].split("-", 1)[0], 16)
            emulated |= len(fields) > 5 and Path(fields[5]).name.startswith("qemu-")
        elif fields and fields[0] == "Rss:":
            parts[start >= GUEST_TOP] += int(fields[1])
    return (parts[0], parts[1]) if emulated else (parts[0] + parts[1], 0)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_http(url: str, timeout_s: float = 30, ready: Callable[[bytes], bool] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if ready is None or ready(r.read()):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout_s:.0f} s")


def raise_fd_limit() -> None:
    """1000 WebSocket clients need more than the usual 1024 descriptors, in the server and the client process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Server:
    """`python -m server` with a config written for the run, in its own data directory."""

    def __init__(self, tmp: str, config: dict[str, Any], demo: bool = False, env: dict[str, str] | None = None):
        self.port = free_port()
        data_dir = Path(tmp) / f"data-{self.port}"
        data_dir.mkdir()
        path = data_dir / "config.yaml"
        path.write_text(yaml.safe_dump({"data_dir": str(data_dir), "log_level": "warning", **config}))
        cmd = [PY, "-m", "server", "--config", str(path), "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*cmd, "--demo"] if demo else cmd,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def run_clients(port: int, server_pid: int, args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    cmd = [
        PY,
        str(REPO / "bench/ws_clients.py"),
        "--port",
        str(port),
        "--clients",
        str(args.clients),
        "--rate",
        str(args.rate),
        "--count",
        str(round(args.rate * args.seconds)),
        "--sensors",
        str(args.sensors),
        *extra,
    ]
    # stderr to a file, not a pipe: a chatty stderr can never block the clients
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True, cwd=REPO)
        try:
            connected = proc.stdout.readline()  # {"connected": N}: from here on the readings flow
            if not connected:
                proc.wait(10)
                errors.seek(0)
                raise RuntimeError(f"ws_clients failed: {errors.read()[-800:]}")
            server0, t0 = cpu_s(server_pid), time.monotonic()
            client0 = cpu_s(proc.pid)
            last = proc.stdout.readline()
            wall_s = time.monotonic() - t0
            server_cpu = cpu_s(server_pid) - server0
            client_cpu = cpu_s(proc.pid) - client0 if proc.poll() is None else float("nan")
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errors.seek(0)
        if not last.startswith("{"):
            raise RuntimeError(f"ws_clients failed ({proc.returncode}): {errors.read()[-800:]}")
    result = json.loads(last)
    # Load-independent: the server's CPU per reading (a POST or MQTT message and its frame to every client).
    # If the client process used most of a core, its own lag is in the latencies.
    return {
        **result,
        "server_cpu_ms_per_reading": round(1000 * server_cpu / max(1, result["sent"]), 2),
        "server_cpu_pct": round(100 * server_cpu / wall_s, 1),
        "client_cpu_pct": round(100 * client_cpu / wall_s, 1),
    }


# ---------------------------------------------------------------- (a) POST → frame


def bench_post(tmp: str, args: argparse.Namespace) -> dict[str, Any]:
    token = secrets.token_hex(24)
    server = Server(
        tmp,
        {
            "remote_sensors": [
                {"id": f"{SENSOR_ID}{i}", "name": f"Bench {i}", "token": "${BENCH_TOKEN}"} for i in range(args.sensors)
            ]
        },
        env={"BENCH_TOKEN": token},
    )
    try:
        wait_http(server.url("/healthz"))
        return run_clients(
            server.port, server.pid, args, ["--drive", "post", "--sensor", SENSOR_ID, f"--token={token}"]
        )
    finally:
        server.stop()


# ---------------------------------------------------------------- (b) MQTT → frame


def bench_mqtt(tmp: str, args: argparse.Namespace) -> dict[str, Any]:
    from bench_mqtt import start_broker  # bench/ is on sys.path: this file runs as a script

    broker_dir = Path(tmp) / f"broker-{time.monotonic_ns()}"
    broker_dir.mkdir()
    broker, broker_port = start_broker(str(broker_dir))
    topic = f"zigbee2mqtt/{SENSOR_ID}"  # device i publishes to this + i
    server = Server(
        tmp,
        {
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker_port,
                "name": "bench",
                "sensors": [
                    {"id": f"{SENSOR_ID}{i}", "preset": "zigbee2mqtt", "topic": f"{topic}{i}"}
                    for i in range(args.sensors)
                ],
            }
        },
    )
    try:
        wait_http(server.url("/healthz"), ready=lambda body: bool(json.loads(body).get("mqtt", {}).get("connected")))
        return run_clients(
            server.port, server.pid, args, ["--drive", "mqtt", "--broker-port", str(broker_port), "--topic", topic]
        )
    finally:
        server.stop()
        broker.terminate()
        broker.wait(10)


# ---------------------------------------------------------------- (c) idle RSS


def bench_rss(tmp: str, args: argparse.Namespace) -> dict[str, Any]:
    server = Server(tmp, {}, demo=True)
    try:
        wait_http(server.url("/healthz"))
        time.sleep(15)  # every demo source has published; the allocator has settled
        program_kb, emulator_kb = rss_split_kb(server.pid)
        figures = {"rss_mb": round(rss_kb(server.pid) / 1024, 1)}
        if emulator_kb:  # the server's own part is the figure that counts; the whole process is shown beside it
            figures |= {"rss_program_mb": round(program_kb / 1024, 1), "rss_emulator_mb": round(emulator_kb / 1024, 1)}
        return figures
    finally:
        server.stop()


# ---------------------------------------------------------------- (d) GET /api/state


def wrk_run(url: str, pid: int, seconds: float, load_cpu: int) -> dict[str, float]:
    """One wrk run pinned to load_cpu; the server's CPU over the run divided by the requests it answered."""
    c0 = cpu_s(pid)
    out = subprocess.run(
        ["taskset", "-c", str(load_cpu), "wrk", "-t1", "-c10", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu_used = cpu_s(pid) - c0
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses")
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99_ms = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "cpu_us_per_request": 1e6 * cpu_used / max(1, requests),
        "p99_ms": p99_ms,
    }


def pin(pid: int, cpu: int) -> None:
    """The process and all its threads on one core."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def bench_state(tmp: str, args: argparse.Namespace) -> dict[str, Any]:
    if not shutil.which("wrk") or not shutil.which("taskset"):
        raise RuntimeError("the state figure needs wrk and taskset (Debian: wrk, util-linux)")
    server = Server(tmp, {}, demo=True)
    try:
        wait_http(server.url("/healthz"))
        time.sleep(5)  # the demo sources have published: the document has its full size
        pin(server.pid, args.server_cpu)
        ours_url = server.url("/api/state")
        document = urllib.request.urlopen(ours_url).read()
        if args.save_state:
            Path(args.save_state).write_bytes(document)
        result: dict[str, Any] = {"document_bytes": len(document)}
        targets = [("homeboard", ours_url, server.pid)]
        if args.compare_url:
            other = urllib.request.urlopen(args.compare_url).read()
            result["compare_document_bytes"] = len(other)
            pin(args.compare_pid, args.server_cpu)
            targets.append(("compare", args.compare_url, args.compare_pid))
        for _name, url, pid in targets:  # warm-up, not counted
            wrk_run(url, pid, 1, args.load_cpu)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in targets}
        ratios: list[dict[str, float]] = []
        for _ in range(args.runs):
            # A B B A: a drift in the machine's load hits both servers alike within a pair.
            order = targets + targets[::-1] if len(targets) == 2 else targets
            pair: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in targets}
            for name, url, pid in order:
                r = wrk_run(url, pid, args.state_seconds, args.load_cpu)
                runs[name].append(r)
                pair[name].append(r)
            if len(targets) == 2:
                ours, theirs = pair["homeboard"], pair["compare"]
                ratios.append(
                    {
                        "rps": sum(r["rps"] for r in ours) / sum(r["rps"] for r in theirs),
                        "cpu_per_request": sum(r["cpu_us_per_request"] for r in ours)
                        / sum(r["cpu_us_per_request"] for r in theirs),
                    }
                )
        for name, rs in runs.items():
            result[name] = {key: summary([r[key] for r in rs]) for key in ("rps", "cpu_us_per_request", "p99_ms")}
        if ratios:
            result["ratio_rps_homeboard_over_compare"] = summary([r["rps"] for r in ratios])
            result["ratio_cpu_per_request_homeboard_over_compare"] = summary([r["cpu_per_request"] for r in ratios])
        return result
    finally:
        server.stop()


# ---------------------------------------------------------------- report


def fmt(s: dict[str, float], unit: str = "") -> str:
    return f"{s['median']:g}{unit} ({s['min']:g}–{s['max']:g})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated subset of {', '.join(FIGURES)}")
    p.add_argument("--runs", type=int, default=3, help="runs per figure (median and min–max are quoted)")
    p.add_argument("--clients", type=int, default=1000, help="post/mqtt: WebSocket clients")
    p.add_argument("--rate", type=float, default=20, help="post/mqtt: readings per second, all devices together")
    p.add_argument("--sensors", type=int, default=10, help="post/mqtt: devices (each sends one reading at a time)")
    p.add_argument("--seconds", type=float, default=20, help="post/mqtt: length of one run")
    p.add_argument("--state-seconds", type=float, default=5, help="state: length of one wrk run")
    p.add_argument("--server-cpu", type=int, default=0, help="state: the core the server(s) are pinned to")
    p.add_argument("--load-cpu", type=int, default=1, help="state: the core wrk is pinned to")
    p.add_argument("--save-state", help="state: write Homeboard's /api/state document here (serve it elsewhere)")
    p.add_argument("--compare-url", help="state: another server's URL serving the same document")
    p.add_argument("--compare-pid", type=int, help="state: that server's PID (single process), for its CPU time")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "latest.json"), help="where the JSON goes")
    args = p.parse_args()
    only = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = set(only) - set(FIGURES)
    if unknown:
        p.error(f"--only: unknown figure(s) {', '.join(sorted(unknown))}; known: {', '.join(FIGURES)}")
    if bool(args.compare_url) != bool(args.compare_pid):
        p.error("--compare-url and --compare-pid go together (the PID is how its CPU time is read)")
    raise_fd_limit()

    results: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_avg_at_start": os.getloadavg()[0],
    }
    latency_keys = (
        "p50_ms",
        "p99_ms",
        "max_ms",
        "read_p50_ms",
        "read_p99_ms",
        "lost",
        "server_cpu_ms_per_reading",
        "client_cpu_pct",
    )
    with tempfile.TemporaryDirectory(prefix="homeboard-bench-") as tmp:
        for name, fn in (("post", bench_post), ("mqtt", bench_mqtt), ("rss", bench_rss)):
            if name not in only:
                continue
            runs = [fn(tmp, args) for _ in range(args.runs)]
            keys = latency_keys if name != "rss" else tuple(runs[0])
            results[name] = {"runs": runs, **{k: summary([r[k] for r in runs]) for k in keys}}
        if "state" in only:
            results["state"] = bench_state(tmp, args)

    print(f"\nHomeboard bench — {results['machine']} — {results['date']} — load {results['load_avg_at_start']:.1f}")
    print(f"median (min–max) of {args.runs} runs")
    load = f"{args.clients} clients, {args.rate:g}/s"
    rows: list[tuple[str, str, str]] = []
    for name, label in (("post", "POST → frame"), ("mqtt", "MQTT publish → frame")):
        if name in results:
            r = results[name]
            rows += [
                (f"{label}, {load}: p50 (ms)", fmt(r["p50_ms"]), ""),
                (f"{label}, {load}: p99 (ms)", fmt(r["p99_ms"]), "≤ 50"),
                (f"{label}, {load}: max (ms)", fmt(r["max_ms"]), ""),
                (f"{label}, {load}: lost frames", fmt(r["lost"]), "0"),
                (f"{label}, read by the bench client: p50 (ms)", fmt(r["read_p50_ms"]), ""),
                (f"{label}, read by the bench client: p99 (ms)", fmt(r["read_p99_ms"]), ""),
                (f"{label}: server CPU per reading (ms)", fmt(r["server_cpu_ms_per_reading"]), ""),
                (f"{label}: bench client process CPU (%)", fmt(r["client_cpu_pct"]), "< 100"),
            ]
    if "rss" in results and "rss_program_mb" in results["rss"]:
        r = results["rss"]
        rows += [
            ("idle RSS, demo server, without the emulator (MB)", fmt(r["rss_program_mb"]), "≤ 40"),
            ("idle RSS, the emulator itself (qemu-user, MB)", fmt(r["rss_emulator_mb"]), ""),
            ("idle RSS, the whole process (MB)", fmt(r["rss_mb"]), ""),
        ]
    elif "rss" in results:
        rows.append(("idle RSS, demo server (MB)", fmt(results["rss"]["rss_mb"]), "≤ 40"))
    if "state" in results:
        s = results["state"]
        rows += [
            (f"GET /api/state ({s['document_bytes']} B): req/s, 1 core", fmt(s["homeboard"]["rps"]), ""),
            ("GET /api/state: CPU µs per request", fmt(s["homeboard"]["cpu_us_per_request"]), ""),
        ]
        if "compare" in s:
            rows += [
                (f"compare ({s['compare_document_bytes']} B): req/s, 1 core", fmt(s["compare"]["rps"]), ""),
                ("compare: CPU µs per request", fmt(s["compare"]["cpu_us_per_request"]), ""),
                ("paired ratio req/s, Homeboard ÷ compare", fmt(s["ratio_rps_homeboard_over_compare"]), "≥ 1"),
                (
                    "paired ratio CPU/request, Homeboard ÷ compare",
                    fmt(s["ratio_cpu_per_request_homeboard_over_compare"]),
                    "≤ 1",
                ),
            ]
    width = max((len(r[0]) for r in rows), default=10)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>28}   {target}")
    print(json.dumps(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
