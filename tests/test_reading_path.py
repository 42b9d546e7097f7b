"""The one reading path on a real server: the ordering rule (across restarts too), duplicates, a humidity-only
device, a device without a clock, topics that follow the config, `waiting` as a status, and the history schema
update that made temperature optional."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import tornado.httpclient

from server.readings.history import DB_NAME, SCHEMA_VERSION
from tests.conftest import make_config
from tests.serverthread import ServerThread

TOKEN = "balcony-token-0123456789abcdef"
REMOTE = [{"id": "balcony", "name": "Balcony", "token": TOKEN, "max_age_s": 600}]


def post(srv: ServerThread, doc: dict[str, Any], sensor: str = "balcony", token: str = TOKEN) -> tuple[int, Any]:
    response = tornado.httpclient.HTTPClient().fetch(
        f"{srv.url}/api/sensors/{sensor}/readings",
        method="POST",
        body=json.dumps(doc),
        headers={"Authorization": f"Bearer {token}"},
        raise_error=False,
    )
    return response.code, json.loads(response.body) if response.body else None


def topics(srv: ServerThread) -> dict[str, Any]:
    return json.loads(tornado.httpclient.HTTPClient().fetch(srv.url + "/api/state").body)["topics"]


def at(offset_s: float) -> str:
    return dt.datetime.fromtimestamp(time.time() + offset_s, dt.UTC).isoformat(timespec="seconds")


def stored(data_dir: Path, sql: str = "SELECT sensor_id, temperature_c FROM readings ORDER BY measured_at_ms") -> list:
    conn = sqlite3.connect(data_dir / DB_NAME)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def shown_time(srv: ServerThread, topic: str = "sensor/balcony") -> float:
    return dt.datetime.fromisoformat(topics(srv)[topic]["data"]["measured_at"]).timestamp()


def test_an_older_reading_goes_to_the_history_only(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path, remote_sensors=REMOTE)).start()
    try:
        newer, older = at(-60), at(-7200)
        assert post(srv, {"temperature_c": 5.0, "measured_at": newer})[0] == 201
        assert post(srv, {"temperature_c": -9.0, "measured_at": older})[0] == 201  # acknowledged: it is stored
        state = topics(srv)["sensor/balcony"]
        assert state["data"]["temperature_c"] == 5.0, "a reading measured two hours ago replaced a newer one"
        assert state["stale"] is False
        assert sorted(t for _, t in stored(tmp_path / "var")) == [-9.0, 5.0]
    finally:
        srv.stop()


def test_an_old_reading_alone_is_shown_stale_never_as_current(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path, remote_sensors=REMOTE)).start()
    try:
        assert post(srv, {"temperature_c": 3.0, "measured_at": at(-7200)})[0] == 201  # max_age_s is 600
        state = topics(srv)["sensor/balcony"]
        assert state["data"]["temperature_c"] == 3.0
        assert state["stale"] is True
        assert abs(dt.datetime.fromisoformat(state["updated_at"]).timestamp() - (time.time() - 7200)) < 5
    finally:
        srv.stop()


def test_the_ordering_rule_holds_across_a_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path, remote_sensors=REMOTE)
    srv = ServerThread(config).start()
    try:
        assert post(srv, {"temperature_c": 5.0, "measured_at": at(-60)})[0] == 201
    finally:
        srv.stop()
    again = ServerThread(config).start()
    try:
        restored = topics(again)["sensor/balcony"]
        assert (restored["data"]["temperature_c"], restored["stale"]) == (5.0, True)
        assert post(again, {"temperature_c": -1.0, "measured_at": at(-3600)})[0] == 201
        assert topics(again)["sensor/balcony"]["data"]["temperature_c"] == 5.0, "older than the restored one"
        assert post(again, {"temperature_c": 6.0, "measured_at": at(-10)})[0] == 201
        fresh = topics(again)["sensor/balcony"]
        assert (fresh["data"]["temperature_c"], fresh["stale"]) == (6.0, False)
    finally:
        again.stop()
    assert sorted(t for _, t in stored(tmp_path / "var")) == [-1.0, 5.0, 6.0]


def test_the_same_reading_twice_is_acknowledged_and_stored_once(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path, remote_sensors=REMOTE)).start()
    try:
        doc = {"temperature_c": 4.5, "measured_at": at(-30)}
        assert post(srv, doc)[0] == 201
        assert post(srv, doc)[0] == 201  # a device retrying after a lost 201
        assert srv.board is not None
        assert srv.call(lambda: srv.board.readings.duplicates) == 1
    finally:
        srv.stop()
    assert stored(tmp_path / "var") == [("balcony", 4.5)]


def test_a_humidity_only_device_without_a_clock_can_post(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path, remote_sensors=REMOTE)).start()
    try:
        before = time.time()
        status, body = post(srv, {"humidity_pct": 55.5})
        assert status == 201, body
        data = topics(srv)["sensor/balcony"]["data"]
        assert (data["temperature_c"], data["humidity_pct"]) == (None, 55.5)
        assert before - 1 <= dt.datetime.fromisoformat(data["measured_at"]).timestamp() <= time.time() + 1
        history = json.loads(
            tornado.httpclient.HTTPClient().fetch(srv.url + "/api/sensors/balcony/history").body.decode()
        )
        assert [(p["temperature_c"], p["humidity_pct"]) for p in history["points"]] == [(None, 55.5)]
        status, body = post(srv, {"battery_pct": 80})
        assert (status, body["error"].split(":")[0]) == (400, "body")
    finally:
        srv.stop()


def test_waiting_is_a_status_with_nothing_else(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path, remote_sensors=REMOTE)).start()
    try:
        assert topics(srv)["sensor/balcony"] == {
            "data": None,
            "updated_at": None,
            "stale": False,
            "status": "waiting",
            "error": None,
        }
    finally:
        srv.stop()


def test_topics_are_the_current_configs(tmp_path: Path) -> None:
    two = [*REMOTE, {"id": "attic", "name": "Attic", "token": "attic-token-0123456789"}]
    srv = ServerThread(make_config(tmp_path, remote_sensors=two)).start()
    try:
        assert post(srv, {"temperature_c": 12.0}, sensor="attic", token="attic-token-0123456789")[0] == 201
        assert post(srv, {"temperature_c": 2.0})[0] == 201
    finally:
        srv.stop()
    # The attic sensor is removed from the config: its restored value must not come back on the page.
    again = ServerThread(make_config(tmp_path, remote_sensors=REMOTE)).start()
    try:
        names = set(topics(again))
        assert "sensor/attic" not in names
        assert "sensor/balcony" in names
        assert {"weather", "departures", "strava"}.isdisjoint(names), "sources the config does not have"
    finally:
        again.stop()
    assert ("attic", 12.0) in stored(tmp_path / "var"), "its history stays"


def test_a_sensor_renamed_in_the_config_is_renamed_at_the_restart(tmp_path: Path) -> None:
    """Not at its next reading (an hour away for a sleepy device): the restored value keeps its time and
    staleness, and carries the name the config gives now."""
    srv = ServerThread(make_config(tmp_path, remote_sensors=REMOTE)).start()
    try:
        assert post(srv, {"temperature_c": 2.0, "measured_at": at(-30)})[0] == 201
        before = topics(srv)["sensor/balcony"]
    finally:
        srv.stop()
    renamed = [{**REMOTE[0], "name": "Terrace"}]
    again = ServerThread(make_config(tmp_path, remote_sensors=renamed)).start()
    try:
        restored = topics(again)["sensor/balcony"]
        assert restored["data"] == {**before["data"], "name": "Terrace"}
        assert (restored["updated_at"], restored["stale"], restored["status"]) == (before["updated_at"], True, "ok")
    finally:
        again.stop()


def test_a_version_1_history_is_updated_in_place(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    conn = sqlite3.connect(data_dir / DB_NAME)
    conn.executescript(
        """
        CREATE TABLE readings (sensor_id TEXT NOT NULL, measured_at_ms INTEGER NOT NULL, temperature_c REAL NOT NULL,
            humidity_pct REAL, pressure_hpa REAL, battery_pct REAL, source TEXT,
            PRIMARY KEY (sensor_id, measured_at_ms)) WITHOUT ROWID;
        CREATE TABLE hourly (sensor_id TEXT NOT NULL, hour_ms INTEGER NOT NULL, n INTEGER NOT NULL,
            t_min REAL NOT NULL, t_max REAL NOT NULL, t_sum REAL NOT NULL,
            h_n INTEGER NOT NULL DEFAULT 0, h_min REAL, h_max REAL, h_sum REAL NOT NULL DEFAULT 0,
            p_n INTEGER NOT NULL DEFAULT 0, p_min REAL, p_max REAL, p_sum REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (sensor_id, hour_ms)) WITHOUT ROWID;
        PRAGMA user_version = 1;
        """
    )
    t_ms = int((time.time() - 600) * 1000)
    conn.execute("INSERT INTO readings VALUES ('balcony', ?, 7.5, 60.0, NULL, NULL, 'lan')", (t_ms,))
    hour_ms = t_ms - t_ms % 3_600_000
    conn.execute(
        "INSERT INTO hourly VALUES ('balcony', ?, 1, 7.5, 7.5, 7.5, 1, 60, 60, 60, 0, NULL, NULL, 0)", (hour_ms,)
    )
    conn.commit()
    conn.close()
    srv = ServerThread(make_config(tmp_path, remote_sensors=REMOTE)).start()
    try:
        assert post(srv, {"humidity_pct": 61.0})[0] == 201  # needs the new schema: no temperature
        history = json.loads(tornado.httpclient.HTTPClient().fetch(srv.url + "/api/sensors/balcony/history").body)
        assert [p["temperature_c"] for p in history["points"]] == [7.5, None]
    finally:
        srv.stop()
    assert stored(data_dir, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert stored(data_dir, "SELECT count(*) FROM hourly WHERE t_n = 1") == [(1,)]
