"""The null backend: ``infer`` does nothing.

Its latencies are the harness's own cost per iteration (two ``perf_counter_ns`` calls and
a method call), the floor under every other backend's figures on the same board. Same
idea as MLPerf's ``backend_null.py``.
"""

from __future__ import annotations

import os

from runners.backends.base import Backend, BackendDescriptor
from runners.inputs import TensorSpec


class NullBackend(Backend):
    name = "null"

    def load(self, model_path):
        self.model_path = model_path

    def inputs(self):
        return [TensorSpec("input", "float32", (1,))]

    def prepare(self, feeds):
        self.feeds = dict(feeds)
        self.infer()  # the first inference, as every backend's prepare() runs one

    def infer(self):
        return None

    def evaluate(self, feeds):
        """No model, no outputs: ``{}``."""
        return {}

    def runtime_info(self):
        return {
            "name": "null",
            "version": None,
            "provider": None,
            "threads": 1,
            "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        }


DESCRIPTOR = BackendDescriptor(
    name="null",
    summary="does nothing: the harness's own cost per iteration",
    backend=NullBackend,
    latency_levels=("host_call",),
    precisions=(),
    families=("arm_cpu", "jetson", "zcu104", "x86_a100"),
    model_suffixes=(".onnx", ".xmodel"),  # loads nothing: any model file will do
    returns_outputs=False,
    streams="sessions",
    tested_here="`host bench --backend null` and `python -m runners run` on this machine and on loopback "
    "boards",
    verified_on=("x86-64 Debian VM (the test machine, `--device local`)",),
)
