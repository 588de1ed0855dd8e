"""Issue 27: a device's first campaign calibrates it briefly (host bench --auto-calibrate): the
reference workload in 3 groups of 2 fresh processes before the cells, filed in the device's history
on this host, so the first campaign's intervals already carry a between-campaign spread; a device
with history is not calibrated again; --no-auto-calibrate (or its variable) and --no-reference turn
it off; a failing calibration is a warning.

Real campaigns (`host bench --device local --backend null`, real runner processes, the real
reference workload) and real files; each test has its own empty store (tests/conftest.py, which
turns the calibration off for every other test)."""

import json
from pathlib import Path

import pytest
from nullbench import FAST, MEASURED, MODEL, runner

from host.campaign import device_store, reference
from host.cli.main import app


@pytest.fixture(autouse=True)
def _calibration_on(monkeypatch):
    monkeypatch.setenv("EDGEGAUGE_AUTO_CALIBRATE", "1")


def bench(results: Path, campaign: str, *extra):
    res = runner.invoke(app, ["bench", str(MODEL), "--results", str(results), "--campaign", campaign, *FAST,
                              *extra], env={"COLUMNS": "400"})
    assert res.exit_code in MEASURED, res.output
    return " ".join(res.output.split())


def calibrations() -> dict:
    return {k: v for k, v in device_store.reference_campaigns("local").items() if k.startswith("calibrate ")}


def cell_level(results: Path, campaign: str) -> dict:
    cell = json.loads(next((results / campaign / "local").glob("identity*.json")).read_text())
    return cell["latency"]["campaign_level"]


def test_a_first_campaign_calibrates_and_its_intervals_carry_the_devices_spread(tmp_path):
    out = bench(tmp_path / "a", "first")
    assert "local: first campaign on this device: calibrated with 6 reference runs" in out
    assert "speed varies ±" in out and "brief calibration, 3 campaigns" in out
    found = calibrations()
    assert len(found) == 3 and all(len(runs) == 2 for runs in found.values())
    assert all(r["latency_ms_p50"] > 0 for runs in found.values() for r in runs)
    level = cell_level(tmp_path / "a", "first")
    assert level["source"] == "device" and level["device"]["reference_campaigns"] == 3
    assert level["sd_log"] is not None and level["device"]["measured_df"] == 2
    # 2 degrees of freedom of its own: pooled with the assumed spread (2 more), and the cell says so
    assert level["df"] == 4 and level["device"]["prior"]["sd_log"] == 0.05
    cell = json.loads(next((tmp_path / "a" / "first" / "local").glob("identity*.json")).read_text())
    assert any("pooled with an assumed ±9.8% at 2 while the device has little history" in w
               for w in cell["verdict"]["warnings"])
    # the device now has history (3 calibrations + this campaign): the next one is not calibrated
    out = bench(tmp_path / "b", "second")
    assert "first campaign on this device" not in out
    assert len(calibrations()) == 3
    assert cell_level(tmp_path / "b", "second")["device"]["reference_campaigns"] == 4


@pytest.mark.parametrize("how", [["--no-auto-calibrate"], ["--no-reference"], "env"])
def test_it_can_be_turned_off(tmp_path, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("EDGEGAUGE_AUTO_CALIBRATE", "0")
    out = bench(tmp_path, "c", *([] if how == "env" else how))
    assert "first campaign on this device" not in out
    assert calibrations() == {}
    assert cell_level(tmp_path, "c")["source"] == "none"


def test_a_failing_calibration_is_a_warning_and_the_campaign_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(reference, "ARGV", ("reference", "--no-such-option"))
    out = bench(tmp_path, "c")
    assert "warning: the first-campaign calibration failed" in out and "Traceback" not in out
    assert calibrations() == {}
    assert len(list((tmp_path / "c" / "local").glob("identity*.json"))) == 1
