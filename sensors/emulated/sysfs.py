"""A fake sysfs tree (real directories in a temp dir) whose attribute files are rendered on every read by
emulated kernel drivers: w1_therm for DS18B20s, the dht11 IIO driver for DHT22s and DHT11s. Use `tree.reader` as the
driver's reader; faults are injectable per device."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sensors import ds18b20 as ds
from sensors.emulated.climate import Climate


def _oserror(err: int) -> OSError:
    return OSError(err, os.strerror(err))


class EmulatedSysfsDevice:
    """One device directory; render(attribute) produces what the kernel would return for it."""

    attributes: tuple[str, ...] = ()

    def __init__(self, name: str, climate: Climate | None, clock: Callable[[], float]) -> None:
        self.name = name
        self.climate = climate or Climate()
        self.clock = clock
        self.reads = 0
        self._fail_errno = 0
        self._fail_count = 0

    def fail_next(self, err: int = errno.EIO, count: int = 1) -> None:
        """The next `count` reads raise OSError(err), as the kernel's read() would."""
        self._fail_errno, self._fail_count = err, count

    def check_fail(self) -> None:
        if self._fail_count > 0:
            self._fail_count -= 1
            raise _oserror(self._fail_errno)

    def render(self, attribute: str) -> str:
        raise NotImplementedError

    def placeholder(self, attribute: str) -> str:
        """The file's content on disk (reads go through render): for `ls`, `cat` and os.path checks."""
        return ""


