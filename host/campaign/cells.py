"""A cell from its runner processes: the cell-level latency block, the spread at each
level, the verdict and the per-process record (``repetitions``).

Statistics are :mod:`runners.stats`'s (one implementation for runner and host); what is
here is how a campaign puts processes together. Definitions: docs/measurement.md.
"""

from __future__ import annotations

import math

import numpy as np

from host.campaign.device_effect import log_var, plausible
from host.campaign.machine import load_change, machine_change, machine_state, theil_sen_slope, trend_verdict
from runners import stats

#: A loop check (drift, second mode, throttle) fails the cell when more than this share
#: of its processes failed it; fewer is a warning (one odd process among many is what the
#: interval over processes is for).
LOOP_CHECK_SHARE = 0.25
LOOP_CHECKS = ("no_drift", "modes_stable_across_sessions", "no_throttle", "max_duration_not_hit")


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
            "outside_count": checks["second_mode"].get("outside_count"),
            "stall_time_share": checks["second_mode"].get("stall_time_share"),
            "mode_ms": checks["second_mode"].get("mode_ms"),
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
        slope = theil_sen_slope(x, means)
        if slope is not None:
            out["time_trend_rel"] = math.expm1(slope * float(np.ptp(x)))
    return out


#: A p99 gets a 95 % interval when every session ran at least this many iterations.
P99_MIN_ITERATIONS = 100

CAMPAIGN_LEVEL_METHOD = ("between-campaign variance of log p50 over earlier campaigns of this cell minus "
                         "their mean within-campaign variance (method of moments), pooled with the "
                         "device's spread for a new cell weighted by degrees of freedom (moderated "
                         "variance, Smyth 2004) and at least the device's shared campaign variance; "
                         "without history of its own the device's (device_level); added on the log "
                         "scale at the t quantile of its degrees of freedom")
#: A cell's own between-campaign spread is used from this many earlier campaigns of the cell on.
CELL_MIN_CAMPAIGNS = 2


def _cell_spread(earlier: list) -> float | None:
    """The cell's own between-campaign variance of ln p50 (>= :data:`CELL_MIN_CAMPAIGNS`
    earlier campaigns, else None)."""
    if len(earlier) < CELL_MIN_CAMPAIGNS:
        return None
    y = np.log([e["p50_ms"] for e in earlier])
    within = float(np.mean([log_var(e["ci95"]) or 0.0 for e in earlier]))
    return max(float(np.var(y, ddof=1)) - within, 0.0)


def _moderated(own: float, own_df: int, dev: dict) -> tuple:
    """(variance, df, source) of a cell with history of its own: its own between-campaign
    variance pooled with the device's spread for a new cell, each weighted by its degrees of
    freedom — the moderated variance of Smyth (2004), "Linear models and empirical Bayes
    methods for assessing differential expression", *Stat. Appl. Genet. Mol. Biol.* 3(1), eq. 3,
    with the device's fit as the prior — then at least the device's shared campaign variance,
    which every cell of the device has and which is learned from more data. When the device's
    cells differ in how much they move (one model far more than the others: its
    ``cell_prior_df``, :func:`host.campaign.device_effect.cell_prior`), the prior is a typical
    cell's spread with its degrees of freedom, when those are fewer than the device's (the
    cells differ by more than chance), and a cell that moves more than that keeps its own
    spread: one wild model neither widens every other cell's interval nor narrows its own.
    Without a device spread: the cell's own, with ``own_df``."""
    prior, prior_df, shared = dev.get("sd_log"), dev.get("df"), dev.get("shared_sd_log")
    if prior is None or not prior_df:
        return own, own_df, "cell"
    differ = shared is not None and (dev.get("cell_prior_df") or math.inf) < prior_df
    if differ:  # the cells differ (cell_prior): a typical cell's spread, with its degrees of freedom
        prior, prior_df = math.sqrt(shared ** 2 + dev["cell_prior_sd_log"] ** 2), dev["cell_prior_df"]
    var, df = (prior_df * prior ** 2 + own_df * own) / (prior_df + own_df), prior_df + own_df
    if differ and own > var:  # a cell that moves more than the typical one: its own
        var, df = own, own_df
    if shared is not None and shared ** 2 > var:
        return shared ** 2, dev.get("shared_df"), "cell+device"
    return var, df, "cell+device"


