"""Correlations, scaling advice and the partitioned dataset (host/analysis/correlate.py,
advise.py, dataset.py) on hand-made cells with known lines; `host report`, `host advise`,
`host dataset` and `host query` through the CLI."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from host.analysis.advise import advise, pareto_front, solve_s
from host.analysis.budgets import Budgets
from host.analysis.correlate import correlations, fit, printable
from host.analysis.dataset import ensure_dataset, query, write_dataset
from host.campaign.store import load_cells
from host.cli import app
from host.errors import AnalysisError, UnknownDeviceError

runner = CliRunner()


def make_cell(model, *, device="pi4", campaign="c1", flops=1e9, params=1e6, cdl=20, latency=10.0, ci=None,
              rss=100.0, energy=None, top1=None, precision=None, status="ok", batch=1,
              start="2026-01-01T00:00:00Z"):
    cell = {
        "schema_version": "2.0", "status": status,
        "cell": {"campaign": campaign, "device": device, "model_stem": model, "config": "b1"},
        "metrics": {"params": params, "flops": flops, "cdl": cdl},
        "latency": {"latency_ms_p50": latency, "latency_ms_p50_ci95": ci, "processes": 5},
        "memory": {"rss_mib_peak": rss},
        "configuration": {"batch": batch},
        "timestamps": {"start_utc": start},
    }
    if energy is not None:
        cell["power"] = {"energy_mj_per_inference": energy, "power_w_idle": 2.0}
    if top1 is not None:
        cell["accuracy"] = {"top1": top1}
    if precision is not None:
        cell["precision"] = {"name": precision, "recipe": {}, "metrics": {}}
    return cell


def write_cells(root: Path, cells) -> Path:
    for cell in cells:
        info = cell["cell"]
        path = root / info["campaign"] / info["device"] / f"{info['model_stem']}__{info['config']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cell))
    return root


# A width-scaled family: FLOPs = S²·F1 and params = S²·P1; latency = A·FLOPs + B exactly.
F1, P1, A, B = 4e9, 2e6, 2.5e-9, 1.5  # latency(S=1) = 11.5 ms
WIDTHS = (0.25, 0.5, 0.75, 1.0)


def family(device="pi4", campaign="c1", **extra):
    return [make_cell(f"net_w{s}", device=device, campaign=campaign, flops=s * s * F1, params=s * s * P1,
                      cdl=10 + 4 * s, latency=A * s * s * F1 + B, rss=50 + 1e-5 * s * s * P1, **extra)
            for s in WIDTHS]


def row(rows, x, y, device="pi4"):
    (found,) = [r for r in rows if r["x"] == x and r["y"] == y and r["device"] == device]
    return found


# ------------------------------------------------------------------------------------------ fits

def test_exact_line_gives_r_one_and_the_line():
    rows = correlations(family())
    r = row(rows, "flops", "latency_ms")
    assert r["n"] == 4 and r["scale"] == "linear"
    assert r["r"] == pytest.approx(1.0) and r["r2"] == pytest.approx(1.0)
    assert r["slope"] == pytest.approx(A) and r["intercept"] == pytest.approx(B)
    assert r["p_value"] < 0.05 and r["label"] == "ok"
    m = row(rows, "params", "rss_mib_peak")
    assert m["slope"] == pytest.approx(1e-5) and m["intercept"] == pytest.approx(50)


def test_noisy_r_matches_numpy_and_the_line_matches_polyfit():
    rng = np.random.default_rng(3)
    x = np.linspace(1e8, 5e9, 12)
    y = 3e-9 * x + 2 + rng.normal(0, 2.0, x.size)
    cells = [make_cell(f"m{i}", flops=float(a), latency=float(b)) for i, (a, b) in enumerate(zip(x, y))]
    r = row(correlations(cells), "flops", "latency_ms")
    assert r["r"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    slope, intercept = np.polyfit(x, y, 1)
    assert r["slope"] == pytest.approx(slope) and r["intercept"] == pytest.approx(intercept)
    assert r["r2"] == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2)


def test_loglog_scale_is_over_log10_values_and_recorded():
    x = [1e6, 1e7, 1e8, 1e9]
    y = [0.5 * v ** 0.8 for v in x]  # a power law: a straight line in log–log with slope 0.8
    out = fit(x, y, scale="loglog")
    assert out["scale"] == "loglog" and out["slope"] == pytest.approx(0.8)
    assert out["intercept"] == pytest.approx(math.log10(0.5)) and out["x_min"] == 1e6
    with pytest.raises(ValueError):
        fit(x, y, scale="log")


def test_weak_insignificant_and_small_fits_are_labelled_not_dropped():
    # r is near zero for this set: weak and insignificant
    xs, ys = [1, 2, 3, 4, 5, 6], [5, 1, 4, 2, 5, 1]
    out = fit(xs, ys)
    assert abs(out["r"]) < 0.5 and out["p_value"] >= 0.05
    assert out["label"] == "weak, insignificant"
    # strong but with few points: r 0.9 at n = 4 is not significant at 5 %
    strong = fit([1, 2, 3, 4], [1, 3, 2, 4.5])
    assert abs(strong["r"]) >= 0.5 and strong["p_value"] >= 0.05 and strong["label"] == "insignificant"
    two = fit([1, 2], [3, 5])
    assert two["n"] == 2 and two["label"].startswith("n<3")
    assert fit([1, 1, 1], [1, 2, 3])["label"] == "constant" and fit([1, 1, 1], [1, 2, 3])["r"] is None
    # a two-model device keeps its rows (labelled) but is not printed
    cells = family() + [make_cell("a", device="nano"), make_cell("b", device="nano", flops=2e9, latency=20)]
    rows = correlations(cells)
    nano = row(rows, "flops", "latency_ms", device="nano")
    assert nano["n"] == 2 and "n<3" in nano["label"]
    assert {r["device"] for r in printable(rows)} == {"pi4"}


def test_one_point_per_model_latest_campaign_and_energy_only_when_measured():
    old = [dict(c, timestamps={"start_utc": "2025-01-01T00:00:00Z"}) for c in family(campaign="old")]
    for c in old:
        c["latency"] = dict(c["latency"], latency_ms_p50=999.0)
    rows = correlations(old + family())
    r = row(rows, "flops", "latency_ms")
    assert r["n"] == 4 and r["r"] == pytest.approx(1.0)  # the old campaign's 999 ms are not used
    assert not [x for x in rows if x["y"] == "energy_mj"]
    with_energy = correlations([dict(c, power={"energy_mj_per_inference": 1e-9 * c["metrics"]["flops"]})
                                for c in family()])
    assert row(with_energy, "flops", "energy_mj")["slope"] == pytest.approx(1e-9)


def test_precisions_and_failed_cells_are_kept_apart():
    failed = make_cell("broken", status="failed", latency=None)
    rows = correlations(family() + family(precision="int8") + [failed])
    assert {(r["precision"], r["n"]) for r in rows if r["x"] == "flops" and r["y"] == "latency_ms"} == {
        ("fp32", 4), ("int8", 4)}


# ---------------------------------------------------------------------------------------- advice

P50 = dict(statistic="p50")


def only_fit(result):
    (found,) = result["fits"]
    return found


def test_scaling_ratio_solves_the_line_by_hand():
    # target 6 ms on the exact family: S² · F1 · A + B = 6
    #   =>  S = sqrt((6 - 1.5) / (2.5e-9 · 4e9)) = sqrt(0.45)
    result = advise(family(), Budgets(latency_ms=6.0, **P50), base="net_w1.0")
    fitted = only_fit(result)
    (only,) = fitted["scaling"]
    assert fitted["family"] == "net" and fitted["y"] == "latency_ms_p50"
    assert only["s"] == pytest.approx(math.sqrt(0.45)) and only["direction"] == "shrink"
    assert fitted["x_target"] == pytest.approx(4.5 / 2.5e-9)
    assert fitted["fit"]["r"] == pytest.approx(1.0) and fitted["warnings"] == [] and fitted["note"] is None
    # base w0.5 (FLOPs F1/4): S = sqrt(0.45 · 4) > 1, it could widen
    half = only_fit(advise(family(), Budgets(latency_ms=6.0, **P50), base="net_w0.5"))["scaling"][0]
    assert half["s"] == pytest.approx(math.sqrt(1.8)) and half["direction"] == "widen"
    assert solve_s(2.0, 1.0, 4.0, 9.0) == pytest.approx(1.0)


def test_memory_target_uses_params_and_no_base_lists_every_model():
    fitted = only_fit(advise(family(), Budgets(memory_mib=60.0)))
    assert fitted["x"] == "params" and len(fitted["scaling"]) == 4
    # 50 + 1e-5 · S² · P1 = 60  =>  S² = 10 / (1e-5 · 2e6) = 0.5
    full = [s for s in fitted["scaling"] if s["model"] == "net_w1.0"][0]
    assert full["s"] == pytest.approx(math.sqrt(0.5))


def test_target_outside_the_fitted_range_is_a_note_not_extrapolated():
    # 100 ms needs FLOPs = (100 - 1.5) / 2.5e-9 ≈ 3.9e10, far above the largest model (4e9)
    fitted = only_fit(advise(family(), Budgets(latency_ms=100.0, **P50), base="net_w1.0"))
    assert fitted["scaling"] == [] and "above the largest measured" in fitted["note"]
    assert fitted["fit"]["r"] == pytest.approx(1.0)  # the fit is still reported
    # below the intercept: no model is that fast
    assert "intercept" in only_fit(advise(family(), Budgets(latency_ms=1.0, **P50)))["note"]
    few = advise(family()[:2], Budgets(latency_ms=2.0, **P50))
    assert few["fits"] == [] and "net has 2 model(s)" in few["not_fitted"][0]


def test_weak_fit_warns():
    cells = [make_cell(f"m_w{i}", flops=f, latency=t)
             for i, (f, t) in enumerate([(1e9, 10), (2e9, 6), (3e9, 12), (4e9, 8), (5e9, 11)])]
    fitted = only_fit(advise(cells, Budgets(latency_ms=9.0, **P50)))
    assert fitted["warnings"] and "weak" in fitted["warnings"][0]


def test_advice_errors():
    with pytest.raises(AnalysisError, match="no result cells"):
        advise([], Budgets(latency_ms=10.0))
    with pytest.raises(UnknownDeviceError, match="pi4"):
        advise(family(), Budgets(latency_ms=10.0), device="jetson")
    with pytest.raises(AnalysisError, match="base model 'nope'"):
        advise(family(), Budgets(latency_ms=6.0), base="nope")
    with pytest.raises(ValueError, match="positive"):
        Budgets(latency_ms=-1.0)
    with pytest.raises(AnalysisError, match="precision 'int8'"):
        advise(family(), Budgets(latency_ms=6.0), precision="int8")
    with pytest.raises(AnalysisError, match="slope"):
        solve_s(-1.0, 0.0, 1.0, 1.0)
    # energy without a meter is an answer ("no meter"), not an error
    (row, *_) = advise(family(), Budgets(energy_mj=10.0))["rows"]
    assert row["checks"][0]["verdict"] == "no meter"


def test_budget_needs_the_ci_upper_bound_within_it():
    cells = [make_cell("clear", latency=10.0, ci=[9.0, 11.0]),
             make_cell("straddles", latency=15.0, ci=[14.0, 17.0]),
             make_cell("over", latency=20.0, ci=[18.0, 22.0]),
             make_cell("no_ci", latency=12.0, ci=None)]
    rows = advise(cells, Budgets(latency_ms=16.67, **P50))["rows"]
    got = {r["model"]: r["verdict"] for r in rows}
    assert got == {"clear": "meets", "straddles": "uncertain", "over": "misses", "no_ci": "uncertain"}
    # the interval's upper end at the budget is within it (the one rule, host.analysis.budgets)
    edge = advise([make_cell("edge", latency=16.0, ci=[15.0, 16.67])], Budgets(latency_ms=16.67, **P50))
    assert edge["rows"][0]["verdict"] == "meets"
    mem = advise([make_cell("a", rss=90.0), make_cell("b", rss=120.0)], Budgets(memory_mib=100.0))["rows"]
    assert [(r["model"], r["verdict"]) for r in mem] == [("a", "meets"), ("b", "misses")]


def test_pareto_front_on_hand_made_points():
    pts = [{"model": "a", "lat": 1.0, "p": 10.0}, {"model": "b", "lat": 2.0, "p": 5.0},
           {"model": "c", "lat": 3.0, "p": 6.0},  # dominated by b
           {"model": "d", "lat": 4.0, "p": 1.0}, {"model": "e", "lat": 1.0, "p": 12.0},  # e: dominated by a
           {"model": "f", "lat": None, "p": 0.1}]
    assert [p["model"] for p in pareto_front(pts, "lat", "p")] == ["a", "b", "d"]
    acc = [{"model": "a", "lat": 1.0, "acc": 0.70}, {"model": "b", "lat": 2.0, "acc": 0.80},
           {"model": "c", "lat": 3.0, "acc": 0.75}, {"model": "d", "lat": 3.0, "acc": 0.90}]
    assert [p["model"] for p in pareto_front(acc, "lat", "acc", maximize_b=True)] == ["a", "b", "d"]


def test_advice_pareto_lists_accuracy_and_energy_only_where_measured():
    cells = family()
    result = advise(cells, Budgets(latency_ms=6.0, **P50))
    # latency and params both grow with S: the smallest model dominates the rest
    assert [p["model"] for p in result["pareto"]["latency_params"]] == ["net_w0.25"]
    assert result["pareto"]["latency_accuracy"] == [] and result["pareto"]["latency_energy"] == []
    for cell, acc in zip(cells, (0.5, 0.6, 0.7, 0.8)):
        cell["accuracy"] = {"top1": acc}
    front = advise(cells, Budgets(latency_ms=6.0, **P50))["pareto"]["latency_accuracy"]
    assert [p["model"] for p in front] == [f"net_w{s}" for s in WIDTHS]


# --------------------------------------------------------------------------------------- dataset

def test_partitioned_dataset_reads_back_in_duckdb_and_pandas(tmp_path):
    import pandas as pd

    extra = make_cell("x", device="nano", campaign="c2", energy=3.0, top1=0.9, precision="int8")
    cells = family() + family(device="nano") + family(campaign="c2") + [extra]
    root = write_cells(tmp_path / "results", cells)
    out = write_dataset(root)
    assert out == root / ".dataset"
    parts = sorted(str(p.relative_to(out)) for p in out.rglob("*.parquet"))
    assert parts == ["campaign=c1/device=nano/part-0.parquet", "campaign=c1/device=pi4/part-0.parquet",
                     "campaign=c2/device=nano/part-0.parquet", "campaign=c2/device=pi4/part-0.parquet"]
    frame = query(out, "SELECT device, count(*) AS n FROM cells GROUP BY device ORDER BY device")
    assert frame.to_dict("records") == [{"device": "nano", "n": 5}, {"device": "pi4", "n": 8}]
    one = query(out, "SELECT model, energy_mj_per_inference, accuracy_top1, precision_name FROM cells "
                     "WHERE energy_mj_per_inference IS NOT NULL")
    assert one.to_dict("records") == [{"model": "x", "energy_mj_per_inference": 3.0, "accuracy_top1": 0.9,
                                       "precision_name": "int8"}]
    df = pd.read_parquet(out)
    assert len(df) == 13 and set(df["campaign"].astype(str)) == {"c1", "c2"}
    assert sorted(df.loc[df["device"].astype(str) == "pi4", "latency_ms_p50"]) == sorted(
        [A * s * s * F1 + B for s in WIDTHS] * 2)
    assert len(load_cells(root)) == 13  # the dataset folder is not read back as cells


def test_dataset_is_rebuilt_only_when_cells_change(tmp_path):
    root = write_cells(tmp_path / "results", family())
    out = ensure_dataset(root)
    marker = (out / "_source.json").stat().st_mtime_ns
    assert ensure_dataset(root) == out and (out / "_source.json").stat().st_mtime_ns == marker
    write_cells(root, [make_cell("new", campaign="c3")])
    ensure_dataset(root)
    assert len(query(out, "SELECT * FROM cells")) == 5


def test_query_errors(tmp_path):
    root = write_cells(tmp_path / "results", family())
    out = write_dataset(root)
    with pytest.raises(AnalysisError, match="query failed"):
        query(out, "SELECT no_such_column FROM cells")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnalysisError, match="no Parquet"):
        query(tmp_path / "empty", "SELECT 1")


# ------------------------------------------------------------------------------------------- CLI

def test_host_query_cli_prints_csv_json_and_table(tmp_path):
    root = write_cells(tmp_path / "results", family() + family(device="nano"))
    sql = "SELECT device, count(*) AS n FROM cells GROUP BY device ORDER BY device"
    res = runner.invoke(app, ["query", sql, "--results", str(root), "--csv"])
    assert res.exit_code == 0, res.output
    assert list(csv.DictReader(res.stdout.splitlines())) == [{"device": "nano", "n": "4"},
                                                             {"device": "pi4", "n": "4"}]
    res = runner.invoke(app, ["query", sql, "--results", str(root), "--json"])
    assert json.loads(res.stdout) == [{"device": "nano", "n": 4}, {"device": "pi4", "n": 4}]
    res = runner.invoke(app, ["query", sql, "--results", str(root)])
    assert res.exit_code == 0 and "nano" in res.stdout and "pi4" in res.stdout
    res = runner.invoke(app, ["query", "SELEC nonsense", "--results", str(root)])
    assert res.exit_code == 1 and "query failed" in res.stderr
    res = runner.invoke(app, ["query", sql, "--results", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "does not exist" in res.stderr


def test_host_dataset_cli_writes_to_out(tmp_path):
    root = write_cells(tmp_path / "results", family())
    res = runner.invoke(app, ["dataset", str(root), "--out", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ds" / "campaign=c1" / "device=pi4" / "part-0.parquet").is_file()


def test_host_advise_cli(tmp_path):
    root = write_cells(tmp_path / "results", family())
    p50 = ["--latency-ms", "6", "--statistic", "p50"]
    res = runner.invoke(app, ["advise", str(root), "--device", "pi4", *p50, "--base", "net_w1.0", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["fits"][0]["scaling"][0]["s"] == pytest.approx(math.sqrt(0.45))
    res = runner.invoke(app, ["advise", str(root), "--device", "pi4", *p50])
    assert res.exit_code == 0 and "width scaling" in res.stdout and "Pareto front" in res.stdout
    res = runner.invoke(app, ["advise", str(root), "--latency-ms", "100", "--statistic", "p50"])
    assert res.exit_code == 0 and "above the largest measured" in " ".join(res.stdout.split())
    res = runner.invoke(app, ["advise", str(root), "--device", "nope", "--latency-ms", "6"])
    assert res.exit_code == 1 and "no measured cell of device 'nope'" in res.stderr
    res = runner.invoke(app, ["advise", str(root), "--device", "pi4"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["advise", str(root), "--device", "pi4", "--energy-mj", "3"])
    assert res.exit_code == 0 and "no meter" in res.stdout


def test_host_report_prints_and_saves_correlations(tmp_path):
    root = write_cells(tmp_path / "results", family())
    res = runner.invoke(app, ["report", str(root)])
    assert res.exit_code == 0, res.output
    assert "correlations" in res.stdout and "FLOPs → latency" in res.stdout
    with open(root / "correlations.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    flops = [r for r in rows if r["x"] == "flops" and r["y"] == "latency_ms"][0]
    assert float(flops["r"]) == pytest.approx(1.0) and flops["scale"] == "linear" and flops["n"] == "4"
    # two models: the file keeps the fits (labelled), the table is not printed
    small = write_cells(tmp_path / "small", family()[:2])
    res = runner.invoke(app, ["report", str(small)])
    assert res.exit_code == 0 and "FLOPs → latency" not in res.stdout
    with open(small / "correlations.csv", newline="") as handle:
        assert all("n<3" in r["label"] for r in csv.DictReader(handle))