class EmulatedDs18b20(EmulatedSysfsDevice):
    """w1_therm output for one sensor. Modes: "ok", "unplugged" (all ff, crc NO, t=-62), "corrupt" (bad CRC),
    "power_on" (85 °C with a good CRC), "empty" (conversion failed), "zeros" (shorted line, crc 00 YES)."""

    attributes = ("w1_slave", "temperature")

    def __init__(self, name: str, climate: Climate | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__(name, climate, clock)
        self.mode = "ok"
        self.stuck = False
        self._last_raw: int | None = None
        self._retained = bytes(9)  # the kernel's retained scratchpad (line 2 of w1_slave)

    def _scratchpad(self) -> bytes:
        if self.stuck and self._last_raw is not None:
            raw = self._last_raw
        else:
            raw = max(-55 * 16, min(125 * 16, round(self.climate.sample()[0] * 16)))
        if self.mode == "power_on":
            raw = ds.RAW_POWER_ON
        self._last_raw = raw
        lsb_msb = (raw & 0xFFFF).to_bytes(2, "little")
        count_remain = 16 - (raw & 0x0F)  # byte 6 as a DS18B20 reports it (72 01 … 0e 10 in the kernel doc)
        body = lsb_msb + bytes([0x4B, 0x46, 0x7F, 0xFF, count_remain, 0x10])
        return body + bytes([ds.dallas_crc8(body)])

    def render(self, attribute: str) -> str:
        self.check_fail()
        self.reads += 1
        if self.mode == "empty":
            return ""
        if self.mode == "unplugged":
            pad = b"\xff" * 9
        elif self.mode == "zeros":
            pad = bytes(9)
        else:
            pad = self._scratchpad()
            if self.mode == "corrupt":
                pad = pad[:3] + bytes([pad[3] ^ 0x10]) + pad[4:]
        ok = ds.dallas_crc8(pad[:8]) == pad[8]
        raw = int.from_bytes(pad[0:2], "little", signed=True)
        if attribute == "temperature":
            if not ok or self.mode == "unplugged":
                raise _oserror(errno.EIO)  # the newer attribute checks the CRC itself
            return f"{ds.kernel_millidegrees(raw)}\n"
        if ok:
            self._retained = pad
        hexes = " ".join(f"{b:02x}" for b in pad)
        retained = " ".join(f"{b:02x}" for b in self._retained)
        crc = ds.dallas_crc8(pad[:8])
        # As w1_slave_show prints it: t= comes from the bytes just read, even when the CRC failed.
        return f"{hexes} : crc={crc:02x} {'YES' if ok else 'NO'}\n{retained} t={ds.kernel_millidegrees(raw)}\n"


def dht22_frame(temperature_c: float, humidity_pct: float) -> bytes:
    """A DHT22/AM2302's 40-bit answer: RH and T in tenths, 16 bits each, MSB first, T in sign-magnitude
    (bit 15 = below zero), then the checksum (the low byte of the sum of the four data bytes)."""
    rh = max(0, min(1000, round(humidity_pct * 10)))
    t = round(temperature_c * 10)
    t_word = (0x8000 if t < 0 else 0) | min(abs(t), 0x7FFF)
    body = bytes([rh >> 8, rh & 0xFF, t_word >> 8, t_word & 0xFF])
    return body + bytes([sum(body) & 0xFF])


def dht11_frame(temperature_c: float, humidity_pct: float) -> bytes:
    """A DHT11's 40-bit answer: whole %RH and °C with both decimal bytes 0, then the checksum.

    Below 0 °C newer DHT11s set bit 7 of the temperature decimal byte (Aosong DHT11 datasheet, as commonly quoted;
    unverified here), which the kernel's decode cannot place: the read fails with EIO.
    """
    rh = max(0, min(255, round(humidity_pct)))
    t = round(temperature_c)
    body = bytes([rh, 0, min(abs(t), 255), 0x80 if t < 0 else 0])
    return body + bytes([sum(body) & 0xFF])


def kernel_dht11_decode(frame: bytes) -> tuple[int, int]:
    """The kernel's dht11_decode (drivers/iio/humidity/dht11.c): 5 bytes → (milli °C, milli %RH); OSError(EIO)
    for a bad checksum or a frame it cannot place. One driver serves both chips: RH below 4 in the high byte
    can only be a DHT22 (100 % = 0x03E8 tenths), else both decimal bytes 0 is a DHT11."""
    hum_int, hum_dec, temp_int, temp_dec, checksum = frame
    if (hum_int + hum_dec + temp_int + temp_dec) & 0xFF != checksum:
        raise _oserror(errno.EIO)
    if hum_int < 4:
        temperature = (((temp_int & 0x7F) << 8) + temp_dec) * (-100 if temp_int & 0x80 else 100)
        return temperature, ((hum_int << 8) + hum_dec) * 100
    if temp_dec == 0 and hum_dec == 0:
        return temp_int * 1000, hum_int * 1000
    raise _oserror(errno.EIO)  # "Don't know how to decode data"


class EmulatedDht(EmulatedSysfsDevice):
    """The kernel's dht11 IIO driver with a DHT chip behind it: `frame` is what the chip sends (dht22_frame,
    dht11_frame), decoded as the kernel does into milli-units, cached for 2 s (DHT11_DATA_VALID_TIME).
    Faults: fail_next(errno) (a transfer that failed: not cached), corrupt_next (a bit flipped on the wire)."""

    attributes = ("name", "in_temp_input", "in_humidityrelative_input")

    def __init__(
        self,
        name: str,
        climate: Climate | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        frame: Callable[[float, float], bytes] = dht22_frame,
    ) -> None:
        super().__init__(name, climate, clock)
        self.frame = frame
        self.corrupt_next = 0
        self._cached_at: float | None = None
        self._cached: tuple[int, int] = (0, 0)

    def placeholder(self, attribute: str) -> str:
        return "dht11\n" if attribute == "name" else ""

    def render(self, attribute: str) -> str:
        if attribute == "name":
            return self.placeholder(attribute)
        now = self.clock()
        if self._cached_at is None or now - self._cached_at >= 2.0:
            self.check_fail()  # a failed transfer is not cached; the next read tries the sensor again
            self.reads += 1
            t_c, h_pct, _ = self.climate.sample()
            frame = self.frame(t_c, h_pct)
            if self.corrupt_next > 0:
                self.corrupt_next -= 1
                frame = bytes([frame[0] ^ 0x01, *frame[1:]])
            self._cached = kernel_dht11_decode(frame)
            self._cached_at = now
        return f"{self._cached[0] if attribute == 'in_temp_input' else self._cached[1]}\n"


D = TypeVar("D", bound=EmulatedSysfsDevice)


class FakeSysfs:
    """A directory shaped like /sys/bus/w1/devices or /sys/bus/iio/devices, backed by emulated devices."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.devices: dict[str, EmulatedSysfsDevice] = {}
        self._lock = threading.Lock()
        os.makedirs(root, exist_ok=True)

    def add(self, device: D) -> D:
        """The device's directory appears, with its attribute files."""
        path = os.path.join(self.root, device.name)
        os.makedirs(path, exist_ok=True)
        for attribute in device.attributes:
            # Placeholder files, so the tree looks right to `ls` and to os.path checks; reads go through reader().
            with open(os.path.join(path, attribute), "w", encoding="ascii") as f:
                f.write(device.placeholder(attribute))
        self.devices[device.name] = device
        return device

    def add_ds18b20(self, device_id: str, climate: Climate | None = None, **kwargs: Any) -> EmulatedDs18b20:
        return self.add(EmulatedDs18b20(device_id, climate, **kwargs))

    def add_dht22(self, iio_device: str = "iio:device0", climate: Climate | None = None, **kwargs: Any) -> EmulatedDht:
        return self.add(EmulatedDht(iio_device, climate, frame=dht22_frame, **kwargs))

    def remove(self, name: str) -> None:
        """The device disappears (unplugged 1-Wire sensor, unloaded overlay): its directory goes away."""
        shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    def restore(self, name: str) -> None:
        self.add(self.devices[name])

    def reader(self, path: str) -> str:
        """Stands in for sensors.sysfs.read_text: FileNotFoundError when the file is gone, else the kernel's text."""
        os.stat(path)  # FileNotFoundError exactly when a real sysfs read would raise it
        rel = os.path.relpath(path, self.root)
        name, _, attribute = rel.partition(os.sep)
        device = self.devices.get(name)
        if device is None or attribute not in device.attributes:
            with open(path, encoding="ascii") as f:
                return f.read()
        with self._lock:
            return device.render(attribute)
