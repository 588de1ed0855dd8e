"""TensorRT backend: an engine built from the ONNX model, run with ``execute_async_v3``.

One code path for TensorRT 8.5 (JetPack 5.1), 10.x (JetPack 6, NVIDIA's x86 containers) and 11.x:
name-based tensor I/O (``num_io_tensors``/``get_tensor_name``, ``set_input_shape``,
``set_tensor_address``) and ``execute_async_v3`` on a CUDA stream from :mod:`runners.cuda_rt`.
Version tables: :mod:`.versions`; engine cache: :mod:`.engine_cache`; calibrator: :mod:`.calibrator`;
trtexec mode: :mod:`.trtexec`.
``tensorrt`` and cuda-python are imported inside the methods, never at module level.

What each version can do is :func:`features`; what it cannot is refused with
:class:`~runners.errors.UnsupportedFeatureError` before anything is built (:func:`precision_plan`):
TensorRT 11 networks are strongly typed and it has no FP16/INT8 builder flags, so fp16 needs an
fp16 ONNX and int8 a QDQ ONNX (``host/models/precision.py`` makes both). int8 is QDQ on every
version (explicit quantization), or on 8.5-10.x the entropy calibrator over ``calibration_data``,
at the run's batch, with a calibration profile at the run's shapes on a dynamic-shape network.
I/O dtypes without a numpy equivalent (BF16, FP8, ...) are refused with
:class:`~runners.errors.UnsupportedFeatureError` (:func:`numpy_dtype`); an input shape the engine
refuses (``set_input_shape`` returns False) is an :class:`~runners.errors.InputSpecError` naming the
profile's min/opt/max.

Engines are built with a workspace limit, one optimization profile at the run's shapes and a
timing cache, and cached under ``engine_cache`` (default: ``engines/`` beside the model's folder,
i.e. in the board's work folder) keyed by :func:`engine_key`. ``rebuild=N`` builds N fresh engines
(no cache, no timing cache: engine building is not deterministic) and reports the spread of their
``device_compute`` latencies (:func:`rebuild_spread`); the first one is then measured as usual.

Latency taxonomy (docs/measurement.md §1): ``infer()`` is one synchronous call: event e0, H2D copies
of every input, e1, ``execute_async_v3``, e2, D2H copies of every output, e3, stream synchronize
(or a spin on ``cudaStreamQuery`` with ``spin_wait``). The runner times the whole call with
``perf_counter_ns`` (``host_call``, the ``latency`` block); e1→e2 is ``device_compute`` and e0→e3
``device_with_transfers`` (``latency_levels``). The two ``cudaEventElapsedTime`` read-outs happen
inside ``infer()`` after the synchronize, so ``host_call`` includes them (a few us). No CUDA graph.
Host buffers are page-locked (``cudaMallocHost``) so copies are truly asynchronous.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from array import array
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from runners.backends.base import Backend
from runners.backends.tensorrt.calibrator import calibration_batches, calibration_digest, make_calibrator
from runners.backends.tensorrt.engine_cache import (
    builder_memory,
    default_cache_dir,
    engine_key,
    rebuild_spread,
    write_bytes,
)
from runners.backends.tensorrt.versions import features, parse_version, precision_plan
from runners.errors import (
    BackendUnavailableError,
    EngineBuildError,
    InferenceError,
    InputSpecError,
    ModelLoadError,
    RunnerError,
    UnsupportedFeatureError,
)
from runners.inputs import TensorSpec

#: rebuild: warm-up and timed iterations per engine (CUDA events, device_compute)
REBUILD_WARMUP = 20
REBUILD_ITERATIONS = 200


def _logger(trt):
    """A trt.ILogger that keeps every message at INFO or above (for :func:`builder_memory`)."""

    class _Log(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.lines = []

        def log(self, severity, msg):
            if severity <= trt.ILogger.Severity.INFO:
                self.lines.append(str(msg))

    return _Log()


def numpy_dtype(trt, dtype, tensor: str) -> np.dtype:
    """The numpy dtype of TensorRT I/O ``tensor`` of TensorRT ``dtype`` (``trt.nptype``).

    Raises:
        UnsupportedFeatureError: ``dtype`` has no numpy equivalent (BF16, FP8, INT4, FP4, ...:
            ``tensorrt.nptype`` raises TypeError for them, python/packaging/.../tensorrt/__init__.py,
            release/8.5 line 151, release/10.3 line 151, release/11.0 line 172), so this backend
            can neither feed nor read the tensor.
    """
    try:
        return np.dtype(trt.nptype(dtype))
    except TypeError:
        kind = getattr(dtype, "name", None) or str(dtype)
        raise UnsupportedFeatureError(
            f"TensorRT I/O tensor {tensor!r} has dtype {kind}, which has no numpy equivalent: unsupported "
            "by the tensorrt backend (it feeds and reads I/O as numpy arrays); give the model float32, "
            "float16, int8, int32, int64, bool or uint8 inputs and outputs"
        ) from None


class TensorRTBackend(Backend):
    """Options (descriptor): ``precision``, ``workspace_mib``, ``engine_cache``, ``rebuild``,
    ``spin_wait``. Lifecycle: ``load`` parses the ONNX (inputs known); the engine is built or read
    from the cache in ``prepare`` (its shapes are the run's), see :meth:`_engine`."""

    name = "tensorrt"

    def load(self, model_path):
        try:
            import tensorrt as trt
        except Exception as exc:  # ImportError, or libnvinfer missing underneath (OSError)
            raise BackendUnavailableError(f"tensorrt is not importable ({exc})") from None
        from runners import cuda_rt

        if not cuda_rt.available():  # say why in CUDA's words: module missing, insufficient driver, no device
            raise BackendUnavailableError(f"no CUDA device for tensorrt: {cuda_rt.unavailable_reason()}")
        if not model_path:
            raise ModelLoadError("the tensorrt backend needs an ONNX model path")
        self._trt, self._cuda = trt, cuda_rt
        self.version = parse_version(trt.__version__)
        self.features = features(self.version)
        self._log = _logger(trt)
        self._model_path = str(model_path)
        self._parse()
        self._ctx = None
        self._lat_compute, self._lat_transfers = array("q"), array("q")
        self.engine_info: dict = {}
        self.gpu_memory: dict = {}
        self.builds: Optional[dict] = None

    def _parse(self) -> None:
        """Parse the ONNX into ``self._network`` (and its builder); precision refused here."""
        trt = self._trt
        self._builder = trt.Builder(self._log)
        flags = 0
        if self.features["explicit_batch_flag"]:
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        self._network = self._builder.create_network(flags)
        self._parser = trt.OnnxParser(self._network, self._log)
        try:
            ok = self._parser.parse_from_file(self._model_path)
        except Exception as exc:
            raise ModelLoadError(f"TensorRT ONNX parser: {exc}") from None
        if not ok:
            errors = [str(self._parser.get_error(i)) for i in range(self._parser.num_errors)]
            raise ModelLoadError("TensorRT ONNX parser: " + ("; ".join(errors) or "parse failed"))
        net = self._network
        outs = [
            net.get_layer(i).get_output(j)
            for i in range(net.num_layers)
            for j in range(net.get_layer(i).num_outputs)
        ]
        has_fp16 = any(t.dtype == trt.DataType.HALF for t in outs)
        has_qdq = any(net.get_layer(i).type == trt.LayerType.QUANTIZE for i in range(net.num_layers))
        folder = self.options.get("calibration_data") or ""
        self._calibration = None  # (folder, input name, digest); batches are cut at build time
        if folder and not has_qdq and net.num_inputs == 1:
            name = net.get_input(0).name
            self._calibration = (folder, name, calibration_digest(folder, name))
        self.plan = precision_plan(
            self.version, self.options.get("precision") or "auto", has_fp16=has_fp16, has_qdq=has_qdq,
            calibration=self._calibration[2] if self._calibration else None,
        )

    def _spec(self, tensor) -> TensorSpec:
        dtype = numpy_dtype(self._trt, tensor.dtype, tensor.name).name
        return TensorSpec(tensor.name, dtype, tuple(None if int(d) < 0 else int(d) for d in tensor.shape))

    def inputs(self):
        return [self._spec(self._network.get_input(i)) for i in range(self._network.num_inputs)]

    def outputs(self):
        return [self._spec(self._network.get_output(i)) for i in range(self._network.num_outputs)]

    # -- building ------------------------------------------------------------------------------

    def _builder_options(self, shapes: Mapping) -> dict:
        return {
            "workspace_mib": int(self.options.get("workspace_mib") or 1024),
            "builder_flags": list(self.plan["builder_flags"]),
            "typing": self.plan["typing"],
            "shapes": {k: [int(d) for d in v] for k, v in sorted(shapes.items())},
        }

    def _build(self, shapes: Mapping, timing_cache: Optional[str]) -> Tuple[bytes, float]:
        """Build one serialized engine at ``shapes``. Returns (bytes, seconds). Raises EngineBuildError."""
        trt, opts = self._trt, self._builder_options(shapes)
        config = self._builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts["workspace_mib"] << 20)
        for flag in opts["builder_flags"]:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        if self._dynamic():
            config.add_optimization_profile(self._profile(opts["shapes"]))
        if self.plan["recipe"].startswith("entropy_calibrator"):
            self._calibrate(config, opts["shapes"], timing_cache)
        cache = None
        if timing_cache:
            data = open(timing_cache, "rb").read() if os.path.exists(timing_cache) else b""
            cache = config.create_timing_cache(data)
            config.set_timing_cache(cache, False)
        self._log.lines.clear()
        t0 = time.perf_counter()
        blob = self._builder.build_serialized_network(self._network, config)
        seconds = time.perf_counter() - t0
        if blob is None:
            tail = [x for x in self._log.lines if "rror" in x][-3:]
            raise EngineBuildError(
                "TensorRT could not build an engine: " + ("; ".join(tail) or "see its log")
            )
        if cache is not None:
            write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
        return bytes(blob), seconds

    def _dynamic(self) -> bool:
        """True when a network input has a runtime (-1) dimension."""
        net = self._network
        return any(int(d) < 0 for i in range(net.num_inputs) for d in net.get_input(i).shape)

    def _profile(self, shapes: Mapping):
        """An optimization profile with min = opt = max = ``shapes`` (name -> dims)."""
        profile = self._builder.create_optimization_profile()
        for name, dims in shapes.items():
            profile.set_shape(name, dims, dims, dims)
        return profile

    def _calibrate(self, config, shapes: Mapping, timing_cache: Optional[str]) -> None:
        """Attach the entropy calibrator over ``calibration_data`` cut at the run's batch
        (``shapes``), and on a network with runtime dimensions a calibration profile at the run's
        shapes (``IBuilderConfig.set_calibration_profile``, TensorRT 8.5-10.x: it "must be set if
        int8 calibration is used to set scales for a network with runtime dimensions", calibration
        runs at its OPT dims; include/NvInfer.h release/8.5 line 9050, python/docstrings/infer/
        pyCoreDoc.h release/10.3 line 1399).

        Raises:
            InputSpecError: the samples do not fit the run's shape. EngineBuildError: TensorRT refused
                the calibration profile.
        """
        folder, name, digest = self._calibration
        shape = tuple(int(d) for d in shapes[name])
        batches, _ = calibration_batches(folder, name, shape[0], sample_shape=shape[1:])
        table = f"{timing_cache or self._model_path}.{digest}.{'x'.join(map(str, shape))}.calib"
        config.int8_calibrator = make_calibrator(self._trt, self._cuda, batches, table)
        if self._dynamic() and not config.set_calibration_profile(self._profile(shapes)):
            raise EngineBuildError(f"TensorRT refused the int8 calibration profile {name}={list(shape)} "
                                   "(IBuilderConfig.set_calibration_profile returned False)")

    def _engine(self, shapes: Mapping) -> bytes:
        """The serialized engine for ``shapes``: from the cache when its key is there, else built
        (and cached with a ``.json`` sidecar of the key's inputs and the builder's memory figures)."""
        from runners.util import file_sha256

        cuda = self._cuda
        cc = cuda.compute_capability()
        gpu = cuda.device_name()
        opts = self._builder_options(shapes)
        key = engine_key(
            file_sha256(self._model_path),
            self.plan["precision"],
            self.plan["recipe"],
            self._trt.__version__,
            gpu,
            cc,
            opts,
        )
        folder = self.options.get("engine_cache") or default_cache_dir(self._model_path)
        path = os.path.join(folder, key + ".engine")
        timing = os.path.join(folder, f"timing-{self._trt.__version__}-sm{cc[0]}{cc[1]}.cache")
        info = {
            "key": key,
            "path": path,
            "gpu": gpu,
            "compute_capability": list(cc),
            "precision": self.plan["precision"],
            "recipe": self.plan["recipe"],
            "typing": self.plan["typing"],
            "builder_options": opts,
            "timing_cache": timing,
        }
        if os.path.exists(path) and os.path.exists(path + ".json"):
            with open(path, "rb") as fh:
                blob = fh.read()
            with open(path + ".json", encoding="utf-8") as fh:
                built = json.load(fh)
            info.update(
                cache="hit", build_s=built.get("build_s"), builder_memory=built.get("builder_memory", {})
            )
        else:
            blob, seconds = self._build(shapes, timing)
            info.update(cache="miss", build_s=seconds, builder_memory=builder_memory(self._log.lines))
            write_bytes(path, blob)
            write_bytes(path + ".json", json.dumps(info, indent=2).encode())
        info.update(serialized_bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest())
        self.engine_info = info
        return blob

    # -- running -------------------------------------------------------------------------------

    def _setup(self, blob: bytes, feeds: Mapping[str, np.ndarray]) -> None:
        """Deserialize ``blob``, create the context, bind device buffers and page-locked host
        arrays for every I/O tensor, copy ``feeds`` in; the GPU memory figures around it."""
        trt, cuda = self._trt, self._cuda
        free0, total = cuda.mem_get_info()
        self._runtime = trt.Runtime(self._log)
        self._engine_obj = self._runtime.deserialize_cuda_engine(blob)
        if self._engine_obj is None:
            raise ModelLoadError("TensorRT could not deserialize the engine (built by another version?)")
        self._ctx = self._engine_obj.create_execution_context()
        self._stream = cuda.Stream()
        self._events = [cuda.Event() for _ in range(4)]
        self._host, self._device, self._pinned = {}, {}, []
        eng = self._engine_obj
        names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        self._in_names = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._out_names = [n for n in names if n not in self._in_names]
        self._set_input_shapes(feeds)
        for name in names:
            shape = tuple(int(d) for d in self._ctx.get_tensor_shape(name))
            arr, ptr = cuda.pinned_empty(shape, numpy_dtype(trt, eng.get_tensor_dtype(name), name))
            self._pinned.append(ptr)
            self._host[name] = arr
            self._device[name] = cuda.device_alloc(arr.nbytes)
            self._ctx.set_tensor_address(name, self._device[name])
        self._copy_in(feeds)
        free1, _ = cuda.mem_get_info()
        size_v2 = getattr(eng, "device_memory_size_v2", None)
        self.gpu_memory = {
            "serialized_engine_bytes": len(blob),
            "engine_device_memory_bytes": int(size_v2 if size_v2 is not None else eng.device_memory_size),
            "engine_device_memory_method": "device_memory_size_v2"
            if size_v2 is not None
            else "device_memory_size",
            "io_buffers_bytes": sum(a.nbytes for a in self._host.values()),
            "mem_get_info_delta_bytes": free0 - free1,
            "mem_get_info_total_bytes": total,
            "delta_method": "cudaMemGetInfo (device-wide free memory before deserialize minus after the "
            "context and I/O buffers; other processes on the GPU count too)",
            "unified_memory": cuda.integrated(),
        }

    def _set_input_shapes(self, feeds: Mapping[str, np.ndarray]) -> None:
        """``set_input_shape`` of every input at its feed's shape, its result checked (it returns
        False for a shape the engine cannot take: NvInferRuntime.h ``setInputShape``, release/10.3
        line 3738; the Python binding returns that bool, python/src/infer/pyCore.cpp release/8.5
        line 819, release/10.3 lines 157-160).

        Raises:
            InputSpecError: refused; the message names the tensor, the shape asked and the
                engine's min/opt/max for it.
        """
        for name in self._in_names:
            shape = tuple(int(d) for d in feeds[name].shape)
            if not self._ctx.set_input_shape(name, shape):
                raise InputSpecError(f"TensorRT refused input {name!r} at shape {list(shape)} "
                                     f"(set_input_shape returned False): {self._profile_text(name)}")

    def _profile_text(self, name: str) -> str:
        """The engine's min/opt/max for input ``name`` in the context's optimization profile
        (``get_tensor_profile_shape``), or its engine shape where that cannot be read."""
        eng = self._engine_obj
        index = int(getattr(self._ctx, "active_optimization_profile", 0) or 0)
        try:
            low, opt, high = (list(int(d) for d in s) for s in eng.get_tensor_profile_shape(name, index))
        except (RuntimeError, ValueError, TypeError, IndexError):
            return f"the engine's shape for it is {[int(d) for d in eng.get_tensor_shape(name)]}"
        return f"the engine's profile {index} takes min {low}, opt {opt}, max {high}"

    def _copy_in(self, feeds: Mapping[str, np.ndarray]) -> None:
        for name in self._in_names:
            self._host[name][...] = feeds[name]

    def _teardown(self) -> None:
        cuda = self._cuda
        for ptr in getattr(self, "_device", {}).values():
            cuda.free(ptr)
        for ptr in getattr(self, "_pinned", []):
            cuda.free_host(ptr)
        for ev in getattr(self, "_events", []):
            ev.close()
        if getattr(self, "_stream", None) is not None:
            self._stream.close()
        self._device, self._pinned, self._events, self._stream = {}, [], [], None
        self._host = {}
        self._ctx = self._engine_obj = self._runtime = None

    def _sync(self) -> None:
        if self.options.get("spin_wait"):
            while not self._stream.query():
                pass
        else:
            self._stream.synchronize()

    def infer(self):
        cuda, stream, (e0, e1, e2, e3) = self._cuda, self._stream, self._events
        e0.record(stream)
        for name in self._in_names:
            cuda.memcpy_htod_async(self._device[name], self._host[name], stream)
        e1.record(stream)
        if not self._ctx.execute_async_v3(stream.handle):
            raise InferenceError("execute_async_v3 returned false")
        e2.record(stream)
        for name in self._out_names:
            cuda.memcpy_dtoh_async(self._host[name], self._device[name], stream)
        e3.record(stream)
        self._sync()
        self._lat_compute.append(int(cuda.elapsed_ms(e1, e2) * 1e6))
        self._lat_transfers.append(int(cuda.elapsed_ms(e0, e3) * 1e6))

    def reset_levels(self) -> None:
        """Forget the event timings so far (the runner calls this just before its timed loop)."""
        self._lat_compute, self._lat_transfers = array("q"), array("q")

    def level_latencies_ns(self) -> Dict[str, array]:
        """ns per ``infer()`` call since :meth:`reset_levels`, by level (CUDA events)."""
        return {"device_compute": self._lat_compute, "device_with_transfers": self._lat_transfers}

    def prepare(self, feeds):
        shapes = {k: tuple(v.shape) for k, v in feeds.items()}
        rebuild = int(self.options.get("rebuild") or 0)
        if rebuild > 0:
            blob = self._rebuild(rebuild, shapes, feeds)
        else:
            blob = self._engine(shapes)
        self._shapes = shapes
        self._setup(blob, feeds)
        self.infer()

    def _rebuild(self, n: int, shapes: Mapping, feeds: Mapping) -> bytes:
        """Build ``n`` fresh engines (no cache, no timing cache), measure each one's device_compute
        (REBUILD_WARMUP + REBUILD_ITERATIONS calls) and keep the first for the run (``self.builds``)."""
        from runners import stats

        per_build, first = [], None
        for index in range(n):
            blob, seconds = self._build(shapes, None)
            mem = builder_memory(self._log.lines)
            self._setup(blob, feeds)
            for _ in range(REBUILD_WARMUP):
                self.infer()
            self.reset_levels()
            for _ in range(REBUILD_ITERATIONS):
                self.infer()
            summary = stats.summarize(self._lat_compute)
            self._teardown()
            per_build.append(
                {
                    "index": index,
                    "build_s": seconds,
                    "serialized_bytes": len(blob),
                    "sha256": hashlib.sha256(blob).hexdigest(),
                    "builder_memory": mem,
                    **{k: summary[k] for k in ("latency_ms_p50", "latency_ms_p99", "latency_ms_mean")},
                }
            )
            first = blob if first is None else first
        self.builds = dict(
            rebuild_spread(per_build),
            per_build=per_build,
            level="device_compute",
            warmup_each=REBUILD_WARMUP,
            iterations_each=REBUILD_ITERATIONS,
            measured_engine_index=0,
            timing_cache="off",
            method="each engine built afresh, measured with CUDA events on its own context; "
            "the run's timed loop then measures engine 0",
        )
        self.engine_info = {
            "cache": "bypassed (rebuild)",
            "precision": self.plan["precision"],
            "recipe": self.plan["recipe"],
            "typing": self.plan["typing"],
            "builder_options": self._builder_options(shapes),
            "build_s": per_build[0]["build_s"],
            "serialized_bytes": len(first),
            "sha256": per_build[0]["sha256"],
            "builder_memory": per_build[0]["builder_memory"],
        }
        return first

    def evaluate(self, feeds):
        """Outputs for ``feeds`` (untimed; builds or reuses the engine for their shapes)."""
        shapes = {k: tuple(np.asarray(v).shape) for k, v in feeds.items()}
        if self._ctx is None or shapes != getattr(self, "_shapes", None):
            if self._ctx is not None:
                self._teardown()
            self._shapes = shapes
            self._setup(self._engine(shapes), feeds)
        else:
            self._copy_in(feeds)
        self.infer()
        return {name: self._host[name].copy() for name in self._out_names}

    def runtime_info(self):
        info = {
            "name": "tensorrt",
            "version": self._trt.__version__,
            "provider": "TensorRT",
            "threads": 1,
            "features": dict(self.features),
            "engine": dict(self.engine_info),
            "gpu": {
                "name": self._cuda.device_name(),
                "compute_capability": list(self._cuda.compute_capability()),
            },
            "gpu_memory": dict(self.gpu_memory),
            "sync": {
                "cuda_graph": False,
                "spin_wait": bool(self.options.get("spin_wait")),
                "method": "cudaStreamQuery spin"
                if self.options.get("spin_wait")
                else "cudaStreamSynchronize",
                "device_schedule_flags": "default (cudaDeviceScheduleAuto)",
            },
            "timing": {
                "host_call": "perf_counter_ns around infer()",
                "device_compute": "cudaEventElapsedTime, events around execute_async_v3",
                "device_with_transfers": "cudaEventElapsedTime, events around H2D + execute + D2H",
                "event_readout": "inside infer() after the synchronize (2 calls, counted in host_call)",
                "host_buffers": "page-locked (cudaMallocHost)",
            },
        }
        if self.builds is not None:
            info["engine_builds"] = self.builds
        return info

    def close(self):
        if getattr(self, "_ctx", None) is not None or getattr(self, "_stream", None) is not None:
            self._teardown()

    def extra_results(self, done) -> dict:
        """After a session (outside every timed region): with the ``trtexec`` option, the result's
        ``trtexec`` block from :func:`.trtexec.run` on this session's cached engine, once
        per result (``done``: the keys it has); ``{"error": ...}`` when trtexec fails."""
        engine = (getattr(self, "engine_info", None) or {}).get("path")
        if not self.options.get("trtexec") or "trtexec" in done or not engine:
            return {}
        from runners.backends.tensorrt import trtexec

        shapes = {k: list(v) for k, v in (getattr(self, "_shapes", None) or {}).items()}
        try:
            block = trtexec.run(engine, os.path.dirname(engine), trtexec.TrtexecOptions(
                spin_wait=bool(self.options.get("spin_wait"))), shapes=shapes or None)
        except RunnerError as exc:
            block = {"error": f"{type(exc).__name__}: {exc}"}
        return {"trtexec": block}
