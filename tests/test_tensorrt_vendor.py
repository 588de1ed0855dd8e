"""The TensorRT backend and trtexec mode against stand-ins written from NVIDIA's own sources (issue 23).

No TensorRT here. Two stand-ins, each written by reading NVIDIA/TensorRT (github.com/NVIDIA/TensorRT)
at the branch and lines cited, not from edgegauge's code:

* ``tests/fixtures/tensorrt_trtexec/stand_in_trtexec.py``: trtexec 8.5.3, 10.3.0 and 11.0.0 (its
  README lists each behaviour's source): the flags each version takes, its defaults (11 flips them),
  the options it echoes and the --exportTimes it writes;
* :class:`FakeTrt` below: the ``tensorrt`` Python module as far as the backend uses it, each
  behaviour with its source.
"""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from runners.backends.tensorrt import TensorRTBackend, trtexec
from runners.errors import InferenceError, InputSpecError, UnsupportedFeatureError

ROOT = Path(__file__).resolve().parent.parent
STAND_IN = ROOT / "tests" / "fixtures" / "tensorrt_trtexec" / "stand_in_trtexec.py"
MODEL = ROOT / "tests" / "fixtures" / "models" / "dynamic_batch.onnx"  # bytes hashed only; FakeTrt parses


# ----------------------------------------------------------------------------------------------
# item 2: trtexec's flags by its version
# ----------------------------------------------------------------------------------------------


def _stand_in(tmp_path: Path, version: str, *mode: str) -> Path:
    """An executable ``trtexec`` in ``tmp_path`` that runs the stand-in as trtexec ``version``;
    the arguments it got land in ``tmp_path/argv.txt``."""
    exe = tmp_path / "trtexec"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STAND_IN}" {version} "{tmp_path / "argv.txt"}" '
                   f'{" ".join(mode)} -- "$@"\n')
    exe.chmod(0o755)
    return exe


@pytest.mark.parametrize("text, expected", [
    # banners as logging.h's defineTest prints NV_TENSORRT_VERSION (formulas: stand-in README)
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v8503] # trtexec --help", (8, 5, 3)),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec --help", (8, 6, 1)),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] [b17] # trtexec --help", (10, 3, 0)),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v101303] [b9] # trtexec", (10, 13, 3)),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v110000] [b114] # trtexec", (11, 0, 0)),
    # a run's log line (trtexec.cpp: "TensorRT version: " MAJOR "." MINOR "." PATCH)
    ("[09/25/2026-10:00:00] [I] TensorRT version: 10.3.0\n", (10, 3, 0)),
    ("nothing of the kind", None),
])
def test_trtexec_version_from_its_banner_or_log(text, expected):
    assert trtexec.parse_version(text) == expected


@pytest.mark.parametrize("version, expected", [("8.5.3", (8, 5, 3)), ("10.3.0", (10, 3, 0)),
                                               ("11.0.0", (11, 0, 0))])
def test_trtexec_version_asks_the_binary(tmp_path, version, expected):
    assert trtexec.version(str(_stand_in(tmp_path, version))) == expected
    assert (tmp_path / "argv.txt").read_text() == "--help"


# what each version needs to run with data transfers, without CUDA graph, without spin-wait, with a
# separate profiling run (our defaults), and the arguments that must not be there
DEFAULT_FLAGS = {
    "8.5.3": (["--streams=1", "--separateProfileRun"],
              ["--infStreams=1", "--noDataTransfers", "--useCudaGraph", "--useSpinWait",
               "--includeDataTransfers"]),
    "10.3.0": (["--infStreams=1", "--separateProfileRun"],
               ["--streams=1", "--noDataTransfers", "--useCudaGraph", "--useSpinWait", "--noSpinWait"]),
    "11.0.0": (["--infStreams=1", "--includeDataTransfers", "--noCudaGraph", "--noSpinWait"],
               ["--streams=1", "--noDataTransfers", "--useCudaGraph", "--useSpinWait",
                "--separateProfileRun"]),
}


