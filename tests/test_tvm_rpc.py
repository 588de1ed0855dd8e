"""Issue 25: MetaSchedule tuning measured on a board through TVM's RPC (runners/backends/tvm/rpc.py): a
tracker on this host and a server started over SSH on a loopback OpenSSH board (tests/labfix.py), two
trials on the tiny CNN. One tuning for the module, through the command line (`host zoo compile --device
b1`, in a child process: MetaSchedule's logging set-up breaks a second tuning in one process); the
library call, a second command and `host bench` on the board are then cache hits that start nothing; no
tracker or server is left. A board without TVM and an unreachable board are clean command-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import labfix
import onnx
import pytest
from typer.testing import CliRunner

from runners.backends.base import CompileBoard
from runners.backends.tvm import rpc

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "models" / "tiny_cnn.onnx"
TUNED = {"codegen": "tuned", "tune_trials": 2}
TUNED_ARGS = ["--backend", "tvm", "--option", "codegen=tuned", "--option", "tune_trials=2"]


def _rpc_processes() -> list:
    """``(pid, command line)`` of every TVM RPC tracker or server on this machine (the loopback
    board's are here too)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a in ("tvm.exec.rpc_tracker", "tvm.exec.rpc_server") for a in argv):
            found.append((int(entry), " ".join(argv)))
    return found


def _host(*args, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m host ARGS`` in a child process (its own MetaSchedule, its own exit code)."""
    return subprocess.run([sys.executable, "-m", "host", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, COLUMNS="200"))


def _needs_tvm_rpc() -> None:
    pytest.importorskip("tvm", reason="apache-tvm (the tvm extra) is not installed")
    pytest.importorskip("tornado", reason="TVM's RPC tracker needs tornado")


@pytest.fixture(scope="module", autouse=True)
def _one_worker():
    """Every test here in one xdist group (a module-scoped fixture: tests/conftest.py xdist_group_of), so
    one after another on one worker: each compares the TVM RPC processes in /proc before and after,
    and the module's tuning starts some."""
    yield


@pytest.fixture(scope="module")
def tuned_on_b1(ssh_boards, tmp_path_factory):
    """`host zoo compile TINY --backend tvm --option codegen=tuned --option tune_trials=2 --device b1`
    once: the child's result, the processes before and after, the inventory and the cache."""
    _needs_tvm_rpc()
    if "b1" in ssh_boards.stopped():
        ssh_boards.start("b1")
    folder = tmp_path_factory.mktemp("tvm-board")
    inv = ssh_boards.write_inventory(folder / "inventory.ini", ["b1"])
    cache = folder / "cache" / "tvm"
    before = _rpc_processes()
    started = time.monotonic()
    proc = _host("zoo", "compile", TINY, *TUNED_ARGS, "--device", "b1", "-i", inv, "--cache-dir", cache,
                 "--json")
    wall = time.monotonic() - started
    return SimpleNamespace(proc=proc, wall=wall, before=before, after=_rpc_processes(), inv=inv, cache=cache)


def _doc(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_zoo_compile_on_a_board_tunes_there_through_rpc_then_a_cache_hit(tuned_on_b1, ssh_boards):
    doc = _doc(tuned_on_b1.proc)
    info, path = doc["recipe"], Path(doc["compiled"])
    assert doc["cache_hit"] is False and path.is_file() and path.parent == tuned_on_b1.cache
    assert info["measured_on"] == {"board": "b1", "rpc_key": "edgegauge-b1"}
    assert info["tuning"]["cache_hit"] is False and info["tuning"]["records"] >= 1 and info["tuning"]["s"] > 0
    # candidates really ran on the board: records with real run times (a failed build or run has 1e10 s)
    measured, total, error = rpc.measured_records(info["tuning"]["database"])
    assert measured >= 1, (measured, total, error)
    # the target is the board's, from its facts (an x86-64 level by its CPU flags), not this host's CPU name
    assert info["target"]["mtriple"] == "x86_64-linux-gnu"
    assert info["target"]["mcpu"] in ("x86-64", "x86-64-v3", "x86-64-v4")
    assert info["target"]["num-cores"] == os.cpu_count()  # the loopback board's cores are this machine's
    assert json.loads(path.with_suffix(".info").read_text())["measured_on"]["board"] == "b1"
    assert tuned_on_b1.after == tuned_on_b1.before  # tracker and server stopped
    print(f"\ntuning through RPC on b1 (2 trials): command {tuned_on_b1.wall:.1f} s, "
          f"tuning {info['tuning']['s']} s, compile {info['compile_s']} s")

    started = time.monotonic()
    again = _doc(_host("zoo", "compile", TINY, *TUNED_ARGS, "--device", "b1", "-i", tuned_on_b1.inv,
                       "--cache-dir", tuned_on_b1.cache, "--json"))
    print(f"the same command again (a cache hit): {time.monotonic() - started:.1f} s")
    assert again["cache_hit"] is True and again["compiled"] == doc["compiled"]
    assert again["recipe"]["key"] == info["key"]
    assert _rpc_processes() == tuned_on_b1.before


@pytest.mark.slow
def test_the_library_call_is_the_same_cache_hit_and_the_board_is_in_both_keys(tuned_on_b1, boards,
                                                                              monkeypatch):
    info = _doc(tuned_on_b1.proc)["recipe"]

    def no_rpc(*_a, **_k):
        raise AssertionError("a cache hit must start no tracker")

    monkeypatch.setattr(rpc, "tracker", no_rpc)
    conn = boards.connection("b1")
    try:
        path, hit = rpc.compile_on_board(TINY, onnx.load(str(TINY)), TUNED, tuned_on_b1.cache, conn, "b1",
                                         target=json.dumps(info["target"]), python=sys.executable)
    finally:
        conn.close()
    assert hit["cache_hit"] is True and hit["key"] == info["key"] and path.is_file()

    # tuning on this host, or on another board: other keys
    from runners.backends.tvm import compile as tvmc

    versions = {"tvm": info["tvm_version"], "tvm_ffi": info["tvm_ffi_version"]}
    sha = info["source"]["sha256"]
    assert tvmc.cache_key(sha, info["target"], versions, "tuned", 2) != info["key"]
    assert tvmc.tuning_key(sha, info["target"], info["tvm_version"], 2) != info["tuning"]["key"]
    other = rpc.board_identity("b2", "edgegauge-b2")
    assert tvmc.cache_key(sha, info["target"], versions, "tuned", 2, measured_on=other) != info["key"]


@pytest.mark.slow
def test_bench_on_a_board_uses_the_artefact_tuned_on_it(tuned_on_b1, boards, tmp_path, monkeypatch):
    from host.cli.main import app
    from host.models import runtime_compile

    # the bench's compile goes through the same board-aware path: the module's tuning is its cache hit
    # (a compile on this host would have another key, tune here, and miss measured_on)
    monkeypatch.setattr(runtime_compile, "DEFAULT_CACHE_DIR", tuned_on_b1.cache.parent)
    res = CliRunner().invoke(app, ["bench", str(TINY), "-i", str(tuned_on_b1.inv), "--device", "b1",
                                   "--backend", "tvm", "--compile-option", "codegen=tuned",
                                   "--compile-option", "tune_trials=2", "--quick", "--max-s", "1",
                                   "--no-reference", "--no-auto-calibrate", "--results", str(tmp_path / "r"),
                                   "--campaign", "c"], env={"COLUMNS": "200"})
    cell = tmp_path / "r" / "c" / "b1" / "tiny_cnn__tvm-b1-tall-tvm-tuned2.json"
    assert cell.is_file(), res.output
    doc = json.loads(cell.read_text())
    assert doc["status"] != "failed", doc.get("error")
    recipe = doc["precision"]["recipe"]
    assert recipe["measured_on"] == {"board": "b1", "rpc_key": "edgegauge-b1"}
    assert recipe["cache_hit"] is True and recipe["key"] == _doc(tuned_on_b1.proc)["recipe"]["key"]
    assert doc["latency"]["latency_ms_p50"] > 0
    assert _rpc_processes() == tuned_on_b1.before


def _no_traceback_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    err = proc.stderr
    assert proc.returncode not in (0, None), proc.stdout
    assert "Traceback" not in err and err.startswith("error:"), err[-3000:]
    for word in words:
        assert word in err, err
    return err


@pytest.mark.slow
def test_untuned_for_a_board_is_compiled_here_for_its_target_without_rpc(boards, tmp_path):
    pytest.importorskip("tvm", reason="apache-tvm (the tvm extra) is not installed")
    inv = boards.write_inventory(tmp_path / "inventory.ini", ["b1"])
    before = _rpc_processes()
    doc = _doc(_host("zoo", "compile", TINY, "--backend", "tvm", "--device", "b1", "-i", inv, "--cache-dir",
                     tmp_path / "c", "--json"))
    info = doc["recipe"]
    assert doc["cache_hit"] is False and info["codegen"] == "untuned" and info["tuning"] is None
    assert "measured_on" not in info  # nothing measured: no tracker, no server
    assert info["target"]["mcpu"] in ("x86-64", "x86-64-v3", "x86-64-v4")  # from the board's facts
    assert info["target"]["num-cores"] == os.cpu_count()
    assert _rpc_processes() == before
    here = _doc(_host("zoo", "compile", TINY, "--backend", "tvm", "--cache-dir", tmp_path / "c", "--json"))
    assert here["compiled"] != doc["compiled"]  # this host's own CPU name: another target, another file


@pytest.mark.slow
def test_a_board_without_tvm_is_a_clean_error_and_leaves_nothing(boards, tmp_path):
    _needs_tvm_rpc()
    no_tvm = "/usr/bin/python3"
    if not Path(no_tvm).is_file() or subprocess.run([no_tvm, "-c", "import tvm"],
                                                      capture_output=True).returncode == 0:
        pytest.skip(f"needs a python without TVM at {no_tvm}")
    inv = boards.write_inventory(tmp_path / "inventory.ini", ["b1"], python=no_tvm)
    before = _rpc_processes()
    proc = _host("zoo", "compile", TINY, *TUNED_ARGS, "--device", "b1", "-i", inv, "--cache-dir",
                 tmp_path / "c")
    err = _no_traceback_error(proc, "install apache-tvm", "hint:", "host check --device b1")
    assert proc.returncode == 1, err
    assert _rpc_processes() == before
    assert not list((tmp_path / "c").glob("*.tvm")) and not list((tmp_path / "c").glob("tuning/*"))


def test_an_unreachable_board_is_a_clean_error_and_leaves_nothing(boards, tmp_path):
    pytest.importorskip("tvm", reason="apache-tvm (the tvm extra) is not installed")
    inv = boards.write_inventory(tmp_path / "inventory.ini", ["b1"])
    port = labfix.free_ports(1)[0]  # nothing listens there
    inv.write_text(inv.read_text().replace(f"ansible_port={boards.ports['b1']}", f"ansible_port={port}"))
    before = _rpc_processes()
    proc = _host("zoo", "compile", TINY, *TUNED_ARGS, "--device", "b1", "-i", inv, "--cache-dir",
                 tmp_path / "c", timeout=120)
    _no_traceback_error(proc, "b1", "connection refused", "hint:", "host check --device b1")
    assert _rpc_processes() == before
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").rglob("*.tvm"))


def test_a_board_of_another_architecture_is_not_tuned(tmp_path):
    """MetaSchedule builds and times candidates for the host's architecture only: an aarch64 board's
    tuned request is refused before anything is imported or started (a typed ValueError: the command
    line's usage error)."""
    pytest.importorskip("tvm", reason="apache-tvm (the tvm extra) is not installed")
    board = CompileBoard(name="pi", facts={"arch": "aarch64", "cores": 4}, connection=None,
                         host_address="127.0.0.1")
    with pytest.raises(ValueError, match="aarch64"):
        rpc.compile_for_board(TINY, onnx.load(str(TINY)), TUNED, tmp_path, None, board)
    assert not list(tmp_path.rglob("*.tvm"))


def test_bench_compiles_each_inventory_board_its_own_file_and_this_machine_once():
    """Which compiles `host bench --compile-option` makes (host/campaign/compiled.py): a compiler that
    declares board_compile (tvm) gets one per inventory board and one on this host for the local
    device; a runtime without one (ort) or only local devices: one on this host for all."""
    import dataclasses

    from host.campaign.compiled import compile_targets
    from host.lab.devices import local_device

    here = local_device()
    b1 = dataclasses.replace(here, name="b1", host="127.0.0.1", port=22, connection="ssh")
    b2 = dataclasses.replace(b1, name="b2")
    assert compile_targets("tvm", [b1, here, b2]) == [(b1, ("b1",)), (b2, ("b2",)), (None, ("local",))]
    assert compile_targets("tvm", [b1]) == [(b1, ("b1",))]
    assert compile_targets("tvm", [here]) == [(None, None)]
    assert compile_targets("ort", [b1, here]) == [(None, None)]
