"""ONNX Runtime GPU providers (``ort`` backend, ``provider`` option) and the latency levels.

Here (no GPU, CPU onnxruntime): the option and its refusal when the provider is missing; the GPU
code path end to end with the CPU execution provider standing in for CUDA, ``OrtValue`` s in host
memory and a fake :mod:`runners.cuda_rt` (events stamped with perf_counter_ns, copies by memmove):
it checks what the path orders and binds, not CUDA. The ``gpu`` tests (opt-in ``--gpu``) run the
real CUDA and TensorRT providers (onnxruntime-gpu alone in the environment, never beside the CPU
wheel: they FAIL when it is shadowed; TensorRT libraries for the TensorRT EP) and check that ONNX
Runtime reports our stream (``get_provider_options()``).
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

import numpy as np
import pytest

import runners.backends.ort.backend as ort_backend
from runners.backends import descriptors, get_backend
from runners.core import Policy, RunConfig, run
from runners.errors import BackendUnavailableError
from runners.inputs import resolve_shapes, synthesize

MODELS = Path(__file__).parent / "fixtures" / "models"
FAST = Policy(warmup_min_iterations=3, warmup_min_s=0.0, min_iterations=40, min_duration_s=0.0,
              max_duration_s=10.0, sessions=2)


def _ort_providers():
    import onnxruntime

    return onnxruntime.get_available_providers()


# -- the option ----------------------------------------------------------------------------


def test_provider_option_is_declared_and_reaches_the_command_line():
    desc = descriptors()["ort"]
    opt = desc.option("provider")
    assert (opt.kind, opt.default, opt.flag) == (str, "cpu", "--provider")
    assert opt.choices == ("cpu", "cuda", "tensorrt")
    assert desc.resolve({"provider": "cuda"})["provider"] == "cuda"
    assert opt.to_argv("tensorrt") == ["--provider", "tensorrt"] and opt.slug_part("cuda") == "epcuda"
    with pytest.raises(ValueError, match="one of cpu, cuda, tensorrt"):
        desc.resolve({"provider": "rocm"})
    assert desc.latency_levels[0] == "host_call"


@pytest.mark.parametrize("provider,ep", [("cuda", "CUDAExecutionProvider"),
                                         ("tensorrt", "TensorrtExecutionProvider")])
def test_a_missing_provider_is_refused_naming_the_available_ones(provider, ep):
    available = _ort_providers()
    if ep in available:
        pytest.skip(f"this onnxruntime has {ep}")
    doc = run(RunConfig(backend="ort", model=str(MODELS / "tiny_cnn.onnx"), options={"provider": provider},
                        policy=FAST))
    assert doc["status"] == "failed" and doc["error"]["type"] == "BackendUnavailableError"
    msg = doc["error"]["message"]
    assert f"has no {ep}" in msg and "onnxruntime-gpu" in msg
    assert all(name in msg for name in available)


def test_the_cpu_provider_has_no_device_levels():
    doc = run(RunConfig(backend="ort", model=str(MODELS / "tiny_cnn.onnx"), policy=FAST))
    assert doc["status"] in ("ok", "invalid") and "latency_levels" not in doc
    assert doc["runtime"]["provider"] == "CPUExecutionProvider" and doc["runtime"]["provider_option"] == "cpu"


# -- the GPU path on a stand-in --------------------------------------------------------------


class FakeRt:
    """Stands in for runners.cuda_rt: copies happen at once (memmove), events take
    perf_counter_ns when recorded; every call is logged."""

    def __init__(self, available=True):
        self._available = available
        self.log = []
        self.pinned = {}
        self.freed = []
        self.closed = []
        rt = self

        class Stream:
            handle = 12345

            def synchronize(self):
                rt.log.append("sync")

            def close(self):
                rt.closed.append("stream")

        class Event:
            def __init__(self):
                self.t = None
                self.index = sum(1 for x in rt.log if x == "event")
                rt.log.append("event")

            def record(self, stream):
                self.t = time.perf_counter_ns()
                rt.log.append(f"record{self.index}")

            def close(self):
                rt.closed.append("event")

        self.Stream, self.Event = Stream, Event

    def available(self):
        return self._available

    def elapsed_ms(self, start, end):
        return (end.t - start.t) / 1e6

    def pinned_empty(self, shape, dtype):
        arr = np.empty(shape, dtype)
        self.pinned[arr.ctypes.data] = arr
        return arr, arr.ctypes.data

    def free_host(self, ptr):
        self.freed.append(ptr)

    def memcpy_htod_async(self, ptr, array, stream):
        self.log.append("htod")
        ctypes.memmove(ptr, array.ctypes.data, array.nbytes)

    def memcpy_dtoh_async(self, array, ptr, stream):
        self.log.append("dtoh")
        ctypes.memmove(array.ctypes.data, ptr, array.nbytes)

    def device_name(self):
        return "Fake GPU"

    def compute_capability(self):
        return (8, 0)


@pytest.fixture
def fake_gpu(monkeypatch):
    rt = FakeRt()
    monkeypatch.setattr(ort_backend, "_cuda_rt", lambda: rt)
    monkeypatch.setattr(ort_backend, "EP_NAMES", dict(ort_backend.EP_NAMES, cuda="CPUExecutionProvider"))
    monkeypatch.setattr(ort_backend, "DEVICE_TYPE", "cpu")
    # the CPU EP standing in for CUDA reports no stream; the real report is checked on a stand-in
    # onnxruntime in tests/test_ort_provider_options.py and on a GPU below
    monkeypatch.setattr(ort_backend, "reported_stream", lambda session, ep: str(rt.Stream.handle))
    return rt


def test_gpu_path_binds_device_values_and_copies_outputs_back(fake_gpu):
    backend = get_backend("ort", {"provider": "cuda", "threads": 1})
    backend.load(str(MODELS / "tiny_cnn.onnx"))
    specs = backend.inputs()
    feeds = synthesize(specs, resolve_shapes(specs, batch=1, shapes={}), seed=3)
    backend.prepare(feeds)
    fake_gpu.log.clear()
    backend.infer()
    n_in, n_out = len(specs), len(backend.outputs())
    assert fake_gpu.log == ["record0"] + ["htod"] * n_in + ["record1", "record2"] + ["dtoh"] * n_out + [
        "record3", "sync"]
    expected = backend.evaluate(feeds)
    for (_, host), name in zip(backend._d2h, expected):
        np.testing.assert_allclose(host, expected[name], rtol=1e-6, atol=1e-6)
        assert host.ctypes.data in fake_gpu.pinned  # outputs land in page-locked buffers
    levels = backend.level_latencies_ns()
    assert len(levels["device_compute"]) == len(levels["device_with_transfers"]) == 1
    assert 0 < levels["device_compute"][0] <= levels["device_with_transfers"][0]
    info = backend.runtime_info()
    assert info["device"] == {"type": "cpu", "id": 0, "name": "Fake GPU", "compute_capability": [8, 0]}
    assert info["io_binding_memory"] == "device" and info["provider_option"] == "cuda"
    backend.reset_levels()
    assert len(backend.level_latencies_ns()["device_compute"]) == 0
    pinned = set(fake_gpu.pinned)
    backend.close()
    assert set(fake_gpu.freed) == pinned
    assert fake_gpu.closed.count("event") == 4 and "stream" in fake_gpu.closed


def test_gpu_path_through_the_runner_reports_three_levels(fake_gpu):
    doc = run(RunConfig(backend="ort", model=str(MODELS / "tiny_cnn.onnx"),
                        options={"provider": "cuda", "threads": 1}, policy=FAST))
    assert doc["status"] in ("ok", "invalid"), doc["error"]
    levels = doc["latency_levels"]
    assert list(levels) == ["host_call", "device_compute", "device_with_transfers"]
    assert levels["host_call"] is doc["latency"] and doc["latency"]["level"] == "host_call"
    n = doc["latency"]["iterations"]
    for name in ("device_compute", "device_with_transfers"):
        block = levels[name]
        assert block["iterations"] == n and block["sessions"] == 2 and block["clock"] == "cuda_events"
        assert block["verdict"]["result"] in ("VALID", "INVALID") and "no_drift" in block["verdict"]["checks"]
        for s in doc["sessions"]:
            assert s["latency_levels"][name]["iterations"] == s["latency"]["iterations"]
    # the events nest inside the call: compute <= with transfers <= the host's whole call
    assert levels["device_compute"]["latency_ms_min"] <= levels["device_with_transfers"]["latency_ms_min"]
    assert levels["device_with_transfers"]["latency_ms_p50"] <= levels["host_call"]["latency_ms_p50"]


def test_gpu_path_without_io_binding_has_no_device_levels(fake_gpu):
    doc = run(RunConfig(backend="ort", model=str(MODELS / "tiny_cnn.onnx"),
                        options={"provider": "cuda", "io_binding": False}, policy=FAST))
    assert doc["status"] in ("ok", "invalid") and "latency_levels" not in doc
    assert doc["runtime"]["io_binding"] is False and doc["runtime"]["timing"] is None


def test_no_cuda_device_is_refused(monkeypatch):
    monkeypatch.setattr(ort_backend, "_cuda_rt", lambda: FakeRt(available=False))
    monkeypatch.setattr(ort_backend, "EP_NAMES", dict(ort_backend.EP_NAMES, cuda="CPUExecutionProvider"))
    backend = get_backend("ort", {"provider": "cuda"})
    with pytest.raises(BackendUnavailableError, match="no CUDA device answers"):
        backend.load(str(MODELS / "tiny_cnn.onnx"))


# -- a real GPU ------------------------------------------------------------------------------


def _gpu_package_or_fail() -> None:
    """Skip when no onnxruntime-gpu is installed; FAIL when it is installed but shadowed: the CPU
    wheel ``onnxruntime`` installed beside it (both own ``onnxruntime/``; the last one installed
    wins) or a session without ``CUDAExecutionProvider``."""
    from importlib import metadata

    def installed(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    gpu, cpu = installed("onnxruntime-gpu"), installed("onnxruntime")
    if gpu is None:
        pytest.skip(f"onnxruntime-gpu is not installed (onnxruntime {cpu}): the ORT GPU tests need it")
    assert cpu is None, (f"onnxruntime-gpu {gpu} is shadowed by the CPU wheel onnxruntime {cpu} in the "
                         "same environment: pip uninstall onnxruntime onnxruntime-gpu; "
                         "pip install onnxruntime-gpu")
    assert "CUDAExecutionProvider" in _ort_providers(), (
        f"onnxruntime-gpu {gpu} is installed but onnxruntime offers {_ort_providers()}: another onnxruntime "
        "shadows it")


def _tensorrt_libs_or_skip() -> None:
    """Skip the TensorRT EP when TensorRT's libnvinfer cannot be loaded (the EP then falls back)."""
    import ctypes

    for name in ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so"):
        try:
            ctypes.CDLL(name)
            return
        except OSError:
            continue
    pytest.skip("TensorRT's libnvinfer.so.* is not loadable: the TensorRT EP needs TensorRT libraries")


