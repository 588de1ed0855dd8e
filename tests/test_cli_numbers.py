"""Issue 20 items 8 and 11 (meter): every number a command takes is finite and within a stated
range, refused at parse time as a usage error (exit 2) naming the option; a percentage needs its
``%``; a comparison with nothing in common fails; ``host meter --opt`` values and keys are checked
by the driver with a typed error naming the option. Through the real CLI, real results folders
(``host bench --backend null``) and ``python -m runners``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from host.cli import app

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "models" / "tiny_cnn.onnx"
OTHER = ROOT / "tests" / "fixtures" / "models" / "identity.onnx"
#: a short real bench: null backend, quick preset, 1 s per cell
QUICK = ["--device", "local", "--backend", "null", "--quick", "--max-s", "1"]
runner = CliRunner()


def _invoke(args, cwd):
    """``host ARGS`` run in ``cwd`` (nothing lands in the repository)."""
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    finally:
        os.chdir(old)


def _refused(run, option: str, code: int = 2) -> None:
    """``run`` exited ``code`` with a message naming ``option`` and no traceback."""
    assert run.exception is None or isinstance(run.exception, SystemExit), repr(run.exception)
    assert "Traceback" not in run.output
    assert run.exit_code == code, run.output
    assert option in run.output, run.output


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A results root with campaign A (tiny_cnn) and B (identity): no cell in common."""
    root = tmp_path_factory.mktemp("numbers")
    for name, model in (("A", TINY), ("B", OTHER)):
        run = _invoke(["bench", model, *QUICK, "--results", root / "r", "--campaign", name], root)
        assert run.exit_code in (0, 3), run.output  # VALID, or INVALID on a busy machine
    return root / "r"


BENCH_BAD = [
    ("--max-s", "inf"), ("--max-s", "1e300"), ("--timeout", "inf"), ("--fps", "inf"), ("--fps", "1e300"),
    ("--loop-max-s", "inf"), ("--threads", "99999999"), ("--order-seed", "-5"), ("--idle-every-s", "inf"),
    ("--idle-settle-s", "inf"), ("--idle-window-s", "inf"), ("--connect-timeout", "inf"),
    ("--power-min-samples", "99999999"),
]


@pytest.mark.parametrize("option,value", BENCH_BAD)
def test_bench_refuses_numbers_out_of_range_before_measuring(option, value, tmp_path):
    run = _invoke(["bench", TINY, *QUICK, "--results", tmp_path / "r", "--campaign", "c", option, value],
                  tmp_path)
    _refused(run, option)
    assert not (tmp_path / "r").exists()  # nothing measured, nothing written


@pytest.mark.parametrize("args,option", [
    (["bench", "--batch", "99999999"], "--batch"),
    (["bench", "--option", "threads=99999999", "--backend", "ort"], "threads"),
])
def test_bench_refuses_a_batch_or_threads_the_board_cannot_take(args, option, tmp_path):
    run = _invoke([*args, TINY, "--device", "local", "--results", tmp_path / "r", "--campaign", "c"],
                  tmp_path)
    _refused(run, option)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args,option", [
    (["meter", "log", "--meter", "um25c", "--port", "nope", "--seconds", "inf"], "--seconds"),
    (["meter", "idle", "--meter", "um25c", "--port", "nope", "--window-s", "inf"], "--window-s"),
    (["meter", "idle", "--meter", "um25c", "--port", "nope", "--settle-s", "1e300"], "--settle-s"),
    (["advise", ".", "--device", "local", "--latency-ms", "inf"], "--latency-ms"),
    (["zoo", "quantize", "m.onnx", "--int8", "--seed", "-1"], "--seed"),
    (["models", str(TINY), "--batch", "99999999"], "--batch"),
    (["image", "build", "rpi", "--dry-run", "--timeout", "inf"], "--timeout"),
    (["check", "--device", "local", "--connect-timeout", "inf"], "--connect-timeout"),
])
def test_other_commands_refuse_numbers_out_of_range(args, option, tmp_path):
    _refused(_invoke(args, tmp_path), option)


def test_the_range_is_stated_in_the_help():
    out = runner.invoke(app, ["bench", "--help"], env={"COLUMNS": "200"}).output
    assert "0<=x<=1024" in out  # --threads
    assert "0.001<=x<=86400" in out  # --max-s / --loop-max-s


