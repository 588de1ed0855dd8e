"""The repetition protocol of a cell: how many fresh runner processes, when to stop.

A cell is measured as R fresh processes × S fresh sessions × one short timed loop each;
the campaign interleaves the processes of every cell of a board (round by round, in a
seeded shuffle) so slow drift of the machine spreads over all models. After each process
the cell's interval is recomputed (:func:`runners.stats.repetition_interval`); the cell
stops when the 95 % CI's relative half-width is within ``target_ci`` (after at least
``min_processes``), or when ``max_cell_s`` of runner wall time is spent, or at
``max_processes``. Kalibera & Jones (ISMM 2013) give the reasoning: repeat at the level
where the variance lives, as few times as the wanted precision needs.

Presets after pyperf's ``--fast``/``--rigorous``: :data:`PRESETS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from runners.core import Policy
from runners.stats import MIN_REPETITIONS, repetition_interval


@dataclass(frozen=True)
class Protocol:
    """When a cell has enough processes. Units in the names; ``target_ci`` is a relative
    half-width (0.05 = ±5 %)."""

    name: str = "default"
    target_ci: float = 0.05
    min_processes: int = 5
    max_processes: int = 200
    max_cell_s: float = 20.0
    order_seed: int = 0
    #: a scenario that fixes the processes per cell (paced, multi-stream: one process with one long
    #: session, :data:`runners.scenarios.SCENARIOS`); None: the interval decides
    fixed_processes: int | None = None
    scenario: str = "single-stream"

    def check(self) -> None:
        """Raise ValueError when self-contradictory."""
        if not 0 < self.target_ci < 1:
            raise ValueError(f"--target-ci must be in (0, 1), got {self.target_ci:g}")
        if self.min_processes < MIN_REPETITIONS:
            raise ValueError(f"--min-processes must be >= {MIN_REPETITIONS}: with fewer, a 95 % "
                             "interval over processes cannot be stated honestly")
        if self.max_processes < self.min_processes:
            raise ValueError("--max-processes must be >= --min-processes")
        if self.max_cell_s <= 0:
            raise ValueError("--max-s must be > 0")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


#: name -> (protocol, runner policy per process). Loops are short: the variance lives
#: above them (docs/measurement.md §"Where the variance lives").
PRESETS = {
    "quick": (Protocol("quick", target_ci=0.10, min_processes=5, max_cell_s=8.0),
              Policy(warmup_min_iterations=5, warmup_min_s=0.1, min_iterations=20, min_duration_s=0.1,
                     max_duration_s=10.0, sessions=1)),
    "default": (Protocol("default", target_ci=0.05, min_processes=5, max_cell_s=20.0),
                Policy(warmup_min_iterations=10, warmup_min_s=0.2, min_iterations=50, min_duration_s=0.3,
                       max_duration_s=30.0, sessions=1)),
    "rigorous": (Protocol("rigorous", target_ci=0.02, min_processes=10, max_cell_s=180.0),
                 Policy(warmup_min_iterations=20, warmup_min_s=1.0, min_iterations=100, min_duration_s=1.0,
                        max_duration_s=60.0, sessions=2)),
}


@dataclass
class Progress:
    """A cell's processes so far: per process its session medians (ms) and wall time.

    ``decide()`` is pure given what was added, so stopping is testable without a clock.
    """

    protocol: Protocol
    medians: list = dataclasses.field(default_factory=list)  # [[session p50 ms, ...], ...]
    spent_s: float = 0.0
    stopped: str | None = None

    _cached: tuple = dataclasses.field(default=(0, None), init=False, repr=False)  # (processes, interval)

    def add(self, session_medians_ms: list, wall_s: float) -> None:
        self.medians.append(list(session_medians_ms))
        self.spent_s += wall_s

    def interval(self) -> dict | None:
        """:func:`runners.stats.repetition_interval` of the processes so far (None before the
        first); computed once per added process."""
        if not self.medians:
            return None
        if self._cached[0] != len(self.medians):
            seed = self.protocol.order_seed
            self._cached = (len(self.medians), repetition_interval(self.medians, seed=seed))
        return self._cached[1]

    def decide(self) -> bool:
        """Whether the cell is done; sets ``stopped`` to the reason when it is."""
        p, n = self.protocol, len(self.medians)
        rel = None
        if p.fixed_processes is not None:
            if n < p.fixed_processes:
                return False
            self.stopped = (f"scenario {p.scenario}: {n} process{'es' if n > 1 else ''} with one long "
                            "session each, by design (a sustained schedule, not repeated short loops)")
            return True
        if n >= p.min_processes:
            rel = self.interval()["ci95_rel"]
            if rel is not None and rel <= p.target_ci:
                self.stopped = f"target met: ±{rel:.1%} <= ±{p.target_ci:.0%} after {n} processes"
                return True
        if self.spent_s >= p.max_cell_s or n >= p.max_processes:
            shown = f"±{rel:.1%}" if rel is not None else "no interval yet"
            self.stopped = (f"budget spent: {n} processes in {self.spent_s:.1f} s (--max-s "
                            f"{p.max_cell_s:g}, --max-processes {p.max_processes}); achieved {shown}")
            return True
        return False
