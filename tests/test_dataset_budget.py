"""The dataset (``host query``, real DuckDB over real Parquet), ``results.csv`` and the HTML report
of a real fp32 + int8 campaign on this machine: ``precision`` is the variant's, and the frame-rate
budget is judged by the one rule on the statistic's 95 % interval (``fps_budget``), with the
statistic, the limit and the interval beside it; the old point-value column is gone."""

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from host.cli import app

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "examples" / "models" / "digits_cnn.onnx"
FAST = ["--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "10", "--min-s", "0.02",
        "--target-ci", "0.5", "--threads", "1"]
runner = CliRunner()


def host(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    results = tmp_path_factory.mktemp("budget") / "r"
    res = host("bench", DIGITS, "--device", "local", "--results", results, "--campaign", "p",
               "--precision", "fp32,int8", "--fps", "60", *FAST, "--json")
    assert res.exit_code in (0, 3), res.output  # 3: INVALID timing on a busy machine
    cells = {c["precision"]["name"]: c for c in json.loads(res.stdout)}
    assert sorted(cells) == ["fp32", "int8-cal"]
    return results, cells


def rule(cell: dict) -> str:
    """The one rule, read off the cell here: the p99's 95 % interval against 1000 / fps."""
    limit = 1000.0 / cell["realtime"]["fps"]
    lo, hi = cell["latency"]["latency_ms_p99_ci95"]
    if cell["verdict"]["result"] == "INVALID" and not lo > limit:
        return "uncertain"
    return "meets" if hi <= limit else "misses" if lo > limit else "uncertain"


def test_query_names_the_variants_precision_and_the_fps_budget_verdict(campaign):
    results, cells = campaign
    res = host("query", "--results", results, "--json",
               "SELECT config, precision, precision_name, fps_budget, fps_budget_statistic, "
               "fps_budget_limit_ms, fps_budget_value_ms, fps_budget_ci95_lo, fps_budget_ci95_hi FROM cells")
    assert res.exit_code == 0, res.output
    rows = {r["config"]: r for r in json.loads(res.stdout)}
    for name, cell in cells.items():
        row = rows[cell["cell"]["config"]]
        assert row["precision"] == row["precision_name"] == name  # int8-cal, not the source's fp32
        assert row["fps_budget_statistic"] == "latency_ms_p99"
        assert row["fps_budget_limit_ms"] == pytest.approx(1000 / 60)
        lat = cell["latency"]  # --json keeps 15 significant digits
        assert row["fps_budget_value_ms"] == pytest.approx(lat["latency_ms_p99"], rel=1e-12)
        assert [row["fps_budget_ci95_lo"], row["fps_budget_ci95_hi"]] == \
            pytest.approx(lat["latency_ms_p99_ci95"], rel=1e-12)
        assert row["fps_budget"] == rule(cell)
    columns = host("query", "--results", results, "--json", "DESCRIBE cells")
    names = {r["column_name"] for r in json.loads(columns.stdout)}
    assert "meets_fps_budget" not in names and "fps_budget" in names


def test_results_csv_and_html_carry_the_budget_verdict(campaign):
    results, cells = campaign
    res = host("report", results / "p", "--html")
    assert res.exit_code == 0, res.output
    with open(results / "p" / "results.csv", newline="") as fh:
        rows = {r["config"]: r for r in csv.DictReader(fh)}
    for name, cell in cells.items():
        row = rows[cell["cell"]["config"]]
        assert row["precision"] == name and row["fps_budget"] == rule(cell)
        assert "meets_fps_budget" not in row
    page = (results / "p" / "report.html").read_text()
    assert "frame budget" in page and "meets when the upper end of the statistic" in page
    for cell in cells.values():
        verdict = rule(cell)
        lo, hi = cell["latency"]["latency_ms_p99_ci95"]
        p99 = cell["latency"]["latency_ms_p99"]
        assert f"{verdict}</span>: p99 {p99:.4g} ({lo:.4g}–{hi:.4g}) ≤ 16.67 ms" in page
