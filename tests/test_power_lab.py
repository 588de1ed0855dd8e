"""Power as part of `host bench`: an emulated INA226 logger on a pseudo-terminal reads a
profile that steps from idle to load while a runner process is alive (a shim interpreter
marks it), so idle, load, dynamic power and energy per inference have known true values.
Locally and over a loopback SSH board; plus meter faults and the `host meter` commands."""

import dataclasses
import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from meter_emu import InaEmulator
from typer.testing import CliRunner

from host.campaign.protocol import Protocol
from host.campaign.run import run_campaign
from host.cli import app
from host.lab.benchconfig import BenchConfig
from host.lab.inventory import local_device
from host.power import read_csv
from host.power.session import MeterSpec, PowerSession
from runners.core import Policy

FIX = Path(__file__).resolve().parent / "fixtures" / "models"
IDLE_W, LOAD_W = 2.0, 5.0
CONFIG = BenchConfig(backend="null", timeout_s=60, policy=Policy(
    warmup_min_iterations=1, warmup_min_s=0.0, min_iterations=5, min_duration_s=0.3, cov_max=100.0))
FAST_PROTOCOL = Protocol(target_ci=0.5, max_cell_s=30.0)  # five processes per cell, loose target
runner = CliRunner()


def load_shim(tmp_path: Path):
    """An interpreter that marks "load" while it runs the runner (``-m runners``)."""
    mark = tmp_path / "LOAD"
    shim = tmp_path / "python-shim"
    m = shlex.quote(str(mark))
    shim.write_text(f"#!/bin/sh\ncase \"$1\" in -m) touch {m};; esac\n"
                    f"{shlex.quote(sys.executable)} \"$@\"\nrc=$?\nrm -f {m}\nexit $rc\n")
    shim.chmod(0o755)
    return shim, (lambda t: LOAD_W if mark.exists() else IDLE_W)


def factory(spec_for, **kw):
    settings = dict(settle_s=0.2, window_s=1.0, min_samples=10, **kw)

    def make(device, board, folder):
        return PowerSession(spec_for(device), board, folder, **settings)

    return make


def check_power_block(power: dict, iterations_hint: int = 1):
    assert power["verdict"]["result"] == "VALID", power["verdict"]
    assert power["idle"]["power_w_idle"] == pytest.approx(IDLE_W, rel=0.02)
    assert power["power_w_mean"] == pytest.approx(LOAD_W, rel=0.02)
    assert power["power_w_peak"] == pytest.approx(LOAD_W, rel=0.02)
    assert power["power_w_dynamic_peak"] == pytest.approx(LOAD_W - IDLE_W, rel=0.03)
    assert power["power_w_dynamic_mean"] == pytest.approx(LOAD_W - IDLE_W, rel=0.03)
    assert power["samples_in_window"] >= 10
    n = power["iterations"] if "iterations" in power else iterations_hint
    assert power["energy_mj_per_inference"] == pytest.approx(1000 * LOAD_W * power["window_s"] / n, rel=0.03)


def test_local_bench_measures_idle_load_dynamic_power_and_energy(tmp_path):
    shim, profile = load_shim(tmp_path)
    with InaEmulator(profile=profile) as emu:
        device = dataclasses.replace(local_device(str(tmp_path / "work")), python=str(shim))
        spec = MeterSpec("ina226", emu.port, {"period_ms": 10})
        res = run_campaign([FIX / "identity.onnx", FIX / "tiny_cnn.onnx"], [device], CONFIG,
                           results=tmp_path / "r", campaign="p", backend="null",
                           power=factory(lambda d: spec), protocol=FAST_PROTOCOL)
    for cell in res.cells:
        assert cell["status"] in ("ok", "invalid")  # the latency verdict: noise may fail it
        power = cell["power"]
        aligned = cell["repetitions"]["processes"][0]["sessions"][0]  # the first process's timed loop
        check_power_block(power, aligned["iterations"])
        assert power["iterations"] == aligned["iterations"]
        assert power["throughput_per_watt"] == pytest.approx(
            aligned["iterations"] / aligned["duration_s"] / LOAD_W, rel=0.05)
        assert power["alignment"]["uncertainty_ms"] < 5
        csv = Path(cell["_path"]).with_suffix(".power.csv")
        samples = read_csv(csv)
        assert len(samples) >= power["samples_in_window"] and power["samples_file"] == csv.name
    idle = json.loads((tmp_path / "r" / "p" / "local" / "idle-1.json").read_text())
    assert idle["power_w_idle"] == pytest.approx(IDLE_W, rel=0.02) and idle["n_samples"] >= 50
    assert not (tmp_path / "r" / "p" / "local" / "idle-2.json").exists()  # measured once per campaign
    # the timed loop was lengthened to hold >= 10 meter updates (10 ms each)
    assert res.cells[0]["configuration"]["policy"]["min_duration_s"] >= 0.3