def campaign_level(earlier: list, device: dict | None = None) -> dict:
    """The spread of this cell between campaigns. A campaign samples the machine for seconds
    to minutes; its state also changes between campaigns (Kalibera & Jones's top level:
    repeated executions), and only repeated campaigns can measure that.

    ``source`` says which spread ``sd_log`` (with ``df``, its degrees of freedom) is:
    ``"cell+device"`` when the cell has >= :data:`CELL_MIN_CAMPAIGNS` earlier campaigns
    (:func:`host.campaign.store.earlier_cells`) and the device a spread: the cell's own
    between-campaign variance, sqrt(max(0, var(ln p50) − mean within-campaign variance))
    (``cell_sd_log``, ``len(earlier) − 1`` degrees of freedom), pooled with the device's by
    :func:`_moderated`; ``"cell"``: the cell's own alone (the device has no spread); ``"device"``:
    no history of its own, the device's spread for a cell new to it (``device``:
    :func:`host.campaign.device_effect.device_level`), when the device has >= 2 other campaigns;
    else ``"none"`` (``sd_log`` None). Earlier p50s that are not plausible latencies
    (:func:`host.campaign.device_effect.plausible`: a hand-edited cell) are passed over."""
    earlier = [e for e in earlier if plausible(e.get("p50_ms"))]
    out = {"earlier_campaigns": len(earlier), "campaigns": [e["campaign"] for e in earlier],
           "source": "none", "sd_log": None, "df": None, "cell_sd_log": None, "device": device,
           "method": CAMPAIGN_LEVEL_METHOD}
    own, dev = _cell_spread(earlier), device or {}
    if own is not None:
        var, df, source = _moderated(own, len(earlier) - 1, dev)
        out.update(source=source, cell_sd_log=math.sqrt(own), sd_log=math.sqrt(var),
                   df=df if var > 0 else None)
    elif dev.get("sd_log") is not None:
        out.update(source="device", sd_log=dev["sd_log"], df=dev.get("df"))
    return out


