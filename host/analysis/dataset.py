"""All campaigns as one Parquet dataset, and SQL over it (``host dataset``, ``host query``).

Layout (hive-style partitions, what DuckDB's ``read_parquet(..., hive_partitioning = true)``,
``pandas.read_parquet(folder)`` and Spark's ``spark.read.parquet(folder)`` read as is)::

    <out>/campaign=<campaign>/device=<device>/part-0.parquet
    <out>/_source.json          what it was built from (ignored by the readers: leading "_"); its
                                ``kind`` marks the folder as one this module wrote

``<out>`` is replaced only when it is new, empty, or such a dataset (:func:`check_out`): never
the results, a folder holding them, the current folder, a file, or someone else's folder.

``<out>`` defaults to ``<results>/.dataset`` (hidden: :func:`host.campaign.store.load_cells`
skips it). One row per cell: the columns of :func:`host.campaign.store.flatten`, the frame-rate
budget's verdict (:func:`budget_columns`) and :data:`EXTRA` where flatten lacks them; ``campaign``
and ``device`` live in the folder names.
One schema for every partition (written from one table): nested values are JSON text, and a
column null in every cell is stored as a string column, since Spark cannot read Parquet's null
type. A cell without a campaign or device lands in the partition ``_unknown``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from host.campaign.store import _get, flatten, is_cell_file, load_cells
from host.errors import AnalysisError, DatasetLocationError, QueryRefusedError, ResultsError
from runners.fileio import new_temp

DATASET = ".dataset"
SOURCE_FILE = "_source.json"
KIND = "edgegauge-dataset"  # _source.json's "kind": this folder is a dataset written here
LEGACY_KEYS = {"results", "cells", "signature"}  # _source.json before "kind" (still replaceable)
# DuckDB settings of `host query`'s connection: no extension installed or loaded, no Python
# objects scanned, no spill files; after the table is built, no file access and locked settings
LOCKED = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
          "allow_community_extensions": False, "allow_persistent_secrets": False,
          "python_enable_replacements": False, "temp_directory": ""}
PARTITIONS = ("campaign", "device")
VIEW = "cells"
# column: cell path (added when flatten has no such column)
EXTRA = {
    "precision_name": ("precision", "name"),
    "precision_recipe": ("precision", "recipe"),
    "accuracy_top1": ("accuracy", "top1"),
    "accuracy_top5": ("accuracy", "top5"),
    "energy_mj_per_inference": ("power", "energy_mj_per_inference"),
    "energy_mj_per_inference_dynamic": ("power", "energy_mj_per_inference_dynamic"),
    "power_w_mean": ("power", "power_w_mean"),
    "power_w_idle": ("power", "power_w_idle"),
    "power_verdict": ("power", "verdict", "result"),
}


def default_location(results: Path) -> Path:
    return Path(results) / DATASET


def _cell_files(results: Path) -> list[Path]:
    results = Path(results)
    return sorted(p for p in results.rglob("*.json") if is_cell_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(results).parts))


def source_signature(results: Path) -> str:
    """sha256 over every cell file's relative path, size and mtime under ``results``: it
    changes when a cell is added, rewritten or removed."""
    digest = hashlib.sha256()
    for path in _cell_files(Path(results)):
        st = path.stat()
        digest.update(f"{path.relative_to(results)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def fps_budget(cell: dict):
    """The cell's frame-rate budget (``realtime.fps`` on ``realtime.statistic``, p99 unless the cell
    names p50) judged by the one rule (:func:`host.analysis.budgets.judge`): a
    :class:`host.analysis.budgets.Check`, or None when the cell has no frame rate."""
    from host.analysis.budgets import LATENCY_STATISTICS, Budgets, judge

    fps, statistic = _get(cell, "realtime", "fps"), _get(cell, "realtime", "statistic")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not fps > 0:
        return None
    budgets = Budgets(fps=float(fps), statistic=statistic if statistic in LATENCY_STATISTICS else "p99")
    return judge(cell, budgets).checks[0]


def budget_columns(cell: dict) -> dict:
    """The columns of the cell's frame-rate budget (:func:`fps_budget`): ``fps_budget`` (meets /
    uncertain / misses / not measured), ``fps_budget_statistic`` (e.g. ``latency_ms_p99``),
    ``fps_budget_limit_ms``, ``fps_budget_value_ms`` and its 95 % interval
    ``fps_budget_ci95_lo``/``_hi``; all None without a frame rate."""
    check = fps_budget(cell)
    lo, hi = (check.interval if check is not None and check.interval else (None, None))
    return {"fps_budget": check and check.verdict, "fps_budget_statistic": check and check.statistic,
            "fps_budget_limit_ms": check and check.limit, "fps_budget_value_ms": check and check.value,
            "fps_budget_ci95_lo": lo, "fps_budget_ci95_hi": hi}


def rows(cells: list[dict]) -> list[dict]:
    """One flat row per cell: :func:`flatten`, :func:`budget_columns` and the :data:`EXTRA`
    columns flatten lacks; nested values (a recipe, a list) as JSON text, so every partition has
    the same flat schema."""
    out = []
    for cell in cells:
        row = {**flatten(cell), **budget_columns(cell)}
        for column, path in EXTRA.items():
            row.setdefault(column, _get(cell, *path))
        for column in PARTITIONS:
            row[column] = str(row[column]) if row.get(column) is not None else "_unknown"
        out.append({k: json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else v
                    for k, v in row.items()})
    return out


def _table(records: list[dict]):
    import pandas as pd
    import pyarrow as pa

    table = pa.Table.from_pandas(pd.DataFrame(records), preserve_index=False)
    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            table = table.set_column(i, pa.field(field.name, pa.string()), table.column(i).cast(pa.string()))
    return table


def write_dataset(results: Path, out: Path | None = None) -> Path:
    """Write the partitioned dataset of every cell under ``results`` to ``out`` (default
    ``<results>/.dataset``), replacing what was there only when :func:`check_out` allows (built
    in a sibling temp folder, then swapped in; on failure the old dataset stays); returns ``out``.

    Raises:
        InputNotFoundError: ``results`` does not exist. ResultsError: a cell cannot be parsed, or
        there is no cell. DatasetLocationError: ``out`` may not be replaced (:func:`check_out`).
        OSError: ``out`` cannot be written.
    """
    import pyarrow.dataset as ds

    results = Path(results)
    out = Path(os.path.abspath(out if out is not None else default_location(results)))
    check_out(results, out)
    signature = source_signature(results) if results.is_dir() else ""
    cells = load_cells(results)
    if not cells:
        raise ResultsError(f"no result cells under {results}", hint="run `host bench` first")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(new_temp(out.parent, prefix=f".tmp-{out.name}-", directory=True)[1])  # the user's umask
    try:
        ds.write_dataset(_table(rows(cells)), tmp, format="parquet", partitioning=list(PARTITIONS),
                         partitioning_flavor="hive", basename_template="part-{i}.parquet",
                         existing_data_behavior="overwrite_or_ignore", use_threads=False)
        (tmp / SOURCE_FILE).write_text(json.dumps({"kind": KIND, "results": str(results.resolve()),
                                                   "cells": len(cells), "signature": signature},
                                                  indent=1) + "\n")
        _swap(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def check_out(results: Path, out: Path) -> None:
    """Refuse a dataset folder ``out`` that is not new, empty, or a dataset written here
    (:func:`is_own_dataset`), and one that is, or holds, the results or the current folder.

    Raises:
        DatasetLocationError: naming ``out`` and why.
    """
    target = Path(os.path.realpath(out))
    for name, folder in (("the results folder", Path(results).resolve()), ("the current folder", Path.cwd())):
        if target == folder or target in folder.parents:
            _refuse(out, f"is {name} or holds it")
    if out.is_symlink():
        _refuse(out, "is a symbolic link")
    if out.exists() and not out.is_dir():
        _refuse(out, "is not a folder")
    if out.is_dir() and any(out.iterdir()) and not is_own_dataset(out):
        _refuse(out, f"is not empty and not a dataset host wrote (no {SOURCE_FILE} of kind {KIND!r} "
                     "beside only campaign=*/device=*/*.parquet)")


def _refuse(out: Path, why: str) -> None:
    raise DatasetLocationError(f"{out} {why}: refusing to replace it",
                               hint="name a new or empty folder with --out / --dataset "
                                    "(the default is RESULTS/.dataset)")


def is_own_dataset(folder: Path) -> bool:
    """Whether ``folder`` holds a ``_source.json`` written by :func:`write_dataset` and nothing
    but its partitions: ``campaign=*/device=*/*.parquet`` (no link, no other file)."""
    try:
        source = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(source, dict) or not (source.get("kind") == KIND or set(source) == LEGACY_KEYS):
        return False
    for top, dirs, files in os.walk(folder):
        rel = Path(top).relative_to(folder).parts
        if any(os.path.islink(os.path.join(top, d)) for d in dirs) or not _own_files(rel, files):
            return False
        if rel and not all(part.startswith(key + "=") for part, key in zip(rel, PARTITIONS)):
            return False
        if len(rel) > len(PARTITIONS) or (len(rel) == len(PARTITIONS) and dirs):
            return False
    return True


def _own_files(rel: tuple, files: list[str]) -> bool:
    if not rel:
        return files == [SOURCE_FILE]
    return all(name.endswith(".parquet") for name in files) and (len(rel) == len(PARTITIONS) or not files)


def _swap(new: Path, out: Path) -> None:
    """Put ``new`` in the place of ``out``; the old ``out`` is removed only once ``new`` is there
    (put back when the swap fails)."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{out.name}-", dir=out.parent))
        os.replace(out, old)
    try:
        os.replace(new, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def ensure_dataset(results: Path, out: Path | None = None) -> Path:
    """The dataset of ``results``, rebuilt only when its cells changed since it was written
    (:func:`source_signature`); returns its folder. Raises as :func:`write_dataset`."""
    out = Path(out) if out is not None else default_location(results)
    try:
        source = json.loads((out / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        source = {}
    if Path(results).is_dir() and source.get("signature") == source_signature(results):
        return out
    return write_dataset(results, out)


def query(dataset: Path, sql: str):
    """Run ``sql`` (one or more statements, in order) with DuckDB over the dataset at ``dataset``,
    visible as the table ``cells`` (partition columns ``campaign`` and ``device`` as VARCHAR);
    returns the last statement's rows as a pandas DataFrame. ``cells`` is read into memory first;
    then the connection is locked down (:data:`LOCKED`, no file access, settings locked), so no
    statement can reach anything else: no file, no network, no extension, no setting change.

    Raises:
        AnalysisError: the SQL is empty (no statement), or DuckDB rejects it (the
            message is DuckDB's); the folder holds no Parquet file.
        QueryRefusedError: the SQL reaches past ``cells`` (a file, an extension, a setting).
    """
    import duckdb

    files = Path(dataset) / "**" / "*.parquet"
    if not any(Path(dataset).rglob("*.parquet")):
        raise AnalysisError(f"{dataset}: no Parquet file", hint="run `host dataset RESULTS` first")
    hint = f"the table is named {VIEW}; `host query \"DESCRIBE {VIEW}\"` lists its columns"
    con = duckdb.connect(config=LOCKED)
    try:
        if not con.extract_statements(sql):
            raise AnalysisError("the SQL query is empty: give a statement", hint=hint)
        con.execute(f"CREATE TABLE {VIEW} AS SELECT * FROM read_parquet({_sql_string(str(files))}, "
                    "hive_partitioning = true, hive_types = {'campaign': VARCHAR, 'device': VARCHAR}, "
                    "union_by_name = true)")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con.execute(sql).df()
    except (duckdb.PermissionException, duckdb.InvalidInputException) as exc:
        if isinstance(exc, duckdb.InvalidInputException) and "locked" not in str(exc):
            raise AnalysisError(f"query failed: {exc}".strip(), hint=hint) from None
        said = " ".join(sql.split())
        said = said if len(said) <= 80 else said[:79] + "…"
        raise QueryRefusedError(f"query refused ({said}): {exc}".strip(),
                                hint=f"`host query` reads only the table {VIEW}: no file, network, "
                                     "extension or setting") from None
    except duckdb.Error as exc:
        raise AnalysisError(f"query failed: {exc}".strip(), hint=hint) from None
    finally:
        con.close()


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
