"""The runner's untimed evaluation (issue 13): output fidelity (``--fidelity-inputs``/``--fidelity-out``)
and accuracy on a labelled set (``--dataset``), and the committed trained digits example.

Every expected value is computed here independently: the identity's outputs are its inputs, hand-built
graphs' outputs are numpy arithmetic, top-k is counted by rank, and the digits model is evaluated with
``onnxruntime.InferenceSession`` directly.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from runners.cli import main as runner_main
from runners.core import Policy, RunConfig, run
from runners.errors import EXIT_OK

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "fixtures" / "models"
DIGITS_MODEL = ROOT / "examples" / "models" / "digits_cnn.onnx"
DIGITS_DATA = ROOT / "examples" / "datasets" / "digits"
FAST = Policy(warmup_min_iterations=1, warmup_min_s=0.0, min_iterations=5, min_duration_s=0.0,
              max_duration_s=5.0, cov_max=100.0, drift_max=100.0, mode_share_max=1.0, throttle_max=100.0)
FAST_ARGS = ["--warmup-iters", "1", "--warmup-s", "0", "--min-iters", "5", "--min-s", "0",
             "--cov-max", "100", "--drift-max", "100", "--mode-share-max", "1", "--throttle-max", "100"]


def _run(model, **kw) -> dict:
    return run(RunConfig(backend=kw.pop("backend", "ort"), model=str(model) if model else None,
                         policy=FAST, **kw))


def _save_model(graph, path: Path, opset: int = 17) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _two_output_model(path: Path) -> Path:
    """x (1, 3) -> doubled = 2x, shifted = x + 1."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in ("doubled", "shifted")]
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    nodes = [helper.make_node("Mul", ["x", "two"], ["doubled"]),
             helper.make_node("Add", ["x", "one"], ["shifted"])]
    return _save_model(helper.make_graph(nodes, "two_out", [x], outs, [two, one]), path)


