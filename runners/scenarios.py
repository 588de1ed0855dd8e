"""Scenarios: how a session's timed loop issues its queries (MLPerf LoadGen's terms; standard
library + numpy, Python 3.8).

* ``single-stream``: the next query as soon as the previous one finishes (LoadGen SingleStream):
  :func:`runners.core.timed_loop`, the repetition protocol's short loops.
* ``paced``: one query every 1/N s (``--rate-hz N``) for ``--duration`` seconds, on a fixed schedule
  (:func:`scheduled_loop`): does the model hold N frames per second, and for how long.
* ``multi-stream``: the same fixed schedule, each query ``--samples-per-query`` samples (LoadGen's
  MultiStream with a fixed query interval, as its ``QueryScheduler<MultiStream>`` in loadgen.cc had).
* ``offline``: ``--streams K`` concurrent streams back to back for ``--duration`` s, samples/s with
  its interval (LoadGen Offline); ``server``: Poisson arrivals at ``--qps`` on K streams, queued when
  all are busy, LoadGen's early-stopping p99 against ``--latency-bound-ms``, and with
  ``--search-runs N`` the highest QPS that meets it (LoadGen Server, ``find_peak_performance``).
  Their loops are :mod:`runners.load`'s (``concurrent`` entries of :data:`SCENARIOS`).

The schedule (:func:`scheduled_loop`): slot k's query is due at ``start + k * period_ns`` (integer ns,
``period_ns = round(1e9 / rate_hz)``), never "sleep after finishing", so the schedule does not
drift. Its **deadline** is the end of its own slot, ``start + (k + 1) * period_ns``: a query that
completes after it is a deadline miss. **Late queries are not queued**: when a query ends after
later slots began, the newest due slot is issued at once (counted in ``queries_issued_late``) and
the older due slots are skipped, each a deadline miss (``skipped``) — as LoadGen's fixed-interval
MultiStream scheduler skips the intervals that passed (``scheduled_intervals``) and as a camera
pipeline that keeps only the newest frame does. A run therefore lasts ``--duration`` however slow
the model, and a query's latency (from its slot's start to its completion, LoadGen's
``scheduled_time`` convention) never includes waiting behind earlier queries beyond its own slot.
"""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass

import numpy as np

SINGLE_STREAM = "single-stream"


@dataclass(frozen=True)
class Scenario:
    """One scenario of the registry. ``scheduled``: a fixed query schedule (:func:`scheduled_loop`);
    ``processes``: runner processes per cell (None: the repetition protocol decides; 1: one
    process with one long session); ``concurrent``: K streams driven by :mod:`runners.load`."""

    name: str
    summary: str
    implemented: bool = True
    reason: str = ""
    scheduled: bool = False
    processes: int | None = None
    concurrent: bool = False


#: name -> :class:`Scenario`. A new scenario is one entry here (and its loop).
SCENARIOS = {s.name: s for s in (
    Scenario(SINGLE_STREAM, "next query when the previous finishes (LoadGen SingleStream)"),
    Scenario("paced", "one query every 1/--rate-hz s for --duration s, deadline misses", scheduled=True,
             processes=1),
    Scenario("multi-stream", "--samples-per-query samples per query every 1/--rate-hz s (LoadGen "
             "MultiStream)", scheduled=True, processes=1),
    Scenario("offline", "maximum samples/s of K concurrent streams issuing back to back (LoadGen Offline)",
             processes=1, concurrent=True),
    Scenario("server", "Poisson arrivals at a target QPS on K streams, p99 against a bound, the peak QPS "
             "that meets it by a bounded search (LoadGen Server)", processes=1, concurrent=True),
)}

LATE_POLICY = ("not queued: the newest due slot is issued at once, older due slots are skipped (each a "
               "deadline miss)")
DEADLINE = "the end of the query's own slot: start + (k + 1) * period_ns for slot k"
LATENCY = "from the query's scheduled start (its slot's start) to its completion"


