"""The lab's devices as ``host`` sees them: :class:`Device` (one board, or the built-in
``local`` device), :class:`Group` and :class:`Inventory` (a parsed inventory, narrowed to a
group), as :mod:`host.lab.inventory` reads them from an Ansible INI file.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from host.errors import UnknownDeviceError
from runners.backends import default_name

DEFAULTS = {"runtime": default_name(), "mode": "native", "engine": "docker", "container_args": "",
            "workdir": "edgegauge", "python": "python3"}


@dataclass(frozen=True)
class Device:
    """One device of the lab (or the built-in ``local`` device, see :func:`local_device`)."""

    name: str
    family: str | None  # a family of runners/families (edgegauge_family, or a group named so); None: unknown
    groups: tuple
    host: str
    port: int
    user: str | None
    connection: str
    runtime: str
    mode: str
    image: str | None
    image_archive: str | None
    engine: str
    container_args: str
    workdir: str
    python: str
    key_file: str | None
    known_hosts: str | None
    vars: dict = field(default_factory=dict, hash=False)
    source: str = ""
    jump: str | None = None  # ProxyJump/-J: ``[user@]host:port`` (port always written)
    connect_timeout: float | None = None  # ssh ConnectTimeout, seconds
    key_source: str | None = None  # ``file:line`` that set key_file

    @property
    def address(self) -> str:
        """``user@host:port`` (no ``user@`` without a user); ``local`` for a local connection."""
        if self.connection == "local":
            return "local"
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    def to_json(self) -> dict:
        """The fields above as a plain JSON-ready dict (``groups`` a list, ``vars`` included)."""
        doc = asdict(self)
        doc["groups"] = list(self.groups)
        doc["vars"] = dict(self.vars)
        return doc


@dataclass
class Group:
    """One ``[group]`` of the file: hosts it lists directly, child groups, its own vars."""

    name: str
    hosts: list = field(default_factory=list)  # hosts listed directly, in file order
    children: list = field(default_factory=list)
    vars: dict = field(default_factory=dict)
    line: int = 0  # first line naming the group in a section header (0: implicit)


@dataclass
class Inventory:
    """A parsed inventory, possibly narrowed to one group (``scope``)."""

    path: Path | None
    devices: dict
    groups: dict
    scope: str | None = None
    resolution: str = ""

    def members(self, group: str) -> list[str]:
        """Names of every host of ``group`` (children included), in file order.

        Raises:
            UnknownDeviceError: no such group.
        """
        if group == "all":
            return list(self.devices)
        if group not in self.groups:
            raise self._unknown(f"unknown group {group!r}")
        return [name for name, dev in self.devices.items() if group in dev.groups]

    def in_scope(self) -> list[Device]:
        """All devices, or those of the group ``scope``, in file order."""
        if self.scope is None or self.scope == "all":
            return list(self.devices.values())
        return [dev for dev in self.devices.values() if self.scope in dev.groups]

    def select(self, devices=(), groups=(), all_devices: bool = False) -> list[Device]:
        """The devices named by ``--device``/``--group``/``--all``, in file order, once each.

        A ``devices`` entry is a host in scope, else a group (its hosts in scope); the name
        ``local`` with no host of that name is the built-in :func:`local_device` (last).
        Nothing given means every device in scope.

        Raises:
            UnknownDeviceError: a name is neither a host nor a group in scope, or a group
                has no device in scope.
        """
        scoped = self.in_scope()
        if not devices and not groups and not all_devices:
            return scoped
        in_scope = {dev.name for dev in scoped}
        chosen: set[str] = set(in_scope) if all_devices else set()
        want_local = False
        for name in devices:
            if name in in_scope:
                chosen.add(name)
            elif name == "local" and name not in self.devices:
                want_local = True
            elif name in self.groups or name == "all":
                chosen.update(self._group_in_scope(name))
            elif name in self.devices:
                raise self._unknown(f"device {name!r} is not in group {self.scope!r}")
            else:
                raise self._unknown(f"unknown device {name!r}")
        for name in groups:
            chosen.update(self._group_in_scope(name))
        out = [dev for dev in scoped if dev.name in chosen]
        if want_local:
            out.append(local_device())
        return out

    def _group_in_scope(self, group: str) -> list[str]:
        if group not in self.groups and group != "all":
            raise self._unknown(f"unknown group {group!r}")
        in_scope = {dev.name for dev in self.in_scope()}
        names = [name for name in self.members(group) if name in in_scope]
        if not names:
            where = f" in group {self.scope!r}" if self.scope else ""
            raise self._unknown(f"group {group!r} has no devices{where}")
        return names

    def _unknown(self, what: str) -> UnknownDeviceError:
        known = ", ".join(dev.name for dev in self.in_scope()) or "none"
        groups = ", ".join(g for g in self.groups if g not in ("all", "ungrouped")) or "none"
        source = self.resolution or (str(self.path) if self.path else "no inventory")
        return UnknownDeviceError(
            f"{what} ({source}); devices: {known}; groups: {groups}",
            hint="`--device local` runs on this machine; add boards to inventory.ini or pick "
                 "another one with --inventory FILE|NAME")


def local_device(workdir: str | None = None) -> Device:
    """The built-in ``local`` device: this machine, this interpreter, ONNX Runtime, native. Its
    work folder (models, leases, the board lock) is ``$EDGEGAUGE_LOCAL_WORKDIR`` when set, else
    ``~/.cache/edgegauge/work``."""
    if workdir is None:
        default = Path.home() / ".cache" / "edgegauge" / "work"
        workdir = os.environ.get("EDGEGAUGE_LOCAL_WORKDIR") or str(default)
    return Device(
        name="local", family="local", groups=(), host="localhost", port=0, user=None,
        connection="local", runtime=DEFAULTS["runtime"], mode="native", image=None, image_archive=None,
        engine=DEFAULTS["engine"], container_args="", workdir=workdir, python=sys.executable,
        key_file=None, known_hosts=None, vars={}, source="built-in")