def _matmul_model(path: Path, weights: np.ndarray, elem=TensorProto.FLOAT, batch="N") -> Path:
    """x (batch, D) -> scores = x @ W, (batch, C)."""
    d, c = weights.shape
    x = helper.make_tensor_value_info("x", elem, [batch, d])
    y = helper.make_tensor_value_info("scores", elem, [batch, c])
    w = numpy_helper.from_array(weights, "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["scores"])], "mm", [x], [y], [w])
    return _save_model(graph, path)


def _fp16_identity(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id16", [x], [y])
    return _save_model(graph, path)


def _dataset(folder: Path, inputs: np.ndarray, labels: np.ndarray, meta=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "inputs.npy", inputs)
    np.save(folder / "labels.npy", labels)
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def _topk_by_rank(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label's score is beaten by fewer than k classes (no ties in the data)."""
    own = scores[np.arange(len(labels)), labels]
    rank = (scores > own[:, None]).sum(axis=1)
    return float(np.mean(rank < k))


def _sha256(*paths) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(Path(p).read_bytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ fidelity


def test_identity_fidelity_outputs_are_its_inputs(tmp_path):
    x = np.random.default_rng(1).standard_normal((6, 1, 4)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    doc = _run(MODELS / "identity.onnx", fidelity_inputs=str(tmp_path / "in.npz"),
               fidelity_out=str(tmp_path / "sub" / "out.npz"))
    assert doc["status"] == "ok", doc["error"]
    block = doc["fidelity_outputs"]
    assert block["file"] == "out.npz" and block["samples"] == 6 and block["outputs"] == ["y"]
    assert block["wall_s"] >= 0 and block["inputs_sha256"] == _sha256(tmp_path / "in.npz")
    with np.load(tmp_path / "sub" / "out.npz") as out:
        assert out.files == ["y"]
        assert out["y"].dtype == np.float32 and out["y"].shape == (6, 1, 4)
        np.testing.assert_array_equal(out["y"], x)
    assert not [p for p in (tmp_path / "sub").iterdir() if p.name != "out.npz"]  # no temp file left
    assert doc["latency"]["iterations"] >= 5 and doc["memory"]["rss_mib_peak"] is not None


def test_two_output_model_keeps_both_outputs_in_model_order(tmp_path):
    model = _two_output_model(tmp_path / "two.onnx")
    x = np.random.default_rng(2).standard_normal((3, 1, 3)).astype(np.float64)  # float64: cast to float32
    np.savez(tmp_path / "in.npz", x=x)
    doc = _run(model, fidelity_inputs=str(tmp_path / "in.npz"), fidelity_out=str(tmp_path / "out.npz"))
    assert doc["status"] == "ok", doc["error"]
    assert doc["fidelity_outputs"]["outputs"] == ["doubled", "shifted"]
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_allclose(out["doubled"], 2 * x.astype(np.float32), rtol=0, atol=0)
        np.testing.assert_allclose(out["shifted"], x.astype(np.float32) + 1, rtol=0, atol=0)


def test_fp16_model_gets_its_float_inputs_cast_to_fp16(tmp_path):
    model = _fp16_identity(tmp_path / "id16.onnx")
    x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 1, 4)
    np.savez(tmp_path / "in.npz", x=x)
    doc = _run(model, fidelity_inputs=str(tmp_path / "in.npz"), fidelity_out=str(tmp_path / "out.npz"))
    assert doc["status"] == "ok", doc["error"]
    with np.load(tmp_path / "out.npz") as out:
        assert out["y"].dtype == np.float16
        np.testing.assert_array_equal(out["y"], x.astype(np.float16))


@pytest.mark.parametrize("arrays, words", [
    ({"wrong": np.zeros((2, 1, 4), np.float32)}, ["'wrong'", "'x'"]),
    ({"x": np.zeros((2, 1, 5), np.float32)}, ["1x5", "1x4"]),
    ({"x": np.zeros((2, 4), np.float32)}, ["shape 4", "1x4"]),
    ({"x": np.zeros((2, 1, 4), np.int64)}, ["int64", "float32"]),
], ids=["name", "shape", "rank", "dtype"])
def test_mismatched_fidelity_inputs_fail_cleanly(tmp_path, arrays, words):
    np.savez(tmp_path / "in.npz", **arrays)
    doc = _run(MODELS / "identity.onnx", fidelity_inputs=str(tmp_path / "in.npz"),
               fidelity_out=str(tmp_path / "out.npz"))
    assert doc["status"] == "failed"
    assert doc["error"]["type"] == "InputSpecError"
    for word in words:
        assert word in doc["error"]["message"]
    assert not (tmp_path / "out.npz").exists()
    assert doc["latency"]["iterations"] >= 5  # the measurement is kept beside the error


def test_missing_or_corrupt_fidelity_file_is_a_dataset_error(tmp_path):
    doc = _run(MODELS / "identity.onnx", fidelity_inputs=str(tmp_path / "nope.npz"),
               fidelity_out=str(tmp_path / "out.npz"))
    assert doc["status"] == "failed" and doc["error"]["type"] == "DatasetError"
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    doc = _run(MODELS / "identity.onnx", fidelity_inputs=str(tmp_path / "bad.npz"),
               fidelity_out=str(tmp_path / "out.npz"))
    assert doc["status"] == "failed" and doc["error"]["type"] == "DatasetError"
    assert "bad.npz" in doc["error"]["message"]


def test_null_backend_has_no_outputs(tmp_path):
    np.savez(tmp_path / "in.npz", input=np.zeros((2, 1), np.float32))
    doc = _run(None, backend="null", fidelity_inputs=str(tmp_path / "in.npz"),
               fidelity_out=str(tmp_path / "out.npz"))
    assert doc["status"] == "ok", doc["error"]
    assert doc["fidelity_outputs"]["outputs"] == [] and doc["fidelity_outputs"]["samples"] == 2
    with np.load(tmp_path / "out.npz") as out:
        assert out.files == []


def test_a_backend_without_evaluate_keeps_its_measurement_and_warns(tmp_path, monkeypatch):
    from runners.backends.null import NullBackend

    monkeypatch.delattr(NullBackend, "evaluate")
    np.savez(tmp_path / "in.npz", input=np.zeros((2, 1), np.float32))
    doc = _run(None, backend="null", fidelity_inputs=str(tmp_path / "in.npz"),
               fidelity_out=str(tmp_path / "out.npz"), dataset=str(tmp_path))
    assert doc["status"] == "ok" and doc["latency"]["iterations"] >= 5
    assert "fidelity_outputs" not in doc and "accuracy" not in doc and not (tmp_path / "out.npz").exists()
    assert any("does not implement evaluate()" in w for w in doc["warnings"])


def test_fidelity_inputs_without_an_output_path_is_a_usage_error(tmp_path, capsys):
    np.savez(tmp_path / "in.npz", x=np.zeros((1, 1, 4), np.float32))
    code = runner_main(["run", str(MODELS / "identity.onnx"), "--fidelity-inputs", str(tmp_path / "in.npz")])
    assert code == 2 and "--fidelity-out" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ accuracy


def _scored_set(n=37, d=6, c=7, seed=3):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, c)).astype(np.float32)
    x = rng.standard_normal((n, d)).astype(np.float32)
    labels = rng.integers(0, c, size=n).astype(np.int64)
    return w, x, labels


@pytest.mark.parametrize("batch", [1, 4, 37, 50])
def test_accuracy_matches_numpy_top1_top5(tmp_path, batch):
    w, x, labels = _scored_set()
    model = _matmul_model(tmp_path / "mm.onnx", w)
    folder = _dataset(tmp_path / "set", x, labels, meta={"name": "constructed", "whatever": [1, 2]})
    doc = _run(model, batch=batch, dataset=str(folder))
    assert doc["status"] == "ok", doc["error"]
    scores = x.astype(np.float64) @ w.astype(np.float64)
    acc = doc["accuracy"]
    assert acc["top1"] == pytest.approx(_topk_by_rank(scores, labels, 1), abs=1e-12)
    assert acc["top5"] == pytest.approx(_topk_by_rank(scores, labels, 5), abs=1e-12)
    assert 0 < acc["top1"] < acc["top5"] < 1  # the constructed set is neither trivial nor hopeless
    assert acc["n"] == 37 and acc["classes"] == 7 and acc["batch"] == batch and acc["name"] == "constructed"
    assert acc["dataset_sha256"] == _sha256(folder / "inputs.npy", folder / "labels.npy")
    assert acc["wall_s"] >= 0


def test_fixed_batch_model_uses_its_batch_and_fewer_than_five_classes_give_no_top5(tmp_path):
    w, x, labels = _scored_set(n=10, c=3, seed=4)
    model = _matmul_model(tmp_path / "mm.onnx", w, batch=1)
    doc = _run(model, dataset=str(_dataset(tmp_path / "set", x, labels)))
    assert doc["status"] == "ok", doc["error"]
    scores = x @ w
    assert doc["accuracy"]["top1"] == pytest.approx(_topk_by_rank(scores, labels, 1), abs=1e-12)
    assert doc["accuracy"]["top5"] is None and doc["accuracy"]["batch"] == 1
    assert doc["accuracy"]["name"] == "set"  # no meta.json: the folder's name


@pytest.mark.parametrize("case, words", [
    ("labels_out_of_range", ["labels span", "7 classes"]),
    ("missing_labels", ["labels.npy"]),
    ("sample_shape", ["samples of shape 5", "(Nx6) takes samples of 6"]),
    ("count_mismatch", ["same N"]),
    ("float_labels", ["integers"]),
    ("bad_meta", ["meta.json"]),
    ("not_a_folder", ["not a folder"]),
])
def test_dataset_errors_fail_cleanly(tmp_path, case, words):
    w, x, labels = _scored_set()
    model = _matmul_model(tmp_path / "mm.onnx", w)
    folder = tmp_path / "set"
    if case == "labels_out_of_range":
        _dataset(folder, x, np.where(labels == 0, 7, labels))
    elif case == "missing_labels":
        folder.mkdir()
        np.save(folder / "inputs.npy", x)
    elif case == "sample_shape":
        _dataset(folder, x[:, :5], labels)
    elif case == "count_mismatch":
        _dataset(folder, x, labels[:-1])
    elif case == "float_labels":
        _dataset(folder, x, labels.astype(np.float32))
    elif case == "bad_meta":
        _dataset(folder, x, labels)
        (folder / "meta.json").write_text("{not json", encoding="utf-8")
    else:
        folder = tmp_path / "absent"
    doc = _run(model, batch=4, dataset=str(folder))
    assert doc["status"] == "failed" and doc["error"]["type"] == "DatasetError", doc["error"]
    for word in words:
        assert word in doc["error"]["message"]
    assert "accuracy" not in doc


# ------------------------------------------------------------------------------------------ digits example


def _own_digits_eval():
    """Top-1 of the committed model on the committed test split, with ONNX Runtime directly."""
    x = np.load(DIGITS_DATA / "inputs.npy")
    y = np.load(DIGITS_DATA / "labels.npy")
    sess = ort.InferenceSession(str(DIGITS_MODEL), providers=["CPUExecutionProvider"])
    logits = np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    return float(np.mean(logits.argmax(axis=1) == y)), logits, x, y


def test_digits_files_are_small_and_described():
    files = [DIGITS_MODEL, DIGITS_MODEL.with_suffix(".info"), *sorted(DIGITS_DATA.iterdir())]
    assert sum(p.stat().st_size for p in files) <= 200_000
    x = np.load(DIGITS_DATA / "inputs.npy")
    y = np.load(DIGITS_DATA / "labels.npy")
    assert x.dtype == np.float32 and x.ndim == 4 and x.shape[1:] == (1, 8, 8)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert y.dtype == np.int64 and y.shape == (x.shape[0],) and set(y.tolist()) == set(range(10))
    info = json.loads(DIGITS_MODEL.with_suffix(".info").read_text(encoding="utf-8"))
    assert info["dataset"] == "../datasets/digits" and info["weights"] == "trained"
    assert (DIGITS_MODEL.parent / info["dataset"]).resolve() == DIGITS_DATA.resolve()
    assert info["size_bytes"] == DIGITS_MODEL.stat().st_size and info["sha256"] == _sha256(DIGITS_MODEL)
    meta = json.loads((DIGITS_DATA / "meta.json").read_text(encoding="utf-8"))
    assert meta["split"]["n_test"] == x.shape[0] and "scikit-learn" in meta["versions"]


def test_digits_runner_accuracy_equals_onnxruntime_and_is_high():
    own, _, x, _ = _own_digits_eval()
    doc = _run(DIGITS_MODEL, dataset=str(DIGITS_DATA))
    assert doc["status"] == "ok", doc["error"]
    assert doc["accuracy"]["top1"] == own
    assert doc["accuracy"]["n"] == x.shape[0] and doc["accuracy"]["classes"] == 10
    assert own >= 0.9
    info = json.loads(DIGITS_MODEL.with_suffix(".info").read_text(encoding="utf-8"))
    assert info["accuracy"]["top1"] == pytest.approx(own, abs=1e-12)  # the recorded figure is this one


def test_digits_end_to_end_through_the_command_line(tmp_path):
    own, logits, x, _ = _own_digits_eval()
    np.savez(tmp_path / "in.npz", input=x[:8][:, None])  # 8 samples, each a complete (1, 1, 8, 8) input
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "runners", "run", str(DIGITS_MODEL), *FAST_ARGS, "--dataset", str(DIGITS_DATA),
         "--fidelity-inputs", str(tmp_path / "in.npz"), "--fidelity-out", str(tmp_path / "out.npz"),
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == EXIT_OK, proc.stderr
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["accuracy"]["top1"] == own
    want_sha = _sha256(DIGITS_DATA / "inputs.npy", DIGITS_DATA / "labels.npy")
    assert doc["accuracy"]["dataset_sha256"] == want_sha
    assert doc["fidelity_outputs"] == dict(doc["fidelity_outputs"], file="out.npz", samples=8,
                                           outputs=["logits"])
    with np.load(tmp_path / "out.npz") as got:
        assert got["logits"].shape == (8, 1, 10)
        np.testing.assert_allclose(got["logits"][:, 0], logits[:8], rtol=1e-5, atol=1e-5)
