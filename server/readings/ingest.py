"""POST /api/sensors/{id}/readings: strict parsing of a LAN sensor's body, and the handler that hands the reading
to the reading path (shown at once, stored durably) and answers 201 after the commit.

Bad input never gets further than here: NaN/Infinity, 1e999, huge integers,
deep nesting, duplicate keys, lone surrogates, invalid UTF-8 and unknown fields are refused with a 400 that
names the problem, because a poison value would otherwise crash the SQLite writer or the WebSocket encoder.
"""

from __future__ import annotations

import hmac
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tornado.web

from server.config import RemoteSensorConfig
from server.core.handlers import SmallBodyHandler
from server.core.timeutil import parse_iso
from server.readings.history import HistoryError
from server.readings.path import ReadingPath
from server.readings.reading import QUANTITIES, Reading, ReadingError, iso_time, make_reading

MAX_INT_DIGITS = 20
FIELDS = (*QUANTITIES, "measured_at")
EXAMPLE = '{"temperature_c": 21.5, "humidity_pct": 40.2, "measured_at": "2026-11-25T14:05:00+01:00"}'


class IngestError(ReadingError):
    """The body is not JSON we accept; str() names the field (or "body") and the problem."""

    def __init__(self, message: str) -> None:
        field, _, problem = message.partition(": ")
        super().__init__(field, problem)


@dataclass(frozen=True)
class _Bad:
    """Stands in for a value the JSON parser met that must not exist, so the error can name its field."""

    problem: str


def _quote(text: str, limit: int = 40) -> str:
    """A field name or value for an error message: ASCII-escaped (lone surrogates included), bounded."""
    return json.dumps(text[:limit])


def _parse_constant(name: str) -> _Bad:
    return _Bad(f"{name} is not a finite number")


def _parse_float(text: str) -> float | _Bad:
    value = float(text)
    return value if math.isfinite(value) else _Bad(f"{text[:20]} is out of range (not a finite number)")


def _parse_int(text: str) -> int | _Bad:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return _Bad(f"an integer with {digits} digits is too large")
    return int(text)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if _has_surrogate(key):
            raise IngestError("body: a key contains a lone surrogate (not valid Unicode)")
        if key in obj:
            raise IngestError(f"{_quote(key)[1:-1]}: duplicate key")
        obj[key] = value
    return obj


def decode_json(body: bytes) -> dict[str, Any]:
    """Strict JSON → the top-level object. Raises IngestError."""
    if not body.strip():
        raise IngestError(f"body: empty; send a JSON object like {EXAMPLE}")
    if body.startswith(b"\xef\xbb\xbf"):
        raise IngestError("body: starts with a UTF-8 byte-order mark; send plain UTF-8 JSON")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise IngestError(f"body: not valid UTF-8 (byte {err.start})") from None
    try:
        doc = json.loads(
            text,
            parse_constant=_parse_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
            object_pairs_hook=_pairs,
        )
    except RecursionError:
        raise IngestError("body: nested too deeply") from None
    except json.JSONDecodeError as err:
        raise IngestError(f"body: not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    if not isinstance(doc, dict):
        raise IngestError(f"body: expected a JSON object like {EXAMPLE}")
    return doc


def reading_from_body(sensor_id: str, doc: dict[str, Any], *, now_s: float, max_age_s: float, source: str) -> Reading:
    """A decoded body (a LAN POST, or an MQTT payload mapped to the same fields) → a validated Reading.

    Raises ReadingError naming the first bad field; the rules themselves are server.readings.reading's.
    """
    for key in doc:
        if key not in FIELDS:
            raise ReadingError(_quote(key)[1:-1], f"unknown field (known: {', '.join(FIELDS)})")
    values: dict[str, Any] = {}
    for field in QUANTITIES:
        value = doc.get(field)
        if isinstance(value, _Bad):
            raise ReadingError(field, value.problem)
        values[field] = value
    measured_at_s: float | None = None
    raw_time = doc.get("measured_at")
    if raw_time is not None:
        if isinstance(raw_time, _Bad) or not isinstance(raw_time, str):
            raise ReadingError("measured_at", "expected an ISO 8601 time string like 2026-11-25T14:05:00+01:00")
        if _has_surrogate(raw_time):
            raise ReadingError("measured_at", "contains a lone surrogate (not valid Unicode)")
        try:
            measured_at_s = parse_iso(raw_time)
        except ValueError:
            raise ReadingError(
                "measured_at", f"{_quote(raw_time)} is not an ISO 8601 time with offset, like 2026-11-25T14:05:00+01:00"
            ) from None
    return make_reading(sensor_id, values, measured_at_s=measured_at_s, now_s=now_s, max_age_s=max_age_s, source=source)


class IngestHandler(SmallBodyHandler):
    """Order of checks: unknown sensor 404 → token 401 → size 413 → body 400 → shown → durable store → 201."""

    MAX_BODY_BYTES = 4096  # a reading is a few dozen bytes; a device that sends more has a bug

    def initialize(
        self,
        sensors: dict[str, RemoteSensorConfig],
        readings: ReadingPath,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sensors = sensors
        self.readings = readings
        self.clock = clock
        self._sensor: RemoteSensorConfig | None = None

    def before_body(self) -> tuple[int, dict[str, Any]] | None:
        sensor = self.sensors.get(self.path_args[0])
        if sensor is None:
            return (404, {"error": f"unknown sensor {_quote(self.path_args[0], 64)}"})
        if not self._authorized(sensor):
            self.set_header("WWW-Authenticate", 'Bearer realm="homeboard"')
            return (401, {"error": "unauthorized"})
        self._sensor = sensor
        return None

    def _authorized(self, sensor: RemoteSensorConfig) -> bool:
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        # Header text is latin-1 in tornado: back to its raw bytes, compared in constant time.
        given = token.strip().encode("latin-1", "replace")
        return scheme.lower() == "bearer" and hmac.compare_digest(given, sensor.token.encode("utf-8"))

    async def post(self, sensor_id: str) -> None:
        if self.answered():
            return
        sensor = self._sensor
        if sensor is None:  # pragma: no cover - prepare() sets either _sensor or _early
            raise tornado.web.HTTPError(500)
        try:
            reading = reading_from_body(
                sensor.id,
                decode_json(self.body()),
                now_s=self.clock(),
                max_age_s=self.readings.retention_s,
                source="lan",
            )
        except ReadingError as err:
            self.write_json({"error": str(err)}, 400)
            return
        try:
            await self.readings.submit(reading)  # shown at once; returns after the durable commit
        except HistoryError as err:
            # The device keeps the reading and retries on any non-2xx: nothing is lost by saying no.
            self.write_json({"error": str(err)}, 503)
            return
        measured_at = iso_time(reading.measured_at_s, self.readings.hub.tz)
        self.write_json({"sensor_id": sensor.id, "stored": True, "measured_at": measured_at}, 201)
