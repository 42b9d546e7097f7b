"""`python -m sensors scan` / `python -m sensors read [ID]`: wiring checks on the Pi, one line per finding."""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Any

from sensors import SensorError, open_sensor
from sensors.errors import NoBusError


def _load_specs(path: str, demo: bool) -> tuple[list[dict[str, Any]], bool]:
    """Sensor specs from config.yaml (via the server's own loader, so errors read the same)."""
    from server.config import ConfigError, load_config

    try:
        cfg = load_config(path, demo=demo)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    specs = [s.spec() for s in cfg.sensors]
    return specs, demo or cfg.demo


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
            known = "BME280/BMP280 0x76/0x77, SHT3x 0x44/0x45, MCP9808 0x18-0x1f"
            print(f"I2C i2c-{args.bus}: no known sensor answers ({known})")
        for f in found:
            print(f"{f.where}: {f.what}")
        found_any |= bool(found)
    w1 = scan.scan_w1(hardware.w1.root) if hardware else scan.scan_w1()
    if w1 is None:
        print("1-Wire: no w1 bus (/sys/bus/w1/devices missing): add dtoverlay=w1-gpio to /boot/firmware/config.txt")
    elif not w1:
        print("1-Wire: no temperature sensor found: check the wiring and the 4.7 kΩ pull-up")
    for f in w1 or []:
        print(f"{f.where}: {f.what}")
    iio = scan.scan_iio(hardware.iio.root, hardware.iio.reader) if hardware else scan.scan_iio()
    if iio is None:
        print("IIO: no IIO devices (/sys/bus/iio/devices missing); a DHT22 needs dtoverlay=dht11,gpiopin=N")
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
            print(f"error: no sensor with id {args.id!r} under sensors: in {args.config}", file=sys.stderr)
            return 2
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sensors", description="Find and read Homeboard's local sensors.")
    parser.add_argument("--config", default="config.yaml", help="config file (default: ./config.yaml)")
    parser.add_argument("--demo", action="store_true", help="use the emulated demo hardware instead of the real buses")
    sub = parser.add_subparsers(dest="command", required=True)
    scan = sub.add_parser("scan", help="list the known I2C chips, 1-Wire and IIO devices that answer")
    scan.add_argument("--bus", type=int, default=1, help="I2C bus number (default 1: /dev/i2c-1)")
    read = sub.add_parser("read", help="read the configured sensors once")
    read.add_argument("id", nargs="?", help="only this sensor id")
    args = parser.parse_args(argv)
    try:
        return cmd_scan(args) if args.command == "scan" else cmd_read(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
