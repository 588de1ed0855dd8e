"""Issue 23, item 10: the runner's stdout carries its own output only.

ONNX Runtime prints its "EP Error ... Falling back to [...] and retrying." lines with Python's
``print`` while it creates a session (onnxruntime/capi/onnxruntime_inference_collection.py,
``InferenceSession.__init__``, 1.19.2 to 1.31.1), and native runtimes (TensorRT, CUDA, VART, their
plugins) may write to file descriptor 1 from C or C++, directly or through the C stdio buffer
that is flushed when the process exits. A real ``python -m runners`` process runs a stand-in
backend that does all of these, in ``load`` and in ``infer``; its stdout must still be exactly the
result JSON, and the noise must be on stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "models" / "identity.onnx"
POLICY = ["--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "5", "--min-s", "0", "--max-s", "5"]

NOISY = textwrap.dedent(
    '''
    """A throw-away backend that writes to stdout in every way a runtime can (test only)."""

    from __future__ import annotations

    import ctypes
    import os
    import subprocess

    from runners.backends import Backend, BackendDescriptor
    from runners.inputs import TensorSpec

    _libc = ctypes.CDLL(None)


    def _noise(where):
        print(f"*************** EP Error *************** python print in {where}")  # as ORT's fallback
        os.write(1, f"os.write(1) in {where}\\n".encode())
        msg = f"libc write(1) in {where}\\n".encode()
        _libc.write(1, msg, len(msg))
        _libc.printf(b"libc printf in %s (buffered until exit) ", where.encode())  # no newline, no flush
        subprocess.run(["sh", "-c", "echo child process stdout in " + where])


    class NoisyBackend(Backend):
        name = "noisy"

        def load(self, model_path):
            _noise("load")
            self.calls = 0

        def inputs(self):
            return [TensorSpec("x", "float32", (1, 4))]

        def prepare(self, feeds):
            self.feeds = dict(feeds)

        def infer(self):
            self.calls += 1
            if self.calls == 1:
                _noise("infer")

        def runtime_info(self):
            return {"name": "noisy", "version": None, "provider": None, "threads": 1}


    DESCRIPTOR = BackendDescriptor(
        name="noisy",
        summary="writes to stdout from Python, os.write, libc and a child (test backend)",
        backend=NoisyBackend,
        latency_levels=("host_call",),
        precisions=("fp32",),
        families=("x86_a100",),
    )
    '''
)


@pytest.fixture(scope="module")
def noisy_pkg(tmp_path_factory):
    """A copy of this checkout's runners package with runners/backends/noisy.py added."""
    top = tmp_path_factory.mktemp("noisy_pkg")
    shutil.copytree(ROOT / "runners", top / "runners", ignore=shutil.ignore_patterns("__pycache__"))
    (top / "runners" / "backends" / "noisy.py").write_text(NOISY)
    return top


def _runner(args, pkg, cwd):
    env = dict(os.environ, PYTHONPATH=str(pkg), HOME=str(cwd), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "runners", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=180)


def test_the_result_json_is_alone_on_stdout(noisy_pkg, tmp_path):
    p = _runner(["run", MODEL, "--backend", "noisy", *POLICY], noisy_pkg, tmp_path)
    assert p.returncode in (0, 3), p.stderr[-2000:]
    doc = json.loads(p.stdout)  # HEAD 6038e28: JSONDecodeError, the noise is on stdout
    assert doc["status"] in ("ok", "invalid") and doc["runtime"]["name"] == "noisy"
    assert p.stdout.lstrip().startswith("{") and p.stdout.rstrip().endswith("}")
    for where in ("load", "infer"):
        for noise in ("python print", "os.write(1)", "libc write(1)", "libc printf", "child process stdout"):
            assert f"{noise} in {where}" in p.stderr, (noise, where)
            assert noise not in p.stdout


def test_other_commands_keep_stdout_too(noisy_pkg, tmp_path):
    p = _runner(["backends", "--json"], noisy_pkg, tmp_path)
    assert p.returncode == 0, p.stderr
    assert "noisy" in [d["name"] for d in json.loads(p.stdout)]
    p = _runner(["backends"], noisy_pkg, tmp_path)
    assert "noisy\tavailable" in p.stdout.splitlines()
    p = _runner(["run", "--help"], noisy_pkg, tmp_path)  # argparse's help still on stdout
    assert p.returncode == 0 and "--backend" in p.stdout


def test_an_in_process_main_writes_to_the_stream_it_is_given(capsys):
    import io

    from runners.cli import main

    out = io.StringIO()
    assert main(["backends", "--json"], out=out) == 0
    assert "ort" in [d["name"] for d in json.loads(out.getvalue())]
    assert capsys.readouterr().out == ""
