"""Thermal and clocks during a run (issue 24): the board's own sources found by one probe (fake
sysfs trees in the kernel's documented layout, a fake ``vcgencmd`` and a fake ``nvidia-smi``),
one tick command read back into values, the 1 Hz sampler, the window figures and the
``throttled`` warning on constructed timelines, and a real ``--device local`` campaign.

Every expected value is written out by hand from the fake files: m°C / 1000, kHz / 1000, Hz / 1e6.
"""

from __future__ import annotations

import json
import stat
import subprocess
import time
from pathlib import Path

import pytest
from nullbench import FAST, MEASURED, MODEL, runner
from test_meters_onboard import write_tree

from host.campaign.schema import validate_cell
from host.errors import ThermalError
from host.thermal.sampler import ThermalSampler, Tick, read_timeline, write_timeline
from host.thermal.session import NO_SOURCE, ThermalSession, thermal_warnings
from host.thermal.sources import parse_probe, parse_tick, probe_command, throttle_words, tick_command
from host.thermal.summary import summarise

S = 1_000_000_000  # ns per s
NO_NVIDIA = "edgegauge-no-such-nvidia-smi"
NO_VCGENCMD = "edgegauge-no-such-vcgencmd"


# -- fakes ---------------------------------------------------------------------------------------


def zone(n: int, kind: str, millideg) -> dict:
    d = f"sys/class/thermal/thermal_zone{n}"
    return {f"{d}/type": kind, f"{d}/temp": millideg}


def policy(n: int, cur_khz: int, max_khz: int) -> dict:
    d = f"sys/devices/system/cpu/cpufreq/policy{n}"
    return {f"{d}/scaling_cur_freq": cur_khz, f"{d}/cpuinfo_max_freq": max_khz,
            f"{d}/scaling_governor": "performance"}


def sh(command: str) -> str:
    """A board's ``run``: the command in this machine's shell."""
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=30).stdout


