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
    speedups = speedup_table(cells)
    if speedups is not None:
        out.print(speedups)
    if printable(corr_rows):
        from host.cli.analysis_render import correlation_table

        out.print(correlation_table(printable(corr_rows)))


def _times(value, ci=None, fmt: str = "{:.2f}", unit: str = "x") -> str:
    """``1.15x`` with ``[1.02, 1.29]`` on a second line when there is an interval; ``-`` for None."""
    if value is None:
        return "-"
    text = fmt.format(value) + unit
    return text if ci is None else f"{text}\n[{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def speedup_table(cells: list):
    """DLAS's share of the expected speedup, one row per compressed cell with its dense source in
    ``cells`` (host/analysis/compression.py); None when there is none. The model cell names the
    pruning under the model; a device column only when the rows span several devices."""
    from host.analysis.compression import speedup_rows
    from host.cli.render import PlainTable

    rows = speedup_rows(cells)
    if not rows:
        return None
    devices = sorted({str(r["device"]) for r in rows})
    many = len(devices) > 1
    table = PlainTable(title="pruned vs dense: share of the expected speedup achieved (DLAS)"
                             + ("" if many else f", device {devices[0]}"),
                       caption="expected: dense / pruned non-zero weights (unstructured), dense / pruned "
                               "FLOPs (channels); achieved: dense p50 / pruned p50 [95 %; two cells of one "
                               "campaign: their within-campaign intervals]; share: achieved / expected")
    for col in ("model", *(["device"] if many else []), "config", "expected", "achieved", "share"):
        table.add_column(col, justify="right" if col in ("expected", "achieved", "share") else "left")
    for r in rows:
        share = None if r["share"] is None else 100 * r["share"]
        ci = None if r["share_ci95"] is None else [100 * v for v in r["share_ci95"]]
        of = "weights" if r["expected_of"] == "nonzeros" else "FLOPs"
        expected = "-" if r["expected"] is None else f"{r['expected']:.1f}x\n{of}"
        table.add_row(f"{r['model']}\n{r['method']} {r['ratio']:g}", *([r["device"]] if many else []),
                      r["config"], expected, _times(r["achieved"], r["achieved_ci95"]),
                      _times(share, ci, "{:.0f}", "%"))
    return table


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
