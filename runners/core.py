"""The runner lifecycle shared by every backend: load → warm-up → timed loop → result.

Timing uses ``time.perf_counter_ns`` around ``backend.infer()`` only. The timed loop
stops when **both** a minimum iteration count and a minimum duration are reached, or at
a maximum-duration cap (MLPerf LoadGen's rule: ``min_query_count`` and
``min_duration_ms``, capped by ``max_duration_ms``). Warm-up likewise ends when both
its count and time minimums are met (or at the cap).
"""

from __future__ import annotations

import os
import time
import traceback
from array import array
from dataclasses import asdict, dataclass, field

import runners
from runners import environment, levels, scenarios, stats
from runners.backends import can_evaluate, get_backend
from runners.errors import DatasetError, InputSpecError, RunnerError, error_record
from runners.inputs import resolve_shapes, synthesize
from runners.manifest import device_manifest, tool_manifest
from runners.memory import MemoryProbe
from runners.util import file_sha256, utc_now


@dataclass
class Policy:
    """How one runner process measures, and what makes its result VALID.

    Units are in the names. A process runs ``sessions`` fresh sessions one after another;
    each gets a warm-up (>= ``warmup_min_iterations`` and >= ``warmup_min_s``) and a timed
    loop (>= ``min_iterations`` and >= ``min_duration_s``), each capped at
    ``max_duration_s``. Verdict thresholds: a loop's trend (``drift_max``, relative change
    first->last block), its share of iterations far from the median (``mode_share_max``),
    the CPU clock's change across a loop (``throttle_max``); other processes' CPU share
    (``load_max``) and the robust CoV (``cov_max``) only warn. 60 FPS real-time budget.
    ``scenario`` (:mod:`runners.scenarios`): ``single-stream`` is the loop above; ``paced`` and
    ``multi-stream`` replace the timed loop by a fixed schedule of ``rate_hz`` queries per second
    for ``duration_s`` seconds (``samples_per_query`` samples each in multi-stream); ``offline`` and
    ``server`` drive ``streams`` concurrent streams (:mod:`runners.load`): server at ``qps`` Poisson
    arrivals per second (seed ``arrival_seed``) against ``latency_bound_ms``, with ``search_runs`` > 0
    searching the peak QPS in that many runs at most.
    """

    warmup_min_iterations: int = 20
    warmup_min_s: float = 1.0
    min_iterations: int = 100
    min_duration_s: float = 5.0
    max_duration_s: float = 60.0
    cov_max: float = 0.10
    fps: float = 60.0
    sessions: int = 1
    drift_max: float = 0.10
    mode_share_max: float = 0.10
    throttle_max: float = 0.10
    load_max: float = 0.25
    scenario: str = scenarios.SINGLE_STREAM
    rate_hz: float = 60.0
    duration_s: float = 60.0
    samples_per_query: int = 8
    streams: int = 1
    qps: float = 10.0
    latency_bound_ms: float = 100.0
    search_runs: int = 0
    arrival_seed: int = 0

    def check(self) -> None:
        """Raise ValueError when the policy is self-contradictory (or its scenario is not
        implemented: :func:`runners.scenarios.check`)."""
        scenarios.check(self)
        if self.min_iterations < 1 or self.warmup_min_iterations < 0:
            raise ValueError("iteration minimums must be >= 1 (warm-up >= 0)")
        if self.min_duration_s < 0 or self.warmup_min_s < 0:
            raise ValueError("duration minimums must be >= 0")
        if self.max_duration_s <= 0:
            raise ValueError("max duration must be > 0")
        if self.min_duration_s > self.max_duration_s and self.scenario == scenarios.SINGLE_STREAM:
            raise ValueError(f"the timed loop's minimum ({self.min_duration_s:g} s) exceeds its cap "
                             f"({self.max_duration_s:g} s): raise --max-s or lower --min-s")
        if self.warmup_min_s > self.max_duration_s:
            raise ValueError(f"the warm-up minimum ({self.warmup_min_s:g} s) exceeds the cap "
                             f"({self.max_duration_s:g} s): raise --max-s or lower --warmup-s")
        if self.sessions < 1:
            raise ValueError("sessions must be >= 1")
        if min(self.fps, self.cov_max, self.drift_max, self.mode_share_max, self.throttle_max,
               self.load_max) <= 0:
            raise ValueError("fps and every threshold must be > 0")


