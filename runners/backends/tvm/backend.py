"""Apache TVM backend: runs a ``.tvm`` artefact (:mod:`.artefact`) with the Relax VM on the CPU.

Load: ``model.so`` is unpacked to a private temporary folder, loaded with
``tvm.runtime.load_module`` (``dlopen``; the folder is removed right after) and wrapped in
``tvm.relax.VirtualMachine(lib, tvm.cpu(0))``; the timed function is the VM's ``entry`` (``main``).
Threads: TVM's CPU thread pool reads ``TVM_NUM_THREADS`` when it starts, so the backend sets it
(option ``threads``; 0: every CPU this process may use) before it first imports ``tvm``; the
count the pool reports (``tvm.runtime.num_threads()``) goes in ``runtime_info``. Within one
process the first load decides (the pool starts once).

What the timed region holds (latency level ``host_call``, ``perf_counter_ns`` around ``infer``):

* default: one call of the VM function on inputs converted once, in ``prepare`` (untimed), to
  TVM tensors on the CPU device: the VM's interpretation of its bytecode, the kernels, and the
  allocation of the output tensor(s) from the VM's pooled allocator. No numpy conversion, no copy
  of the inputs, the outputs stay TVM tensors (as ONNX Runtime's I/O binding in ``ort``);
* ``numpy_io`` on: also the numpy -> TVM tensor copy of every input and the TVM tensor -> numpy
  copy of every output, each call (as ``ort``'s ``io_binding`` off, ``session.run`` with numpy).

Inputs must have the static shapes the artefact was compiled for (``meta.json``): another shape
is an :class:`~runners.errors.InferenceError` naming both. An artefact compiled for another
architecture (``meta.json``'s ``arch``, else its target's ``mtriple``) than ``platform.machine()``
is refused before ``dlopen`` with an :class:`~runners.errors.ArchitectureMismatchError` (a
``ModelLoadError``; ``dlopen`` itself would only say "wrong ELF class" or "cannot open shared object").
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from typing import List

import numpy as np

from runners.backends.base import Backend
from runners.backends.tvm.artefact import LIBRARY, read_artefact
from runners.backends.tvm.targets import arch_of
from runners.errors import ArchitectureMismatchError, BackendUnavailableError, InferenceError, ModelLoadError
from runners.inputs import TensorSpec


def default_threads() -> int:
    """CPUs this process may use (cgroup/affinity aware), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def check_architecture(meta: dict, machine: str = "") -> None:
    """Raise ArchitectureMismatchError when the artefact was compiled for another CPU architecture
    (``meta["arch"]``, else its target triple's) than ``machine`` (default ``platform.machine()``);
    unknown architectures or machines pass."""
    target = meta.get("target") or {}
    triple = str(target.get("mtriple") or "") if isinstance(target, dict) else ""
    here = arch_of(machine or platform.machine())
    there = arch_of(str(meta.get("arch") or "")) or arch_of(triple)
    if here and there and here != there:
        raise ArchitectureMismatchError(
            f"the artefact was compiled for {triple or there} ({there}); this machine is {here}: run it on "
            f"a {there} board, or compile it for this one (`host zoo compile --backend tvm --target ...`)")


def _import_tvm(threads: int):
    os.environ["TVM_NUM_THREADS"] = str(int(threads))
    try:
        import tvm
        from tvm import relax
    except ImportError as exc:
        raise BackendUnavailableError(f"tvm is not importable ({exc}); install it: pip install apache-tvm "
                                      "(the versions of requirements/lock.txt)") from None
    return tvm, relax


