"""Reading kernel sysfs attribute files; a reader is injectable so tests and the demo can stand in for the kernel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

W1_ROOT = "/sys/bus/w1/devices"
IIO_ROOT = "/sys/bus/iio/devices"
ROOTS = {"w1": W1_ROOT, "iio": IIO_ROOT}  # by sensors.descriptor.Connection

Reader = Callable[[str], str]


def read_text(path: str) -> str:
    """One open-and-read, as the kernel wants it (for w1_slave every open starts a new conversion)."""
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


@dataclass(frozen=True)
class SysfsDevice:
    """Where a sysfs-read sensor is: its directory `name` under `root`, read through `reader`."""

    root: str
    name: str
    reader: Reader = read_text
