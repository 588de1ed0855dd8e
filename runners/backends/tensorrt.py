"""TensorRT backend: declared, not implemented yet.

The example lab's Jetson and x86 + A100 boards name ``runtime=tensorrt`` and their images ship
TensorRT (images/jetson, images/x86-a100), so the inventory accepts it; ``host bench`` refuses
those devices until a :class:`runners.backends.Backend` subclass lives here (it will import
``tensorrt`` inside its methods, never at module level).
"""

from __future__ import annotations

from runners.backends import BackendDescriptor

DESCRIPTOR = BackendDescriptor(
    name="tensorrt",
    summary="NVIDIA TensorRT (engine built from the ONNX model)",
    latency_levels=("host_call",),
    precisions=("fp32", "fp16", "int8"),
    families=("jetson", "x86_a100"),
    runtime_modules=("tensorrt",),
    implemented=False,
    reason="no TensorRT runner backend yet; the jetson and x86-a100 images only smoke-test TensorRT",
)
