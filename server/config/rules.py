"""How one config value is judged: the error type, a field's own rule (declared beside the field with `ruled`), and
the single-field checks several sections share. Rules across fields: check_config in server/config/sections.py."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class ConfigError(Exception):
    """The config is wrong. str(err) is one line starting with the key path."""


def describe(value: Any) -> str:
    """A value as an error message quotes it: strings quoted and cut at 40 characters, containers by kind."""
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= 40 else f'"{value[:37]}..."'
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


Validate = Callable[[Any, str], None]  # (value, key path) → None, or raises ConfigError naming the key path


@dataclass(frozen=True)
class Rule:
    """A field's own constraint, checked by the builder wherever the field appears (not for defaults)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] = ()
    pattern: str = ""  # a string must match it whole
    what: str = ""  # "a BCM GPIO number", "an http(s) URL": what is expected
    why: str = ""  # "WeatherAPI's range": said after it
    validate: Validate | None = None  # what no bound or pattern says (a time of day, a known time zone)

    def check(self, value: Any, path: str) -> None:
        if value is None:
            return
        if self.choices and value not in self.choices:
            words = (
                " or ".join(map(str, self.choices))
                if len(self.choices) == 2
                else "one of " + ", ".join(map(str, self.choices))
            )
            raise ConfigError(f"{path}: expected {words}, got {describe(value)}")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise ConfigError(f"{path}: expected {self.what}, got {describe(value)}")
        why = f" ({self.why})" if self.why else ""
        if self.ge is not None and self.le is not None:
            if not self.ge <= value <= self.le:
                what = f"{self.what} " if self.what else ""
                raise ConfigError(f"{path}: expected {what}{self.ge:g}-{self.le:g}{why}, got {value:g}")
        elif self.gt is not None and not value > self.gt:
            raise ConfigError(f"{path}: must be greater than {self.gt:g}{why}, got {value:g}")
        elif self.ge is not None and not value >= self.ge:
            raise ConfigError(f"{path}: must be {self.ge:g} or more{why}, got {value:g}")
        if self.validate is not None:
            self.validate(value, path)


def ruled(default: Any = dataclasses.MISSING, **rule: Any) -> Any:
    """A field with its rule beside it: `port: int = ruled(8080, ge=1, le=65535)`."""
    return field(default=default, metadata={"rule": Rule(**rule)})


POSITIVE = {"gt": 0}
PORT = {"ge": 1, "le": 65535}
HTTP_URL = {"pattern": r"https?://[^\s/?#]+[^\s?#]*", "what": "an http(s) URL"}

# ---------------------------------------------------------------- checks several fields share

_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # also what Home Assistant allows in node_id / object_id


def identifier(value: str, path: str) -> None:
    """A sensor id, an MQTT name, a Home Assistant node id: safe in a topic, a URL and a file name."""
    if not _ID_RE.fullmatch(value):
        raise ConfigError(f"{path}: use letters, digits, _ or - (got {describe(value)})")


def time_of_day(value: str, path: str) -> None:
    """A time of day like "07:30" (local time)."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", value)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ConfigError(f'{path}: expected a time like "07:30", got {describe(value)}')


def time_zone(value: str, path: str) -> None:
    """An IANA zone name the zoneinfo database knows."""
    try:
        zoneinfo.ZoneInfo(value)
    except Exception as err:  # ValueError, ZoneInfoNotFoundError, and what a malformed key raises
        raise ConfigError(f'{path}: unknown time zone "{value}"') from err


def mqtt_topic(value: str, path: str) -> None:
    """A concrete topic (no wildcards): what we subscribe to or publish under."""
    if not value or len(value) > 512:
        raise ConfigError(f"{path}: expected an MQTT topic like zigbee2mqtt/kitchen, got {describe(value)}")
    if "+" in value or "#" in value or "\x00" in value:
        raise ConfigError(f"{path}: must be one topic without the wildcards + and # (got {describe(value)})")
    if value.startswith("/") or value.endswith("/") or value.startswith("$"):
        raise ConfigError(f"{path}: must not start or end with / or start with $ (got {describe(value)})")


_HOST_NAME_RE = re.compile(r"(?=.{1,253}\.?$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?")


def host_names(hosts: tuple[str, ...], path: str) -> None:
    """Bare names or addresses, as a browser writes them in the Host header minus the port."""
    for i, host in enumerate(hosts):
        text = host.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        try:
            ipaddress.ip_address(text)
            continue
        except ValueError:
            pass
        if not _HOST_NAME_RE.fullmatch(text) or text.replace(".", "").isdigit():
            raise ConfigError(
                f"{path}[{i}]: expected a host name or address like homeboard.lan or 192.168.1.20 "
                f"(no scheme, port, path or wildcard), got {describe(host)}"
            )
