"""A cell from its runner processes: the cell-level latency block, the spread at each
level, the verdict and the per-process record (``repetitions``).

Statistics are :mod:`runners.stats`'s (one implementation for runner and host); what is
here is how a campaign puts processes together. Definitions: docs/measurement.md.
"""

from __future__ import annotations

import math

import numpy as np

from runners import stats

#: A loop check (drift, second mode, throttle) fails the cell when more than this share
#: of its processes failed it; fewer is a warning (one odd process among many is what the
#: interval over processes is for).
LOOP_CHECK_SHARE = 0.25
_LOOP_CHECKS = ("no_drift", "single_mode", "no_throttle", "max_duration_not_hit")


def take_latencies(doc: dict) -> list:
    """Remove the per-session ``latencies_ns`` lists from a runner result; return them as
    int64 arrays, one per session (empty list when the runner kept none)."""
    out = []
    for block in doc.get("sessions") or []:
        lat = block.get("latency", {}).pop("latencies_ns", None)
        if lat is not None:
            out.append(np.asarray(lat, dtype=np.int64))
    doc.get("latency", {}).pop("latencies_ns", None)
    return out


def session_medians(doc: dict) -> list:
    """The medians (ms) of a runner result's sessions."""
    return [b["latency"]["latency_ms_p50"] for b in doc["sessions"]]


def process_record(doc: dict, wall_s: float, round_no: int, slot: int) -> dict:
    """What the cell keeps of one process: its place in the run order, its sessions'
    figures and checks, its verdict and memory."""
    sessions = []
    for b in doc["sessions"]:
        lat, checks = b["latency"], b["checks"]
        env = checks["environment"]
        sessions.append({
            "latency_ms_p50": lat["latency_ms_p50"], "latency_ms_p99": lat["latency_ms_p99"],
            "iterations": lat["iterations"], "duration_s": lat["duration_s"],
            "cov_robust": lat["cov_robust"], "load_ms": b["load_ms"],
            "first_inference_ms": b["first_inference_ms"],
            "drift_rel": checks["drift"]["drift_rel"],
            "outside_share": checks["second_mode"]["outside_share"],
            "others_cpu_share": env.get("others_cpu_share"), "steal_share": env.get("steal_share"),
            "cpu_mhz_change_rel": env.get("cpu_mhz_change_rel"), "temp_c_change": env.get("temp_c_change"),
            "loop_start_monotonic_ns": lat["loop_start_monotonic_ns"],
        })
    return {"round": round_no, "slot": slot, "start_utc": doc["timestamps"]["start_utc"],
            "wall_s": wall_s, "status": doc["status"], "latency_ms_p50": doc["latency"]["latency_ms_p50"],
            "sessions": sessions, "verdict": doc["verdict"], "memory": doc.get("memory")}


def level_spread(groups: list, times: list | None = None) -> dict:
    """Spread at each level from per-process session medians (ms), as standard deviations
    of logs (≈ coefficients of variation): ``sessions_sd_log`` (within processes, pooled),
    ``processes_sd_log`` (between process means minus the sessions' share: one-way nested
    variance components, method of moments), ``time_trend_rel`` (change of the log process
    means from the first process to the last along the Theil–Sen line — the median of the
    pairwise slopes (Sen, JASA 1968), so one odd process does not make a trend — in run
    order or ``times``). None where there is too little to estimate."""
    y = [np.log(np.asarray(g, dtype=np.float64)) for g in groups]
    s = min(len(v) for v in y)
    within = float(np.mean([np.var(v, ddof=1) for v in y])) if s > 1 else None
    means = np.array([v.mean() for v in y])
    out = {"sessions_sd_log": math.sqrt(within) if within is not None else None,
           "processes_sd_log": None, "time_trend_rel": None}
    if len(means) > 1:
        var_means = float(np.var(means, ddof=1)) - (within / s if within is not None else 0.0)
        out["processes_sd_log"] = math.sqrt(max(var_means, 0.0))
    if len(means) > 2:
        x = np.asarray(times if times is not None else range(len(means)), dtype=np.float64)
        i, j = np.triu_indices(len(x), k=1)
        ok = x[j] != x[i]
        if ok.any():
            slope = float(np.median((means[j] - means[i])[ok] / (x[j] - x[i])[ok]))
            out["time_trend_rel"] = math.expm1(slope * float(np.ptp(x)))
    return out


CAMPAIGN_LEVEL_METHOD = ("between-campaign variance of log p50 over earlier campaigns of this cell minus "
                         "their mean within-campaign variance (method of moments); added on the log scale")


