"""Issue 27 (reference workload): `python -m runners reference` is deterministic and complete; a
campaign runs it once per round per board and logs it in campaign.json; a failing one is a warning;
a machine-wide step in it is reported once as a machine trend.

Real runner processes, the real CLI (`host bench --device local --backend null`) and real files."""

import json
import subprocess
import sys

import pytest
from nullbench import FAST, MEASURED, MODEL, ROOT, runner

from host.campaign import reference
from host.cli.main import app


def bench(results, *extra):
    return runner.invoke(app, ["bench", str(MODEL), "--results", str(results), "--campaign", "c", *FAST,
                               *extra], env={"COLUMNS": "400"})


def campaign_doc(results) -> dict:
    return json.loads((results / "c" / "campaign.json").read_text())


def run_reference_json() -> dict:
    out = subprocess.run([sys.executable, "-m", "runners", "reference", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def test_the_reference_workload_is_deterministic_and_its_result_has_the_fields():
    first, second = run_reference_json(), run_reference_json()
    assert first["workload"]["checksum"] == second["workload"]["checksum"]
    assert len(first["workload"]["checksum"]) == 64
    for doc in (first, second):
        assert doc["kind"] == "reference"
        assert doc["latency_ms_p50"] == doc["latency"]["latency_ms_p50"] > 0
        assert doc["samples"] == doc["latency"]["iterations"] >= 30
        assert doc["numpy"] and doc["noise_within"] is not None
        assert doc["blas_threads"]["OPENBLAS_NUM_THREADS"] == "1"
        assert doc["blas_threads"]["pinned_before_numpy"] is True
        assert doc["timestamps"]["start_utc"]


def test_a_campaign_logs_one_reference_run_per_round(tmp_path):
    result = bench(tmp_path)
    assert result.exit_code in MEASURED, result.output
    doc = campaign_doc(tmp_path)
    rounds = sorted({r for r, _ in doc["runs"][-1]["order"]["local"]})
    records = doc["reference"]["local"]
    assert [r["round"] for r in records] == rounds and len(rounds) >= 3
    for rec in records:
        assert rec["latency_ms_p50"] > 0 and rec["samples"] >= 30 and rec["start_utc"]
    assert len({r["checksum"] for r in records}) == 1


def test_no_reference_turns_it_off(tmp_path):
    result = bench(tmp_path, "--no-reference")
    assert result.exit_code in MEASURED, result.output
    assert campaign_doc(tmp_path)["reference"] == {}


def test_a_failing_reference_run_is_a_warning_not_the_campaigns_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(reference, "ARGV", ("reference", "--no-such-option"))
    result = bench(tmp_path)
    assert result.exit_code in MEASURED, result.output
    assert "warning: reference run of round 1 failed" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert campaign_doc(tmp_path)["reference"] == {}
    assert len(list((tmp_path / "c" / "local").glob("identity*.json"))) == 1


def _records(p50s):
    return [{"round": i, "start_utc": "2026-01-01T00:00:00Z", "latency_ms_p50": p, "samples": 100}
            for i, p in enumerate(p50s, 1)]


@pytest.mark.parametrize("p50s, trend", [
    ([1.0, 1.01, 0.99, 1.3, 1.31, 1.29], True),   # a step: +30 % in the last rounds
    ([1.0, 1.02, 0.98, 1.01, 0.99, 1.03], False),  # noise within ±3 %
    ([1.0], False),
])
def test_machine_trend_of_constructed_records(p50s, trend):
    found = reference.machine_trend(_records(p50s))
    assert bool(found and found["trend"]) is trend
    if trend:
        assert found["change"] == pytest.approx(0.30, abs=0.01)
        assert found["first_rounds"] == [1, 2] and found["last_rounds"] == [5, 6]


def test_a_trend_across_runs_of_one_campaign_names_the_run_of_each_round():
    """Two host bench runs into one campaign (another runtime's command, a resume): the second run's
    rounds count from 1 again, so the note names the run, not "rounds 3-2"."""
    records = _records([1.0, 1.01, 0.99]) + _records([1.3, 1.31, 1.29])
    for r in records[3:]:
        r["others_cpu_share"] = 0.5
    for r in records[:3]:
        r["others_cpu_share"] = 0.0
    line = reference.trend_line("b1", reference.machine_trend(records))
    assert "run 2 round 2 to run 2 round 3 (1.3 ms) than in run 1 round 1 to run 1 round 2 (1 ms)" in line
    assert "before run 2 round 1 and 50% from it on" in line
    one = reference.trend_line("b1", reference.machine_trend(_records([1.0, 1.01, 0.99, 1.3, 1.31, 1.29])))
    assert "in rounds 5-6 (1.3 ms) than in rounds 1-2 (1 ms)" in one  # one run: rounds as before


def test_a_step_in_the_reference_is_reported_once_as_a_machine_trend(tmp_path):
    assert bench(tmp_path).exit_code in MEASURED
    path = tmp_path / "c" / "campaign.json"
    doc = json.loads(path.read_text())
    doc["reference"] = {"local": _records([1.0, 1.0, 1.01, 0.99, 1.5, 1.52, 1.49, 1.5, 1.51])}
    path.write_text(json.dumps(doc))
    for folder in (tmp_path, tmp_path / "c", tmp_path / "c" / "local"):
        out = " ".join(runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "o")],
                                     env={"COLUMNS": "400"}).output.split())
        assert out.count("machine trend") == 1, out
        assert "machine trend on local: the reference workload ran 50% slower in rounds 7-9" in out
