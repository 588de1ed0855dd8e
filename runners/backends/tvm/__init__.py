"""Apache TVM: one runtime, one folder (Python 3.8).

``DESCRIPTOR`` here; the ``.tvm`` artefact format (a Relax VM shared library and its ``meta.json``
in one file) in :mod:`.artefact`; the backend (Relax VM on the CPU) in :mod:`.backend`; the host's
compiler (ONNX -> Relax -> untuned or MetaSchedule-tuned library, cached) in :mod:`.compile`,
reached through the descriptor's ``compiler`` by ``host zoo compile --backend tvm``. Importing this
package imports neither ``tvm`` nor ``onnx``.
"""

from __future__ import annotations

from runners.backends.base import BackendDescriptor, BackendOption, ModelCompiler
from runners.backends.tvm import compile as tvm_compile
from runners.backends.tvm import rpc as tvm_rpc
from runners.backends.tvm.backend import TvmBackend

__all__ = ["DESCRIPTOR", "TvmBackend"]

DESCRIPTOR = BackendDescriptor(
    name="tvm",
    summary="Apache TVM: a Relax VM library compiled on the host from the ONNX model "
    "(`host zoo compile --backend tvm`; cross-compiled for aarch64 boards), untuned or MetaSchedule-tuned, "
    "run on the CPU",
    backend=TvmBackend,
    options=(
        BackendOption("threads", int, 0, "TVM_NUM_THREADS of the runtime's thread pool; 0 = all CPUs this "
                      "process may use", slug="t"),
        BackendOption("numpy_io", bool, False, "convert the inputs from numpy and the outputs back to numpy "
                      "in every timed call (off: inputs converted once, outputs left as TVM tensors)",
                      slug="npio"),
    ),
    latency_levels=("host_call",),
    precisions=("fp32", "fp16", "int8"),
    families=("arm_cpu", "x86_a100"),
    runtime_modules=("tvm",),
    model_suffixes=(tvm_compile.SUFFIX,),
    compiler=ModelCompiler(
        compile=tvm_compile.compile_model,
        options=tvm_compile.OPTIONS,
        tag=lambda o: tvm_compile.slug(o["codegen"], o["tune_trials"], o["trials_per_task"]),
        board_compile=tvm_rpc.compile_for_board,
        summary="ONNX -> Relax -> TVM's default pipeline (untuned) or MetaSchedule tuning first (tuned), "
        "on this host or, with --device, on the board through TVM's RPC; cached by source sha256 x "
        "target x TVM version x trials",
    ),
    tested_here="on this x86-64 VM: `host zoo compile --backend tvm` (untuned, and tuned with a few "
    "MetaSchedule trials) and the Relax VM run here with apache-tvm 0.27 (tests/test_tvm.py: outputs against "
    "ONNX Runtime, cache keys and hits, typed errors); `host bench --backend tvm` on this machine; "
    "tuned through TVM's RPC on a loopback SSH board (`host zoo compile --device`, `host bench` on it; "
    "tests/test_tvm_rpc.py), not on a real one; cross-compiled here for aarch64 (Cortex-A72 target, "
    "aarch64-linux-gnu-gcc; tests/test_tvm_cross.py: ELF header, meta, the x86 runner's refusal) and run "
    "in the arm_cpu image's `tvm` variant built for linux/arm64 under QEMU, outputs against the smoke "
    "reference (tests/test_images.py, qemu_arm64); not run on a real ARM board",
    verified_on=("x86-64 Debian VM (the test machine): compiled (untuned, tuned) and run here",),
)