def script(path: Path, body: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def fake_vcgencmd(tmp_path: Path, throttled: str = "0x0", arm_hz: int = 1500345728) -> str:
    """A ``vcgencmd`` answering ``get_throttled`` and ``measure_clock arm`` from files beside it
    (the Raspberry Pi firmware's answer formats)."""
    state = tmp_path / "vc"
    write_tree(state, {"throttled": throttled, "arm": arm_hz})
    return script(tmp_path / "bin" / "vcgencmd", f"""
case "$1" in
  get_throttled) echo "throttled=$(cat {state}/throttled)" ;;
  measure_clock) echo "frequency(48)=$(cat {state}/arm)" ;;
  *) echo 'error=2 error_msg="Invalid command"'; exit 2 ;;
esac
""")


def fake_nvidia_smi(tmp_path: Path, rows: list, *, new_driver: bool) -> str:
    """An ``nvidia-smi`` for two GPUs: a driver that knows ``clocks_event_reasons`` (new) or only
    ``clocks_throttle_reasons`` (old, which refuses the new name as nvidia-smi does); a tick's query
    prints ``rows``."""
    (tmp_path / "nv").mkdir(parents=True, exist_ok=True)
    (tmp_path / "nv" / "rows").write_text("".join(r + "\n" for r in rows))
    refuse = "" if new_driver else (
        '*clocks_event_reasons*) echo "Field \\"clocks_event_reasons.active\\" is not a valid field to '
        'query."; exit 2 ;;')
    return script(tmp_path / "bin" / "nvidia-smi", f"""
case "$1" in
  {refuse}
  *temperature.gpu*) cat {tmp_path}/nv/rows ;;
  --query-gpu=index,clocks_*) printf '0, 0x0000000000000000\\n1, 0x0000000000000001\\n' ;;
  *) echo "unexpected $*"; exit 9 ;;
esac
""")


def pi5_tree(root: Path) -> Path:
    """A Raspberry Pi 5: one zone (cpu-thermal), one policy of four cores at 2400 MHz max."""
    return write_tree(root, {**zone(0, "cpu-thermal", 51500), **policy(0, 1800000, 2400000),
                             "sys/devices/system/cpu/cpufreq/policy0/related_cpus": "0 1 2 3"})


def orin_tree(root: Path) -> Path:
    """A Jetson Orin: CPU/GPU zones, an offline zone (-256 °C), two policies, the GPU on devfreq."""
    return write_tree(root, {
        **zone(0, "CPU-therm", 45500), **zone(1, "GPU-therm", 44031), **zone(2, "CV0-therm", -256000),
        **policy(0, 1510400, 1510400), **policy(4, 729600, 1510400),
        "sys/class/devfreq/17000000.ga10b/cur_freq": 624750000,
        "sys/class/devfreq/17000000.ga10b/max_freq": 1020000000,
        "sys/class/devfreq/17000000.ga10b/governor": "nvhost_podgov",
    })


def probe(root: Path, *, vcgencmd: str = NO_VCGENCMD, nvidia_smi: str = NO_NVIDIA):
    src = parse_probe(sh(probe_command(str(root), vcgencmd, nvidia_smi)), vcgencmd=vcgencmd,
                      nvidia_smi=nvidia_smi)
    return src, parse_tick(src, sh(tick_command(src)))


# -- sources: probe and one tick -------------------------------------------------------------------


def test_raspberry_pi_zone_cpufreq_and_vcgencmd(tmp_path):
    root = pi5_tree(tmp_path / "root")
    vc = fake_vcgencmd(tmp_path, throttled="0x50005")
    src, r = probe(root, vcgencmd=vc)
    assert src.zones == [("cpu-thermal", f"{root}/sys/class/thermal/thermal_zone0/temp")]
    assert src.cpufreq == [("cpu/policy0", f"{root}/sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq",
                            2400.0)]
    assert src.vcgencmd == vc and src.nvidia_smi is None and not src.devfreq
    assert r.temps_c == {"cpu-thermal": 51.5}
    assert r.clocks_mhz == {"cpu/policy0": 1800.0, "cpu/arm": 1500.345728}
    assert r.throttle == {"rpi": 0x50005}
    assert throttle_words("rpi", 0x50005) == ["under-voltage detected", "currently throttled",
                                               "under-voltage has occurred", "throttling has occurred"]
    assert [s["kind"] for s in src.describe()] == ["thermal_zone", "cpufreq", "vcgencmd"]


def test_jetson_zones_policies_and_devfreq_gpu(tmp_path):
    root = orin_tree(tmp_path / "root")
    src, r = probe(root)
    assert [n for n, _ in src.zones] == ["CPU-therm", "GPU-therm", "CV0-therm"]
    assert src.devfreq == [("gpu/17000000.ga10b", f"{root}/sys/class/devfreq/17000000.ga10b/cur_freq",
                            1020.0)]
    assert r.temps_c == {"CPU-therm": 45.5, "GPU-therm": 44.031, "CV0-therm": None}  # -256 °C: no reading
    assert r.clocks_mhz == {"cpu/policy0": 1510.4, "cpu/policy4": 729.6, "gpu/17000000.ga10b": 624.75}
    assert src.max_mhz() == {"cpu/policy0": 1510.4, "cpu/policy4": 1510.4, "gpu/17000000.ga10b": 1020.0}
    assert r.throttle == {}


def test_per_cpu_cpufreq_when_there_is_no_policy_folder_and_duplicate_zone_types(tmp_path):
    root = write_tree(tmp_path / "root", {
        **zone(0, "acpitz", 27800), **zone(3, "acpitz", 29800),
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": 3400000,
        "sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq": 800000})
    src, r = probe(root)
    assert [n for n, _, _ in src.cpufreq] == ["cpu/cpu0", "cpu/cpu1"]
    assert r.temps_c == {"acpitz": 27.8, "acpitz#3": 29.8}
    assert r.clocks_mhz == {"cpu/cpu0": 3400.0, "cpu/cpu1": 800.0}


def test_a_file_that_cannot_be_read_is_none_not_an_error(tmp_path):
    root = orin_tree(tmp_path / "root")
    src, _ = probe(root)
    (root / "sys/class/thermal/thermal_zone1/temp").unlink()
    (root / "sys/devices/system/cpu/cpufreq/policy4/scaling_cur_freq").write_text("garbage\n")
    r = parse_tick(src, sh(tick_command(src)))
    assert r.temps_c == {"CPU-therm": 45.5, "GPU-therm": None, "CV0-therm": None}
    assert r.clocks_mhz["cpu/policy4"] is None and r.clocks_mhz["cpu/policy0"] == 1510.4


@pytest.mark.parametrize("new_driver, field", [(True, "clocks_event_reasons.active"),
                                                (False, "clocks_throttle_reasons.active")])
def test_nvidia_smi_clocks_temperature_and_reasons(tmp_path, new_driver, field):
    nv = fake_nvidia_smi(tmp_path, ["0, 67, 1410, 0x0000000000000020", "1, 45, [N/A], 0x0000000000000001"],
                         new_driver=new_driver)
    src, r = probe(tmp_path / "empty", nvidia_smi=nv)
    assert src.nvidia_smi == nv and src.nvidia_field == field and src.gpus == [0, 1]
    assert f"--query-gpu=index,temperature.gpu,clocks.sm,{field}" in tick_command(src)
    assert r.temps_c == {"nvidia0": 67.0, "nvidia1": 45.0}
    assert r.clocks_mhz == {"gpu/nvidia0": 1410.0, "gpu/nvidia1": None}
    assert r.throttle == {"nvidia0": 0x20, "nvidia1": 0x1}
    assert throttle_words("nvidia0", 0xA4) == ["sw_power_cap", "sw_thermal_slowdown",
                                                "hw_power_brake_slowdown"]


def test_a_vcgencmd_that_fails_is_not_a_source_and_says_why(tmp_path):
    vc = script(tmp_path / "bin" / "vcgencmd", 'echo "VCHI initialization failed"; exit 1\n')
    src, _ = probe(tmp_path / "empty", vcgencmd=vc)
    assert src.vcgencmd is None and src.empty
    assert any("VCHI initialization failed" in m for m in src.missing)
    session = ThermalSession(sh, root=str(tmp_path / "empty"), vcgencmd=vc, nvidia_smi=NO_NVIDIA)
    session.open()
    assert session.unavailable["message"] == (
        f"{NO_SOURCE}: no /sys/class/thermal/thermal_zone*/temp; no cpufreq scaling_cur_freq; no devfreq "
        f"cur_freq; {vc} get_throttled answered 'VCHI initialization failed'; no {NO_NVIDIA}")


def test_an_answer_without_any_source_line_is_a_thermal_error(tmp_path):
    src, _ = probe(pi5_tree(tmp_path / "root"))
    with pytest.raises(ThermalError, match="expected one line per source"):
        parse_tick(src, "sh: 1: Syntax error\n")


# -- the window figures and the throttled warning (constructed timelines) --------------------------


def ticks(cpu: dict, *, temps: dict | None = None, gpu: dict | None = None, flags: dict | None = None,
          seconds=range(5, 25)) -> list:
    """One tick per second; ``cpu``/``gpu``: {from second: MHz} step functions; ``flags``:
    {second: {source: bits}} at that second only... until the next entry."""
    def at(steps, s):
        keys = [k for k in sorted(steps) if k <= s]
        return steps[keys[-1]] if keys else None

    out = []
    for s in seconds:
        clocks = {"cpu/policy0": at(cpu, s), "cpu/policy4": 600.0}  # an idle little cluster never counts
        if gpu:
            clocks.update({name: at(steps, s) for name, steps in gpu.items()})
        out.append(Tick(s * S, 1_700_000_000 * S + s * S, 12.0, {"soc": at(temps or {5: 50.0}, s)}, clocks,
                        at(flags or {}, s) or {}))
    return out


WINDOW = (10 * S, 20 * S)


def test_a_clock_drop_inside_the_window_warns_with_its_numbers_and_time():
    got = summarise(ticks({5: 2400.0, 13: 1800.0}), WINDOW)
    assert got["verdict"] == {
        "result": "WARNING", "reasons": [], "checks": {"no_throttle_in_window": False},
        "warnings": ["throttled: CPU clock dropped from 2400 to 1800 MHz (-25.0 %, more than the 10 % "
                     "allowed) 3.0 s into the measured window"]}
    assert got["time_to_throttle_s"] == 3.0
    assert (got["clock_mhz_min"], got["clock_mhz_max"]) == (1800.0, 2400.0)
    assert got["clocks"]["cpu/policy4"] == {"clock_mhz_min": 600.0, "clock_mhz_max": 600.0}
    assert got["samples_in_window"] == 11 and got["window_s"] == 10.0


@pytest.mark.parametrize("steps, lo, hi", [
    ({5: 2400.0, 21: 1800.0}, 2400.0, 2400.0),   # after the window
    ({5: 2400.0, 9: 1800.0}, 1800.0, 1800.0),    # before it: already low at the last tick before
    ({5: 2400.0, 14: 2200.0}, 2200.0, 2400.0),   # -8.3 %: within the 10 %
])
def test_no_warning_for_a_drop_outside_the_window_or_within_the_allowance(steps, lo, hi):
    got = summarise(ticks(steps), WINDOW)
    assert got["verdict"]["result"] == "VALID" and got["verdict"]["warnings"] == []
    assert got["time_to_throttle_s"] is None
    assert (got["clock_mhz_min"], got["clock_mhz_max"]) == (lo, hi)


def test_a_drop_at_the_window_start_counts_from_the_last_tick_before_it():
    got = summarise(ticks({5: 2400.0, 10: 1900.0}), WINDOW)
    assert got["time_to_throttle_s"] == 0.0
    assert "from 2400 to 1900 MHz (-20.8 %" in got["verdict"]["warnings"][0]


def test_raspberry_pi_flags_now_and_newly_occurred_bits_warn_sticky_old_ones_do_not():
    old = {"rpi": 0x50000}  # under-voltage and throttling occurred since boot, before this run
    quiet = summarise(ticks({5: 2400.0}, flags={5: old}), WINDOW)
    assert quiet["verdict"]["result"] == "VALID" and quiet["throttle_flags"] == {"rpi": "0x50000"}
    capped = summarise(ticks({5: 2400.0}, flags={5: old, 15: {"rpi": 0x70002}}), WINDOW)
    assert capped["verdict"]["warnings"] == [
        "throttled: Raspberry Pi get_throttled=0x70002 (arm frequency capped, arm frequency capping has "
        "occurred) 5.0 s into the measured window"]
    assert capped["time_to_throttle_s"] == 5.0
    between = summarise(ticks({5: 2400.0}, flags={5: {"rpi": 0}, 12: {"rpi": 0x40000}}), WINDOW)
    assert between["verdict"]["warnings"] == [
        "throttled: Raspberry Pi get_throttled=0x40000 (throttling has occurred) 2.0 s into the measured "
        "window"]
    late = summarise(ticks({5: 2400.0}, flags={5: {"rpi": 0}, 21: {"rpi": 0x4}}), WINDOW)
    assert late["verdict"]["result"] == "VALID"


def test_nvidia_reasons_warn_on_thermal_and_power_bits_not_on_idle_and_its_clock_is_not_judged():
    gpu = {"gpu/nvidia0": {5: 1980.0, 12: 1410.0}}
    got = summarise(ticks({5: 2400.0}, gpu=gpu, flags={5: {"nvidia0": 0x1}, 17: {"nvidia0": 0x20}}), WINDOW)
    assert got["verdict"]["warnings"] == [
        "throttled: nvidia0 clock event reasons=0x20 (sw_thermal_slowdown) 7.0 s into the measured window"]
    assert got["time_to_throttle_s"] == 7.0
    assert (got["gpu_clock_mhz_min"], got["gpu_clock_mhz_max"]) == (1410.0, 1980.0)


def test_a_jetson_gpu_devfreq_drop_warns_and_the_earliest_evidence_sets_the_time():
    gpu = {"gpu/17000000.ga10b": {5: 1020.0, 16: 816.0}}
    got = summarise(ticks({5: 2400.0, 18: 2000.0}, gpu=gpu), WINDOW)
    assert got["verdict"]["warnings"] == [
        "throttled: GPU clock dropped from 1020 to 816 MHz (-20.0 %, more than the 10 % allowed) 6.0 s into "
        "the measured window",
        "throttled: CPU clock dropped from 2400 to 2000 MHz (-16.7 %, more than the 10 % allowed) 8.0 s into "
        "the measured window"]
    assert got["time_to_throttle_s"] == 6.0


def test_temperatures_in_the_window():
    got = summarise(ticks({5: 2400.0}, temps={5: 48.0, 9: 50.5, 12: 71.25, 21: 90.0}), WINDOW)
    assert (got["temp_c_start"], got["temp_c_max"], got["temp_c_max_zone"]) == (50.5, 71.25, "soc")


def test_a_window_without_a_tick_inside_is_not_judged_and_says_so():
    got = summarise(ticks({5: 2400.0, 11: 1000.0}), (int(10.2 * S), int(10.5 * S)))
    assert got["samples_in_window"] == 0 and got["verdict"]["result"] is None
    assert got["verdict"]["warnings"] == ["no thermal sample inside the measured window (0.3 s, shorter than "
                                          "the sampling interval): nothing judged"]
    assert thermal_warnings(got) == []


# -- sampler, timeline file, session ------------------------------------------------------------------


def test_the_timeline_file_round_trips_exactly(tmp_path):
    src, _ = probe(orin_tree(tmp_path / "root"))
    rows = ticks({5: 2400.0, 13: 1800.0}, flags={5: {"rpi": 0x50005}}, seconds=range(5, 8))
    rows.append(Tick(8 * S, 9 * S, 3.5, error="ThermalError: gone"))
    write_timeline(tmp_path / "x.thermal.csv", rows, src)
    header = (tmp_path / "x.thermal.csv").read_text().splitlines()[0]
    assert header.startswith("t_mono_ns,t_wall_ns,tick_ms,temp_c:CPU-therm,temp_c:GPU-therm,"
                             "temp_c:CV0-therm,")
    back = read_timeline(tmp_path / "x.thermal.csv")
    assert [t.t_mono_ns for t in back] == [5 * S, 6 * S, 7 * S, 8 * S]
    assert back[0].clocks_mhz["cpu/policy0"] == 2400.0 and back[0].throttle == {"rpi": 0x50005}
    assert back[0].temps_c["soc"] == 50.0 and back[0].temps_c["CPU-therm"] is None
    assert back[3].error == "ThermalError: gone" and back[3].tick_ms == 3.5


def test_the_sampler_ticks_on_schedule_and_stops_after_repeated_failures(tmp_path):
    src, _ = probe(pi5_tree(tmp_path / "root"))
    sampler = ThermalSampler(sh, src, interval_s=0.05).start()
    time.sleep(0.5)
    got = sampler.stop()
    assert len(got) >= 5 and all(t.error is None for t in got)
    assert [t.t_mono_ns for t in got] == sorted(t.t_mono_ns for t in got)
    assert all(t.clocks_mhz == {"cpu/policy0": 1800.0} for t in got)

    def broken(command):
        raise ThermalError("the board went away")

    failing = ThermalSampler(broken, src, interval_s=0.01).start()
    time.sleep(0.3)
    bad = failing.stop()
    assert len(bad) == 3 and failing.fatal_error.startswith("stopped after 3 failed reads in a row")


def test_stop_takes_one_last_tick_and_a_cancelled_cell_does_not(tmp_path):
    src, _ = probe(pi5_tree(tmp_path / "root"))
    calls = []

    def run(command):
        calls.append(command)
        return sh(command)

    for final, n in ((True, 2), (False, 1)):
        calls.clear()
        sampler = ThermalSampler(run, src, interval_s=30).start()
        time.sleep(0.3)  # the first tick is at the start; the next would be 30 s later
        assert len(sampler.stop(final=final)) == n and len(calls) == n


def test_a_session_on_a_fake_board_warns_on_a_clock_drop_made_during_the_window(tmp_path):
    root = pi5_tree(tmp_path / "root")
    vc = fake_vcgencmd(tmp_path)
    session = ThermalSession(sh, root=str(root), same_clock=True, interval_s=0.05, vcgencmd=vc,
                             nvidia_smi=NO_NVIDIA)
    session.open()
    assert session.unavailable is None
    token = session.start_cell()
    time.sleep(0.3)
    start = time.monotonic_ns()
    time.sleep(0.5)
    (root / "sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq").write_text("1200000\n")
    (tmp_path / "vc" / "arm").write_text("1200000000\n")
    time.sleep(0.5)
    end = time.monotonic_ns()
    time.sleep(0.3)
    block = session.finish_cell(token, {"loop_start_monotonic_ns": start, "loop_end_monotonic_ns": end,
                                        "iterations": 10}, tmp_path / "m__null-b1-tall.thermal.csv")
    assert block["status"] == "measured" and block["timeline_file"] == "m__null-b1-tall.thermal.csv"
    assert (block["clock_mhz_min"], block["clock_mhz_max"]) == (1200.0, 1800.0)
    assert block["temp_c_max"] == 51.5 and block["alignment"]["method"] == "same clock"
    assert block["verdict"]["result"] == "WARNING"
    assert thermal_warnings(block)[0].startswith(
        "throttled: CPU clock dropped from 1800 to 1200 MHz (-33.3 %")  # the arm clock was 1500: policy0 wins
    assert 0.45 < block["time_to_throttle_s"] < 1.0
    assert len(read_timeline(tmp_path / "m__null-b1-tall.thermal.csv")) == block["samples_total"]
    validate_cell({"schema_version": "2.0", "status": "ok", "cell": {k: "x" for k in
                   ("campaign", "device", "model_stem", "config")}, "thermal": block}, "constructed")


def test_nothing_exposed_is_no_thermal_source_and_every_cell_says_so(tmp_path):
    session = ThermalSession(sh, root=str(tmp_path / "empty"), same_clock=True, vcgencmd=NO_VCGENCMD,
                             nvidia_smi=NO_NVIDIA)
    session.open()
    assert session.start_cell() is None
    block = session.finish_cell(None, {"loop_start_monotonic_ns": 1, "loop_end_monotonic_ns": 2},
                                tmp_path / "x")
    assert block["status"] == NO_SOURCE and block["sources"] == []
    assert block["message"] == (f"{NO_SOURCE}: no /sys/class/thermal/thermal_zone*/temp; no cpufreq "
                                f"scaling_cur_freq; no devfreq cur_freq; no {NO_VCGENCMD}; no {NO_NVIDIA}")
    assert not (tmp_path / "x").exists()


def test_a_failing_probe_is_a_failed_block_not_an_exception(tmp_path):
    def down(command):
        raise ThermalError("connection refused")

    session = ThermalSession(down)
    session.open()
    block = session.finish_cell(session.start_cell(), None, tmp_path / "x.thermal.csv")
    assert block["status"] == "failed" and "connection refused" in block["error"]


# -- a real campaign on this machine -----------------------------------------------------------------


def test_a_local_campaign_records_what_this_machine_exposes(tmp_path, monkeypatch):
    from host.cli.main import app
    from host.thermal.session import NVIDIA_SMI_ENV, ROOT_ENV, VCGENCMD_ENV

    for name in (ROOT_ENV, VCGENCMD_ENV, NVIDIA_SMI_ENV):  # the suite points them at nothing (conftest)
        monkeypatch.delenv(name, raising=False)
    here, _ = probe(Path("/"), vcgencmd="vcgencmd", nvidia_smi="nvidia-smi")
    res = runner.invoke(app, ["bench", str(MODEL), "--results", str(tmp_path), "--campaign", "c", *FAST,
                              "--no-reference"], env={"COLUMNS": "100"})
    assert res.exit_code in MEASURED, res.output
    (path,) = (tmp_path / "c" / "local").glob("identity__*.json")
    cell = json.loads(path.read_text())
    validate_cell(cell, path)
    block = cell["thermal"]
    if here.empty:  # this VM: empty /sys/class/thermal, no cpufreq, no vcgencmd, no nvidia-smi
        assert block["status"] == NO_SOURCE and block["message"].startswith(f"{NO_SOURCE}: no /sys/class")
        assert not list((tmp_path / "c" / "local").glob("*.thermal.csv"))
    else:
        assert block["status"] == "measured" and block["samples_total"] >= 2
        assert (path.parent / block["timeline_file"]).is_file()
        assert block["alignment"]["method"] == "same clock"


def test_the_suites_benches_see_no_thermal_source_on_any_machine(tmp_path):
    from host.cli.main import app

    res = runner.invoke(app, ["bench", str(MODEL), "--results", str(tmp_path), "--campaign", "c", *FAST,
                              "--no-reference"], env={"COLUMNS": "100"})
    assert res.exit_code in MEASURED, res.output
    (path,) = (tmp_path / "c" / "local").glob("identity__*.json")
    assert json.loads(path.read_text())["thermal"]["status"] == NO_SOURCE


def test_the_throttled_warning_is_a_line_under_the_table():
    from host.cli.render import verdict_notes

    cell = {"cell": {"model_stem": "m"}, "status": "ok", "verdict": {"result": "VALID", "checks": {}},
            "thermal": summarise(ticks({5: 2400.0, 13: 1800.0}), WINDOW)}
    assert verdict_notes([cell]) == [
        "m: warning: throttled: CPU clock dropped from 2400 to 1800 MHz (-25.0 %, more than the 10 % "
        "allowed) 3.0 s into the measured window"]
    cell["thermal"] = {"status": NO_SOURCE, "message": f"{NO_SOURCE}: nothing"}
    assert verdict_notes([cell]) == []


# -- the HTML report's plot --------------------------------------------------------------------------


def _plotted_cell(tmp_path) -> dict:
    import numpy as np

    from host.campaign.samples import write_samples

    folder = tmp_path / "c" / "local"
    folder.mkdir(parents=True)
    timeline = ticks({5: 2400.0, 13: 1800.0}, temps={5: 50.0, 12: 70.0})
    src, _ = probe(pi5_tree(tmp_path / "root"))
    write_timeline(folder / "m__null-b1-tall.thermal.csv", timeline, src)
    samples = write_samples(folder / "m__null-b1-tall.samples.npz",
                            [[np.array([3, 3, 5, 5, 20], dtype=np.int64) * 100_000_000]])
    block = {"status": "measured", "timeline_file": "m__null-b1-tall.thermal.csv",
             **summarise(timeline, WINDOW)}
    return {"_path": str(folder / "m__null-b1-tall.json"), "status": "ok", "samples": samples,
            "cell": {"campaign": "c", "device": "local", "model_stem": "m", "config": "null-b1-tall"},
            "latency": {"latency_ms_p50": 0.5}, "thermal": block}


def test_latency_per_second_bins_the_first_loop_by_its_own_call_times(tmp_path):
    from host.analysis.thermal_plot import latency_per_second

    cell = _plotted_cell(tmp_path)
    # a 10 s loop, calls of 0.3, 0.3, 0.5, 0.5, 2.0 s (3.6 s): 1.28 s of the loop's own time per call;
    # they end at 1.58, 3.16, 4.94, 6.72, 10.0 s
    starts, medians = latency_per_second(cell, 10 * S)
    assert starts.tolist() == [1.0, 3.0, 4.0, 6.0, 10.0]
    assert medians.tolist() == [300.0, 300.0, 500.0, 500.0, 2000.0]
    # a 3.6 s loop: back to back, ending at 0.3, 0.6, 1.1, 1.6, 3.6 s: bins 0, 0, 1, 1, 3
    cell["thermal"]["window_end_ns"] = int(13.6 * S)
    starts, medians = latency_per_second(cell, 10 * S)
    assert starts.tolist() == [0.0, 1.0, 3.0] and medians.tolist() == [300.0, 500.0, 2000.0]
    starts, _ = latency_per_second(cell, 8 * S)  # the axis origin 2 s earlier
    assert starts.tolist() == [2.0, 3.0, 5.0]


def test_the_html_report_has_the_thermal_timeline_of_cells_that_have_one(tmp_path):
    from host.analysis.html import write_html
    from host.analysis.thermal_plot import thermal_plots

    cell = _plotted_cell(tmp_path)
    quiet = dict(cell, thermal={"status": NO_SOURCE, "message": f"{NO_SOURCE}: nothing"})
    drawn, notes = thermal_plots([cell, quiet], tmp_path / "png")
    assert [p.kind for p in drawn] == ["thermal_timeline"] and notes == []
    assert drawn[0].path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = write_html([cell], tmp_path / "r.html", "t").read_text()
    assert "local / m (null-b1-tall): latency, temperature and clock" in page
    (tmp_path / "c" / "local" / "m__null-b1-tall.thermal.csv").unlink()
    drawn, notes = thermal_plots([cell], tmp_path / "png")
    assert drawn == [] and notes == ["thermal_timeline: c__local__m__null-b1-tall: no thermal timeline"]


# -- over SSH: a loopback OpenSSH board (tests/labfix.py) ----------------------------------------------


def test_a_board_over_ssh_is_sampled_and_aligned_by_clock_probes(boards, tmp_path, monkeypatch):
    from host.campaign.protocol import Protocol
    from host.campaign.run import run_campaign
    from host.lab.benchconfig import BenchConfig
    from host.lab.board import Board, BoardOptions, open_transport
    from host.lab.inventory import resolve_inventory
    from host.thermal.session import ROOT_ENV
    from runners.core import Policy

    root = orin_tree(tmp_path / "root")  # the loopback board shares this machine's files
    monkeypatch.setenv(ROOT_ENV, str(root))
    devices = resolve_inventory(str(boards.write_inventory(tmp_path / "lab.ini", ["b1"]))).select(["b1"])
    config = BenchConfig(backend="null", timeout_s=60, policy=Policy(
        warmup_min_iterations=1, warmup_min_s=0.0, min_iterations=5, min_duration_s=1.5, cov_max=100.0))
    quick = BoardOptions(connect_timeout=3, retries=1, backoff_s=0.1)
    res = run_campaign([MODEL], devices, config, results=tmp_path / "r", campaign="k", backend="null",
                       open_board=lambda d: Board(d, open_transport(d, quick)), reference=False,
                       protocol=Protocol(target_ci=0.5, max_cell_s=2.0))  # stops after a process or two
    (cell,) = res.cells
    block = cell["thermal"]
    assert block["status"] == "measured", block
    assert block["alignment"]["method"] == "bracketed monotonic-clock probes before and after the cell"
    assert {s["kind"] for s in block["sources"]} == {"thermal_zone", "cpufreq", "devfreq"}
    assert block["samples_in_window"] >= 1 and block["samples_failed"] == 0
    assert (block["temp_c_max"], block["temp_c_max_zone"]) == (45.5, "CPU-therm")
    assert (block["clock_mhz_min"], block["clock_mhz_max"]) == (1510.4, 1510.4)
    assert (block["gpu_clock_mhz_min"], block["gpu_clock_mhz_max"]) == (624.75, 624.75)
    assert block["verdict"]["result"] == "VALID" and block["time_to_throttle_s"] is None
    assert (tmp_path / "r" / "k" / "b1" / block["timeline_file"]).is_file()
