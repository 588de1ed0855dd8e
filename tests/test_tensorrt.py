"""TensorRT backend, CUDA wrapper and trtexec mode.

Here (no GPU, no TensorRT): version parsing and the feature table, the precision plan and the
TensorRT-11 refusal, the engine cache key, builder-log memory figures, the rebuild spread, the
latency taxonomy of ``infer()`` against a fake CUDA runtime, cuda_rt's error checking against a fake
cuda-python, the descriptor, the runner refusing cleanly without TensorRT, trtexec command building
and its JSON parsers on recorded real exports (tests/fixtures/trtexec/README.md).

On a machine with an NVIDIA GPU, TensorRT and cuda-python (``-m gpu --gpu``): engines built from
tests/fixtures/models/tiny_cnn.onnx (fp32, and its fp16 and QDQ int8 variants) and dynamic_batch.onnx
(batch 4), run for real by the runner in two processes (the second a cache hit), with
0 < device_compute <= device_with_transfers <= host_call; entropy calibration at batch 4 (8.5-10.x);
a refused input shape; and trtexec on a cached engine. Each version's trtexec flags, the
calibration profile, set_input_shape's result and bf16/fp8 I/O are checked without a GPU against
stand-ins written from NVIDIA's sources in tests/test_tensorrt_vendor.py.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
from enum import IntEnum
from pathlib import Path

import numpy as np
import pytest

from runners import cuda_rt
from runners.backends import descriptors, get_backend
from runners.backends import tensorrt as trt_backend
from runners.backends.tensorrt import (
    builder_memory,
    engine_key,
    features,
    parse_version,
    precision_plan,
    rebuild_spread,
    trtexec,
)
from runners.errors import BackendUnavailableError, CudaError, UnsupportedFeatureError

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "trtexec"
MODEL = ROOT / "tests" / "fixtures" / "models" / "tiny_cnn.onnx"
FAST = ["--warmup-iters", "5", "--warmup-s", "0", "--min-iters", "50", "--min-s", "0.2"]


# ----------------------------------------------------------------------------------------------
# versions, features, precision
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8.5.2.2", (8, 5, 2)),  # JetPack 5.1
        ("8.5.3", (8, 5, 3)),
        ("10.3.0", (10, 3, 0)),  # JetPack 6.1 / the 24.08 container
        ("10.0.0b6", (10, 0, 0)),
        ("11.0.0.7", (11, 0, 0)),
        ("11.2", (11, 2, 0)),
    ],
)
def test_parse_version(text, expected):
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["", "ten", "v10.3", None])
def test_parse_version_refuses_non_versions(text):
    with pytest.raises(ValueError, match="not a TensorRT version"):
        parse_version(text)


def test_feature_table_per_major():
    jp5, jp6, pypi = features((8, 5, 2)), features((10, 3, 0)), features((11, 0, 0))
    assert jp5 == {
        "precision_flags": True,
        "strongly_typed": False,
        "explicit_batch_flag": True,
        "entropy_calibrator": True,
        "device_memory_size_v2": False,
    }
    assert jp6 == {
        "precision_flags": True,
        "strongly_typed": False,
        "explicit_batch_flag": False,
        "entropy_calibrator": True,
        "device_memory_size_v2": True,
    }
    assert pypi == {
        "precision_flags": False,
        "strongly_typed": True,
        "explicit_batch_flag": False,
        "entropy_calibrator": False,
        "device_memory_size_v2": True,
    }
    assert features((10, 0, 1))["device_memory_size_v2"] is False  # the v2 query came with 10.1


@pytest.mark.parametrize("version", [(8, 4, 3), (8, 2, 1), (7, 1, 3)])
def test_versions_before_8_5_are_refused(version):
    with pytest.raises(UnsupportedFeatureError, match="needs 8.5 or newer"):
        features(version)


def test_precision_plan_on_8_5_and_10_uses_builder_flags():
    for version in ((8, 5, 2), (10, 3, 0)):
        assert precision_plan(version, "fp32", has_fp16=False, has_qdq=False)["builder_flags"] == []
        fp16 = precision_plan(version, "fp16", has_fp16=False, has_qdq=False)
        assert fp16 == {
            "precision": "fp16",
            "builder_flags": ["FP16"],
            "typing": "weak",
            "recipe": "builder_flag_fp16",
        }
        int8 = precision_plan(version, "int8", has_fp16=False, has_qdq=True)
        assert int8["builder_flags"] == ["INT8", "FP16"] and int8["recipe"] == "qdq_onnx+int8_flag"


def test_precision_auto_takes_the_models_own():
    v = (10, 3, 0)
    assert precision_plan(v, "auto", has_fp16=False, has_qdq=False)["precision"] == "fp32"
    assert precision_plan(v, "auto", has_fp16=True, has_qdq=False)["precision"] == "fp16"
    assert precision_plan(v, "auto", has_fp16=True, has_qdq=True)["precision"] == "int8"
    strong = precision_plan((11, 0, 0), "auto", has_fp16=True, has_qdq=False)
    assert strong == {"precision": "fp16", "builder_flags": [], "typing": "strong", "recipe": "fp16_onnx"}


def test_tensorrt_11_refuses_precision_it_cannot_make():
    with pytest.raises(UnsupportedFeatureError) as fp16:
        precision_plan((11, 0, 0), "fp16", has_fp16=False, has_qdq=False)
    text = str(fp16.value)
    assert "TensorRT 11.0.0 has no FP16/INT8 builder flags" in text and "strongly typed" in text
    assert "needs an fp16 ONNX model" in text and "host zoo convert" in text
    with pytest.raises(UnsupportedFeatureError, match="needs a QDQ ONNX model.*host zoo quantize"):
        precision_plan((11, 1, 0), "int8", has_fp16=False, has_qdq=False)
    # what it can do: the model's own types
    assert precision_plan((11, 0, 0), "int8", has_fp16=False, has_qdq=True)["recipe"] == "qdq_onnx"
    assert precision_plan((11, 0, 0), "fp32", has_fp16=False, has_qdq=False)["typing"] == "strong"


def test_int8_without_qdq_needs_calibration_data_and_is_refused_on_11():
    for version in ((8, 5, 2), (10, 3, 0)):
        with pytest.raises(UnsupportedFeatureError, match="needs a QDQ ONNX model.*calibration_data"):
            precision_plan(version, "int8", has_fp16=False, has_qdq=False)
        plan = precision_plan(version, "int8", has_fp16=False, has_qdq=False, calibration="abc123")
        assert plan["recipe"] == "entropy_calibrator:abc123" and plan["builder_flags"] == ["INT8", "FP16"]
    with pytest.raises(UnsupportedFeatureError, match="strongly typed"):
        precision_plan((11, 0, 0), "int8", has_fp16=False, has_qdq=False, calibration="abc123")
    with pytest.raises(ValueError, match="auto or one of"):
        precision_plan((10, 3, 0), "bf16", has_fp16=False, has_qdq=False)


# ----------------------------------------------------------------------------------------------
# engine cache key
# ----------------------------------------------------------------------------------------------

BASE = dict(
    model_sha256="a" * 64,
    precision="fp16",
    recipe="builder_flag_fp16",
    trt_version="10.3.0",
    gpu_name="Orin",
    compute_capability=(8, 7),
    builder_options={
        "workspace_mib": 1024,
        "builder_flags": ["FP16"],
        "typing": "weak",
        "shapes": {"input": [1, 3, 32, 32]},
    },
)


def test_engine_key_is_stable_and_a_sha256():
    key = engine_key(**BASE)
    assert len(key) == 64 and int(key, 16) >= 0
    assert engine_key(**BASE) == key
    reordered = dict(BASE, builder_options=dict(reversed(list(BASE["builder_options"].items()))))
    assert engine_key(**reordered) == key  # option order is not part of the key


@pytest.mark.parametrize(
    "field, value",
    [
        ("model_sha256", "b" * 64),
        ("precision", "int8"),
        ("recipe", "fp16_onnx"),
        ("trt_version", "10.3.1"),
        ("gpu_name", "NVIDIA A100-SXM4-40GB"),
        ("compute_capability", (8, 6)),
        ("builder_options", dict(BASE["builder_options"], workspace_mib=2048)),
        ("builder_options", dict(BASE["builder_options"], shapes={"input": [8, 3, 32, 32]})),
        ("builder_options", dict(BASE["builder_options"], typing="strong")),
    ],
)
def test_engine_key_changes_with_each_component(field, value):
    assert engine_key(**dict(BASE, **{field: value})) != engine_key(**BASE)


def test_default_cache_dir_is_the_work_folders_engines():
    assert trt_backend.default_cache_dir("/work/eg/models/abc.onnx") == "/work/eg/engines"


# ----------------------------------------------------------------------------------------------
# builder log, rebuild spread
# ----------------------------------------------------------------------------------------------


def test_builder_memory_reads_8x_and_10x_log_lines():
    # line formats as TensorRT prints them at INFO level: 8.x without a unit, 10.x with "bytes"
    v8 = [
        "[03/02/2023-11:38:41] [TRT] [I] Total Host Persistent Memory: 265712",
        "[03/02/2023-11:38:41] [TRT] [I] Total Device Persistent Memory: 274944",
        "[03/02/2023-11:38:41] [TRT] [I] Total Scratch Memory: 0",
        "[03/02/2023-11:38:41] [TRT] [I] [MemUsageStats] Peak memory usage of TRT CPU/GPU memory allocators",
    ]
    assert builder_memory(v8) == {
        "host_persistent_bytes": 265712,
        "device_persistent_bytes": 274944,
        "scratch_bytes": 0,
    }
    v10 = [
        "[I] [TRT] Total Host Persistent Memory: 80 bytes",
        "[I] [TRT] Total Device Persistent Memory: 0 bytes",
        "[I] [TRT] Max Scratch Memory: 8392704 bytes",
        "[I] [TRT] Total Activation Memory: 8392704 bytes",
        "[I] [TRT] Total Weights Memory: 1180928 bytes",
    ]
    assert builder_memory(v10) == {
        "host_persistent_bytes": 80,
        "device_persistent_bytes": 0,
        "scratch_bytes": 8392704,
        "activation_bytes": 8392704,
        "weights_bytes": 1180928,
    }
    assert builder_memory(["[I] [TRT] Detected 1 inputs and 1 output network tensors."]) == {}


def test_rebuild_spread():
    builds = [
        {"latency_ms_p50": 1.0, "sha256": "x"},
        {"latency_ms_p50": 2.0, "sha256": "y"},
        {"latency_ms_p50": 1.0, "sha256": "x"},
    ]
    spread = rebuild_spread(builds)
    ln2 = math.log(2.0)
    # logs 0, ln2, 0: mean ln2/3, sample variance ((ln2/3)^2*2 + (2ln2/3)^2) / 2 = ln2^2/3
    assert spread["builds"] == 3 and spread["distinct_engines"] == 2
    assert spread["latency_ms_p50_min"] == 1.0 and spread["latency_ms_p50_max"] == 2.0
    assert spread["max_over_min"] == 2.0
    assert spread["sd_log"] == pytest.approx(ln2 / math.sqrt(3.0))
    assert rebuild_spread(builds[:1])["sd_log"] is None
    with pytest.raises(ValueError):
        rebuild_spread([])


# ----------------------------------------------------------------------------------------------
# the latency taxonomy of infer(), against a fake CUDA runtime
# ----------------------------------------------------------------------------------------------


class FakeCuda:
    """Stands in for runners.cuda_rt: records every call in order; event k is recorded at t = k ms
    apart from the execute, which takes 0.25 ms, and copies take 0.05 ms."""

    def __init__(self):
        self.calls, self.now = [], 0.0
        cuda = self

        class Event:
            def record(self, stream):
                cuda.calls.append(("record", self))
                self.t = cuda.now

        class Stream:
            handle = 1234

            def synchronize(self):
                cuda.calls.append(("sync",))

        self.Event, self.Stream = Event, Stream

    def memcpy_htod_async(self, ptr, arr, stream):
        self.calls.append(("htod", ptr))
        self.now += 0.05

    def memcpy_dtoh_async(self, arr, ptr, stream):
        self.calls.append(("dtoh", ptr))
        self.now += 0.05

    def elapsed_ms(self, start, end):
        return end.t - start.t


class FakeContext:
    def __init__(self, cuda):
        self.cuda = cuda

    def execute_async_v3(self, handle):
        self.cuda.calls.append(("execute", handle))
        self.cuda.now += 0.25
        return True


def _bare_backend(cuda):
    b = trt_backend.TensorRTBackend({"spin_wait": False})
    b._cuda, b._stream, b._ctx = cuda, cuda.Stream(), FakeContext(cuda)
    b._events = [cuda.Event() for _ in range(4)]
    b._in_names, b._out_names = ["x"], ["y"]
    b._device, b._host = {"x": 10, "y": 20}, {"x": np.zeros(1), "y": np.zeros(1)}
    b.reset_levels()
    return b


def test_infer_times_each_level_around_the_right_calls():
    cuda = FakeCuda()
    b = _bare_backend(cuda)
    b.infer()
    e0, e1, e2, e3 = b._events
    assert cuda.calls == [
        ("record", e0),
        ("htod", 10),
        ("record", e1),
        ("execute", 1234),
        ("record", e2),
        ("dtoh", 20),
        ("record", e3),
        ("sync",),
    ]
    levels = b.level_latencies_ns()
    assert set(levels) == {"device_compute", "device_with_transfers"}
    # ns: compute = the execute alone (0.25 ms); with transfers = H2D + execute + D2H (0.35 ms)
    assert list(levels["device_compute"]) == [250000]
    assert list(levels["device_with_transfers"]) == [350000]
    b.infer()
    assert len(b.level_latencies_ns()["device_compute"]) == 2
    b.reset_levels()
    assert all(len(v) == 0 for v in b.level_latencies_ns().values())


def test_a_failed_execute_is_an_inference_error():
    from runners.errors import InferenceError

    cuda = FakeCuda()
    b = _bare_backend(cuda)
    b._ctx.execute_async_v3 = lambda handle: False
    with pytest.raises(InferenceError, match="execute_async_v3 returned false"):
        b.infer()


# ----------------------------------------------------------------------------------------------
# cuda_rt against a fake cuda-python
# ----------------------------------------------------------------------------------------------


class _Err(IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorNotReady = 600


class FakeRuntime:
    cudaError_t = _Err

    @staticmethod
    def cudaGetErrorName(err):
        return _Err.cudaSuccess, _Err(err).name.encode()

    @staticmethod
    def cudaGetErrorString(err):
        return _Err.cudaSuccess, b"out of memory" if err == 2 else b"?"

    @staticmethod
    def cudaMalloc(n):
        return (_Err.cudaErrorMemoryAllocation, 0) if n > 1 << 40 else (_Err.cudaSuccess, 4096)

    @staticmethod
    def cudaMemGetInfo():
        return _Err.cudaSuccess, 100, 200

    @staticmethod
    def cudaGetDeviceCount():
        return _Err.cudaSuccess, 0


@pytest.fixture
def fake_rt(monkeypatch):
    monkeypatch.setattr(cuda_rt, "_RT", FakeRuntime)
    return FakeRuntime


def test_cuda_rt_checks_every_return_and_names_the_error(fake_rt):
    assert cuda_rt.device_alloc(10) == 4096
    assert cuda_rt.mem_get_info() == (100, 200)
    with pytest.raises(CudaError, match=r"cudaMalloc: cudaErrorMemoryAllocation \(out of memory\)"):
        cuda_rt.device_alloc(1 << 41)
    assert not cuda_rt.available()  # no device counted


def test_tensorrt_without_a_cuda_device_says_why_in_cudas_words(fake_rt, monkeypatch):
    """Issue 23, item 4: the backend carries cuda_rt's reason (here cudaGetDeviceCount counted 0),
    not a bare "no CUDA device visible"."""
    import types

    from runners.backends.tensorrt.backend import TensorRTBackend
    from runners.errors import BackendUnavailableError

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    why = r"no CUDA device for tensorrt: cudaGetDeviceCount: 0 CUDA devices"
    with pytest.raises(BackendUnavailableError, match=why):
        TensorRTBackend().load("model.onnx")


def test_cuda_rt_without_cuda_python_is_unavailable_not_an_exception(monkeypatch):
    monkeypatch.setattr(cuda_rt, "_RT", None)
    import importlib.util

    if importlib.util.find_spec("cuda") is not None:
        pytest.skip("cuda-python is installed here")
    assert cuda_rt.available() is False
    with pytest.raises(CudaError, match="cuda-python is not importable"):
        cuda_rt.mem_get_info()


# ----------------------------------------------------------------------------------------------
# descriptor, and the runner without TensorRT
# ----------------------------------------------------------------------------------------------


def test_descriptor():
    d = descriptors()["tensorrt"]
    assert d.implemented and d.backend is trt_backend.TensorRTBackend
    assert d.latency_levels == ("host_call", "device_with_transfers", "device_compute")
    assert d.runtime_modules == ("tensorrt", "cuda") and set(d.families) == {"jetson", "x86_a100"}
    assert [(o.name, o.default) for o in d.options] == [
        ("precision", "auto"),
        ("workspace_mib", 1024),
        ("engine_cache", ""),
        ("rebuild", 0),
        ("spin_wait", False),
        ("calibration_data", ""),
        ("trtexec", False),
    ]
    assert d.option("precision").choices == ("auto", "fp32", "fp16", "int8")
    assert d.resolve({"rebuild": "5"})["rebuild"] == 5


def test_load_without_tensorrt_is_a_clean_refusal():
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    with pytest.raises(BackendUnavailableError, match="tensorrt is not importable"):
        get_backend("tensorrt", {}).load(str(MODEL))


def test_runner_without_tensorrt_writes_a_failed_result(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    out = tmp_path / "r.json"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "runners",
            "run",
            str(MODEL),
            "--backend",
            "tensorrt",
            "--out",
            str(out),
            *FAST,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert p.returncode == 4, p.stderr
    doc = json.loads(out.read_text())
    assert doc["status"] == "failed" and doc["error"]["type"] == "BackendUnavailableError"
    assert doc["configuration"]["options"]["precision"] == "auto"


def test_host_bench_accepts_tensorrt_and_reports_the_missing_runtime(tmp_path):
    import importlib.util

    from typer.testing import CliRunner

    from host.cli import app

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    model = ROOT / "tests" / "fixtures" / "models" / "identity.onnx"
    res = tmp_path / "r"
    result = CliRunner().invoke(
        app,
        ["bench", str(model), "--backend", "tensorrt", "--results", str(res), "--campaign", "c"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 1, result.output
    assert "not implemented" not in result.output and "unknown backend" not in result.output
    assert "tensorrt is not importable" in result.output
    cell = json.loads(next((res / "c" / "local").glob("identity__*.json")).read_text())
    assert cell["status"] == "failed" and cell["error"]["type"] == "BackendUnavailableError"


# ----------------------------------------------------------------------------------------------
# trtexec: the command, and recorded exports
# ----------------------------------------------------------------------------------------------


def test_trtexec_command_pins_every_default():
    argv = trtexec.command("m.engine", "t.json", "p.json", version=(10, 3, 0))
    assert argv[:2] == ["trtexec", "--loadEngine=m.engine"]
    # trtexec 10.x's documented defaults, each written out (each version's switches:
    # tests/test_tensorrt_vendor.py against a stand-in written from NVIDIA's sources)
    for flag in (
        "--warmUp=200",
        "--duration=3",
        "--iterations=10",
        "--avgRuns=10",
        "--infStreams=1",
        "--sleepTime=0",
        "--idleTime=0",
        "--exportTimes=t.json",
        "--dumpProfile",
        "--exportProfile=p.json",
        "--separateProfileRun",
    ):
        assert flag in argv, flag
    for absent in ("--noDataTransfers", "--useCudaGraph", "--useSpinWait", "--streams=1"):
        assert absent not in argv
    choices = trtexec.pinned_choices(trtexec.TrtexecOptions(), (10, 3, 0))
    assert choices["data_transfers"] is True and choices["cuda_graph"] is False
    assert choices["spin_wait"] is False and choices["sync"] == "blocking" and choices["version"] == "10.3.0"
    no_profile = trtexec.pinned_choices(trtexec.TrtexecOptions(), (10, 3, 0), profile=False)
    assert no_profile["separate_profile_run"] is False


def test_trtexec_command_with_every_switch():
    opts = trtexec.TrtexecOptions(
        warmup_ms=5000,
        duration_s=0.5,
        iterations=100,
        data_transfers=False,
        cuda_graph=True,
        spin_wait=True,
        separate_profile_run=False,
    )
    argv = trtexec.command("e", "t", None, opts, shapes={"input": (8, 3, 224, 224)}, trtexec="/x/trtexec",
                           version=(8, 5, 2))
    assert argv[0] == "/x/trtexec"
    for flag in (
        "--warmUp=5000",
        "--duration=0.5",
        "--iterations=100",
        "--noDataTransfers",
        "--useCudaGraph",
        "--useSpinWait",
        "--shapes=input:8x3x224x224",
    ):
        assert flag in argv, flag
    assert not any(a.startswith("--exportProfile") or a == "--separateProfileRun" for a in argv)
    assert trtexec.pinned_choices(opts, (8, 5, 2))["sync"] == "spin-wait"
    with pytest.raises(ValueError):
        trtexec.command("e", "t", options=trtexec.TrtexecOptions(iterations=0), version=(8, 5, 2))


def _recorded_times():
    with gzip.open(FIX / "alexnet_fp16.times.json.gz", "rt", encoding="utf-8") as fh:
        text = fh.read()
    return text, json.loads(text)


def test_parse_recorded_export_times():
    text, doc = _recorded_times()
    times = trtexec.parse_times(doc)
    assert set(times) == {"device_compute", "device_with_transfers", "h2d", "d2h", "enqueue"}
    n = text.count('"latencyMs"')  # one per inference in the raw file
    assert n == 6039 and all(len(v) == n for v in times.values())
    # the first record, as written in the file:
    # "startEnqMs" : 4999.96, "endEnqMs" : 4999.96, ... "computeMs" : 0.497559, "latencyMs" : 0.497559
    assert times["device_compute"][0] == 0.497559 and times["device_with_transfers"][0] == 0.497559
    assert times["enqueue"][0] == 0.0
    # recorded with --noDataTransfers: no copies, so latency == compute in every record
    assert set(times["h2d"]) == {0.0} and set(times["d2h"]) == {0.0}
    assert times["device_with_transfers"] == times["device_compute"]


def test_summarize_recorded_export_times():
    _, doc = _recorded_times()
    levels = trtexec.summarize_times(trtexec.parse_times(doc))
    compute = levels["device_compute"]
    raw = np.array([r["computeMs"] for r in doc])  # independent: numpy over the raw records
    assert compute["iterations"] == 6039
    assert compute["latency_ms_p50"] == pytest.approx(float(np.median(raw)), abs=1e-6)
    assert compute["latency_ms_min"] == pytest.approx(float(raw.min()), abs=1e-6)
    assert compute["latency_ms_max"] == pytest.approx(float(raw.max()), abs=1e-6)
    assert compute["level"] == "device_compute" and compute["source"] == "trtexec --exportTimes"
    assert "throughput_cps" not in compute


def test_parse_times_reads_tensorrt_7_field_names():
    # written from the field list of NVIDIA's samples/trtexec/tracer.py (TensorRT 7), not recorded
    doc = [
        {
            "startInMs": 10.0,
            "endInMs": 10.1,
            "startComputeMs": 10.1,
            "endComputeMs": 10.6,
            "startOutMs": 10.6,
            "endOutMs": 10.65,
            "inMs": 0.1,
            "computeMs": 0.5,
            "outMs": 0.05,
            "latencyMs": 0.65,
            "endToEndMs": 0.7,
        }
    ]
    times = trtexec.parse_times(doc)
    assert times == {"device_compute": [0.5], "device_with_transfers": [0.65], "h2d": [0.1], "d2h": [0.05]}
    with pytest.raises(ValueError, match="no inference records"):
        trtexec.parse_times([{"count": 3}])
    with pytest.raises(ValueError):
        trtexec.parse_times({"latencyMs": 1})


@pytest.mark.parametrize(
    "name, count, layers, first",
    [
        (
            "alexnet_fp16.profile.json",
            14590,
            14,
            "Reformatting CopyNode for Input Tensor 0 to "
            "/features/features.0/Conv + /features/features.1/Relu",
        ),
        (
            "resnet18_fp16.profile.json",
            21071,
            26,
            "Reformatting CopyNode for Input Tensor 0 to /conv1/Conv + /relu/Relu",
        ),
    ],
)
def test_parse_recorded_export_profile(name, count, layers, first):
    text = (FIX / name).read_text()
    prof = trtexec.parse_profile(json.loads(text))
    assert prof["count"] == count and len(prof["layers"]) == layers == text.count('"name"')
    assert prof["layers"][0]["name"] == first
    assert sum(x["percentage"] for x in prof["layers"]) == pytest.approx(100.0, abs=0.01)
    assert all(x["median_ms"] is not None and x["average_ms"] >= 0 for x in prof["layers"])
    assert sum(x["average_ms"] for x in prof["layers"]) == pytest.approx(prof["total_average_ms"])


def test_alexnet_profile_values_as_recorded():
    prof = trtexec.parse_profile(json.loads((FIX / "alexnet_fp16.profile.json").read_text()))
    gemm = next(x for x in prof["layers"] if x["name"] == "/classifier/classifier_1/Gemm_myl9_2")
    # from the file: "timeMs" : 3495.36, "averageMs" : 0.239573, "medianMs" : 0.239616, "percentage" : 45.705
    assert gemm == {
        "name": "/classifier/classifier_1/Gemm_myl9_2",
        "time_ms": 3495.36,
        "average_ms": 0.239573,
        "median_ms": 0.239616,
        "percentage": 45.705,
    }


def test_trtexec_not_found_is_backend_unavailable(tmp_path, monkeypatch):
    monkeypatch.setattr(trtexec, "KNOWN_PATHS", (str(tmp_path / "none"),))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendUnavailableError, match="trtexec not found"):
        trtexec.find()


# ----------------------------------------------------------------------------------------------
# on a real GPU (opt-in: -m gpu --gpu); needs tensorrt and cuda-python
# ----------------------------------------------------------------------------------------------


def _run_runner(tmp_path, name, *extra, model=MODEL):
    out = tmp_path / f"{name}.json"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "runners",
            "run",
            str(model),
            "--backend",
            "tensorrt",
            "--engine-cache",
            str(tmp_path / "engines"),
            "--out",
            str(out),
            *FAST,
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert out.exists(), p.stderr
    return p, json.loads(out.read_text())


def _needs_tensorrt():
    pytest.importorskip("tensorrt")
    pytest.importorskip("cuda")  # cuda-python (runners.cuda_rt)


def _gpu_model(kind: str, tmp_path: Path):
    """(model path, runner arguments, expected engine precision) of a gpu-test case: tiny_cnn as
    fp32, its fp16 and QDQ int8 variants (host.models.precision: every TensorRT version builds them,
    11 included), and dynamic_batch.onnx run at batch 4."""
    if kind in ("fp16", "int8"):
        pytest.importorskip("onnxruntime")  # the host's quantizer makes the QDQ variant
        from host.models.precision import Recipe, variant

        path, _ = variant(MODEL, Recipe(kind), tmp_path / "variants")
        return path, [], kind
    if kind == "dynamic":
        return ROOT / "tests" / "fixtures" / "models" / "dynamic_batch.onnx", ["--batch", "4"], "fp32"
    return MODEL, [], "fp32"


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["fp32", "fp16", "int8", "dynamic"])
def test_gpu_engine_built_cached_and_run(tmp_path, kind):
    _needs_tensorrt()
    model, extra, precision = _gpu_model(kind, tmp_path)
    p, doc = _run_runner(tmp_path, "first", *extra, model=model)
    assert doc["status"] in ("ok", "invalid"), doc.get("error")
    rt = doc["runtime"]
    assert rt["name"] == "tensorrt" and rt["engine"]["cache"] == "miss"
    assert rt["engine"]["serialized_bytes"] > 0 and rt["engine"]["precision"] == precision, rt["engine"]
    if kind == "dynamic":  # the engine's one optimization profile is the run's shape
        assert rt["engine"]["builder_options"]["shapes"] == {"input": [4, 3, 32, 32]}
    assert rt["gpu_memory"]["engine_device_memory_method"] in ("device_memory_size_v2", "device_memory_size")
    assert doc["latency"]["level"] == "host_call"
    levels = doc["latency_levels"]
    c, t, h = (levels[k]["latency_ms_p50"] for k in ("device_compute", "device_with_transfers", "host_call"))
    assert 0 < c <= t <= h, (c, t, h)
    assert levels["device_compute"]["iterations"] == doc["latency"]["iterations"]
    # a second process finds the engine in the cache under the same key
    _, again = _run_runner(tmp_path, "second", *extra, model=model)
    assert again["status"] in ("ok", "invalid"), again.get("error")
    assert again["runtime"]["engine"]["cache"] == "hit"
    assert again["runtime"]["engine"]["key"] == rt["engine"]["key"]
    assert again["runtime"]["engine"]["sha256"] == rt["engine"]["sha256"]
    print("%s p50 ms: device_compute %.4f, device_with_transfers %.4f, host_call %.4f" % (kind, c, t, h))


@pytest.mark.gpu
def test_gpu_calibrated_int8_on_a_dynamic_batch(tmp_path):
    """Entropy calibration (TensorRT 8.5-10.x) of dynamic_batch.onnx at the run's batch 4, with a
    calibration profile (issue 23, item 5)."""
    _needs_tensorrt()
    import tensorrt

    if parse_version(tensorrt.__version__)[0] >= 11:
        pytest.skip("TensorRT 11 has no entropy calibrator")
    folder = tmp_path / "cal"
    folder.mkdir()
    samples = np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32)
    np.save(folder / "samples.npy", samples)
    model = ROOT / "tests" / "fixtures" / "models" / "dynamic_batch.onnx"
    _, doc = _run_runner(tmp_path, "cal", "--batch", "4", "--precision", "int8", "--calibration-data",
                         str(folder), model=model)
    assert doc["status"] in ("ok", "invalid"), doc.get("error")
    engine = doc["runtime"]["engine"]
    assert engine["precision"] == "int8" and engine["recipe"].startswith("entropy_calibrator:")
    assert list((tmp_path / "engines").glob("*.4x3x32x32.calib"))  # the table of a batch-4 calibration


@pytest.mark.gpu
def test_gpu_a_refused_input_shape_names_the_profile(tmp_path):
    """set_input_shape returns False for a shape outside the engine's profile (issue 23, item 7)."""
    _needs_tensorrt()
    from runners.errors import InputSpecError

    b = get_backend("tensorrt", {"engine_cache": str(tmp_path / "engines")})
    b.load(str(ROOT / "tests" / "fixtures" / "models" / "dynamic_batch.onnx"))
    try:
        b.prepare({"input": np.zeros((4, 3, 32, 32), np.float32)})  # an engine for batch 4 only
        blob = Path(b.engine_info["path"]).read_bytes()
        b._teardown()
        with pytest.raises(InputSpecError, match=r"'input' at shape \[2, 3, 32, 32\].*min \[4, 3, 32, 32\]"):
            b._setup(blob, {"input": np.zeros((2, 3, 32, 32), np.float32)})
    finally:
        b.close()


