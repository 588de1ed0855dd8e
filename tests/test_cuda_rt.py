"""runners/cuda_rt.py against stand-ins for cuda-python, and (``-m gpu``, opt-in ``--gpu``) a real device.

The stand-in :class:`FakeCudaPython` is written from cuda-python's own source and from what the real
package does on a machine without a driver, not from our code:

* cuda-python 12.6.2.post1 (the wheel the x86-a100 and JetPack 6 images pin), ``cuda/bindings/runtime.pyx``:
  every call returns ``(cudaError_t, *values)``; ``cudaGetErrorName(error)`` / ``cudaGetErrorString(error)``
  read ``error.value`` (an int raises AttributeError) and return ``(cudaSuccess, bytes)``;
  ``cudaError_t`` is an IntEnum (cudaSuccess 0, cudaErrorMemoryAllocation 2, cudaErrorInsufficientDriver
  35, cudaErrorNoDevice 100, cudaErrorNotReady 600).
* ``cuda/bindings/_bindings/cydriver.pyx`` ``cuPythonInit``: the driver library is loaded on the first
  call; without one that call raises ``RuntimeError('Failed to dlopen libcuda.so.1')`` and, the loader
  being marked done, every later call ``RuntimeError('Function "cuInit" not found')``; ``cudaGetErrorString``
  goes through the driver (``cuGetErrorString``) and raises too, while ``cudaGetErrorName`` does not.
  Observed the same on this machine (no NVIDIA driver) with the real 12.6.2.post1 wheel for CPython 3.11:
  ``cudaGetDeviceCount()`` raised those two RuntimeErrors in that order, ``cudaRuntimeGetVersion()`` gave
  12060, ``cudaGetErrorName(cudaErrorInsufficientDriver)`` gave ``b'cudaErrorInsufficientDriver'``.
* Handles: cuda-python 11.8.2 ``cuda/cuda.pyx`` and 12.6.2 ``cuda/bindings/driver.pyx``, ``cdef class
  CUstream`` (``cudaStream_t`` derives from it): ``__int__`` returns the stored handle value
  (``self._ptr[0]``), ``getPtr()`` the address of that storage (``self._ptr``); the project's docs page
  ``cuda_bindings/docs/source/tips_and_tricks.rst`` (NVIDIA/cuda-python) says the same.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
from enum import IntEnum
from pathlib import Path

import numpy as np
import pytest

from runners import cuda_rt
from runners.errors import CudaError


class cudaError_t(IntEnum):  # noqa: N801 - cuda-python's name; values from its runtime.pyx (CUDA 12.6)
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorNotReady = 600


#: cudaGetErrorString's texts (CUDA Runtime API, enum cudaError).
DESCRIPTIONS = {
    cudaError_t.cudaErrorMemoryAllocation: b"out of memory",
    cudaError_t.cudaErrorInsufficientDriver: b"CUDA driver version is insufficient for CUDA runtime version",
    cudaError_t.cudaErrorNoDevice: b"no CUDA-capable device is detected",
}


class Handle:
    """Like cuda-python's ``CUstream``/``cudaStream_t``: a C slot holding the handle value; ``__int__``
    reads the slot, ``getPtr()`` gives the slot's address."""

    def __init__(self, value: int = 0):
        self._slot = ctypes.c_void_p(value)

    def __int__(self) -> int:
        return int(self._slot.value or 0)

    def getPtr(self) -> int:  # noqa: N802 - cuda-python's name
        return ctypes.addressof(self._slot)


class SlotOnlyHandle(Handle):
    """A handle offering only what every handle class's docstring lists (``getPtr()``), no ``__int__``."""

    __int__ = None  # int(h) raises TypeError, as for any object without __int__


class FakeCudaPython:
    """Stands in for ``cuda.bindings.runtime`` in one of four driver states: ``ok`` (one device, driver
    CUDA 12.6), ``no_driver`` (libcuda.so.1 missing), ``old_driver`` (cudaErrorInsufficientDriver, driver
    CUDA 11.4), ``no_device`` (cudaErrorNoDevice)."""

    cudaError_t = cudaError_t
    cudaStreamNonBlocking = 1

    def __init__(self, state: str = "ok"):
        self.state = state
        self.loader_tried = False

    def _driver(self) -> None:
        """cuPythonInit: the first call without a driver fails to dlopen, later ones find no cuInit."""
        if self.state != "no_driver":
            return
        first, self.loader_tried = not self.loader_tried, True
        raise RuntimeError("Failed to dlopen libcuda.so.1" if first else 'Function "cuInit" not found')

    def cudaGetErrorName(self, error):  # noqa: N802
        return cudaError_t.cudaSuccess, cudaError_t(error.value).name.encode()

    def cudaGetErrorString(self, error):  # noqa: N802
        self._driver()  # through cuGetErrorString in 12.x
        return cudaError_t.cudaSuccess, DESCRIPTIONS.get(cudaError_t(error.value), b"unrecognized error code")

    def cudaGetDeviceCount(self):  # noqa: N802
        self._driver()
        err = {"old_driver": cudaError_t.cudaErrorInsufficientDriver,
               "no_device": cudaError_t.cudaErrorNoDevice}.get(self.state, cudaError_t.cudaSuccess)
        return err, (1 if err == cudaError_t.cudaSuccess else 0)

    def cudaDriverGetVersion(self):  # noqa: N802
        self._driver()
        return cudaError_t.cudaSuccess, 11040 if self.state == "old_driver" else 12060

    def cudaStreamCreateWithFlags(self, flags):  # noqa: N802
        self._driver()
        return cudaError_t.cudaSuccess, Handle(0x7F00_1234_5000)


