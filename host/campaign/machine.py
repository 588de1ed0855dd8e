"""Whether the board as a whole moved while a cell ran, and where it stands against its usual
speed (issue 27): the reference workload's runs between rounds (:mod:`host.campaign.reference`)
and the CPU time other processes took during each of the cell's timed loops
(``others_cpu_share``, :mod:`runners.environment`). A cell's trend across its processes is the
board's when the reference moved with it, or when other processes' load on the board changed
over the same processes; then ``machine_steady`` fails instead of the cell's own
``no_trend_across_processes``. Used by :mod:`host.campaign.cells`.
"""

from __future__ import annotations

import math

import numpy as np

from host.campaign.device_effect import plausible

#: Other processes' CPU use (share of the board's capacity, median of the last third of a cell's
#: processes against the first third's) that changed by at least this much is a change of the
#: machine's load: one busy core of 2 is 0.5, of 8 is 0.125.
LOAD_STEP = 0.10


def theil_sen_slope(x, y) -> float | None:
    """The median of the pairwise slopes (y_j − y_i) / (x_j − x_i) over pairs with x_i ≠ x_j
    (Sen, *JASA* 1968): a line one odd point does not tilt. None without such a pair."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    i, j = np.triu_indices(len(x), k=1)
    ok = x[j] != x[i]
    return float(np.median((y[j] - y[i])[ok] / (x[j] - x[i])[ok])) if ok.any() else None




def machine_state(reference: list | None, records: list, device: dict | None) -> dict | None:
    """How fast the board ran while this cell ran, against its usual speed: the geometric mean
    of this campaign's reference-workload p50s over the cell's rounds (from the round before its
    first process; all of this campaign's so far when none falls there) against the device's
    usual reference p50 (``device["reference_usual_ms"]``:
    :func:`host.campaign.device_effect.usual_reference`). Returns ``{"reference_ms", "usual_ms",
    "shift_log" (ln of their ratio), "runs", "usual_campaigns"}``, or None without both."""
    usual = (device or {}).get("reference_usual_ms")
    runs = [x for x in reference or [] if isinstance(x, dict) and plausible(x.get("latency_ms_p50"))]
    rounds = [r.get("round") for r in records if isinstance(r.get("round"), int)]
    if rounds:
        span = [x for x in runs if isinstance(x.get("round"), int) and min(rounds) - 1 <= x["round"]]
        runs = [x for x in span if x["round"] <= max(rounds)] or runs
    if not plausible(usual) or not runs:
        return None
    now = math.exp(float(np.mean(np.log([x["latency_ms_p50"] for x in runs]))))
    return {"reference_ms": now, "usual_ms": usual, "shift_log": math.log(now / usual), "runs": len(runs),
            "usual_campaigns": device.get("reference_usual_campaigns")}




def machine_change(reference: list | None, records: list) -> dict | None:
    """How much the board as a whole moved while this cell ran: the reference workload's runs
    (``campaign.json`` ``reference``, one after each round) from the round before the cell's
    first process to its last, as a Theil–Sen change of ln p50 per round (Sen, *JASA* 1968)
    over the cell's span of rounds — the same measure as the cell's own ``time_trend_rel``.

    Returns ``{"change" (relative), "rounds": [first, last], "runs"}``, or None with fewer than 3
    reference runs in the span, or when the cell's rounds are not increasing (a resumed
    campaign counts its rounds from 1 again)."""
    rounds = [r.get("round") for r in records]
    if len(rounds) < 2 or not all(isinstance(x, int) for x in rounds) or rounds != sorted(set(rounds)):
        return None
    lo, hi = rounds[0] - 1, rounds[-1]
    pts = sorted((x["round"], math.log(x["latency_ms_p50"])) for x in reference or [] if isinstance(x, dict)
                 and isinstance(x.get("round"), int) and lo <= x["round"] <= hi
                 and plausible(x.get("latency_ms_p50")))
    if len(pts) < 3 or len({r for r, _ in pts}) < len(pts):
        return None
    slope = theil_sen_slope(*zip(*pts))
    return {"change": math.expm1(slope * (rounds[-1] - rounds[0])), "rounds": [lo, hi], "runs": len(pts)}


def load_change(records: list) -> dict | None:
    """How much other processes' CPU use on the board changed over this cell's processes
    (``records``, in run order): the median ``others_cpu_share`` (share of the board's CPU
    capacity during the timed loops, :mod:`runners.environment`) after the step against before
    it (:func:`level_step`, at least 2 processes a side), each process the median of its sessions. Returns
    ``{"first", "last", "change", "rounds": [first, last]}``, or None with fewer than 4 processes
    that report it."""
    per = []
    for r in records:
        shares = [s.get("others_cpu_share") for s in r.get("sessions") or []]
        shares = [x for x in shares if isinstance(x, (int, float)) and math.isfinite(x)]
        if shares:
            per.append((r.get("round"), float(np.median(shares))))
    if len(per) < 4:
        return None
    first, last, _ = level_step([x for _, x in per], 2)
    return {"first": first, "last": last, "change": last - first, "rounds": [per[0][0], per[-1][0]]}


def level_step(values: list, side_min: int) -> tuple | None:
    """One step in ``values`` (in run order): of every split into a before and an after of at
    least ``side_min`` values each, the one that fits them best as two levels — least absolute
    deviation from each side's median (an L1 change point with one change). Returns
    ``(median before, median after, index the after part starts at)``, or None with fewer than
    2 × ``side_min`` values. A step a few runs in is found where it is, where comparing the first
    and last thirds would put it inside the first third."""
    best = None
    for k in range(side_min, len(values) - side_min + 1):
        sides = (values[:k], values[k:])
        medians = [float(np.median(side)) for side in sides]
        cost = sum(abs(x - m) for side, m in zip(sides, medians) for x in side)
        if best is None or cost < best[0]:
            best = (cost, medians[0], medians[1], k)
    return None if best is None else best[1:]


def _moved_with_machine(trend: float | None, machine: dict | None, bound: float) -> bool:
    """Whether a cell's trend beyond ``bound`` is the board's: the reference moved beyond the
    bound the same way over the same rounds, and what is left of the cell's trend net of it is
    within the bound."""
    if trend is None or machine is None or abs(machine["change"]) <= bound:
        return False
    net = abs(math.log1p(trend) - math.log1p(machine["change"]))
    return (machine["change"] > 0) == (trend > 0) and net <= bound


def _loaded(load: dict | None) -> bool:
    return load is not None and abs(load["change"]) >= LOAD_STEP


def trend_verdict(n: int, trend: float | None, protocol, machine: dict | None,
                  load: dict | None = None) -> tuple:
    """``({check: bool}, {check: reason})`` of the trend across the cell's ``n`` processes
    (:func:`host.campaign.cells.cell_verdict`): ``no_trend_across_processes`` fails when the
    cell's trend is beyond max(2 × target, 10 %); ``machine_steady`` fails instead when the board
    moved with it — the reference workload (``machine``, :func:`machine_change`) the same way
    with the cell's trend net of it within that bound, or other processes' load (``load``,
    :func:`load_change`) changed by at least :data:`LOAD_STEP` over the same processes (the
    board's speed for this cell's runtime moved with it; how much depends on the runtime, so
    no net is taken)."""
    bound = max(2 * protocol.target_ci, 0.10)
    own = n >= 5 and trend is not None and abs(trend) > bound
    if own and _moved_with_machine(trend, machine, bound):
        return {"no_trend_across_processes": True, "machine_steady": False}, {"machine_steady": (
            f"the board's speed moved while this cell ran: the reference workload changed "
            f"{machine['change']:+.0%} over the same rounds ({machine['rounds'][0]}-{machine['rounds'][1]}), "
            f"this cell {trend:+.0%}: a machine trend, not this cell's; re-run when the board is steady")}
    if own and _loaded(load):
        return {"no_trend_across_processes": True, "machine_steady": False}, {"machine_steady": (
            f"the board's load changed while this cell ran: other processes used {load['first']:.0%} of its "
            f"CPU in this cell's processes before the step and {load['last']:.0%} after it (rounds "
            f"{load['rounds'][0]}-{load['rounds'][1]}), this cell {trend:+.0%}: a machine change, not this "
            "cell's; re-run when the board is quiet")}
    if own:
        return {"no_trend_across_processes": False}, {"no_trend_across_processes": (
            f"latency changed {trend:+.0%} from the cell's first process to its last: "
            "the machine's state changed during the campaign; re-run when it is quiet")}
    return {"no_trend_across_processes": True}, {}
