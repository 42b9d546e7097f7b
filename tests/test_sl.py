"""SL Transport API departures → topic `departures`; the site finder. Real-format payloads, real local servers."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.config import DeparturesConfig
from server.core.jsonutil import dumps
from server.core.source import AuthError, PayloadError, RateLimitedError, TransientError
from server.demo.standin import demo_urls, make_standin_app
from server.sources.sl import DeparturesSource, find_sites, local_to_epoch, parse_departures
from tests.conftest import REPO
from tests.fakeapi import JSON_VALUES, FakeApi, Reply, json_paths, replace_at, serve_app

STHLM = ZoneInfo("Europe/Stockholm")
NOW = dt.datetime(2025, 11, 25, 8, 0, tzinfo=STHLM).timestamp()  # 08:00 local, a Tuesday


def dep(
    line: str,
    destination: str | None,
    scheduled: str,
    expected: str | None = None,
    *,
    mode: str | None = "METRO",
    state: str = "EXPECTED",
    journey_state: str = "NORMALPROGRESS",
    display: str = "5 min",
    deviations: list[dict[str, Any]] | None = None,
    stop_name: str = "Slussen",
) -> dict[str, Any]:
    """One departure as the OpenAPI `departure` schema has it (times naive Stockholm)."""
    item: dict[str, Any] = {
        "direction": destination or "Mot centrum",
        "direction_code": 1,
        "state": state,
        "display": display,
        "scheduled": scheduled,
        "journey": {"id": 2025112512345, "state": journey_state, "prediction_state": "NORMAL"},
        "stop_area": {"id": 1031, "name": stop_name, "type": "METROSTN"},
        "stop_point": {"id": 3011, "name": stop_name, "designation": "2"},
        "line": {
            "id": int("".join(c for c in line if c.isdigit())),
            "designation": line,
            "group_of_lines": "Tunnelbanans gröna linje",
        },
        "deviations": deviations or [],
    }
    if mode:
        item["line"]["transport_mode"] = mode
    if destination is not None:
        item["destination"] = destination
    if expected is not None:
        item["expected"] = expected
    return item


def recorded() -> dict[str, Any]:
    return {
        "departures": [
            dep("19", "Hässelby strand", "2025-11-25T08:03:00", "2025-11-25T08:09:00", display="9 min"),  # delayed
            dep("17", "Åkeshov", "2025-11-25T08:05:00", "2025-11-25T08:05:30", display="5 min"),
            dep(
                "40",
                "Södertälje centrum",
                "2025-11-25T08:07:00",
                None,
                mode="TRAIN",
                display="08:07",
                deviations=[
                    {
                        "importance": 5,
                        "consequence": "INFORMATION",
                        "message": "Resa förbi Arlanda C kräver <b>både</b> UL- & SL-biljett.",
                    }
                ],
            ),  # no realtime prediction: falls back to the timetable
            dep(
                "18",
                "Farsta strand",
                "2025-11-25T08:06:00",
                "2025-11-25T08:06:00",
                state="CANCELLED",
                journey_state="CANCELLED",
                display="08:06",
                deviations=[
                    {
                        "importance_level": 7,
                        "consequence": "CANCELLED",
                        "message": "Inställd på grund av personalbrist.",
                    },
                    {
                        "importance_level": 7,
                        "consequence": "CANCELLED",
                        "message": "Inställd på grund av personalbrist.",
                    },
                ],
            ),
            dep("2", None, "2025-11-25T08:12:00", "2025-11-25T08:12:00", mode=None, display="12 min"),
            dep("53", "Henriksdalsberget", "2025-11-25T07:59:00", "2025-11-25T07:59:40", mode="BUS", display="Nu"),
            dep("76X", "Ropsten", "2025-11-25T08:20:00", "2025-11-25T08:20:00", journey_state="NOTEXPECTED"),
        ],
        "stop_deviations": [
            {"id": 1, "level": 3, "message": "Hissen vid Götgatan är ur funktion.", "scope": {"stop_areas": "1031"}},
            {"id": 2, "importance_level": 2, "message": "  ", "scope": {}},
        ],
    }


def test_parse_sorts_flags_and_keeps_text() -> None:
    data = parse_departures(recorded(), STHLM, NOW, 0.0, site_id=9192)
    assert data["site_id"] == 9192
    assert data["site_name"] == "Slussen"
    lines = [(d["line"], d["expected"]) for d in data["departures"]]
    assert lines == [
        ("17", "2025-11-25T08:05:30+01:00"),
        ("18", "2025-11-25T08:06:00+01:00"),
        ("40", "2025-11-25T08:07:00+01:00"),
        ("19", "2025-11-25T08:09:00+01:00"),  # scheduled 08:03 but delayed: sorted by expected
        ("2", "2025-11-25T08:12:00+01:00"),
    ], "bus 53 (07:59:40) is gone; 76X is NOTEXPECTED (SL: do not show)"
    by_line = {d["line"]: d for d in data["departures"]}
    assert by_line["19"]["destination"] == "Hässelby strand"
    assert by_line["19"]["scheduled"] == "2025-11-25T08:03:00+01:00"
    assert by_line["40"]["destination"] == "Södertälje centrum"
    assert by_line["40"]["realtime"] is False
    assert by_line["40"]["scheduled"] == by_line["40"]["expected"]
    assert by_line["40"]["deviations"] == ["Resa förbi Arlanda C kräver <b>både</b> UL- & SL-biljett."]
    assert by_line["18"]["cancelled"] is True
    assert by_line["18"]["state"] == "CANCELLED"
    assert by_line["18"]["deviations"] == ["Inställd på grund av personalbrist."]
    assert by_line["17"]["cancelled"] is False
    assert by_line["17"]["transport_mode"] == "METRO"
    assert by_line["2"]["destination"] == "Mot centrum", "no destination: the direction name"
    assert by_line["2"]["transport_mode"] == "METRO", "no transport_mode: from the stop area type"
    assert by_line["17"]["leave_in_min"] == 5.5  # unrounded: the page rounds once, for display
    assert by_line["19"]["leave_in_min"] == 9
    assert data["stop_deviations"] == ["Hissen vid Götgatan är ur funktion."]
    for d in data["departures"]:
        assert set(d) >= {
            "line",
            "transport_mode",
            "destination",
            "scheduled",
            "expected",
            "display",
            "state",
            "cancelled",
            "deviations",
        }


def test_walking_time_drops_what_you_cannot_catch() -> None:
    data = parse_departures(recorded(), STHLM, NOW, 6.0, site_id=9192)
    assert [(d["line"], d["leave_in_min"]) for d in data["departures"]] == [("18", 0), ("40", 1), ("19", 3), ("2", 6)]
    assert data["walk_time_min"] == 6.0


def test_max_departures_and_empty_list() -> None:
    assert len(parse_departures(recorded(), STHLM, NOW, site_id=9192, max_departures=2)["departures"]) == 2
    empty = parse_departures({"departures": [], "stop_deviations": []}, STHLM, NOW, site_id=9192, site_name="Slussen")
    assert empty == {
        "site_id": 9192,
        "site_name": "Slussen",
        "walk_time_min": 0.0,
        "departures": [],
        "stop_deviations": [],
    }


@pytest.mark.parametrize(
    ("now_local", "fold", "text", "expected_iso"),
    [
        # 2025-10-26: 02:00-02:59 happens twice (CEST, then CET). The reading nearest "now" is right.
        ((2, 40), 0, "2025-10-26T02:50:00", "2025-10-26T02:50:00+02:00"),  # first pass: 10 min away
        ((2, 5), 1, "2025-10-26T02:10:00", "2025-10-26T02:10:00+01:00"),  # second pass: 5 min away
        ((2, 58), 0, "2025-10-26T02:05:00", "2025-10-26T02:05:00+01:00"),  # after the clocks go back
        ((2, 50), 1, "2025-10-26T03:05:00", "2025-10-26T03:05:00+01:00"),  # unambiguous
        # 2025-03-30: 02:00-02:59 does not exist; 03:05 CEST is ten minutes after 01:55 CET.
        ((1, 55), 0, "2025-03-30T03:05:00", "2025-03-30T03:05:00+02:00"),
    ],
)
def test_local_times_across_dst(now_local: tuple[int, int], fold: int, text: str, expected_iso: str) -> None:
    day = dt.date.fromisoformat(text[:10])
    now = dt.datetime(day.year, day.month, day.day, *now_local, tzinfo=STHLM, fold=fold).timestamp()
    epoch = local_to_epoch(text, now)
    assert dt.datetime.fromtimestamp(epoch, STHLM).isoformat() == expected_iso
    assert 0 <= epoch - now <= 20 * 60


def test_dst_night_departures_sort_in_real_order() -> None:
    # 02:50 on the second pass (CET) of 2025-10-26: the 02:55 bus is 5 min away, the 03:01 one 11 min.
    now = dt.datetime(2025, 10, 26, 2, 50, tzinfo=STHLM, fold=1).timestamp()
    payload = {
        "departures": [
            dep("3", "Södersjukhuset", "2025-10-26T03:01:00", "2025-10-26T03:01:00", mode="BUS"),
            dep("3", "Södersjukhuset", "2025-10-26T02:55:00", "2025-10-26T02:55:00", mode="BUS"),
        ],
        "stop_deviations": [],
    }
    data = parse_departures(payload, STHLM, now, site_id=1)
    assert [d["expected"] for d in data["departures"]] == ["2025-10-26T02:55:00+01:00", "2025-10-26T03:01:00+01:00"]
    assert [d["leave_in_min"] for d in data["departures"]] == [5, 11]
    utc = ZoneInfo("UTC")
    as_utc = parse_departures(payload, utc, now, site_id=1)["departures"][0]["expected"]
    assert as_utc == "2025-10-26T01:55:00+00:00", "the configured zone only changes how the instant is written"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p["departures"][0].pop("scheduled"), "departures[0].scheduled: missing"),
        (lambda p: p["departures"][1].__setitem__("expected", "soon"), "departures[1].expected: expected a date-time"),
        (lambda p: p["departures"][0].pop("line"), "departures[0].line: missing"),
        (lambda p: p["departures"][0].pop("display"), "departures[0].display: missing"),
        (lambda p: p.__setitem__("departures", {"a": 1}), "departures: expected a list"),
        (lambda p: p.pop("departures"), "departures: missing"),
        (
            lambda p: p["departures"][1].__setitem__("deviations", [{"message": ["x"]}]),
            "departures[1].deviations[0].message",
        ),
    ],
)
def test_a_bad_field_is_named(mutate: Any, field: str) -> None:
    p = recorded()
    mutate(p)
    with pytest.raises(PayloadError) as info:
        parse_departures(p, STHLM, NOW, site_id=9192)
    assert field in info.value.message


# ---------------------------------------------------------------- the source over HTTP


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi().start()
    yield server
    server.stop()


def source(api: FakeApi, tmp_path: Path, **overrides: Any) -> DeparturesSource:
    cfg = DeparturesConfig(**{"site_id": 9192, **overrides})
    return DeparturesSource(cfg, STHLM, data_dir=tmp_path, base_url=api.url("/v1"), clock=lambda: NOW)


def test_fetch_passes_filters(api: FakeApi, tmp_path: Path) -> None:
    api.route("/v1/sites/9192/departures", Reply(200, recorded()))
    data = source(api, tmp_path, transport="METRO", line=19, direction=1, forecast_min=30).fetch()["departures"]
    assert data["site_name"] == "Slussen"
    assert len(data["departures"]) == 5
    assert api.requests[0].query == {"forecast": ["30"], "transport": ["METRO"], "line": ["19"], "direction": ["1"]}


def test_empty_departures_look_up_the_site_name_once(api: FakeApi, tmp_path: Path) -> None:
    api.route("/v1/sites/9192/departures", Reply(200, {"departures": [], "stop_deviations": []}))
    api.route(
        "/v1/sites",
        Reply(
            200, [{"id": 9192, "gid": 9091001000009192, "name": "Slussen", "valid": {"from": "2018-01-01T00:00:00"}}]
        ),
    )
    src = source(api, tmp_path)
    assert src.fetch()["departures"]["site_name"] == "Slussen"
    assert src.fetch()["departures"]["site_name"] == "Slussen"
    assert len(api.requests_to("/v1/sites")) == 1, "looked up once, then remembered"
    assert (tmp_path / "sl_sites.json").exists(), "and cached on disk"


@pytest.mark.parametrize(
    ("reply", "error", "words"),
    [
        (Reply(404, b""), AuthError, "site 9192 not found: check sources.departures.site_id"),
        (Reply(400, b'{"message": "bad"}'), AuthError, "forecast_min"),
        (Reply(500, b""), TransientError, "HTTP 500"),
        (
            Reply(503, "<html><body>Service Unavailable</body></html>", {"Content-Type": "text/html"}),
            TransientError,
            "HTTP 503",
        ),
        (Reply(429, b"", headers={"Retry-After": "90"}), RateLimitedError, "rate limiting"),
        (Reply(200, b"<html>maintenance</html>"), TransientError, "HTML page"),
        (Reply(200, '{"departures": [{"direction": "Hässelby'), TransientError, "cut off"),
    ],
)
def test_http_failures(api: FakeApi, tmp_path: Path, reply: Reply, error: type, words: str) -> None:
    api.route("/v1/sites/9192/departures", reply)
    with pytest.raises(error) as info:
        source(api, tmp_path).fetch()
    assert words in info.value.message


def test_unicode_survives_the_wire(api: FakeApi, tmp_path: Path) -> None:
    api.route("/v1/sites/9192/departures", Reply(200, recorded()))
    data = source(api, tmp_path).fetch()["departures"]
    destinations = {d["destination"] for d in data["departures"]}
    assert {"Hässelby strand", "Södertälje centrum", "Åkeshov"} <= destinations


def test_against_the_demo_standin(tmp_path: Path) -> None:
    now = dt.datetime(2026, 10, 25, 2, 30, tzinfo=STHLM, fold=1).timestamp()  # in the repeated hour
    standin = serve_app(make_standin_app(clock=lambda: now))
    try:
        url = demo_urls(standin.url())["departures"]
        cfg = DeparturesConfig(site_id=9192, walk_time_min=2, max_departures=50)
        data = DeparturesSource(cfg, STHLM, data_dir=tmp_path, base_url=url, clock=lambda: now).fetch()["departures"]
        assert data["site_name"] == "Slussen"
        assert data["stop_deviations"]
        times = [dt.datetime.fromisoformat(d["expected"]).timestamp() for d in data["departures"]]
        assert times == sorted(times)
        assert all(t - now >= 120 for t in times), "all reachable with a 2 min walk"
        assert all(t - now <= 3600 + 600 for t in times), "no departure misplaced an hour ahead by the DST fold"
        assert any(not d["realtime"] for d in data["departures"]) or any(d["cancelled"] for d in data["departures"])
        metro = DeparturesSource(
            DeparturesConfig(site_id=9192, transport="METRO", line=19), STHLM, base_url=url, clock=lambda: now
        ).fetch()["departures"]["departures"]
        assert metro
        assert {d["line"] for d in metro} == {"19"}
    finally:
        standin.stop()


# ---------------------------------------------------------------- finding a site id


def test_find_sites_ranks_and_ignores_accents() -> None:
    sites = [
        {"id": 1079, "name": "Stockholm Odenplan"},
        {"id": 9117, "name": "Odenplan"},
        {"id": 9119, "name": "Odengatan"},
        {"id": 9200, "name": "Hässelby strand", "alias": ["Hässelby str"]},
    ]
    assert [s["id"] for s in find_sites(sites, "odenplan")] == [9117, 1079]
    assert [s["id"] for s in find_sites(sites, "Oden")] == [9119, 9117, 1079]
    assert [s["id"] for s in find_sites(sites, "hasselby")] == [9200]
    assert find_sites(sites, "  ") == []


def run_find(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.sources.sl", "find", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_find_command_against_a_local_server(tmp_path: Path) -> None:
    standin = serve_app(make_standin_app())
    base = demo_urls(standin.url())["departures"]
    try:
        found = run_find("Odenplan", "--base-url", base, "--data-dir", str(tmp_path))
        assert found.returncode == 0, found.stderr
        lines = found.stdout.splitlines()
        assert lines[0].split() == ["9117", "Odenplan"]
        assert lines[1].split() == ["1079", "Stockholm", "Odenplan"]
        cache = json.loads((tmp_path / "sl_sites.json").read_text(encoding="utf-8"))
        assert cache["base_url"] == base
        assert len(cache["sites"]) > 3
        accent = run_find("hasselby", "--base-url", base, "--data-dir", str(tmp_path))
        assert "Hässelby strand" in accent.stdout
    finally:
        standin.stop()
    cached = run_find("södertälje", "--base-url", base, "--data-dir", str(tmp_path))
    assert cached.returncode == 0, "served from the cache, server gone"
    assert "Södertälje centrum" in cached.stdout
    missing = run_find("Atlantis", "--base-url", base, "--data-dir", str(tmp_path))
    assert missing.returncode == 1
    assert "no SL site matches" in missing.stderr
    down = run_find("Odenplan", "--base-url", base, "--data-dir", str(tmp_path / "empty"))
    assert down.returncode == 2
    assert "could not get the SL site list" in down.stderr


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_damaged_field_is_a_payload_error_never_a_crash(data: st.DataObject) -> None:
    p = recorded()
    for _ in range(data.draw(st.integers(1, 3))):
        replace_at(p, data.draw(st.sampled_from(json_paths(p))), data.draw(JSON_VALUES))
    problem: str | None = None
    try:
        dumps(parse_departures(p, STHLM, NOW, 2.0, site_id=9192))  # whatever gets through is valid, finite JSON
    except PayloadError as err:
        problem = err.message
    assert problem is None or problem.startswith("departures: ")


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59", "0001-01-01T00:00:00", "1970-01-01T00:00:00"])
def test_impossible_times_are_payload_errors(text: str) -> None:
    p = recorded()
    p["departures"][0]["expected"] = text
    with pytest.raises(PayloadError, match=r"departures\[0\]\.expected"):
        parse_departures(p, STHLM, NOW, site_id=9192)
    p = recorded()
    p["departures"][1]["scheduled"] = text
    with pytest.raises(PayloadError, match=r"departures\[1\]\.scheduled"):
        parse_departures(p, STHLM, NOW, site_id=9192)