def _load_library(tvm, library: bytes):
    """The runtime module of the library's bytes (unpacked, loaded, the file removed)."""
    folder = tempfile.mkdtemp(prefix="edgegauge-tvm-")
    try:
        path = os.path.join(folder, LIBRARY)
        with open(path, "wb") as fh:
            fh.write(library)
        return tvm.runtime.load_module(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def to_numpy(result) -> List[np.ndarray]:
    """The VM function's result (one tensor, or a tuple/array of them) as numpy arrays, in order."""
    if hasattr(result, "numpy"):
        return [result.numpy()]
    return [item for part in result for item in to_numpy(part)]


class TvmBackend(Backend):
    """Options: ``threads`` (int, ``TVM_NUM_THREADS``; 0 = all usable CPUs) and ``numpy_io``
    (bool, default False: convert the inputs and outputs each call; module docstring)."""

    name = "tvm"

    def load(self, model_path):
        if not model_path:
            raise ModelLoadError("the tvm backend needs a .tvm artefact")
        self.model_path = str(model_path)
        self.meta, library = read_artefact(model_path)
        check_architecture(self.meta)
        self._threads = int(self.options.get("threads") or 0) or default_threads()
        self._tvm, relax = _import_tvm(self._threads)
        try:
            lib = _load_library(self._tvm, library)
            self._dev = self._tvm.cpu(0)
            self._vm = relax.VirtualMachine(lib, self._dev)
            self._main = self._vm[str(self.meta["entry"])]
        except Exception as exc:  # tvm raises its own error classes (TVMError, ...)
            raise ModelLoadError(f"loading the TVM library: {type(exc).__name__}: {exc}".strip()) from None
        self._numpy_io = bool(self.options.get("numpy_io", False))
        self._args, self._host = [], []

    def inputs(self):
        return [TensorSpec(s["name"], s["dtype"], tuple(s["shape"])) for s in self.meta["inputs"]]

    def outputs(self):
        return [TensorSpec(s["name"], s["dtype"], tuple(s["shape"])) for s in self.meta["outputs"]]

    def _arrays(self, feeds) -> List[np.ndarray]:
        """The feeds as contiguous arrays of the compiled dtypes and shapes, in the VM's order."""
        arrays = []
        for spec in self.meta["inputs"]:
            if spec["name"] not in feeds:
                raise InferenceError(f"no data for input {spec['name']!r}")
            data = np.ascontiguousarray(np.asarray(feeds[spec["name"]]).astype(spec["dtype"], copy=False))
            if list(data.shape) != list(spec["shape"]):
                raise InferenceError(f"input {spec['name']!r}: shape {list(data.shape)}, the artefact was "
                                     f"compiled for {spec['shape']} (compile another for this shape)")
            arrays.append(data)
        return arrays

    def _tensors(self, arrays) -> list:
        return [self._tvm.runtime.tensor(a, self._dev) for a in arrays]

    def prepare(self, feeds):
        self._host = self._arrays(feeds)
        self._args = self._tensors(self._host)
        self.infer()

    def infer(self):
        try:
            if self._numpy_io:
                to_numpy(self._main(*self._tensors(self._host)))
            else:
                self._main(*self._args)
        except Exception as exc:
            raise self._error(exc) from None

    def evaluate(self, feeds):
        """The VM function on ``feeds``: every output as a numpy array, by name (untimed)."""
        try:
            outs = to_numpy(self._main(*self._tensors(self._arrays(feeds))))
        except InferenceError:
            raise
        except Exception as exc:
            raise self._error(exc) from None
        names = [s["name"] for s in self.meta["outputs"]] or [f"output_{i}" for i in range(len(outs))]
        if len(names) != len(outs):
            raise InferenceError(f"the VM returned {len(outs)} outputs, the artefact declares {len(names)}")
        return dict(zip(names, outs))

    def _error(self, exc: Exception) -> InferenceError:
        return InferenceError(f"Relax VM {self.meta['entry']}: {type(exc).__name__}: {exc}".strip())

    def runtime_info(self):
        meta, tvm = self.meta, self._tvm
        try:
            pool = int(tvm.runtime.num_threads())
        except Exception:  # an older runtime without num_threads()
            pool = None
        return {
            "name": "tvm",
            "version": getattr(tvm, "__version__", None),
            "provider": "Relax VM, llvm CPU",
            "threads": self._threads,
            "thread_pool": pool,
            "codegen": meta["codegen"],
            "trials": meta["trials"],
            "target": meta.get("target_text") or meta["target"],
            "compiled_with": {"tvm": meta["tvm_version"], "tvm_ffi": meta.get("tvm_ffi_version")},
            "implementation": meta.get("implementation"),
            "source_sha256": (meta.get("source") or {}).get("sha256"),
            "numpy_io": self._numpy_io,
            "timed": ("VM call + numpy<->TVM tensor copies of inputs and outputs" if self._numpy_io else
                      "VM call on TVM tensors converted once before the timed loop; outputs not copied"),
        }

    def close(self):
        self._args, self._host = [], []
        self._main = self._vm = None
