"""Numeric command-line options: finite, within a stated range, refused at parse time.

``bounded(lo, hi, help)`` is the one way a command declares a number: typer's ``min``/``max``
(the range shows in ``--help`` as ``[lo<=x<=hi]``) plus :func:`finite`, since a one-sided
range lets ``inf`` through and a value such as ``1e300`` is no more meaningful. ``percent``
parses a share written with its ``%`` (``5%``), refusing a bare number, whose meaning
(5 or 500 %?) is ambiguous. A bad value is a usage error (exit 2) naming the option.
"""

from __future__ import annotations

import copy
import inspect
import math
import typing
from enum import Enum
from typing import Annotated, Optional

import rich.markup
import typer

#: the largest ``--threads`` (intra-op threads) any board here could use
MAX_THREADS = 1024
#: a seed of numpy's and Python's generators: 0 .. 2**32 - 1
MAX_SEED = 2**32 - 1
#: the largest percentage a threshold option takes (10 times as slow)
MAX_PERCENT = 1000
#: one day, in seconds: the longest wait, timeout or window an option may ask for
DAY_S = 86400.0
#: the largest batch (a dynamic leading dimension) an option may ask for
MAX_BATCH = 65536


def finite(value):
    """typer callback: ``value`` unchanged, or typer.BadParameter for ``inf`` / ``nan``."""
    if isinstance(value, float) and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def bounded(lo: float, hi: float, help: str, *decls: str, **kwargs):  # noqa: A002 - typer's own name
    """A ``typer.Option`` for a finite number in ``[lo, hi]`` (int or float as annotated).

    Usage: ``Annotated[float, bounded(0.001, 3600, "cap per loop, seconds", "--loop-max-s")]``.
    """
    return typer.Option(*decls, min=lo, max=hi, callback=finite, help=help, **kwargs)


def percent(text: Optional[str]) -> Optional[float]:
    """typer callback: ``"5%"`` -> 0.05 (None stays None): a finite percentage from 0 % to
    1000 % written with its ``%``.

    Raises:
        typer.BadParameter: no ``%`` (``5`` or ``0.05``: the hint says to write ``5%``), not a
            number, not finite, or outside the range.
    """
    if text is None:
        return None
    raw = text.strip()
    try:
        value = float(raw[:-1] if raw.endswith("%") else raw)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected a percentage such as 5%") from None
    if not raw.endswith("%"):
        raise typer.BadParameter(f"{text!r}: write the percentage with its %, e.g. {value:g}% "
                                 f"(a bare number is ambiguous: is 5 meant as 5 % or 500 %?)")
    if not math.isfinite(value) or not 0 <= value <= MAX_PERCENT:
        raise typer.BadParameter(f"{text!r}: expected a percentage from 0% to {MAX_PERCENT}%")
    return value / 100


def in_panels(panels: dict):
    """Decorator (below ``@app.command()``): put each parameter of a command in its ``--help``
    panel (Typer's ``rich_help_panel``), ``{panel title: (parameter name, ...)}``.

    The option declarations (``Annotated`` aliases, shared between commands) stay as they are: each
    parameter gets a copy of its ``typer.Option``/``typer.Argument`` carrying the panel, its help
    escaped so that rich markup keeps a bracketed default (``[all CPUs]``) as written.

    Raises:
        ValueError: (at import) a parameter in no panel, or a name that is no parameter, so that a
            new option cannot be left out of the grouped help.
    """
    def wrap(func):
        hints = typing.get_type_hints(func, include_extras=True)
        where = {name: title for title, names in panels.items() for name in names}
        params = set(inspect.signature(func).parameters)
        if set(where) != params:
            raise ValueError(f"{func.__name__}: parameters in no help panel: {sorted(params - set(where))}; "
                             f"panel names that are no parameter: {sorted(set(where) - params)}")
        for name, title in where.items():
            base, *extras = typing.get_args(hints[name])
            info = copy.copy(next(e for e in extras if isinstance(e, typer.models.ParameterInfo)))
            info.rich_help_panel = title
            if info.help:  # rich markup would swallow a default such as [all CPUs]
                info.help = rich.markup.escape(info.help)
            func.__annotations__[name] = Annotated[base, info]
        return func
    return wrap


def parse_shapes(values: Optional[typing.List[str]]) -> tuple:
    """``--shape NAME=1x3x224x224`` options as ``((name, (dims...)), ...)`` (hashable).

    Raises:
        typer.BadParameter: a value that is not ``NAME=D1xD2x...``.
    """
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


