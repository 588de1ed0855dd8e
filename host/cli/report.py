"""``host report``: a results folder as the budget table (or ``--wide``: every figure), written as
results.csv, results.parquet and correlations.csv (``--html``: report.html)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from host.cli.lab import fail as _fail
from host.cli.options import (
    AccuracyMinOpt,
    ColumnsOpt,
    EnergyMjOpt,
    FpsOpt,
    LatencyMsOpt,
    MemoryMibOpt,
    MemoryScopeOpt,
    PowerWOpt,
    Scope,
    Statistic,
    StatisticOpt,
    WideOpt,
    budgets_of,
    table_view,
)
from host.errors import HostError


def report(
    results_dir: Annotated[Path, typer.Argument(
        help="a results folder (campaign, device or root)")],
    out: Annotated[Optional[Path], typer.Option(
        help="where to write results.csv/.parquet [RESULTS_DIR]")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="print the cells as JSON instead of a table")] = False,
    html_out: Annotated[bool, typer.Option(
        "--html", help="also write report.html: one self-contained page with tables and plots")] = False,
    fps: FpsOpt = 60.0,
    latency_ms: LatencyMsOpt = None,
    statistic: StatisticOpt = Statistic.p99,
    memory_mib: MemoryMibOpt = None,
    memory_scope: MemoryScopeOpt = Scope.process,
    power_w: PowerWOpt = None,
    energy_mj: EnergyMjOpt = None,
    accuracy_min: AccuracyMinOpt = None,
    wide: WideOpt = False,
    columns: ColumnsOpt = None,
):
    """Tabulate a results folder and write results.csv and results.parquet (--html: report.html).

    The table judges every cell against the budgets (--fps 60 unless given; one ✓/?/✗ per budget
    and a verdict, by the rule in its caption), with a campaign column over several campaigns;
    --wide shows every measured figure instead, --columns picks. Also correlations.csv: static
    metrics against the measurements per device and precision (host/analysis/correlate.py); the
    table is printed when a device has at least 3 models.
    """
    from host.analysis.report import mode_conflicts
    from host.campaign.store import load_cells
    from host.cli.render import console, print_json, styled
    from host.cli.skipped import report_skipped

    view = table_view(budgets_of(fps, latency_ms, statistic, memory_mib, memory_scope, power_w, energy_mj,
                                 accuracy_min), wide, columns)
    try:
        with report_skipped():
            cells = load_cells(results_dir)
        if not cells:
            raise HostError(f"no result cells under {results_dir}",
                            hint="run `host bench` first")
        target = out or (results_dir if results_dir.is_dir() else results_dir.parent)
        written, corr_rows = _write(cells, target, results_dir, html_out, view.budgets)
    except HostError as exc:
        _fail(exc)
        return
    except OSError as exc:
        _fail(HostError(f"cannot write the tables: {exc}", hint="pass --out to a writable folder"))
        return
    csv_path, parquet_path, corr_path, html_path = written
    if json_out:
        print_json(cells)
    else:
        _print_tables(cells, corr_rows, view, str(results_dir))
        _print_machines(cells, results_dir)
        console().print(f"wrote {csv_path}, {parquet_path} and {corr_path}", highlight=False)
    if html_path is not None:
        console(stderr=json_out).print(f"wrote {html_path}", highlight=False)
    for line in mode_conflicts(cells):
        console(stderr=True).print(styled(("warning:", "yellow"),
                                          f" {line} (kept apart: column power_mode_key)"), highlight=False)


def _print_machines(cells: list, results_dir: Path) -> None:
    """Each device's speed variation (``host calibrate``) and each campaign's machine trend, once."""
    from host.campaign.reference import folder_lines
    from host.cli.render import console

    for line in folder_lines(results_dir, {(c.get("cell") or {}).get("device") for c in cells} - {None}):
        console().print(line, highlight=False, soft_wrap=True)


def _write(cells: list, target: Path, results_dir: Path, html_out: bool, budgets=None) -> tuple:
    """results.csv, results.parquet, correlations.csv (and report.html) in ``target``:
    ``((csv, parquet, correlations, html or None), correlation rows)``. Raises HostError, OSError."""
    from host.analysis.correlate import correlations, write_correlations
    from host.analysis.report import write_tables

    csv_path, parquet_path = write_tables(cells, target)
    corr_rows = correlations(cells)
    corr_path = write_correlations(corr_rows, target)
    html_path = _write_html(cells, target, results_dir, budgets) if html_out else None
    return (csv_path, parquet_path, corr_path, html_path), corr_rows


def _print_tables(cells: list, corr_rows: list, view, title: str) -> None:
    """The cells' table (``view``), their layer profiles and the printable correlations."""
    from host.analysis.compare import indistinguishable
    from host.analysis.correlate import printable
    from host.cli.render import console, profile_table

    out = console()
    view.print(out, cells, title, show_device=len({(c.get("cell") or {}).get("device") for c in cells}) > 1,
               ties=indistinguishable(cells))
    for table in filter(None, map(profile_table, cells)):
        out.print(table)
    from host.cli.stack_table import stack_tables

    for table in stack_tables(cells):
        out.print(table)
    if printable(corr_rows):
        from host.cli.analysis_render import correlation_table

        out.print(correlation_table(printable(corr_rows)))


def _write_html(cells: list, target: Path, results_dir: Path, budgets=None) -> Path:
    """``host report --html``: ``target/report.html`` (host.analysis.html); a plot whose sidecar
    (``.samples.npz``, ``.power.csv``) cannot be read is named on stderr as plain text."""
    from host.analysis.html import write_html

    notes: list = []
    path = write_html(cells, target / "report.html", title=str(results_dir), notes_out=notes, budgets=budgets)
    for note in notes:
        if "cannot read" in note:
            typer.echo(f"plot not drawn: {note}", err=True)
    return path
