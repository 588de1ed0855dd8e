"""int8 and fp16 variants (host.models.precision) and `host zoo quantize` / `host zoo convert`."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from host.errors import QuantizationError
from host.models.precision import Recipe, precision_metrics, variant

MODELS = Path(__file__).parent / "fixtures" / "models"
TINY = MODELS / "tiny_cnn.onnx"  # Conv(3->8) + Relu + GAP + Flatten + Gemm(8->10), input 1x3x32x32


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: n for n in model.graph.node for out in n.output}


def _inits(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _x(dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((1, 3, 32, 32)).astype(dtype)


def _matmul_model(path: Path) -> Path:
    """x[1,16] @ W[16,32] -> Relu -> @ V[32,4]: a MatMul-only model for dynamic quantization."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "W")
    v = numpy_helper.from_array(rng.standard_normal((32, 4)).astype(np.float32), "V")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "V"], ["y"])]
    graph = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w, v])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


# --------------------------------------------------------------------------------------------
# int8 static


def test_int8_static_round_trip(tmp_path):
    path, info = variant(TINY, Recipe("int8"), tmp_path)
    assert path.parent == tmp_path and path.name.startswith("tiny_cnn.int8.") and path.suffix == ".onnx"
    q = onnx.load(path)
    ops = [n.op_type for n in q.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    producers, inits = _producers(q), _inits(q)
    for op in ("Conv", "Gemm"):
        node = next(n for n in q.graph.node if n.op_type == op)
        for slot in (0, 1):  # data and weight both through a DequantizeLinear
            assert producers[node.input[slot]].op_type == "DequantizeLinear", (op, slot)
        weight = inits[producers[node.input[1]].input[0]]
        assert weight.data_type == TensorProto.INT8, op
        scale = inits[producers[node.input[1]].input[1]]
        assert list(scale.dims) == [weight.dims[0]]  # per channel
    assert not any(t.data_type == TensorProto.FLOAT and len(t.dims) >= 2 for t in q.graph.initializer)

    info_file = path.with_suffix(".info")
    assert json.loads(info_file.read_text()) == info
    assert info["source_sha256"] == _sha(TINY)
    assert info["variant_sha256"] == _sha(path)
    assert info["variant_size_bytes"] == path.stat().st_size
    assert info["tool_versions"] == {"onnxruntime": ort.__version__, "onnx": onnx.__version__}
    assert info["tool"] == "onnxruntime.quantization.quantize_static" and info["format"] == "QDQ"
    assert info["precision"] == "int8" and info["method"] == "static" and info["per_channel"] is True
    assert info["calibration"]["method"] == "minmax" and info["calibration"]["samples"] == 32
    assert info["calibration"]["data"].startswith("random seed=0 n=32")
    assert info["calibration"]["data_sha256"] is None
    assert info["ops_left_in_float"] == []
    assert info["created_utc"].endswith("Z")

    ref, out = _run(TINY, _x()), _run(path, _x())
    assert out.shape == ref.shape == (1, 10)
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max()  # int8, but the same function


def test_second_call_is_a_cache_hit_and_does_not_requantize(tmp_path, monkeypatch):
    path, info = variant(TINY, Recipe("int8"), tmp_path)
    before = path.stat()
    import onnxruntime.quantization as oq

    def boom(*a, **k):
        raise AssertionError("re-quantized on a cache hit")

    monkeypatch.setattr(oq, "quantize_static", boom)
    monkeypatch.setattr(oq, "quantize_dynamic", boom)
    again, info2 = variant(TINY, Recipe("int8"), tmp_path)
    after = again.stat()
    assert again == path and info2 == info
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.with_suffix(".info").name])
    path.with_suffix(".info").unlink()  # the patch is live: a cache miss would quantize (and fail)
    with pytest.raises(QuantizationError, match="re-quantized on a cache hit"):
        variant(TINY, Recipe("int8"), tmp_path)


