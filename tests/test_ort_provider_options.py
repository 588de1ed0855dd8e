"""Issue 23, item 1: the provider options the ``ort`` backend hands to the CUDA and TensorRT
execution providers, against a STAND-IN ``onnxruntime`` whose option checks are written from
ONNX Runtime's own source, not from our code:

* TensorRT EP, ``onnxruntime/python/onnxruntime_pybind_state.cc``, ``CreateExecutionProviderInstance``
  (1.18 to 1.31): a chain of ``option.first == "..."`` tests over ``device_id``,
  ``user_compute_stream`` (which also sets ``has_user_compute_stream``) and ``trt_*`` keys, else
  ``ORT_THROW("Invalid TensorRT EP option: ", option.first)``. Checked against the compiled check in
  the onnxruntime-gpu 1.19.2, 1.23.2 and 1.31.1 wheels (cp311 manylinux x86_64): the strings of
  ``onnxruntime_pybind11_state`` around "Invalid TensorRT EP option: " are ``user_compute_stream``
  and ``trt_*`` names only, and none of the three holds ``has_user_compute_stream`` at all. The
  1.17.1 wheel has no ``user_compute_stream`` key there (added by microsoft/onnxruntime PR #20168,
  first in 1.18.0).
* CUDA EP, ``onnxruntime/core/providers/cuda/cuda_execution_provider_info.cc``,
  ``CUDAExecutionProviderInfo::FromProviderOptions``: a ``ProviderOptionsParser`` over a fixed key
  list (``device_id``, ``has_user_compute_stream``, ``user_compute_stream``, ``gpu_mem_limit``, ...;
  the names as found in ``libonnxruntime_providers_cuda.so`` of 1.23.2), else
  ``Unknown provider option: "<key>"``.
* A refused option: ``InferenceSession.__init__`` in ``onnxruntime/capi/onnxruntime_inference_collection.py``
  (1.19.2, 1.23.2) catches the error, ``print``s "EP Error ... Falling back to [...]" and retries
  with ``CUDAExecutionProvider, CPUExecutionProvider`` when TensorRT was asked for, else CPU.
* ``get_provider_options()`` reports ``user_compute_stream`` (decimal) and
  ``has_user_compute_stream`` "1" (``ToProviderOptions`` of both providers' info; PR #20168's test).

The CUDA runtime is the fake of tests/test_ort_providers.py (:class:`FakeRt`).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from test_ort_providers import FakeRt

import runners.backends.ort.backend as ort_backend
from runners.backends import get_backend
from runners.errors import BackendUnavailableError

MODEL = str(Path(__file__).parent / "fixtures" / "models" / "tiny_cnn.onnx")
TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"

#: keys of CUDAExecutionProviderInfo::FromProviderOptions (cuda_execution_provider_info.cc, 1.23.2)
CUDA_KEYS = {"device_id", "has_user_compute_stream", "user_compute_stream", "gpu_mem_limit",
             "arena_extend_strategy", "cudnn_conv_algo_search", "do_copy_in_default_stream",
             "gpu_external_alloc", "gpu_external_free", "gpu_external_empty_cache",
             "cudnn_conv_use_max_workspace", "enable_cuda_graph", "cudnn_conv1d_pad_to_nc1d",
             "tunable_op_enable", "tunable_op_tuning_enable", "prefer_nhwc",
             "use_ep_level_unified_stream", "use_tf32", "sdpa_kernel", "fuse_conv_bias"}


def trt_check(options: dict, version: tuple) -> dict:
    """The TensorRT branch of pybind_state.cc: the options as the EP gets them, or RuntimeError."""
    info = {"device_id": "0", "has_user_compute_stream": "0", "user_compute_stream": "0"}
    for key, value in options.items():
        if key == "device_id":
            info["device_id"] = value
        elif key == "user_compute_stream" and version >= (1, 18):
            info.update(user_compute_stream=str(int(value)), has_user_compute_stream="1")
        elif key.startswith("trt_"):
            info[key] = value
        else:
            raise RuntimeError(f"Invalid TensorRT EP option: {key}")
    return info


def cuda_check(options: dict) -> dict:
    """CUDAExecutionProviderInfo::FromProviderOptions: known keys only; a stream sets the flag."""
    info = {"device_id": "0", "has_user_compute_stream": "0", "user_compute_stream": "0"}
    for key, value in options.items():
        if key not in CUDA_KEYS:
            raise RuntimeError(f'Unknown provider option: "{key}".')
        info[key] = value
    if info["user_compute_stream"] != "0":
        info["has_user_compute_stream"] = "1"
    return info


def stand_in_onnxruntime(version: str = "1.23.2") -> types.ModuleType:
    """An ``onnxruntime`` with the three providers, the checks above and the Python fallback."""
    ort = types.ModuleType("onnxruntime")
    ort.__version__ = version
    numeric = tuple(int(p) for p in version.split("."))
    ort.get_available_providers = lambda: [TRT, CUDA, CPU]
    ort.ExecutionMode = types.SimpleNamespace(ORT_SEQUENTIAL=0)
    ort.GraphOptimizationLevel = types.SimpleNamespace(ORT_DISABLE_ALL=0, ORT_ENABLE_BASIC=1,
                                                       ORT_ENABLE_EXTENDED=2, ORT_ENABLE_ALL=99)
    ort.SessionOptions = types.SimpleNamespace

    class InferenceSession:
        def __init__(self, path, sess_options=None, providers=None):
            chain = [(p, {}) if isinstance(p, str) else (p[0], dict(p[1])) for p in providers]
            try:
                self._create(chain)
            except RuntimeError as exc:  # onnxruntime_inference_collection.py: print, then fall back
                print("*************** EP Error ***************")
                print(f"EP Error {exc} when using {[p for p, _ in chain]}")
                fallback = [CUDA, CPU] if chain[0][0] == TRT else [CPU]
                print(f"Falling back to {fallback} and retrying.")
                print("****************************************")
                self._create([(p, {}) for p in fallback])

        def _create(self, chain):
            self._options = {}
            for name, opts in chain:
                if name == TRT:
                    self._options[name] = trt_check(opts, numeric)
                elif name == CUDA:
                    self._options[name] = cuda_check(opts)
                else:
                    self._options[name] = {}
            self._providers = [name for name, _ in chain]

        def get_providers(self):
            return list(self._providers)

        def get_provider_options(self):
            return {k: dict(v) for k, v in self._options.items()}

        def end_profiling(self):
            return None

    ort.InferenceSession = InferenceSession
    return ort


@pytest.fixture
def fake_rt(monkeypatch):
    rt = FakeRt()
    monkeypatch.setattr(ort_backend, "_cuda_rt", lambda: rt)
    return rt


@pytest.mark.parametrize("provider,ep", [("tensorrt", TRT), ("cuda", CUDA)])
def test_a_gpu_provider_creates_its_session_on_our_stream(monkeypatch, fake_rt, capfd, provider, ep):
    monkeypatch.setitem(sys.modules, "onnxruntime", stand_in_onnxruntime("1.23.2"))
    backend = get_backend("ort", {"provider": provider, "threads": 1})
    backend.load(MODEL)  # HEAD 6038e28: TensorRT refuses has_user_compute_stream, falls back to CUDA
    assert backend.session.get_providers()[0] == ep
    options = backend.session.get_provider_options()[ep]
    assert options["user_compute_stream"] == str(fake_rt.Stream.handle)
    assert options["has_user_compute_stream"] == "1"
    if provider == "tensorrt":  # the CUDA EP after it gets the same stream
        assert backend.session.get_provider_options()[CUDA]["user_compute_stream"] == "12345"
    assert "EP Error" not in capfd.readouterr().out
    backend.close()
    assert "stream" in fake_rt.closed


def test_the_options_are_exactly_device_and_stream():
    assert ort_backend.gpu_provider_options(0x7F00DEADBEEF) == {
        "device_id": "0", "user_compute_stream": str(0x7F00DEADBEEF)}
    trt_check(ort_backend.gpu_provider_options(99), (1, 18))
    cuda_check(ort_backend.gpu_provider_options(99))


def test_a_session_that_fell_back_is_refused(monkeypatch, fake_rt):
    ort = stand_in_onnxruntime("1.23.2")
    original = ort.InferenceSession.__init__

    def refuse_trt(self, path, sess_options=None, providers=None):  # as when libnvinfer does not load
        original(self, path, sess_options, [(CUDA, {})] + list(providers)[2:])

    monkeypatch.setattr(ort.InferenceSession, "__init__", refuse_trt)
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    with pytest.raises(BackendUnavailableError, match="runs on CUDAExecutionProvider, not Tensorrt"):
        get_backend("ort", {"provider": "tensorrt"}).load(MODEL)
    assert "stream" in fake_rt.closed


def test_a_session_on_another_stream_is_refused(monkeypatch, fake_rt):
    ort = stand_in_onnxruntime("1.23.2")
    monkeypatch.setattr(ort.InferenceSession, "get_provider_options",
                        lambda self: {CUDA: {"user_compute_stream": "0", "has_user_compute_stream": "0"}})
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    with pytest.raises(BackendUnavailableError, match="user_compute_stream None, not our stream 12345"):
        get_backend("ort", {"provider": "cuda"}).load(MODEL)


def test_tensorrt_before_1_18_is_refused_with_the_reason(monkeypatch, fake_rt):
    monkeypatch.setitem(sys.modules, "onnxruntime", stand_in_onnxruntime("1.17.1"))
    with pytest.raises(BackendUnavailableError, match=r"onnxruntime 1.17.1 .*needs onnxruntime-gpu >= 1.18"):
        get_backend("ort", {"provider": "tensorrt"}).load(MODEL)
    assert fake_rt.log == []  # refused before any CUDA call


def test_version_parsing():
    assert ort_backend._version("1.23.2") == (1, 23, 2)
    assert ort_backend._version("1.19.0+cu118") == (1, 19, 0)
    assert ort_backend._version("1.18.0rc1") == (1, 18, 0)
    assert ort_backend._version("garbage") == ()
