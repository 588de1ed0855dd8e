"""A throwaway device family added as README "## Adding a device family" says: one descriptor
(``runners/families/toy_npu.py``) plus its provisioning and power roles, in a copy of the
repository (its tracked and not-ignored files), and nothing else.

In that copy the family is detected by the runner's probe (a fake root holding its marker file),
listed by ``host image list``, accepted in the inventory (``host devices``), and the real
``provision.yml`` and ``power_mode.yml`` (ansible-runner against a loopback sshd board,
tests/labfix.py) detect it on the board and run its own roles. An old spelling of a family is a
typed error naming the right one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import labfix

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
NAME, FOLDER = "toy_npu", "toy-npu"
MARKER = "etc/toy_npu_release"

DESCRIPTOR = f'''"""A throwaway NPU board (tests/test_extend_family.py)."""

from runners.families import FamilyDescriptor, ImageVariant

FAMILY = FamilyDescriptor(
    name="{NAME}",
    summary="toy NPU board: a marker file, nothing to tune",
    marker_files=("{MARKER}",),
    detect_order=5,
    power_tool="toyctl",
    image_folder="{FOLDER}",
    default_variant="default",
    variants=(ImageVariant("default", "edgegauge/{FOLDER}", "images/{FOLDER}/Dockerfile",
                           default_base="docker.io/library/python:3.11-slim-bookworm"),),
)
'''
FILES = {
    f"runners/families/{NAME}.py": DESCRIPTOR,
    f"playbooks/roles/provision_{NAME}/tasks/main.yml": f"""---
- name: Mark the toy board provisioned
  ansible.builtin.copy:
    content: "{{{{ provision_{NAME}_message }}}}\\n"
    dest: "{{{{ provision_common_workdir_path }}}}/{NAME}.provisioned"
    mode: "0644"
""",
    f"playbooks/roles/provision_{NAME}/defaults/main.yml": f"""---
# What the marker file says.
provision_{NAME}_message: provisioned
""",
    f"playbooks/roles/power_{NAME}/tasks/main.yml": """---
- name: Tune
  ansible.builtin.import_tasks: tune.yml
""",
    f"playbooks/roles/power_{NAME}/tasks/tune.yml": f"""---
- name: Make the state folder
  ansible.builtin.file:
    path: "{{{{ edgegauge_power_state_dir }}}}"
    state: directory
    mode: "0755"

- name: Record the toy mode
  ansible.builtin.copy:
    content: "{{{{ power_mode_name | default(power_{NAME}_mode, true) }}}}\\n"
    dest: "{{{{ edgegauge_power_state_dir }}}}/{NAME}.mode"
    mode: "0644"
""",
    f"playbooks/roles/power_{NAME}/tasks/reset.yml": f"""---
- name: Forget the toy mode
  ansible.builtin.file:
    path: "{{{{ edgegauge_power_state_dir }}}}/{NAME}.mode"
    state: absent
""",
    f"playbooks/roles/power_{NAME}/defaults/main.yml": f"""---
# The toy mode tune records.
power_{NAME}_mode: fast
""",
    f"images/{FOLDER}/Dockerfile": "ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm\n"
                                   "FROM ${BASE_IMAGE}\n",
}


def readme_files() -> list:
    """The paths listed in README "## Adding a device family" (bullets opening with a path)."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Adding a device family\n(.*?)(?=^## )", text, re.M | re.S)
    assert m, "README.md has no '## Adding a device family' section"
    paths = re.findall(r"^- `([^`]+)`", m.group(1), re.M)
    return [p.replace("<name>", NAME).replace("<folder>", FOLDER) for p in paths]


def copy_repository(dest: Path) -> Path:
    """The checkout's tracked and untracked-but-not-ignored files, as they are now."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "-co", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def run(copy: Path, *argv: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(copy), COLUMNS="200")
    return subprocess.run([sys.executable, *argv], cwd=copy, env=env, capture_output=True, text=True,
                          timeout=120, **kw)


ADDED: list = []  # the files the fixture created in the copy (none of them existed before)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the repository with the throwaway family added."""
    copy = copy_repository(tmp_path_factory.mktemp("family") / "repo")
    before = {p for p in copy.rglob("*") if p.is_file()}
    for rel, text in FILES.items():
        assert not (copy / rel).exists(), rel
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_text(text)
    ADDED[:] = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file() and p not in before)
    return copy


def test_the_throwaway_family_is_exactly_the_files_the_readme_lists(repo):
    assert ADDED == sorted(readme_files())


