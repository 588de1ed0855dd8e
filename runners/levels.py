"""Latency levels: what one timed inference costs, measured at more than one boundary.

The runner's own clock (``perf_counter_ns`` around ``backend.infer()``) gives the backend's
primary level, the ``latency`` block. A GPU backend also times each call with CUDA events on its
stream and reports those per-call figures as further levels. Names (result ``latency_levels``):

* ``host_call``: ``perf_counter_ns`` around the whole ``infer()`` call (the runner's clock);
* ``device_compute``: CUDA events recorded on the backend's stream just before and just after the
  runtime's execute call (kernels plus any gap between them on that stream);
* ``device_with_transfers``: CUDA events around host-to-device input copies + execute +
  device-to-host output copies.

Protocol (declared on :class:`runners.backends.Backend`, whose defaults give only the primary level):
``backend.reset_levels()`` is called after the warm-up, right before the timed loop;
``backend.level_latencies_ns()`` after it returns ``{level: sequence of int ns}``, one value per
``infer()`` call of the timed loop, in order. Each level gets the standard statistics
(:func:`runners.stats.summarize`), its own drift and second-mode checks and, pooled over the
sessions, its own verdict (:func:`runners.stats.process_verdict`); the environment checks are
the session's.
"""

from __future__ import annotations

from array import array

from runners import stats

#: Level names, host side first.
LEVELS = ("host_call", "device_compute", "device_with_transfers")
#: The clock each level is read on.
CLOCKS = {"host_call": "perf_counter_ns", "device_compute": "cuda_events",
          "device_with_transfers": "cuda_events"}


def reset(backend) -> None:
    """Start a fresh per-call record of the backend's extra levels (the base's is a no-op)."""
    backend.reset_levels()


def collect(backend, calls: int) -> dict:
    """``{level: array('q') of ns}`` recorded since :func:`reset`; levels with no values are left out.

    Raises:
        ValueError: a level with a number of values other than ``calls`` (one per timed call).
    """
    out = {}
    for name, values in backend.level_latencies_ns().items():
        arr = array("q", (int(v) for v in values))
        if not arr:
            continue
        if len(arr) != calls:
            raise ValueError(f"level {name}: {len(arr)} values for {calls} timed calls")
        out[name] = arr
    return out


def session_levels(level: str, summary: dict, extra: dict, *, loop_ns: int, per_call: int) -> dict:
    """A session's ``latency_levels``: ``{level: summary}`` (the primary, as measured by the runner)
    plus, per extra level, its statistics over the same loop with ``clock``, the loop bounds and
    ``checks`` (drift, second_mode)."""
    out = {level: summary}
    for name, arr in extra.items():
        block = stats.summarize(arr, loop_duration_ns=loop_ns, samples_per_call=per_call)
        block.update(clock=CLOCKS.get(name, "backend"), max_duration_hit=summary.get("max_duration_hit"),
                     loop_start_monotonic_ns=summary.get("loop_start_monotonic_ns"),
                     loop_end_monotonic_ns=summary.get("loop_end_monotonic_ns"),
                     checks={"drift": stats.drift(arr), "second_mode": stats.second_mode(arr)})
        out[name] = block
    return out


def pool(blocks: list, arrays: list, level: str, primary: dict, policy) -> dict:
    """The process's ``latency_levels``: the primary level's pooled block (``primary``, the
    result's ``latency``) and, for every extra level all sessions have, its pooled statistics
    (:func:`runners.stats.pool_sessions`) with a ``verdict`` of its own.

    Args:
        blocks: the session blocks (each with ``latency_levels``, ``checks`` and ``index``).
        arrays: per session, ``{level: array of ns}`` as returned by :func:`collect`.
    """
    out = {level: primary}
    names = [n for n in LEVELS if n != level and all(n in a for a in arrays)]
    names += sorted(n for n in arrays[0] if n not in names and n != level and all(n in a for a in arrays))
    for name in names:
        pseudo = [{"index": b["index"], "latency": b["latency_levels"][name],
                   "checks": dict(b["checks"], **b["latency_levels"][name]["checks"])} for b in blocks]
        pooled = stats.pool_sessions(pseudo, [a[name] for a in arrays], level=name)
        pooled["clock"] = CLOCKS.get(name, "backend")
        pooled["verdict"] = stats.process_verdict(pseudo, policy)
        out[name] = pooled
    return out
