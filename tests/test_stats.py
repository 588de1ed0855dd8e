"""Statistics, verdict rules and the real-time verdict on known samples."""

import math

import numpy as np
import pytest

from runners import stats


def test_summary_on_known_samples():
    lat_ns = [1_000_000, 2_000_000, 3_000_000, 4_000_000, 5_000_000]  # 1..5 ms
    s = stats.summarize(lat_ns, loop_duration_ns=20_000_000)
    assert s["iterations"] == 5
    assert s["latency_ms_mean"] == pytest.approx(3.0)
    assert s["latency_ms_std"] == pytest.approx(math.sqrt(2.5))  # sample std, ddof=1
    assert s["latency_ms_min"] == 1.0 and s["latency_ms_max"] == 5.0
    assert s["latency_ms_p50"] == pytest.approx(3.0)
    assert s["latency_ms_p90"] == pytest.approx(4.6)  # linear interpolation
    assert s["latency_ms_p99"] == pytest.approx(4.96)
    assert s["cov"] == pytest.approx(math.sqrt(2.5) / 3.0)
    assert s["cov_robust"] == pytest.approx(2.0 / (1.349 * 3.0))  # IQR of 1..5 is 4 - 2
    assert s["throughput_ips"] == pytest.approx(5 / 0.02)  # over the loop wall time
    assert s["duration_s"] == pytest.approx(0.02)
    assert s["latency_ms_p50_ci95"] is None  # n < 6: no 95 % order-statistic interval


def test_throughput_defaults_to_sum_of_latencies():
    s = stats.summarize([2_000_000] * 10)
    assert s["throughput_ips"] == pytest.approx(500.0)
    assert s["cov"] == 0.0


def test_empty_samples_raise():
    with pytest.raises(ValueError):
        stats.summarize([])


@pytest.mark.parametrize("n", [6, 7, 10, 25, 100, 101, 999, 2000])
def test_median_ci_ranks_match_exact_binomial(n):
    binom = pytest.importorskip("scipy.stats").binom
    lo, hi = stats._median_ci_ranks(n)
    j = lo + 1  # 1-based lower rank; interval [x_(j), x_(n-j+1)]
    assert hi == n - j
    coverage = 1 - 2 * binom.cdf(j - 1, n, 0.5)
    assert coverage >= 0.95
    # The next narrower interval would not reach 95 %.
    assert 1 - 2 * binom.cdf(j, n, 0.5) < 0.95


def test_median_ci_normal_approximation_for_large_n():
    binom = pytest.importorskip("scipy.stats").binom
    n = 100_000
    lo, hi = stats._median_ci_ranks(n)
    coverage = binom.cdf(hi, n, 0.5) - binom.cdf(lo, n, 0.5)
    assert coverage == pytest.approx(0.95, abs=0.005)
    assert lo < n // 2 < hi


def test_median_ci_brackets_the_median_and_covers_it_in_simulation():
    rng = np.random.default_rng(1)
    true_median = math.log(2)  # exponential(1)
    hits = 0
    trials = 400
    for _ in range(trials):
        sample = rng.exponential(1.0, size=60) * 1e6  # ns
        ci = stats.summarize(sample)["latency_ms_p50_ci95"]
        assert ci[0] <= np.median(sample) / 1e6 <= ci[1]
        hits += ci[0] <= true_median <= ci[1]
    assert hits / trials >= 0.92  # nominal >= 0.95, allow simulation noise


def test_robust_cov_ignores_rare_stalls_but_not_a_shifted_bulk():
    rng = np.random.default_rng(3)
    steady = rng.normal(1e5, 1e3, size=10_000)  # 0.1 ms +- 1 %
    stalls = steady.copy()
    stalls[::1000] = 2e7  # ten 20 ms scheduler stalls
    s = stats.summarize(stalls)
    assert s["cov"] > 1.0  # the classic CoV explodes
    assert s["cov_robust"] == pytest.approx(0.01, rel=0.1)
    v = stats.verdict(s, min_iterations=1, min_duration_s=0, max_duration_hit=False, cov_max=0.1)
    assert v["result"] == "VALID" and "classic CoV" in v["warnings"][0]
    bimodal = np.concatenate([steady[:7000], steady[7000:] * 2])  # 30 % ran 2x slower
    s = stats.summarize(bimodal)
    assert s["cov_robust"] > 0.3
    v = stats.verdict(s, min_iterations=1, min_duration_s=0, max_duration_hit=False, cov_max=0.1)
    assert v["result"] == "INVALID" and "robust CoV" in v["reasons"][0]


def _summary(n=200, duration_s=6.0, cov=0.05):
    return {"iterations": n, "duration_s": duration_s, "cov": cov, "cov_robust": cov}


def test_verdict_valid_when_all_rules_hold():
    v = stats.verdict(_summary(), min_iterations=100, min_duration_s=5, max_duration_hit=False,
                      cov_max=0.5)
    assert v["result"] == "VALID" and v["reasons"] == [] and v["warnings"] == []
    assert all(v["checks"].values())


@pytest.mark.parametrize(
    "summary, hit, check, words",
    [
        (_summary(n=50), False, "min_iterations_met", "too few iterations"),
        (_summary(duration_s=1.0), False, "min_duration_met", "too short"),
        (_summary(), True, "max_duration_not_hit", "maximum duration"),
        (_summary(cov=0.9), False, "cov_within_limit", "robust CoV 0.900 > 0.5"),
    ],
)
def test_each_rule_makes_it_invalid(summary, hit, check, words):
    v = stats.verdict(summary, min_iterations=100, min_duration_s=5, max_duration_hit=hit,
                      cov_max=0.5)
    assert v["result"] == "INVALID"
    assert v["checks"][check] is False
    assert sum(not ok for ok in v["checks"].values()) == 1
    assert any(words in r for r in v["reasons"])


def test_realtime_verdict_uses_p99_against_budget():
    s = stats.summarize([10_000_000] * 98 + [20_000_000] * 2)
    rt = stats.realtime_verdict(s, fps=60)
    assert rt["budget_ms"] == pytest.approx(1000 / 60)
    assert rt["statistic"] == "p99"
    assert rt["meets_budget"] is False  # the p99 (20 ms) misses 16.67 ms
    assert stats.realtime_verdict(s, fps=30)["meets_budget"] is True
    assert stats.realtime_verdict(s, fps=60, statistic="p50")["meets_budget"] is True
    with pytest.raises(ValueError):
        stats.realtime_verdict(s, fps=0)
    with pytest.raises(ValueError):
        stats.realtime_verdict(s, fps=60, statistic="p42")