def test_changed_source_or_missing_info_makes_a_new_variant(tmp_path):
    src = shutil.copy(TINY, tmp_path / "m.onnx")
    cache = tmp_path / "cache"
    first, _ = variant(Path(src), Recipe("int8"), cache)
    model = onnx.load(src)
    w = next(t for t in model.graph.initializer if t.name == "w")
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 2, "w"))
    onnx.save(model, src)
    second, info = variant(Path(src), Recipe("int8"), cache)
    assert second != first and info["source_sha256"] == _sha(Path(src))
    second.with_suffix(".info").unlink()  # an incomplete cache entry is made again
    third, _ = variant(Path(src), Recipe("int8"), cache)
    assert third == second and third.with_suffix(".info").exists()


def test_calibration_methods_give_different_recipes(tmp_path):
    results = {c: variant(TINY, Recipe("int8", calibration=c), tmp_path) for c in
               ("minmax", "entropy", "percentile")}
    assert [info["slug"] for _, info in results.values()] == ["int8", "int8-ent", "int8-pct"]
    assert len({p for p, _ in results.values()}) == 3
    assert len({info["recipe_key"] for _, info in results.values()}) == 3
    assert [info["calibration"]["method"] for _, info in results.values()] == list(results)

    def act_scales(path):
        inits = _inits(onnx.load(path))
        return {n: numpy_helper.to_array(t).item() for n, t in inits.items()
                if n.endswith("_scale") and not t.dims}

    # percentile clips the activation ranges that minmax takes whole
    assert act_scales(results["minmax"][0]) != act_scales(results["percentile"][0])
    for path, _ in results.values():
        assert _run(path, _x()).shape == (1, 10)


def test_calibration_folder(tmp_path):
    data = tmp_path / "calib"
    data.mkdir()
    rng = np.random.default_rng(3)
    np.savez(data / "a.npz", input=(rng.standard_normal((5, 3, 32, 32)) * 10).astype(np.float32))
    np.save(data / "b.npy", rng.standard_normal((2, 3, 32, 32)).astype(np.float64))  # cast to float32
    recipe = Recipe("int8", calibration_data=str(data), calibration_samples=6)
    path, info = variant(TINY, recipe, tmp_path / "cache")
    cal = info["calibration"]
    assert cal["data"] == str(data.resolve()) and cal["files"] == ["a.npz", "b.npy"]
    assert cal["samples"] == 6 and len(cal["data_sha256"]) == 64
    assert info["slug"] == "int8-cal-n6"
    random_path, _ = variant(TINY, Recipe("int8", calibration_samples=6), tmp_path / "cache")
    scale = {p: numpy_helper.to_array(_inits(onnx.load(p))["input_scale"]).item()
             for p in (path, random_path)}
    assert scale[path] > 5 * scale[random_path]  # the data (x10) set the input range, not random data

    np.save(data / "b.npy", rng.standard_normal((2, 3, 32, 32)).astype(np.float32))  # new content
    changed, info2 = variant(TINY, recipe, tmp_path / "cache")
    assert changed != path and info2["calibration"]["data_sha256"] != cal["data_sha256"]


