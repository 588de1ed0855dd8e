"""runners/ on the oldest board Python: 3.8 (JetPack 5).

The 3.8 tests run the real package under a real CPython 3.8 in a venv holding only numpy (pinned by
runners/requirements-py38.lock), built once and cached under ``labfix.cache_dir()``. The interpreter is
``$EDGEGAUGE_PY38``, else ``python3.8`` on PATH, else pyenv's newest ``versions/3.8.*``; without one
those tests are skipped. The static check below needs no 3.8: it flags 3.9+ constructs that
``from __future__ import annotations`` does not make lazy (compileall under 3.8 finds syntax only).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import labfix
import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNNERS = ROOT / "runners"
REQUIREMENTS = RUNNERS / "requirements.txt"
PY38_LOCK = RUNNERS / "requirements-py38.lock"
MODEL = ROOT / "tests" / "fixtures" / "models" / "tiny_cnn.onnx"
FAST_ARGS = ["--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "20", "--min-s", "0.05"]


# ----------------------------------------------------------------------------------------------
# the 3.8 interpreter and its cached venv
# ----------------------------------------------------------------------------------------------


def _version_of(python: str) -> tuple[int, ...] | None:
    try:
        p = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:3])"],
                           capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return tuple(int(x) for x in p.stdout.split()) if p.returncode == 0 else None


def find_py38() -> str | None:
    """Path of a CPython 3.8 interpreter: ``$EDGEGAUGE_PY38``, ``python3.8`` on PATH, or pyenv's.

    Raises:
        AssertionError: ``$EDGEGAUGE_PY38`` is set but is not a Python 3.8.
    """
    env = os.environ.get("EDGEGAUGE_PY38")
    if env:
        assert (_version_of(env) or ())[:2] == (3, 8), f"EDGEGAUGE_PY38={env} is not a Python 3.8"
        return env
    on_path = shutil.which("python3.8")
    if on_path and (_version_of(on_path) or ())[:2] == (3, 8):
        return on_path
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path(pwd.getpwuid(os.getuid()).pw_dir) / ".pyenv")
    found = []
    for python in (pyenv_root / "versions").glob("3.8.*/bin/python3.8"):
        match = re.fullmatch(r"3\.8\.(\d+)", python.parent.parent.name)
        if match and os.access(python, os.X_OK):
            found.append((int(match.group(1)), str(python)))
    return max(found)[1] if found else None


def _run(argv, timeout=300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw)


def _build_venv(python: str, venv: Path) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    p = _run([python, "-m", "venv", venv])
    assert p.returncode == 0, f"{python} -m venv failed:\n{p.stdout}\n{p.stderr}"
    # pip with this machine's own configuration (index, find-links); numpy pinned by the board lock.
    p = _run([venv / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check", "-q",
              "-c", PY38_LOCK, "-r", REQUIREMENTS], timeout=900)
    assert p.returncode == 0, f"installing numpy for 3.8 failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"


@pytest.fixture(scope="session")
def py38() -> Path:
    """The python of a cached Python 3.8 venv with only runners/requirements.txt (numpy) installed."""
    python = find_py38()
    if python is None:
        pytest.skip("no Python 3.8 found (set EDGEGAUGE_PY38, put python3.8 on PATH, or "
                    "`pyenv install 3.8`): the runner's oldest supported Python is not tested here")
    real = os.path.realpath(python)
    key = hashlib.sha256(
        "\0".join([real, repr(_version_of(real)), REQUIREMENTS.read_text(), PY38_LOCK.read_text()]).encode()
    ).hexdigest()[:16]
    base = labfix.cache_dir() / "py38-venv"
    venv, ready = base / key, base / key / ".edgegauge-ready"
    with labfix._file_lock(base / f"{key}.lock"):
        if not ready.exists():
            _build_venv(real, venv)
            ready.write_text(real + "\n")
    return venv / "bin" / "python"


def _env(tmp_path: Path) -> dict:
    # Byte code goes to tmp_path, not into runners/__pycache__ (3.8 reads PYTHONPYCACHEPREFIX).
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONPYCACHEPREFIX=str(tmp_path / "pycache"))


# ----------------------------------------------------------------------------------------------
# under Python 3.8
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_venv_is_python_38_with_the_locked_numpy(py38):
    p = _run([py38, "-c", "import sys, numpy; print(*sys.version_info[:2], numpy.__version__)"])
    assert p.returncode == 0, p.stderr
    locked = re.search(r"^numpy==(\S+)", PY38_LOCK.read_text(), re.M).group(1)
    assert p.stdout.split() == ["3", "8", locked]


@pytest.mark.slow
def test_runners_compile_under_py38(py38, tmp_path):
    p = _run([py38, "-m", "compileall", "-q", RUNNERS], cwd=ROOT, env=_env(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert list((tmp_path / "pycache").rglob("core.cpython-38.pyc"))  # it did compile, under 3.8


IMPORT_ALL = r"""
import importlib, json, os, pkgutil, sys, sysconfig
before = set(sys.modules)
import runners
for info in pkgutil.walk_packages(runners.__path__, "runners."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
stdlib = [os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")]
site = [os.path.realpath(p) for p in sys.path if p.endswith("site-packages")]
bad = []
for name in sorted(set(sys.modules) - before):
    top = name.split(".")[0]
    path = getattr(sys.modules[name], "__file__", None)  # None: built in (or a namespace)
    path = os.path.realpath(path) if path else None
    in_stdlib = path is None or (any(path.startswith(d + os.sep) for d in stdlib)
                                 and not any(path.startswith(s + os.sep) for s in site))
    if top not in ("runners", "numpy") and not in_stdlib:
        bad.append(name + " " + path)
print(json.dumps({"modules": sorted(m for m in sys.modules if m.startswith("runners")), "bad": bad}))
"""


@pytest.mark.slow
def test_every_runners_module_imports_under_py38_needing_only_stdlib_and_numpy(py38, tmp_path):
    p = _run([py38, "-c", IMPORT_ALL], cwd=ROOT, env=_env(tmp_path))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    expected = {"runners." + str(f.relative_to(RUNNERS).with_suffix("")).replace(os.sep, ".")
                for f in RUNNERS.rglob("*.py") if "__pycache__" not in f.parts and f.stem != "__main__"}
    expected = {m[: -len(".__init__")] if m.endswith(".__init__") else m for m in expected}
    assert expected <= set(out["modules"])
    assert not out["bad"], "runners imported outside stdlib + numpy under 3.8:\n" + "\n".join(out["bad"])


@pytest.mark.slow
def test_backends_command_under_py38(py38, tmp_path):
    p = _run([py38, "-m", "runners", "backends"], cwd=ROOT, env=_env(tmp_path))
    assert p.returncode == 0, p.stderr
    assert re.search(r"^null\s+available", p.stdout, re.M), p.stdout


@pytest.mark.slow
def test_null_run_under_py38_writes_a_result_naming_python_38(py38, tmp_path):
    out = tmp_path / "r.json"
    p = _run([py38, "-m", "runners", "run", MODEL, "--backend", "null", *FAST_ARGS, "--out", out],
             cwd=ROOT, env=_env(tmp_path))
    assert p.returncode in (0, 3), p.stderr  # ok or invalid, never failed
    doc = json.loads(out.read_text())
    assert doc["status"] in ("ok", "invalid") and doc["error"] is None, doc.get("error")
    assert doc["verdict"]["result"] in ("VALID", "INVALID")
    assert doc["runtime"]["name"] == "null" and doc["latency"]["iterations"] >= 20
    assert doc["model"]["size_bytes"] == MODEL.stat().st_size
    assert doc["manifest"]["device"]["python"].startswith("3.8.")
    assert Path(doc["manifest"]["tool"]["python_executable"]).parent == Path(py38).parent


# ----------------------------------------------------------------------------------------------
# static: 3.9+ constructs evaluated at run time (no 3.8 needed)
# ----------------------------------------------------------------------------------------------

#: Builtins whose subscription (``list[int]``) needs 3.9 when evaluated.
GENERIC_BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "type"}
#: Methods added in 3.9 (distinctive names, flagged on any object).
NEWER_METHODS = {"removeprefix", "removesuffix", "is_relative_to", "with_stem", "waitstatus_to_exitcode",
                 "randbytes"}
#: Module functions added in 3.9+: (module, name) -> version.
NEWER_FUNCTIONS = {("functools", "cache"): "3.9", ("math", "lcm"): "3.9", ("ast", "unparse"): "3.9",
                   ("itertools", "pairwise"): "3.10"}
NEWER_MODULES = {"zoneinfo": "3.9", "graphlib": "3.9", "tomllib": "3.11"}
NEWER_KEYWORDS = {("zip", "strict"): "3.10", ("dataclass", "slots"): "3.10", ("dataclass", "kw_only"): "3.10"}


def _annotation_nodes(tree):
    """ids of every node inside an annotation (lazy under ``from __future__ import annotations``)."""
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            roots.extend(a.annotation for a in every if a is not None and a.annotation is not None)
            if node.returns is not None:
                roots.append(node.returns)
    return {id(n) for root in roots for n in ast.walk(root)}


def _call_name(func) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def py39_constructs(source: str) -> list[str]:
    """``"line: what"`` for each construct in ``source`` that fails on Python 3.8 when executed."""
    tree = ast.parse(source)
    lazy = _annotation_nodes(tree) if "from __future__ import annotations" in source else set()
    found = []
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                and node.value.id in GENERIC_BUILTINS:
            found.append(f"{node.lineno}: {node.value.id}[...] evaluated at run time (3.9)")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and any(
                isinstance(x, ast.Constant) and x.value is None for x in (node.left, node.right)):
            found.append(f"{node.lineno}: X | None evaluated at run time (3.10)")
        elif isinstance(node, ast.Attribute) and node.attr in NEWER_METHODS:
            found.append(f"{node.lineno}: .{node.attr} (3.9)")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and (node.value.id, node.attr) in NEWER_FUNCTIONS:
            found.append(f"{node.lineno}: {node.value.id}.{node.attr} "
                         f"({NEWER_FUNCTIONS[node.value.id, node.attr]})")
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.extend(f"{node.lineno}: {node.module}.{a.name} ({NEWER_FUNCTIONS[node.module, a.name]})"
                         for a in node.names if (node.module, a.name) in NEWER_FUNCTIONS)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found.extend(f"{node.lineno}: import {n} ({NEWER_MODULES[n.split('.')[0]]})"
                         for n in names if n.split(".")[0] in NEWER_MODULES)
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                version = NEWER_KEYWORDS.get((_call_name(node.func), kw.arg))
                if version:
                    found.append(f"{node.lineno}: {_call_name(node.func)}({kw.arg}=) ({version})")
    return found


def test_runners_sources_use_nothing_newer_than_python_38_at_run_time():
    files = sorted(p for p in RUNNERS.rglob("*.py") if "__pycache__" not in p.parts)
    assert len(files) >= 8
    bad = [f"{p.relative_to(ROOT)}:{hit}" for p in files for hit in py39_constructs(p.read_text())]
    assert not bad, "runners/ must run on Python 3.8:\n" + "\n".join(bad)


def test_the_py38_checker_catches_newer_constructs_and_spares_lazy_annotations():
    ok = ("from __future__ import annotations\n"
          "def f(x: list[int] | None = None) -> dict[str, int]:\n"
          "    y: tuple[int, ...] = ()\n    return {}\n")
    assert py39_constructs(ok) == []
    bad = ("import zoneinfo\nfrom functools import cache\nimport math\nAlias = dict[str, int]\n"
           "def g(s, a, b):\n    isinstance(s, int | None)\n    list(zip(a, b, strict=True))\n"
           "    return s.removeprefix('x'), math.lcm(2, 3), self.cache\n")
    hits = "\n".join(py39_constructs(bad))
    for what in ("import zoneinfo", "functools.cache", "dict[...]", "X | None", "zip(strict=)",
                 ".removeprefix", "math.lcm"):
        assert what in hits, (what, hits)
    assert "self" not in hits and hits.count("\n") == 6  # seven hits; an attribute named cache is fine
    # Without the future import, annotations are evaluated when the def runs.
    assert py39_constructs("def f(x: list[int]):\n    pass\n")


@pytest.mark.slow
def test_paced_run_under_py38_reports_its_schedule(py38, tmp_path):
    """Issue 24's scheduled loop and early-stopping estimate under 3.8: 10 slots of 20 ms."""
    out = tmp_path / "r.json"
    p = _run([py38, "-m", "runners", "run", MODEL, "--backend", "null", "--warmup-iters", "2",
              "--warmup-s", "0", "--scenario", "paced", "--rate-hz", "50", "--duration", "0.2", "--out", out],
             cwd=ROOT, env=_env(tmp_path))
    assert p.returncode in (0, 3), p.stderr
    doc = json.loads(out.read_text())
    sc = doc["scenario"]
    assert sc["name"] == "paced" and sc["slots"] == 10 and sc["queries"] + sc["skipped"] == 10
    assert doc["latency"]["level"] == "query" and doc["latency"]["latency_ms_p99"] is None
    assert doc["latency"]["latency_ms_p99_early_stopping"]["queries_needed"] == 662


@pytest.mark.slow
@pytest.mark.parametrize("scenario, settings", [
    ("offline", ["--streams", "2", "--duration", "0.2"]),
    ("server", ["--streams", "2", "--qps", "2000", "--duration", "0.1", "--search-runs", "2"]),
])
def test_offline_and_server_runs_under_py38(py38, tmp_path, scenario, settings):
    """Issue 24's concurrent streams (threads, a queue) under 3.8, on two null sessions."""
    out = tmp_path / "r.json"
    p = _run([py38, "-m", "runners", "run", MODEL, "--backend", "null", "--warmup-iters", "2",
              "--warmup-s", "0", "--scenario", scenario, *settings, "--out", out],
             cwd=ROOT, env=_env(tmp_path))
    assert p.returncode in (0, 3), p.stderr
    doc = json.loads(out.read_text())
    sc = doc["scenario"]
    assert sc["name"] == scenario and sc["streams"] == 2
    assert (sc["throughput_sps"] > 0) if scenario == "offline" else len(sc["runs"]) == 2
