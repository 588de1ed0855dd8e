"""Per-layer profiles (``host bench --profile``): one extra, untimed runner process per cell with
the runtime's own profiler on; the runtime's own parser (its descriptor's ``layer_profiler``, through
:func:`runners.profiles.layer_rows`) parses it into rows, and this module summarizes them per op.

The profiler itself costs time on every call: these figures say where time goes, never how long
the model takes — that is the timed loop's job.
"""

from __future__ import annotations


def by_op(rows: list) -> list:
    """The rows summed per op type: ``{"op", "nodes", "median_us", "share"}``, largest first."""
    ops: dict = {}
    for r in rows:
        o = ops.setdefault(r["op"], {"op": r["op"], "nodes": 0, "median_us": 0.0, "share": 0.0})
        o["nodes"] += 1
        o["median_us"] += r["median_us"]
        o["share"] += r["share"]
    return sorted(ops.values(), key=lambda o: -o["median_us"])


def summary(rows: list, method: str, top: int = 10) -> dict:
    """The cell's ``profile`` block: method, the ``top`` layers, the per-op totals."""
    return {"method": method, "layers": len(rows), "top": rows[:top], "by_op": by_op(rows)}
