"""ONNX Runtime backend: CPU, CUDA or TensorRT execution provider (``provider`` option).

Session settings follow ONNX Runtime's Python API (``onnxruntime.SessionOptions``):
intra-op threads (default: every CPU this process may run on, ``os.sched_getaffinity``),
one inter-op thread, sequential execution, a chosen graph optimization level. Inputs
and outputs are bound once with I/O binding (``InferenceSession.io_binding``) so the
timed ``infer`` call is ``run_with_iobinding`` alone: no per-call numpy conversion or
output allocation. Measured (``bench/ort_overhead.py``): a fixed cost of about 3.5 us per
call (7 us with ``session.run``), i.e. +0.23 % over ORT's own ``model_run`` time on a 4 ms
model, and within 1 % for models of 1 ms or more.

GPU providers (``provider=cuda``: ``CUDAExecutionProvider``; ``provider=tensorrt``:
``TensorrtExecutionProvider`` with CUDA and CPU after it, as ONNX Runtime recommends; both need
``onnxruntime-gpu`` and cuda-python, :mod:`runners.cuda_rt`): the session runs on a CUDA stream of
ours (provider option ``user_compute_stream``; :func:`gpu_provider_options`), confirmed after
session creation by ``get_provider_options()``; inputs and outputs are ``OrtValue`` s in device
memory of GPU 0 bound once (``bind_ortvalue_input/output``), and every ``infer()`` is

    e0 · H2D copies of the inputs (page-locked host arrays) · e1 · run_with_iobinding · e2 ·
    D2H copies of the outputs · e3 · stream synchronize · two cudaEventElapsedTime read-outs

with CUDA events e0..e3 recorded on that stream: e1→e2 is ``device_compute``, e0→e3
``device_with_transfers`` (:mod:`runners.levels`); ``perf_counter_ns`` around the call is
``host_call``, the ``latency`` block (it includes the copies and the read-outs, a few us).
``run_with_iobinding`` returns after ONNX Runtime has synchronized its stream, so e2 is queued
after the last kernel has finished and e1→e2 also holds the gaps between kernel launches and that
synchronization: it is the device time of ONNX Runtime's ``Run``, not the sum of kernel times.
A provider this ``onnxruntime`` lacks, or a session that silently fell back to another provider,
is a :class:`~runners.errors.BackendUnavailableError` naming the available providers.
"""

from __future__ import annotations

import os
import re
from array import array

import numpy as np

from runners.backends.base import Backend
from runners.errors import BackendUnavailableError, InferenceError, ModelLoadError
from runners.inputs import TensorSpec

OPT_LEVELS = ("disable", "basic", "extended", "all")
PROVIDERS = ("cpu", "cuda", "tensorrt")
#: ``provider`` option -> ONNX Runtime execution provider
EP_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
            "tensorrt": "TensorrtExecutionProvider"}
#: where GPU providers' inputs and outputs live (``OrtValue`` device type and id)
DEVICE_TYPE, DEVICE_ID = "cuda", 0
#: the first onnxruntime(-gpu) whose Python API hands ``user_compute_stream`` to the TensorRT EP
#: (microsoft/onnxruntime PR #20168; onnxruntime_pybind11_state of the 1.17.1 wheel lacks the key,
#: 1.18.0's has it). Older ones reject it: "Invalid TensorRT EP option: user_compute_stream".
TRT_STREAM_SINCE = (1, 18)

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}


def _cuda_rt():
    """:mod:`runners.cuda_rt`, imported when a GPU provider is chosen (tests replace this)."""
    from runners import cuda_rt

    return cuda_rt


def _device_value(ort, arr: np.ndarray):
    """An uninitialised OrtValue shaped like ``arr`` on :data:`DEVICE_TYPE` / :data:`DEVICE_ID`."""
    return ort.OrtValue.ortvalue_from_shape_and_type(list(arr.shape), arr.dtype.type, DEVICE_TYPE, DEVICE_ID)


def gpu_provider_options(stream_handle: int) -> dict:
    """Provider options of a GPU provider (CUDA or TensorRT EP) on our stream: ``device_id`` and
    ``user_compute_stream`` (the stream handle in decimal), nothing else.

    Source: onnxruntime/python/onnxruntime_pybind_state.cc, ``CreateExecutionProviderInstance``
    (1.18 to 1.31): the TensorRT branch accepts ``device_id``, ``user_compute_stream`` and ``trt_*``
    keys and throws "Invalid TensorRT EP option: <key>" for any other, ``has_user_compute_stream``
    included (the 1.19.2, 1.23.2 and 1.31.1 onnxruntime-gpu wheels hold no such string in that
    check); it sets ``has_user_compute_stream`` itself from ``user_compute_stream``, as the CUDA
    EP's parser (core/providers/cuda/cuda_execution_provider_info.cc) does.
    """
    return {"device_id": str(DEVICE_ID), "user_compute_stream": str(int(stream_handle))}


