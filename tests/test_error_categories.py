"""Runner errors carry their ``category`` in the result, and the host files a cell by it (issue 21).

Before, the runner wrote only ``error.type`` and the host looked the class name up in its own
table, so a subclass it did not list (``EngineBuildError``, a ``ModelLoadError``) was filed as
``runtime_error``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from host.campaign.run import build_cell, runner_error_category
from host.campaign.store import read_cell, write_cell
from host.lab.benchconfig import BenchConfig, RunnerOutcome
from runners import SCHEMA_VERSION, errors
from runners.backends.null import NullBackend
from runners.core import Policy, RunConfig, run
from runners.errors import EXIT_FAILED, ModelLoadError

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "fixtures" / "models"
FAST = Policy(warmup_min_iterations=2, warmup_min_s=0.0, min_iterations=20, min_duration_s=0.05,
              max_duration_s=5.0, cov_max=100.0, drift_max=100.0, mode_share_max=1.0, throttle_max=100.0)


class PluginLoadError(ModelLoadError):
    """A runtime's own load error, unknown to the host by name."""


def _cell(result: dict, tmp_path: Path) -> dict:
    """The host's cell for a runner result that exited ``failed``, written and read back (the
    schema is enforced at load)."""
    outcome = RunnerOutcome(argv=["runner"], exit_code=EXIT_FAILED, signal=None, wall_s=1.0,
                            timed_out=False, stderr_tail="", result=result)
    doc = build_cell(outcome, model=Path("m.onnx"), config=BenchConfig(backend="null"), device="d",
                     campaign="c", metrics={}, info=None, info_error=None)
    path = tmp_path / "cell.json"
    write_cell(path, doc)
    return read_cell(path)


@pytest.mark.parametrize("cls, category", [
    (errors.ModelLoadError, "invalid_model"), (errors.EngineBuildError, "invalid_model"),
    (errors.InputSpecError, "invalid_model"), (errors.UnresolvedShapeError, "invalid_model"),
    (errors.DatasetError, "dataset"), (errors.BackendUnavailableError, "runtime_error"),
    (errors.UnsupportedFeatureError, "runtime_error"), (errors.InferenceError, "runtime_error"),
    (errors.CudaError, "runtime_error"), (PluginLoadError, "invalid_model")])
def test_every_runner_error_class_has_a_category_its_subclasses_inherit(cls, category):
    assert cls.category == category
    assert errors.error_record(cls("boom")) == {"type": cls.__name__, "category": category, "message": "boom"}


def test_a_subclass_raised_inside_a_run_is_an_invalid_model_in_the_result_and_the_cell(monkeypatch, tmp_path):
    def load(self, model_path):
        raise PluginLoadError(f"{model_path}: cannot load")

    monkeypatch.setattr(NullBackend, "load", load)
    result = run(RunConfig(backend="null", model=str(MODELS / "identity.onnx"), policy=FAST))
    assert result["status"] == "failed"
    assert result["error"]["type"] == "PluginLoadError" and result["error"]["category"] == "invalid_model"
    cell = _cell(result, tmp_path)
    assert cell["error"]["category"] == "invalid_model", cell["error"]


def test_the_real_runner_writes_the_category_of_a_corrupt_model(tmp_path):
    out = tmp_path / "r.json"
    argv = [sys.executable, "-m", "runners", "run", str(MODELS / "corrupt.onnx"), "--out", str(out),
            "--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "20", "--min-s", "0.05"]
    p = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       timeout=120)
    assert p.returncode == EXIT_FAILED, p.stderr
    error = json.loads(out.read_text())["error"]
    assert error["type"] == "ModelLoadError" and error["category"] == "invalid_model"


def test_the_host_takes_the_runners_category_and_falls_back_to_the_class_only_without_one(tmp_path):
    # A type name the host has never heard of: only the runner's category says what it is.
    assert runner_error_category({"type": "XmodelCompileError", "category": "invalid_model",
                                  "message": "-"}) == "invalid_model"
    # Results of an older runner on a board (no category): the class of that name in runners.errors.
    cases = {"EngineBuildError": "invalid_model",  # the old class-name table said runtime_error
             "UnsupportedFeatureError": "runtime_error", "DatasetError": "dataset",
             "ModelLoadError": "invalid_model", "OutOfMemory": "out_of_memory",
             "EXIT_FAILED": "runtime_error", "SomethingElse": "runtime_error", None: "runtime_error"}
    for kind, category in cases.items():
        assert runner_error_category({"type": kind, "message": "-"}) == category, kind
        result = {"schema_version": SCHEMA_VERSION, "status": "failed",
                  "error": {"type": kind, "message": "-"}, "model": {"path": "m.onnx"},
                  "runtime": {"name": "null"}}
        assert _cell(result, tmp_path)["error"]["category"] == category, kind