@pytest.mark.parametrize("version", sorted(DEFAULT_FLAGS))
def test_trtexec_runs_with_transfers_no_graph_no_spin_on_every_version(tmp_path, version):
    exe = _stand_in(tmp_path, version)
    block = trtexec.run(str(tmp_path / "m.engine"), str(tmp_path / "w"), trtexec=str(exe))
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    present, absent = DEFAULT_FLAGS[version]
    assert [a for a in present if a not in argv] == [] and [a for a in absent if a in argv] == []
    done = block["options"]
    assert done["version"] == version
    assert (done["data_transfers"], done["cuda_graph"], done["spin_wait"]) == (True, False, False)
    assert done["reported"]["data_transfers"] is True and done["reported"]["spin_wait"] is False
    # the stand-in's records: 0.5 ms compute (+1 us a record), 0.1 ms H2D and 0.05 ms D2H with transfers
    levels = block["levels"]
    assert levels["device_with_transfers"]["latency_ms_p50"] == pytest.approx(
        levels["device_compute"]["latency_ms_p50"] + 0.15, abs=1e-6)
    assert block["profile"]["layers"]


OPPOSITE = trtexec.TrtexecOptions(data_transfers=False, cuda_graph=True, spin_wait=True)


@pytest.mark.parametrize("version, present", [
    ("8.5.3", ["--noDataTransfers", "--useCudaGraph", "--useSpinWait"]),
    ("10.3.0", ["--noDataTransfers", "--useCudaGraph", "--useSpinWait"]),
    ("11.0.0", []),  # 11's defaults; its old switches are no-ops and not written
])
def test_trtexec_runs_without_transfers_with_graph_and_spin_on_every_version(tmp_path, version, present):
    block = trtexec.run(str(tmp_path / "m.engine"), str(tmp_path / "w"), OPPOSITE, profile=False,
                        trtexec=str(_stand_in(tmp_path, version)))
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    switches = [a for a in argv if a.startswith("--") and "=" not in a]
    assert switches == present
    done = block["options"]
    assert (done["data_transfers"], done["cuda_graph"], done["spin_wait"]) == (False, True, True)
    assert done["sync"] == "spin-wait"
    # without transfers trtexec's latencyMs is its compute time: no device_with_transfers level
    assert set(block["levels"]) == {"device_compute", "enqueue"}


def test_trtexec_11_graph_capture_failure_is_recorded(tmp_path):
    exe = _stand_in(tmp_path, "11.0.0", "capture-fails")
    block = trtexec.run(str(tmp_path / "m.engine"), str(tmp_path / "w"), OPPOSITE, profile=False,
                        trtexec=str(exe))
    assert block["options"]["cuda_graph"] is False and "without" in block["options"]["cuda_graph_note"]


def test_trtexec_that_reports_other_choices_than_asked_is_an_error():
    asked = trtexec.pinned_choices(trtexec.TrtexecOptions(), (11, 0, 0))
    # the lines trtexec 11.0 prints for its own defaults (sampleOptions.cpp release/11.0 lines 2198-2203)
    log = ("[01/02/2026-10:00:00] [I] Inference Streams: 1\n"
           "[01/02/2026-10:00:00] [I] Data transfers: Disabled\n"
           "[01/02/2026-10:00:00] [I] Spin-wait: Enabled\n"
           "[01/02/2026-10:00:00] [I] CUDA Graph: Enabled\n")
    with pytest.raises(InferenceError, match=r"trtexec 11\.0\.0 ran with data_transfers False \(asked "
                                             r"True\), spin_wait True \(asked False\), cuda_graph True"):
        trtexec.effective_choices(asked, log)


def test_trtexec_without_a_version_is_unavailable(tmp_path):
    from runners.errors import BackendUnavailableError

    exe = tmp_path / "trtexec"
    exe.write_text("#!/bin/sh\necho 'usage: something else'\n")
    exe.chmod(0o755)
    with pytest.raises(BackendUnavailableError, match="printed no TensorRT version"):
        trtexec.version(str(exe))


# ----------------------------------------------------------------------------------------------
# a tensorrt module written from NVIDIA's Python bindings (items 5, 7, 8)
# ----------------------------------------------------------------------------------------------


class DataType(enum.Enum):
    """python/src/infer/pyFoundationalTypes.cpp, release/10.3 lines 179-190."""

    FLOAT, HALF, BF16, INT8, INT32, INT64, BOOL, UINT8, FP8, INT4 = range(10)


class Severity(enum.IntEnum):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)


