"""The host CLI and campaign loop: layout, .info merge, failures, crashes, error paths."""

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from host.campaign.protocol import Protocol
from host.campaign.run import run_campaign
from host.campaign.store import cell_path, load_cells, safe_name
from host.cli import app
from host.lab.benchconfig import BenchConfig
from host.lab.inventory import local_device
from runners.cli import build_parser
from runners.core import Policy

ROOT = Path(__file__).resolve().parent.parent
FAST_PROTOCOL = Protocol(target_ci=0.5, max_cell_s=30.0)  # five processes per cell, loose target
FIX = ROOT / "tests" / "fixtures" / "models"
FAST = ["--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "20", "--min-s", "0.05",
        "--target-ci", "0.5", "--threads", "1"]
FAST_CONFIG = BenchConfig(threads=1, timeout_s=60, policy=Policy(
    warmup_min_iterations=2, warmup_min_s=0.0, min_iterations=20, min_duration_s=0.05,
    cov_max=100.0))
runner = CliRunner()


@pytest.fixture
def models(tmp_path):
    d = tmp_path / "models"
    (d / "nested").mkdir(parents=True)
    shutil.copy(FIX / "tiny_cnn.onnx", d)
    shutil.copy(FIX / "identity.onnx", d / "nested")
    shutil.copy(FIX / "corrupt.onnx", d)
    info = {"torch_params": 314, "command": "made by hand", "nested": {"list": [1, 2]}}
    (d / "tiny_cnn.info").write_text(json.dumps(info))
    return d


@pytest.mark.parametrize("args", [[], ["bench"], ["report"], ["models"], ["zoo", "export"]])
def test_help(args):
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_bench_help_states_the_default_preset():
    from host.campaign.protocol import PRESETS

    out = " ".join(runner.invoke(app, ["bench", "--help"], env={"COLUMNS": "250"}).output.split())
    out = out.split("Options", 1)[1]  # the options table, after the description
    protocol, policy = PRESETS["default"]
    for option, value in (("--target-ci", protocol.target_ci), ("--max-s", protocol.max_cell_s),
                          ("--min-processes", protocol.min_processes), ("--sessions", policy.sessions),
                          ("--warmup-iters", policy.warmup_min_iterations),
                          ("--warmup-s", policy.warmup_min_s),
                          ("--min-iters", policy.min_iterations), ("--min-s", policy.min_duration_s),
                          ("--loop-max-s", policy.max_duration_s)):
        text = f"{value:g}" if isinstance(value, float) else str(value)
        assert f" {option} " in out and f"[{text}]" in out.split(f" {option} ", 1)[1][:200], option
    assert "--quick" in out and "--rigorous" in out


@pytest.mark.parametrize("args, words", [
    (["--quick", "--rigorous"], "exclude each other"),
    (["--min-s", "90", "--loop-max-s", "60"], "exceeds its cap"),
    (["--min-processes", "3"], "--min-processes"),
])
def test_bench_refuses_contradictory_protocols(args, words, tmp_path):
    result = runner.invoke(app, ["bench", "--results", str(tmp_path), *args], env={"COLUMNS": "250"})
    assert result.exit_code == 2 and words in " ".join(result.output.split())
    assert not any(tmp_path.iterdir())  # nothing ran


def test_runner_argv_reproduces_the_policy():
    policy = Policy(warmup_min_iterations=3, warmup_min_s=0.25, min_iterations=7,
                    min_duration_s=0.125, max_duration_s=9.5, cov_max=0.05, fps=30.0)
    config = BenchConfig(batch=2, threads=1, policy=policy, shapes=(("x", (2, 3)),))
    args = build_parser().parse_args(["run", "m.onnx", *config.runner_args()])
    assert Policy(**{k: getattr(args, k) for k in vars(policy)}) == policy
    assert args.batch == 2 and args.threads == 1 and args.shape == [("x", (2, 3))]