@pytest.mark.gpu
def test_gpu_rebuild_reports_a_spread(tmp_path):
    _needs_tensorrt()
    _, doc = _run_runner(tmp_path, "rebuild", "--rebuild", "2")
    builds = doc["runtime"]["engine_builds"]
    assert builds["builds"] == 2 and len(builds["per_build"]) == 2 and builds["max_over_min"] >= 1.0


@pytest.mark.gpu
def test_gpu_trtexec_on_the_cached_engine(tmp_path):
    _needs_tensorrt()
    try:
        exe = trtexec.find()
    except BackendUnavailableError:
        pytest.skip("no trtexec on this machine")
    _, doc = _run_runner(tmp_path, "for_trtexec")
    block = trtexec.run(
        doc["runtime"]["engine"]["path"],
        str(tmp_path / "tx"),
        trtexec.TrtexecOptions(duration_s=1.0),
        trtexec=exe,
    )
    # what trtexec itself reports it did: our choices, in its version's flags (issue 23, item 2)
    done = block["options"]
    assert done["version"] == ".".join(map(str, trtexec.version(exe)))
    assert done["reported"]["data_transfers"] is True and done["reported"]["spin_wait"] is False
    assert done["data_transfers"] is True and done["spin_wait"] is False
    assert block["levels"]["device_compute"]["iterations"] >= 10
    c, t = (block["levels"][k]["latency_ms_p50"] for k in ("device_compute", "device_with_transfers"))
    assert 0 < c <= t, (c, t)
    assert block["profile"]["layers"]