def _log_var(interval) -> float | None:
    """The variance on the log scale implied by a 95 % interval [lo, hi] (normal approximation)."""
    if not interval or interval[0] <= 0:
        return None
    return ((math.log(interval[1]) - math.log(interval[0])) / (2 * stats.Z975)) ** 2


def campaign_level(earlier: list) -> dict:
    """The spread of this cell between campaigns, from earlier campaigns' results
    (:func:`host.campaign.store.earlier_cells`): ``sd_log`` = sqrt(max(0, var(ln p50) −
    mean within-campaign variance)), needs >= 2 earlier campaigns (else None). A campaign
    samples the machine for seconds to minutes; its state also changes between campaigns
    (Kalibera & Jones's top level: repeated executions), and only repeated campaigns can
    measure that."""
    out = {"earlier_campaigns": len(earlier), "sd_log": None, "campaigns": [e["campaign"] for e in earlier],
           "method": CAMPAIGN_LEVEL_METHOD}
    if len(earlier) >= 2:
        y = np.log([e["p50_ms"] for e in earlier])
        within = float(np.mean([_log_var(e["ci95"]) or 0.0 for e in earlier]))
        out["sd_log"] = math.sqrt(max(float(np.var(y, ddof=1)) - within, 0.0))
    return out


def _widen(estimate: float, interval, extra_var: float) -> list | None:
    """``interval`` (log-symmetric approximation) with ``extra_var`` added on the log scale."""
    v = _log_var(interval)
    if v is None:
        return None
    half = stats.Z975 * math.sqrt(v + extra_var)
    return [estimate * math.exp(-half), estimate * math.exp(half)]


def _rel(estimate: float, interval) -> float | None:
    return None if not interval else (interval[1] - interval[0]) / (2 * estimate)


def with_campaign_level(interval: dict, level: dict) -> dict:
    """The cell's intervals: the within-campaign ones (``ci95_within``, ``rerun95_within``)
    and the reported ones, which add the between-campaign variance when it is known (the CI
    once: this campaign is one draw of the machine's state; the re-run interval twice)."""
    est, sd = interval["estimate"], level.get("sd_log")
    out = dict(interval, ci95_within=interval["ci95"], rerun95_within=interval["rerun95"])
    if sd is not None:
        out["ci95"] = _widen(est, interval["ci95"], sd ** 2)
        out["rerun95"] = _widen(est, interval["rerun95"], 2 * sd ** 2)
    for key in ("ci95", "rerun95", "ci95_within", "rerun95_within"):
        out[key + "_rel"] = _rel(est, out[key])
    return out


def cell_latency(docs: list, arrays: list, interval: dict) -> dict:
    """The cell's ``latency`` block from its processes' results and kept latencies.

    ``latency_ms_p50`` and its intervals are the repetition estimate (median of the session
    medians; hierarchical bootstrap over processes; ``interval`` from
    :func:`with_campaign_level`); ``latency_ms_p99`` likewise when every
    session has >= 100 iterations (else the pooled p99, without an interval). Mean, min,
    max, the other percentiles, CoVs and throughputs are over every kept iteration.
    """
    pooled = np.concatenate([a for per_proc in arrays for a in per_proc])
    blocks = [b for d in docs for b in d["sessions"]]
    loop_ns = int(sum(b["latency"]["duration_s"] for b in blocks) * 1e9)
    out = stats.summarize(pooled, loop_duration_ns=loop_ns,
                          samples_per_call=blocks[0]["latency"]["samples_per_call"])
    out.pop("latency_ms_p50_ci95_loop", None)
    out.pop("median_ci_method", None)
    out.update({
        "latency_ms_p50_pooled": out["latency_ms_p50"],
        "latency_ms_p50": interval["estimate"],
        "latency_ms_p50_ci95": interval["ci95"], "latency_ms_p50_ci95_rel": interval["ci95_rel"],
        "latency_ms_p50_rerun95": interval["rerun95"], "latency_ms_p50_rerun95_rel": interval["rerun95_rel"],
        "latency_ms_p50_ci95_within": interval["ci95_within"],
        "latency_ms_p50_ci95_within_rel": interval["ci95_within_rel"],
        "latency_ms_p50_rerun95_within": interval["rerun95_within"],
        "latency_ms_p50_rerun95_within_rel": interval["rerun95_within_rel"],
        "latency_ms_p99_pooled": out["latency_ms_p99"], "latency_ms_p99_ci95": None,
        "ci_method": interval["method"], "ci_resamples": interval["resamples"],
        "processes": len(docs), "sessions": len(blocks),
        "level": docs[0]["latency"]["level"], "clock": docs[0]["latency"]["clock"],
    })
    if all(b["latency"]["iterations"] >= 100 for b in blocks):
        p99 = stats.repetition_interval([[b["latency"]["latency_ms_p99"] for b in d["sessions"]]
                                         for d in docs])
        out["latency_ms_p99"], out["latency_ms_p99_ci95"] = p99["estimate"], p99["ci95"]
    return out


