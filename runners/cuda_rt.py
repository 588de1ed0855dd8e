"""A small CUDA runtime wrapper over cuda-python, for the GPU backends (TensorRT, ONNX Runtime's
CUDA provider) and GPU telemetry.

Built on NVIDIA's cuda-python: ``cuda.bindings.runtime`` (cuda-python >= 12.6), falling back to the
older ``cuda.cudart`` module; imported lazily, on the first call that needs it, so that importing
this module never needs a GPU. cuda-python calls return a tuple whose first item is a
``cudaError_t``; every wrapper here checks it and raises :class:`runners.errors.CudaError` naming the
error (``cudaGetErrorName``), e.g. ``cudaMalloc: cudaErrorMemoryAllocation (out of memory)``.

API (units in names; pointers are ints, device 0 unless ``cudaSetDevice`` was called):
``available()`` / ``unavailable_reason()`` (why not, in cuda-python's and CUDA's own words),
``versions()``, ``Stream`` (``.handle``, ``.synchronize()``, ``.query()``, ``.close()``), ``Event``
(``.record(stream)``, ``.synchronize()``, ``.close()``), ``elapsed_ms(start, end)``,
``device_alloc(nbytes)``, ``free(ptr)``, ``pinned_empty(shape, dtype)`` / ``free_host(ptr)``
(page-locked host arrays, so that asynchronous copies are asynchronous), ``memcpy_htod_async``,
``memcpy_dtoh_async``, ``mem_get_info()``, ``device_name()``, ``compute_capability()``,
``integrated()`` (True on Jetson: unified memory).

Which cuda-python: its major must match the driver's CUDA major (cuda-python 11.8.x for CUDA 11
drivers such as JetPack 5's 11.4; 12.x for CUDA 12); the images pin it (images/README.md).
cuda-python re-implements the runtime over the driver API and loads ``libcuda.so.1`` on the first
call: without a driver that call raises ``RuntimeError("Failed to dlopen libcuda.so.1")`` and every
later one ``RuntimeError('Function "cuInit" not found')`` (cuda-python 12.6.2
``cuda/bindings/_bindings/cydriver.pyx`` ``cuPythonInit``); both become :class:`CudaError` here, the
first failure kept in the message.

Sources: CUDA Runtime API reference (cudaEventElapsedTime's resolution is about 0.5 us);
cuda-python's ``cuda.bindings.runtime`` documentation and its "Tips and Tricks" page (``int(handle)``
is the CUDA object's address, ``handle.getPtr()`` the address of the Python object's storage).
"""

from __future__ import annotations

import ctypes
from importlib import metadata
from typing import Any, Optional, Tuple

import numpy as np

from runners.errors import CudaError

_RT: Any = None
#: The first RuntimeError text cuda-python raised (its driver loader fails once, then differently).
_FIRST_FAILURE: Optional[str] = None


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
                raise CudaError(f"cuda-python is not importable ({exc}); install it: pip install "
                                "cuda-python (its major = the driver's CUDA major)") from None
        _RT = rt
    return _RT


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def error_name(err) -> str:
    """``cudaErrorX (description)`` for a ``cudaError_t`` (an int is converted first: cuda-python's
    ``cudaGetErrorName`` reads ``error.value``); the enum's name alone when the runtime cannot
    describe it (without a driver, ``cudaGetErrorString`` itself raises in cuda-python 12.x)."""
    rt = _RT
    name = getattr(err, "name", None) or str(err)
    if rt is None:
        return name
    try:
        err = rt.cudaError_t(int(err))
        name = _text(rt.cudaGetErrorName(err)[1])
    except Exception:  # an error while naming an error: keep what we have
        return name
    try:
        return f"{name} ({_text(rt.cudaGetErrorString(err)[1])})"
    except Exception:
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


def _loader_failure(exc: RuntimeError) -> str:
    """The text of a RuntimeError from cuda-python's driver loader, with the first one seen (the
    informative one: a later call only says 'Function "cuInit" not found')."""
    global _FIRST_FAILURE
    text = str(exc) or type(exc).__name__
    if _FIRST_FAILURE is None:
        _FIRST_FAILURE = text
    elif text != _FIRST_FAILURE:
        text = f"{text} (first failure: {_FIRST_FAILURE})"
    return f"cuda-python could not reach the CUDA driver: {text}"


