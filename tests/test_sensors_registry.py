"""The sensor registry: every descriptor's emulated chip reads through its real driver within its ranges, and
config, scan, the demo and Home Assistant discovery take what a type is from the registry alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sensors import ImplausibleValueError, Reading, SensorSpecError, open_sensor, scan
from sensors.demo import DemoHardware
from sensors.descriptor import SensorType
from sensors.emulated import Climate, FakeBus, FakeSysfs, emulate
from sensors.registry import BY_NAME, NAMES, TYPES, check_spec, lookup, quantities_of, type_keys
from server.config import ConfigError, SensorConfig, parse_config
from server.mqtt.homeassistant import QUANTITIES

CASES = [(kind, name) for kind in TYPES for name in kind.names]
IDS = [name for _, name in CASES]
OTHER_CONDITIONS = {"temperature_c": 21.0, "humidity_pct": 45.0, "pressure_hpa": 1013.25}
# How far a reading may be from the emulated room: the coarsest resolution among the chips (DHT11: whole units).
# Where an emulated chip saturates at the end of its range (no value beyond it to send); more than 100 %RH is
# never encoded either.
SATURATES = {("temperature_c", "ds18b20")}
RESOLUTION = {"temperature_c": 0.5, "humidity_pct": 0.5, "pressure_hpa": 0.1}


def _middle(kind: SensorType) -> dict[str, float]:
    """Room conditions in the middle of every range the chip has; ordinary values for what it does not measure."""
    values = dict(OTHER_CONDITIONS)
    values.update({q: (low + high) / 2 for q, (low, high) in kind.quantities.items()})
    return values


def _open_emulated(kind: SensorType, name: str, climate: Climate, tmp_path: Path) -> object:
    """The descriptor's emulated chip at its default location, opened by open_sensor through the real driver."""
    spec = {"type": name}
    spec.update({k.name: k.example for k in kind.keys if k.default is None})  # required keys get their example
    location = kind.settings(spec, name)[kind.location_key]
    device = emulate(kind, location, climate)
    if kind.connection == "i2c":
        bus = FakeBus(1)
        bus.attach(device)
        return open_sensor(spec, bus=bus)
    tree = FakeSysfs(str(tmp_path / kind.connection))
    tree.add(device)
    return open_sensor(spec, sysfs_root=tree.root, reader=tree.reader)


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_each_emulated_chip_reads_through_its_driver_within_its_ranges(
    kind: SensorType, name: str, tmp_path: Path
) -> None:
    room = _middle(kind)
    climate = Climate(room["temperature_c"], room["humidity_pct"], room["pressure_hpa"])
    sensor = _open_emulated(kind, name, climate, tmp_path)
    reading = sensor.read()  # type: ignore[attr-defined]
    assert isinstance(reading, Reading)
    for field in dataclasses.fields(Reading):
        value = getattr(reading, field.name)
        if field.name not in kind.quantities:
            assert value is None, f"{name} does not measure {field.name} but read {value}"
            continue
        low, high = kind.quantities[field.name]
        assert low <= value <= high, (name, field.name, value)
        assert value == pytest.approx(room[field.name], abs=RESOLUTION[field.name]), (name, field.name)
    sensor.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_a_value_beyond_a_range_is_an_error_not_a_reading(kind: SensorType, name: str, tmp_path: Path) -> None:
    # Above the top of each range, where the emulated chip can still encode it: the driver refuses it.
    for quantity, (_low, high) in kind.quantities.items():
        room = _middle(kind)
        room[quantity] = high + 5
        if (quantity == "humidity_pct" and high >= 100) or (quantity, name) in SATURATES:
            continue
        climate = Climate(room["temperature_c"], room["humidity_pct"], room["pressure_hpa"])
        sensor = _open_emulated(kind, name, climate, tmp_path / quantity)
        with pytest.raises(ImplausibleValueError, match=f"{high:g}"):
            sensor.read()  # type: ignore[attr-defined]


def test_names_are_unique_and_every_type_is_listed_by_name() -> None:
    names = [name for kind in TYPES for name in kind.names]
    assert len(names) == len(set(names))
    assert set(NAMES) == set(names)
    assert all(BY_NAME[name] is kind for kind in TYPES for name in kind.names)
    assert "dht11" in NAMES
    assert lookup("sht30") is lookup("sht31")


def test_descriptors_fit_the_config_and_the_reading() -> None:
    config_fields = {f.name for f in dataclasses.fields(SensorConfig)}
    reading_fields = {f.name for f in dataclasses.fields(Reading)}
    assert set(type_keys()) <= config_fields  # every key a type takes is a config.yaml key
    for kind in TYPES:
        assert kind.quantities, kind.title
        assert set(kind.quantities) <= reading_fields, kind.title
        assert kind.location_key in kind.key_names(), kind.title
        assert all(low < high for low, high in kind.quantities.values()), kind.title
        if kind.connection == "i2c":
            assert kind.addresses, kind.title
            assert kind.probe is not None, kind.title
            assert kind.settings({}, kind.names[0]) == {"bus": 1, "address": kind.addresses[0]}
        else:
            assert kind.sysfs_ids, kind.title


def test_config_refuses_an_unknown_type_listing_the_registry() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"sensors": [{"id": "a", "type": "bme680"}]}, env={})
    message = str(err.value)
    assert message.startswith("sensors[0].type: unknown sensor type 'bme680' (known: ")
    assert message.endswith(f"(known: {', '.join(NAMES)})")