def _t975(df: float | None) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (None: the normal's)."""
    from scipy.stats import t as t_dist  # here: scipy.stats takes a while to import

    return float(t_dist.ppf(0.975, df)) if df else stats.Z975


def _widen(estimate: float, interval, extra_var: float, df: float | None) -> list | None:
    """``interval`` (log-symmetric approximation) with ``extra_var`` added on the log scale: the
    half-width is sqrt(z² v + t² extra_var), each part at its own 95 % quantile — the
    within-campaign one normal, the between-campaign one Student's t with its ``df`` degrees of
    freedom (None: normal). A spread learned from few campaigns widens the interval instead of
    under-covering; Welch–Satterthwaite on the estimated parts would narrow it exactly when the
    between-campaign estimate came out small by chance."""
    v = log_var(interval)
    if v is None:
        return None
    half = math.sqrt(stats.Z975 ** 2 * v + _t975(df) ** 2 * extra_var)
    return [estimate * math.exp(-half), estimate * math.exp(half)]


def _rel(estimate: float, interval) -> float | None:
    return None if not interval else (interval[1] - interval[0]) / (2 * estimate)


def _hull(interval, factor: float) -> list | None:
    """The smallest interval holding ``interval`` and ``interval`` scaled by ``factor``."""
    if not interval or factor == 1.0:
        return interval
    return [min(interval[0], interval[0] * factor), max(interval[1], interval[1] * factor)]


def with_campaign_level(interval: dict, level: dict) -> dict:
    """The cell's intervals: the within-campaign ones (``ci95_within``, ``rerun95_within``)
    and the reported ones, which add the between-campaign variance when it is known (the CI
    once: this campaign is one draw of the machine's state; the re-run interval twice). When the
    board ran off its usual speed (``level["machine_state"]``, :func:`machine_state`: the
    reference workload ``exp(shift_log)`` times its usual p50) by more than the campaign level
    already allows for (``|shift_log| > t sd_log``, t at its 97.5 % quantile with the level's
    degrees of freedom; or no ``sd_log``), both reported intervals
    are also stretched to hold themselves scaled back to the usual speed (``stretched``: True):
    a re-run may find the board still in this state or back in its usual one, and the cell's
    long-run value is at the usual speed (the hull of both; a step the history never saw still
    cannot be foreseen)."""
    est, sd = interval["estimate"], level.get("sd_log")
    out = dict(interval, ci95_within=interval["ci95"], rerun95_within=interval["rerun95"])
    if sd is not None:
        out["ci95"] = _widen(est, interval["ci95"], sd ** 2, level.get("df"))
        out["rerun95"] = _widen(est, interval["rerun95"], 2 * sd ** 2, level.get("df"))
    state = level.get("machine_state")
    if state:
        state["stretched"] = sd is None or abs(state["shift_log"]) > _t975(level.get("df")) * sd
    if state and state["stretched"]:
        back = math.exp(-state["shift_log"])
        out["ci95"], out["rerun95"] = _hull(out["ci95"], back), _hull(out["rerun95"], back)
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
    if all(b["latency"]["iterations"] >= P99_MIN_ITERATIONS for b in blocks):
        p99 = stats.repetition_interval([[b["latency"]["latency_ms_p99"] for b in d["sessions"]]
                                         for d in docs])
        out["latency_ms_p99"], out["latency_ms_p99_ci95"] = p99["estimate"], p99["ci95"]
    return out


def _loop_check_shares(records: list) -> dict:
    """Per loop check, the share of processes that failed it."""
    n = len(records)
    return {c: sum(1 for r in records if not r["verdict"]["checks"].get(c, True)) / n for c in LOOP_CHECKS}


def _process_reason(verdict: dict, check: str) -> str | None:
    """The reason a process gave for failing ``check``: its ``reasons_by_check`` entry; for a
    runner without them, its one reason when that check is the only one it failed."""
    if "reasons_by_check" in verdict:
        return verdict["reasons_by_check"].get(check)
    failed = [c for c, ok in verdict["checks"].items() if not ok]
    return verdict["reasons"][0] if failed == [check] and verdict.get("reasons") else None


def _first_reason(records: list, check: str) -> str:
    return next((text for r in records if not r["verdict"]["checks"].get(check, True)
                 for text in [_process_reason(r["verdict"], check)] if text), "no reason given")


def _process_mode_groups(records: list) -> list:
    """Per process, its sessions' far iterations summed and its share of loop time in stalls
    (:func:`runners.stats.second_mode`; weighted by the sessions' durations)."""
    groups = []
    for r in records:
        used = [s for s in r["sessions"] if s.get("outside_count") is not None and s.get("iterations")]
        if used:
            modes = [s["mode_ms"] for s in used if s.get("mode_ms") is not None]
            timed = [s for s in used if s.get("stall_time_share") is not None and s.get("duration_s")]
            groups.append({"outside_count": sum(s["outside_count"] for s in used),
                           "iterations": sum(s["iterations"] for s in used),
                           "mode_ms": float(np.median(modes)) if modes else None,
                           "median_ms": float(np.median([s["latency_ms_p50"] for s in used])),
                           "time_share": (sum(s["stall_time_share"] * s["duration_s"] for s in timed)
                                          / sum(s["duration_s"] for s in timed)) if timed else None})
    return groups


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


def cell_verdict(latency: dict, records: list, protocol, spent_s: float,
                 mode_share_max: float = 0.10, machine: dict | None = None) -> dict:
    """VALID when the protocol ran, the achieved CI is within target and nothing says the
    number would not reproduce; the checks are named as the conditions they require.

    Checks: ``min_processes_met``; ``precision_met`` (the p50's within-campaign CI relative
    half-width <= ``protocol.target_ci``); ``process_medians_agree`` (more than a quarter of
    the process medians beyond ±50 % of the cell's median is a split into modes, reported
    instead of the precision reason: it is why); ``modes_stable_across_processes`` (a second
    mode — some process with more than ``mode_share_max`` of its iterations far from the
    median — holds the same share in every process, :func:`runners.stats.modes_stable`: then
    it is the system's and a warning names its share and latency; a share that varies is
    contention, INVALID); ``stalls_stable_across_processes`` (the share of loop time in
    stalls — the process lost the CPU — is the same in every process, :func:`runners.stats.shares_stable`:
    a fast model's p50 hardly moves when other programs take the CPU, its samples/s and tail
    do); each loop check of the runner (drift, modes across sessions,
    throttle, loop cap) failed by at most :data:`LOOP_CHECK_SHARE` of the processes (fewer:
    a warning); ``no_trend_across_processes`` (the process medians' Theil–Sen change in run
    order, :func:`level_spread`, is within max(2 × target, 10 %); needs >= 5 processes), unless
    the board moved with it: ``machine`` (:func:`machine_change`) beyond that bound with
    the cell's trend net of it within it, or other processes' load on the board changed over the
    cell's processes (:func:`host.campaign.machine.load_change`); then ``machine_steady`` fails
    instead, naming the board's change, and the cell's own trend check holds (issue 27: a
    machine-wide step is the board's, reported as such; a step confined to one cell's processes
    stays the cell's).
    Other processes' CPU share is reported, and named in the precision reason when it is
    what failed.

    Returns:
        ``{"result", "reasons": [str], "reasons_by_check": {check: str}, "checks", "warnings":
        [str], "warnings_by_check": {check: str}, "others_cpu_share_median", "spread"}``: each
        reason and check-bound warning sits under the one check it explains.
    """
    n = len(records)
    shares = _loop_check_shares(records)
    spread = level_spread([[s["latency_ms_p50"] for s in r["sessions"]] for r in records])
    trend = spread["time_trend_rel"]
    load = _load_share(records)
    rel = latency["latency_ms_p50_ci95_within_rel"]
    split = _process_modes(records)
    groups = _process_mode_groups(records)
    modes = stats.modes_stable(groups, mode_share_max)
    stalls = stats.shares_stable([g["time_share"] for g in groups if g["time_share"] is not None],
                                 rel=stats.STALL_REL)
    trend_checks, trend_reasons = trend_verdict(n, trend, protocol, machine, load_change(records))
    checks = {"min_processes_met": n >= protocol.min_processes,
              "precision_met": rel is not None and rel <= protocol.target_ci,
              "process_medians_agree": split is None,
              "modes_stable_across_processes": modes["stable"],
              "stalls_stable_across_processes": stalls["stable"],
              **{c: share <= LOOP_CHECK_SHARE for c, share in shares.items()},
              **trend_checks}
    reasons, notes = {}, {}
    if not checks["min_processes_met"]:
        reasons["min_processes_met"] = (f"only {n} processes in {spent_s:.0f} s (need "
                                        f"{protocol.min_processes}): raise --max-s or shorten the loops "
                                        "(--min-s)")
    if split is not None:
        reasons["process_medians_agree"] = split
    elif checks["min_processes_met"] and not checks["precision_met"]:
        reasons["precision_met"] = _precision_reason(latency, records, protocol, spent_s, load)
    if not modes["stable"]:
        reasons["modes_stable_across_processes"] = stats.mode_reason(modes, "processes")
    elif modes["second_mode"]:
        notes["modes_stable_across_processes"] = stats.mode_warning(modes, "processes")
    if not stalls["stable"]:
        reasons["stalls_stable_across_processes"] = stats.stall_reason(stalls)
    for c, share in shares.items():
        if share > 0:
            text = f"{share:.0%} of processes failed it; first: {_first_reason(records, c)}"
            (notes if checks[c] else reasons)[c] = text
    reasons.update(trend_reasons)
    warnings = [f"{c}: {text}" for c, text in notes.items()]
    seen = {w for r in records for w in r["verdict"]["warnings"] if w.startswith("other processes")}
    warnings += sorted(seen)[:1]
    warnings += _campaign_level_warnings(latency.get("campaign_level") or {})
    return {"result": "INVALID" if reasons else "VALID", "reasons": [f"{c}: {t}" for c, t in reasons.items()],
            "reasons_by_check": reasons, "checks": checks, "warnings": warnings, "warnings_by_check": notes,
            "others_cpu_share_median": load, "spread": spread}


def _prior_text(dev: dict) -> str:
    """What a device spread that includes the assumed prior (:func:`host.campaign.device_effect.with_prior`)
    says about it; "" without one."""
    prior = dev.get("prior")
    if not prior:
        return ""
    measured = stats.Z975 * (dev.get("measured_sd_log") or 0)
    return (f"; measured ±{measured:.1%} over {dev.get('measured_df', 0):.0f} degrees of freedom, pooled "
            f"with an assumed ±{stats.Z975 * prior['sd_log']:.1%} at {prior['df']} while the device "
            f"has little history")


def _campaign_level_warnings(level: dict) -> list:
    sd, df = level.get("sd_log"), level.get("df")
    few = f" (learned from {df:.0f} degrees of freedom: the intervals stay wide until more campaigns)" \
        if df is not None and df < 4 else ""
    dev = level.get("device") or {}
    if sd and level.get("source") == "device" and dev.get("prior"):
        return [f"this device's spread between campaigns is taken as ±{stats.Z975 * sd:.1%} "
                f"(95 %{_prior_text(dev)}, {dev.get('campaigns')} campaigns): this cell is new to the "
                f"device, its intervals include it"]
    if sd and level.get("source") == "device":
        shared = stats.Z975 * (dev.get("shared_sd_log") or 0)
        return [f"between {dev.get('campaigns')} other campaigns this device's cells varied by "
                f"±{stats.Z975 * sd:.1%} (95 %; ±{shared:.1%} shared by "
                f"all its cells): this cell is new to the device, its intervals include the device's "
                f"spread{few}"]
    if sd:
        cell_dev = level.get("source") == "cell+device"
        pooled = f" pooled with the device's{_prior_text(dev)}" if cell_dev else ""
        return [f"between {level['earlier_campaigns']} earlier campaigns this cell's p50 varied by "
                f"±{stats.Z975 * sd:.1%} (95 %; its own spread{pooled}): the machine's state changes "
                f"between runs; the reported intervals include it{few}"]
    if level.get("source", "none") == "none" and level.get("earlier_campaigns", 0) < 2:
        return ["the intervals cover this campaign only: a change of the machine's state between "
                "campaigns is measured once this cell or this device has 2 earlier campaigns (in the "
                "results folder or the device's history on this host; host calibrate adds some)"]
    return []


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


def combine(docs: list, arrays: list, records: list, progress, earlier: list | None = None,
            device: dict | None = None, reference: list | None = None) -> dict:
    """The cell document's measurement part from its processes (all ran and wrote a result),
    the same cell's ``earlier`` campaigns (:func:`host.campaign.store.earlier_cells`) and the
    device's campaign effect (:func:`host.campaign.device_effect.device_level_in`) and this
    campaign's reference runs on the device so far (``reference``, :func:`machine_change`):
    the first process's document with ``latency``, ``verdict``, ``status``, ``realtime``,
    ``warmup`` (first process: the cell's true first inference) and ``repetitions``
    replaced or added. The per-session blocks move into ``repetitions.processes``. A scheduled
    scenario's cell (paced, multi-stream) is :func:`host.campaign.scheduled.combine_scheduled`'s."""
    if progress.protocol.fixed_processes is not None:
        from host.campaign.scheduled import combine_scheduled

        return combine_scheduled(docs, arrays, records, progress)
    doc = dict(docs[0])
    doc.pop("sessions", None)
    level = campaign_level(earlier or [], device)
    level["machine_state"] = machine_state(reference, records, device)
    interval = with_campaign_level(progress.interval(), level)
    latency = cell_latency(docs, arrays, interval)
    latency["campaign_level"] = level
    policy = (doc.get("configuration") or {}).get("policy") or {}
    verdict = cell_verdict(latency, records, progress.protocol, progress.spent_s,
                           mode_share_max=policy.get("mode_share_max", 0.10),
                           machine=machine_change(reference, records))
    doc["latency"] = latency
    if any(d.get("latency_levels") for d in docs):
        doc["latency_levels"] = cell_levels([d.get("latency_levels") or {} for d in docs], latency)
    doc["verdict"] = {k: verdict[k] for k in ("result", "reasons", "reasons_by_check", "checks", "warnings",
                                              "warnings_by_check")}
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
