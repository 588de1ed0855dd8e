"""Issue 24's load scenarios (runners/load.py, runners/streams.py): the seeded Poisson schedule,
queueing behind busy streams worked out by hand, offline's K streams against one, the peak-QPS
search's sequence, and refusals of bad settings. Timing assertions use sleeping stand-ins and only
bounds that a busy 2-core machine keeps (a sleep never ends early; late wake-ups are allowed for)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from host.lab.benchconfig import BenchConfig
from runners import load
from runners.backends.null import DESCRIPTOR as NULL
from runners.backends.null import NullBackend
from runners.core import Policy, RunConfig
from runners.core import run as run_runner


def sleeper(seconds: float):
    return lambda: time.sleep(seconds)


# -- the Poisson schedule ------------------------------------------------------------------------


@pytest.mark.parametrize("qps, duration, seed", [(50.0, 10.0, 0), (1000.0, 3.0, 7), (3.0, 100.0, 42)])
def test_arrivals_are_the_cumulative_exponential_draws_of_the_seed(qps, duration, seed):
    got = load.poisson_arrivals_ns(qps, duration, seed)
    draws = np.random.default_rng(seed).exponential(1.0 / qps, size=len(got) + 1)
    times = np.cumsum(draws)
    assert times[len(got)] >= duration > times[len(got) - 1]  # every arrival before the end, no more
    assert np.all(np.abs(np.asarray(got) - np.round(times[:len(got)] * 1e9)) <= 1)
    assert 0.6 * qps * duration < len(got) < 1.4 * qps * duration
    assert load.poisson_arrivals_ns(qps, duration, seed) == got  # seeded: the same again


def test_a_short_schedule_is_extended_to_the_queries_needed():
    got = load.poisson_arrivals_ns(10.0, 1.0, 3, min_count=662)
    assert len(got) == 662
    times = np.cumsum(np.random.default_rng(3).exponential(0.1, size=662))
    assert np.all(np.abs(np.asarray(got) - np.round(times * 1e9)) <= 1)


# -- queueing ------------------------------------------------------------------------------------

MS = 1_000_000


@pytest.mark.parametrize("streams, expected_ms", [
    # one stream, service 20 ms, an arrival every 5 ms: query i starts when query i-1 ends,
    # at (i) * 20 ms, and ends at (i + 1) * 20 ms; its arrival was 5 i ms: latency 20 + 15 i
    (1, [20 + 15 * i for i in range(8)]),
    # two streams: 0 and 5 start at once (ends 20, 25); 10 waits for 20 (ends 40), 15 for 25 (45),
    # 20 for 40 (60), 25 for 45 (65), 30 for 60 (80), 35 for 65 (85)
    (2, [20, 20, 30, 30, 40, 40, 50, 50]),
])
def test_arrivals_faster_than_service_queue_and_their_latency_grows(streams, expected_ms):
    arrivals = [5 * MS * i for i in range(8)]
    rec = load.server_loop([sleeper(0.020)] * streams, arrivals, max_ns=10**10)
    got = np.asarray(rec.latencies()) / MS
    assert len(got) == 8 and set(rec.stream) == set(range(streams))
    expected = np.asarray(expected_ms, dtype=float)
    assert np.all(got >= expected - 0.5)  # a sleep never ends early (0.5 ms: clock reads)
    assert np.all(got <= expected * 1.15 + 15)  # late wake-ups on a busy machine, accumulated
    waits = np.asarray([i - s for i, s in zip(rec.issued, rec.scheduled)]) / MS
    assert waits[-1] >= expected_ms[-1] - 20 - 0.5  # the last one waited in the queue


def test_an_overloaded_run_drops_what_is_still_queued_at_its_limit():
    rec = load.server_loop([sleeper(0.030)], [0] * 10, max_ns=70 * MS)
    block = load.server_block(rec, 100.0, 1000.0, 0.1, 1, 0)
    assert 2 <= block["completed"] <= 4 and block["dropped"] == 10 - block["completed"]
    assert not block["met"] and "dropped" in block["reason"]


# -- offline -------------------------------------------------------------------------------------


def test_k_sleeping_streams_give_about_k_times_one_stream():
    one = load.offline_block(load.offline_loop([sleeper(0.010)], int(0.6e9)), 0.6, 1)
    four = load.offline_block(load.offline_loop([sleeper(0.010)] * 4, int(0.6e9)), 0.6, 1)
    assert 30 <= one["throughput_sps"] <= 101  # 10 ms each: at most 100/s, fewer when woken late
    ratio = four["throughput_sps"] / one["throughput_sps"]
    assert 3.0 <= ratio <= 4.4, ratio
    assert len(four["queries_per_stream"]) == 4 and min(four["queries_per_stream"]) >= 0.6 * 30
    assert four["samples"] == sum(four["queries_per_stream"])
    lo, hi = four["throughput_sps_ci95"]
    assert lo < hi and len(four["throughput_blocks_sps"]) == load.BLOCKS


def test_a_failing_stream_stops_the_others_and_raises():
    def bad():
        raise RuntimeError("stream broke")

    with pytest.raises(RuntimeError, match="stream broke"):
        load.offline_loop([sleeper(0.001), bad], int(5e9))


# -- the peak-QPS search -------------------------------------------------------------------------


def _stand_in(tried: list):
    """p99 = 10 ms + 1 ms per QPS; bound 47 ms: a target meets it when it is 37 QPS or less."""
    def run(qps: float) -> dict:
        tried.append(qps)
        return {"qps_target": qps, "met": 10.0 + qps <= 47.0}
    return run


@pytest.mark.parametrize("start, runs, sequence, best", [
    # 10 ok, x2: 20 ok, 40 fails; midpoints 30 ok, 35 ok, 37.5 fails, 36.25 ok; (37.5-36.25)/36.25 < 5 %
    (10.0, 12, [10, 20, 40, 30, 35, 37.5, 36.25], 36.25),
    # 100 fails, halved: 50 fails, 25 ok; 37.5 fails, 31.25, 34.375, 35.9375 ok; 1.5625/35.9 < 5 %
    (100.0, 12, [100, 50, 25, 37.5, 31.25, 34.375, 35.9375], 35.9375),
    (100.0, 4, [100, 50, 25, 37.5], 25),  # the runs are the bound
    (100.0, 2, [100, 50], None),
])
def test_the_search_widens_then_bisects_as_worked_out_by_hand(start, runs, sequence, best):
    tried: list = []
    out, index = load.find_peak(_stand_in(tried), start, runs)
    assert tried == sequence and len(out) == len(sequence)
    assert (out[index]["qps_target"] if index is not None else None) == best


# -- the runner and refusals ---------------------------------------------------------------------


class SleepyStream(NullBackend):
    SLEEP_S = 0.004

    def infer(self):
        time.sleep(self.SLEEP_S)


def _run(monkeypatch, backend_cls=SleepyStream, **policy) -> dict:
    def make(name, options):
        b = backend_cls()
        b.descriptor = NULL
        return b

    monkeypatch.setattr("runners.core.get_backend", make)
    monkeypatch.setattr("runners.streams.get_backend", make)
    return run_runner(RunConfig(backend="null", policy=Policy(warmup_min_iterations=0, warmup_min_s=0.0,
                                                              **policy)))


def test_the_runner_runs_offline_on_k_sessions(monkeypatch):
    doc = _run(monkeypatch, scenario="offline", streams=3, duration_s=0.4)
    sc = doc["scenario"]
    assert doc["status"] in ("ok", "invalid"), doc.get("error")
    assert sc["name"] == "offline" and sc["streams"] == 3 and all(sc["queries_per_stream"])
    assert doc["latency"]["level"] == "query" and doc["latency"]["iterations"] == sc["queries"]
    assert sc["throughput_sps"] <= 3 / 0.004 * 1.01


def test_the_runner_runs_a_server_search_and_states_each_run(monkeypatch):
    doc = _run(monkeypatch, scenario="server", streams=2, qps=200.0, latency_bound_ms=1000.0,
               duration_s=0.2, search_runs=2)
    sc = doc["scenario"]
    assert doc["status"] in ("ok", "invalid"), doc.get("error")
    assert [r["qps_target"] for r in sc["runs"]] == [200.0, 400.0]
    assert all(r["completed"] >= 662 for r in sc["runs"])  # extended to LoadGen's queries needed
    assert sc["qps_peak"] == 400.0 and sc["latency_ms_p99"] is not None


def test_several_streams_on_a_backend_that_declares_none_fail_with_the_reason(monkeypatch):
    import dataclasses

    one = dataclasses.replace(NULL, streams="")

    def make(name, options):
        b = SleepyStream()
        b.descriptor = one
        return b

    monkeypatch.setattr("runners.core.get_backend", make)
    doc = run_runner(RunConfig(backend="null", policy=Policy(warmup_min_iterations=0, warmup_min_s=0.0,
                                                             scenario="offline", streams=2, duration_s=0.1)))
    assert doc["status"] == "failed" and doc["error"]["type"] == "UnsupportedFeatureError"
    assert "--streams 1" in doc["error"]["message"]


@pytest.mark.parametrize("fields, message", [
    ({"streams": 0}, "--streams"), ({"qps": 0.0}, "--qps"), ({"latency_bound_ms": -1.0}, "--qps"),
    ({"search_runs": -1}, "--search-runs"), ({"sessions": 2}, "one session per process"),
])
def test_bad_load_settings_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        Policy(scenario="server", **fields).check()
    with pytest.raises(ValueError):
        load.find_peak(lambda q: {"met": True}, 0.0, 3)
    with pytest.raises(ValueError):
        load.poisson_arrivals_ns(0.0, 1.0, 0)


def test_their_configuration_names():
    off = BenchConfig(backend="null", policy=Policy(scenario="offline", streams=4, duration_s=60.0))
    assert off.slug == "null-b1-tall-offline4st-60s"
    srv = BenchConfig(backend="null", policy=Policy(scenario="server", streams=2, qps=50.0,
                                                    latency_bound_ms=100.0, duration_s=60.0, search_runs=6))
    assert srv.slug == "null-b1-tall-server2st-50qps-100ms-60s-find6"


def test_host_bench_offline_and_server_store_one_process_and_their_block(tmp_path):
    from nullbench import FAST, MODEL, runner

    from host.cli import app

    for settings, slug in (
            (["--scenario", "offline", "--streams", "2", "--duration", "0.3"], "offline2st-0.3s"),
            (["--scenario", "server", "--streams", "2", "--qps", "5000", "--duration", "0.1"],
             "server2st-5000qps-100ms-0.1s")):
        res = runner.invoke(app, ["bench", str(MODEL), *FAST, "--results", str(tmp_path), "--campaign", "c",
                                  "--no-reference", "--no-auto-calibrate", *settings])
        assert res.exit_code in (0, 3), res.output
        cell = json.loads((tmp_path / "c" / "local" / f"identity__null-b1-tall-{slug}.json").read_text())
        assert cell["latency"]["processes"] == 1 and cell["scenario"]["streams"] == 2
        assert cell["configuration"]["policy"]["streams"] == 2
        assert "load" in res.output
