"""`make run`'s promise: the demo serves weather, departures, Strava and local sensors within 15 s, and the page."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from tests.conftest import REPO
from tests.procutil import ServerProcess


def test_demo_mode_shows_every_source_within_15_s(tmp_path: Path) -> None:
    import yaml

    doc = yaml.safe_load((REPO / "config.yaml").read_text())
    doc["data_dir"] = str(tmp_path / "var")
    t0 = time.monotonic()
    srv = ServerProcess(tmp_path, doc, demo=True, env={"WEATHERAPI_KEY": "", "STRAVA_REFRESH_TOKEN": ""})
    try:
        srv.wait_ready()
        wanted = {"weather", "departures", "strava"}
        while True:
            with urllib.request.urlopen(srv.url + "/api/state", timeout=2) as r:
                topics = json.load(r)["topics"]
            ok = {t for t, s in topics.items() if s["status"] == "ok" and s["data"] is not None}
            sensors_ok = [t for t in ok if t.startswith("sensor/")]
            if wanted <= ok and len(sensors_ok) >= 2:
                break
            assert time.monotonic() - t0 < 15, f"after 15 s only {sorted(ok)} are ok"
            time.sleep(0.3)
        assert topics["weather"]["data"]["current"]["temperature_c"] is not None
        assert topics["departures"]["data"]["departures"], "the stand-in always has departures"
        with urllib.request.urlopen(srv.url + "/", timeout=2) as r:
            page = r.read().decode()
            csp = r.headers["Content-Security-Policy"]
        assert '<script type="module"' in page
        assert "script-src 'self'" in csp
        health = json.loads(urllib.request.urlopen(srv.url + "/healthz", timeout=2).read())
        assert {"weather", "departures", "strava"} <= set(health["sources"])
    finally:
        assert srv.stop() == 0
