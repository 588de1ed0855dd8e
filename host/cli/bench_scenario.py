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
            + ". Every scenario but single-stream runs one process with one long session per cell; the "
              "scenario is part of its configuration's name")


ScenarioOpt = Annotated[str, typer.Option(help=_scenario_help())]
RateHzOpt = Annotated[float, bounded(0.001, 100_000, "paced / multi-stream: queries per second, on a fixed "
                                     "schedule (a query's deadline is the end of its own 1/N s slot)")]
DurationOpt = Annotated[float, bounded(0.001, 7 * DAY_S, "paced / multi-stream: seconds of schedule per cell",
                                       "--duration")]
SamplesPerQueryOpt = Annotated[int, bounded(1, 65_536, "multi-stream: samples per query, a multiple of the "
                                            "batch (LoadGen MultiStream: 8)")]
StreamsOpt = Annotated[int, bounded(1, 1024, "offline / server: concurrent streams, each as the backend's "
                                   "descriptor makes them (ort: one session per stream, own thread)")]
QpsOpt = Annotated[float, bounded(0.001, 1_000_000, "server: Poisson arrivals per second (with "
                                  "--search-runs: the search's first target)", "--qps")]
LatencyBoundOpt = Annotated[float, bounded(0.001, 10_000_000, "server: the bound on the p99 (LoadGen's "
                                           "early-stopping estimate), ms", "--latency-bound-ms")]
SearchRunsOpt = Annotated[int, bounded(0, 100, "server: the peak QPS that meets the latency bound, found in "
                                       "at most N runs (LoadGen find_peak_performance); 0: one run at the "
                                       "target QPS")]
#: ``host bench --help``'s panel of these options
PANEL = ("scenario", "rate_hz", "duration", "samples_per_query", "streams", "qps", "latency_bound_ms",
         "search_runs")
#: seconds a scheduled runner process gets beyond its schedule (load, warm-up, result)
TIMEOUT_MARGIN_S = 300.0


def frame_budget(fps: float | None, name: str, rate_hz: float, latency_bound_ms: float = 100.0) -> float:
    """The frame budget in inferences per second: ``--fps`` when given, else a scheduled
    scenario's ``--rate-hz`` (its frame budget is its period), server's 1000 / ``--latency-bound-ms``
    (the budget table judges its p99 against the bound), else 60."""
    if fps is not None:
        return fps
    scenario = SCENARIOS.get(name)
    if name == "server":
        return 1000.0 / latency_bound_ms
    return rate_hz if scenario is not None and scenario.scheduled else 60.0


def apply_scenario(name: str, rate_hz: float, duration: float, samples_per_query: int, protocol, policy,
                   timeout: float, load: dict | None = None) -> tuple:
    """Step 0 of bench: ``(protocol, policy, timeout)`` for ``--scenario NAME``. single-stream leaves
    them as they are; a scheduled scenario fixes the processes per cell (its registry entry), runs
    one session per process and gives the runner process at least its schedule plus
    :data:`TIMEOUT_MARGIN_S`. ``load``: offline / server settings (Policy fields ``streams``, ``qps``,
    ``latency_bound_ms``, ``search_runs``); a server process gets twice each run's schedule per run.

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
                                 samples_per_query=samples_per_query, sessions=1, **(load or {}))
    try:
        policy.check()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--duration") from None
    protocol = dataclasses.replace(protocol, fixed_processes=scenario.processes, scenario=name)
    schedule = duration
    if name == "server":  # each run: at least 662 arrivals, drained within 2 x its schedule
        schedule = 2 * max(policy.search_runs, 1) * max(duration, 700 / policy.qps)
    return protocol, policy, max(timeout, schedule + policy.max_duration_s + TIMEOUT_MARGIN_S)
