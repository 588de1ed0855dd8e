"""`host dataset` / `host query` lose nothing and run nothing but a read of `cells` (issue 20 items 1,
2 and 11): the dataset folder replaces only a dataset host wrote; the DuckDB connection is locked
down (no file, network, extension or setting); bad SQL and bad folders are clear errors. Through the
real CLI, on the real file system, with the real DuckDB."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from host.cli import app

runner = CliRunner()


def cell(model: str, device: str = "pi4", campaign: str = "c1", latency: float = 10.0) -> dict:
    """A cell shaped as `host bench` writes it (docs/result-schema.md), with the fields readers use."""
    return {
        "schema_version": "2.0", "status": "ok", "error": None,
        "model": {"path": f"models/{model}.onnx", "host_path": f"models/{model}.onnx", "sha256": "ab" * 32,
                  "size_bytes": 4096, "precision": "fp32"},
        "runtime": {"name": "onnxruntime", "version": "1.20.1", "provider": "CPUExecutionProvider",
                    "threads": 4},
        "configuration": {"backend": "ort", "batch": 1, "seed": 0},
        "latency": {"latency_ms_p50": latency, "latency_ms_p50_ci95": [latency * 0.98, latency * 1.02],
                    "latency_ms_p99": latency * 1.3, "throughput_cps": 1000.0 / latency, "processes": 5,
                    "iterations": 200},
        "verdict": {"result": "VALID", "reasons": [], "warnings": []},
        "memory": {"memory_method": "psutil_rss_poll", "rss_mib_peak": 120.5},
        "manifest": {"device": {"hostname": device, "cpu_model": "Cortex-A72", "cpu_count": 4,
                                "arch": "aarch64"}},
        "timestamps": {"start_utc": "2026-01-01T00:00:00Z", "end_utc": "2026-01-01T00:01:00Z"},
        "cell": {"campaign": campaign, "device": device, "model_stem": model, "config": "ort-b1-t4"},
        "metrics": {"params": 1000000, "flops": 2000000000, "cdl": 20, "precision": "fp32"},
        "host": {"config": {"batch": 1, "threads": 4, "backend": "ort", "slug": "ort-b1-t4"}},
    }


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    """``tmp_path/results`` with one campaign (two cells, campaign.json, a sidecar); cwd ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "results"
    for c in (cell("net_a"), cell("net_b", latency=20.0)):
        path = root / "c1" / "pi4" / f"{c['cell']['model_stem']}__ort-b1-t4.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(c))
    (root / "c1" / "campaign.json").write_text(json.dumps({"name": "c1", "runs": []}))
    (root / "c1" / "pi4" / "net_a__ort-b1-t4.samples.npz").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    return root


