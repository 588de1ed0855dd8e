"""On-host energy counters: powercap RAPL and hwmon power/energy sensors on fake sysfs trees laid out
as the kernel documents them (Documentation/power/powercap/powercap.rst,
Documentation/ABI/testing/sysfs-class-powercap, Documentation/hwmon/sysfs-interface.rst), read here
and through a ``run`` shell; the automatic sources of ``--device local`` (host/power/local.py).
docs/power.md §11. Every expected number is worked out by hand in the test from the tree's values."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
from nullbench import FAST, MEASURED, MODEL, runner
from test_meters_onboard import write_tree as write

from host.cli.main import app
from host.errors import MeterConnectionError, MeterOptionError, MeterProtocolError
from host.power.local import SummedSources, open_local_sources
from host.power.meters import _sysfs, meter_class, open_meter
from host.power.meters.hwmon import HwmonSensor
from host.power.meters.rapl import LABEL, RaplPackage, counter_delta_uj

PC = "sys/class/powercap"
HW = "sys/class/hwmon"
#: A common package range: 2^32 - 1 counts of 61.035 µJ (the kernel prints the product in µJ).
RANGE = 262143328850


def zone(zone_id: str, name: str, energy: int, rng: int = RANGE) -> dict:
    d = f"{PC}/{zone_id}"
    return {f"{d}/name": name, f"{d}/energy_uj": energy, f"{d}/max_energy_range_uj": rng,
            f"{d}/enabled": 1, f"{d}/constraint_0_name": "long_term"}


def set_energy(root: Path, zone_id: str, energy) -> None:
    (root / PC / zone_id / "energy_uj").write_text(f"{energy}\n")


class Clock:
    """Host monotonic ns handed out in order (the meter stamps each read with one)."""

    def __init__(self, *times_s):
        self.times = [round(t * 1e9) for t in times_s]

    def __call__(self) -> int:
        return self.times.pop(0)


def sh_run(command: str) -> str:
    """``run`` as production builds it on a transport: the command in a shell, stdout back."""
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, check=False).stdout


def rapl(mode: str, root: Path, clock, **options) -> RaplPackage:
    return RaplPackage(name="rapl", root=str(root), clock=clock, run=sh_run if mode == "run" else None,
                       **options)


MODES = pytest.mark.parametrize("mode", ["direct", "run"])


# -- RAPL --------------------------------------------------------------------------------------


@MODES
def test_package_power_is_counter_advance_over_host_time(tmp_path, mode):
    """package-0 1 000 000 -> 3 500 000 µJ in 0.25 s: 2.5 J / 0.25 s = 10 W; its core sub-zone
    200 000 -> 700 000 µJ: 2 W and its dram 0 -> 250 000 µJ: 1 W, kept as rails, not summed."""
    write(tmp_path, {**zone("intel-rapl:0", "package-0", 1_000_000),
                     **zone("intel-rapl:0:0", "core", 200_000), **zone("intel-rapl:0:1", "dram", 0)})
    meter = rapl(mode, tmp_path, Clock(10.0, 10.25))
    meter.open()
    assert meter.measured == ["package-0"] and meter.scope == "cpu-package"
    set_energy(tmp_path, "intel-rapl:0", 3_500_000)
    set_energy(tmp_path, "intel-rapl:0:0", 700_000)
    set_energy(tmp_path, "intel-rapl:0:1", 250_000)
    reading = meter.read()
    assert reading.valid and reading.power_w == pytest.approx(10.0, rel=1e-12)
    assert reading.rails == pytest.approx({"package-0": 10.0, "package-0/core": 2.0, "package-0/dram": 1.0},
                                          rel=1e-12)
    info = meter.describe()
    assert info["label"] == LABEL == "CPU package power (RAPL), not wall power"
    assert info["scope"] == "cpu-package" and info["via"] == ("run" if mode == "run" else "local")


@MODES
def test_counter_wrap_around_is_unwrapped_exactly(tmp_path, mode):
    """The counter runs 0 .. RANGE. From RANGE - 328 850 to 1 000 000 in 0.5 s: 328 850 µJ to the top,
    1 µJ for the step from RANGE to 0, then 1 000 000 µJ: 1 328 851 µJ = 1.328851 J / 0.5 s = 2.657702 W."""
    write(tmp_path, zone("intel-rapl:0", "package-0", RANGE - 328_850))
    meter = rapl(mode, tmp_path, Clock(1.0, 1.5, 2.0))
    meter.open()
    set_energy(tmp_path, "intel-rapl:0", 1_000_000)
    reading = meter.read()
    assert reading.valid and reading.power_w == pytest.approx(2.657702, rel=1e-12)
    assert meter.wraps == 1
    set_energy(tmp_path, "intel-rapl:0", 1_400_000)  # no wrap: 400 000 µJ in 0.5 s = 0.8 W
    assert meter.read().power_w == pytest.approx(0.8, rel=1e-12) and meter.wraps == 1


def test_window_energy_straight_from_the_counters(tmp_path):
    """Reads at 0, 1, 2, 3 s with package-0 at 0, 2, 6 J and then 7 J after a wrap (range 6.5 J):
    the unwrapped total is 0, 2, 6, 7 J. Over [0.5 s, 2.5 s] it is 1 J at 0.5 s and 6.5 J at 2.5 s
    (linear between reads): 5.5 J, 2.75 W; the core sub-zone (+1 J a read) is not in it."""
    write(tmp_path, {**zone("intel-rapl:0", "package-0", 0, rng=6_500_000),
                     **zone("intel-rapl:0:0", "core", 0)})
    meter = rapl("direct", tmp_path, Clock(0.0, 1.0, 2.0, 3.0))
    meter.open()
    for package, core in ((2_000_000, 1_000_000), (6_000_000, 2_000_000), (499_999, 3_000_000)):
        set_energy(tmp_path, "intel-rapl:0", package)  # 6 J -> 0.499999 J: 0.5 J, 1 µJ to 0, 0.499999 J
        set_energy(tmp_path, "intel-rapl:0:0", core)
        meter.read()
    assert meter.wraps == 1
    tel = meter.window_telemetry(500_000_000, 2_500_000_000)
    assert tel["energy_j_counter"] == pytest.approx(5.5, rel=1e-12)
    assert tel["power_w_mean_counter"] == pytest.approx(2.75, rel=1e-12) and tel["reads"] == 2
    assert meter.window_telemetry(500_000_000, 3_500_000_000) is None  # past the last read


def test_counter_delta_by_hand():
    assert counter_delta_uj(10, 25, 100) == 15
    assert counter_delta_uj(100, 0, 100) == 1  # the top to zero is one step
    assert counter_delta_uj(95, 4, 100) == 10  # 96..100 is 5, 0 is 1, 1..4 is 4
    assert counter_delta_uj(7, 7, 100) == 0


@MODES
def test_two_packages_are_summed_and_psys_is_kept_apart(tmp_path, mode):
    """package-0 +3 J and package-1 +1 J in 2 s: 2 W in all; psys (+9 J: 4.5 W) is a rail, not summed."""
    write(tmp_path, {**zone("intel-rapl:0", "package-0", 5_000_000), **zone("intel-rapl:1", "package-1", 0),
                     **zone("intel-rapl:2", "psys", 100)})
    meter = rapl(mode, tmp_path, Clock(0.0, 2.0))
    meter.open()
    assert meter.measured == ["package-0", "package-1"]
    set_energy(tmp_path, "intel-rapl:0", 8_000_000)
    set_energy(tmp_path, "intel-rapl:1", 1_000_000)
    set_energy(tmp_path, "intel-rapl:2", 9_000_100)
    reading = meter.read()
    assert reading.power_w == pytest.approx(2.0, rel=1e-12)
    assert reading.rails["psys"] == pytest.approx(4.5, rel=1e-12)


def test_psys_alone_is_measured_when_there_is_no_package(tmp_path):
    write(tmp_path, zone("intel-rapl:0", "psys", 0))
    meter = rapl("direct", tmp_path, Clock(0.0, 1.0))
    meter.open()
    set_energy(tmp_path, "intel-rapl:0", 7_500_000)
    assert meter.measured == ["psys"] and meter.read().power_w == pytest.approx(7.5, rel=1e-12)


@MODES
def test_no_powercap_is_a_connection_error_naming_the_folder(tmp_path, mode):
    (tmp_path / PC / "intel-rapl").mkdir(parents=True)  # the control type alone, no zone
    with pytest.raises(MeterConnectionError, match="no RAPL zone in .*sys/class/powercap") as err:
        rapl(mode, tmp_path, Clock(0.0)).open()
    assert "virtual machines" in err.value.hint


def _deny_energy(monkeypatch, tmp_path):
    """energy_uj mode 0400 as a user sees it. The suite may run as root, which reads any mode, so the
    direct read is made to fail as the kernel fails it for a user, and ``cat`` likewise in a shell."""
    real = _sysfs.read_text

    def read_text(path):
        if path.endswith("/energy_uj"):
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(_sysfs, "read_text", read_text)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cat = bin_dir / "cat"
    cat.write_text('#!/bin/sh\n'
                   'case "$1" in *energy_uj) echo "cat: $1: Permission denied" >&2; exit 1;; esac\n'
                   'exec /bin/cat "$@"\n')
    cat.chmod(cat.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@MODES
def test_root_only_energy_uj_is_a_connection_error_that_says_why(tmp_path, monkeypatch, mode):
    write(tmp_path, zone("intel-rapl:0", "package-0", 123))
    _deny_energy(monkeypatch, tmp_path)
    with pytest.raises(MeterConnectionError, match="Permission denied.*root only.*CVE-2020-8694") as err:
        rapl(mode, tmp_path, Clock(0.0)).open()
    assert "root" in err.value.hint


@MODES
@pytest.mark.parametrize("value", ["abc", "-5", "1.5", ""])
def test_a_counter_that_is_not_an_integer_is_a_protocol_error(tmp_path, mode, value):
    write(tmp_path, zone("intel-rapl:0", "package-0", 0))
    meter = rapl(mode, tmp_path, Clock(0.0, 1.0))
    meter.open()
    set_energy(tmp_path, "intel-rapl:0", value)
    with pytest.raises(MeterProtocolError, match="energy counter in µJ"):
        meter.read()


def test_a_counter_above_its_range_is_a_protocol_error(tmp_path):
    write(tmp_path, zone("intel-rapl:0", "package-0", 0, rng=1000))
    meter = rapl("direct", tmp_path, Clock(0.0, 1.0))
    meter.open()
    set_energy(tmp_path, "intel-rapl:0", 1001)
    with pytest.raises(MeterProtocolError, match="above its range"):
        meter.read()


def test_a_zero_range_is_a_protocol_error(tmp_path):
    write(tmp_path, zone("intel-rapl:0", "package-0", 0, rng=0))
    with pytest.raises(MeterProtocolError, match="range is 0"):
        rapl("direct", tmp_path, Clock(0.0)).open()


def test_a_reset_counter_reads_as_an_absurd_power_and_is_flagged(tmp_path):
    """Someone wrote 0 at 5 kJ: 10 µJ looks like a wrap, (RANGE + 1 - 5e9 + 10) µJ in 0.1 s, about
    2.57 MW, above max_power_w (2000 W): flagged, never a valid sample."""
    write(tmp_path, zone("intel-rapl:0", "package-0", 5_000_000_000))
    meter = rapl("direct", tmp_path, Clock(0.0, 0.1))
    meter.open()
    set_energy(tmp_path, "intel-rapl:0", 10)
    reading = meter.read()
    assert reading.power_w == pytest.approx((RANGE + 1 - 5_000_000_000 + 10) / 1e6 / 0.1, rel=1e-12)
    assert reading.flags == ("implausible",) and not reading.valid


def test_max_power_option_moves_the_plausibility_bound(tmp_path):
    write(tmp_path, zone("intel-rapl:0", "package-0", 0))
    meter = rapl("direct", tmp_path, Clock(0.0, 1.0), max_power_w=50)
    meter.open()
    set_energy(tmp_path, "intel-rapl:0", 60_000_000)  # 60 J in 1 s = 60 W > 50 W
    assert meter.read().flags == ("implausible",)
    with pytest.raises(MeterOptionError, match="max_power_w"):
        RaplPackage(root=str(tmp_path), max_power_w="lots")


def test_two_reads_at_one_instant_are_invalid_not_a_division_by_zero(tmp_path):
    write(tmp_path, zone("intel-rapl:0", "package-0", 0))
    meter = rapl("direct", tmp_path, Clock(3.0, 3.0))
    meter.open()
    assert meter.read().flags == ("invalid",)


def test_read_before_open_and_the_registry(tmp_path):
    with pytest.raises(MeterConnectionError, match="before open"):
        RaplPackage().read()
    assert meter_class("rapl") is RaplPackage and meter_class("hwmon") is HwmonSensor
    write(tmp_path, zone("intel-rapl:0", "package-0", 0))
    meter = open_meter("rapl", root=str(tmp_path), interval_s=0.05)
    assert meter.update_interval_s == 0.05 and meter.describe()["zones"][0]["max_energy_range_uj"] == RANGE


# -- hwmon -------------------------------------------------------------------------------------


def hwmon(mode: str, root: Path, clock=None, **options) -> HwmonSensor:
    return HwmonSensor(name="hwmon", root=str(root), clock=clock or Clock(),
                       run=sh_run if mode == "run" else None, **options)


@MODES
def test_hwmon_power_input_is_microwatts(tmp_path, mode):
    """power1_input 12 345 678 µW = 12.345678 W; the chip's temperature files are not channels."""
    write(tmp_path, {f"{HW}/hwmon0/name": "acpitz", f"{HW}/hwmon0/temp1_input": 40000,
                     f"{HW}/hwmon3/name": "power_meter", f"{HW}/hwmon3/power1_input": 12_345_678})
    meter = hwmon(mode, tmp_path)
    meter.open()
    assert meter.channel.key == "power_meter/power1" and meter.scope == "component"
    assert meter.read().power_w == pytest.approx(12.345678, rel=1e-12)
    assert "not wall power" in meter.describe()["label"]