def reported_stream(session, ep_name: str):
    """The ``user_compute_stream`` that ``session.get_provider_options()`` reports for
    ``ep_name`` (a decimal string), or None when it reports none."""
    try:
        options = session.get_provider_options() or {}
    except Exception:  # pybind errors of a session that is half gone
        return None
    value = (options.get(ep_name) or {}).get("user_compute_stream")
    return None if value in (None, "", "0") else str(value)


def _version(text: str) -> tuple:
    """``"1.23.2"`` / ``"1.19.0+cu118"`` -> ``(1, 23, 2)`` / ``(1, 19, 0)``; ``()`` when unreadable."""
    parts = []
    for part in str(text).split("+")[0].split(".")[:3]:
        match = re.match(r"\d+", part)
        if not match:
            break
        parts.append(int(match.group(0)))
    return tuple(parts)


def default_threads() -> int:
    """CPUs this process may use (cgroup/affinity aware), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


class OrtBackend(Backend):
    """Options: ``threads`` (int, intra-op; 0/None = all usable CPUs), ``opt_level``
    (one of :data:`OPT_LEVELS`, default "all"), ``io_binding`` (bool, default True),
    ``profile_prefix`` (str: enable ORT's profiler, JSON written on close), ``provider``
    (one of :data:`PROVIDERS`, default "cpu"; GPU providers: module docstring). With a GPU
    provider it also implements the latency-level protocol of :mod:`runners.levels`."""

    name = "ort"

    def load(self, model_path):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError(
                f"onnxruntime is not importable ({exc}); install it: pip install onnxruntime"
            ) from None
        self._ort = ort
        if not model_path:
            raise ModelLoadError("the ort backend needs a model path")
        threads = self.options.get("threads") or default_threads()
        opt_level = self.options.get("opt_level") or "all"
        if opt_level not in OPT_LEVELS:
            raise ModelLoadError(f"unknown graph optimization level {opt_level!r}: {OPT_LEVELS}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[opt_level]
        so.log_severity_level = 3
        if self.options.get("profile_prefix"):
            so.enable_profiling = True
            so.profile_file_prefix = str(self.options["profile_prefix"])
        self._provider = self.options.get("provider") or "cpu"
        providers = self._providers(self._provider)
        try:
            self.session = ort.InferenceSession(str(model_path), so, providers=providers)
        except Exception as exc:  # ORT raises its own pybind classes (InvalidProtobuf, Fail, ...)
            self._release_gpu()
            raise ModelLoadError(f"{type(exc).__name__}: {exc}".strip()) from None
        self._check_session(ort)
        self._threads = int(threads)
        self._opt_level = opt_level
        self._bound = False
        self.profile_path = None

    def _check_session(self, ort) -> None:
        """The session runs on the chosen provider and, for a GPU provider, on our stream.

        Raises:
            BackendUnavailableError: ONNX Runtime fell back to another provider (its Python API
                prints "EP Error ... Falling back" and retries with CUDA/CPU), or reports another
                ``user_compute_stream`` than ours.
        """
        used = self.session.get_providers()
        name = EP_NAMES[self._provider]
        if not used or used[0] != name:
            self.close()
            raise BackendUnavailableError(
                f"provider={self._provider}: the session runs on {used[0] if used else 'nothing'}, not "
                f"{name} (ONNX Runtime fell back: a CUDA/cuDNN/TensorRT library did not load, or it "
                f"refused a provider option; its \"EP Error\" lines are on stderr); available: "
                f"{', '.join(ort.get_available_providers())}")
        if self._gpu is None:
            return
        ours = str(self._gpu["stream"].handle)
        got = reported_stream(self.session, name)
        if got != ours:
            self.close()
            raise BackendUnavailableError(
                f"provider={self._provider}: {name} reports user_compute_stream {got!r}, not our stream "
                f"{ours} (onnxruntime {ort.__version__}): its device times would not be ours")

    def _providers(self, provider: str) -> list:
        """The ``providers`` argument of ``InferenceSession`` for ``provider``; for a GPU provider,
        also our CUDA stream (``self._stream``).

        Raises:
            ModelLoadError: an unknown provider name.
            BackendUnavailableError: this onnxruntime lacks the provider, or no CUDA device answers.
        """
        self._gpu = None
        if provider not in PROVIDERS:
            raise ModelLoadError(f"unknown provider {provider!r}: one of {', '.join(PROVIDERS)}")
        available = self._ort.get_available_providers()
        name = EP_NAMES[provider]
        if name not in available:
            hint = " (GPU providers need onnxruntime-gpu)" if provider != "cpu" else ""
            raise BackendUnavailableError(f"provider={provider}: onnxruntime {self._ort.__version__} has no "
                                          f"{name}{hint}; available: {', '.join(available)}")
        if provider == "cpu":
            return [name]
        if provider == "tensorrt" and _version(self._ort.__version__) < TRT_STREAM_SINCE:
            raise BackendUnavailableError(
                f"provider=tensorrt: onnxruntime {self._ort.__version__} cannot hand our CUDA stream to the "
                f"TensorRT EP from Python (user_compute_stream needs onnxruntime-gpu >= "
                f"{'.'.join(map(str, TRT_STREAM_SINCE))})")
        cuda_rt = _cuda_rt()
        if not cuda_rt.available():
            reason = getattr(cuda_rt, "unavailable_reason", None)  # absent in stand-ins
            why = (reason() if reason else None) or "runners.cuda_rt.available() is False"
            raise BackendUnavailableError(f"provider={provider}: no CUDA device answers through cuda-python "
                                          f"({why}); available providers: {', '.join(available)}")
        self._gpu = {"rt": cuda_rt, "stream": cuda_rt.Stream(), "events": [], "pinned": []}
        opts = gpu_provider_options(self._gpu["stream"].handle)
        chain = [(name, dict(opts))]
        if provider == "tensorrt":
            chain.append((EP_NAMES["cuda"], dict(opts)))
        return chain + ["CPUExecutionProvider"]

    def inputs(self):
        specs = []
        for arg in self.session.get_inputs():
            dtype = _ORT_TYPES.get(arg.type)
            if dtype is None:
                raise ModelLoadError(f"input {arg.name!r} has unsupported type {arg.type}")
            specs.append(TensorSpec(arg.name, dtype, tuple(arg.shape)))
        return specs

    def outputs(self):
        return [
            TensorSpec(a.name, _ORT_TYPES.get(a.type, a.type), tuple(a.shape))
            for a in self.session.get_outputs()
        ]

    def prepare(self, feeds):
        self._feeds = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
        names = [o.name for o in self.session.get_outputs()]
        try:
            outs = self.session.run(names, self._feeds)
        except Exception as exc:
            raise InferenceError(f"{type(exc).__name__}: {exc}".strip()) from None
        use_binding = self.options.get("io_binding", True) and all(
            isinstance(o, np.ndarray) for o in outs
        )
        self._lat_compute, self._lat_transfers = array("q"), array("q")
        if use_binding and self._gpu is not None:
            self._bind_device(names, outs)
        elif use_binding:
            binding = self.session.io_binding()
            for name, arr in self._feeds.items():
                binding.bind_cpu_input(name, arr)
            self._out_values = []
            for name, arr in zip(names, outs):
                value = self._ort.OrtValue.ortvalue_from_numpy(np.empty_like(arr))
                binding.bind_ortvalue_output(name, value)
                self._out_values.append(value)
            self._binding = binding
            self._bound = True
        else:
            self._names = names
            self._bound = False
        self.output_shapes = {n: list(o.shape) for n, o in zip(names, outs) if hasattr(o, "shape")}

    def _bind_device(self, names: list, outs: list) -> None:
        """Inputs and outputs as OrtValues in device memory, bound once; page-locked host copies
        of the inputs (copied in by every ``infer``) and of the outputs (copied out); 4 events."""
        ort, rt, gpu = self._ort, self._gpu["rt"], self._gpu
        binding = self.session.io_binding()
        self._h2d, self._d2h = [], []
        for name, arr in self._feeds.items():
            host = self._pinned(arr.shape, arr.dtype)
            host[...] = arr
            value = _device_value(ort, arr)
            binding.bind_ortvalue_input(name, value)
            self._h2d.append((value, host))
        for name, arr in zip(names, outs):
            value = _device_value(ort, arr)
            binding.bind_ortvalue_output(name, value)
            self._d2h.append((value, self._pinned(arr.shape, arr.dtype)))
        for value, host in self._h2d:  # the device inputs hold the data from the start
            rt.memcpy_htod_async(value.data_ptr(), host, gpu["stream"])
        gpu["stream"].synchronize()
        gpu["events"] = [rt.Event() for _ in range(4)]
        self._out_values = [v for v, _ in self._d2h]
        self._binding = binding
        self._bound = True

    def _pinned(self, shape, dtype) -> np.ndarray:
        array_, ptr = self._gpu["rt"].pinned_empty(tuple(shape), dtype)
        self._gpu["pinned"].append(ptr)
        return array_

    def _infer_device(self) -> None:
        """One timed call on the GPU: events around the copies and the run (module docstring)."""
        rt, gpu = self._gpu["rt"], self._gpu
        stream = gpu["stream"]
        e0, e1, e2, e3 = gpu["events"]
        e0.record(stream)
        for value, host in self._h2d:
            rt.memcpy_htod_async(value.data_ptr(), host, stream)
        e1.record(stream)
        self.session.run_with_iobinding(self._binding)
        e2.record(stream)
        for value, host in self._d2h:
            rt.memcpy_dtoh_async(host, value.data_ptr(), stream)
        e3.record(stream)
        stream.synchronize()
        self._lat_compute.append(int(round(rt.elapsed_ms(e1, e2) * 1e6)))
        self._lat_transfers.append(int(round(rt.elapsed_ms(e0, e3) * 1e6)))

    def reset_levels(self) -> None:
        """Forget the device latencies recorded so far (called before the timed loop)."""
        self._lat_compute, self._lat_transfers = array("q"), array("q")

    def level_latencies_ns(self) -> dict:
        """``{"device_compute", "device_with_transfers"}``: ns per ``infer()`` since
        :meth:`reset_levels`, from CUDA events (empty lists off the GPU path)."""
        return {"device_compute": self._lat_compute, "device_with_transfers": self._lat_transfers}

    def infer(self):
        try:
            if self._bound and self._gpu is not None:
                self._infer_device()
            elif self._bound:
                self.session.run_with_iobinding(self._binding)
            else:
                self.session.run(self._names, self._feeds)
        except Exception as exc:
            raise InferenceError(f"{type(exc).__name__}: {exc}".strip()) from None

    def evaluate(self, feeds):
        """``session.run`` on ``feeds``: every output as a numpy array, by name (untimed)."""
        names = [o.name for o in self.session.get_outputs()]
        try:
            outs = self.session.run(names, {k: np.ascontiguousarray(v) for k, v in feeds.items()})
        except Exception as exc:
            raise InferenceError(f"{type(exc).__name__}: {exc}".strip()) from None
        return {name: np.asarray(out) for name, out in zip(names, outs)}

    def runtime_info(self):
        info = self._cpu_info()
        if self._gpu is not None:
            rt, rt_stream = self._gpu["rt"], self._gpu["stream"].handle
            info.update(
                device={"type": DEVICE_TYPE, "id": DEVICE_ID, "name": rt.device_name(),
                        "compute_capability": list(rt.compute_capability())},
                io_binding_memory="device" if self._bound else "host",
                stream=f"ours ({rt_stream}, provider option user_compute_stream, as get_provider_options() "
                       "reports)",
                timing={"host_call": "perf_counter_ns around infer() (includes the copies and 2 event "
                                     "read-outs)",
                        "device_compute": "cudaEventElapsedTime, events around run_with_iobinding "
                                          "(ONNX Runtime synchronizes its stream before returning)",
                        "device_with_transfers": "cudaEventElapsedTime, events around H2D + run + D2H "
                                                 "(page-locked host buffers)"} if self._bound else None)
        return info

    def _cpu_info(self):
        return {
            "name": "onnxruntime",
            "version": self._ort.__version__,
            "provider": self.session.get_providers()[0],
            "providers": self.session.get_providers(),
            "threads": self._threads,
            "inter_op_threads": 1,
            "execution_mode": "sequential",
            "graph_optimization_level": self._opt_level,
            "io_binding": self._bound,
            "provider_option": self._provider,
        }

    def close(self):
        if self.options.get("profile_prefix") and getattr(self, "session", None) is not None:
            self.profile_path = self.session.end_profiling()
        self.session = None
        self._release_gpu()

    def _release_gpu(self) -> None:
        """Free what a GPU provider held: bindings and device OrtValues, events, page-locked
        buffers, then the stream (after the session is gone)."""
        gpu = getattr(self, "_gpu", None)
        if gpu is None:
            return
        self._binding = self._out_values = None
        self._h2d = self._d2h = []
        rt = gpu["rt"]
        for event in gpu["events"]:
            event.close()
        for ptr in gpu["pinned"]:
            rt.free_host(ptr)
        gpu["stream"].close()
        self._gpu = None
