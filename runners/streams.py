"""One session of ``--scenario offline`` / ``server``: the K streams opened as the backend's descriptor
declares (``streams``, :data:`runners.load.STREAM_METHODS`), driven by :mod:`runners.load`, and the
session's latencies and ``scenario`` block (standard library + numpy, Python 3.8)."""

from __future__ import annotations

from runners import earlystop, load
from runners.backends import get_backend
from runners.errors import UnsupportedFeatureError
from runners.inputs import resolve_shapes, synthesize


def check_streams(backend, k: int) -> None:
    """Raise :class:`UnsupportedFeatureError` when ``k`` > 1 and ``backend``'s descriptor declares no
    way to make several streams (or one this version does not know)."""
    desc = backend.descriptor
    method = desc.streams if desc is not None else ""
    if k > 1 and method not in load.STREAM_METHODS:
        name = desc.name if desc is not None else backend.name
        raise UnsupportedFeatureError(
            f"--streams {k}: backend {name!r} declares no way to run several independent streams "
            f"(its descriptor's streams is {method or 'empty'}); run --streams 1, or use a backend that "
            f"declares one of: {', '.join(load.STREAM_METHODS)}")


def open_streams(config, k: int, warm_up) -> list:
    """``k`` more sessions of ``config.backend`` (``streams="sessions"``): each loaded, its inputs
    synthesized from the same seed as the first session's, prepared and warmed up by
    ``warm_up(infer, policy)``. Closing them is the caller's (:func:`close_streams`); on an error
    those already open are closed here and the error propagates (a RunnerError subclass)."""
    opened = []
    try:
        for _ in range(k):
            backend = get_backend(config.backend, config.options)
            opened.append(backend)
            backend.load(config.model)
            specs = backend.inputs()
            shapes = resolve_shapes(specs, batch=config.batch, shapes=config.shapes)
            backend.prepare(synthesize(specs, shapes, seed=config.seed))
            warm_up(backend.infer, config.policy)
    except BaseException:
        close_streams(opened)
        raise
    return opened


def close_streams(backends: list) -> list:
    """Close each backend; returns the messages of those whose ``close`` raised."""
    failed = []
    for b in backends:
        try:
            b.close()
        except Exception as exc:  # closing must not hide the measurement
            failed.append(f"{type(exc).__name__}: {exc}")
    return failed


def measure(backends: list, policy, per_call: int) -> tuple:
    """The timed part of an offline / server session on ``backends`` (one per stream, prepared).

    Returns:
        ``(latencies_ns array('q'), start_ns, end_ns, block)``: per-query latencies (offline: issue
        to completion; server: scheduled arrival to completion, of the reported run), the reported
        run's start and last completion, and the ``scenario`` block (:func:`runners.load.offline_block`
        or :func:`server_search_block`) with ``latency_ms_p99_early_stopping``.
    """
    queries = [b.infer for b in backends]
    if policy.scenario == "offline":
        rec = load.offline_loop(queries, int(policy.duration_s * 1e9))
        block = load.offline_block(rec, policy.duration_s, per_call)
    else:
        rec, block = server_search(queries, policy, per_call)
    lat = rec.latencies()
    block["latency_ms_p99_early_stopping"] = earlystop.estimate(lat, 0.99)
    return lat, rec.start, rec.end(), block


def server_search(queries: list, policy, per_call: int) -> tuple:
    """One server run at ``policy.qps`` (``search_runs`` 0), or :func:`runners.load.find_peak` over at
    most ``search_runs`` runs. Returns ``(record, block)``: the reported run (the highest target that
    met the bound; none met: the first run) and its block with ``runs`` (every run's summary, in
    order), ``qps_peak`` (None when no run met the bound), ``search`` (the method, None without a
    search)."""
    kept = []

    def run(qps: float) -> dict:
        arrivals = load.poisson_arrivals_ns(qps, policy.duration_s, policy.arrival_seed,
                                            min_count=earlystop.min_queries(0.99))
        length = max(policy.duration_s * 1e9, arrivals[-1])
        rec = load.server_loop(queries, arrivals, int(load.DRAIN_FACTOR * length))
        block = load.server_block(rec, qps, policy.latency_bound_ms, policy.duration_s, per_call,
                                  policy.arrival_seed)
        kept.append(rec)
        return block

    if policy.search_runs:
        blocks, best = load.find_peak(run, policy.qps, policy.search_runs)
    else:
        blocks = [run(policy.qps)]
        best = 0 if blocks[0]["met"] else None
    index = best if best is not None else 0
    block = dict(blocks[index])
    block["runs"] = [{k: b[k] for k in ("qps_target", "qps_achieved", "latency_ms_p99", "completed",
                                        "dropped", "met", "reason")} for b in blocks]
    block["qps_peak"] = blocks[best]["qps_target"] if best is not None else None
    block["search"] = load.SEARCH_METHOD if policy.search_runs else None
    return kept[index], block