@pytest.mark.gpu
@pytest.mark.parametrize("provider,ep", [("cuda", "CUDAExecutionProvider"),
                                         ("tensorrt", "TensorrtExecutionProvider")])
def test_real_gpu_provider_runs_on_our_stream(provider, ep):
    """The session is on ``ep`` and ONNX Runtime reports our stream as its compute stream."""
    _gpu_package_or_fail()
    if provider == "tensorrt":
        _tensorrt_libs_or_skip()
    backend = get_backend("ort", {"provider": provider})
    backend.load(str(MODELS / "tiny_cnn.onnx"))
    try:
        assert backend.session.get_providers()[0] == ep
        options = backend.session.get_provider_options()[ep]
        assert options["user_compute_stream"] == str(backend._gpu["stream"].handle), options
        assert options["has_user_compute_stream"] == "1", options
    finally:
        backend.close()


@pytest.mark.gpu
@pytest.mark.parametrize("provider,ep", [("cuda", "CUDAExecutionProvider"),
                                         ("tensorrt", "TensorrtExecutionProvider")])
def test_real_gpu_provider_reports_device_levels(provider, ep):
    _gpu_package_or_fail()
    if provider == "tensorrt":
        _tensorrt_libs_or_skip()
    doc = run(RunConfig(backend="ort", model=str(MODELS / "tiny_cnn.onnx"), options={"provider": provider},
                        policy=Policy(warmup_min_iterations=20, warmup_min_s=0.5, min_iterations=200,
                                      min_duration_s=1.0, max_duration_s=20.0)))
    assert doc["status"] in ("ok", "invalid"), doc["error"]
    assert doc["runtime"]["provider"] == ep
    levels = doc["latency_levels"]
    assert 0 < levels["device_compute"]["latency_ms_p50"] <= levels["device_with_transfers"]["latency_ms_p50"]
    assert levels["device_with_transfers"]["latency_ms_p50"] <= levels["host_call"]["latency_ms_p50"]
    print({k: round(v["latency_ms_p50"], 4) for k, v in levels.items()}, doc["runtime"]["device"])
