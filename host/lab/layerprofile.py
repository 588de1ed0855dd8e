"""Per-layer profiles (``host bench --profile``): one extra, untimed runner process per cell with
the runtime's own profiler on, its trace parsed into a table of layers.

ONNX Runtime (``SessionOptions.enable_profiling``, the runner's ``--profile-prefix``) writes a
Chrome trace-event JSON (a list of events; ONNX Runtime docs, "Profiling tools"): each kernel
run is an event with ``cat: "Node"``, ``name: "<node>_kernel_time"``, ``dur`` in µs and
``args.op_name`` / ``args.provider``. The table has one row per node: op type, provider, calls,
median and total µs, and its share of the summed medians (the median, not the mean, so that the
first call and the warm-up do not dominate). The profiler itself costs time on every call: these
figures say where time goes, never how long the model takes — that is the timed loop's job.
"""

from __future__ import annotations

import statistics

SUFFIX = "_kernel_time"


def parse_ort_trace(events: list) -> list:
    """Rows ``{"node", "op", "provider", "calls", "median_us", "total_us", "share"}`` sorted by
    median, largest first, from ONNX Runtime's profile events.

    Raises:
        ValueError: ``events`` is not a list of trace events.
    """
    if not isinstance(events, list):
        raise ValueError("an ONNX Runtime profile is a JSON list of trace events")
    runs: dict = {}
    for e in events:
        if not isinstance(e, dict) or e.get("cat") != "Node" or not str(e.get("name", "")).endswith(SUFFIX):
            continue
        args = e.get("args") or {}
        node = e["name"][: -len(SUFFIX)]
        row = runs.setdefault(node, {"node": node, "op": args.get("op_name"),
                                     "provider": args.get("provider"), "durations": []})
        row["durations"].append(float(e.get("dur", 0)))
    rows = []
    for row in runs.values():
        d = row.pop("durations")
        rows.append(dict(row, calls=len(d), median_us=statistics.median(d), total_us=sum(d)))
    total = sum(r["median_us"] for r in rows) or 1.0
    for r in rows:
        r["share"] = r["median_us"] / total
    return sorted(rows, key=lambda r: (-r["median_us"], r["node"]))


def from_trtexec(profile: dict) -> list:
    """Rows in the same shape from the ``profile`` of a runner's ``trtexec`` block (TensorRT's
    ``--exportProfile``, :func:`runners.trtexec.parse_profile`): per layer its median time when
    the version wrote one, else its average; ``op`` None (TensorRT names fused layers, not ops).

    Raises:
        ValueError: no layers.
    """
    layers = (profile or {}).get("layers") or []
    if not layers:
        raise ValueError("the trtexec block has no layer profile")
    rows = [{"node": x["name"], "op": None, "provider": "TensorRT", "calls": (profile or {}).get("count"),
             "median_us": 1000.0 * (x["median_ms"] if x.get("median_ms") is not None else x["average_ms"]),
             "total_us": 1000.0 * x["time_ms"]} for x in layers]
    total = sum(r["median_us"] for r in rows) or 1.0
    for r in rows:
        r["share"] = r["median_us"] / total
    return sorted(rows, key=lambda r: (-r["median_us"], r["node"]))


def by_op(rows: list) -> list:
    """The rows summed per op type: ``{"op", "nodes", "median_us", "share"}``, largest first."""
    ops: dict = {}
    for r in rows:
        o = ops.setdefault(r["op"], {"op": r["op"], "nodes": 0, "median_us": 0.0, "share": 0.0})
        o["nodes"] += 1
        o["median_us"] += r["median_us"]
        o["share"] += r["share"]
    return sorted(ops.values(), key=lambda o: -o["median_us"])


ORT_METHOD = ("ONNX Runtime session profiling (Chrome trace), one untimed process; per node: the median "
              "kernel time over its calls")
TRTEXEC_METHOD = ("trtexec --exportProfile on the cell's engine (--separateProfileRun), one untimed "
                  "process; per layer: its median (else average) time")


def summary(rows: list, top: int = 10, method: str = ORT_METHOD) -> dict:
    """The cell's ``profile`` block: method, the ``top`` layers, the per-op totals."""
    return {"method": method, "layers": len(rows), "top": rows[:top], "by_op": by_op(rows)}