@pytest.fixture
def fake(monkeypatch):
    """``make(state)`` installs a :class:`FakeCudaPython` as cuda_rt's runtime."""
    monkeypatch.setattr(cuda_rt, "_FIRST_FAILURE", None, raising=False)

    def make(state: str = "ok") -> FakeCudaPython:
        rt = FakeCudaPython(state)
        monkeypatch.setattr(cuda_rt, "_RT", rt)
        return rt

    return make


# -- item 4: the reason a device is not available ------------------------------------------------


def test_a_present_device_has_no_reason(fake):
    fake("ok")
    assert cuda_rt.unavailable_reason() is None and cuda_rt.available()


def test_an_old_driver_is_named_with_cudas_words_and_the_versions(fake):
    fake("old_driver")
    reason = cuda_rt.unavailable_reason()
    assert reason.startswith("cudaGetDeviceCount: cudaErrorInsufficientDriver "
                             "(CUDA driver version is insufficient for CUDA runtime version)")
    assert "driver_cuda 11.4" in reason
    assert cuda_rt.available() is False


def test_no_device_is_named(fake):
    fake("no_device")
    assert "cudaErrorNoDevice (no CUDA-capable device is detected)" in cuda_rt.unavailable_reason()


def test_a_missing_driver_keeps_the_first_loader_failure(fake):
    """The first call says what is wrong (dlopen); later ones only 'cuInit not found': keep the first."""
    fake("no_driver")
    first = cuda_rt.unavailable_reason()
    again = cuda_rt.unavailable_reason()
    assert "could not reach the CUDA driver: Failed to dlopen libcuda.so.1" in first
    assert 'Function "cuInit" not found (first failure: Failed to dlopen libcuda.so.1)' in again
    with pytest.raises(CudaError, match="cudaStreamCreateWithFlags: .*Failed to dlopen libcuda.so.1"):
        cuda_rt.Stream()  # a typed error, not cuda-python's RuntimeError


def test_without_cuda_python_the_import_error_is_the_reason(monkeypatch):
    monkeypatch.setattr(cuda_rt, "_RT", None)
    import importlib.util

    if importlib.util.find_spec("cuda") is not None:
        pytest.skip("cuda-python is installed here")
    reason = cuda_rt.unavailable_reason()
    assert reason.startswith("cuda-python is not importable (No module named 'cuda')")


def test_an_int_error_code_is_named_through_the_enum(fake):
    """cuda-python's cudaGetErrorName reads ``error.value``: a bare int must be converted first."""
    fake("ok")
    assert cuda_rt.error_name(2) == "cudaErrorMemoryAllocation (out of memory)"


def test_without_a_driver_the_error_keeps_its_name(fake):
    """cudaGetErrorString needs the driver in cuda-python 12.x; the name still comes through."""
    fake("no_driver")
    assert cuda_rt.error_name(cudaError_t.cudaErrorNoDevice) == "cudaErrorNoDevice"


# -- item 9: handles as pointers -----------------------------------------------------------------


def test_a_handle_is_its_value_not_the_address_of_its_storage():
    h = Handle(0x7F00_DEAD_0000)
    assert cuda_rt._pointer(h) == 0x7F00_DEAD_0000
    assert h.getPtr() != 0x7F00_DEAD_0000  # what the old fallback returned


def test_a_handle_without_int_is_read_through_getptr():
    h = SlotOnlyHandle(0x7F00_BEEF_0000)
    with pytest.raises(TypeError):
        int(h)
    assert cuda_rt._pointer(h) == 0x7F00_BEEF_0000


def test_a_non_handle_is_a_typed_error():
    with pytest.raises(CudaError, match="neither __int__ nor getPtr"):
        cuda_rt._pointer(object())


def test_stream_handle_is_the_stream_value(fake):
    fake("ok")
    assert cuda_rt.Stream().handle == 0x7F00_1234_5000


