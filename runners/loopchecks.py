"""Loop checks on one timed loop's latencies (drift, a second mode) and whether a share (of
iterations in a second mode, of loop time lost to stalls) is the same in every process or
session. Pure functions over latencies in nanoseconds; :mod:`runners.stats` re-exports them
(the verdicts that use them live there and in :mod:`host.campaign.cells`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

DRIFT_METHOD = "least-squares line through 10 block medians; change first->last block / median"
SECOND_MODE_METHOD = "share of iterations outside [p50/1.5, 1.5*p50] and over 1 us from p50"


def drift(latencies_ns: Sequence[int], blocks: int = 10) -> dict:
    """Trend across one timed loop, in time order.

    The loop is cut into ``blocks`` consecutive blocks of equal size; a least-squares line
    is fitted through the block medians. ``drift_rel`` is the line's change from the first
    block to the last, relative to the loop's median (0.3 = 30 % slower at the end);
    ``drift_t`` is the slope over its standard error (how clearly the line is a trend and
    not block-to-block noise); ``drift_ns`` the same change in nanoseconds.

    Returns:
        ``{"drift_rel", "drift_t", "drift_ns": float|None, "method": str}``; None values
        when there are fewer than ``3 * blocks`` iterations.
    """
    arr = np.asarray(latencies_ns, dtype=np.float64)
    out = {"drift_rel": None, "drift_t": None, "drift_ns": None, "method": DRIFT_METHOD}
    if arr.size < 3 * blocks:
        return out
    meds = np.array([np.median(b) for b in np.array_split(arr, blocks)])
    x = np.arange(blocks, dtype=np.float64)
    slope, intercept = np.polyfit(x, meds, 1)
    resid = meds - (slope * x + intercept)
    se = math.sqrt(float(resid @ resid) / (blocks - 2) / float(((x - x.mean()) ** 2).sum()))
    median = float(np.median(arr))
    out["drift_ns"] = float(slope * (blocks - 1))
    out["drift_rel"] = float(slope * (blocks - 1) / median) if median > 0 else None
    out["drift_t"] = float(slope / se) if se > 0 else (0.0 if slope == 0 else math.inf)
    return out


def second_mode(latencies_ns: Sequence[int], floor_ns: int = 1000, min_iterations: int = 100,
                stall_ns: int = 500_000) -> dict:
    """Share of iterations far from the median: outside [p50 / 1.5, 1.5 × p50] **and** more
    than ``floor_ns`` (1 us, about ten clock reads) away from it, so that latencies near the
    timer's resolution (the null backend's ~0.1 us) are not called modes. Below
    ``min_iterations`` the share is too coarse to judge (a smoke test's 20 iterations) and
    is None.

    Scheduler stalls put a few per cent of iterations there; a second mode (half the
    iterations on another core type, a quarter at 2×, a thread pool's wake-up on some
    calls) puts many more. ``stall_time_share`` is the share of the loop's time in stalls:
    iterations longer than max(10 × p50, ``stall_ns``), i.e. the process lost the CPU (a
    scheduler's time slice is milliseconds long). A fast model that shares its CPU with other
    programs barely changes its count (a preemption lands in one iteration) but loses loop
    time to it: 50–80 % at 10 us per iteration on this 2-core machine with other programs
    running.

    Returns:
        ``{"outside_share": float in [0, 1] or None, "outside_count": int or None,
        "iterations": int, "stall_time_share": float or None, "mode_ms": float or None
        (median of the far iterations, ms), "median_ms": float or None, "method": str}``.
    """
    arr = np.asarray(latencies_ns, dtype=np.float64)
    out = {"outside_share": None, "outside_count": None, "iterations": int(arr.size),
           "stall_time_share": None, "mode_ms": None, "median_ms": None, "method": SECOND_MODE_METHOD}
    if arr.size < min_iterations:
        return out
    med = float(np.median(arr))
    out.update(outside_share=0.0, outside_count=0, stall_time_share=0.0, median_ms=med / 1e6)
    if med <= 0:
        return out
    far = arr[(np.abs(arr - med) > floor_ns) & ((arr > 1.5 * med) | (arr < med / 1.5))]
    stalls = arr[arr > max(10 * med, stall_ns)]
    out.update(outside_share=far.size / arr.size, outside_count=int(far.size),
               stall_time_share=float(stalls.sum() / arr.sum()))
    if far.size:
        out["mode_ms"] = float(np.median(far)) / 1e6
    return out


STABLE_METHOD = ("center = median of the groups' shares c; group i is odd when |share_i - c| > "
                 "max(0.05, rel * min(c, 1 - c), 3 * binomial SE_i), rel 0.5 for a second mode's share of "
                 "iterations, 0.25 for the share of loop time in stalls; stable unless more than a quarter "
                 "of the groups are odd")
#: The effect-size bounds of :func:`shares_stable`: absolute, and relative to the center's
#: distance from 0 or 1.
SHARE_ABS = 0.05
SHARE_REL = 0.5
STALL_REL = 0.25
#: More than this share of odd groups makes the shares unstable (as the host's loop checks:
#: one odd process among many is what the interval over processes is for).
ODD_GROUPS_MAX = 0.25


def shares_stable(shares: Sequence[float], iterations: Sequence[int] | None = None,
                  rel: float = SHARE_REL) -> dict:
    """Whether a share (of iterations outside the main mode, or of loop time in stalls) is the same in
    every group (the sessions of one process, or the processes of a cell).

    Rule: the center c is the median of the groups' shares; a group is odd when its share is
    further from c than max(:data:`SHARE_ABS`, ``rel`` × min(c, 1 − c), 3
    binomial standard errors sqrt(c (1 − c) / n_i) when ``iterations`` are given); the
    shares are stable unless more than :data:`ODD_GROUPS_MAX` of the groups are odd. An
    effect-size bound, not a test of homogeneity of proportions (chi-square on the counts,
    scipy.stats.chi2_contingency): with the 10^3–10^5 iterations of a fast model's loop a
    one-point difference is "significant" though it moves no percentile, so significance
    would fail every real cell; the 3 SE term keeps short loops (100 iterations of a slow
    model) from failing on binomial noise, the median center and the odd-group allowance
    keep one process with a long stall from failing a cell. The bounds come from the main
    job's cells and digits_cnn cells with a CPU hog on this 2-core machine shared with other
    sessions (docs/measurement.md §6): second-mode shares of 7–18 % in every process of a
    MobileNet cell (stable at ±50 %), 1–49 % where other programs' bursts hit some processes;
    digits_cnn's share of loop time in stalls 51–56 % under steady load, spread over 3–87 % when
    a hog started mid-cell (±25 % of the time left to the model separates them); with the
    machine quiet, 0–7 % second mode and 0–4 % stalls in every process of every cell, 47–56 %
    stalls in the processes a hog hit.

    Args:
        shares: one share in [0, 1] per group.
        iterations: per group, the iterations its share counts (for the binomial term).
        rel: the relative bound: :data:`SHARE_REL` (a second mode's share may vary by half
            of itself, e.g. 13–18 % around 15 %), :data:`STALL_REL` for stall time (the
            loop time left to the model, hence samples/s, within ±25 % of the median's).

    Returns:
        ``{"stable": bool, "center": float, "shares": [float], "odd": int, "bound": float
        (the allowance at the center, without the binomial term), "worst": float (the largest
        |share - center|), "groups": int, "method": str}``; stable with no groups.
    """
    x = np.asarray(shares, dtype=np.float64)
    out = {"stable": True, "center": None, "shares": [float(v) for v in x], "odd": 0, "bound": None,
           "worst": None, "groups": int(x.size), "method": STABLE_METHOD}
    if not x.size:
        return out
    c = float(np.median(x))
    bound = max(SHARE_ABS, rel * min(c, 1 - c))
    allowed = np.full(x.size, bound)
    if iterations is not None:
        allowed = np.maximum(allowed, 3 * np.sqrt(c * (1 - c) / np.asarray(iterations, dtype=np.float64)))
    dev = np.abs(x - c)
    odd = int(np.count_nonzero(dev > allowed))
    out.update(center=c, bound=bound, worst=float(dev.max()), odd=odd, stable=odd <= ODD_GROUPS_MAX * x.size)
    return out


def modes_stable(groups: Sequence[dict], share_max: float = 0.10) -> dict:
    """Whether a second mode holds the same share of iterations in every group: a property of
    the system then (a thread pool's wake-up, a core type) and a warning, a number that would
    not reproduce otherwise (contention that comes and goes). No group's share above
    ``share_max`` is no second mode (stable); else :func:`shares_stable` on the groups' count
    shares decides.

    Args:
        groups: :func:`second_mode` results (or dicts with ``outside_count``,
            ``iterations`` and optionally ``mode_ms``, ``median_ms``: a caller may sum a
            process's sessions into one group); groups without a share (too few iterations)
            are left out.
        share_max: the policy's ``mode_share_max``.

    Returns:
        :func:`shares_stable`'s dict with ``second_mode`` (bool), ``mode_ms`` and
        ``median_ms`` (medians over the groups, ms, or None) added.
    """
    used = [g for g in groups if g.get("outside_count") is not None and g.get("iterations")]
    shares = [g["outside_count"] / g["iterations"] for g in used]
    out = shares_stable(shares, [g["iterations"] for g in used])
    modes = [g["mode_ms"] for g in used if g.get("mode_ms") is not None]
    meds = [g["median_ms"] for g in used if g.get("median_ms") is not None]
    out.update(second_mode=bool(shares) and max(shares) > share_max,
               mode_ms=float(np.median(modes)) if modes else None,
               median_ms=float(np.median(meds)) if meds else None)
    out["stable"] = out["stable"] or not out["second_mode"]
    return out


def _near(modes: dict) -> str:
    if modes["mode_ms"] is None:
        return ""
    med = f" (median {modes['median_ms']:.3g} ms)" if modes["median_ms"] is not None else ""
    return f" near {modes['mode_ms']:.3g} ms{med}"


def mode_warning(modes: dict, level: str) -> str:
    """The warning for a stable second mode (:func:`modes_stable`): its share and latency."""
    lo, hi = min(modes["shares"]), max(modes["shares"])
    where = (f"{lo:.0%}–{hi:.0%} in each of {modes['groups']} {level}: stable, a property of the system "
             "(e.g. thread-pool wake-ups)" if modes["groups"] > 1 else
             f"one of {level}: whether it is stable is judged over the cell's processes")
    return (f"second mode: {modes['center']:.0%} of iterations{_near(modes)}, {where}; "
            "it is in p90/p99, the p50 is the main mode's")


def mode_reason(modes: dict, level: str) -> str:
    """The reason for a second mode whose share varies between ``level`` (sessions, processes)."""
    lo, hi = min(modes["shares"]), max(modes["shares"])
    return (f"second mode varies between {level}: {lo:.0%}–{hi:.0%} of iterations{_near(modes)} "
            f"({modes['odd']} of {modes['groups']} {level} beyond ±{modes['bound']:.0%} of the median "
            f"{modes['center']:.0%}): contention from other programs that comes and goes; close them or "
            "pin threads (--threads)")


def stall_reason(stalls: dict) -> str:
    """The reason for a share of loop time in stalls (:func:`second_mode`) that varies between
    processes."""
    lo, hi = min(stalls["shares"]), max(stalls["shares"])
    return (f"the share of loop time lost to stalls varies between processes: {lo:.0%}–{hi:.0%} "
            f"({stalls['odd']} of {stalls['groups']} beyond ±{stalls['bound']:.0%} of the median "
            f"{stalls['center']:.0%}): other programs took the CPU during part of the cell, so samples/s and "
            "the tail would not reproduce; close them and re-run")


# -- intervals over repetitions -------------------------------------------------------
