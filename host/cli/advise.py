"""``host advise``: the models that meet every budget at once, the width-scaling ratio per
architecture family, and the Pareto fronts (:mod:`host.analysis.advise`, the rule of
:mod:`host.analysis.budgets`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from host.cli.lab import fail as _fail
from host.cli.options import bounded
from host.errors import HostError


class Statistic(str, Enum):
    """``--statistic``: the latency statistic a frame budget is judged on."""
    p50 = "p50"
    p99 = "p99"


class Scope(str, Enum):
    """``--memory-scope``: whose peak memory the budget caps."""
    process = "process"
    model = "model"


def advise(
    results_dir: Annotated[Path, typer.Argument(help="a results folder (root, campaign or device)")],
    device: Annotated[Optional[str], typer.Option(
        help="the device the budgets are for \\[the only device in the results]")] = None,
    fps: Annotated[Optional[float], bounded(
        1e-6, 1e9, "frame budget: at least this many inferences per second (60 = 16.67 ms)", "--fps")] = None,
    latency_ms: Annotated[Optional[float], bounded(
        1e-6, 1e9, "latency budget per inference in ms (the tighter of --fps and this counts)",
        "--latency-ms")] = None,
    statistic: Annotated[Statistic, typer.Option(
        help="latency statistic judged: p99 (at most 1 % of frames late) or p50")] = Statistic.p99,
    memory_mib: Annotated[Optional[float], bounded(
        1e-6, 1e9, "peak memory budget in MiB (of --memory-scope)", "--memory-mib")] = None,
    memory_scope: Annotated[Scope, typer.Option(
        help="process: the runner process's peak RSS; model: the peak minus the RSS before the "
             "session")] = Scope.process,
    power_w: Annotated[Optional[float], bounded(
        1e-6, 1e9, "mean power budget under load in W (cells measured with a power meter)",
        "--power-w")] = None,
    energy_mj: Annotated[Optional[float], bounded(
        1e-6, 1e9, "energy budget per inference in mJ (cells measured with a power meter)",
        "--energy-mj")] = None,
    accuracy_min: Annotated[Optional[float], bounded(
        1e-6, 1.0, "top-1 accuracy floor, a fraction (0.9 = 90 %; cells benched with --dataset)",
        "--accuracy-min")] = None,
    base: Annotated[Optional[str], typer.Option(
        help="the model (stem) to scale \\[every model of each fitted family]")] = None,
    precision: Annotated[Optional[str], typer.Option(
        help="precision to judge and fit (fp32, int8, ...) \\[all judged; fp32, or the most measured, "
             "fitted]")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
):
    """Which measured models meet every budget at once (one ✓/?/✗ per budget, by the rule in
    docs: meets when the statistic's whole 95 % interval is within the budget), then the
    width-scaling ratio S per architecture family (a line fitted within each family only) and
    the Pareto fronts.

    Exit codes: 0 an answer (also when every model, or none, meets); 1 an error (no cells, an
    unknown device or precision); 2 no budget given or a bad value.
    """
    from host.analysis.advise import advise as run_advice
    from host.analysis.budgets import Budgets
    from host.campaign.store import load_cells
    from host.cli.analysis_render import advice_tables
    from host.cli.render import console, print_json
    from host.cli.skipped import report_skipped

    budgets = Budgets(fps=fps, latency_ms=latency_ms, statistic=statistic.value, memory_mib=memory_mib,
                      memory_scope=memory_scope.value, power_w=power_w, energy_mj=energy_mj,
                      accuracy_min=accuracy_min)
    if not budgets.names():
        raise typer.BadParameter("give at least one budget: --fps, --latency-ms, --memory-mib, --power-w, "
                                 "--energy-mj or --accuracy-min")
    try:
        with report_skipped():
            cells = load_cells(results_dir)
        result = run_advice(cells, budgets, device=device, base=base, precision=precision)
    except HostError as exc:
        _fail(exc)
        return
    if json_out:
        print_json(result)
        return
    out = console()
    for part in advice_tables(result):
        out.print(part, highlight=False)
