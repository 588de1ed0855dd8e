"""``host dataset`` and ``host query``: every campaign as one partitioned Parquet dataset, and
DuckDB SQL over it (:mod:`host.analysis.dataset`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand

from host.cli.lab import fail as _fail
from host.cli.skipped import report_skipped
from host.errors import HostError

ResultsArg = Annotated[Path, typer.Option("--results", help="results root folder")]
DatasetOpt = Annotated[Optional[Path], typer.Option(
    "--dataset", help="the dataset folder [RESULTS/.dataset]; replaced only when new, empty or a dataset "
                      "host wrote")]


def dataset(
    results_dir: Annotated[Path, typer.Argument(help="results root folder")] = Path("results"),
    out: Annotated[Optional[Path], typer.Option(
        help="dataset folder to write [RESULTS/.dataset]; replaced only when new, empty or a dataset "
             "host wrote")] = None,
):
    """Write every campaign's cells as one Parquet dataset partitioned by campaign and device
    (campaign=X/device=Y/part-0.parquet), readable as is by DuckDB, pandas and Spark.

    The folder is replaced only when it is new, empty, or a dataset host wrote (its _source.json);
    never the results, a folder holding them, the current folder or any other folder."""
    from host.analysis.dataset import write_dataset
    from host.cli.render import console

    try:
        with report_skipped():
            folder = write_dataset(results_dir, out)
    except HostError as exc:
        _fail(exc)
        return
    except OSError as exc:
        _fail(HostError(f"cannot write the dataset: {exc}", hint="pass --out to a writable folder"))
        return
    console().print(f"wrote {folder}", highlight=False)


def query(
    sql: Annotated[str, typer.Argument(help="SQL over the table `cells` (one row per cell); with several "
                                            "statements, the last one's rows are printed")],
    results: ResultsArg = Path("results"),
    dataset_dir: DatasetOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON records")] = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="print CSV")] = False,
):
    """Run DuckDB SQL over all campaigns (the table `cells`: one row per cell, the columns of
    results.csv plus campaign and device). The dataset is (re)built first when the cells changed.

    The query may read the table `cells` only: no file (read_csv, COPY, ATTACH a file, EXPORT), no
    network, no extension (INSTALL, LOAD), no SET; such a query is refused.

    Example: host query "SELECT device, model, latency_ms_p50 FROM cells ORDER BY 3"
    """
    from host.analysis.dataset import ensure_dataset
    from host.analysis.dataset import query as run_query
    from host.cli.analysis_render import frame_table
    from host.cli.render import console

    if json_out and csv_out:
        raise typer.BadParameter("give --json or --csv, not both")
    try:
        with report_skipped():
            folder = ensure_dataset(results, dataset_dir)
        frame = run_query(folder, sql)
    except HostError as exc:
        _fail(exc)
        return
    except OSError as exc:
        _fail(HostError(f"cannot write the dataset: {exc}", hint="pass --dataset to a writable folder"))
        return
    if json_out:
        sys.stdout.write(frame.to_json(orient="records", indent=2, date_format="iso",
                                       double_precision=15) + "\n")
    elif csv_out:
        frame.to_csv(sys.stdout, index=False)
    else:
        console().print(frame_table(rounded(frame)))


#: significant digits of a float in ``host query``'s table (--json and --csv keep every digit)
DIGITS = 4


def rounded(frame):
    """``frame`` for the table: every float as text in :data:`DIGITS` significant digits (a
    missing value stays missing); other values as they are."""
    import math

    out = frame.copy()
    for column in out.columns:
        if out[column].dtype.kind == "f" or out[column].map(lambda v: isinstance(v, float)).any():
            out[column] = out[column].map(
                lambda v: format(v, f".{DIGITS}g") if isinstance(v, float) and math.isfinite(v) else
                (None if isinstance(v, float) and math.isnan(v) else v)).astype(object)
    return out


def dataset_columns() -> list:
    """The columns of the view ``cells``, in order: those of one row of the dataset
    (:func:`host.analysis.dataset.rows`), so the help never lags behind it."""
    from host.analysis.dataset import rows

    return list(rows([{}])[0])


class QueryCommand(TyperCommand):
    """``host query``'s click command: its ``--help`` ends with the view's columns, read from the
    dataset code when help is asked for (not at every start of ``host``)."""

    def format_help(self, ctx, formatter) -> None:
        if "\n\nColumns of `cells`" not in (self.help or ""):
            self.help = f"{self.help}\n\nColumns of `cells`: {', '.join(dataset_columns())}."
        super().format_help(ctx, formatter)
