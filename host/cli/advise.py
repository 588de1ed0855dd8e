"""``host advise``: the models that meet every budget at once, the width-scaling ratio per
architecture family, and the Pareto fronts (:mod:`host.analysis.advise`, the rule of
:mod:`host.analysis.budgets`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from host.cli.lab import fail as _fail
from host.cli.options import (
    AccuracyMinOpt,
    EnergyMjOpt,
    FpsOpt,
    LatencyMsOpt,
    MemoryMibOpt,
    MemoryScopeOpt,
    PowerWOpt,
    Scope,
    Statistic,
    StatisticOpt,
)
from host.errors import HostError


def advise(
    results_dir: Annotated[Path, typer.Argument(help="a results folder (root, campaign or device)")],
    device: Annotated[Optional[str], typer.Option(
        help="the device the budgets are for \\[the only device in the results]")] = None,
    fps: FpsOpt = None,
    latency_ms: LatencyMsOpt = None,
    statistic: StatisticOpt = Statistic.p99,
    memory_mib: MemoryMibOpt = None,
    memory_scope: MemoryScopeOpt = Scope.process,
    power_w: PowerWOpt = None,
    energy_mj: EnergyMjOpt = None,
    accuracy_min: AccuracyMinOpt = None,
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
