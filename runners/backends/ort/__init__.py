"""ONNX Runtime: one runtime, one folder (Python 3.8).

``DESCRIPTOR`` here; the backend (CPU, CUDA and
TensorRT execution providers) in :mod:`.backend`; its layer-profile parser (Chrome trace) in
:mod:`.profile`. The GPU providers use :mod:`runners.cuda_rt`, shared with the tensorrt runtime.
Importing this package does not import ``onnxruntime``.
"""

from __future__ import annotations

from runners.backends.base import BackendDescriptor, BackendOption
from runners.backends.ort.backend import OPT_LEVELS, PROVIDERS, OrtBackend, default_threads
from runners.backends.ort.profile import PROFILER

__all__ = ["DESCRIPTOR", "OrtBackend", "default_threads"]

DESCRIPTOR = BackendDescriptor(
    name="ort",
    default=True,
    layer_profiler=PROFILER,
    summary="ONNX Runtime: CPU, CUDA or TensorRT execution provider",
    backend=OrtBackend,
    options=(
        BackendOption("threads", int, 0, "intra-op threads; 0 = all CPUs this process may use", slug="t"),
        BackendOption("opt_level", str, "all", "graph optimization level", choices=OPT_LEVELS, slug="opt"),
        BackendOption("io_binding", bool, True, "bind inputs and outputs once, before warm-up "
                      "(off: session.run with numpy inputs each call)", slug="iobind"),
        BackendOption("provider", str, "cpu", "execution provider: cpu, cuda (CUDAExecutionProvider) or "
                      "tensorrt (TensorrtExecutionProvider); GPU ones need onnxruntime-gpu and cuda-python, "
                      "bind to device memory and add device_compute/device_with_transfers (CUDA events)",
                      choices=PROVIDERS, slug="ep"),
    ),
    latency_levels=("host_call", "device_compute", "device_with_transfers"),
    precisions=("fp32", "fp16", "int8"),
    families=("arm_cpu", "jetson", "zcu104", "x86_a100"),
    runtime_modules=("onnxruntime",),
    streams="sessions",
    tested_here="the CPU provider runs here (`host bench`, `python -m runners run`, loopback boards), with "
    "int8 (QDQ, dynamic) and fp16 variants (`host zoo quantize` / `convert`); in the `arm_cpu` image "
    "built for `linux/arm64` and smoke-tested under QEMU; `-o provider=cuda` / `tensorrt` (needs "
    "onnxruntime-gpu: device-bound I/O, `device_compute` / `device_with_transfers` from CUDA events) "
    "against a fake CUDA runtime, provider options against onnxruntime-gpu's own checks "
    "(tests/test_ort_provider_options.py); GPU-gated tests (`-m gpu --gpu`) have not run",
    verified_on=("CPU provider: x86-64 Debian VM (the test machine)",),
)
