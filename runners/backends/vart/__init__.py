"""Vitis AI Runtime on a DPU: one runtime, one folder (Python 3.8).

``DESCRIPTOR`` here; the backend,
its xdputil parsers and fixed-point conversions in :mod:`.backend`. Importing this package imports
neither ``vart`` nor ``xir``.
"""

from __future__ import annotations

from runners.backends.base import BackendDescriptor, BackendOption
from runners.backends.vart.backend import VartBackend

__all__ = ["DESCRIPTOR", "VartBackend"]

DESCRIPTOR = BackendDescriptor(
    name="vart",
    summary="Xilinx Vitis AI Runtime on the DPU (compiled .xmodel)",
    backend=VartBackend,
    options=(
        BackendOption("threads", int, 1, "VART runners, one per thread: 1 = single-stream latency, "
                      "N = N jobs at once per call (throughput)", slug="t"),
        BackendOption("subgraph", int, -1, "child index of the DPU subgraph to run (-1: the only one)",
                      slug="sg"),
        BackendOption("xdputil_s", float, 0.0, "seconds of `xdputil benchmark` on the same subgraph "
                      "before the first session, recorded beside our figures (0: off)", slug="xdp"),
    ),
    latency_levels=("host_call",),
    precisions=("int8",),
    families=("zcu104",),
    runtime_modules=("vart", "xir"),
    model_suffixes=(".xmodel",),
    tested_here="code paths against stand-in `xir` / `vart` modules, parsers on recorded `xdputil` output "
    "(tests/test_vart.py); `host bench` ships `.xmodel` files to `runtime=vart` boards only over a "
    "loopback board (tests/test_xmodel_bench.py); not run on a DPU",
)
