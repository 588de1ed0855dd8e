"""Two real ``host bench`` processes on the local device: the second waits for the board lock with
the holder named and a countdown (``--wait-lock``), or fails at once with ``--no-wait`` (the holder,
the hint, never "unreachable"); an interrupted or failed run ends with the exact command that
resumes it, and that command does resume it."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "models" / "identity.onnx"
NULL = ["--backend", "null", "--warmup-iters", "1", "--warmup-s", "0", "--min-iters", "5",
        "--target-ci", "0.5", "--max-s", "60"]
#: a first run that holds the lock for several seconds: 8 processes of >= 1 s timed loops
LONG = ["--min-s", "1", "--min-processes", "8"]


def env() -> dict:
    """This test session's environment (its own local work folder, set by conftest)."""
    return {**os.environ, "COLUMNS": "200"}


def bench(tmp_path: Path) -> list:
    return [sys.executable, "-m", "host", "bench", str(MODEL), "--results", str(tmp_path / "r"), *NULL]


def start(tmp_path: Path, *args) -> subprocess.Popen:
    # Ctrl-C as from a terminal, however pytest was started: a shell starts background jobs with
    # SIGINT ignored, and an ignored signal stays ignored across exec (seen: CI started with `&`)
    return subprocess.Popen([*bench(tmp_path), *map(str, args)], cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def run(tmp_path: Path, *args, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([*bench(tmp_path), *args], cwd=tmp_path, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def lock_file() -> Path:
    return Path(os.environ["EDGEGAUGE_LOCAL_WORKDIR"]) / ".edgegauge.lock"


def wait_for_holder(proc: subprocess.Popen) -> dict:
    """The lock record once ``proc`` holds the local board's lock."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        text = lock_file().read_text() if lock_file().exists() else ""
        if text.strip() and json.loads(text).get("host_pid") == proc.pid:
            return json.loads(text)
        time.sleep(0.1)
    raise AssertionError("the first run never took the lock")


def test_a_second_bench_waits_for_the_lock_with_the_holder_named_then_runs(tmp_path):
    first = start(tmp_path, "--campaign", "first", *LONG)
    wait_for_holder(first)
    second = run(tmp_path, "--campaign", "second", "--wait-lock", "300")
    out, err = first.communicate(timeout=300)
    assert first.returncode in (0, 3), out + err  # 3: INVALID timing on a busy machine
    assert second.returncode in (0, 3), second.stdout + second.stderr
    assert "local: busy, in use by " in second.stderr
    assert f"(host pid {first.pid}, `host bench`, since " in second.stderr
    assert "waiting up to 5:00 for it to end" in second.stderr
    assert "local: waited " in second.stdout and " s for the board lock" in second.stdout
    assert "unreachable" not in second.stdout + second.stderr
    cell = json.loads(next((tmp_path / "r" / "second" / "local").glob("identity__*.json")).read_text())
    assert cell["status"] in ("ok", "invalid")


def test_no_wait_fails_at_once_with_the_holder_the_hint_and_the_resume_command(tmp_path):
    first = start(tmp_path, "--campaign", "first", *LONG)
    holder = wait_for_holder(first)
    second = run(tmp_path, "--no-wait", timeout=120)
    still_held = first.poll() is None
    first.communicate(timeout=300)
    assert still_held, "the second run waited for the first"
    assert second.returncode == 1, second.stdout + second.stderr
    (found,) = (tmp_path / "r").glob("2*/local/identity__*.json")  # the campaign named by its start
    cell = json.loads(found.read_text())
    assert cell["error"]["category"] == "busy"
    assert f"in use by {holder['user']}@{holder['host']} (host pid {first.pid}" in cell["error"]["message"]
    text = second.stdout + second.stderr
    assert "unreachable" not in text
    assert "hint: wait for that run to end (host bench waits --wait-lock SECONDS" in second.stdout
    assert "--no-wait fails at once" in text and "pass --break-lock" in text
    # the resume line: this very command line, with the campaign (a timestamp) named
    (line,) = [x for x in second.stderr.splitlines() if x.startswith("resume: ")]
    argv = shlex.split(line[len("resume: "):])
    assert argv[:3] == ["host", "bench", str(MODEL)] and argv[-2:] == ["--campaign", cell["cell"]["campaign"]]
    assert "--no-wait" in argv
    resumed = subprocess.run([sys.executable, "-m", "host", *argv[1:], "--json"], cwd=tmp_path, env=env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode in (0, 3), resumed.stdout + resumed.stderr  # the board is free now
    (again,) = json.loads(resumed.stdout)
    assert again["status"] in ("ok", "invalid") and again["cell"]["campaign"] == cell["cell"]["campaign"]


def test_an_interrupted_run_ends_with_the_command_that_resumes_it(tmp_path):
    run = start(tmp_path, *LONG)  # no --campaign: the resume command must add it
    wait_for_holder(run)
    time.sleep(1)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, out + err
    hint = [x for x in err.splitlines() if x.startswith("hint: resume with: ")]
    assert hint, err
    argv = shlex.split(hint[0][len("hint: resume with: "):])
    (campaign,) = [p.name for p in (tmp_path / "r").iterdir()]
    assert argv[:3] == ["host", "bench", str(MODEL)] and argv[-2:] == ["--campaign", campaign]
    resumed = subprocess.run([sys.executable, "-m", "host", *argv[1:], "--json"], cwd=tmp_path, env=env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode in (0, 3), resumed.stdout + resumed.stderr
    (cell,) = json.loads(resumed.stdout)
    assert cell["cell"]["campaign"] == campaign and cell["status"] in ("ok", "invalid")
