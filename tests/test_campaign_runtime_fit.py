"""The plan asks the runtime's descriptor (issue 21): a cell whose device family the runtime does not
target (``targets_family``), or whose precision it does not run (``runs_precision``), is not run —
logged with its reason in ``campaign.json`` and the board's summary notes — and a campaign with no
cell left is refused before any board is touched. Real descriptors where one declares the case
(tensorrt targets jetson and x86_a100 only); for a precision, the null runtime's descriptor with one
precision fewer (no runtime here refuses a precision of a model format it loads)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import runners.backends
from host.campaign.protocol import Protocol
from host.campaign.run import run_campaign
from host.errors import NoModelsError
from host.lab.benchconfig import BenchConfig
from host.lab.board import Board, open_transport
from host.lab.inventory import local_device
from host.models.precision import Recipe
from runners.core import Policy

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "models" / "identity.onnx"
FAST = Protocol(target_ci=0.5, max_cell_s=30.0)
NULL_CONFIG = BenchConfig(backend="null", timeout_s=60, policy=Policy(
    warmup_min_iterations=1, warmup_min_s=0.0, min_iterations=5, min_duration_s=0.01, cov_max=100.0))
WHY_FAMILY = "runtime tensorrt targets the families jetson, x86_a100, not arm_cpu"


def _devices(tmp_path):
    """``here`` (this machine, the null runtime: every family) and ``pi`` (an arm_cpu board whose
    inventory says tensorrt: a runtime for jetson and x86_a100)."""
    here = dataclasses.replace(local_device(str(tmp_path / "work")), name="here", runtime="null")
    pi = dataclasses.replace(local_device(str(tmp_path / "pi")), name="pi", family="arm_cpu",
                             runtime="tensorrt")
    return here, pi


def _opened(calls):
    def open_board(device):
        calls.append(device.name)
        return Board(device, open_transport(device))
    return open_board


def test_a_family_the_runtime_does_not_target_is_not_run_and_says_why(tmp_path):
    here, pi = _devices(tmp_path)
    calls = []
    res = run_campaign([MODEL], [here, pi], NULL_CONFIG, results=tmp_path / "r", campaign="c",
                       protocol=FAST, open_board=_opened(calls))
    assert [c["cell"]["device"] for c in res.cells] == ["here"] and calls == ["here"]
    assert res.boards["pi"].planned == 0 and res.boards["pi"].run == 0
    assert res.boards["pi"].notes == [f"not run ({WHY_FAMILY}): identity tensorrt-b1-tall"]
    doc = json.loads((tmp_path / "r" / "c" / "campaign.json").read_text())
    assert doc["runs"][-1]["skipped"] == [{"device": "pi", "model": "identity", "config": "tensorrt-b1-tall",
                                           "reason": WHY_FAMILY}]
    assert [e["device"] for e in doc["plan"]] == ["here"]
    assert not list((tmp_path / "r" / "c" / "pi").glob("*.json"))


def test_no_cell_left_is_refused_before_any_board_is_opened(tmp_path):
    _, pi = _devices(tmp_path)
    calls = []
    with pytest.raises(NoModelsError, match=WHY_FAMILY) as err:
        run_campaign([MODEL], [pi], NULL_CONFIG, results=tmp_path / "r", campaign="c", protocol=FAST,
                     open_board=_opened(calls))
    assert calls == [] and "host runtimes" in err.value.hint
    assert not list((tmp_path / "r" / "c").rglob("identity__*"))  # no cell, not even a failed one


def test_an_unknown_family_may_be_any(tmp_path):
    """``local`` and None are no family of runners/families: the runtime is not asked about them."""
    from host.campaign.plan import Variant, runtime_refuses

    variant = Variant(MODEL, "fp32", MODEL)
    for family in (None, "local", "no_such_family"):
        device = dataclasses.replace(local_device(str(tmp_path)), family=family)
        assert runtime_refuses("tensorrt", device, variant) is None
    jetson = dataclasses.replace(local_device(str(tmp_path)), family="jetson")
    assert runtime_refuses("tensorrt", jetson, variant) is None
    assert runtime_refuses("vart", jetson, variant).startswith("runtime vart targets the families zcu104")


def test_a_precision_the_runtime_does_not_run_is_not_run(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a cold variant cache
    real = runners.backends.descriptors()
    fp32_only = dict(real, null=dataclasses.replace(real["null"], precisions=("fp32",)))
    monkeypatch.setattr(runners.backends, "descriptors", lambda: fp32_only)
    here, _ = _devices(tmp_path)
    # no reference workload: a machine trend on a busy machine would be one more note
    res = run_campaign([MODEL], [here], NULL_CONFIG, results=tmp_path / "r", campaign="c", protocol=FAST,
                       precisions=("fp32", Recipe("fp16")), reference=False)
    assert [c["precision"]["name"] for c in res.cells] == ["fp32"]
    assert res.boards["here"].notes == [
        "not run (runtime null runs fp32, not fp16): identity null-b1-tall-fp16"]
    skipped = json.loads((tmp_path / "r" / "c" / "campaign.json").read_text())["runs"][-1]["skipped"]
    assert [s["config"] for s in skipped] == ["null-b1-tall-fp16"]
    with pytest.raises(NoModelsError, match="runtime null runs fp32, not fp16"):
        run_campaign([MODEL], [here], NULL_CONFIG, results=tmp_path / "r", campaign="d", protocol=FAST,
                     precisions=(Recipe("fp16"),))
