"""requirements/lock.txt agrees with pyproject.toml, names no host, and is what README's set-up installs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 (the lock's Python) reads pyproject.toml")

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
LOCKED_EXTRAS = ("test", "export", "dev", "tvm")


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"not an exact pin in the lock: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(LOCKED_EXTRAS) <= set(extras)
    declared = [*project["dependencies"], *(r for extra in LOCKED_EXTRAS for r in extras[extra])]
    return [Requirement(r) for r in declared]


def test_every_declared_dependency_is_pinned_within_its_range():
    pins = _pins(LOCK.read_text())
    missing, outside = [], []
    for req in _declared():
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            missing.append(req.name)
        elif not req.specifier.contains(version, prereleases=True):
            outside.append(f"{req.name}=={version} (pyproject: {req.specifier})")
    assert not missing and not outside, (
        f"requirements/lock.txt is stale (run `make lock`): missing {missing}, outside {outside}")


def test_lock_names_no_index_or_host():
    text = LOCK.read_text()
    assert not re.search(r"://|--(index-url|extra-index-url|find-links|trusted-host)", text)


def test_readme_set_up_commands_install_from_the_lock():
    readme = (ROOT / "README.md").read_text().splitlines()
    for heading in ("# 1. Main job", "# 2. Whole test suite"):
        i = next(n for n, line in enumerate(readme) if line.startswith(heading))
        assert "pip install -c requirements/lock.txt -e " in readme[i + 1], readme[i + 1]
