"""``host bench --help``: its parameters grouped in titled panels (each option exactly
once), and options with a fixed set of values (``--memory``, ``--calibrate``) checked by typer,
which lists the choices; a runtime's own option is ``-o NAME=VALUE``, not a flag of its own."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from host.cli import app
from host.cli.bench import BENCH_PANELS

runner = CliRunner()
PANELS = ("Models", "Devices", "Matrix", "Protocol", "Scenario", "Budgets (the table's verdict)",
          "Power, memory and profiles", "SSH", "Resume and locks", "Output")


def _help() -> str:
    result = runner.invoke(app, ["bench", "--help"], env={"COLUMNS": "100", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return result.output


def _bench_params() -> list:
    return typer.main.get_command(app).commands["bench"].params


def _panels(out: str) -> dict:
    """{panel title: [the first option name (or ARG...) of each row]} of a rich help screen."""
    panels, rows = {}, None
    for line in out.splitlines():
        if title := re.match(r"╭─ (.+?) ─", line):
            rows = panels.setdefault(title[1], [])
        elif row := re.match(r"│\s+(--[\w-]+|\w+\.\.\.)", line):
            rows.append(row[1])
    return panels


def test_panels_show_once_each_and_list_every_option_exactly_once():
    out = _help()
    assert re.findall(r"^╭─ (.+?) ─", out, flags=re.M) == ["Models", "Options", *PANELS[1:]]
    panels = _panels(out)
    listed = [name for rows in panels.values() for name in rows]
    params = _bench_params()
    assert len(params) == sum(len(names) for names in BENCH_PANELS.values())
    expected = [p.name + "..." if isinstance(p, typer.core.TyperArgument) else
                next(o for o in p.opts if o.startswith("--")) for p in params]
    assert sorted(listed) == sorted([*expected, "--help"]) and len(set(listed)) == len(listed)
    assert all(panels[title] for title in PANELS)
    assert {"--quick", "--rigorous", "--max-s"} <= set(panels["Protocol"])
    assert {"--fps", "--latency-ms", "--statistic", "--memory-mib", "--memory-scope", "--power-w",
            "--energy-mj", "--accuracy-min"} == set(panels["Budgets (the table's verdict)"])
    assert {"--json", "--wide", "--columns"} == set(panels["Output"])
    assert {"--scenario", "--rate-hz", "--duration", "--samples-per-query", "--streams", "--qps",
            "--latency-bound-ms", "--search-runs"} == set(panels["Scenario"])
    assert {"--precision", "--batch", "--backend"} <= set(panels["Matrix"])


@pytest.mark.parametrize("option, choices", [("--memory", "rss|massif|memray"),
                                             ("--calibrate", "minmax|entropy|percentile")])
def test_a_fixed_set_of_values_is_shown_and_checked_by_typer(option, choices, tmp_path):
    assert f"<{choices}>" in " ".join(_help().split())
    result = runner.invoke(app, ["bench", str(tmp_path), option, "bogus"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert f"'bogus' is not one of {', '.join(repr(c) for c in choices.split('|'))}" in out, out
    assert "Traceback" not in result.output


def test_runtime_options_are_dash_o_not_top_level_flags(tmp_path):
    """ort's ``opt_level`` is no ``host bench`` flag (a usage error, exit 2, before anything runs):
    it is ``-o opt_level=VALUE``, checked against the runtime's descriptor; ``--threads`` stays the
    matrix's generic axis."""
    flag = runner.invoke(app, ["bench", str(tmp_path), "--opt-level", "basic"], env={"COLUMNS": "200"})
    assert flag.exit_code == 2 and "No such option: --opt-level" in flag.output, flag.output
    helps = {p.name: p.help for p in _bench_params()}
    assert "opt_level" not in helps and "-o opt_level=basic" in helps["option"]
    assert "threads axis of the matrix" in helps["threads"]
    bad = runner.invoke(app, ["bench", str(tmp_path), "--backend", "ort", "-o", "opt_level=max"],
                        env={"COLUMNS": "200"})
    assert bad.exit_code == 1 and "unknown -o opt_level 'max'" in " ".join(bad.output.split()), bad.output
