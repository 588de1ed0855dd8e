"""Files host writes get the mode of any tool's new file, 0666 less the user's umask (issue 20
item 13): no 0600 from ``tempfile.mkstemp`` behind an atomic write. Real ``host bench`` and
``host report --html`` processes run under each umask; every file they leave is checked."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from runners import fileio

FIX = Path(__file__).resolve().parent / "fixtures" / "models"
NULL = ["--backend", "null", "--warmup-iters", "1", "--warmup-s", "0", "--min-iters", "5",
        "--min-s", "0.01", "--target-ci", "0.5", "--max-s", "20"]


def host(umask: int, cwd: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "host", *map(str, args)], cwd=cwd, umask=umask,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o077, 0o600)])
def test_bench_and_report_files_follow_the_umask(tmp_path, umask, expected):
    shutil.copy(FIX / "tiny_cnn.onnx", tmp_path)
    bench = host(umask, tmp_path, "bench", "tiny_cnn.onnx", "--device", "local", "--campaign", "c",
                 "--results", "res", *NULL)
    assert bench.returncode in (0, 3), bench.stdout + bench.stderr  # VALID or (busy machine) INVALID
    report = host(umask, tmp_path, "report", "res/c", "--html")
    assert report.returncode == 0, report.stdout + report.stderr
    camp = tmp_path / "res" / "c"
    named = [camp / "campaign.json", camp / "results.csv", camp / "report.html",
             *camp.glob("local/*.json"), *camp.glob("local/*.samples.npz")]
    assert len(named) >= 5 and all(p.is_file() for p in named)
    files = [p for p in camp.rglob("*") if p.is_file()]
    assert set(named) <= set(files)
    assert {str(p.relative_to(camp)): oct(mode(p)) for p in files if mode(p) != expected} == {}


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_write_atomic_and_new_temp_follow_the_umask(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        fileio.write_atomic(tmp_path / "a.txt", lambda fh: fh.write("x"))
        _, folder = fileio.new_temp(tmp_path, directory=True)
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.txt") == expected
    assert mode(Path(folder)) == 0o777 & ~umask
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-") and p.is_file()] == []