@MODES
def test_hwmon_energy_input_gives_power_over_host_time(tmp_path, mode):
    """energy1_input 1 000 000 -> 1 600 000 µJ in 0.2 s: 0.6 J / 0.2 s = 3 W; a counter that goes back
    (a reset) is flagged invalid, not unwrapped: the interface documents no range."""
    write(tmp_path, {f"{HW}/hwmon1/name": "amdgpu", f"{HW}/hwmon1/energy1_input": 1_000_000,
                     f"{HW}/hwmon1/energy1_label": "GFX"})
    meter = hwmon(mode, tmp_path, Clock(5.0, 5.2, 5.4))
    meter.open()
    assert meter.channel.key == "amdgpu/GFX"
    (tmp_path / HW / "hwmon1/energy1_input").write_text("1600000\n")
    assert meter.read().power_w == pytest.approx(3.0, rel=1e-12)
    (tmp_path / HW / "hwmon1/energy1_input").write_text("5\n")
    reading = meter.read()
    assert reading.flags == ("invalid",) and not reading.valid


def test_hwmon_input_wins_over_average_and_average_alone_is_used(tmp_path):
    write(tmp_path, {f"{HW}/hwmon2/name": "amdgpu", f"{HW}/hwmon2/power1_average": 30_000_000,
                     f"{HW}/hwmon2/power1_input": 45_000_000})
    meter = hwmon("direct", tmp_path)
    meter.open()
    assert meter.channel.file.endswith("power1_input") and meter.read().power_w == 45.0
    (tmp_path / HW / "hwmon2/power1_input").unlink()
    meter = hwmon("direct", tmp_path)
    meter.open()
    assert meter.channel.file.endswith("power1_average") and meter.read().power_w == 30.0


