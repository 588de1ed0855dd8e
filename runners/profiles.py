"""Per-layer profiles, runtime side (Python 3.8): the row shape every runtime's parser returns, and the
call the host makes. Each runtime with a profiler declares one :class:`LayerProfiler` in its descriptor
(``layer_profiler``), its parser in its own package (ONNX Runtime's Chrome trace in
``runners/backends/ort/profile.py``, trtexec's ``--exportProfile`` in
``runners/backends/tensorrt/trtexec.py``); nothing here names a runtime.

A layer-profile run (``host bench --profile``) leaves the runner's result document and, for some
runtimes, profile files. :func:`layer_rows` turns them into rows
``{"node", "op", "provider", "calls", "median_us", "total_us", "share"}``, largest median first,
with the method that produced them, so the host never knows which runtime wrote the profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

#: reads a file the result names (on the board), e.g. the host's ``transport.read``
Reader = Callable[[str], bytes]


class NoLayerProfile(Exception):
    """The runtime has no layer profiler, or its run wrote no profile file."""


@dataclass(frozen=True)
class LayerProfiler:
    """How one runtime's layer-profile run becomes rows: ``name`` (short, e.g. ``chrome_trace``; the
    descriptor's JSON view shows it), ``method`` (one sentence for the cell's ``profile.method``) and
    ``rows(doc, read)`` (the result document and a file reader -> rows, see :func:`shared`; raises
    :class:`NoLayerProfile` when the run wrote no profile, ValueError when it is unreadable)."""

    name: str
    method: str
    rows: Callable[[dict, Reader], list]


def shared(rows: list) -> list:
    """``rows`` (each with ``node`` and ``median_us``) with their ``share`` of the summed medians,
    largest median first."""
    total = sum(r["median_us"] for r in rows) or 1.0
    for r in rows:
        r["share"] = r["median_us"] / total
    return sorted(rows, key=lambda r: (-r["median_us"], r["node"]))


def layer_rows(profiler: Optional[LayerProfiler], doc: dict, read: Reader) -> Tuple[list, str]:
    """``(rows, method)`` of a layer-profile run whose runtime's descriptor declares ``profiler``;
    ``doc`` is its result document, ``read`` reads a file it names (on the board).

    Raises:
        NoLayerProfile: no ``profiler``, or the run wrote no profile.
        ValueError: the profile is unreadable. OSError: from ``read``.
    """
    if not profiler:
        raise NoLayerProfile("no layer profiler")
    return profiler.rows(doc, read), profiler.method
