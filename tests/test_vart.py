"""The VART backend without a DPU: fixed-point math against hand-computed values, the DPU
subgraph choice, xdputil output parsing on recorded outputs (tests/fixtures/vart/README.md),
and the backend's code paths with STAND-IN ``xir``/``vart`` modules put in ``sys.modules`` by
this test only (:func:`fake_vitis`); nothing here touches real VART. The real thing is
``test_vart_on_the_board`` (``-m board_hw --board zcu104``)."""

import json
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from runners.backends import descriptors, get_backend
from runners.backends.vart import backend as vb
from runners.errors import ModelLoadError

FIX = Path(__file__).resolve().parent / "fixtures" / "vart"


# -- fixed point ---------------------------------------------------------------------------------


def test_quantize_by_hand():
    # fix_point 2: scale 4. 0.3*4=1.2->1, 0.375*4=1.5->2 (half up), -0.375*4=-1.5->-1 (half toward
    # +inf), -0.4*4=-1.6->-2, 10*4=40, 1.1*4=4.4->4
    q = vb.quantize([0.3, 0.375, -0.375, -0.4, 10.0, 1.1], 2)
    assert q.dtype == np.int8 and q.tolist() == [1, 2, -1, -2, 40, 4]
    # negative fix_point -1: scale 0.5 (the KV260 excerpt's input); 3->1.5->2, -3->-1.5->-1
    assert vb.quantize([3.0, -3.0, 5.0], -1).tolist() == [2, -1, 3]


def test_quantize_saturates_and_the_other_round_modes():
    # fix_point 6: scale 64. 2.5*64=160 -> 127; -3*64=-192 -> -128; 1.984375*64=127 exactly
    assert vb.quantize([2.5, -3.0, 1.984375, -2.0], 6).tolist() == [127, -128, 127, -128]
    halves = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]
    assert vb.quantize(halves, 0, round_mode="DPU_ROUND").tolist() == [-2, -1, 0, 1, 2, 3]
    assert vb.quantize(halves, 0, round_mode="STD_ROUND").tolist() == [-3, -2, -1, 1, 2, 3]
    assert vb.quantize(halves, 0, round_mode="PY3_ROUND").tolist() == [-2, -2, 0, 0, 2, 2]
    assert vb.quantize([300.0], 0, bit_width=16).tolist() == [300]
    with pytest.raises(ValueError, match="round_mode"):
        vb.quantize([1.0], 0, round_mode="FLOOR")


def test_dequantize_by_hand():
    out = vb.dequantize(np.array([127, -128, 3, 0], dtype=np.int8), 3)
    assert out.dtype == np.float32 and out.tolist() == [15.875, -16.0, 0.375, 0.0]
    assert vb.dequantize([5], -2).tolist() == [20.0]


# -- xdputil outputs -----------------------------------------------------------------------------


def test_recorded_xdputil_benchmark_is_parsed():
    got = vb.parse_xdputil_benchmark((FIX / "xdputil_benchmark_zcu104_zdce.txt").read_text())
    assert got == {"fps": 28.5485, "frames": 1714, "frames_exact": True, "frames_printed": "1714",
                   "duration_s": 60.0382, "frames_per_thread": [904, 810], "passed": True}
    assert sum(got["frames_per_thread"]) == got["frames"]
    with pytest.raises(ValueError, match="FPS"):
        vb.parse_xdputil_benchmark("I0713 performance_test.hpp:76] 10% ...\n")


def test_a_long_xdputil_benchmark_prints_frames_as_a_float():
    """Issue 23 item 6: past 1e6 frames performance_test.hpp streams the float total as %g
    (``1.23457e+06``; fixture written from Vitis-AI v3.0's source, tests/fixtures/vart/README.md).
    The per-thread size_t counts give the exact total; the printed one has 6 significant digits."""
    text = (FIX / "xdputil_benchmark_constructed_long.txt").read_text()
    got = vb.parse_xdputil_benchmark(text)  # HEAD 6038e28: ValueError (no integer after number_of_frames=)
    assert got == {"fps": 3429.35, "frames": 1234568, "frames_exact": True, "frames_printed": "1.23457e+06",
                   "duration_s": 360.001, "frames_per_thread": [411523, 411523, 411522], "passed": True}
    no_threads = "\n".join(line for line in text.splitlines() if "processes" not in line)
    got = vb.parse_xdputil_benchmark(no_threads)  # the printed total alone: 6 significant digits
    assert (got["frames"], got["frames_exact"], got["frames_per_thread"]) == (1234570, False, [])
    one_missing = "\n".join(line for line in text.splitlines() if "thread-1 " not in line)
    assert vb.parse_xdputil_benchmark(one_missing)["frames"] == 1234570  # a partial sum is not used


