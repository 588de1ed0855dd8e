"""The lab over real SSH: loopback OpenSSH boards (tests/labfix.py) driven by `host check`,
`host deploy` and `host bench`: fan-out, a board dying mid-campaign, resume, host keys,
hostile names, timeouts and crashes on a board, Ctrl-C, and container mode with podman."""

import json
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from host.campaign.protocol import Protocol
from host.campaign.run import classify_failure, run_campaign, store_cell
from host.cli import app
from host.errors import CampaignMismatchError
from host.lab.benchconfig import BenchConfig, RunnerOutcome
from host.lab.board import Board, BoardOptions, open_transport, sh
from host.lab.inventory import local_device, resolve_inventory
from runners.core import Policy

ROOT = Path(__file__).resolve().parent.parent
FAST_PROTOCOL = Protocol(target_ci=0.5, max_cell_s=30.0)  # five processes per cell, loose target
FIX = ROOT / "tests" / "fixtures" / "models"
NULL = ["--backend", "null", "--warmup-iters", "1", "--warmup-s", "0", "--min-iters", "5",
        "--min-s", "0.01", "--target-ci", "0.5"]
ORT = ["--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "10", "--min-s", "0.02",
       "--target-ci", "0.5", "--threads", "1"]
NULL_CONFIG = BenchConfig(backend="null", timeout_s=60, policy=Policy(
    warmup_min_iterations=1, warmup_min_s=0.0, min_iterations=5, min_duration_s=0.01, cov_max=100.0))
QUICK = BoardOptions(connect_timeout=3, retries=1, backoff_s=0.1)
runner = CliRunner()