def snapshot(root: Path) -> dict:
    """Every file and folder under ``root``: its relative path and bytes (None for a folder)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in root.rglob("*")}


def clean_exit(res, code: int) -> None:
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)


# ------------------------------------------------------------------------ item 1: nothing deleted

@pytest.mark.parametrize("out", ["results", ".", "{tmp}", "results/c1", "results/c1/pi4"])
def test_dataset_out_never_replaces_the_results_or_a_folder_holding_them(results, tmp_path, out):
    before = snapshot(tmp_path)
    res = runner.invoke(app, ["dataset", "results", "--out", out.format(tmp=tmp_path)])
    clean_exit(res, 1)
    assert "refusing to replace" in res.stderr and "hint:" in res.stderr
    assert snapshot(tmp_path) == before


def _foreign_folders(tmp_path: Path) -> dict:
    """Folders (and one file) a user may own that merely look like a dataset, each with a name."""
    made = {}
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.tex").write_text("chapter 1")
    made["non-empty folder"] = notes
    fake = tmp_path / "fake"
    (fake / "campaign=c1" / "device=pi4").mkdir(parents=True)
    (fake / "_source.json").write_text(json.dumps({"results": "elsewhere"}))  # a random _source.json
    (fake / "campaign=c1" / "device=pi4" / "part-0.parquet").write_bytes(b"PAR1")
    made["random _source.json"] = fake
    mixed = tmp_path / "mixed"  # an old-style dataset the user added a file to
    (mixed / "campaign=c1").mkdir(parents=True)
    (mixed / "_source.json").write_text(json.dumps({"results": "r", "cells": 1, "signature": "s"}))
    (mixed / "campaign=c1" / "my-analysis.ipynb").write_text("{}")
    made["dataset with a user's file"] = mixed
    file = tmp_path / "report.txt"
    file.write_text("keep me")
    made["file"] = file
    link = tmp_path / "link"
    link.symlink_to(notes)
    made["symbolic link"] = link
    return made


def test_dataset_and_query_refuse_a_folder_host_did_not_write(results, tmp_path):
    for what, path in _foreign_folders(tmp_path).items():
        before = snapshot(tmp_path)
        for args in (["dataset", "results", "--out", str(path)],
                     ["query", "SELECT 1", "--results", "results", "--dataset", str(path)]):
            res = runner.invoke(app, args)
            clean_exit(res, 1)
            assert str(path) in res.stderr and "refusing to replace" in res.stderr, (what, res.stderr)
            assert snapshot(tmp_path) == before, what


def test_dataset_replaces_only_its_own_dataset_marked_by_its_manifest(results, tmp_path):
    (tmp_path / "empty").mkdir()
    for out in ("empty", "new/ds"):
        clean_exit(runner.invoke(app, ["dataset", "results", "--out", out]), 0)
        source = json.loads((tmp_path / out / "_source.json").read_text())
        assert source["kind"] == "edgegauge-dataset" and source["cells"] == 2
    # an own dataset is replaced in place (the new cell shows) and leaves no temp folder behind
    path = results / "c1" / "nano" / "net_c__ort-b1-t4.json"
    path.parent.mkdir()
    path.write_text(json.dumps(cell("net_c", device="nano")))
    clean_exit(runner.invoke(app, ["dataset", "results", "--out", "empty"]), 0)
    assert json.loads((tmp_path / "empty" / "_source.json").read_text())["cells"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "new", "results"]
    res = runner.invoke(app, ["query", "SELECT count(*) AS n FROM cells", "--dataset", "empty", "--csv"])
    clean_exit(res, 0)
    assert res.stdout.split() == ["n", "3"]


# ------------------------------------------------------------------------ item 2: locked DuckDB

REFUSED = [
    "COPY (SELECT 1) TO '{tmp}/x.csv'",
    "COPY cells TO '{tmp}/results/.dataset/extra.parquet'",
    "ATTACH '{tmp}/x.db' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('{tmp}/results/c1/campaign.json')",
    "SELECT * FROM glob('{tmp}/*')",
    "EXPORT DATABASE '{tmp}/export'",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "RESET lock_configuration",
]


@pytest.fixture
def built(results, tmp_path) -> Path:
    res = runner.invoke(app, ["query", "SELECT count(*) AS n FROM cells", "--results", "results", "--csv"])
    clean_exit(res, 0)
    assert res.stdout.split() == ["n", "2"]
    return tmp_path


@pytest.mark.parametrize("sql", REFUSED)
def test_query_reads_cells_only_and_refuses_files_network_extensions_settings(built, sql):
    before = snapshot(built)
    res = runner.invoke(app, ["query", sql.format(tmp=built), "--results", "results"])
    clean_exit(res, 1)
    assert "query refused" in res.stderr and "reads only the table cells" in res.stderr
    assert f"({sql.split()[0]} " in res.stderr  # names the SQL it refused
    assert "root:" not in res.output and '"runs"' not in res.output
    assert snapshot(built) == before


@pytest.mark.parametrize("sql,names", [("ATTACH '{tmp}/x.db' AS x; CREATE TABLE x.t(a int)", "x.db"),
                                       ("SELECT 1; COPY (SELECT 1) TO '{tmp}/y.csv'", "y.csv")])
def test_query_with_several_statements_is_locked_in_each(built, sql, names):
    before = snapshot(built)
    res = runner.invoke(app, ["query", sql.format(tmp=built), "--results", "results"])
    clean_exit(res, 1)
    assert "query refused" in res.stderr and names in res.stderr
    assert snapshot(built) == before
    res = runner.invoke(app, ["query", "CREATE TEMP TABLE t AS SELECT * FROM cells WHERE latency_ms_p50 > 15;"
                                       " SELECT model FROM t", "--csv"])
    clean_exit(res, 0)
    assert res.stdout.split() == ["model", "net_b"] and snapshot(built) == before


def test_query_help_says_what_it_may_read_and_plain_queries_still_work(built):
    res = runner.invoke(app, ["query", "SELECT model, latency_ms_p50 FROM cells ORDER BY 2", "--csv"])
    clean_exit(res, 0)
    assert res.stdout.split() == ["model,latency_ms_p50", "net_a,10.0", "net_b,20.0"]
    res = runner.invoke(app, ["query", "--help"], env={"COLUMNS": "200"})
    assert "may read the table cells only" in " ".join(res.stdout.replace("`", "").split())


# ------------------------------------------------------------------------ item 11: clear errors

def test_bad_sql_and_empty_results_are_clear_errors(built):
    for sql, says in [("", "query is empty"), ("   -- nothing", "query is empty"),
                      ("SELEC nonsense", "syntax error"),
                      ("SELECT no_such_column FROM cells", "no_such_column")]:
        res = runner.invoke(app, ["query", sql])
        clean_exit(res, 1)
        assert says in res.stderr and "hint:" in res.stderr, (sql, res.stderr)
    (built / "empty").mkdir()
    for args in (["dataset", "empty"], ["query", "SELECT 1", "--results", "empty"]):
        res = runner.invoke(app, args)
        clean_exit(res, 1)
        assert "no result cells under empty" in res.stderr
    assert not any((built / "empty").iterdir())