class Profile:
    """IOptimizationProfile: ``set_shape(name, min, opt, max)``; ``bool(profile)`` is ``isValid()``
    (pyCoreDoc.h release/10.3 ``set_calibration_profile``: "must satisfy bool(profile) == True")."""

    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, low, opt, high):
        self.shapes[name] = [list(low), list(opt), list(high)]

    def __bool__(self):
        return bool(self.shapes) and all(
            all(a <= b <= c for a, b, c in zip(*s)) for s in self.shapes.values())


class Config:
    """IBuilderConfig: ``add_optimization_profile`` returns its index; ``set_calibration_profile``
    returns whether it was set (python/docstrings/infer/pyCoreDoc.h release/8.5 line 1373, release/10.3
    line 1399: a valid profile or None)."""

    def __init__(self):
        self.profiles, self.calibration_profile, self.int8_calibrator, self.flags = [], None, None, []

    def set_memory_pool_limit(self, pool, size):
        pass

    def set_flag(self, flag):
        self.flags.append(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile):
        if profile is not None and not bool(profile):
            return False
        self.calibration_profile = profile
        return True

    def create_timing_cache(self, data):
        return type("TimingCache", (), {"serialize": lambda self: b"timing"})()

    def set_timing_cache(self, cache, ignore_mismatch):
        self.timing_cache = cache

    def get_timing_cache(self):
        return self.timing_cache


class Tensor:
    def __init__(self, name, shape, dtype):
        self.name, self.shape, self.dtype = name, tuple(shape), dtype


class Network:
    def __init__(self, inputs, outputs):
        self.inputs, self.outputs, self.num_layers = inputs, outputs, 0

    num_inputs = property(lambda self: len(self.inputs))
    num_outputs = property(lambda self: len(self.outputs))

    def get_input(self, i):
        return self.inputs[i]

    def get_output(self, i):
        return self.outputs[i]


class Context:
    """IExecutionContext: ``set_input_shape`` returns False when a dimension disagrees with a fixed
    network dimension or leaves the profile's [min, max] (NvInferRuntime.h release/10.3 line 3738;
    the binding returns the bool, python/src/infer/pyCore.cpp release/10.3 lines 157-160)."""

    active_optimization_profile = 0

    def __init__(self, engine):
        self.engine, self.shapes = engine, {}

    def set_input_shape(self, name, shape):
        low, _, high = self.engine.get_tensor_profile_shape(name, 0)
        if len(shape) != len(low) or not all(a <= d <= b for a, d, b in zip(low, shape, high)):
            return False
        self.shapes[name] = list(shape)
        return True

    def get_tensor_shape(self, name):
        if name in self.shapes:
            return self.shapes[name]
        batch = next(iter(self.shapes.values()), [-1])[0]  # outputs: batch of the inputs
        return [batch if d < 0 else d for d in self.engine.tensors[name]["shape"]]

    def set_tensor_address(self, name, ptr):
        pass

    def execute_async_v3(self, handle):
        return len(self.shapes) == len([t for t in self.engine.tensors.values() if t["input"]])


class Engine:
    """ICudaEngine from our Builder's blob: name-based I/O and ``get_tensor_profile_shape(name,
    index)`` -> [min, opt, max] (python/src/infer/pyCore.cpp release/10.3 line 1261)."""

    device_memory_size_v2 = 1024

    def __init__(self, blob):
        self.tensors = json.loads(blob.decode())

    num_io_tensors = property(lambda self: len(self.tensors))

    def get_tensor_name(self, i):
        return list(self.tensors)[i]

    def get_tensor_mode(self, name):
        return "INPUT" if self.tensors[name]["input"] else "OUTPUT"

    def get_tensor_dtype(self, name):
        return DataType[self.tensors[name]["dtype"]]

    def get_tensor_profile_shape(self, name, index):
        return self.tensors[name]["profile"]

    def create_execution_context(self):
        return Context(self)


