"""Calendar feeds on this machine: the reader's time and memory on a big real-looking feed and on hostile ones, and
the server's memory while it reads them. Prints a table and one JSON line.

    .venv/bin/python bench/bench_calendar.py [--mb 5] [--runs 3] [--only big,hostile]

- big: `python -m server.sources.calendar_ics` (the reader, with its own limits) on a generated feed
  (tests/icsgen.py: a Google-style export with years of history, 2 events a day plus weekly series): wall and CPU
  time, and the reader's peak RSS (its VmHWM, which it reports; getrusage would count the parent's memory at the
  fork). Then, for comparison, a process with the server's modules loaded that polls the feed with CalendarSource
  (RSS before, peak, after; a 1-year and the big feed: steady state must not grow with the history), and the same
  process parsing with icalendar / recurring-ical-events itself.
- hostile: each feed of tests/icsgen.py's hostile set, read by the reader alone (peak RSS, CPU, what it answered),
  then by `python -m server` polling it from a local HTTP server (the server's RSS when it answers /healthz,
  after the feed is read, and its peak, from /proc): the unit's MemoryHigh (192 MB) must hold the server and one
  reader at its limit.
Every figure is the median (min-max) of --runs runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.server
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from server.sources.calendar_ics import MEMORY_LIMIT_BYTES  # noqa: E402 - after the path set-up
from tests import icsgen  # noqa: E402

TODAY = dt.date.today()
UNTIL = TODAY + dt.timedelta(days=13)
MEMORY_HIGH_MB = 192  # systemd/homeboard.service


SERVER_SIDE = r"""
import datetime as dt, gc, http.server, json, resource, sys, threading
from pathlib import Path

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

mode, path = sys.argv[1], sys.argv[2]
import server.homeboard, server.web.app  # the server's own modules, as in a running server
from server.config import CalendarConfig, CalendarFeedConfig
body = Path(path).read_bytes()
gc.collect()
out = {"rss_start_mb": rss_mb()}
if mode == "child":
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/calendar")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    from server.sources.calendar import CalendarSource
    url = f"http://127.0.0.1:{httpd.server_address[1]}/private-token/basic.ics"
    src = CalendarSource(CalendarConfig(calendars=(CalendarFeedConfig("Work", url),), days=7), "Europe/Stockholm")
    gc.collect()
    out["rss_before_mb"] = rss_mb()
    data = src.fetch()["calendar"]
    out["events_shown"] = len(data["events"])
    out["kept_occurrences"] = len(src.states[0].events)
else:
    import icalendar, recurring_ical_events
    from server.sources.calendar_ics import expand
    gc.collect()
    out["rss_before_mb"] = rss_mb()
    import time
    cpu = time.process_time()
    result = expand(body, "Europe/Stockholm", dt.date.fromisoformat(sys.argv[3]), dt.date.fromisoformat(sys.argv[4]))
    out["expand_cpu_s"] = time.process_time() - cpu
    out["kept_occurrences"] = len(result.events)
