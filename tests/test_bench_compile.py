"""Code generation as a ``host bench`` axis (issue 25): ``--compile-option NAME=V1,V2`` compiles each ONNX
model with the compiler the runtime's descriptor declares (host/campaign/compiled.py) and measures the
compiled files as cells named by their compile options, the compiler's recipe in the cell. A real tiny
model is compiled untuned with TVM and measured on ``--device local``; no tuning here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from host.campaign.compiled import parse_axis, tag
from host.cli.main import app
from host.errors import CompileUsageError
from host.models import runtime_compile

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "models" / "tiny_cnn.onnx"
FAST = ["--device", "local", "--backend", "tvm", "--quick", "--max-s", "1", "--no-reference",
        "--no-auto-calibrate"]


def _bench(args, tmp_path: Path):
    return CliRunner().invoke(app, ["bench", *map(str, args), "--results", str(tmp_path / "r")],
                              env={"COLUMNS": "200"})


def test_the_axis_is_every_combination_of_the_listed_values():
    assert parse_axis(None) == ()
    assert parse_axis(["codegen=untuned,tuned", "tune-trials=8"]) == (
        {"codegen": "untuned", "tune_trials": "8"}, {"codegen": "tuned", "tune_trials": "8"})
    for bad in (["codegen"], ["codegen="], ["=x"], ["codegen=a", "codegen=b"]):
        with pytest.raises(CompileUsageError):
            parse_axis(bad)
    assert tag({"name": "mobilenet_v2_w0.25_cifar10.tvm-tuned8.tvm"}, Path("mobilenet_v2_w0.25_cifar10.onnx"),
               "tvm") == "tvm-tuned8"
    assert tag({"key": "abc"}, Path("m.onnx"), "x") == "x-abc"


def test_an_untuned_compile_is_measured_as_its_own_cell_and_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime_compile, "DEFAULT_CACHE_DIR", tmp_path / "cache")
    models = tmp_path / "m"
    models.mkdir()
    (models / "tiny_cnn.onnx").write_bytes(TINY.read_bytes())
    (models / "broken.onnx").write_bytes(b"not an onnx model")
    first = _bench([models, *FAST, "--compile-option", "codegen=untuned", "--campaign", "one"], tmp_path)
    cell = tmp_path / "r" / "one" / "local" / "tiny_cnn__tvm-b1-tall-tvm-untuned.json"
    assert cell.is_file(), first.output
    doc = json.loads(cell.read_text())
    assert doc["status"] != "failed", doc.get("error")
    assert doc["latency"]["latency_ms_p50"] > 0
    recipe = doc["precision"]["recipe"]
    assert doc["precision"]["name"] == "tvm-untuned"
    assert recipe["codegen"] == "untuned" and recipe["compile_options"] == {"codegen": "untuned"}
    assert recipe["cache_hit"] is False and recipe["name"] == "tiny_cnn.tvm-untuned.tvm"
    assert doc["fidelity"]["max_abs_error"] < 1e-4  # the compiled outputs against ORT on the ONNX source
    # the model that does not compile is not run: a failed cell of category compile, the campaign goes on
    failed = json.loads((tmp_path / "r" / "one" / "local" / "broken__tvm-b1-tall-tvm-untuned.json")
                        .read_text())
    assert failed["status"] == "failed" and failed["error"]["category"] == "compile", failed
    assert failed["error"]["type"] == "ModelCompileError" and failed["error"]["where"] == "host"
    assert "compile failed (codegen=untuned)" in failed["error"]["message"]
    assert "not readable as ONNX" in failed["error"]["message"]
    assert failed["host"]["runner_process"] is None  # never ran
    assert "broken" in first.output and first.exit_code != 0
    artefact = next((tmp_path / "cache" / "tvm").glob("tiny_cnn.tvm-untuned.*.tvm"))
    before = artefact.stat().st_mtime_ns, artefact.stat().st_ino
    second = _bench([TINY, *FAST, "--compile-option", "codegen=untuned", "--campaign", "two"], tmp_path)
    again = json.loads((tmp_path / "r" / "two" / "local" / cell.name).read_text())
    assert again["precision"]["recipe"]["cache_hit"] is True, second.output
    assert (artefact.stat().st_mtime_ns, artefact.stat().st_ino) == before
    assert len(list((tmp_path / "cache" / "tvm").glob("*.tvm"))) == 1


@pytest.mark.parametrize("backend, option, words", [
    ("tvm", "nosuch=1", "no compile option nosuch"),
    ("tvm", "codegen=ansor", "codegen='ansor'"),
    ("ort", "codegen=untuned", "runtime ort declares no compiler"),
])
def test_a_compile_option_the_runtime_does_not_take_is_refused_before_anything_is_written(
        tmp_path, backend, option, words):
    result = _bench([TINY, "--device", "local", "--backend", backend, "--quick", "--compile-option", option,
                     "--campaign", "c"], tmp_path)
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split())
    assert not (tmp_path / "r").exists()