class FakeTrt:
    """The ``tensorrt`` module. ``nptype``: python/packaging/bindings_wheel/tensorrt/__init__.py
    release/10.3 lines 151-171 (float32, float16, int8, int32, int64, bool, uint8; TypeError for the
    rest: "fp8 and bfloat16 have no equivalent numpy type"). The builder serialises a JSON
    description of the engine and, like TensorRT, drives the int8 calibrator while building: it
    calibrates at the OPT dims of the calibration profile, else of optimization profile 0 ("Calibration
    input data size must match this profile", TensorRT developer guide, "INT8 Calibration with Dynamic
    Shapes"), and fails the build when a batch has another size."""

    __version__ = "10.3.0"
    DataType = DataType
    NetworkDefinitionCreationFlag = type("F", (), {"EXPLICIT_BATCH": 0})
    LayerType = type("L", (), {"QUANTIZE": "QUANTIZE"})
    BuilderFlag = type("B", (), {"FP16": "FP16", "INT8": "INT8"})
    MemoryPoolType = type("M", (), {"WORKSPACE": "WORKSPACE"})
    TensorIOMode = type("T", (), {"INPUT": "INPUT", "OUTPUT": "OUTPUT"})

    class ILogger:
        Severity = Severity

        def __init__(self):
            pass

    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass

    def __init__(self, network: Network, cuda):
        self.network, self.cuda, self.built = network, cuda, []
        trt = self

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                return trt.network

            create_builder_config = staticmethod(Config)
            create_optimization_profile = staticmethod(Profile)
            build_serialized_network = staticmethod(trt.build)

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                return True

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, blob):
                return Engine(blob)

        self.Builder, self.OnnxParser, self.Runtime = Builder, OnnxParser, Runtime

    @staticmethod
    def nptype(dtype):
        mapping = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
                   DataType.INT32: np.int32, DataType.INT64: np.int64, DataType.BOOL: np.bool_,
                   DataType.UINT8: np.uint8}
        if dtype in mapping:
            return mapping[dtype]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    def build(self, network, config):
        profile = config.profiles[0].shapes if config.profiles else {}
        if config.int8_calibrator is not None and not self._calibrate(network, config, profile):
            return None
        self.built.append(config)
        io = {t.name: {"input": True, "dtype": t.dtype.name, "shape": list(t.shape),
                       "profile": profile.get(t.name, [list(t.shape)] * 3)} for t in network.inputs}
        io.update({t.name: {"input": False, "dtype": t.dtype.name, "shape": list(t.shape), "profile": None}
                   for t in network.outputs})
        return json.dumps(io).encode()

    def _calibrate(self, network, config, profile) -> bool:
        shapes = (config.calibration_profile.shapes if config.calibration_profile else profile)
        name = network.get_input(0).name
        opt = shapes[name][1]
        cal = config.int8_calibrator
        while True:
            ptrs = cal.get_batch([name])
            if ptrs is None:
                return True
            if self.cuda.copied[ptrs[0]].shape != tuple(opt):
                return False


class FakeCuda:
    """runners.cuda_rt as the backend calls it (no GPU): device pointers are counters, and the last
    array copied to each is kept in ``copied``."""

    def __init__(self):
        self.copied, self.next = {}, 4096

        class Stream:
            handle = 1

            def synchronize(self):
                pass

            def query(self):
                return True

            def close(self):
                pass

        class Event:
            t = 0.0

            def record(self, stream):
                pass

            def close(self):
                pass

        self.Stream, self.Event = Stream, Event

    def device_alloc(self, nbytes):
        self.next += 4096
        return self.next

    def pinned_empty(self, shape, dtype):
        return np.zeros(shape, dtype), self.device_alloc(0)

    def memcpy_htod_async(self, ptr, array, stream):
        self.copied[ptr] = np.array(array)

    def memcpy_dtoh_async(self, array, ptr, stream):
        pass

    free = free_host = staticmethod(lambda ptr: None)
    elapsed_ms = staticmethod(lambda a, b: 0.0)
    mem_get_info = staticmethod(lambda: (1 << 30, 1 << 31))
    integrated = staticmethod(lambda: False)
    compute_capability = staticmethod(lambda: (8, 7))
    device_name = staticmethod(lambda: "stand-in GPU")


