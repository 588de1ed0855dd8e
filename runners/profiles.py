"""Per-layer profile parsers, one per descriptor ``layer_profiler`` kind (runtime side; Python 3.8).

A layer-profile run (``host bench --profile``) leaves the runner's result document and, for some
runtimes, profile files. :func:`layer_rows` turns them into rows
``{"node", "op", "provider", "calls", "median_us", "total_us", "share"}``, largest median first,
with the method that produced them, so the host never knows which runtime wrote the profile.

- ``chrome_trace`` (ONNX Runtime ``SessionOptions.enable_profiling``, the runner's
  ``--profile-prefix``): a Chrome trace-event JSON list (ONNX Runtime docs, "Profiling tools");
  each kernel run is an event with ``cat: "Node"``, ``name: "<node>_kernel_time"``, ``dur`` in µs
  and ``args.op_name`` / ``args.provider``; one row per node, its median over calls (so that the
  first call and the warm-up do not dominate).
- ``trtexec`` (TensorRT ``--exportProfile``): the ``profile`` of the result's ``trtexec`` block
  (:func:`runners.trtexec.parse_profile`).
"""

from __future__ import annotations

import json
import statistics
from typing import Callable, Tuple

SUFFIX = "_kernel_time"


class NoLayerProfile(Exception):
    """The runtime has no layer profiler, or its run wrote no profile file."""


METHODS = {
    "chrome_trace": "ONNX Runtime session profiling (Chrome trace), one untimed process; per node: the "
                    "median kernel time over its calls",
    "trtexec": "trtexec --exportProfile on the cell's engine (--separateProfileRun), one untimed "
               "process; per layer: its median (else average) time",
}


def _shared(rows: list) -> list:
    total = sum(r["median_us"] for r in rows) or 1.0
    for r in rows:
        r["share"] = r["median_us"] / total
    return sorted(rows, key=lambda r: (-r["median_us"], r["node"]))


def parse_chrome_trace(events: list) -> list:
    """Rows from ONNX Runtime's profile events (see the module docstring).

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
    return _shared(rows)


def from_trtexec(profile: dict) -> list:
    """Rows from the ``profile`` of a runner's ``trtexec`` block: per layer its median time when
    the version wrote one, else its average; ``op`` None (TensorRT names fused layers, not ops).

    Raises:
        ValueError: no layers.
    """
    layers = (profile or {}).get("layers") or []
    if not layers:
        raise ValueError("the trtexec block has no layer profile")
    calls = (profile or {}).get("count")
    return _shared([{"node": x["name"], "op": None, "provider": "TensorRT", "calls": calls,
                     "median_us": 1000.0 * (x["median_ms"] if x.get("median_ms") is not None
                                            else x["average_ms"]),
                     "total_us": 1000.0 * x["time_ms"]} for x in layers])


def layer_rows(profiler: str, doc: dict, read: Callable[[str], bytes]) -> Tuple[list, str]:
    """``(rows, method)`` of a layer-profile run whose runtime's descriptor says ``profiler``;
    ``doc`` is its result document, ``read`` reads a file it names (on the board).

    Raises:
        NoLayerProfile: ``profiler`` is empty or unknown, or the run wrote no profile file.
        ValueError: the profile is unreadable. OSError: from ``read``.
    """
    if profiler == "trtexec":
        return from_trtexec(((doc.get("trtexec") or {}).get("profile")) or {}), METHODS[profiler]
    files = doc.get("profile_files") or []
    if profiler != "chrome_trace" or not files:
        raise NoLayerProfile(profiler or "no layer profiler")
    return parse_chrome_trace(json.loads(read(files[0]).decode("utf-8"))), METHODS[profiler]
