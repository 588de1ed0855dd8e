"""runners/ imports only the standard library, numpy and (lazily, inside functions) its
runtime. Checked statically (AST) and dynamically (a process where every other import
fails)."""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from runners.backends import descriptors

ROOT = Path(__file__).resolve().parent.parent
RUNNERS = ROOT / "runners"
ALLOWED_TOP = set(sys.stdlib_module_names) | {"numpy", "runners", "__future__"}
#: Runtimes a backend may import inside a function: those the backend descriptors declare.
ALLOWED_LAZY = ALLOWED_TOP | {m.split(".")[0] for d in descriptors().values() for m in d.runtime_modules}


def _imports(tree):
    """Yield (module top name, inside_function) for every import in a module."""
    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            nested = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name.split(".")[0], in_func
            elif isinstance(child, ast.ImportFrom):
                if child.level == 0 and child.module:
                    yield child.module.split(".")[0], in_func
            yield from visit(child, nested)

    yield from visit(tree, False)


def test_runners_sources_follow_the_import_rule():
    files = sorted(RUNNERS.rglob("*.py"))
    assert len(files) >= 8
    bad = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for name, in_func in _imports(tree):
            allowed = ALLOWED_LAZY if in_func else ALLOWED_TOP
            if name not in allowed:
                bad.append(f"{path.relative_to(ROOT)}: {name} ({'lazy' if in_func else 'top level'})")
    assert not bad, "forbidden imports in runners/:\n" + "\n".join(bad)


def test_the_checker_catches_a_forbidden_import():
    tree = ast.parse("import os\nimport pandas\ndef f():\n    import onnxruntime\n    import scipy\n")
    found = list(_imports(tree))
    assert ("pandas", False) in found and ("onnxruntime", True) in found and ("scipy", True) in found


BLOCKER = textwrap.dedent(
    """
    import sys
    ALLOWED = set(sys.stdlib_module_names) | {"numpy", "runners"}
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] not in ALLOWED:
                raise ImportError(f"blocked import: {name}")
            return None
    sys.meta_path.insert(0, Block())
    import runpy
    sys.argv = ["runners"] + sys.argv[1:]
    runpy.run_module("runners", run_name="__main__", alter_sys=True)
    """
)


def _blocked(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HOME=os.environ.get("HOME", "/tmp"))
    return subprocess.run([sys.executable, "-c", BLOCKER, *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_help_and_null_run_work_with_only_numpy():
    p = _blocked("--help")
    assert p.returncode == 0, p.stderr
    assert "run" in p.stdout
    p = _blocked("run", "--help")
    assert p.returncode == 0, p.stderr
    p = _blocked("run", "--backend", "null", "--warmup-s", "0", "--min-s", "0.01", "--min-iters", "10")
    assert p.returncode == 0, p.stderr
    assert '"name": "null"' in p.stdout


def test_missing_runtime_is_a_typed_failure_not_an_import_crash(tmp_path):
    model = ROOT / "tests" / "fixtures" / "models" / "identity.onnx"
    p = _blocked("run", str(model), "--backend", "ort", "--out", str(tmp_path / "r.json"))
    assert p.returncode == 4, p.stderr
    assert "BackendUnavailableError" in p.stderr and "onnxruntime" in p.stderr
