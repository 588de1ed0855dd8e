"""Backends: the small runtime-specific part of a runner.

A backend loads a model, declares its inputs, binds synthesized inputs and performs one
inference per :meth:`Backend.infer` call. Everything else (warm-up, the timed loop,
statistics, memory, the result document) is shared in :mod:`runners.core`.

Backends are looked up by name and imported lazily, so a missing runtime only matters
when its backend is chosen (as in Polygraphy's and MLPerf's reference harnesses).
"""

from __future__ import annotations

import importlib
from typing import Mapping

import numpy as np

from runners.errors import BackendUnavailableError
from runners.inputs import TensorSpec

#: name -> "module:Class"; TensorRT and VART backends join here (see issues).
REGISTRY = {
    "ort": "runners.backends.ort:OrtCpuBackend",
    "null": "runners.backends.null:NullBackend",
}


class Backend:
    """Interface of a runtime backend. Lifecycle: ``load`` → ``inputs`` → ``prepare`` →
    ``infer`` (many times) → ``close``.

    ``infer`` is the only call inside the timed region; it must perform one complete,
    synchronous inference on the prepared inputs (outputs ready when it returns).
    """

    name = "base"
    #: latency level of ``infer`` (measurement.md §1): "host_call" for a runtime API call.
    latency_level = "host_call"

    def __init__(self, options: Mapping | None = None):
        self.options = dict(options or {})

    def load(self, model_path: str | None) -> None:
        """Create the session/engine. Raises ModelLoadError."""
        raise NotImplementedError

    def inputs(self) -> list[TensorSpec]:
        """The model's inputs with declared dtypes and (possibly dynamic) shapes."""
        raise NotImplementedError

    def prepare(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Bind inputs for the following ``infer`` calls (untimed). Raises InferenceError."""
        raise NotImplementedError

    def infer(self) -> None:
        """Run one inference on the prepared inputs. Raises InferenceError."""
        raise NotImplementedError

    def runtime_info(self) -> dict:
        """``{"name", "version", "provider", "threads", ...}`` for the result."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the session."""


def get_backend(name: str, options: Mapping | None = None) -> Backend:
    """Instantiate the backend registered as ``name``.

    Raises:
        BackendUnavailableError: unknown name, or its module cannot be imported.
    """
    try:
        target = REGISTRY[name]
    except KeyError:
        raise BackendUnavailableError(
            f"unknown backend {name!r}; available: {', '.join(sorted(REGISTRY))}"
        ) from None
    module_name, _, cls_name = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, cls_name)(options)
