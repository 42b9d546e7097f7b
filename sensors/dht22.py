"""DHT22 / AM2302 and DHT11 through the kernel `dht11` IIO driver (dtoverlay=dht11,gpiopin=N): parsing, the driver.

Bit-banging the DHT22 from Python is unreliable (27 µs vs 70 µs pulses on a non-real-time OS); the kernel
driver times the edges in an IRQ handler. Its reads fail routinely (EIO, ETIMEDOUT, EAGAIN) and it caches a
good read for 2 s, so retries are spaced at least 2 s apart (Linux drivers/iio/humidity/dht11.c).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from typing import Any

from sensors.descriptor import SensorType, sysfs_key
from sensors.errors import BusError, NoDeviceError, WrongChipError
from sensors.reading import Reading, StuckDetector, check_range
from sensors.sysfs import IIO_ROOT, Reader, SysfsDevice, read_text

DRIVER_NAME = "dht11"  # the kernel driver's name for DHT11, DHT21 and DHT22 alike
RETRY_ERRNOS = frozenset({errno.EIO, errno.ETIMEDOUT, errno.EAGAIN})
MIN_RETRY_S = 2.0  # the kernel's DHT11_DATA_VALID_TIME: an earlier retry only returns the cached result
DEFAULT_DEADLINE_S = 5.0
TEMPERATURE_RANGE_C = (-40.0, 80.0)
HUMIDITY_RANGE_PCT = (0.0, 100.0)
DHT11_TEMPERATURE_RANGE_C = (0.0, 50.0)
DHT11_HUMIDITY_RANGE_PCT = (20.0, 90.0)

_OVERLAY = "check the wiring and dtoverlay=dht11,gpiopin=N in /boot/firmware/config.txt"


def parse_milli(text: str, where: str, quantity: str) -> int:
    """An IIO processed value in milli-units ("21300\\n") → the integer (divide by 1000 for units)."""
    try:
        return int(text.strip())
    except ValueError as err:
        raise BusError(f"{where}: {quantity} reads {text.strip()[:40]!r}, not a number") from err


class Dht22:
    """Reads in_temp_input and in_humidityrelative_input of one iio:deviceN named "dht11"; `kind` is the chip
    behind it (its name and ranges), DHT22 unless given."""

    def __init__(
        self,
        iio_device: str,
        root: str = IIO_ROOT,
        reader: Reader = read_text,
        *,
        stuck_reads: int = 0,
        deadline_s: float = DEFAULT_DEADLINE_S,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        kind: SensorType | None = None,
    ) -> None:
        self.kind = kind or DHT22
        self.iio_device = iio_device
        self.reader = reader
        self.deadline_s = deadline_s
        self.sleep = sleep
        self.monotonic = monotonic
        self.where = f"{self.kind.title} at {iio_device}"
        self.source = f"iio:{self.kind.names[0]}/{iio_device}"
        self.path = os.path.join(root, iio_device)
        try:
            name = reader(os.path.join(self.path, "name")).strip()
        except FileNotFoundError as err:
            raise NoDeviceError(f"no IIO device {iio_device} under {root}: {_OVERLAY}") from err
        except OSError as err:
            raise BusError(f"{self.where}: cannot read its name: {err.strerror or err}") from err
        if name != DRIVER_NAME:
            # iio:deviceN numbers are not stable across boots: another IIO driver may have taken this one.
            raise WrongChipError(f"{self.where}: this IIO device is {name!r}, not the dht11 driver; check iio_device")
        self._stuck = StuckDetector(self.where, stuck_reads)
        self._last_read_at: float | None = None

    def _read_once(self) -> tuple[int, int]:
        t = self.reader(os.path.join(self.path, "in_temp_input"))
        h = self.reader(os.path.join(self.path, "in_humidityrelative_input"))
        return parse_milli(t, self.where, "temperature"), parse_milli(h, self.where, "humidity")

    def read(self) -> Reading:
        deadline = self.monotonic() + self.deadline_s
        while True:
            attempt_at = self.monotonic()
            try:
                t_milli, h_milli = self._read_once()
                break
            except FileNotFoundError as err:
                raise NoDeviceError(f"{self.where}: the IIO device is gone: {_OVERLAY}") from err
            except OSError as err:
                if err.errno not in RETRY_ERRNOS:
                    raise BusError(f"{self.where}: read failed: {err.strerror or err}") from err
                if attempt_at + MIN_RETRY_S > deadline:
                    what = {errno.ETIMEDOUT: "no answer", errno.EAGAIN: "timer too coarse"}.get(err.errno, "bad data")
                    raise BusError(
                        f"{self.where}: no good read within {self.deadline_s:g} s ({what}, errno {err.errno}): "
                        f"{_OVERLAY}; a long cable needs a pull-up"
                    ) from err
                self.sleep(max(0.0, attempt_at + MIN_RETRY_S - self.monotonic()))
        # Repeats within 2 s are the kernel's cache, not a stuck sensor.
        previous, self._last_read_at = self._last_read_at, attempt_at
        if previous is None or attempt_at - previous >= MIN_RETRY_S:
            self._stuck.check((t_milli, h_milli))
        return self._reading(t_milli, h_milli)

    def _reading(self, t_milli: int, h_milli: int) -> Reading:
        """The milli-unit values checked against the chip's ranges (its descriptor's)."""
        ranges = self.kind.quantities
        return Reading(
            check_range(self.where, "temperature", t_milli / 1000, ranges["temperature_c"], "°C"),
            check_range(self.where, "humidity", h_milli / 1000, ranges["humidity_pct"], "%"),
        )

    def close(self) -> None:
        pass


class Dht11(Dht22):
    """A DHT11: whole °C and %RH. The kernel passes a DHT11's whole units on as milli-units and decodes a frame with
    tenths as a DHT22's, so a value with a fraction is not from a DHT11: an error, not a reading."""

    def __init__(self, iio_device: str, root: str = IIO_ROOT, reader: Reader = read_text, **kwargs: Any) -> None:
        kwargs.setdefault("kind", DHT11)
        # No stuck detection: in whole units a steady room repeats the same values for hours.
        kwargs["stuck_reads"] = 0
        super().__init__(iio_device, root, reader, **kwargs)

    def _reading(self, t_milli: int, h_milli: int) -> Reading:
        if t_milli % 1000 or h_milli % 1000:
            raise WrongChipError(
                f"{self.where}: reads {t_milli / 1000:g} °C, {h_milli / 1000:g} %RH with tenths; a DHT11 sends whole "
                "units: this looks like a DHT22 (set type: dht22)"
            )
        return super()._reading(t_milli, h_milli)


