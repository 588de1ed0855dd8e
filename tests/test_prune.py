"""host.models.prune and ``host zoo prune``: ratios exact on constructed weights (the weights that go
worked out by hand below), channel-pruned models that run in ONNX Runtime at their declared shapes
and equal a hand-built reference, recipes and cache keys, a bad ratio refused with nothing written,
and a pruned model quantized to int8. The expected-vs-achieved speedup (host/analysis/compression.py)
is checked on hand-written cells with hand-worked numbers."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from host.analysis.compression import achieved
from host.analysis.stack import stack_rows
from host.cli.main import app
from host.errors import PruneError, PruneRatioError
from host.models import prune

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "examples" / "models"


def _model(nodes, inp, out, inits, path: Path | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, inp)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k)
                               for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, str(path))
    return model


def _arrays(model) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _run(model, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


# --------------------------------------------------------------------------------------------
# unstructured


W = [[[[0.5, -0.1]]], [[[0.4, -0.7]]]]  # Conv weight 2x1x1x2
B = [[0.2, -0.05], [0.9, 0.0], [-0.4, 0.6]]  # Gemm weight 3x2 (transB)


def _conv_gemm():
    nodes = [helper.make_node("Conv", ["x", "W", "cb"], ["c"], name="conv"),
             helper.make_node("Flatten", ["c"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "B", "gb"], ["y"], name="fc", transB=1)]
    return _model(nodes, [1, 1, 1, 2], [1, 3], {"W": W, "cb": [0.01, 0.02], "B": B, "gb": [0.0, 0.0, 0.0]})


def test_unstructured_half_zeroes_the_five_smallest_ties_in_graph_order():
    # |w| sorted over both tensors (10 elements): 0.0 B[1,1], 0.05 B[0,1], 0.1 W[0,0,0,1], 0.2 B[0,0],
    # 0.4 W[1,0,0,0], 0.4 B[2,0] (the tie: W comes first in the graph), 0.5, 0.6, 0.7, 0.9.
    # floor(0.5 * 10) = 5 go: the first five; biases are not weights here and stay.
    pruned, rows = prune.prune_unstructured(_conv_gemm(), 0.5)
    a = _arrays(pruned)
    np.testing.assert_array_equal(a["W"], np.array([[[[0.5, 0.0]]], [[[0.0, -0.7]]]], np.float32))
    np.testing.assert_array_equal(a["B"], np.array([[0.0, 0.0], [0.9, 0.0], [-0.4, 0.6]], np.float32))
    np.testing.assert_array_equal(a["cb"], np.array([0.01, 0.02], np.float32))
    assert [(r["node"], r["params"], r["nonzeros"], r["density"]) for r in rows] == [
        ("conv", 4, 2, 0.5), ("fc", 6, 3, 0.5)]


def test_unstructured_ratio_0_6_and_0_9_take_the_next_in_order():
    a = _arrays(prune.prune_unstructured(_conv_gemm(), 0.6)[0])  # 6 go: also B[2,0] (-0.4)
    assert a["B"][2, 0] == 0 and a["B"][2, 1] == np.float32(0.6)
    a = _arrays(prune.prune_unstructured(_conv_gemm(), 0.9)[0])  # 9 go: only 0.9 stays
    assert np.count_nonzero(a["W"]) == 0 and np.count_nonzero(a["B"]) == 1 and a["B"][1, 0] == np.float32(0.9)


def test_unstructured_on_a_bundled_model_reaches_the_ratio_exactly():
    proto = onnx.load(str(MODELS / "mobilenet_v2_w0.25_cifar10.onnx"))
    _, summary = prune.prune_model(proto, prune.PruneRecipe("unstructured", 0.9))
    assert summary["nonzeros"] == summary["params"] - math.floor(0.9 * summary["params"])


# --------------------------------------------------------------------------------------------
# channels

# conv A (4 filters, 2 inputs, 3x3): filter L1 norms in the ratio 1 : 0.1 : 2 : 0.2 -> 0.5 drops 1 and 3.
# conv B (3 filters over A's 4 channels, 1x1): L1 3 : 0.5 : 1 -> floor(0.5 * 3) = 1 drops filter 1.
RNG = np.random.default_rng(7)
WA = np.abs(RNG.normal(size=(4, 2, 3, 3))).astype(np.float32) + 0.1
WA /= np.abs(WA).sum(axis=(1, 2, 3), keepdims=True)
WA *= np.array([1.0, 0.1, 2.0, 0.2], np.float32)[:, None, None, None]
WA[:, 1] *= -1  # signs do not matter to L1
BA = np.array([0.1, -0.2, 0.3, 0.4], np.float32)
WB = np.abs(RNG.normal(size=(3, 4, 1, 1))).astype(np.float32) + 0.1
WB /= np.abs(WB).sum(axis=(1, 2, 3), keepdims=True)
WB *= np.array([3.0, 0.5, 1.0], np.float32)[:, None, None, None]
BB = np.array([0.05, 0.06, -0.07], np.float32)
G = RNG.normal(size=(5, 3)).astype(np.float32)
GB = RNG.normal(size=(5,)).astype(np.float32)


def _tiny_net(wa, ba, wb, bb, g, gb):
    nodes = [helper.make_node("Conv", ["x", "WA", "BA"], ["a"], name="A", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "WB", "BB"], ["b"], name="B"),
             helper.make_node("GlobalAveragePool", ["b"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "G", "GB"], ["y"], name="fc", transB=1)]
    return _model(nodes, [1, 2, 4, 4], [1, 5], {"WA": wa, "BA": ba, "WB": wb, "BB": bb, "G": g, "GB": gb})


def test_channels_half_equals_the_hand_built_smaller_net():
    pruned, rows, skipped = prune.prune_channels(_tiny_net(WA, BA, WB, BB, G, GB), 0.5)
    keep_a, keep_b = [0, 2], [0, 2]  # worked out above
    ref = _tiny_net(WA[keep_a], BA[keep_a], WB[keep_b][:, keep_a], BB[keep_b], G[:, keep_b], GB)
    assert skipped == []
    assert [(r["node"], r["channels"], r["kept"]) for r in rows] == [("A", 4, 2), ("B", 3, 2)]
    got = {n.name: list(n.input) for n in pruned.graph.node}
    a = _arrays(pruned)
    for node, slot, want in (("A", 1, WA[keep_a]), ("A", 2, BA[keep_a]), ("B", 1, WB[keep_b][:, keep_a]),
                             ("B", 2, BB[keep_b]), ("fc", 1, G[:, keep_b]), ("fc", 2, GB)):
        np.testing.assert_array_equal(a[got[node][slot]], want)
    x = RNG.normal(size=(1, 2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(pruned, x), _run(ref, x), rtol=1e-5, atol=1e-6)
    assert set(a) == {got[n][s] for n in ("A", "B", "fc") for s in (1, 2)}  # the old tensors are gone


def _bn_dw_net(wa, bn, wd, bd, wb):
    """conv A -> BatchNormalization -> Relu -> depthwise 3x3 (group = A's channels) -> conv B (1x1)."""
    c = wa.shape[0]
    nodes = [helper.make_node("Conv", ["x", "WA"], ["a"], name="A", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["a", "s", "b", "m", "v"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "WD", "BD"], ["d"], name="dw", group=c, pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["d", "WB"], ["y"], name="B")]
    return _model(nodes, [1, 2, 4, 4], [1, wb.shape[0], 4, 4],
                  {"WA": wa, "s": bn[0], "b": bn[1], "m": bn[2], "v": bn[3], "WD": wd, "BD": bd, "WB": wb})


def test_channels_prune_batchnorm_and_depthwise_along_with_their_conv():
    # A's filters L1 in the ratio 1 : 0.1 : 2 : 0.2 (WA above) -> 0.5 keeps 0 and 2 of A, of the
    # BatchNormalization's four tensors and of the depthwise conv (group 4 -> 2), and B's inputs 0, 2.
    # B itself feeds the graph output: skipped.
    bn = RNG.uniform(0.5, 1.5, size=(4, 4)).astype(np.float32)
    wd = RNG.normal(size=(4, 1, 3, 3)).astype(np.float32)
    bd = RNG.normal(size=(4,)).astype(np.float32)
    wb = RNG.normal(size=(3, 4, 1, 1)).astype(np.float32)
    pruned, rows, skipped = prune.prune_channels(_bn_dw_net(WA, bn, wd, bd, wb), 0.5)
    keep = [0, 2]
    ref = _bn_dw_net(WA[keep], bn[:, keep], wd[keep], bd[keep], wb[:, keep])
    assert [(r["node"], r["kept"]) for r in rows] == [("A", 2)]
    assert skipped == [{"node": "B", "reason": "its output reaches the graph output 'y'"}]
    dw = next(n for n in pruned.graph.node if n.name == "dw")
    assert helper.get_attribute_value(next(a for a in dw.attribute if a.name == "group")) == 2
    x = RNG.normal(size=(1, 2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(pruned, x), _run(ref, x), rtol=1e-5, atol=1e-5)


def _declared_shapes_hold(model: onnx.ModelProto, x: np.ndarray) -> int:
    """Expose every inferred tensor as an output, run ORT, compare each shape; returns how many."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    probe = onnx.ModelProto.FromString(inferred.SerializeToString())
    declared = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                for v in [*inferred.graph.value_info, *inferred.graph.output]}
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in declared)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {sess.get_inputs()[0].name: x})
    for name, value in zip(declared, outs):
        assert list(value.shape) == declared[name], name
    return len(declared)


@pytest.mark.parametrize("stem", ["digits_cnn", "mobilenet_v2_w0.25_cifar10", "squeezenet1_1_imagenet"])
def test_channel_pruned_bundled_models_run_at_their_declared_shapes(stem):
    proto = onnx.load(str(MODELS / f"{stem}.onnx"))
    pruned, rows, skipped = prune.prune_channels(proto, 0.5)
    assert rows and all(r["kept"] == r["channels"] - math.floor(0.5 * r["channels"]) for r in rows)
    assert pruned.ByteSize() < proto.ByteSize()
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).normal(size=dims).astype(np.float32)
    assert _declared_shapes_hold(pruned, x) > 5
    if stem != "digits_cnn":  # residual Adds (MobileNetV2), Concats and the classifier conv (SqueezeNet)
        whys = ("Add (", "Concat (", "graph output 'logits'")
        assert skipped and all(any(why in s["reason"] for why in whys) for s in skipped)


def test_channel_pruned_digits_equals_the_dense_model_with_those_channels_zeroed():
    # A second, independent reference: zeroing a conv's dropped filters and biases makes ReLU and
    # MaxPool pass zeros on, so the dense model then computes what the smaller one does.
    proto = onnx.load(str(MODELS / "digits_cnn.onnx"))
    pruned, _, _ = prune.prune_channels(proto, 0.5)
    zeroed = onnx.ModelProto.FromString(proto.SerializeToString())
    inits = {t.name: t for t in zeroed.graph.initializer}
    for conv in [n for n in zeroed.graph.node if n.op_type == "Conv"]:
        w, b = (numpy_helper.to_array(inits[conv.input[i]]).copy() for i in (1, 2))
        l1 = np.abs(w).reshape(w.shape[0], -1).sum(axis=1)
        drop = np.argsort(l1, kind="stable")[: w.shape[0] // 2]
        w[drop], b[drop] = 0, 0
        inits[conv.input[1]].CopyFrom(numpy_helper.from_array(w, conv.input[1]))
        inits[conv.input[2]].CopyFrom(numpy_helper.from_array(b, conv.input[2]))
    xs = np.load(REPO / "examples" / "datasets" / "digits" / "inputs.npy")[:20]
    for x in xs:
        np.testing.assert_allclose(_run(pruned, x[None]), _run(zeroed, x[None]), rtol=1e-4, atol=1e-4)


def test_channels_refuses_a_model_with_nothing_prunable():
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
             helper.make_node("Add", ["c", "c"], ["y"], name="add")]
    with pytest.raises(PruneError, match="reaches Add"):
        prune.prune_channels(_model(nodes, [1, 1, 2, 2], [1, 2, 2, 2], {"W": np.ones((2, 1, 1, 1))}), 0.5)


# --------------------------------------------------------------------------------------------
# recipes, cache, CLI


def test_variant_recipe_and_cache_key(tmp_path):
    src = tmp_path / "m.onnx"
    onnx.save(_conv_gemm(), str(src))
    cache = tmp_path / "cache"
    path, info = prune.variant(src, prune.PruneRecipe("unstructured", 0.5), cache)
    assert path.parent == cache and path.name.startswith("m.pu50.") and path.suffix == ".onnx"
    assert json.loads(path.with_suffix(".info").read_text()) == info
    assert info["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert info["variant_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (info["method"], info["ratio"], info["sparsity"]) == ("unstructured", 0.5, 0.5)
    assert (info["params_before"], info["nonzeros_before"], info["nonzeros"]) == (10, 9, 5)
    assert set(info["tool_versions"]) == {"numpy", "onnx"} and info["skipped"] == []
    assert [r["density"] for r in info["layers"]] == [0.5, 0.5]
    mtime = path.stat().st_mtime_ns
    again, info2 = prune.variant(src, prune.PruneRecipe("unstructured", 0.5), cache)
    assert again == path and info2 == info and path.stat().st_mtime_ns == mtime  # a hit: not rewritten
    other = {prune.variant(src, prune.PruneRecipe("unstructured", 0.6), cache)[0],
             prune.variant(src, prune.PruneRecipe("channels", 0.5), cache)[0]}
    assert len(other | {path}) == 3
    onnx.save(_tiny_net(WA, BA, WB, BB, G, GB), str(src))  # a changed source: a new key
    assert prune.variant(src, prune.PruneRecipe("unstructured", 0.5), cache)[0] != path
    assert prune.recipe_key("a" * 64, prune.PruneRecipe("channels", 0.5)) == \
        prune.recipe_key("a" * 64, prune.PruneRecipe("channels", 0.50))


@pytest.mark.parametrize("method, ratio", [
    ("unstructured", 0.49), ("unstructured", 0.995), ("channels", 0.95), ("channels", 0.0),
    ("unstructured", float("nan")), ("magnitude", 0.9)])
def test_recipe_refuses_a_bad_ratio_or_method(method, ratio):
    with pytest.raises(PruneRatioError):
        prune.PruneRecipe(method, ratio)


@pytest.mark.parametrize("args", [["--unstructured", "0.3"], ["--channels", "0.99"], [],
                                  ["--unstructured", "0.9", "--channels", "0.5"]])
def test_cli_bad_ratio_is_a_usage_error_and_writes_nothing(tmp_path, args):
    src = tmp_path / "m.onnx"
    onnx.save(_conv_gemm(), str(src))
    result = CliRunner().invoke(app, ["zoo", "prune", str(src), *args, "--cache-dir", str(tmp_path / "cache"),
                                      "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "ratio must be in" in result.output or "say one of" in result.output
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_cli_prunes_then_quantize_takes_the_pruned_model(tmp_path):
    src = tmp_path / "digits_cnn.onnx"
    shutil.copyfile(MODELS / "digits_cnn.onnx", src)
    cache, out = tmp_path / "cache", tmp_path / "out"
    result = CliRunner().invoke(app, ["zoo", "prune", str(src), "--unstructured", "0.9", "--cache-dir",
                                      str(cache), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    pruned = out / "digits_cnn.pu90.onnx"
    assert doc["copied_to"] == str(pruned) and pruned.with_suffix(".info").exists()
    assert doc["cache_hit"] is False and doc["recipe"]["sparsity"] == pytest.approx(0.9, abs=1e-4)
    result = CliRunner().invoke(app, ["zoo", "quantize", str(pruned), "--int8", "--cache-dir", str(cache),
                                      "--json"])
    assert result.exit_code == 0, result.output
    q = json.loads(result.output[result.output.index("{"):])
    assert q["recipe"]["source_sha256"] == doc["recipe"]["variant_sha256"]
    assert q["metrics"]["qdq_compute_share"] == 1.0


# --------------------------------------------------------------------------------------------
# expected vs achieved speedup


def _cell(model, sha, p50, ci, nonzeros, flops, info=None, config="ort-b1", precision=None):
    return {"status": "ok", "cell": {"device": "local", "model_stem": model, "config": config},
            "metrics": {"sha256": sha, "nonzeros": nonzeros, "flops": flops},
            "latency": {"latency_ms_p50": p50, "latency_ms_p50_ci95": ci}, "info": info,
            **({"precision": precision} if precision else {})}


INT8 = {"name": "int8", "recipe": {"schema": "edgegauge.variant/1", "precision": "int8", "slug": "int8"}}
UNTUNED = {"name": "tvm-untuned",
           "recipe": {"compile_options": {"codegen": "untuned"}, "source_variant": None}}


def test_stack_rows_hand_worked():
    dense = _cell("m", "d" * 64, 10.0, [9.0, 11.0], 1000, 4000)
    recipe = {"schema": "edgegauge.prune/1", "source_sha256": "d" * 64}
    pu = _cell("m.pu90", "u" * 64, 5.0, [4.5, 5.5], 100, 4000,
               {**recipe, "method": "unstructured", "ratio": 0.9})
    pc = _cell("m.pc50", "c" * 64, 8.0, None, 600, 1600, {**recipe, "method": "channels", "ratio": 0.5})
    # the int8 variant of the pruned model: its metrics are its source's (the pruned model's)
    pu8 = dict(pu, cell={**pu["cell"], "config": "ort-b1-int8"}, precision=INT8)
    other = _cell("x", "x" * 64, 1.0, None, 10, 10,
                  {**recipe, "source_sha256": "z" * 64, "method": "channels", "ratio": 0.5})  # no dense cell
    rows = {(r["model"], r["precision"]): r for r in stack_rows([dense, pu, pc, pu8, other])}
    assert set(rows) == {("m", "fp32"), ("m.pu90", "fp32"), ("m.pc50", "fp32"), ("m.pu90", "int8")}
    u = rows[("m.pu90", "fp32")]
    # expected 1000/100 = 10; achieved 10/5 = 2; log half-widths: ln(10/9) = 0.1053605 with ln(5.5/5) =
    # 0.0953102 -> sqrt(sum of squares) = 0.1420735 down, the same two the other way up:
    # 2 * exp(-0.1420735) = 1.735115, 2 * exp(0.1420735) = 2.305323
    assert (u["expected"], u["expected_of"], u["achieved"], u["pruning"]) == (10.0, "nonzeros", 2.0,
                                                                               "unstructured 0.9")
    assert u["achieved_ci95"] == pytest.approx([1.735115, 2.305323], abs=2e-6)
    assert u["share"] == pytest.approx(0.2)
    assert u["share_ci95"] == pytest.approx([0.1735115, 0.2305323], abs=2e-7)
    c = rows[("m.pc50", "fp32")]
    assert (c["expected"], c["expected_of"], c["achieved"], c["achieved_ci95"]) == (2.5, "flops", 1.25, None)
    assert c["share"] == pytest.approx(0.5) and c["share_ci95"] is None
    # pruned and int8: against the dense fp32 cell of its stack (ort-b1), 10 x 32/8 = 40 expected
    q = rows[("m.pu90", "int8")]
    assert (q["stack"], q["expected"], q["expected_of"]) == ("ort-b1", 40.0, "nonzerosxbits")
    assert q["achieved"] == 2.0
    assert q["share"] == pytest.approx(0.05)
    base = rows[("m", "fp32")]
    assert (base["expected"], base["achieved"], base["vs_reference"]) == (None, 1.0, 1.0)
    assert stack_rows([pu, pc]) == []  # no dense cell: nothing to compare against
    bad = dict(pu, latency={"latency_ms_p50": 5.0, "latency_ms_p50_ci95": [5.5, 6]})  # p50 outside its CI
    assert achieved(dense, bad)[1] is None
    for absurd in (-1e308, 0.0, float("inf"), None):  # a hand-edited p50: no ratio, no row with a sign flip
        assert achieved(dense, dict(pu, latency={"latency_ms_p50": absurd}))[0] is None


def test_a_compiled_stack_is_compared_with_its_own_dense_cell_and_with_the_reference():
    dense = _cell("m", "d" * 64, 10.0, None, 1000, 4000)
    tvm = _cell("m", "d" * 64, 40.0, None, 1000, 4000, config="tvm-b1-tvm-untuned", precision=UNTUNED)
    pc = _cell("m.pc50", "c" * 64, 20.0, None, 600, 1600, config="tvm-b1-tvm-untuned", precision=UNTUNED,
               info={"schema": "edgegauge.prune/1", "source_sha256": "d" * 64, "method": "channels",
                     "ratio": 0.5})
    rows = stack_rows([tvm, pc, dense])
    assert [(r["model"], r["stack"]) for r in rows] == [("m", "ort-b1"), ("m", "tvm-b1/untuned"),
                                                         ("m.pc50", "tvm-b1/untuned")]
    assert {r["reference_stack"] for r in rows} == {"ort-b1"}  # the stack without a compile tag
    t, p = rows[1], rows[2]
    assert (t["expected"], t["achieved"], t["vs_reference"]) == (None, 1.0, 0.25)  # 10 / 40
    # 40 / 20 against its own dense cell, 10 / 20 against the reference
    assert (p["expected"], p["achieved"], p["share"], p["vs_reference"]) == (2.5, 2.0, 0.8, 0.5)


def test_one_campaign_pairs_use_within_campaign_intervals_and_prefer_their_own_dense_cell():
    recipe = {"schema": "edgegauge.prune/1", "source_sha256": "d" * 64, "method": "unstructured",
              "ratio": 0.9}

    def at(cell, campaign, within, starts=("2026-12-08T01:00:00Z", "2026-12-08T01:00:09Z")):
        cell["cell"]["campaign"] = campaign
        cell["latency"]["latency_ms_p50_ci95_within"] = within
        cell["repetitions"] = {"processes": [{"start_utc": s, "wall_s": 2.0} for s in starts]}
        return cell

    # the campaign-wide intervals are wide (a whole campaign may move); within one campaign they are not
    old = at(_cell("m", "d" * 64, 20.0, [10.0, 40.0], 1000, 4000), "c1", [19.0, 21.0])
    dense = at(_cell("m", "d" * 64, 10.0, [5.0, 20.0], 1000, 4000), "c2", [9.0, 11.0])
    pruned = at(_cell("m.pu90", "u" * 64, 5.0, [2.5, 10.0], 100, 4000, recipe), "c2", [4.5, 5.5])
    row = _pruned_row(stack_rows([dense, old, pruned]))  # c2's dense cell, though c1's is listed later
    assert row["achieved"] == 2.0 and row["interval"] == "latency_ms_p50_ci95_within"
    assert row["achieved_ci95"] == pytest.approx([1.735115, 2.305323], abs=2e-6)  # as hand-worked above
    # the same campaign, but a later run (a resume, another runtime's command): not interleaved with the
    # dense cell, so the campaign-level term does not cancel: the campaign-wide intervals
    later = at(copy.deepcopy(pruned), "c2", [4.5, 5.5], ("2026-12-08T01:00:20Z", "2026-12-08T01:00:30Z"))
    row = _pruned_row(stack_rows([dense, old, later]))
    assert row["achieved"] == 2.0 and row["interval"] == "latency_ms_p50_ci95"
    # ln 2 down and up on each side (5/2.5, 20/10): as below, around 2: 2 / 2.665144, 2 * 2.665144
    assert row["achieved_ci95"] == pytest.approx([0.750428, 5.330288], abs=2e-5)
    pruned["cell"]["campaign"] = "c3"  # another campaign: the last dense cell listed, campaign level in
    row = _pruned_row(stack_rows([dense, old, pruned]))
    assert row["achieved"] == 4.0 and row["interval"] == "latency_ms_p50_ci95"
    # ln 2 down and up on each side: sqrt(2) ln 2 = 0.980258, exp(0.980258) = 2.665144
    # -> 4 / 2.665144 = 1.500857, 4 * 2.665144 = 10.660576
    assert row["achieved_ci95"] == pytest.approx([1.500857, 10.660576], abs=2e-5)


def _pruned_row(rows):
    (row,) = [r for r in rows if r["pruning"] != "dense"]
    return row


def test_stack_table_fits_100_columns():
    from rich.console import Console

    from host.cli.stack_table import stack_tables

    long = "mobilenet_v2_w0.25_cifar10"
    cells = [_cell(long, "d" * 64, 1.234, [1.2, 1.3], 240256, 1e7, config="ort-b1-x"),
             _cell(f"{long}.pu90", "u" * 64, 1.1, [1.05, 1.2], 24026, 1e7, config="ort-b1-x-int8",
                   precision=INT8,
                   info={"schema": "edgegauge.prune/1", "source_sha256": "d" * 64, "method": "unstructured",
                         "ratio": 0.9})]
    console = Console(width=100, record=True, force_terminal=False)
    for table in stack_tables(cells):
        console.print(table)
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 100
    # 1.234 / 1.1 = 1.1218; ln(1.234/1.2) = 0.027939, ln(1.2/1.1) = 0.087011 -> 0.091384 down: 1.0238;
    # ln(1.3/1.234) = 0.052104, ln(1.1/1.05) = 0.046520 -> 0.069849 up: 1.2030; expected 10 x 4 = 40: 2.8 %
    for want in ("40.0x W·b", "1.12x (3%)", "[1.02, 1.20]", "unstructured 0.9 int8", "baseline"):
        assert want in text, want
    assert stack_tables(cells[:1]) == []
