"""`host bench --precision`: the precision axis of the matrix on this machine, with the trained
digits example (its accuracy checked against this test's own ONNX Runtime evaluation)."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
from typer.testing import CliRunner

from host.cli import app
from runners.util import file_sha256

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "examples" / "models" / "digits_cnn.onnx"
DATA = ROOT / "examples" / "datasets" / "digits"
FAST = ["--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "10", "--min-s", "0.02",
        "--target-ci", "0.5", "--threads", "1"]
runner = CliRunner()


def host(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def own_top1(model: Path) -> float:
    """Top-1 on the digits test set, computed here with ONNX Runtime, one sample per call."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x, y = np.load(DATA / "inputs.npy"), np.load(DATA / "labels.npy")
    hits = sum(int(np.argmax(session.run(None, {"input": x[i:i + 1]})[0][0]) == y[i]) for i in range(len(y)))
    return hits / len(y)


def test_fp32_and_int8_cells_carry_recipe_fidelity_and_accuracy(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a cold variant and fidelity cache
    res = host("bench", DIGITS, "--device", "local", "--results", tmp_path / "r", "--campaign", "p",
               "--precision", "fp32,int8", *FAST, "--json")
    assert res.exit_code in (0, 3), res.output
    cells = {c["precision"]["name"]: c for c in json.loads(res.stdout)}
    assert sorted(cells) == ["fp32", "int8-cal"]  # the digits dataset ships calibration inputs
    fp32, int8 = cells["fp32"], cells["int8-cal"]
    recipe = int8["precision"]["recipe"]
    assert recipe["source_sha256"] == file_sha256(DIGITS) and recipe["format"] == "QDQ"
    assert recipe["calibration"]["data"].endswith("digits/calibration")
    assert int8["precision"]["metrics"]["qdq_compute_share"] == 1.0
    assert fp32["precision"]["metrics"]["bits_per_weight"] == 32.0
    assert int8["cell"]["config"].endswith("-int8-cal") and fp32["cell"]["config"] == "ort-b1-t1"
    # accuracy on the device equals this test's own evaluation of the same files
    assert fp32["accuracy"]["top1"] == own_top1(DIGITS) and fp32["accuracy"]["n"] == 360
    variant = Path(recipe["variant_path"])
    assert int8["accuracy"]["top1"] == own_top1(variant)
    assert abs(int8["accuracy"]["top1"] - fp32["accuracy"]["top1"]) <= 0.03  # stated tolerance
    assert fp32["fidelity"]["top1_agreement"] == 1.0 and fp32["fidelity"]["max_abs_error"] == 0.0
    assert int8["fidelity"]["top1_agreement"] >= 0.9 and int8["fidelity"]["max_abs_error"] > 0
    assert "first 8 samples" in int8["fidelity"]["inputs"]
    assert int8["model"]["sha256"] == recipe["variant_sha256"]  # the runner ran the variant

    before = variant.stat().st_mtime_ns
    again = host("bench", DIGITS, "--device", "local", "--results", tmp_path / "r", "--campaign", "p",
                 "--precision", "fp32,int8", *FAST, "--json")
    assert again.exit_code in (0, 3), again.output
    assert variant.stat().st_mtime_ns == before  # cache hit: not quantized again
    plan = json.loads((tmp_path / "r" / "p" / "campaign.json").read_text())
    assert plan["runs"][-1]["cells_run"] == {"local": 0}
    assert {e["precision"] for e in plan["plan"]} == {"fp32", "int8-cal"}


def test_the_table_shows_precision_agreement_and_accuracy(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    res = host("bench", DIGITS, "--device", "local", "--results", tmp_path / "r", "--campaign", "t",
               "--precision", "fp16", *FAST, "--wide")
    assert res.exit_code in (0, 3), res.output
    header = next(line for line in res.stdout.splitlines() if "prec" in line)
    assert "agree %" in header and "acc %" in header
    row = next(line for line in res.stdout.splitlines() if line.lstrip("│ ").startswith("digits_cnn"))
    cells = [c.strip() for c in row.split("│")][1:-1]
    assert cells[1] == "fp16" and cells[-3] == "100.0" and 95.0 <= float(cells[-2]) <= 100.0


def test_bad_precision_names_and_unquantizable_models_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    res = host("bench", DIGITS, "--device", "local", "--results", tmp_path / "r", "--precision", "int4")
    assert res.exit_code == 2 and "one of fp32, fp16, int8, int8-dynamic" in res.output
    bad = tmp_path / "m" / "broken.onnx"
    bad.parent.mkdir()
    bad.write_bytes(b"not a model")
    res = host("bench", bad, "--device", "local", "--results", tmp_path / "r", "--precision", "int8", *FAST)
    assert res.exit_code == 1 and "broken.onnx" in res.output
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("broken*.json"))


def test_a_dataset_that_does_not_fit_the_model_fails_the_cell_as_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    np.save(wrong / "inputs.npy", np.zeros((4, 3, 32, 32), np.float32))
    np.save(wrong / "labels.npy", np.zeros(4, np.int64))
    model = tmp_path / "m" / "digits.onnx"
    model.parent.mkdir()
    shutil.copy(DIGITS, model)  # without its .info: only --dataset names a dataset
    res = host("bench", model, "--device", "local", "--results", tmp_path / "r", "--dataset", wrong,
               *FAST, "--json")
    (cell,) = json.loads(res.stdout)
    assert res.exit_code == 1 and cell["error"]["category"] == "dataset", cell["error"]


def test_a_batch_sweep_gives_one_cell_per_batch_and_refuses_a_fixed_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    fix = ROOT / "tests" / "fixtures" / "models"
    res = host("bench", fix / "dynamic_batch.onnx", fix / "tiny_cnn.onnx", "--device", "local",
               "--results", tmp_path / "r", "--batch", "1,4", *FAST, "--json")
    cells = {(c["cell"]["model_stem"], c["cell"]["config"]): c for c in json.loads(res.stdout)}
    assert set(cells) == {("dynamic_batch", "ort-b1-t1"), ("dynamic_batch", "ort-b4-t1"),
                          ("tiny_cnn", "ort-b1-t1"), ("tiny_cnn", "ort-b4-t1")}
    four = cells[("dynamic_batch", "ort-b4-t1")]
    assert four["status"] != "failed" and next(iter(four["model"]["input_shapes"].values()))[0] == 4
    assert four["fidelity"]["outputs"][next(iter(four["fidelity"]["outputs"]))]["samples"] == 8
    fixed = cells[("tiny_cnn", "ort-b4-t1")]  # exported with batch 1 fixed
    assert fixed["status"] == "failed" and fixed["error"]["category"] == "invalid_model"
    assert "fixed" in fixed["error"]["message"]
    assert res.exit_code == 1
    assert re.search(r"local\s.*\b4/4\b", res.stderr), res.stderr  # progress counts cells, not models
    bad = host("bench", fix / "dynamic_batch.onnx", "--device", "local", "--batch", "0,2")
    assert bad.exit_code == 2 and "batch sizes from 1 to 65536" in " ".join(bad.output.split())


def test_a_dataset_folder_that_is_neither_arrays_nor_images_fails_before_any_run(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "empty").mkdir()
    res = host("bench", DIGITS, "--device", "local", "--results", tmp_path / "r",
               "--dataset", tmp_path / "empty")
    assert res.exit_code == 1 and "neither inputs.npy + labels.npy nor an image folder" in res.output
    assert not (tmp_path / "r").exists()
