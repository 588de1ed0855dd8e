"""Image folders as datasets and calibration sets (host.models.datasets): the arrays against values
computed here by hand from preprocess.json, the cache, the errors, and the wiring into int8
calibration (host.models.precision) and `host bench --dataset` (host.campaign.fidelity)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image
from typer.testing import CliRunner

from host.campaign.fidelity import CellFidelity, model_dataset
from host.cli import app
from host.errors import DatasetFormatError
from host.models import datasets
from host.models.datasets import calibration_arrays, prepare_dataset
from host.models.precision import Recipe, variant

TINY = Path(__file__).parent / "fixtures" / "models" / "tiny_cnn.onnx"  # input 1x3x32x32, logits 1x10
FAST = ["--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "10", "--min-s", "0.02",
        "--target-ci", "0.5", "--threads", "1"]
# class -> the constant RGB colours of its images
COLOURS = {"cat": [(10, 200, 30), (255, 0, 0), (0, 0, 0)], "dog": [(40, 50, 60), (255, 255, 255), (7, 8, 9)]}


@pytest.fixture(autouse=True)
def _cold_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the default caches live under ~/.cache
    datasets._memo.clear()


def image_folder(root: Path, spec: dict | None, sizes=((8, 6), (5, 9), (4, 4)), colours=COLOURS) -> Path:
    """One sub-folder per class of constant-colour PNGs (W x H from ``sizes``), and ``spec``."""
    root.mkdir(parents=True)
    for name, cols in colours.items():
        (root / name).mkdir()
        for i, colour in enumerate(cols):
            Image.new("RGB", sizes[i % len(sizes)], colour).save(root / name / f"img{i}.png")
    if spec is not None:
        (root / "preprocess.json").write_text(json.dumps(spec))
    return root


def hand_values(mean, std, scale=1 / 255) -> np.ndarray:
    """(6, 3) per image and channel: (v * scale - mean) / std, cat's images first."""
    rgb = np.array([c for cls in ("cat", "dog") for c in COLOURS[cls]], dtype=np.float64)
    return (rgb * scale - np.array(mean)) / np.array(std)


# --------------------------------------------------------------------------------------------
# arrays


def test_constant_images_resized_and_normalised_per_channel_nchw(tmp_path):
    spec = {"size": [4, 5], "scale": "1/255", "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.5]}
    folder = image_folder(tmp_path / "imgs", spec)
    out = prepare_dataset(folder, cache_dir=tmp_path / "cache")
    assert out.parent == tmp_path / "cache" and out != folder
    x, y = np.load(out / "inputs.npy"), np.load(out / "labels.npy")
    assert x.shape == (6, 3, 4, 5) and x.dtype == np.float32
    assert y.tolist() == [0, 0, 0, 1, 1, 1] and y.dtype == np.int64
    want = hand_values([0.5, 0.4, 0.3], [0.2, 0.25, 0.5])
    for i in range(6):
        for c in range(3):  # a constant image stays constant through the bilinear resize
            np.testing.assert_allclose(x[i, c], np.full((4, 5), want[i, c]), rtol=0, atol=1e-6)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == ["cat", "dog"] and meta["counts"] == {"cat": 3, "dog": 3} and meta["n"] == 6
    assert meta["source"] == str(folder.resolve()) and meta["name"] == "imgs"
    assert meta["preprocess"]["scale"] == 1 / 255 and meta["sample_shape"] == [3, 4, 5]


def test_nhwc_layout_and_a_single_mean_and_std(tmp_path):
    folder = image_folder(tmp_path / "imgs", {"size": [3, 3], "layout": "NHWC", "mean": 100, "std": 50})
    x = np.load(prepare_dataset(folder) / "inputs.npy")
    assert x.shape == (6, 3, 3, 3)
    want = hand_values([100] * 3, [50] * 3, scale=1)
    for i in range(6):
        np.testing.assert_allclose(x[i], np.broadcast_to(want[i], (3, 3, 3)), rtol=0, atol=1e-5)


def test_grayscale_is_one_channel_of_luma(tmp_path):
    folder = image_folder(tmp_path / "imgs", {"size": [2, 2], "color": "L", "scale": 1})
    x = np.load(prepare_dataset(folder) / "inputs.npy")
    assert x.shape == (6, 1, 2, 2)
    rgb = np.array([c for cls in ("cat", "dog") for c in COLOURS[cls]], dtype=np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])  # ITU-R 601-2; Pillow rounds to an integer
    assert np.all(np.abs(x[:, 0, 0, 0] - luma) <= 1) and np.all(x == np.round(x))
    assert x[1, 0, 0, 0] == 76  # pure red: 0.299 * 255 = 76.2


