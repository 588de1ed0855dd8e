"""Budgets: does a measured cell meet a latency, memory, power, energy or accuracy budget?

One rule for every budget and every command (``host bench``, ``report``, ``advise``, the HTML
report, the dataset):

* **meets** — the whole 95 % interval of the budget's statistic is within the budget (for a
  ceiling such as latency: the interval's upper end is at most the limit; for a floor such as
  accuracy: its lower end is at least the floor);
* **misses** — the whole interval is outside the budget;
* **uncertain** — the interval straddles the limit, there is no interval where one is needed
  (latency from fewer than 5 processes, or a p99 from sessions under 100 iterations), or the
  cell's latency would not reproduce (INVALID);
* **no meter** — a power or energy budget on a cell measured without a power meter;
* **not measured** — the cell failed, or has no such figure (e.g. no ``--dataset`` for accuracy).

The statistic and the interval each budget is judged on, named in every :class:`Check`:

=========  ==============================  ================================================
budget     statistic                       interval
=========  ==============================  ================================================
latency    ``latency_ms_p99`` (frames) or  the cell's ``latency_ms_<stat>_ci95`` (processes
           ``latency_ms_p50``              bootstrapped by the campaign, docs/measurement.md)
memory     ``rss_mib_peak`` (process) or   lowest .. highest peak over the cell's processes
           ``rss_mib_model`` (peak minus   (the peak is a maximum, not a noisy estimate)
           RSS before the session)
power      ``power_w_mean`` under load     none: the meter's point value
energy     ``energy_mj_per_inference``     none: the meter's point value
accuracy   ``top1`` on the dataset          Wilson score interval for ``n`` samples
=========  ==============================  ================================================

The Wilson interval: E. B. Wilson, "Probable inference, the law of succession, and statistical
inference", JASA 22 (1927) 209–212.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Optional, Tuple

MEETS, UNCERTAIN, MISSES, NO_METER, NOT_MEASURED = "meets", "uncertain", "misses", "no meter", "not measured"
#: One mark per verdict, for tables.
MARKS = {MEETS: "✓", UNCERTAIN: "?", MISSES: "✗", NO_METER: "no meter", NOT_MEASURED: "-"}
LATENCY_STATISTICS = ("p50", "p99")
MEMORY_SCOPES = ("process", "model")
_Z95 = 1.959963984540054
#: What the campaign needs before it gives a latency statistic a 95 % interval (host.campaign.cells).
_NEEDS = {"p50": "the campaign gives one from 5 processes on",
          "p99": "the campaign gives one from 5 processes on, when every session ran at least 100 "
                 "iterations (a shorter session's p99 is its slowest few calls)"}


@dataclass(frozen=True)
class Budgets:
    """The budgets a user gives; None: not a budget.

    ``fps`` and ``latency_ms`` both set a latency ceiling (``1000 / fps`` ms per inference, batch
    as measured); when both are given the tighter one counts. ``statistic`` names the latency
    statistic (``p99`` by default: at most 1 % of frames late). ``memory_mib`` is a ceiling on
    ``memory_scope``'s figure (``process``: the whole runner process's peak RSS; ``model``: the
    peak minus the RSS before the session was created). ``power_w`` caps the mean power under
    load, ``energy_mj`` the energy per inference, ``accuracy_min`` is a floor on top-1 (0..1).

    Raises:
        ValueError: a budget that is not a positive finite number (accuracy: in (0, 1]), or an
            unknown statistic or memory scope.
    """

    fps: Optional[float] = None
    latency_ms: Optional[float] = None
    statistic: str = "p99"
    memory_mib: Optional[float] = None
    memory_scope: str = "process"
    power_w: Optional[float] = None
    energy_mj: Optional[float] = None
    accuracy_min: Optional[float] = None

    def __post_init__(self):
        for name in ("fps", "latency_ms", "memory_mib", "power_w", "energy_mj"):
            value = getattr(self, name)
            finite = isinstance(value, (int, float)) and math.isfinite(value)
            if value is not None and not (finite and value > 0):
                raise ValueError(f"budget {name}={value!r}: expected a positive finite number")
        if self.accuracy_min is not None and not (0 < self.accuracy_min <= 1):
            raise ValueError(f"budget accuracy_min={self.accuracy_min!r}: expected a fraction in (0, 1]")
        if self.statistic not in LATENCY_STATISTICS:
            raise ValueError(f"latency statistic {self.statistic!r}: one of {', '.join(LATENCY_STATISTICS)}")
        if self.memory_scope not in MEMORY_SCOPES:
            raise ValueError(f"memory scope {self.memory_scope!r}: one of {', '.join(MEMORY_SCOPES)}")

    @property
    def latency_limit_ms(self) -> Optional[float]:
        """The latency ceiling in ms: the tighter of ``1000 / fps`` and ``latency_ms``; None: none."""
        limits = [x for x in (1000.0 / self.fps if self.fps else None, self.latency_ms) if x is not None]
        return min(limits) if limits else None

    def names(self) -> Tuple[str, ...]:
        """The budgets given, in table order: ``latency``, ``memory``, ``power``, ``energy``, ``accuracy``."""
        given = {"latency": self.latency_limit_ms, "memory": self.memory_mib, "power": self.power_w,
                 "energy": self.energy_mj, "accuracy": self.accuracy_min}
        return tuple(k for k, v in given.items() if v is not None)


@dataclass(frozen=True)
class Check:
    """One budget judged on one cell: ``budget`` (``latency``, ``memory``, …), ``statistic`` (the
    field judged, e.g. ``latency_ms_p99``), ``unit``, ``limit``, ``kind`` (``max``: a ceiling,
    ``min``: a floor), ``value`` and ``interval`` (``(lo, hi)`` or None), ``verdict`` (one of
    meets / uncertain / misses / no meter / not measured) and ``reason`` (why, in words)."""

    budget: str
    statistic: str
    unit: str
    limit: float
    kind: str
    value: Optional[float]
    interval: Optional[Tuple[float, float]]
    verdict: str
    reason: str

    @property
    def mark(self) -> str:
        """✓ ? ✗ (or ``no meter`` / ``-``) for a table cell."""
        return MARKS[self.verdict]


@dataclass(frozen=True)
class Judgement:
    """Every budget on one cell (``checks``, in :meth:`Budgets.names` order) and the overall
    ``verdict``: misses when one check misses, meets when all meet, otherwise uncertain (a check
    uncertain, without a meter or not measured)."""

    checks: Tuple[Check, ...] = field(default_factory=tuple)

    @property
    def verdict(self) -> str:
        found = {c.verdict for c in self.checks}
        if MISSES in found:
            return MISSES
        return MEETS if found == {MEETS} else UNCERTAIN

    def reasons(self) -> list:
        """``budget: reason`` for every check that does not meet its budget."""
        return [f"{c.budget}: {c.reason}" for c in self.checks if c.verdict != MEETS]


def decide(limit: float, value: Optional[float], interval, kind: str = "max",
           unit: str = "") -> Tuple[str, str]:
    """The rule (module docstring) on one figure: ``(verdict, reason)``.

    ``interval`` is ``(lo, hi)`` or None; None judges the point ``value`` itself (callers pass
    None only for figures that are point values, such as a meter's mean). ``kind`` is ``max``
    (``limit`` is a ceiling) or ``min`` (a floor); ``unit`` follows each number in the reason.
    """
    def q(x: float) -> str:
        return _g(x) + (f" {unit}" if unit else "")

    if value is None:
        return NOT_MEASURED, "not measured"
    lo, hi = (value, value) if interval is None else (min(interval), max(interval))
    what = "the value" if interval is None else "the 95 % interval"
    if kind == "max":
        if hi <= limit:
            return MEETS, f"{what} is within {q(limit)}" + (" (upper end ≤ limit)" if interval else "")
        if lo > limit:
            return MISSES, f"{what} is above {q(limit)}"
        return UNCERTAIN, f"the 95 % interval {_g(lo)}–{q(hi)} straddles {q(limit)}"
    if lo >= limit:
        return MEETS, f"{what} is at or above {q(limit)}"
    if hi < limit:
        return MISSES, f"{what} is below {q(limit)}"
    return UNCERTAIN, f"the 95 % interval {_g(lo)}–{q(hi)} straddles {q(limit)}"


def judge(cell: dict, budgets: Budgets) -> Judgement:
    """Every budget in ``budgets`` on one stored cell (a cell document, docs/result-schema.md)."""
    makers = {"latency": _latency, "memory": _memory, "power": _power, "energy": _energy,
              "accuracy": _accuracy}
    return Judgement(tuple(makers[name](cell, budgets) for name in budgets.names()))


def wilson_interval(successes: float, n: int) -> Optional[Tuple[float, float]]:
    """The 95 % Wilson score interval of a proportion ``successes / n`` (None when ``n`` < 1)."""
    if not n or n < 1:
        return None
    p = min(max(successes / n, 0.0), 1.0)
    z2 = _Z95 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _failed(cell: dict) -> bool:
    return cell.get("status") == "failed"


def _check(budget, statistic, unit, limit, value, interval, kind="max", verdict=None, reason="") -> Check:
    if verdict is None:
        verdict, reason = decide(limit, value, interval, kind, _unit_word(unit))
    return Check(budget, statistic, unit, limit, kind, value, interval, verdict, reason)


def _num(value) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def _missing(lat: dict, stat: str) -> str:
    """Why a latency statistic is absent: a scheduled scenario's early-stopping p99 (runners.earlystop)
    with too few queries says how many it needs."""
    es = lat.get(f"{stat}_early_stopping")
    if isinstance(es, dict) and es.get("queries_needed") and es.get("latency_ms") is None:
        return (f"no {stat}: MLPerf LoadGen's early-stopping estimate needs {es['queries_needed']} queries, "
                f"this run had {es.get('queries')}; lengthen --duration")
    return f"no {stat}"


def _latency(cell: dict, b: Budgets) -> Check:
    stat = f"latency_ms_{b.statistic}"
    limit = b.latency_limit_ms
    lat = cell.get("latency") or {}
    value = None if _failed(cell) else _num(lat.get(stat))
    ci = lat.get(f"{stat}_ci95")
    interval = (float(ci[0]), float(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 \
        and all(_num(x) is not None for x in ci) else None
    if value is None:
        return _check("latency", stat, "ms", limit, None, None, verdict=NOT_MEASURED,
                      reason="the cell failed" if _failed(cell) else _missing(lat, stat))
    if interval is None and b.statistic == "p99" and _above(lat.get("latency_ms_p50_ci95"), limit):
        check = _check("latency", stat, "ms", limit, value, None, verdict=MISSES,
                       reason=f"the p50's 95 % interval is already above {_g(limit)} (the p99 is at least "
                              "the p50; the p99 itself has no interval)")
    elif interval is None and (lat.get(f"{stat}_early_stopping") or {}).get("latency_ms") == value:
        check = _early_stopping_check(stat, limit, value, (cell.get("scenario") or {}).get("name"))
    elif interval is None:
        return _check("latency", stat, "ms", limit, value, None, verdict=UNCERTAIN,
                      reason=f"{stat} {_g(value)} ms has no 95 % interval: {_NEEDS[b.statistic]}")
    else:
        check = _check("latency", stat, "ms", limit, value, interval)
    return _unless_invalid(check, cell.get("verdict") or {})


def _early_stopping_check(stat: str, limit: float, value: float, scenario: str | None = None) -> Check:
    """A scheduled scenario's p99 is LoadGen's early-stopping estimate (runners.earlystop): an upper
    bound at 99 % confidence, the upper end of an interval; it meets the budget when within it, and is
    uncertain otherwise (the bound says nothing of how far below it the p99 lies)."""
    if value <= limit:
        return _check("latency", stat, "ms", limit, value, None, verdict=MEETS,
                      reason=f"LoadGen's early-stopping {stat} {_g(value)} ms (an upper bound at 99 % "
                             f"confidence) is within {_g(limit)} ms")
    return _check("latency", stat, "ms", limit, value, None, verdict=UNCERTAIN,
                  reason=f"LoadGen's early-stopping {stat} {_g(value)} ms (an upper bound at 99 % "
                         f"confidence) is above {_g(limit)} ms; "
                         f"{_SEE.get(scenario, 'see the deadline misses')}")


#: where to look next when a scenario's early-stopping p99 is above the budget
_SEE = {"offline": "offline measures throughput: its latency includes K streams sharing the machine",
        "server": "see the server runs (scenario.runs) for a lower QPS that meets it"}


def _unless_invalid(check: Check, verdict: dict) -> Check:
    """``check``, made uncertain when the cell is INVALID (its latency would not reproduce)."""
    if verdict.get("result") != "INVALID" or check.verdict == UNCERTAIN:
        return check
    failed = ", ".join(k for k, ok in (verdict.get("checks") or {}).items() if not ok) or "INVALID"
    return _check(check.budget, check.statistic, check.unit, check.limit, check.value, check.interval,
                  verdict=UNCERTAIN, reason=f"would not reproduce (INVALID: {failed}); {check.reason}")


def _above(ci, limit: float) -> bool:
    """Whether ``ci`` is an interval ``[lo, hi]`` wholly above ``limit``."""
    return isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_num(x) is not None for x in ci) \
        and min(ci) > limit


def _memory(cell: dict, b: Budgets) -> Check:
    stat = "rss_mib_peak" if b.memory_scope == "process" else "rss_mib_model"
    figures = [f for f in (_memory_figure(m, b.memory_scope) for m in _memories(cell)) if f is not None]
    if _failed(cell) or not figures:
        return _check("memory", stat, "MiB", b.memory_mib, None, None, verdict=NOT_MEASURED,
                      reason="the cell failed" if _failed(cell) else f"no {stat}")
    interval = (min(figures), max(figures)) if len(figures) > 1 else None
    return _check("memory", stat, "MiB", b.memory_mib, max(figures), interval)


def _memories(cell: dict) -> list:
    procs = (cell.get("repetitions") or {}).get("processes") or []
    found = [p.get("memory") for p in procs if isinstance(p, dict) and isinstance(p.get("memory"), dict)]
    return found or [cell.get("memory") or {}]


def _memory_figure(memory: dict, scope: str) -> Optional[float]:
    peak = _num(memory.get("rss_mib_peak"))
    if scope == "process" or peak is None:
        return peak
    before = _num(memory.get("rss_mib_before_session"))
    return None if before is None else max(peak - before, 0.0)


def _power_figure(cell: dict, budget: str, stat: str, unit: str, limit: float) -> Check:
    power = cell.get("power") or {}
    if _failed(cell):
        return _check(budget, stat, unit, limit, None, None, verdict=NOT_MEASURED, reason="the cell failed")
    if not power or not power.get("meter"):
        why = ("no power source on the local machine (no energy counter or power sensor to read)"
               if power.get("no_source") else "measured without a power meter (inventory meter=)")
        return _check(budget, stat, unit, limit, None, None, verdict=NO_METER, reason=why)
    value = _num(power.get(stat))
    if value is None:
        return _check(budget, stat, unit, limit, None, None, verdict=NOT_MEASURED,
                      reason=power.get("error") or f"the meter gave no {stat}")
    return _check(budget, stat, unit, limit, value, None)


def _power(cell: dict, b: Budgets) -> Check:
    return _power_figure(cell, "power", "power_w_mean", "W", b.power_w)


def _energy(cell: dict, b: Budgets) -> Check:
    return _power_figure(cell, "energy", "energy_mj_per_inference", "mJ", b.energy_mj)


def _accuracy(cell: dict, b: Budgets) -> Check:
    acc = cell.get("accuracy") or {}
    top1, n = _num(acc.get("top1")), acc.get("n")
    if _failed(cell) or top1 is None:
        return _check("accuracy", "top1", "", b.accuracy_min, None, None, kind="min", verdict=NOT_MEASURED,
                      reason="the cell failed" if _failed(cell) else "no accuracy (run with --dataset)")
    interval = wilson_interval(top1 * n, n) if isinstance(n, int) and n > 0 else None
    return _check("accuracy", "top1", "", b.accuracy_min, top1, interval, kind="min")


def _unit_word(unit: str) -> str:
    """The unit as the reasons print it (a fraction is a percentage only in tables)."""
    return "" if unit in (None, "fraction", "") else unit


def _g(x: float) -> str:
    """``x`` to 4 significant digits, never in exponent form (8.4e-05 → 0.000084, 1.69e+03 → 1690)."""
    text = format(x, ".4g")
    return format(Decimal(text), "f") if "e" in text and math.isfinite(x) else text
