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
from host.cli.options import MAX_BATCH, bounded, flow_helps, parse_shapes
from host.cli.report import report
from host.errors import HostError

app = typer.Typer(
    name="host",
    help="edgegauge host: benchmark ONNX models on this machine and on lab boards over SSH.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(bench)

app.command()(report)
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
    from host.cli import calibrate as cli_calibrate
    from host.cli import lab as cli_lab

    app.command()(cli_lab.devices)
    app.command()(cli_lab.check)
    app.command()(cli_lab.deploy)
    app.command()(cli_calibrate.calibrate)


_add_lab()


def _add_meter() -> None:
    from host.cli import meter as cli_meter

    app.add_typer(cli_meter.app, name="meter")


_add_meter()


def _add_provision() -> None:
    from host.cli import power as cli_power
    from host.cli import provision as cli_provision

    app.command()(cli_provision.provision)
    app.add_typer(cli_provision.power_app, name="power-mode")
    app.add_typer(cli_power.app, name="power")


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
        "make models: list the example models, export the example zoo and model sets (needs torch), "
        "quantize to int8, convert to fp16, prune (unstructured or channels), compile for a DPU target "
        "(Vitis AI)"))


_add_zoo()


def _add_analysis() -> None:
    from host.cli import advise as cli_advise
    from host.cli import query as cli_query

    app.command()(cli_advise.advise)
    app.command()(cli_query.dataset)
    app.command(cls=cli_query.QueryCommand)(cli_query.query)


_add_analysis()


def _add_runtimes() -> None:
    from host.cli import runtimes as cli_runtimes

    app.command()(cli_runtimes.runtimes)


_add_runtimes()


flow_helps(app)  # help paragraphs flow to the terminal's width, not the docstrings' 100 columns


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app(prog_name="host")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