@dataclass
class RunConfig:
    """What to run: backend, model, inputs, options and the stop policy."""

    backend: str = "ort"
    model: str | None = None
    batch: int | None = 1
    shapes: dict = field(default_factory=dict)
    seed: int = 0
    options: dict = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    keep_latencies: bool = False
    #: untimed, after the timed loops (``runners.evaluation``): fidelity inputs (.npz) and
    #: where their outputs go (.npz); a dataset folder for accuracy
    fidelity_inputs: str | None = None
    fidelity_out: str | None = None
    dataset: str | None = None
    #: ``perf stat`` around session 0's timed loop (:mod:`runners.counters`); the events to count
    counters: bool = False
    counter_events: tuple = ()


def timed_loop(infer, min_iterations: int, min_ns: int, max_ns: int):
    """Call ``infer()`` until both minimums are met or ``max_ns`` has passed.

    Returns:
        (latencies_ns array('q'), loop_start_ns, loop_end_ns, max_hit) — latencies of each call
        in ns; loop bounds on the ``perf_counter_ns`` clock; whether the cap stopped it.
    """
    clock = time.perf_counter_ns
    lat = array("q")  # 8 bytes per iteration, counted in the inference memory delta
    append = lat.append
    n = 0
    max_hit = False
    start = clock()
    while True:
        t0 = clock()
        infer()
        t1 = clock()
        append(t1 - t0)
        n += 1
        elapsed = t1 - start
        if n >= min_iterations and elapsed >= min_ns:
            break
        if elapsed >= max_ns:
            max_hit = True
            break
    end = clock()
    return lat, start, end, max_hit


def _model_facts(path: str | None) -> dict:
    if not path:
        return {"path": None, "sha256": None, "size_bytes": None}
    try:
        size = os.path.getsize(path)
        sha = file_sha256(path)
    except OSError:
        return {"path": os.path.abspath(path), "sha256": None, "size_bytes": None}
    return {"path": os.path.abspath(path), "sha256": sha, "size_bytes": size}


def _result_head(config: RunConfig) -> dict:
    """The result document before anything ran: ``status: "failed"`` until measured."""
    return {
        "schema_version": runners.SCHEMA_VERSION,
        "status": "failed",
        "error": None,
        "model": _model_facts(config.model),
        "runtime": {"name": config.backend},
        "configuration": {
            "backend": config.backend,
            "batch": config.batch,
            "shapes": {k: list(v) for k, v in config.shapes.items()},
            "seed": config.seed,
            "options": dict(config.options),
            "policy": asdict(config.policy),
        },
        "timestamps": {
            "start_utc": utc_now(),
            "start_monotonic_ns": time.monotonic_ns(),
        },
    }


def _import_runtime(backend: str) -> None:
    """Import the backend's runtime modules now, so that memory baselines come after them.
    A module that does not import is left to the backend's ``load()``, which raises the
    typed error."""
    import importlib

    from runners.backends import descriptors

    desc = descriptors().get(backend)
    for name in desc.runtime_modules if desc else ():
        try:
            importlib.import_module(name)
        except Exception:  # ImportError or a missing shared library: load() reports it
            return


def _prepare(backend, config: RunConfig, result: dict, probe: MemoryProbe, index: int) -> tuple:
    """Load the model and bind the inputs (``prepare()`` runs the first inference, timed).
    Session 0 records inputs, outputs and runtime. Returns (load_ms, first_inference_ms,
    samples per call)."""
    t0 = time.perf_counter_ns()
    backend.load(config.model)
    t1 = time.perf_counter_ns()
    if index == 0:
        probe.mark("after_session")
    specs = backend.inputs()
    shapes = resolve_shapes(specs, batch=config.batch, shapes=config.shapes)
    feeds = synthesize(specs, shapes, seed=config.seed)
    t2 = time.perf_counter_ns()
    backend.prepare(feeds)
    t3 = time.perf_counter_ns()
    if index == 0:
        result["model"]["inputs"] = [s.to_json() for s in specs]
        result["model"]["input_shapes"] = {k: list(v) for k, v in shapes.items()}
        outputs = backend.outputs()
        if outputs is not None:
            result["model"]["outputs"] = [s.to_json() for s in outputs]
        result["runtime"] = backend.runtime_info()
    first = shapes[specs[0].name] if specs else ()
    per_call = int(first[0]) if len(first) >= 1 and int(first[0]) > 0 else 1
    # a backend that runs several jobs per infer() call (vart --threads N) says how many
    per_call *= max(int(backend.samples_per_infer_factor), 1)
    return (t1 - t0) / 1e6, (t3 - t2) / 1e6, per_call