def _fake_trtexec(tmp_path: Path) -> Path:
    """A stand-in trtexec binary (no TensorRT here): it prints the banner of 10.4 (as logging.h's
    defineTest does, NV_TENSORRT_VERSION 100400), records its argv and writes the recorded real
    exports (TensorRT 10.4, see fixtures/trtexec/README.md) to the paths it is given."""
    fake = tmp_path / "trtexec"
    fake.write_text(
        "#!" + sys.executable + "\n"
        "import gzip, shutil, sys\n"
        f"fix = {str(FIX)!r}\n"
        "print('&&&& RUNNING TensorRT.trtexec [TensorRT v100400] # trtexec ' + ' '.join(sys.argv[1:]))\n"
        "if sys.argv[1:] == ['--help']: sys.exit(0)\n"
        "open(sys.argv[0] + '.argv', 'w').write('\\n'.join(sys.argv[1:]))\n"
        "for a in sys.argv[1:]:\n"
        "    if a.startswith('--exportTimes='):\n"
        "        with gzip.open(fix + '/alexnet_fp16.times.json.gz', 'rb') as i:\n"
        "            open(a.split('=', 1)[1], 'wb').write(i.read())\n"
        "    if a.startswith('--exportProfile='):\n"
        "        shutil.copy(fix + '/alexnet_fp16.profile.json', a.split('=', 1)[1])\n")
    fake.chmod(0o755)
    return fake