def check(policy) -> None:
    """Raise ValueError when ``policy``'s scenario is unknown, not implemented, or its settings
    (``rate_hz``, ``duration_s``, ``samples_per_query``) are not positive."""
    scenario = SCENARIOS.get(policy.scenario)
    if scenario is None:
        raise ValueError(f"unknown scenario {policy.scenario!r}; one of {', '.join(SCENARIOS)}")
    if not scenario.implemented:
        raise ValueError(f"scenario {scenario.name}: {scenario.reason} (implemented: "
                         f"{', '.join(n for n, s in SCENARIOS.items() if s.implemented)})")
    if policy.rate_hz <= 0 or policy.duration_s <= 0 or policy.samples_per_query < 1:
        raise ValueError("--rate-hz and --duration must be > 0, --samples-per-query >= 1")
    if scenario.scheduled and slots(policy) < 1:
        raise ValueError(f"--duration {policy.duration_s:g} s holds no period of 1/{policy.rate_hz:g} s")
    if scenario.concurrent:
        _check_load(policy)


def _check_load(policy) -> None:
    """offline / server settings: ``streams`` >= 1, ``qps`` and ``latency_bound_ms`` > 0,
    ``search_runs`` >= 0, one session per process (the streams are the concurrency)."""
    if policy.streams < 1:
        raise ValueError(f"--streams must be >= 1, got {policy.streams}")
    if not policy.qps > 0 or not policy.latency_bound_ms > 0:
        raise ValueError(f"--qps and --latency-bound-ms must be > 0, got {policy.qps:g}, "
                         f"{policy.latency_bound_ms:g}")
    if policy.search_runs < 0:
        raise ValueError(f"--search-runs must be >= 0, got {policy.search_runs}")
    if policy.sessions != 1:
        raise ValueError(f"{policy.scenario} runs one session per process (its --streams are its "
                         f"concurrency), got --sessions {policy.sessions}")


def period_ns(rate_hz: float) -> int:
    """The schedule's period in whole ns, ``round(1e9 / rate_hz)`` (60 Hz: 16,666,667 ns, a rate
    of 59.9999988 Hz: the slots never drift from it, the rounding is 20 µs per hour)."""
    return max(int(round(1e9 / rate_hz)), 1)


def slots(policy) -> int:
    """Slots in the run: ``round(duration_s * rate_hz)``."""
    return int(round(policy.duration_s * policy.rate_hz))


def slug_part(policy) -> str:
    """The scenario's part of a configuration's name: ``""`` for single-stream (names unchanged),
    ``paced60hz-120s``, ``ms8x20hz-60s``, ``offline4st-60s``, ``server2st-50qps-100ms-60s`` (with
    ``-find6`` when ``search_runs`` is 6)."""
    name = getattr(policy, "scenario", SINGLE_STREAM)
    if name == SINGLE_STREAM:
        return ""
    rate, dur = f"{policy.rate_hz:g}hz", f"{policy.duration_s:g}s"
    if name == "multi-stream":
        return f"ms{policy.samples_per_query}x{rate}-{dur}"
    if name == "offline":
        return f"offline{policy.streams}st-{dur}"
    if name == "server":
        find = f"-find{policy.search_runs}" if policy.search_runs else ""
        return f"server{policy.streams}st-{policy.qps:g}qps-{policy.latency_bound_ms:g}ms-{dur}{find}"
    return f"{name}{rate}-{dur}"


def sleep_until_ns(target: int, clock=time.perf_counter_ns) -> None:
    """Sleep until ``clock() >= target`` (``time.sleep`` in slices; it may wake a little late)."""
    while True:
        left = target - clock()
        if left <= 0:
            return
        time.sleep(left / 1e9)


class Record:
    """What :func:`scheduled_loop` did: ``start`` (ns), ``period`` (ns), ``slots``; per issued
    query, in order, its ``slot``, ``issued`` and ``done`` times (array('q'), ns); ``skipped``
    (slot numbers never issued) and ``late`` (queries issued after their slot began because the
    previous query was still running)."""

    def __init__(self, start: int, period: int, n_slots: int):
        self.start, self.period, self.slots = start, period, n_slots
        self.slot, self.issued, self.done = array("q"), array("q"), array("q")
        self.skipped = array("q")
        self.late = 0

    def scheduled(self, k: int) -> int:
        """Slot ``k``'s start: ``start + k * period`` exactly."""
        return self.start + k * self.period

    def latencies(self) -> array:
        """Per issued query, completion minus its slot's start (ns)."""
        return array("q", (d - self.scheduled(k) for k, d in zip(self.slot, self.done)))


