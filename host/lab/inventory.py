"""Lab inventories: a strict reader of Ansible INI files.

The lab is described by one Ansible INI inventory (``inventory.ini``) that
``ansible-inventory -i FILE --list`` and the provisioning playbooks read as well. This
module reads it without importing Ansible (slow to import) and accepts a strict subset of
the format, so that a typo fails here with ``file:line:`` instead of silently becoming a
new host, a new variable or a string that Ansible would keep as is:

* sections ``[group]``, ``[group:vars]``, ``[group:children]``; group names are letters,
  digits and ``_`` (not starting with a digit); hosts before the first section are
  ``ungrouped``; ``[all:vars]`` is the only section of the implicit group ``all``;
* host lines ``name key=value ...`` (shlex, ``#`` starts a trailing comment); no host
  ranges, no ``name:port``;
* only the variables in :data:`KNOWN_VARS` and those starting with one of
  :data:`KNOWN_PREFIXES`; never a password (:data:`PASSWORD_VARS`);
* values: quoted strings are unquoted as Ansible does (``ast.literal_eval``), everything
  else stays a string, except ``ansible_port`` (an ``int`` 1..65535);
* ``ansible_ssh_common_args`` / ``ansible_ssh_extra_args``: only the ssh options ``host``'s own
  SSH honours or can safely ignore (:data:`SSH_HONOURED`, :data:`SSH_ACCEPTED`; flags ``-o``,
  ``-J``, ``-C``); any other option is refused with the line that set it, so that ``ansible``
  and ``host`` never reach a board by different routes.

Sizes are bounded, so that reading is linear in the file and a hostile file cannot take
minutes or gigabytes: at most :data:`MAX_FILE_BYTES` (1 MiB) per file, :data:`MAX_LINE_CHARS`
(8192) per line, :data:`MAX_HOSTS` (4096) hosts, :data:`MAX_HOST_GROUPS` (64) groups per host (its
parents included) and :data:`MAX_HOST_VARS` (256) variables per host (merged); a bigger file,
line or inventory is refused with ``file[:line]:`` and the limit.

Variables merge as in Ansible: ``[all:vars]`` < group vars ordered by group depth (parents
before children; same depth by ``ansible_group_priority``, then name) < host-line vars
(later lines win).
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import stat
from pathlib import Path

from host.errors import InventoryError
from host.lab.devices import DEFAULTS, Device, Group, Inventory, local_device
from host.lab.inventory_ssh import (
    SSH_ACCEPTED,
    SSH_FLAGS_REFUSED,
    SSH_HONOURED,
    SSH_REFUSED,
    SshArgs,
)
from runners import families

__all__ = ["DEFAULTS", "Device", "Group", "Inventory", "local_device", "load_inventory", "resolve_inventory",
           "SSH_ACCEPTED", "SSH_FLAGS_REFUSED", "SSH_HONOURED", "SSH_REFUSED"]

#: Our own variable names (besides ``ansible_*`` and :data:`KNOWN_PREFIXES`).
KNOWN_VARS = frozenset({
    "runtime", "mode", "image", "image_archive", "engine", "container_args", "workdir", "python",
})
#: Variable name prefixes accepted as is (``meter``, ``meter_port``, ``power_mode``, ...).
KNOWN_PREFIXES = ("ansible_", "meter", "power_", "edgegauge_", "provision_")
#: Refused outright: secrets do not belong in a file under version control.
PASSWORD_VARS = frozenset({
    "ansible_password", "ansible_ssh_pass", "ansible_ssh_password", "ansible_become_pass",
    "ansible_become_password", "ansible_sudo_pass",
})
#: Legacy Ansible aliases, refused so that a value has only one spelling.
RENAMED_VARS = {"ansible_ssh_host": "ansible_host", "ansible_ssh_port": "ansible_port",
                "ansible_ssh_user": "ansible_user"}

#: Size limits (module docstring): the file in bytes, one line in characters, hosts per file,
#: groups per host (its own and their parents), variables per host (all levels merged). A lab
#: inventory is a few KiB.
MAX_FILE_BYTES = 1 << 20
MAX_LINE_CHARS = 8192
MAX_HOSTS = 4096
MAX_HOST_GROUPS = 64
MAX_HOST_VARS = 256

MODES = ("native", "container")
CONNECTIONS = ("ssh", "local")
DEFAULT_FILE = "inventory.ini"
INVENTORY_DIR = "inventories"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HOST = re.compile(r"[A-Za-z0-9_.-]+\Z")
_SECTION = re.compile(r"\[([^\]]*)\]\s*(?:#.*)?\Z")
#: ansible_host (a name, IPv4 or IPv6 address with zone) and ansible_user: never an ssh option.
_ADDRESS = {"ansible_host": re.compile(r"[A-Za-z0-9_.:%][A-Za-z0-9_.:%-]*\Z"),
            "ansible_user": re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\Z")}
_ADDRESS_CHARS = {"ansible_host": "'.', ':', '%', '-', '_'", "ansible_user": "'.', '-', '_'"}
_CHILD = re.compile(r"(\S+)\s*(?:#.*)?\Z")
_SECRET = re.compile(r"(?:^|_)(?:pass|passwd|password)\Z")
_KEY_VARS = ("ansible_ssh_private_key_file", "ansible_private_key_file")  # the first one set wins
_PASSWORD_MSG = ("no passwords in the inventory: use ssh-agent or ansible_ssh_private_key_file to log in, "
                 "and `host provision/power-mode --ask-become-pass` (or --become-password-file) for sudo")


# --------------------------------------------------------------------------- parsing


def runtimes() -> tuple:
    """Accepted ``runtime`` values: every backend declared in ``runners/backends/`` (sorted),
    implemented or not (``host bench`` refuses devices whose backend is not implemented)."""
    from runners.backends import descriptors

    return tuple(descriptors())


def _unquote(raw: str):
    """A quoted Python string literal becomes its text (as Ansible does); else ``raw``."""
    if "'" not in raw and '"' not in raw:
        return raw  # no string literal: nothing to unquote (and no parse per value)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return raw
    return value if isinstance(value, str) else raw


class _Parser(SshArgs):
    def __init__(self, path: Path):
        self.path = path
        self.groups: dict[str, Group] = {}
        self.var_lines: dict[str, dict[str, int]] = {}  # group -> var -> line
        self.defined: set[str] = {"all", "ungrouped"}
        self.vars_headers: dict[str, int] = {}
        self.child_lines: dict[tuple, int] = {}  # (parent, child) -> line
        self.hosts: dict[str, dict] = {}  # name -> {"line", "vars": {k: (v, line)}, "listed": {g: line}}
        self.host_groups: set[tuple] = set()  # (group, host) pairs listed, for linear membership tests
        self.vars_cache: dict[str, dict] = {}  # group -> {var: (value, line)}
        self.ssh_cache: dict[tuple, dict] = {}  # ssh argument (value, line) pairs -> options

    def error(self, line: int | None, message: str, hint: str | None = None) -> InventoryError:
        return InventoryError(message, hint=hint, path=self.path, line=line)

    def group(self, name: str, line: int) -> Group:
        if name not in self.groups:
            self.groups[name] = Group(name=name, line=line)
            self.var_lines[name] = {}
        return self.groups[name]

    # ---- lines

    def parse(self, text: str) -> None:
        current, kind = "ungrouped", "hosts"
        for lineno, raw in enumerate(text.splitlines(), 1):
            if len(raw) > MAX_LINE_CHARS:
                raise self.error(lineno, f"line of {len(raw)} characters: the limit is {MAX_LINE_CHARS} "
                                         "characters per line (and 1 MiB per file)",
                                 hint="an inventory line is a host, a variable or a section; split it")
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                current, kind = self.section(line, lineno)
            elif kind == "hosts":
                self.host_line(line, lineno, current)
            elif kind == "vars":
                self.vars_line(line, lineno, current)
            else:
                self.children_line(line, lineno, current)

    def check_group_name(self, name: str, line: int) -> None:
        if _NAME.match(name):
            return
        hint = " (use '_' instead of '-')" if "-" in name else ""
        raise self.error(line, f"invalid group name {name!r}{hint}: allowed are letters, digits and '_', "
                               "not starting with a digit")

    def section(self, line: str, lineno: int) -> tuple:
        m = _SECTION.match(line)
        if not m:
            raise self.error(lineno, f"malformed section header {line!r}: expected [group], "
                                     "[group:vars] or [group:children]")
        name, colon, kind = m.group(1).partition(":")
        if colon and kind not in ("vars", "children"):
            raise self.error(lineno, f"unknown section type ':{kind}' in [{m.group(1)}]: allowed are "
                                     "[group], [group:vars] and [group:children]")
        self.check_group_name(name, lineno)
        kind = kind or "hosts"
        if name == "all" and kind != "vars":
            raise self.error(lineno, f"[{m.group(1)}]: the implicit group 'all' only takes [all:vars]")
        if name == "ungrouped" and kind == "children":
            raise self.error(lineno, "[ungrouped:children]: the implicit group 'ungrouped' has no children")
        self.group(name, lineno)
        if kind == "vars":
            self.vars_headers.setdefault(name, lineno)
        else:
            self.defined.add(name)
        return name, kind

    def host_line(self, line: str, lineno: int, group: str) -> None:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise self.error(lineno, f"cannot split host line ({exc}): check the quotes") from None
        if not tokens:
            return
        name = tokens[0]
        if "=" in name:
            raise self.error(lineno, f"expected a host name first, got {name!r}: variables go after the "
                                     "host name, or in a [group:vars] section")
        if "[" in name or "]" in name:
            raise self.error(lineno, f"host ranges are not supported ({name!r}): list each host on its "
                                     "own line")
        if ":" in name:
            raise self.error(lineno, f"host:port is not supported ({name!r}): write ansible_port=N")
        if not _HOST.match(name):
            raise self.error(lineno, f"invalid host name {name!r}: allowed are letters, digits, '.', '-' "
                                     "and '_'")
        values = {}
        for token in tokens[1:]:
            if "=" not in token:
                raise self.error(lineno, f"expected key=value after host {name!r}, got {token!r}")
            key, raw = token.split("=", 1)
            values[key] = (self.value(key, raw, lineno), lineno)
        self.group(group, lineno)
        if name not in self.hosts and len(self.hosts) == MAX_HOSTS:
            raise self.error(lineno, f"more than {MAX_HOSTS} hosts: the limit is {MAX_HOSTS} hosts per "
                                     "inventory", hint="split the lab into several inventories")
        record = self.hosts.setdefault(name, {"line": lineno, "vars": {}, "listed": {}})
        record["vars"].update(values)
        if len(record["vars"]) > MAX_HOST_VARS:
            raise self.too_many_vars(lineno, f"host {name!r}")
        record["listed"].setdefault(group, lineno)
        if (group, name) not in self.host_groups:
            self.host_groups.add((group, name))
            self.groups[group].hosts.append(name)

    def vars_line(self, line: str, lineno: int, group: str) -> None:
        if "=" not in line:
            raise self.error(lineno, f"expected key=value in [{group}:vars], got {line!r}")
        key, raw = (part.strip() for part in line.split("=", 1))
        if _unquote(raw) == raw and re.search(r"\s#", raw):
            raise self.error(lineno, f"{key}: trailing comment in a [{group}:vars] value (Ansible would "
                                     "keep it in the value): put comments on their own line")
        value = self.value(key, raw, lineno)
        if key == "ansible_group_priority":
            try:
                value = int(value)
            except ValueError:
                raise self.error(lineno, f"ansible_group_priority={raw!r} is not an integer") from None
        self.groups[group].vars[key] = value
        self.var_lines[group][key] = lineno
        if len(self.var_lines[group]) > MAX_HOST_VARS:
            raise self.too_many_vars(lineno, f"[{group}:vars]")

    def children_line(self, line: str, lineno: int, group: str) -> None:
        m = _CHILD.match(line)
        if not m:
            raise self.error(lineno, f"expected one group name per line in [{group}:children], got {line!r}")
        child = m.group(1)
        self.check_group_name(child, lineno)
        if child in ("all", "ungrouped"):
            raise self.error(lineno, f"[{group}:children]: the implicit group {child!r} cannot be a child")
        if (group, child) not in self.child_lines:
            self.groups[group].children.append(child)
            self.child_lines[(group, child)] = lineno

    def value(self, key: str, raw: str, lineno: int):
        if key in PASSWORD_VARS or (_SECRET.search(key) and key.startswith(("ansible_",) + KNOWN_PREFIXES)):
            raise self.error(lineno, f"{key}: {_PASSWORD_MSG}")
        if not _NAME.match(key):
            raise self.error(lineno, f"invalid variable name {key!r}: allowed are letters, digits and '_', "
                                     "not starting with a digit")
        if key in RENAMED_VARS:
            raise self.error(lineno, f"{key} is a legacy alias: write {RENAMED_VARS[key]}")
        if key not in KNOWN_VARS and not key.startswith(KNOWN_PREFIXES):
            raise self.error(lineno, f"unknown variable {key!r}: allowed are ansible_*, "
                                     f"{', '.join(sorted(KNOWN_VARS))} and names starting with "
                                     f"{', '.join(p for p in KNOWN_PREFIXES if p != 'ansible_')}")
        value = _unquote(raw)
        if key == "ansible_port":
            try:
                port = int(value)
            except ValueError:
                port = 0
            if not 1 <= port <= 65535:
                raise self.error(lineno, f"ansible_port={raw!r} is not a port: expected an integer 1..65535")
            return port
        if key in ("ansible_host", "ansible_user") and value and not _ADDRESS[key].match(value):
            raise self.error(lineno, f"{key}={value!r} is not a {key[8:]} name: allowed are letters, digits "
                                     f"and {_ADDRESS_CHARS[key]}, not starting with '-' (ssh would take it "
                                     "for an option)")
        allowed = {"runtime": runtimes(), "mode": MODES, "ansible_connection": CONNECTIONS}.get(key)
        if allowed and value not in allowed:
            raise self.error(lineno, f"{key}={value!r} is not allowed: expected one of {', '.join(allowed)}")
        return value

    # ---- whole file

    def finish(self) -> tuple[dict, dict]:
        for (parent, child), lineno in self.child_lines.items():
            if child not in self.defined:
                known = ", ".join(sorted(self.defined - {"all", "ungrouped"})) or "none"
                raise self.error(lineno, f"[{parent}:children] lists group {child!r}, which is never "
                                         f"defined: add a [{child}] section (groups defined: {known})")
        for name, lineno in self.vars_headers.items():
            if name not in self.defined:
                raise self.error(lineno, f"[{name}:vars] for group {name!r}, which is never defined: add a "
                                         f"[{name}] or [{name}:children] section")
        order = self.check_cycles()
        depth = self.depths(order)
        ancestors = self.ancestors(order)

        # Ansible drops a host from 'ungrouped' once any other group lists it.
        moved = set()
        for name, record in self.hosts.items():
            if "ungrouped" in record["listed"] and len(record["listed"]) > 1:
                del record["listed"]["ungrouped"]
                moved.add(name)
        if moved:
            ungrouped = self.groups["ungrouped"]
            ungrouped.hosts = [name for name in ungrouped.hosts if name not in moved]

        devices = {name: self.device(name, record, depth, ancestors) for name, record in self.hosts.items()}
        return devices, self.groups

    def check_cycles(self) -> list[str]:
        """The groups, each after all its parents (depth-first, iterative: no recursion limit).
        Raises InventoryError at the ``[group:children]`` line that closes a cycle."""
        state: dict[str, int] = {}  # 1 on the stack, 2 done
        order: list[str] = []
        for root in self.groups:
            if root in state:
                continue
            state[root] = 1
            stack = [(root, iter(self.groups[root].children))]
            while stack:
                name, children = stack[-1]
                child = next(children, None)
                if child is None:
                    state[name] = 2
                    order.append(name)
                    stack.pop()
                elif state.get(child) == 1:
                    path = [g for g, _ in stack]
                    cycle = " -> ".join(path[path.index(child):] + [child])
                    message = f"[{name}:children] makes a cycle: {cycle} (a group cannot contain itself)"
                    raise self.error(self.child_lines[(name, child)], message)
                elif child not in state:
                    state[child] = 1
                    stack.append((child, iter(self.groups[child].children)))
        order.reverse()
        return order

    def depths(self, order: list[str]) -> dict[str, int]:
        """Each group's longest path from a root (``order``: parents before children)."""
        depth = dict.fromkeys(order, 0)
        for name in order:
            for child in self.groups[name].children:
                depth[child] = max(depth[child], depth[name] + 1)
        return depth

    def ancestors(self, order: list[str]) -> dict[str, frozenset]:
        """Each group with its parents, grandparents, ... (``all`` left out). Raises InventoryError
        where that makes more than :data:`MAX_HOST_GROUPS` groups."""
        up: dict[str, set] = {name: {name} for name in order}
        for name in order:
            if len(up[name]) > MAX_HOST_GROUPS:
                raise self.too_many_groups(self.groups[name].line, f"group {name!r}")
            for child in self.groups[name].children:
                up[child] |= up[name]
                if len(up[child]) > MAX_HOST_GROUPS:
                    raise self.too_many_groups(self.child_lines[(name, child)], f"group {child!r}")
        return {name: frozenset(groups - {"all"}) for name, groups in up.items()}

    def too_many_vars(self, line: int, what: str) -> InventoryError:
        return self.error(line, f"{what} sets more than {MAX_HOST_VARS} variables: the limit is "
                                f"{MAX_HOST_VARS} variables per host (its groups' included)")

    def too_many_groups(self, line: int, what: str) -> InventoryError:
        return self.error(line, f"{what} belongs to more than {MAX_HOST_GROUPS} groups (its parents "
                                f"included): the limit is {MAX_HOST_GROUPS} groups per host")

    def device(self, name: str, record: dict, depth: dict, ancestors: dict) -> Device:
        listed = list(record["listed"])  # groups listing the host, first listing first
        groups: set[str] = set()
        for g in listed:
            groups |= ancestors[g]
            if len(groups) > MAX_HOST_GROUPS:
                raise self.too_many_groups(record["listed"][g], f"host {name!r}")

        merged: dict[str, tuple] = {}
        if "all" in self.groups:
            merged.update(self.group_vars("all"))
        def rank(g: str) -> tuple:
            return depth[g], self.groups[g].vars.get("ansible_group_priority", 1), g

        for g in sorted(groups, key=rank):
            merged.update(self.group_vars(g))
        merged.update(record["vars"])
        line = record["line"]
        if len(merged) > MAX_HOST_VARS:
            raise self.too_many_vars(line, f"host {name!r} with its groups")
        values = {k: v for k, (v, _) in merged.items()}

        def get(key: str):
            value = values.get(key)
            return value if value not in (None, "") else DEFAULTS.get(key)

        mode = get("mode")
        image = get("image")
        if mode == "container" and not image:
            raise self.error(line, f"host {name!r} has mode=container but no image: set image=... for the "
                                   "host or its group, or mode=native")
        ssh = self.ssh_options(merged)
        key_var = next((k for k in _KEY_VARS if get(k)), None)
        return Device(
            name=name, family=self.family(name, merged, groups, line), groups=tuple(sorted(groups)),
            host=get("ansible_host") or name, port=values.get("ansible_port", 22),
            user=get("ansible_user"), connection=get("ansible_connection") or "ssh",
            runtime=get("runtime"), mode=mode, image=image, image_archive=get("image_archive"),
            engine=get("engine"), container_args=values.get("container_args", ""),
            workdir=get("workdir"), python=get("python"),
            key_file=get(key_var) if key_var else None,
            known_hosts=ssh.get("userknownhostsfile"), vars=values, source=f"{self.path}:{line}",
            jump=ssh.get("proxyjump"), connect_timeout=ssh.get("connecttimeout"),
            key_source=f"{self.path}:{merged[key_var][1]}" if key_var else None)

    def family(self, name: str, merged: dict, groups: set, line: int) -> str | None:
        """The host's device family (``runners/families``): its ``edgegauge_family``, else the one
        group of its own or its parents' named as a family, else None (detected when provisioned).
        Raises InventoryError at the line that names no family (an old spelling is told the one
        name), or where a host sits in the groups of two families."""
        known = families.names()
        value, at = merged.get("edgegauge_family", ("", line))
        if value and "{{" not in str(value):  # a Jinja expression is Ansible's to expand
            if value not in known:
                right = families.suggest(value)
                said = f"write edgegauge_family={right}" if right else "see `python -m runners.families`"
                raise self.error(at, f"edgegauge_family={value!r} is not a device family: {said} "
                                     f"(families: {', '.join(known)})")
            return str(value)
        named = sorted(g for g in groups if g in known)
        if len(named) > 1:
            raise self.error(line, f"host {name!r} is in the groups of two families ({', '.join(named)}): "
                                   "set edgegauge_family for it")
        return named[0] if named else None

    def group_vars(self, group: str) -> dict:
        """``{var: (value, line)}`` of one group (computed once per group)."""
        if group not in self.vars_cache:
            lines = self.var_lines[group]
            self.vars_cache[group] = {k: (v, lines[k]) for k, v in self.groups[group].vars.items()}
        return self.vars_cache[group]

