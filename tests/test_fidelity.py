"""Output fidelity (host/campaign/fidelity.py): the comparison on constructed outputs with
answers worked out by hand, the input sets, the fp32 reference, and a campaign's cells."""

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from host.campaign.fidelity import AGREEMENT_MIN, SAMPLES, compare, inputs_for, model_dataset, reference
from host.campaign.protocol import Protocol
from host.campaign.run import run_campaign
from host.errors import FidelityError
from host.lab.benchconfig import BenchConfig
from host.lab.inventory import local_device
from runners.core import Policy

FIX = Path(__file__).resolve().parent / "fixtures" / "models"


def test_compare_gives_the_hand_computed_figures():
    # 4 samples × 1 row × 3 classes; the device flips the argmax of sample 3
    ref = np.array([[[3.0, 1.0, 0.0]], [[0.0, 2.0, 1.0]], [[1.0, 0.0, 4.0]], [[5.0, 4.0, 0.0]]])
    got = ref.copy()
    got[3, 0] = [4.0, 5.0, 0.0]
    block = compare({"logits": ref}, {"logits": got}, weights="trained", inputs="test")
    assert block["top1_agreement"] == 0.75
    assert block["max_abs_error"] == 1.0
    # sample 3: cos = (20 + 20) / (sqrt(41) * sqrt(41)) = 40 / 41
    assert math.isclose(block["cosine_min"], 40 / 41, rel_tol=1e-12)
    # |4-5| / 5 and |5-4| / 4: the largest is 0.25
    assert math.isclose(block["max_rel_error"], 0.25, rel_tol=1e-12)
    assert any(w.startswith("fidelity_low: top-1 agreement 75.0%") for w in block["warnings"])
    assert 0.75 < AGREEMENT_MIN


def test_relative_error_is_floored_near_zero_and_identical_outputs_are_perfect():
    ref = np.array([[[1000.0, 0.0]], [[0.0, 1000.0]]])
    got = ref + np.array([[[0.0, 0.5]], [[0.0, 0.0]]])
    block = compare({"y": ref}, {"y": got}, weights="trained")
    # the zero element's error is divided by 1e-3 * 1000 = 1, not by 0
    assert block["max_rel_error"] == 0.5 and block["top1_agreement"] == 1.0
    same = compare({"y": ref}, {"y": ref.copy()}, weights="trained")
    assert same["max_abs_error"] == 0.0 and same["cosine_min"] == pytest.approx(1.0)
    assert same["warnings"] == []


def test_missing_outputs_shape_mismatches_and_random_weights_are_named():
    ref = {"a": np.zeros((2, 1, 3)), "b": np.ones((2, 4))}
    block = compare(ref, {"a": np.zeros((2, 1, 2))}, weights="random-init")
    assert "differs from the reference" in block["outputs"]["a"]["error"]
    assert block["outputs"]["b"]["error"] == "missing on the device"
    assert any("random weights" in w for w in block["warnings"])
    assert sum("output " in w for w in block["warnings"]) == 2


def _matmul_model(path: Path, w: np.ndarray) -> Path:
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w.shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, w.shape[1]])],
                              [numpy_helper.from_array(w.astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_inputs_come_from_the_dataset_when_there_is_one_and_the_reference_is_the_fp32_model(tmp_path):
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    model = _matmul_model(tmp_path / "mm.onnx", w)
    data = tmp_path / "ds"
    data.mkdir()
    x = np.random.default_rng(1).normal(size=(20, 4)).astype(np.float32)
    np.save(data / "inputs.npy", x)
    np.save(data / "labels.npy", np.zeros(20, np.int64))
    path, described = inputs_for(model, dataset=data, cache=tmp_path / "c")
    with np.load(path) as saved:
        assert saved["x"].shape == (SAMPLES, 1, 4)
        assert np.array_equal(saved["x"][:, 0], x[:SAMPLES])
    assert described.startswith(f"first {SAMPLES} samples")
    ref = reference(model, path, tmp_path / "c")
    assert np.allclose(ref["y"][:, 0], x[:SAMPLES] @ w, atol=1e-5)  # numpy, not ONNX Runtime
    again, _ = inputs_for(model, dataset=data, cache=tmp_path / "c")
    assert again == path  # same content, same file


def test_random_inputs_are_seeded_and_labelled(tmp_path):
    a, described = inputs_for(FIX / "identity.onnx", cache=tmp_path)
    b, _ = inputs_for(FIX / "identity.onnx", cache=tmp_path, seed=1)
    assert "seeded random" in described and a != b


def test_a_broken_model_is_a_fidelity_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(FidelityError, match="bad.onnx"):
        inputs_for(bad, cache=tmp_path)


def test_model_dataset_follows_the_info(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("inputs.npy", "labels.npy"):
        np.save(tmp_path / "d" / name, np.zeros(2))
    (tmp_path / "m.info").write_text(json.dumps({"dataset": "d"}))
    assert model_dataset(tmp_path / "m.onnx") == (tmp_path / "d").resolve()
    (tmp_path / "n.info").write_text(json.dumps({"dataset": "missing"}))
    assert model_dataset(tmp_path / "n.onnx") is None


def test_every_cell_of_a_local_campaign_has_a_fidelity_block(tmp_path):
    w = np.eye(4, 3, dtype=np.float32) * 2
    model = _matmul_model(tmp_path / "mm.onnx", w)
    config = BenchConfig(backend="ort", timeout_s=60, threads=1, policy=Policy(
        warmup_min_iterations=1, warmup_min_s=0.0, min_iterations=5, min_duration_s=0.01, cov_max=100.0))
    (cell,) = run_campaign([model], [local_device(str(tmp_path / "w"))], config, results=tmp_path / "r",
                           campaign="f", protocol=Protocol(target_ci=0.5, max_cell_s=30.0)).cells
    fid = cell["fidelity"]
    assert fid["top1_agreement"] == 1.0 and fid["max_abs_error"] == 0.0  # same runtime, same machine
    assert fid["outputs"]["y"]["samples"] == SAMPLES and fid["weights"] is None
    assert cell["precision"]["name"] == "fp32" and cell["precision"]["recipe"] is None
    # 4 × 3 float32 weights, counted independently: 12 parameters, 48 bytes
    assert cell["precision"]["metrics"]["weight_bytes_by_dtype"] == {"float32": 48}
