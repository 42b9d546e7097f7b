"""`python -m sensors scan | read [ID] | types`: wiring checks on the Pi, one line per finding; the known types."""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Any

from sensors import SensorError, open_sensor
from sensors.errors import NoBusError


def _fail(message: str) -> SystemExit:
    """One line on stderr in the server's wording, exit status 2 (as `python -m server` does for its config)."""
    print(f"homeboard: {message}", file=sys.stderr)
    return SystemExit(2)


def _load_specs(path: str, demo: bool) -> tuple[list[dict[str, Any]], bool]:
    """Sensor specs from config.yaml's `sensors:` list only (the server's own loader, so errors read the same):
    an unset secret of a source elsewhere in the file is not this command's business."""
    from server.config import ConfigError, load_sensors

    try:
        sensors, demo = load_sensors(path, demo=demo)
    except ConfigError as err:
        raise _fail(f"config error: {err}") from None
    return [s.spec() for s in sensors], demo


def _demo_hardware(specs: list[dict[str, Any]], root: str) -> Any:
    from sensors.demo import DEFAULT_SENSORS, DemoHardware

    return DemoHardware(root, specs or list(DEFAULT_SENSORS))


def cmd_scan(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="homeboard-sensors-") as root:
        return _scan(args, _demo_hardware([], root) if args.demo else None)


def _scan(args: argparse.Namespace, hardware: Any) -> int:
    from sensors import scan

    found_any = False
    try:
        if hardware is not None:
            bus = hardware.bus(args.bus)
        else:
            from sensors.i2c import open_smbus

            bus = open_smbus(args.bus)
    except NoBusError as err:
        print(f"I2C: {err}")
    else:
        found = scan.scan_i2c(bus, args.bus)
        bus.close()
        if not found:
            print(f"I2C i2c-{args.bus}: no known sensor answers ({scan.known_i2c()})")
        for f in found:
            print(f"{f.where}: {f.what}")
        found_any |= bool(found)
    w1 = scan.scan_w1(hardware.w1.root) if hardware else scan.scan_w1()
    if w1 is None:
        print(f"1-Wire: no w1 bus (/sys/bus/w1/devices missing); {scan.enable_hint('w1')}")
    elif not w1:
        print("1-Wire: no temperature sensor found: check the wiring and the 4.7 kΩ pull-up")
    for f in w1 or []:
        print(f"{f.where}: {f.what}")
    iio = scan.scan_iio(hardware.iio.root, hardware.iio.reader) if hardware else scan.scan_iio()
    if iio is None:
        print(f"IIO: no IIO devices (/sys/bus/iio/devices missing); {scan.enable_hint('iio')}")
    elif not iio:
        print("IIO: no IIO devices")
    for f in iio or []:
        print(f"{f.where}: {f.what}")
    found_any |= bool(w1) or bool(iio)
    return 0 if found_any else 1


def _format(reading: Any) -> str:
    parts = [f"{reading.temperature_c:.2f} °C"]
    if reading.humidity_pct is not None:
        parts.append(f"{reading.humidity_pct:.1f} %RH")
    if reading.pressure_hpa is not None:
        parts.append(f"{reading.pressure_hpa:.1f} hPa")
    return "  ".join(parts)


def cmd_read(args: argparse.Namespace) -> int:
    specs, demo = _load_specs(args.config, args.demo)
    if demo and not specs:
        from sensors.demo import DEFAULT_SENSORS

        specs = [dict(s) for s in DEFAULT_SENSORS]
    if args.id is not None:
        specs = [s for s in specs if s.get("id") == args.id]
        if not specs:
            raise _fail(f"no sensor with id {args.id!r} under sensors: in {args.config}")
    if not specs:
        print(f"no sensors configured under sensors: in {args.config}")
        return 1
    with tempfile.TemporaryDirectory(prefix="homeboard-sensors-") as root:
        return _read(specs, _demo_hardware(specs, root) if demo else None)


def _read(specs: list[dict[str, Any]], hardware: Any) -> int:
    failed = 0
    for spec in specs:
        label = f"{spec.get('id')} ({spec.get('type')})"
        try:
            sensor = hardware.open(spec) if hardware is not None else open_sensor(spec)
            try:
                print(f"{label}: {_format(sensor.read())}  [{sensor.source}]")
            finally:
                sensor.close()
        except SensorError as err:
            failed += 1
            print(f"{label}: {err}")
    return 1 if failed else 0


def cmd_types(args: argparse.Namespace) -> int:
    """Every sensor type the registry knows: its names, keys with defaults, where it can be, what it measures."""
    from sensors.registry import TYPES

    for kind in TYPES:
        keys = ", ".join(
            f"{k.name} (like {k.example})" if k.default is None else f"{k.name} (default {k.example})"
            for k in kind.keys
        )
        print(f"{' / '.join(kind.names)}: {kind.title} on {kind.connection}; keys: {keys}")
        for quantity, (low, high) in kind.quantities.items():
            print(f"    {quantity}: {low:g} .. {high:g}")
        if kind.addresses:
            print(f"    addresses: {' '.join(f'0x{a:02x}' for a in kind.addresses)}")
        print(f"    setup: {kind.enable}")
    return 0


def _add_common(parser: argparse.ArgumentParser, config: str, demo: object) -> None:
    """--config and --demo, taken before or after the command."""
    parser.add_argument("--config", default=config, help="config file (default: ./config.yaml)")
    parser.add_argument("--demo", action="store_true", default=demo, help="use the emulated demo hardware")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sensors", description="Find and read Homeboard's local sensors.")
    _add_common(parser, "config.yaml", False)
    sub = parser.add_subparsers(dest="command", required=True)
    scan = sub.add_parser("scan", help="list the known I2C chips, 1-Wire and IIO devices that answer")
    scan.add_argument("--bus", type=int, default=1, help="I2C bus number (default 1: /dev/i2c-1)")
    read = sub.add_parser("read", help="read the configured sensors once")
    read.add_argument("id", nargs="?", help="only this sensor id")
    sub.add_parser("types", help="list the sensor types config.yaml takes, with their keys and ranges")
    for command in sub.choices.values():
        # After the command too (`read --config PATH`, as documented), without overriding one given before it.
        _add_common(command, argparse.SUPPRESS, argparse.SUPPRESS)
    args = parser.parse_args(argv)
    commands = {"scan": cmd_scan, "read": cmd_read, "types": cmd_types}
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
