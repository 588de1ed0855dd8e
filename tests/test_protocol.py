"""The repetition protocol on constructed data: adaptive stopping (a fake clock: the
processes' wall times are given), the cell verdict's checks, the spread at each level,
the samples sidecar, and comparisons (`host compare`) of synthetic campaigns with a
known difference and with none."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from host.analysis.compare import compare_campaigns, indistinguishable, ratio
from host.campaign import samples
from host.campaign.cells import cell_verdict, level_spread
from host.campaign.protocol import PRESETS, Progress, Protocol
from host.cli import app
from runners.core import Policy

PROTOCOL = Protocol(target_ci=0.05, min_processes=5, max_cell_s=10.0)


def _progress(medians, wall_s=0.5, protocol=PROTOCOL):
    """Feed processes one by one; return (progress, number of processes when it stopped)."""
    p = Progress(protocol)
    for n, m in enumerate(medians, 1):
        p.add(m if isinstance(m, list) else [m], wall_s)
        if p.decide():
            return p, n
    return p, None


def test_a_steady_cell_stops_at_the_minimum_with_the_target_met():
    rng = np.random.default_rng(1)
    p, n = _progress(list(1.0 + rng.normal(0, 0.005, 50)))
    assert n == 5 and p.stopped.startswith("target met") and p.interval()["ci95_rel"] <= 0.05


def test_a_noisy_cell_keeps_adding_processes_until_the_target_or_the_budget():
    rng = np.random.default_rng(2)
    noisy = list(np.exp(rng.normal(0, 0.10, 200)))
    p, n = _progress(noisy)  # 0.5 s each, 10 s budget: stops by 20 processes
    assert 5 < n <= 20
    if p.stopped.startswith("budget"):
        assert n == 20 and "achieved ±" in p.stopped
    else:
        assert p.interval()["ci95_rel"] <= 0.05


def test_the_budget_stops_a_cell_even_before_the_minimum():
    p, n = _progress([1.0, 1.5, 0.7, 1.2, 1.0, 1.3], wall_s=6.0)
    assert n == 2 and p.stopped.startswith("budget spent") and "no interval yet" in p.stopped


def test_more_noise_needs_more_processes():
    rng = np.random.default_rng(3)
    needed = []
    for sd in (0.01, 0.04, 0.08):
        p, n = _progress(list(np.exp(rng.normal(0, sd, 400))), protocol=Protocol(max_cell_s=1e9))
        needed.append(n)
    assert needed[0] <= needed[1] <= needed[2] and needed[0] < needed[2]


def test_presets_are_consistent():
    for protocol, policy in PRESETS.values():
        protocol.check()
        policy.check()
    assert PRESETS["quick"][0].target_ci > PRESETS["default"][0].target_ci > PRESETS["rigorous"][0].target_ci
    with pytest.raises(ValueError, match="min-processes"):
        Protocol(min_processes=3).check()


def _record(medians, *, round_no=1, failed=(), others=0.0):
    checks = {c: c not in failed for c in ("no_drift", "modes_stable_across_sessions", "no_throttle",
                                          "max_duration_not_hit")}
    sessions = [{"latency_ms_p50": m, "others_cpu_share": others} for m in medians]
    return {"round": round_no, "sessions": sessions,
            "verdict": {"checks": checks, "reasons": [f"{c} failed here" for c in failed], "warnings": []}}


def _latency(rel):
    return {"latency_ms_p50_ci95_within_rel": rel, "latency_ms_p50_ci95_rel": rel}


def test_cell_verdict_valid_when_precise_and_clean():
    records = [_record([1.0 + 0.001 * i]) for i in range(6)]
    v = cell_verdict(_latency(0.01), records, PROTOCOL, spent_s=3.0)
    assert v["result"] == "VALID" and all(v["checks"].values())


def test_cell_verdict_names_the_noise_and_what_to_do():
    records = [_record([1.0], others=0.4) for _ in range(20)]
    v = cell_verdict(_latency(0.12), records, PROTOCOL, spent_s=10.0)
    assert v["result"] == "INVALID" and v["checks"]["precision_met"] is False
    (reason,) = v["reasons"]
    assert "too noisy for ±5% in 10 s: achieved ±12.0% over 20 processes" in reason
    assert "other processes used 40%" in reason and "--max-s" in reason


def test_one_drifting_process_in_many_warns_a_quarter_fails():
    few = [_record([1.0], failed=("no_drift",))] + [_record([1.0]) for _ in range(7)]
    v = cell_verdict(_latency(0.01), few, PROTOCOL, spent_s=3.0)
    assert v["result"] == "VALID" and v["warnings"][0].startswith("no_drift: 12% of processes failed it")
    many = [_record([1.0], failed=("no_drift",)) for _ in range(3)] + [_record([1.0]) for _ in range(5)]
    v = cell_verdict(_latency(0.01), many, PROTOCOL, spent_s=3.0)
    assert v["result"] == "INVALID" and v["checks"]["no_drift"] is False
    assert v["reasons"][0].startswith("no_drift: ")
    assert "no_drift failed here" in v["reasons_by_check"]["no_drift"]


def test_a_trend_across_processes_fails_but_one_odd_process_does_not():
    trend = [_record([m]) for m in np.linspace(1.0, 1.3, 10)]
    v = cell_verdict(_latency(0.04), trend, PROTOCOL, spent_s=5.0)
    assert v["checks"]["no_trend_across_processes"] is False and "+30%" in v["reasons"][0]
    odd = [_record([2.0])] + [_record([1.0 + 0.001 * i]) for i in range(9)]
    assert cell_verdict(_latency(0.04), odd, PROTOCOL, spent_s=5.0)["checks"]["no_trend_across_processes"]


def test_level_spread_recovers_known_components():
    rng = np.random.default_rng(4)
    groups = [list(p * np.exp(rng.normal(0, 0.05, 4))) for p in np.exp(rng.normal(0, 0.20, 60))]
    spread = level_spread(groups)
    assert spread["sessions_sd_log"] == pytest.approx(0.05, rel=0.15)
    assert spread["processes_sd_log"] == pytest.approx(0.20, rel=0.25)
    assert abs(spread["time_trend_rel"]) < 0.3
    assert level_spread([[1.0, 1.1]])["processes_sd_log"] is None


def test_samples_sidecar_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    procs = [[rng.integers(1, 10**7, n) for n in (100, 37)], [rng.integers(1, 10**7, 5)]]
    block = samples.write_samples(tmp_path / "c.samples.npz", procs)
    assert block["iterations"] == 142 and block["thinned_every"] == 1 and block["bytes"] > 0
    back = samples.read_samples(tmp_path / "c.samples.npz")
    assert [[len(s) for s in p] for p in back] == [[100, 37], [5]]
    assert all(np.array_equal(a, b) for pa, pb in zip(procs, back) for a, b in zip(pa, pb))
    assert [p.name for p in tmp_path.iterdir()] == ["c.samples.npz"]  # no temp file left


def test_large_runs_are_thinned_in_time_order(tmp_path, monkeypatch):
    monkeypatch.setattr(samples, "MAX_SAMPLES", 1000)
    procs = [[np.arange(2500, dtype=np.int64)]]
    block = samples.write_samples(tmp_path / "c.samples.npz", procs)
    assert block["thinned_every"] == 3 and block["iterations"] == 834
    (kept,) = samples.read_samples(tmp_path / "c.samples.npz")[0]
    assert np.array_equal(kept, np.arange(0, 2500, 3))
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises((OSError, ValueError)):
        samples.read_samples(tmp_path / "x.npz")


def _cell(model, medians_by_round, device="d", config="ort-b1-tall"):
    procs = [{"round": r, "sessions": [{"latency_ms_p50": m} for m in ms]} for r, ms in medians_by_round]
    flat = [m for _, ms in medians_by_round for m in ms]
    return {"schema_version": "2.0", "status": "ok", "cell": {"device": device, "model_stem": model,
                                                            "config": config, "campaign": "x"},
            "latency": {"latency_ms_p50": float(np.median(flat))}, "repetitions": {"processes": procs}}


def _campaign(rng, scale=1.0, sd=0.03, n=10, models=("a", "b")):
    out = []
    for k, model in enumerate(models):
        base = (1.0 + k) * scale
        out.append(_cell(model, [(r, [base * math.exp(rng.normal(0, sd))]) for r in range(1, n + 1)]))
    return out


def test_ratio_test_holds_its_level_and_finds_a_known_difference():
    """200 synthetic pairs of cells (10 processes, 3 % between-process spread): with no
    difference the test fires at about its 5 % level; a 10 % difference is found and the
    interval covers the true ratio."""
    rng = np.random.default_rng(6)
    trials, false_pos, found, covered = 200, 0, 0, 0
    for _ in range(trials):
        a, same, slower = _campaign(rng), _campaign(rng), _campaign(rng, scale=1.10)
        false_pos += ratio(a[0], same[0], paired=False)["significant"]
        r = ratio(a[0], slower[0], paired=False)
        found += r["significant"] and r["ratio"] > 1
        covered += r["ci95"][0] <= 1.10 <= r["ci95"][1]
    assert false_pos / trials <= 0.10
    assert found / trials >= 0.90
    assert covered / trials >= 0.88


def test_a_cell_with_too_few_processes_gets_no_interval():
    rng = np.random.default_rng(1)
    r = ratio(_campaign(rng)[0], _cell("a", [(1, [1.0])]))
    assert r["ratio"] is not None and r["ci95"] is None and r["significant"] is None


def test_pairing_by_round_cancels_drift_both_cells_share():
    rng = np.random.default_rng(7)
    drift = np.exp(rng.normal(0, 0.15, 10))  # the machine's speed, round by round
    a = _cell("a", [(r + 1, [1.00 * d * math.exp(rng.normal(0, 0.005))]) for r, d in enumerate(drift)])
    b = _cell("b", [(r + 1, [1.03 * d * math.exp(rng.normal(0, 0.005))]) for r, d in enumerate(drift)])
    paired, unpaired = ratio(a, b), ratio(a, b, paired=False)
    assert paired["paired"] and paired["significant"] is True  # 3 % told apart under 15 % drift
    assert unpaired["significant"] is False
    assert indistinguishable([a, b]) == {}


def test_indistinguishable_marks_neighbours_that_cannot_be_told_apart():
    noise = [1.00, 1.04, 0.97, 1.02, 0.95, 1.05, 0.99, 1.01]  # ±5 %, same spread for all
    cells = [_cell(m, [(r + 1, [base * noise[(r * step) % 8]]) for r in range(8)])
             for m, base, step in (("x", 1.0, 1), ("y", 1.005, 3), ("z", 3.0, 5))]
    ties = indistinguishable(cells)
    assert ties[("x", "d", "x", "ort-b1-tall")] == ["y"] and ties[("x", "d", "y", "ort-b1-tall")] == ["x"]
    assert ("x", "d", "z", "ort-b1-tall") not in ties
    other = dict(cells[0], cell=dict(cells[0]["cell"], campaign="later"))  # the same model, another campaign
    assert ("later", "d", "x", "ort-b1-tall") not in indistinguishable([*cells, other])


def test_compare_campaigns_and_the_cli_exit_code(tmp_path):
    rng = np.random.default_rng(9)
    base, regressed = _campaign(rng), _campaign(rng, scale=1.0)
    regressed[1] = _cell("b", [(r, [2.0 * 1.2 * math.exp(rng.normal(0, 0.03))]) for r in range(1, 11)])
    result = compare_campaigns(base, regressed, fail_above=0.05)
    by_model = {row["model"]: row for row in result["rows"]}
    assert by_model["b"]["change"] == "slower" and by_model["b"]["regression"] is True
    assert by_model["a"]["change"] == "same" and result["regressions"] == 1
    for name, cells in (("A", base), ("B", regressed)):
        for cell in cells:
            path = tmp_path / name / "d" / f"{cell['cell']['model_stem']}__ort-b1-tall.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cell))
    run = CliRunner().invoke(app, ["compare", str(tmp_path / "A"), str(tmp_path / "B"), "--fail-above", "5%"],
                             env={"COLUMNS": "200"})
    assert run.exit_code == 4, run.output
    assert "REGRESSION" in run.output and "1 regression(s) beyond 5.0%" in run.output
    ok = CliRunner().invoke(app, ["compare", str(tmp_path / "A"), str(tmp_path / "B"), "--fail-above", "50%"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(app, ["compare", str(tmp_path / "A"), str(tmp_path / "B"), "--fail-above", "x"])
    assert bad.exit_code == 2
    missing = CliRunner().invoke(app, ["compare", str(tmp_path / "A"), str(tmp_path / "nope")])
    assert missing.exit_code == 1


def test_policy_is_imported_for_the_presets():
    assert isinstance(PRESETS["default"][1], Policy)


def test_campaign_level_from_earlier_campaigns():
    """Known answer: 40 earlier campaigns whose p50 varies 5 % (log sd) between campaigns,
    each with a ±1 % within-campaign interval."""
    from host.campaign.cells import campaign_level, with_campaign_level

    rng = np.random.default_rng(12)
    earlier = [{"campaign": f"c{k}", "p50_ms": p, "ci95": [p * math.exp(-0.0196), p * math.exp(0.0196)]}
               for k, p in enumerate(np.exp(rng.normal(0, 0.05, 40)))]
    level = campaign_level(earlier)
    assert level["earlier_campaigns"] == 40 and level["sd_log"] == pytest.approx(0.05, rel=0.25)
    assert campaign_level(earlier[:1])["sd_log"] is None  # one earlier campaign: no variance
    interval = {"estimate": 1.0, "ci95": [0.99, 1.01], "rerun95": [0.985, 1.015], "ci95_rel": 0.01,
                "rerun95_rel": 0.015}
    wide = with_campaign_level(interval, level)
    assert wide["ci95_within"] == [0.99, 1.01]  # kept for the stopping rule
    assert wide["ci95_rel"] == pytest.approx(math.expm1(1.96 * math.hypot(0.0051, level["sd_log"])), rel=0.05)
    assert wide["rerun95_rel"] > wide["ci95_rel"] > 0.05
    same = with_campaign_level(interval, campaign_level([]))
    assert same["ci95"] == [0.99, 1.01] and same["ci95_rel"] == pytest.approx(0.01)


def test_earlier_cells_are_the_same_cell_in_other_campaigns(tmp_path):
    from host.campaign.store import cell_path, earlier_cells

    def put(campaign, sha, status="ok", p50=1.0, start="2026-11-30T00:00:00Z"):
        path = cell_path(tmp_path, campaign, "d", "m", "ort-b1-tall")
        path.parent.mkdir(parents=True, exist_ok=True)
        lat = {"latency_ms_p50": p50, "latency_ms_p50_ci95_within": [0.9, 1.1]}
        doc = {"schema_version": "2.0", "status": status, "model": {"sha256": sha},
               "cell": {"campaign": campaign, "device": "d", "model_stem": "m", "config": "ort-b1-tall"},
               "timestamps": {"start_utc": start}, "latency": lat}
        path.write_text(json.dumps(doc))

    put("old2", "aa", p50=2.0, start="2026-11-30T00:00:02Z")
    put("old1", "aa", p50=1.0, start="2026-11-30T00:00:01Z")
    put("other-model", "bb")
    put("failed", "aa", status="failed")
    put("now", "aa")
    found = earlier_cells(tmp_path, "now", "d", "m", "ort-b1-tall", "aa")
    assert [c["campaign"] for c in found] == ["old1", "old2"] and found[1]["p50_ms"] == 2.0


def test_processes_split_into_two_modes_is_named_with_what_to_do():
    split = [_record([0.135])] * 13 + [_record([0.27])] * 7  # MobileNetV2 with 2 threads, seen here
    v = cell_verdict(_latency(0.3), split, PROTOCOL, spent_s=20.0)
    assert v["checks"]["process_medians_agree"] is False
    (reason,) = v["reasons"]
    assert "13 near 0.135 ms, 7 near 0.27 ms" in reason and "--threads 1" in reason
    one_odd = [_record([1.0 + 0.001 * i]) for i in range(5)] + [_record([2.0])]
    checks = cell_verdict(_latency(0.04), one_odd, PROTOCOL, spent_s=5.0)["checks"]
    assert checks["process_medians_agree"]


def test_cell_levels_take_the_primary_from_the_cell_and_medians_of_the_others():
    from host.campaign.cells import cell_levels

    latency = {"level": "host_call", "latency_ms_p50": 1.5, "latency_ms_p50_ci95": [1.4, 1.6]}
    procs = [{"host_call": {"latency_ms_p50": 9.0},
              "device_compute": {"latency_ms_p50": p, "latency_ms_p99": p + 1, "verdict": {"result": v}}}
             for p, v in ((1.0, "VALID"), (3.0, "INVALID"), (2.0, "VALID"))]
    levels = cell_levels(procs, latency)
    assert list(levels) == ["host_call", "device_compute"]
    assert levels["host_call"]["latency_ms_p50"] == 1.5  # the cell's, not any one process's 9.0
    dc = levels["device_compute"]
    assert (dc["latency_ms_p50"], dc["latency_ms_p50_min"], dc["latency_ms_p50_max"]) == (2.0, 1.0, 3.0)
    assert dc["latency_ms_p99"] == 3.0 and dc["valid_processes"] == 2 and dc["processes"] == 3
