"""A reading's JSON body, strictly: a LAN sensor's POST (server/web/ingest.py) and an MQTT payload
(server/mqtt/payloads.py) are decoded here, and their fields become a Reading by the one validation.

Bad input never gets further than here: NaN/Infinity, 1e999, huge integers,
deep nesting, duplicate keys, lone surrogates, invalid UTF-8 and unknown fields are refused with a 400 that
names the problem, because a poison value would otherwise crash the SQLite writer or the WebSocket encoder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from server.core.timeutil import parse_iso
from server.readings.reading import QUANTITIES, Reading, ReadingError, make_reading

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


def quote(text: str, limit: int = 40) -> str:
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
            raise IngestError(f"{quote(key)[1:-1]}: duplicate key")
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
            raise ReadingError(quote(key)[1:-1], f"unknown field (known: {', '.join(FIELDS)})")
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
                "measured_at", f"{quote(raw_time)} is not an ISO 8601 time with offset, like 2026-11-25T14:05:00+01:00"
            ) from None
    return make_reading(sensor_id, values, measured_at_s=measured_at_s, now_s=now_s, max_age_s=max_age_s, source=source)
