"""Model sets (``host zoo export --set``, host.models.zoo) and the width-scaled builders
(host.models.scaled).

Everything but the last section runs without torch. The export tests need torch and torchvision
that import together (``pip install torch==2.14.1 torchvision==0.29.1``; the locked CPU torch
2.13.0 cannot import PyPI torchvision): they are skipped otherwise, with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from host.errors import ExportError
from host.models import scaled, zoo

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- set definitions


def test_modelgauge_set_names_sizes_widths_count():
    entries = zoo.MODEL_SETS["modelgauge"]
    assert len(entries) == 32  # ModelGauge's 32 models
    names = [e.name for e in entries]
    assert len(set(names)) == 32
    cnn = [e for e in entries if e.arch not in ("vit_b_16", "mobilevit_s")]
    assert len(cnn) == 30
    assert {e.input_shape for e in cnn} == {(1, 3, 32, 32), (1, 3, 128, 128), (1, 3, 224, 224)}
    by_arch = {}
    for e in cnn:
        by_arch.setdefault(e.arch, []).append(e)
    assert sorted(by_arch) == ["efficientnet_v2_s", "mobilenet_v2", "mobilenet_v3_large",
                               "mobilenet_v3_small", "resnet50", "wide_resnet50_2"]
    assert sorted({e.width_mult for e in by_arch["mobilenet_v2"]}) == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert len(by_arch["mobilenet_v2"]) == 15
    assert all(len(v) == 3 for k, v in by_arch.items() if k != "mobilenet_v2")
    vit = next(e for e in entries if e.arch == "vit_b_16")
    mvit = next(e for e in entries if e.arch == "mobilevit_s")
    assert vit.input_shape == (1, 3, 224, 224) and vit.builder == "torchvision"
    assert mvit.input_shape == (1, 3, 256, 256) and mvit.builder == "timm"
    assert all(e.num_classes == 1000 and e.set_name == "modelgauge" for e in entries)
    assert "mg_mobilenet_v2_w0.2_s32" in names and "mg_wide_resnet50_2_s224" in names


def test_scaling_set_names_widths_count():
    entries = zoo.MODEL_SETS["scaling"]
    assert len(entries) == 12
    assert {(e.arch, e.width_mult) for e in entries} == {
        (a, w) for a in ("vgg11", "mobilenet_v2", "resnet50") for w in (0.25, 0.5, 0.75, 1.0)}
    for e in entries:
        assert e.input_shape == (1, 3, 32, 32) and e.num_classes == 10 and e.set_name == "scaling"
        assert e.builder == ("torchvision" if e.arch == "mobilenet_v2" else "scaled")
    assert [e.name for e in entries][:2] == ["sc_vgg11_w0.25_cifar10", "sc_vgg11_w0.5_cifar10"]


def test_set_entries_only_and_errors():
    picked = zoo.set_entries("scaling", ["sc_resnet50_w1_cifar10", "sc_vgg11_w0.5_cifar10"])
    assert [e.name for e in picked] == ["sc_vgg11_w0.5_cifar10", "sc_resnet50_w1_cifar10"]  # set order
    with pytest.raises(ExportError) as ei:
        zoo.set_entries("imagenet-all")
    assert "unknown model set 'imagenet-all'" in str(ei.value) and "modelgauge" in str(ei.value)
    assert "--set" in ei.value.hint
    with pytest.raises(ExportError, match="not in model set 'scaling': nope"):
        zoo.set_entries("scaling", ["nope"])


def test_export_set_refuses_unknown_set_and_examples_before_torch(tmp_path):
    with pytest.raises(ExportError, match="unknown model set"):
        zoo.export_set("nope", tmp_path)
    with pytest.raises(ExportError, match="never go into examples"):
        zoo.export_set("scaling", REPO / "examples" / "models" / "x")
    assert not (REPO / "examples" / "models" / "x").exists()


def test_default_set_dir_is_a_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert zoo.default_set_dir("scaling") == tmp_path / "edgegauge" / "models" / "scaling"


# --------------------------------------------------------------------------- width-scaling arithmetic


def test_scaled_channel_rule():
    assert scaled.scaled(64, 0.25) == 16 and scaled.scaled(512, 0.75) == 384 and scaled.scaled(3, 0.1) == 1
    with pytest.raises(ValueError):
        scaled.scaled(64, 0)


def test_vgg11_plan_by_hand():
    plan = scaled.vgg11_plan(0.25, input_size=32)
    assert plan["features"] == [16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128, "M"]
    assert plan["hidden"] == 1024 and plan["pool"] == 1 and plan["classifier_in"] == 128
    full = scaled.vgg11_plan(1.0)  # 224: torchvision's 7x7 pool
    assert full["pool"] == 7 and full["classifier_in"] == 512 * 49 and full["hidden"] == 4096
    assert scaled.vgg11_plan(0.75, 32)["features"][-2] == 384 and scaled.vgg11_plan(0.5, 128)["pool"] == 4


def test_resnet50_plan_by_hand():
    plan = scaled.resnet50_plan(0.5)
    assert plan == {"stem": 32, "widths": [32, 64, 128, 256], "outputs": [128, 256, 512, 1024],
                    "layers": [3, 4, 6, 3], "fc_in": 1024}
    assert scaled.resnet50_plan(0.75)["outputs"] == [192, 384, 768, 1536]


def test_param_counts_match_torchvision_and_hand_arithmetic():
    # torchvision's published counts at width 1, 224x224, 1000 classes
    assert scaled.vgg11_param_count(1.0, 1000) == 132_863_336
    assert scaled.resnet50_param_count(1.0, 1000) == 25_557_032
    # VGG-11 w0.25 at 32x32, 10 classes, by hand: convs 3*16*9+16 + 16*32*9+32 + 32*64*9+64 + 64*64*9+64
    # + 64*128*9+128 + 3*(128*128*9+128); fc 128*1024+1024 + 1024*1024+1024 + 1024*10+10
    convs = (3 * 16 * 9 + 16) + (16 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 64 * 9 + 64) \
        + (64 * 128 * 9 + 128) + 3 * (128 * 128 * 9 + 128)
    fcs = (128 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 10 + 10)
    assert convs + fcs == 1_769_066
    assert scaled.vgg11_param_count(0.25, 10, input_size=32) == 1_769_066
    # ResNet-50 at w1, 10 classes: torchvision's 25,557,032 minus the 1000-class head plus a 10-class one
    assert scaled.resnet50_param_count(1.0, 10) == 25_557_032 - (2048 * 1000 + 1000) + (2048 * 10 + 10)
    with pytest.raises(ValueError):
        scaled.param_count("vgg16", 1.0, 10)


# --------------------------------------------------------------------------- cache decision


def _fake_export(folder: Path, entry, recipe, *, size=12) -> Path:
    onnx_path = folder / f"{entry.name}.onnx"
    onnx_path.write_bytes(b"x" * size)
    info = {"name": entry.name, "size_bytes": size, "recipe": recipe}
    onnx_path.with_suffix(".info").write_text(json.dumps(info))
    return onnx_path


def test_cache_decision(tmp_path):
    entry = zoo.MODEL_SETS["scaling"][0]
    versions = {"torch": "2.14.1", "torchvision": "0.29.1"}
    recipe = zoo.entry_recipe(entry, seed=0, opset=17, versions=versions)
    assert recipe["input_shape"] == [1, 3, 32, 32] and recipe["width_mult"] == 0.25
    assert zoo.cached_info(tmp_path, entry, recipe) is None  # nothing there
    path = _fake_export(tmp_path, entry, recipe)
    assert zoo.cached_info(tmp_path, entry, recipe)["name"] == entry.name  # same recipe: skip
    for changed in (zoo.entry_recipe(entry, seed=1, opset=17, versions=versions),
                    zoo.entry_recipe(entry, seed=0, opset=18, versions=versions),
                    zoo.entry_recipe(entry, seed=0, opset=17, versions={**versions, "torch": "2.15.0"}),
                    zoo.entry_recipe(zoo.MODEL_SETS["scaling"][1], seed=0, opset=17, versions=versions)):
        assert zoo.cached_info(tmp_path, entry, changed) is None
    path.write_bytes(b"x" * 13)  # the file changed under its .info
    assert zoo.cached_info(tmp_path, entry, recipe) is None
    path.with_suffix(".info").write_text("{not json")
    assert zoo.cached_info(tmp_path, entry, recipe) is None


# --------------------------------------------------------------------------- CLI


def test_cli_set_list_and_unknown():
    from typer.testing import CliRunner

    from host.cli import zoo as cli_zoo

    runner = CliRunner()
    res = runner.invoke(cli_zoo.app, ["export", "--set", "scaling", "--list", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 12 and rows[0]["builder"] == "scaled" and rows[0]["set"] == "scaling"
    res = runner.invoke(cli_zoo.app, ["export", "--set", "modelgauge", "--list"])
    assert res.exit_code == 0 and "mg_vit_b_16_s224" in res.stdout
    res = runner.invoke(cli_zoo.app, ["export", "--set", "nope"])
    assert res.exit_code == 1 and "error: unknown model set 'nope'" in res.stderr


# --------------------------------------------------------------------------- real export (torchvision)


def _torchvision():
    try:
        import torch  # noqa: F401
        import torchvision
    except Exception as e:  # ImportError, or RuntimeError "operator torchvision::nms does not exist"
        pytest.skip(f"torch + torchvision do not import together here ({type(e).__name__}: {e}); "
                    "pip install torch==2.14.1 torchvision==0.29.1")
    return torchvision


@pytest.mark.parametrize("arch,width", [("vgg11", 0.25), ("resnet50", 0.5)])
def test_scaled_builder_param_count_matches_arithmetic(arch, width):
    _torchvision()
    model = scaled.build_scaled(arch, width, 10, input_size=32)
    assert sum(p.numel() for p in model.parameters()) == scaled.param_count(arch, width, 10, input_size=32)


def test_scaled_builders_equal_torchvision_at_width_1():
    tv = _torchvision()
    for arch in ("vgg11", "resnet50"):
        ours = scaled.build_scaled(arch, 1.0, 1000)
        theirs = getattr(tv.models, arch)(weights=None)
        assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]


def test_export_set_writes_info_and_caches(tmp_path):
    _torchvision()
    only = ["sc_mobilenet_v2_w0.25_cifar10", "sc_resnet50_w0.25_cifar10"]
    rows = zoo.export_set("scaling", tmp_path, only=only)
    assert [r["status"] for r in rows] == ["exported", "exported"]
    info = json.loads((tmp_path / "sc_resnet50_w0.25_cifar10.info").read_text())
    assert info["torch_params"] == scaled.resnet50_param_count(0.25, 10) == rows[1]["torch_params"]
    assert info["set"] == "scaling" and info["width_mult"] == 0.25 and info["input_size"] == [32, 32]
    assert info["source"] == "scaled" and info["weights"] == "random-init"
    assert info["recipe"]["versions"]["torchvision"]
    again = zoo.export_set("scaling", tmp_path, only=only)
    assert [r["status"] for r in again] == ["cached", "cached"]


def test_timm_model_skipped_with_reason_when_timm_missing(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    mvit = next(e for e in zoo.MODEL_SETS["modelgauge"] if e.builder == "timm")
    reason = zoo._unavailable(mvit)
    assert reason is not None and "timm is not importable" in reason and "MobileViT" in reason