def _raw(name: str, *args):
    """``runtime.<name>(*args)`` of cuda-python, its return tuple unchecked.

    Raises:
        CudaError: cuda-python missing, or its driver loader failed (RuntimeError).
    """
    fn = getattr(_rt(), name)
    try:
        return fn(*args)
    except RuntimeError as exc:
        raise CudaError(f"{name}: {_loader_failure(exc)}") from None


def _call(name: str, *args) -> Any:
    """``check(name, runtime.<name>(*args))``. Raises CudaError."""
    return check(name, _raw(name, *args))


def unavailable_reason() -> Optional[str]:
    """None when cuda-python imports and ``cudaGetDeviceCount`` counts at least one device; else
    why not, in cuda-python's and CUDA's words (``cuda-python is not importable (...)``,
    ``cudaGetDeviceCount: cudaErrorInsufficientDriver (CUDA driver version is insufficient ...)``,
    ``... could not reach the CUDA driver: Failed to dlopen libcuda.so.1``), followed by the
    cuda-python and driver versions where they can be read. Never raises."""
    try:
        count = int(_call("cudaGetDeviceCount"))
    except CudaError as exc:
        return _with_versions(str(exc))
    except Exception as exc:  # anything else cuda-python may raise: still a reason, not a crash
        return _with_versions(f"cudaGetDeviceCount: {type(exc).__name__}: {exc}")
    return None if count > 0 else _with_versions("cudaGetDeviceCount: 0 CUDA devices")


def _with_versions(reason: str) -> str:
    found = versions()
    known = [f"{k} {v}" for k, v in found.items() if v]
    return f"{reason} [{', '.join(known)}]" if known else reason


def available() -> bool:
    """Whether cuda-python imports and sees at least one CUDA device (:func:`unavailable_reason`
    says why not). Never raises."""
    return unavailable_reason() is None


def versions() -> dict:
    """``{"cuda-python": "12.6.2.post1", "driver_cuda": "12.6"}``: the installed bindings (package
    metadata: ``cuda-bindings``, else ``cuda-python``) and the CUDA version the driver supports
    (``cudaDriverGetVersion``, 1000*major + 10*minor); None where unknown. Never raises."""
    found = {"cuda-python": _package_version(), "driver_cuda": None}
    try:
        code = int(_call("cudaDriverGetVersion"))
        found["driver_cuda"] = f"{code // 1000}.{code % 1000 // 10}" if code > 0 else None
    except Exception:  # no cuda-python, no driver: unknown
        pass
    return found


def _package_version() -> Optional[str]:
    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return metadata.version(dist)
        except Exception:  # not installed under that name
            continue
    return None


def _pointer(handle) -> int:
    """The value of a cuda-python handle (``cudaStream_t``, ``cudaEvent_t``, ...) as an int: the
    CUDA object's address, what C APIs such as TensorRT's ``execute_async_v3`` take.

    cuda-python documents ``int(handle)`` for it; ``handle.getPtr()`` is the address *of* the
    handle's storage (``&stream``; cuda-python 11.8.2 ``cuda/cuda.pyx`` and 12.6.2
    ``cuda/bindings/driver.pyx``, class ``CUstream``), so a handle without ``__int__`` is read
    through that address.

    Raises:
        CudaError: the object has neither ``__int__`` nor ``getPtr()``.
    """
    try:
        return int(handle)
    except TypeError:
        pass
    get_ptr = getattr(handle, "getPtr", None)
    if get_ptr is None:
        raise CudaError(f"not a cuda-python handle: {type(handle).__name__} has neither __int__ nor getPtr()")
    return int(ctypes.c_void_p.from_address(int(get_ptr())).value or 0)


class Stream:
    """A CUDA stream (``cudaStreamCreateWithFlags(cudaStreamNonBlocking)``). ``handle`` is the
    ``cudaStream_t`` as an int, what TensorRT's ``execute_async_v3`` takes. Raises CudaError."""

    def __init__(self):
        self._stream = _call("cudaStreamCreateWithFlags", _rt().cudaStreamNonBlocking)
        self.handle = _pointer(self._stream)

    def synchronize(self) -> None:
        """Block until every operation queued on the stream has finished."""
        _call("cudaStreamSynchronize", self._stream)

    def query(self) -> bool:
        """Whether every queued operation has finished (``cudaStreamQuery``; never blocks)."""
        err = _raw("cudaStreamQuery", self._stream)
        err = err[0] if isinstance(err, tuple) else err
        if _ok(err):
            return True
        if err == _rt().cudaError_t.cudaErrorNotReady:
            return False
        return check("cudaStreamQuery", (err,)) or False

    def close(self) -> None:
        if self._stream is not None:
            _call("cudaStreamDestroy", self._stream)
            self._stream = None


