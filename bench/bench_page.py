"""The page's figures in headless Chromium on this machine: time to a filled wall, JS heap growth over 10,000
pushed updates, CPU at rest. Prints a table and one JSON line.

    .venv/bin/python bench/bench_page.py [--quick]

- fill: navigation → every widget filled (clock, weather, departures, a sensor with its sparkline, forecast,
  Strava), timed inside the page by a MutationObserver (performance.now() is ms since navigation start);
  against the real demo server, a fresh browser context (cold cache) per run.
- heap: JS heap after GC, before and after 10,000 updates pushed over the WebSocket: (a) LAN readings POSTed to
  the real server's ingest endpoint, (b) a mix of every topic (weather, departures, Strava, sensors) from a
  scripted stand-in serving the real kiosk/ files. 1,000 updates of warm-up first.
- cpu: the page's main-thread busy time (CDP Performance.getMetrics TaskDuration) and the CPU time of the whole
  Chromium process tree, over 30 s at rest: (a) the clock alone, (b) the full demo wall.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser import HomeboardProcess, KioskStandin, launch  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 - the bench config's own ingest token
FILL_SCRIPT = """
window.__filledAt = null;
const check = () => {
  const q = (s) => document.querySelector(s);
  const ok = q(".clock-main")?.textContent &&
    /\\d/.test(q(".now-temp")?.textContent || "") &&
    [...document.querySelectorAll(".dep")].some((r) => !r.hidden) &&
    [...document.querySelectorAll(".sensor-temp")].some((n) => /\\d/.test(n.textContent)) &&
    [...document.querySelectorAll(".spark-line")].some((p) => p.getAttribute("d")) &&
    [...document.querySelectorAll(".day")].some((r) => !r.hidden) &&
    [...document.querySelectorAll(".act")].some((r) => !r.hidden);
  if (ok && window.__filledAt === null) window.__filledAt = performance.now();
  return ok;
};
new MutationObserver(() => { if (window.__filledAt === null) check(); })
  .observe(document, { childList: true, subtree: true, characterData: true, attributes: true });
"""


def bench_doc() -> dict[str, Any]:
    return {
        "timezone": "Europe/Stockholm",
        "page": {"locale": "sv-SE", "night_from": None, "night_until": None, "reload_at": None},
        "remote_sensors": [
            {"id": "balcony", "name": "Balcony", "token": TOKEN},
            {"id": "garage", "name": "Garage", "token": TOKEN},
        ],
        "history": {"commit_interval_s": 0.05},
    }


def descendants_cpu_s() -> float:
    """User+system CPU seconds of every process descended from this one (the Playwright driver and Chromium)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    mine = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                grew = True
    mine.discard(os.getpid())
    return sum(cpu.get(pid, 0.0) for pid in mine)


def heap_mb(cdp: Any) -> float:
    cdp.send("HeapProfiler.collectGarbage")
    cdp.send("HeapProfiler.collectGarbage")
    return cdp.send("Runtime.getHeapUsage")["usedSize"] / 1e6


def dom_nodes(cdp: Any) -> int:
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return int(metrics["Nodes"])


def measure_fill(browser: Any, url: str, runs: int) -> list[float]:
    times: list[float] = []
    for _ in range(runs):
        context = browser.new_context(viewport={"width": 1920, "height": 1080})
        page = context.new_page()
        page.add_init_script(FILL_SCRIPT)
        page.goto(url)
        deadline = time.monotonic() + 20
        while (filled := page.evaluate("() => window.__filledAt")) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the page did not fill in 20 s")
            time.sleep(0.05)
        times.append(filled)
        context.close()
    return times


def post_readings(server: HomeboardProcess, count: int) -> None:
    def one(i: int) -> int:
        sensor = ("balcony", "garage")[i % 2]
        status, body = server.post_reading(sensor, TOKEN, {"temperature_c": round(random.uniform(-5, 25), 2)})
        if status != 201:
            raise RuntimeError(f"ingest answered {status}: {body}")
        return status

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        list(pool.map(one, range(count)))


def wait_settled(page: Any, expected: int, timeout_s: float = 120) -> None:
    """Until the page's store has applied `expected` updates (counted by a wrapper set up before)."""
    deadline = time.monotonic() + timeout_s
    while page.evaluate("() => window.__applied") < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {page.evaluate('() => window.__applied')} of {expected} updates arrived")
        time.sleep(0.1)
    page.wait_for_timeout(2500)  # coalesced sparkline redraws (2 s) run too


COUNT_APPLIED = """() => {
  window.__applied = 0;
  const store = window.__homeboard.store;
  const apply = store.apply.bind(store);
  store.apply = (topic, state) => { window.__applied += 1; return apply(topic, state); };
}"""


