"""ONNX Runtime backend, CPU execution provider.

Session settings follow ONNX Runtime's Python API (``onnxruntime.SessionOptions``):
intra-op threads (default: every CPU this process may run on, ``os.sched_getaffinity``),
one inter-op thread, sequential execution, a chosen graph optimization level. Inputs
and outputs are bound once with I/O binding (``InferenceSession.io_binding``) so the
timed ``infer`` call is ``run_with_iobinding`` alone: no per-call numpy conversion or
output allocation. Measured (``bench/ort_overhead.py``): a fixed cost of about 3.5 us per
call (7 us with ``session.run``), i.e. +0.23 % over ORT's own ``model_run`` time on a 4 ms
model, and within 1 % for models of 1 ms or more.
"""

from __future__ import annotations

import os

import numpy as np

from runners.backends import Backend, BackendDescriptor, BackendOption
from runners.errors import BackendUnavailableError, InferenceError, ModelLoadError
from runners.inputs import TensorSpec

OPT_LEVELS = ("disable", "basic", "extended", "all")

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


def default_threads() -> int:
    """CPUs this process may use (cgroup/affinity aware), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


class OrtCpuBackend(Backend):
    """Options: ``threads`` (int, intra-op; 0/None = all usable CPUs), ``opt_level``
    (one of :data:`OPT_LEVELS`, default "all"), ``io_binding`` (bool, default True),
    ``profile_prefix`` (str: enable ORT's profiler, JSON written on close)."""

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
        providers = ["CPUExecutionProvider"]
        if "CPUExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailableError(
                f"CPUExecutionProvider missing; available: {ort.get_available_providers()}"
            )
        try:
            self.session = ort.InferenceSession(str(model_path), so, providers=providers)
        except Exception as exc:  # ORT raises its own pybind classes (InvalidProtobuf, Fail, ...)
            raise ModelLoadError(f"{type(exc).__name__}: {exc}".strip()) from None
        self._threads = int(threads)
        self._opt_level = opt_level
        self._bound = False
        self.profile_path = None

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
        if use_binding:
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

    def infer(self):
        try:
            if self._bound:
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
        }

    def close(self):
        if self.options.get("profile_prefix") and getattr(self, "session", None) is not None:
            self.profile_path = self.session.end_profiling()
        self.session = None


DESCRIPTOR = BackendDescriptor(
    name="ort",
    summary="ONNX Runtime, CPU execution provider",
    backend=OrtCpuBackend,
    options=(
        BackendOption("threads", int, 0, "intra-op threads; 0 = all CPUs this process may use", slug="t"),
        BackendOption("opt_level", str, "all", "graph optimization level", choices=OPT_LEVELS, slug="opt"),
        BackendOption("io_binding", bool, True, "bind inputs and outputs once, before warm-up "
                      "(off: session.run with numpy inputs each call)", slug="iobind"),
    ),
    latency_levels=("host_call",),
    precisions=("fp32",),
    families=("arm_cpu", "jetson", "zcu104", "x86_a100"),
    runtime_modules=("onnxruntime",),
)