IIO_DEVICE_KEY = sysfs_key("iio_device", "its IIO device", "iio:device0")
ENABLE_DHT = "add dtoverlay=dht11,gpiopin=N (N: the DATA pin's GPIO number) to /boot/firmware/config.txt"


def _open_dht22(device: SysfsDevice, type_name: str, stuck_reads: int) -> Dht22:
    return Dht22(device.name, device.root, device.reader, stuck_reads=stuck_reads, kind=DHT22)


DHT22 = SensorType(
    names=("dht22", "am2302"),
    title="DHT22",
    connection="iio",
    quantities={"temperature_c": TEMPERATURE_RANGE_C, "humidity_pct": HUMIDITY_RANGE_PCT},
    keys=(IIO_DEVICE_KEY,),
    location_key="iio_device",
    open=_open_dht22,
    enable=ENABLE_DHT,
    sysfs_ids={DRIVER_NAME: "DHT22/AM2302"},
)


def _open_dht11(device: SysfsDevice, type_name: str, stuck_reads: int) -> Dht11:
    return Dht11(device.name, device.root, device.reader, stuck_reads=stuck_reads)


# The same kernel driver and files as the DHT22; a narrower range, whole units only.
DHT11 = SensorType(
    names=("dht11",),
    title="DHT11",
    connection="iio",
    quantities={"temperature_c": DHT11_TEMPERATURE_RANGE_C, "humidity_pct": DHT11_HUMIDITY_RANGE_PCT},
    keys=(IIO_DEVICE_KEY,),
    location_key="iio_device",
    open=_open_dht11,
    enable=ENABLE_DHT,
    sysfs_ids={DRIVER_NAME: "DHT11"},
)