def _backend(monkeypatch, tmp_path, inputs, outputs, **options):
    """A TensorRTBackend loaded against FakeTrt (network ``inputs``/``outputs``: Tensor lists) and
    FakeCuda; engines cached under ``tmp_path``."""
    from runners import cuda_rt

    cuda = FakeCuda()
    trt = FakeTrt(Network(inputs, outputs), cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(cuda_rt, "available", lambda: True)
    b = TensorRTBackend(dict({"engine_cache": str(tmp_path / "engines")}, **options))
    b.load(str(MODEL))
    b._cuda = cuda
    return b, trt, cuda


DYNAMIC = ([Tensor("input", (-1, 3, 4, 4), DataType.FLOAT)], [Tensor("logits", (-1, 10), DataType.FLOAT)])


def test_int8_calibration_of_a_dynamic_network_runs_at_the_runs_batch(monkeypatch, tmp_path):
    folder = tmp_path / "cal"
    folder.mkdir()
    np.save(folder / "a.npy", np.random.default_rng(0).standard_normal((7, 3, 4, 4)))
    b, trt, cuda = _backend(monkeypatch, tmp_path, *DYNAMIC, precision="int8", calibration_data=str(folder))
    assert b.plan["recipe"].startswith("entropy_calibrator:")
    b.prepare({"input": np.zeros((3, 3, 4, 4), np.float32)})  # the run's batch: 3
    config = trt.built[0]
    assert config.calibration_profile is not None  # set, at the run's shapes
    assert config.calibration_profile.shapes == {"input": [[3, 3, 4, 4]] * 3}
    assert config.int8_calibrator.get_batch_size() == 3
    assert [a.shape for a in cuda.copied.values() if a.ndim == 4 and a.any()] == [(3, 3, 4, 4)]


def test_calibration_samples_of_another_shape_are_refused(monkeypatch, tmp_path):
    folder = tmp_path / "cal"
    folder.mkdir()
    np.save(folder / "a.npy", np.zeros((4, 3, 8, 8)))
    b, _, _ = _backend(monkeypatch, tmp_path, *DYNAMIC, precision="int8", calibration_data=str(folder))
    with pytest.raises(InputSpecError, match=r"samples of shape \[3, 8, 8\].*runs at \[2, 3, 4, 4\]"):
        b.prepare({"input": np.zeros((2, 3, 4, 4), np.float32)})


def test_a_shape_the_engine_refuses_names_tensor_shape_and_profile(monkeypatch, tmp_path):
    b, _, _ = _backend(monkeypatch, tmp_path, *DYNAMIC)
    b.prepare({"input": np.zeros((4, 3, 4, 4), np.float32)})  # an engine for batch 4
    blob = open(b.engine_info["path"], "rb").read()
    b._teardown()
    with pytest.raises(InputSpecError) as err:
        b._setup(blob, {"input": np.zeros((2, 3, 4, 4), np.float32)})
    text = str(err.value)
    assert "'input'" in text and "[2, 3, 4, 4]" in text and "set_input_shape returned False" in text
    assert "min [4, 3, 4, 4], opt [4, 3, 4, 4], max [4, 3, 4, 4]" in text


@pytest.mark.parametrize("where", ["input", "output"])
@pytest.mark.parametrize("dtype", [DataType.BF16, DataType.FP8])
def test_bf16_and_fp8_io_are_refused_by_name(monkeypatch, tmp_path, where, dtype):
    inputs = [Tensor("input", (1, 3, 4, 4), dtype if where == "input" else DataType.FLOAT)]
    outputs = [Tensor("logits", (1, 10), dtype if where == "output" else DataType.FLOAT)]
    b, _, _ = _backend(monkeypatch, tmp_path, inputs, outputs)
    name = "input" if where == "input" else "logits"
    with pytest.raises(UnsupportedFeatureError, match=rf"'{name}' has dtype {dtype.name}.*unsupported"):
        b.inputs() if where == "input" else b.outputs()
    if where == "output":  # the engine's I/O too
        with pytest.raises(UnsupportedFeatureError, match=rf"'{name}' has dtype {dtype.name}"):
            b.prepare({"input": np.zeros((1, 3, 4, 4), np.float32)})


def test_a_supported_dynamic_run_through_the_stand_in(monkeypatch, tmp_path):
    b, trt, _ = _backend(monkeypatch, tmp_path, *DYNAMIC)
    assert [s.shape for s in b.inputs()] == [(None, 3, 4, 4)]
    b.prepare({"input": np.ones((2, 3, 4, 4), np.float32)})
    assert trt.built[0].profiles[0].shapes == {"input": [[2, 3, 4, 4]] * 3}
    assert trt.built[0].calibration_profile is None  # no calibrator, no calibration profile
    out = b.evaluate({"input": np.ones((2, 3, 4, 4), np.float32)})
    assert out["logits"].shape == (2, 10)
