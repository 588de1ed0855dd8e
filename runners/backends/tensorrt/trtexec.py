"""trtexec mode: NVIDIA's own benchmark beside ours, with every default pinned, and its JSON read back.

``trtexec`` (shipped with TensorRT: ``/usr/src/tensorrt/bin/trtexec`` on JetPack and in NVIDIA's
containers) changes its defaults between versions, so :func:`command` writes each choice on the
command line in the flags of the trtexec at hand (:func:`version`, from its own banner): warm-up
(``--warmUp`` ms), duration (``--duration`` s), minimum iterations (``--iterations``), averaging
window (``--avgRuns``), streams, idle/sleep times, and the switches of :func:`switches`.

The switches by trtexec version (NVIDIA/TensorRT ``samples/common/sampleOptions.cpp``,
``InferenceOptions::parse``, and the defaults in ``sampleOptions.h``):

* 8.5 (release/8.5): ``--streams=N``; transfers on, CUDA graph off, spin-wait off, no separate
  profiling run by default; ``--noDataTransfers``, ``--useCudaGraph``, ``--useSpinWait``,
  ``--separateProfileRun`` turn them over.
* 8.6 to 10.x (release/8.6, release/10.3): the same switches; ``--streams`` is deprecated for
  ``--infStreams=N``.
* 11.x (release/11.0, main): the defaults flip: transfers off, spin-wait on, CUDA graph on, a
  separate profiling run always; ``--noDataTransfers``, ``--useSpinWait``, ``--useCudaGraph``,
  ``--separateProfileRun`` are no-ops, and ``--includeDataTransfers``, ``--noSpinWait``,
  ``--noCudaGraph`` (unknown options before 11, which trtexec refuses) turn them over.

What ran is read back from trtexec's own log (:func:`reported_choices`: the "Data transfers:",
"Spin-wait:", "CUDA Graph:", "Separate profiling:" lines it prints for every run, and its warning
when CUDA graph capture fails and it runs without), so a result's ``trtexec.options`` says what
trtexec did, not what we hoped it would do.

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
import re
import subprocess
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

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
    sync), a separate profiling run (so that layer profiling does not slow the timed run). These
    are our choices whatever the version's defaults: :func:`switches` asks for them explicitly."""

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


Version = Tuple[int, int, int]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


#: "TensorRT version: 10.3.0", logged by every trtexec run after its options (samples/trtexec/trtexec.cpp:
#: release/8.5 line 186, release/10.3 line 278, release/11.0 line 304).
_VERSION_LINE = re.compile(r"TensorRT version: (\d+)\.(\d+)\.(\d+)")
#: "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] [b17] # ...", the first line of every invocation,
#: --help included (samples/common/logging.h, Logger::defineTest): NV_TENSORRT_VERSION, which is
#: major*1000 + minor*100 + patch up to 9.x (include/NvInferRuntimeCommon.h, release/8.5 line 82;
#: NvInferRuntimeBase.h, release/9.0 line 85) and major*10000 + minor*100 + patch from 10.0
#: (NV_TENSORRT_VERSION_INT, include/NvInferRuntimeBase.h, release/10.0 line 89).
_BANNER = re.compile(r"\[TensorRT v(\d+)\]")


def parse_version(text: str) -> Optional[Version]:
    """trtexec's TensorRT ``(major, minor, patch)`` from its output ``text``: the run log's
    "TensorRT version: X.Y.Z" line, else the "[TensorRT vN]" banner (8503 -> (8, 5, 3), 100300 ->
    (10, 3, 0), 110000 -> (11, 0, 0)); None when neither is there."""
    m = _VERSION_LINE.search(text or "")
    if m:
        return int(m.group(1)), int(m.group(2)), int(m.group(3))
    m = _BANNER.search(text or "")
    if not m:
        return None
    n = int(m.group(1))
    if n >= 100000:  # 10.0 and later: major*10000 + minor*100 + patch
        return n // 10000, n // 100 % 100, n % 100
    return n // 1000, n // 100 % 10, n % 100


