"""Power meters behind one small interface (:class:`host.power.meters.base.Meter`), chosen by name.

The name is the inventory variable ``meter``; ``meter_port`` and other ``meter_*`` are its options.
Protocol facts: docs/power.md. Every driver takes a port string or an
already open serial object, names its units (W, V, A) and never returns None for a short
or corrupt frame: it raises a typed :class:`host.errors.MeterError`.
"""

from __future__ import annotations

import importlib

from host.errors import MeterError, UnknownMeterError
from host.power.meters.base import Meter

#: meter name -> "module:Class". Drivers are imported lazily.
REGISTRY = {
    "wt310e": "host.power.meters.wt300e:WT300E",
    "wt332e": "host.power.meters.wt300e:WT300E",
    "wt333e": "host.power.meters.wt300e:WT300E",
    "um24c": "host.power.meters.um:UMMeter",
    "um25c": "host.power.meters.um:UMMeter",
    "um34c": "host.power.meters.um:UMMeter",
    "ina219": "host.power.meters.ina:InaLogger",
    "ina226": "host.power.meters.ina:InaLogger",
    "jetson-ina3221": "host.power.meters.jetson:JetsonRails",
    "rpi5-pmic": "host.power.meters.rpi5:Rpi5Pmic",
    "nvml": "host.power.meters.nvml:NvmlGpu",
}


def meter_class(name: str) -> type:
    """The driver class for a meter name.

    Raises:
        UnknownMeterError: the name is not in :data:`REGISTRY`.
    """
    try:
        target = REGISTRY[name.lower()]
    except KeyError:
        raise UnknownMeterError(f"unknown meter {name!r}",
                                hint="one of: " + ", ".join(sorted(REGISTRY))) from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def open_meter(name: str, port=None, **options) -> Meter:
    """Create and open a meter: ``open_meter("um25c", "/dev/rfcomm0")``.

    Raises:
        UnknownMeterError, MeterError (the port cannot be opened, the meter does not
        identify as expected).
    """
    meter = meter_class(name)(port, name=name.lower(), **options)
    meter.open()
    return meter


__all__ = ["REGISTRY", "Meter", "MeterError", "meter_class", "open_meter"]