@pytest.mark.parametrize("printed,frames,exact", [("999999", 999999, True), ("1e+06", 1000000, False),
                                                  ("2.5e+07", 25000000, False), ("inf", None, False)])
def test_xdputil_frames_in_every_g_form(printed, frames, exact):
    line = f"I0102 performance_test.hpp:94] FPS= 1234.57 number_of_frames= {printed} time= 60.0012 seconds."
    got = vb.parse_xdputil_benchmark(line)
    assert (got["frames"], got["frames_exact"], got["fps"], got["passed"]) == (frames, exact, 1234.57, None)


def test_xdputil_benchmark_argv():
    assert vb.xdputil_benchmark_argv("/m/net.xmodel", 1, 4) == [
        "xdputil", "benchmark", "/m/net.xmodel", "-i", "1", "4"]


def test_constructed_xdputil_query_is_parsed():
    got = vb.parse_xdputil_query((FIX / "xdputil_query_constructed.txt").read_text())
    assert got["fingerprints"] == ["0x101000016010407"] * 2 and got["cores"] == 2
    assert got["dpu_arch"] == ["DPUCZDX8G_ISA1_B4096"] * 2 and got["dpu_mhz"] == [300, 300]
    assert got["vart_version"] == "3.0.0"


# -- stand-ins for xir and vart (this test only) ------------------------------------------------


class FakeTensor:
    def __init__(self, name, dims, fix_point, dtype="xint8"):
        self.name, self.dims, self.dtype = name, list(dims), dtype
        self._attrs = {"fix_point": fix_point, "bit_width": 8, "round_mode": "DPU_ROUND"}

    def has_attr(self, k):
        return k in self._attrs

    def get_attr(self, k):
        return self._attrs[k]


class FakeSubgraph:
    def __init__(self, name, attrs=None, children=()):
        self._name, self._attrs, self._children = name, dict(attrs or {}), list(children)
        self.is_leaf = not self._children

    def get_name(self):
        return self._name

    def has_attr(self, k):
        return k in self._attrs

    def get_attr(self, k):
        return self._attrs[k]

    def toposort_child_subgraph(self):
        return list(self._children)


class FakeRunner:
    """Copies input 0 into output 0's leading elements (an identity model) and records the
    thread of every job."""

    created = []

    def __init__(self, subgraph, batch):
        self.subgraph, self.jobs, self.threads = subgraph, 0, set()
        self._in = [FakeTensor("input_fix", (batch, 2, 2, 3), 6)]
        self._out = [FakeTensor("fc_fix", (batch, 4), 3)]
        FakeRunner.created.append(self)

    def get_input_tensors(self):
        return self._in

    def get_output_tensors(self):
        return self._out

    def execute_async(self, inputs, outputs):
        assert inputs[0].dtype == np.int8 and inputs[0].shape == tuple(self._in[0].dims)
        outputs[0][...] = inputs[0].reshape(inputs[0].shape[0], -1)[:, :4]
        self.jobs += 1
        self.threads.add(threading.get_ident())
        return (self.jobs, 0)

    def wait(self, job_id):
        return 0


def fake_vitis(monkeypatch, children, batch=1):
    """Put stand-in ``xir`` and ``vart`` modules in ``sys.modules`` for one test."""
    graph = types.SimpleNamespace(get_root_subgraph=lambda: FakeSubgraph("root", children=children))
    xir = types.ModuleType("xir")
    xir.Graph = types.SimpleNamespace(deserialize=lambda path: graph)
    vart = types.ModuleType("vart")
    vart.__version__ = "3.0.0-standin"
    vart.Runner = types.SimpleNamespace(create_runner=lambda sg, mode: FakeRunner(sg, batch))
    monkeypatch.setitem(sys.modules, "xir", xir)
    monkeypatch.setitem(sys.modules, "vart", vart)
    monkeypatch.setattr(vb, "board_dpu", lambda: {"error": "no xdputil here"})
    monkeypatch.setattr(vb.VartBackend, "_xdputil_done", None)
    FakeRunner.created = []


