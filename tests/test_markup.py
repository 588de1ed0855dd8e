"""Strings from a user, a file or a board are printed as text, never as rich markup (issue 20
item 3): a model ``[bold]x`` is shown as ``[bold]x``, a campaign ``x[/]y`` or a query value
``a[/]b`` raises no MarkupError, an inventory error keeps its ``[group]``. Every table builder is
rendered with rich's default console (markup on); the CLI runs are real processes."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from host.analysis.advise import advise
from host.analysis.budgets import Budgets
from host.cli import analysis_render, render
from host.errors import HostError

FIX = Path(__file__).resolve().parent / "fixtures" / "models"
NULL = ["--backend", "null", "--warmup-iters", "1", "--warmup-s", "0", "--min-iters", "5",
        "--min-s", "0.01", "--target-ci", "0.5", "--max-s", "20"]
HOSTILE = ["[bold]x", "x[/]y", "[link=file:///etc]a[/link]", "[red]", "a\\[b]", "[/]"]


def shown(*renderables) -> str:
    """The text rich's default console (markup on) prints: one line per table row."""
    out = Console(width=400, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    for r in renderables:
        out.print(r)
    return out.export_text()


def _cell(name, i):
    return {"cell": {"campaign": name, "device": name, "model_stem": f"{name}{i}", "config": name},
            "status": "invalid", "verdict": {"result": "INVALID", "checks": {name: False}, "reasons": [name]},
            "metrics": {"params": 1000, "flops": 2e6}, "precision": {"name": name},
            "latency": {"latency_ms_p50": 1.0 + i, "processes": 5, "level": name},
            "profile": {"layers": 2, "top": [{"node": name, "op": name, "median_us": 1.0, "share": 0.5,
                                              "calls": 3}]}}


@pytest.mark.parametrize("name", HOSTILE)
def test_every_table_builder_shows_hostile_strings_as_written(name):
    cells = [_cell(name, 0), _cell(name, 1), {**_cell(name, 2), "status": "failed",
                                              "error": {"type": name, "message": name}}]
    ties = {(name, name, f"{name}0", name): [f"{name}1"]}
    tables = [render.bench_table(cells, title=name, show_device=True, ties=ties),
              render.profile_table(cells[0]),
              render.compare_table({"rows": [{"device": name, "model": name, "config": name, "p50_ms_a": 1.0,
                                              "p50_ms_b": 2.0, "ratio": 2.0, "ci95": [1.5, 2.5],
                                              "change": name, "regression": True}]}, title=name),
              render.metrics_table([(name, {"error": {"message": name}}),
                                    (name, {"params": 1, "precision": name, "macs_reason": name,
                                            "inputs": [{"name": name, "shape": [1, name]}]})]),
              analysis_render.correlation_table([{
                  "device": name, "precision": name, "batch": 1, "x": name, "y": name, "n": 3, "r": 0.9,
                  "p_value": 0.01, "slope": 1.0, "intercept": 0.0, "r2": 0.81, "label": name, "scale": name,
                  "x_unit": name, "y_unit": name}], title=name),
              analysis_render.frame_table(pd.DataFrame({name: [name, None]}))]
    advice = analysis_render.advice_tables(advise(cells[:2], Budgets(latency_ms=5.0, statistic="p50")))
    assert shown(*advice).count(name) >= 6, shown(*advice)
    text = shown(*tables)
    assert render.verdict_notes(cells) == [f"{name}{i}: {name}" for i in (0, 1, 2, 2)]  # 2: error, reason
    lines = text.splitlines()
    for table, expected in zip(tables, (9, 1, 4, 4, 6, 1)):
        assert shown(table).count(name) >= expected, (type(table), shown(table))
    assert f"{name}0 ≈A" in text and f"A: {name}0, {name}1" in " ".join(text.split())
    assert sum(line.count(name) for line in lines if "REGRESSION" in line) == 4


@pytest.mark.parametrize("name", HOSTILE)
def test_the_cli_console_and_fail_print_text(name, capsys):
    render.console().print(f"model {name}")
    render.console(stderr=True).print(f"warning: {name}")
    from host.cli.lab import fail

    with pytest.raises(Exception) as info:  # typer.Exit
        fail(HostError(f"inventory: [{name}:vars] bad", hint=f"edit [{name}]"))
    assert getattr(info.value, "exit_code", None) == 1
    out, err = capsys.readouterr()
    assert f"model {name}" in out
    assert f"warning: {name}" in err and f"error: inventory: [{name}:vars] bad" in err
    assert f"hint: edit [{name}]" in err


def host(cwd, *args):
    return subprocess.run([sys.executable, "-m", "host", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})


def test_bench_report_and_query_with_markup_in_names(tmp_path):
    shutil.copy(FIX / "tiny_cnn.onnx", tmp_path / "[bold]x.onnx")
    bench = host(tmp_path, "bench", "[bold]x.onnx", "--device", "local", "--campaign", "x[/]y",
                 "--results", "res", *NULL)
    assert bench.returncode in (0, 3), bench.stdout + bench.stderr  # VALID or (busy machine) INVALID
    assert "Traceback" not in bench.stderr and "campaign x[/]y · local" in bench.stdout
    rows = [line for line in bench.stdout.splitlines() if line.startswith("[bold]x ")]  # the budget table
    assert rows and re.search(r"\[bold\]x: (ok|invalid)", bench.stderr), bench.stdout  # table, progress
    (folder,) = (tmp_path / "res").iterdir()
    report = host(tmp_path, "report", folder)
    shown = report.stdout.splitlines()
    assert report.returncode == 0 and any(line.startswith("[bold]x ") for line in shown), \
        report.stdout + report.stderr
    query = host(tmp_path, "query", "select 'a[/]b' as s, '[red]' as \"[bold]c\", model from cells",
                 "--results", "res")
    assert query.returncode == 0, query.stdout + query.stderr
    row = next(line for line in query.stdout.splitlines() if "a[/]b" in line)
    assert [v.strip() for v in row.split("│")[1:4]] == ["a[/]b", "[red]", "[bold]x"]
    assert "[bold]c" in query.stdout


def test_an_inventory_error_keeps_its_group_text(tmp_path):
    (tmp_path / "lab.ini").write_text("[boards:children]\nmissing\n")
    out = host(tmp_path, "devices", "-i", "lab.ini")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "[boards:children] lists group 'missing'" in out.stderr
    assert "add a [missing] section" in out.stderr
