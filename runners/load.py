"""The load scenarios ``offline`` and ``server``: K concurrent streams (standard library + numpy,
Python 3.8). MLPerf LoadGen's terms; its scenarios are the reference (``bench/loadgen_compare.py``).

**Streams.** A stream is one session of the backend driven by one thread: ``queries[i]()`` runs one
query on stream i. How a runtime makes K independent streams is its descriptor's ``streams``
(:data:`STREAM_METHODS`; :mod:`runners.streams` opens them); this module only drives them.

* ``offline`` (:func:`offline_loop`): every stream issues queries back to back from a common start
  for ``duration_ns``; the last query of each stream started before the end completes. Throughput =
  samples completed / (last completion − start) (LoadGen Offline's samples per second: the samples
  over the time to complete them all); its interval is over :data:`BLOCKS` equal time blocks of the
  run (:func:`offline_block`). Per-query latency: issue to completion.
* ``server`` (:func:`server_loop`): Poisson arrivals at ``qps`` (:func:`poisson_arrivals_ns`:
  exponential inter-arrival times from ``numpy.random.default_rng(seed)``, cumulated), each issued at
  its absolute time ``start + arrival`` (never "sleep after finishing", like paced), for ``duration``
  and at least the queries LoadGen's early-stopping p99 needs (662); an arrival that
  finds every stream busy waits in a FIFO queue for the first free stream. Latency = completion −
  scheduled arrival, so queueing counts (LoadGen Server's ``scheduled_time`` convention). A run
  meets the bound when LoadGen's early-stopping p99 (:mod:`runners.earlystop`) is at most
  ``latency_bound_ms`` and no query was dropped (queries still queued at :data:`DRAIN_FACTOR` ×
  the schedule's length are dropped: an overloaded run does not run forever).
* :func:`find_peak`: the highest QPS that meets the bound, by LoadGen's ``find_peak_performance``
  mode (mlcommons/inference ``loadgen/loadgen.cc``: ``FindBoundaries`` widens the upper bound
  ×2 from a passing target until a run fails, ``FindPeakPerformanceBinarySearch`` bisects between
  the passing and the failing target, ``test_settings_internal.h``: ``WidenPerformanceField``,
  ``MidOfBoundaries``, ``IsFinished``), bounded to ``max_runs`` runs. One difference: LoadGen
  refuses a failing starting target; here the bracket is then halved down until a run passes.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from array import array

import numpy as np

from runners import earlystop

#: descriptor ``streams`` value -> what it does (:mod:`runners.streams`); "" (none declared): one stream
STREAM_METHODS = {
    "sessions": "one session of the backend per stream, each driven by its own thread (the runtime "
                "releases Python's GIL while it runs, as ONNX Runtime's run does)",
}
#: equal time blocks over which offline's throughput interval is computed
BLOCKS = 10
#: Student's t 0.975 quantile at BLOCKS - 1 = 9 degrees of freedom (t tables)
T975_9 = 2.2622
THROUGHPUT_METHOD = (f"samples completed / (last completion - start); interval: Student's t 95 % "
                     f"over the sample rates of {BLOCKS} equal time blocks of the run (block rates "
                     f"taken as independent)")
SERVER_LATENCY = "from the query's scheduled (Poisson) arrival to its completion: queueing counts"
#: a server run stops starting queued queries at DRAIN_FACTOR x its schedule (the rest are dropped)
DRAIN_FACTOR = 2.0
SEARCH_METHOD = ("LoadGen find_peak_performance: widen x2 from a passing target until a run fails, "
                 "then bisect between the highest passing and the lowest failing target "
                 "(loadgen.cc FindBoundaries, FindPeakPerformanceBinarySearch); a failing start is "
                 "halved until a run passes")


class LoadRecord:
    """What :func:`offline_loop` / :func:`server_loop` did: ``start`` (ns), ``streams``; per query, in
    arrival (server) or completion-order-per-stream (offline) order: ``scheduled`` (ns; offline: the
    issue time), ``issued``, ``done`` (ns, -1 when dropped), ``stream`` (which stream ran it, -1
    when dropped)."""

    def __init__(self, start: int, streams: int):
        self.start, self.streams = start, streams
        self.scheduled, self.issued, self.done = array("q"), array("q"), array("q")
        self.stream = array("q")

    def completed(self) -> list:
        """Indices of the queries that ran."""
        return [i for i, d in enumerate(self.done) if d >= 0]

    def latencies(self) -> array:
        """Per completed query, completion minus its scheduled time (ns)."""
        return array("q", (self.done[i] - self.scheduled[i] for i in self.completed()))

    def end(self) -> int:
        """The last completion (``start`` when none)."""
        return max([d for d in self.done if d >= 0] or [self.start])


def _run_threads(targets: list) -> None:
    """Start one thread per callable, join them all, and re-raise the first exception one raised."""
    errors: list = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # re-raised in the caller's thread below
                errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def offline_loop(queries: list, duration_ns: int, clock=time.perf_counter_ns) -> LoadRecord:
    """Offline: each ``queries[i]()`` back to back in its own thread from one common start until
    ``duration_ns`` has passed (a query started before the end completes).

    Args:
        queries: K >= 1 callables, one per stream; each runs one query on its own session.
        duration_ns: issuing window, ns (> 0).
        clock: the ns clock, shared by every thread.

    Raises:
        whatever a query raised (the other streams stop at their next query).
    """
    go, stop = threading.Event(), threading.Event()
    box: list = []
    per = [(array("q"), array("q")) for _ in queries]

    def stream(i: int):
        def run():
            issued, done = per[i]
            query = queries[i]
            go.wait()
            end = box[0] + duration_ns
            try:
                while not stop.is_set():
                    t0 = clock()
                    if t0 >= end:
                        return
                    query()
                    issued.append(t0)
                    done.append(clock())
            except BaseException:
                stop.set()
                raise
        return run

    def starter():
        box.append(clock())
        go.set()

    _run_threads([stream(i) for i in range(len(queries))] + [starter])
    rec = LoadRecord(box[0], len(queries))
    for i, (issued, done) in enumerate(per):
        rec.scheduled.extend(issued)
        rec.issued.extend(issued)
        rec.done.extend(done)
        rec.stream.extend([i] * len(done))
    return rec


def poisson_arrivals_ns(qps: float, duration_s: float, seed: int, min_count: int = 0) -> list:
    """Arrival times (ns after the start, ints) of a Poisson process at ``qps``: the cumulative sums
    of exponential inter-arrival times of mean ``1 / qps`` s drawn by
    ``numpy.random.default_rng(seed).exponential`` (in chunks; the draws are the generator's sequence
    whatever the chunking), each rounded to whole ns; every arrival before ``duration_s``, and more
    until there are ``min_count`` (LoadGen's rule: both ``min_duration`` and ``min_query_count``).

    Raises:
        ValueError: ``qps`` or ``duration_s`` not > 0.
    """
    if not qps > 0 or not duration_s > 0:
        raise ValueError(f"qps and duration must be > 0, got {qps!r}, {duration_s!r}")
    rng = np.random.default_rng(seed)
    chunk = int(qps * duration_s * 1.2) + min_count + 64
    out: list = []
    t = 0.0
    while True:
        times = t + np.cumsum(rng.exponential(1.0 / qps, size=chunk))
        for v in times:
            if v >= duration_s and len(out) >= min_count:
                return out
            out.append(int(round(float(v) * 1e9)))
        t = float(times[-1])


def server_loop(queries: list, arrivals_ns: list, max_ns: int, clock=time.perf_counter_ns,
                sleep_until=None) -> LoadRecord:
    """Server: arrival j is put in a FIFO queue at ``start + arrivals_ns[j]`` (absolute schedule);
    K worker threads (``queries[i]``, one per stream) take the oldest waiting arrival when free. A
    worker that takes an arrival after ``start + max_ns`` drops it (``done`` -1).

    Args:
        queries: K >= 1 callables, one per stream.
        arrivals_ns: nondecreasing ns offsets from the start (:func:`poisson_arrivals_ns`).
        max_ns: after this long from the start, queued queries are dropped instead of run.
        clock: the ns clock; ``sleep_until(target_ns)`` returns at or after the target (default:
            :func:`runners.scenarios.sleep_until_ns` on ``clock``).

    Raises:
        whatever a query raised (after the other workers have stopped).
    """
    from runners.scenarios import sleep_until_ns

    sleep_until = sleep_until or (lambda target: sleep_until_ns(target, clock))
    n = len(arrivals_ns)
    issued, done, stream = [-1] * n, [-1] * n, [-1] * n
    waiting: queue.Queue = queue.Queue()
    start_box: list = []
    failed = threading.Event()

    def worker(i: int):
        def run():
            query = queries[i]
            while True:
                j = waiting.get()
                if j is None:
                    return
                t0 = clock()
                if failed.is_set() or t0 - start_box[0] > max_ns:
                    continue
                try:
                    query()
                except BaseException:
                    failed.set()
                    raise
                issued[j], done[j], stream[j] = t0, clock(), i

        return run

    def dispatcher():
        start = start_box[0]
        for j, offset in enumerate(arrivals_ns):
            if failed.is_set():
                break
            sleep_until(start + offset)
            waiting.put(j)
        for _ in queries:
            waiting.put(None)

    start_box.append(clock())
    _run_threads([worker(i) for i in range(len(queries))] + [dispatcher])
    rec = LoadRecord(start_box[0], len(queries))
    rec.scheduled.extend(start_box[0] + a for a in arrivals_ns)
    rec.issued.extend(issued)
    rec.done.extend(done)
    rec.stream.extend(stream)
    return rec


def _pct(values_ns, p: float):
    return float(np.percentile(np.asarray(values_ns, dtype=np.float64), p)) / 1e6 if len(values_ns) else None


def offline_block(rec: LoadRecord, duration_s: float, samples_per_query: int) -> dict:
    """The ``scenario`` block of an offline run.

    Keys: ``name`` ("offline"), ``streams``, ``duration_s``, ``samples_per_query``, ``queries``,
    ``samples``, ``queries_per_stream`` (list), ``throughput_sps`` (samples/s, :data:`THROUGHPUT_METHOD`),
    ``throughput_sps_ci95`` ([lo, hi] samples/s, None with fewer than 2 blocks holding a completion),
    ``throughput_sps_ci95_rel`` (half-width / throughput), ``throughput_blocks_sps`` (the
    :data:`BLOCKS` block rates), ``elapsed_s`` (start to last completion), ``latency_ms_p50`` /
    ``latency_ms_p99`` (sample percentiles of issue-to-completion, ms), ``throughput_method``,
    ``latency``.
    """
    done = [d for d in rec.done if d >= 0]
    elapsed = (rec.end() - rec.start) / 1e9
    samples = len(done) * samples_per_query
    width = duration_s / BLOCKS
    counts = [0] * BLOCKS
    for d in done:
        b = int((d - rec.start) / 1e9 // width)
        if 0 <= b < BLOCKS:
            counts[b] += samples_per_query
    rates = [c / width for c in counts]
    tput = samples / elapsed if elapsed > 0 else None
    ci = None
    if tput and sum(1 for c in counts if c) >= 2:
        half = T975_9 * float(np.std(rates, ddof=1)) / math.sqrt(BLOCKS)
        mean = float(np.mean(rates))
        ci = [mean - half, mean + half]
    lat = rec.latencies()
    return {
        "name": "offline", "streams": rec.streams, "duration_s": duration_s,
        "samples_per_query": samples_per_query, "queries": len(done), "samples": samples,
        "queries_per_stream": [sum(1 for s in rec.stream if s == i) for i in range(rec.streams)],
        "throughput_sps": tput, "throughput_sps_ci95": ci,
        "throughput_sps_ci95_rel": (ci[1] - ci[0]) / 2 / tput if ci else None,
        "throughput_blocks_sps": rates, "elapsed_s": elapsed,
        "latency_ms_p50": _pct(lat, 50), "latency_ms_p99": _pct(lat, 99),
        "throughput_method": THROUGHPUT_METHOD, "latency": "from the query's issue to its completion",
    }


def server_block(rec: LoadRecord, qps: float, latency_bound_ms: float, duration_s: float,
                 samples_per_query: int, seed: int) -> dict:
    """The ``scenario`` block of one server run.

    Keys: ``name`` ("server"), ``streams``, ``qps_target``, ``qps_achieved`` (completed queries /
    (last completion − start), per s), ``latency_bound_ms``, ``duration_s``, ``seed``,
    ``samples_per_query``, ``queries`` (arrivals), ``completed``, ``dropped``, ``latency_ms_p50``,
    ``latency_ms_p99`` (LoadGen's early-stopping estimate; None below the queries needed),
    ``latency_ms_p99_sample``, ``latency_ms_p99_early_stopping``, ``queue_ms_p50`` / ``queue_ms_max``
    (issue minus arrival), ``met`` (p99 estimate <= bound and nothing dropped), ``reason`` (why not;
    None when met), ``latency``.
    """
    lat = rec.latencies()
    ok = rec.completed()
    waits = [rec.issued[i] - rec.scheduled[i] for i in ok]
    es = earlystop.estimate(lat, 0.99)
    elapsed = (rec.end() - rec.start) / 1e9
    dropped = len(rec.done) - len(ok)
    p99 = es["latency_ms"]
    if dropped:
        reason = f"{dropped} queries still queued at {DRAIN_FACTOR:g} x the schedule's length were dropped"
    elif p99 is None:
        reason = f"{len(ok)} queries: the early-stopping p99 needs {es['queries_needed']}"
    elif p99 > latency_bound_ms:
        reason = f"p99 {p99:.3g} ms > bound {latency_bound_ms:g} ms"
    else:
        reason = None
    return {
        "name": "server", "streams": rec.streams, "qps_target": qps,
        "qps_achieved": len(ok) / elapsed if elapsed > 0 else None, "latency_bound_ms": latency_bound_ms,
        "duration_s": duration_s, "seed": seed, "samples_per_query": samples_per_query,
        "queries": len(rec.done), "completed": len(ok), "dropped": dropped,
        "latency_ms_p50": _pct(lat, 50), "latency_ms_p99": p99, "latency_ms_p99_sample": _pct(lat, 99),
        "latency_ms_p99_early_stopping": es,
        "queue_ms_p50": _pct(waits, 50), "queue_ms_max": max(waits) / 1e6 if waits else None,
        "met": reason is None, "reason": reason, "latency": SERVER_LATENCY,
    }


def find_peak(run, qps: float, max_runs: int, tolerance: float = 0.05) -> tuple:
    """The highest target QPS whose run meets the bound (:data:`SEARCH_METHOD`), within ``max_runs``
    runs: the first at ``qps``; while no run failed, the next target is twice the highest passing one
    (while none passed, half the lowest failing one); once both are known, their midpoint, until
    (failing − passing) / passing <= ``tolerance`` or the runs are spent.

    Args:
        run: ``run(qps) -> dict`` with at least ``met`` (bool); called once per target.
        qps: the first target (> 0).
        max_runs: runs at most (>= 1).
        tolerance: relative width of the final bracket.

    Returns:
        ``(runs, best)``: every run's dict in order (as ``run`` returned it), and the index in ``runs``
        of the highest passing target (None when none passed).

    Raises:
        ValueError: ``qps`` not > 0 or ``max_runs`` < 1.
    """
    if not qps > 0 or max_runs < 1:
        raise ValueError(f"the search needs qps > 0 and at least one run, got {qps!r}, {max_runs!r}")
    runs: list = []
    good = bad = None  # (qps, index)
    target = qps
    while len(runs) < max_runs:
        runs.append(run(target))
        if runs[-1]["met"]:
            good = (target, len(runs) - 1) if good is None or target > good[0] else good
        elif bad is None or target < bad[0]:
            bad = (target, len(runs) - 1)
        if good is not None and bad is not None:
            if (bad[0] - good[0]) / good[0] <= tolerance:
                break
            target = (good[0] + bad[0]) / 2
        else:
            target = good[0] * 2 if good is not None else bad[0] / 2
    return runs, good[1] if good is not None else None
