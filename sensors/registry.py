"""Every sensor type Homeboard knows, in one list. Adding a chip: its driver module declares a SensorType
(sensors.descriptor) and it is listed here; config checks, open_sensor, scan, the demo and Home Assistant
discovery follow from that."""

from __future__ import annotations

from typing import Any

from sensors import bme280, dht22, ds18b20, mcp9808, sht3x
from sensors.descriptor import SensorType
from sensors.errors import SensorSpecError

TYPES: tuple[SensorType, ...] = (
    bme280.BME280,
    bme280.BMP280,
    sht3x.SHT3X,
    mcp9808.MCP9808,
    ds18b20.DS18B20,
    dht22.DHT22,
    dht22.DHT11,
)

BY_NAME: dict[str, SensorType] = {name: t for t in TYPES for name in t.names}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def lookup(type_name: Any) -> SensorType:
    """The SensorType a config `type:` names. Raises SensorSpecError listing the known names."""
    found = BY_NAME.get(type_name) if isinstance(type_name, str) else None
    if found is None:
        raise SensorSpecError(f"type: unknown sensor type {type_name!r} (known: {', '.join(NAMES)})")
    return found


def check_spec(spec: dict[str, Any], other_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """A config entry's type and that type's keys, checked (the type's settings, defaults filled in).

    other_keys: type-specific keys the caller knows of (every type's), refused when set on a type that does not
    take them, so `address:` on a 1-Wire sensor is an error rather than ignored. Raises SensorSpecError.
    """
    kind = lookup(spec.get("type"))
    type_name = spec["type"]
    for key in other_keys:
        if spec.get(key) is not None and key not in kind.key_names():
            takes = ", ".join(kind.key_names()) or "none"
            raise SensorSpecError(f"{key}: a {type_name} does not take {key} (its keys: {takes})")
    return kind.settings(spec, type_name)


def quantities_of(type_name: str) -> tuple[str, ...]:
    """What a sensor type measures (Reading attribute names), in the descriptor's order."""
    return tuple(lookup(type_name).quantities)


def type_keys() -> tuple[str, ...]:
    """Every type-specific config key, over all types (the config's SensorConfig has a field for each)."""
    return tuple(dict.fromkeys(k.name for t in TYPES for k in t.keys))
