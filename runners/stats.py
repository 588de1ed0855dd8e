"""Latency statistics, the stop-rule verdict and the real-time verdict.

Pure functions over a sequence of per-inference latencies in nanoseconds. No outlier is
ever removed: every timed iteration enters every statistic (unlike e.g. Ultralytics'
iterative 2-sigma clipping).

Spread is reported two ways. ``cov`` is the classic coefficient of variation, sample
std / mean; on a time-shared CPU a handful of scheduler stalls (10-30 ms against a 0.1 ms
inference) dominate it. ``cov_robust`` is IQR / (1.349 * median): the interquartile range
scaled to equal std/mean for normally distributed latencies (a normal's IQR is 1.349
sigma). It asks whether the middle half of the iterations agree, so it ignores stalls that
hit fewer than a quarter of them but catches a shifted bulk (drift, throttling, a second
mode) above that; it is what the verdict's CoV limit applies to. Stalls stay visible in
p99, max and ``cov``, and a classic CoV above the limit adds a warning.

Percentiles use linear interpolation between order statistics (numpy's default, "type 7"
in Hyndman & Fan 1996). Within one timed loop, the 95 % confidence interval of the
median (``latency_ms_p50_ci95_loop``) is distribution-free,
from order statistics: the interval [x_(j), x_(k)] with the smallest symmetric rank
distance such that P(j <= B < k) >= 0.95 for B ~ Binomial(n, 1/2) (Conover, *Practical
Nonparametric Statistics*, 3rd ed., §3.2). The binomial is evaluated exactly for
n <= 2000 and by its normal approximation above. That interval only sees noise inside
one loop; on a time-shared machine sessions and processes differ far more (see
docs/measurement.md), so the cell's interval comes from :func:`repetition_interval` over
many processes.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

#: Percentiles reported for every latency distribution.
PERCENTILES = (50, 90, 95, 99)

MEDIAN_CI_METHOD = "order_statistics_binomial"
COV_ROBUST_METHOD = "IQR/(1.349*median)"
#: The interquartile range of a normal distribution is this many standard deviations.
IQR_TO_STD = 1.349
PERCENTILE_METHOD = "linear_interpolation_type7"
#: The two-sided 95 % standard-normal quantile.
Z975 = 1.959963984540054


def _median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based ranks (lo, hi) of the order statistics bounding the median's CI.

    Returns None when n is too small for any interval to reach ``confidence``
    (n < 6 for 95 %).
    """
    if n < 1:
        return None
    alpha = 1.0 - confidence
    if n <= 2000:
        # cdf[i] = P(B <= i), B ~ Binomial(n, 1/2), in log space to avoid underflow.
        log_half_n = n * math.log(0.5)
        lognorm = math.lgamma(n + 1)
        cdf = []
        acc = 0.0
        for i in range(n + 1):
            acc += math.exp(lognorm - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half_n)
            cdf.append(acc)
        # Largest j (1-based) with P(B <= j-1) <= alpha/2; interval [x_(j), x_(n-j+1)]
        # has coverage 1 - 2 * P(B <= j-1).
        j = 0
        for cand in range(1, n // 2 + 1):
            if cdf[cand - 1] <= alpha / 2:
                j = cand
            else:
                break
        if j == 0:
            return None
        return j - 1, n - j
    z = Z975 if abs(confidence - 0.95) < 1e-12 else _z(confidence)
    half = z * math.sqrt(n) / 2.0
    lo = int(math.floor(n / 2.0 - half))  # 1-based rank
    hi = int(math.ceil(n / 2.0 + 1 + half))
    lo = max(lo, 1)
    hi = min(hi, n)
    return lo - 1, hi - 1


def _z(confidence: float) -> float:
    """Two-sided standard-normal quantile for ``confidence`` (bisection on erf)."""
    target = confidence
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if math.erf(mid / math.sqrt(2)) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def summarize(latencies_ns: Sequence[int], loop_duration_ns: int | None = None,
              samples_per_call: int = 1) -> dict:
    """Summarise per-inference latencies.

    Args:
        latencies_ns: one value per timed inference, nanoseconds, shape (n,), n >= 1.
        loop_duration_ns: wall time of the whole timed loop in ns (includes harness
            overhead between calls); used for the throughputs. Defaults to the sum
            of the latencies.
        samples_per_call: samples (batch items) each call processes.

    Returns:
        A dict with ``iterations``, ``latency_ms_{mean,std,min,max,p50,p90,p95,p99}``,
        ``latency_ms_p50_ci95_loop`` ([lo, hi] or None when n < 6: the order-statistic
        interval of this loop's median, blind to anything above the loop), ``cov`` (std/mean,
        dimensionless; std is the sample standard deviation, ddof=1), ``cov_robust``
        (IQR / (1.349 * median), dimensionless), ``throughput_cps`` (calls per second over
        the loop), ``throughput_sps`` (samples per second = calls/s × ``samples_per_call``),
        ``duration_s`` and the methods used.

    Raises:
        ValueError: when ``latencies_ns`` is empty.
    """
    arr = np.asarray(latencies_ns, dtype=np.float64)
    n = int(arr.size)
    if n == 0:
        raise ValueError("no latency samples to summarise")
    ms = arr / 1e6
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if n > 1 else 0.0
    pct = np.percentile(ms, PERCENTILES)
    sorted_ms = np.sort(ms)
    median = float(np.median(sorted_ms))
    q1, q3 = np.percentile(sorted_ms, (25, 75))
    ranks = _median_ci_ranks(n)
    ci = None if ranks is None else [float(sorted_ms[ranks[0]]), float(sorted_ms[ranks[1]])]
    duration_ns = float(loop_duration_ns) if loop_duration_ns else float(arr.sum())
    out = {
        "iterations": n,
        "latency_ms_mean": mean,
        "latency_ms_std": std,
        "latency_ms_min": float(sorted_ms[0]),
        "latency_ms_max": float(sorted_ms[-1]),
    }
    for p, v in zip(PERCENTILES, pct):
        out[f"latency_ms_p{p}"] = float(v)
    out.update(
        {
            "latency_ms_p50_ci95_loop": ci,
            "cov": std / mean if mean > 0 else None,
            "cov_robust": float(q3 - q1) / (IQR_TO_STD * median) if median > 0 else None,
            "throughput_cps": n / (duration_ns / 1e9) if duration_ns > 0 else None,
            "throughput_sps": n * samples_per_call / (duration_ns / 1e9) if duration_ns > 0 else None,
            "samples_per_call": samples_per_call,
            "duration_s": duration_ns / 1e9,
            "median_ci_method": MEDIAN_CI_METHOD,
            "cov_robust_method": COV_ROBUST_METHOD,
            "percentile_method": PERCENTILE_METHOD,
        }
    )
    return out


def _loop_reasons(blocks: list, policy) -> tuple:
    """(checks, reasons by check) of the stop rule and the loop checks over every session.

    A second mode alone is no reason (a stable one is the system's, reported by
    :func:`process_verdict` as a warning); one whose share differs between this process's
    sessions (:func:`modes_stable`) is."""
    lats = [b["latency"] for b in blocks]
    drifting = [b for b in blocks if _drifts(b["checks"]["drift"], policy.drift_max)]
    modes = modes_stable([b["checks"]["second_mode"] for b in blocks], policy.mode_share_max)
    throttled = [b for b in blocks
                 if abs(b["checks"]["environment"].get("cpu_mhz_change_rel") or 0.0) > policy.throttle_max]
    checks = {
        "min_iterations_met": all(x["iterations"] >= policy.min_iterations for x in lats),
        "min_duration_met": all(x["duration_s"] >= policy.min_duration_s for x in lats),
        "max_duration_not_hit": not any(x.get("max_duration_hit") for x in lats),
        "no_drift": not drifting,
        "modes_stable_across_sessions": modes["stable"],
        "no_throttle": not throttled,
    }
    reasons = {}
    if not (checks["min_iterations_met"] and checks["min_duration_met"] and checks["max_duration_not_hit"]):
        failed = next(c for c in ("max_duration_not_hit", "min_iterations_met", "min_duration_met")
                      if not checks[c])
        reasons[failed] = (f"the timed loop hit its cap ({policy.max_duration_s:g} s) before "
                           f"{policy.min_iterations} iterations and {policy.min_duration_s:g} s: "
                           "raise --max-s")
    if drifting:
        d = drifting[0]["checks"]["drift"]
        reasons["no_drift"] = (f"latency drifted {d['drift_rel']:+.0%} across a timed loop (session "
                               f"{drifting[0]['index']}; limit ±{policy.drift_max:.0%}): something changed "
                               "during it (clock, heat, load); "
                               "let the machine settle or lengthen the warm-up (--warmup-s)")
    if not modes["stable"]:
        reasons["modes_stable_across_sessions"] = mode_reason(modes, "sessions")
    if throttled:
        env = throttled[0]["checks"]["environment"]
        reasons["no_throttle"] = (f"CPU clock changed {env['cpu_mhz_change_rel']:+.0%} during a timed loop "
                                  f"({env['cpu_mhz_before']:.0f} -> {env['cpu_mhz_after']:.0f} MHz): "
                                  "throttling or frequency scaling; fix the power mode "
                                  "(host power-mode tune) or cool the board")
    return checks, reasons


def _drifts(d: dict, limit: float, floor_ns: float = 1000.0) -> bool:
    """A trend that is material (> ``limit`` and over ``floor_ns``, 1 us: not the timer's
    resolution) and clear (|t| > 3)."""
    return (d.get("drift_rel") is not None and abs(d["drift_rel"]) > limit and abs(d.get("drift_t") or 0) > 3
            and abs(d.get("drift_ns") or 0) > floor_ns)


def process_verdict(blocks: list, policy) -> dict:
    """VALID/INVALID for one runner process, from its session blocks.

    INVALID when a timed loop missed its minimums or hit its cap (LoadGen's rule), drifted
    (:func:`drift`: change > ``policy.drift_max`` with |t| > 3), had a second mode whose
    share differs between the process's sessions (:func:`modes_stable`; with one session
    there is nothing to compare: the host compares processes) or saw the CPU clock change by
    more than ``policy.throttle_max``. Warnings, which never invalidate: a second mode
    (:func:`second_mode` share > ``policy.mode_share_max``) with its share and latency,
    other processes' CPU share above ``policy.load_max``, robust or classic CoV above
    ``policy.cov_max``. Whether the interval is precise enough is the host's call (it sees
    every process).

    Args:
        blocks: the result's ``sessions`` list (``latency`` and ``checks`` of each).
        policy: :class:`runners.core.Policy` (its thresholds).

    Returns:
        ``{"result", "reasons": [str], "reasons_by_check": {check: str}, "checks": {name:
        bool}, "warnings": [str]}``; each reason says what to do about it and sits under the
        one check that failed.
    """
    checks, by_check = _loop_reasons(blocks, policy)
    warnings = []
    modes = modes_stable([b["checks"]["second_mode"] for b in blocks], policy.mode_share_max)
    if modes["stable"] and modes["second_mode"]:
        warnings.append(mode_warning(modes, "sessions"))
    busy = [b["checks"]["environment"].get("others_cpu_share") or 0.0 for b in blocks]
    if max(busy) > policy.load_max:
        warnings.append(f"other processes used {max(busy):.0%} of the machine's CPU time during a timed loop "
                        f"(limit {policy.load_max:.0%}): close other programs")
    robust = max(b["latency"].get("cov_robust") or 0.0 for b in blocks)
    if robust > policy.cov_max:
        warnings.append(f"robust CoV {robust:.3f} > {policy.cov_max:g} in a timed loop: a wide bulk")
    cov = max(b["latency"].get("cov") or 0.0 for b in blocks)
    if cov > policy.cov_max:
        worst = max(b["latency"]["latency_ms_max"] for b in blocks)
        warnings.append(f"classic CoV (std/mean) {cov:.3f} > {policy.cov_max:g}: long stalls in the tail "
                        f"(max {worst:.3f} ms); they are in p99/max, the median is unaffected")
    return {"result": "INVALID" if by_check else "VALID", "reasons": list(by_check.values()),
            "reasons_by_check": by_check, "checks": checks, "warnings": warnings}


def pool_sessions(blocks: list, arrays: list, level: str | None) -> dict:
    """The process-level ``latency`` block from its sessions.

    Percentiles, mean, min, max, CoVs and throughputs are over every iteration of every
    session (pooled); ``latency_ms_p50`` is the median of the session medians (the median
    itself with one session; ``latency_ms_p50_pooled`` is the pooled median).
    ``latency_ms_p50_ci95`` is None: one process says nothing about the next, so the
    interval is the host's, over many processes. The loop bounds span the first
    session's timed loop start to the last one's end.
    """
    pooled = np.concatenate([np.asarray(a, dtype=np.int64) for a in arrays])
    lats = [b["latency"] for b in blocks]
    out = summarize(pooled, loop_duration_ns=int(sum(x["duration_s"] for x in lats) * 1e9),
                    samples_per_call=lats[0]["samples_per_call"])
    out.update({
        "latency_ms_p50_pooled": out["latency_ms_p50"],
        "latency_ms_p50": float(np.median([x["latency_ms_p50"] for x in lats])),
        "latency_ms_p50_ci95": None,
        "latency_ms_p50_ci95_loop": None,
        "median_ci_note": "one process measures no process-to-process variation: see "
                          "latency_ms_p50_ci95_loop (one loop) and `host bench` (many processes)",
        "sessions": len(lats),
        "level": level,
        "clock": "perf_counter_ns",
        "loop_start_monotonic_ns": lats[0]["loop_start_monotonic_ns"],
        "loop_end_monotonic_ns": lats[-1]["loop_end_monotonic_ns"],
    })
    return out


def realtime_verdict(summary: dict, fps: float, statistic: str = "p99") -> dict:
    """Check the latency against a frame budget of ``1000 / fps`` ms.

    The budget is met when the chosen latency statistic (default the p99, so that at
    most 1 % of frames miss it) is at most the budget, batch as measured.

    Returns:
        ``{"fps", "budget_ms", "statistic", "latency_ms", "meets_budget", "headroom_ms"}``.

    Raises:
        ValueError: when ``fps`` is not positive or ``statistic`` is unknown.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    key = f"latency_ms_{statistic}"
    if key not in summary:
        raise ValueError(f"unknown latency statistic {statistic!r}")
    budget = 1000.0 / fps
    value = summary[key]
    return {
        "fps": fps,
        "budget_ms": budget,
        "statistic": statistic,
        "latency_ms": value,
        "meets_budget": value <= budget,
        "headroom_ms": budget - value,
    }


# -- checks on one timed loop ---------------------------------------------------------

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

BOOTSTRAP_METHOD = ("two-stage hierarchical bootstrap (processes, then sessions within them, "
                    "with replacement), percentile interval")
BOOTSTRAP_RESAMPLES = 2000
#: Fewest top-level repetitions for an interval: with 3, the percentile bootstrap covered
#: 72 % instead of 95 % in our simulation (tests/test_stats.py); with 5, 93 %.
MIN_REPETITIONS = 5


def _padded(groups: Sequence[Sequence[float]]) -> tuple:
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    if sizes.size == 0 or np.any(sizes == 0):
        raise ValueError("every repetition group needs at least one value")
    table = np.full((len(groups), int(sizes.max())), np.nan)
    for i, g in enumerate(groups):
        table[i, : len(g)] = np.asarray(g, dtype=np.float64)
    if not np.all(np.isfinite(table[~np.isnan(table)])):
        raise ValueError("repetition values must be finite")
    return table, sizes


def bootstrap_replicates(groups: Sequence[Sequence[float]], *, resamples: int = BOOTSTRAP_RESAMPLES,
                         seed: int = 0, rounds: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """Replicates of the median of per-session values under a two-stage bootstrap.

    Stage 1 draws ``len(groups)`` groups (processes) with replacement; stage 2 draws, within
    each drawn group, as many values (sessions) as it has, with replacement; the replicate
    is the median of all values drawn. Resampling every level with replacement is slightly
    conservative (Davison & Hinkley, *Bootstrap Methods and their Application*, 1997,
    §3.8; Saravanan et al., "Application of the hierarchical bootstrap to multi-level
    data in neuroscience", NBDC 2020).

    Args:
        groups: per process, its sessions' values (e.g. medians in ms); shape (R, S_r).
        resamples: number of replicates B.
        seed: seed of the generator (results are reproducible).
        rounds: optional stage-1 draw indices, shape (B, R), to pair two cells' resamples
            (same rounds drawn for both); drawn here when None.

    Returns:
        Replicates, shape (B,).

    Raises:
        ValueError: no groups, an empty group or a non-finite value.
    """
    table, sizes = _padded(groups)
    rng = np.random.default_rng(seed)
    r = len(groups)
    pick = np.asarray(rounds) if rounds is not None else rng.integers(0, r, size=(resamples, r))
    if table.shape[1] == 1:
        return np.median(table[pick, 0], axis=1)
    n_each = sizes[pick]  # (B, R)
    inner = (rng.random(pick.shape + (table.shape[1],)) * n_each[..., None]).astype(np.int64)
    values = table[pick[..., None], inner]
    values[np.arange(table.shape[1]) >= n_each[..., None]] = np.nan
    return np.nanmedian(values.reshape(len(pick), -1), axis=1)


def repetition_interval(groups: Sequence[Sequence[float]], *, seed: int = 0,
                        resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """The cell estimate and its intervals from independent repetitions.

    ``estimate`` is the median of every session's value (e.g. the session medians, ms);
    ``ci95`` is the 2.5–97.5 % percentile interval of :func:`bootstrap_replicates`;
    ``rerun95`` is where a re-run of the same protocol should land with 95 %: the estimate
    times the 2.5–97.5 % percentiles of the ratio of two independent replicates (the
    spread of one estimate against another, so about √2 times the CI's width).
    ``*_rel`` is an interval's relative half-width, (hi - lo) / (2 * estimate).

    Args:
        groups: per process, its sessions' values; shape (R, S_r), R >= 1.

    Returns:
        ``{"repetitions", "sessions", "estimate", "ci95", "ci95_rel", "rerun95",
        "rerun95_rel", "method", "resamples"}``; intervals None when R <
        :data:`MIN_REPETITIONS` (too few for the bootstrap to cover).

    Raises:
        ValueError: as :func:`bootstrap_replicates`.
    """
    table, sizes = _padded(groups)
    est = float(np.nanmedian(table))
    out = {"repetitions": len(groups), "sessions": int(sizes.sum()), "estimate": est,
           "ci95": None, "ci95_rel": None, "rerun95": None, "rerun95_rel": None,
           "method": BOOTSTRAP_METHOD, "resamples": resamples}
    if len(groups) < MIN_REPETITIONS:
        return out
    a = bootstrap_replicates(groups, resamples=resamples, seed=seed)
    b = bootstrap_replicates(groups, resamples=resamples, seed=seed + 1)
    lo, hi = np.percentile(a, (2.5, 97.5))
    rlo, rhi = np.percentile(a / b, (2.5, 97.5)) * est
    for key, (x, y) in (("ci95", (lo, hi)), ("rerun95", (rlo, rhi))):
        out[key] = [float(x), float(y)]
        out[key + "_rel"] = float((y - x) / (2 * est)) if est > 0 else None
    return out
