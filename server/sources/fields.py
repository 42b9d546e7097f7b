"""Reading upstream JSON defensively: each accessor names the field path when it is missing or has a wrong type."""

from __future__ import annotations

import math
from typing import Any

from server.core.source import PayloadError

_MISSING = object()
# Instants outside 2000-2100 are damaged data, and far ones would overflow datetime (an exception, not an error).
EPOCH_MIN_S = 946_684_800.0
EPOCH_MAX_S = 4_102_444_800.0


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 30 else value[:27] + "..."
        return f'"{shown}"'
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 30 else text[:27] + "..."


class Reader:
    """Field accessors for one source; errors read like "weather: current.temp_c: expected a number, got "n/a"".

    Numbers arriving as strings ("0", "76") are accepted because WeatherAPI drifted between versions; booleans
    are never numbers; NaN and infinities are refused (they cannot go on the wire).
    """

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, problem: str) -> PayloadError:
        return PayloadError(f"{self.source}: {path}: {problem}")

    def _get(self, obj: Any, key: str | int, path: str) -> Any:
        if isinstance(key, int):
            return obj[key] if isinstance(obj, list) and -len(obj) <= key < len(obj) else _MISSING
        if not isinstance(obj, dict):
            raise self.error(path.rsplit(".", 1)[0] or path, f"expected an object, got {_describe(obj)}")
        return obj.get(key, _MISSING)

    @staticmethod
    def join(path: str, key: str | int) -> str:
        if isinstance(key, int):
            return f"{path}[{key}]"
        return f"{path}.{key}" if path else key

    def obj(self, obj: Any, key: str, path: str = "", *, optional: bool = False) -> dict[str, Any] | None:
        full = self.join(path, key)
        value = self._get(obj, key, full)
        if value is _MISSING or value is None:
            if optional:
                return None
            raise self.error(full, "missing")
        if not isinstance(value, dict):
            raise self.error(full, f"expected an object, got {_describe(value)}")
        return value

    def req_obj(self, obj: Any, key: str, path: str = "") -> dict[str, Any]:
        value = self.obj(obj, key, path)
        if value is None:  # pragma: no cover - obj() raises for a missing required object
            raise self.error(self.join(path, key), "missing")
        return value

    def items(self, obj: Any, key: str, path: str = "", *, optional: bool = False) -> list[Any]:
        full = self.join(path, key)
        value = self._get(obj, key, full)
        if value is _MISSING or value is None:
            if optional:
                return []
            raise self.error(full, "missing")
        if not isinstance(value, list):
            raise self.error(full, f"expected a list, got {_describe(value)}")
        return value

    def text(self, obj: Any, key: str, path: str = "", *, optional: bool = False, strip: bool = True) -> Any:
        full = self.join(path, key)
        value = self._get(obj, key, full)
        if value is _MISSING or value is None:
            if optional:
                return None
            raise self.error(full, "missing")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(full, f"expected text, got {_describe(value)}")
        text = str(value)
        return text.strip() if strip else text

    def number(
        self,
        obj: Any,
        key: str,
        path: str = "",
        *,
        optional: bool = False,
        within: tuple[float, float] | None = None,
    ) -> Any:
        """A finite number (int, float or numeric string); `within` = (low, high) of what is physically plausible."""
        full = self.join(path, key)
        value = self._get(obj, key, full)
        if value is _MISSING or value is None or (optional and value == ""):
            if optional:
                return None
            raise self.error(full, "missing")
        number = self.coerce_num(value, full)
        if within is not None and not within[0] <= number <= within[1]:
            raise self.error(full, f"{number:g} is outside the plausible range {within[0]:g} to {within[1]:g}")
        return number

    def coerce_num(self, value: Any, full: str) -> float:
        if isinstance(value, bool):
            raise self.error(full, f"expected a number, got {_describe(value)}")
        try:
            if isinstance(value, int | float):
                number = float(value)
            elif isinstance(value, str):
                number = float(value.strip())
            else:
                raise self.error(full, f"expected a number, got {_describe(value)}")
        except (ValueError, OverflowError):  # "abc", or an integer too big for a float
            raise self.error(full, f"expected a number, got {_describe(value)}") from None
        if not math.isfinite(number):
            raise self.error(full, f"expected a finite number, got {_describe(value)}")
        return number

    def integer(
        self,
        obj: Any,
        key: str,
        path: str = "",
        *,
        optional: bool = False,
        within: tuple[float, float] | None = None,
    ) -> Any:
        number = self.number(obj, key, path, optional=optional, within=within)
        if number is None:
            return None
        if number != int(number):
            raise self.error(self.join(path, key), f"expected a whole number, got {number:g}")
        return int(number)

    def epoch(self, obj: Any, key: str, path: str = "") -> float:
        """Epoch seconds between 2000 and 2100."""
        value = self.number(obj, key, path)
        return self.check_epoch(value, self.join(path, key))

    def check_epoch(self, value: float, full: str) -> float:
        if not EPOCH_MIN_S <= value <= EPOCH_MAX_S:
            raise self.error(full, f"time out of range ({value:g})")
        return value

    def flag(self, obj: Any, key: str, path: str = "") -> bool:
        """1/0 (WeatherAPI's is_day) or true/false."""
        full = self.join(path, key)
        value = self._get(obj, key, full)
        if isinstance(value, bool):
            return value
        if value is _MISSING or value is None:
            raise self.error(full, "missing")
        number = self.coerce_num(value, full)
        if number not in (0.0, 1.0):
            raise self.error(full, f"expected 0 or 1, got {_describe(value)}")
        return number == 1.0
