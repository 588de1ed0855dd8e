"""A meter's name is written once: in its driver's ``INFO`` (host/power/meters/<module>.py).

The registry is discovered from the package's modules; ``host meter --help``, ``host meter list``,
the on-board check of an inventory meter and docs/power.md's meter table are read from it, and no
other file under host/ spells a meter name (AST: no string constant equal to one, none listing several).
"""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from host.errors import MeterError
from host.power.meters import discover, is_onboard, markdown_table, meter_class, meter_names, registry
from host.power.meters.base import Meter, MeterInfo
from host.power.session import MeterSpec

ROOT = Path(__file__).resolve().parent.parent
#: the driver modules this version ships (a new meter adds a module, not a line here)
SHIPPED = {"wt300e", "um", "ina", "jetson", "rpi5", "nvml"}


def _host(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "host", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"})


def test_the_registry_is_every_name_the_drivers_declare():
    reg = registry()
    assert {cls.__module__.rpartition(".")[2] for cls in reg.values()} >= SHIPPED
    declared = sorted(n for cls in set(reg.values()) for n in cls.INFO.names)
    assert meter_names() == declared == sorted(set(declared))
    for name, cls in reg.items():
        assert issubclass(cls, Meter) and isinstance(cls.INFO, MeterInfo) and meter_class(name.upper()) is cls


def test_on_board_comes_from_the_driver():
    onboard = {n for n in meter_names() if is_onboard(n)}
    assert onboard >= {"jetson-ina3221", "rpi5-pmic", "nvml"} and not onboard & {"um25c", "wt310e", "ina226"}
    assert MeterSpec("NVML").onboard and not MeterSpec("um25c").onboard and not MeterSpec("nope").onboard


def _strings(tree) -> list:
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _spells(text: str, others: set) -> bool:
    """``text`` is a meter name of ``others``, or lists three or more of them."""
    words = set(re.findall(r"[a-z0-9-]+", text.lower())) & others
    return text.lower() in others or len(words) >= 3


def test_no_module_under_host_spells_a_meter_name_but_its_driver():
    names = set(meter_names())
    bad = []
    for path in sorted((ROOT / "host").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        own = {n for cls in set(registry().values()) if cls.__module__.replace(".", "/") + ".py" == rel
               for n in cls.INFO.names}
        for line, text in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            if _spells(text, names - own):
                bad.append(f"{rel}:{line} {text[:60]!r}")
    assert bad == []


def test_the_name_check_sees_a_hand_copied_list():
    tree = ast.parse('HELP = "meter: wt310e um24c ina219"\nX = "nvml"\n')
    found = [t for _, t in _strings(tree) if _spells(t, set(meter_names()))]
    assert found == ["meter: wt310e um24c ina219", "nvml"]


def test_cli_help_and_list_show_every_meter():
    helped = _host("meter", "read", "--help")
    assert helped.returncode == 0, helped.stderr
    shown = re.sub(r"[│\s]+", " ", helped.stdout)
    assert "meter: " + " ".join(meter_names()) in shown
    listed = _host("meter", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["meters"] == meter_names()


def _block(text: str) -> str:
    match = re.search(r"<!-- meters:begin -->\n(.*?)<!-- meters:end -->", text, re.S)
    assert match, "docs/power.md has no <!-- meters:begin --> ... <!-- meters:end --> block"
    return match.group(1)


def test_docs_power_meter_table_is_the_generated_one():
    printed = _host("meter", "list", "--markdown")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == markdown_table()
    assert _block((ROOT / "docs" / "power.md").read_text(encoding="utf-8")) == printed.stdout, \
        "docs/power.md's meter table is stale: paste `host meter list --markdown` between its markers"
    assert all(f"`{name}`" in printed.stdout for name in meter_names())


@pytest.mark.parametrize("module", sorted(SHIPPED))
def test_each_shipped_driver_module_declares_one_driver(module):
    classes = {cls for cls in registry().values() if cls.__module__ == f"host.power.meters.{module}"}
    assert len(classes) == 1


DRIVER = """from host.power.meters.base import Meter, MeterInfo


class {cls}(Meter):
    INFO = MeterInfo(names=({names!r},), link="-", scope="-", interval="-")
"""


def _package(root: Path, name: str, modules: dict) -> Path:
    """A package ``name`` under ``root`` with the given ``{module: source}``."""
    folder = root / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for module, source in modules.items():
        (folder / f"{module}.py").write_text(source)
    return folder


@pytest.mark.parametrize("modules, message", [
    ({"a": DRIVER.format(cls="A", names="twin"), "b": DRIVER.format(cls="B", names="twin")},
     "meter name 'twin' of {pkg}.b.B: also declared by {pkg}.a.A"),
    ({"a": DRIVER.format(cls="A", names="Loud")}, "meter name 'Loud' of {pkg}.a.A: names are lower case"),
    ({"a": "import not_a_module_anywhere\n"},
     "meter driver {pkg}.a does not import: ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
])
def test_discovery_refuses_a_taken_name_an_upper_case_one_and_a_broken_module(tmp_path, monkeypatch, modules,
                                                                               message):
    pkg = f"meters_{len(modules)}_{abs(hash(message)) % 10**6}"
    folder = _package(tmp_path, pkg, modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MeterError) as caught:
        discover([str(folder)], pkg)
    assert str(caught.value) == message.format(pkg=pkg) and caught.value.hint


def test_discovery_finds_the_drivers_of_a_package_and_skips_private_modules(tmp_path, monkeypatch):
    folder = _package(tmp_path, "meters_ok", {"a": DRIVER.format(cls="A", names="one"),
                                              "_helper": DRIVER.format(cls="H", names="hidden"),
                                              "b": "X = 1\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    found = discover([str(folder)], "meters_ok")
    assert list(found) == ["one"] and found["one"].__name__ == "A"


def write_docs(root: Path = ROOT) -> None:
    """Put ``host meter list --markdown`` between docs/power.md's meter markers (README, "Adding a meter")."""
    path = root / "docs" / "power.md"
    text = path.read_text(encoding="utf-8")
    begin = "<!-- meters:begin -->\n"
    path.write_text(text.replace(begin + _block(text), begin + markdown_table(), 1), encoding="utf-8")


if __name__ == "__main__":  # python tests/test_meter_registry.py --write
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_meter_registry.py --write  (rewrites docs/power.md's meter table)")
    write_docs()
