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
in Hyndman & Fan 1996). The 95 % confidence interval of the median is distribution-free,
from order statistics: the interval [x_(j), x_(k)] with the smallest symmetric rank
distance such that P(j <= B < k) >= 0.95 for B ~ Binomial(n, 1/2) (Conover, *Practical
Nonparametric Statistics*, 3rd ed., §3.2). The binomial is evaluated exactly for
n <= 2000 and by its normal approximation above.
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
    z = 1.959963984540054 if abs(confidence - 0.95) < 1e-12 else _z(confidence)
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


def summarize(latencies_ns: Sequence[int], loop_duration_ns: int | None = None) -> dict:
    """Summarise per-inference latencies.

    Args:
        latencies_ns: one value per timed inference, nanoseconds, shape (n,), n >= 1.
        loop_duration_ns: wall time of the whole timed loop in ns (includes harness
            overhead between calls); used for ``throughput_ips``. Defaults to the sum
            of the latencies.

    Returns:
        A dict with ``iterations``, ``latency_ms_{mean,std,min,max,p50,p90,p95,p99}``,
        ``latency_ms_p50_ci95`` ([lo, hi] or None when n < 6), ``cov`` (std/mean,
        dimensionless; std is the sample standard deviation, ddof=1), ``cov_robust``
        (IQR / (1.349 * median), dimensionless), ``throughput_ips``
        (inferences per second over the loop), ``duration_s`` and the methods used.

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
            "latency_ms_p50_ci95": ci,
            "cov": std / mean if mean > 0 else None,
            "cov_robust": float(q3 - q1) / (IQR_TO_STD * median) if median > 0 else None,
            "throughput_ips": n / (duration_ns / 1e9) if duration_ns > 0 else None,
            "duration_s": duration_ns / 1e9,
            "median_ci_method": MEDIAN_CI_METHOD,
            "cov_robust_method": COV_ROBUST_METHOD,
            "percentile_method": PERCENTILE_METHOD,
        }
    )
    return out


def verdict(
    summary: dict,
    *,
    min_iterations: int,
    min_duration_s: float,
    max_duration_hit: bool,
    cov_max: float,
) -> dict:
    """Decide VALID/INVALID for a timed loop, LoadGen style.

    Each rule is reported as a named check; the result is INVALID when any fails.

    Args:
        summary: output of :func:`summarize`.
        min_iterations, min_duration_s: the stop rule's minimums (both must be met).
        max_duration_hit: the loop stopped at its maximum-duration cap.
        cov_max: largest accepted robust coefficient of variation (``cov_robust``).

    Returns:
        ``{"result": "VALID"|"INVALID", "reasons": [str, ...], "checks": {name: bool},
        "warnings": [str, ...]}``; warnings (classic CoV above ``cov_max``) never make
        a result INVALID.
    """
    robust = summary.get("cov_robust")
    checks = {
        "min_iterations_met": summary["iterations"] >= min_iterations,
        "min_duration_met": summary["duration_s"] >= min_duration_s,
        "max_duration_not_hit": not max_duration_hit,
        "cov_within_limit": robust is not None and robust <= cov_max,
    }
    warnings = []
    cov = summary.get("cov")
    if cov is not None and cov > cov_max:
        worst = summary.get("latency_ms_max")
        tail = f" (max {worst:.3f} ms)" if worst is not None else ""
        warnings.append(
            f"classic CoV (std/mean) {cov:.3f} > {cov_max:g}: long stalls in the tail{tail}; "
            "they are in p99/max, the median and cov_robust are unaffected"
        )
    reasons = []
    if not checks["min_iterations_met"]:
        reasons.append(f"too few iterations: {summary['iterations']} < {min_iterations}")
    if not checks["min_duration_met"]:
        reasons.append(
            f"timed loop too short: {summary['duration_s']:.3f} s < {min_duration_s:g} s"
        )
    if not checks["max_duration_not_hit"]:
        reasons.append("maximum duration hit before the minimums were met")
    if not checks["cov_within_limit"]:
        shown = "n/a" if robust is None else f"{robust:.3f}"
        reasons.append(f"latency too variable: robust CoV {shown} > {cov_max:g}")
    return {"result": "INVALID" if reasons else "VALID", "reasons": reasons, "checks": checks,
            "warnings": warnings}


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
