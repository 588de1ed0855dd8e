"""scripts/gpu-check.sh (issue 23) on a machine without a GPU: its dry run says what it skipped and why,
runs what needs no GPU (the environment step, collecting the gated tests), asks nothing of a GPU and
exits 0; a bad command line exits 2. The GPU path itself needs an NVIDIA machine (docs/testing.md)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu-check.sh"
GPU_STEPS = ("nvml-query", "nvml-source", "cuda-rt")
#: What nvidia-smi prints when the driver is not loaded (exit 9), as in tests/test_meters_nvml.py.
NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
             "Make sure that the latest NVIDIA driver is installed and running.")


def run(*args: str, path_prefix: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("OUT", None)
    if path_prefix:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=180, env=env,
                          cwd=ROOT)


def lines_of(text: str) -> dict:
    """step -> (status, detail) from the script's step lines."""
    found = {}
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] in ("ok", "FAILED", "SKIPPED"):
            found[parts[0]] = (parts[1], parts[2])
    return found


def check_dry_run(res: subprocess.CompletedProcess, out: Path, why: str) -> None:
    assert res.returncode == 0, res.stdout + res.stderr
    steps = lines_of(res.stdout)
    assert list(steps) == ["env", "nvml-query", "nvml-source", "cuda-rt", "gpu-tests"], res.stdout
    assert steps["env"][0] == "ok" and "cuda_rt:" in steps["env"][1]
    for step in GPU_STEPS + ("gpu-tests",):
        status, detail = steps[step]
        assert status == "SKIPPED" and detail.startswith("dry run") and why in detail, (step, detail)
    assert "would run 4 gated tests" in steps["gpu-tests"][1]
    assert lines_of((out / "summary.txt").read_text()) == steps
    env = (out / "environment.txt").read_text()
    assert "gpu_check_dry_run: 1" in env and "cuda_rt: " in env and "python: " in env
    assert sorted(p.name for p in out.iterdir()) == ["environment.txt", "summary.txt"]  # no capture


def test_dry_run_on_request(tmp_path):
    res = run("--dry-run", str(tmp_path))
    check_dry_run(res, tmp_path, "(--dry-run)")


def test_dry_run_when_the_driver_does_not_answer(tmp_path):
    """No GPU answering nvidia-smi -L: the script turns to a dry run by itself and quotes nvidia-smi."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\necho "{NO_DRIVER}"\nexit 9\n')
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "out"
    res = run(str(out), path_prefix=str(bindir))
    check_dry_run(res, out, "nvidia-smi -L lists no GPU: NVIDIA-SMI has failed")
    assert res.stdout.startswith("gpu-check: dry run: nvidia-smi -L lists no GPU")


@pytest.mark.parametrize("args", [(), ("--nope", "x")])
def test_bad_command_line_exits_2(args):
    res = run(*args)
    assert res.returncode == 2 and "gpu-check:" in res.stderr
