"""All campaigns as one Parquet dataset, and SQL over it (``host dataset``, ``host query``).

Layout (hive-style partitions, what DuckDB's ``read_parquet(..., hive_partitioning = true)``,
``pandas.read_parquet(folder)`` and Spark's ``spark.read.parquet(folder)`` read as is)::

    <out>/campaign=<campaign>/device=<device>/part-0.parquet
    <out>/_source.json          what it was built from (ignored by the readers: leading "_")

``<out>`` defaults to ``<results>/.dataset`` (hidden: :func:`host.campaign.store.load_cells`
skips it). One row per cell: the columns of :func:`host.campaign.store.flatten` plus
:data:`EXTRA` where flatten lacks them; ``campaign`` and ``device`` live in the folder names.
One schema for every partition (written from one table): nested values are JSON text, and a
column null in every cell is stored as a string column, since Spark cannot read Parquet's null
type. A cell without a campaign or device lands in the partition ``_unknown``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from host.campaign.store import _get, flatten, is_cell_file, load_cells
from host.errors import AnalysisError, ResultsError

DATASET = ".dataset"
SOURCE_FILE = "_source.json"
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


def rows(cells: list[dict]) -> list[dict]:
    """One flat row per cell: :func:`flatten` plus the :data:`EXTRA` columns it lacks; nested
    values (a recipe, a list) as JSON text, so every partition has the same flat schema."""
    out = []
    for cell in cells:
        row = flatten(cell)
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
    ``<results>/.dataset``), replacing what was there (built in a sibling temp folder, then
    swapped in); returns ``out``.

    Raises:
        InputNotFoundError: ``results`` does not exist. ResultsError: a cell cannot be parsed, or
        there is no cell. OSError: ``out`` cannot be written.
    """
    import pyarrow.dataset as ds

    results = Path(results)
    signature = source_signature(results) if results.is_dir() else ""
    cells = load_cells(results)
    if not cells:
        raise ResultsError(f"no result cells under {results}", hint="run `host bench` first")
    out = Path(out) if out is not None else default_location(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        ds.write_dataset(_table(rows(cells)), tmp, format="parquet", partitioning=list(PARTITIONS),
                         partitioning_flavor="hive", basename_template="part-{i}.parquet",
                         existing_data_behavior="overwrite_or_ignore")
        (tmp / SOURCE_FILE).write_text(json.dumps({"results": str(results.resolve()), "cells": len(cells),
                                                   "signature": signature}, indent=1) + "\n")
        _swap(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _swap(new: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".old-{out.name}-{os.getpid()}")
        os.replace(out, old)
    os.replace(new, out)
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
    """Run ``sql`` with DuckDB over the dataset at ``dataset``, visible as the view ``cells``
    (partition columns ``campaign`` and ``device`` as VARCHAR); returns a pandas DataFrame.

    Raises:
        AnalysisError: DuckDB rejects the query (the message is DuckDB's), or the folder holds
            no Parquet file.
    """
    import duckdb

    files = Path(dataset) / "**" / "*.parquet"
    if not any(Path(dataset).rglob("*.parquet")):
        raise AnalysisError(f"{dataset}: no Parquet file", hint="run `host dataset RESULTS` first")
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW {VIEW} AS SELECT * FROM read_parquet({_sql_string(str(files))}, "
                    "hive_partitioning = true, hive_types = {'campaign': VARCHAR, 'device': VARCHAR}, "
                    "union_by_name = true)")
        return con.execute(sql).df()
    except duckdb.Error as exc:
        hint = f"the view is named {VIEW}; `host query \"DESCRIBE {VIEW}\"` lists its columns"
        raise AnalysisError(f"query failed: {exc}".strip(), hint=hint) from None
    finally:
        con.close()


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
