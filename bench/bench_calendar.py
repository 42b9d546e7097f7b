"""A big calendar feed on this machine: expansion time and memory, in a child process (as the server does it) and,
for comparison, inside the server process. Prints a table and one JSON line.

    .venv/bin/python bench/bench_calendar.py [--mb 5]

- child: `python -m server.sources.calendar_ics` on a generated feed (tests/icsgen.py: a Google-style export with
  years of history, 2 events a day plus weekly series): wall time, and the child's peak RSS.
- server side, child design: a fresh process with the server's modules loaded polls the feed over loopback HTTP
  with CalendarSource: RSS before, peak during, RSS after; for a 1-year and the big feed (steady state must not
  grow with the history).
- in-process alternative: the same process parsing with icalendar / recurring-ical-events itself: RSS after
  importing them, peak during the expansion, RSS after.
Targets: expansion < 2 s, < 30 MB extra peak RSS in the server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.icsgen import big_feed  # noqa: E402 - after the path set-up

TODAY = dt.date.today()
UNTIL = TODAY + dt.timedelta(days=13)

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


def run_child(path: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "server.sources.calendar_ics", "--zone", "Europe/Stockholm"]
    command += ["--from", TODAY.isoformat(), "--until", UNTIL.isoformat()]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with path.open("rb") as stdin:
        done = subprocess.run(command, stdin=stdin, capture_output=True, check=True, cwd=REPO)
    elapsed_s = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(done.stdout)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "seconds": round(elapsed_s, 2),
        "cpu_seconds": round(cpu_s, 2),  # what the wall time is on an idle machine (one core, no waiting)
        "child_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "occurrences": len(result["events"]),
        "vevents": result["scanned"],
        "parsed": result["parsed"],
    }


def run_server_side(mode: str, path: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", SERVER_SIDE, mode, str(path), TODAY.isoformat(), UNTIL.isoformat()],
        capture_output=True,
        check=True,
        cwd=REPO,
        text=True,
    )
    return {k: round(v, 2) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=5.0, help="size of the big feed (about 0.55 MB per year)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="homeboard-bench-calendar-") as tmp:
        report(Path(tmp), args.mb)


def report(out: Path, mb: float) -> None:
    years = mb / 0.555
    big, small = out / "big.ics", out / "one-year.ics"
    big.write_bytes(big_feed(TODAY, years=years, per_day=2))
    small.write_bytes(big_feed(TODAY, years=1, per_day=2))
    figures = {
        "feed_mb": round(big.stat().st_size / 1e6, 2),
        "history_years": round(years, 1),
        "child": run_child(big),
        "server_child_design_big": run_server_side("child", big),
        "server_child_design_1y": run_server_side("child", small),
        "in_process_big": run_server_side("inprocess", big),
    }
    c = figures["child"]
    print(f"feed: {figures['feed_mb']} MB, {c['vevents']} VEVENTs over {figures['history_years']} years")
    print(
        f"child process: {c['seconds']} s wall, {c['cpu_seconds']} s CPU (start-up included), "
        f"peak RSS {c['child_peak_rss_mb']} MB,"
    )
    print(f"  {c['parsed']} VEVENTs parsed after pre-selection, {c['occurrences']} occurrences in 14 days")
    for key in ("server_child_design_1y", "server_child_design_big", "in_process_big"):
        f = figures[key]
        extra = f["rss_peak_mb"] - f["rss_before_mb"]
        print(
            f"{key:26s} RSS start {f['rss_start_mb']:5.1f}  before {f['rss_before_mb']:5.1f}  "
            f"peak {f['rss_peak_mb']:5.1f} (+{extra:4.1f})  after {f['rss_after_mb']:5.1f} MB"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
