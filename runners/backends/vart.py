"""Vitis AI Runtime (VART) backend for the ZCU104's DPU: declared, not implemented yet.

The example lab's ZCU104 names ``runtime=vart`` and its native bundle is checked for ``vart``
and ``xir`` (images/vitis-ai), so the inventory accepts it; ``host bench`` refuses that device
until a :class:`runners.backends.Backend` subclass lives here (it will import ``vart``/``xir``
inside its methods and run compiled ``.xmodel`` files, never ONNX).
"""

from __future__ import annotations

from runners.backends import BackendDescriptor

DESCRIPTOR = BackendDescriptor(
    name="vart",
    summary="Xilinx Vitis AI Runtime on the DPU (compiled .xmodel)",
    latency_levels=("host_call",),
    precisions=("int8",),
    families=("zcu104",),
    runtime_modules=("vart", "xir"),
    implemented=False,
    reason="no VART runner backend yet; the ZCU104 bundle only smoke-tests vart/xir",
)
