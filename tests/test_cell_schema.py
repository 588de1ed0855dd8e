"""The cell schema (host/campaign/schema.py) at every load (issue 20 item 4).

A committed corpus of hostile cells (tests/fixtures/hostile/cells/, ``expected.json``: file -> the
field that must be named) next to real cells (tests/fixtures/cells/, ORIGIN.md): every reader
command skips the hostile ones with a count and goes on; hypothesis checks that the validator and
the loader raise nothing but their typed errors, and that a cell the schema accepts does not crash
the readers.
"""

import copy
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from host.analysis.advise import advise
from host.analysis.budgets import Budgets
from host.analysis.compare import compare_campaigns, indistinguishable
from host.analysis.correlate import correlations
from host.analysis.html import render_html
from host.campaign.samples import read_samples, write_samples
from host.campaign.schema import CELL_SCHEMA, SCHEMA_VERSION, validate_cell
from host.campaign.store import earlier_cells, flatten, load_cells, read_cell
from host.cli.render import bench_table, profile_table
from host.errors import CellSchemaError, HostError

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = FIXTURES / "hostile" / "cells"
REAL = sorted((FIXTURES / "cells").glob("*.json"))
EXPECTED = json.loads((HOSTILE / "expected.json").read_text())
BAD = {name: case["field"] for name, case in EXPECTED.items() if case["field"] is not None}
GOOD_REAL = FIXTURES / "cells" / "mobilenet_v2_w0.25_cifar10__null-b1-tall.json"
ROOT = Path(__file__).resolve().parent.parent


def _real(path=GOOD_REAL) -> dict:
    return json.loads(Path(path).read_text())


# --------------------------------------------------------------------------- the schema itself


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_cells_pass_the_schema(path):
    assert _real(path)["schema_version"] == SCHEMA_VERSION
    validate_cell(_real(path), path)
    assert read_cell(path)["cell"]["device"] == "local"


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_hostile_cell_is_refused_naming_its_file_and_field(name):
    with pytest.raises(CellSchemaError) as info:
        read_cell(HOSTILE / name)
    err = info.value
    assert err.field == BAD[name] and err.path == str(HOSTILE / name)
    assert str(err).startswith(f"{HOSTILE / name}: {BAD[name] or 'the document'}")
    assert "host bench" in err.hint and "aside" in err.hint


def test_unknown_versions_are_refused_and_2x_accepted():
    for version, ok in (("2.0", True), ("2.7", True), ("1.0", False), ("3.0", False), ("2", False),
                        ("v2.0", False), ("2.0\n", False)):
        doc = dict(_real(), schema_version=version)
        if ok:
            validate_cell(doc, "x.json")
        else:
            with pytest.raises(CellSchemaError, match="schema_version") as info:
                validate_cell(doc, "x.json")
            assert info.value.field == "schema_version"


def test_unknown_fields_are_allowed_known_fields_typed():
    doc = _real()
    doc["a_2x_field"] = {"anything": [1, "x", None]}
    doc["latency"]["new_stat_ms"] = "text"
    validate_cell(doc, "x.json")
    doc["latency"]["latency_ms_p50_rerun95"] = [3, "x"]
    with pytest.raises(CellSchemaError, match="latency_ms_p50_rerun95"):
        validate_cell(doc, "x.json")


def test_doc_section_3_keys_are_all_in_the_schema():
    text = (ROOT / "docs" / "result-schema.md").read_text()
    section = text.split("## 3. Top-level keys", 1)[1].split("\n## ", 1)[0]
    keys = {k for row in section.splitlines() if row.startswith("| `")
            for k in re.findall(r"`([a-z0-9_]+)`", row.split("|")[1])}
    assert {"schema_version", "latency", "power", "accuracy", "warnings"} <= keys
    assert keys <= set(CELL_SCHEMA["properties"]), keys - set(CELL_SCHEMA["properties"])


# --------------------------------------------------------------------------- loader and samples