class Event:
    """A CUDA event with timing (``cudaEventCreate``, default flags). Raises CudaError."""

    def __init__(self):
        self._event = _call("cudaEventCreate")

    def record(self, stream: Stream) -> None:
        """Queue the event on ``stream`` (``cudaEventRecord``)."""
        _call("cudaEventRecord", self._event, stream._stream)

    def synchronize(self) -> None:
        _call("cudaEventSynchronize", self._event)

    def close(self) -> None:
        if self._event is not None:
            _call("cudaEventDestroy", self._event)
            self._event = None


def elapsed_ms(start: Event, end: Event) -> float:
    """Milliseconds between two recorded, completed events (``cudaEventElapsedTime``; resolution
    about 0.5 us). Raises CudaError (e.g. cudaErrorNotReady when ``end`` has not completed)."""
    return float(_call("cudaEventElapsedTime", start._event, end._event))


def device_alloc(nbytes: int) -> int:
    """``cudaMalloc(nbytes)`` (at least 1 byte); the device pointer as an int. Raises CudaError."""
    return int(_call("cudaMalloc", max(int(nbytes), 1)))


def free(ptr: int) -> None:
    """``cudaFree(ptr)``. Raises CudaError."""
    _call("cudaFree", int(ptr))


def pinned_empty(shape, dtype) -> Tuple[np.ndarray, int]:
    """A page-locked host array (``cudaMallocHost``) of ``shape`` and ``dtype``, and its pointer
    (give it to :func:`free_host` when done; the array must not be used after). Raises CudaError."""
    dt = np.dtype(dtype)
    count = int(np.prod(shape)) if len(shape) else 1
    nbytes = max(count * dt.itemsize, 1)
    ptr = int(_call("cudaMallocHost", nbytes))
    buf = (ctypes.c_byte * nbytes).from_address(ptr)
    return np.frombuffer(buf, dtype=dt, count=count).reshape(shape), ptr


def free_host(ptr: int) -> None:
    """``cudaFreeHost(ptr)``. Raises CudaError."""
    _call("cudaFreeHost", int(ptr))


def _kind(name: str):
    return getattr(_rt().cudaMemcpyKind, name)


def memcpy_htod_async(ptr: int, array: np.ndarray, stream: Stream) -> None:
    """Queue a copy of the C-contiguous ``array`` to device pointer ``ptr`` on ``stream``
    (asynchronous only when ``array`` is page-locked: :func:`pinned_empty`). Raises CudaError,
    ValueError (a non-contiguous array)."""
    if not array.flags["C_CONTIGUOUS"]:
        raise ValueError("memcpy_htod_async needs a C-contiguous array")
    _call("cudaMemcpyAsync", int(ptr), array.ctypes.data, array.nbytes, _kind("cudaMemcpyHostToDevice"),
          stream._stream)


def memcpy_dtoh_async(array: np.ndarray, ptr: int, stream: Stream) -> None:
    """Queue a copy from device pointer ``ptr`` into the C-contiguous, writable ``array`` on
    ``stream``. Raises CudaError, ValueError."""
    if not (array.flags["C_CONTIGUOUS"] and array.flags["WRITEABLE"]):
        raise ValueError("memcpy_dtoh_async needs a C-contiguous, writable array")
    _call("cudaMemcpyAsync", array.ctypes.data, int(ptr), array.nbytes, _kind("cudaMemcpyDeviceToHost"),
          stream._stream)


def mem_get_info() -> Tuple[int, int]:
    """``(free_bytes, total_bytes)`` of the current device (``cudaMemGetInfo``: device-wide, other
    processes included). Raises CudaError."""
    free_b, total_b = _call("cudaMemGetInfo")
    return int(free_b), int(total_b)


def _properties():
    return _call("cudaGetDeviceProperties", _call("cudaGetDevice"))


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
