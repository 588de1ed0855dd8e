"""The ``host`` command line (Typer). Commands parse options, call :mod:`host` library
functions and render; this is the only place where errors become messages and exit codes.

Exit codes: 0 success; 1 error, or at least one cell failed; 2 bad usage; 3 no cell
failed but at least one was INVALID.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from host.cli.lab import (
    AcceptNewOpt,
    AllOpt,
    ConnectTimeoutOpt,
    DeviceOpt,
    GroupOpt,
    InventoryOpt,
    KnownHostsOpt,
    board_options,
    select,
)
from host.cli.lab import fail as _fail
from host.errors import HostError
from runners.core import Policy

_P = Policy()  # the runner's defaults are the CLI's defaults

app = typer.Typer(
    name="host",
    help="edgegauge host: benchmark ONNX models on this machine and on lab boards over SSH.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

EXAMPLES = Path("examples/models")


def _parse_shapes(values: Optional[List[str]]) -> tuple:
    from runners.errors import InputSpecError
    from runners.inputs import parse_shape_option

    shapes = []
    for text in values or []:
        try:
            name, dims = parse_shape_option(text)
        except InputSpecError as exc:
            raise typer.BadParameter(str(exc), param_hint="--shape") from None
        shapes.append((name, tuple(dims)))
    return tuple(shapes)


def _default_models() -> List[Path]:
    if EXAMPLES.exists():
        return [EXAMPLES]
    from host import REPO_ROOT

    packaged = REPO_ROOT / EXAMPLES
    return [packaged]


@app.command()
def bench(
    models: Annotated[Optional[List[Path]], typer.Argument(
        help="ONNX files or folders (searched recursively) [default: examples/models]")] = None,
    device: DeviceOpt = None,
    group: GroupOpt = None,
    all_devices: AllOpt = False,
    inventory: InventoryOpt = None,
    results: Annotated[Path, typer.Option(help="results root folder")] = Path("results"),
    campaign: Annotated[Optional[str], typer.Option(
        help="campaign name [default: UTC timestamp]; an existing campaign is resumed")] = None,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="when resuming, also re-run cells that failed on the board")] = False,
    backend: Annotated[Optional[str], typer.Option(
        help="runner backend: ort | null [each device's runtime]")] = None,
    batch: Annotated[int, typer.Option(min=1, help="value of a dynamic batch dimension")] = 1,
    shape: Annotated[Optional[List[str]], typer.Option(
        help="full input shape NAME=1x3x224x224 (repeatable)")] = None,
    threads: Annotated[int, typer.Option(min=0, help="ORT intra-op threads; 0 = all CPUs")] = 0,
    opt_level: Annotated[str, typer.Option(
        help="ORT graph optimization: disable|basic|extended|all")] = "all",
    warmup_iters: Annotated[int, typer.Option(
        min=0, help="warm-up minimum iterations")] = _P.warmup_min_iterations,
    warmup_s: Annotated[float, typer.Option(min=0, help="warm-up minimum seconds")] = _P.warmup_min_s,
    min_iters: Annotated[int, typer.Option(
        min=1, help="timed loop minimum iterations")] = _P.min_iterations,
    min_s: Annotated[float, typer.Option(min=0, help="timed loop minimum seconds")] = _P.min_duration_s,
    max_s: Annotated[float, typer.Option(
        min=0.001, help="cap on warm-up and timed loop, seconds each")] = _P.max_duration_s,
    cov_max: Annotated[float, typer.Option(
        min=0.0001, help="largest robust CoV (IQR/(1.349*median)) for VALID")] = _P.cov_max,
    fps: Annotated[float, typer.Option(
        min=0.001, help="frame rate of the real-time budget (p99)")] = _P.fps,
    timeout: Annotated[float, typer.Option(min=1, help="per-cell timeout, seconds")] = 1800.0,
    known_hosts: KnownHostsOpt = None,
    accept_new_host_keys: AcceptNewOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    power: Annotated[Optional[bool], typer.Option(
        "--power/--no-power", help="measure power on devices that have a meter [on when one is set]")] = None,
    meter_from_inventory: Annotated[bool, typer.Option(
        "--meter-from-inventory", help="use each device's inventory meter (the default when set)")] = False,
    meter: Annotated[Optional[str], typer.Option(
        help="meter for the (single) selected device, e.g. um25c; overrides the inventory")] = None,
    meter_port: Annotated[Optional[str], typer.Option(help="serial port of --meter")] = None,
    idle_settle_s: Annotated[float, typer.Option(min=0, help="settle before idle, seconds")] = 5.0,
    idle_window_s: Annotated[float, typer.Option(min=0.1, help="idle window, seconds")] = 10.0,
    idle_every_s: Annotated[float, typer.Option(min=1, help="re-measure idle after, seconds")] = 1800.0,
    power_min_samples: Annotated[int, typer.Option(
        min=2, help="meter samples the load window must hold (the timed loop is lengthened)")] = 10,
    json_out: Annotated[bool, typer.Option(
        "--json", help="print the cells as JSON instead of a table")] = False,
):
    """Benchmark models on this machine (--device local, the default) or on lab boards over
    SSH (--inventory lab --device X / --group G / --all), each cell in a fresh runner process.

    Boards run in parallel; cells on one board one after another. One JSON per cell under
    RESULTS/CAMPAIGN/DEVICE/. Re-running with --campaign NAME resumes: finished cells are
    skipped, cells whose board was unreachable run again, --retry-failed re-runs failed ones.

    Stop rule: warm-up >= --warmup-iters and >= --warmup-s; timed loop >= --min-iters
    and >= --min-s, capped at --max-s. INVALID when a minimum is missed, the cap is hit
    or the robust CoV (IQR/(1.349*median)) > --cov-max.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from host.campaign.run import discover_models, run_campaign, unsupported_backends
    from host.campaign.store import default_campaign_name
    from host.cli.render import bench_table, console, human_bytes, print_json
    from host.lab.board import Board, open_transport
    from host.lab.runner import BenchConfig

    try:
        if backend is not None and backend not in ("ort", "null"):
            raise HostError(f"unknown backend {backend!r}", hint="use --backend ort or null")
        if opt_level not in ("disable", "basic", "extended", "all"):
            raise HostError(f"unknown --opt-level {opt_level!r}",
                            hint="one of disable, basic, extended, all")
        if not (device or group or all_devices):
            device = ["local"]
        _, found_devices = select(inventory, device, group, all_devices)
        config = BenchConfig(
            backend=backend or "ort", batch=batch, shapes=_parse_shapes(shape), threads=threads,
            opt_level=opt_level, timeout_s=timeout,
            policy=Policy(warmup_min_iterations=warmup_iters, warmup_min_s=warmup_s,
                          min_iterations=min_iters, min_duration_s=min_s, max_duration_s=max_s,
                          cov_max=cov_max, fps=fps),
        )
        missing = unsupported_backends(found_devices, config, backend)
        if missing:
            raise HostError(
                "not implemented: no runner backend for " + ", ".join(missing)
                + " in this version (runners has: ort, null)",
                hint="bench these boards with --backend null, or leave them out")
        found = discover_models(models or _default_models())
        name = campaign or default_campaign_name()
        options = board_options(known_hosts, accept_new_host_keys, connect_timeout)
        if meter and len(found_devices) > 1:
            raise HostError("--meter names the meter of one device; several are selected",
                            hint="set meter= and meter_port= per device in the inventory")
        power_factory = None if power is False else _power_factory(
            meter, meter_port, options, settle_s=idle_settle_s, window_s=idle_window_s,
            idle_every_s=idle_every_s, min_samples=power_min_samples)
        err = console(stderr=True)
        with Progress(
            TextColumn("{task.fields[board]:<14}"), BarColumn(bar_width=24), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.description}"),
            console=err, transient=False,
        ) as progress:
            tasks = {d.name: progress.add_task("waiting", total=len(found), board=d.name)
                     for d in found_devices}

            def on_event(event):
                task = tasks[event.device]
                if event.state == "connecting":
                    progress.update(task, description="connecting")
                elif event.state == "running":
                    progress.update(task, description=f"{event.model.stem} ({event.index}/{event.total})")
                elif event.state == "idle":
                    progress.update(task, description="measuring idle power")
                elif event.state == "board_down":
                    progress.update(task, description=f"[red]unreachable[/]: {event.message}")
                elif event.state in ("done", "skipped"):
                    status = (event.doc or {}).get("status", "?")
                    progress.update(task, advance=1,
                                    description=f"{event.model.stem}: {status}"
                                    + (" (kept)" if event.state == "skipped" else ""))
                elif event.state == "finished":
                    progress.update(task, description=progress.tasks[task].description + " · finished")

            result = run_campaign(
                found, found_devices, config, results=results, campaign=name, backend=backend,
                retry_failed=retry_failed, on_event=on_event, power=power_factory,
                open_board=lambda d: Board(d, open_transport(d, options)))
    except HostError as exc:
        _fail(exc)
        return
    cells = result.cells
    if json_out:
        print_json(cells)
    else:
        out = console()
        several = len(found_devices) > 1
        out.print(bench_table(cells, title=f"campaign {name} · {', '.join(d.name for d in found_devices)}",
                              show_device=several))
        for s in result.boards.values():
            line = (f"{s.device}: {s.run} run, {s.skipped} kept; sent {s.models_sent} models "
                    f"({human_bytes(s.model_bytes_sent)}), {human_bytes(s.bytes_sent)} in all")
            out.print(line + (f"; [red]{s.error}[/]" if s.error else ""), highlight=False)
            for note in s.notes:
                out.print(f"{s.device}: {note}", highlight=False)
        statuses = [c.get("status") for c in cells]
        bad = statuses.count("failed") + statuses.count("invalid")
        if bad:
            out.print(f"{statuses.count('failed')} failed and {statuses.count('invalid')} INVALID "
                      f"of {len(cells)} cells: reasons in the verdict column and in each cell's "
                      "JSON (error, verdict.reasons)", highlight=False)
        folder = result.folder
        out.print(f"results: {folder}   next: host report {folder}", highlight=False)
    statuses = [c.get("status") for c in cells]
    if "failed" in statuses:
        raise typer.Exit(1)
    if "invalid" in statuses:
        raise typer.Exit(3)


