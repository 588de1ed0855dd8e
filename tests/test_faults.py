"""Faults over real SSH (loopback OpenSSH boards, tests/labfix.py): a dropped link leaving a
runner behind, two hosts on one board, a stale lock, a frozen board, the host killed with
SIGKILL, and a full disk on a board or on the host. Each test asserts what survived."""

import dataclasses
import json
import os
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
from host.campaign.run import classify_failure, run_campaign
from host.cli import app
from host.errors import BoardBusyError, DiskFullError, UnreachableError
from host.lab.benchconfig import BenchConfig, RunnerOutcome
from host.lab.board import Board, BoardOptions, open_transport
from host.lab.inventory import local_device, resolve_inventory
from host.lab.lease import LOCK_FILE, campaign_tag, leftovers, owner_info
from runners.core import Policy

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "models"
FAST = Protocol(target_ci=0.5, max_cell_s=30.0)
QUICK = BoardOptions(connect_timeout=3, retries=1, backoff_s=0.1)
NULL_ARGS = ["--backend", "null", "--warmup-iters", "1", "--warmup-s", "0", "--min-iters", "5",
             "--target-ci", "0.5"]
runner = CliRunner()


def null_config(loop_s: float = 0.01, timeout_s: float = 60) -> BenchConfig:
    return BenchConfig(backend="null", timeout_s=timeout_s, policy=Policy(
        warmup_min_iterations=1, warmup_min_s=0.0, min_iterations=5, min_duration_s=loop_s,
        max_duration_s=max(60.0, 2 * loop_s), cov_max=100.0))


def fresh(boards, name: str = "b1") -> None:
    shutil.rmtree(boards.workdir(name))
    boards.workdir(name)


def device(boards, tmp_path: Path, name: str = "b1"):
    inv = boards.write_inventory(tmp_path / f"{name}.ini", devices=[name])
    return resolve_inventory(str(inv)).select(devices=[name])[0]


def board_on(boards, tmp_path: Path, name: str = "b1") -> Board:
    dev = device(boards, tmp_path, name)
    board = Board(dev, open_transport(dev, QUICK))
    board.prepare()
    return board


