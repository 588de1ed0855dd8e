"""runners.counters: ``perf stat -x,`` parsing on recorded outputs (tests/fixtures/perf/, origins in
its README), derived figures checked against values computed by hand, and the live software-event
path of ``python -m runners run --counters`` (skipped without perf or when perf_event_paranoid
forbids counting this process)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runners import counters

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "perf"


def _parse(name: str) -> dict:
    return counters.parse_perf_csv((FIX / name).read_text())


# --------------------------------------------------------------------------- recorded outputs


def test_x86_spr_recording():
    ev = _parse("x86_spr_lkml_kan_liang_2023.csv")
    # the metric-only lines (TopdownL1 ...) are not events
    assert sorted(ev) == ["branch-misses", "branches", "context-switches", "cpu-clock", "cpu-cycles",
                          "cpu-migrations", "instructions", "page-faults"]
    assert ev["cpu-cycles"]["count"] == 52288305 and ev["cpu-cycles"]["names"] == ["cycles"]
    assert ev["instructions"]["count"] == 37977214
    assert ev["cpu-clock"]["count"] == 225851.20 and ev["cpu-clock"]["unit"] == "msec"
    assert ev["cpu-cycles"]["percent_enabled"] == 100.0 and not ev["cpu-cycles"]["multiplexed"]
    assert ev["instructions"]["run_time"] == 225850071251
    d = counters.derive(ev, iterations=1000, latency_ms_total=500.0)
    # by hand: 37977214 / 52288305 = 0.7263042; perf itself printed "0.73 insn per cycle"
    assert d["ipc"] == pytest.approx(0.7263042, abs=1e-7)
    assert round(d["ipc"], 2) == 0.73
    assert d["branch_misses_per_inference"] == pytest.approx(51.102)
    assert d["cache_miss_rate"] is None and "cache-misses not measured" in d["unavailable"]["cache_miss_rate"]
    assert d["smir"] is None and d["dtlb_load_misses_per_inference"] is None


def test_x86_hybrid_recording_sums_pmus_and_flags_multiplexing():
    ev = _parse("x86_hybrid_lkml_kan_liang_2023.csv")
    cyc, ins = ev["cpu-cycles"], ev["instructions"]
    assert cyc["names"] == ["cpu_core/cycles/", "cpu_atom/cycles/"]
    assert cyc["count"] == 6766433 + 256500230 == 263266663
    assert ins["count"] == 4688595 + 37487490 == 42176085
    assert cyc["multiplexed"] and cyc["percent_enabled"] == 54.0  # cpu_atom ran 54 % of the window
    assert ins["multiplexed"] and ins["percent_enabled"] == 63.0
    assert not ev["cpu-clock"]["multiplexed"]
    d = counters.derive(ev, iterations=10, latency_ms_total=1000.0)
    assert d["ipc"] == pytest.approx(0.1602029, abs=1e-7)
    assert "cpu-cycles" in d["multiplexed_inputs"] and "instructions" in d["multiplexed_inputs"]
    assert d["per_inference"]["branch-misses"] == pytest.approx((41359 + 1020231) / 10)


def test_x86_vm_without_pmu_recording_unsupported_never_zero():
    """Recorded on this project's CI machine (x86_64 VM, no PMU): every hardware event is
    <not supported>; its count must be None, not 0; software events are counted."""
    ev = _parse("x86_vm_no_pmu_perf6.1_own.csv")
    for name in counters.MODELGAUGE_EVENTS:
        assert ev[name]["status"] == "not supported" and ev[name]["count"] is None
        assert not ev[name]["supported"] and "not supported" in ev[name]["reason"]
    assert ev["task-clock"]["count"] == 136.01 and ev["context-switches"]["count"] == 69
    assert ev["page-faults"]["count"] == 0 and ev["page-faults"]["supported"]  # a real 0 stays 0
    d = counters.derive(ev, iterations=100, latency_ms_total=130.0, window_ms=136.0)
    assert all(d[k] is None for k in ("ipc", "cache_miss_rate", "l1d_miss_rate", "smir"))
    assert d["unavailable"]["smir"] == "dTLB-load-misses: not supported"
    assert d["task_clock_ms_per_inference"] == pytest.approx(1.3601)
    assert d["cpus_utilized"] == pytest.approx(136.01 / 136.0)


def test_arm_handwritten_format_sample():
    """HAND-WRITTEN (see the fixture's header): the ':u' suffix, <not counted>, multiplexing."""
    ev = _parse("arm_HANDWRITTEN_manpage_format.csv")
    assert ev["cpu-cycles"]["count"] == 812345678 and ev["cpu-cycles"]["names"] == ["cpu-cycles:u"]
    assert ev["branch-misses"]["status"] == "not counted" and ev["branch-misses"]["count"] is None
    assert ev["L1-dcache-loads"]["multiplexed"] and ev["L1-dcache-loads"]["percent_enabled"] == 75.0
    d = counters.derive(ev, iterations=1000, latency_ms_total=250.0)
    # by hand: 1002345678 / 812345678 = 1.2338906; 234567 / 4567890 = 0.0513513;
    # 4567890 / 345678901 = 0.0132143; SMIR = (98765 / 1000) / (250 / 1000) / 1e6 = 3.9506e-4
    assert d["ipc"] == pytest.approx(1.2338906, rel=1e-7)
    assert d["cache_miss_rate"] == pytest.approx(0.0513513, rel=1e-5)
    assert d["l1d_miss_rate"] == pytest.approx(0.0132142, rel=1e-5)
    assert d["smir"] == pytest.approx(3.9506e-4, rel=1e-9)
    assert d["branch_misses_per_inference"] is None
    assert d["unavailable"]["branch_misses_per_inference"] == "branch-misses: not counted"


def test_line_formats_from_the_man_page():
    # interval prefix, per-CPU prefix, -r variance after the event, metric-only line
    rec = counters.parse_line("1.001054218,10412873551,,cycles,585352542,58.51,,")
    assert rec["value"] == 10412873551 and rec["percent_enabled"] == 58.51 and rec["event"] == "cycles"
    rec = counters.parse_line("CPU0,1.50,msec,cpu-clock,1502781,100.00,1.052,CPUs utilized")
    assert rec["value"] == 1.5 and rec["unit"] == "msec" and rec["metric"] == ["1.052", "CPUs utilized"]
    rec = counters.parse_line("1523456789,,cycles,0.45%,2000000000,100.00,,")
    assert rec["variance"] == "0.45%" and rec["run_time"] == 2000000000 and rec["percent_enabled"] == 100.0
    assert counters.parse_line(",,,,,70.1,%  tma_backend_bound") is None
    assert counters.parse_line("# started on x") is None
    assert counters.canonical("armv8_cortex_a520/instructions/u") == "instructions"


def test_smir_definition_by_hand():
    ev = {"dTLB-load-misses": {"count": 2_000_000, "supported": True, "status": "counted",
                               "multiplexed": False, "unit": ""}}
    # 2e6 misses over 100 inferences = 2e4 per inference; mean latency 4 ms -> 2e4 / 4 / 1e6 = 0.005
    assert counters.derive(ev, 100, 400.0)["smir"] == pytest.approx(0.005)


# --------------------------------------------------------------------------- live (this machine)


def _perf_or_skip() -> str:
    perf = shutil.which("perf")
    if perf is None:
        pytest.skip("perf is not installed (linux-perf)")
    probe = subprocess.run([perf, "stat", "-x,", "-e", "task-clock", "true"], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0 or "task-clock" not in probe.stderr:
        paranoid = Path("/proc/sys/kernel/perf_event_paranoid")
        level = paranoid.read_text().strip() if paranoid.exists() else "?"
        pytest.skip(f"perf stat cannot count here (perf_event_paranoid={level}): "
                    f"{probe.stderr.strip()[-200:]}")
    return perf


def test_live_software_events_around_a_loop():
    _perf_or_skip()
    watch = counters.LoopCounters(("task-clock", "context-switches", "page-faults"))
    watch.start()
    try:
        lat = []
        for _ in range(2000):
            x = sum(range(2000))
            lat.append(100_000)
        block = watch.stop(lat, 1, loop_ns=200_000_000)
    finally:
        watch.close()
    assert x > 0
    assert block["available"], block
    ev = block["events"]
    assert ev["task-clock"]["supported"] and ev["task-clock"]["count"] > 0
    assert ev["task-clock"]["unit"] == "msec"
    assert ev["context-switches"]["supported"] and ev["page-faults"]["supported"]
    assert block["iterations"] == 2000 and block["derived"]["task_clock_ms_per_inference"] > 0
    assert "--control" in block["argv"] and "-D" in block["argv"]
    assert watch.perf.dir is None and watch.perf.proc.poll() is not None  # cleaned up, perf ended


def test_runner_counters_flag_end_to_end(tmp_path):
    _perf_or_skip()
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "runners", "run", "--backend", "null", "--counters", "--warmup-iters", "2",
         "--warmup-s", "0", "--min-iters", "200", "--min-s", "0.05", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode in (0, 3), proc.stderr
    doc = json.loads(out.read_text())
    block = doc["counters"]
    assert block["available"] and block["session"] == 0
    assert block["iterations"] >= 200
    assert block["events"]["task-clock"]["supported"]
    for name in counters.MODELGAUGE_EVENTS:  # supported on a board with a PMU; never a fake 0 here
        ev = block["events"][name]
        assert ev["count"] is None if not ev["supported"] else ev["count"] >= 0


def test_perf_missing_is_recorded_not_raised():
    watch = counters.LoopCounters(("task-clock",), perf="perf-does-not-exist-here")
    watch.start()
    block = watch.stop([1, 2, 3], 1)
    watch.close()
    assert block["available"] is False and "not found" in block["reason"]