def _results(tmp_path: Path) -> Path:
    """A results root: campaign c1 with the real cells, two more valid models (a width family for
    advise), every hostile cell and the corrupt samples sidecar."""
    folder = tmp_path / "results" / "c1" / "local"
    folder.mkdir(parents=True)
    for path in REAL:
        shutil.copy(path, folder / path.name)
    base = _real()
    write_samples(folder / base["samples"]["file"], [[np.arange(1000, 2000, dtype=np.int64)]] * 5)
    for scale in (2, 4):
        doc = copy.deepcopy(base)
        doc["cell"]["model_stem"] = stem = f"mobilenet_v2_x{scale}"
        doc["metrics"]["flops"] *= scale
        doc["metrics"]["params"] *= scale
        for key in ("latency_ms_p50", "latency_ms_p99"):
            doc["latency"][key] *= scale
        doc["latency"]["latency_ms_p50_ci95"] = [v * scale for v in doc["latency"]["latency_ms_p50_ci95"]]
        doc.pop("samples")
        (folder / f"{stem}__null-b1-tall.json").write_text(json.dumps(doc))
    for path in HOSTILE.iterdir():
        if path.name != "expected.json":
            shutil.copy(path, folder / path.name)
    return tmp_path / "results"


def test_load_cells_skips_each_hostile_file_with_its_field(tmp_path):
    root = _results(tmp_path)
    cells = load_cells(root)
    stems = sorted(c["cell"]["model_stem"] for c in cells)
    assert stems == sorted(["badsamples", "digits_cnn", "mobilenet_v2_w0.25_cifar10", "mobilenet_v2_x2",
                            "mobilenet_v2_x4"])
    skipped = {Path(s.path).name: s.field for s in cells.skipped}
    assert skipped == BAD
    assert all(s.problem for s in cells.skipped)


def test_earlier_cells_passes_over_a_corrupt_earlier_cell(tmp_path):
    good = _real()
    for campaign, text in (("old", json.dumps(good)), ("bad", '{"schema_version": "2.0", "latency": [')):
        path = tmp_path / campaign / "local" / GOOD_REAL.name
        path.parent.mkdir(parents=True)
        path.write_text(text)
    bad = copy.deepcopy(good)
    bad["latency"]["latency_ms_p50_ci95_within"] = [1]
    (tmp_path / "bad2" / "local").mkdir(parents=True)
    (tmp_path / "bad2" / "local" / GOOD_REAL.name).write_text(json.dumps(bad))
    found = earlier_cells(tmp_path, "now", "local", "mobilenet_v2_w0.25_cifar10", "null-b1-tall",
                          good["model"]["sha256"])
    assert [c["campaign"] for c in found] == ["c1"]


@pytest.mark.parametrize("cut", [0, 10, 100, 0.5, -20])
def test_a_truncated_or_garbage_samples_file_is_a_valueerror(tmp_path, cut):
    path = tmp_path / "c.samples.npz"
    write_samples(path, [[np.arange(5000, dtype=np.int64)], [np.arange(7, dtype=np.int64)]])
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut) if isinstance(cut, float) else cut])
    with pytest.raises(ValueError):
        read_samples(path)


def test_samples_with_inconsistent_arrays_are_a_valueerror(tmp_path):
    path = tmp_path / "c.samples.npz"
    np.savez_compressed(path, latency_ns=np.arange(4), session_offsets=np.array([0, 9]),
                        session_process=np.array([2 ** 30], dtype=np.int32))
    with pytest.raises(ValueError, match="session"):
        read_samples(path)


# --------------------------------------------------------------------------- the reader commands


def _host(*args, cwd):
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "host", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _skipped_note_ok(stderr: str, folders: int = 1):
    assert stderr.count(f"skipped {len(BAD)} cell(s) that fail the schema:") == folders
    named = re.findall(r"^  (\S+): ", stderr, flags=re.M)
    assert len(named) == 5 * folders and all(Path(n).name in BAD for n in named)
    assert stderr.count(f"... and {len(BAD) - 5} more") == folders


