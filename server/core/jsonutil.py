"""JSON for the wire: strict (no NaN/Infinity ever), compact, UTF-8."""

from __future__ import annotations

import json
from typing import Any

_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def dumps(obj: Any) -> str:
    """Encode for a browser. Raises ValueError on NaN/Infinity: JSON.parse would choke on them."""
    return _ENCODER.encode(obj)


def dumpb(obj: Any) -> bytes:
    return dumps(obj).encode("utf-8")
