"""host/lab/inventory.py: the strict Ansible INI reader, checked against ansible-inventory itself."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from host.errors import InventoryError, UnknownDeviceError
from host.lab.inventory import load_inventory, local_device, resolve_inventory

ROOT = Path(__file__).resolve().parent.parent
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"
OURS = ("ansible_host", "ansible_port", "ansible_user", "ansible_connection", "ansible_ssh_common_args",
        "runtime", "mode", "image", "image_archive", "engine", "container_args", "workdir", "python")


def write(folder: Path, text: str, name: str = "inv.ini") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def ansible_list(path: Path, tmp_path: Path) -> dict:
    """``ansible-inventory -i PATH --list`` with a private HOME, failing on any parse error."""
    if not ANSIBLE_INVENTORY.exists():
        pytest.skip("ansible-core is not installed next to this interpreter")
    home = tmp_path / "ansible-home"
    env = {**os.environ, "HOME": str(home), "ANSIBLE_HOME": str(home / ".ansible"),
           "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "ANSIBLE_INVENTORY_ENABLED": "ini",
           "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run([str(ANSIBLE_INVENTORY), "-i", str(path), "--list"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def ansible_membership(doc: dict) -> dict:
    """host -> every group it belongs to (ancestors included, 'all' excluded)."""
    groups = {g: v for g, v in doc.items() if g != "_meta"}

    def hosts(group):
        out = set(groups.get(group, {}).get("hosts", []))
        for child in groups.get(group, {}).get("children", []):
            out |= hosts(child)
        return out

    members = {h: set() for h in hosts("all")}
    for group in groups:
        for host in hosts(group):
            if group != "all":
                members[host].add(group)
    return members


def assert_same_as_ansible(inv, doc):
    assert set(inv.devices) == set(ansible_membership(doc))
    for name, groups in ansible_membership(doc).items():
        assert set(inv.devices[name].groups) == groups, name
        hostvars = doc["_meta"]["hostvars"].get(name, {})
        for key in OURS:
            assert inv.devices[name].vars.get(key) == hostvars.get(key), (name, key)


# ------------------------------------------------------------------ the repo's example lab

def test_example_lab_is_read_as_documented():
    inv = load_inventory(ROOT / "inventory.ini")
    families = {name: dev.family for name, dev in inv.devices.items()}
    assert families == {"rpi4-1": "arm_cpu", "xavier-1": "jetson", "zcu104-1": "zcu104", "a100-1": "x86_a100"}
    assert all("lab" in dev.groups for dev in inv.devices.values())
    xavier, zcu = inv.devices["xavier-1"], inv.devices["zcu104-1"]
    assert (xavier.runtime, xavier.mode) == ("tensorrt", "container")
    assert xavier.image == "edgegauge/jetson:0.1.0-jp5"
    assert "--runtime nvidia" in xavier.container_args
    assert (zcu.runtime, zcu.mode, zcu.python, zcu.image) == ("vart", "native", "/usr/bin/python3", None)
    assert inv.devices["a100-1"].container_args == "--gpus all"
    assert not any(key.endswith(("pass", "password")) for d in inv.devices.values() for key in d.vars)
    assert all(d.host.startswith("192.0.2.") for d in inv.devices.values())


def test_lab_resolves_to_the_group_of_the_repo_inventory():
    inv = resolve_inventory("lab", cwd=ROOT)
    assert inv.scope == "lab" and inv.path == ROOT / "inventory.ini"
    assert [d.name for d in inv.in_scope()] == ["rpi4-1", "xavier-1", "zcu104-1", "a100-1"]
    assert inv.resolution == "lab -> group 'lab' of ./inventory.ini"


def test_example_lab_matches_ansible_inventory(tmp_path):
    path = ROOT / "inventory.ini"
    assert_same_as_ansible(load_inventory(path), ansible_list(path, tmp_path))


# ------------------------------------------------------------------ precedence, family, values

PRECEDENCE = """
    [all:vars]
    workdir=all_wd
    python=all_py
    engine=all_engine
    image_archive=/srv/all.tar

    [lab:children]
    boards

    [lab:vars]
    python=lab_py
    engine=lab_engine
    ansible_user=labuser

    [boards:children]
    arm

    [boards:vars]
    engine=boards_engine
    runtime=vart

    [arm]
    pi1 ansible_port=2201 engine=host_engine  # a trailing comment
    pi2 ansible_host=192.0.2.5

    [arm:vars]
    runtime=ort
    ansible_ssh_common_args='-o UserKnownHostsFile=/x/kh -o StrictHostKeyChecking=yes'

    [zz]
    pi1 mode=native
    pi3

    [aa]
    pi1 python=line_py engine=later_engine
    pi3

    [zz:vars]
    edgegauge_tag=zz
    [aa:vars]
    edgegauge_tag=aa
    """


def test_precedence_family_and_values(tmp_path):
    inv = load_inventory(write(tmp_path, PRECEDENCE))
    pi1, pi2, pi3 = (inv.devices[n] for n in ("pi1", "pi2", "pi3"))
    assert list(inv.devices) == ["pi1", "pi2", "pi3"]
    # all:vars < lab < boards < arm < host lines (later line wins)
    assert (pi2.workdir, pi2.python, pi2.engine, pi2.runtime) == ("all_wd", "lab_py", "boards_engine", "ort")
    assert (pi1.python, pi1.engine, pi1.mode) == ("line_py", "later_engine", "native")
    assert pi2.image_archive == "/srv/all.tar" and pi2.user == "labuser"
    # same depth: ordered by name, so zz beats aa
    assert pi1.vars["edgegauge_tag"] == "zz" and pi3.vars["edgegauge_tag"] == "zz"
    # family: none of these groups names a family (runners/families), and no edgegauge_family
    assert (pi1.family, pi2.family, pi3.family) == (None, None, None)
    assert pi1.groups == ("aa", "arm", "boards", "lab", "zz") and pi3.groups == ("aa", "zz")
    assert pi1.port == 2201 and isinstance(pi1.port, int) and pi2.port == 22
    assert pi1.address == "labuser@pi1:2201" and pi2.address == "labuser@192.0.2.5:22"
    assert pi3.address == "pi3:22" and pi3.user is None
    assert pi1.known_hosts == "/x/kh" and pi3.known_hosts is None
    assert pi1.source.endswith("inv.ini:23")
    assert json.loads(json.dumps(pi1.to_json()))["vars"]["ansible_port"] == 2201


FAMILIES_INI = """\
[rpi]
pi1
[arm_cpu:children]
rpi
[boards]
jet edgegauge_family=jetson
odd
"""


def test_family_is_edgegauge_family_or_a_group_named_for_one_never_the_deepest_group(tmp_path):
    inv = load_inventory(write(tmp_path, FAMILIES_INI))
    assert {n: d.family for n, d in inv.devices.items()} == {"pi1": "arm_cpu", "jet": "jetson", "odd": None}


@pytest.mark.parametrize("text, line, want", [
    ("[b]\npi edgegauge_family=arm-cpu\n", 2, "write edgegauge_family=arm_cpu"),
    ("[b]\nz\n[b:vars]\nedgegauge_family=vitis-ai\n", 4, "write edgegauge_family=zcu104"),
    ("[b]\npi edgegauge_family=toaster\n", 2, "is not a device family"),
    ("[jetson]\nx\n[arm_cpu]\nx\n", 2, "groups of two families (arm_cpu, jetson)"),
])
def test_a_family_that_is_none_is_refused_at_its_line(tmp_path, text, line, want):
    with pytest.raises(InventoryError) as err:
        load_inventory(write(tmp_path, text))
    assert f"inv.ini:{line}:" in str(err.value) and want in str(err.value), str(err.value)


def test_precedence_matches_ansible_inventory(tmp_path):
    path = write(tmp_path, PRECEDENCE)
    doc = ansible_list(path, tmp_path)
    assert_same_as_ansible(load_inventory(path), doc)
    assert doc["_meta"]["hostvars"]["pi1"]["edgegauge_tag"] == "zz"


def test_empty_inventory_and_ungrouped_hosts(tmp_path):
    assert load_inventory(write(tmp_path, "# nothing yet\n")).devices == {}
    inv = load_inventory(write(tmp_path, "solo ansible_connection=local\nboth\n[g]\nboth\n", "u.ini"))
    assert inv.devices["solo"].family is None and inv.devices["solo"].address == "local"
    assert inv.devices["both"].groups == ("g",) and inv.groups["ungrouped"].hosts == ["solo"]


# ------------------------------------------------------------------ errors: file:line: prefix

ERRORS = [
    ("[g]\nh1 colour=red\n", 2, "unknown variable 'colour'"),
    ("[g]\nh1\n[g:vars]\nansible_ssh_pass=secret\n", 4, "no passwords in the inventory"),
    ("h1 ansible_become_password=x\n", 1, "use ssh-agent or ansible_ssh_private_key_file"),
    ("[g]\nh1 runtime=onnx\n", 2, "runtime='onnx' is not allowed"),
    ("[g]\nh1\n\n[g:vars]\nmode=docker\n", 5, "mode='docker'"),
    ("h1 ansible_connection=winrm\n", 1, "expected one of ssh, local"),
    ("[g:vars]\nmode=container\n[g]\n# no image anywhere\nh1\n", 5, "mode=container but no image"),
    ("h1 ansible_port=70000\n", 1, "expected an integer 1..65535"),
    ("[g]\nh1\nh2 ansible_port=ssh\n", 3, "ansible_port='ssh'"),
    ("[lab:children]\nrpi\nghost\n[rpi]\nh1\n", 3, "'ghost', which is never defined"),
    ("[a:children]\nb\n[b:children]\na\n", 4, "[b:children] makes a cycle: a -> b -> a"),
    ("[g:hosts]\nh1\n", 1, "unknown section type ':hosts'"),
    ("[g]\nweb[01:03]\n", 2, "host ranges are not supported"),
    ("[g]\nh1\n[g:vars]\nruntime ort\n", 4, "expected key=value in [g:vars]"),
    ("[my-lab]\nh1\n", 1, "use '_' instead of '-'"),
    ("[g]\nh1\n[other:vars]\nruntime=ort\n", 3, "never defined"),
    ("[g]\nh1:2222\n", 2, "write ansible_port=N"),
    ("[g]\nh1\n[g:vars]\nruntime=ort  # comment\n", 4, "trailing comment"),
]


@pytest.mark.parametrize("text, line, fragment", ERRORS, ids=[e[2][:30] for e in ERRORS])
def test_errors_name_file_and_line(tmp_path, text, line, fragment):
    path = tmp_path / "bad.ini"
    path.write_text(text)
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message
    assert info.value.line == line


def test_missing_file_has_no_line_and_a_hint(tmp_path):
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path / "nope.ini")
    assert info.value.line is None and "not found" in str(info.value) and info.value.hint


# ------------------------------------------------------------------ resolution

LAB = "[arm]\npi1\npi2\n[gpu]\njet1\n[lab:children]\narm\ngpu\n[other]\nx86\n"


def test_resolution_order(tmp_path):
    write(tmp_path, LAB, "inventory.ini")
    inv = resolve_inventory("lab", cwd=tmp_path)
    assert (inv.scope, [d.name for d in inv.in_scope()]) == ("lab", ["pi1", "pi2", "jet1"])
    write(tmp_path, "[x]\nfrom_dir\n", "inventories/lab.ini")
    inv = resolve_inventory("lab", cwd=tmp_path)
    assert inv.scope is None and list(inv.devices) == ["from_dir"]
    assert inv.resolution == "lab -> ./inventories/lab.ini"
    write(tmp_path, "[x]\nfrom_top\n", "lab.ini")
    assert list(resolve_inventory("lab", cwd=tmp_path).devices) == ["from_top"]
    assert list(resolve_inventory(None, cwd=tmp_path).devices) == ["pi1", "pi2", "jet1", "x86"]


def test_explicit_paths(tmp_path):
    path = write(tmp_path, "[x]\nh1\n", "sub/site.ini")
    assert resolve_inventory(str(path), cwd=Path("/")).path == path
    assert resolve_inventory("sub/site.ini", cwd=tmp_path).path == tmp_path / "sub" / "site.ini"


def test_not_found_lists_what_was_tried(tmp_path):
    assert resolve_inventory(None, cwd=tmp_path).resolution == "no inventory: ./inventory.ini not found"
    assert resolve_inventory(None, cwd=tmp_path).path is None
    write(tmp_path, LAB, "inventory.ini")
    with pytest.raises(InventoryError) as info:
        resolve_inventory("nope", cwd=tmp_path)
    message = str(info.value)
    for tried in ("./nope.ini", "./inventories/nope.ini", "group 'nope' of ./inventory.ini", "arm, gpu"):
        assert tried in message
    with pytest.raises(InventoryError, match="missing/x.ini"):
        resolve_inventory("missing/x.ini", cwd=tmp_path)


# ------------------------------------------------------------------ selection

def names(devices):
    return [d.name for d in devices]


def test_selection(tmp_path):
    inv = load_inventory(write(tmp_path, LAB))
    assert names(inv.select()) == ["pi1", "pi2", "jet1", "x86"]
    assert names(inv.select(devices=["jet1"])) == ["jet1"]
    assert names(inv.select(devices=["gpu"])) == ["jet1"]  # a group given to --device
    assert names(inv.select(groups=["lab"])) == ["pi1", "pi2", "jet1"]
    picked = inv.select(devices=["x86", "jet1", "arm", "pi1"], groups=["arm"])
    assert names(picked) == ["pi1", "pi2", "jet1", "x86"]  # file order, once each
    assert names(inv.select(devices=["pi2"], all_devices=True)) == ["pi1", "pi2", "jet1", "x86"]
    with pytest.raises(UnknownDeviceError) as info:
        inv.select(devices=["pi9"])
    assert "pi9" in str(info.value) and "jet1" in str(info.value) and "lab" in str(info.value)
    with pytest.raises(UnknownDeviceError):
        inv.select(groups=["pi1"])


def test_selection_in_scope(tmp_path):
    inv = load_inventory(write(tmp_path, LAB), scope="lab")
    assert names(inv.select(all_devices=True)) == ["pi1", "pi2", "jet1"]
    with pytest.raises(UnknownDeviceError, match="not in group 'lab'"):
        inv.select(devices=["x86"])
    with pytest.raises(UnknownDeviceError, match="no devices"):
        inv.select(groups=["other"])


def test_local_is_built_in_unless_the_inventory_has_it(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEGAUGE_LOCAL_WORKDIR", raising=False)
    inv = load_inventory(write(tmp_path, LAB))
    picked = inv.select(devices=["local", "pi2"])
    assert names(picked) == ["pi2", "local"]
    local = picked[1]
    assert (local.connection, local.runtime, local.mode, local.family) == ("local", "ort", "native", "local")
    assert local.python == sys.executable and local.address == "local" and local.port == 0
    assert local.workdir == str(Path.home() / ".cache" / "edgegauge" / "work")
    assert local_device("/w").workdir == "/w"
    monkeypatch.setenv("EDGEGAUGE_LOCAL_WORKDIR", "/elsewhere")
    assert local_device().workdir == "/elsewhere"
    inv = load_inventory(write(tmp_path, "[g]\nlocal ansible_host=192.0.2.9\n", "l.ini"))
    assert inv.select(devices=["local"])[0].host == "192.0.2.9"


def test_reader_does_not_import_ansible():
    import ast
    tree = ast.parse((ROOT / "host" / "lab" / "inventory.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "ansible" not in imported