class Statistic(str, Enum):
    """``--statistic``: the latency statistic a frame budget is judged on."""
    p50 = "p50"
    p99 = "p99"


class Scope(str, Enum):
    """``--memory-scope``: whose peak memory the budget caps."""
    process = "process"
    model = "model"


# The budgets of host.analysis.budgets.Budgets, shared by bench, report and advise (no brackets in
# the help: advise's help is not escaped by in_panels).
FpsOpt = Annotated[Optional[float], bounded(
    1e-6, 1e9, "frame budget: at least this many inferences per second (60 = 16.67 ms; default 60, for "
    "paced and multi-stream their --rate-hz)", "--fps")]
LatencyMsOpt = Annotated[Optional[float], bounded(
    1e-6, 1e9, "latency budget per inference in ms (the tighter of --fps and this counts)", "--latency-ms")]
StatisticOpt = Annotated[Statistic, typer.Option(
    help="latency statistic judged: p99 (at most 1 % of frames late) or p50")]
MemoryMibOpt = Annotated[Optional[float], bounded(
    1e-6, 1e9, "peak memory budget in MiB (of --memory-scope)", "--memory-mib")]
MemoryScopeOpt = Annotated[Scope, typer.Option(
    help="process: the runner process's peak RSS; model: the peak minus the RSS before the session")]
PowerWOpt = Annotated[Optional[float], bounded(
    1e-6, 1e9, "mean power budget under load in W (cells measured with a power meter)", "--power-w")]
EnergyMjOpt = Annotated[Optional[float], bounded(
    1e-6, 1e9, "energy budget per inference in mJ (cells measured with a power meter)", "--energy-mj")]
AccuracyMinOpt = Annotated[Optional[float], bounded(
    1e-6, 1.0, "top-1 accuracy floor, a fraction (0.9 = 90 %); needs --dataset", "--accuracy-min")]
#: the parameter names of the budget options, in a command's signature and its help panel
BUDGET_PARAMS = ("fps", "latency_ms", "statistic", "memory_mib", "memory_scope", "power_w", "energy_mj",
                 "accuracy_min")
WideOpt = Annotated[bool, typer.Option("--wide", help="the full table: every measured figure, no budgets")]
ColumnsOpt = Annotated[Optional[str], typer.Option(
    help="the table's columns, comma-separated, e.g. model,p50,ci95,verdict; an unknown name lists them")]


def budgets_of(fps, latency_ms, statistic, memory_mib, memory_scope, power_w, energy_mj, accuracy_min):
    """The :class:`host.analysis.budgets.Budgets` of the budget options (typer.BadParameter for a
    combination the model refuses)."""
    from host.analysis.budgets import Budgets

    try:
        return Budgets(fps=fps, latency_ms=latency_ms, statistic=Statistic(statistic).value,
                       memory_mib=memory_mib, memory_scope=Scope(memory_scope).value, power_w=power_w,
                       energy_mj=energy_mj, accuracy_min=accuracy_min)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def table_view(budgets, wide: bool, columns: Optional[str]):
    """The :class:`host.cli.budget_table.TableView` of ``--wide`` / ``--columns`` (typer.BadParameter for
    both, or an unknown column: the message lists the columns there are)."""
    from host.cli.budget_table import TableView, parse_columns

    if wide and columns:
        raise typer.BadParameter("give --wide or --columns, not both", param_hint="--columns")
    try:
        names = parse_columns(columns)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--columns") from None
    return TableView(budgets, wide=wide, columns=names)


def flow(text: str) -> str:
    """Help text whose paragraphs flow to the terminal's width: the single line breaks of a
    docstring wrapped at 100 columns joined with spaces; blank lines (paragraphs), lists (``-`` /
    ``*``) and indented blocks kept as written."""
    out = []
    for para in inspect.cleandoc(text).split("\n\n"):
        lines = para.split("\n")
        kept = para.startswith("\b") or any(line.startswith((" ", "-", "*", "\b")) for line in lines[1:])
        out.append(para if kept else " ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def flow_helps(app: typer.Typer) -> None:
    """:func:`flow` every command's help (its ``help=`` or docstring) in ``app`` and its groups."""
    for info in app.registered_commands:
        text = info.help if isinstance(info.help, str) else inspect.getdoc(info.callback)
        if text:
            info.help = flow(text)
    for group in app.registered_groups:
        if isinstance(group.help, str):
            group.help = flow(group.help)
        if group.typer_instance is not None:
            flow_helps(group.typer_instance)
