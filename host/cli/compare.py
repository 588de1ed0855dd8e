"""``host compare``: campaign B against campaign A cell by cell, or (``--by``) inside one campaign
the cells that differ only in precision, batch or device (:mod:`host.analysis.compare`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from host.cli.lab import fail as _fail
from host.cli.options import percent
from host.errors import HostError


class Axis(str, Enum):
    """``--by``: the one axis in which paired cells differ."""
    precision = "precision"
    batch = "batch"
    device = "device"


def compare(
    baseline: Annotated[Path, typer.Argument(
        help="results folder A (the baseline campaign); with --by: the results or campaign folder")],
    candidate: Annotated[Optional[Path], typer.Argument(
        help="results folder B (compared with A); not with --by")] = None,
    by: Annotated[Optional[Axis], typer.Option(
        help="inside one campaign, compare the cells that differ only in this axis (int8 against fp32 of "
             "the same model, device and batch)")] = None,
    reference: Annotated[Optional[str], typer.Option(
        help="with --by: the value the others are compared with \\[fp32, the smallest batch, the first "
             "device]")] = None,
    fail_above: Annotated[Optional[str], typer.Option(
        callback=percent, help="exit 4 when a cell is significantly slower in B by more than this "
        "percentage, 0% to 1000%, written with its %: 5%")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = False,
):
    """Compare two campaigns cell by cell: ratio of p50 (B/A) with its 95 % CI and whether
    it is significant (bootstrap over each cell's processes). Exit 4 when --fail-above is
    given and some cell regressed by more than it. With --by precision|batch|device: inside one
    campaign, each cell against the one differing only in that axis, a ratio with its 95 %
    interval and a same/faster/slower call (same when the interval contains 1)."""
    if by is not None:
        if candidate is not None or fail_above is not None:
            raise typer.BadParameter("--by compares inside one results folder: give one folder and no "
                                     "--fail-above", param_hint="--by")
        _compare_by(baseline, by.value, reference, json_out)
        return
    if candidate is None:
        raise typer.BadParameter("give two results folders (A B), or one with --by precision|batch|device",
                                 param_hint="CANDIDATE")
    if reference is not None:
        raise typer.BadParameter("--reference goes with --by", param_hint="--reference")
    _compare_two(baseline, candidate, fail_above, json_out)


def _cells(folder: Path) -> list:
    """Raises HostError: no cell under ``folder`` (and what load_cells raises)."""
    from host.campaign.store import load_cells
    from host.cli.skipped import report_skipped

    with report_skipped():
        found = load_cells(folder)
    if not found:
        raise HostError(f"no result cells under {folder}", hint="run `host bench` first")
    return found


def _compare_by(folder: Path, axis: str, reference: Optional[str], json_out: bool) -> None:
    from host.analysis.compare import compare_by
    from host.cli.analysis_render import by_tables
    from host.cli.render import console, print_json

    try:
        result = compare_by(_cells(folder), axis, reference)
    except HostError as exc:
        _fail(exc)
        return
    if json_out:
        print_json(result)
        return
    out = console()
    for part in by_tables(result):
        out.print(part, highlight=False)


def _compare_two(baseline: Path, candidate: Path, threshold: Optional[float], json_out: bool) -> None:
    from host.analysis.compare import compare_campaigns
    from host.cli.render import compare_table, console, print_json

    try:
        cells = [_cells(baseline), _cells(candidate)]
        result = compare_campaigns(cells[0], cells[1], fail_above=threshold,
                                   labels=(str(baseline), str(candidate)))
    except HostError as exc:
        _fail(exc)
        return
    if json_out:
        print_json(result)
    else:
        out = console()
        out.print(compare_table(result, title=f"B = {candidate} against A = {baseline}"))
        for side, keys in (("A", result["only_a"]), ("B", result["only_b"])):
            if keys:
                shown = ", ".join("/".join(map(str, k)) for k in keys)
                out.print(f"only in {side}: {shown}", highlight=False)
        if threshold is not None:
            out.print(f"{result['regressions']} regression(s) beyond {threshold:.1%}", highlight=False)
    if result["regressions"]:
        raise typer.Exit(4)
