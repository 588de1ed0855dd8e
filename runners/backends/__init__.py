"""Backends: the small runtime-specific part of a runner.

A backend loads a model, declares its inputs, binds synthesized inputs and performs one
inference per :meth:`Backend.infer` call. Everything else (warm-up, the timed loop,
statistics, memory, the result document) is shared in :mod:`runners.core`. The interface
(:class:`Backend`, :class:`BackendDescriptor`, :class:`BackendOption`) is in
:mod:`runners.backends.base`, re-exported here.

Each runtime is one folder ``runners/backends/<name>/`` (a package; a runtime with nothing but
its class, such as ``null``, may be one module ``<name>.py``) whose ``__init__.py`` declares, once,
``DESCRIPTOR = BackendDescriptor(...)``: its name, its :class:`Backend` subclass, typed options,
latency level(s), precisions, device families, model file suffixes, layer profiler, the Python
modules its runtime needs and whether it is implemented. Everything runtime-specific (engine
build, tool parsers, version tables) lives in that folder too. Everything else derives from the
descriptors: the runner command line (``python -m runners run/backends``), the host's
``--backend``/option checks, the configuration slug, the inventory's accepted ``runtime=`` values,
which model files a device loads and is sent, fidelity, layer profiles and the image smoke test.

Discovery (:func:`descriptors`) lists the modules and packages of this package
(``pkgutil.iter_modules``) and reads their ``DESCRIPTOR``; importing a backend never imports its
runtime (that happens inside the backend's methods), so a missing runtime only matters when its
backend is chosen (as in Polygraphy's and MLPerf's reference harnesses).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Dict, Mapping, Tuple

from runners.backends.base import (
    OPTION_TYPES,
    Backend,
    BackendDescriptor,
    BackendOption,
    ModelCompiler,
    can_evaluate,
)
from runners.errors import BackendUnavailableError

__all__ = ["OPTION_TYPES", "Backend", "BackendDescriptor", "BackendOption", "ModelCompiler", "can_evaluate",
           "descriptors",
           "default_name", "implemented_names", "get_backend"]


@functools.lru_cache(maxsize=None)
def _discover() -> Tuple[BackendDescriptor, ...]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or (info.name == "base" and not info.ispkg):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        desc = getattr(module, "DESCRIPTOR", None)
        if not isinstance(desc, BackendDescriptor):
            continue
        if desc.name != info.name:
            raise ImportError(f"{module.__name__}: DESCRIPTOR.name is {desc.name!r}, expected {info.name!r}")
        if desc.implemented and desc.backend is None:
            raise ImportError(f"{module.__name__}: an implemented DESCRIPTOR needs its backend class")
        for opt in desc.options:
            if opt.kind not in OPTION_TYPES:
                raise ImportError(f"{module.__name__}: option {opt.name!r} has type {opt.kind!r}")
        found.append(desc)
    return tuple(sorted(found, key=lambda d: d.name))


def descriptors() -> Dict[str, BackendDescriptor]:
    """Every backend module's descriptor, by name (sorted). Imports no runtime.

    Raises:
        ImportError: a backend module whose DESCRIPTOR is malformed (named after another
            module, implemented without a class, an option of an unsupported type).
    """
    return {d.name: d for d in _discover()}


def default_name() -> str:
    """The name of the runtime whose descriptor says ``default`` (e.g. ``ort``).

    Raises:
        ImportError: not exactly one descriptor says ``default``.
    """
    names = [d.name for d in _discover() if d.default]
    if len(names) != 1:
        raise ImportError(f"runners.backends: expected one default runtime, found {names or 'none'}")
    return names[0]


def implemented_names() -> list:
    """Names of the backends this version can run, sorted (e.g. ``["null", "ort"]``)."""
    return [d.name for d in _discover() if d.implemented]


def get_backend(name: str, options: Mapping | None = None) -> Backend:
    """Instantiate the backend called ``name`` with ``options`` (as given; no defaults added).

    Raises:
        BackendUnavailableError: unknown name, or a backend not implemented in this version.
    """
    desc = descriptors().get(name)
    available = ", ".join(implemented_names())
    if desc is None:
        raise BackendUnavailableError(f"unknown backend {name!r}; available: {available}")
    if not desc.implemented:
        raise BackendUnavailableError(
            f"backend {name!r} is not implemented in this version ({desc.reason}); available: {available}")
    backend = desc.backend(options)
    backend.descriptor = desc
    return backend