@pytest.mark.parametrize(
    ("sensor", "message"),
    [
        ({"type": "ds18b20", "device": "28-0316a2794aff", "address": 0x76}, "sensors[0].address: a ds18b20 does not"),
        ({"type": "dht11", "iio_device": "iio:device0", "bus": 1}, "sensors[0].bus: a dht11 does not take bus"),
        ({"type": "bme280", "device": "28-0316a2794aff"}, "sensors[0].device: a bme280 does not take device"),
        ({"type": "bme280", "address": 0x40}, "sensors[0].address: a bme280 can only be at 0x76, 0x77, not 0x40"),
        ({"type": "mcp9808", "address": 0x20}, "sensors[0].address: a mcp9808 can only be at 0x18, 0x19"),
        ({"type": "dht11"}, "sensors[0].iio_device: required for type dht11 (its IIO device, like iio:device0)"),
        ({"type": "sht35", "bus": -1}, "sensors[0].bus: expected an I2C bus number like 1, got -1"),
    ],
)
def test_config_checks_each_type_against_its_descriptor(sensor: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"sensors": [{"id": "a", **sensor}]}, env={})
    assert str(err.value).startswith(message), str(err.value)


def test_config_takes_every_registered_name_with_its_defaults() -> None:
    sensors = []
    for i, (kind, name) in enumerate(CASES):
        entry = {"id": f"s{i}", "type": name, **{k.name: k.example for k in kind.keys if k.default is None}}
        sensors.append(entry)
    cfg = parse_config({"sensors": sensors}, env={})
    assert [s.type for s in cfg.sensors] == IDS
    assert check_spec(cfg.sensors[0].spec()) == {"bus": 1, "address": 0x76}


def test_home_assistant_can_announce_every_registered_quantity() -> None:
    # Discovery over a real broker: tests/test_mqtt_homeassistant.py (entities from the registry before a reading).
    assert quantities_of("dht11") == ("temperature_c", "humidity_pct")
    assert quantities_of("bmp280") == ("temperature_c", "pressure_hpa")
    for kind in TYPES:
        assert set(kind.quantities) <= set(QUANTITIES), kind.title  # Home Assistant has a device class for each


def test_demo_hardware_emulates_every_type(tmp_path: Path) -> None:
    specs = []
    for i, (kind, name) in enumerate(CASES):
        spec = {"id": f"room{i}", "type": name}
        if kind.connection == "i2c":
            spec.update(bus=1 + i, address=kind.addresses[-1])  # a bus each: several chips share addresses
        else:
            spec[kind.location_key] = f"{kind.keys[0].example}-{i}"
        specs.append(spec)
    hardware = DemoHardware(str(tmp_path), specs)
    for spec, (kind, _) in zip(specs, CASES, strict=True):
        sensor = hardware.open(spec)
        reading = sensor.read()
        assert {q for q in kind.quantities if getattr(reading, q) is not None} == set(kind.quantities), spec


def test_scan_names_what_the_registry_knows(tmp_path: Path) -> None:
    specs = [
        {"id": "a", "type": "bme280", "address": 0x77},
        {"id": "b", "type": "bmp280", "address": 0x76},
        {"id": "c", "type": "sht30", "address": 0x45},
        {"id": "d", "type": "mcp9808", "address": 0x1C},
        {"id": "e", "type": "ds18b20", "device": "28-000000000001"},
        {"id": "f", "type": "dht11", "iio_device": "iio:device3"},
    ]
    hardware = DemoHardware(str(tmp_path), specs)
    found = {f.where: f.what for f in scan.scan_i2c(hardware.bus(1), 1)}
    assert found == {
        "i2c-1 0x1c": "MCP9808 (manufacturer 0x0054, device 0x0400) → type: mcp9808",
        "i2c-1 0x45": "SHT3x (status 0x8010) → type: sht31",
        "i2c-1 0x76": "BMP280 (chip id 0x58) → type: bmp280",
        "i2c-1 0x77": "BME280 (chip id 0x60) → type: bme280",
    }
    assert [f.what for f in scan.scan_w1(hardware.w1.root) or []] == [
        "28-000000000001 DS18B20 → type: ds18b20, device: 28-000000000001"
    ]
    iio = [f.what for f in scan.scan_iio(hardware.iio.root, hardware.iio.reader) or []]
    assert iio == ["iio:device3 (dht11) → type: dht22 (DHT22/AM2302) or dht11 (DHT11), iio_device: iio:device3"]
    assert scan.known_i2c() == "BME280 0x76/0x77, BMP280 0x76/0x77, SHT3x 0x44/0x45, MCP9808 0x18-0x1f"
    assert scan.enable_hint("iio").startswith("DHT22, DHT11: add dtoverlay=dht11,gpiopin=N")


def test_open_sensor_refuses_an_unknown_type_listing_the_registry() -> None:
    with pytest.raises(SensorSpecError, match=f"known: {', '.join(NAMES)}"):
        open_sensor({"type": "dht33"}, bus=FakeBus(1))


def test_the_docs_list_every_registered_type_with_its_ranges() -> None:
    from tests.conftest import REPO

    text = (REPO / "docs" / "sensors.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1]: line for line in text.splitlines() if line.startswith("| `")}
    for kind in TYPES:
        row = next((line for cell, line in rows.items() if f"`{kind.names[0]}`" in cell), None)
        assert row is not None, f"docs/sensors.md has no row for {kind.names[0]}"
        assert all(f"`{name}`" in row for name in kind.names), row
        for low, high in kind.quantities.values():
            assert f"{low:g}..{high:g}".replace("-", "−") in row, (kind.names[0], low, high, row)