def host(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def fresh(boards):
    """Empty every board's work folder (the session's boards share state across tests)."""
    for name in boards.names:
        shutil.rmtree(boards.workdir(name))
        boards.workdir(name)


def lab_ini(boards, path: Path, hosts: dict, **group) -> Path:
    """An inventory with per-host variables (``hosts``: name -> {var: value})."""
    lines = ["[boards]"]
    for name, extra in hosts.items():
        hv = {"ansible_host": "127.0.0.1", "ansible_port": boards.ports[name],
              "workdir": boards.workdir(name), **extra}
        lines.append(name + " " + " ".join(f"{k}={shlex.quote(str(v))}" for k, v in hv.items()))
    gv = {"ansible_user": "root", "ansible_ssh_private_key_file": boards.client_key,
          "ansible_ssh_common_args": f"-o UserKnownHostsFile={boards.known_hosts} "
                                     "-o StrictHostKeyChecking=yes",
          "runtime": "ort", "mode": "native", "python": sys.executable, **group}
    lines += ["[boards:vars]"] + [f"{k}={v}" for k, v in gv.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def copies(tmp_path: Path, n: int, source: str = "identity.onnx") -> list:
    d = tmp_path / "models"
    d.mkdir(exist_ok=True)
    out = []
    for i in range(1, n + 1):
        shutil.copy(FIX / source, d / f"m{i}.onnx")
        out.append(d / f"m{i}.onnx")
    return out


# -- fan-out -------------------------------------------------------------------------------


def test_fanout_over_three_boards_gives_the_same_cells_as_local(boards, tmp_path):
    fresh(boards)
    inv = boards.write_inventory(tmp_path / "lab.ini")
    models = [FIX / "tiny_cnn.onnx", FIX / "identity.onnx"]
    res = tmp_path / "r"
    lab = host("bench", *models, "-i", inv, "--all", "--results", res, "--campaign", "fan", *ORT, "--json")
    assert lab.exit_code in (0, 3), lab.output  # 3: a cell INVALID on a noisy machine
    local = host("bench", *models, "--results", res, "--campaign", "fan", *ORT, "--json")
    assert local.exit_code in (0, 3), local.output
    files = {p.relative_to(res / "fan").as_posix() for p in (res / "fan").rglob("*.json")}
    want = {f"{d}/{m}__ort-b1-t1.json" for d in ("b1", "b2", "b3", "local") for m in ("tiny_cnn", "identity")}
    assert files == want | {"campaign.json"}
    local_cells = {c["cell"]["model_stem"]: c for c in json.loads(local.stdout)}
    for cell in json.loads(lab.stdout):
        ref = local_cells[cell["cell"]["model_stem"]]
        # local looks for its own energy counters and says it found none; a board without a meter has none
        assert ref["power"]["meter"] is None and ref["power"]["no_source"] and "power" not in cell
        assert cell["status"] in ("ok", "invalid") and set(cell) == set(ref) - {"power"}
        assert cell["model"]["sha256"] == ref["model"]["sha256"]
        assert cell["configuration"] == ref["configuration"] and cell["metrics"] == ref["metrics"]
        assert cell["runtime"]["name"] == ref["runtime"]["name"] and cell["latency"]["iterations"] >= 10
        orch = cell["host"]["runner_process"]["orchestration"]
        board = cell["cell"]["device"]
        assert orch["transport"] == "ssh" and orch["board"] == board
        assert orch["model_remote_path"].startswith(str(boards.workdir(board)) + "/models/")
    plan = json.loads((res / "fan" / "campaign.json").read_text())
    assert len(plan["plan"]) == 8 and set(plan["devices"]) == {"b1", "b2", "b3", "local"}
    assert plan["devices"]["b2"]["port"] == boards.ports["b2"]


# -- a board dies mid-campaign; resume -------------------------------------------------------


def test_board_dying_midway_fails_only_its_cells_and_resume_completes_them(boards, tmp_path):
    fresh(boards)
    devices = resolve_inventory(str(boards.write_inventory(tmp_path / "lab.ini"))).select(all_devices=True)
    models = copies(tmp_path, 4)
    killed = threading.Event()

    def on_event(event):  # kill b2's sshd (and its sessions) right after its first cell
        if event.device == "b2" and event.state == "done" and not killed.is_set():
            killed.set()
            boards.stop("b2")

    def open_board(device):
        return Board(device, open_transport(device, QUICK))

    results = tmp_path / "r"
    first = run_campaign(models, devices, NULL_CONFIG, results=results, campaign="k", backend="null",
                         on_event=on_event, open_board=open_board, protocol=FAST_PROTOCOL)
    status = {(c["cell"]["device"], c["cell"]["model_stem"]): c for c in first.cells}
    assert killed.is_set() and len(status) == 12
    for dev in ("b1", "b3"):
        assert all(status[(dev, f"m{i}")]["status"] in ("ok", "invalid") for i in range(1, 5))
    assert status[("b2", "m1")]["status"] in ("ok", "invalid")  # timed: INVALID when noisy
    for i in (2, 3, 4):
        err = status[("b2", f"m{i}")]["error"]
        assert status[("b2", f"m{i}")]["status"] == "failed"
        assert err["category"] == "unreachable" and err["type"] == "Unreachable", err
    assert first.boards["b2"].error and first.boards["b1"].error is None
    kept = {p: p.read_bytes() for p in results.rglob("*.json") if p.name != "campaign.json"
            and json.loads(p.read_text())["status"] != "failed"}

    boards.start("b2")
    second = run_campaign(models, devices, NULL_CONFIG, results=results, campaign="k", backend="null",
                          open_board=open_board, protocol=FAST_PROTOCOL)
    assert len(second.cells) == 12 and all(c["status"] in ("ok", "invalid") for c in second.cells)
    assert second.boards["b1"].run == 0 and second.boards["b1"].skipped == 4
    assert second.boards["b2"].run == 3 and second.boards["b2"].skipped == 1
    assert second.boards["b2"].models_sent == 0  # the model was already on b2
    for path, data in kept.items():
        assert path.read_bytes() == data  # nothing finished was redone or rewritten
    attempts = sorted(p.name for p in (results / "k" / "b2" / ".attempts").iterdir())
    assert attempts == [f"m{i}__null-b1-tall.1.json" for i in (2, 3, 4)]  # failed attempts kept
    plan = json.loads((results / "k" / "campaign.json").read_text())
    assert len(plan["runs"]) == 2 and plan["runs"][1]["cells_run"]["b2"] == 3
    # a third run has nothing left to do
    third = run_campaign(models, devices, NULL_CONFIG, results=results, campaign="k", backend="null",
                         open_board=open_board, protocol=FAST_PROTOCOL)
    assert sum(s.run for s in third.boards.values()) == 0


def test_retry_failed_reruns_board_failures_only_on_request(tmp_path):
    device = local_device(str(tmp_path / "work"))
    models = [FIX / "corrupt.onnx", FIX / "identity.onnx"]
    cfg = BenchConfig(timeout_s=60, threads=1, policy=NULL_CONFIG.policy)
    first = run_campaign(models, [device], cfg, results=tmp_path / "r", campaign="c", protocol=FAST_PROTOCOL)
    assert [c["status"] for c in first.cells] in (["failed", "ok"], ["failed", "invalid"])
    assert first.cells[0]["error"]["category"] == "invalid_model"
    again = run_campaign(models, [device], cfg, results=tmp_path / "r", campaign="c", protocol=FAST_PROTOCOL)
    assert again.boards["local"].run == 0  # an invalid model is a result, not retried by default
    retry = run_campaign(models, [device], cfg, results=tmp_path / "r", campaign="c", retry_failed=True,
                         protocol=FAST_PROTOCOL)
    assert retry.boards["local"].run == 1 and retry.boards["local"].skipped == 1
    assert (tmp_path / "r" / "c" / "local" / ".attempts" / "corrupt__ort-b1-t1.1.json").exists()


def test_a_changed_model_under_the_same_name_is_refused(tmp_path):
    device = local_device(str(tmp_path / "work"))
    model = tmp_path / "m.onnx"
    shutil.copy(FIX / "identity.onnx", model)
    run_campaign([model], [device], NULL_CONFIG, results=tmp_path / "r", campaign="c", backend="null",
                 protocol=FAST_PROTOCOL)
    shutil.copy(FIX / "tiny_cnn.onnx", model)
    with pytest.raises(CampaignMismatchError, match="has changed since it was planned"):
        run_campaign([model], [device], NULL_CONFIG, results=tmp_path / "r", campaign="c", backend="null",
                     protocol=FAST_PROTOCOL)


def test_the_bundle_a_board_holds_is_the_source_sha256_its_results_report(tmp_path):
    work = tmp_path / "work"
    res = run_campaign([FIX / "identity.onnx"], [local_device(str(work))], NULL_CONFIG,
                       results=tmp_path / "r", campaign="c", backend="null", protocol=FAST_PROTOCOL)
    reported = res.cells[0]["manifest"]["tool"]["source_sha256"]  # hashed by the runner on the board
    assert [p.name for p in (work / "runners").iterdir()] == [reported]
    device = local_device(str(work))
    assert Board(device, open_transport(device)).runners_hash == reported


# -- deploy, check ---------------------------------------------------------------------------


def test_deploy_ships_once_and_a_dead_board_does_not_stop_the_others(boards, tmp_path):
    fresh(boards)
    inv = boards.write_inventory(tmp_path / "lab.ini")
    first = host("deploy", FIX / "tiny_cnn.onnx", "-i", inv, "--json")
    assert first.exit_code == 0, first.output
    for rep in json.loads(first.stdout):
        steps = dict(rep["steps"])
        assert rep["ok"] and steps["runners"].endswith("sent")
        assert steps["models"] == "1 sent, 0 already there"
        assert steps["runtime"].startswith("ort: available (onnxruntime")
        assert rep["bytes_sent"] > (FIX / "tiny_cnn.onnx").stat().st_size
    second = host("deploy", FIX / "tiny_cnn.onnx", "-i", inv, "--json")
    for rep in json.loads(second.stdout):
        steps = dict(rep["steps"])
        assert rep["bytes_sent"] == 0 and steps["runners"].endswith("already there")
        assert steps["models"] == "0 sent, 1 already there"
    boards.stop("b2")
    third = host("deploy", "-i", inv, "--json")
    assert third.exit_code == 1
    reps = {r["device"]: r for r in json.loads(third.stdout)}
    assert reps["b1"]["ok"] and reps["b3"]["ok"]
    assert not reps["b2"]["ok"] and reps["b2"]["category"] == "unreachable"


def test_check_prints_facts_and_its_exit_code_says_ready_not_ready_unreachable(boards, tmp_path):
    import platform

    inv = lab_ini(boards, tmp_path / "lab.ini", {"b1": {}, "b2": {"python": tmp_path / "no-python"}})
    res = host("check", "-i", inv, "--device", "b1", "--json")
    assert res.exit_code == 0, res.output
    (b1,) = json.loads(res.stdout)
    assert b1["verdict"] == "ready"
    assert b1["facts"]["arch"] == platform.machine() and b1["facts"]["python"] == platform.python_version()
    assert int(b1["facts"]["cores"]) >= 1 and b1["facts"]["mem_gib"] > 0
    assert b1["facts"]["runtime"].startswith("onnxruntime 1.")
    both = host("check", "-i", inv, "--json")
    assert both.exit_code == 2
    b2 = {r["device"]: r for r in json.loads(both.stdout)}["b2"]
    assert b2["verdict"] == "not ready" and "onnxruntime does not import" in b2["problems"][0]
    boards.stop("b2")
    down = host("check", "-i", inv)
    assert down.exit_code == 1 and "unreachable" in down.output


# -- host keys -------------------------------------------------------------------------------


def test_unknown_and_changed_host_keys_are_refused(boards, tmp_path):
    inv = boards.write_inventory(tmp_path / "lab.ini", devices=["b1"])
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    res = host("check", "-i", inv, "--known-hosts", empty, "--json")
    assert res.exit_code == 1
    problem = json.loads(res.stdout)[0]["problems"][0]
    assert "is not in" in problem and "refusing" in problem
    assert empty.read_text() == ""  # nothing recorded silently
    cells = host("bench", FIX / "identity.onnx", "-i", inv, "--device", "b1", "--known-hosts", empty,
                 "--results", tmp_path / "r", *NULL, "--json")
    assert cells.exit_code == 1
    assert json.loads(cells.stdout)[0]["error"]["category"] == "host_key"

    res = host("check", "-i", inv, "--known-hosts", empty, "--accept-new-host-keys")
    assert res.exit_code == 0, res.output
    assert "recorded new host key" in res.output
    assert empty.read_text().split()[1:] == boards.host_key_line("b1").split()[1:]

    wrong = boards.wrong_known_hosts(tmp_path / "wrong_known_hosts")
    res = host("check", "-i", inv, "--known-hosts", wrong, "--accept-new-host-keys", "--json")
    assert res.exit_code == 1
    assert "CHANGED" in json.loads(res.stdout)[0]["problems"][0]


# -- hostile names ---------------------------------------------------------------------------


def test_hostile_model_campaign_and_workdir_names_never_reach_a_shell(boards, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "in"
    evil.mkdir()
    model = evil / "a b;$(touch PWNED1)'`touch PWNED2`.onnx"
    shutil.copy(FIX / "identity.onnx", model)
    workdir = tmp_path / "w d;$(touch PWNED3)'q"
    inv = lab_ini(boards, tmp_path / "lab.ini", {"b1": {"workdir": workdir}})
    res = host("bench", model, "-i", inv, "--device", "b1", "--results", tmp_path / "r",
               "--campaign", "../../c d;$(touch PWNED4)", *NULL, "--json")
    assert res.exit_code in (0, 3), res.output  # 3: INVALID on a noisy machine
    (cell,) = json.loads(res.stdout)
    (stored,) = [p.resolve() for p in (tmp_path / "r").rglob("*.json") if p.name != "campaign.json"]
    assert (tmp_path / "r").resolve() in stored.parents
    assert stored.parent.name == "b1" and stored.name.endswith("__null-b1-tall.json")
    assert (workdir / "models" / f"{cell['model']['sha256']}.onnx").is_file()
    for where in (tmp_path, boards.dir, boards.workdir("b1")):
        assert not list(where.rglob("PWNED*"))
    assert not list(Path.home().glob("PWNED*")) and not list(Path("/tmp").glob("PWNED*"))
    assert all((tmp_path / "r").resolve() in p.resolve().parents for p in (tmp_path / "r").rglob("*"))


def test_commands_are_built_from_quoted_words():
    assert sh("a b", "$(x)", "'") == "'a b' '$(x)' ''\"'\"''"
    device = local_device("/w d")
    import dataclasses

    dev = dataclasses.replace(device, mode="container", image="img;rm -rf /", engine="podman --root '/x y'",
                              container_args="--network none")
    board = Board(dev, open_transport(dev))
    board.workdir = "/w d"
    cmd = board.command(["run", "/w d/models/ab.onnx", "--out", "/w d/out/t.json"], name="edgegauge-cell-1")
    words = shlex.split(cmd.rsplit(";", 1)[0])
    assert words[:5] == ["podman", "--root", "/x y", "run", "--rm"]
    assert "img;rm -rf /" in words and "/w d:/edgegauge" in words
    assert words[-3:] == ["/edgegauge/models/ab.onnx", "--out", "/edgegauge/out/t.json"]


# -- failures on a board -----------------------------------------------------------------------


def test_remote_timeout_kills_the_runner_and_crashes_are_classified(boards, tmp_path):
    hang = tmp_path / "hang-python"
    sleep = tmp_path / "sleep"  # a sleep named by this test, so pgrep finds this test's only
    sleep.symlink_to(shutil.which("sleep"))
    hang.write_text(f"#!/bin/sh\n{shlex.quote(str(sleep))} 300\n")
    segv = tmp_path / "segv-python"
    segv.write_text("#!/bin/sh\nkill -SEGV $$\n")
    for script in (hang, segv):
        script.chmod(0o755)
    inv = lab_ini(boards, tmp_path / "lab.ini", {"b1": {"python": hang}, "b2": {"python": segv}, "b3": {}})
    start = time.monotonic()
    res = host("bench", FIX / "identity.onnx", "-i", inv, "--all", "--timeout", "3",
               "--results", tmp_path / "r", *NULL, "--json")
    assert res.exit_code == 1 and time.monotonic() - start < 60
    cells = {c["cell"]["device"]: c for c in json.loads(res.stdout)}
    assert cells["b1"]["error"]["category"] == "timeout"
    assert cells["b2"]["error"]["category"] == "runner_crash" and cells["b2"]["error"]["signal"] == "SIGSEGV"
    assert cells["b3"]["status"] in ("ok", "invalid")
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", str(sleep)], capture_output=True, text=True).stdout
    assert left.strip() == ""  # the runner and its children were killed on the board


def test_a_sigkill_without_oom_evidence_is_killed_not_out_of_memory(tmp_path):
    import dataclasses

    shim = tmp_path / "kill-python"
    shim.write_text("#!/bin/sh\nkill -KILL $$\n")
    shim.chmod(0o755)
    device = dataclasses.replace(local_device(str(tmp_path / "w")), python=str(shim))
    (cell,) = run_campaign([FIX / "identity.onnx"], [device], NULL_CONFIG, results=tmp_path / "r",
                           campaign="k", backend="null", protocol=FAST_PROTOCOL).cells
    err = cell["error"]
    assert err["type"] == "Killed" and err["category"] == "killed" and err["signal"] == "SIGKILL"
    assert "did not rise" in err["message"]  # this machine counts OOM kills; none happened
    assert cell["host"]["runner_process"]["orchestration"]["oom_kills_during"] == 0
    assert "@edgegauge-oom" not in cell["host"]["runner_process"]["stderr_tail"]


def test_failure_classification_table():
    def outcome(**kw):
        base = dict(argv=[], exit_code=None, signal=None, wall_s=1.0, timed_out=False, stderr_tail="")
        return RunnerOutcome(**{**base, **kw})

    assert classify_failure(outcome(timed_out=True))["category"] == "timeout"
    oom = outcome(signal="SIGKILL", extra={"oom_kills_during": 1})
    assert classify_failure(oom)["category"] == "out_of_memory"  # with the kernel's evidence
    killed = classify_failure(outcome(signal="SIGKILL", extra={"oom_kills_during": 0}))
    assert killed["category"] == "killed" and "did not rise" in killed["message"]
    assert classify_failure(outcome(signal="SIGKILL"))["category"] == "killed"  # counter unreadable
    assert classify_failure(outcome(signal="SIGSEGV"))["category"] == "runner_crash"
    assert classify_failure(outcome(exit_code=1, stderr_tail="MemoryError"))["category"] == "out_of_memory"
    assert classify_failure(outcome(exit_code=125))["type"] == "ContainerError"
    assert classify_failure(outcome(exit_code=127))["category"] == "setup"
    assert classify_failure(outcome(exit_code=1))["category"] == "runner_crash"


def test_store_cell_keeps_every_replaced_attempt(tmp_path):
    path = tmp_path / "d" / "m__c.json"
    for n in range(3):
        store_cell(path, {"schema_version": "1.0", "status": "failed", "n": n})
    assert json.loads(path.read_text())["n"] == 2
    kept = sorted(json.loads(p.read_text())["n"] for p in (tmp_path / "d" / ".attempts").iterdir())
    assert kept == [0, 1]


def test_names_that_would_share_a_folder_are_refused_not_merged(tmp_path):
    import dataclasses

    from host.errors import NameCollisionError

    local = local_device(str(tmp_path / "w"))
    twins = [dataclasses.replace(local, name="a b"), dataclasses.replace(local, name="a_b")]
    with pytest.raises(NameCollisionError, match="'a b' and 'a_b' would share"):
        run_campaign([FIX / "identity.onnx"], twins, NULL_CONFIG, results=tmp_path / "r", campaign="c",
                     backend="null", protocol=FAST_PROTOCOL)
    assert not (tmp_path / "r" / "c").exists()  # nothing written
    run_campaign([FIX / "identity.onnx"], [local], NULL_CONFIG, results=tmp_path / "r", campaign="x y",
                 backend="null", protocol=FAST_PROTOCOL)
    kept = {p: p.read_bytes() for p in (tmp_path / "r" / "x_y").rglob("*") if p.is_file()}
    with pytest.raises(NameCollisionError, match="holds campaign 'x y'"):
        run_campaign([FIX / "identity.onnx"], [local], NULL_CONFIG, results=tmp_path / "r", campaign="x_y",
                     backend="null", protocol=FAST_PROTOCOL)
    assert {p: p.read_bytes() for p in (tmp_path / "r" / "x_y").rglob("*") if p.is_file()} == kept


# -- Ctrl-C ----------------------------------------------------------------------------------


def test_ctrl_c_leaves_a_consistent_campaign_that_resumes(boards, tmp_path):
    fresh(boards)
    inv = boards.write_inventory(tmp_path / "lab.ini", devices=["b1"])
    models = copies(tmp_path, 3)
    # each timed loop takes 0.4 s; five processes per cell, interleaved: the cells finish in
    # round 5, one after another
    slow = [a if a != "0.01" else "0.4" for a in NULL] + ["--max-processes", "5"]
    argv = [sys.executable, "-m", "host", "bench", *map(str, models), "-i", str(inv), "--device", "b1",
            "--results", str(tmp_path / "r"), "--campaign", "cc", *slow]
    # Ctrl-C as from a terminal, however pytest was started: a shell starts background jobs
    # with SIGINT ignored, and an ignored signal stays ignored across exec
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    cell_dir = tmp_path / "r" / "cc" / "b1"
    deadline = time.monotonic() + 300  # ends at the first cell: long only on a loaded machine
    while not (cell_dir.exists() and any(cell_dir.glob("*.json"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # the next cell's last process is running now
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "resume with: host bench " in err and "--campaign cc" in err  # the command to run again
    plan = json.loads((tmp_path / "r" / "cc" / "campaign.json").read_text())
    assert plan["runs"][-1]["interrupted"] is True
    done = sorted(cell_dir.glob("*.json"))
    assert 1 <= len(done) < 3 and all(json.loads(p.read_text())["status"] in ("ok", "invalid") for p in done)
    time.sleep(0.3)
    out_dir = boards.workdir("b1") / "out"
    assert subprocess.run(["pgrep", "-f", str(out_dir)], capture_output=True).stdout == b""
    before = {p: p.read_bytes() for p in done}
    again = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert again.returncode in (0, 3), again.stderr
    assert len(list(cell_dir.glob("*.json"))) == 3
    assert all(p.read_bytes() == b for p, b in before.items())


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_are_handled_like_ctrl_c(tmp_path, sig, code):
    """A cancelled CI job (SIGTERM) or a closed terminal (SIGHUP): finished cells kept, the
    runner in flight killed, the run logged as interrupted, exit 128 + the signal."""
    models = copies(tmp_path, 3)
    argv = [sys.executable, "-m", "host", "bench", *map(str, models), "--device", "local",
            "--results", str(tmp_path / "r"), "--campaign", "t", "--max-processes", "5",
            *[a if a != "0.01" else "0.3" for a in NULL]]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    cell_dir = tmp_path / "r" / "t" / "local"
    deadline = time.monotonic() + 300  # ends at the first cell: long only on a loaded machine
    while not (cell_dir.exists() and any(cell_dir.glob("*.json"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)  # the next cell's last process is running now
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "resume with: host bench " in err and "--campaign t " in err
    assert json.loads((tmp_path / "r" / "t" / "campaign.json").read_text())["runs"][-1]["interrupted"] is True
    done = sorted(cell_dir.glob("*.json"))
    assert 1 <= len(done) < 3 and all(json.loads(p.read_text())["status"] in ("ok", "invalid") for p in done)
    time.sleep(0.3)
    mine = f"{local_device().workdir}/out/edgegauge-cell-"  # this session's runners, not the machine's
    assert subprocess.run(["pgrep", "-f", mine], capture_output=True).stdout == b""


# -- container mode --------------------------------------------------------------------------


def test_container_mode_runs_the_runner_in_a_podman_image(boards, podman_engine, tmp_path):
    fresh(boards)
    inv = lab_ini(boards, tmp_path / "lab.ini", {"b1": {}}, mode="container", runtime="null",
                  image=podman_engine.image, engine=shlex.quote(podman_engine.engine),
                  container_args=shlex.quote(podman_engine.run_args))
    dep = host("deploy", "-i", inv, "--json")
    assert dep.exit_code == 0, dep.output
    steps = dict(json.loads(dep.stdout)[0]["steps"])
    assert steps["image"] == f"{podman_engine.image}: present" and steps["runtime"] == "null: available"
    res = host("bench", FIX / "identity.onnx", "-i", inv, "--device", "b1", "--results", tmp_path / "r",
               *NULL, "--json")
    assert res.exit_code in (0, 3), res.output
    (cell,) = json.loads(res.stdout)
    assert cell["status"] in ("ok", "invalid") and cell["model"]["path"].startswith("/edgegauge/models/")
    # the runner ran on the image's Python (Debian's /usr/bin/python3), not this venv's
    assert cell["manifest"]["tool"]["python_executable"] == "/usr/bin/python3"
    assert cell["host"]["runner_process"]["orchestration"]["mode"] == "container"
    assert not list((boards.workdir("b1") / "out").iterdir())  # result read back and removed


def test_devices_lists_the_example_lab_and_says_how_the_inventory_resolved(monkeypatch):
    monkeypatch.chdir(ROOT)
    res = host("devices", "--inventory", "lab")
    assert res.exit_code == 0, res.output
    assert "group 'lab'" in res.output and "inventory.ini" in res.output
    for name in ("rpi4-1", "xavier-1", "zcu104-1", "a100-1"):
        assert name in res.output
    doc = json.loads(host("devices", "-i", "lab", "--json").stdout)
    assert {d["name"]: d["family"] for d in doc["devices"]} == {
        "rpi4-1": "arm_cpu", "xavier-1": "jetson", "zcu104-1": "zcu104", "a100-1": "x86_a100",
        "local": "local"}  # the built-in device, listed last
    assert host("devices", "-i", "nosuchlab").exit_code == 1