def _loop_check_shares(records: list) -> dict:
    """Per loop check, the share of processes that failed it."""
    n = len(records)
    return {c: sum(1 for r in records if not r["verdict"]["checks"].get(c, True)) / n for c in _LOOP_CHECKS}


def _load_share(records: list) -> float | None:
    shares = [s["others_cpu_share"] for r in records for s in r["sessions"]
              if s["others_cpu_share"] is not None]
    return float(np.median(shares)) if shares else None


def _precision_reason(latency: dict, records: list, protocol, spent_s: float, load: float | None) -> str:
    rel = latency["latency_ms_p50_ci95_within_rel"]
    got = f"±{rel:.1%}" if rel is not None else "no interval"
    busy = f"; other processes used {load:.0%} of the CPU time" if load is not None and load >= 0.05 else ""
    return (f"machine too noisy for ±{protocol.target_ci:.0%} in {spent_s:.0f} s: achieved {got} over "
            f"{len(records)} processes{busy}; close other programs, raise --max-s (now "
            f"{protocol.max_cell_s:g}) or relax --target-ci")


def _process_modes(records: list) -> str | None:
    """A reason when the processes split into modes: more than :data:`LOOP_CHECK_SHARE` of
    the process medians lie beyond ±50 % of the cell's median (the per-loop second-mode rule,
    one level up); None otherwise."""
    meds = np.array([np.median([s["latency_ms_p50"] for s in r["sessions"]]) for r in records])
    center = float(np.median(meds))
    far = meds[(meds > 1.5 * center) | (meds < center / 1.5)]
    if len(far) < 2 or len(far) / len(meds) <= LOOP_CHECK_SHARE:
        return None
    near = meds[(meds <= 1.5 * center) & (meds >= center / 1.5)]
    return (f"processes split into modes: {len(near)} near {float(np.median(near)):.3g} ms, {len(far)} near "
            f"{float(np.median(far)):.3g} ms (thread placement or contention between fresh processes); "
            "try fewer threads (--threads 1) or close other programs")


def cell_verdict(latency: dict, records: list, protocol, spent_s: float) -> dict:
    """VALID when the protocol ran and the achieved CI is within target, with named checks.

    Checks: ``min_processes_met``; ``precision_met`` (the p50's within-campaign CI relative
    half-width <= ``protocol.target_ci``); ``single_mode_across_processes`` (more than a
    quarter of the process medians beyond ±50 % of the cell's median is a split into modes,
    reported instead of the precision reason: it is why); each loop check of the runner
    (drift, second mode, throttle, loop cap) failed by at most :data:`LOOP_CHECK_SHARE` of
    the processes (fewer: a warning); ``no_trend_across_processes`` (the process medians'
    Theil–Sen change in run order, :func:`level_spread`, is within max(2 × target, 10 %);
    needs >= 5 processes). Other processes'
    CPU share is reported, and named in the precision reason when it is what failed.
    """
    n = len(records)
    shares = _loop_check_shares(records)
    spread = level_spread([[s["latency_ms_p50"] for s in r["sessions"]] for r in records])
    trend = spread["time_trend_rel"]
    load = _load_share(records)
    rel = latency["latency_ms_p50_ci95_within_rel"]
    modes = _process_modes(records)
    checks = {"min_processes_met": n >= protocol.min_processes,
              "precision_met": rel is not None and rel <= protocol.target_ci,
              "single_mode_across_processes": modes is None,
              **{c: share <= LOOP_CHECK_SHARE for c, share in shares.items()},
              "no_trend_across_processes": n < 5 or trend is None
              or abs(trend) <= max(2 * protocol.target_ci, 0.10)}
    reasons, warnings = [], []
    if not checks["min_processes_met"]:
        reasons.append(f"only {n} processes in {spent_s:.0f} s (need {protocol.min_processes}): "
                       "raise --max-s or shorten the loops (--min-s)")
    if modes is not None:
        reasons.append(modes)
    elif checks["min_processes_met"] and not checks["precision_met"]:
        reasons.append(_precision_reason(latency, records, protocol, spent_s, load))
    for c, share in shares.items():
        first = next((reason for r in records for reason in r["verdict"]["reasons"]
                      if not r["verdict"]["checks"].get(c, True)), c)
        text = f"{share:.0%} of processes failed {c}; first: {first}"
        if share > 0:
            (warnings if checks[c] else reasons).append(text)
    if not checks["no_trend_across_processes"]:
        reasons.append(f"latency changed {trend:+.0%} from the cell's first process to its last: "
                       "the machine's state changed during the campaign; re-run when it is quiet")
    seen = {w for r in records for w in r["verdict"]["warnings"] if w.startswith("other processes")}
    warnings += sorted(seen)[:1]
    level = latency.get("campaign_level") or {}
    if level.get("sd_log"):
        warnings.append(f"between {level['earlier_campaigns']} earlier campaigns this cell's p50 varied by "
                        f"±{stats.Z975 * level['sd_log']:.1%} (95 %): the machine's state changes between "
                        "runs; the reported intervals include it")
    elif level.get("earlier_campaigns", 0) < 2:
        warnings.append("the intervals cover this campaign only: a change of the machine's state between "
                        "campaigns is measured once this cell has 2 earlier campaigns in the results folder")
    return {"result": "INVALID" if reasons else "VALID", "reasons": reasons, "checks": checks,
            "warnings": warnings, "others_cpu_share_median": load, "spread": spread}


