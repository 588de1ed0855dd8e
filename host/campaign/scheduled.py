"""A cell of a scheduled scenario (``paced``, ``multi-stream``: :mod:`runners.scenarios`) or a
concurrent one (``offline``, ``server``: :mod:`runners.load`; its ``scenario`` block is the runner's,
as is) from its runner processes.

Such a cell is one process with one long session by design (``Protocol.fixed_processes``, from
:data:`runners.scenarios.SCENARIOS`): a sustained schedule answers "does it hold N queries per second
for this long", which short loops repeated over fresh processes do not. So its latency block has no
interval over processes (``latency_ms_p50_ci95`` None, said in ``ci_method``); its p99 is the
early-stopping estimate (:mod:`runners.earlystop`, MLPerf LoadGen's), None with the number of queries
needed when there are too few; its ``scenario`` block carries the deadline misses. Several processes
(a later protocol) are pooled: counts summed, percentiles over every query.
"""

from __future__ import annotations

import numpy as np

from runners import earlystop, stats

CI_METHOD = ("none: a paced, multi-stream, offline or server cell runs one process with one long session "
             "by design; no interval over processes")
_SUMMED = ("slots", "queries", "skipped", "queries_issued_late", "deadline_misses",
           "deadline_misses_completed_late", "sessions")


def pool_scenarios(blocks: list) -> dict:
    """The processes' ``scenario`` blocks as one: counts summed, ``longest_miss_run`` the longest,
    ``deadline_miss_pct`` and the rates recomputed over the summed slots; service and issue-delay
    percentiles are the first process's (one process is the design)."""
    out = dict(blocks[0])
    if len(blocks) == 1:
        return out
    for key in _SUMMED:
        out[key] = sum(b.get(key) or 0 for b in blocks)
    out["longest_miss_run"] = max(b.get("longest_miss_run") or 0 for b in blocks)
    seconds = out["slots"] * out["period_ns"] / 1e9
    on_time = out["queries"] - out["deadline_misses_completed_late"]
    out.update(deadline_miss_pct=100.0 * out["deadline_misses"] / out["slots"] if out["slots"] else None,
               rate_hz_achieved=out["queries"] / seconds if seconds else None,
               rate_hz_on_time=on_time / seconds if seconds else None)
    return out


def _latency(docs: list, arrays: list) -> dict:
    """Per-query latency statistics over every kept query of every process, the early-stopping p99."""
    pooled = np.concatenate([a for per_proc in arrays for a in per_proc])
    blocks = [b for d in docs for b in d["sessions"]]
    out = stats.summarize(pooled, loop_duration_ns=int(sum(b["latency"]["duration_s"] for b in blocks) * 1e9),
                          samples_per_call=blocks[0]["latency"]["samples_per_call"])
    es = earlystop.estimate(pooled.tolist(), 0.99)
    out.update({
        "latency_ms_p50_pooled": out["latency_ms_p50"], "latency_ms_p50_ci95": None,
        "latency_ms_p50_ci95_rel": None, "latency_ms_p50_rerun95": None, "latency_ms_p50_rerun95_rel": None,
        "latency_ms_p99_sample": out["latency_ms_p99"], "latency_ms_p99": es["latency_ms"],
        "latency_ms_p99_ci95": None, "latency_ms_p99_early_stopping": es, "ci_method": CI_METHOD,
        "processes": len(docs), "sessions": len(blocks),
        "level": docs[0]["latency"]["level"], "clock": docs[0]["latency"]["clock"],
    })
    return out


def _verdict(records: list) -> dict:
    """The processes' verdicts as one: INVALID when any process's is, each failed check's first reason."""
    reasons, checks, warnings = {}, {}, []
    for r in records:
        v = r["verdict"]
        for check, ok in (v.get("checks") or {}).items():
            checks[check] = checks.get(check, True) and bool(ok)
        for check, text in (v.get("reasons_by_check") or {}).items():
            reasons.setdefault(check, text)
        warnings += [w for w in v.get("warnings") or [] if w not in warnings]
    return {"result": "INVALID" if reasons else "VALID", "reasons": [f"{c}: {t}" for c, t in reasons.items()],
            "reasons_by_check": reasons, "checks": checks, "warnings": warnings, "warnings_by_check": {}}


def combine_scheduled(docs: list, arrays: list, records: list, progress) -> dict:
    """The cell document's measurement part for a scheduled scenario (cf.
    :func:`host.campaign.cells.combine`): the first process's document with ``latency``,
    ``scenario``, ``verdict``, ``status``, ``realtime`` and ``repetitions`` replaced or added.

    Args:
        docs: the runner results (each with ``sessions`` and ``scenario``).
        arrays: per process, its sessions' per-query latencies (ns, int64 arrays).
        records: :func:`host.campaign.cells.process_record` of each process.
        progress: the cell's :class:`host.campaign.protocol.Progress`.
    """
    doc = dict(docs[0])
    doc.pop("sessions", None)
    latency = _latency(docs, arrays)
    verdict = _verdict(records)
    doc["latency"] = latency
    doc["scenario"] = pool_scenarios([d["scenario"] for d in docs])
    doc["verdict"] = verdict
    doc["status"] = "ok" if verdict["result"] == "VALID" else "invalid"
    doc["realtime"] = stats.realtime_verdict(latency, doc["configuration"]["policy"]["fps"])
    firsts = [s["first_inference_ms"] for r in records for s in r["sessions"]]
    doc["warmup"] = dict(doc.get("warmup") or {}, first_inference_ms_median=float(np.median(firsts)))
    doc["repetitions"] = {"protocol": progress.protocol.to_json(), "stopped": progress.stopped,
                          "spent_s": progress.spent_s, "processes": records, "spread": None}
    return doc
