"""Which emulated chip stands in for which sensor type, for the demo (sensors.demo) and the tests.

The drivers do not know their emulators (a Pi never loads this package); every type in sensors.registry has one
here, keyed by its first name (tests/test_sensors_registry.py reads each through its real driver).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from sensors import bme280
from sensors.descriptor import SensorType
from sensors.emulated.bme280 import EmulatedBme280
from sensors.emulated.climate import Climate
from sensors.emulated.mcp9808 import EmulatedMcp9808
from sensors.emulated.sht3x import EmulatedSht3x
from sensors.emulated.sysfs import EmulatedDht, EmulatedDs18b20, dht11_frame, dht22_frame

# (address or device name, Climate) → an emulated I2C chip to attach to a FakeBus, or an emulated sysfs device to
# add to a FakeSysfs.
Emulate = Callable[[Any, Climate], Any]

EMULATORS: Mapping[str, Emulate] = MappingProxyType(
    {
        "bme280": EmulatedBme280,  # (address, climate), with a real chip's trim
        "bmp280": lambda address, climate: EmulatedBme280(address, climate, chip_id=bme280.CHIP_IDS_BMP280[0]),
        "sht31": EmulatedSht3x,
        "mcp9808": EmulatedMcp9808,
        "ds18b20": EmulatedDs18b20,  # (1-Wire id, climate)
        "dht22": lambda iio_device, climate: EmulatedDht(iio_device, climate, frame=dht22_frame),
        "dht11": lambda iio_device, climate: EmulatedDht(iio_device, climate, frame=dht11_frame),
    }
)


def emulate(kind: SensorType, location: Any, climate: Climate) -> Any:
    """The emulated chip of type `kind` at `location` (its address, 1-Wire id or IIO device), in `climate`."""
    try:
        make = EMULATORS[kind.names[0]]
    except KeyError:
        raise LookupError(
            f"no emulated chip for sensor type {kind.names[0]} (add one to sensors/emulated/chips.py)"
        ) from None
    return make(location, climate)
