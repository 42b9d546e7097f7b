"""What `python -m sensors scan` finds: known chips on an I2C bus (with their ids), 1-Wire and IIO devices.
What counts as known comes from the sensor registry: each type's addresses, probe and sysfs ids."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sensors.descriptor import SensorType
from sensors.errors import SensorError
from sensors.i2c import I2CPort
from sensors.registry import TYPES
from sensors.sysfs import IIO_ROOT, W1_ROOT, Reader, read_text


@dataclass(frozen=True)
class Found:
    where: str  # "i2c-1 0x76", "1-Wire", "IIO"
    what: str  # "BME280 (chip id 0x60)"


def _types(connection: str) -> list[SensorType]:
    return [t for t in TYPES if t.connection == connection]


def probes() -> list[tuple[int, Callable[[I2CPort], str]]]:
    """(address, probe) for every I2C type, by address; types sharing a probe (BME280/BMP280) are asked once."""
    pairs: list[tuple[int, Callable[[I2CPort], str]]] = []
    for kind in _types("i2c"):
        for address in kind.addresses:
            if kind.probe is not None and (address, kind.probe) not in pairs:
                pairs.append((address, kind.probe))
    return sorted(pairs, key=lambda pair: pair[0])


def _addresses_text(addresses: tuple[int, ...]) -> str:
    if len(addresses) > 2 and list(addresses) == list(range(addresses[0], addresses[-1] + 1)):
        return f"0x{addresses[0]:02x}-0x{addresses[-1]:02x}"
    return "/".join(f"0x{a:02x}" for a in addresses)


def known_i2c() -> str:
    """The I2C chips scan looks for, for people: "BME280 0x76/0x77, ..., MCP9808 0x18-0x1f"."""
    return ", ".join(f"{t.title} {_addresses_text(t.addresses)}" for t in _types("i2c"))


def enable_hint(connection: str) -> str:
    """How to turn on what the types on this connection need: "DHT22, DHT11: add dtoverlay=..."."""
    by_hint: dict[str, list[str]] = {}
    for kind in _types(connection):
        by_hint.setdefault(kind.enable, []).append(kind.title)
    return "; ".join(f"{', '.join(titles)}: {hint}" for hint, titles in by_hint.items())


def scan_i2c(bus: Any, bus_number: int) -> list[Found]:
    found = []
    for address, probe in probes():
        port = I2CPort(bus, bus_number, address, "probe")
        try:
            what = probe(port)
        except SensorError:
            continue  # nothing (known) answers there
        found.append(Found(f"i2c-{bus_number} 0x{address:02x}", what))
    return found


def _suggest(kinds: list[tuple[SensorType, str]], key: str, name: str) -> str:
    """ " → type: dht22 (DHT22/AM2302) or dht11 (DHT11), iio_device: iio:device0"."""
    if len(kinds) == 1:
        return f" → type: {kinds[0][0].names[0]}, {key}: {name}"
    choices = " or ".join(f"{kind.names[0]} ({chip})" for kind, chip in kinds)
    return f" → type: {choices}, {key}: {name}"


def scan_w1(root: str = W1_ROOT) -> list[Found] | None:
    """1-Wire sensors of known families under root; None when the w1 bus is not there at all."""
    if not os.path.isdir(root):
        return None
    found = []
    for name in sorted(os.listdir(root)):
        family = name.split("-", 1)[0].lower()
        kinds = [(t, t.sysfs_ids[family]) for t in _types("w1") if "-" in name and family in t.sysfs_ids]
        if kinds:
            found.append(Found("1-Wire", f"{name} {kinds[0][1]}{_suggest(kinds, kinds[0][0].location_key, name)}"))
    return found


def scan_iio(root: str = IIO_ROOT, reader: Reader = read_text) -> list[Found] | None:
    if not os.path.isdir(root):
        return None
    found = []
    for name in sorted(os.listdir(root)):
        try:
            driver = reader(os.path.join(root, name, "name")).strip()
        except OSError:
            continue
        kinds = [(t, t.sysfs_ids[driver]) for t in _types("iio") if driver in t.sysfs_ids]
        hint = _suggest(kinds, kinds[0][0].location_key, name) if kinds else ""
        found.append(Found("IIO", f"{name} ({driver}){hint}"))
    return found
