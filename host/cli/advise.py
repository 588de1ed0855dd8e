"""``host advise``: the width-scaling ratio that meets a budget, the models that already meet
it, and the Pareto fronts (:mod:`host.analysis.advise`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from host.cli.lab import fail as _fail
from host.cli.options import bounded
from host.errors import HostError


def advise(
    results_dir: Annotated[Path, typer.Argument(help="a results folder (root, campaign or device)")],
    device: Annotated[str, typer.Option(help="the device the budget is for (as in the results)")],
    latency_ms: Annotated[Optional[float], bounded(
        1e-6, 1e9, "latency budget per inference in ms (16.67 = 60 FPS)", "--latency-ms")] = None,
    memory_mib: Annotated[Optional[float], bounded(
        1e-6, 1e9, "peak RSS budget in MiB", "--memory-mib")] = None,
    energy_mj: Annotated[Optional[float], bounded(
        1e-6, 1e9, "energy budget per inference in mJ (cells measured with a power meter)",
        "--energy-mj")] = None,
    base: Annotated[Optional[str], typer.Option(
        help="the model (stem) to scale [every fitted model]")] = None,
    precision: Annotated[Optional[str], typer.Option(
        help="precision to fit and list (fp32, fp16, int8, ...) [fp32, or the only one measured]")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
):
    """Width-scaling ratio S meeting a latency, memory or energy budget on a device (from the line
    fitted over the measured models), the models that already meet it, and the Pareto fronts.

    Exit codes: 0 advice given; 1 error, or S refused (too few models, a target outside the
    fitted range or one the line cannot reach); 2 not exactly one budget given.
    """
    from host.analysis.advise import advise as run_advice
    from host.campaign.store import load_cells
    from host.cli.analysis_render import advice_tables
    from host.cli.render import console, print_json, styled
    from host.cli.skipped import report_skipped

    given = [(name, v) for name, v in (("latency_ms", latency_ms), ("memory_mib", memory_mib),
                                       ("energy_mj", energy_mj)) if v is not None]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --latency-ms, --memory-mib, --energy-mj")
    (target_name, target), = given
    try:
        with report_skipped():
            cells = load_cells(results_dir)
        result = run_advice(cells, device, target_name, target, base=base, precision=precision)
    except HostError as exc:
        _fail(exc)
        return
    if json_out:
        print_json(result)
    else:
        out = console()
        for part in advice_tables(result):
            out.print(part, highlight=False)
        for line in result["warnings"]:
            console(stderr=True).print(styled(("warning:", "yellow"), f" {line}"), highlight=False)
    if result["refused"]:
        refused = result["refused"]
        _fail(HostError(f"no scaling ratio: {refused['message']}", hint=refused.get("hint")))