def test_hwmon_several_channels_need_the_sensor_option(tmp_path):
    write(tmp_path, {f"{HW}/hwmon1/name": "amd_energy", f"{HW}/hwmon1/energy1_input": 10,
                     f"{HW}/hwmon1/energy1_label": "Ecore000", f"{HW}/hwmon1/energy2_input": 20,
                     f"{HW}/hwmon1/energy2_label": "Esocket0", f"{HW}/hwmon4/name": "ina226",
                     f"{HW}/hwmon4/power1_input": 2_500_000})
    with pytest.raises(MeterConnectionError, match="3 power/energy channels") as err:
        hwmon("direct", tmp_path).open()
    assert "amd_energy/Ecore000, amd_energy/Esocket0, ina226/power1" in str(err.value)
    assert "sensor=" in err.value.hint
    meter = hwmon("direct", tmp_path, sensor="hwmon4/power1")
    meter.open()
    assert meter.read().power_w == 2.5
    with pytest.raises(MeterConnectionError, match="no channel 'nope'"):
        hwmon("direct", tmp_path, sensor="nope").open()


@MODES
def test_hwmon_garbage_and_absurd_values(tmp_path, mode):
    write(tmp_path, {f"{HW}/hwmon0/name": "ina226", f"{HW}/hwmon0/power1_input": 2_500_000_000})
    meter = hwmon(mode, tmp_path)
    meter.open()
    reading = meter.read()  # 2500 W from one INA226: above 2000 W
    assert reading.power_w == 2500.0 and reading.flags == ("implausible",)
    (tmp_path / HW / "hwmon0/power1_input").write_text("N/A\n")
    with pytest.raises(MeterProtocolError, match="power in µW"):
        meter.read()


