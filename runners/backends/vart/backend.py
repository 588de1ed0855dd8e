"""Vitis AI Runtime (VART) backend for the ZCU104's DPU (DPUCZDX8G): runs a compiled ``.xmodel``.

Flow (Vitis AI 3.0 VART Python API, UG1414 "vart::Runner"; the Vitis-AI repository's
``examples/vai_runtime/inception_v1_mt_py/inception_v1.py``; ``xdputil``'s ``xmodel.py``):

* ``xir.Graph.deserialize(path)``; ``get_root_subgraph().toposort_child_subgraph()``; the child
  whose attribute ``device`` is ``"DPU"`` (:func:`dpu_subgraphs`). A model with several DPU
  subgraphs has CPU operators between them: the backend refuses it unless ``--subgraph I``
  names the one to time alone.
* One ``vart.Runner.create_runner(subgraph, "run")`` per thread (``--threads N``, default 1),
  each with its own input/output buffers (numpy arrays of the tensors' dims, C order).
  ``threads`` = 1 is single-stream latency; N > 1 runs N jobs at once per ``infer`` call, for
  throughput (as in the Vitis AI multi-thread examples); the result's ``samples_per_call`` is
  then N × batch.
* The batch is the DPU tensor's first dimension (fixed when compiling); ``--batch`` must match it.
* The harness hands float32 inputs; :meth:`VartBackend.prepare` quantizes them once, untimed,
  with the tensor's ``fix_point``: ``q = saturate(round(x * 2**fix_point))`` to the signed
  ``bit_width`` range ([-128, 127] for int8), rounding as the tensor's ``round_mode`` says
  (default ``DPU_ROUND``: half toward +inf, the DPU's own mode for activations; source: the
  Vitis AI CPU reference of the ``fix`` operator and ``QuantizeLinear::float2fix_dpu_round`` in
  Vitis-AI ``src/vai_library/cpu_task``). The VART examples instead truncate with
  ``.astype(np.int8)`` and do not saturate; we follow the DPU. Outputs are dequantized with
  ``2**-fix_point`` (:func:`dequantize`).
* ``infer`` (timed) is ``execute_async`` + ``wait`` on every runner.
* Optional ``--xdputil-s S``: before the first session, ``xdputil benchmark`` on the same DPU
  subgraph with the same thread count for S seconds (:func:`xdputil_benchmark_argv`), its FPS
  recorded beside ours (``runtime.xdputil_benchmark``). ``xdputil query`` (when installed)
  gives the board's DPU fingerprint, DPU arch, clock and the VAI library versions
  (``runtime.dpu``), compared with the fingerprint the xmodel was compiled for.

Nothing in this module has run on a DPU in edgegauge's CI (no ZCU104 there): the code paths are
tested with small stand-ins for ``xir``/``vart`` (tests/test_vart.py), the parsers on recorded
``xdputil`` outputs (tests/fixtures/vart/README.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from typing import List, Optional, Sequence

import numpy as np

from runners.backends.base import Backend
from runners.errors import BackendUnavailableError, InferenceError, ModelLoadError
from runners.inputs import TensorSpec

ROUND_MODES = ("DPU_ROUND", "STD_ROUND", "PY3_ROUND")

#: xir tensor data types -> numpy dtypes of the runner's buffers
_XIR_TYPES = {"xint8": "int8", "int8": "int8", "xuint8": "uint8", "uint8": "uint8", "xint16": "int16",
              "int16": "int16", "xint32": "int32", "int32": "int32", "float32": "float32", "float": "float32"}

#: a number as C++'s ``operator<<(float)`` prints it by default (``%g``, 6 significant digits):
#: ``1714``, ``28.5485``, ``1.23457e+06``, ``inf``, ``-nan``
_G = r"([-+]?(?:inf|nan|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))"
_FPS = re.compile(rf"FPS=\s*{_G}\s+number_of_frames=\s*{_G}\s+time=\s*{_G}\s+seconds")
_THREAD = re.compile(r"thread-(\d+) processes (\d+) frames")
_VERSION = re.compile(r"Version:\s*v?(\d+(?:\.\d+)+)")


# ------------------------------------------------------------------------------------------------
# fixed-point arithmetic
# ------------------------------------------------------------------------------------------------


def quantize(values, fix_point: int, bit_width: int = 8, round_mode: str = "DPU_ROUND") -> np.ndarray:
    """Float values -> signed fixed point with ``fix_point`` fractional bits.

    ``q = saturate(round(values * 2**fix_point))`` into [-2**(bit_width-1), 2**(bit_width-1) - 1].
    ``round_mode``: ``DPU_ROUND`` (nearest, halves toward +inf: ``floor(x + 0.5)``),
    ``STD_ROUND`` (nearest, halves away from zero, C ``std::round``), ``PY3_ROUND`` (nearest,
    halves to even). Returns int8 for ``bit_width`` <= 8, else int16/int32.

    Raises:
        ValueError: an unknown ``round_mode`` or a ``bit_width`` outside 2..32.
    """
    if round_mode not in ROUND_MODES:
        raise ValueError(f"round_mode {round_mode!r}: one of {', '.join(ROUND_MODES)}")
    if not 2 <= int(bit_width) <= 32:
        raise ValueError(f"bit_width {bit_width}: expected 2..32")
    lo, hi = -(2 ** (int(bit_width) - 1)), 2 ** (int(bit_width) - 1) - 1
    scaled = np.clip(np.asarray(values, dtype=np.float64) * (2.0 ** int(fix_point)), lo, hi)
    if round_mode == "DPU_ROUND":
        rounded = np.floor(scaled + 0.5)
    elif round_mode == "STD_ROUND":
        rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    else:
        rounded = np.rint(scaled)
    dtype = np.int8 if bit_width <= 8 else np.int16 if bit_width <= 16 else np.int32
    return np.clip(rounded, lo, hi).astype(dtype)


def dequantize(values, fix_point: int) -> np.ndarray:
    """Fixed point with ``fix_point`` fractional bits -> float32: ``values * 2**-fix_point``."""
    return (np.asarray(values, dtype=np.float64) * (2.0 ** -int(fix_point))).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# xir graphs and subgraphs
# ------------------------------------------------------------------------------------------------


def child_subgraphs(graph) -> list:
    """The root subgraph's children in topological order (``[]`` for a leaf root).

    Raises:
        ModelLoadError: the graph has no root subgraph.
    """
    root = graph.get_root_subgraph()
    if root is None:
        raise ModelLoadError("the xmodel has no root subgraph")
    if root.is_leaf:
        return []
    return list(root.toposort_child_subgraph())


def _device(subgraph) -> str:
    return str(subgraph.get_attr("device")).upper() if subgraph.has_attr("device") else ""


def dpu_subgraphs(children: Sequence) -> List[tuple]:
    """``[(index among children, subgraph)]`` of the children whose ``device`` is DPU."""
    return [(i, s) for i, s in enumerate(children) if _device(s) == "DPU"]


def select_dpu_subgraph(children: Sequence, index: int = -1) -> tuple:
    """The DPU subgraph to run: ``(index among children, subgraph)``.

    ``index`` < 0: the only DPU subgraph; >= 0: that child, which must be a DPU subgraph.

    Raises:
        ModelLoadError: no DPU subgraph (not compiled with vai_c_xir), several and no index,
            or ``index`` out of range or not on the DPU.
    """
    found = dpu_subgraphs(children)
    devices = ", ".join(f"{i}:{_device(s) or '?'}" for i, s in enumerate(children)) or "none"
    if index >= 0:
        match = [(i, s) for i, s in found if i == index]
        if not match:
            raise ModelLoadError(f"subgraph {index} is not a DPU subgraph (children: {devices})")
        return match[0]
    if not found:
        raise ModelLoadError("no DPU subgraph in the xmodel: compile it for the DPU with vai_c_xir "
                             f"(`host zoo compile --target zcu104 MODEL`); children: {devices}")
    if len(found) > 1:
        raise ModelLoadError(f"{len(found)} DPU subgraphs (CPU operators between them; children: {devices}): "
                             "pass --subgraph I to time one of them alone")
    return found[0]


def _attr(obj, name, default=None):
    try:
        return obj.get_attr(name) if obj.has_attr(name) else default
    except Exception:  # xir raises for attributes of unsupported types
        return default


def tensor_info(tensor) -> dict:
    """``{name, shape, dtype, fix_point, bit_width, round_mode}`` of an xir tensor."""
    dtype = str(getattr(tensor, "dtype", "xint8")).lower()
    return {"name": tensor.name, "shape": [int(d) for d in tensor.dims],
            "dtype": _XIR_TYPES.get(dtype, dtype), "fix_point": _attr(tensor, "fix_point"),
            "bit_width": int(_attr(tensor, "bit_width", 8)),
            "round_mode": str(_attr(tensor, "round_mode", "DPU_ROUND"))}


def subgraph_facts(subgraph) -> dict:
    """The DPU subgraph's compiled target: name, ``dpu_name``, fingerprint (hex), workload."""
    fp = _attr(subgraph, "dpu_fingerprint")
    return {"name": subgraph.get_name(), "dpu_arch": _attr(subgraph, "dpu_name"),
            "fingerprint": hex(int(fp)) if fp is not None else None,
            "workload_ops": _attr(subgraph, "workload")}


