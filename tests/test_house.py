"""The house rules of host/ and runners/, checked statically (AST):

* no function over 80 lines, unless the line right above it (above its decorators) is a
  comment ``# long: <reason>``;
* layer arrows point down: cli > analysis > campaign > {lab, power, models} > errors, the
  three middle rooms never import each other (thermal sits between campaign and lab, power),
  and runners never imports host;
* every sub-package's ``__init__.py`` opens with a one-line summary docstring;
* no circle in the import graph of host/ or runners/ (imports inside functions count);
* the file writers (``write_atomic`` and friends) live in runners.fileio and are taken from there.
"""

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 80

#: host sub-package (or module) -> the host sub-packages it may import. ``host`` itself
#: (``__version__``, ``REPO_ROOT``) and ``runners`` may be imported from anywhere in host/.
ALLOWED = {
    "cli": {"analysis", "campaign", "thermal", "lab", "power", "models", "errors"},
    "analysis": {"campaign", "thermal", "lab", "power", "models", "errors"},
    "campaign": {"thermal", "lab", "power", "models", "errors"},
    "thermal": {"lab", "power", "errors"},  # reads a board (lab), aligns as power does
    "lab": {"errors"},
    "power": {"errors"},
    "models": {"errors"},
    "errors": set(),
    "__main__": {"cli"},
    "__init__": set(),
}


def _sources(*folders):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


# -- function length ---------------------------------------------------------------------------


def long_functions(rel: str, source: str) -> list:
    """``"<file>:<line> <name> (<n> lines)"`` for each function over :data:`MAX_LINES` lines
    without a ``# long: <reason>`` comment on the line right above it."""
    lines = source.splitlines()
    bad = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        n = node.end_lineno - node.lineno + 1
        if n <= MAX_LINES:
            continue
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        above = lines[first - 2].strip() if first >= 2 else ""
        reason = above.partition("long:")[2].strip() if above.startswith("#") else ""
        if not reason:
            bad.append(f"{rel}:{node.lineno} {node.name} ({n} lines)")
    return bad


def test_no_function_is_over_80_lines_without_a_reason():
    bad = [b for rel, src in _sources("host", "runners") for b in long_functions(rel, src)]
    assert not bad, "functions over 80 lines (split them, or say why in a '# long:' comment):\n" + \
        "\n".join(bad)


def test_the_length_check_sees_long_functions_and_reasons():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    plain = f"def f():\n{body}"
    excused = f"# long: a table of constants\n@staticmethod\ndef g():\n{body}"
    empty_reason = f"# long:\ndef h():\n{body}"
    nested = f"class C:\n    def m(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n"
    assert long_functions("x.py", plain) == [f"x.py:1 f ({MAX_LINES + 1} lines)"]
    assert long_functions("x.py", excused) == []
    assert long_functions("x.py", empty_reason) == [f"x.py:2 h ({MAX_LINES + 1} lines)"]
    assert [b.split()[1] for b in long_functions("x.py", nested)] == ["m"]
    assert long_functions("x.py", f"def k():\n{body[: -len(body) // MAX_LINES]}") == []


# -- layers ------------------------------------------------------------------------------------


def _room(rel: str) -> str:
    """host/lab/board.py -> "lab"; host/errors.py -> "errors"; host/__init__.py -> "__init__"."""
    parts = rel.split("/")
    return parts[1] if len(parts) > 2 else parts[1][:-3]


