"""Statistics, verdict rules and the real-time verdict on known samples."""

import math
import re

import numpy as np
import pytest

from runners import stats
from runners.core import Policy


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
    assert s["throughput_cps"] == pytest.approx(5 / 0.02)  # over the loop wall time
    assert s["throughput_sps"] == pytest.approx(5 / 0.02)  # one sample per call
    assert s["duration_s"] == pytest.approx(0.02)
    assert s["latency_ms_p50_ci95_loop"] is None  # n < 6: no 95 % order-statistic interval


def test_throughput_defaults_to_sum_of_latencies():
    s = stats.summarize([2_000_000] * 10)
    assert s["throughput_cps"] == pytest.approx(500.0)
    assert s["cov"] == 0.0


def test_samples_per_second_counts_the_batch():
    s = stats.summarize([2_000_000] * 10, samples_per_call=8)
    assert s["throughput_cps"] == pytest.approx(500.0)  # calls
    assert s["throughput_sps"] == pytest.approx(4000.0)  # 8 samples per call


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
        ci = stats.summarize(sample)["latency_ms_p50_ci95_loop"]
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
    bimodal = np.concatenate([steady[:7000], steady[7000:] * 2])  # 30 % ran 2x slower
    assert stats.summarize(bimodal)["cov_robust"] > 0.3


POLICY = Policy(min_iterations=100, min_duration_s=0.5, max_duration_s=5.0)


def _block(lat_ns, index=0, mhz=(2000.0, 2000.0), others=0.0, duration_s=1.0, hit=False):
    """A session block as the runner writes it, from constructed latencies."""
    s = stats.summarize(lat_ns, loop_duration_ns=int(duration_s * 1e9))
    s["max_duration_hit"] = hit
    env = {"others_cpu_share": others, "cpu_mhz_before": mhz[0], "cpu_mhz_after": mhz[1],
           "cpu_mhz_change_rel": mhz[1] / mhz[0] - 1}
    return {"index": index, "latency": s, "checks": {"drift": stats.drift(lat_ns),
                                                     "second_mode": stats.second_mode(lat_ns),
                                                     "environment": env}}


def _steady(n=2000, seed=0):
    return np.random.default_rng(seed).normal(1e5, 2e3, size=n)


def test_a_steady_loop_passes_every_check():
    v = stats.process_verdict([_block(_steady())], POLICY)
    assert v["result"] == "VALID" and v["reasons"] == [] and all(v["checks"].values())


def test_a_linear_30_percent_drift_fails_although_the_robust_cov_is_under_the_old_limit():
    lat = _steady() * np.linspace(1.0, 1.3, 2000)  # the example: robust CoV 0.096
    assert stats.summarize(lat)["cov_robust"] < 0.10
    d = stats.drift(lat)
    assert d["drift_rel"] == pytest.approx(0.30 * 0.9 / 1.15, rel=0.15)  # first -> last block centre
    v = stats.process_verdict([_block(lat)], POLICY)
    assert v["result"] == "INVALID" and v["checks"]["no_drift"] is False
    assert "drifted +" in v["reasons"][0] and "--warmup-s" in v["reasons"][0]


def test_a_drift_at_the_timer_resolution_is_not_called_drift():
    lat = np.repeat([80, 90], 1000)  # the null backend: 80 ns, then 90 ns (one clock tick)
    assert stats.drift(lat)["drift_rel"] > 0.10  # +12 % ...
    assert stats.process_verdict([_block(lat)], POLICY)["checks"]["no_drift"] is True  # ... but 10 ns


def test_block_noise_is_not_called_drift():
    lat = _steady()
    lat[::7] *= 1.4  # spiky but stationary
    assert stats.process_verdict([_block(lat)], POLICY)["checks"]["no_drift"] is True


def test_a_quarter_of_iterations_at_twice_the_latency_is_a_second_mode_a_warning_when_stable():
    lat = _steady()
    lat[np.random.default_rng(2).random(2000) < 0.25] *= 2
    v = stats.process_verdict([_block(lat)], POLICY)  # one session: nothing to compare it with
    assert v["result"] == "VALID" and v["checks"]["modes_stable_across_sessions"] is True
    (warning,) = [w for w in v["warnings"] if w.startswith("second mode")]
    assert re.search(r"second mode: 2[4-6]% of iterations near 0.2 ms \(median 0.1", warning)
    calm = _steady(seed=3)
    calm[np.random.default_rng(5).random(2000) < 0.02] *= 2
    v = stats.process_verdict([_block(calm), _block(lat, index=1)], POLICY)  # 2 % then 25 %
    assert v["result"] == "INVALID" and v["checks"]["modes_stable_across_sessions"] is False
    reason = v["reasons_by_check"]["modes_stable_across_sessions"]
    assert re.match(r"second mode varies between sessions: [23]%–2[4-6]% of iterations near 0.2 ms", reason)


