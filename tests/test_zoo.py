"""Tests of host.models.zoo / host.cli.zoo and of the committed examples/models.

The export tests need the CPU torch wheel (``pip install torch==2.13.0``) but no torchvision;
they are skipped without torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from host.errors import ExportError
from host.models import zoo

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "models"
EXAMPLES_BUDGET_BYTES = 30_000_000


# --------------------------------------------------------------------------- export_module


def _tiny_module():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.relu = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.relu(self.bn(self.conv(x)))), 1))

    torch.manual_seed(0)
    m = Tiny()
    # Non-trivial BN statistics so folding them into the conv is really checked.
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.uniform_(0.5, 1.5)
    return m


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    module = _tiny_module()
    out = tmp_path_factory.mktemp("zoo")
    path = out / "tiny.onnx"
    info = zoo.export_module(
        module,
        (1, 3, 16, 16),
        path,
        name="tiny",
        command="host zoo export --out x --only tiny",
        extra_info={"num_classes": 10},
        seed=3,
    )
    return module, path, info


def test_export_writes_valid_opset17_onnx(exported):
    _, path, info = exported
    assert path.is_file()
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 16, 16]  # static shape
    assert info["opset"] == 17 and info["export"]["dynamo"] is False


def test_export_matches_torch_in_onnxruntime(exported):
    torch = pytest.importorskip("torch")
    module, path, info = exported
    x = np.random.default_rng(7).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        ref = module.eval()(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(["logits"], {"input": x})
    assert got.shape == (1, 10)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))
    assert 0 <= info["max_abs_diff"] < 1e-4


def test_export_info_sidecar(exported):
    torch = pytest.importorskip("torch")
    module, path, info = exported
    side = path.with_suffix(".info")
    assert side.is_file()
    on_disk = json.loads(side.read_text())
    assert on_disk == json.loads(json.dumps(info))
    assert on_disk["name"] == "tiny"
    assert on_disk["torch_params"] == sum(p.numel() for p in module.parameters()) == 330
    assert on_disk["torch_buffers"] == sum(b.numel() for b in module.buffers())
    assert on_disk["input_shape"] == [1, 3, 16, 16]
    assert on_disk["num_classes"] == 10
    assert on_disk["weights"] == "random-init"
    assert on_disk["seed"] == 3
    assert on_disk["command"] == "host zoo export --out x --only tiny"
    assert on_disk["torch_version"] == torch.__version__
    assert "torchvision_version" in on_disk
    assert on_disk["size_bytes"] == path.stat().st_size
    assert "accuracy" in on_disk["note"]
    assert zoo.read_info(path) == on_disk


def test_export_is_atomic_and_leaves_no_tmp(exported):
    _, path, _ = exported
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.info", "tiny.onnx"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_failed_export_leaves_nothing(tmp_path):
    torch = pytest.importorskip("torch")

    class TwoOutputs(torch.nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(ExportError, match="one tensor"):
        zoo.export_module(TwoOutputs(), (1, 3), tmp_path / "bad.onnx", name="bad", command="c")
    with pytest.raises(ExportError, match=".onnx"):
        zoo.export_module(_tiny_module(), (1, 3, 8, 8), tmp_path / "x.bin", name="x", command="c")
    assert list(tmp_path.iterdir()) == []


def test_mismatch_raises_and_keeps_no_file(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from host.models import onnxexport

    real = onnxexport._verify

    def strict(*args, **kwargs):
        kwargs["rtol"] = -1.0  # no difference can pass
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxexport, "_verify", strict)
    with pytest.raises(ExportError, match="differs from torch"):
        zoo.export_module(_tiny_module(), (1, 3, 8, 8), tmp_path / "m.onnx", name="m", command="c")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- without torch

_BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision"):
                raise ImportError(f"No module named {name!r} (blocked by test)")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def test_import_without_torch_then_export_raises():
    code = _BLOCK_TORCH + textwrap.dedent(
        """
        import json
        import host.models.zoo as zoo
        import host.cli.zoo
        from host.errors import ExportError
        assert "torch" not in sys.modules
        out = {"n": len(zoo.ZOO)}
        try:
            zoo.export_zoo("unused-dir")
        except ExportError as e:
            out["zoo_hint"] = e.hint
        try:
            zoo.export_module(object(), (1, 3), "unused.onnx", name="x", command="c")
        except ExportError as e:
            out["module_hint"] = e.hint
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n"] == len(zoo.ZOO)
    assert "pip install torch==2.14.1 torchvision==0.29.1" in out["zoo_hint"]
    assert out["module_hint"] == "pip install -e '.[export]'"
    assert not (REPO / "unused-dir").exists()


# --------------------------------------------------------------------------- ZOO table


