"""Ctrl-C, SIGTERM (a CI job cancelled) and SIGHUP (a closed terminal) during `host provision`
and `host power-mode`: the ansible-runner run is cancelled (ansible-playbook and its children
killed), the artifacts and the per-host results received so far are kept, a message says what
happened and what to run next, and the exit code is 130 / 143 / 129 (host/cli/signals.py).

Real ansible-runner + ansible-playbook against a loopback sshd board, with a stand-in playbook
whose second task sleeps: the signal arrives while it runs (its start is seen on the board)."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from host.errors import PlaybookFailed, PlaybookInterrupted
from host.lab.ansible import raise_for_failures, run_playbook

REPO = Path(__file__).resolve().parent.parent

SLOW = """\
- name: Stand-in slow play
  hosts: all
  gather_facts: false
  tasks:
    - name: Quick step
      ansible.builtin.command: touch {{ workdir }}/quick
      tags: [tune, show, reset]
    - name: Slow step
      ansible.builtin.shell: touch {{ workdir }}/slow-started && exec sleep {{ provision_slow_s }}
      tags: [tune, show, reset]
    - name: Never reached
      ansible.builtin.command: touch {{ workdir }}/finished
      tags: [tune, show, reset]
"""


@pytest.fixture
def slow(boards, tmp_path):
    """(inventory, environment, unique sleep argument, board workdir) for a play whose
    'Slow step' sleeps 30 s on b1 (its ``sleep`` argument is unique to this test)."""
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "provision.yml").write_text(SLOW)
    (books / "power_mode.yml").write_text(SLOW)
    slow_s = f"30.{random.randrange(10**6):06d}"
    inv = boards.write_inventory(tmp_path / "lab.ini", ["b1"], ansible_python_interpreter="/usr/bin/python3",
                                 provision_slow_s=slow_s)
    workdir = boards.workdir("b1")
    for name in ("quick", "slow-started", "finished"):
        (workdir / name).unlink(missing_ok=True)
    env = dict(os.environ, EDGEGAUGE_PLAYBOOKS=str(books), ANSIBLE_SSH_ARGS="-o ControlMaster=no",
               COLUMNS="250", PYTHONPATH=str(REPO))
    return inv, env, slow_s, workdir


def _wait_for(path: Path, proc=None, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"ended ({proc.returncode}) before {path} appeared: {proc.communicate()}")
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout_s} s"
        time.sleep(0.05)


def _processes(*needles: str) -> list:
    """Live processes whose command line holds every needle (zombies have none)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline and all(n in cmdline for n in needles):
            found.append((int(pid), cmdline))
    return found


def _gone(*needles: str, timeout_s: float = 5.0) -> list:
    """The processes still matching after up to ``timeout_s`` (empty when all have ended)."""
    deadline = time.monotonic() + timeout_s
    while (left := _processes(*needles)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.parametrize("sig, args", [
    (signal.SIGTERM, ["provision"]),
    (signal.SIGHUP, ["provision"]),
    (signal.SIGINT, ["power-mode", "tune", "--mode", "performance", "--json"]),
], ids=["SIGTERM-provision", "SIGHUP-provision", "SIGINT-power-mode-tune-json"])
def test_a_signal_mid_play_cancels_it_keeps_the_artifacts_and_exits_128_plus_signal(slow, tmp_path, sig,
                                                                                     args):
    inv, env, slow_s, workdir = slow
    art = tmp_path / "art"
    proc = subprocess.Popen([sys.executable, "-m", "host", *args, "-i", str(inv), "--all",
                             "--artifacts", str(art)], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_for(workdir / "slow-started", proc)
        t0 = time.monotonic()
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=20)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + sig, (proc.returncode, out, err)
    assert took < 10, took  # not the 30 s of the slow step
    name = signal.Signals(sig).name
    what = "host power-mode tune" if args[0] == "power-mode" else "host provision"
    assert f"{what}: {name} received" in err, err
    assert f"{what} interrupted during task 'Slow step'" in err, err
    assert "hint: " in err and f"`{what}" in err, err  # what to run next
    # nothing of the play keeps running: no ansible-playbook (nor its workers) for this
    # test's playbook, and no ssh client or board-side command of it
    assert not _gone("ansible-playbook", str(tmp_path)), "ansible-playbook left running"
    assert not _gone(f"sleep {slow_s}", timeout_s=10.0), "the slow step is still running on the board"
    assert not (workdir / "finished").exists()
    # the work done is kept: the artifacts of the run and what each host had finished
    runs = list((art / "artifacts").iterdir())
    assert len(runs) == 1 and "Quick step" in (runs[0] / "stdout").read_text()
    assert str(runs[0]) in err
    if "--json" in args:
        import json

        doc = json.loads(out)
        assert doc["status"] == "canceled" and doc["partial"] is True
        assert doc["recap"]["b1"]["ok"] == 1 and doc["recap"]["b1"]["changed"] == 1
    else:
        assert "canceled" in out and "partial" in out, out
        rows = [line.split("│") for line in out.splitlines() if "│ b1 " in line]
        assert [row[2].strip() for row in rows] == ["stopped"], out  # not "ok": it never finished


def test_run_playbook_cancel_callable_returns_canceled_with_the_partial_recap(slow, tmp_path, monkeypatch):
    inv, env, slow_s, workdir = slow
    monkeypatch.setenv("EDGEGAUGE_PLAYBOOKS", env["EDGEGAUGE_PLAYBOOKS"])
    stop = threading.Event()
    watcher = threading.Thread(target=lambda: (_wait_for(workdir / "slow-started"), stop.set()), daemon=True)
    watcher.start()
    run = run_playbook("provision.yml", inv, private_dir=tmp_path / "a", cancel=stop.is_set,
                       envvars={"ANSIBLE_SSH_ARGS": "-o ControlMaster=no"})
    assert stop.is_set()
    assert run.status == "canceled" and run.partial and run.last_task == "Slow step"
    assert run.recap["b1"].ok == 1 and run.recap["b1"].changed == 1 and run.recap["b1"].failed == 0
    assert run.duration_s < 25
    assert run.artifact_dir.is_dir()
    assert not _gone("ansible-playbook", str(tmp_path))
    with pytest.raises(PlaybookInterrupted, match=r"interrupted during task 'Slow step'") as info:
        raise_for_failures(run, what="provision")
    assert info.value.exit_code == 130 and info.value.run is run
    assert str(run.artifact_dir) in str(info.value)


def test_timeout_kills_the_whole_play_too(slow, tmp_path, monkeypatch):
    inv, env, slow_s, workdir = slow
    monkeypatch.setenv("EDGEGAUGE_PLAYBOOKS", env["EDGEGAUGE_PLAYBOOKS"])
    run = run_playbook("provision.yml", inv, private_dir=tmp_path / "a", timeout_s=10,
                       envvars={"ANSIBLE_SSH_ARGS": "-o ControlMaster=no"})
    assert run.status == "timeout" and run.duration_s < 20, run
    assert (workdir / "slow-started").exists()  # the play was in its slow step when stopped
    assert not _gone("ansible-playbook", str(tmp_path)), "ansible-playbook workers left running"
    assert not _gone(f"sleep {slow_s}", timeout_s=10.0), "the slow step is still running on the board"
    with pytest.raises(PlaybookFailed, match="ansible-playbook timeout") as info:
        raise_for_failures(run, what="provision")
    assert not isinstance(info.value, PlaybookInterrupted)
