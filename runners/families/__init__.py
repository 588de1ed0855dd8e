"""Device families: one module ``runners/families/<name>.py`` each, declaring ``FAMILY``.

Each module declares once ``FAMILY = FamilyDescriptor(...)``. A family is a kind of board the lab
benchmarks on (``arm_cpu``, ``jetson``, ``zcu104``, ``x86_a100``). Its descriptor holds everything
that differs per family: its one name (the inventory's ``edgegauge_family`` value and the ``host
image`` argument), how the board is detected (machine architectures, marker files, marker commands),
its power-mode tool and the power-state sections the probe reads, its image folder under ``images/``
with the variants built from it, its provisioning and power-mode roles
(``playbooks/roles/provision_<name>``, ``power_<name>``) and its on-board power sources (meter
names). Everything else derives from the descriptors: ``runners.power_state`` (the family list and
the one detection rule), the host's images and ``host image`` choices, the inventory's accepted
families and the variables the playbooks read (``python -m runners.families --json``).

Discovery (:func:`descriptors`) lists the modules of this package (``pkgutil``) as
``runners/backends`` does. Standard library only, Python 3.8+: the power-state probe imports
this package on the boards.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import json
import pkgutil
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

#: The value of an undetected family (``runners.power_state``'s ``family``).
UNKNOWN = "unknown"


class UnknownFamily(ValueError):
    """A name that is no family; :attr:`suggestion` is the family it most likely means."""

    def __init__(self, name: str, suggestion: Optional[str]):
        self.name = name
        self.suggestion = suggestion
        known = ", ".join(names())
        hint = f": did you mean {suggestion!r}?" if suggestion else ""
        super().__init__(f"unknown device family {name!r}{hint} (families: {known})")


@dataclass(frozen=True)
class ImageVariant:
    """One buildable thing of a family's image folder: a Dockerfile with fixed build args, or
    the native bundle (``bundle``). ``runtime`` is the runtime its smoke test checks (empty: the
    default runtime of ``runners.backends``)."""

    name: str
    repository: str = ""  # image repository, e.g. edgegauge/jetson ("" for the bundle)
    dockerfile: str = ""  # relative to the repository root ("" for the bundle)
    build_args: Dict[str, str] = field(default_factory=dict)
    tag_suffix: str = ""
    default_base: str = ""  # the default of base_arg in the Dockerfile
    base_arg: str = "BASE_IMAGE"  # the Dockerfile ARG that --base sets
    platform: Optional[str] = None  # the platform the target runs (documentation; not forced)
    runtime: str = ""
    bundle: bool = False


@dataclass(frozen=True)
class FamilyDescriptor:
    """What one device family is, declared once in ``runners/families/<name>.py`` as ``FAMILY``.

    Detection (:func:`detection_table`): a family matches a board when every criterion it
    declares holds: ``machines`` (``uname -m`` values, lower case) contains the board's, one of
    ``marker_files`` (paths under the root) exists, one of ``marker_commands`` is on PATH; a
    family that declares none never matches. Families are tried by ``detect_order`` (then name);
    the first match wins. ``power_tool`` names the tool that sets its power mode;
    ``power_sections`` the sections of ``runners.power_state`` read for it (``nvpmodel``,
    ``jetson_clocks``, ``gpu``, ``dpu``, ``rpi``). ``image_folder`` is its folder under
    ``images/`` with ``variants`` (``default_variant`` first when empty). ``power_sources``:
    the on-board meters it offers (names as ``host meter`` lists them).
    """

    name: str
    summary: str
    machines: Tuple[str, ...] = ()
    marker_files: Tuple[str, ...] = ()
    marker_commands: Tuple[str, ...] = ()
    detect_order: int = 50
    power_tool: str = ""
    power_sections: Tuple[str, ...] = ()
    image_folder: str = ""
    variants: Tuple[ImageVariant, ...] = ()
    default_variant: str = ""
    power_sources: Tuple[str, ...] = ()

    @property
    def provision_role(self) -> str:
        """``playbooks/roles/<this>``: the role ``provision.yml`` runs for the family."""
        return f"provision_{self.name}"

    @property
    def power_role(self) -> str:
        """``playbooks/roles/<this>``: the role ``power_mode.yml`` runs for the family."""
        return f"power_{self.name}"

    def variant(self, name: Optional[str] = None) -> Optional[ImageVariant]:
        """The variant ``name`` (default: ``default_variant``, else the first), or None."""
        want = name or self.default_variant or (self.variants[0].name if self.variants else "")
        return next((v for v in self.variants if v.name == want), None)

    def detection(self) -> dict:
        """This family's detection rule as plain data (see the class docstring), with the
        power-state sections the probe reads for it."""
        return {"name": self.name, "machines": list(self.machines), "files": list(self.marker_files),
                "commands": list(self.marker_commands), "sections": list(self.power_sections)}

    def to_json(self) -> dict:
        """A JSON-ready view (``python -m runners.families --json``)."""
        return {
            "name": self.name, "summary": self.summary, "detection": self.detection(),
            "detect_order": self.detect_order, "power_tool": self.power_tool,
            "power_sections": list(self.power_sections), "image_folder": self.image_folder,
            "default_variant": self.default_variant,
            "variants": [dict(v.__dict__, build_args=dict(v.build_args)) for v in self.variants],
            "provision_role": self.provision_role, "power_role": self.power_role,
            "power_sources": list(self.power_sources),
        }


@functools.lru_cache(maxsize=None)
def _discover() -> Tuple[FamilyDescriptor, ...]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        desc = getattr(module, "FAMILY", None)
        if not isinstance(desc, FamilyDescriptor):
            continue
        if desc.name != info.name:
            raise ImportError(f"{module.__name__}: FAMILY.name is {desc.name!r}, expected {info.name!r}")
        found.append(desc)
    return tuple(sorted(found, key=lambda d: (d.detect_order, d.name)))


def descriptors() -> Dict[str, FamilyDescriptor]:
    """Every family, by name, in detection order."""
    return {d.name: d for d in _discover()}


def names() -> Tuple[str, ...]:
    """The family names, in detection order."""
    return tuple(d.name for d in _discover())


def suggest(name: str) -> Optional[str]:
    """The family an unknown ``name`` most likely means: the same name with ``_`` for ``-``,
    a family whose image folder is ``name`` (``vitis-ai`` -> ``zcu104``), else a close match."""
    text = str(name).strip().lower()
    descs = descriptors()
    for desc in descs.values():
        if text in (desc.name, desc.name.replace("_", "-"), desc.image_folder):
            return desc.name
    close = difflib.get_close_matches(text.replace("-", "_"), list(descs), n=1, cutoff=0.6)
    return close[0] if close else None


def get(name: str) -> FamilyDescriptor:
    """The family called ``name`` (exactly; one spelling).

    Raises:
        UnknownFamily: no such family (``suggestion`` names the right one when it can be told).
    """
    desc = descriptors().get(name)
    if desc is None:
        raise UnknownFamily(name, suggest(name))
    return desc


def detection_table() -> List[dict]:
    """The one detection rule as data, in detection order (``runners.power_state`` evaluates
    it on the board; the playbooks pass it to that probe)."""
    return [d.detection() for d in _discover()]


def ansible_vars() -> dict:
    """What the playbooks read (``edgegauge_families``): per family, its roles and power tool,
    plus the detection table (``edgegauge_family_detection``)."""
    return {
        "edgegauge_families": {d.name: {"provision_role": d.provision_role, "power_role": d.power_role,
                                        "power_tool": d.power_tool} for d in _discover()},
        "edgegauge_family_detection": detection_table(),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m runners.families [--json | --detection | --ansible-vars]``: the families, one
    per line; or as JSON: every descriptor, the detection table, the playbooks' variables."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--detection" in args:
        sys.stdout.write(json.dumps(detection_table()) + "\n")
    elif "--ansible-vars" in args:
        sys.stdout.write(json.dumps(ansible_vars()) + "\n")
    elif "--json" in args:
        sys.stdout.write(json.dumps([d.to_json() for d in _discover()], indent=2) + "\n")
    else:
        for d in _discover():
            sys.stdout.write(f"{d.name}\t{d.summary}\n")
    return 0