def test_reader_commands_skip_hostile_cells_and_go_on(tmp_path):
    root = _results(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(root, other)
    runs = {
        "report": _host("report", root, "--out", tmp_path / "t1", cwd=tmp_path),
        "report --html": _host("report", root, "--html", "--out", tmp_path / "t2", cwd=tmp_path),
        "compare": _host("compare", root, other, cwd=tmp_path),
        "advise": _host("advise", root, "--device", "local", "--latency-ms", "0.0001", cwd=tmp_path),
        "dataset": _host("dataset", root, "--out", tmp_path / "ds", cwd=tmp_path),
        "query": _host("query", "SELECT count(*) AS n FROM cells", "--results", root, "--dataset",
                       tmp_path / "ds2", "--json", cwd=tmp_path),
    }
    for name, run in runs.items():
        assert "Traceback" not in run.stdout + run.stderr, (name, run.stderr)
        assert run.returncode == 0, (name, run.stdout, run.stderr)
        _skipped_note_ok(run.stderr, folders=2 if name == "compare" else 1)
    assert "mobilenet_v2_x4" in runs["report"].stdout and "badsamples" in runs["report"].stdout
    assert json.loads(runs["query"].stdout) == [{"n": 5}]
    page = (tmp_path / "t2" / "report.html").read_text()
    assert re.search(r"plot not drawn: latency_cdf: \S*badsamples__null-b1-tall\.samples\.npz", page)
    assert re.search(r"^plot not drawn: latency_cdf: \S*badsamples__null-b1-tall\.samples\.npz: cannot read",
                     runs["report --html"].stderr, flags=re.M)


def test_report_of_only_hostile_cells_names_them_then_fails_cleanly(tmp_path):
    folder = tmp_path / "r" / "c1" / "local"
    folder.mkdir(parents=True)
    shutil.copy(HOSTILE / "list__null-b1-tall.json", folder)
    run = _host("report", tmp_path / "r", cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "skipped 1 cell(s) that fail the schema:" in run.stderr
    assert "list__null-b1-tall.json: (document): expected object" in run.stderr
    assert "no result cells" in run.stderr


# --------------------------------------------------------------------------- properties

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc[:2]):
            yield from _paths(value, (*prefix, i))


BASE = _real()
PATHS = [p for p in _paths(BASE) if p]


def _mutated(path, value, drop):
    doc = copy.deepcopy(BASE)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if drop and isinstance(parent, dict):
        parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return doc


def _read_everything(cells):
    """What the readers do with cells in memory: tables, comparison, correlations, the HTML page."""
    for cell in cells:
        flatten(cell)
        profile_table(cell)
    Console(file=io.StringIO(), width=200).print(bench_table(cells, ties=indistinguishable(cells)))
    compare_campaigns(cells, cells)
    correlations(cells)
    render_html(cells, "t", [], [])
    try:
        advise(cells, Budgets(fps=60, memory_mib=100, power_w=5, energy_mj=1, accuracy_min=0.5))
    except HostError:
        pass


@settings(max_examples=int(os.environ.get("CELL_FUZZ_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), JSON, st.booleans())
def test_a_mutated_cell_is_refused_or_read_without_a_crash(path, value, drop):
    doc = _mutated(path, value, drop)
    doc = json.loads(json.dumps(doc))  # as a file would give it back (NaN and all)
    try:
        validate_cell(doc, "m.json")
    except CellSchemaError as exc:
        assert exc.path == "m.json" and isinstance(exc.field, str)
        return
    other = copy.deepcopy(BASE)
    other["cell"]["model_stem"] = "other"
    _read_everything([doc, other])


@settings(max_examples=300, deadline=None)
@given(JSON | st.dictionaries(st.sampled_from(sorted(CELL_SCHEMA["properties"])), JSON, max_size=6)
       .map(lambda d: {"schema_version": "2.0", "status": "ok", **d}))
def test_any_json_value_is_valid_or_a_cell_schema_error(doc):
    try:
        validate_cell(doc, "x.json")
    except CellSchemaError:
        return
    _read_everything([doc])


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()))
def test_load_cells_raises_nothing_but_host_errors(content):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "c1" / "local"
        folder.mkdir(parents=True)
        (folder / "m__null-b1-tall.json").write_bytes(content)
        (folder / "idle-1.json").write_bytes(content)
        try:
            cells = load_cells(Path(tmp))
        except HostError:
            return
        assert len(cells) + len(cells.skipped) <= 2