def _children(n_dpu=1):
    kids = [FakeSubgraph("subgraph_input", {"device": "USER"})]
    for i in range(n_dpu):
        kids.append(FakeSubgraph(f"subgraph_conv{i}", {"device": "DPU", "dpu_fingerprint": 0x101000016010407,
                                                       "dpu_name": "DPUCZDX8G_ISA1_B4096"}))
        kids.append(FakeSubgraph(f"subgraph_cpu{i}", {"device": "CPU"}))
    return kids


def test_dpu_subgraph_selection():
    kids = _children(1)
    assert vb.select_dpu_subgraph(kids)[0] == 1
    with pytest.raises(ModelLoadError, match="2 DPU subgraphs.*--subgraph"):
        vb.select_dpu_subgraph(_children(2))
    assert vb.select_dpu_subgraph(_children(2), 3)[1].get_name() == "subgraph_conv1"
    with pytest.raises(ModelLoadError, match="not a DPU subgraph"):
        vb.select_dpu_subgraph(kids, 2)
    with pytest.raises(ModelLoadError, match="no DPU subgraph.*vai_c_xir"):
        vb.select_dpu_subgraph(kids[:1])


@pytest.mark.parametrize("threads", [1, 3])
def test_threads_map_to_runners_and_batch_comes_from_dims(monkeypatch, threads):
    fake_vitis(monkeypatch, _children(1), batch=2)
    b = get_backend("vart", {"threads": threads})
    b.load("/models/net.xmodel")
    assert len(FakeRunner.created) == threads
    assert all(r.subgraph.get_name() == "subgraph_conv0" for r in FakeRunner.created)
    assert [s.shape for s in b.inputs()] == [(2, 2, 2, 3)] and b.inputs()[0].dtype == "float32"
    assert b.samples_per_infer_factor == threads
    x = np.full((2, 2, 2, 3), 0.5, dtype=np.float32)  # 0.5 * 2**6 = 32
    b.prepare({"input_fix": x})
    for _ in range(5):
        b.infer()
    assert [r.jobs for r in FakeRunner.created] == [6] * threads  # prepare's first run + 5
    if threads > 1:  # each runner on its own thread, none on the caller's
        idents = [next(iter(r.threads)) for r in FakeRunner.created]
        assert len(set(idents)) == threads and threading.get_ident() not in idents
    info = b.runtime_info()
    assert info["threads"] == info["runners"] == threads and info["batch"] == 2
    assert info["subgraph"]["fingerprint"] == "0x101000016010407" and info["subgraph"]["index"] == 1
    assert info["inputs"][0]["fix_point"] == 6 and info["fingerprint_match"] is None
    b.close()


def test_evaluate_quantizes_and_dequantizes(monkeypatch):
    fake_vitis(monkeypatch, _children(1), batch=1)
    b = get_backend("vart", {})
    b.load("/models/net.xmodel")
    x = np.array([0.5, -0.25, 1.0, 3.0] + [0.0] * 8, dtype=np.float32).reshape(1, 2, 2, 3)
    out = b.evaluate({"input_fix": x})
    # in: *64 -> 32, -16, 64, 127 (saturated); out: /8 -> 4, -2, 8, 15.875
    assert out["fc_fix"].tolist() == [[4.0, -2.0, 8.0, 15.875]]
    with pytest.raises(Exception, match="fixed when compiling"):
        b.evaluate({"input_fix": np.zeros((2, 2, 2, 3), dtype=np.float32)})


def test_load_refuses_onnx_and_a_model_without_dpu(monkeypatch):
    fake_vitis(monkeypatch, _children(0))
    with pytest.raises(ModelLoadError, match="compiled .xmodel.*host zoo compile"):
        get_backend("vart", {}).load("/models/net.onnx")
    with pytest.raises(ModelLoadError, match="no DPU subgraph"):
        get_backend("vart", {}).load("/models/net.xmodel")


