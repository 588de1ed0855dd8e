"""The budget rule (host.analysis.budgets) on constructed cells: meets / uncertain / misses / no
meter / not measured, each with the statistic it names."""

from __future__ import annotations

import pytest

from host.analysis.budgets import Budgets, decide, judge, wilson_interval


def _cell(p99=10.0, ci=(9.0, 11.0), *, status="ok", verdict="VALID", power=None, memory=None, accuracy=None,
          p50=8.0, p50_ci=(7.5, 8.5)):
    cell = {"status": status, "cell": {"model_stem": "m"},
            "latency": {"latency_ms_p99": p99, "latency_ms_p99_ci95": list(ci) if ci else None,
                        "latency_ms_p50": p50, "latency_ms_p50_ci95": list(p50_ci) if p50_ci else None},
            "verdict": {"result": verdict, "checks": {"drift_within_bound": verdict == "VALID"}}}
    if power is not None:
        cell["power"] = power
    if memory is not None:
        cell["repetitions"] = {"processes": [{"memory": {"rss_mib_peak": m, "rss_mib_before_session": 40.0},
                                              "sessions": [{"latency_ms_p50": 1.0}]} for m in memory]}
    if accuracy is not None:
        cell["accuracy"] = accuracy
    return cell


@pytest.mark.parametrize("fps, expected", [
    (1000 / 12.0, "meets"),      # budget 12 ms, interval 9..11
    (1000 / 11.0, "meets"),      # upper end exactly at the limit
    (1000 / 10.0, "uncertain"),  # 10 ms inside 9..11
    (1000 / 8.5, "misses"),      # 8.5 ms below the lower end
])
def test_latency_by_p99_interval(fps, expected):
    check = judge(_cell(), Budgets(fps=fps)).checks[0]
    assert (check.budget, check.statistic, check.verdict) == ("latency", "latency_ms_p99", expected)


def test_p50_statistic_and_the_tighter_of_fps_and_ms():
    b = Budgets(fps=50, latency_ms=9.0, statistic="p50")  # 20 ms vs 9 ms: 9 ms counts
    check = judge(_cell(), b).checks[0]
    assert b.latency_limit_ms == 9.0
    assert (check.statistic, check.limit, check.verdict) == ("latency_ms_p50", 9.0, "meets")


def test_no_interval_is_uncertain_even_when_the_value_is_far_inside():
    check = judge(_cell(p99=1.0, ci=None), Budgets(fps=1)).checks[0]
    assert check.verdict == "uncertain" and "no 95 % interval" in check.reason


def test_p99_without_interval_misses_when_the_p50_interval_is_already_above():
    slow = judge(_cell(p99=30.0, ci=None, p50=20.0, p50_ci=(19.0, 21.0)), Budgets(fps=60)).checks[0]
    assert slow.verdict == "misses" and "p50" in slow.reason
    close = judge(_cell(p99=30.0, ci=None, p50=16.0, p50_ci=(15.0, 17.0)), Budgets(fps=60)).checks[0]
    assert close.verdict == "uncertain"


def test_invalid_cell_latency_is_never_a_confident_verdict():
    far_inside = judge(_cell(verdict="INVALID"), Budgets(fps=1)).checks[0]
    far_outside = judge(_cell(verdict="INVALID"), Budgets(latency_ms=1.0)).checks[0]
    assert far_inside.verdict == far_outside.verdict == "uncertain"
    assert "drift_within_bound" in far_inside.reason


def test_failed_cell_is_not_measured():
    j = judge(_cell(status="failed"), Budgets(fps=60, memory_mib=100))
    assert [c.verdict for c in j.checks] == ["not measured", "not measured"]
    assert j.verdict == "uncertain"


def test_power_without_a_meter_says_no_meter():
    j = judge(_cell(), Budgets(power_w=5, energy_mj=2))
    assert [c.verdict for c in j.checks] == ["no meter", "no meter"]
    assert [c.mark for c in j.checks] == ["no meter", "no meter"]


def test_power_and_energy_with_a_meter():
    power = {"meter": {"meter": "um25c"}, "power_w_mean": 4.2, "energy_mj_per_inference": 3.0}
    j = judge(_cell(power=power), Budgets(power_w=5, energy_mj=2.5))
    assert [(c.statistic, c.verdict) for c in j.checks] == [("power_w_mean", "meets"),
                                                            ("energy_mj_per_inference", "misses")]
    assert j.verdict == "misses" and j.reasons() == ["energy: the value is above 2.5 mJ"]