def test_a_resumed_campaign_never_overwrites_an_idle_window(tmp_path):
    """The second run of a campaign measures idle again as idle-2, and the first run's cell
    still finds its own idle window (idle-1, unchanged) where its power block says."""
    shim, profile = load_shim(tmp_path)
    third = tmp_path / "third.onnx"
    third.write_bytes((FIX / "identity.onnx").read_bytes())
    folder = tmp_path / "r" / "p" / "local"
    with InaEmulator(profile=profile) as emu:
        device = dataclasses.replace(local_device(str(tmp_path / "work")), python=str(shim))
        spec = MeterSpec("ina226", emu.port, {"period_ms": 10})
        run = dict(results=tmp_path / "r", campaign="p", backend="null", power=factory(lambda d: spec),
                   protocol=FAST_PROTOCOL)
        (first,) = run_campaign([FIX / "identity.onnx"], [device], CONFIG, **run).cells
        before = (folder / "idle-1.json").read_bytes()
        res = run_campaign([FIX / "identity.onnx", third], [device], CONFIG, **run)
    new = next(c for c in res.cells if c["cell"]["model_stem"] == "third")
    assert first["power"]["idle"]["id"] == "idle-1" and new["power"]["idle"]["id"] == "idle-2"
    assert (folder / "idle-1.json").read_bytes() == before
    assert json.loads((folder / "idle-2.json").read_text())["id"] == "idle-2"


def test_power_over_ssh_board_from_inventory_variables(boards, tmp_path):
    shim, profile = load_shim(tmp_path)
    with InaEmulator(profile=profile) as emu:
        inv = boards.write_inventory(tmp_path / "lab.ini", devices=["b1"], python=shim, meter="ina226",
                                     meter_port=emu.port, meter_period_ms=10)
        res = runner.invoke(app, ["bench", str(FIX / "identity.onnx"), "-i", str(inv), "--device", "b1",
                                  "--backend", "null", "--warmup-iters", "1", "--warmup-s", "0",
                                  "--min-iters", "5", "--min-s", "0.3", "--target-ci", "0.5",
                                  "--idle-settle-s", "0.2", "--idle-window-s", "1",
                                  "--results", str(tmp_path / "r"), "--json"])
    assert res.exit_code in (0, 3), res.output  # 3: latency INVALID on a noisy machine
    (cell,) = json.loads(res.stdout)
    check_power_block(cell["power"], cell["repetitions"]["processes"][0]["sessions"][0]["iterations"])
    align = cell["power"]["alignment"]
    assert align["uncertainty_ms"] < 20 and align["rtt_ms"] < 40
    assert cell["power"]["meter"]["meter"] == "ina226"


def test_no_power_turns_it_off(boards, tmp_path):
    with InaEmulator() as emu:
        inv = boards.write_inventory(tmp_path / "lab.ini", devices=["b1"], meter="ina226",
                                     meter_port=emu.port)
        res = runner.invoke(app, ["bench", str(FIX / "identity.onnx"), "-i", str(inv), "--device", "b1",
                                  "--backend", "null", "--min-s", "0.05", "--warmup-s", "0", "--no-power",
                                  "--target-ci", "0.5",
                                  "--results", str(tmp_path / "r"), "--json"])
    assert res.exit_code in (0, 3), res.output
    assert "power" not in json.loads(res.stdout)[0]


