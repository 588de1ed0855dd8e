"""NVIDIA dGPU power and telemetry (``nvml`` meter, host/power/meters/nvml.py).

The parser runs on ``nvidia-smi --query-gpu ... --format=csv`` output recorded on real GPUs (H100,
H100 in MIG mode, RTX 2080 SUPER; tests/fixtures/onboard/nvidia_smi_query_*.txt, origin in each
file's header). The meter runs end to end against an emulated ``nvidia-smi`` that answers a query
by picking the asked columns out of a recorded header + row, cells printed as recorded. The last
test reads a real GPU (``-m gpu``, opt-in ``--gpu``) over an idle and a load window (the load made
with PyTorch); with ``$EDGEGAUGE_GPU_CAPTURE`` set (scripts/gpu-check.sh) it writes what it saw there.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from host.errors import MeterConnectionError, MeterProtocolError
from host.power.meters import open_meter, registry
from host.power.meters.nvml import NvmlGpu, parse_query, query_fields
from host.power.sampler import Sampler
from host.power.session import MeterSpec, meter_spec

FIXTURES = Path(__file__).parent / "fixtures" / "onboard"


def sections(fixture: str) -> list:
    """The recorded (CSV header, CSV row) of each section of a fixture, verbatim."""
    lines = [ln for ln in (FIXTURES / fixture).read_text(encoding="utf-8").splitlines()
             if ln and not ln.startswith("#")]
    assert len(lines) == 4, fixture
    return [(lines[0], lines[1]), (lines[2], lines[3])]


def epoch(text: str) -> float:
    return datetime.strptime(text, "%Y/%m/%d %H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()


# fixture -> [(idle), (load)]: power.draw.instant, power.draw, util %, memory MiB, SM MHz, temp C, timestamp
RECORDED = {
    "nvidia_smi_query_h100_590.txt": [
        (69.62, 69.85, 0.0, 0.0, 345.0, 41.0, "2026/07/14 08:12:38.696"),
        (625.68, 631.95, 100.0, 19818.0, 1980.0, 59.0, "2026/07/14 08:12:53.353")],
    "nvidia_smi_query_h100_mig_590.txt": [  # MIG: utilization.gpu is [N/A]
        (70.72, 71.15, None, 59.0, 345.0, 42.0, "2026/07/14 09:00:27.792"),
        (447.35, 433.78, None, 11125.0, 1980.0, 53.0, "2026/07/14 09:00:44.579")],
    "nvidia_smi_query_rtx2080s_595.txt": [
        (39.32, 39.32, 0.0, 214.0, 765.0, 40.0, "2026/06/24 10:26:34.977"),
        (111.50, 111.50, 8.0, 819.0, 2055.0, 45.0, "2026/06/24 10:26:49.788")],
}


# -- the parser on recorded output ---------------------------------------------------------


@pytest.mark.parametrize("fixture", sorted(RECORDED))
@pytest.mark.parametrize("power_field", ["power.draw.instant", "power.draw"])
def test_parser_reads_recorded_query_output(fixture, power_field):
    for (header, row), want in zip(sections(fixture), RECORDED[fixture]):
        (s,) = parse_query(header + "\n" + row + "\n", power_field)
        instant, average, util, mem, sm, temp, stamp = want
        assert s.power_w == (instant if power_field == "power.draw.instant" else average)
        telemetry = (s.utilization_gpu_pct, s.memory_used_mib, s.sm_clock_mhz, s.temperature_c)
        assert telemetry == (util, mem, sm, temp)
        assert s.time_s == pytest.approx(epoch(stamp), abs=1e-6)


def test_parser_skips_comment_lines_of_the_fixture():
    text = (FIXTURES / "nvidia_smi_query_h100_590.txt").read_text(encoding="utf-8")
    first = text.split("# load ::")[0]  # header comments + the idle section
    (s,) = parse_query(first)
    assert s.power_w == 69.62


HEADER = ("timestamp, power.draw.instant [W], utilization.gpu [%], memory.used [MiB], "
          "clocks.current.sm [MHz], temperature.gpu")


def test_parser_reads_the_nounits_form():
    (s,) = parse_query(HEADER + "\n2026/01/02 03:04:05.600, 61.5, 7, 500, 1410, 33\n")
    assert (s.power_w, s.utilization_gpu_pct, s.memory_used_mib, s.sm_clock_mhz, s.temperature_c) == (
        61.5, 7.0, 500.0, 1410.0, 33.0)
    assert s.time_s == pytest.approx(epoch("2026/01/02 03:04:05.600"))


@pytest.mark.parametrize("cell,expect", [("[N/A]", None), ("[Not Supported]", None),
                                         ("[Unknown Error]", None)])
def test_bracketed_answers_are_none(cell, expect):
    row = f"2026/01/02 03:04:05.600, {cell}, {cell}, {cell}, {cell}, {cell}"
    (s,) = parse_query(HEADER + "\n" + row)
    assert s.power_w is expect and s.utilization_gpu_pct is expect and s.temperature_c is expect


def test_bracketed_timestamp_is_none():
    (s,) = parse_query(HEADER + "\n[N/A], 61.5 W, 7 %, 500 MiB, 1410 MHz, 33")
    assert s.time_s is None and s.power_w == 61.5


@pytest.mark.parametrize("row,match", [
    ("2026/01/02 03:04:05.600, 61.5 mW, 7 %, 500 MiB, 1410 MHz, 33", "expected unit W"),
    ("2026/01/02 03:04:05.600, 61.5 W, 7 %, 500 GiB, 1410 MHz, 33", "memory.used: expected unit MiB"),
    ("2026/01/02 03:04:05.600, sixty W, 7 %, 500 MiB, 1410 MHz, 33", "not a number"),
    ("2026/01/02 03:04:05.600, nan W, 7 %, 500 MiB, 1410 MHz, 33", "not a number"),
    ("2026/01/02 03:04:05.600, 61.5 W, 7 %, 500 MiB", "4 columns, expected 6"),
    ("02.01.2026 03:04, 61.5 W, 7 %, 500 MiB, 1410 MHz, 33", "timestamp"),
])
def test_bad_rows_are_protocol_errors(row, match):
    with pytest.raises(MeterProtocolError, match=match):
        parse_query(HEADER + "\n" + row)


def test_a_missing_column_is_a_protocol_error():
    header = "timestamp, power.draw.instant [W], utilization.gpu [%], memory.used [MiB], temperature.gpu"
    with pytest.raises(MeterProtocolError, match="no clocks.sm column"):
        parse_query(header + "\n2026/01/02 03:04:05.600, 61.5 W, 7 %, 500 MiB, 33")
    with pytest.raises(MeterProtocolError, match="unit W"):  # a unit in the header is checked too
        parse_query(HEADER.replace("[W]", "[mW]") + "\n2026/01/02 03:04:05.600, 61.5, 7, 500, 1410, 33")
    with pytest.raises(MeterProtocolError, match="empty"):
        parse_query("\n# nothing\n")


# -- the meter against an emulated nvidia-smi ----------------------------------------------

FAKE = r'''#!{python}
"""Emulated nvidia-smi: answers --query-gpu from a recorded header + row (state.json)."""
import json, sys
from pathlib import Path
state = json.loads((Path(__file__).parent / "state.json").read_text())
log = Path(__file__).parent / "calls.jsonl"
with log.open("a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\n")
if state.get("fail"):
    print(state["fail"]["text"])
    sys.exit(state["fail"]["rc"])
argv = sys.argv[1:]
gpu = argv[argv.index("-i") + 1] if "-i" in argv else "0"
if gpu not in ("0", state.get("uuid", "-")):
    print("No devices were found")
    sys.exit(6)
query = next(a for a in argv if a.startswith("--query-gpu=")).split("=", 1)[1].split(",")
fmt = next(a for a in argv if a.startswith("--format=")).split("=", 1)[1].split(",")
ALIAS = {"clocks.sm": "clocks.current.sm"}  # what nvidia-smi prints in the header for the alias
header = [c.strip() for c in state["header"].split(", ")]
names = [h.split(" [")[0] for h in header]
for f in query:
    if f in state.get("unknown", []) or ALIAS.get(f, f) not in names:
        print('Field "%s" is not a valid field to query.' % f)
        print()
        sys.exit(2)
cols = [names.index(ALIAS.get(f, f)) for f in query]
rows = state["rows"]
if "noheader" not in fmt:
    print(", ".join(header[i] for i in cols))
for row in rows:
    cells = [c.strip() for c in row.split(", ")]
    cells = [state.get("override", {}).get(names[i], cells[i]) for i in cols]
    print(", ".join(cells))
'''


class FakeRun:
    """``run(command) -> stdout`` executing locally with /bin/sh, counting calls."""

    def __init__(self, env_path: str):
        self.commands = []
        self.env = dict(os.environ, PATH=env_path)

    def __call__(self, command: str) -> str:
        self.commands.append(command)
        return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=30,
                              env=self.env).stdout


class FakeSmi:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.state = {}

    def set(self, fixture="nvidia_smi_query_h100_590.txt", section=1, **extra):
        header, row = sections(fixture)[section]
        self.state = {"header": header, "rows": [row], **extra}
        (self.bindir / "state.json").write_text(json.dumps(self.state))

    def calls(self) -> list:
        path = self.bindir / "calls.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "nvidia-smi"
    script.write_text(FAKE.replace("{python}", sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    smi = FakeSmi(bindir)
    smi.set()
    return smi


def make(mode: str, **options) -> NvmlGpu:
    run = FakeRun(os.environ["PATH"]) if mode == "run" else None
    return NvmlGpu(name="nvml", run=run, **options)


MODES = ("local", "run")


@pytest.mark.parametrize("mode", MODES)
def test_meter_reads_the_recorded_h100_under_load(fake_smi, mode):
    meter = make(mode)
    meter.open()
    r = meter.read()
    assert r.power_w == 625.68 and r.valid and r.flags == ()
    assert r.meter_time_s == pytest.approx(epoch("2026/07/14 08:12:53.353"))
    d = meter.describe()
    assert d["meter"] == "nvml" and d["scope"] == "board-input" and d["source"] == "on-board"
    assert d["power_field"] == "power.draw.instant" and d["power_note"] == "instantaneous"
    assert d["last"] == {"utilization_gpu_pct": 100.0, "memory_used_mib": 19818.0, "sm_clock_mhz": 1980.0,
                         "temperature_c": 59.0}
    assert d["update_interval_s"] == 0.2 and d["gpu"] == "0"
    calls = fake_smi.calls()
    assert len(calls) == 2  # open + one read
    assert calls[-1] == ["-i", "0", "--query-gpu=" + ",".join(query_fields()), "--format=csv"]
    if mode == "run":
        assert len(meter.run.commands) == 2


def test_old_driver_without_the_instant_field_falls_back_to_power_draw(fake_smi):
    fake_smi.set(unknown=["power.draw.instant"])
    meter = make("run")
    meter.open()
    assert meter.power_field == "power.draw"
    assert meter.read().power_w == 631.95
    assert meter.describe()["power_note"].startswith("1 s average")
    asked = [c[2].split(",")[1] for c in fake_smi.calls()]
    assert asked == ["power.draw.instant", "power.draw", "power.draw"]


def test_power_field_option_pins_the_field(fake_smi):
    fake_smi.set(unknown=["power.draw.instant"])
    with pytest.raises(MeterConnectionError, match="does not know power.draw.instant"):
        make("local", power_field="power.draw.instant").open()
    with pytest.raises(ValueError, match="power_field"):
        NvmlGpu(power_field="power.usage")


def test_mig_utilization_is_none_in_the_telemetry(fake_smi):
    fake_smi.set("nvidia_smi_query_h100_mig_590.txt", section=1)
    meter = make("local")
    meter.open()
    t0 = time.monotonic_ns()
    assert meter.read().power_w == 447.35
    tel = meter.window_telemetry(t0, t0 + 10**10)
    assert tel["reads"] == 1 and tel["utilization_gpu_pct"] is None
    assert tel["memory_used_mib"] == {"mean": 11125.0, "min": 11125.0, "max": 11125.0, "n": 1}


def test_power_not_available_at_open_is_refused_and_during_reads_flagged(fake_smi):
    fake_smi.set(override={"power.draw.instant": "[N/A]", "power.draw": "[N/A]"})
    with pytest.raises(MeterProtocolError, match="does not report its power"):
        make("local").open()
    fake_smi.set()
    meter = make("local")
    meter.open()
    fake_smi.set(override={"power.draw.instant": "[N/A]"})
    r = meter.read()
    assert r.power_w is None and r.flags == ("invalid",) and not r.valid


@pytest.mark.parametrize("mode", MODES)
def test_no_driver_is_a_connection_error(fake_smi, mode):
    text = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
            "Make sure that the latest NVIDIA driver is installed and running.")
    fake_smi.set(fail={"rc": 9, "text": text})
    with pytest.raises(MeterConnectionError, match="no NVIDIA driver answering"):
        make(mode).open()


def test_unknown_gpu_index_is_a_connection_error(fake_smi):
    with pytest.raises(MeterConnectionError, match="exited with 6.*No devices were found"):
        make("local", gpu=3).open()


@pytest.mark.parametrize("mode", MODES)
def test_missing_nvidia_smi_is_a_connection_error(tmp_path, monkeypatch, mode):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(MeterConnectionError, match="not found"):
        make(mode).open()


def test_two_rows_for_one_gpu_is_a_protocol_error(fake_smi):
    meter = make("local")
    meter.open()
    _, row = sections("nvidia_smi_query_h100_590.txt")[1]
    fake_smi.set(rows=[row, row])
    with pytest.raises(MeterProtocolError, match="expected one row, got 2"):
        meter.read()


def test_read_before_open_is_a_connection_error():
    with pytest.raises(MeterConnectionError, match="before open"):
        NvmlGpu().read()


def test_sampler_records_nvml_readings(fake_smi):
    meter = make("local", interval_s=0.05)
    meter.open()
    sampler = Sampler(meter, phase="load")
    sampler.start()
    while sampler.snapshot()["n_samples"] < 3:
        time.sleep(0.02)
    samples = sampler.stop()
    assert all(s.valid and s.power_w == 625.68 and s.phase == "load" for s in samples)
    first, last = samples[0].t_mono_ns, samples[-1].t_mono_ns
    tel = meter.window_telemetry(first - 10**8, last + 10**8)
    assert tel["reads"] >= len(samples) and tel["sm_clock_mhz"]["min"] == 1980.0


def test_inventory_meter_nvml_is_an_on_board_source_with_options():
    assert registry()["nvml"] is NvmlGpu

    class Device:
        vars = {"meter": "nvml", "meter_gpu": "1", "meter_interval_s": "0.5"}

    spec = meter_spec(Device())
    assert spec.onboard and spec.options == {"gpu": 1, "interval_s": 0.5}
    assert not MeterSpec("um25c").onboard
    meter = NvmlGpu(name="nvml", **spec.options)
    assert meter.gpu == "1" and meter.update_interval_s == 0.5


def test_open_meter_by_name_runs_locally(fake_smi):
    meter = open_meter("nvml")
    assert meter.read().power_w == 625.68 and meter.describe()["via"] == "local"


# -- a real GPU ----------------------------------------------------------------------------


MIB = 1 << 20
#: Device memory the load holds (MiB): memory.used must rise by at least 90 % of it.
HOLD_MIB = 1024


def _capture(name: str, doc: dict) -> None:
    """Write ``doc`` to ``$EDGEGAUGE_GPU_CAPTURE/<name>.json`` when scripts/gpu-check.sh asks for it."""
    folder = os.environ.get("EDGEGAUGE_GPU_CAPTURE")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")


def _torch_cuda():
    """PyTorch with CUDA, which makes the load (matrix products); skipped without PyTorch."""
    torch = pytest.importorskip("torch", reason="the load window needs PyTorch with CUDA")
    if not torch.cuda.is_available():
        pytest.fail("--gpu given but torch.cuda.is_available() is False")
    return torch


def _busy(torch, seconds: float, hold_mib: int) -> None:
    """Matrix products on GPU 0 for ``seconds`` while holding ``hold_mib`` MiB of device memory."""
    hold = torch.empty(hold_mib * MIB // 4, dtype=torch.float32, device="cuda:0")
    a = torch.rand(4096, 4096, device="cuda:0")
    b = torch.rand(4096, 4096, device="cuda:0") / 4096
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(8):
            a = a @ b
        torch.cuda.synchronize()
    del hold, a, b
    torch.cuda.empty_cache()


def _stats(values: list) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def _series(samples: list, t0_ns: int) -> list:
    return [{"t_s": (s.t_mono_ns - t0_ns) / 1e9, "phase": s.phase, "power_w": s.power_w,
             "meter_time_s": s.meter_time_s} for s in samples]


@pytest.mark.gpu
def test_real_gpu_power_and_telemetry_over_a_load_window():
    """The nvml source on the real nvidia-smi: 3 s idle, then 6 s of matrix products holding 1 GiB.
    Every read is valid (1-2000 W); under load the power rises by 10 % or more over idle, utilization
    reaches 50 % (where the GPU reports it: not under MIG), memory.used rises by at least 90 % of
    what the load holds, the SM clock is up, and nvidia-smi's own timestamps never go back."""
    if shutil.which("nvidia-smi") is None:
        pytest.fail("--gpu given but no nvidia-smi on PATH")
    torch = _torch_cuda()
    torch.zeros(1, device="cuda:0")
    torch.cuda.synchronize()  # the CUDA context exists before the idle window
    meter = open_meter("nvml")
    sampler = Sampler(meter, phase="idle").start()
    time.sleep(3.0)
    t_load = sampler.set_phase("load")
    _busy(torch, 6.0, HOLD_MIB)
    t_end = time.monotonic_ns()
    samples = sampler.stop()
    ramp = t_load + 1_500_000_000  # the first 1.5 s of load: clocks and power still ramping
    idle = meter.window_telemetry(sampler.t_start_ns, t_load)
    load = meter.window_telemetry(ramp, t_end)
    power = {"idle": _stats([s.power_w for s in samples if s.t_mono_ns <= t_load]),
             "load": _stats([s.power_w for s in samples if ramp <= s.t_mono_ns <= t_end])}
    _capture("nvml_load_window", {"describe": meter.describe(), "power_w": power, "idle": idle, "load": load,
                                  "samples": _series(samples, sampler.t_start_ns)})
    assert samples and all(s.valid and 1.0 < s.power_w < 2000.0 for s in samples), samples[:3]
    assert idle["reads"] >= 5 and load["reads"] >= 10, (idle["reads"], load["reads"])
    assert power["load"]["mean"] >= 1.1 * power["idle"]["mean"], power
    if load["utilization_gpu_pct"] is not None:
        assert load["utilization_gpu_pct"]["max"] >= 50.0, load
    assert load["memory_used_mib"]["max"] - idle["memory_used_mib"]["min"] >= 0.9 * HOLD_MIB, (idle, load)
    assert load["sm_clock_mhz"]["max"] > 0 and load["sm_clock_mhz"]["max"] >= idle["sm_clock_mhz"]["min"]
    stamps = [s.meter_time_s for s in samples if s.meter_time_s is not None]
    assert stamps == sorted(stamps) and len(stamps) == len(samples)