def _read(path: Path) -> str:
    """The file's text, read only up to :data:`MAX_FILE_BYTES` (+1 to detect a bigger file).
    Raises InventoryError (see :func:`load_inventory`)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise InventoryError("not a regular file: an inventory is a text file", path=path)
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InventoryError("inventory file not found", path=path,
                             hint="pass an existing file, or a NAME for NAME.ini, inventories/NAME.ini "
                                  "or a group of ./inventory.ini") from None
    except OSError as exc:
        raise InventoryError(f"cannot read the inventory ({exc})", path=path) from None
    if len(data) > MAX_FILE_BYTES:
        raise InventoryError(f"larger than {MAX_FILE_BYTES // (1 << 20)} MiB: the limit is "
                             f"{MAX_FILE_BYTES} bytes per inventory (and {MAX_LINE_CHARS} characters "
                             "per line)", path=path, hint="a lab inventory is a few KiB: check that "
                             "this is the right file, or split the lab into several inventories")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InventoryError(f"cannot read the inventory ({exc})", path=path) from None
    if text.startswith("\ufeff"):
        raise InventoryError("the file starts with a UTF-8 byte order mark, which Ansible's INI reader "
                             "takes for text: save it as UTF-8 without BOM", path=path, line=1)
    return text


def load_inventory(path, scope: str | None = None, resolution: str | None = None) -> Inventory:
    """Read and check an Ansible INI inventory.

    ``scope`` narrows :meth:`Inventory.in_scope` to one group; ``resolution`` is the
    sentence that says how the file was found (default: the path).

    Raises:
        InventoryError: the file is missing, unreadable, not a regular file or over
            :data:`MAX_FILE_BYTES` (no line), or a line is not accepted (message starts with
            ``file:line:``; lines over :data:`MAX_LINE_CHARS` included), or ``scope`` is not a
            group of it.
    """
    path = Path(path)
    text = _read(path)
    parser = _Parser(path)
    parser.parse(text)
    devices, groups = parser.finish()
    if scope is not None and scope not in groups and scope != "all":
        raise InventoryError(f"no group {scope!r} in this inventory; groups: "
                             f"{', '.join(groups) or 'none'}", path=path)
    return Inventory(path=path, devices=devices, groups=groups, scope=scope,
                     resolution=resolution or str(path))


def _show(path: Path, cwd: Path) -> str:
    try:
        return "./" + str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def resolve_inventory(spec: str | None, cwd: Path | None = None) -> Inventory:
    """The inventory named by ``--inventory SPEC``, relative to ``cwd`` (default: the cwd).

    * ``None``: ``./inventory.ini``, whole file; without that file, an empty inventory
      (``path`` None, resolution ``"no inventory: ./inventory.ini not found"``).
    * an existing file (absolute, or relative to ``cwd``): that file.
    * a bare NAME (no ``/``, not ending in ``.ini``): ``./NAME.ini``, else
      ``./inventories/NAME.ini``, else group NAME of ``./inventory.ini`` (``scope`` NAME).

    Raises:
        InventoryError: nothing matched (the message lists what was tried and the groups of
            ``./inventory.ini``), or the chosen file is not accepted (see :func:`load_inventory`).
    """
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    default = cwd / DEFAULT_FILE
    if spec is None:
        if default.is_file():
            return load_inventory(default, resolution=f"no --inventory -> {_show(default, cwd)} (whole file)")
        return Inventory(path=None, devices={}, groups={}, scope=None,
                         resolution=f"no inventory: ./{DEFAULT_FILE} not found")
    spec = str(spec)
    given = Path(spec).expanduser()
    candidate = given if given.is_absolute() else cwd / given
    if spec.strip() and candidate.is_file():
        return load_inventory(candidate, resolution=f"{spec} -> {_show(candidate, cwd)}")
    tried = [_show(candidate, cwd)]
    if spec.strip() and "/" not in spec and not spec.endswith(".ini"):
        for candidate in (cwd / f"{spec}.ini", cwd / INVENTORY_DIR / f"{spec}.ini"):
            if candidate.is_file():
                return load_inventory(candidate, resolution=f"{spec} -> {_show(candidate, cwd)}")
            tried.append(_show(candidate, cwd))
        if default.is_file():
            inventory = load_inventory(default)
            if spec in inventory.groups or spec == "all":
                inventory.scope = spec
                inventory.resolution = f"{spec} -> group {spec!r} of {_show(default, cwd)}"
                return inventory
            groups = ", ".join(g for g in inventory.groups if g not in ("all", "ungrouped")) or "none"
            tried.append(f"group {spec!r} of {_show(default, cwd)} (its groups: {groups})")
        else:
            tried.append(f"group {spec!r} of {_show(default, cwd)} (file not found)")
    raise InventoryError(f"--inventory {spec!r} matches no inventory; tried: {'; '.join(tried)}",
                         hint="pass an inventory file, or a NAME for NAME.ini, inventories/NAME.ini or a "
                              "group of ./inventory.ini")
