"""Backend descriptors: each runtime is declared once, in its folder under runners/backends/.

The ort/null/tensorrt/vart descriptors carry the declared fields; discovery imports no runtime;
and a throw-away backend module dropped into a copy of the runners package is listed, run and
accepted by the host (bench, inventory) without editing any other file.
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

from runners.backends import Backend, descriptors, get_backend, implemented_names
from runners.errors import BackendUnavailableError
from runners.power_state import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "models" / "identity.onnx"
POLICY = ["--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "20", "--min-s", "0.02"]
HOST = [*POLICY, "--target-ci", "0.5"]  # host bench: five processes per cell, a loose target

ECHO = textwrap.dedent(
    '''
    """A throw-away backend for tests: infer() does ~20 us of steady CPU work."""

    from __future__ import annotations

    from runners.backends import Backend, BackendDescriptor, BackendOption
    from runners.inputs import TensorSpec


    class EchoBackend(Backend):
        name = "echo"

        def load(self, model_path):
            self.model_path = model_path

        def inputs(self):
            return [TensorSpec("x", "float32", (1, 4))]

        def prepare(self, feeds):
            self.feeds = dict(feeds)

        def infer(self):
            sum(range(2000))

        def runtime_info(self):
            return {"name": "echo", "version": None, "provider": None, "threads": 1,
                    "echo_opt": self.options["echo_opt"]}


    DESCRIPTOR = BackendDescriptor(
        name="echo",
        summary="sums a range per inference (test backend)",
        backend=EchoBackend,
        options=(BackendOption("echo_opt", int, 7, "a number echoed into runtime_info", slug="echo"),),
        latency_levels=("host_call",),
        precisions=("fp32",),
        families=("x86_a100",),
    )
    '''
)


# ----------------------------------------------------------------------------------------------
# the shipped descriptors
# ----------------------------------------------------------------------------------------------


def test_shipped_descriptors_declare_their_fields():
    descs = descriptors()
    assert {"ort", "null", "tensorrt", "tvm", "vart"} <= set(descs)
    assert implemented_names() == ["null", "ort", "tensorrt", "tvm", "vart"]
    for name, d in descs.items():
        assert d.name == name and d.summary
        assert d.latency_levels and set(d.latency_levels) <= {"host_call", "device", "device_compute",
                                                               "device_with_transfers"}
        assert d.families and set(d.families) <= set(FAMILIES), d.families
        assert isinstance(d.precisions, tuple)
    ort = descs["ort"]
    assert ort.implemented and issubclass(ort.backend, Backend) and ort.runtime_modules == ("onnxruntime",)
    assert [(o.name, o.kind, o.default, o.flag) for o in ort.options] == [
        ("threads", int, 0, "--threads"), ("opt_level", str, "all", "--opt-level"),
        ("io_binding", bool, True, "--no-io-binding"), ("provider", str, "cpu", "--provider")]
    assert ort.option("opt-level").choices == ("disable", "basic", "extended", "all")
    assert ort.latency_levels == ("host_call", "device_compute", "device_with_transfers")
    assert ort.precisions == ("fp32", "fp16", "int8")  # the host's variants run on it
    null = descs["null"]
    assert null.implemented and null.options == () and null.runtime_modules == ()
    vart = descs["vart"]  # implemented: runners/backends/vart/ (not run on a DPU here)
    assert vart.implemented and issubclass(vart.backend, Backend) and vart.runtime_modules == ("vart", "xir")
    assert set(vart.families) == {"zcu104"} and vart.precisions == ("int8",)
    trt = descs["tensorrt"]  # implemented: runners/backends/tensorrt/ (not run on a GPU here)
    assert trt.implemented and issubclass(trt.backend, Backend)
    assert trt.runtime_modules == ("tensorrt", "cuda")
    assert set(trt.families) == {"jetson", "x86_a100"} and trt.latency_levels[0] == "host_call"
    assert isinstance(get_backend("tensorrt"), trt.backend)  # instantiating imports no runtime
    with pytest.raises(BackendUnavailableError, match="unknown backend 'nosuch'"):
        get_backend("nosuch")


def test_resolve_fills_defaults_and_refuses_unknown_or_bad_values():
    ort = descriptors()["ort"]
    assert ort.resolve({"threads": "2"}) == {"threads": 2, "opt_level": "all", "io_binding": True,
                                             "provider": "cpu"}
    assert ort.resolve({"io-binding": "off"})["io_binding"] is False
    with pytest.raises(ValueError, match="no option echo_opt"):
        ort.resolve({"echo_opt": 1})
    with pytest.raises(ValueError, match="one of disable"):
        ort.resolve({"opt_level": "max"})
    with pytest.raises(ValueError, match="expected int"):
        ort.resolve({"threads": "many"})


def test_discovery_imports_no_runtime():
    code = ("import sys; from runners.backends import descriptors; descriptors(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('onnxruntime', 'tensorrt', 'vart', 'xir')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_each_runtime_is_one_folder_whose_descriptor_holds_its_profile_parser():
    import importlib

    from runners.backends.ort import profile as ort_profile
    from runners.backends.tensorrt import trtexec

    descs = descriptors()
    assert "base" not in descs  # the interface module is no runtime
    for name in ("ort", "tensorrt", "vart"):  # packages: DESCRIPTOR in the folder's __init__.py
        module = importlib.import_module(f"runners.backends.{name}")
        assert Path(module.__file__) == ROOT / "runners" / "backends" / name / "__init__.py"
        assert module.DESCRIPTOR is descs[name]
    assert descs["ort"].layer_profiler.rows is ort_profile.layer_rows
    assert descs["tensorrt"].layer_profiler.rows is trtexec.layer_rows
    assert descs["null"].layer_profiler is None and descs["vart"].layer_profiler is None
    assert descs["ort"].to_json()["layer_profiler"] == "chrome_trace"
    long = {p.relative_to(ROOT).as_posix(): n for p in (ROOT / "runners" / "backends").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long


# ----------------------------------------------------------------------------------------------
# a new backend is one module
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def echo_pkg(tmp_path_factory):
    """A copy of the runners package with runners/backends/echo.py added, nothing else edited."""
    top = tmp_path_factory.mktemp("echo_pkg")
    shutil.copytree(ROOT / "runners", top / "runners", ignore=shutil.ignore_patterns("__pycache__"))
    (top / "runners" / "backends" / "echo.py").write_text(ECHO)
    return top


def _py(args, pythonpath, cwd, timeout=180):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, pythonpath)), HOME=str(cwd),
               COLUMNS="200", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


def test_runner_lists_and_runs_a_new_backend_module(echo_pkg, tmp_path):
    p = _py(["-m", "runners", "backends"], [echo_pkg], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "echo\tavailable" in p.stdout.splitlines()
    p = _py(["-m", "runners", "run", "--help"], [echo_pkg], tmp_path)
    assert "--echo-opt" in p.stdout and "echo: a number echoed" in p.stdout
    out = tmp_path / "r.json"
    p = _py(["-m", "runners", "run", MODEL, "--backend", "echo", "--echo-opt", "5", *POLICY, "--out", out],
            [echo_pkg], tmp_path)
    assert p.returncode in (0, 3), p.stderr  # 3: INVALID on a loop check (timing on a busy machine)
    doc = json.loads(out.read_text())
    assert doc["status"] in ("ok", "invalid") and doc["runtime"]["name"] == "echo"
    assert doc["runtime"]["echo_opt"] == 5
    assert doc["configuration"]["options"] == {"echo_opt": 5}
    assert doc["latency"]["level"] == "host_call" and doc["latency"]["iterations"] >= 20
    p = _py(["-m", "runners", "run", "--backend", "echo", "--echo-opt", "five", *POLICY], [echo_pkg],
            tmp_path)
    assert p.returncode == 2 and "--echo-opt" in p.stderr  # typed: not an int
    p = _py(["-m", "runners", "run", "--backend", "null", "--echo-opt", "5", *POLICY], [echo_pkg], tmp_path)
    assert p.returncode == 2 and "not an option of backend 'null'" in p.stderr


def test_host_bench_accepts_a_new_backend_and_its_options(echo_pkg, tmp_path):
    path = [echo_pkg, ROOT]  # the copy's runners first; host from this checkout
    res = tmp_path / "results"
    p = _py(["-m", "host", "bench", MODEL, "--device", "local", "--backend", "echo", "-o", "echo_opt=3",
             *HOST, "--results", res, "--campaign", "c", "--json"], path, tmp_path)
    assert p.returncode in (0, 3), p.stdout + p.stderr  # 3: INVALID timing on a busy machine
    cell = json.loads(p.stdout)[0]
    assert cell["status"] in ("ok", "invalid") and cell["runtime"]["echo_opt"] == 3
    assert (res / "c" / "local" / "identity__echo-b1-tall-echo3.json").is_file()  # option in the slug
    bad = _py(["-m", "host", "bench", MODEL, "--backend", "echo", "-o", "echo_opt=x", *HOST,
               "--results", res], path, tmp_path)
    assert bad.returncode == 1 and "bad -o echo_opt" in bad.stderr
    stray = _py(["-m", "host", "bench", MODEL, "--backend", "echo", "-o", "opt_level=basic", *HOST,
                 "--results", res], path, tmp_path)
    assert stray.returncode == 1 and "-o opt_level is not an option of backend echo" in stray.stderr


def test_inventory_runtime_values_come_from_the_descriptors(echo_pkg, tmp_path):
    inv = tmp_path / "lab.ini"
    inv.write_text(f"[boards]\nb1 ansible_connection=local runtime=echo python={sys.executable} "
                   f"workdir={tmp_path / 'work'}\n")
    res = tmp_path / "results"
    args = ["-m", "host", "bench", MODEL, "-i", inv, "--device", "b1", *HOST, "--results", res,
            "--campaign", "c", "--json"]
    without = _py(args, [ROOT], tmp_path)  # this checkout's runners: no echo backend
    assert without.returncode != 0 and "runtime='echo' is not allowed" in without.stderr
    p = _py(args, [echo_pkg, ROOT], tmp_path)
    assert p.returncode in (0, 3), p.stdout + p.stderr  # 3: INVALID timing on a busy machine
    cell = json.loads(p.stdout)[0]
    assert cell["status"] in ("ok", "invalid") and cell["runtime"]["echo_opt"] == 7  # its default
    assert (res / "c" / "b1" / "identity__echo-b1-tall.json").is_file()
