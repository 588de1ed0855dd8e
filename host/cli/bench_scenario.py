"""``host bench --scenario``: its options and the step that turns them into the protocol and the
runner's policy. The scenarios themselves, and which are implemented, are :mod:`runners.scenarios`'s
registry: a new scenario is an entry there (and its loop), nothing here."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from host.cli.options import DAY_S, bounded
from runners.scenarios import SCENARIOS, SINGLE_STREAM


def _scenario_help() -> str:
    done = [f"{s.name} ({s.summary})" for s in SCENARIOS.values() if s.implemented]
    later = [s.name for s in SCENARIOS.values() if not s.implemented]
    return ("how each cell issues its queries: " + "; ".join(done)
            + (f"; {', '.join(later)}: not implemented yet" if later else "")
            + ". Paced and multi-stream cells run one process with one long session; the scenario is "
              "part of their configuration's name")


ScenarioOpt = Annotated[str, typer.Option(help=_scenario_help())]
RateHzOpt = Annotated[float, bounded(0.001, 100_000, "paced / multi-stream: queries per second, on a fixed "
                                     "schedule (a query's deadline is the end of its own 1/N s slot)")]
DurationOpt = Annotated[float, bounded(0.001, 7 * DAY_S, "paced / multi-stream: seconds of schedule per cell",
                                       "--duration")]
SamplesPerQueryOpt = Annotated[int, bounded(1, 65_536, "multi-stream: samples per query, a multiple of the "
                                            "batch (LoadGen MultiStream: 8)")]
#: ``host bench --help``'s panel of these options
PANEL = ("scenario", "rate_hz", "duration", "samples_per_query")
#: seconds a scheduled runner process gets beyond its schedule (load, warm-up, result)
TIMEOUT_MARGIN_S = 300.0


def frame_budget(fps: float | None, name: str, rate_hz: float) -> float:
    """The frame budget in inferences per second: ``--fps`` when given, else a scheduled
    scenario's ``--rate-hz`` (its frame budget is its period), else 60."""
    if fps is not None:
        return fps
    scenario = SCENARIOS.get(name)
    return rate_hz if scenario is not None and scenario.scheduled else 60.0


def apply_scenario(name: str, rate_hz: float, duration: float, samples_per_query: int, protocol, policy,
                   timeout: float) -> tuple:
    """Step 0 of bench: ``(protocol, policy, timeout)`` for ``--scenario NAME``. single-stream leaves
    them as they are; a scheduled scenario fixes the processes per cell (its registry entry), runs
    one session per process and gives the runner process at least its schedule plus
    :data:`TIMEOUT_MARGIN_S`.

    Raises:
        typer.BadParameter: an unknown scenario, or one not implemented yet (offline, server).
    """
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise typer.BadParameter(f"{name!r}: one of {', '.join(SCENARIOS)}", param_hint="--scenario")
    if not scenario.implemented:
        done = ", ".join(n for n, s in SCENARIOS.items() if s.implemented)
        raise typer.BadParameter(f"{name}: {scenario.reason} in this version (choose one of: {done})",
                                 param_hint="--scenario")
    if name == SINGLE_STREAM:
        return protocol, policy, timeout
    policy = dataclasses.replace(policy, scenario=name, rate_hz=rate_hz, duration_s=duration,
                                 samples_per_query=samples_per_query, sessions=1)
    try:
        policy.check()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--duration") from None
    protocol = dataclasses.replace(protocol, fixed_processes=scenario.processes, scenario=name)
    return protocol, policy, max(timeout, duration + policy.max_duration_s + TIMEOUT_MARGIN_S)
