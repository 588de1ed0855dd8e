"""ONNX Runtime's layer profile (``SessionOptions.enable_profiling``, the runner's ``--profile-prefix``):
a Chrome trace-event JSON list (ONNX Runtime docs, "Profiling tools"); each kernel run is an event with
``cat: "Node"``, ``name: "<node>_kernel_time"``, ``dur`` in µs and ``args.op_name`` /
``args.provider``; one row per node, its median over calls (so that the first call and the warm-up do
not dominate). Python 3.8.
"""

from __future__ import annotations

import json
import statistics

from runners.profiles import LayerProfiler, NoLayerProfile, Reader, shared

SUFFIX = "_kernel_time"
METHOD = ("ONNX Runtime session profiling (Chrome trace), one untimed process; per node: the median "
          "kernel time over its calls")


def parse_chrome_trace(events: list) -> list:
    """Rows (:func:`runners.profiles.shared`) from ONNX Runtime's profile events.

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
    return shared(rows)


def layer_rows(doc: dict, read: Reader) -> list:
    """Rows of the first trace the result's ``profile_files`` names.

    Raises:
        NoLayerProfile: the run named no trace. ValueError: unreadable. OSError: from ``read``.
    """
    files = doc.get("profile_files") or []
    if not files:
        raise NoLayerProfile("the run wrote no Chrome trace")
    return parse_chrome_trace(json.loads(read(files[0]).decode("utf-8")))


PROFILER = LayerProfiler("chrome_trace", METHOD, layer_rows)
