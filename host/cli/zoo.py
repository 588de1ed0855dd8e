"""``host zoo``: export the example models of :mod:`host.models.zoo` to ONNX.

The main app mounts this sub-app with ``app.add_typer(cli_zoo.app, name="zoo")``; it also
runs standalone as ``python -m host.cli.zoo export ...``. Commands only parse options, call
:mod:`host.models.zoo` and render; :class:`host.errors.HostError` becomes ``error: ...`` (plus the
hint) on stderr and exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from host.errors import HostError
from host.models import zoo

app = typer.Typer(
    help="Example models: random-init torchvision classifiers exported to ONNX "
    "(for latency/memory benchmarks, not accuracy).",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _zoo() -> None:
    # A callback keeps ``export`` a sub-command when this app runs standalone too.
    pass


def _fail(err: HostError) -> NoReturn:
    """Print a HostError as ``error: <msg>`` + ``hint: <hint>`` on stderr and exit."""
    console = Console(stderr=True, highlight=False)
    console.print(f"[red]error:[/] {err}", markup=True, soft_wrap=True)
    if err.hint:
        console.print(f"hint: {err.hint}", markup=False, soft_wrap=True)
    raise typer.Exit(code=getattr(err, "exit_code", 1))


def _entry_row(e: zoo.ZooEntry) -> dict:
    return {
        "name": e.name,
        "arch": f"torchvision.models.{e.arch}",
        "input_shape": list(e.input_shape),
        "num_classes": e.num_classes,
        "width_mult": e.width_mult,
        "dataset_shape": e.dataset,
        "summary": e.summary,
    }


def _print_list(as_json: bool) -> None:
    rows = [_entry_row(e) for e in zoo.ZOO]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="host zoo models (random-init weights)")
    for col in ("name", "arch", "input shape", "classes", "width"):
        table.add_column(col, no_wrap=col != "arch", overflow="fold")
    for r in rows:
        table.add_row(
            r["name"],
            r["arch"].rsplit(".", 1)[-1],
            "x".join(str(d) for d in r["input_shape"]),
            str(r["num_classes"]),
            "" if r["width_mult"] is None else str(r["width_mult"]),
        )
    Console().print(table)


@app.command("export")
def export_cmd(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for <name>.onnx and <name>.info.")
    ] = Path(zoo.DEFAULT_OUT_DIR),
    only: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer evaluates this at runtime; 3.9-safe
        typer.Option("--only", help="Export only this zoo model (repeatable); see --list."),
    ] = None,
    list_only: Annotated[
        bool, typer.Option("--list", help="Print the zoo table and exit; exports nothing.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (the .info dicts) instead of a table.")
    ] = False,
) -> None:
    """Export zoo models to ONNX (opset 17, static shape) with a .info provenance sidecar.

    Needs torch and torchvision: pip install torch==2.14.1 torchvision==0.29.1
    """
    if list_only:
        _print_list(as_json)
        return

    err_console = Console(stderr=True, highlight=False)

    def progress(i: int, total: int, entry: zoo.ZooEntry) -> None:
        if not as_json:
            err_console.print(f"[{i + 1}/{total}] exporting {entry.name} ...", markup=False)

    try:
        infos = zoo.export_zoo(out, only=only, progress=progress)
    except HostError as e:
        _fail(e)

    if as_json:
        typer.echo(json.dumps(infos, indent=2))
        return
    table = Table(title=f"exported to {out}")
    table.add_column("name", overflow="fold")
    table.add_column("file", overflow="fold")
    table.add_column("size MB", justify="right", no_wrap=True)
    table.add_column("torch params", justify="right", no_wrap=True)
    table.add_column("input shape", no_wrap=True)
    for info in infos:
        table.add_row(
            info["name"],
            info["file"],
            f"{info['size_bytes'] / 1e6:.2f}",
            f"{info['torch_params']:,}",
            "x".join(str(d) for d in info["input_shape"]),
        )
    Console().print(table)


if __name__ == "__main__":  # python -m host.cli.zoo export ...
    app()
