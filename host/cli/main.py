"""The ``host`` command line (Typer). Commands parse options, call :mod:`host` library
functions and render; this is the only place where errors become messages and exit codes.

Exit codes: 0 success; 1 error, or at least one cell failed; 2 bad usage; 3 no cell
failed but at least one was INVALID; 4 ``host compare --fail-above``: a regression; 130
``bench`` interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP (finished cells kept).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from host.cli.bench import bench
from host.cli.compare import compare
from host.cli.lab import fail as _fail
from host.cli.options import MAX_BATCH, bounded, parse_shapes
from host.errors import HostError

app = typer.Typer(
    name="host",
    help="edgegauge host: benchmark ONNX models on this machine and on lab boards over SSH.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(bench)

@app.command()
def report(
    results_dir: Annotated[Path, typer.Argument(
        help="a results folder (campaign, device or root)")],
    out: Annotated[Optional[Path], typer.Option(
        help="where to write results.csv/.parquet [RESULTS_DIR]")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="print the cells as JSON instead of a table")] = False,
    html_out: Annotated[bool, typer.Option(
        "--html", help="also write report.html: one self-contained page with tables and plots")] = False,
):
    """Tabulate a results folder and write results.csv and results.parquet (--html: report.html).

    Also correlations.csv: static metrics against the measurements per device and precision
    (host/analysis/correlate.py); the table is printed when a device has at least 3 models.
    """
    from host.analysis.compare import indistinguishable
    from host.analysis.correlate import correlations, printable, write_correlations
    from host.analysis.report import mode_conflicts, write_tables
    from host.campaign.store import load_cells
    from host.cli.render import bench_table, console, print_json, profile_table, styled
    from host.cli.skipped import report_skipped

    try:
        with report_skipped():
            cells = load_cells(results_dir)
        if not cells:
            raise HostError(f"no result cells under {results_dir}",
                            hint="run `host bench` first")
        target = out or (results_dir if results_dir.is_dir() else results_dir.parent)
        csv_path, parquet_path = write_tables(cells, target)
        corr_rows = correlations(cells)
        corr_path = write_correlations(corr_rows, target)
        html_path = _write_html(cells, target, results_dir) if html_out else None
    except HostError as exc:
        _fail(exc)
        return
    except OSError as exc:
        _fail(HostError(f"cannot write the tables: {exc}", hint="pass --out to a writable folder"))
        return
    if json_out:
        print_json(cells)
    else:
        out_console = console()
        out_console.print(bench_table(cells, title=str(results_dir), ties=indistinguishable(cells)))
        for table in filter(None, map(profile_table, cells)):
            out_console.print(table)
        if printable(corr_rows):
            from host.cli.analysis_render import correlation_table

            out_console.print(correlation_table(printable(corr_rows)))
        out_console.print(f"wrote {csv_path}, {parquet_path} and {corr_path}", highlight=False)
    if html_path is not None:
        console(stderr=json_out).print(f"wrote {html_path}", highlight=False)
    for line in mode_conflicts(cells):
        console(stderr=True).print(styled(("warning:", "yellow"),
                                          f" {line} (kept apart: column power_mode_key)"), highlight=False)


def _write_html(cells: list, target: Path, results_dir: Path) -> Path:
    """``host report --html``: ``target/report.html`` (host.analysis.html); a plot whose sidecar
    (``.samples.npz``, ``.power.csv``) cannot be read is named on stderr as plain text."""
    from host.analysis.html import write_html

    notes: list = []
    path = write_html(cells, target / "report.html", title=str(results_dir), notes_out=notes)
    for note in notes:
        if "cannot read" in note:
            typer.echo(f"plot not drawn: {note}", err=True)
    return path


app.command()(compare)


@app.command()
def models(
    paths: Annotated[List[Path], typer.Argument(help="ONNX files or folders")],
    batch: Annotated[int, bounded(1, MAX_BATCH, "value of a dynamic batch dimension")] = 1,
    shape: Annotated[Optional[List[str]], typer.Option(
        help="full input shape NAME=1x3x224x224 (repeatable)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
):
    """Print static model metrics (params, FLOPs, CDL, footprint); runs nothing."""
    from host.campaign.plan import discover_models
    from host.cli.render import console, metrics_table, print_json
    from host.models.metrics import metrics_or_error

    try:
        found = discover_models(paths)
    except HostError as exc:
        _fail(exc)
        return
    shapes = {n: list(d) for n, d in parse_shapes(shape)} or None
    rows = [(p.stem, metrics_or_error(p, batch=batch, shapes=shapes)) for p in found]
    if json_out:
        print_json({name: met for name, met in rows})
    else:
        console().print(metrics_table(rows))
    if any("error" in met for _, met in rows):
        raise typer.Exit(1)


def _add_lab() -> None:
    from host.cli import lab as cli_lab

    app.command()(cli_lab.devices)
    app.command()(cli_lab.check)
    app.command()(cli_lab.deploy)


_add_lab()


def _add_meter() -> None:
    from host.cli import meter as cli_meter

    app.add_typer(cli_meter.app, name="meter")


_add_meter()


def _add_provision() -> None:
    from host.cli import provision as cli_provision

    app.command()(cli_provision.provision)
    app.add_typer(cli_provision.power_app, name="power-mode")


_add_provision()


def _add_image() -> None:
    from host.cli import image as cli_image

    app.add_typer(cli_image.app, name="image", help="build and save the device images (images/)")


_add_image()


def _add_zoo() -> None:
    try:
        from host.cli import zoo as cli_zoo
    except ImportError:  # pragma: no cover - the zoo module is part of the package
        return
    app.add_typer(cli_zoo.app, name="zoo", help=(
        "make models: export the example zoo and model sets (needs torch), quantize to int8, "
        "convert to fp16, compile for a DPU target (Vitis AI)"))


_add_zoo()


def _add_analysis() -> None:
    from host.cli import advise as cli_advise
    from host.cli import query as cli_query

    app.command()(cli_advise.advise)
    app.command()(cli_query.dataset)
    app.command()(cli_query.query)


_add_analysis()


def _add_runtimes() -> None:
    from host.cli import runtimes as cli_runtimes

    app.command()(cli_runtimes.runtimes)


_add_runtimes()


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app(prog_name="host")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
