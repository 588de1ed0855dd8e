"""Issue 27: the device's history on this host (host.campaign.device_store). A campaign in one
results folder files its reference records there; a campaign in a fresh folder inherits the
device's spread from them; a campaign seen in both places counts once; a hostile or unwritable
store loses nothing and fails nothing.

Real campaigns (`host bench --backend null`, real runner processes, the real reference workload)
and real files; each test has its own empty store (tests/conftest.py)."""

import json
import shutil
from pathlib import Path

import pytest
from nullbench import FAST, MEASURED, MODEL, runner

from host.campaign import device_store
from host.campaign.device_effect import device_level_in
from host.cli.main import app


def bench(results: Path, campaign: str, model: Path = MODEL, *extra):
    res = runner.invoke(app, ["bench", str(model), "--results", str(results), "--campaign", campaign, *FAST,
                              *extra], env={"COLUMNS": "400"})
    assert res.exit_code in MEASURED, res.output
    return res


def test_a_fresh_folder_inherits_the_devices_spread_from_other_folders(tmp_path):
    bench(tmp_path / "a", "first")
    bench(tmp_path / "b", "second")
    stored = device_store.reference_campaigns("local")
    assert sorted(stored) == sorted([device_store.campaign_key(tmp_path / "a", "first"),
                                     device_store.campaign_key(tmp_path / "b", "second")])
    assert all(r["latency_ms_p50"] > 0 for records in stored.values() for r in records)
    level = device_level_in(tmp_path / "fresh", "now", "local")
    assert level["campaigns"] == 2 and level["reference_campaigns"] == 2 and level["sd_log"] is not None
    # a model new everywhere, in a fresh folder: its cell says it used the device's spread
    model = tmp_path / "m" / "newcomer.onnx"
    model.parent.mkdir()
    shutil.copy(MODEL, model)
    bench(tmp_path / "fresh", "now", model)
    cell = json.loads(next((tmp_path / "fresh" / "now" / "local").glob("newcomer*.json")).read_text())
    assert cell["latency"]["campaign_level"]["source"] == "device"
    assert cell["latency"]["campaign_level"]["device"]["reference_campaigns"] == 2


def test_a_campaign_in_the_folder_and_in_the_store_counts_once(tmp_path):
    bench(tmp_path / "r", "one")
    bench(tmp_path / "r", "two")
    assert len(device_store.reference_campaigns("local")) == 2
    level = device_level_in(tmp_path / "r", "three", "local")
    assert level["campaigns"] == 2 and level["reference_campaigns"] == 2  # not 4
    bench(tmp_path / "r", "three")
    # the campaign itself is left out, from both places: one and three remain
    assert device_level_in(tmp_path / "r", "two", "local")["reference_campaigns"] == 2


@pytest.mark.parametrize("text", ["{not json", "[]", '{"kind": "other", "campaigns": []}',
                                  '{"kind": "edgegauge-device-history", "campaigns": [5, {"key": 1}, '
                                  '{"key": "k", "records": "x"}]}'])
def test_a_hostile_store_reads_as_empty_and_is_replaced_on_the_next_campaign(tmp_path, text):
    path = device_store.state_dir() / "devices" / "local.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert device_store.reference_campaigns("local") == {}
    assert device_level_in(tmp_path / "r", "x", "local")["campaigns"] == 0
    bench(tmp_path / "r", "c")
    assert list(device_store.reference_campaigns("local")) == [device_store.campaign_key(tmp_path / "r", "c")]


def test_the_store_keeps_the_last_campaigns_and_replaces_a_key():
    for n in range(device_store.KEEP + 5):
        device_store.add("d", {f"c{n}": [{"latency_ms_p50": 1.0 + n}]})
    device_store.add("d", {"c10": [{"latency_ms_p50": 99.0}]})  # dropped long ago: filed again, last
    kept = device_store.reference_campaigns("d")
    assert len(kept) == device_store.KEEP and "c0" not in kept and list(kept)[-1] == "c10"
    assert kept["c10"] == [{"latency_ms_p50": 99.0}]
    device_store.add("d", {"c20": [{"latency_ms_p50": 5.0}]})
    assert device_store.reference_campaigns("d")["c20"] == [{"latency_ms_p50": 5.0}]


def test_an_unwritable_store_is_a_note_not_a_failure(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder belongs")
    monkeypatch.setenv("EDGEGAUGE_STATE_DIR", str(blocker))
    res = bench(tmp_path / "r", "c")
    assert "device history" in " ".join(res.output.split()) and "EDGEGAUGE_STATE_DIR" in res.output
    assert blocker.read_text() == "a file where the state folder belongs"
    assert list((tmp_path / "r" / "c" / "local").glob("identity*.json"))  # the cell is kept


def test_the_state_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEGAUGE_STATE_DIR", str(tmp_path / "s"))
    assert device_store.state_dir() == tmp_path / "s"
    monkeypatch.delenv("EDGEGAUGE_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert device_store.state_dir() == tmp_path / "xdg" / "edgegauge"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert device_store.state_dir() == tmp_path / "home" / ".local" / "state" / "edgegauge"


def test_a_fresh_folder_sees_the_cells_measured_in_other_folders(tmp_path):
    """Campaigns file their cells' p50s too: a model measured in three other folders has, in a fresh
    folder, three earlier campaigns of its own (its spread, pooled with the device's), each read
    from the store once."""
    for folder in ("a", "b", "c"):
        bench(tmp_path / folder, "run")
    stored = device_store.cell_campaigns("local")
    assert sorted(stored) == sorted(device_store.campaign_key(tmp_path / f, "run") for f in "abc")
    written = json.loads(next((tmp_path / "a" / "run" / "local").glob("identity*.json")).read_text())
    (obs,) = stored[device_store.campaign_key(tmp_path / "a", "run")]
    assert obs["p50_ms"] == written["latency"]["latency_ms_p50"]
    assert obs["ci95"] == written["latency"]["latency_ms_p50_ci95_within"]
    assert obs["cell"].startswith("identity|") and obs["cell"].endswith(written["model"]["sha256"])
    level = device_level_in(tmp_path / "fresh", "now", "local")
    assert level["campaigns"] == 3 and level["cells"] == 2  # the model and the reference workload
    bench(tmp_path / "fresh", "now")
    cell = json.loads(next((tmp_path / "fresh" / "now" / "local").glob("identity*.json")).read_text())
    own = cell["latency"]["campaign_level"]
    assert own["earlier_campaigns"] == 3 and own["source"] == "cell+device"
    assert sorted(own["campaigns"]) == sorted(stored)
    # read back in a folder that holds one of them: that campaign counts once
    again = device_level_in(tmp_path / "a", "later", "local")
    assert again["campaigns"] == 4


def test_hostile_cell_entries_in_the_store_are_passed_over():
    path = device_store.state_dir() / "devices" / "local.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"kind": "edgegauge-device-history", "campaigns": [
        {"key": "k", "cells": [5, {"cell": 1}, {"cell": "x", "p50_ms": "a", "ci95": [1, 2]},
                               {"cell": "y", "p50_ms": 1.0, "ci95": [1]}]},
        {"key": "j", "cells": "nope", "records": [{"latency_ms_p50": 1.0}]}]}))
    assert device_store.cell_campaigns("local") == {}
    assert list(device_store.reference_campaigns("local")) == ["j"]