def _warm_up(infer, policy: Policy) -> dict:
    """The warm-up loop after the first inference: the session's ``warmup`` block."""
    warm, w_start, w_end, w_max = timed_loop(
        infer,
        policy.warmup_min_iterations,
        int(policy.warmup_min_s * 1e9),
        int(policy.max_duration_s * 1e9),
    )
    return {
        "iterations": len(warm),
        "duration_s": (w_end - w_start) / 1e9,
        "latency_ms_last": warm[-1] / 1e6 if warm else None,
        "max_duration_hit": w_max,
    }


def _session(backend, config: RunConfig, result: dict, probe: MemoryProbe, index: int) -> tuple:
    """One fresh session: load, first inference, warm-up, timed loop with a machine
    snapshot before and after. Returns (session block, latencies array('q'), the backend's extra
    latency levels ``{level: array('q')}``, see :mod:`runners.levels`)."""
    policy = config.policy
    load_ms, first_ms, per_call = _prepare(backend, config, result, probe, index)
    warm = _warm_up(backend.infer, policy)
    to_mono = time.monotonic_ns() - time.perf_counter_ns()  # same clock on Linux
    before = environment.snapshot()
    levels.reset(backend)
    watch = _counters(config, index)
    record, calls, load_block = None, 1, None
    try:
        if scenarios.SCENARIOS[policy.scenario].scheduled:
            calls = _calls_per_query(policy, per_call)
            lat, start, end, max_hit, record = _scheduled(backend.infer, policy, calls)
        elif scenarios.SCENARIOS[policy.scenario].concurrent:
            lat, start, end, load_block = _concurrent(backend, config, per_call)
            max_hit = False
        else:
            lat, start, end, max_hit = timed_loop(backend.infer, policy.min_iterations,
                                                  int(policy.min_duration_s * 1e9),
                                                  int(policy.max_duration_s * 1e9))
        if watch is not None:
            result["counters"] = watch.stop(lat, per_call * calls, end - start)
    finally:
        if watch is not None:
            watch.close()
    after = environment.snapshot()
    # a scheduled or concurrent loop's latencies are per query: the per-call levels do not pair with them
    extra = levels.collect(backend, len(lat)) if record is None and load_block is None else {}
    summary = stats.summarize(lat, loop_duration_ns=end - start, samples_per_call=per_call * calls)
    summary["loop_start_monotonic_ns"] = start + to_mono
    summary["loop_end_monotonic_ns"] = end + to_mono
    summary["max_duration_hit"] = max_hit
    if config.keep_latencies:
        summary["latencies_ns"] = lat.tolist()
    checks = {"drift": stats.drift(lat), "second_mode": stats.second_mode(lat),
              "environment": environment.delta(before, after)}
    block = {"index": index, "load_ms": load_ms, "first_inference_ms": first_ms,
             "warmup": warm, "latency": summary, "checks": checks}
    if record is not None:
        block["scenario"] = _scenario_block([record], policy, calls)
        block["_record"] = record  # pooled over the sessions by _measure, then dropped
    if load_block is not None:
        block["scenario"] = load_block
    if extra:
        block["latency_levels"] = levels.session_levels(backend.latency_level, summary, extra,
                                                        loop_ns=end - start, per_call=per_call)
    return block, lat, extra


def _concurrent(backend, config: RunConfig, per_call: int) -> tuple:
    """offline / server (:mod:`runners.streams`): ``backend`` (loaded, warmed up) is stream 0; the
    other ``streams - 1`` sessions open and warm up here, run, and close. Returns (latencies per
    query, ns; start; end; the ``scenario`` block).

    Raises:
        UnsupportedFeatureError: ``streams`` > 1 on a backend that declares no way to run several.
    """
    from runners import streams

    streams.check_streams(backend, config.policy.streams)
    others = streams.open_streams(config, config.policy.streams - 1, _warm_up)
    try:
        return streams.measure([backend, *others], config.policy, per_call)
    finally:
        streams.close_streams(others)