@MODES
def test_no_hwmon_channel_is_a_connection_error(tmp_path, mode):
    write(tmp_path, {f"{HW}/hwmon0/name": "coretemp", f"{HW}/hwmon0/temp1_input": 45000})
    with pytest.raises(MeterConnectionError, match="no power\\*_input"):
        hwmon(mode, tmp_path).open()


# -- the automatic sources of --device local ---------------------------------------------------


def fake_smi(tmp_path: Path, watts: str = "75.50 W") -> str:
    """An nvidia-smi that answers the nvml source's query with one GPU row."""
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\n"
                      "echo 'timestamp, power.draw.instant [W], utilization.gpu [%], memory.used [MiB], "
                      "clocks.current.sm [MHz], temperature.gpu'\n"
                      f"echo '2026/07/14 08:12:53.353, {watts}, 3 %, 500 MiB, 210 MHz, 31'\n")
    script.chmod(0o755)
    return str(script)


def test_local_sources_rapl_alone_and_the_reasons_for_the_others(tmp_path):
    write(tmp_path, zone("intel-rapl:0", "package-0", 0))
    meter, reasons = open_local_sources(str(tmp_path), str(tmp_path / "no-such-nvidia-smi"))
    assert isinstance(meter, RaplPackage)
    assert [r.split(":")[0] for r in reasons] == ["nvml"] and "not found" in reasons[0]


