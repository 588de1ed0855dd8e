"""Issue 24's scenarios (runners/scenarios.py, runners/earlystop.py, host bench --scenario): the fixed
schedule does not drift, late queries are skipped as documented, a model slower than the period
misses every deadline, LoadGen's early-stopping estimate against scipy's binomial, and the host's
plumbing (slug, argv, refusals, the cell and its table)."""

from __future__ import annotations

import json
import random
import time

import numpy as np
import pytest
from nullbench import FAST, MODEL, runner
from scipy.stats import binom

from host.cli import app
from host.lab.benchconfig import BenchConfig
from runners import earlystop, scenarios
from runners.backends.null import NullBackend
from runners.cli import build_parser, policy_to_argv
from runners.core import Policy, RunConfig
from runners.core import run as run_runner


class FakeClock:
    """A ns clock that moves only when told: ``sleep_until`` jumps to the target plus an overshoot,
    a query advances it by its service time."""

    def __init__(self, start: int = 10**12):
        self.now = start
        self.targets: list = []

    def __call__(self) -> int:
        return self.now

    def sleep_until(self, target: int, overshoot: int = 0) -> None:
        self.targets.append(target)
        self.now = max(self.now, target) + overshoot


# -- the schedule -------------------------------------------------------------------------------


def test_the_schedule_does_not_drift_over_10000_periods():
    """Every sleep overshoots and every query takes time, yet the k-th deadline (the wake-up target
    of slot k) is start + k * period exactly, in integer ns, for all 10,000 slots."""
    period, slots = scenarios.period_ns(60.0), 10_000
    assert period == 16_666_667
    clock, rng = FakeClock(), random.Random(7)

    def query():
        clock.now += rng.randrange(1, period // 2)  # service well within the slot

    def sleep(target):
        clock.sleep_until(target, overshoot=rng.randrange(0, period // 4))

    t0 = time.perf_counter()
    rec = scenarios.scheduled_loop(query, period, slots, clock=clock, sleep_until=sleep)
    assert time.perf_counter() - t0 < 1.0
    start = rec.start
    assert len(clock.targets) == slots - 1  # slot 0 starts at once
    assert all(t == start + k * period for k, t in enumerate(clock.targets, 1))
    assert list(rec.slot) == list(range(slots)) and not rec.skipped and rec.late == 0
    assert rec.scheduled(slots - 1) == start + (slots - 1) * period
    block = scenarios.schedule_block([rec], "paced", 60.0, slots / 60.0, 1, 1)
    assert block["deadline_misses"] == 0 and block["slots"] == slots


def test_a_late_query_takes_the_newest_slot_at_once_and_the_older_ones_are_skipped():
    """Period 100 ns; query 1 takes 250 ns, so slots 2 and 3 have begun when it ends at 350: slot 3
    is issued at once (late), slot 2 is skipped; every count worked out by hand below."""
    clock = FakeClock(start=0)
    service = iter([10, 250, 5, 180, 10, 10, 10])

    def query():
        clock.now += next(service)

    rec = scenarios.scheduled_loop(query, 100, 8, clock=clock, sleep_until=clock.sleep_until)
    # slot 0: 0-10 on time; slot 1: 100-350 misses (deadline 200); now 350: newest slot 3, slot 2
    # skipped, slot 3 issued late at 350, done 355 (deadline 400) on time; slot 4: 400-580 misses
    # (deadline 500); now 580: newest slot 5, issued late, done 590 (deadline 600) on time;
    # slot 6: 600-610; slot 7: 700-710.
    assert list(rec.slot) == [0, 1, 3, 4, 5, 6, 7]
    assert list(rec.issued) == [0, 100, 350, 400, 580, 600, 700]
    assert list(rec.skipped) == [2]
    assert rec.late == 2
    assert list(rec.latencies()) == [10, 250, 55, 180, 90, 10, 10]
    block = scenarios.schedule_block([rec], "paced", 1e7, 8e-7, 1, 1)
    assert block["deadline_misses"] == 3  # slots 1, 2 (skipped), 4
    assert block["deadline_misses_completed_late"] == 2 and block["skipped"] == 1
    assert block["longest_miss_run"] == 2  # slots 1-2
    assert block["deadline_miss_pct"] == pytest.approx(37.5)
    assert block["queries_issued_late"] == 2
    assert block["rate_hz_achieved"] == pytest.approx(7 / 800e-9)
    assert block["rate_hz_on_time"] == pytest.approx(5 / 800e-9)


def test_the_slots_that_end_while_the_last_query_runs_are_skipped_to_the_end():
    clock = FakeClock(start=0)
    rec = scenarios.scheduled_loop(lambda: setattr(clock, "now", clock.now + 1000), 100, 5, clock=clock,
                                   sleep_until=clock.sleep_until)
    assert list(rec.slot) == [0] and list(rec.skipped) == [1, 2, 3, 4]
    block = scenarios.schedule_block([rec], "paced", 1e7, 5e-7, 1, 1)
    assert block["deadline_misses"] == 5 and block["longest_miss_run"] == 5


class SleepyBackend(NullBackend):
    """A model slower than the period: every inference sleeps ``SLEEP_S`` (the first, in prepare(), too)."""

    SLEEP_S = 0.0

    def infer(self):
        time.sleep(self.SLEEP_S)


def _paced(monkeypatch, sleep_s: float, rate_hz: float, duration_s: float, **policy) -> dict:
    SleepyBackend.SLEEP_S = sleep_s
    monkeypatch.setattr("runners.core.get_backend", lambda name, options: SleepyBackend())
    return run_runner(RunConfig(backend="null", policy=Policy(
        warmup_min_iterations=0, warmup_min_s=0.0, scenario="paced", rate_hz=rate_hz, duration_s=duration_s,
        **policy)))


def test_a_model_three_periods_slow_misses_every_deadline(monkeypatch):
    """Period 20 ms, every inference sleeps 60 ms: each query ends at least two slots late, so all
    20 slots of 0.4 s are deadline misses, each either completed late or skipped."""
    doc = _paced(monkeypatch, 0.060, 50.0, 0.4)
    sc = doc["scenario"]
    assert doc["status"] in ("ok", "invalid"), doc.get("error")
    assert sc["slots"] == 20
    assert sc["deadline_misses"] == 20 and sc["deadline_miss_pct"] == 100.0
    assert sc["longest_miss_run"] == 20
    assert sc["deadline_misses_completed_late"] == sc["queries"]
    assert sc["queries"] + sc["skipped"] == 20
    assert sc["queries_issued_late"] == sc["queries"] - 1  # all but slot 0's
    assert sc["rate_hz_on_time"] == 0.0
    assert sc["service_ms_p50"] >= 60.0
    assert doc["latency"]["level"] == "query" and doc["latency"]["iterations"] == sc["queries"]
    assert min(doc["sessions"][0]["latency"]["latency_ms_min"], 1e9) >= 60.0


def test_a_model_well_within_the_period_misses_none(monkeypatch):
    doc = _paced(monkeypatch, 0.0, 50.0, 0.4)
    sc = doc["scenario"]
    assert sc["slots"] == sc["queries"] == 20 and sc["skipped"] == 0
    assert sc["rate_hz_achieved"] == pytest.approx(50.0, rel=1e-6)
    # 20 queries are too few for LoadGen's p99: none is claimed, the number needed is said
    assert doc["latency"]["latency_ms_p99"] is None
    assert doc["latency"]["latency_ms_p99_early_stopping"]["queries_needed"] == 662
    assert doc["realtime"]["meets_budget"] is None


def test_multi_stream_issues_its_samples_per_query_as_calls_of_the_batch(monkeypatch):
    SleepyBackend.SLEEP_S = 0.0
    calls = []
    monkeypatch.setattr(SleepyBackend, "infer", lambda self: calls.append(1))
    monkeypatch.setattr("runners.core.get_backend", lambda name, options: SleepyBackend())
    doc = run_runner(RunConfig(backend="null", policy=Policy(
        warmup_min_iterations=0, warmup_min_s=0.0, scenario="multi-stream", rate_hz=100.0, duration_s=0.1,
        samples_per_query=4)))
    sc = doc["scenario"]
    assert sc["calls_per_query"] == 4 and sc["queries"] == 10
    assert len(calls) == 1 + 1 + 4 * 10  # prepare()'s first inference, one warm-up call, 4 per query
    assert doc["latency"]["samples_per_call"] == 4


# -- early stopping -----------------------------------------------------------------------------


def _reference_t(n: int, p: float, c: float = 0.99) -> int:
    """LoadGen's t written from its definition with scipy: the largest t >= 1 with
    binom.cdf(t, n, 1 - p) < 1 - c (0 if none)."""
    ts = [t for t in range(1, n) if binom.cdf(t, n, 1 - p) < 1 - c]
    return max(ts) if ts else 0


@pytest.mark.parametrize("p", [0.9, 0.99])
def test_the_queries_needed_match_scipy_and_loadgen(p):
    n = 2
    while binom.cdf(1, n, 1 - p) >= 0.01:
        n += 1
    assert earlystop.min_queries(p) == n
    assert earlystop.min_queries(p) == {0.9: 64, 0.99: 662}[p]  # as LoadGen's summary says


@pytest.mark.parametrize("n", [661, 662, 700, 1500, 7200])
def test_the_allowed_overlatency_count_matches_scipy(n):
    assert earlystop.overlatency_allowed(n, 0.99) == _reference_t(n, 0.99)
    assert earlystop.overlatency_allowed(n, 0.9) == _reference_t(n, 0.9)


@pytest.mark.parametrize("t,n,q", [(0, 10, 0.1), (3, 50, 0.01), (52, 7200, 0.01), (149, 18000, 0.01)])
def test_the_binomial_cdf_matches_scipy(t, n, q):
    assert earlystop.binomial_cdf(t, n, q) == pytest.approx(binom.cdf(t, n, q), rel=1e-9, abs=1e-15)


def test_the_estimate_is_the_t_th_largest_latency():
    rng = np.random.default_rng(3)
    lat = rng.integers(1_000_000, 9_000_000, size=7200)
    es = earlystop.estimate(lat.tolist(), 0.99)
    t = _reference_t(7200, 0.99)
    assert es["discarded"] == t - 1
    assert es["latency_ms"] == np.sort(lat)[7200 - t] / 1e6
    assert es["latency_ms"] >= np.percentile(lat, 99) / 1e6  # conservative
    short = earlystop.estimate(lat[:661].tolist(), 0.99)
    assert short["latency_ms"] is None and short["queries_needed"] == 662 and short["queries"] == 661


# -- host plumbing ------------------------------------------------------------------------------


def test_single_stream_keeps_its_names_and_command_line():
    base = BenchConfig(backend="null")
    assert base.slug == "null-b1-tall"
    assert "--scenario" not in policy_to_argv(base.policy)
    paced = BenchConfig(backend="null", policy=Policy(scenario="paced", rate_hz=60.0, duration_s=120.0))
    assert paced.slug == "null-b1-tall-paced60hz-120s"
    multi = BenchConfig(backend="null", policy=Policy(scenario="multi-stream", rate_hz=20.0, duration_s=60.0,
                                                      samples_per_query=8))
    assert multi.slug == "null-b1-tall-ms8x20hz-60s"


def test_the_runner_argv_reproduces_a_scheduled_policy():
    policy = Policy(scenario="multi-stream", rate_hz=29.97, duration_s=7.5, samples_per_query=3)
    args = build_parser().parse_args(["run", "--backend", "null", *policy_to_argv(policy)])
    assert (args.scenario, args.rate_hz, args.duration_s, args.samples_per_query) == \
        ("multi-stream", 29.97, 7.5, 3)


@pytest.mark.parametrize("settings, message", [
    (["--scenario", "offline", "--streams", "0"], "--streams"),
    (["--scenario", "server", "--qps", "0"], "--qps"),
    (["--scenario", "warp"], "one of"),
])
def test_bad_scenario_settings_are_refused(settings, message, tmp_path):
    res = runner.invoke(app, ["bench", str(MODEL), *FAST, "--results", str(tmp_path), *settings])
    assert res.exit_code == 2
    assert message in " ".join(res.output.split())


def test_host_bench_paced_stores_one_process_and_its_misses(tmp_path):
    res = runner.invoke(app, ["bench", str(MODEL), *FAST, "--results", str(tmp_path), "--campaign", "c",
                              "--no-reference", "--no-auto-calibrate", "--scenario", "paced",
                              "--rate-hz", "100", "--duration", "0.5"])
    assert res.exit_code in (0, 3), res.output
    cell = json.loads((tmp_path / "c" / "local" / "identity__null-b1-tall-paced100hz-0.5s.json").read_text())
    assert cell["latency"]["processes"] == 1 and len(cell["repetitions"]["processes"]) == 1
    assert "one long session" in cell["repetitions"]["stopped"]
    sc = cell["scenario"]
    assert sc["name"] == "paced" and sc["slots"] == 50 and sc["queries"] + sc["skipped"] == 50
    assert cell["configuration"]["policy"]["scenario"] == "paced"
    assert "miss %" in res.output
    # without --fps the frame budget is the schedule's period: 100 Hz = 10 ms
    assert cell["configuration"]["policy"]["fps"] == 100.0 and cell["realtime"]["budget_ms"] == 10.0


@pytest.mark.parametrize("p99, verdict", [(10.0, "meets"), (20.0, "uncertain"), (None, "not measured")])
def test_the_budget_reads_the_early_stopping_p99_as_an_upper_bound(p99, verdict):
    """LoadGen's estimate bounds the p99 from above at 99 % confidence: within the 60 fps budget it
    meets; above it, uncertain; absent, the number of queries needed is the reason."""
    from host.analysis.budgets import Budgets, judge

    es = {"percentile": 0.99, "confidence": 0.99, "queries": 7200 if p99 else 180, "queries_needed": 662,
          "latency_ms": p99}
    cell = {"status": "ok", "verdict": {"result": "VALID"},
            "latency": {"latency_ms_p99": p99, "latency_ms_p99_ci95": None, "latency_ms_p50": 1.0,
                        "latency_ms_p50_ci95": None, "latency_ms_p99_early_stopping": es}}
    check = judge(cell, Budgets(fps=60.0)).checks[0]
    assert check.verdict == verdict
    if p99 is None:
        assert "needs 662 queries" in check.reason and "had 180" in check.reason