def test_memory_uses_the_spread_over_processes_and_names_its_scope():
    cell = _cell(memory=[90.0, 95.0, 102.0])
    process = judge(cell, Budgets(memory_mib=100)).checks[0]
    assert (process.statistic, process.value, process.interval, process.verdict) == \
        ("rss_mib_peak", 102.0, (90.0, 102.0), "uncertain")
    model = judge(cell, Budgets(memory_mib=100, memory_scope="model")).checks[0]
    assert (model.statistic, model.interval, model.verdict) == ("rss_mib_model", (50.0, 62.0), "meets")


def test_all_budgets_met_is_meets():
    j = judge(_cell(memory=[50.0, 60.0]), Budgets(fps=60, memory_mib=100))
    assert j.verdict == "meets" and j.reasons() == []


def test_accuracy_floor_uses_wilson_interval():
    # 80 of 100 correct: Wilson 95 % interval 0.711..0.867 (hand-computed from Wilson 1927)
    cell = _cell(accuracy={"top1": 0.8, "n": 100})
    assert judge(cell, Budgets(accuracy_min=0.70)).checks[0].verdict == "meets"
    assert judge(cell, Budgets(accuracy_min=0.75)).checks[0].verdict == "uncertain"
    assert judge(cell, Budgets(accuracy_min=0.90)).checks[0].verdict == "misses"


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), Statistics in Medicine 17:857, table I: 81/263 -> 0.2553..0.3662 (method 3)
    lo, hi = wilson_interval(81, 263)
    assert lo == pytest.approx(0.2553, abs=5e-5) and hi == pytest.approx(0.3662, abs=5e-5)
    lo, hi = wilson_interval(0, 10)  # ibid.: 0/10 -> 0.0000..0.2775
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=5e-5)
    assert wilson_interval(1, 0) is None


def test_decide_floor_and_ceiling_edges():
    assert decide(5.0, 5.0, None)[0] == "meets"
    assert decide(5.0, 5.0001, None)[0] == "misses"
    assert decide(0.5, 0.5, (0.5, 0.6), kind="min")[0] == "meets"
    assert decide(0.5, None, None)[0] == "not measured"


@pytest.mark.parametrize("kwargs", [dict(fps=0), dict(latency_ms=-1), dict(memory_mib=float("nan")),
                                    dict(power_w=float("inf")), dict(accuracy_min=1.5),
                                    dict(statistic="p42"), dict(memory_scope="heap")])
def test_absurd_budgets_are_refused(kwargs):
    with pytest.raises(ValueError):
        Budgets(**kwargs)


def test_no_budget_judges_nothing():
    assert judge(_cell(), Budgets()).checks == ()


def test_a_p99_budget_runs_enough_iterations_for_the_p99_interval():
    """Without --min-iters a p99 budget (the default) asks 100 iterations a loop, the count the p99's
    interval needs (host.campaign.cells); a given --min-iters or a p50 budget keeps the preset's."""
    from host.campaign.protocol import PRESETS
    from host.cli.bench import _enough_for_p99
    from host.cli.options import Statistic

    _, policy = PRESETS["default"]
    assert policy.min_iterations == 50
    assert _enough_for_p99(policy, Statistic.p99, None).min_iterations == 100
    assert _enough_for_p99(policy, Statistic.p99, 20).min_iterations == 50  # given: the caller's policy
    assert _enough_for_p99(policy, Statistic.p50, None).min_iterations == 50


def test_figures_are_never_printed_in_exponent_form():
    from host.cli.budget_table import quantity, with_interval

    assert with_interval(0.609, [0.548, 1.69], "ms") == "609 (548–1690) µs"
    assert quantity(1234.5, "MiB") == "1230 MiB" and quantity(0.0123, "ms") == "12.3 µs"
    assert with_interval(16.7, [16.1, 17.2], "ms") == "16.7 (16.1–17.2) ms"


@pytest.mark.parametrize("p99, shown", [(8.4e-05, "0.000084 ms"), (1690.4, "1690 ms"), (0.5, "0.5 ms")])
def test_reasons_never_print_figures_in_exponent_form(p99, shown):
    """Seen on a real screen: "latency_ms_p99 8.4e-05 ms has no 95 % interval"."""
    check = judge(_cell(p99=p99, ci=None, p50=p99, p50_ci=None), Budgets(fps=0.01)).checks[0]
    assert f"latency_ms_p99 {shown} has no 95 % interval" in check.reason
    assert "e-0" not in check.reason and "e+0" not in check.reason
