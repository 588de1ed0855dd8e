"""Hooks are declared, not probed (AST, like test_house):

* runners/ and host/power/ never reach a backend or a meter through ``getattr`` / ``hasattr``:
  every hook the core calls is a method or attribute of :class:`runners.backends.Backend` /
  :class:`host.power.meters.base.Meter` with a default meaning "not supported";
* every ``backend.<hook>`` the runner core reads, and every ``meter.<hook>`` the power sampler,
  session and windows read, exists on the base class, and each backend and meter that overrides
  a base method keeps its parameters.
"""

import ast
import inspect
from pathlib import Path

from host.power.meters import registry
from host.power.meters.base import Meter
from runners.backends import Backend, descriptors

ROOT = Path(__file__).resolve().parent.parent
#: names a backend or a meter goes by in runners/ and host/power/ (also as ``self.<name>``)
HOOK_HOLDERS = {"backend", "_backend", "meter", "_meter", "src", "source"}
#: the modules that call backend hooks / meter hooks
BACKEND_CALLERS = ("runners/core.py", "runners/levels.py", "runners/evaluation.py", "runners/cli.py")
METER_CALLERS = ("host/power/sampler.py", "host/power/session.py", "host/power/windows.py")
#: ``path:line`` of a getattr/hasattr on a hook holder that may stay, with the reason (none today)
ALLOWED_PROBES: dict = {}


def _holder(node) -> str:
    """The hook holder's name ``node`` refers to (``backend``, ``self.meter``, ``type(backend)``), or ''."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "type"
            and node.args):
        node = node.args[0]
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def probes(rel: str, source: str) -> list:
    """``"<file>:<line> getattr(<holder>, ...)"`` for each getattr/hasattr on a hook holder."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr") and node.args
                and _holder(node.args[0]) in HOOK_HOLDERS):
            bad.append(f"{rel}:{node.lineno} {node.func.id}({ast.unparse(node.args[0])}, ...)")
    return bad


def hooks_read(source: str, names) -> set:
    """Attribute names read on a variable (or ``self.<attribute>``) called one of ``names``."""
    return {node.attr for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute) and _holder(node.value) in names
            and not isinstance(node.value, ast.Call)}


def _sources(*folders):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def test_no_backend_or_meter_hook_is_reached_through_getattr():
    found = [p for rel, src in _sources("runners", "host/power") for p in probes(rel, src)]
    assert [p for p in found if p.split(" ")[0] not in ALLOWED_PROBES] == []


def test_the_probe_check_sees_probes():
    src = ("def f(backend, self):\n"
           "    a = getattr(backend, 'outputs', None)\n"
           "    b = hasattr(self.meter, 'window_telemetry')\n"
           "    c = getattr(type(backend), 'evaluate')\n"
           "    d = getattr(exc, 'hint', None)\n")
    assert probes("x.py", src) == ["x.py:2 getattr(backend, ...)", "x.py:3 hasattr(self.meter, ...)",
                                   "x.py:4 getattr(type(backend), ...)"]


def _read_by(callers, holders) -> set:
    return set().union(*(hooks_read((ROOT / rel).read_text(encoding="utf-8"), holders) for rel in callers))


def _check_declared(base: type, read: set, classes) -> list:
    """Hooks in ``read`` that ``base`` lacks, and overrides in ``classes`` whose parameters differ."""
    bad = [f"{base.__name__}.{hook} is read but not declared"
           for hook in sorted(read) if not hasattr(base, hook)]
    for cls in classes:
        for hook in sorted(read):
            ours, theirs = inspect.getattr_static(base, hook, None), inspect.getattr_static(cls, hook, None)
            if inspect.isfunction(ours) and inspect.isfunction(theirs) and theirs is not ours:
                want, got = inspect.signature(ours), inspect.signature(theirs)
                if list(want.parameters) != list(got.parameters):
                    bad.append(f"{cls.__name__}.{hook}{got} != {want}")
    return bad


def test_every_backend_hook_the_core_calls_is_declared_on_backend():
    classes = [d.backend for d in descriptors().values() if d.backend is not None]
    assert len(classes) >= 4  # null, ort, tensorrt, vart: importing them imports no runtime
    read = _read_by(BACKEND_CALLERS, {"backend"})
    assert {"load", "prepare", "infer", "evaluate", "outputs", "samples_per_infer_factor", "profile_path",
            "extra_results", "reset_levels", "level_latencies_ns"} <= read
    assert _check_declared(Backend, read, classes) == []


def test_every_meter_hook_the_power_session_calls_is_declared_on_meter():
    classes = sorted(set(registry().values()), key=lambda c: c.__name__)
    read = _read_by(METER_CALLERS, {"meter"})
    assert {"read", "read_blocks", "update_interval_s", "window_telemetry", "describe"} <= read
    assert _check_declared(Meter, read, classes) == []


def test_the_declared_check_sees_a_missing_hook_and_a_changed_signature():
    class Base:
        def read(self, timeout):
            raise NotImplementedError

    class Driver(Base):
        def read(self):
            return 1

    read = hooks_read("def f(meter):\n    meter.read(1)\n    meter.extra_hook()\n", {"meter"})
    assert read == {"read", "extra_hook"}
    assert _check_declared(Base, read, [Driver]) == ["Base.extra_hook is read but not declared",
                                                     "Driver.read(self) != (self, timeout)"]