def _calls_per_query(policy: Policy, per_call: int) -> int:
    """``infer()`` calls per query: 1 for paced; ``samples_per_query / per_call`` for multi-stream.

    Raises:
        InputSpecError: the samples per query are not a whole number of calls.
    """
    if policy.scenario != "multi-stream":
        return 1
    if policy.samples_per_query % per_call:
        raise InputSpecError(f"--samples-per-query {policy.samples_per_query} is not a multiple of the "
                             f"{per_call} samples each call processes (the batch): choose a multiple, or "
                             f"--batch {policy.samples_per_query} for one call per query")
    return policy.samples_per_query // per_call


def _scheduled(infer, policy: Policy, calls: int) -> tuple:
    """The scheduled timed loop (:func:`runners.scenarios.scheduled_loop`): ``calls`` inferences per
    query. Returns (latencies per query from its slot start, ns; loop start; loop end; False; record)."""
    if calls == 1:
        query = infer
    else:
        def query():
            for _ in range(calls):
                infer()
    record = scenarios.scheduled_loop(query, scenarios.period_ns(policy.rate_hz), scenarios.slots(policy))
    end = record.done[-1] if record.done else record.start
    return record.latencies(), record.start, end, False, record


def _scenario_block(records: list, policy: Policy, calls: int) -> dict:
    """The ``scenario`` block of scheduled sessions (:func:`runners.scenarios.schedule_block`) with the
    early-stopping p99 of their query latencies (:func:`runners.earlystop.estimate`)."""
    from runners import earlystop

    block = scenarios.schedule_block(records, policy.scenario, policy.rate_hz, policy.duration_s,
                                     policy.samples_per_query, calls)
    block["latency_ms_p99_early_stopping"] = earlystop.estimate(
        [v for r in records for v in r.latencies()], 0.99)
    return block


def _counters(config: RunConfig, index: int):
    """Session 0's :class:`runners.counters.LoopCounters`, started (``--counters``), else None."""
    if not config.counters or index != 0:
        return None
    from runners import counters

    watch = counters.LoopCounters(config.counter_events or counters.DEFAULT_EVENTS, session=index)
    watch.start()
    return watch


def _measure(config: RunConfig, result: dict, probe: MemoryProbe) -> None:
    """Run ``policy.sessions`` fresh sessions one after another and fill ``sessions``,
    ``warmup``, ``latency`` (over all sessions), ``verdict``, ``realtime`` and ``status``."""
    policy = config.policy
    blocks, arrays, extras, level = [], [], [], None
    for index in range(policy.sessions):
        backend = get_backend(config.backend, config.options)
        level = backend.latency_level
        try:
            block, lat, extra = _session(backend, config, result, probe, index)
        finally:
            _close(backend, result)
        blocks.append(block)
        arrays.append(lat)
        extras.append(extra)
    probe.mark("end")
    records = [b.pop("_record") for b in blocks if "_record" in b]
    concurrent = scenarios.SCENARIOS[policy.scenario].concurrent
    if records or concurrent:
        level = "query"  # from the query's scheduled start (offline: its issue) to its completion
    result["sessions"] = blocks
    result["warmup"] = dict(blocks[0]["warmup"], first_inference_ms=blocks[0]["first_inference_ms"],
                            load_ms=blocks[0]["load_ms"])
    result["latency"] = stats.pool_sessions(blocks, arrays, level=level)
    if records:
        result["scenario"] = _scenario_block(records, policy, blocks[0]["scenario"]["calls_per_query"])
        _early_stopping_p99(result["latency"], result["scenario"])
    if concurrent:  # one session per process (runners.scenarios._check_load)
        result["scenario"] = blocks[0]["scenario"]
        _early_stopping_p99(result["latency"], result["scenario"])
    if all(extras):  # a GPU backend's device levels (runners.levels), beside the primary one
        result["latency_levels"] = levels.pool(blocks, extras, level, result["latency"], policy)
    result["verdict"] = stats.process_verdict(blocks, policy)
    result["realtime"] = stats.realtime_verdict(result["latency"], policy.fps)
    result["status"] = "ok" if result["verdict"]["result"] == "VALID" else "invalid"


