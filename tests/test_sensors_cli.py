"""open_sensor's spec handling and the `python -m sensors` CLI (real subprocesses, no I2C on this machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensors import NoBusError, SensorSpecError, open_sensor
from sensors.emulated import FakeBus
from sensors.i2c import open_smbus
from server.config import ConfigError, load_config
from tests.conftest import REPO

NO_BUS = 97  # an I2C bus number no machine running the tests has
UNSET = "HOMEBOARD_TEST_NEVER_SET_KEY"


def run(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensors", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "bme281"}, "unknown sensor type 'bme281'"),
        ({}, "unknown sensor type None"),
        ({"type": "bme280", "address": 0x40}, "a bme280 can only be at 0x76, 0x77, not 0x40"),
        ({"type": "sht31", "address": "0x4g"}, "not a number"),
        ({"type": "mcp9808", "address": 0x20}, "0x18, 0x19"),
        ({"type": "bme280", "bus": -1}, "bus: expected an I2C bus number"),
        ({"type": "ds18b20"}, "device: required for type ds18b20 \\(its 1-Wire id"),
        ({"type": "ds18b20", "device": ""}, "device: a ds18b20 needs its 1-Wire id"),
        ({"type": "dht22"}, "iio_device: required for type dht22"),
        ({"type": "dht22", "iio_device": "../x"}, "iio_device: a dht22 needs its IIO device"),
    ],
)
def test_bad_specs_are_named(spec: dict, message: str) -> None:
    with pytest.raises(SensorSpecError, match=message):
        open_sensor(spec, bus=FakeBus(1))


def test_address_as_text_and_config_extras_are_accepted() -> None:
    from sensors.emulated import EmulatedBme280

    bus = FakeBus(1)
    bus.attach(EmulatedBme280(0x77))
    spec = {"id": "x", "name": "X", "type": "bme280", "address": "0x77", "interval_s": 60.0, "timeout_s": 10.0}
    assert open_sensor(spec, bus=bus).source == "i2c:bme280@0x77"


def test_missing_bus_device_node_is_said_plainly() -> None:
    with pytest.raises(NoBusError, match=f"no I2C bus i2c-{NO_BUS} \\(/dev/i2c-{NO_BUS} is missing\\): enable I2C"):
        open_sensor({"type": "bme280", "bus": NO_BUS})


def test_scan_without_i2c_says_so_in_one_line() -> None:
    result = run("scan", "--bus", str(NO_BUS))
    assert "Traceback" not in result.stdout + result.stderr
    i2c_lines = [line for line in result.stdout.splitlines() if line.startswith("I2C")]
    assert i2c_lines == [f"I2C: no I2C bus i2c-{NO_BUS} (/dev/i2c-{NO_BUS} is missing): enable I2C with raspi-config "
                         "or dtparam=i2c_arm=on in /boot/firmware/config.txt"]  # fmt: skip
    assert result.returncode in (0, 1)


def test_scan_on_demo_hardware_lists_chips_with_ids() -> None:
    result = run("--demo", "scan")
    assert result.returncode == 0, result.stderr
    assert "i2c-1 0x76: BME280 (chip id 0x60) → type: bme280" in result.stdout
    assert "i2c-1 0x44: SHT3x (status 0x8010) → type: sht31" in result.stdout
    assert "1-Wire: 28-0316a2794aff DS18B20" in result.stdout


def test_read_without_i2c_one_line_per_sensor(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"sensors:\n  - {{id: living_room, type: bme280, bus: {NO_BUS}, address: 0x76}}\n")
    result = run("--config", str(config), "read")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"living_room (bme280): no I2C bus i2c-{NO_BUS} (/dev/i2c-{NO_BUS} is missing): enable I2C with raspi-config "
        "or dtparam=i2c_arm=on in /boot/firmware/config.txt"
    ]


def test_read_demo_and_one_id(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("demo: true\n")
    result = run("--config", str(config), "read")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["living_room (bme280)", "bedroom (sht31)", "outdoor (ds18b20)"]
    assert "hPa" in lines[0]
    assert "[i2c:sht3x@0x44]" in lines[1]
    one = run("--config", str(config), "read", "outdoor")
    assert one.stdout.startswith("outdoor (ds18b20): ")
    missing = run("--config", str(config), "read", "attic")
    assert missing.returncode == 2
    assert missing.stderr == f"homeboard: no sensor with id 'attic' under sensors: in {config}\n"


def test_options_go_before_or_after_the_command(tmp_path: Path) -> None:
    """The documented form is `read [ID] --config PATH`; the older `--config PATH read` keeps working."""
    config = tmp_path / "config.yaml"
    config.write_text("demo: true\n")
    before = run("--config", str(config), "read", "outdoor")
    after = run("read", "outdoor", "--config", str(config))
    assert after.returncode == 0, after.stderr
    assert after.stdout.startswith("outdoor (ds18b20): ")
    assert after.stdout.split("°C")[1:] == before.stdout.split("°C")[1:]  # the same sensor, both ways
    demo_after = run("read", "--demo", "--config", str(tmp_path / "absent.yaml"))
    assert demo_after.returncode == 2  # --demo after the command is taken too: the missing file is still named
    assert "absent.yaml" in demo_after.stderr
    scan_after = run("scan", "--demo", "--bus", "1")
    assert scan_after.returncode == 0, scan_after.stderr
    assert "i2c-1" in scan_after.stdout


def test_read_with_a_wrong_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("sensors:\n  - {id: x, type: bme999}\n")
    result = run("--config", str(config), "read")
    assert result.returncode == 2
    assert result.stderr.startswith("homeboard: config error: sensors[0].type: unknown sensor type")
    assert "Traceback" not in result.stderr


def test_hardware_libraries_are_not_imported_at_import_time() -> None:
    code = (
        "import sys, sensors, sensors.gpio, sensors.emulated, sensors.demo, sensors.scan, server.sensing\n"
        "from sensors import bme280, sht3x, mcp9808, ds18b20, dht22\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('smbus2', 'RPi'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_read_needs_only_the_sensors_part_of_the_config(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("OTHER=x\n")
    secrets.chmod(0o644)  # refused by the server; the sensors do not need it
    config = tmp_path / "config.yaml"
    config.write_text(
        f"secrets_file: {secrets}\n"
        f'sources:\n  weather: {{api_key: "${{{UNSET}}}", query: Stockholm}}\n'
        "page: {widgets: [clock, nope]}\n"
        f"sensors:\n  - {{id: living_room, type: bme280, bus: {NO_BUS}, address: 0x76}}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != UNSET}
    with pytest.raises(ConfigError):  # the whole file is wrong for the server...
        load_config(config, env=env)
    result = run("--config", str(config), "read", env=env)
    assert result.stderr == ""  # ...but none of that is the sensors' business
    assert result.stdout.startswith(f"living_room (bme280): no I2C bus i2c-{NO_BUS}")
    assert result.returncode == 1


def test_read_errors_in_the_sensors_part_use_the_server_s_wording(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f'sources:\n  weather: {{api_key: "${{{UNSET}}}"}}\n'
        f'sensors:\n  - {{id: hall, name: "${{{UNSET}}}", type: ds18b20, device: 28-0316a2794aff}}\n'
    )
    env = {k: v for k, v in os.environ.items() if k != UNSET}
    result = run("--config", str(config), "read", env=env)
    assert result.returncode == 2
    assert result.stderr == f"homeboard: config error: sensors[0].name: secret ${{{UNSET}}} is not set " \
                            "(environment or secrets_file)\n"  # fmt: skip
    config.write_text("sensors:\n  - {id: hall, type: ds18b20, device: 28-0316a2794aff, address: 0x76}\n")
    result = run("--config", str(config), "read", env=env)
    assert result.stderr == "homeboard: config error: sensors[0].address: a ds18b20 does not take address " \
                            "(its keys: device)\n"  # fmt: skip
    result = run("--config", str(tmp_path / "absent.yaml"), "read")
    assert result.stderr == f"homeboard: config error: config: {tmp_path / 'absent.yaml'} does not exist\n"


def test_a_missing_bus_names_the_buses_that_exist(tmp_path: Path) -> None:
    for name in ("i2c-1", "i2c-20", "i2c-21", "tty0"):
        (tmp_path / name).write_text("")
    with pytest.raises(NoBusError) as err:
        open_smbus(NO_BUS, dev_dir=str(tmp_path))
    message = str(err.value)
    assert message == (
        f"no I2C bus i2c-{NO_BUS} ({tmp_path}/i2c-{NO_BUS} is missing); the I2C buses here are i2c-1, i2c-20, "
        "i2c-21: use one of those numbers"
    )
    assert "raspi-config" not in message  # I2C is on; the number is what is wrong
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoBusError, match="is missing\\): enable I2C with raspi-config"):
        open_smbus(1, dev_dir=str(empty))


def test_types_lists_the_registry() -> None:
    from sensors.registry import TYPES

    result = run("types")
    assert result.returncode == 0, result.stderr
    headers = [line.split(":")[0] for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert headers == [" / ".join(kind.names) for kind in TYPES]
    assert "dht11: DHT11 on iio; keys: iio_device (like iio:device0)" in result.stdout