def cell_levels(per_process: list, latency: dict) -> dict:
    """The cell's latency levels (``host_call``, ``device_compute``, ``device_with_transfers``:
    :mod:`runners.levels`) from each process's: the primary level is the cell's ``latency``
    (with its interval); every other level gets the median, min and max of the processes'
    p50s and their p99s' median — no interval of its own (the cell's interval method is run on
    the primary level only) — and how many processes found it VALID."""
    out = {}
    primary = latency.get("level")
    names = sorted({n for levels in per_process for n in levels}, key=lambda n: (n != primary, n))
    for name in names:
        blocks = [levels[name] for levels in per_process if name in levels]
        if name == primary:
            out[name] = dict(latency, scope="the cell's primary level: see latency")
            continue
        p50 = [b.get("latency_ms_p50") for b in blocks if b.get("latency_ms_p50") is not None]
        p99 = [b.get("latency_ms_p99") for b in blocks if b.get("latency_ms_p99") is not None]
        out[name] = {
            "level": name, "processes": len(blocks),
            "latency_ms_p50": float(np.median(p50)) if p50 else None,
            "latency_ms_p50_min": min(p50) if p50 else None, "latency_ms_p50_max": max(p50) if p50 else None,
            "latency_ms_p99": float(np.median(p99)) if p99 else None,
            "valid_processes": sum(1 for b in blocks if (b.get("verdict") or {}).get("result") == "VALID"),
            "scope": "median over the cell's processes of each one's pooled p50 (no interval)",
        }
    return out


def combine(docs: list, arrays: list, records: list, progress, earlier: list | None = None) -> dict:
    """The cell document's measurement part from its processes (all ran and wrote a result)
    and the same cell's ``earlier`` campaigns (:func:`host.campaign.store.earlier_cells`):
    the first process's document with ``latency``, ``verdict``, ``status``, ``realtime``,
    ``warmup`` (first process: the cell's true first inference) and ``repetitions``
    replaced or added. The per-session blocks move into ``repetitions.processes``."""
    doc = dict(docs[0])
    doc.pop("sessions", None)
    level = campaign_level(earlier or [])
    interval = with_campaign_level(progress.interval(), level)
    latency = cell_latency(docs, arrays, interval)
    latency["campaign_level"] = level
    verdict = cell_verdict(latency, records, progress.protocol, progress.spent_s)
    doc["latency"] = latency
    if any(d.get("latency_levels") for d in docs):
        doc["latency_levels"] = cell_levels([d.get("latency_levels") or {} for d in docs], latency)
    doc["verdict"] = {k: verdict[k] for k in ("result", "reasons", "checks", "warnings")}
    doc["status"] = "ok" if verdict["result"] == "VALID" else "invalid"
    fps = doc.get("realtime", {}).get("fps") or doc["configuration"]["policy"]["fps"]
    doc["realtime"] = stats.realtime_verdict(latency, fps)
    firsts = [s["first_inference_ms"] for r in records for s in r["sessions"]]
    doc["warmup"] = dict(doc.get("warmup") or {}, first_inference_ms_median=float(np.median(firsts)))
    iters = [s["cov_robust"] for r in records for s in r["sessions"]]
    doc["repetitions"] = {
        "protocol": progress.protocol.to_json(), "stopped": progress.stopped,
        "spent_s": progress.spent_s, "processes": records,
        "spread": dict(verdict["spread"], iterations_cov_robust_median=float(np.median(iters)),
                       others_cpu_share_median=verdict["others_cpu_share_median"]),
    }
    return doc
