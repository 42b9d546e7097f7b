"""What a sensor type is, in one value: its names, where it can be, what it measures and the config keys it takes.
Each driver module declares its own beside the driver; sensors.registry lists them, and open_sensor, the config
check, `python -m sensors scan`, the demo and Home Assistant discovery read them there. Which emulated chip
stands in for a type is the emulation's business (sensors/emulated/chips.py): no driver imports its emulator."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from sensors.errors import SensorSpecError

if TYPE_CHECKING:
    from sensors.i2c import I2CPort
    from sensors.reading import Sensor

# Where the chip is read: an I2C bus, the kernel's 1-Wire sysfs tree, or its IIO sysfs tree.
Connection = Literal["i2c", "w1", "iio"]


@dataclass(frozen=True)
class ConfigKey:
    """One config key a sensor type takes (besides id, name, interval_s, ... which every sensor has)."""

    name: str
    check: Callable[[Any, str], Any]  # (value, type name) → the value to use; raises SensorSpecError
    default: Any = None  # None: required
    example: str = ""  # how a value looks, for messages and `python -m sensors types`
    what: str = ""  # what the value is, for people: "its 1-Wire id"


def _bus(value: Any, type_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SensorSpecError(f"bus: expected an I2C bus number like 1, got {value!r}")
    return value


def _address_check(addresses: tuple[int, ...]) -> Callable[[Any, str], int]:
    def check(value: Any, type_name: str) -> int:
        if isinstance(value, str):
            try:
                value = int(value, 0)
            except ValueError as err:
                raise SensorSpecError(f"address: {value!r} is not a number (write it like 0x76)") from err
        if isinstance(value, bool) or not isinstance(value, int):
            raise SensorSpecError(f"address: expected a number like 0x{addresses[0]:02x}, got {value!r}")
        if value not in addresses:
            allowed = ", ".join(f"0x{a:02x}" for a in addresses)
            raise SensorSpecError(f"address: a {type_name} can only be at {allowed}, not 0x{value:02x}")
        return value

    return check


def i2c_keys(addresses: tuple[int, ...]) -> tuple[ConfigKey, ...]:
    """bus (default 1, /dev/i2c-1 on a Pi) and address (default: the chip's first address)."""
    return (
        ConfigKey("bus", _bus, default=1, example="1"),
        ConfigKey("address", _address_check(addresses), default=addresses[0], example=f"0x{addresses[0]:02x}"),
    )


def sysfs_key(name: str, what: str, example: str) -> ConfigKey:
    """A required key naming a sysfs device directory (its 1-Wire id, its iio:deviceN)."""

    def check(value: Any, type_name: str) -> str:
        if not isinstance(value, str) or not value or "/" in value or value in (".", ".."):
            raise SensorSpecError(f"{name}: a {type_name} needs {what}, like {example}")
        return value

    return ConfigKey(name, check, example=example, what=what)


@dataclass(frozen=True)
class SensorType:
    """One kind of sensor chip and everything the rest of Homeboard needs to know about it."""

    names: tuple[str, ...]  # `type:` values in config.yaml; names[0] is the one scan suggests
    title: str  # the chip as people call it: "BME280"
    connection: Connection
    # Reading attribute → the chip's specified range: a value outside it is an error, never shown.
    quantities: Mapping[str, tuple[float, float]]
    keys: tuple[ConfigKey, ...]
    location_key: str  # the key that says where the chip is: address, device, iio_device
    # Opens the driver: (I2CPort or sysfs.SysfsDevice, type name, stuck_reads) → Sensor; checks the chip's identity.
    open: Callable[[Any, str, int], Sensor]
    enable: str  # what turns its bus or kernel driver on, for people: "dtoverlay=w1-gpio in ..."
    addresses: tuple[int, ...] = ()  # I2C: every address the chip can have; the first is the default
    probe: Callable[[I2CPort], str] | None = None  # I2C scan: says what answers at an address
    # Scan of a sysfs tree: 1-Wire family code / IIO driver name → the chip's name.
    sysfs_ids: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        # Shared by every caller: read-only, so no caller can change what a type is for the others.
        object.__setattr__(self, "quantities", MappingProxyType(dict(self.quantities)))
        object.__setattr__(self, "sysfs_ids", MappingProxyType(dict(self.sysfs_ids)))

    def settings(self, spec: Mapping[str, Any], type_name: str | None = None) -> dict[str, Any]:
        """This type's keys from a config entry, checked, with defaults filled in. Raises SensorSpecError."""
        type_name = type_name or self.names[0]
        values: dict[str, Any] = {}
        for key in self.keys:
            value = spec.get(key.name)
            if value is None:
                if key.default is None:
                    raise SensorSpecError(f"{key.name}: required for type {type_name} ({key.what}, like {key.example})")
                value = key.default
            values[key.name] = key.check(value, type_name)
        return values

    def key_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)
