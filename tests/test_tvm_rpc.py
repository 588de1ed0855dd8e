"""Issue 25: MetaSchedule tuning measured on a board through TVM's RPC (runners/backends/tvm/rpc.py): a
tracker on this host and a server started over SSH on a loopback OpenSSH board (tests/labfix.py), two
trials on the tiny CNN; the second run is a cache hit that starts nothing; no process is left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from runners.backends.tvm import rpc

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "models" / "tiny_cnn.onnx"
TUNED = {"codegen": "tuned", "tune_trials": 2}


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


@pytest.fixture
def tvm_board(boards):
    pytest.importorskip("tvm", reason="apache-tvm (the tvm extra) is not installed")
    pytest.importorskip("tornado", reason="TVM's RPC tracker needs tornado")
    conn = boards.connection("b1")
    try:
        yield conn
    finally:
        conn.close()


# tuned in a child process: MetaSchedule's logging set-up (tvm/s_tir/meta_schedule/logging.py,
# create_loggers) leaves this process so that a later tuning in it (tests/test_tvm.py's) failed with
# "'NoneType' object has no attribute 'format'"
def _tune_in_child(boards, cache: Path) -> tuple:
    code = (
        "import json, sys, onnx\n"
        "from runners.backends.tvm import rpc\n"
        "import fabric, paramiko\n"
        "a = json.loads(sys.argv[1])\n"
        "c = fabric.Connection('127.0.0.1', port=a['port'], user='root',"
        " connect_kwargs={'key_filename': a['key']}, connect_timeout=5)\n"
        "c.client.load_host_keys(a['known_hosts'])\n"
        "c.client.set_missing_host_key_policy(paramiko.RejectPolicy())\n"
        "p, info = rpc.compile_on_board(a['model'], onnx.load(a['model']), a['options'], a['cache'], c, 'b1',"
        " python=sys.executable)\n"
        "c.close()\n"
        "print('@@' + json.dumps({'path': str(p), 'info': info}))\n"
    )
    args = {"port": boards.ports["b1"], "key": str(boards.client_key), "known_hosts": str(boards.known_hosts),
            "model": str(TINY), "options": TUNED, "cache": str(cache)}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][-1][2:])
    return Path(doc["path"]), doc["info"]


def test_tuning_through_rpc_on_a_loopback_board_then_a_cache_hit(tvm_board, boards, tmp_path, monkeypatch):
    before = _rpc_processes()
    proto = onnx.load(str(TINY))
    path, info = _tune_in_child(boards, tmp_path)
    assert info["cache_hit"] is False and path.is_file()
    assert info["measured_on"] == {"board": "b1", "rpc_key": "edgegauge-b1"}
    tuning = info["tuning"]
    assert tuning["cache_hit"] is False and tuning["records"] >= 1 and tuning["s"] > 0
    recipe = json.loads(path.with_suffix(".info").read_text())
    assert recipe["measured_on"]["board"] == "b1"
    assert _rpc_processes() == before  # tracker and server stopped

    def no_rpc(*_a, **_k):
        raise AssertionError("a cache hit must start no tracker")

    monkeypatch.setattr(rpc, "tracker", no_rpc)
    again, info2 = rpc.compile_on_board(TINY, proto, TUNED, tmp_path, tvm_board, "b1", python=sys.executable)
    assert again == path and info2["cache_hit"] is True and info2["key"] == info["key"]

    # another board, or tuning on this host: other keys
    from runners.backends.tvm import compile as tvmc

    local = tvmc.cache_key(info["source"]["sha256"], info["target"], {"tvm": info["tvm_version"],
                           "tvm_ffi": info["tvm_ffi_version"]}, "tuned", 2)
    assert local != info["key"]
    assert info["tuning"]["key"] != tvmc.tuning_key(info["source"]["sha256"], info["target"],
                                                    info["tvm_version"], 2)


def test_a_board_without_tvm_is_a_typed_error_and_leaves_nothing(tvm_board, tmp_path):
    before = _rpc_processes()
    proto = onnx.load(str(TINY))
    with pytest.raises(rpc.BoardTvmMissingError, match="install apache-tvm"):
        rpc.compile_on_board(TINY, proto, TUNED, tmp_path, tvm_board, "b1", python="/usr/bin/false")
    assert _rpc_processes() == before
    assert not list(tmp_path.glob("*.tvm")) and not list(tmp_path.glob("tuning/*"))