def _power_factory(meter, meter_port, options, **settings):
    """``(device, board, folder) -> PowerSession | None`` for run_campaign."""
    from host.lab.board import open_transport
    from host.power.session import PowerSession, meter_spec

    def factory(device, board, folder):
        spec = meter_spec(device, meter, meter_port)
        if spec is None:
            return None
        run = on_close = None
        if spec.onboard:  # on-board sources are read on the board, over their own connection
            transport = open_transport(device, options)
            run = lambda cmd: transport.run(cmd, timeout=30).stdout  # noqa: E731
            on_close = transport.close
        return PowerSession(spec, board, folder, run=run, on_close=on_close, **settings)

    return factory


@app.command()
def report(
    results_dir: Annotated[Path, typer.Argument(
        help="a results folder (campaign, device or root)")],
    out: Annotated[Optional[Path], typer.Option(
        help="where to write results.csv/.parquet [RESULTS_DIR]")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="print the cells as JSON instead of a table")] = False,
):
    """Tabulate a results folder and write results.csv and results.parquet."""
    from host.analysis.report import mode_conflicts, write_tables
    from host.campaign.store import load_cells
    from host.cli.render import bench_table, console, print_json

    try:
        cells = load_cells(results_dir)
        if not cells:
            raise HostError(f"no result cells under {results_dir}",
                            hint="run `host bench` first")
        target = out or (results_dir if results_dir.is_dir() else results_dir.parent)
        csv_path, parquet_path = write_tables(cells, target)
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
        out_console.print(bench_table(cells, title=str(results_dir)))
        out_console.print(f"wrote {csv_path} and {parquet_path}", highlight=False)
    for line in mode_conflicts(cells):
        console(stderr=True).print(f"[yellow]warning:[/] {line} (kept apart: column power_mode_key)",
                                   highlight=False)


@app.command()
def models(
    paths: Annotated[List[Path], typer.Argument(help="ONNX files or folders")],
    batch: Annotated[int, typer.Option(min=1, help="value of a dynamic batch dimension")] = 1,
    shape: Annotated[Optional[List[str]], typer.Option(
        help="full input shape NAME=1x3x224x224 (repeatable)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
):
    """Print static model metrics (params, FLOPs, CDL, footprint); runs nothing."""
    from host.campaign.run import discover_models
    from host.cli.render import console, metrics_table, print_json
    from host.models.metrics import metrics_or_error

    try:
        found = discover_models(paths)
    except HostError as exc:
        _fail(exc)
        return
    shapes = {n: list(d) for n, d in _parse_shapes(shape)} or None
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
    app.add_typer(cli_zoo.app, name="zoo", help="export the example model zoo (needs torch)")


_add_zoo()


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app(prog_name="host")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
