"""DS18B20 over the kernel's w1_therm files: CRC line, power-on value, unplugged reads, the newer file, faults."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from sensors import BusError, CrcError, NoDeviceError, NotReadyError, PowerOnValueError, WrongChipError, open_sensor
from sensors import ds18b20 as ds
from sensors.emulated import Climate, FakeSysfs

GOOD = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"  # kernel w1_therm.rst


def test_dallas_crc_vectors() -> None:
    assert ds.dallas_crc8(bytes.fromhex("72014b467fff0e10")) == 0x57  # the kernel documentation's example
    assert ds.dallas_crc8(b"\xff" * 8) == 0xC9  # what an unplugged sensor reads
    assert ds.dallas_crc8(bytes(8)) == 0x00  # why an all-zero read passes the kernel's check


@pytest.mark.parametrize(
    ("raw", "celsius"),
    [  # DS18B20 datasheet Table 1 (12-bit)
        (0x07D0, 125.0),
        (0x0191, 25.0625),
        (0x00A2, 10.125),
        (0x0008, 0.5),
        (0x0000, 0.0),
        (0xFFF8, -0.5),
        (0xFF5E, -10.125),
        (0xFE6F, -25.0625),
        (0xFC90, -55.0),
    ],
)
def test_datasheet_table_through_w1_slave(raw: int, celsius: float) -> None:
    body = raw.to_bytes(2, "little") + bytes.fromhex("4b467fff0c10")
    pad = body + bytes([ds.dallas_crc8(body)])
    hexes = " ".join(f"{b:02x}" for b in pad)
    signed = raw - 0x10000 if raw & 0x8000 else raw
    text = f"{hexes} : crc={pad[8]:02x} YES\n{hexes} t={ds.kernel_millidegrees(signed)}\n"
    assert ds.parse_w1_slave(text, "x") == (celsius, signed)


def test_kernel_millidegrees_truncate_toward_zero() -> None:
    assert ds.kernel_millidegrees(-1) == -62  # 0xFFFF: -62.5 truncated, what an unplugged sensor shows
    assert ds.kernel_millidegrees(0x0172) == 23125
    assert ds.kernel_millidegrees(-0x00A2) == -10125


def test_good_file() -> None:
    assert ds.parse_w1_slave(GOOD, "x") == (23.125, 0x0172)


def test_crc_no_is_rejected_even_though_t_holds_a_number() -> None:
    text = "72 01 4b 46 7f ff 0e 10 58 : crc=57 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
    with pytest.raises(CrcError, match="CRC mismatch"):
        ds.parse_w1_slave(text, "x")
    # A "YES" the bytes do not back up is not trusted either.
    with pytest.raises(CrcError):
        ds.parse_w1_slave(text.replace("NO", "YES"), "x")


def test_unplugged_all_ff() -> None:
    text = "ff ff ff ff ff ff ff ff ff : crc=c9 NO\n72 01 4b 46 7f ff 0e 10 57 t=-62\n"
    with pytest.raises(NoDeviceError, match="reads all ff"):
        ds.parse_w1_slave(text, "x")


def test_all_zeros_passes_the_kernel_crc_but_not_here() -> None:
    text = "00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n"
    with pytest.raises(NoDeviceError, match="all zeros"):
        ds.parse_w1_slave(text, "x")


def test_power_on_value_85() -> None:
    body = bytes.fromhex("50054b467fff0c10")
    pad = " ".join(f"{b:02x}" for b in body + bytes([ds.dallas_crc8(body)]))
    text = f"{pad} : crc={ds.dallas_crc8(body):02x} YES\n{pad} t=85000\n"
    with pytest.raises(PowerOnValueError, match="85 °C, the power-on value"):
        ds.parse_w1_slave(text, "x")


def test_insufficient_power_value() -> None:
    body = bytes.fromhex("ff074b467fff0110")
    pad = " ".join(f"{b:02x}" for b in body + bytes([ds.dallas_crc8(body)]))
    with pytest.raises(PowerOnValueError, match=r"127.94"):
        ds.parse_w1_slave(f"{pad} : crc={ds.dallas_crc8(body):02x} YES\n{pad} t=127937\n", "x")


@pytest.mark.parametrize("text", ["", "\n", "garbage\n", "72 01 4b : crc=57 YES\n"])
def test_empty_or_garbled(text: str) -> None:
    with pytest.raises((NotReadyError, BusError)):
        ds.parse_w1_slave(text, "x")


def test_temperature_file() -> None:
    assert ds.parse_temperature_file("23125\n", "x") == (23.125, 23125)
    assert ds.parse_temperature_file("-10125\n", "x") == (-10.125, -10125)
    with pytest.raises(NotReadyError, match="pending"):
        ds.parse_temperature_file("", "x")
    with pytest.raises(PowerOnValueError):
        ds.parse_temperature_file("85000\n", "x")
    with pytest.raises(BusError):
        ds.parse_temperature_file("abc\n", "x")


# ------------------------------------------------------------------------------- the driver on files


def test_plain_files_without_an_emulator(tmp_path: Path) -> None:
    dev = tmp_path / "28-0316a2794aff"
    dev.mkdir()
    (dev / "w1_slave").write_text(GOOD)
    sensor = open_sensor({"type": "ds18b20", "device": "28-0316a2794aff"}, sysfs_root=str(tmp_path))
    assert sensor.read().temperature_c == 23.125
    assert sensor.source == "w1:ds18b20/28-0316a2794aff"


def test_newer_temperature_file_used_when_w1_slave_is_absent(tmp_path: Path) -> None:
    dev = tmp_path / "28-00000a1b2c3d"
    dev.mkdir()
    (dev / "temperature").write_text("-3250\n")
    assert open_sensor({"type": "ds18b20", "device": dev.name}, sysfs_root=str(tmp_path)).read().temperature_c == -3.25


def test_missing_device_and_wrong_family(tmp_path: Path) -> None:
    with pytest.raises(NoDeviceError, match=r"no 1-Wire device 28-0316a2794aff .*dtoverlay=w1-gpio"):
        open_sensor({"type": "ds18b20", "device": "28-0316a2794aff"}, sysfs_root=str(tmp_path))
    with pytest.raises(WrongChipError, match="family code '10'"):
        open_sensor({"type": "ds18b20", "device": "10-000802b4c5e1"}, sysfs_root=str(tmp_path))


def make(tmp_path: Path, t: float = 4.5) -> tuple[FakeSysfs, object]:
    tree = FakeSysfs(str(tmp_path / "w1"))
    device = tree.add_ds18b20("28-0316a2794aff", Climate(t))
    sensor = open_sensor({"type": "ds18b20", "device": "28-0316a2794aff"}, sysfs_root=tree.root, reader=tree.reader)
    return tree, (device, sensor)


@pytest.mark.parametrize("t", [4.5, -12.3125, -55.0, 0.0, 37.0625])
def test_emulated_kernel_output_round_trips(tmp_path: Path, t: float) -> None:
    _, (_, sensor) = make(tmp_path, t)
    assert sensor.read().temperature_c == t  # type: ignore[attr-defined]


def test_every_emulated_fault(tmp_path: Path) -> None:
    tree, (device, sensor) = make(tmp_path)
    expected = {
        "unplugged": NoDeviceError,
        "corrupt": CrcError,
        "power_on": PowerOnValueError,
        "empty": NotReadyError,
        "zeros": NoDeviceError,
    }
    for mode, error in expected.items():
        device.mode = mode  # type: ignore[attr-defined]
        with pytest.raises(error):
            sensor.read()  # type: ignore[attr-defined]
    device.mode = "ok"  # type: ignore[attr-defined]
    assert sensor.read().temperature_c == 4.5  # type: ignore[attr-defined]
    device.fail_next(errno.EIO)  # type: ignore[attr-defined]
    with pytest.raises(BusError, match="read failed"):
        sensor.read()  # type: ignore[attr-defined]
    tree.remove("28-0316a2794aff")
    with pytest.raises(NoDeviceError, match="gone"):
        sensor.read()  # type: ignore[attr-defined]
    tree.restore("28-0316a2794aff")
    assert sensor.read().temperature_c == 4.5  # type: ignore[attr-defined]


def test_unplugged_text_is_what_the_kernel_prints(tmp_path: Path) -> None:
    tree, (device, _) = make(tmp_path)
    device.mode = "unplugged"  # type: ignore[attr-defined]
    line1, line2 = tree.reader(str(tmp_path / "w1" / "28-0316a2794aff" / "w1_slave")).splitlines()
    assert line1 == "ff ff ff ff ff ff ff ff ff : crc=c9 NO"
    assert line2.endswith("t=-62")


def test_stuck(tmp_path: Path) -> None:
    tree = FakeSysfs(str(tmp_path / "w1"))
    device = tree.add_ds18b20("28-0316a2794aff", Climate(20.0))
    spec = {"type": "ds18b20", "device": "28-0316a2794aff", "stuck_reads": 3}
    sensor = open_sensor(spec, sysfs_root=tree.root, reader=tree.reader)
    device.climate.set(temperature_c=20.0625)
    sensor.read()
    sensor.read()
    from sensors import StuckSensorError

    with pytest.raises(StuckSensorError):
        sensor.read()