def test_local_sources_rapl_and_nvml_are_summed(tmp_path):
    """RAPL 0 -> 4 000 000 µJ (4 J) between its open and its read, and the GPU's 75.5 W."""
    write(tmp_path, zone("intel-rapl:0", "package-0", 0))
    meter, reasons = open_local_sources(str(tmp_path), fake_smi(tmp_path))
    assert isinstance(meter, SummedSources) and reasons == []
    rapl_meter = meter.meters[0]
    rapl_meter.clock = Clock(1.0)
    rapl_meter._last = (0, {"intel-rapl:0": 0})  # opened at host time 0: 4 J over 1 s is 4 W
    set_energy(tmp_path, "intel-rapl:0", 4_000_000)
    reading = meter.read()
    assert reading.power_w == pytest.approx(4.0 + 75.5, rel=1e-12)
    assert reading.rails["rapl"] == pytest.approx(4.0) and reading.rails["nvml"] == 75.5
    label = meter.describe()["label"]
    assert label == "CPU package power (RAPL) + NVIDIA GPU board power (NVML), not wall power"


def test_local_sources_hwmon_only_without_rapl_and_nvml_and_none_at_all(tmp_path):
    write(tmp_path, {f"{HW}/hwmon3/name": "power_meter", f"{HW}/hwmon3/power1_input": 9_000_000})
    meter, reasons = open_local_sources(str(tmp_path), str(tmp_path / "none"))
    assert isinstance(meter, HwmonSensor) and [r.split(":")[0] for r in reasons] == ["rapl", "nvml"]
    meter, reasons = open_local_sources(str(tmp_path / "empty"), str(tmp_path / "none"))
    assert meter is None and [r.split(":")[0] for r in reasons] == ["rapl", "nvml", "hwmon"]


# -- a real campaign on --device local ---------------------------------------------------------


#: A small counter range (5 J) so the counter wraps every 0.4 s at 12.5 W, many times in a campaign; a
#: read every 0.1 s still sees at most one wrap (1.25 J).
SMALL_RANGE = 5_000_000


