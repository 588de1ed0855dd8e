"""MLPerf LoadGen's early-stopping estimate of a latency percentile (standard library only).

A percentile read off n samples is a claim about the next queries; with few samples a p99 is
mostly noise. LoadGen (mlcommons/inference ``loadgen/early_stopping.cc`` and
``PerformanceSummary::EarlyStopping`` in ``loadgen/results.cc``; the rule is described in
LoadGen's README, "Early stopping") reports instead a conservative order statistic: with each query
over the true p-th percentile with probability ``1 - p`` (independent queries), the number of
queries above it is Binomial(n, 1 - p). LoadGen takes the largest ``t >= 1`` for which ``t`` or
fewer overlatency queries in ``n`` would happen with probability below ``1 - confidence``
(``confidence`` 0.99, tolerance 0), and reports the ``t``-th largest latency (it "discards" the
``t - 1`` highest): the true percentile lies at or below it with that confidence. With fewer than
:func:`min_queries` samples not even ``t = 1`` qualifies: no estimate, and the number needed is
said (662 for a p99, 64 for a p90 at 99 % confidence).

This module computes the binomial tail exactly in log space (``math.lgamma``) rather than with
LoadGen's hypergeometric series; the criterion is the same. Tested against ``scipy.stats.binom``
in tests/test_scenarios.py.
"""

from __future__ import annotations

import math

#: LoadGen's confidence for its early-stopping estimate (``confidence = 0.99`` in results.cc)
CONFIDENCE = 0.99
METHOD = ("MLPerf LoadGen early stopping (loadgen/early_stopping.cc, results.cc): the t-th largest "
          "latency for the largest t >= 1 with P(Binomial(n, 1 - p) <= t) < 1 - confidence")


def binomial_cdf(t: int, n: int, q: float) -> float:
    """P(X <= t) for X ~ Binomial(n, q): the sum of the pmf terms, each from ``math.lgamma``.

    Args:
        t: count, any int (below 0: 0.0; n or more: 1.0).
        n: trials, >= 0.
        q: success probability per trial, 0 < q < 1.
    """
    if t < 0:
        return 0.0
    if t >= n:
        return 1.0
    log_q, log_1q = math.log(q), math.log1p(-q)
    head = math.lgamma(n + 1)
    total = 0.0
    for k in range(t + 1):
        total += math.exp(head - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_q + (n - k) * log_1q)
    return min(total, 1.0)


def _check(percentile: float, confidence: float) -> None:
    if not 0 < percentile < 1 or not 0 < confidence < 1:
        raise ValueError(f"percentile and confidence must lie in (0, 1), got {percentile!r}, {confidence!r}")


def min_queries(percentile: float, confidence: float = CONFIDENCE) -> int:
    """The fewest queries for which the early-stopping estimate exists: the smallest n with
    P(Binomial(n, 1 - percentile) <= 1) < 1 - confidence (LoadGen's ``h_min + 1``).

    Raises:
        ValueError: ``percentile`` or ``confidence`` outside (0, 1).
    """
    _check(percentile, confidence)
    q = 1.0 - percentile
    hi = 2
    while binomial_cdf(1, hi, q) >= 1 - confidence:
        hi *= 2
    lo = hi // 2  # binomial_cdf(1, lo) >= 1 - c (or lo < 2), binomial_cdf(1, hi) < 1 - c
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if binomial_cdf(1, mid, q) < 1 - confidence:
            hi = mid
        else:
            lo = mid
    return hi


def overlatency_allowed(n: int, percentile: float, confidence: float = CONFIDENCE) -> int:
    """LoadGen's ``t``: the largest t >= 1 with P(Binomial(n, 1 - percentile) <= t) < 1 - confidence;
    0 when even t = 1 does not qualify (n < :func:`min_queries`). Raises ValueError as there."""
    _check(percentile, confidence)
    q = 1.0 - percentile
    if n < 2 or binomial_cdf(1, n, q) >= 1 - confidence:
        return 0
    log_q, log_1q, head = math.log(q), math.log1p(-q), math.lgamma(n + 1)
    total, t = 0.0, -1
    for k in range(n + 1):
        total += math.exp(head - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_q + (n - k) * log_1q)
        if total >= 1 - confidence:
            return max(t, 1)
        t = k
    return max(t, 1)  # pragma: no cover (the cdf reaches 1 at k = n)


def estimate(latencies_ns, percentile: float = 0.99, confidence: float = CONFIDENCE) -> dict:
    """The early-stopping estimate of the ``percentile`` of ``latencies_ns`` (one value per query).

    Returns:
        ``{"percentile", "confidence", "queries" (n), "queries_needed" (:func:`min_queries`),
        "discarded" (t - 1 highest left out; None without an estimate), "latency_ms" (the t-th
        largest latency in ms, None when n < queries_needed), "method"}``.

    Raises:
        ValueError: ``percentile`` or ``confidence`` outside (0, 1).
    """
    values = sorted(int(v) for v in latencies_ns)
    n = len(values)
    need = min_queries(percentile, confidence)
    t = overlatency_allowed(n, percentile, confidence) if n >= need else 0
    return {"percentile": percentile, "confidence": confidence, "queries": n, "queries_needed": need,
            "discarded": t - 1 if t else None, "latency_ms": values[n - t] / 1e6 if t else None,
            "method": METHOD}
