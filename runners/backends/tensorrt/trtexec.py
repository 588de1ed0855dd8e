"""trtexec mode: NVIDIA's own benchmark beside ours, with every default pinned, and its JSON read back.

``trtexec`` (shipped with TensorRT: ``/usr/src/tensorrt/bin/trtexec`` on JetPack and in NVIDIA's
containers) changes its defaults between versions, so :func:`command` writes each choice on the
command line: warm-up (``--warmUp`` ms), duration (``--duration`` s), minimum iterations
(``--iterations``), averaging window (``--avgRuns``), streams, idle/sleep times, and the boolean
switches whose absence means "the version's default": data transfers (``--noDataTransfers``), CUDA
graph (``--useCudaGraph``), spin-wait (``--useSpinWait``), a separate profiling run
(``--separateProfileRun``). The switches that have no negative form are recorded in
:func:`pinned_choices`, so a result says what ran whichever version's default it was.

Outputs read back (recorded real exports under tests/fixtures/trtexec/, TensorRT 10.4):

* ``--exportTimes=FILE``: a JSON list with one object per inference, in ms:
  ``startEnqMs``/``endEnqMs``, ``startH2dMs``/``endH2dMs``, ``startComputeMs``/``endComputeMs``,
  ``startD2hMs``/``endD2hMs`` (timestamps) and ``h2dMs``, ``computeMs``, ``d2hMs``, ``latencyMs``
  (durations). TensorRT 7's trtexec wrote ``startInMs``/``endInMs``/``startOutMs``/``endOutMs``,
  ``inMs``/``outMs`` instead (its ``tracer.py``); both are read.
* ``--exportProfile=FILE``: ``[{"count": N}, {"name", "timeMs", "averageMs", "medianMs",
  "percentage"}, ...]``, one object per layer (``medianMs`` since TensorRT 8.x); a layer-profile
  run's rows come from it (:data:`PROFILER`, the descriptor's ``layer_profiler``).

Our latency taxonomy maps onto them: ``device_compute`` = ``computeMs`` (trtexec's "GPU Compute
Time"), ``device_with_transfers`` = ``latencyMs`` (its "Latency": H2D start to D2H end), and
``enqueue`` = ``endEnqMs - startEnqMs`` (its "Enqueue Time": host side of the launch, not a
``host_call``). Source: NVIDIA TensorRT developer guide, "trtexec" (flags and the performance
summary), https://docs.nvidia.com/deeplearning/tensorrt/latest/reference/command-line-programs.html
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

from runners import stats
from runners.errors import BackendUnavailableError, InferenceError
from runners.profiles import LayerProfiler, Reader, shared

#: Where trtexec lives when it is not on PATH (JetPack, NVIDIA's TensorRT containers).
KNOWN_PATHS = (
    "/usr/src/tensorrt/bin/trtexec",
    "/usr/local/tensorrt/bin/trtexec",
    "/opt/tensorrt/bin/trtexec",
)

#: exportTimes keys, the current names first; each pair is (our key, trtexec's keys in order of preference)
_DURATIONS = (
    ("device_compute", ("computeMs",)),
    ("device_with_transfers", ("latencyMs",)),
    ("h2d", ("h2dMs", "inMs")),
    ("d2h", ("d2hMs", "outMs")),
)


@dataclass(frozen=True)
class TrtexecOptions:
    """Every measurement choice of one trtexec run (units in names). Defaults: trtexec 10.x's own
    documented defaults for warm-up (200 ms), duration (3 s), iterations (10) and averaging (10),
    one stream, no sleep or idle time, data transfers on, no CUDA graph, no spin-wait (blocking
    sync), a separate profiling run (so that layer profiling does not slow the timed run)."""

    warmup_ms: int = 200
    duration_s: float = 3.0
    iterations: int = 10
    avg_runs: int = 10
    streams: int = 1
    sleep_time_ms: int = 0
    idle_time_ms: int = 0
    data_transfers: bool = True
    cuda_graph: bool = False
    spin_wait: bool = False
    separate_profile_run: bool = True

    def check(self) -> None:
        """Raise ValueError for a negative or zero value where trtexec needs a positive one."""
        if self.warmup_ms < 0 or self.duration_s < 0 or self.sleep_time_ms < 0 or self.idle_time_ms < 0:
            raise ValueError("trtexec times must be >= 0")
        if self.iterations < 1 or self.avg_runs < 1 or self.streams < 1:
            raise ValueError("trtexec iterations, avgRuns and streams must be >= 1")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def command(
    engine: str,
    times: str,
    profile: Optional[str] = None,
    options: TrtexecOptions = TrtexecOptions(),
    shapes: Optional[Dict[str, Sequence[int]]] = None,
    trtexec: str = "trtexec",
) -> List[str]:
    """The trtexec argv that loads ``engine`` and benchmarks it with every choice of ``options``
    on the command line, writing ``--exportTimes=times`` (and ``--exportProfile=profile``, which
    adds ``--dumpProfile``). ``shapes``: ``{input: dims}`` for inputs with dynamic dimensions.

    Raises:
        ValueError: options out of range (:meth:`TrtexecOptions.check`).
    """
    options.check()
    argv = [
        trtexec,
        f"--loadEngine={engine}",
        f"--warmUp={_number(options.warmup_ms)}",
        f"--duration={_number(options.duration_s)}",
        f"--iterations={options.iterations}",
        f"--avgRuns={options.avg_runs}",
        f"--streams={options.streams}",
        f"--sleepTime={options.sleep_time_ms}",
        f"--idleTime={options.idle_time_ms}",
    ]
    if not options.data_transfers:
        argv.append("--noDataTransfers")
    if options.cuda_graph:
        argv.append("--useCudaGraph")
    if options.spin_wait:
        argv.append("--useSpinWait")
    if shapes:
        argv.append(
            "--shapes=" + ",".join(f"{k}:{'x'.join(str(int(d)) for d in v)}" for k, v in shapes.items())
        )
    argv.append(f"--exportTimes={times}")
    if profile:
        argv += ["--dumpProfile", f"--exportProfile={profile}"]
        if options.separate_profile_run:
            argv.append("--separateProfileRun")
    return argv


def pinned_choices(options: TrtexecOptions) -> dict:
    """What the run did, stated for every choice (a result's ``trtexec.options``)."""
    return dict(asdict(options), sync="spin-wait" if options.spin_wait else "blocking")


def _load(path: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise InferenceError(f"trtexec export {path}: unreadable ({exc})") from None


def parse_times(doc) -> Dict[str, List[float]]:
    """Per-inference durations in ms from an ``--exportTimes`` document (a parsed JSON list):
    ``device_compute``, ``device_with_transfers``, ``h2d``, ``d2h``, ``enqueue`` (each a list in
    run order; a key absent from the export is absent here). A leading ``{"count": N}`` object
    (some versions write one) is skipped.

    Raises:
        ValueError: not a list of objects, or no inference record in it.
    """
    if not isinstance(doc, list):
        raise ValueError("an --exportTimes document is a JSON list")
    records = [r for r in doc if isinstance(r, dict) and ("latencyMs" in r or "computeMs" in r)]
    if not records:
        raise ValueError("no inference records (latencyMs/computeMs) in the --exportTimes document")
    out: Dict[str, List[float]] = {}
    for ours, theirs in _DURATIONS:
        key = next((k for k in theirs if k in records[0]), None)
        if key is not None:
            out[ours] = [float(r[key]) for r in records]
    if "startEnqMs" in records[0] and "endEnqMs" in records[0]:
        out["enqueue"] = [float(r["endEnqMs"]) - float(r["startEnqMs"]) for r in records]
    return out


def parse_profile(doc) -> dict:
    """An ``--exportProfile`` document as ``{"count": N, "layers": [{"name", "time_ms",
    "average_ms", "median_ms", "percentage"}], "total_average_ms"}`` (``median_ms`` None where the
    version wrote none; ``total_average_ms`` is the sum of the layers' averages).

    Raises:
        ValueError: not a list, or no layer in it.
    """
    if not isinstance(doc, list):
        raise ValueError("an --exportProfile document is a JSON list")
    count = next((int(r["count"]) for r in doc if isinstance(r, dict) and "count" in r), None)
    layers = [
        {
            "name": str(r["name"]),
            "time_ms": float(r["timeMs"]),
            "average_ms": float(r["averageMs"]),
            "median_ms": float(r["medianMs"]) if "medianMs" in r else None,
            "percentage": float(r["percentage"]),
        }
        for r in doc
        if isinstance(r, dict) and "name" in r
    ]
    if not layers:
        raise ValueError("no layers in the --exportProfile document")
    return {"count": count, "layers": layers, "total_average_ms": sum(x["average_ms"] for x in layers)}


def summarize_times(times: Dict[str, List[float]]) -> dict:
    """:func:`runners.stats.summarize` of each duration series (ms in, the standard ``latency_ms_*``
    statistics out), by our level name, each with ``source: "trtexec --exportTimes"``."""
    out = {}
    for level, series in times.items():
        block = stats.summarize([int(round(v * 1e6)) for v in series])
        block.update({"level": level, "clock": "trtexec (CUDA events)", "source": "trtexec --exportTimes"})
        for key in ("throughput_cps", "throughput_sps", "duration_s"):
            block.pop(key, None)  # the sum of one level's durations is no loop's wall time
        out[level] = block
    return out


def find(explicit: Optional[str] = None) -> str:
    """The trtexec executable: ``explicit``, else on PATH, else a :data:`KNOWN_PATHS` entry.

    Raises:
        BackendUnavailableError: none found.
    """
    import shutil

    for candidate in ([explicit] if explicit else []) + [shutil.which("trtexec") or ""] + list(KNOWN_PATHS):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise BackendUnavailableError("trtexec not found on PATH nor in " + ", ".join(KNOWN_PATHS))


def run(
    engine: str,
    workdir: str,
    options: TrtexecOptions = TrtexecOptions(),
    *,
    profile: bool = True,
    shapes: Optional[Dict[str, Sequence[int]]] = None,
    trtexec: Optional[str] = None,
    timeout_s: float = 600.0,
) -> dict:
    """Run trtexec on ``engine`` and return the result's ``trtexec`` block: ``command``,
    ``options`` (:func:`pinned_choices`), ``levels`` (:func:`summarize_times`), ``profile``
    (:func:`parse_profile`, with ``profile``) and the export paths. Never on a timed path.

    Raises:
        BackendUnavailableError: no trtexec. InferenceError: it failed, timed out, or wrote no export.
    """
    exe = find(trtexec)
    os.makedirs(workdir, exist_ok=True)
    times_path = os.path.join(workdir, "trtexec.times.json")
    profile_path = os.path.join(workdir, "trtexec.profile.json") if profile else None
    argv = command(engine, times_path, profile_path, options, shapes, exe)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise InferenceError(f"trtexec did not finish within {timeout_s:g} s") from None
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise InferenceError(f"trtexec exited {proc.returncode}: {' | '.join(tail)}")
    try:
        block = {
            "command": argv,
            "options": pinned_choices(options),
            "levels": summarize_times(parse_times(_load(times_path))),
            "times_file": times_path,
        }
        if profile_path:
            block["profile"] = parse_profile(_load(profile_path))
            block["profile_file"] = profile_path
    except ValueError as exc:
        raise InferenceError(f"trtexec export: {exc}") from None
    return block


# ----------------------------------------------------------------------------------------------
# the layer profile (host bench --profile): the descriptor's layer_profiler
# ----------------------------------------------------------------------------------------------

METHOD = ("trtexec --exportProfile on the cell's engine (--separateProfileRun), one untimed process; "
          "per layer: its median (else average) time")


def from_trtexec(profile: dict) -> list:
    """Rows (:func:`runners.profiles.shared`) from the ``profile`` of a runner's ``trtexec`` block
    (:func:`parse_profile`): per layer its median time when the version wrote one, else its average;
    ``op`` None (TensorRT names fused layers, not ops).

    Raises:
        ValueError: no layers.
    """
    layers = (profile or {}).get("layers") or []
    if not layers:
        raise ValueError("the trtexec block has no layer profile")
    calls = (profile or {}).get("count")
    return shared([{"node": x["name"], "op": None, "provider": "TensorRT", "calls": calls,
                    "median_us": 1000.0 * (x["median_ms"] if x.get("median_ms") is not None
                                           else x["average_ms"]),
                    "total_us": 1000.0 * x["time_ms"]} for x in layers])


def layer_rows(doc: dict, read: Reader) -> list:
    """Rows of a layer-profile run's result ``doc`` (its ``trtexec.profile``; ``read`` is unused: the
    profile is inside the result). Raises ValueError: no layers."""
    return from_trtexec(((doc.get("trtexec") or {}).get("profile")) or {})


PROFILER = LayerProfiler("trtexec", METHOD, layer_rows)
