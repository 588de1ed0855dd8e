"""A small CUDA runtime wrapper over cuda-python, for the GPU backends (TensorRT, ONNX Runtime's
CUDA provider) and GPU telemetry.

Built on NVIDIA's cuda-python: ``cuda.bindings.runtime`` (cuda-python >= 12.6), falling back to the
older ``cuda.cudart`` module; imported lazily, on the first call that needs it, so that importing
this module never needs a GPU. cuda-python calls return a tuple whose first item is a
``cudaError_t``; every wrapper here checks it and raises :class:`runners.errors.CudaError` naming the
error (``cudaGetErrorName``), e.g. ``cudaMalloc: cudaErrorMemoryAllocation (out of memory)``.

API (units in names; pointers are ints, device 0 unless ``cudaSetDevice`` was called):
``available()``, ``Stream`` (``.handle``, ``.synchronize()``, ``.query()``, ``.close()``), ``Event``
(``.record(stream)``, ``.synchronize()``, ``.close()``), ``elapsed_ms(start, end)``,
``device_alloc(nbytes)``, ``free(ptr)``, ``pinned_empty(shape, dtype)`` / ``free_host(ptr)``
(page-locked host arrays, so that asynchronous copies are asynchronous), ``memcpy_htod_async``,
``memcpy_dtoh_async``, ``mem_get_info()``, ``device_name()``, ``compute_capability()``,
``integrated()`` (True on Jetson: unified memory).

Sources: CUDA Runtime API reference (cudaEventElapsedTime's resolution is about 0.5 us);
cuda-python's ``cuda.bindings.runtime`` documentation.
"""

from __future__ import annotations

import ctypes
from typing import Any, Tuple

import numpy as np

from runners.errors import CudaError

_RT: Any = None


def _rt():
    """The cuda-python runtime module (``cuda.bindings.runtime``, else ``cuda.cudart``).

    Raises:
        CudaError: cuda-python is not installed (or its CUDA library does not load).
    """
    global _RT
    if _RT is None:
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            try:
                from cuda import cudart as rt
            except ImportError as exc:
                raise CudaError(
                    f"cuda-python is not importable ({exc}); install it: pip install cuda-python"
                ) from None
        _RT = rt
    return _RT


def error_name(err) -> str:
    """``cudaErrorX (description)`` for a ``cudaError_t``; its ``name`` when the runtime cannot say."""
    rt = _RT
    name = getattr(err, "name", None) or str(err)
    if rt is None:
        return name
    try:
        got = rt.cudaGetErrorName(err)
        text = rt.cudaGetErrorString(err)
        name = got[1].decode() if isinstance(got[1], bytes) else str(got[1])
        desc = text[1].decode() if isinstance(text[1], bytes) else str(text[1])
        return f"{name} ({desc})"
    except Exception:  # an error while describing an error: keep the enum's name
        return name


def _ok(err) -> bool:
    """Whether ``err`` is ``cudaSuccess`` (0 in every CUDA version)."""
    try:
        return int(err) == 0
    except (TypeError, ValueError):  # an enum without __int__: compare with the runtime's own
        return _RT is not None and err == _RT.cudaError_t.cudaSuccess


def check(call: str, ret) -> Any:
    """The value(s) of a cuda-python call's return tuple ``(err, *values)`` after checking ``err``.

    Returns None for ``(err,)``, the value for ``(err, v)``, a tuple for more.

    Raises:
        CudaError: ``err`` is not ``cudaSuccess``; the message names ``call`` and the error.
    """
    if not isinstance(ret, tuple):
        ret = (ret,)
    err, values = ret[0], ret[1:]
    if not _ok(err):
        raise CudaError(f"{call}: {error_name(err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def available() -> bool:
    """Whether cuda-python imports and sees at least one CUDA device. Never raises."""
    try:
        rt = _rt()
        return int(check("cudaGetDeviceCount", rt.cudaGetDeviceCount())) > 0
    except Exception:  # no cuda-python, no driver, no device: not available
        return False


def _pointer(handle) -> int:
    """A cuda-python handle (``cudaStream_t``, ...) as an int: ``int()``, else ``getPtr()``."""
    try:
        return int(handle)
    except TypeError:
        return int(handle.getPtr())


class Stream:
    """A CUDA stream (``cudaStreamCreateWithFlags(cudaStreamNonBlocking)``). ``handle`` is the
    ``cudaStream_t`` as an int, what TensorRT's ``execute_async_v3`` takes. Raises CudaError."""

    def __init__(self):
        rt = _rt()
        self._stream = check(
            "cudaStreamCreateWithFlags", rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking)
        )
        self.handle = _pointer(self._stream)

    def synchronize(self) -> None:
        """Block until every operation queued on the stream has finished."""
        check("cudaStreamSynchronize", _rt().cudaStreamSynchronize(self._stream))

    def query(self) -> bool:
        """Whether every queued operation has finished (``cudaStreamQuery``; never blocks)."""
        rt = _rt()
        err = rt.cudaStreamQuery(self._stream)
        err = err[0] if isinstance(err, tuple) else err
        if _ok(err):
            return True
        if err == rt.cudaError_t.cudaErrorNotReady:
            return False
        return check("cudaStreamQuery", (err,)) or False

    def close(self) -> None:
        if self._stream is not None:
            check("cudaStreamDestroy", _rt().cudaStreamDestroy(self._stream))
            self._stream = None