def _early_stopping_p99(latency: dict, block: dict) -> None:
    """A scheduled run's ``latency_ms_p99`` is the early-stopping estimate (None, with the number of
    queries needed in ``latency_ms_p99_early_stopping``, when there are too few); the plain sample
    percentile stays as ``latency_ms_p99_sample``."""
    es = block["latency_ms_p99_early_stopping"]
    latency["latency_ms_p99_sample"] = latency["latency_ms_p99"]
    latency["latency_ms_p99"] = es["latency_ms"]
    latency["latency_ms_p99_early_stopping"] = es


def _evaluate(config: RunConfig, result: dict) -> None:
    """Untimed, in one fresh session after the timed loops (and after the memory probe's
    ``end`` mark): ``fidelity_outputs`` with ``config.fidelity_inputs``, ``accuracy`` with
    ``config.dataset`` (see :mod:`runners.evaluation`); neither, and a warning, for a backend
    without ``evaluate`` (:func:`runners.backends.can_evaluate`). Raises RunnerError subclasses."""
    if not (config.fidelity_inputs or config.dataset):
        return
    from runners import evaluation

    backend = get_backend(config.backend, config.options)
    if not can_evaluate(backend):
        result.setdefault("warnings", []).append(
            f"backend {config.backend!r} does not implement evaluate(): no fidelity_outputs and no accuracy")
        return
    try:
        backend.load(config.model)
        specs = backend.inputs()
        if config.fidelity_inputs:
            if not config.fidelity_out:
                raise DatasetError("--fidelity-inputs needs --fidelity-out (where the outputs go)")
            try:
                result["fidelity_outputs"] = evaluation.fidelity(
                    backend, specs, config.fidelity_inputs, config.fidelity_out)
            except OSError as exc:
                raise DatasetError(f"--fidelity-out {config.fidelity_out}: cannot write it ({exc})") from None
        if config.dataset:
            result["accuracy"] = evaluation.accuracy(backend, specs, config.dataset,
                                                     batch=config.batch, shapes=config.shapes)
    finally:
        _close(backend, result)


def _close(backend, result: dict) -> None:
    try:
        backend.close()
    except Exception:  # closing must not hide the measurement
        result.setdefault("warnings", []).append(
            "backend close failed: " + traceback.format_exc(limit=1).strip())
    if backend.profile_path:  # the runtime's per-layer trace (--profile-prefix)
        result.setdefault("profile_files", []).append(str(backend.profile_path))
    for key, value in backend.extra_results(set(result)).items():  # e.g. tensorrt's trtexec, untimed
        result.setdefault(key, value)


def _finish(result: dict, probe: MemoryProbe) -> None:
    """Memory, manifest and the end timestamps."""
    if "end" not in probe.points:
        probe.mark("end")
    result["memory"] = probe.result()
    result["manifest"] = {"device": device_manifest(), "tool": tool_manifest()}
    # perf_counter_ns and monotonic_ns share CLOCK_MONOTONIC on Linux; both are recorded.
    result["timestamps"]["end_utc"] = utc_now()
    result["timestamps"]["end_monotonic_ns"] = time.monotonic_ns()
    result["timestamps"]["clock_note"] = (
        "perf_counter_ns and monotonic_ns both read CLOCK_MONOTONIC on Linux"
    )


def run(config: RunConfig) -> dict:
    """Run one benchmark cell in this process and return the result document.

    Never raises for a :class:`~runners.errors.RunnerError`: the result then has
    ``status: "failed"`` and ``error: {"type", "category", "message"}``. Other exceptions propagate
    (the process crashes and the host classifies the exit).

    Result keys: see README "Result format". ``status`` is "ok" (VALID), "invalid"
    (measured but a stop-rule check failed) or "failed". With ``config.fidelity_inputs`` or
    ``config.dataset`` the measured document gains ``fidelity_outputs`` / ``accuracy``
    (:func:`_evaluate`); an error there makes the status "failed" (measurements kept).
    """
    config.policy.check()
    probe = MemoryProbe()
    result = _result_head(config)
    probe.mark("before_import")
    _import_runtime(config.backend)
    probe.mark("start")
    try:
        _measure(config, result, probe)
        _evaluate(config, result)
    except (RunnerError, MemoryError) as exc:
        result["status"] = "failed"
        result["error"] = error_record(exc)
    _finish(result, probe)
    return result