def measure_heap_ingest(browser: Any, server: HomeboardProcess, updates: int, warmup: int) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    page.goto(server.url + "/?wall=1")
    page.wait_for_selector('body[data-ready="1"]', state="attached")
    page.wait_for_timeout(1500)
    page.evaluate(COUNT_APPLIED)
    post_readings(server, warmup)
    wait_settled(page, warmup)
    before, nodes_before = heap_mb(cdp), dom_nodes(cdp)
    started = time.monotonic()
    post_readings(server, updates)
    pushed_s = time.monotonic() - started
    wait_settled(page, warmup + updates)
    after, nodes_after = heap_mb(cdp), dom_nodes(cdp)
    context.close()
    return {
        "heap_before_mb": round(before, 2),
        "heap_after_mb": round(after, 2),
        "growth_mb": round(after - before, 2),
        "dom_nodes": [nodes_before, nodes_after],
        "push_rate_per_s": round(updates / pushed_s),
    }


def mixed_updates(n: int, now: float) -> list[dict[str, Any]]:
    """n update messages over every topic, in the shapes the server sends, with moving values and fresh strings."""
    tz = dt.timezone(dt.timedelta(hours=1))

    def iso(t: float) -> str:
        return dt.datetime.fromtimestamp(t, tz).isoformat(timespec="seconds")

    out: list[dict[str, Any]] = []
    for i in range(n):
        t = now + i * 0.5
        kind = i % 4
        if kind == 0:
            topic, data = (
                f"sensor/s{i % 3}",
                {
                    "name": f"Sensor {i % 3}",
                    "temperature_c": 20 + (i % 50) / 10,
                    "humidity_pct": 40.0,
                    "pressure_hpa": 1010.0,
                    "measured_at": iso(t),
                    "source": "bench",
                },
            )
        elif kind == 1:
            topic, data = (
                "departures",
                {
                    "site_id": 1,
                    "site_name": "Odenplan",
                    "stop_deviations": [f"note {i}"],
                    "departures": [
                        {
                            "line": str(10 + j),
                            "transport_mode": "BUS",
                            "destination": f"Stop {i}-{j}",
                            "scheduled": iso(t + 60 * j),
                            "expected": iso(t + 60 * j + 30),
                            "display": "",
                            "state": "",
                            "cancelled": j == 3,
                            "deviations": [f"dev {i}"] if j == 2 else [],
                        }
                        for j in range(12)
                    ],
                },
            )
        elif kind == 2:
            topic, data = (
                "weather",
                {
                    "location": "Stockholm",
                    "current": {
                        "temperature_c": (i % 30) - 5,
                        "feels_like_c": -2,
                        "condition": f"Cloudy {i}",
                        "icon": "cloudy",
                        "wind_kph": 10,
                        "wind_dir": "N",
                        "humidity_pct": 80,
                    },
                    "days": [
                        {
                            "date": "2026-11-25",
                            "max_c": 5,
                            "min_c": -1,
                            "icon": "rain",
                            "chance_of_rain_pct": 50,
                            "sunrise": "08:30",
                            "sunset": "15:00",
                        }
                    ],
                    "hours": [
                        {"time": iso(t + 3600 * h), "temperature_c": h, "icon": "snow", "chance_of_rain_pct": 10}
                        for h in range(12)
                    ],
                    "alerts": [
                        {
                            "headline": f"Wind {i}",
                            "severity": "Moderate",
                            "event": "Wind",
                            "expires": iso(t + 7200),
                            "desc": "Gusts",
                        }
                    ],
                },
            )
        else:
            topic, data = (
                "strava",
                {
                    "activities": [
                        {
                            "id": i * 10 + k,
                            "name": f"Run {i}-{k}",
                            "sport_type": "Run",
                            "distance_km": 5 + k,
                            "moving_time_s": 1800,
                            "start": iso(t),
                            "average_heartrate": 150.0,
                        }
                        for k in range(10)
                    ],
                    "week": {"distance_km": 40, "moving_time_s": 9000, "count": 5},
                    "week_by_sport": {"Run": {"distance_km": 40, "moving_time_s": 9000, "count": 5}},
                },
            )
        out.append(
            {
                "type": "update",
                "topic": topic,
                "data": data,
                "updated_at": iso(t),
                "stale": i % 7 == 0,
                "status": "ok",
                "error": None,
            }
        )
    return out