def test_zoo_table():
    names = [e.name for e in zoo.ZOO]
    assert len(names) == len(set(names))
    for e in zoo.ZOO:
        assert len(e.input_shape) == 4 and all(d > 0 for d in e.input_shape)
        assert e.num_classes > 0
        kw = e.builder_kwargs()
        assert kw["weights"] is None and kw["num_classes"] == e.num_classes
    cifar = [e for e in zoo.ZOO if e.name.endswith("_cifar10")]
    assert {e.width_mult for e in cifar if e.arch == "mobilenet_v2"} == {0.25, 0.5, 0.75, 1.0}
    assert any(e.arch == "mobilenet_v3_small" for e in cifar)
    for e in cifar:
        assert e.input_shape == (1, 3, 32, 32) and e.num_classes == 10
    imagenet = [e for e in zoo.ZOO if e.name.endswith("_imagenet")]
    assert imagenet and all(
        e.input_shape == (1, 3, 224, 224) and e.num_classes == 1000 for e in imagenet
    )


def test_unknown_only_name_raises_before_importing_torch():
    with pytest.raises(ExportError) as ei:
        zoo.export_zoo("unused", only=["no_such_model"])
    assert ei.value.hint == "host zoo export --list"


def test_zoo_command_format():
    assert (
        zoo.zoo_command("examples/models", "mobilenet_v2_w0.5_cifar10")
        == "host zoo export --out examples/models --only mobilenet_v2_w0.5_cifar10"
    )


# --------------------------------------------------------------------------- CLI


def test_cli_list_and_errors():
    from typer.testing import CliRunner

    from host.cli import zoo as cli_zoo

    runner = CliRunner()
    res = runner.invoke(cli_zoo.app, ["export", "--list", "--json"])
    assert res.exit_code == 0, res.output
    assert [r["name"] for r in json.loads(res.stdout)] == [e.name for e in zoo.ZOO]

    res = runner.invoke(cli_zoo.app, ["export", "--list"])
    assert res.exit_code == 0 and "mobilenet_v2_w0.25_cifar10" in res.stdout

    res = runner.invoke(cli_zoo.app, ["export", "--only", "nope"])
    assert res.exit_code == 1
    assert "error: unknown zoo model 'nope'" in res.stderr
    assert "hint: host zoo export --list" in res.stderr


def test_cli_export_renders_table(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from host.cli import zoo as cli_zoo

    seen = {}

    def fake_export_zoo(out_dir, only=None, progress=None):
        seen.update(out_dir=out_dir, only=only)
        return [
            {
                "name": "m",
                "file": "m.onnx",
                "size_bytes": 2_500_000,
                "torch_params": 1234567,
                "input_shape": [1, 3, 32, 32],
            }
        ]

    monkeypatch.setattr(zoo, "export_zoo", fake_export_zoo)
    res = CliRunner().invoke(
        cli_zoo.app, ["export", "--out", str(tmp_path), "--only", "a", "--only", "b"]
    )
    assert res.exit_code == 0, res.output
    assert seen == {"out_dir": tmp_path, "only": ["a", "b"]}
    assert "2.50" in res.stdout and "1,234,567" in res.stdout and "1x3x32x32" in res.stdout


# --------------------------------------------------------------------------- examples/models


#: Trained examples made by their own script, not by the zoo (checked in tests/test_runner_precision.py).
TRAINED_EXAMPLES = {"digits_cnn"}


def _example_models():
    return sorted(m for m in EXAMPLES.glob("*.onnx") if m.stem not in TRAINED_EXAMPLES)


def test_examples_exist_with_info_and_fit_budget():
    models = _example_models()
    assert models, f"no example models in {EXAMPLES}"
    assert {m.stem for m in models} == {e.name for e in zoo.ZOO}
    total = sum(p.stat().st_size for p in EXAMPLES.rglob("*") if p.is_file())
    assert total <= EXAMPLES_BUDGET_BYTES, f"examples/models is {total} bytes"
    for m in models:
        info = zoo.read_info(m)
        assert info is not None, f"{m.name} has no .info sidecar"
        assert isinstance(info["torch_params"], int) and info["torch_params"] > 0
        assert info["command"] == f"host zoo export --out examples/models --only {m.stem}"
        assert info["weights"] == "random-init"
        assert info["size_bytes"] == m.stat().st_size
        entry = zoo.zoo_entry(m.stem)
        assert tuple(info["input_shape"]) == entry.input_shape
        assert info["num_classes"] == entry.num_classes


@pytest.mark.parametrize("path", _example_models(), ids=lambda p: p.stem)
def test_example_runs_in_onnxruntime(path):
    info = zoo.read_info(path)
    x = np.random.default_rng(0).standard_normal(info["input_shape"]).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": x})
    assert out.shape == (info["input_shape"][0], info["num_classes"])
    assert np.isfinite(out).all()
