"""Several displays, one set of pollers, against a real Mosquitto: a leader Homeboard (a real process in demo mode)
shares its topics; a follower shows them with the leader's times, runs no pollers of its own, marks them stale and
unavailable when the leader dies (its last will), and recovers by itself when the leader is back."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_config
from tests.mqttbroker import Broker, Client, Page, get_json, health, mqtt_settings, topic_state, wait_until
from tests.procutil import ServerProcess
from tests.serverthread import ServerThread


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def start_leader(tmp_path: Path, broker: Broker) -> ServerProcess:
    doc = {"data_dir": str(tmp_path / "leader"), "mqtt": mqtt_settings(broker.port, name="kitchen", role="leader")}
    leader = ServerProcess(tmp_path, doc, demo=True)
    leader.wait_ready()
    return leader


def follower_config(tmp_path: Path, broker: Broker) -> Any:
    return make_config(
        tmp_path / "follower",
        # A follower with sources in its file still polls nothing: the leader does, for the household.
        sources={"weather": {"api_key": "not-used", "base_url": "http://127.0.0.1:9/v1"}},
        mqtt=mqtt_settings(broker.port, name="hall", role="follower", leader="homeboard/kitchen"),
    )


def fresh(url: str, topic: str) -> dict[str, Any] | None:
    state = topic_state(url, topic)
    return state if state and state["status"] == "ok" and not state["stale"] and state["data"] else None


def test_a_follower_shows_the_leaders_topics_and_survives_its_death(tmp_path: Path, broker: Broker) -> None:
    leader = start_leader(tmp_path, broker)
    follower = ServerThread(follower_config(tmp_path, broker))
    follower.start()
    try:
        assert wait_until(lambda: fresh(leader.url, "weather") and fresh(leader.url, "sensor/living_room"), 15)
        for topic in ("weather", "departures", "strava", "sensor/living_room"):
            mine = wait_until(lambda t=topic: fresh(follower.url, t), 15)
            assert mine, f"{topic} did not arrive: {topic_state(follower.url, topic)}"
            theirs = topic_state(leader.url, topic)
            if mine["updated_at"] != theirs["updated_at"]:  # the leader refreshed in between: look again
                mine, theirs = fresh(follower.url, topic), topic_state(leader.url, topic)
            assert mine["data"] == theirs["data"]
            assert mine["updated_at"] == theirs["updated_at"]  # the leader's time, so the same freshness rules
        report = health(follower.url)
        assert not {"weather", "departures", "strava"} & set(report["sources"])  # no pollers of its own
        assert report["mqtt"]["follower"]["leader_online"] is True
        assert "weather" in report["mqtt"]["follower"]["topics"]
        # The leader's sensors keep a history on the follower too (its page draws their sparklines).
        assert wait_until(lambda: get_json(follower.url + "/api/sensors/living_room/history")["points"], 10)

        async def leader_dies_and_comes_back() -> ServerProcess:
            page = Page(follower.ws_url)
            await page.open()
            leader.stop(signal.SIGKILL)  # no goodbye: the broker publishes the leader's last will
            gone = await page.until(lambda u: u["topic"] == "weather" and u["error"] == "leader offline", 10)
            assert gone["status"] == "unavailable"
            assert gone["stale"] is True
            assert gone["data"] is not None  # the last value stays visible, marked
            again = start_leader(tmp_path, broker)
            back = await page.until(lambda u: u["topic"] == "weather" and u["status"] == "ok" and not u["stale"], 20)
            assert back["error"] is None
            page.close()
            return again

        leader = asyncio.run(leader_dies_and_comes_back())
        assert wait_until(lambda: health(follower.url)["mqtt"]["follower"]["leader_online"] is True)
    finally:
        follower.stop()
        leader.stop()


def test_a_follower_refuses_a_broken_message_and_keeps_the_last_good_value(tmp_path: Path, broker: Broker) -> None:
    fake_leader = Client(broker.port, "fake-leader").connect()
    good = {"data": {"location": "Here"}, "updated_at": "2026-11-25T14:05:00+01:00", "stale": False, "status": "ok"}
    fake_leader.publish("homeboard/kitchen/status", "online", retain=True)
    fake_leader.publish(
        "homeboard/kitchen/topics/weather", json.dumps({**good, "error": None, "max_age_s": 1e9}), retain=True
    )
    follower = ServerThread(follower_config(tmp_path, broker)).start()
    try:
        state = wait_until(lambda: (s := topic_state(follower.url, "weather")) and s["status"] == "ok" and s)
        assert state["updated_at"] == "2026-11-25T14:05:00+01:00"
        assert state["stale"] is False  # within the leader's max age
        fake_leader.publish("homeboard/kitchen/topics/weather", b'{"data": {"t": NaN}, "status": "ok"}')
        state = wait_until(lambda: (s := topic_state(follower.url, "weather"))["status"] == "error" and s)
        assert state["error"] == (
            "the leader sent a broken message on homeboard/kitchen/topics/weather: NaN is not a finite number"
        )
        assert state["data"] == {"location": "Here"}
        # An old value is stale by the leader's own max age.
        old = {**good, "updated_at": "2020-01-01T00:00:00+01:00", "error": None, "max_age_s": 600}
        fake_leader.publish("homeboard/kitchen/topics/weather", json.dumps(old))
        state = wait_until(lambda: (s := topic_state(follower.url, "weather"))["status"] == "ok" and s)
        assert state["stale"] is True
        # Topics it was not told to follow are left alone.
        fake_leader.publish("homeboard/kitchen/topics/display", json.dumps({**good, "error": None}))
        assert wait_until(lambda: health(follower.url)["mqtt"]["messages_received"] >= 5)
        own = topic_state(follower.url, "display")  # every display has its own screen state
        assert own["data"] != good["data"], "the leader's display state was taken for this display's"
    finally:
        follower.stop()
        fake_leader.close()


def test_a_follower_that_loses_the_broker_says_so_and_recovers(tmp_path: Path, broker: Broker) -> None:
    fake_leader = Client(broker.port, "fake-leader").connect()
    now = {"data": {"location": "Here"}, "stale": False, "status": "ok", "error": None, "max_age_s": 3600}
    now["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    fake_leader.publish("homeboard/kitchen/status", "online", retain=True)
    fake_leader.publish("homeboard/kitchen/topics/weather", json.dumps(now), retain=True)
    fake_leader.close()
    follower = ServerThread(follower_config(tmp_path, broker)).start()
    try:
        assert wait_until(lambda: fresh(follower.url, "weather"))

        async def broker_restarts() -> None:
            page = Page(follower.ws_url)
            await page.open()
            broker.stop()
            lost = await page.until(lambda u: u["topic"] == "weather" and u["status"] == "unavailable", 10)
            assert lost["error"].startswith("no connection to the MQTT broker")
            assert lost["data"] == {"location": "Here"}
            broker.start()  # persistence kept the leader's retained state: it comes again on resubscribe
            back = await page.until(lambda u: u["topic"] == "weather" and u["status"] == "ok", 10)
            assert back["stale"] is False
            assert back["updated_at"] == lost["updated_at"]  # still the leader's time, not the time it came again
            page.close()

        asyncio.run(broker_restarts())
    finally:
        follower.stop()
