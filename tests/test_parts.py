"""The feature contract (server/core/parts.py): parts start in order and stop in reverse, a failing stop stops
nothing else, and one verdict reads the health sections for /healthz and Home Assistant alike."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server.core.parts import Part, Parts, verdict
from server.homeboard import Homeboard
from tests.conftest import make_config


def _recording(log: list[str], name: str, fail_stop: bool = False) -> Part:
    async def start() -> None:
        log.append(f"start {name}")

    async def stop() -> None:
        log.append(f"stop {name}")
        if fail_stop:
            raise OSError("disk gone")

    return Part(name, start, stop)


def test_parts_start_in_order_and_stop_in_reverse_past_a_failing_stop(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    parts = Parts([_recording(log, "history"), _recording(log, "display", fail_stop=True), _recording(log, "mqtt")])
    asyncio.run(parts.start())
    asyncio.run(parts.stop())
    assert log == ["start history", "start display", "start mqtt", "stop mqtt", "stop display", "stop history"]
    assert "stopping display failed" in caplog.text


def test_two_parts_cannot_share_a_name() -> None:
    with pytest.raises(ValueError, match="two parts with one name"):
        Parts([Part("history"), Part("history")])


def test_a_health_check_that_raises_is_a_degraded_section_not_an_error() -> None:
    def broken() -> dict[str, object]:
        raise KeyError("oops")

    parts = Parts([Part("history", health=lambda: {"status": "ok"}), Part("gpio"), Part("wall", health=broken)])
    sections = parts.health()
    assert sections == {
        "history": {"status": "ok"},
        "wall": {"status": "degraded", "error": "health check failed: KeyError"},
    }
    assert verdict(sections).problems == ("wall: health check failed: KeyError",)


def test_the_verdict_names_failing_sources_first_then_sections_by_name() -> None:
    sections = {
        "history": {"status": "degraded", "error": "write failed: disk full"},
        "sources": {
            "weather": {"failing": True, "last_error": "no answer"},
            "departures": {"failing": False, "last_error": None},
            "calendar": {"failing": True, "last_error": "HTTP 404"},
        },
        "display": {"status": "ok"},
        "mqtt": {"status": "degraded", "connected": False},
        "calendar": {"status": "degraded", "error": "Work: HTTP 404"},
    }
    found = verdict(sections)
    assert found.status == "degraded"
    assert found.problems == (
        "calendar: HTTP 404",
        "weather: no answer",
        "calendar: Work: HTTP 404",
        "history: write failed: disk full",
        "mqtt: degraded",
    )
    assert "mqtt: degraded" not in verdict(sections, ignore=("mqtt",)).problems


def test_all_well_is_ok_with_no_problems() -> None:
    found = verdict({"sources": {"weather": {"failing": False}}, "history": {"status": "ok"}, "x": {"count": 3}})
    assert (found.status, found.problems) == ("ok", ())


def test_the_board_lists_its_parts_in_dependency_order(tmp_path: Path) -> None:
    config = make_config(tmp_path, mqtt={"host": "127.0.0.1", "port": 1})
    board = Homeboard.build(config)
    try:
        # The history first, so it stops last: MQTT stops before it, and nothing is acknowledged unstored.
        assert [part.name for part in board.parts.parts] == [
            "history",
            "gpio",
            "display",
            "wall",
            "mqtt",
            "sensors",
            "sources",
        ]
    finally:
        board.executor.shutdown(wait=False)
