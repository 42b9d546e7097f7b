"""MQTT end-to-end latency on this machine: from a device's MQTT publish to the WebSocket frame a page receives.

    .venv/bin/python bench/bench_mqtt.py [--messages 600] [--rate 20] [--sensors 10]

A real Mosquitto on a loopback port and real `python -m server` processes:
1. device → Homeboard → page: Zigbee2MQTT-shaped messages (QoS 1) from several sensors; each one is parsed,
   validated, stored durably in the history (SQLite, synchronous=FULL), published, and acknowledged. The clock
   stops when the page's WebSocket client has the update frame carrying that reading.
2. device → leader → broker → follower → page: the same readings, taken by a leader and shown by a follower
   (two hops through the broker, two servers).
Each reading is told apart by its humidity value. The first 10 of each run are a warm-up, not counted.
Prints a table, then one JSON line. Target: p99 ≤ 100 ms.
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
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from tornado.websocket import websocket_connect

REPO = Path(__file__).resolve().parent.parent
MOSQUITTO = "/usr/sbin/mosquitto"
WARMUP = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def wait_port(port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_broker(tmp: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = Path(tmp) / "mosquitto.conf"
    text = f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {tmp}/\n"
    if os.geteuid() == 0:
        text += "user root\n"  # as root it would switch to user "mosquitto", who cannot write here
    conf.write_text(text)
    exe = MOSQUITTO if os.access(MOSQUITTO, os.X_OK) else "mosquitto"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def start_server(tmp: str, name: str, mqtt: dict[str, Any]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    data_dir = Path(tmp) / name
    data_dir.mkdir()
    config = data_dir / "config.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data_dir), "log_level": "warning", "mqtt": mqtt}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--config", str(config), "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if json.load(r).get("mqtt", {}).get("connected"):
                    return proc, port
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server {name} did not connect to the broker")


async def measure(ws_port: int, broker_port: int, messages: int, rate: float, sensors: int) -> dict[str, Any]:
    """Publish `messages` readings at `rate`/s round-robin over `sensors` topics; time each to its WS frame."""
    conn = await websocket_connect(f"ws://127.0.0.1:{ws_port}/ws")
    await conn.read_message()  # the snapshot
    received: dict[int, float] = {}

    async def reader() -> None:
        while True:
            raw = await conn.read_message()
            if raw is None:
                return
            now = time.perf_counter()
            msg = json.loads(raw)
            data = msg.get("data") or {}
            if msg.get("type") == "update" and msg.get("topic", "").startswith("sensor/bench") and data:
                key = round(data["humidity_pct"] * 100)
                received.setdefault(key, now)

    device = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-device-{ws_port}")
    device.connect("127.0.0.1", broker_port)
    device.loop_start()
    task = asyncio.ensure_future(reader())
    sent: dict[int, float] = {}
    interval = 1 / rate
    start = time.perf_counter()
    for i in range(messages):
        await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
        payload = json.dumps({"temperature": 21.5, "humidity": i / 100, "battery": 90, "linkquality": 120})
        sent[i] = time.perf_counter()
        device.publish(f"zigbee2mqtt/bench{i % sensors}", payload, qos=1)
    deadline = time.perf_counter() + 5
    while len(received) < messages and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    task.cancel()
    conn.close()
    device.disconnect()
    device.loop_stop()
    latencies = [1000 * (received[i] - sent[i]) for i in range(WARMUP, messages) if i in received]
    return {
        "count": len(latencies),
        "lost": sum(1 for i in range(messages) if i not in received),
        "p50_ms": statistics.median(latencies),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second, all sensors together")
    parser.add_argument("--sensors", type=int, default=10)
    args = parser.parse_args()
    sensors = [
        {"id": f"bench{i}", "preset": "zigbee2mqtt", "topic": f"zigbee2mqtt/bench{i}"} for i in range(args.sensors)
    ]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        try:
            broker, broker_port = start_broker(tmp)
            procs.append(broker)
            base = {"host": "127.0.0.1", "port": broker_port}
            leader, leader_port = start_server(
                tmp, "leader", {**base, "name": "leader", "role": "leader", "sensors": sensors}
            )
            procs.append(leader)
            follower, follower_port = start_server(
                tmp, "follower", {**base, "name": "follower", "role": "follower", "leader": "homeboard/leader"}
            )
            procs.append(follower)
            direct = asyncio.run(measure(leader_port, broker_port, args.messages, args.rate, args.sensors))
            relayed = asyncio.run(measure(follower_port, broker_port, args.messages, args.rate, args.sensors))
        finally:
            for proc in reversed(procs):
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()

    rows = []
    for label, r in (("device → page", direct), ("device → leader → follower page", relayed)):
        rows.append((f"{label}: p50 / p90", f"{r['p50_ms']:.1f} / {r['p90_ms']:.1f} ms", "-"))
        rows.append((f"{label}: p99 / max", f"{r['p99_ms']:.1f} / {r['max_ms']:.1f} ms", "p99 ≤ 100 ms"))
        rows.append((f"{label}: readings lost", f"{r['lost']} of {args.messages}", "0"))
    width = max(len(r[0]) for r in rows)
    print(f"MQTT → WebSocket, {args.messages} readings at {args.rate:g}/s over {args.sensors} sensors (QoS 1)")
    print(f"{'measure':<{width}}  {'value':>20}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>20}  {target}")
    print(
        json.dumps(
            {
                "bench": "mqtt",
                "messages": args.messages,
                "rate_per_s": args.rate,
                "direct_p50_ms": round(direct["p50_ms"], 2),
                "direct_p99_ms": round(direct["p99_ms"], 2),
                "direct_max_ms": round(direct["max_ms"], 2),
                "direct_lost": direct["lost"],
                "follower_p50_ms": round(relayed["p50_ms"], 2),
                "follower_p99_ms": round(relayed["p99_ms"], 2),
                "follower_max_ms": round(relayed["max_ms"], 2),
                "follower_lost": relayed["lost"],
            }
        )
    )


if __name__ == "__main__":
    main()