def version(exe: str, timeout_s: float = 60.0) -> Version:
    """The TensorRT version of the trtexec ``exe``, from the banner of ``exe --help`` (which
    prints its help and exits 0 without touching the GPU: samples/trtexec/trtexec.cpp ``main``).

    Raises:
        BackendUnavailableError: it does not run, or prints no version.
    """
    try:
        proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendUnavailableError(f"trtexec {exe} --help did not run ({exc})") from None
    found = parse_version(proc.stdout + proc.stderr)
    if found is None:
        head = (proc.stdout + proc.stderr).strip().splitlines()[:1]
        raise BackendUnavailableError(f"trtexec {exe} printed no TensorRT version (first line: {head})")
    return found


def switches(ver: Version, options: TrtexecOptions, profile: bool) -> List[str]:
    """The stream count and boolean switches that make trtexec ``ver`` do what ``options`` say
    (the table in the module docstring); ``profile``: a layer profile is asked for."""
    argv = [("--infStreams=%d" if ver[:2] >= (8, 6) else "--streams=%d") % options.streams]
    if ver[0] >= 11:
        wanted = (("--includeDataTransfers", options.data_transfers),
                  ("--noCudaGraph", not options.cuda_graph), ("--noSpinWait", not options.spin_wait))
    else:
        wanted = (("--noDataTransfers", not options.data_transfers), ("--useCudaGraph", options.cuda_graph),
                  ("--useSpinWait", options.spin_wait),
                  ("--separateProfileRun", profile and options.separate_profile_run))
    return argv + [flag for flag, on in wanted if on]