def runner_pids(workdir: Path) -> list:
    """Runner processes (and their shells) of any cell of this work folder."""
    out = subprocess.run(["pgrep", "-f", f"{workdir}/out/edgegauge-cell-"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float = 30.0, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def host(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


# -- orphans -----------------------------------------------------------------------------------


def test_a_runner_left_by_a_dropped_link_is_killed_before_the_next_runner_starts(boards, tmp_path):
    fresh(boards)
    board = board_on(boards, tmp_path)
    board.lease_tag = "ctest"
    model = FIX / "identity.onnx"
    failure = []

    def slow_cell():  # a 60 s loop: still running long after its link is gone
        try:
            board.run_cell(model, None, null_config(loop_s=60.0, timeout_s=120))
        except UnreachableError as exc:
            failure.append(exc)

    thread = threading.Thread(target=slow_cell)
    thread.start()
    orphans = wait_for(lambda: [p for p in runner_pids(boards.workdir("b1")) if alive(p)])
    time.sleep(0.3)
    assert boards.drop_connections("b1")  # the link drops: no pty, so nothing signals the runner
    thread.join(30)
    assert failure and "connection lost" in str(failure[0])
    time.sleep(0.5)
    assert any(alive(p) for p in orphans)  # the fault: a ghost runner beside the next cell
    (lease_file,) = (boards.workdir("b1") / "leases").glob("*.lease")
    sid = int(lease_file.read_text().split()[0])

    board.transport.connect()
    outcome = board.run_cell(model, None, null_config())
    assert outcome.exit_code in (0, 3)  # the runner's VALID or INVALID (a noisy machine)
    (killed,) = outcome.extra["leftovers_killed"]
    assert killed["tag"] == "ctest" and killed["processes"] >= 1
    assert killed["sid"] == sid
    assert not any(alive(p) for p in orphans)
    assert list((boards.workdir("b1") / "leases").iterdir()) == []  # its own lease removed too
    assert "@edgegauge-leftover" not in outcome.stderr_tail
    board.transport.close()


def test_leftover_lines_are_parsed_and_removed_from_stderr():
    text = "\n@edgegauge-leftover 4242 cabc 3\nreal stderr\n@edgegauge-leftover x y z\n"
    rest, found = leftovers(text)
    assert found == [{"sid": 4242, "tag": "cabc", "processes": 3}]
    assert rest == "real stderr\n@edgegauge-leftover x y z\n"  # malformed lines are kept
    assert leftovers("plain\n") == ("plain\n", [])


# -- two hosts, one board ---------------------------------------------------------------------


def test_a_second_host_is_refused_with_the_holder_named_and_break_lock_takes_over(boards, tmp_path):
    fresh(boards)
    other = board_on(boards, tmp_path)
    other.take_lock(dict(owner_info("host bench", "cother"), host="lab-pc-2"))  # another machine
    record = json.loads((boards.workdir("b1") / LOCK_FILE).read_text())
    assert record["host"] == "lab-pc-2" and record["command"] == "host bench"
    assert {"user", "host", "start_utc", "pid", "board_start_unix"} <= set(record)
    assert alive(record["pid"])  # the holder on the board

    inv = boards.write_inventory(tmp_path / "lab.ini", devices=["b1"])
    args = [FIX / "identity.onnx", "-i", inv, "--device", "b1", "--results", tmp_path / "r",
            "--campaign", "two", *NULL_ARGS, "--json"]
    res = host("bench", *args, "--wait-lock", "2")  # waits 2 s for the holder, then fails
    assert res.exit_code == 1
    (cell,) = json.loads(res.stdout)
    assert cell["error"]["category"] == "busy" and cell["error"]["type"] == "BoardBusy"
    assert "(still held after waiting 2 s)" in cell["error"]["message"]
    assert f"@lab-pc-2 (host pid {os.getpid()}, `host bench`, since" in cell["error"]["message"]
    assert runner_pids(boards.workdir("b1")) == []  # nothing ran beside the holder

    res = host("bench", *args, "--break-lock")
    assert res.exit_code in (0, 3), res.output  # 3: INVALID on a noisy machine
    (cell,) = json.loads(res.stdout)
    assert cell["status"] in ("ok", "invalid")
    run = json.loads((tmp_path / "r" / "two" / "campaign.json").read_text())["runs"][-1]
    (lock,) = run["locks"]["b1"]
    assert lock["broken"]["host"] == "lab-pc-2" and lock["broken"]["pid"] == record["pid"]
    assert not alive(record["pid"]) and not other.lock.alive
    assert (boards.workdir("b1") / LOCK_FILE).read_text() == ""  # released at the end
    other.transport.close()


def test_a_lock_whose_holder_died_is_reported_stale_and_taken(boards, tmp_path):
    fresh(boards)
    first = board_on(boards, tmp_path)
    first.take_lock(owner_info("lost", "clost"))
    pid = json.loads((boards.workdir("b1") / LOCK_FILE).read_text())["pid"]
    first.transport.close()  # the link goes without a release
    wait_for(lambda: not alive(pid))
    assert json.loads((boards.workdir("b1") / LOCK_FILE).read_text())["command"] == "lost"

    second = board_on(boards, tmp_path)
    info = second.take_lock(owner_info("next", "cnext"))
    assert info.stale["command"] == "lost" and info.stale["pid"] == pid and info.broken is None
    with pytest.raises(BoardBusyError) as busy:
        board_on(boards, tmp_path).take_lock(dict(owner_info("third", "c3"), host="lab-pc-2"))
    assert "`next`" in str(busy.value) and busy.value.holder["command"] == "next"
    # this same host process, over a new connection (the old one froze, then came back): its
    # own live holder is taken back without --break-lock
    held_pid = json.loads((boards.workdir("b1") / LOCK_FILE).read_text())["pid"]
    third = board_on(boards, tmp_path)
    again = third.take_lock(owner_info("next", "cnext"))
    assert again.broken["pid"] == held_pid and not alive(held_pid)
    wait_for(lambda: not second.lock.alive)
    third.release_lock()
    third.transport.close()
    second.release_lock()
    assert (boards.workdir("b1") / LOCK_FILE).read_text() == ""
    second.transport.close()


# -- a frozen board ---------------------------------------------------------------------------


def test_a_frozen_board_fails_its_cell_within_the_timeout_plus_30_s_and_its_other_cells_are_skipped(
        boards, tmp_path):
    fresh(boards)
    dev = device(boards, tmp_path)
    models = []
    for i in (1, 2, 3):
        shutil.copy(FIX / "identity.onnx", tmp_path / f"m{i}.onnx")
        models.append(tmp_path / f"m{i}.onnx")
    config = null_config(loop_s=2.0, timeout_s=6)
    frozen_at, stored = [], {}

    def on_event(event):
        if event.state == "running" and not frozen_at:
            def freeze():
                frozen_at.append(time.monotonic())
                boards.freeze("b1")
            threading.Timer(0.7, freeze).start()
        if event.state == "done":
            stored[event.model.stem] = (time.monotonic(), event.doc)

    try:
        run_campaign(models, [dev], config, results=tmp_path / "r", campaign="frz", backend="null",
                     open_board=lambda d: Board(d, open_transport(d, QUICK)), on_event=on_event,
                     protocol=FAST)
    finally:
        boards.thaw("b1")
    first = min(stored.values(), key=lambda v: v[0])
    assert first[1]["error"]["category"] == "unreachable", first[1]["error"]
    assert first[0] - frozen_at[0] <= config.timeout_s + 30
    assert len(stored) == 3
    assert all(doc["error"]["category"] == "unreachable" for _, doc in stored.values())
    assert max(t for t, _ in stored.values()) - frozen_at[0] <= config.timeout_s + 30 + 15

    again = run_campaign(models, [dev], null_config(), results=tmp_path / "r", campaign="frz",
                         backend="null", open_board=lambda d: Board(d, open_transport(d, QUICK)),
                         protocol=FAST)
    assert len(again.cells) == 3 and all(c["status"] in ("ok", "invalid") for c in again.cells)
    time.sleep(0.3)
    assert runner_pids(boards.workdir("b1")) == []


# -- the host killed with SIGKILL ---------------------------------------------------------------


def test_after_kill_9_of_host_the_next_run_recovers_the_campaign(boards, tmp_path):
    fresh(boards)
    inv = boards.write_inventory(tmp_path / "lab.ini", devices=["b1"])
    models = []
    for i in (1, 2, 3):
        shutil.copy(FIX / "identity.onnx", tmp_path / f"m{i}.onnx")
        models.append(tmp_path / f"m{i}.onnx")
    # one 4 s process per cell (--max-s 1): the second cell's runner is mid-loop when host dies
    argv = [sys.executable, "-m", "host", "bench", *map(str, models), "-i", str(inv), "--device", "b1",
            "--results", str(tmp_path / "r"), "--campaign", "k9", *NULL_ARGS, "--min-s", "4",
            "--max-s", "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    cells = tmp_path / "r" / "k9" / "b1"
    # generous waits (they end as soon as the condition holds): a loaded machine starts slowly
    wait_for(lambda: cells.exists() and list(cells.glob("*.json")), timeout=300)
    wait_for(lambda: len(runner_pids(boards.workdir("b1"))) > 0, timeout=120)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    (done,) = list(cells.glob("*.json"))
    kept = done.read_bytes()
    assert json.loads(kept)["status"] in ("ok", "invalid")  # one process: below --min-processes
    orphans = [p for p in runner_pids(boards.workdir("b1")) if alive(p)]
    assert orphans  # the runner in flight outlived its host
    stale = json.loads((boards.workdir("b1") / LOCK_FILE).read_text())
    assert stale["host_pid"] == proc.pid

    again = subprocess.run(argv + ["--json"], capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert again.returncode in (0, 3), again.stderr  # 3: a cell INVALID (one process each)
    assert all(c["status"] in ("ok", "invalid") for c in json.loads(again.stdout))
    assert len(json.loads(again.stdout)) == 3
    assert done.read_bytes() == kept  # the finished cell was not redone
    assert len(list(cells.glob("*.json"))) == 3 and not (cells / ".attempts").exists()  # no duplicates
    assert not list((tmp_path / "r").rglob(".tmp-*")) and not list((tmp_path / "r").rglob("*.part"))
    plan = json.loads((tmp_path / "r" / "k9" / "campaign.json").read_text())
    killed_run, last = plan["runs"][-2], plan["runs"][-1]
    assert killed_run["end_utc"] is None  # the killed run never finished its log
    assert last["locks"]["b1"][0]["stale"]["host_pid"] == proc.pid
    if any(alive(p) for p in orphans):  # pragma: no cover - the sweep kills it
        pytest.fail("a runner of the killed host survived the next run")
    assert [k["tag"] for k in last["leftovers_killed"]["b1"]] in ([campaign_tag("k9")], [])
    assert runner_pids(boards.workdir("b1")) == []
    assert (boards.workdir("b1") / LOCK_FILE).read_text() == ""


def test_a_second_run_of_the_same_campaign_on_this_host_is_refused(tmp_path):
    import fcntl

    camp = tmp_path / "r" / "c"
    camp.mkdir(parents=True)
    fd = os.open(camp / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"777\n")
    try:
        res = host("bench", FIX / "identity.onnx", "--device", "local", "--results", tmp_path / "r",
                   "--campaign", "c", *NULL_ARGS)
    finally:
        os.close(fd)
    assert res.exit_code == 1 and "being run by another process (pid 777)" in res.output
    assert sorted(p.name for p in camp.iterdir()) == [".lock"]  # nothing written


# -- disk full ----------------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MiB tmpfs (root only; skipped where mounting is not allowed)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and tmpfs mounts")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_board_disk_is_disk_full_and_a_resume_after_freeing_space_completes(
        boards, tmp_path, small_tmpfs):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    big = tmp_path / "m" / "big.onnx"  # 3 MiB of weights: more than the board's 2 MiB
    big.parent.mkdir()
    w = numpy_helper.from_array(np.ones((768, 1024), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 768])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1024])], [w])
    onnx.save(helper.make_model(graph), big)
    small = tmp_path / "m" / "small.onnx"
    shutil.copy(FIX / "identity.onnx", small)
    dev = dataclasses.replace(device(boards, tmp_path), workdir=str(small_tmpfs))
    open_board = lambda d: Board(d, open_transport(d, QUICK))  # noqa: E731
    first = run_campaign([big, small], [dev], null_config(), results=tmp_path / "r", campaign="df",
                         backend="null", open_board=open_board, protocol=FAST)
    cells = {c["cell"]["model_stem"]: c for c in first.cells}
    err = cells["big"]["error"]
    assert err["category"] == "disk_full" and err["type"] == "DiskFull", err
    assert "no space left" in err["message"] and "KiB free" in err["message"]
    assert cells["small"]["status"] in ("ok", "invalid")  # the board stays usable
    assert not list(small_tmpfs.rglob("*.part"))  # no partial model left on the board

    subprocess.run(["mount", "-o", "remount,size=16m", str(small_tmpfs)], check=True)
    second = run_campaign([big, small], [dev], null_config(), results=tmp_path / "r", campaign="df",
                          backend="null", open_board=open_board, protocol=FAST)
    assert len(second.cells) == 2 and all(c["status"] in ("ok", "invalid") for c in second.cells)
    assert second.boards["b1"].run == 1 and second.boards["b1"].skipped == 1