# -- a real device (-m gpu) ----------------------------------------------------------------------

MIB = 1 << 20


def _capture(name: str, doc: dict) -> None:
    """Write ``doc`` to ``$EDGEGAUGE_GPU_CAPTURE/<name>.json`` when scripts/gpu-check.sh asks for it."""
    folder = os.environ.get("EDGEGAUGE_GPU_CAPTURE")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")


@pytest.fixture
def device():
    """The real device through cuda-python; --gpu without one fails with cuda_rt's own reason."""
    reason = cuda_rt.unavailable_reason()
    if reason is not None:
        pytest.fail(f"--gpu given but runners.cuda_rt has no device: {reason}")
    return {"name": cuda_rt.device_name(), "cc": cuda_rt.compute_capability(), **cuda_rt.versions()}


@pytest.mark.gpu
def test_real_copies_round_trip_bytes(device):
    nbytes = 64 * MIB
    src, src_ptr = cuda_rt.pinned_empty((nbytes,), np.uint8)
    dst, dst_ptr = cuda_rt.pinned_empty((nbytes,), np.uint8)
    dev = cuda_rt.device_alloc(nbytes)
    stream = cuda_rt.Stream()
    try:
        src[:] = np.random.default_rng(23).integers(0, 256, nbytes, dtype=np.uint8)
        dst[:] = 0
        cuda_rt.memcpy_htod_async(dev, src, stream)
        cuda_rt.memcpy_dtoh_async(dst, dev, stream)
        stream.synchronize()
        assert stream.query() is True
        assert np.array_equal(src, dst)
        pageable = np.arange(4096, dtype=np.float32)  # not page-locked: the copy still lands
        back = np.zeros_like(pageable)
        cuda_rt.memcpy_htod_async(dev, pageable, stream)
        cuda_rt.memcpy_dtoh_async(back, dev, stream)
        stream.synchronize()
        assert np.array_equal(pageable, back)
        assert stream.handle != 0
    finally:
        stream.close()
        cuda_rt.free(dev)
        cuda_rt.free_host(src_ptr)
        cuda_rt.free_host(dst_ptr)


@pytest.mark.gpu
def test_real_events_time_a_known_copy(device):
    """A 256 MiB host-to-device copy between two events takes > 0 ms, and no less than at 1 TB/s
    (faster than any PCIe/NVLink-C2C host link or Jetson DRAM); an empty interval takes less."""
    nbytes = 256 * MIB
    src, src_ptr = cuda_rt.pinned_empty((nbytes,), np.uint8)
    dev = cuda_rt.device_alloc(nbytes)
    stream = cuda_rt.Stream()
    events = [cuda_rt.Event() for _ in range(4)]
    try:
        src[:] = 1
        events[0].record(stream)
        events[1].record(stream)
        events[2].record(stream)
        cuda_rt.memcpy_htod_async(dev, src, stream)
        events[3].record(stream)
        events[3].synchronize()
        empty = cuda_rt.elapsed_ms(events[0], events[1])
        copy = cuda_rt.elapsed_ms(events[2], events[3])
        floor_ms = nbytes / 1e12 * 1e3
        _capture("cuda_rt_events", {"device": device, "copy_bytes": nbytes, "copy_ms": copy,
                                    "empty_ms": empty, "copy_gb_per_s": nbytes / copy / 1e6})
        assert copy > floor_ms and copy < 10_000
        assert 0 <= empty < copy
    finally:
        for e in events:
            e.close()
        stream.close()
        cuda_rt.free(dev)
        cuda_rt.free_host(src_ptr)


@pytest.mark.gpu
def test_real_memory_figures_are_sensible(device):
    """0 < free <= total; total within 10 % of nvidia-smi's memory.total (where there is one); a
    512 MiB allocation lowers free by at least 90 % of it (not on Jetson: shared memory moves)."""
    free0, total = cuda_rt.mem_get_info()
    assert 0 < free0 <= total
    doc = {"device": device, "free_bytes": free0, "total_bytes": total}
    smi = shutil.which("nvidia-smi")
    if smi and not cuda_rt.integrated():
        out = subprocess.run([smi, "-i", "0", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout.split()
        doc["nvidia_smi_memory_total_mib"] = float(out[0])
        assert abs(total / MIB - float(out[0])) <= 0.1 * float(out[0])
    if not cuda_rt.integrated():
        ptr = cuda_rt.device_alloc(512 * MIB)
        try:
            free1, _ = cuda_rt.mem_get_info()
        finally:
            cuda_rt.free(ptr)
        doc["free_after_512mib_bytes"] = free1
        assert free0 - free1 >= 0.9 * 512 * MIB
    _capture("cuda_rt_memory", doc)
    major, _ = device["cc"]
    assert device["name"] and major >= 3