class Event:
    """A CUDA event with timing (``cudaEventCreate``, default flags). Raises CudaError."""

    def __init__(self):
        self._event = check("cudaEventCreate", _rt().cudaEventCreate())

    def record(self, stream: Stream) -> None:
        """Queue the event on ``stream`` (``cudaEventRecord``)."""
        check("cudaEventRecord", _rt().cudaEventRecord(self._event, stream._stream))

    def synchronize(self) -> None:
        check("cudaEventSynchronize", _rt().cudaEventSynchronize(self._event))

    def close(self) -> None:
        if self._event is not None:
            check("cudaEventDestroy", _rt().cudaEventDestroy(self._event))
            self._event = None


def elapsed_ms(start: Event, end: Event) -> float:
    """Milliseconds between two recorded, completed events (``cudaEventElapsedTime``; resolution
    about 0.5 us). Raises CudaError (e.g. cudaErrorNotReady when ``end`` has not completed)."""
    return float(check("cudaEventElapsedTime", _rt().cudaEventElapsedTime(start._event, end._event)))


def device_alloc(nbytes: int) -> int:
    """``cudaMalloc(nbytes)`` (at least 1 byte); the device pointer as an int. Raises CudaError."""
    return int(check("cudaMalloc", _rt().cudaMalloc(max(int(nbytes), 1))))


def free(ptr: int) -> None:
    """``cudaFree(ptr)``. Raises CudaError."""
    check("cudaFree", _rt().cudaFree(int(ptr)))


def pinned_empty(shape, dtype) -> Tuple[np.ndarray, int]:
    """A page-locked host array (``cudaMallocHost``) of ``shape`` and ``dtype``, and its pointer
    (give it to :func:`free_host` when done; the array must not be used after). Raises CudaError."""
    dt = np.dtype(dtype)
    count = int(np.prod(shape)) if len(shape) else 1
    nbytes = max(count * dt.itemsize, 1)
    ptr = int(check("cudaMallocHost", _rt().cudaMallocHost(nbytes)))
    buf = (ctypes.c_byte * nbytes).from_address(ptr)
    return np.frombuffer(buf, dtype=dt, count=count).reshape(shape), ptr


def free_host(ptr: int) -> None:
    """``cudaFreeHost(ptr)``. Raises CudaError."""
    check("cudaFreeHost", _rt().cudaFreeHost(int(ptr)))


def _kind(name: str):
    return getattr(_rt().cudaMemcpyKind, name)


def memcpy_htod_async(ptr: int, array: np.ndarray, stream: Stream) -> None:
    """Queue a copy of the C-contiguous ``array`` to device pointer ``ptr`` on ``stream``
    (asynchronous only when ``array`` is page-locked: :func:`pinned_empty`). Raises CudaError,
    ValueError (a non-contiguous array)."""
    if not array.flags["C_CONTIGUOUS"]:
        raise ValueError("memcpy_htod_async needs a C-contiguous array")
    check(
        "cudaMemcpyAsync",
        _rt().cudaMemcpyAsync(
            int(ptr), array.ctypes.data, array.nbytes, _kind("cudaMemcpyHostToDevice"), stream._stream
        ),
    )


def memcpy_dtoh_async(array: np.ndarray, ptr: int, stream: Stream) -> None:
    """Queue a copy from device pointer ``ptr`` into the C-contiguous, writable ``array`` on
    ``stream``. Raises CudaError, ValueError."""
    if not (array.flags["C_CONTIGUOUS"] and array.flags["WRITEABLE"]):
        raise ValueError("memcpy_dtoh_async needs a C-contiguous, writable array")
    check(
        "cudaMemcpyAsync",
        _rt().cudaMemcpyAsync(
            array.ctypes.data, int(ptr), array.nbytes, _kind("cudaMemcpyDeviceToHost"), stream._stream
        ),
    )


def mem_get_info() -> Tuple[int, int]:
    """``(free_bytes, total_bytes)`` of the current device (``cudaMemGetInfo``: device-wide, other
    processes included). Raises CudaError."""
    free_b, total_b = check("cudaMemGetInfo", _rt().cudaMemGetInfo())
    return int(free_b), int(total_b)


def _properties():
    rt = _rt()
    device = check("cudaGetDevice", rt.cudaGetDevice())
    return check("cudaGetDeviceProperties", rt.cudaGetDeviceProperties(device))


def device_name() -> str:
    """The current device's name, e.g. ``NVIDIA A100-SXM4-40GB`` or ``Orin``. Raises CudaError."""
    name = _properties().name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return str(name).strip()


def compute_capability() -> Tuple[int, int]:
    """``(major, minor)`` of the current device, e.g. (8, 0) for an A100, (8, 7) for Orin."""
    prop = _properties()
    return int(prop.major), int(prop.minor)


def integrated() -> bool:
    """Whether the device shares memory with the host (Jetson: ``cudaDeviceProp.integrated``)."""
    return bool(_properties().integrated)