def test_trtexec_run_pins_its_command_and_reads_both_exports(tmp_path):
    fake = _fake_trtexec(tmp_path)
    block = trtexec.run(str(tmp_path / "m.engine"), str(tmp_path / "w"), trtexec=str(fake))
    argv = (tmp_path / "trtexec.argv").read_text().splitlines()
    assert f"--loadEngine={tmp_path / 'm.engine'}" in argv
    assert "--warmUp=200" in argv and "--duration=3" in argv
    with gzip.open(FIX / "alexnet_fp16.times.json.gz") as fh:
        compute = [r["computeMs"] for r in json.load(fh) if "computeMs" in r]
    got = block["levels"]["device_compute"]
    assert got["iterations"] == len(compute)
    assert got["latency_ms_p50"] == pytest.approx(float(np.median(compute)), rel=1e-6, abs=1e-6)
    assert block["profile"]["layers"] and block["options"]["sync"] == "blocking"


def test_the_trtexec_block_reaches_the_result_once_and_outside_the_timed_loop(tmp_path):
    from runners.backends import Backend
    from runners.core import _close

    class Done(Backend):  # a backend that ran a session and reports one extra block (as tensorrt does)
        calls = 0

        def close(self):
            pass

        def extra_results(self, done):
            Done.calls += 1
            return {} if "trtexec" in done else {"trtexec": {"levels": {}}}

    result: dict = {}
    _close(Done(), result)
    _close(Done(), result)  # a second session: not run again
    assert result["trtexec"] == {"levels": {}} and Done.calls == 2