def test_good_numbers_still_work_and_a_gate_passes_only_on_cells_in_common(results, tmp_path):
    run = _invoke(["bench", TINY, *QUICK, "--results", tmp_path / "r", "--campaign", "ok", "--fps", "30",
                   "--timeout", "120", "--loop-max-s", "5", "--order-seed", "7", "--json"], tmp_path)
    assert run.exit_code in (0, 3), run.output
    assert [c["cell"]["model_stem"] for c in json.loads(run.stdout)] == ["tiny_cnn"]
    same = _invoke(["compare", results / "A", tmp_path / "r" / "ok", "--fail-above", "1000%"], tmp_path)
    assert same.exit_code == 0, same.output
    assert "0 regression(s) beyond 1000.0%" in same.output
    other = _invoke(["compare", results / "B", tmp_path / "r" / "ok", "--fail-above", "1000%"], tmp_path)
    _refused(other, "no cell in common", code=1)


@pytest.mark.parametrize("value,words", [
    ("5", "5%"), ("0.05", "0.05%"), ("nan%", "0% to 1000%"), ("-5%", "0% to 1000%"), ("inf%", "0% to 1000%"),
    ("5000%", "0% to 1000%"), ("x", "percentage such as 5%"),
])
def test_fail_above_needs_a_finite_percentage_with_its_sign(results, value, words, tmp_path):
    run = _invoke(["compare", results / "A", results / "A", "--fail-above", value], tmp_path)
    _refused(run, "--fail-above")
    assert words in run.output


@pytest.mark.parametrize("gate", [[], ["--fail-above", "5%"], ["--json"]])
def test_a_comparison_with_nothing_in_common_fails(results, gate, tmp_path):
    run = _invoke(["compare", results / "A", results / "B", *gate], tmp_path)
    _refused(run, "no cell in common", code=1)
    assert str(results / "A") in run.output and str(results / "B") in run.output
    assert "tiny_cnn" in run.output and "identity" in run.output  # what was compared
    assert "regression" not in run.output  # no vacuous "0 regressions"


@pytest.mark.parametrize("meter,opt,words", [
    ("um25c", "baudrate=abc", "baudrate='abc'"),
    ("um25c", "baudrate=inf", "baudrate=inf"),
    ("um25c", "baudrate=1e300", "baudrate"),
    ("um25c", "min_interval_s=nan", "min_interval_s=nan: expected"),
    ("um25c", "timeout_s=inf", "timeout_s"),
    ("um25c", "=9600", "--opt"),
    ("ina219", "period_ms=0.5", "period_ms=0.5: expected an integer"),
    ("nvml", "interval_s=abc", "interval_s"),
    ("jetson-ina3221", "timeout_s=abc", "timeout_s"),
    ("rpi5-pmic", "bogus=1", "bogus"),
])
def test_meter_options_are_checked_with_a_typed_error(meter, opt, words, tmp_path):
    run = _invoke(["meter", "read", "--meter", meter, "--port", "nope", "--opt", opt], tmp_path)
    _refused(run, words, code=1)
    assert "error:" in run.output


def test_a_good_meter_option_reaches_the_port(tmp_path):
    run = _invoke(["meter", "read", "--meter", "um25c", "--port", tmp_path / "ttyNOPE",
                   "--opt", "baudrate=115200", "--opt", "min-interval-s=0"], tmp_path)
    _refused(run, "ttyNOPE", code=1)  # the options passed; the missing port is the error


@pytest.mark.parametrize("args,option", [
    (["--max-s", "inf"], "--max-s"), (["--fps", "nan"], "--fps"), (["--min-iters", "-1"], "--min-iters"),
    (["--seed", "-1"], "--seed"), (["--batch", "99999999"], "--batch"),
    (["--threads", "99999999"], "--threads"), (["--cov-max", "1e300"], "--cov-max"),
    (["--mode-share-max", "inf"], "--mode-share-max"),
])
def test_the_runner_refuses_numbers_out_of_range(args, option):
    proc = subprocess.run([sys.executable, "-m", "runners", "run", "--backend", "ort", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert option in proc.stderr and "Traceback" not in proc.stderr