def test_the_runner_detects_it(repo, tmp_path):
    root = tmp_path / "root"
    (root / MARKER).parent.mkdir(parents=True)
    (root / MARKER).write_text("toy 1\n")
    res = run(repo, "-m", "runners.power_state", "--root", str(root), "--detect")
    assert res.returncode == 0 and json.loads(res.stdout) == {"family": NAME}, res.stderr
    state = json.loads(run(repo, "-m", "runners.power_state", "--root", str(root)).stdout)
    assert state["family"] == NAME and not any(NAME in e for e in state["errors"]), state["errors"]
    other = run(repo, "-c", "from runners.power_state import detect_family; import sys; "
                            "print(detect_family(sys.argv[1], lambda c: None, 'riscv64'))", str(tmp_path))
    assert other.stdout.strip() == "unknown"  # no marker: not the toy family


def test_host_image_list_lists_it_and_the_inventory_accepts_it(repo, tmp_path):
    res = run(repo, "-m", "host", "image", "list", "--json")
    assert res.returncode == 0, res.stderr
    rows = [r for r in json.loads(res.stdout) if r["family"] == NAME]
    assert [(r["variant"], r["dockerfile"], r["output"].split(":")[0]) for r in rows] == [
        ("default", f"images/{FOLDER}/Dockerfile", f"edgegauge/{FOLDER}")]
    inv = tmp_path / "inv.ini"
    inv.write_text(f"[npus]\nn1 edgegauge_family={NAME}\n[{NAME}]\nn2\n[others]\nn3\n")
    res = run(repo, "-m", "host", "devices", "--inventory", str(inv), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert {d["name"]: d["family"] for d in json.loads(res.stdout)["devices"]} == {
        "n1": NAME, "n2": NAME, "n3": None, "local": "local"}


def test_an_old_spelling_is_a_typed_error_naming_the_family(repo, tmp_path):
    inv = tmp_path / "old.ini"
    inv.write_text("[pis]\npi edgegauge_family=arm-cpu\n")
    res = run(repo, "-m", "host", "devices", "--inventory", str(inv))
    assert res.returncode != 0 and "write edgegauge_family=arm_cpu" in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    res = run(repo, "-m", "host", "image", "build", "x86-a100", "--dry-run")
    assert res.returncode == 2 and "write 'x86_a100'" in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr


@pytest.mark.slow
def test_provision_and_power_mode_run_its_roles_on_a_detected_board(repo, tmp_path):
    ansible_runner = pytest.importorskip("ansible_runner")
    if not shutil.which("ansible-playbook", path=str(VENV_BIN)):
        pytest.skip("ansible-playbook is not in the test venv")
    root = tmp_path / "root"
    (root / MARKER).parent.mkdir(parents=True)
    (root / MARKER).write_text("toy 1\n")
    (tmp_path / "pdd").mkdir()
    with labfix.Boards(tmp_path / "ssh", names=("npu",)) as boards:
        inv = boards.write_inventory(tmp_path / "lab.ini", ansible_python_interpreter=sys.executable,
                                     ansible_become=False, edgegauge_root=root)  # no edgegauge_family

        env = {"PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
               "ANSIBLE_NOCOLOR": "1"}

        def play(book: str, **kw):
            r = ansible_runner.run(private_data_dir=str(tmp_path / "pdd"), inventory=str(inv), quiet=True,
                                   playbook=str(repo / "playbooks" / book), timeout=240,
                                   suppress_env_files=True, envvars=env, **kw)
            failed = [e["event_data"].get("res", {}).get("msg") for e in r.events
                      if e.get("event") in ("runner_on_failed", "runner_on_unreachable")]
            assert r.status == "successful", (book, failed)
            return r

        play("provision.yml")
        assert (boards.workdir("npu") / f"{NAME}.provisioned").read_text() == "provisioned\n"
        r = play("power_mode.yml", tags="tune", extravars={"power_mode_name": "turbo"})
        state = root / "var/lib/edgegauge"
        assert (state / f"{NAME}.mode").read_text() == "turbo\n"
        final = [e["event_data"]["res"]["edgegauge_power_state"] for e in r.events if e.get("event") ==
                 "runner_on_ok" and e["event_data"].get("task") == "Edgegauge power state"]
        assert [s["family"] for s in final] == [NAME]
        play("power_mode.yml", tags="reset")
        assert not (state / f"{NAME}.mode").exists()
