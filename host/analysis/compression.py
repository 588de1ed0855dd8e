"""Share of the expected speedup a compressed model achieves (Gibson et al., DLAS, ACM TACO 2024).

A *compressed* cell measured a pruned variant: its ``info`` is a ``host zoo prune`` recipe (schema
``edgegauge.prune/1``, :mod:`host.models.prune`). Its *dense* cell is the one in the same results
whose model sha256 (``metrics.sha256``) is the recipe's ``source_sha256``, on the same device with
the same configuration (backend, precision, batch, ...). For each such pair:

* ``expected`` = the compression ratio: unstructured pruning, dense non-zero weights / pruned
  non-zero weights (``metrics.nonzeros``; the recipe's Conv/Gemm/MatMul counts for results written
  before the metric existed); channel pruning, dense FLOPs / pruned FLOPs (``metrics.flops``);
* ``achieved`` = dense p50 / compressed p50 (``latency.latency_ms_p50``), with a 95 % interval from
  the two cells' p50 intervals combined on a log scale: each side's distance from its p50 to its
  interval's end, in log units, taken as 1.96 standard errors and the two added in quadrature (the
  cells' processes are separate; each end on its own side, so an asymmetric interval stays
  asymmetric). Two cells measured interleaved by one run of a campaign (:func:`interval_field`) use
  their within-campaign intervals (``latency_ms_p50_ci95_within``): they were measured in the same
  machine state, so the campaign-level term of ``latency_ms_p50_ci95`` (how far a whole campaign may
  move) is common to both and cancels in the ratio; other pairs use ``latency_ms_p50_ci95``,
  campaign level included (``interval`` says which). None when either cell has no interval;
* ``share`` = achieved / expected, its interval the achieved interval / expected (the expected
  ratio is exact: counted, not measured).
"""

from __future__ import annotations

import math

from host.campaign.store import _get

__all__ = ["PRUNE_SCHEMA", "achieved", "interval_field"]

PRUNE_SCHEMA = "edgegauge.prune/1"


def _ratio(dense, compressed) -> float | None:
    """``dense / compressed``; None unless both are finite and positive (a hand-edited or broken cell
    with a zero, negative or infinite latency or count has no ratio)."""
    try:
        a, b = float(dense), float(compressed)
    except (TypeError, ValueError):
        return None
    return a / b if 0 < a < math.inf and 0 < b < math.inf else None


def _expected(dense: dict, cell: dict, info: dict) -> tuple[float | None, str]:
    """(expected speedup, what it is a ratio of)."""
    if info.get("method") == "channels":
        return _ratio(_get(dense, "metrics", "flops"), _get(cell, "metrics", "flops")), "flops"
    got = _ratio(_get(dense, "metrics", "nonzeros"), _get(cell, "metrics", "nonzeros"))
    if got is None:
        got = _ratio(info.get("nonzeros_before"), info.get("nonzeros"))
    return got, "nonzeros"


def _log_interval(p50, ci) -> tuple[float, float] | None:
    """(log p50 - log lo, log hi - log p50), or None."""
    try:
        lo, hi = float(ci[0]), float(ci[1])
        mid = float(p50)
        if not (0 < lo <= mid <= hi):
            return None
        return math.log(mid) - math.log(lo), math.log(hi) - math.log(mid)
    except (TypeError, ValueError, IndexError):
        return None


def measured_window(cell: dict) -> tuple[float, float] | None:
    """(first process's start, last process's end) of a cell, in POSIX seconds, from
    ``repetitions.processes`` (``start_utc``, ``wall_s``); None when it has none."""
    from datetime import datetime

    spans = []
    for proc in _get(cell, "repetitions", "processes") or []:
        try:
            start = datetime.strptime(str(proc["start_utc"]), "%Y-%m-%dT%H:%M:%SZ").timestamp()
            spans.append((start, start + float(proc.get("wall_s") or 0.0)))
        except (KeyError, TypeError, ValueError):
            continue
    return (min(s for s, _ in spans), max(e for _, e in spans)) if spans else None


def interval_field(dense: dict, cell: dict) -> str:
    """``latency_ms_p50_ci95_within`` for two cells measured interleaved: of one campaign, both with
    that interval, and their processes' time spans overlap (one ``host bench`` run measured both, round
    by round; two runs of one campaign, such as a resume or another runtime's command, do not: the
    campaign-level term differs between them). Else ``latency_ms_p50_ci95``. Second-resolution start
    times: cells of runs less than a second apart count as overlapping."""
    within = "latency_ms_p50_ci95_within"
    same = _get(dense, "cell", "campaign") is not None and \
        _get(dense, "cell", "campaign") == _get(cell, "cell", "campaign")
    if not (same and _get(dense, "latency", within) and _get(cell, "latency", within)):
        return "latency_ms_p50_ci95"
    a, b = measured_window(dense), measured_window(cell)
    if a is None or b is None or a[1] + 1.0 < b[0] or b[1] + 1.0 < a[0]:
        return "latency_ms_p50_ci95"
    return within


def achieved(dense: dict, cell: dict) -> tuple[float | None, list | None]:
    """(dense p50 / compressed p50, [lo, hi] or None), the interval as the module docstring says."""
    d, c = _get(dense, "latency", "latency_ms_p50"), _get(cell, "latency", "latency_ms_p50")
    value = _ratio(d, c)
    if value is None:
        return None, None
    field = interval_field(dense, cell)
    di = _log_interval(d, _get(dense, "latency", field))
    ci = _log_interval(c, _get(cell, "latency", field))
    if di is None or ci is None:
        return value, None
    # ratio low when the dense p50 is low and the compressed p50 high, and the other way round
    down, up = math.hypot(di[0], ci[1]), math.hypot(di[1], ci[0])
    return value, [value * math.exp(-down), value * math.exp(up)]
