"""The TensorRT engine cache (Python 3.8): :func:`engine_key` over every input that changes an engine,
the default cache folder, builder memory figures from its log and the spread of ``rebuild=N`` engines.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from typing import Mapping, Sequence, Tuple

#: Engine-cache key schema; bump when what goes into an engine changes.
KEY_VERSION = 1


def engine_key(
    model_sha256: str,
    precision: str,
    recipe: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: Tuple[int, int],
    builder_options: Mapping,
) -> str:
    """The engine cache key: sha256 (hex) of the canonical JSON of every input that changes the
    engine — the model's sha256, precision and recipe, the TensorRT version string, the GPU's
    name and compute capability, and ``builder_options`` (workspace, flags, typing, shapes, ...;
    key order does not matter). Any change gives another key; the same inputs, the same key."""
    doc = {
        "key_version": KEY_VERSION,
        "model_sha256": model_sha256,
        "precision": precision,
        "recipe": recipe,
        "tensorrt": str(trt_version),
        "gpu": str(gpu_name),
        "compute_capability": [int(compute_capability[0]), int(compute_capability[1])],
        "builder_options": dict(builder_options),
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_cache_dir(model_path: str) -> str:
    """``engines/`` beside the model's folder: on a board the model is ``<work>/models/<sha>.onnx``,
    so engines go to ``<work>/engines/``."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(model_path))), "engines")


_MEMORY_LINE = re.compile(
    r"(Total Host Persistent|Total Device Persistent|Total Scratch|Max Scratch|"
    r"Total Activation|Total Weights) Memory:\s*(\d+)"
)


def builder_memory(lines: Sequence[str]) -> dict:
    """Memory figures from a TensorRT builder log (INFO level), in bytes: ``host_persistent_bytes``,
    ``device_persistent_bytes``, ``scratch_bytes`` ("Total Scratch" in 8.x, "Max Scratch" in 10.x),
    ``activation_bytes``, ``weights_bytes`` (the last two: 10.x); a figure the log lacks is absent.
    The lines look like ``[TRT] [I] Total Device Persistent Memory: 274944`` (8.x) or
    ``... Memory: 124928 bytes`` (10.x)."""
    names = {
        "Total Host Persistent": "host_persistent_bytes",
        "Total Device Persistent": "device_persistent_bytes",
        "Total Scratch": "scratch_bytes",
        "Max Scratch": "scratch_bytes",
        "Total Activation": "activation_bytes",
        "Total Weights": "weights_bytes",
    }
    out = {}
    for line in lines:
        for m in _MEMORY_LINE.finditer(line):
            out[names[m.group(1)]] = int(m.group(2))
    return out


def rebuild_spread(builds: Sequence[Mapping]) -> dict:
    """The spread of ``--rebuild`` engines' latencies. ``builds``: one mapping per engine with
    ``latency_ms_p50`` (device_compute) and ``sha256`` of its serialized bytes. Returns
    ``{"builds", "distinct_engines", "latency_ms_p50_min", "latency_ms_p50_max", "max_over_min",
    "sd_log"}`` (``sd_log``: sample std of ln p50, ≈ the CoV; None with one build).

    Raises:
        ValueError: no builds, or a p50 that is not positive.
    """
    p50 = [float(b["latency_ms_p50"]) for b in builds]
    if not p50 or min(p50) <= 0:
        raise ValueError("rebuild_spread needs at least one build with a positive p50")
    logs = [math.log(v) for v in p50]
    sd = None
    if len(logs) > 1:
        mean = sum(logs) / len(logs)
        sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))
    return {
        "builds": len(p50),
        "distinct_engines": len({b["sha256"] for b in builds}),
        "latency_ms_p50_min": min(p50),
        "latency_ms_p50_max": max(p50),
        "max_over_min": max(p50) / min(p50),
        "sd_log": sd,
    }

def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename), creating its folder."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
