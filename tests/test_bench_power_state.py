"""`host bench` records each board's power state (the same probe `power_mode.yml show`
reports) in every cell's device manifest, and never mixes power modes in one campaign:
a resumed campaign whose board changed mode does not run there (category power_mode) until
the mode is back; `host report` names cells of one device/model/config measured in
different modes. Loopback sshd boards with a fake sysfs tree (tests/vendor_emu.py)."""

import json
import shutil
import sys
from pathlib import Path

import vendor_emu
from typer.testing import CliRunner

from host.cli import app

FIX = Path(__file__).resolve().parent / "fixtures" / "models"
NULL = ["--backend", "null", "--warmup-iters", "1", "--warmup-s", "0", "--min-iters", "5",
        "--min-s", "0.01", "--target-ci", "0.5"]
runner = CliRunner()


def host(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def governor_file(root: Path) -> Path:
    return root / vendor_emu.CPUFREQ / "policy0" / "scaling_governor"


def test_cells_carry_the_power_state_and_a_changed_mode_is_not_mixed(boards, tmp_path):
    root = vendor_emu.make_fake_root(tmp_path / "root", "arm_cpu", governor="ondemand")
    inv = boards.write_inventory(tmp_path / "lab.ini", ["b1"], edgegauge_root=root,
                                 edgegauge_family="arm_cpu", python=sys.executable)
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(FIX / "identity.onnx", models / "first.onnx")
    results = tmp_path / "r"
    args = ["-i", inv, "--all", "--results", results, "--campaign", "c1", *NULL, "--json"]

    res = host("bench", models, *args)
    assert res.exit_code in (0, 3), res.output  # 3: INVALID on a noisy machine
    cell = json.loads(res.stdout)[0]
    state = cell["manifest"]["device"]["power_state"]
    assert state["schema"] == "edgegauge.power_state/1" and state["family"] == "arm_cpu"
    assert state["cpufreq"]["policy0"]["governor"] == "ondemand"
    key = cell["manifest"]["device"]["power_mode_key"]
    assert "ondemand" in key
    plan = json.loads((results / "c1" / "campaign.json").read_text())
    assert plan["devices"]["b1"]["power_mode_key"] == key

    # Someone switches the governor; the campaign is resumed with one more model.
    governor_file(root).write_text("performance\n")
    shutil.copy(FIX / "identity.onnx", models / "second.onnx")
    res = host("bench", models, *args)
    assert res.exit_code == 1
    cells = {c["cell"]["model_stem"]: c for c in json.loads(res.stdout)}
    assert cells["first"]["status"] == cell["status"]  # kept, not re-run
    err = cells["second"]["error"]
    assert err["category"] == "power_mode"
    assert "performance" in err["message"] and "ondemand" in err["message"]

    # Mode restored: resuming runs the refused cell (never-run categories are re-run).
    governor_file(root).write_text("ondemand\n")
    res = host("bench", models, *args)
    assert res.exit_code in (0, 3), res.output
    cells = {c["cell"]["model_stem"]: c for c in json.loads(res.stdout)}
    assert cells["second"]["status"] in ("ok", "invalid")
    assert cells["second"]["manifest"]["device"]["power_mode_key"] == key

    # A second campaign in the other mode: `host report` keeps the rows apart and says so.
    governor_file(root).write_text("performance\n")
    res = host("bench", models / "first.onnx", "-i", inv, "--all", "--results", results,
               "--campaign", "c2", *NULL, "--json")
    assert res.exit_code in (0, 3), res.output
    res = host("report", results)
    assert res.exit_code == 0, res.output
    assert "b1 / first / " in res.stderr and "2 power modes" in res.stderr
    import pandas as pd

    table = pd.read_csv(results / "results.csv")
    assert table["power_mode_key"].nunique() == 2
