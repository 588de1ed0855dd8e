"""MetaSchedule tuning measured on a board through TVM's RPC: a tracker on the host, a server on the
board, both started and stopped here; TVM's own distributed tuning engine does the rest.

* **Tracker**: ``python -m tvm.exec.rpc_tracker --host H --port P`` in a new session on this host
  (it needs ``tornado``); stopped by killing its process group.
* **Server**: ``python -m tvm.exec.rpc_server --tracker H:P --key KEY`` on the board, started over
  the board's SSH connection (a Fabric ``Connection``, or anything with the same ``run(command,
  hide=, warn=, timeout=)``) under ``setsid`` so that it is the leader of its own session, its pid
  written to a file; stopped by killing that session's process group (the server forks a child per
  RPC session). The board must have ``apache-tvm`` importable by its ``python``; without it
  :class:`BoardTvmMissingError` says so before anything starts.
* **Tuning**: Relax's pre-tuning passes (those of the ``static_shape_tuning`` pipeline), then
  ``tvm.s_tir.meta_schedule.relax_integration.tune_relax`` with an ``RPCRunner(RPCConfig(tracker,
  key))``: candidates are built here (the local builder) and uploaded to and timed on the board;
  then the records are applied by :func:`compile.apply_database`.

:func:`compile_on_board` is :func:`compile.compile_model` with that tuner: the board's identity
(name, key) is part of the artefact's and the database's cache keys and recorded as
``measured_on``. Server and tracker are stopped in all cases (``finally``).

:func:`compile_for_board` is the descriptor's ``ModelCompiler.board_compile`` (``host zoo compile
--device BOARD``, ``host bench`` on an inventory board): the target from the board's facts
(:func:`runners.backends.tvm.targets.target_for`), then ``untuned`` compiled for it on the host, or
``tuned`` through :func:`compile_on_board` with the tracker on the host's address as the board
reaches it.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator, Optional

from runners.backends.tvm.tuning import BUILD_S, measured_records, meta_tune  # noqa: F401 (re-exported)
from runners.errors import BackendUnavailableError, BoardRuntimeMissingError

#: how long the tracker and the server get to come up (seconds)
START_S = 60.0
class BoardTvmMissingError(BoardRuntimeMissingError):
    """The board's python cannot import TVM's RPC server."""


class RpcSetupError(BackendUnavailableError):
    """The tracker or the board's server did not come up."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait(check, what: str, deadline_s: float = START_S, proc=None) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise RpcSetupError(f"{what}: exited with {proc.returncode}")
        time.sleep(0.2)
    raise RpcSetupError(f"{what}: not up after {deadline_s:.0f} s")


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def tracker(host: str = "127.0.0.1", port: Optional[int] = None) -> Iterator[tuple]:
    """A TVM RPC tracker on this host for the ``with`` block: yields ``(host, port, pid)``."""
    port = int(port or free_port(host))
    argv = [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", host, "--port", str(port),
            "--port-end", str(port + 1), "--silent"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        try:
            _wait(lambda: _accepts(host, port), f"TVM RPC tracker on {host}:{port}", proc=proc)
        except RpcSetupError as exc:
            err = proc.stderr.read().decode(errors="replace")[-600:] if proc.poll() is not None else ""
            hint = " (the tracker needs tornado: pip install tornado)"
            raise RpcSetupError(f"{exc} {err}".strip() + hint) from None
        yield host, port, proc.pid
    finally:
        _stop_local(proc)


def _stop_local(proc) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue
    if proc.stderr is not None:
        proc.stderr.close()


def check_board_tvm(conn, python: str = "python3") -> str:
    """The TVM version the board's ``python`` imports. Raises BoardTvmMissingError."""
    res = conn.run(f"{shlex.quote(python)} -c 'import tvm, tvm.exec.rpc_server; print(tvm.__version__)'",
                   hide=True, warn=True, in_stream=False, timeout=120)
    if res.return_code != 0:
        tail = (res.stderr or res.stdout or "").strip().splitlines()[-1:]
        raise BoardTvmMissingError(
            f"the board's {python} cannot import TVM's RPC server ({' '.join(tail) or res.return_code}); "
            "install apache-tvm there (the tvm extra, or the board image's TVM runtime) to tune on it")
    return res.stdout.strip()


@contextmanager
def board_server(conn, tracker_addr: str, key: str, python: str = "python3",
                 workdir: str = "/tmp") -> Iterator[int]:
    """``python -m tvm.exec.rpc_server --tracker ADDR --key KEY`` on the board for the ``with``
    block, in its own session; yields its pid (= its session and process group id)."""
    stem = f"{workdir.rstrip('/')}/edgegauge-tvm-rpc-{key}"
    server = (f"echo $$ > {shlex.quote(stem)}.pid; exec {shlex.quote(python)} -m tvm.exec.rpc_server "
              f"--tracker {shlex.quote(tracker_addr)} --key {shlex.quote(key)}")
    start = (f"rm -f {shlex.quote(stem)}.pid; setsid sh -c {shlex.quote(server)} </dev/null "
             f">{shlex.quote(stem)}.log 2>&1 & "
             f"for i in $(seq 100); do [ -s {shlex.quote(stem)}.pid ] && break; sleep 0.1; done; "
             f"cat {shlex.quote(stem)}.pid")
    res = conn.run(start, hide=True, warn=True, in_stream=False, timeout=60)
    try:
        pid = int(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = res.stderr.strip()[-400:]
        raise RpcSetupError(f"the board's TVM RPC server did not start: {tail}") from None
    try:
        yield pid
    finally:
        conn.run(f"kill -TERM -- -{pid} 2>/dev/null; sleep 0.5; kill -KILL -- -{pid} 2>/dev/null; "
                 f"rm -f {shlex.quote(stem)}.pid", hide=True, warn=True, in_stream=False, timeout=30)


def wait_registered(host: str, port: int, key: str, deadline_s: float = START_S) -> None:
    """Until the tracker lists a free server under ``key``."""
    from tvm import rpc

    def ready() -> bool:
        try:
            summary = rpc.connect_tracker(host, port).summary()
        except Exception:  # the tracker not answering yet
            return False
        return int(summary.get("queue_info", {}).get(key, {}).get("free", 0)) > 0

    _wait(ready, f"a TVM RPC server with key {key!r} at the tracker {host}:{port}", deadline_s)


def rpc_tuner(host: str, port: int, key: str, timeout_s: int = 60, build_s: float = BUILD_S):
    """A :func:`compile.tune`-shaped callable that tunes with MetaSchedule's RPCRunner (candidates
    built here by a LocalBuilder allowed ``build_s`` seconds each). Raises ModelCompileError when
    no candidate was measured on the board (every one failed to build or run)."""

    def tune(mod, target: dict, trials: int, work_dir: str, per_task: int = 0):
        from tvm.s_tir.meta_schedule.runner import RPCConfig, RPCRunner

        runner = RPCRunner(RPCConfig(tracker_host=host, tracker_port=int(port), tracker_key=key,
                                     session_timeout_sec=int(timeout_s)), max_workers=1)
        from runners.backends.tvm.compile import apply_database

        meta_tune(mod, target, trials, work_dir, per_task, runner, "on the board", build_s)
        return apply_database(mod, target, str(work_dir))

    return tune


def board_identity(name: str, key: str) -> dict:
    """What the caches key on and the recipe records as ``measured_on``."""
    return {"board": str(name), "rpc_key": str(key)}


def compile_on_board(model, proto, options: dict, cache_dir, conn, board: str, *,
                     target: Optional[str] = None, python: str = "python3", tracker_host: str = "127.0.0.1",
                     board_sees_host: str = "127.0.0.1", workdir: str = "/tmp") -> tuple:
    """:func:`compile.compile_model` with MetaSchedule measuring on ``board`` (its SSH ``conn``)
    through a tracker started here and a server started there; both stopped afterwards. A cache
    hit starts neither. Returns ``(path, info)``."""
    from runners.backends.tvm import compile as tvmc

    key = "edgegauge-" + "".join(c if c.isalnum() else "-" for c in board)
    on = board_identity(board, key)
    state: dict = {}

    def tuner(mod, tgt, trials, work_dir, per_task=0):
        state["board_tvm"] = check_board_tvm(conn, python)
        with tracker(tracker_host) as (host, port, _pid):
            with board_server(conn, f"{board_sees_host}:{port}", key, python, workdir):
                wait_registered(host, port, key)
                return rpc_tuner(host, port, key)(mod, tgt, trials, work_dir, per_task)

    return tvmc.compile_model(model, proto, options, cache_dir, target, measure={"on": on, "tuner": tuner})


def compile_for_board(model, proto, options: dict, cache_dir, target: Optional[str], board) -> tuple:
    """``ModelCompiler.board_compile``: ``model`` compiled for ``board`` (a
    :class:`runners.backends.base.CompileBoard`). The target is ``target`` when given, else
    :func:`runners.backends.tvm.targets.target_for` of the board's facts; ``codegen=untuned`` is then
    :func:`compile.compile_model` on the host (no RPC), ``tuned`` :func:`compile_on_board` with the
    tracker on ``board.host_address``, the server started with the board's python, its pid and log
    file in the board's work folder. Returns ``(path, info)``.

    Raises:
        ValueError: facts without a known ``arch``, a bad target, ``tuned`` for another architecture
            than this host's (MetaSchedule builds the candidates here).
        BoardTvmMissingError: the board's python cannot import TVM's RPC server.
        RpcSetupError: the host's address as the board sees it is not known (a jump host), or the
            tracker or the server did not come up.
        BackendUnavailableError, ModelCompileError: as :func:`compile.compile_model`.
    """
    from runners.backends.tvm import compile as tvmc
    from runners.backends.tvm.targets import target_for

    text = target if target else target_for(dict(board.facts))
    if tvmc.check_options(options)["codegen"] != "tuned":
        return tvmc.compile_model(model, proto, options, cache_dir, text)
    if not board.host_address:
        raise RpcSetupError(f"{board.name}: this host's address as the board sees it is not known (a board "
                            "reached through a jump host?): the board's TVM RPC server could not reach the "
                            "tracker; tune on a board reached directly, or compile codegen=untuned")
    return compile_on_board(model, proto, options, cache_dir, board.connection, board.name, target=text,
                            python=board.python, tracker_host=board.host_address,
                            board_sees_host=board.host_address, workdir=board.workdir)