def test_python_dash_m_host():
    p = subprocess.run([sys.executable, "-m", "host", "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert p.returncode == 0 and "bench" in p.stdout


def test_bench_writes_the_campaign_layout_and_continues_past_a_corrupt_model(models, tmp_path):
    res = tmp_path / "results"
    # a wide terminal: the names below are asserted whole (fitting 100 columns is issue 22's)
    result = runner.invoke(app, ["bench", str(models), "--results", str(res), "--campaign", "c1", *FAST],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 1, result.output  # one cell failed
    layout = sorted(p.relative_to(res).as_posix() for p in res.rglob("*.json"))
    assert layout == ["c1/campaign.json", "c1/local/corrupt__ort-b1-t1.json",
                      "c1/local/identity__ort-b1-t1.json", "c1/local/tiny_cnn__ort-b1-t1.json"]
    cells = {c["cell"]["model_stem"]: c for c in load_cells(res)}
    assert cells["corrupt"]["status"] == "failed"
    assert cells["corrupt"]["error"]["type"] == "ModelLoadError"
    assert "error" in cells["corrupt"]["metrics"]
    tiny = cells["tiny_cnn"]
    # a real timed cell: VALID, or INVALID when the machine is noisy (issue 20); never failed
    assert (tiny["status"], tiny["verdict"]["result"]) in (("ok", "VALID"), ("invalid", "INVALID"))
    assert tiny["info"] == json.loads((models / "tiny_cnn.info").read_text())  # verbatim
    assert tiny["model"]["precision"] == "fp32"
    assert tiny["metrics"]["params"] == 314 and tiny["metrics"]["flops"] == 2 * tiny["metrics"]["macs"]
    # the first process wrote its result: 0, or 3 when that one process failed a loop check (a
    # 2-iteration warm-up can leave a drifting loop; the cell judges its five processes together)
    assert tiny["host"]["runner_process"]["exit_code"] in (0, 3)
    assert tiny["cell"] == {"campaign": "c1", "device": "local", "model_stem": "tiny_cnn",
                            "config": "ort-b1-t1"}
    assert cells["identity"]["info"] is None
    plan = json.loads((res / "c1" / "campaign.json").read_text())
    assert len(plan["plan"]) == 3 and list(plan["configs"]) == ["ort-b1-t1"]
    assert {e["model"] for e in plan["plan"]} == {"tiny_cnn", "identity", "corrupt"}
    assert all(len(e["model_sha256"]) == 64 and e["device"] == "local" for e in plan["plan"])
    assert plan["runs"][-1]["interrupted"] is False
    for name in ("tiny_cnn", "identity", "corrupt", "VALID", "FAILED"):
        assert name in result.output


def test_bench_json_and_no_overwrite_of_existing_cells(tmp_path):
    res = tmp_path / "r"
    args = ["bench", str(FIX / "tiny_cnn.onnx"), "--results", str(res), "--campaign", "c", "--json", *FAST]
    first = runner.invoke(app, args)
    assert first.exit_code in (0, 3), first.output  # VALID, or INVALID on a noisy machine
    cells = json.loads(first.stdout)
    assert [c["status"] for c in cells] == [{0: "ok", 3: "invalid"}[first.exit_code]]
    path = res / "c" / "local" / "tiny_cnn__ort-b1-t1.json"
    before = path.read_bytes()
    second = runner.invoke(app, args)
    assert second.exit_code == first.exit_code, second.output  # the kept cell's verdict
    assert path.read_bytes() == before  # skipped, not re-measured or overwritten
    assert json.loads(second.stdout)[0]["timestamps"] == cells[0]["timestamps"]


CRASHER = f"#!{sys.executable}\n" + textwrap.dedent(
    """
    import os, signal, sys, time
    mode = os.environ["CRASH_MODE"]
    if mode == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif mode == "exit":
        print("Traceback: something broke", file=sys.stderr)
        sys.exit(1)
    elif mode == "hang":
        time.sleep(60)
    elif mode == "garbage":
        out = sys.argv[sys.argv.index("--out") + 1]
        open(out, "w").write("{not json")
        sys.exit(0)
    """
)


@pytest.mark.parametrize(
    "mode, error_type, detail",
    [("segv", "RunnerCrash", "SIGSEGV"), ("exit", "RunnerCrash", "code 1: Traceback"),
     ("hang", "Timeout", "timeout"), ("garbage", "RunnerCrash", "unreadable result JSON")],
)
def test_crashing_runner_is_recorded_and_the_campaign_goes_on(tmp_path, monkeypatch, mode, error_type,
                                                             detail):
    script = tmp_path / "crash.py"  # stands in for the device's Python interpreter
    script.write_text(CRASHER)
    script.chmod(0o755)
    monkeypatch.setenv("CRASH_MODE", mode)
    device = dataclasses.replace(local_device(str(tmp_path / "work")), python=str(script))
    config = BenchConfig(timeout_s=2, threads=1)
    models = [FIX / "tiny_cnn.onnx", FIX / "identity.onnx"]
    cells = run_campaign(models, [device], config, results=tmp_path / "r", campaign="c",
                         protocol=FAST_PROTOCOL).cells
    assert len(cells) == 2  # both cells ran and were recorded
    for cell in cells:
        assert cell["status"] == "failed"
        assert cell["error"]["type"] == error_type
        assert detail in cell["error"]["message"]
        assert Path(cell["_path"]).exists()
        assert cell["metrics"]["params"] >= 0  # host-side facts survive a crash
    proc = cells[0]["host"]["runner_process"]
    if mode == "segv":
        assert proc["signal"] == "SIGSEGV" and proc["exit_code"] is None
    if mode == "hang":
        assert proc["timed_out"] is True and proc["wall_s"] < 30


def test_invalid_info_is_a_warning(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(FIX / "identity.onnx", d)
    (d / "identity.info").write_text("{broken")
    cells = run_campaign([d / "identity.onnx"], [local_device(str(tmp_path / "work"))], FAST_CONFIG,
                         results=tmp_path / "r", campaign="c",
                         protocol=FAST_PROTOCOL).cells
    assert cells[0]["info"] is None
    assert any("identity.info" in w for w in cells[0]["warnings"])


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["bench", "/nonexistent/models"], 1, "does not exist"),
        (["bench", str(ROOT / "pyproject.toml")], 1, "not a model (expected a .onnx file"),
        (["bench", "--device", "zcu104", str(FIX)], 1, "zcu104-1 (runtime vart) runs .xmodel"),
        (["bench", "--device", "nosuchboard", str(FIX)], 1, "nosuchboard"),
        (["bench", str(FIX), "--shape", "oops"], 2, "--shape"),
        (["bench", str(FIX), "--backend", "nosuch"], 1, "unknown backend"),  # tensorrt: test_tensorrt.py
        (["report", "/nonexistent/results"], 1, "does not exist"),
        (["models", "/nonexistent.onnx"], 1, "does not exist"),
    ],
)
def test_error_paths_give_one_line_and_nonzero_exit(args, code, words, tmp_path):
    results = tmp_path / "results"
    if args[0] == "bench":  # never the checkout's own results/
        args = [*args, "--results", str(results)]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    assert words in result.output
    assert "Traceback" not in result.output
    # a refused bench leaves no empty campaign folder (or lock file) behind
    assert not results.exists() or not any(p for p in results.rglob("*"))


def test_empty_folder_and_duplicate_stems(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["bench", str(empty)])
    assert result.exit_code == 1 and "no .onnx models" in result.output
    for sub in ("a", "b"):
        (tmp_path / "dup" / sub).mkdir(parents=True)
        shutil.copy(FIX / "identity.onnx", tmp_path / "dup" / sub)
    result = runner.invoke(app, ["bench", str(tmp_path / "dup"), "--results", str(tmp_path / "r")])
    assert result.exit_code == 1 and "share the cell name 'identity'" in result.output
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_report_writes_csv_and_parquet(tmp_path, models):
    pd = pytest.importorskip("pandas")
    res = tmp_path / "results"
    runner.invoke(app, ["bench", str(models), "--results", str(res), "--campaign", "c", *FAST])
    result = runner.invoke(app, ["report", str(res / "c")])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(res / "c" / "results.parquet")
    assert sorted(frame["model"]) == ["corrupt", "identity", "tiny_cnn"]
    row = frame.set_index("model").loc["tiny_cnn"]
    assert row["status"] in ("ok", "invalid") and row["params"] == 314 and row["latency_ms_p50"] > 0
    assert row["memory_method"] == "rss_vmhwm"
    assert frame.set_index("model").loc["corrupt", "error_type"] == "ModelLoadError"
    csv = pd.read_csv(res / "c" / "results.csv")
    assert len(csv) == 3
    as_json = runner.invoke(app, ["report", str(res / "c"), "--json"])
    assert len(json.loads(as_json.stdout)) == 3


def test_models_command_json(tmp_path):
    result = runner.invoke(app, ["models", str(FIX / "tiny_cnn.onnx"), "--json"])
    assert result.exit_code == 0, result.output
    met = json.loads(result.stdout)["tiny_cnn"]
    assert met["params"] == 314 and met["cdl"] == 5 and met["flops"] == 2 * met["macs"]
    result = runner.invoke(app, ["models", str(FIX / "corrupt.onnx")])
    assert result.exit_code == 1


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "a b;rm -rf $(x)", "..", "x/../../y", "`id`"])
def test_hostile_names_stay_inside_the_campaign_folder(tmp_path, hostile):
    path = cell_path(tmp_path, hostile, hostile, hostile, hostile)
    assert tmp_path.resolve() in path.resolve().parents
    assert len(path.relative_to(tmp_path).parts) == 3
    for part in path.relative_to(tmp_path).parts:
        assert "/" not in part and ".." not in part.replace("__", "") and " " not in part
    assert safe_name(hostile) == safe_name(safe_name(hostile))  # idempotent
