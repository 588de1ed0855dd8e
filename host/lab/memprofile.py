"""Heap profiles of one runner process: Valgrind Massif and memray, next to the RSS figures
every runner reports.

* ``massif`` — ModelGauge's method: the runner under ``valgrind --tool=massif --stacks=yes``
  with ``PYTHONMALLOC=malloc`` (so Python's own allocations go through malloc and are seen).
  The peak is the largest snapshot's ``mem_heap_B + mem_heap_extra_B + mem_stacks_B``
  (useful heap + allocator overhead + stacks; Valgrind manual, "Massif: a heap profiler",
  §9.2.6 on the output format).
* ``memray`` — Bloomberg's memray (``python -m memray run``), far cheaper: the peak of the
  memory its tracked allocations held (``memray stats --json``: ``metadata.peak_memory``).

Both slow the process (Massif by 10–50×), so the profiled process is an extra one per cell
with a minimal loop, and its latencies are discarded; only its peak is kept, in the cell's
``memory_profile`` block, named by ``memory_method``. The RSS figures (``memory``) are never
replaced: reports keep one column per method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

#: Heap-profiling methods, besides the runner's own ``rss`` (VmRSS/VmHWM).
METHODS = ("massif", "memray")
_MIB = float(1 << 20)


@dataclass(frozen=True)
class ProfileRun:
    """How to run the runner under a profiler (:meth:`host.lab.board.Board.command`'s
    ``wrapper``, ``python_args``, ``env``, ``after``), which file holds the report, and its
    parser."""

    wrapper: tuple
    python_args: tuple
    env: dict
    after: tuple
    report: str
    parse: Callable[[str], dict]


def plan(method: str, raw: str) -> ProfileRun:
    """The :class:`ProfileRun` for ``method`` writing its raw profile to ``raw`` (a board path).

    Raises:
        ValueError: an unknown method.
    """
    if method == "massif":
        # totals only: trees one level deep and detailed only at the peak keep the file small
        valgrind = ("valgrind", "--tool=massif", "--stacks=yes", "--depth=1", "--detailed-freq=1000000",
                    f"--massif-out-file={raw}")
        return ProfileRun(valgrind, (), {"PYTHONMALLOC": "malloc"}, (), raw, parse_massif)
    if method == "memray":
        stats = raw + ".stats"
        return ProfileRun((), ("-m", "memray", "run", "--quiet", "--force", "-o", raw), {},
                          ("-m", "memray", "stats", "--json", "--force", "-o", stats, raw), stats,
                          parse_memray_stats)
    raise ValueError(f"unknown memory method {method!r} (one of: rss, {', '.join(METHODS)})")


def parse_massif(text: str) -> dict:
    """The peak of a Massif output file (``massif.out.<pid>`` format).

    Returns:
        ``{"memory_method": "massif", "heap_mib_peak", "heap_mib_useful", "heap_mib_extra",
        "stacks_mib", "snapshots"}`` at the snapshot where useful + extra + stacks is largest.

    Raises:
        ValueError: no snapshot in ``text``.
    """
    snapshots, current = [], None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "snapshot":
            current = {}
            snapshots.append(current)
        elif current is not None and key in ("mem_heap_B", "mem_heap_extra_B", "mem_stacks_B"):
            current[key] = int(value)
    full = [s for s in snapshots if len(s) == 3]
    if not full:
        raise ValueError("no complete snapshot in the Massif output")
    peak = max(full, key=lambda s: s["mem_heap_B"] + s["mem_heap_extra_B"] + s["mem_stacks_B"])
    total = peak["mem_heap_B"] + peak["mem_heap_extra_B"] + peak["mem_stacks_B"]
    return {"memory_method": "massif", "heap_mib_peak": total / _MIB,
            "heap_mib_useful": peak["mem_heap_B"] / _MIB, "heap_mib_extra": peak["mem_heap_extra_B"] / _MIB,
            "stacks_mib": peak["mem_stacks_B"] / _MIB, "snapshots": len(snapshots)}


def parse_memray_stats(text: str) -> dict:
    """The peak of ``memray stats --json`` output.

    Returns:
        ``{"memory_method": "memray", "heap_mib_peak", "allocations", "python_allocator"}``.

    Raises:
        ValueError: not memray stats JSON.
    """
    try:
        meta = json.loads(text)["metadata"]
        peak = int(meta["peak_memory"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not memray stats JSON ({exc})") from None
    return {"memory_method": "memray", "heap_mib_peak": peak / _MIB,
            "allocations": meta.get("total_allocations"), "python_allocator": meta.get("python_allocator")}