def test_calibration_batches_and_the_calibrator_feed_every_batch_once(tmp_path):
    from runners.backends.tensorrt import calibration_batches, make_calibrator

    folder = tmp_path / "cal"
    folder.mkdir()
    np.save(folder / "a.npy", np.arange(3 * 2 * 2, dtype=np.float64).reshape(3, 1, 2, 2))
    np.save(folder / "b.npy", np.ones((2, 1, 2, 2)))
    batches, digest = calibration_batches(str(folder), "x", 2)
    assert len(batches) == 2 and all(b.shape == (2, 1, 2, 2) and b.dtype == np.float32 for b in batches)
    assert batches[1][1].tolist() == [[[1.0, 1.0], [1.0, 1.0]]]  # file order: a then b; 5 samples -> 2
    assert digest == calibration_batches(str(folder), "x", 2)[1] and len(digest) == 16

    copies = []

    class FakeCuda:  # stands in for runners.cuda_rt (no GPU here)
        class Stream:
            def synchronize(self):
                pass

        @staticmethod
        def device_alloc(nbytes):
            return 4096

        @staticmethod
        def memcpy_htod_async(ptr, array, stream):
            copies.append((ptr, array.copy()))

    class FakeTrt:  # only the base class the calibrator derives from
        class IInt8EntropyCalibrator2:
            def __init__(self):
                pass

    cal = make_calibrator(FakeTrt, FakeCuda, batches, str(tmp_path / "t.calib"))
    assert cal.get_batch_size() == 2 and cal.read_calibration_cache() is None
    assert cal.get_batch(["x"]) == [4096] and cal.get_batch(["x"]) == [4096] and cal.get_batch(["x"]) is None
    assert [c[1].tolist() for c in copies] == [b.tolist() for b in batches]
    cal.write_calibration_cache(b"table")
    assert cal.read_calibration_cache() == b"table"
    with pytest.raises(Exception, match="fewer than one batch"):
        calibration_batches(str(folder), "x", 8)