@pytest.mark.parametrize("fault", ["unplug", "stop_answering", "garbage"])
def test_meter_faults_invalidate_power_but_keep_latency_and_the_campaign_goes_on(tmp_path, fault):
    shim, profile = load_shim(tmp_path)
    models = [FIX / "identity.onnx", FIX / "tiny_cnn.onnx"]
    with InaEmulator(profile=profile) as emu:
        device = dataclasses.replace(local_device(str(tmp_path / "work")), python=str(shim))
        spec = MeterSpec("ina226", emu.port, {"period_ms": 10, "timeout_s": 0.2})
        injected, first_done = [], threading.Event()

        def spray():  # garbage before every reply until the first cell ends, so some of it
            while not first_done.wait(0.01):  # lands in the load window however slow start-up is
                emu.garbage(b"\x00\xffnot,a,line\n")

        def on_event(event):  # the fault strikes while the first cell runs
            if event.state == "running" and not injected:
                injected.append(event.index)
                if fault == "unplug":
                    emu.unplug()
                elif fault == "stop_answering":
                    emu.stop_answering()
                else:
                    threading.Thread(target=spray, daemon=True).start()
            elif injected and event.state != "running":
                first_done.set()

        res = run_campaign(models, [device], CONFIG, results=tmp_path / "r", campaign="f", backend="null",
                           power=factory(lambda d: spec), on_event=on_event, protocol=FAST_PROTOCOL)
        first_done.set()
    first, second = res.cells
    assert first["status"] in ("ok", "invalid") and first["latency"]["iterations"] >= 5  # latency kept
    assert first["power"]["verdict"]["result"] == "INVALID"
    reasons = " ".join(first["power"]["verdict"]["reasons"])
    assert reasons, first["power"]
    assert second["status"] in ("ok", "invalid")  # the campaign went on
    if fault == "unplug":
        assert "meter" in reasons
        assert second["power"]["verdict"]["result"] == "INVALID"


def test_a_meter_that_cannot_be_opened_marks_power_invalid(tmp_path):
    device = local_device(str(tmp_path / "work"))
    spec = MeterSpec("ina226", str(tmp_path / "no-such-tty"), {})
    res = run_campaign([FIX / "identity.onnx"], [device], CONFIG, results=tmp_path / "r", campaign="x",
                       backend="null", power=factory(lambda d: spec), protocol=FAST_PROTOCOL)
    (cell,) = res.cells
    assert cell["status"] in ("ok", "invalid")
    assert cell["power"]["verdict"]["result"] == "INVALID"
    assert "cannot open" in cell["power"]["error"]
    assert res.boards["local"].notes


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_meter_log_keeps_every_sample_when_interrupted(tmp_path, sig, code):
    """``meter log`` streams its CSV: an interrupt after a few seconds keeps every sample."""
    out = tmp_path / "log.csv"
    with InaEmulator(profile=lambda t: 3.0) as emu:
        proc = subprocess.Popen([sys.executable, "-m", "host", "meter", "log", "--meter", "ina226", "--port",
                                 emu.port, "--opt", "period_ms=10", "--seconds", "120", "--out", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 50):
            time.sleep(0.1)
        seen = out.read_text().count("\n") - 1  # rows already on disk before the signal
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    samples = read_csv(out)
    assert len(samples) >= seen >= 49 and all(s.power_w == pytest.approx(3.0, rel=0.02) for s in samples)
    assert len({s.t_mono_ns for s in samples}) == len(samples)  # each sample once
    assert f"the {len(samples)} samples taken are in" in " ".join(err.split())


def test_meter_commands_read_log_idle(tmp_path):
    with InaEmulator(profile=lambda t: 3.0) as emu:
        one = runner.invoke(app, ["meter", "read", "--meter", "ina226", "--port", emu.port, "--json"])
        assert one.exit_code == 0, one.output
        assert json.loads(one.stdout)["power_w"] == pytest.approx(3.0, rel=0.02)
        out = tmp_path / "log.csv"
        log = runner.invoke(app, ["meter", "log", "--meter", "ina226", "--port", emu.port,
                                  "--opt", "period_ms=10", "--seconds", "0.5", "--out", str(out)])
        assert log.exit_code == 0, log.output
        samples = read_csv(out)
        assert 30 <= len(samples) <= 70 and all(s.power_w == pytest.approx(3.0, rel=0.02) for s in samples)
        idle = runner.invoke(app, ["meter", "idle", "--meter", "ina226", "--port", emu.port, "--opt",
                                   "period_ms=10", "--settle-s", "0.1", "--window-s", "0.5", "--json"])
        assert idle.exit_code == 0, idle.output
        assert json.loads(idle.stdout)["power_w_idle"] == pytest.approx(3.0, rel=0.02)
    bad = runner.invoke(app, ["meter", "read", "--meter", "nosuch", "--port", "x"])
    assert bad.exit_code == 1 and "unknown meter" in bad.output