def test_whole_runner_with_stand_ins_counts_n_jobs_per_call(monkeypatch, tmp_path):
    from runners.core import Policy, RunConfig, run

    fake_vitis(monkeypatch, _children(1), batch=2)
    model = tmp_path / "net.xmodel"
    model.write_bytes(b"not a real xmodel: the stand-in xir never reads it")
    policy = Policy(warmup_min_iterations=2, warmup_min_s=0, min_iterations=20, min_duration_s=0)
    doc = run(RunConfig(backend="vart", model=str(model), batch=2, options={"threads": 2}, policy=policy))
    assert doc["status"] in ("ok", "invalid"), doc["error"]
    assert doc["latency"]["samples_per_call"] == 4  # 2 runners x batch 2
    assert doc["runtime"]["mode"] == "throughput (2 runners)"
    json.dumps(doc)


def test_descriptor():
    d = descriptors()["vart"]
    assert d.implemented and d.backend is vb.VartBackend
    assert d.families == ("zcu104",) and d.runtime_modules == ("vart", "xir") and d.precisions == ("int8",)
    assert [(o.name, o.kind, o.default, o.flag) for o in d.options] == [
        ("threads", int, 1, "--threads"), ("subgraph", int, -1, "--subgraph"), ("xdputil_s", float, 0.0,
                                                                                 "--xdputil-s")]


# -- the compile flow (host side; the Vitis AI image is not run here) ------------------------------


def _onnx(tmp_path):
    src = Path(__file__).resolve().parent / "fixtures" / "models" / "identity.onnx"
    model = tmp_path / "models" / "net.onnx"
    model.parent.mkdir()
    model.write_bytes(src.read_bytes())
    return model


def test_compile_argv_random_and_file_calibration(tmp_path):
    from host.models import compile as vai

    model = _onnx(tmp_path)
    job = vai.make_job(model, "zcu104", image="edgegauge/vitis-ai-compile:0.1.0", out=tmp_path / "xm",
                       input_shape=(1, 3, 32, 32))
    assert vai.compile_argv(["podman", "--root", "/r"], job) == [
        "podman", "--root", "/r", "run", "--rm", "-v", f"{model.parent}:/in:ro",
        "-v", f"{tmp_path / 'xm'}:/out",
        "edgegauge/vitis-ai-compile:0.1.0", "--model", "/in/net.onnx", "--input-shape", "1x3x32x32",
        "--name", "net", "--out", "/out", "--arch", "/opt/vitis_ai/compiler/arch/DPUCZDX8G/ZCU104/arch.json",
        "--calib-batches", "8"]
    calib = tmp_path / "calib"
    calib.mkdir()
    job = vai.make_job(model, "zcu104", image="img:1", name="mynet", input_shape=(8, 3, 32, 32),
                       calibration_data=calib)
    argv = vai.compile_argv(["docker"], job)
    assert argv[:8] == ["docker", "run", "--rm", "-v", f"{model.parent}:/in:ro", "-v", f"{model.parent}:/out",
                        "-v"] and argv[8] == f"{calib}:/calib:ro"
    assert argv[-6:] == ["--out", "/out", "--arch", vai.TARGETS["zcu104"], "--calib-dir", "/calib"]
    assert vai.arch_argv(["docker"], job) == ["docker", "run", "--rm", "--entrypoint", "cat", "img:1",
                                              vai.TARGETS["zcu104"]]


def test_compile_defaults_and_refusals(tmp_path):
    from host.errors import CompileError
    from host.models import compile as vai

    model = _onnx(tmp_path)  # identity.onnx: input [1, 4]
    job = vai.make_job(model, "zcu104", image="i")
    assert job.input_shape == (1, 4) and job.name == "net" and job.out == model.parent.resolve()
    models = Path(__file__).resolve().parent / "fixtures" / "models"
    assert vai.make_job(models / "dynamic_batch.onnx", "zcu104", image="i").input_shape == (1, 3, 32, 32)
    with pytest.raises(CompileError, match="dynamic dimensions"):
        vai.make_job(models / "dynamic_hw.onnx", "zcu104", image="i")
    with pytest.raises(CompileError, match="unknown target"):
        vai.make_job(model, "jetson", image="i", input_shape=(1, 3))
    with pytest.raises(CompileError, match="does not exist"):
        vai.make_job(tmp_path / "none.onnx", "zcu104", image="i", input_shape=(1, 3))
    with pytest.raises(CompileError, match="not a folder"):
        vai.make_job(model, "zcu104", image="i", input_shape=(1, 3), calibration_data=tmp_path / "nope")


