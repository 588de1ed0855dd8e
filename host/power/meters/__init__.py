"""Power meters behind one small interface (:class:`host.power.meters.base.Meter`), chosen by name.

The name is the inventory variable ``meter``; ``meter_port`` and other ``meter_*`` are its options.
Protocol facts: docs/power.md. Every driver takes a port string or an
already open serial object, names its units (W, V, A) and never returns None for a short
or corrupt frame: it raises a typed :class:`host.errors.MeterError`.

A meter is one module here: its driver class declares ``INFO = MeterInfo(names=(...), ...)``
(:class:`host.power.meters.base.MeterInfo`) and :func:`registry` finds it (``pkgutil`` over this
package, once per process; modules whose name starts with ``_`` and ``base`` hold no drivers).
Nothing else names a meter: ``host meter --help``, ``host meter list`` and docs/power.md's meter
table (``host meter list --markdown``) are read from the registry.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from host.errors import MeterError, UnknownMeterError
from host.power.meters.base import Meter, MeterInfo


def _drivers(module) -> list:
    """The driver classes a module defines: Meter subclasses declaring their own ``INFO``."""
    return [obj for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, Meter) and obj.__module__ == module.__name__
            and isinstance(obj.__dict__.get("INFO"), MeterInfo)]


@functools.lru_cache(maxsize=None)
def registry() -> dict:
    """Meter name -> driver class, in name order, from every module of this package.

    Raises:
        MeterError: a driver module does not import, two drivers declare the same name, or a name
            is not lower case.
    """
    return discover(__path__, __name__)


def discover(path, package: str) -> dict:
    """Meter name -> driver class from the modules of the package ``package`` found on ``path``
    (see :func:`registry`, which is this for host/power/meters).

    Raises:
        MeterError: as :func:`registry`.
    """
    found: dict = {}
    for info in pkgutil.iter_modules(path):
        if info.name.startswith("_") or info.name == "base":
            continue
        try:
            module = importlib.import_module(f"{package}.{info.name}")
        except (ImportError, SyntaxError) as exc:
            where = f"{package}.{info.name}"
            raise MeterError(f"meter driver {where} does not import: {type(exc).__name__}: {exc}",
                             hint=f"python -c 'import {where}' shows where") from exc
        for cls in _drivers(module):
            for name in cls.INFO.names:
                _check_name(name, cls, found.get(name))
                found[name] = cls
    return dict(sorted(found.items()))


def _check_name(name: str, cls: type, other: type | None) -> None:
    """Raises MeterError when ``name`` is not lower case or ``other`` declares it too."""
    if name == name.lower() and other is None:
        return
    problem = f"also declared by {other.__module__}.{other.__name__}" if other else "names are lower case"
    raise MeterError(f"meter name {name!r} of {cls.__module__}.{cls.__name__}: {problem}",
                     hint="give each driver its own lower-case names in INFO.names")


def meter_names() -> list:
    """Every meter name, sorted."""
    return list(registry())


def meter_class(name: str) -> type:
    """The driver class for a meter name (any case).

    Raises:
        UnknownMeterError: no driver declares the name.
    """
    try:
        return registry()[name.lower()]
    except KeyError:
        raise UnknownMeterError(f"unknown meter {name!r}",
                                hint="one of: " + ", ".join(meter_names())) from None


def is_onboard(name: str) -> bool:
    """True when the meter ``name`` is read on the board (``INFO.onboard``); False for unknown names."""
    cls = registry().get(str(name).lower())
    return bool(cls is not None and cls.INFO.onboard)


def open_meter(name: str, port=None, **options) -> Meter:
    """Create and open a meter: ``open_meter("um25c", "/dev/rfcomm0")``.

    Raises:
        UnknownMeterError, MeterError (the port cannot be opened, the meter does not
        identify as expected).
    """
    meter = meter_class(name)(port, name=name.lower(), **options)
    meter.open()
    return meter


def markdown_table() -> str:
    """docs/power.md's meter table (§1): one row per driver class, in the order of its first name."""
    rows, seen = [], set()
    for cls in registry().values():
        if cls in seen:
            continue
        seen.add(cls)
        info = cls.INFO
        module = cls.__module__.rpartition(".")[2] + ".py"
        rows.append("| " + " | ".join((", ".join(f"`{n}`" for n in info.names), f"`{module}`", info.link,
                                        info.scope, info.interval)) + " |")
    head = "| `meter=` | Module | Link | Scope (§7) | Update interval (default) |\n|---|---|---|---|---|\n"
    return head + "\n".join(rows) + "\n"


__all__ = ["Meter", "MeterError", "MeterInfo", "discover", "is_onboard", "markdown_table", "meter_class",
           "meter_names", "open_meter", "registry"]