def scheduled_loop(query, period: int, n_slots: int, clock=time.perf_counter_ns, sleep_until=None) -> Record:
    """Issue ``query()`` once per slot on the fixed schedule ``start + k * period`` (ns), k < ``n_slots``;
    late queries per :data:`LATE_POLICY` (module docstring).

    Args:
        query: one query (one or several inferences); its return value is ignored.
        period: slot length, ns (int).
        n_slots: slots in the run (>= 1).
        clock: the ns clock (``perf_counter_ns``); injected by tests.
        sleep_until: ``f(target_ns)`` that returns at or after ``target_ns`` (default
            :func:`sleep_until_ns` on ``clock``).
    """
    sleep_until = sleep_until or (lambda target: sleep_until_ns(target, clock))
    start = now = clock()
    rec = Record(start, period, n_slots)
    k = 0
    while k < n_slots:
        due = start + k * period
        if now < due:
            sleep_until(due)
            now = clock()
        else:
            newest = (now - start) // period  # the newest slot already begun
            if newest >= n_slots:
                rec.skipped.extend(range(k, n_slots))
                break
            if newest > k:
                rec.skipped.extend(range(k, newest))
                k, due = newest, start + newest * period
            rec.late += now > due
        rec.slot.append(k)
        rec.issued.append(now)
        query()
        now = clock()
        rec.done.append(now)
        k += 1
    return rec


def _longest_run(missed) -> int:
    """The longest run of consecutive True in ``missed`` (slot order)."""
    best = run = 0
    for m in missed:
        run = run + 1 if m else 0
        best = max(best, run)
    return best


def schedule_block(records: list, scenario: str, rate_hz: float, duration_s: float, samples_per_query: int,
                   calls_per_query: int) -> dict:
    """The ``scenario`` block of one or more :class:`Record` (sessions): counts summed, the longest
    miss run the longest of any session, the rates over the scheduled time.

    Keys: ``name``, ``rate_hz``, ``period_ns``, ``duration_s``, ``samples_per_query``,
    ``calls_per_query``, ``sessions``, ``slots``, ``queries`` (issued and completed), ``skipped``,
    ``queries_issued_late``, ``deadline_misses`` (completed after their deadline + skipped),
    ``deadline_misses_completed_late``, ``deadline_miss_pct`` (of the slots), ``longest_miss_run``
    (slots), ``rate_hz_achieved`` (completed queries per second of schedule, ``slots * period``),
    ``rate_hz_on_time``, ``service_ms_p50`` / ``_p99`` (issue to completion), ``issue_delay_ms_p50`` /
    ``_max`` (issue minus slot start), and the definitions ``deadline``, ``late_policy``, ``latency``.
    """
    total = queries = skipped = late = missed_done = longest = 0
    service, delay, seconds = [], [], 0.0
    for rec in records:
        missed = [False] * rec.slots
        for k in rec.skipped:
            missed[k] = True
        for k, issued, done in zip(rec.slot, rec.issued, rec.done):
            if done > rec.scheduled(k + 1):
                missed[k] = True
                missed_done += 1
            service.append(done - issued)
            delay.append(issued - rec.scheduled(k))
        total += rec.slots
        queries += len(rec.slot)
        skipped += len(rec.skipped)
        late += rec.late
        longest = max(longest, _longest_run(missed))
        seconds += rec.slots * rec.period / 1e9
    misses = missed_done + skipped
    on_time = queries - missed_done
    svc = np.asarray(service, dtype=np.float64) / 1e6 if service else None
    dly = np.asarray(delay, dtype=np.float64) / 1e6 if delay else None
    return {
        "name": scenario, "rate_hz": rate_hz, "period_ns": records[0].period, "duration_s": duration_s,
        "samples_per_query": samples_per_query, "calls_per_query": calls_per_query,
        "sessions": len(records), "slots": total, "queries": queries, "skipped": skipped,
        "queries_issued_late": late, "deadline_misses": misses, "deadline_misses_completed_late": missed_done,
        "deadline_miss_pct": 100.0 * misses / total if total else None, "longest_miss_run": longest,
        "rate_hz_achieved": queries / seconds if seconds else None,
        "rate_hz_on_time": on_time / seconds if seconds else None,
        "service_ms_p50": float(np.percentile(svc, 50)) if svc is not None else None,
        "service_ms_p99": float(np.percentile(svc, 99)) if svc is not None else None,
        "issue_delay_ms_p50": float(np.percentile(dly, 50)) if dly is not None else None,
        "issue_delay_ms_max": float(dly.max()) if dly is not None else None,
        "deadline": DEADLINE, "late_policy": LATE_POLICY, "latency": LATENCY,
    }