def test_resize_shorter_then_center_crop(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "a").mkdir(parents=True)
    im = Image.new("RGB", (8, 4), (10, 10, 10))  # W 8 x H 4: left half 10, right half 200
    im.paste((200, 200, 200), (4, 0, 8, 4))
    im.save(folder / "a" / "halves.png")
    Image.new("RGB", (6, 12), (50, 60, 70)).save(folder / "a" / "tall.png")  # 6x12 -> 3x6 -> crop
    (folder / "preprocess.json").write_text(json.dumps({"resize_shorter": 4, "size": [4, 3],
                                                        "layout": "NHWC"}))
    x = np.load(prepare_dataset(folder) / "inputs.npy")
    assert x.shape == (2, 4, 3, 3)
    # halves: shorter side already 4 (no resize); crop W 3 from 8 starts at round(5 / 2) = 2
    assert x[0, :, :, 0].tolist() == [[10, 10, 200]] * 4
    # tall: resized to 4 x 8 (W x H), constant, cropped to 3 x 4
    assert np.all(x[1] == np.array([50, 60, 70]))


def test_classes_fix_the_label_order(tmp_path):
    folder = image_folder(tmp_path / "imgs", {"size": [2, 2], "classes": ["dog", "bird", "cat"],
                                              "name": "pets"})
    out = prepare_dataset(folder)
    assert np.load(out / "labels.npy").tolist() == [0, 0, 0, 2, 2, 2]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["counts"] == {"dog": 3, "bird": 0, "cat": 3} and meta["name"] == "pets"
    x = np.load(out / "inputs.npy")
    assert x[0, :, 0, 0].tolist() == [40, 50, 60]  # dog's first image comes first


def test_an_arrays_folder_is_returned_as_it_is(tmp_path):
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "inputs.npy", np.zeros((2, 3, 32, 32), np.float32))
    np.save(folder / "labels.npy", np.zeros(2, np.int64))
    assert prepare_dataset(folder) == folder
    np.save(folder / "calib.npy", np.zeros((2, 3, 32, 32), np.float32))
    assert calibration_arrays(folder) == folder


# --------------------------------------------------------------------------------------------
# cache


def test_second_call_is_a_cache_hit_and_a_changed_image_is_not(tmp_path):
    folder = image_folder(tmp_path / "imgs", {"size": [4, 4]})
    first = prepare_dataset(folder)
    assert first.parent == tmp_path / "home" / ".cache" / "edgegauge" / "datasets"
    stamp = {f.name: f.stat().st_mtime_ns for f in first.iterdir()}
    assert prepare_dataset(folder) == first
    datasets._memo.clear()  # as a new process would: found by content
    assert prepare_dataset(folder) == first
    assert {f.name: f.stat().st_mtime_ns for f in first.iterdir()} == stamp
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".tmp-")]
    Image.new("RGB", (4, 4), (1, 2, 3)).save(folder / "dog" / "img0.png")
    second = prepare_dataset(folder)
    assert second != first and np.load(second / "inputs.npy")[3, :, 0, 0].tolist() == [1, 2, 3]
    (folder / "preprocess.json").write_text(json.dumps({"size": [4, 4], "layout": "NHWC"}))
    assert prepare_dataset(folder) not in (first, second)


# --------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("case, words", [
    ("no_spec", "no preprocess.json"),
    ("unreadable", "unreadable image dog/broken.png"),
    ("no_classes", "no classes"),
    ("mixed", "mixed sizes after preprocessing"),
    ("unknown_key", "unknown key(s) ['resize']"),
    ("bad_layout", "layout must be one of"),
    ("mean_channels", "mean has 2 values for 3 channel(s)"),
    ("unlisted", "sub-folder(s) ['dog'] not in preprocess.json's classes"),
])
def test_errors_name_the_folder_and_the_fault(tmp_path, case, words):
    specs = {"no_spec": None, "unknown_key": {"resize": [4, 4]}, "bad_layout": {"layout": "CHW"},
             "mixed": {}, "mean_channels": {"mean": [1, 2]}, "unlisted": {"classes": ["cat"]}}
    spec = specs.get(case, {"size": [4, 4]})
    if case == "no_classes":
        folder = tmp_path / "imgs"
        folder.mkdir()
        (folder / "preprocess.json").write_text("{}")
    else:
        folder = image_folder(tmp_path / "imgs", spec)
    if case == "unreadable":
        (folder / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetFormatError) as err:
        prepare_dataset(folder)
    assert str(err.value).startswith(f"{folder}: ") and words in str(err.value)
    assert err.value.folder == folder
    cache = tmp_path / "home" / ".cache" / "edgegauge" / "datasets"
    assert not cache.exists() or not any(p.name.startswith(".tmp-") for p in cache.iterdir())


def test_a_missing_folder_and_a_folder_of_neither_kind(tmp_path):
    with pytest.raises(DatasetFormatError, match="not found"):
        prepare_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="neither inputs.npy"):
        prepare_dataset(tmp_path / "empty")


# --------------------------------------------------------------------------------------------
# calibration