def test_calibration_folder_errors(tmp_path):
    with pytest.raises(QuantizationError, match="calibration data folder not found"):
        variant(TINY, Recipe("int8", calibration_data=str(tmp_path / "nope")), tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(QuantizationError, match="no .npy or .npz"):
        variant(TINY, Recipe("int8", calibration_data=str(empty)), tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "x.npy", np.zeros((4, 3, 16, 16), np.float32))
    with pytest.raises(QuantizationError, match=r"input 'input' .* has shape") as err:
        variant(TINY, Recipe("int8", calibration_data=str(bad)), tmp_path)
    assert str(bad) in str(err.value) and str(TINY) in str(err.value)
    keyed = tmp_path / "keyed"
    keyed.mkdir()
    np.savez(keyed / "x.npz", wrong=np.zeros((4, 3, 32, 32), np.float32))
    with pytest.raises(QuantizationError, match=r"no array for input\(s\) \['input'\]"):
        variant(TINY, Recipe("int8", calibration_data=str(keyed)), tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_dynamic_batch_model_calibrates_with_batch_one(tmp_path):
    path, info = variant(MODELS / "dynamic_hw.onnx", Recipe("int8"), tmp_path)
    x = np.random.default_rng(0).standard_normal((2, 3, 20, 24)).astype(np.float32)
    assert _run(path, x).shape == (2, 10)
    assert info["calibration"]["samples"] == 32


# --------------------------------------------------------------------------------------------
# int8 dynamic


def test_int8_dynamic_on_a_matmul_model(tmp_path):
    src = _matmul_model(tmp_path / "mm.onnx")
    path, info = variant(src, Recipe("int8", method="dynamic"), tmp_path / "cache")
    q = onnx.load(path)
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("MatMulInteger") == 2 and "MatMul" not in ops
    assert {t.data_type for t in q.graph.initializer if len(t.dims) == 2} == {TensorProto.INT8}
    assert info["slug"] == "int8-dyn" and info["method"] == "dynamic" and info["format"] == "QOperator"
    assert info["calibration"] is None and info["tool"] == "onnxruntime.quantization.quantize_dynamic"
    assert info["ops_left_in_float"] == ["Relu"]
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    ref, out = _run(src, x), _run(path, x)
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max()
    metrics = precision_metrics(path)
    assert metrics["integer_compute_share"] == 1.0 and metrics["params_by_dtype"]["int8"] == 16 * 32 + 32 * 4


# --------------------------------------------------------------------------------------------
# fp16


def test_fp16_keeps_io_fp32_by_default(tmp_path):
    path, info = variant(TINY, Recipe("fp16"), tmp_path)
    m = onnx.load(path)
    assert path.name.startswith("tiny_cnn.fp16.")
    assert {t.data_type for t in m.graph.initializer} == {TensorProto.FLOAT16}
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert info["keep_io_fp32"] is True and info["format"] == "fp16" and info["calibration"] is None
    assert info["tool"] == "onnxruntime.transformers.float16.convert_float_to_float16"
    ref, out = _run(TINY, _x()), _run(path, _x())
    assert out.dtype == np.float32
    assert np.abs(out - ref).max() < 1e-2 * np.abs(ref).max()


def test_fp16_io(tmp_path):
    path, info = variant(TINY, Recipe("fp16", keep_io_fp32=False), tmp_path)
    m = onnx.load(path)
    assert info["slug"] == "fp16-io16"
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    out = _run(path, _x(np.float16))
    assert out.dtype == np.float16
    assert np.abs(out.astype(np.float32) - _run(TINY, _x())).max() < 2e-2 * np.abs(out).max()


# --------------------------------------------------------------------------------------------
# recipes


def test_recipe_slugs_and_fp32():
    assert Recipe("fp32").slug() == ""
    assert Recipe("int8").slug() == "int8"
    assert Recipe("fp16").slug() == "fp16"
    assert Recipe("int8", method="dynamic").slug() == "int8-dyn"
    assert Recipe("int8", method="dynamic", calibration="entropy").slug() == "int8-dyn"  # unused field
    assert Recipe("int8", calibration="entropy", per_channel=False).slug() == "int8-ent-pt"
    assert Recipe("int8", seed=3).slug() == "int8-s3"
    assert variant(TINY, Recipe("fp32")) == (TINY, None)
    for bad in ({"precision": "int4"}, {"precision": "int8", "method": "qat"},
                {"precision": "int8", "calibration": "mse"}, {"precision": "int8", "calibration_samples": 0}):
        with pytest.raises(QuantizationError):
            Recipe(**bad)


# --------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("recipe", [Recipe("int8"), Recipe("fp16")], ids=["int8", "fp16"])
def test_corrupt_and_non_onnx_files(tmp_path, recipe):
    text = tmp_path / "notes.onnx"
    text.write_text('{"this": "is json, not onnx"}\n')
    for bad in (MODELS / "corrupt.onnx", MODELS / "truncated.onnx", text, tmp_path / "missing.onnx"):
        with pytest.raises(QuantizationError) as err:
            variant(bad, recipe, tmp_path / "cache")
        assert str(bad) in str(err.value) and err.value.hint
    with pytest.raises(QuantizationError, match="corrupt.onnx"):
        precision_metrics(MODELS / "corrupt.onnx")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_nothing_to_quantize_is_an_error_and_leaves_no_file(tmp_path):
    with pytest.raises(QuantizationError, match="nothing was quantized") as err:
        variant(MODELS / "identity.onnx", Recipe("int8"), tmp_path)
    assert "identity.onnx" in str(err.value)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# precision_metrics on a hand-built model


def _hand_built(path: Path) -> Path:
    """x -> Q -> DQ -> Conv(DQ(int8 w [4,2,3,3], per channel), DQ(int32 bias [4])) -> Flatten
    -> MatMul(Cast(fp16 M [100,3])) -> Relu."""
    rng = np.random.default_rng(0)
    t = numpy_helper.from_array
    inits = [
        t(np.float32(0.05), "xs"), t(np.int8(0), "xz"),
        t(rng.integers(-127, 127, (4, 2, 3, 3)).astype(np.int8), "wq"),
        t(np.full(4, 0.01, np.float32), "ws"), t(np.zeros(4, np.int8), "wz"),
        t(np.arange(4, dtype=np.int32), "bq"),
        t(np.full(4, 5e-4, np.float32), "bs"), t(np.zeros(4, np.int32), "bz"),
        t(rng.standard_normal((100, 3)).astype(np.float16), "m16"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("Cast", ["m16"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["f", "m"], ["y"]),
        helper.make_node("Relu", ["y"], ["out"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph(nodes, "hand", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_precision_metrics_on_a_hand_built_model(tmp_path):
    path = _hand_built(tmp_path / "hand.onnx")
    m = precision_metrics(path)
    # weights proper: wq 4*2*3*3=72 int8, bq 4 int32, m16 100*3=300 float16
    assert m["params_by_dtype"] == {"float16": 300, "int32": 4, "int8": 72}
    assert m["weight_bytes_by_dtype"] == {"float16": 600, "int32": 16, "int8": 72}
    assert m["params"] == 376 and m["weight_bytes"] == 688
    # quantization parameters: ws 4 f32 (16 B), wz 4 int8 (4 B), bs 4 f32 (16 B), bz 4 int32 (16 B);
    # the rank-0 xs/xz are operator settings, not counted
    assert (m["qparams"], m["qparam_bytes"]) == (16, 52)
    assert m["stored_weight_bytes"] == 740
    assert m["bits_per_weight"] == pytest.approx(8 * 688 / 376, abs=1e-4)
    assert m["effective_bits_per_weight"] == pytest.approx(8 * 740 / 376, abs=1e-4)
    # Conv has data and weight through DQ; MatMul's weight comes through a Cast
    assert (m["compute_ops"], m["qdq_compute_ops"], m["integer_compute_ops"]) == (2, 1, 0)
    assert m["qdq_compute_share"] == 0.5 and m["integer_compute_share"] == 0.0
    assert m["ops_left_in_float"] == ["Flatten", "MatMul", "Relu"]
    assert m["file_bytes"] == path.stat().st_size
    out = _run(path, np.ones((1, 2, 5, 5), np.float32))
    assert out.shape == (1, 3)


def test_precision_metrics_fp32_source():
    m = precision_metrics(TINY)
    # w 8*3*3*3=216 + b 8 + fw 10*8=80 + fb 10 = 314 float32
    assert m["params_by_dtype"] == {"float32": 314} and m["stored_weight_bytes"] == 314 * 4
    assert m["bits_per_weight"] == 32.0 and m["qdq_compute_share"] == 0.0
    assert m["ops_left_in_float"] == ["Conv", "Flatten", "Gemm", "GlobalAveragePool", "Relu"]


# --------------------------------------------------------------------------------------------
# CLI


def _cli():
    from typer.testing import CliRunner

    from host.cli import zoo as cli_zoo

    return CliRunner(), cli_zoo.app


def test_cli_quantize_and_convert(tmp_path):
    runner, app = _cli()
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = ["quantize", str(TINY), "--int8", "--calibrate", "percentile", "--samples", "4",
            "--cache-dir", str(cache), "-o", str(out), "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    path = Path(doc["variant"])
    assert path.parent == cache and path.exists() and doc["cache_hit"] is False
    assert doc["recipe"]["calibration"] == {"method": "percentile", "data": "random seed=0 n=4 "
                                            "(standard normal for float inputs, zeros for integer inputs)",
                                            "data_sha256": None, "samples": 4, "files": None}
    assert doc["metrics"]["params_by_dtype"]["int8"] == 216 + 80
    assert doc["source_metrics"]["params_by_dtype"] == {"float32": 314}
    copied = out / "tiny_cnn.int8-pct-n4.onnx"
    assert Path(doc["copied_to"]) == copied and _sha(copied) == _sha(path)
    assert json.loads(copied.with_suffix(".info").read_text())["variant_sha256"] == _sha(path)

    res = runner.invoke(app, args)
    assert res.exit_code == 0 and json.loads(res.stdout)["cache_hit"] is True

    res = runner.invoke(app, ["quantize", str(TINY), "--int8", "--per-tensor", "--cache-dir", str(cache)])
    assert res.exit_code == 0, res.output
    assert "int8-pt variant (new)" in res.stdout and "bits per weight" in res.stdout
    assert "op types left in float" in res.stdout and "1,557 ->" in res.stdout

    res = runner.invoke(app, ["convert", str(TINY), "--fp16", "--fp16-io", "--cache-dir", str(cache),
                              "-o", str(out / "half.onnx")])
    assert res.exit_code == 0, res.output
    assert "fp16-io16 variant (new)" in res.stdout
    half = onnx.load(out / "half.onnx")
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert (out / "half.info").exists()


def test_cli_errors(tmp_path):
    runner, app = _cli()
    res = runner.invoke(app, ["quantize", str(TINY), "--cache-dir", str(tmp_path)])
    assert res.exit_code == 2 and "--int8" in res.output
    res = runner.invoke(app, ["convert", str(TINY), "--cache-dir", str(tmp_path)])
    assert res.exit_code == 2 and "--fp16" in res.output
    res = runner.invoke(app, ["quantize", str(TINY), "--int8", "--calibrate", "mse"])
    assert res.exit_code == 2 and "mse" in res.output
    bad = MODELS / "corrupt.onnx"
    res = runner.invoke(app, ["quantize", str(bad), "--int8", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 1
    assert res.stderr.startswith(f"error: {bad}") and "hint:" in res.stderr
    res = runner.invoke(app, ["convert", str(tmp_path / "none.onnx"), "--fp16", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 1 and "none.onnx" in res.stderr


def test_static_int8_zero_points_are_all_zero_for_tensorrt(tmp_path):
    """TensorRT's explicit quantization takes symmetric Q/DQ only: every zero point is 0."""
    from host.models.precision import Recipe, variant

    path, info = variant(MODELS / "tiny_cnn.onnx", Recipe("int8"), tmp_path / "cache")
    graph = onnx.load(path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    zero_points = [n.input[2] for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                   and len(n.input) > 2]
    assert zero_points and all(not np.any(inits[z]) for z in zero_points if z in inits)
    assert "symmetric" in info["activation_type"]


def test_a_dotted_model_name_is_kept_whole_in_a_copied_variant(tmp_path):
    """`-o FOLDER` names the copy after the source model: mobilenet_v2_w0.25_cifar10 was cut at its
    first dot (mobilenet_v2_w0.fp16.onnx) before."""
    runner, app = _cli()
    dotted = tmp_path / "m" / "tiny_w0.25_v1.2.onnx"
    dotted.parent.mkdir()
    shutil.copyfile(TINY, dotted)
    res = runner.invoke(app, ["convert", str(dotted), "--fp16", "--cache-dir", str(tmp_path / "cache"),
                              "-o", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    copied = tmp_path / "out" / "tiny_w0.25_v1.2.fp16.onnx"
    assert Path(json.loads(res.stdout)["copied_to"]) == copied
    assert copied.exists() and copied.with_suffix(".info").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny_w0.25_v1.2.fp16.info",
                                                                   "tiny_w0.25_v1.2.fp16.onnx"]
