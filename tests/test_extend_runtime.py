"""A new runtime is one folder: a throwaway runtime ``toy`` with its own model format (``.toy``) is
added as ``runners/backends/toy/`` to a copy of the repository, nothing else edited (no change under
``host/``), and the copy's ``host`` lists it, benchmarks a ``.toy`` model with it on the local device,
treats fidelity and layer profiles as its descriptor says, and ships its model files to a board.
The files it adds are exactly the ones README's "Adding a runtime" lists."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "20", "--min-s", "0.02",
        "--target-ci", "0.5"]

TOY_INIT = textwrap.dedent('''
    """toy: a throwaway runtime for tests (its model format: a ``.toy`` JSON file)."""

    from runners.backends.base import BackendDescriptor
    from runners.backends.toy.backend import PROFILER, ToyBackend

    DESCRIPTOR = BackendDescriptor(
        name="toy",
        summary="scales its input by the model's factor (a test's throwaway runtime)",
        backend=ToyBackend,
        model_suffixes=(".toy",),
        returns_outputs=False,
        layer_profiler=PROFILER,
    )
''').lstrip()

TOY_BACKEND = textwrap.dedent('''
    """The toy backend: a ``.toy`` model is JSON ``{"shape": [...], "scale": x}``; infer() scales."""

    import json
    import time

    from runners.backends.base import Backend
    from runners.errors import ModelLoadError
    from runners.inputs import TensorSpec
    from runners.profiles import LayerProfiler, shared


    class ToyBackend(Backend):
        name = "toy"

        def load(self, model_path):
            try:
                with open(model_path) as fh:
                    self.model = json.load(fh)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"{model_path}: not a toy model ({exc})") from None
            self.calls, self.spent_ns = 0, 0

        def inputs(self):
            return [TensorSpec("x", "float32", tuple(self.model["shape"]))]

        def prepare(self, feeds):
            self.x = feeds["x"]
            self.infer()

        def infer(self):
            t0 = time.perf_counter_ns()
            self.y = self.x * self.model["scale"]
            self.spent_ns += time.perf_counter_ns() - t0
            self.calls += 1

        def runtime_info(self):
            return {"name": "toy", "version": "1", "provider": None, "threads": 1}

        def close(self):
            prefix = self.options.get("profile_prefix")
            if prefix:
                self.profile_path = f"{prefix}.toytrace.json"
                with open(self.profile_path, "w") as fh:
                    json.dump({"scale": [self.calls, self.spent_ns / 1000.0]}, fh)


    def rows(doc, read):
        trace = json.loads(read(doc["profile_files"][0]).decode())
        return shared([{"node": node, "op": "Mul", "provider": "toy", "calls": calls,
                        "median_us": total_us / calls, "total_us": total_us}
                       for node, (calls, total_us) in trace.items()])


    PROFILER = LayerProfiler("toy_trace", "toy's own counter, one untimed process", rows)
''').lstrip()

FILES = {"runners/backends/toy/__init__.py": TOY_INIT, "runners/backends/toy/backend.py": TOY_BACKEND}


def readme_runtime_files() -> tuple:
    """README's "Adding a runtime" file list: ``(code files, image files)``, ``<name>`` kept."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Adding a runtime\n", 1)[1].split("\n## ", 1)[0]
    paths = re.findall(r"^- `([^`]+)`", section, flags=re.M)
    assert paths, "no `- `path`` list in README's Adding a runtime"
    return [p for p in paths if "<family>" not in p], [p for p in paths if "<family>" in p]


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """This repository's files (tracked, and new ones git does not ignore) copied, then the toy
    runtime's folder added."""
    top = tmp_path_factory.mktemp("repo")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        if (ROOT / rel).is_file():
            (top / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, top / rel)
    before = {p for p in top.rglob("*") if p.is_file()}
    for rel, text in FILES.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_text(text)
    added = {p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file()} - \
        {p.relative_to(top).as_posix() for p in before}
    assert not any(a.startswith("host/") for a in added)
    model = top / "m" / "net.toy"
    model.parent.mkdir()
    model.write_text(json.dumps({"shape": [1, 16], "scale": 3.0}))
    return top, added, model


def host(top: Path, *args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(top), HOME=str(top), COLUMNS="200", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "host", *map(str, args)], capture_output=True, text=True,
                          cwd=top, env=env, timeout=timeout)


def test_readme_lists_exactly_the_files_a_new_runtime_adds(copy):
    _, added, _ = copy
    code, image = readme_runtime_files()
    assert {p.replace("<name>", "toy") for p in code} == added
    for pattern in image:  # the image's files exist for the families that have an image
        assert list(ROOT.glob(pattern.replace("<family>", "*"))), pattern


def test_a_new_runtime_folder_is_listed_and_benchmarked_on_the_local_device(copy):
    top, _, model = copy
    listed = host(top, "runtimes", "--json")
    assert listed.returncode == 0, listed.stderr
    toy = {d["name"]: d for d in json.loads(listed.stdout)}["toy"]
    assert toy["model_suffixes"] == [".toy"] and toy["layer_profiler"] == "toy_trace"
    res = top / "results"
    p = host(top, "bench", model, "--device", "local", "--backend", "toy", *FAST, "--results", res,
             "--campaign", "c", "--profile", "--json")
    assert p.returncode in (0, 3), p.stdout + p.stderr  # 3: INVALID timing on a busy machine
    cell = json.loads(p.stdout)[0]
    stored = json.loads((res / "c" / "local" / "net__toy-b1-tall.json").read_text())
    assert stored["status"] == cell["status"] and cell["status"] in ("ok", "invalid")
    assert cell["runtime"]["name"] == "toy" and cell["error"] is None
    assert "fidelity" not in cell  # returns_outputs=False: no outputs asked for, none missed
    assert cell["profile"]["method"] == "toy's own counter, one untimed process"  # its layer_profiler
    assert [r["node"] for r in cell["profile"]["top"]] == ["scale"]


def test_a_new_runtime_s_model_files_are_shipped_to_a_board(copy, boards, tmp_path):
    top, _, model = copy
    inv = boards.write_inventory(tmp_path / "lab.ini", devices=["b1"])
    inv.write_text(inv.read_text().replace("[boards]\nb1 ", "[boards]\nb1 runtime=toy "))
    p = host(top, "deploy", model, "-i", inv, "--device", "b1", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    assert (boards.workdir("b1") / "models" / f"{sha}.toy").read_bytes() == model.read_bytes()
    again = host(top, "deploy", model, "-i", inv, "--device", "b1", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    steps = dict(map(tuple, json.loads(again.stdout)[0]["steps"]))
    assert steps["models"] == "0 sent, 1 already there"  # the board's models are known whatever their suffix