def test_compile_missing_image_is_typed_with_the_build_command(tmp_path):
    import subprocess

    from host.errors import CompilerImageMissingError, HostError
    from host.models import compile as vai

    job = vai.make_job(_onnx(tmp_path), "zcu104", image="edgegauge/vitis-ai-compile:0.1.0",
                       input_shape=(1, 3))
    calls = []

    def run(argv, **kw):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 125, "", "Error: no such image")

    with pytest.raises(CompilerImageMissingError) as err:
        vai.compile_model(["podman"], job, run=run)
    assert isinstance(err.value, HostError)
    assert "host image build zcu104 --variant compile" in err.value.hint
    assert calls == [["podman", "image", "inspect", "--format", "{{json .Config.Labels}}",
                      "edgegauge/vitis-ai-compile:0.1.0"]]


def test_compile_writes_the_recipe_with_a_stand_in_engine(tmp_path):
    import subprocess

    from host.models import compile as vai

    model = _onnx(tmp_path)
    job = vai.make_job(model, "zcu104", image="img:1", out=tmp_path / "xm", input_shape=(1, 3, 8, 8))
    labels = {"org.opencontainers.image.base.name":
              "docker.io/xilinx/vitis-ai-pytorch-cpu:ubuntu2004-3.0.0.106"}

    def run(argv, **kw):  # a stand-in engine: answers inspect, cat arch.json, and "compiles"
        if "inspect" in argv:
            return subprocess.CompletedProcess(argv, 0, json.dumps(labels), "")
        if "--entrypoint" in argv:
            return subprocess.CompletedProcess(argv, 0, '{"fingerprint":"0x101000016010407"}\n', "")
        (tmp_path / "xm" / "net.xmodel").write_bytes(b"xmodel")
        return subprocess.CompletedProcess(argv, 0, "wrote /out/net.xmodel", "")

    xmodel = vai.compile_model(["docker"], job, run=run)
    info = json.loads(xmodel.with_suffix(".info").read_text())
    import hashlib

    assert info["source"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert info["fingerprint"] == "0x101000016010407" and info["vai_version"] == "3.0.0.106"
    assert info["calibration"]["kind"] == "random" and "accuracy meaningless" in info["calibration"]["note"]
    assert info["command"] == vai.compile_argv(["docker"], job)


def test_zoo_compile_cli_missing_engine_and_missing_image(tmp_path, monkeypatch):
    import subprocess

    from typer.testing import CliRunner

    from host.cli import zoo as cli_zoo
    from host.models import compile as vai

    model = _onnx(tmp_path)
    res = CliRunner().invoke(cli_zoo.app, ["compile", str(model), "--engine", "no-such-engine-xyz"])
    assert res.exit_code == 1 and "not found on PATH" in res.output
    monkeypatch.setattr(vai.subprocess, "run",
                        lambda argv, **kw: subprocess.CompletedProcess(argv, 125, "", ""))
    res = CliRunner().invoke(cli_zoo.app, ["compile", str(model), "--engine", "sh", "--image", "x/y:1"])
    assert res.exit_code == 1, res.output
    assert "x/y:1 is not in" in res.output and "host image build zcu104 --variant compile" in res.output


#: the model provision_zcu104 installs when the inventory sets vitis_ai_models (the Vitis AI 3.0
#: model zoo's resnet50_pt for zcu102/zcu104/kv260; playbooks/roles/provision_zcu104/defaults/main.yml)
BOARD_XMODEL = "/usr/share/vitis_ai_library/models/resnet50_pt/resnet50_pt.xmodel"


def _board_run(board, argv, timeout=600):
    """``python -m runners ARGV`` on the board: its result document (exit 0 or 3 asserted)."""
    res = board.transport.run(board.command(argv), timeout=timeout)
    assert res.exit_code in (0, 3), res.stdout[-2000:] + res.stderr[-2000:]
    return json.loads(res.stdout)  # stdout is the runner's alone (issue 23 item 10)


def _known_input(info, seed=23):
    """``(float input, int8 bytes)``: int8 codes k from a seeded generator and x = k * 2**-fix_point,
    exactly representable, so the DPU gets k whatever the rounding mode."""
    k = np.random.default_rng(seed).integers(-128, 128, size=info["shape"], dtype=np.int64).astype(np.int8)
    return (k.astype(np.float64) * 2.0 ** -info["fix_point"]).astype(np.float32), k.tobytes()


def _vendor_outputs(board, xmodel, index, in_bin, n_out):
    """Outputs of Vitis AI's own runner, ``xdputil run XMODEL -i INDEX input.bin`` (Vitis-AI v3.0
    src/vai_library/usefultools/python/xdputil_component/run.py: raw int8 ``<batch>.<tensor>.bin``
    files in the working folder), as raw bytes, for the single-batch DPU tensors."""
    tmp = f"{board.workdir}/out/xdputil_run"
    res = board.transport.run(f"rm -rf {tmp} && mkdir -p {tmp} && cd {tmp} && "
                              f"xdputil run {xmodel} -i {index} {in_bin} >&2 && ls 0.*.bin", timeout=300)
    assert res.ok, res.stderr[-2000:]
    files = sorted(res.stdout.split())
    assert len(files) == n_out, files
    return [board.transport.read(f"{tmp}/{name}") for name in files]


@pytest.mark.board_hw
def test_vart_on_the_board(hw_board, tmp_path):
    """On a real ZCU104 (Vitis AI 3.0 board image), provisioned with ``vitis_ai_models`` set
    (``host provision``; the playbook installs :data:`BOARD_XMODEL`), ``-m board_hw --board NAME``:
    the vart backend runs the model single-stream and with 2 runners, on the DPU it was compiled for
    (``fingerprint_match``), and its outputs for a known input equal, bit for bit, those of Vitis
    AI's own ``xdputil run`` on the same int8 input, dequantized with the output's fix_point.
    NOT RUN in edgegauge's CI (no DPU there)."""
    from host.lab.board import Board, open_transport

    board = Board(hw_board, open_transport(hw_board))
    board.prepare()
    res = board.transport.run(f"test -f {BOARD_XMODEL}", timeout=60)
    assert res.ok, (f"{BOARD_XMODEL} is missing: set vitis_ai_models for this board in the inventory "
                    "(playbooks/roles/provision_zcu104/defaults/main.yml) and run `host provision`")
    res = board.transport.run(board.command(["backends"]), timeout=300)
    assert res.ok and "vart\tavailable" in res.stdout, res.stdout + res.stderr
    for threads in ("1", "2"):
        doc = _board_run(board, ["run", BOARD_XMODEL, "--backend", "vart", "--threads", threads,
                                 "--min-s", "2"])
        runtime = doc["runtime"]
        assert runtime["threads"] == int(threads) and runtime["dpu"].get("fingerprints"), runtime["dpu"]
        assert runtime["fingerprint_match"] is True, (runtime["subgraph"], runtime["dpu"])
    (inp,), outs = runtime["inputs"], runtime["outputs"]
    assert inp["shape"][0] == 1 and inp["dtype"] == "int8" and all(o["dtype"] == "int8" for o in outs)
    x, in_bytes = _known_input(inp)
    np.savez(tmp_path / "in.npz", **{inp["name"]: x[None]})
    (tmp_path / "in.bin").write_bytes(in_bytes)
    remote_npz = f"{board.workdir}/inputs/vart_known.npz"
    remote_bin = f"{board.workdir}/inputs/vart_known.bin"
    board.transport.put(tmp_path / "in.npz", remote_npz)
    board.transport.put(tmp_path / "in.bin", remote_bin)
    remote_out = f"{board.workdir}/out/vart_known_out.npz"
    doc = _board_run(board, ["run", BOARD_XMODEL, "--backend", "vart", "--min-s", "0.5",
                             "--fidelity-inputs", remote_npz, "--fidelity-out", remote_out])
    import io

    with np.load(io.BytesIO(board.transport.read(remote_out))) as saved:
        ours = {k: saved[k][0] for k in saved.files}
    vendor = _vendor_outputs(board, BOARD_XMODEL, doc["runtime"]["subgraph"]["index"], remote_bin, len(outs))
    for info, raw in zip(outs, vendor):
        expected = vb.dequantize(np.frombuffer(raw, dtype=np.int8).reshape(info["shape"][1:]),
                                 info["fix_point"])
        got = ours[info["name"]].reshape(info["shape"][1:])
        np.testing.assert_array_equal(got, expected)
        assert np.unique(got).size > 1  # a live output, not a constant buffer
