"""Issue 27: `host calibrate` measures a device's noise with the reference workload and stores it;
`host devices` shows it; the stored figures seed the device effect of later campaigns; a bad
argument or a hand-edited file loses nothing and crashes nothing.

The real CLI on the built-in local device (real runner processes), real files."""

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

from host.campaign.device_effect import device_level_in
from host.campaign.reference import noise_levels, read_device_noise

ROOT = Path(__file__).resolve().parents[1]


def host(cwd, *args, timeout=300):
    # the session's own device history and local board (conftest), not this machine's
    own = {k: os.environ[k] for k in ("EDGEGAUGE_STATE_DIR", "EDGEGAUGE_LOCAL_WORKDIR")}
    return subprocess.run([sys.executable, "-m", "host", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "/usr/bin:/bin", "COLUMNS": "100",
                                                "PYTHONPATH": str(ROOT), **own})


def test_calibrate_stores_the_noise_and_devices_shows_it(tmp_path):
    out = host(tmp_path, "calibrate", "--device", "local", "--campaigns", "2", "--processes", "2",
               "--results", "r")
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "r" / ".devices" / "local.json").read_text())
    assert doc["kind"] == "device_noise" and doc["campaigns"] == 2 and len(doc["runs"]) == 2
    assert all(len(run) == 2 and run[0]["latency_ms_p50"] > 0 for run in doc["runs"])
    rerun = doc["noise"]["rerun"]
    assert math.isclose(doc["noise"]["varies_pct_95"], 100 * (math.exp(1.959964 * rerun) - 1), rel_tol=1e-4)
    assert "speed varies ±" in out.stdout and "between runs" in out.stdout
    listed = host(tmp_path, "devices", "--results", "r")
    assert listed.returncode == 0 and "stability" in listed.stdout, listed.stderr
    assert f"±{doc['noise']['varies_pct_95']:.1f} %" in listed.stdout
    # the calibration campaigns count as the device's campaigns for a cell new to it
    assert device_level_in(tmp_path / "r", "new", "local")["reference_campaigns"] == 2


def test_noise_levels_of_hand_computed_runs():
    """Two campaigns of two runs: log p50s (0, ln 1.1) and (ln 1.2, ln 1.2 + ln 1.1). Pooled
    within-campaign variance = (ln 1.1)² / 2; campaign means differ by ln 1.2, so their variance
    is (ln 1.2)² / 2, minus the pooled variance over 2 runs per campaign."""
    runs = [[{"latency_ms_p50": 1.0}, {"latency_ms_p50": 1.1}],
            [{"latency_ms_p50": 1.2}, {"latency_ms_p50": 1.32}]]
    n = noise_levels(runs)
    proc = math.log(1.1) ** 2 / 2
    camp = math.log(1.2) ** 2 / 2 - proc / 2
    assert math.isclose(n["between_processes"], math.sqrt(proc), rel_tol=1e-9)
    assert math.isclose(n["between_campaigns"], math.sqrt(camp), rel_tol=1e-9)
    assert math.isclose(n["rerun"], math.sqrt(proc + camp), rel_tol=1e-9)
    assert n["within_process"] is None


def test_bad_arguments_and_hand_edited_files_are_errors_not_tracebacks(tmp_path):
    bad = host(tmp_path, "calibrate", "--device", "local", "--processes", "1", "--results", "r")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "--processes" in bad.stderr
    assert not (tmp_path / "r" / ".devices").exists()
    unknown = host(tmp_path, "calibrate", "--device", "nosuchboard", "--results", "r")
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    folder = tmp_path / "r" / ".devices"
    folder.mkdir(parents=True)
    for text in ("{not json", "[]", '{"noise": "fast"}', '{"noise": {"varies_pct_95": "7"}}',
                 '{"noise": {"varies_pct_95": 7}, "runs": [[1, "x", {"latency_ms_p50": -1}], 5]}'):
        (folder / "local.json").write_text(text)
        listed = host(tmp_path, "devices", "--results", "r")
        assert listed.returncode == 0 and "Traceback" not in listed.stderr, (text, listed.stderr)
        assert device_level_in(tmp_path / "r", "new", "local")["reference_campaigns"] == 0
        assert (folder / "local.json").read_text() == text  # nothing rewritten
    assert read_device_noise(tmp_path / "r", "local")["noise"]["varies_pct_95"] == 7


def test_devices_shows_the_spread_of_the_devices_history_on_this_host(tmp_path):
    """No calibration in the results folder: the stability is the device's between-campaign spread
    from its history on this host. One reference run per campaign and no within-campaign interval:
    the spread is then the sample sd of ln p50 over the campaigns (written out here)."""
    from host.campaign import device_store

    p50s = [1.0, 1.1, 0.95, 1.05]
    device_store.add("local", {f"c{k} @ /elsewhere": [{"round": 1, "latency_ms_p50": p}]
                               for k, p in enumerate(p50s)})
    sd = statistics.stdev(math.log(p) for p in p50s)
    varies = 100 * math.expm1(1.959964 * sd)
    listed = host(tmp_path, "devices", "--results", "r", "--json")
    assert listed.returncode == 0, listed.stderr
    (local,) = [d for d in json.loads(listed.stdout)["devices"] if d["name"] == "local"]
    assert local["stability"]["source"] == "device history on this host"
    assert math.isclose(local["stability"]["varies_pct_95"], varies, rel_tol=1e-4)
    assert local["stability"]["campaigns"] == 4 and local["stability"]["df"] == 3
    shown = host(tmp_path, "devices", "--results", "r")
    assert f"±{varies:.1f} %" in shown.stdout and "between campaigns" in shown.stdout
    assert "history on this host: 4 campaigns" in " ".join(shown.stdout.split())


def test_a_hand_edited_history_with_absurd_latencies_is_passed_over(tmp_path):
    """Found by hand: p50s of 1e308 and 1e-300 ms in the store made `host devices` overflow
    (math range error). Values outside 1 ns..1 day are not latencies: passed over, file kept."""
    from host.campaign import device_store

    device_store.add("local", {"a @ /x": [{"round": 1, "latency_ms_p50": 1e308}],
                               "b @ /x": [{"round": 1, "latency_ms_p50": 1e-300}],
                               "c @ /x": [{"round": 1, "latency_ms_p50": 2.0}]})
    before = sorted(p.read_bytes() for p in device_store.state_dir().rglob("*.json"))
    listed = host(tmp_path, "devices", "--results", "r")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert device_level_in(tmp_path / "r", "new", "local")["sd_log"] is None  # one plausible campaign
    assert sorted(p.read_bytes() for p in device_store.state_dir().rglob("*.json")) == before