def measure_heap_mixed(browser: Any, updates: int, warmup: int) -> dict[str, Any]:
    page_cfg = {
        "locale": "sv-SE",
        "clock_24h": True,
        "night_from": None,
        "night_until": None,
        "reload_at": None,
        "widgets": ["clock", "weather", "departures", "sensors", "forecast", "strava"],
        "large": ["departures", "strava"],
    }
    standin = KioskStandin(page_cfg).start()
    try:
        context = browser.new_context(viewport={"width": 1920, "height": 1080})
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.goto(standin.url + "/?wall=1")
        page.wait_for_selector('body[data-ready="1"]', state="attached")
        page.wait_for_timeout(1000)
        page.evaluate(COUNT_APPLIED)
        messages = mixed_updates(warmup + updates, time.time())
        for msg in messages[:warmup]:
            standin.send(msg)
        wait_settled(page, warmup)
        before, nodes_before = heap_mb(cdp), dom_nodes(cdp)
        started = time.monotonic()
        for start in range(warmup, warmup + updates, 100):
            batch = messages[start : start + 100]
            standin.call(lambda b=batch: [s.write_message(json.dumps(m)) for m in b for s in list(standin.sockets)])
        pushed_s = time.monotonic() - started
        wait_settled(page, warmup + updates)
        after, nodes_after = heap_mb(cdp), dom_nodes(cdp)
        context.close()
    finally:
        standin.stop()
    return {
        "heap_before_mb": round(before, 2),
        "heap_after_mb": round(after, 2),
        "growth_mb": round(after - before, 2),
        "dom_nodes": [nodes_before, nodes_after],
        "push_rate_per_s": round(updates / pushed_s),
    }


def measure_cpu(browser: Any, url: str, seconds: float) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    page.goto(url)
    page.wait_for_selector('body[data-ready="1"]', state="attached")
    page.wait_for_timeout(5000)  # let history fetches, icons and the first redraws finish

    def task_s() -> float:
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        return metrics["TaskDuration"]

    task0, proc0, wall0 = task_s(), descendants_cpu_s(), time.monotonic()
    time.sleep(seconds)
    task1, proc1, wall1 = task_s(), descendants_cpu_s(), time.monotonic()
    context.close()
    wall = wall1 - wall0
    return {
        "seconds": round(wall, 1),
        "main_thread_pct": round(100 * (task1 - task0) / wall, 3),
        "chromium_tree_pct": round(100 * (proc1 - proc0) / wall, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and shorter windows (a smoke run)")
    args = parser.parse_args()
    runs, updates, warmup, rest_s = (2, 1000, 200, 5.0) if args.quick else (5, 10_000, 1_000, 30.0)

    results: dict[str, Any] = {"bench": "page", "machine": f"{os.cpu_count()} cpu"}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = launch(pw)
        server = HomeboardProcess(Path(tmp), bench_doc()).start()
        try:
            page_url = server.url + "/?wall=1"
            measure_fill(browser, page_url, 1)  # the server's first history queries and icon reads warm up
            fill = measure_fill(browser, page_url, runs)
            results["fill_ms"] = {"median": round(statistics.median(fill)), "max": round(max(fill)), "runs": runs}
            results["heap_ingest"] = measure_heap_ingest(browser, server, updates, warmup)
            results["heap_mixed"] = measure_heap_mixed(browser, updates, warmup)
            results["cpu_full_wall"] = measure_cpu(browser, page_url, rest_s)
        finally:
            server.stop()
        clock_only = KioskStandin(
            {"locale": "sv-SE", "clock_24h": True, "widgets": ["clock"], "night_from": None, "reload_at": None}
        ).start()
        try:
            results["cpu_clock_only"] = measure_cpu(browser, clock_only.url + "/?wall=1", rest_s)
        finally:
            clock_only.stop()
        browser.close()

    rows = [
        (
            "navigation → every widget filled, median / max",
            f"{results['fill_ms']['median']} / {results['fill_ms']['max']} ms",
            "≤ 1000 ms",
        ),
        (f"JS heap growth, {updates} ingest updates", f"{results['heap_ingest']['growth_mb']} MB", "< 2 MB"),
        (f"JS heap growth, {updates} mixed-topic updates", f"{results['heap_mixed']['growth_mb']} MB", "< 2 MB"),
        (
            "CPU at rest, clock only: main thread / Chromium",
            f"{results['cpu_clock_only']['main_thread_pct']} % / {results['cpu_clock_only']['chromium_tree_pct']} %",
            "< 2 % of a core",
        ),
        (
            "CPU at rest, full demo wall: main thread / Chromium",
            f"{results['cpu_full_wall']['main_thread_pct']} % / {results['cpu_full_wall']['chromium_tree_pct']} %",
            "< 2 % of a core",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'figure'.ljust(width)}  {'measured':>22}  target")
    for name, value, target in rows:
        print(f"{name.ljust(width)}  {value:>22}  {target}")
    print(json.dumps(results, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
