"""Every table-printing command in a real terminal 100 columns wide: tmux runs ``host …`` in a
100×50 pane and ``capture-pane -J`` reads the screen back (lines the terminal wrapped joined
again). No line may be wider than 100 columns and no cell cut to ``…``. The inputs are small and
committed: hand-written cells (tests/advise_cells.py), the example inventory, the families'
descriptors, the zoo's list; ``host bench`` runs one example model on the null backend."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from advise_cells import cell, family, strangers, write_cells
from labfix import apt_install
from rich.cells import cell_len
from typer.testing import CliRunner

from host.cli.main import app

REPO = Path(__file__).resolve().parents[1]
WIDTH = 100
DONE = "__exit_status__"


@pytest.fixture
def tmux() -> str:
    """The tmux binary (apt-get installs it when missing and root; else the test is skipped)."""
    if shutil.which("tmux") is None:
        apt_install(["tmux"], "the 100-column terminal tests run commands in tmux")
    return shutil.which("tmux")


def screen(tmux: str, cwd: Path, *args, timeout: float = 120.0) -> tuple[list[str], int]:
    """``host ARGS`` in a fresh tmux server's 100×50 pane (its own socket): every line it printed,
    as the terminal shows it, and its exit status."""
    name = f"eg{uuid.uuid4().hex[:10]}"
    conf = Path(tempfile.gettempdir()) / f".{name}.conf"  # never in the tree it runs in
    conf.write_text("set -g history-limit 50000\n")
    command = shlex.join(["env", "-u", "COLUMNS", "-u", "LINES", sys.executable, "-m", "host",
                          *map(str, args)])
    shell = f"cd {shlex.quote(str(cwd))} && {command}; echo {DONE} $?; sleep 600"
    base = [tmux, "-L", name, "-f", str(conf)]
    subprocess.run([*base, "new-session", "-d", "-s", name, "-x", str(WIDTH), "-y", "50", shell], check=True)
    try:
        end = time.monotonic() + timeout
        while True:
            shown = subprocess.run([*base, "capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", name],
                                   capture_output=True, text=True, check=True).stdout
            status = [line for line in shown.splitlines() if line.startswith(DONE)]
            if status or time.monotonic() > end:
                break
            time.sleep(0.2)
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True)
        conf.unlink()
    assert status, f"host {args} did not finish within {timeout} s:\n{shown}"
    lines = shown.splitlines()
    return lines[:lines.index(status[0])], int(status[0].split()[1])


def assert_fits(lines: list[str]) -> None:
    """No line wider than the terminal, no cell cut to an ellipsis."""
    wide = [line for line in lines if cell_len(line.rstrip()) > WIDTH]
    assert not wide, "wider than 100 columns:\n" + "\n".join(wide)
    cut = [line for line in lines if "…" in line]
    assert not cut, "cut to …:\n" + "\n".join(cut)


def row_of(lines: list[str], model: str) -> str:
    return next(line for line in lines if line.split()[:1] == [model] or line.split()[1:2] == [model])


LONG = "efficientnet_lite0_w1.0_imagenet_calibrated_per_channel_qdq"


def _results(tmp_path: Path) -> Path:
    """Two campaigns: c1 (the mnv2 family and its int8 variant, the unrelated digits and
    squeezenet models) and c2 (the family again); both with a model named at length, in fp32 and
    int8."""
    long = [cell(LONG, p99=5.0, ci=(4.5, 5.5), precision=p, campaign=c) for c in ("c1", "c2")
            for p in ("fp32", "int8")]
    return write_cells(tmp_path / "results", family() + family(precision="int8") + strangers()
                       + family(campaign="c2") + long)


# --------------------------------------------------------------------------------- bench, report

@pytest.mark.slow
def test_bench_default_table_is_verdict_first_and_fits(tmux, tmp_path):
    lines, status = screen(tmux, REPO, "bench", "examples/models/mobilenet_v2_w0.25_cifar10.onnx", "--device",
                           "local", "--backend", "null", "--quick", "--results", tmp_path / "r",
                           "--campaign", "t", "--memory-mib", "4096", timeout=300)
    assert status in (0, 3), "\n".join(lines)  # 3: INVALID on a busy machine
    assert_fits(lines)
    header = next(line for line in lines if line.startswith("model "))
    assert header.split() == ["model", "prec", "p99", "(95", "%", "CI)", "peak", "RSS", "power", "top-1",
                              "verdict"]
    assert "budgets: p99 ≤ 16.67 ms (60 fps), peak RSS (process) ≤ 4096 MiB" in lines
    row = row_of(lines, "mobilenet_v2_w0.25_cifar10")
    # this machine has no energy counter (the suite hides any real one): local says so
    assert " µs" in row and "no source" in row and row.split()[-1] in ("meets", "uncertain")
    assert row.count("✓") + row.count("?") == 2  # one mark per budget: latency, memory
    assert any(line.startswith("meets when the upper end of the statistic's 95 % interval") for line in lines)


def test_report_over_two_campaigns_shows_a_campaign_column_and_reasons_below_rows(tmux, tmp_path):
    root = _results(tmp_path)
    lines, status = screen(tmux, tmp_path, "report", root, "--out", tmp_path / "out", "--memory-mib", "60",
                           "--accuracy-min", "0.5")
    assert status == 0, "\n".join(lines)
    assert_fits(lines)
    assert next(line for line in lines if "verdict" in line).split()[:2] == ["campaign", "model"]
    # mnv2_w1 peaks 70..75 MiB over three processes: wholly above 60 MiB -> ✗, misses, why below it
    i = next(i for i, line in enumerate(lines) if line.startswith("c1 ") and "mnv2_w1_cifar10 " in line
             and " fp32 " in line)
    assert "✗ 75.0 MiB" in lines[i] and lines[i].split()[-1] == "misses"
    assert lines[i + 1].startswith("    memory: the 95 % interval is above 60 MiB")
    assert lines[i + 2].startswith("    accuracy: no accuracy (run with --dataset)")
    digits = next(line for line in lines if " digits_cnn " in line)
    assert "✓ 20 (18–22) µs" in digits and "no meter" in digits  # units adapt below 1 ms
    squeeze = next(line for line in lines if " squeezenet1_1_imagenet " in line)
    assert "✗ 20 (19–22) ms" in squeeze and "4.00 W 9 mJ" in squeeze  # 16.67 ms budget: misses
    assert any(line.startswith("c2 ") for line in lines)
    # the correlations stay a table at 100 columns (shared device/precision in the title), not blocks
    assert any("static → measured" in line and "slope" in line for line in lines), "\n".join(lines)


def test_report_wide_and_columns(tmp_path):
    root = _results(tmp_path)
    runner = CliRunner()
    wide = runner.invoke(app, ["report", str(root / "c1"), "--out", str(tmp_path), "--wide"],
                         env={"COLUMNS": "250"})
    assert wide.exit_code == 0 and "p50 ms" in wide.stdout and "samples/s" in wide.stdout, wide.output
    picked = runner.invoke(app, ["report", str(root / "c1"), "--out", str(tmp_path),
                                 "--columns", "model,p50,verdict"], env={"COLUMNS": "250"})
    assert picked.exit_code == 0, picked.output
    header = next(line for line in picked.stdout.splitlines() if line.startswith("model "))
    assert header.split() == ["model", "p50", "verdict"]
    bad = runner.invoke(app, ["report", str(root), "--columns", "model,speed"], env={"COLUMNS": "250"})
    assert bad.exit_code == 2 and "unknown column 'speed'" in bad.output
    assert "the columns are: campaign, device, model" in " ".join(bad.output.replace("│", " ").split())


def _paced(model: str, pct: float, p99, misses: int) -> dict:
    """A stored paced cell (issue 24): its scenario block and early-stopping p99."""
    doc = cell(model, p99=p99 or 1.0, device="local")
    doc["cell"]["config"] += "-paced60hz-120s"
    doc["latency"].update(latency_ms_p99=p99, processes=1, latency_ms_p99_early_stopping={
        "percentile": 0.99, "confidence": 0.99, "queries": 7200, "queries_needed": 662, "latency_ms": p99})
    doc["scenario"] = {"name": "paced", "rate_hz": 60.0, "slots": 7200, "queries": 7200 - misses // 2,
                       "deadline_misses": misses, "deadline_miss_pct": pct, "longest_miss_run": 3}
    return doc


def test_report_of_paced_cells_shows_a_miss_column_and_fits(tmux, tmp_path):
    root = write_cells(tmp_path / "results", [_paced("mobilenet_v2_w0.25_cifar10", 0.0139, 1.2, 1),
                                              _paced("squeezenet1_1_imagenet", 100.0, 52.0, 7200)])
    for wide in ([], ["--wide"]):
        lines, status = screen(tmux, tmp_path, "report", root, "--out", tmp_path / "out", *wide)
        assert status == 0, "\n".join(lines)
        assert_fits(lines)
        if not wide:
            header = next(line for line in lines if line.startswith("model "))
            assert "miss %" in header
            assert row_of(lines, "squeezenet1_1_imagenet").split()[5:6] == ["100"]
            assert " 0.014 " in row_of(lines, "mobilenet_v2_w0.25_cifar10")
        else:
            assert any("miss %" in line for line in lines), "\n".join(lines)


def _load(model: str, scenario: dict, p99: float) -> dict:
    """A stored offline or server cell (issue 24): its scenario block and early-stopping p99."""
    doc = _paced(model, 0.0, p99, 0)
    doc["cell"]["config"] = doc["cell"]["config"].replace("-paced60hz-120s", "-" + scenario.pop("slug"))
    doc["scenario"] = scenario
    return doc


def test_report_of_offline_and_server_cells_shows_a_load_column_and_fits(tmux, tmp_path):
    off = {"slug": "offline2st-60s", "name": "offline", "streams": 2, "throughput_sps": 18123.4}
    srv = {"slug": "server2st-50qps-100ms-60s-find6", "name": "server", "streams": 2, "qps_peak": 137.5,
           "qps_achieved": 136.1, "met": True}
    root = write_cells(tmp_path / "results", [_load("mobilenet_v2_w0.25_cifar10", off, 0.9),
                                              _load("squeezenet1_1_imagenet", srv, 23.0)])
    lines, status = screen(tmux, tmp_path, "report", root, "--out", tmp_path / "out")
    assert status == 0, "\n".join(lines)
    assert_fits(lines)
    header = next(line for line in lines if line.startswith("model "))
    assert "load" in header and "miss %" not in header
    assert "18100/s ×2" in row_of(lines, "mobilenet_v2_w0.25_cifar10")  # 3 significant digits
    assert "138 qps ×2" in row_of(lines, "squeezenet1_1_imagenet")


# ------------------------------------------------------------------------ the other table commands

def test_check_and_devices_fit(tmux, tmp_path):
    lines, status = screen(tmux, REPO, "devices", "--inventory", REPO / "inventory.ini")
    assert status == 0, "\n".join(lines)
    assert_fits(lines)
    assert any(line.startswith("address:") and "192.0.2.11" in line for line in lines)  # one block a device
    lines, status = screen(tmux, tmp_path, "check", "--device", "local")
    assert status in (0, 2), "\n".join(lines)
    assert_fits(lines)


def test_image_list_and_zoo_fit(tmux, tmp_path):
    lines, status = screen(tmux, tmp_path, "image", "list")
    assert status == 0, "\n".join(lines)
    assert_fits(lines)
    assert any("nvcr.io/nvidia/l4t-jetpack" in line for line in lines)
    from host.cli import zoo

    names = {c.name or c.callback.__name__ for c in zoo.app.registered_commands}
    lines, status = screen(tmux, tmp_path, "zoo", *(["list"] if "list" in names else ["export", "--list"]))
    assert status == 0, "\n".join(lines)
    assert_fits(lines)
    assert any("squeezenet1_1_imagenet" in line for line in lines)


def test_query_rounds_floats_and_turns_wide_rows_vertical(tmux, tmp_path):
    root = write_cells(tmp_path / "results", [cell("m", p99=1 / 3, ci=(0.3, 0.4))])
    lines, status = screen(tmux, tmp_path, "query", "select model, latency_ms_p99 from cells",
                           "--results", root)
    assert status == 0, "\n".join(lines)
    assert_fits(lines)
    assert any("0.3333 " in line for line in lines) and not any("0.33333" in line for line in lines)
    shown = CliRunner().invoke(app, ["query", "select latency_ms_p99 from cells", "--results", str(root),
                                     "--json"])
    (record,) = json.loads(shown.stdout)
    assert abs(record["latency_ms_p99"] - 1 / 3) < 1e-14  # full precision (15 digits) in --json
    lines, status = screen(tmux, tmp_path, "query", "select * from cells", "--results", root)
    assert status == 0, "\n".join(lines)
    assert_fits(lines)
    assert any(line.split()[:2] == ["model:", "m"] for line in lines)  # one "column: value" a line
    assert any(line.split()[:2] == ["latency_ms_p99:", "0.3333"] for line in lines)


def test_compare_and_advise_fit(tmux, tmp_path):
    root = _results(tmp_path)
    for args in (["compare", root / "c1", root / "c2"], ["compare", "--by", "precision", root / "c1"],
                 ["advise", root / "c1", "--fps", "60", "--memory-mib", "100", "--power-w", "5"]):
        lines, status = screen(tmux, tmp_path, *args)
        assert status == 0, "\n".join(lines)
        assert_fits(lines)
        assert any("mnv2_w0.25_cifar10" in line for line in lines)
        assert any(LONG in line for line in lines)  # whole, on one line


# ------------------------------------------------------------------------------------------ help

def test_help_flows_to_the_terminal_width(tmux, tmp_path):
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "250"}).stdout
    for summary in ("Prepare boards in parallel: work folder, runner package (by content hash; skipped when "
                    "there), container image",
                    "a ratio with its 95 % interval and a same/faster/slower call"):
        assert any(summary in line for line in out.splitlines()), out
    lines, status = screen(tmux, tmp_path, "--help")
    assert status == 0 and any(line.startswith("│ deploy ") for line in lines), "\n".join(lines)
    assert_fits(lines)
    lines, status = screen(tmux, tmp_path, "query", "--help")
    text = " ".join(" ".join(lines).replace("│", " ").split())
    assert "Columns of `cells`: campaign, device, model" in text and "rss_mib_peak" in text
