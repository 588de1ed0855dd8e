"""Real boards (opt-in): ``pytest -m board_hw --board NAME [--board-inventory FILE]
[--board-become-password-file FILE]``.

NAME is a device of the inventory (e.g. xavier-1, rpi4-1, zcu104-1, a100-1 in
inventory.ini with real addresses). These tests change the board's power mode and restore
it: run them on a lab board, not on a production machine. What they check is what the
loopback tests check with emulated vendor tools (tests/test_power_mode.py,
tests/test_provision.py), now against the real nvpmodel / jetson_clocks / cpufreq /
nvidia-smi / xdputil.
"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from host.cli import app

pytestmark = pytest.mark.board_hw
runner = CliRunner()
#: The family's facts that show must report (runners/power_state.py schema).
FAMILY_FACT = {"jetson": "nvpmodel", "arm_cpu": "cpufreq", "x86_a100": "gpu", "zcu104": "dpu"}


def host(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


@pytest.fixture(scope="module")
def sel(hw_board, pytestconfig, tmp_path_factory):
    inv = pytestconfig.getoption("--board-inventory")
    art = tmp_path_factory.mktemp("ansible")
    become = pytestconfig.getoption("--board-become-password-file")
    return ["-i", inv, "--device", hw_board.name, "--artifacts", art,
            *(["--become-password-file", become] if become else [])]


def power(sel, action, *extra):
    res = host("power-mode", action, *sel, *extra, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    return doc, next(iter(doc["reports"].values()))


def test_provision_is_idempotent_and_leaves_the_board_ready(hw_board, sel):
    res = host("provision", *sel, "--json")
    assert res.exit_code == 0, res.output
    res = host("provision", *sel, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["recap"][hw_board.name]["changed"] == 0
    res = host("deploy", *sel[:4])
    assert res.exit_code == 0, res.output
    res = host("check", *sel[:4])
    assert res.exit_code == 0, res.output


def test_power_mode_show_tune_reset_round_trip(hw_board, sel):
    family = hw_board.vars.get("edgegauge_family")
    _, before = power(sel, "show")
    if family:
        assert before["family"] == family and before[FAMILY_FACT[family]], before
    _, tuned = power(sel, "tune")
    doc, again = power(sel, "tune")
    assert doc["recap"][hw_board.name]["changed"] == 0  # a second tune changes nothing
    assert again["mode_key"] == tuned["mode_key"]
    _, shown = power(sel, "show")
    assert shown["mode_key"] == tuned["mode_key"]
    _, after = power(sel, "reset")
    assert after["mode_key"] == before["mode_key"], (before, after)


def test_bench_records_the_power_state(hw_board, pytestconfig, tmp_path):
    inv = pytestconfig.getoption("--board-inventory")
    model = Path(__file__).parent / "fixtures" / "models" / "identity.onnx"
    res = host("bench", model, "-i", inv, "--device", hw_board.name, "--backend", "null",
               "--min-s", "0.2", "--results", tmp_path, "--json")
    assert res.exit_code in (0, 3), res.output
    cell = json.loads(res.stdout)[0]
    assert cell["manifest"]["device"]["power_mode_key"], cell["manifest"]["device"].get("power_state")