# ------------------------------------------------------------------------------------------------
# xdputil: the board's DPU, the benchmark
# ------------------------------------------------------------------------------------------------


def _lenient_json(text: str):
    """The first JSON object in ``text`` (log lines before it are skipped); trailing commas,
    as in abridged documentation excerpts, are tolerated. Raises ValueError."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in the text")
    body = text[start:]
    try:
        return json.JSONDecoder().raw_decode(body)[0]
    except ValueError:
        return json.JSONDecoder().raw_decode(re.sub(r",(\s*[}\]])", r"\1", body))[0]


def parse_xdputil_query(text: str) -> dict:
    """``xdputil query`` output -> ``{fingerprints, dpu_arch, dpu_mhz, cores, vai_versions,
    vart_version}`` (lists per DPU core; ``vart_version`` from ``libvart-runner.so``).

    Raises:
        ValueError: no JSON object in ``text``.
    """
    doc = _lenient_json(text)
    kernels = [k for k in doc.get("kernels") or [] if isinstance(k, dict)]
    versions = {k: str(v).strip() for k, v in (doc.get("VAI Version") or {}).items()}
    match = _VERSION.search(versions.get("libvart-runner.so", ""))
    return {"fingerprints": [k.get("fingerprint") for k in kernels],
            "dpu_arch": [k.get("DPU Arch") for k in kernels],
            "dpu_mhz": [k.get("DPU Frequency (MHz)") for k in kernels],
            "cores": (doc.get("DPU IP Spec") or {}).get("DPU Core Count", len(kernels)),
            "vai_versions": versions, "vart_version": match.group(1) if match else None}


def xdputil_benchmark_argv(xmodel: str, subgraph_index: int, threads: int) -> List[str]:
    """``xdputil benchmark XMODEL -i INDEX THREADS`` (UG1354 "Using the xdputil Tool";
    INDEX counts every child subgraph in topological order, as :func:`child_subgraphs`)."""
    return ["xdputil", "benchmark", str(xmodel), "-i", str(int(subgraph_index)), str(int(threads))]


def parse_xdputil_benchmark(text: str) -> dict:
    """``xdputil benchmark`` output (glog lines of ``performance_test.hpp``) ->
    ``{fps, frames, frames_exact, frames_printed, duration_s, frames_per_thread, passed}``;
    ``passed`` is None when the output has neither "Test PASS" nor "Test Failed".

    Source (Vitis-AI v3.0, ``src/vai_runtime/vart/util/include/vitis/ai/performance_test.hpp``,
    ``PerformanceTest::main``): each ``thread-N processes K frames`` count is a ``size_t``
    (exact); the total is cast to ``float`` before ``FPS= f/time*1e6 number_of_frames= f time=
    time/1e6 seconds.`` is streamed with the default ostream format, i.e. ``%g`` with 6
    significant digits: from 1,000,000 frames on it reads ``1.23457e+06``. ``frames`` is
    therefore the sum of the per-thread counts when they are all there and agree with the printed
    total to its precision (``frames_exact`` True), else the printed total rounded: a count read
    from ``%g`` has about 6 significant digits (``frames_exact`` False beyond 999,999).
    ``fps`` and ``duration_s`` are ``%g`` values too (6 significant digits).

    Raises:
        ValueError: no ``FPS= ... number_of_frames= ... time= ... seconds`` line.
    """
    match = _FPS.search(text)
    if not match:
        raise ValueError("no 'FPS= ... number_of_frames= ... time= ... seconds.' line in the xdputil output")
    per_thread = {int(t): int(n) for t, n in _THREAD.findall(text)}
    printed = match.group(2)
    frames, exact = _frames(float(printed), printed, per_thread)
    passed = True if "Test PASS" in text else False if "Test Failed" in text else None
    return {"fps": float(match.group(1)), "frames": frames, "frames_exact": exact, "frames_printed": printed,
            "duration_s": float(match.group(3)),
            "frames_per_thread": [per_thread[k] for k in sorted(per_thread)], "passed": passed}


def _frames(total: float, printed: str, per_thread: dict) -> tuple:
    """``(frames, exact)`` from the printed ``%g`` total and the exact per-thread counts."""
    if per_thread and sorted(per_thread) == list(range(len(per_thread))) and total == total:  # not nan
        summed = sum(per_thread.values())
        if abs(summed - total) <= max(abs(total), 1.0) * 5e-6 + 0.5:  # half a unit in the 6th digit
            return summed, True
    if total != total or total in (float("inf"), float("-inf")):
        return None, False
    return int(round(total)), bool(re.fullmatch(r"\d+", printed))


def _run_tool(argv: List[str], timeout: float, env: Optional[dict] = None) -> str:
    """stdout + stderr of ``argv``; raises OSError / subprocess errors to the caller."""
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    return (res.stdout or "") + "\n" + (res.stderr or "")


def board_dpu() -> dict:
    """:func:`parse_xdputil_query` of this board, or ``{"error": ...}`` when xdputil is
    missing or its output cannot be read (never raises)."""
    try:
        return parse_xdputil_query(_run_tool(["xdputil", "query"], timeout=60))
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return {"error": f"xdputil query: {type(exc).__name__}: {exc}"}


def run_xdputil_benchmark(xmodel: str, subgraph_index: int, threads: int, seconds: float) -> dict:
    """Run ``xdputil benchmark`` for ``seconds`` (its ``SLEEP_MS`` variable) and parse it; the
    command, and ``error`` instead of figures when it fails (never raises)."""
    argv = xdputil_benchmark_argv(xmodel, subgraph_index, threads)
    env = dict(os.environ, SLEEP_MS=str(int(seconds * 1000)))
    out = {"argv": argv, "sleep_ms": int(seconds * 1000)}
    try:
        out.update(parse_xdputil_benchmark(_run_tool(argv, timeout=seconds + 120, env=env)))
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


# ------------------------------------------------------------------------------------------------
# the backend
# ------------------------------------------------------------------------------------------------


class _Job:
    """One runner with its own buffers (what one thread owns)."""

    def __init__(self, runner, inputs: list, outputs: list):
        self.runner, self.inputs, self.outputs = runner, inputs, outputs

    def run(self) -> None:
        job_id = self.runner.execute_async(self.inputs, self.outputs)
        self.runner.wait(job_id)


class _Worker(threading.Thread):
    """A thread that runs its job once each time :meth:`go` is called."""

    def __init__(self, job: _Job):
        super().__init__(daemon=True)
        self.job, self.error = job, None
        self._go, self._done, self._quit = threading.Event(), threading.Event(), False

    def go(self) -> None:
        self._done.clear()
        self._go.set()

    def join_job(self) -> None:
        self._done.wait()

    def stop(self) -> None:
        self._quit = True
        self._go.set()

    def run(self) -> None:
        while True:
            self._go.wait()
            self._go.clear()
            if self._quit:
                return
            try:
                self.job.run()
            except Exception as exc:  # VART raises RuntimeError; handed to infer()
                self.error = exc
            self._done.set()


class VartBackend(Backend):
    """Options: ``threads`` (runners, one per thread; 1 = single-stream latency), ``subgraph``
    (child index of the DPU subgraph; -1 = the only one), ``xdputil_s`` (seconds of
    ``xdputil benchmark`` before the first session; 0 = off)."""

    name = "vart"
    #: ``xdputil benchmark`` runs once per process (before the first session)
    _xdputil_done: Optional[dict] = None

    def load(self, model_path):
        try:
            import vart
            import xir
        except Exception as exc:  # ImportError, or a missing libvart-runner.so
            raise BackendUnavailableError(
                f"vart/xir are not importable ({type(exc).__name__}: {exc}); on the ZCU104 they come with "
                "the Vitis AI 3.0 board image (target_vart_setup.sh)") from None
        if not model_path or not str(model_path).endswith(".xmodel"):
            raise ModelLoadError(f"the vart backend runs compiled .xmodel files, got {model_path!r}: compile "
                                 "with `host zoo compile --target zcu104 MODEL`")
        self._vart, self._xir, self.model_path = vart, xir, str(model_path)
        try:
            children = child_subgraphs(xir.Graph.deserialize(self.model_path))
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{self.model_path}: {type(exc).__name__}: {exc}") from None
        self._index, self._subgraph = select_dpu_subgraph(children, int(self.options.get("subgraph", -1)))
        self._threads = max(int(self.options.get("threads") or 1), 1)
        self._maybe_xdputil()
        self._jobs = [self._make_job() for _ in range(self._threads)]
        self._in = [tensor_info(t) for t in self._jobs[0].runner.get_input_tensors()]
        self._out = [tensor_info(t) for t in self._jobs[0].runner.get_output_tensors()]
        self._workers: List[_Worker] = []

    def _make_job(self) -> _Job:
        try:
            runner = self._vart.Runner.create_runner(self._subgraph, "run")
        except Exception as exc:
            raise ModelLoadError(f"vart.Runner.create_runner: {type(exc).__name__}: {exc}") from None
        ins = [np.zeros(tuple(t.dims), dtype=tensor_info(t)["dtype"], order="C")
               for t in runner.get_input_tensors()]
        outs = [np.zeros(tuple(t.dims), dtype=tensor_info(t)["dtype"], order="C")
                for t in runner.get_output_tensors()]
        return _Job(runner, ins, outs)

    def _maybe_xdputil(self) -> None:
        seconds = float(self.options.get("xdputil_s") or 0)
        if seconds > 0 and VartBackend._xdputil_done is None:
            VartBackend._xdputil_done = run_xdputil_benchmark(self.model_path, self._index, self._threads,
                                                              seconds)

    @property
    def samples_per_infer_factor(self) -> int:
        """Jobs per :meth:`infer` call (the runner multiplies the batch by it)."""
        return self._threads

    def inputs(self):
        return [TensorSpec(t["name"], "float32", tuple(t["shape"])) for t in self._in]

    def outputs(self):
        return [TensorSpec(t["name"], "float32", tuple(t["shape"])) for t in self._out]

    def _fill(self, job: _Job, feeds) -> None:
        for buf, info in zip(job.inputs, self._in):
            if info["name"] not in feeds:
                raise InferenceError(f"no data for input {info['name']!r}")
            data = np.asarray(feeds[info["name"]])
            if tuple(data.shape) != tuple(info["shape"]):
                raise InferenceError(f"input {info['name']!r}: shape {list(data.shape)}, the DPU tensor "
                                     f"has {info['shape']} (its batch is fixed when compiling)")
            if info["fix_point"] is None:
                buf[...] = data.astype(buf.dtype)
            else:
                buf[...] = quantize(data, info["fix_point"], info["bit_width"], info["round_mode"])

    def prepare(self, feeds):
        for job in self._jobs:
            self._fill(job, feeds)
        if self._threads > 1 and not self._workers:
            self._workers = [_Worker(job) for job in self._jobs]
            for w in self._workers:
                w.start()
        self.infer()

    def infer(self):
        if not self._workers:
            try:
                self._jobs[0].run()
            except Exception as exc:
                raise InferenceError(f"vart execute_async/wait: {type(exc).__name__}: {exc}") from None
            return
        for w in self._workers:
            w.go()
        for w in self._workers:
            w.join_job()
        errors = [w.error for w in self._workers if w.error is not None]
        if errors:
            raise InferenceError(f"vart execute_async/wait: {type(errors[0]).__name__}: {errors[0]}")

    def evaluate(self, feeds):
        """Quantize ``feeds`` (float, the DPU tensor shapes), run once on the first runner,
        dequantize every output with its ``fix_point``: ``{output name: float32 array}``."""
        job = self._jobs[0]
        self._fill(job, feeds)
        try:
            job.run()
        except Exception as exc:
            raise InferenceError(f"vart execute_async/wait: {type(exc).__name__}: {exc}") from None
        return {info["name"]: (dequantize(buf, info["fix_point"]) if info["fix_point"] is not None
                               else np.array(buf, dtype=np.float32))
                for buf, info in zip(job.outputs, self._out)}

    def runtime_info(self):
        dpu = board_dpu()
        compiled = subgraph_facts(self._subgraph)
        board_fps = [f for f in dpu.get("fingerprints") or [] if f]
        return {
            "name": "vart",
            "version": dpu.get("vart_version") or getattr(self._vart, "__version__", None),
            "provider": "DPU",
            "threads": self._threads,
            "runners": self._threads,
            "mode": ("single-stream latency" if self._threads == 1
                     else f"throughput ({self._threads} runners)"),
            "batch": self._in[0]["shape"][0] if self._in and self._in[0]["shape"] else None,
            "subgraph": dict(compiled, index=self._index),
            "inputs": self._in,
            "outputs": self._out,
            "quantization": "q = saturate(round(x * 2**fix_point)) per the tensor's round_mode; "
                            "outputs x = q * 2**-fix_point; untimed",
            "dpu": dpu,
            "fingerprint_match": ((compiled["fingerprint"] in board_fps)
                                  if board_fps and compiled["fingerprint"] else None),
            "xdputil_benchmark": VartBackend._xdputil_done,
        }

    def close(self):
        for w in getattr(self, "_workers", []):
            w.stop()
        for w in getattr(self, "_workers", []):
            w.join(timeout=10)
        self._workers, self._jobs = [], []