class CounterWriter(threading.Thread):
    """Keeps a fake package-0 counter (range :data:`SMALL_RANGE`) advancing at ``watts`` on the host
    clock, written every 2 ms, atomically."""

    def __init__(self, root: Path, watts: float):
        super().__init__(daemon=True)
        write(root, zone("intel-rapl:0", "package-0", 0, rng=SMALL_RANGE))
        self.file = root / PC / "intel-rapl:0" / "energy_uj"
        self.watts, self.halt = watts, threading.Event()

    def run(self):
        t0 = time.monotonic()
        while not self.halt.is_set():
            value = int(self.watts * 1e6 * (time.monotonic() - t0)) % (SMALL_RANGE + 1)
            tmp = self.file.with_name("energy_uj.tmp")
            tmp.write_text(f"{value}\n")
            tmp.replace(self.file)
            time.sleep(0.002)


def _bench(results: Path, campaign: str, root: Path, *extra):
    args = ["bench", str(MODEL), "--results", str(results), "--campaign", campaign, *FAST,
            "--idle-settle-s", "0", "--idle-window-s", "1", *extra]
    env = {"COLUMNS": "100", "EDGEGAUGE_POWER_SYSFS_ROOT": str(root),
           "EDGEGAUGE_NVIDIA_SMI": str(root / "no-nvidia-smi")}
    res = runner.invoke(app, args, env=env)
    assert res.exit_code in MEASURED, res.output
    cells = [json.loads(p.read_text()) for p in (results / campaign / "local").glob("*.json")
             if not p.name.startswith("idle-")]
    assert len(cells) == 1
    return res.output, cells[0]


def test_bench_local_reads_rapl_without_a_meter_and_says_what_it_is(tmp_path):
    """A fake RAPL tree whose counter advances at 12.5 W (and wraps during the idle window): the wide
    table has W mean and mJ/inf with a number marked †, its legend says CPU package power (RAPL), not
    wall power; the cell's power block measures about 12.5 W (the writer's 2 ms steps and the reads'
    timing: within 10 %), with the counter's wraps unwrapped, and its energy per inference is the load
    energy over the iterations."""
    writer = CounterWriter(tmp_path / "sys", 12.5)
    writer.start()
    try:
        out, cell = _bench(tmp_path / "r", "rapl", tmp_path / "sys", "--wide")
    finally:
        writer.halt.set()
        writer.join()
    text = " ".join(out.split())
    assert "W mean:" in out and "mJ/inf:" in out
    assert re.search(r"W mean: +1[12]\.\d\d†", out), out
    assert "† CPU package power (RAPL), not wall power" in text
    power = cell["power"]
    assert power["measures"] == LABEL and power["meter"]["scope"] == "cpu-package"
    assert power["meter"]["wraps"] >= 1 and power["samples_in_window"] >= 10
    assert power["power_w_mean"] == pytest.approx(12.5, rel=0.10)
    assert power["telemetry"]["power_w_mean_counter"] == pytest.approx(12.5, rel=0.10)
    assert power["energy_mj_per_inference"] == pytest.approx(
        power["energy_j_load"] * 1000 / power["iterations"], rel=1e-9)


def test_bench_local_without_any_source_says_no_source(tmp_path):
    (tmp_path / "empty").mkdir()
    out, cell = _bench(tmp_path / "r", "none", tmp_path / "empty")
    assert re.search(r"identity .* no source ", out), out
    text = " ".join(out.split())
    assert "no source: the local machine has no energy counter or power sensor to read" in text
    assert cell["power"]["meter"] is None
    reasons = cell["power"]["no_source"]
    assert "rapl: no RAPL zone" in reasons and "nvml:" in reasons and "hwmon: no power" in reasons


def test_a_read_right_after_open_waits_half_an_interval(tmp_path):
    """`host meter read` reads once right after open: the read waits until half the interval (0.1 s of
    0.2 s) has passed, so the counter advance is not divided by microseconds."""
    write(tmp_path, zone("intel-rapl:0", "package-0", 0))
    meter = RaplPackage(root=str(tmp_path), interval_s=0.2)
    meter.open()
    start = time.monotonic()
    meter.read()
    assert time.monotonic() - start >= 0.1
