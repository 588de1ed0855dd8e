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

from runners.loopchecks import (  # noqa: F401  (re-exported: the loop checks were defined here)
    DRIFT_METHOD,
    ODD_GROUPS_MAX,
    SECOND_MODE_METHOD,
    SHARE_ABS,
    SHARE_REL,
    STABLE_METHOD,
    STALL_REL,
    drift,
    mode_reason,
    mode_warning,
    modes_stable,
    second_mode,
    shares_stable,
    stall_reason,
)

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
    # a scheduled scenario (paced, multi-stream: runners.scenarios) runs its schedule, not the minimums
    scheduled = getattr(policy, "scenario", "single-stream") != "single-stream"
    min_iterations, min_s = (1, 0.0) if scheduled else (policy.min_iterations, policy.min_duration_s)
    checks = {
        "min_iterations_met": all(x["iterations"] >= min_iterations for x in lats),
        "min_duration_met": all(x["duration_s"] >= min_s for x in lats),
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
    value = summary[key]  # None: too few samples for it (a scheduled run's early-stopping p99)
    return {
        "fps": fps,
        "budget_ms": budget,
        "statistic": statistic,
        "latency_ms": value,
        "meets_budget": None if value is None else value <= budget,
        "headroom_ms": None if value is None else budget - value,
    }


# -- checks on one timed loop ---------------------------------------------------------

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
