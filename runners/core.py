"""The runner lifecycle shared by every backend: load → warm-up → timed loop → result.

Timing uses ``time.perf_counter_ns`` around ``backend.infer()`` only. The timed loop
stops when **both** a minimum iteration count and a minimum duration are reached, or at
a maximum-duration cap (MLPerf LoadGen's rule: ``min_query_count`` and
``min_duration_ms``, capped by ``max_duration_ms``). Warm-up likewise ends when both
its count and time minimums are met (or at the cap).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import traceback
from array import array
from dataclasses import asdict, dataclass, field

import runners
from runners import stats
from runners.backends import get_backend
from runners.errors import RunnerError
from runners.inputs import resolve_shapes, synthesize
from runners.manifest import device_manifest, tool_manifest
from runners.memory import MemoryProbe
from runners.util import file_sha256, utc_now


@dataclass
class Policy:
    """When warm-up and the timed loop stop, and what makes a result VALID.

    Units are in the names. Defaults: warm-up >= 20 iterations and >= 1 s; timed loop
    >= 100 iterations and >= 5 s, capped at 60 s (each loop); robust CoV <= 0.10; 60 FPS budget.
    """

    warmup_min_iterations: int = 20
    warmup_min_s: float = 1.0
    min_iterations: int = 100
    min_duration_s: float = 5.0
    max_duration_s: float = 60.0
    cov_max: float = 0.10
    fps: float = 60.0

    def check(self) -> None:
        """Raise ValueError when the policy is self-contradictory."""
        if self.min_iterations < 1 or self.warmup_min_iterations < 0:
            raise ValueError("iteration minimums must be >= 1 (warm-up >= 0)")
        if self.min_duration_s < 0 or self.warmup_min_s < 0:
            raise ValueError("duration minimums must be >= 0")
        if self.max_duration_s <= 0:
            raise ValueError("max duration must be > 0")
        if self.fps <= 0 or self.cov_max <= 0:
            raise ValueError("fps and cov_max must be > 0")


@dataclass
class RunConfig:
    """What to run: backend, model, inputs, options and the stop policy."""

    backend: str = "ort"
    model: str | None = None
    batch: int | None = 1
    shapes: dict = field(default_factory=dict)
    seed: int = 0
    options: dict = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    keep_latencies: bool = False


def timed_loop(infer, min_iterations: int, min_ns: int, max_ns: int):
    """Call ``infer()`` until both minimums are met or ``max_ns`` has passed.

    Returns:
        (latencies_ns array('q'), loop_start_ns, loop_end_ns, max_hit) — latencies of each call
        in ns; loop bounds on the ``perf_counter_ns`` clock; whether the cap stopped it.
    """
    clock = time.perf_counter_ns
    lat = array("q")  # 8 bytes per iteration, counted in the inference memory delta
    append = lat.append
    n = 0
    max_hit = False
    start = clock()
    while True:
        t0 = clock()
        infer()
        t1 = clock()
        append(t1 - t0)
        n += 1
        elapsed = t1 - start
        if n >= min_iterations and elapsed >= min_ns:
            break
        if elapsed >= max_ns:
            max_hit = True
            break
    end = clock()
    return lat, start, end, max_hit


def _model_facts(path: str | None) -> dict:
    if not path:
        return {"path": None, "sha256": None, "size_bytes": None}
    try:
        size = os.path.getsize(path)
        sha = file_sha256(path)
    except OSError:
        return {"path": os.path.abspath(path), "sha256": None, "size_bytes": None}
    return {"path": os.path.abspath(path), "sha256": sha, "size_bytes": size}


def _result_head(config: RunConfig) -> dict:
    """The result document before anything ran: ``status: "failed"`` until measured."""
    return {
        "schema_version": runners.SCHEMA_VERSION,
        "status": "failed",
        "error": None,
        "model": _model_facts(config.model),
        "runtime": {"name": config.backend},
        "configuration": {
            "backend": config.backend,
            "batch": config.batch,
            "shapes": {k: list(v) for k, v in config.shapes.items()},
            "seed": config.seed,
            "options": dict(config.options),
            "policy": asdict(config.policy),
        },
        "timestamps": {
            "start_utc": utc_now(),
            "start_monotonic_ns": time.monotonic_ns(),
        },
    }


def _prepare(backend, config: RunConfig, result: dict, probe: MemoryProbe) -> None:
    """Load the model, synthesize and bind the inputs; record inputs, outputs and runtime."""
    backend.load(config.model)
    probe.mark("after_session")
    specs = backend.inputs()
    shapes = resolve_shapes(specs, batch=config.batch, shapes=config.shapes)
    feeds = synthesize(specs, shapes, seed=config.seed)
    result["model"]["inputs"] = [s.to_json() for s in specs]
    result["model"]["input_shapes"] = {k: list(v) for k, v in shapes.items()}
    backend.prepare(feeds)
    if hasattr(backend, "outputs"):
        result["model"]["outputs"] = [s.to_json() for s in backend.outputs()]
    result["runtime"] = backend.runtime_info()


def _warm_up(infer, policy: Policy) -> dict:
    """The first inference (timed alone), then the warm-up loop: the ``warmup`` block."""
    t0 = time.perf_counter_ns()
    infer()  # the first inference, reported separately
    first_ns = time.perf_counter_ns() - t0
    warm, w_start, w_end, w_max = timed_loop(
        infer,
        policy.warmup_min_iterations,
        int(policy.warmup_min_s * 1e9),
        int(policy.max_duration_s * 1e9),
    )
    return {
        "first_inference_ms": first_ns / 1e6,
        "iterations": len(warm) + 1,
        "duration_s": (w_end - w_start + first_ns) / 1e9,
        "latency_ms_last": warm[-1] / 1e6 if warm else None,
        "max_duration_hit": w_max,
    }


def _measure(backend, config: RunConfig, result: dict, probe: MemoryProbe) -> None:
    """Warm up, run the timed loop and fill ``warmup``, ``latency``, ``verdict``,
    ``realtime`` and ``status``."""
    policy = config.policy
    infer = backend.infer
    result["warmup"] = _warm_up(infer, policy)
    # The loop is timed on perf_counter; its bounds are reported on CLOCK_MONOTONIC
    # (the clock the host aligns power samples with). Same clock on Linux.
    to_mono = time.monotonic_ns() - time.perf_counter_ns()
    lat, start, end, max_hit = timed_loop(
        infer,
        policy.min_iterations,
        int(policy.min_duration_s * 1e9),
        int(policy.max_duration_s * 1e9),
    )
    probe.mark("end")
    summary = stats.summarize(lat, loop_duration_ns=end - start)
    summary["level"] = backend.latency_level
    summary["clock"] = "perf_counter_ns"
    summary["loop_start_monotonic_ns"] = start + to_mono
    summary["loop_end_monotonic_ns"] = end + to_mono
    if config.keep_latencies:
        summary["latencies_ns"] = lat.tolist()
    verdict = stats.verdict(
        summary,
        min_iterations=policy.min_iterations,
        min_duration_s=policy.min_duration_s,
        max_duration_hit=max_hit,
        cov_max=policy.cov_max,
    )
    result["latency"] = summary
    result["verdict"] = verdict
    result["realtime"] = stats.realtime_verdict(summary, policy.fps)
    result["status"] = "ok" if verdict["result"] == "VALID" else "invalid"


def _finish(result: dict, probe: MemoryProbe) -> None:
    """Memory, manifest and the end timestamps."""
    if "end" not in probe.points:
        probe.mark("end")
    result["memory"] = probe.result()
    result["manifest"] = {"device": device_manifest(), "tool": tool_manifest()}
    # perf_counter_ns and monotonic_ns share CLOCK_MONOTONIC on Linux; both are recorded.
    result["timestamps"]["end_utc"] = utc_now()
    result["timestamps"]["end_monotonic_ns"] = time.monotonic_ns()
    result["timestamps"]["clock_note"] = (
        "perf_counter_ns and monotonic_ns both read CLOCK_MONOTONIC on Linux"
    )


def run(config: RunConfig) -> dict:
    """Run one benchmark cell in this process and return the result document.

    Never raises for a :class:`~runners.errors.RunnerError`: the result then has
    ``status: "failed"`` and ``error: {"type", "message"}``. Other exceptions propagate
    (the process crashes and the host classifies the exit).

    Result keys: see README "Result format". ``status`` is "ok" (VALID), "invalid"
    (measured but a stop-rule check failed) or "failed".
    """
    config.policy.check()
    probe = MemoryProbe()
    result = _result_head(config)
    backend = None
    probe.mark("start")
    try:
        backend = get_backend(config.backend, config.options)
        _prepare(backend, config, result, probe)
        _measure(backend, config, result, probe)
    except RunnerError as exc:
        result["status"] = "failed"
        result["error"] = {"type": type(exc).__name__, "message": str(exc)}
    except MemoryError as exc:
        result["status"] = "failed"
        result["error"] = {"type": "OutOfMemory", "message": f"MemoryError: {exc}"}
    finally:
        if backend is not None:
            try:
                backend.close()
            except Exception:  # closing must not hide the measurement
                result.setdefault("warnings", []).append(
                    "backend close failed: " + traceback.format_exc(limit=1).strip()
                )
    _finish(result, probe)
    return result


def write_atomic(path, write, *, suffix: str = "", newline: str | None = None) -> None:
    """Call ``write(fh)`` on a text file that becomes ``path`` only when complete (temp
    file in the same folder, fsync, rename). A reader never sees a partial file; an
    interrupted write leaves no ``path``. Raises OSError when the folder is not writable.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json_atomic(doc: dict, path: str) -> None:
    """Write ``doc`` as JSON to ``path`` atomically (:func:`write_atomic`).

    Raises OSError when the folder is not writable.
    """
    def write(fh):
        json.dump(doc, fh, indent=2, sort_keys=False, allow_nan=False, default=_json_default)
        fh.write("\n")

    write_atomic(path, write, suffix=".json")


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