def _imported(tree) -> list:
    """(line, dotted module) of every absolute import, at any depth (functions included)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
            if node.module == "host":  # from host import lab
                out += [(node.lineno, f"host.{a.name}") for a in node.names]
    return out


def layer_violations(rel: str, source: str) -> list:
    """Imports of ``rel`` (a file under host/ or runners/) that point up or sideways."""
    bad = []
    for line, module in _imported(ast.parse(source)):
        top, _, rest = module.partition(".")
        if rel.startswith("runners/"):
            if top == "host":
                bad.append(f"{rel}:{line} imports {module} (runners never imports host)")
            continue
        if top != "host" or not rest:
            continue
        room, target = _room(rel), rest.split(".")[0]
        if target in ("__version__", "REPO_ROOT") and room != "__init__":
            continue  # the root package's constants
        if target != room and target not in ALLOWED.get(room, set()):
            bad.append(f"{rel}:{line} imports {module} ({room} -> {target} is not an allowed edge)")
    return bad


def test_layer_arrows_point_down():
    rooms = {_room(rel) for rel, _ in _sources("host")}
    assert rooms <= set(ALLOWED), f"host rooms without a place in the layers: {rooms - set(ALLOWED)}"
    bad = [b for rel, src in _sources("host", "runners") for b in layer_violations(rel, src)]
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_the_layer_check_sees_wrong_arrows():
    assert layer_violations("host/lab/x.py", "from host.campaign.run import run_campaign\n")
    assert layer_violations("host/power/x.py", "def f():\n    from host.lab.board import Board\n")
    assert layer_violations("host/models/x.py", "from host import power\n")
    assert layer_violations("host/errors.py", "import host.lab\n")
    assert layer_violations("host/__init__.py", "from host import cli\n")
    assert layer_violations("runners/x.py", "import host.errors\n")
    assert not layer_violations("host/campaign/x.py", "from host.lab.board import Board\nimport runners\n")
    assert not layer_violations("host/lab/x.py", "from host import REPO_ROOT\nfrom host.lab import shell\n")


# -- package docstrings ------------------------------------------------------------------------


def test_every_sub_package_opens_with_a_one_line_summary():
    bad = []
    inits = sorted(p for folder in ("host", "runners") for p in (ROOT / folder).rglob("__init__.py"))
    assert len(inits) >= 9
    for path in inits:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
        summary = (doc or "").split("\n\n")[0]
        if not summary.strip() or "\n" in summary.strip():
            bad.append(f"{path.relative_to(ROOT)}: {summary[:60]!r}")
    assert not bad, "sub-packages without a one-line summary docstring:\n" + "\n".join(bad)


# -- import graph ------------------------------------------------------------------------------


def _module(rel: str) -> str:
    """runners/core.py -> "runners.core"; runners/backends/__init__.py -> "runners.backends"."""
    parts = rel[:-3].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node, module: str, is_package: bool, names: set) -> list:
    """The modules among ``names`` that one import statement of ``module`` imports."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:  # from . import x / from ..y import z
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names]


def import_graph(sources) -> nx.DiGraph:
    """Module -> the modules it imports (at any depth, functions included) among ``sources``:
    ``(path relative to the root, source text)`` pairs."""
    sources = list(sources)
    names = {_module(rel) for rel, _ in sources}
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    for rel, source in sources:
        module, is_package = _module(rel), rel.endswith("/__init__.py")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph.add_edges_from((module, t) for t in _targets(node, module, is_package, names)
                                     if t in names and t != module)
    return graph


def test_no_circle_in_the_import_graph():
    for folder in ("runners", "host"):
        cycles = list(nx.simple_cycles(import_graph(_sources(folder))))
        assert not cycles, f"import circles in {folder}/ (move the shared piece down):\n" + \
            "\n".join(" -> ".join(c + c[:1]) for c in cycles)


def test_the_circle_check_sees_circles():
    two = {"runners/a.py": "from runners import b\n",
           "runners/b.py": "def f():\n    from runners.a import x\n"}
    assert [sorted(c) for c in nx.simple_cycles(import_graph(two.items()))] == [["runners.a", "runners.b"]]
    three = {"runners/p/__init__.py": "from . import q\n", "runners/p/q.py": "from .r import f\n",
             "runners/p/r.py": "import runners.p\n"}
    assert len(list(nx.simple_cycles(import_graph(three.items())))) == 1
    down = {"runners/a.py": "import runners.b\nimport os\n", "runners/b.py": "from runners.c import y\n",
            "runners/c.py": "import numpy\n"}
    assert list(nx.simple_cycles(import_graph(down.items()))) == []


def writer_imports(rel: str, source: str, writers: set) -> list:
    """Places in ``rel`` that take one of ``writers`` from anywhere but runners.fileio (an import,
    ``core.<writer>``) or define their own."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module != "runners.fileio":
            bad += [f"{rel}:{node.lineno} imports {a.name} from {node.module}" for a in node.names
                    if a.name in writers]
        elif isinstance(node, ast.Attribute) and node.attr in writers and ast.unparse(node.value) in (
                "core", "runners.core"):
            bad.append(f"{rel}:{node.lineno} uses {ast.unparse(node)}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in writers \
                and rel != "runners/fileio.py":
            bad.append(f"{rel}:{node.lineno} defines its own {node.name}")
    return bad


def test_the_file_writers_live_in_runners_fileio_only():
    tree = ast.parse((ROOT / "runners" / "fileio.py").read_text(encoding="utf-8"))
    writers = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
    assert {"write_atomic", "write_json_atomic", "new_temp", "fsync_dir"} <= writers
    bad = [b for rel, src in _sources("host", "runners") for b in writer_imports(rel, src, writers)]
    assert not bad, "file writers taken from elsewhere than runners.fileio:\n" + "\n".join(bad)


def test_the_writer_check_sees_other_sources():
    writers = {"write_atomic"}
    assert writer_imports("host/x.py", "from runners.core import Policy, write_atomic\n", writers)
    assert writer_imports("host/x.py", "from runners import core\ncore.write_atomic(p, f)\n", writers)
    assert writer_imports("runners/core.py", "def write_atomic(path, write):\n    pass\n", writers)
    assert not writer_imports("host/x.py", "from runners.fileio import write_atomic\n", writers)
    assert not writer_imports("host/x.py", "from runners.core import Policy\n", writers)