def test_a_runner_that_cannot_write_its_result_for_lack_of_space_is_disk_full():
    outcome = RunnerOutcome(argv=["x"], exit_code=5, signal=None, wall_s=1.0, timed_out=False,
                            stderr_tail="error: ResultWriteError: cannot write /w/out/t.json: "
                                        "No space left on device (ENOSPC)\n")
    assert classify_failure(outcome)["category"] == "disk_full"
    other = dataclasses.replace(outcome, stderr_tail="error: ResultWriteError: cannot write x: "
                                                     "Permission denied (EACCES)\n")
    assert classify_failure(other)["type"] == "ResultWriteError"


def test_a_full_host_disk_stops_the_campaign_keeps_finished_cells_and_resumes(tmp_path, small_tmpfs):
    models = []
    for i in range(1, 7):
        shutil.copy(FIX / "identity.onnx", tmp_path / f"m{i}.onnx")
        models.append(tmp_path / f"m{i}.onnx")
    filler = small_tmpfs / "filler"
    dev = local_device(str(tmp_path / "w"))
    results = small_tmpfs / "r"
    results.mkdir()
    filler.write_bytes(b"\0" * (2 * 1024 * 1024 - 160 * 1024))  # leaves room for a few cells
    with pytest.raises(DiskFullError) as full:
        run_campaign(models, [dev], null_config(), results=results, campaign="h", backend="null",
                     protocol=FAST)
    assert full.value.where == "host" and "no space left on this host" in str(full.value)
    cells = results / "h" / "local"
    done = sorted(cells.glob("*.json"))
    assert all(json.loads(p.read_text())["status"] in ("ok", "invalid") for p in done) and len(done) < 6
    assert not list(results.rglob(".tmp-*"))  # no partial file
    before = {p: p.read_bytes() for p in done}
    filler.unlink()
    again = run_campaign(models, [dev], null_config(), results=results, campaign="h", backend="null",
                         protocol=FAST)
    assert len(again.cells) == 6 and all(c["status"] in ("ok", "invalid") for c in again.cells)
    assert all(p.read_bytes() == b for p, b in before.items())
    assert again.boards["local"].skipped == len(done)