def test_calibration_arrays_take_every_image_sorted_by_path(tmp_path):
    folder = image_folder(tmp_path / "imgs", {"size": [32, 32], "scale": "1/255"})
    Image.new("RGB", (10, 10), (255, 255, 255)).save(folder / "top.png")  # no class needed here
    out = calibration_arrays(folder)
    assert sorted(p.name for p in out.iterdir()) == ["calibration.npy", "meta.json"]
    x = np.load(out / "calibration.npy")
    assert x.shape == (7, 3, 32, 32)
    assert json.loads((out / "meta.json").read_text())["files"] == [
        "cat/img0.png", "cat/img1.png", "cat/img2.png", "dog/img0.png", "dog/img1.png", "dog/img2.png",
        "top.png"]
    np.testing.assert_allclose(x[1, :, 5, 5], [1, 0, 0], atol=1e-6)  # cat/img1: red
    assert np.all(x[6] == 1)


def test_int8_variant_calibrated_from_an_image_folder_records_folder_and_spec(tmp_path):
    spec = {"size": [32, 32], "scale": "1/255", "mean": [0.5, 0.5, 0.5], "std": 0.25}
    folder = image_folder(tmp_path / "imgs", spec)
    recipe = Recipe("int8", calibration_data=str(folder))
    path, info = variant(TINY, recipe, cache_dir=tmp_path / "variants")
    cal = info["calibration"]
    assert cal["data"] == str(folder.resolve()) and info["recipe"]["calibration_data"] == str(folder)
    normalised = {"size": [32, 32], "resize_shorter": None, "color": "RGB", "scale": 1 / 255,
                  "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "layout": "NCHW", "dtype": "float32",
                  "classes": None, "name": None, "description": None}
    assert cal["preprocess"] == normalised
    canonical = json.dumps(normalised, sort_keys=True, separators=(",", ":")).encode()
    assert cal["preprocess_sha256"] == hashlib.sha256(canonical).hexdigest()
    assert cal["samples"] == 6 and cal["images"] == 6
    calib = Path(cal["prepared"]) / "calibration.npy"
    np.testing.assert_allclose(np.load(calib)[0, :, 0, 0], (np.array([10, 200, 30]) / 255 - 0.5) / 0.25,
                               atol=1e-6)
    digest = hashlib.sha256(f"calibration.npy\0{hashlib.sha256(calib.read_bytes()).hexdigest()}\n".encode())
    assert cal["data_sha256"] == digest.hexdigest()
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # same images and spec: the cached variant; another spec: another variant
    again, _ = variant(TINY, recipe, cache_dir=tmp_path / "variants")
    assert again == path
    (folder / "preprocess.json").write_text(json.dumps({**spec, "std": 0.5}))
    other, info2 = variant(TINY, recipe, cache_dir=tmp_path / "variants")
    assert other != path and info2["calibration"]["preprocess_sha256"] != cal["preprocess_sha256"]


# --------------------------------------------------------------------------------------------
# fidelity and bench


def test_model_dataset_and_cell_fidelity_convert_image_folders(tmp_path):
    folder = image_folder(tmp_path / "imgs", {"size": [32, 32]})
    model = tmp_path / "m" / "tiny.onnx"
    model.parent.mkdir()
    shutil.copy(TINY, model)
    model.with_suffix(".info").write_text(json.dumps({"dataset": "../imgs"}))
    prepared = model_dataset(model)
    assert prepared != folder and (prepared / "inputs.npy").is_file()
    assert CellFidelity().dataset(model) == prepared
    assert CellFidelity(folder).dataset(TINY) == prepared
    (folder / "preprocess.json").unlink()
    fid = CellFidelity(folder)
    assert fid.dataset(TINY) is None and fid.dataset(TINY) is None
    assert fid.notes == [f"{folder}: no preprocess.json: an image folder states its preprocessing"]


def test_bench_dataset_image_folder_gives_accuracy_over_every_image(tmp_path):
    spec = {"size": [32, 32], "scale": "1/255", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    folder = image_folder(tmp_path / "imgs", spec)
    res = CliRunner().invoke(app, [str(a) for a in (
        "bench", TINY, "--device", "local", "--results", tmp_path / "r", "--campaign", "img",
        "--dataset", folder, "--backend", "ort", *FAST, "--json")], env={"COLUMNS": "250"})
    assert res.exit_code in (0, 3), res.output
    (cell,) = json.loads(res.stdout)
    assert cell["accuracy"]["n"] == 6
    # top-1 of the same model on arrays built here by hand, with ONNX Runtime
    session = ort.InferenceSession(str(TINY), providers=["CPUExecutionProvider"])
    values = hand_values(spec["mean"], spec["std"]).astype(np.float32)
    hits = sum(int(np.argmax(session.run(None, {"input": np.broadcast_to(
        values[i][None, :, None, None], (1, 3, 32, 32)).copy()})[0][0]) == i // 3) for i in range(6))
    assert cell["accuracy"]["top1"] == pytest.approx(hits / 6)
