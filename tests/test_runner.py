"""The source runner: isolation of failures, back-off, Retry-After, hangs, health."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import tornado.httpclient

from server.core.runner import BACKOFF_CAP_FACTOR, backoff_delay_s
from server.core.source import AuthError, RateLimitedError, SimpleSource, TransientError, UnavailableError
from tests.conftest import make_config
from tests.serverthread import ServerThread


def test_backoff_doubles_and_is_capped_at_eight_intervals() -> None:
    delays = [backoff_delay_s(30, n) for n in range(1, 10)]
    assert delays[:4] == [10, 20, 40, 80]
    assert max(delays) == 30 * BACKOFF_CAP_FACTOR
    assert backoff_delay_s(30, 1, retry_after_s=900) == 900, "Retry-After wins over a shorter back-off"
    assert backoff_delay_s(600, 30) == 4800


def wait_for(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_a_source_that_raises_does_not_stop_the_others(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path)).start()
    good_runs = []

    def good() -> dict:
        good_runs.append(1)
        return {"good": {"n": len(good_runs)}}

    def bad() -> dict:
        raise ZeroDivisionError("bug")

    def flaky() -> dict:
        raise TransientError("network down")

    try:
        for src in (
            SimpleSource("good", good, interval_s=0.1, topics=("good",)),
            SimpleSource("bad", bad, interval_s=0.1, topics=("bad",)),
            SimpleSource("flaky", flaky, interval_s=0.1, topics=("flaky",)),
        ):
            srv.call(srv.board.runner.add, src)
        wait_for(lambda: len(good_runs) >= 5)
        state = srv.call(lambda: srv.board.hub.get("good"))
        assert state.status == "ok"
        assert srv.call(lambda: srv.board.hub.get("bad")).error == "internal error: ZeroDivisionError"
        assert srv.call(lambda: srv.board.hub.get("flaky")).error == "network down"
        health = tornado.httpclient.HTTPClient().fetch(srv.url + "/healthz")
        import json

        body = json.loads(health.body)
        assert body["status"] == "degraded"
        assert body["sources"]["bad"]["failing"] is True
        assert body["sources"]["good"]["last_success"] is not None
        assert body["sources"]["good"]["failing"] is False
        assert set(body["sources"]["good"]) >= {"last_success", "last_error", "next_run"}
    finally:
        srv.stop()


def test_failures_before_error_keeps_status_until_the_threshold(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path)).start()
    calls = []

    def sensor() -> dict:
        calls.append(1)
        if len(calls) == 1:
            return {"sensor/s": {"temperature_c": 20.0}}
        raise UnavailableError("nothing answers at i2c-1 0x76")

    try:
        src = SimpleSource("s", sensor, interval_s=3600, topics=("sensor/s",), failures_before_error=3)
        srv.call(srv.board.runner.add, src)
        wait_for(lambda: len(calls) >= 1)
        runner = srv.board.runner
        for expected_status in ("ok", "ok", "unavailable"):
            srv.call(runner.run_once, src)
            assert srv.call(lambda: srv.board.hub.get("sensor/s")).status == expected_status
        state = srv.call(lambda: srv.board.hub.get("sensor/s"))
        assert state.data == {"temperature_c": 20.0}
        assert "0x76" in state.error
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("error", "expected_delay_s"),
    [(RateLimitedError("429", retry_after_s=120), 120), (AuthError("bad key"), AuthError.DEFAULT_RETRY_S)],
)
def test_retry_after_and_auth_errors_wait_long(tmp_path: Path, error: Exception, expected_delay_s: float) -> None:
    srv = ServerThread(make_config(tmp_path)).start()

    def fail() -> dict:
        raise error

    try:
        src = SimpleSource("x", fail, interval_s=5, topics=("x",))
        srv.call(srv.board.runner.add, src)
        delay = srv.call(srv.board.runner.run_once, src)
        assert expected_delay_s * 0.89 <= delay <= expected_delay_s * 1.11
    finally:
        srv.stop()


def test_a_hung_fetch_is_reported_and_not_stacked(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path)).start()
    release = threading.Event()
    started = []

    def hang() -> dict:
        started.append(1)
        release.wait(10)
        return {"h": {"late": True}}

    try:
        src = SimpleSource("h", hang, interval_s=3600, topics=("h",), timeout_s=0.3)
        srv.call(srv.board.runner.add, src)

        def error() -> str:
            return srv.call(lambda: srv.board.hub.get("h")).error or ""

        # The runner's own first run (within a second of add) hangs and is reported once its timeout passes...
        wait_for(lambda: "no answer within" in error())
        # ...and the next run does not start a second fetch beside the hung one.
        srv.call(srv.board.runner.run_once, src)
        assert "still waiting" in error()
        assert len(started) == 1, "a second fetch must not be stacked on a hung one"
        t0 = time.monotonic()
        srv.call(lambda: srv.board.hub.publish("other", {"ok": True}))
        assert time.monotonic() - t0 < 0.5, "the loop stays responsive while a fetch hangs"
    finally:
        release.set()
        srv.stop()


def test_failure_logged_once_and_recovery_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    srv = ServerThread(make_config(tmp_path)).start()
    outcomes = [TransientError("down")] * 5 + [None]

    def fetch() -> dict:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return {"t": {"v": 1}}

    try:
        src = SimpleSource("t", fetch, interval_s=3600, topics=("t",))
        srv.call(srv.board.runner.add, src)
        with caplog.at_level("INFO", logger="server.core.runner"):
            for _ in range(6):
                srv.call(srv.board.runner.run_once, src)
        failed = [r for r in caplog.records if "failed" in r.getMessage()]
        recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
        assert len(failed) == 1
        assert len(recovered) == 1
    finally:
        srv.stop()
