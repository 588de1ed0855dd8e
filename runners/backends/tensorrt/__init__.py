"""TensorRT: one runtime, one folder (Python 3.8).

``DESCRIPTOR`` here; the backend in :mod:`.backend`;
version tables in :mod:`.versions`; the engine cache in :mod:`.engine_cache`; the int8 entropy
calibrator in :mod:`.calibrator`; trtexec mode and its layer-profile parser in :mod:`.trtexec`. The CUDA
runtime wrapper is :mod:`runners.cuda_rt`, shared with ONNX Runtime's GPU providers. Importing this
package imports neither ``tensorrt`` nor cuda-python.
"""

from __future__ import annotations

from runners.backends.base import BackendDescriptor, BackendOption
from runners.backends.tensorrt.backend import TensorRTBackend
from runners.backends.tensorrt.calibrator import calibration_batches, calibration_digest, make_calibrator
from runners.backends.tensorrt.engine_cache import (
    builder_memory,
    default_cache_dir,
    engine_key,
    rebuild_spread,
)
from runners.backends.tensorrt.trtexec import PROFILER
from runners.backends.tensorrt.versions import PRECISIONS, features, parse_version, precision_plan

__all__ = ["DESCRIPTOR", "TensorRTBackend", "builder_memory", "calibration_batches", "calibration_digest",
           "default_cache_dir",
           "engine_key", "features", "make_calibrator", "parse_version", "precision_plan", "rebuild_spread"]

DESCRIPTOR = BackendDescriptor(
    name="tensorrt",
    layer_profiler=PROFILER,
    profile_options=(("trtexec", True),),  # its layers come from trtexec --exportProfile
    summary="NVIDIA TensorRT (engine built from the ONNX model, execute_async_v3)",
    backend=TensorRTBackend,
    options=(
        BackendOption(
            "precision",
            str,
            "auto",
            "engine precision; auto: the model's own (QDQ: int8, fp16 "
            "tensors: fp16); fp16 from an fp32 ONNX: builder flag, 8.5-10.x only; int8: a QDQ ONNX",
            choices=("auto",) + PRECISIONS,
            slug="p",
        ),
        BackendOption("workspace_mib", int, 1024, "builder workspace limit in MiB", slug="ws"),
        BackendOption(
            "engine_cache",
            str,
            "",
            "engine cache folder (default: engines/ beside the model's folder)",
            slug="ec",
        ),
        BackendOption(
            "rebuild",
            int,
            0,
            "build N fresh engines, report the spread of their device_compute latencies, measure the first",
            slug="rb",
        ),
        BackendOption(
            "spin_wait", bool, False, "spin on cudaStreamQuery instead of cudaStreamSynchronize", slug="spin"
        ),
        BackendOption(
            "calibration_data", str, "", "int8 without Q/DQ layers on TensorRT 8.5-10.x: a folder of .npy "
            "calibration samples for the entropy calibrator (its digest is in the engine's recipe)",
            slug="cal",
        ),
        BackendOption(
            "trtexec", bool, False, "also run trtexec on the same engine, every default pinned on its "
            "command line; its --exportTimes levels and --exportProfile layers go in the result's trtexec",
            slug="trtexec",
        ),
    ),
    latency_levels=("host_call", "device_with_transfers", "device_compute"),
    precisions=PRECISIONS,
    families=("jetson", "x86_a100"),
    runtime_modules=("tensorrt", "cuda"),
    tested_here="TensorRT 8.5 / 10.x / 11.x version table, precision refusals, engine cache key and "
    "`infer()` timing order against a fake CUDA runtime; trtexec parsers on recorded exports "
    "(tests/test_tensorrt.py); trtexec switches by version, calibration profile, shape and dtype "
    "refusals against a stand-in `tensorrt` and trtexec written from NVIDIA's sources "
    "(tests/test_tensorrt_vendor.py); its `-m gpu --gpu` tests have not run",
)