def command(
    engine: str,
    times: str,
    profile: Optional[str] = None,
    options: TrtexecOptions = TrtexecOptions(),
    shapes: Optional[Dict[str, Sequence[int]]] = None,
    trtexec: str = "trtexec",
    *,
    version: Version,
) -> List[str]:
    """The argv for trtexec ``version`` (:func:`version`) that loads ``engine`` and benchmarks it
    with every choice of ``options`` on the command line (:func:`switches`), writing
    ``--exportTimes=times`` (and ``--exportProfile=profile``, which adds ``--dumpProfile``).
    ``shapes``: ``{input: dims}`` for inputs with dynamic dimensions.

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
        f"--sleepTime={options.sleep_time_ms}",
        f"--idleTime={options.idle_time_ms}",
    ] + switches(version, options, bool(profile))
    if shapes:
        argv.append(
            "--shapes=" + ",".join(f"{k}:{'x'.join(str(int(d)) for d in v)}" for k, v in shapes.items())
        )
    argv.append(f"--exportTimes={times}")
    if profile:
        argv += ["--dumpProfile", f"--exportProfile={profile}"]
    return argv


def pinned_choices(options: TrtexecOptions, ver: Version, profile: bool = True) -> dict:
    """What the run asks for, stated for every choice, as trtexec ``ver`` will take it (a separate
    profiling run: only with a profile before 11, always from 11)."""
    separate = profile if ver[0] >= 11 else profile and options.separate_profile_run
    return dict(asdict(options), separate_profile_run=separate, version=".".join(map(str, ver)),
                sync="spin-wait" if options.spin_wait else "blocking")


#: trtexec's echo of its inference options, one "[date] [I] Name: value" line each
#: (samples/common/sampleOptions.cpp, operator<< for InferenceOptions: release/8.5 lines 1616-1627,
#: release/10.3 lines 2283-2294, release/11.0 lines 2193-2203; "Separate profiling" is gone in 11).
_ECHO = {
    "data_transfers": re.compile(r"\] Data transfers: (Enabled|Disabled)"),
    "spin_wait": re.compile(r"\] Spin-wait: (Enabled|Disabled)"),
    "cuda_graph": re.compile(r"\] CUDA Graph: (Enabled|Disabled)"),
    "separate_profile_run": re.compile(r"\] Separate profiling: (Enabled|Disabled)"),
}
_STREAMS = re.compile(r"\] (?:Inference )?Streams: (\d+)")
#: its warning when the engine cannot be captured and it runs without a CUDA graph
#: (samples/common/sampleInference.cpp: release/8.5 line 860, release/11.0 line 1348).
_GRAPH_FAILED = "not permitted under CUDA graph capture mode"


def reported_choices(log: str) -> dict:
    """What trtexec says it did, from its run ``log`` (stdout + stderr): ``data_transfers``,
    ``spin_wait``, ``cuda_graph`` (False when graph capture failed), ``separate_profile_run``,
    ``streams``, each present only where the log has its line; ``cuda_graph_capture_failed``
    True when it warned so."""
    out: dict = {k: m.group(1) == "Enabled" for k, rx in _ECHO.items() for m in [rx.search(log)] if m}
    m = _STREAMS.search(log)
    if m:
        out["streams"] = int(m.group(1))
    if _GRAPH_FAILED in log:
        out.update(cuda_graph=False, cuda_graph_capture_failed=True)
    return out


def effective_choices(asked: dict, log: str) -> dict:
    """``asked`` (:func:`pinned_choices`) checked against trtexec's ``log`` (:func:`reported_choices`):
    the choices as trtexec reports them, with ``reported`` (what its log said). A failed CUDA graph
    capture is recorded (``cuda_graph`` False), not an error.

    Raises:
        InferenceError: trtexec reports another transfers, spin-wait, separate profiling or stream
            setting than asked (its flags did not mean what :func:`switches` expects).
    """
    seen = reported_choices(log)
    keys = ("data_transfers", "spin_wait", "separate_profile_run", "streams")
    wrong = [f"{k} {seen[k]} (asked {asked[k]})" for k in keys if k in seen and seen[k] != asked[k]]
    if asked["cuda_graph"] != seen.get("cuda_graph", asked["cuda_graph"]) and not seen.get(
            "cuda_graph_capture_failed"):
        wrong.append(f"cuda_graph {seen['cuda_graph']} (asked {asked['cuda_graph']})")
    if wrong:
        raise InferenceError(f"trtexec {asked['version']} ran with " + ", ".join(wrong))
    out = dict(asked, **{k: v for k, v in seen.items() if k in asked}, reported=seen)
    if seen.get("cuda_graph_capture_failed"):
        out["cuda_graph_note"] = "trtexec could not capture the engine in a CUDA graph and ran without one"
    return out


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


def _levels(doc, done: dict) -> dict:
    """:func:`summarize_times` of an export; without data transfers (``done``) its ``latencyMs`` is
    the compute time alone, so ``device_with_transfers``, ``h2d`` and ``d2h`` are left out."""
    times = parse_times(doc)
    if not done["data_transfers"]:
        for key in ("device_with_transfers", "h2d", "d2h"):
            times.pop(key, None)
    return summarize_times(times)


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
    """Run trtexec on ``engine`` and return the result's ``trtexec`` block: ``command`` (in the
    flags of its version, :func:`version`), ``options`` (:func:`effective_choices`: what trtexec
    reports it did), ``levels`` (:func:`summarize_times`), ``profile`` (:func:`parse_profile`,
    with ``profile``) and the export paths. Never on a timed path.

    Raises:
        BackendUnavailableError: no trtexec, or one that prints no version.
        InferenceError: it failed, timed out, wrote no export, or did not do what was asked.
    """
    exe = find(trtexec)
    ver = version(exe)
    os.makedirs(workdir, exist_ok=True)
    times_path = os.path.join(workdir, "trtexec.times.json")
    profile_path = os.path.join(workdir, "trtexec.profile.json") if profile else None
    argv = command(engine, times_path, profile_path, options, shapes, exe, version=ver)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise InferenceError(f"trtexec did not finish within {timeout_s:g} s") from None
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = log.strip().splitlines()[-3:]
        raise InferenceError(f"trtexec exited {proc.returncode}: {' | '.join(tail)}")
    try:
        done = effective_choices(pinned_choices(options, ver, profile), log)
        block = {"command": argv, "options": done, "levels": _levels(_load(times_path), done),
                 "times_file": times_path}
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
