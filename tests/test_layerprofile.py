"""Per-layer profiles (`host bench --profile`, the runtimes' parsers, host/lab/layerprofile.py): the
parser on trace events written by hand, and a real ONNX Runtime profile end to end through `host report`."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from host.cli import app
from host.lab.layerprofile import by_op, summary
from runners.backends.ort.profile import METHOD as ORT_METHOD
from runners.backends.ort.profile import parse_chrome_trace
from runners.backends.tensorrt.trtexec import from_trtexec

FIX = Path(__file__).resolve().parent / "fixtures" / "models"
runner = CliRunner()


def node(name, op, dur, provider="CPUExecutionProvider"):
    return {"cat": "Node", "name": f"{name}_kernel_time", "dur": dur, "ph": "X",
            "args": {"op_name": op, "provider": provider}}


def test_rows_are_medians_per_node_with_shares_of_their_sum():
    events = [{"cat": "Session", "name": "model_run", "dur": 999},  # not a kernel
              node("conv1", "Conv", 10), node("conv1", "Conv", 30), node("conv1", "Conv", 20),
              node("fc", "Gemm", 5), node("fc", "Gemm", 100), node("fc", "Gemm", 5),
              node("relu", "Relu", 5), {"cat": "Node", "name": "conv1_fence_before", "dur": 1}]
    rows = parse_chrome_trace(events)
    assert [r["node"] for r in rows] == ["conv1", "fc", "relu"]
    assert [r["median_us"] for r in rows] == [20.0, 5.0, 5.0]  # 100 µs once does not move fc
    assert [r["calls"] for r in rows] == [3, 3, 1] and rows[1]["total_us"] == 110.0
    assert [round(r["share"], 6) for r in rows] == [round(20 / 30, 6), round(5 / 30, 6), round(5 / 30, 6)]
    ops = {o["op"]: o for o in by_op(rows + [dict(rows[0], node="conv2")])}
    assert ops["Conv"]["nodes"] == 2 and ops["Conv"]["median_us"] == 40.0
    assert summary(rows, ORT_METHOD, top=2)["top"] == rows[:2]


def test_a_trace_that_is_not_a_list_is_refused():
    with pytest.raises(ValueError, match="list of trace events"):
        parse_chrome_trace({"traceEvents": []})


def test_bench_profile_stores_the_layers_beside_the_cell_and_report_shows_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    res = runner.invoke(app, ["bench", str(FIX / "tiny_cnn.onnx"), "--device", "local", "--results",
                              str(tmp_path / "r"), "--campaign", "p", "--profile", "--warmup-iters", "2",
                              "--warmup-s", "0", "--min-iters", "10", "--min-s", "0.02", "--target-ci", "0.5",
                              "--threads", "1", "--json"])
    assert res.exit_code in (0, 3), res.output
    (cell,) = json.loads(res.stdout)
    prof = cell["profile"]
    assert "error" not in prof, prof
    sidecar = tmp_path / "r" / "p" / "local" / prof["file"]
    layers = json.loads(sidecar.read_text())["layers"]
    assert {"Conv", "Gemm"} <= {r["op"] for r in layers}  # the model's compute ops, as ONNX Runtime ran them
    assert sum(r["share"] for r in layers) == pytest.approx(1.0)
    assert all(r["calls"] >= 20 for r in layers)  # first call + warm-up + the 20-iteration loop
    shown = runner.invoke(app, ["report", str(tmp_path / "r" / "p")], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "layers of tiny_cnn (ort-b1-t1)" in shown.stdout
    assert "median µs" in shown.stdout and "Gemm" in shown.stdout


def test_tensorrt_layers_come_from_a_recorded_trtexec_profile():
    from runners.backends.tensorrt.trtexec import parse_profile

    doc = json.loads((FIX.parent / "trtexec" / "resnet18_fp16.profile.json").read_text())
    rows = from_trtexec(parse_profile(doc))
    layers = [r for r in doc if isinstance(r, dict) and "name" in r]
    assert len(rows) == len(layers)
    top = max(layers, key=lambda r: r.get("medianMs", r["averageMs"]))
    assert rows[0]["node"] == top["name"]
    assert rows[0]["median_us"] == pytest.approx(1000 * top.get("medianMs", top["averageMs"]))
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no layer profile"):
        from_trtexec({})


def test_a_backend_without_a_profiler_is_a_layer_profile_error_not_a_memory_one(tmp_path):
    import hashlib

    from host.errors import LayerProfileError, MemoryProfileError
    from host.lab.benchconfig import BenchConfig
    from host.lab.board import Board, open_transport
    from host.lab.inventory import local_device
    from runners.core import Policy

    device = local_device(str(tmp_path / "work"))
    board = Board(device, open_transport(device))
    board.prepare()
    model = FIX / "tiny_cnn.onnx"
    config = BenchConfig(backend="null", timeout_s=60, policy=Policy(
        warmup_min_iterations=1, warmup_min_s=0.0, min_iterations=5, min_duration_s=0.01, cov_max=100.0))
    with pytest.raises(LayerProfileError, match="wrote no layer profile") as err:
        board.profile_layers(model, hashlib.sha256(model.read_bytes()).hexdigest(), config)
    assert not isinstance(err.value, MemoryProfileError) and "--profile" in err.value.hint
