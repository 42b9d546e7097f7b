"""The ingest endpoint fuzzed with hypothesis over real HTTP: never a 5xx, never a crash, nothing non-finite stored."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_config
from tests.serverthread import ServerThread
from tests.test_ingest import TOKEN, db_rows, raw_post

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * 5000, "-0", "0.0e-999"]),
)
FIELDS = st.sampled_from(["temperature_c", "humidity_pct", "pressure_hpa", "battery_pct", "measured_at", "x", "\ud800"])


def encode_number(value: object) -> str:
    if isinstance(value, str):
        return value  # a raw token: NaN, 1e999, a 5000-digit integer...
    if isinstance(value, float) and not math.isfinite(value):
        return {math.inf: "Infinity", -math.inf: "-Infinity"}.get(value, "NaN")
    return json.dumps(value)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["object", "deep", "bytes", "surrogate", "duplicate", "big", "bom"]))
    if kind == "object":
        items = draw(st.lists(st.tuples(FIELDS, NUMBERS), max_size=6))
        inner = ",".join(f"{json.dumps(k)}:{encode_number(v)}" for k, v in items)
        return ("{" + inner + "}").encode("utf-8", "surrogatepass")
    if kind == "deep":
        depth = draw(st.integers(1, 30_000))
        return b'{"temperature_c":' + b"[" * depth + b"1" + b"]" * depth + b"}"
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "surrogate":
        return b'{"temperature_c": 20, "measured_at": "\\ud800"}'
    if kind == "duplicate":
        return b'{"temperature_c": 20, "temperature_c": 99}'
    if kind == "bom":
        return b'\xef\xbb\xbf{"temperature_c": 20}'
    return b'{"temperature_c": 20, "pad": "' + b"x" * draw(st.integers(4000, 70_000)) + b'"}'


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    remote = [{"id": "balcony", "name": "Balcony", "token": TOKEN}]
    server = ServerThread(make_config(tmp, remote_sensors=remote)).start()
    yield server
    server.stop()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies())
def test_fuzzed_bodies_never_5xx(srv: ServerThread, body: bytes) -> None:
    status, answer = raw_post(srv, body, {"Content-Type": "application/json"})
    assert status in (201, 400, 413), (status, body[:200])
    if status != 201:
        assert isinstance(answer, dict)
        assert answer["error"]


def test_nothing_stored_is_non_finite(srv: ServerThread) -> None:
    test_fuzzed_bodies_never_5xx(srv)  # run the fuzz first when this test runs alone
    rows = db_rows(srv, "SELECT temperature_c, humidity_pct, pressure_hpa, battery_pct FROM readings")
    for row in rows:
        for value in row:
            assert value is None or math.isfinite(value), row
    state = srv.call(lambda: srv.board.hub.get("sensor/balcony"))
    assert state is not None
