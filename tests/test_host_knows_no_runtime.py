"""The host asks the runtime descriptor, never a backend name or a model suffix (issue 21).

The rule, precisely: an ``ast`` scan of every string constant in the host's runtime-facing
packages (``host/lab``, ``host/campaign``, ``host/cli``, ``host/analysis``, ``host/power`` and
the modules directly under ``host/``) fails, listing ``file:line``, when a constant

- equals a backend name from :func:`runners.backends.descriptors` (``null``, ``ort``, ...), or
- contains a model suffix from any descriptor's ``model_suffixes`` (``.onnx``, ``.xmodel``, ...)
  as a file suffix (the suffix followed by a non-identifier character or the end).

Not counted (help text, for people): docstrings, the values of ``help=`` keywords, f-string text
and any constant with whitespace in it (a sentence: an error message or ``hint=``; code compares
and builds single tokens); also the JSON-Schema type ``"null"`` (the value of a ``"type"`` key).
``host/models/`` is allowed its ``.onnx``: export, quantize, static metrics and the fidelity
reference are the host's own ONNX tooling (``host.models.ONNX_SUFFIX``, ``is_onnx``), not a
runtime's model format. The container-image catalogue (which runtime each family's image variant
holds) is the family descriptors' (``runners/families/``), so ``host/lab/images.py`` has no exemption.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from runners.backends import descriptors

ROOT = Path(__file__).resolve().parent.parent / "host"
ALLOWED = (("models",),)  # see the module docstring


def _docstrings(tree: ast.AST) -> set:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _exempt(tree: ast.AST) -> set:
    """Constants that are help text, f-string text or JSON-Schema ``"type"`` values."""
    ids = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "help":
            ids.update(id(n) for n in ast.walk(node.value))
        elif isinstance(node, ast.JoinedStr):
            ids.update(id(n) for n in node.values)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "type" and value is not None:
                    ids.update(id(n) for n in ast.walk(value))
    return ids


def _leaks(path: Path, root: Path, names: set, suffix_re: re.Pattern) -> list:
    tree = ast.parse(path.read_text(), str(path))
    exempt = _exempt(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in exempt:
            continue
        if any(c.isspace() for c in node.value):
            continue
        if node.value in names or suffix_re.search(node.value):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value!r}")
    return found


def scan(root: Path = ROOT) -> list:
    """Every leak under ``root`` as ``file:line: 'constant'`` (file relative to ``root``)."""
    descs = descriptors()
    names = set(descs)
    suffixes = sorted({s for d in descs.values() for s in d.model_suffixes})
    suffix_re = re.compile("(" + "|".join(re.escape(s) for s in suffixes) + r")(?![A-Za-z0-9_])", re.I)
    out = []
    for path in sorted(root.rglob("*.py")):
        if any(path.relative_to(root).parts[:len(a)] == a for a in ALLOWED):
            continue
        out.extend(_leaks(path, root, names, suffix_re))
    return out


def test_host_mentions_no_backend_name_or_model_suffix():
    leaks = scan()
    assert not leaks, "host/ names a runtime; ask its descriptor instead:\n" + "\n".join(leaks)


def test_scan_finds_a_planted_name(tmp_path):
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "x.py").write_text('"""Runs .onnx files."""\nA = {"type": ["null"]}\n'
                                            'def f(b):\n    return b == "tensorrt" or b.endswith(".xmodel")\n'
                                            'E = "not a .onnx file"\n')
    assert scan(tmp_path) == ["lab/x.py:4: 'tensorrt'", "lab/x.py:4: '.xmodel'"]