del body
gc.collect()
out["rss_peak_mb"] = peak_mb()
out["rss_after_mb"] = rss_mb()
print(json.dumps(out))
"""


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def fmt(s: dict[str, float]) -> str:
    return f"{s['median']:g} ({s['min']:g}–{s['max']:g})"


# ---------------------------------------------------------------- the reader alone


def run_reader(path: Path) -> dict[str, Any]:
    """One run of the reader (its own limits) on the feed in `path`."""
    command = [sys.executable, "-m", "server.sources.calendar_ics", "--zone", "Europe/Stockholm"]
    command += ["--from", TODAY.isoformat(), "--until", UNTIL.isoformat()]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with path.open("rb") as stdin:
        done = subprocess.run(command, stdin=stdin, capture_output=True, check=False, cwd=REPO)
    elapsed_s = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = {"error": f"exit {done.returncode}: {done.stderr.decode(errors='replace')[-200:]}"}
    if done.returncode < 0:
        answer = {"error": f"killed by signal {-done.returncode}"}
    peak_kb = answer.get("peak_rss_kb")
    return {
        "seconds": elapsed_s,
        "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "peak_rss_mb": peak_kb / 1024 if isinstance(peak_kb, int) else None,
        "answer": (
            answer["error"]
            if "error" in answer
            else (
                f"{len(answer['events'])} occurrences, {answer['unreadable']} unreadable, "
                f"{answer['too_many']} cut, {answer['parsed']} of {answer['scanned']} VEVENTs parsed"
            )
        ),
    }


def reader_figures(path: Path, runs: int) -> dict[str, Any]:
    results = [run_reader(path) for _ in range(runs)]
    peaks = [r["peak_rss_mb"] for r in results if r["peak_rss_mb"] is not None]
    return {
        "seconds": summary([r["seconds"] for r in results]),
        "cpu_seconds": summary([r["cpu_seconds"] for r in results]),
        "peak_rss_mb": summary(peaks) if peaks else None,
        "answer": results[-1]["answer"],
    }


# ---------------------------------------------------------------- python -m server polling a feed


def vm_mb(pid: int, field: str) -> float:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) / 1024 if match else 0.0


def serve_file(path: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    body = path.read_bytes()

    class Feed(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/calendar")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Feed)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/private-bench-token/basic.ics"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_server(url: str, tmp: Path) -> dict[str, float]:
    """`python -m server` with this one feed: RSS when it first answers, after the feed is read, and its peak."""
    port = free_port()
    config = tmp / f"config-{port}.yaml"
    doc = {"data_dir": str(tmp / f"var-{port}"), "sources": {"calendar": {"calendars": [{"name": "F", "url": url}]}}}
    config.write_text(yaml.safe_dump(doc))
    log_path = tmp / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--config", str(config), "--port", str(port)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}") from None
                time.sleep(0.05)
        at_start = vm_mb(proc.pid, "VmRSS")
        deadline = time.monotonic() + 120
        while "calendar F:" not in log_path.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the feed was not read: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(2.0)  # the topic published and the cache written
        return {"start_mb": at_start, "after_mb": vm_mb(proc.pid, "VmRSS"), "peak_mb": vm_mb(proc.pid, "VmHWM")}
    finally:
        proc.terminate()
        proc.wait(10)


def server_figures(path: Path, runs: int, tmp: Path) -> dict[str, Any]:
    httpd, url = serve_file(path)
    try:
        results = [run_server(url, tmp) for _ in range(runs)]
    finally:
        httpd.shutdown()
    return {key: summary([r[key] for r in results]) for key in ("start_mb", "after_mb", "peak_mb")}


def run_server_side(mode: str, path: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", SERVER_SIDE, mode, str(path), TODAY.isoformat(), UNTIL.isoformat()],
        capture_output=True,
        check=True,
        cwd=REPO,
        text=True,
    )
    return {k: round(v, 2) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


# ---------------------------------------------------------------- report


def big(out: Path, mb: float, runs: int) -> dict[str, Any]:
    years = mb / 0.555
    big_path, small_path = out / "big.ics", out / "one-year.ics"
    big_path.write_bytes(icsgen.big_feed(TODAY, years=years, per_day=2))
    small_path.write_bytes(icsgen.big_feed(TODAY, years=1, per_day=2))
    figures = {
        "feed_mb": round(big_path.stat().st_size / 1e6, 2),
        "history_years": round(years, 1),
        "reader": reader_figures(big_path, runs),
        "server_child_design_big": run_server_side("child", big_path),
        "server_child_design_1y": run_server_side("child", small_path),
        "in_process_big": run_server_side("inprocess", big_path),
    }
    r = figures["reader"]
    print(f"big feed: {figures['feed_mb']} MB over {figures['history_years']} years: {r['answer']}")
    print(
        f"  reader: {fmt(r['seconds'])} s wall, {fmt(r['cpu_seconds'])} s CPU (start-up included), "
        f"peak RSS {fmt(r['peak_rss_mb'])} MB"
    )
    for key in ("server_child_design_1y", "server_child_design_big", "in_process_big"):
        f = figures[key]
        extra = f["rss_peak_mb"] - f["rss_before_mb"]
        print(
            f"  {key:26s} RSS start {f['rss_start_mb']:5.1f}  before {f['rss_before_mb']:5.1f}  "
            f"peak {f['rss_peak_mb']:5.1f} (+{extra:4.1f})  after {f['rss_after_mb']:5.1f} MB"
        )
    return figures


def hostile(out: Path, runs: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    print(f"hostile feeds (reader limit {MEMORY_LIMIT_BYTES // 2**20} MB; the unit's MemoryHigh {MEMORY_HIGH_MB} MB)")
    for name, make in icsgen.HOSTILE_FEEDS.items():
        path = out / "hostile.ics"
        path.write_bytes(make(TODAY))
        reader = reader_figures(path, runs)
        server = server_figures(path, runs, out)
        figures[name] = {"feed_mb": round(path.stat().st_size / 1e6, 2), "reader": reader, "server": server}
        peak = fmt(reader["peak_rss_mb"]) if reader["peak_rss_mb"] else "— (killed)"
        print(f"- {name} ({figures[name]['feed_mb']} MB): {reader['answer']}")
        print(
            f"    reader: peak RSS {peak} MB, CPU {fmt(reader['cpu_seconds'])} s, wall {fmt(reader['seconds'])} s; "
            f"server RSS {fmt(server['start_mb'])} → {fmt(server['after_mb'])} MB, peak {fmt(server['peak_mb'])} MB"
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=5.0, help="size of the big feed (about 0.55 MB per year)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median and min-max are quoted)")
    parser.add_argument("--only", default="big,hostile", help="big, hostile or both")
    args = parser.parse_args()
    only = {part.strip() for part in args.only.split(",")}
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores")
    figures: dict[str, Any] = {"load_avg_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="homeboard-bench-calendar-") as tmp:
        if "big" in only:
            figures["big"] = big(Path(tmp), args.mb, args.runs)
        if "hostile" in only:
            figures["hostile"] = hostile(Path(tmp), args.runs)
    figures["load_avg_at_end"] = os.getloadavg()[0]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
