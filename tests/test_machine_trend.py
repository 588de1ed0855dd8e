"""Issue 27: a machine-wide step is the board's, not every cell's own failure; a step confined to
one cell's processes is still that cell's.

Constructed process records (one process per round, as the campaign runs them) and reference
runs (one after each round, as ``campaign.json`` ``reference`` holds them) go through the real
cell verdict (host.campaign.cells.cell_verdict) and the reference's change over the cell's rounds
(machine_change). The expected changes are written out here from the constructed factors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_protocol import PROTOCOL, _latency, _record

from host.campaign.cells import cell_verdict, machine_change
from host.campaign.machine import LOAD_STEP, load_change
from host.campaign.reference import machine_trend, trend_line

ROUNDS = range(1, 11)


def cell(factors) -> list:
    """Ten processes in rounds 1..10, process median = 1 ms × factor."""
    return [_record([f], round_no=r) for r, f in zip(ROUNDS, factors)]


def reference(factors, rounds=range(0, 10)) -> list:
    """The reference's runs after rounds 0..9 (round 10's has not run when the cell ends)."""
    return [{"round": r, "latency_ms_p50": 2.0 * f} for r, f in zip(rounds, factors)]


STEADY = [1.0] * 10
# +30 % spread evenly over the campaign, on the log scale: factor 1.3 ** (k / 9)
RAMP = [1.3 ** (k / 9) for k in range(10)]


def test_the_reference_change_over_the_cells_rounds():
    # the reference ramps by 1.3 ** (1/9) per round; over the cell's 9 rounds: +30 %
    found = machine_change(reference(RAMP), cell(STEADY))
    assert found["change"] == pytest.approx(0.30, abs=1e-9)
    assert found["rounds"] == [0, 10] and found["runs"] == 10
    assert machine_change(reference(RAMP)[:2], cell(STEADY)) is None  # too few reference runs
    assert machine_change(None, cell(STEADY)) is None
    resumed = cell(STEADY)[:5] + [_record([1.0], round_no=r) for r in range(1, 6)]  # rounds from 1 again
    assert machine_change(reference(RAMP), resumed) is None
    odd = reference(RAMP) + [{"round": 3, "latency_ms_p50": "fast"}, {"latency_ms_p50": 1.0}, None]
    assert machine_change(odd, cell(STEADY))["change"] == pytest.approx(0.30, abs=1e-9)


def test_a_machine_wide_step_is_the_boards_not_the_cells_own():
    records = cell(RAMP)
    alone = cell_verdict(_latency(0.02), records, PROTOCOL, spent_s=5.0)
    assert alone["checks"]["no_trend_across_processes"] is False  # without the reference: the cell's own
    v = cell_verdict(_latency(0.02), records, PROTOCOL, spent_s=5.0,
                     machine=machine_change(reference(RAMP), records))
    assert v["result"] == "INVALID"  # its number still depends on when it ran
    assert v["checks"]["no_trend_across_processes"] is True and v["checks"]["machine_steady"] is False
    assert list(v["reasons_by_check"]) == ["machine_steady"]
    reason = v["reasons_by_check"]["machine_steady"]
    assert "the reference workload changed +30% over the same rounds (0-10), this cell +30%" in reason
    assert "a machine trend, not this cell's" in reason


def test_a_step_confined_to_one_cell_stays_that_cells():
    records = cell(RAMP)
    v = cell_verdict(_latency(0.02), records, PROTOCOL, spent_s=5.0,
                     machine=machine_change(reference(STEADY), records))
    assert v["checks"]["no_trend_across_processes"] is False and "machine_steady" not in v["checks"]
    reason = v["reasons_by_check"]["no_trend_across_processes"]
    assert reason.startswith("latency changed +30% from the cell's")


@pytest.mark.parametrize("ref_total, cell_total, boards", [
    (1.30, 1.30, True),    # the same step
    (1.25, 1.32, True),    # net +5.6 %: within the 10 % bound
    (1.12, 1.32, False),   # the board moved +12 %, the cell +32 %: net +18 %, the cell's own
    (0.75, 1.30, False),   # the board got faster, the cell slower
    (1.08, 1.20, False),   # the board moved within the bound: no machine trend to speak of
])
def test_which_trend_is_whose(ref_total, cell_total, boards):
    ramp = [cell_total ** (k / 9) for k in range(10)]
    ref = [ref_total ** (k / 9) for k in range(10)]
    records = cell(ramp)
    machine = machine_change(reference(ref), records)
    assert machine["change"] == pytest.approx(ref_total - 1, abs=1e-9)
    assert math.isclose(1 + machine["change"], ref_total)
    v = cell_verdict(_latency(0.02), records, PROTOCOL, spent_s=5.0, machine=machine)
    assert ("machine_steady" in v["checks"]) is boards
    assert v["checks"]["no_trend_across_processes"] is boards
    assert v["result"] == "INVALID"


def test_a_steady_cell_on_a_moving_board_is_not_blamed():
    records = cell(list(np.full(10, 1.0) + 0.001 * np.arange(10)))
    v = cell_verdict(_latency(0.02), records, PROTOCOL, spent_s=5.0,
                     machine=machine_change(reference(RAMP), records))
    assert v["result"] == "VALID" and "machine_steady" not in v["checks"]


# A CPU hog from round 6 on: other processes take half of a 2-core board; this runtime's
# latency steps up by a third (seen on this VM: squeezenet under two busy loops, a single-thread
# reference workload barely moved, so the reference alone cannot see it).
HOG = [0.02] * 5 + [0.5] * 5
STEP = [1.0] * 5 + [4 / 3] * 5  # Theil-Sen over the 10 processes: (4/3) ** (9/8) - 1 = +38 %


def loaded_cell(factors, others) -> list:
    return [_record([f], round_no=r, others=o) for r, f, o in zip(ROUNDS, factors, others)]


def test_a_change_of_the_boards_load_is_the_boards_not_the_cells_own():
    records = loaded_cell(STEP, HOG)
    v = cell_verdict(_latency(0.02), records, PROTOCOL, spent_s=5.0,
                     machine=machine_change(reference(STEADY), records))
    assert v["checks"]["no_trend_across_processes"] is True and v["checks"]["machine_steady"] is False
    # the step: rounds 1-5 (0.02 each), rounds 6-10 (0.5 each)
    reason = v["reasons_by_check"]["machine_steady"]
    assert ("other processes used 2% of its CPU in this cell's processes before the step and 50% after it"
            in reason)
    assert "(rounds 1-10), this cell +38%: a machine change, not this cell's" in reason
    found = load_change(records)
    assert found == {"first": 0.02, "last": 0.5, "change": pytest.approx(0.48), "rounds": [1, 10]}


def test_a_step_with_a_steady_load_stays_the_cells_own():
    for others in ([0.02] * 10, [0.02] * 5 + [0.02 + LOAD_STEP * 0.9] * 5):
        records = loaded_cell(STEP, others)
        v = cell_verdict(_latency(0.02), records, PROTOCOL, spent_s=5.0,
                         machine=machine_change(reference(STEADY), records))
        assert v["checks"]["no_trend_across_processes"] is False and "machine_steady" not in v["checks"]


def test_load_change_needs_four_processes_that_report_it():
    records = loaded_cell(STEP, HOG)
    for r in records[3:]:
        r["sessions"][0]["others_cpu_share"] = None
    assert load_change(records) is None
    assert load_change(loaded_cell(STEP, HOG)[:3]) is None


def test_the_campaign_note_names_a_load_change_once():
    runs = [{"round": r, "latency_ms_p50": 1.15, "others_cpu_share": o} for r, o in zip(range(1, 10), HOG)]
    trend = machine_trend(runs)
    assert trend["trend"] is False and trend["load_step"] is True  # the reference's speed did not move
    assert (trend["load_first"], trend["load_last"]) == (0.02, 0.5)
    line = trend_line("local", trend)
    assert line == ("machine trend on local: other processes used 2% of its CPU before round 6 and 50% from "
                    "it on: the whole board's speed moved, and every cell on it with it")
    quiet = [dict(r, others_cpu_share=0.02) for r in runs]
    assert trend_line("local", machine_trend(quiet)) is None
    old = [{"round": r, "latency_ms_p50": 1.15} for r in range(1, 10)]  # records from before the share
    assert machine_trend(old)["load_step"] is False and trend_line("local", machine_trend(old)) is None


def test_a_load_that_starts_a_few_rounds_in_is_found_where_it_starts():
    """bench/machine_step.py's run at 2988782: two busy loops from 25 s on, a campaign of 22 rounds,
    so only rounds 1-3 ran before them; between the first and last thirds the load did not differ.
    The step is found at round 4; one spike, or two, is not a step (medians of >= 3 runs a side)."""
    others = [0.03, 0.02, 0.04] + [0.49, 0.51, 0.5, 0.48] * 4 + [0.5, 0.47, 0.52]
    runs = [{"round": r, "latency_ms_p50": 1.17, "others_cpu_share": o} for r, o in enumerate(others, 1)]
    trend = machine_trend(runs)
    assert trend["load_step"] is True and trend["load_from_round"] == 4
    assert (trend["load_first"], trend["load_last"]) == (0.03, 0.5)
    spikes = [0.02] * 8 + [0.6, 0.02, 0.6] + [0.02] * 8
    runs = [{"round": r, "latency_ms_p50": 1.17, "others_cpu_share": o} for r, o in enumerate(spikes, 1)]
    assert machine_trend(runs)["load_step"] is False
    few = [0.0] * 2 + [0.5] * 3  # two runs before the step: too few to tell
    short = [{"round": r, "latency_ms_p50": 1.17, "others_cpu_share": o} for r, o in enumerate(few, 1)]
    assert machine_trend(short)["load_step"] is False


def test_a_load_from_a_cells_fourth_process_on_is_the_boards():
    """bench/machine_step.py at 2988782: digits_cnn and MobileNetV2 x0.25 ran rounds 1-21 with two
    busy loops from round 4 on; their processes' load was 2 % then 50 %, so the first and the last
    third both held the hog and their trend was blamed on them. The step is at process 4."""
    hog = [0.02, 0.03, 0.02] + [0.5] * 18
    ramp = [1.0] * 3 + [1.1 + 0.02 * i for i in range(18)]  # a trend of about +50 % over the cell
    records = [_record([f], round_no=r, others=o) for r, f, o in zip(range(1, 22), ramp, hog)]
    found = load_change(records)
    assert (found["first"], found["last"]) == (0.02, 0.5)
    ref = [{"round": r, "latency_ms_p50": 2.0} for r in range(0, 21)]
    v = cell_verdict(_latency(0.02), records, PROTOCOL, spent_s=5.0, machine=machine_change(ref, records))
    assert v["checks"]["no_trend_across_processes"] is True and v["checks"]["machine_steady"] is False
    calm = [dict(r, sessions=[dict(s, others_cpu_share=0.02) for s in r["sessions"]]) for r in records]
    v = cell_verdict(_latency(0.02), calm, PROTOCOL, spent_s=5.0, machine=machine_change(ref, calm))
    assert v["checks"]["no_trend_across_processes"] is False  # the same trend, no load: the cell's own