def test_latencies_at_the_timer_resolution_are_not_a_second_mode():
    lat = np.array([90, 80, 100, 150, 60] * 40)  # the null backend: ~0.1 us, quantised
    assert stats.second_mode(lat)["outside_share"] == 0.0
    few = [4000] * 17 + [9000] * 3  # 20 iterations: too few to judge a share
    assert stats.second_mode(few)["outside_share"] is None


def test_rare_stalls_are_not_a_second_mode():
    lat = _steady()
    lat[::100] = 2e7
    v = stats.process_verdict([_block(lat)], POLICY)
    assert v["checks"]["modes_stable_across_sessions"] is True
    assert v["result"] == "VALID" and any("classic CoV" in w for w in v["warnings"])


def test_a_clock_drop_during_the_loop_is_throttling():
    v = stats.process_verdict([_block(_steady(), mhz=(2400.0, 1800.0))], POLICY)
    assert v["checks"]["no_throttle"] is False and "-25%" in v["reasons"][0]
    assert stats.process_verdict([_block(_steady(), mhz=(2400.0, 2350.0))], POLICY)["result"] == "VALID"


def test_load_from_other_processes_warns_only():
    v = stats.process_verdict([_block(_steady(), others=0.6)], POLICY)
    assert v["result"] == "VALID" and "other processes used 60%" in v["warnings"][0]


def test_a_loop_that_hit_its_cap_is_invalid_with_the_fix():
    v = stats.process_verdict([_block(_steady(n=50), hit=True)], POLICY)
    assert v["result"] == "INVALID" and "--max-s" in v["reasons"][0]


def test_every_session_is_checked():
    bad = _steady(seed=4) * np.linspace(1.0, 1.5, 2000)
    v = stats.process_verdict([_block(_steady()), _block(bad, index=1)], POLICY)
    assert v["checks"]["no_drift"] is False and "session 1" in v["reasons"][0]


def _nested(rng, r, s, between=0.10, within=0.05):
    """R processes x S sessions of medians around a true median of 1.0 (log-normal effects)."""
    return [list(p * np.exp(rng.normal(0, within, s))) for p in np.exp(rng.normal(0, between, r))]


@pytest.mark.parametrize("r, s", [(6, 2), (10, 1)])
def test_hierarchical_bootstrap_covers_at_the_nominal_rate(r, s):
    """Known answer: between-process sd 10 %, between-session 5 %, population median 1."""
    rng = np.random.default_rng(11)
    trials = 300
    ci_hits = rerun_hits = 0
    for k in range(trials):
        rep = stats.repetition_interval(_nested(rng, r, s), seed=k, resamples=1000)
        ci_hits += rep["ci95"][0] <= 1.0 <= rep["ci95"][1]
        again = np.median(_nested(rng, r, s))  # an independent re-run's estimate
        rerun_hits += rep["rerun95"][0] <= again <= rep["rerun95"][1]
    assert 0.89 <= ci_hits / trials <= 0.99
    assert 0.89 <= rerun_hits / trials <= 0.99


def test_the_interval_widens_with_the_between_process_spread():
    rng = np.random.default_rng(5)
    tight = stats.repetition_interval(_nested(rng, 8, 2, between=0.01, within=0.01))
    wide = stats.repetition_interval(_nested(rng, 8, 2, between=0.20, within=0.01))
    assert tight["ci95_rel"] < 0.03 < 0.06 < wide["ci95_rel"]
    assert wide["rerun95_rel"] > wide["ci95_rel"]  # a re-run varies on both sides


def test_too_few_processes_give_no_interval():
    rep = stats.repetition_interval([[1.0], [1.1], [0.9], [1.0]])
    assert rep["estimate"] == pytest.approx(1.0) and rep["ci95"] is None and rep["rerun95"] is None
    with pytest.raises(ValueError):
        stats.repetition_interval([[1.0], []])


def test_bootstrap_is_reproducible_and_paired_draws_share_rounds():
    groups = [[1.0], [2.0], [3.0], [4.0], [5.0]]
    a = stats.bootstrap_replicates(groups, resamples=50, seed=3)
    assert np.array_equal(a, stats.bootstrap_replicates(groups, resamples=50, seed=3))
    pick = np.random.default_rng(0).integers(0, 5, size=(50, 5))
    doubled = stats.bootstrap_replicates([[2 * g[0]] for g in groups], rounds=pick)
    assert np.allclose(doubled, 2 * stats.bootstrap_replicates(groups, rounds=pick))  # same draws


def test_pool_sessions_takes_the_median_of_session_medians_and_no_process_interval():
    blocks = [_block(np.full(200, 1e5) * f, index=i) for i, f in enumerate((1.0, 1.2, 1.1))]
    for b in blocks:
        b["latency"].update(loop_start_monotonic_ns=1, loop_end_monotonic_ns=2)
    arrays = [np.full(200, 1e5) * f for f in (1.0, 1.2, 1.1)]
    out = stats.pool_sessions(blocks, arrays, level="host_call")
    assert out["latency_ms_p50"] == pytest.approx(0.11) and out["sessions"] == 3
    assert out["iterations"] == 600 and out["latency_ms_p50_ci95"] is None


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
