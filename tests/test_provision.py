"""playbooks/provision.yml for real: ansible-runner against loopback sshd boards (tests/labfix.py)
with vendor tools emulated on each board's PATH (tests/vendor_emu.py for nvidia-smi and xdputil,
tests/provision_emu.py for docker, systemctl, nvidia-ctk, nvidia-container-runtime and fake
vart/xir modules) and /etc under a fake ``edgegauge_root``.

* Emulated lab (one ansible run over six boards, then a second run over the good ones): Jetson
  R35 (daemon.json, handler, image from an archive), a Jetson given a JetPack 6 image (refused),
  x86 + A100 (nvidia-ctk configure + restart, image), ZCU104 from a native bundle, a ZCU104 whose
  vart does not import, and a board of no known family.
* ARM CPU with the real podman + runc engine: the image is loaded from a `podman save` archive,
  the second run changes nothing, and `host check` then says the board is ready.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import labfix
import provision_emu
import pytest
import vendor_emu

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = ROOT / "playbooks" / "provision.yml"
VENV_BIN = Path(sys.executable).parent
REST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

pytest.importorskip("ansible_runner")
pytestmark = pytest.mark.slow  # every test here runs ansible-playbook against sshd boards (seconds each)


# ------------------------------------------------------------------------------------------------
# ansible-runner helper (local to this file)
# ------------------------------------------------------------------------------------------------


@dataclass
class PlayRun:
    status: str
    rc: int
    stats: Dict[str, Dict[str, int]]
    events: List[dict] = field(repr=False)
    stdout: str = field(repr=False, default="")

    def count(self, key: str, host: str) -> int:
        return (self.stats.get(key) or {}).get(host, 0)

    def changed(self) -> Dict[str, int]:
        hosts = set().union(*(v.keys() for v in self.stats.values() if isinstance(v, dict)))
        return {h: self.count("changed", h) for h in sorted(hosts)}

    def results(self, host: str, event: str = "runner_on_ok") -> List[dict]:
        return [e["event_data"] for e in self.events
                if e.get("event") == event and e.get("event_data", {}).get("host") == host]

    def result(self, host: str, task: str) -> dict:
        """The ``res`` of ``host``'s (last) ok result of the task named ``task``."""
        found = [d["res"] for d in self.results(host) if d.get("task") == task]
        assert found, f"no ok result of task {task!r} on {host}:\n{self.stdout[-3000:]}"
        return found[-1]

    def failures(self, host: str) -> List[tuple]:
        return [(d.get("task"), d["res"].get("msg", "")) for d in self.results(host, "runner_on_failed")]

    def changed_tasks(self, host: str) -> List[str]:
        return [d.get("task") for d in self.results(host) if d["res"].get("changed")]


def run_playbook(private_dir: Path, inventory: Path, limit: Optional[str] = None,
                 extravars: Optional[dict] = None, check: bool = False) -> PlayRun:
    """Run provision.yml through ansible-runner (strict host keys, no ssh multiplexing);
    ``check``: Ansible's check mode (``--check``)."""
    import ansible_runner

    (private_dir / "tmp").mkdir(parents=True, exist_ok=True)
    envvars = {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', REST_PATH)}",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_LOCAL_TEMP": str(private_dir / "tmp"),
    }
    r = ansible_runner.run(private_data_dir=str(private_dir), playbook=str(PLAYBOOK),
                           inventory=str(inventory), limit=limit, extravars=extravars or {},
                           envvars=envvars, quiet=True, forks=10, rotate_artifacts=3, timeout=600,
                           suppress_env_files=True, **({"cmdline": "--check"} if check else {}))
    stdout = r.stdout.read() if hasattr(r.stdout, "read") else ""
    return PlayRun(r.status, r.rc, r.stats or {}, list(r.events), stdout)


def write_ini(path: Path, boards: labfix.Boards, hosts: Dict[str, dict], **group) -> Path:
    """An inventory (group ``boards``) with per-host variables; test boards log in as root and
    have no sudo, so ``ansible_become=false`` (a variable beats the roles' `become: true`)."""
    lines = ["[boards]"]
    for name, extra in hosts.items():
        hv = {"ansible_host": labfix.LOCALHOST, "ansible_port": boards.ports[name],
              "workdir": boards.workdir(name), **extra}
        lines.append(name + " " + " ".join(f"{k}={shlex.quote(str(v))}" for k, v in hv.items()))
    gv = {"ansible_user": "root", "ansible_ssh_private_key_file": boards.client_key,
          "ansible_ssh_common_args": f"-o UserKnownHostsFile={boards.known_hosts} "
                                     "-o StrictHostKeyChecking=yes",
          "ansible_python_interpreter": "/usr/bin/python3", "ansible_become": "false",
          "runtime": "ort", "mode": "native", "python": sys.executable, **group}
    lines += ["", "[boards:vars]"] + [f"{k}={labfix._ini_value(v)}" for k, v in gv.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------------------------
# the emulated lab
# ------------------------------------------------------------------------------------------------

EMU = ("xavier", "xavier_jp6", "a100", "zcu", "zcu_bad", "plain")
GOOD = ("xavier", "a100", "zcu")
JETSON_IMAGE = "edgegauge/jetson:0.1-jp5"
X86_IMAGE = "edgegauge/x86-a100:0.1"


def vitis_bundle(out: Path) -> Path:
    """The ZCU104 native bundle as `host image build zcu104` writes it (host/lab/bundle.py), or
    the contract's layout from provision_emu when that module is not there."""
    try:
        from host.lab.bundle import build_bundle
    except ImportError:
        return provision_emu.make_vitis_bundle(out / "edgegauge-vitis-ai-bundle-0.1.tar.gz")
    return build_bundle(out).path


@dataclass
class EmuLab:
    dir: Path
    boards: labfix.Boards
    inventory: Path
    roots: Dict[str, Path]
    fakes: Dict[str, provision_emu.ProvisionEmu]
    bundle: Path
    first: Optional[PlayRun] = None
    second: Optional[PlayRun] = None
    check_fresh: Optional[PlayRun] = None
    check_after: Optional[PlayRun] = None
    fresh_calls: Dict[str, list] = field(default_factory=dict)
    untouched: List[str] = field(default_factory=list)
    touched_by_first: List[str] = field(default_factory=list)

    def snapshot(self) -> Dict[str, bytes]:
        """Every file (and folder) on the boards that provisioning may change: the fake roots,
        the work folders and the emulated tools' state (not their call logs)."""
        snap: Dict[str, bytes] = {}
        places = [self.dir / n / sub for n in EMU for sub in ("root", "state", "vendor-state")]
        for top in places + [self.boards.workdir(n) for n in EMU]:
            for p in sorted(top.rglob("*")) if top.exists() else []:
                if p.name != "calls.jsonl":
                    snap[str(p)] = p.read_bytes() if p.is_file() else b"<dir>"
        return snap


def _emu_lab(d: Path) -> EmuLab:
    roots, fakes, env, hosts = {}, {}, {}, {}
    mods_ok = provision_emu.fake_vitis_modules(d / "pymods" / "ok")
    mods_bad = provision_emu.fake_vitis_modules(d / "pymods" / "broken", broken=True)
    archives = d / "archives"
    archives.mkdir()
    jetson_tar = provision_emu.make_docker_archive(archives / "jetson-jp5.tar", [JETSON_IMAGE])
    x86_tar = provision_emu.make_docker_archive(archives / "x86-a100.tar", [X86_IMAGE])
    bundle = vitis_bundle(archives)
    for name in EMU:
        family = {"xavier": "jetson", "xavier_jp6": "jetson", "a100": "x86_a100"}.get(
            name, "zcu104" if name.startswith("zcu") else "arm_cpu")
        root = roots[name] = vendor_emu.make_fake_root(d / name / "root", family)
        if name == "plain":
            for sub in ("etc/nv_tegra_release", "etc/nvpmodel.conf"):
                (root / sub).unlink(missing_ok=True)
        vbin, pbin = d / name / "vendor-bin", d / name / "bin"
        path = REST_PATH
        hv: dict = {"edgegauge_root": root}
        if family == "jetson":
            (root / "etc/docker").mkdir(parents=True)
            daemon = json.dumps(provision_emu.JETPACK_DAEMON_JSON, indent=4)
            (root / "etc/docker/daemon.json").write_text(daemon)
            fakes[name] = provision_emu.install_tools(
                pbin, d / name / "state", root, tools=("docker", "systemctl", "nvidia-container-runtime"))
            path = f"{pbin}:{REST_PATH}"
            hv.update(mode="container", runtime="tensorrt", image=JETSON_IMAGE, image_archive=jetson_tar,
                      container_args="--runtime nvidia")
            if name == "xavier_jp6":
                hv["image"] = "edgegauge/jetson:0.1-jp6"
        elif family == "x86_a100":
            emu = vendor_emu.install_tools(vbin, d / name / "vendor-state", tools=("nvidia-smi",), root=root)
            fakes[name] = provision_emu.install_tools(pbin, d / name / "state", root,
                                                      tools=("docker", "systemctl", "nvidia-ctk"))
            path = f"{pbin}:{emu.env_path()}"
            hv.update(mode="container", runtime="tensorrt", image=X86_IMAGE, image_archive=x86_tar,
                      container_args="--gpus all")
        elif family == "zcu104":
            emu = vendor_emu.install_tools(vbin, d / name / "vendor-state", tools=("xdputil",), root=root)
            path = emu.env_path()
            env[name] = {"PYTHONPATH": str(mods_bad if name == "zcu_bad" else mods_ok)}
            hv.update(runtime="vart")
            hv["image_archive"] = bundle
            if name == "zcu_bad":
                hv["edgegauge_family"] = "zcu104"  # the override path (the others are detected)
        env.setdefault(name, {})["PATH"] = path
        hosts[name] = hv
    boards = labfix.Boards(d / "boards", names=EMU, env=env)
    inventory = write_ini(d / "emu.ini", boards, hosts)
    return EmuLab(d, boards, inventory, roots, fakes, bundle)


@pytest.fixture(scope="module")
def emu_lab(tmp_path_factory):
    """The emulated lab, provisioned twice: ``first`` (all boards), ``second`` (the good ones)."""
    d = tmp_path_factory.mktemp("provision")
    lab = _emu_lab(d)
    try:
        before = lab.snapshot()
        lab.check_fresh = run_playbook(d / "runner", lab.inventory, check=True)
        after = lab.snapshot()
        lab.untouched = sorted(set(before.items()) ^ set(after.items()))  # [] when nothing changed
        lab.fresh_calls = {name: fake.calls() for name, fake in lab.fakes.items()}
        for fake in lab.fakes.values():
            fake.clear_calls()
        lab.first = run_playbook(d / "runner", lab.inventory)
        lab.touched_by_first = sorted({k for k, _ in set(after.items()) ^ set(lab.snapshot().items())})
        for fake in lab.fakes.values():
            fake.clear_calls()
        lab.second = run_playbook(d / "runner", lab.inventory, limit=",".join(GOOD))
        lab.check_after = run_playbook(d / "runner", lab.inventory, limit=",".join(GOOD), check=True)
        yield lab
    finally:
        lab.boards.close()


def test_first_run_provisions_the_good_boards_and_fails_the_others(emu_lab):
    first = emu_lab.first
    assert first.status == "failed", first.stdout[-3000:]  # xavier_jp6, zcu_bad and plain fail
    for host in GOOD:
        assert first.count("failures", host) == 0, (host, first.failures(host), first.stdout[-4000:])
        assert first.count("changed", host) > 0, host
        assert first.result(host, "Ready for host bench")["msg"].startswith(f"{host}: ")
    for host in ("xavier_jp6", "zcu_bad", "plain"):  # each fails once, on its own problem
        assert first.count("failures", host) == 1, (host, first.stdout[-3000:])
    assert not any(first.count("dark", h) for h in EMU)
    facts = first.result("zcu", "Set the family and the work folder")["ansible_facts"]
    assert facts["provision_common_workdir_path"] == str(emu_lab.boards.workdir("zcu"))


def test_second_run_changes_nothing(emu_lab):
    second = emu_lab.second
    assert second.status == "successful", second.stdout[-4000:]
    assert second.changed() == {h: 0 for h in GOOD}, {h: second.changed_tasks(h) for h in GOOD}
    assert all(second.count("ok", h) > 10 for h in GOOD)
    # nothing was restarted, loaded or configured the second time
    for fake in emu_lab.fakes.values():
        assert not [a for a in fake.argvs("docker") if a[:1] in (["load"], ["pull"])]
        assert not fake.calls("systemctl")
        assert not [a for a in fake.argvs("nvidia-ctk") if a[:1] == ["runtime"]]


def test_check_mode_reports_the_changes_and_changes_nothing(emu_lab):
    fresh = emu_lab.check_fresh
    assert emu_lab.untouched == []  # no file on any board was written, removed or created
    touched = " ".join(emu_lab.touched_by_first)  # ... where the real run changes these:
    assert "daemon.json" in touched and "/opt/edgegauge/VERSION" in touched, touched
    for host in GOOD:  # the good boards would be provisioned: changes reported, no failure
        assert fresh.count("failures", host) == 0, (host, fresh.failures(host), fresh.stdout[-4000:])
        assert fresh.count("changed", host) > 0, host
        assert "would be ready for host bench" in fresh.result(host, "Ready for host bench")["msg"]
    assert "Configure docker for the nvidia runtime" in fresh.changed_tasks("xavier")
    assert "Copy the bundle to the board" in fresh.changed_tasks("zcu")
    for host in ("xavier_jp6", "zcu_bad", "plain"):  # the bad ones fail on the same problem as for real
        assert [t for t, _ in fresh.failures(host)] == [t for t, _ in emu_lab.first.failures(host)], host
    for name, calls in emu_lab.fresh_calls.items():  # the tools were only asked, never told
        asked = [c["argv"][:2] for c in calls]
        assert all(a[0] in ("--version", "info", "image") and a[:2] != ["image", "load"] for a in asked), \
            (name, asked)
        assert not any(c["tool"] in ("systemctl",) for c in calls), (name, calls)
    after = emu_lab.check_after  # provisioned boards: check mode agrees that nothing would change
    assert after.status == "successful", after.stdout[-3000:]
    assert after.changed() == {h: 0 for h in GOOD}, {h: after.changed_tasks(h) for h in GOOD}


def test_family_is_detected_or_taken_from_the_inventory(emu_lab):
    first = emu_lab.first
    task = "Set the family and the work folder"
    got = {h: first.result(h, task)["ansible_facts"]["provision_common_family"] for h in EMU}
    assert got == {"xavier": "jetson", "xavier_jp6": "jetson", "a100": "x86_a100", "zcu": "zcu104",
                   "zcu_bad": "zcu104", "plain": "unknown"}
    ((task, msg),) = first.failures("plain")
    assert task == "Fail when the family is unknown"
    assert msg.startswith("plain: board family could not be detected (x86_64") and "edgegauge_family" in msg


def test_jetson_gets_the_nvidia_default_runtime_a_restart_and_its_jp5_image(emu_lab):
    first, fake = emu_lab.first, emu_lab.fakes["xavier"]
    daemon = json.loads(fake.daemon_json.read_text())
    assert daemon == {"default-runtime": "nvidia", **provision_emu.JETPACK_DAEMON_JSON}
    assert "Configure docker for the nvidia runtime" in first.changed_tasks("xavier")
    restart = "Restart docker for the Jetson nvidia runtime"
    handler = [d for d in first.results("xavier") if d.get("task") == restart]
    assert len(handler) == 1 and handler[0]["res"]["changed"]
    state = fake.state()
    assert state["restarts"] == 1 and state["daemon"]["default-runtime"] == "nvidia"
    assert state["images"] == [JETSON_IMAGE]
    facts = first.result("xavier", "Parse the L4T release")["ansible_facts"]["provision_jetson_l4t"]
    assert facts["major"] == "35" and facts["version"] == "35.3.1"
    # the copied archive is gone again
    assert not (emu_lab.boards.workdir("xavier") / ".provision").exists()


def test_jetson_refuses_a_jetpack6_image_on_an_r35_board(emu_lab):
    ((task, msg),) = emu_lab.first.failures("xavier_jp6")
    assert task == "Check that the image matches the L4T release"
    assert msg.startswith("xavier_jp6: image edgegauge/jetson:0.1-jp6 is a jp6 image")
    assert "R35.3.1" in msg and "needs a jp5 image" in msg and "never run on R35" in msg
    fake = emu_lab.fakes["xavier_jp6"]
    assert not fake.calls("systemctl") and fake.state()["images"] == []


def test_x86_a100_configures_the_toolkit_runtime_once_and_loads_its_image(emu_lab):
    first, fake = emu_lab.first, emu_lab.fakes["a100"]
    daemon = json.loads(fake.daemon_json.read_text())
    assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    changed = first.changed_tasks("a100")
    assert "Configure docker for the nvidia runtime" in changed and "Load the image archive" in changed
    state = fake.state()
    assert state["restarts"] == 1 and "nvidia" in state["daemon"]["runtimes"]
    assert state["images"] == [X86_IMAGE]
    assert first.result("a100", "List the GPUs")["stdout"].startswith("GPU 0: NVIDIA A100")


def test_zcu104_bundle_is_installed_natively_and_the_dpu_answers(emu_lab):
    first = emu_lab.first
    prefix = emu_lab.roots["zcu"] / "opt" / "edgegauge"
    with tarfile.open(emu_lab.bundle) as tar:
        version = tar.extractfile("edgegauge/VERSION").read().decode()
    assert (prefix / "VERSION").read_text() == version and version.strip()
    assert (prefix / ".bundle.tar.gz").read_bytes() == emu_lab.bundle.read_bytes()
    assert (prefix / "runners" / "__main__.py").is_file()
    assert (prefix / "runners" / "backends" / "null.py").is_file()
    dpu = first.result("zcu", "Read the DPU fingerprint")["ansible_facts"]["provision_zcu104_dpu"]
    assert dpu == {"fingerprint": vendor_emu.ZCU104_FINGERPRINT, "arch": "DPUCZDX8G_ISA1_B4096"}
    backends = first.result("zcu", "Run the runner on the board")["stdout"]
    assert "null\tavailable" in backends
    smoke = first.result("zcu", "Run the bundle's smoke test")
    assert smoke["rc"] in (0, 3), smoke  # 3 = PARTIAL: vart imports, no --xmodel given to run
    assert "smoke: " in smoke["stdout"] or smoke["stdout"].startswith("edgegauge bundle")
    if smoke["rc"] == 3:
        assert "PARTIAL (exit 3)" in first.result("zcu", "Report a partial smoke test")["msg"]
    assert "Unpack the bundle" in first.changed_tasks("zcu")


def test_zcu104_whose_vart_does_not_import_fails_naming_host_and_module(emu_lab):
    ((task, msg),) = emu_lab.first.failures("zcu_bad")
    assert task == "Fail when the Vitis AI runtime does not import"
    assert msg.startswith("zcu_bad: the board's python")
    assert "cannot import vart (ImportError: libvart-runner.so.3: cannot open shared object file" in msg
    assert "target_vart_setup.sh" in msg
    assert not (emu_lab.roots["zcu_bad"] / "opt" / "edgegauge").exists()  # nothing installed


# ------------------------------------------------------------------------------------------------
# ARM CPU with the real podman + runc engine
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_arm_cpu_with_podman_loads_the_image_once_and_host_check_says_ready(podman_engine, tmp_path):
    from typer.testing import CliRunner

    from host.cli import app

    image = f"localhost/edgegauge/provision-test:{uuid.uuid4().hex[:8]}"
    archive = tmp_path / "arm-cpu-image.tar"
    subprocess.run(podman_engine.argv("tag", podman_engine.image, image), check=True, capture_output=True)
    try:
        subprocess.run(podman_engine.argv("save", "-o", str(archive), image), check=True, capture_output=True)
        subprocess.run(podman_engine.argv("rmi", image), check=True, capture_output=True)  # untag only
        with labfix.Boards(tmp_path / "boards", names=("rpi",)) as boards:
            inv = boards.write_inventory(
                tmp_path / "rpi.ini", edgegauge_family="arm_cpu", mode="container", runtime="null",
                image=image, image_archive=archive, engine=podman_engine.engine,
                container_args=podman_engine.run_args, ansible_become="false",
                ansible_python_interpreter="/usr/bin/python3")
            first = run_playbook(tmp_path / "runner", inv)
            assert first.status == "successful", first.stdout[-4000:]
            assert "Load the image archive" in first.changed_tasks("rpi")
            assert "Loaded image" in first.result("rpi", "Load the image archive")["stdout"] + \
                first.result("rpi", "Load the image archive")["stderr"]
            second = run_playbook(tmp_path / "runner", inv)
            assert second.status == "successful", second.stdout[-4000:]
            assert second.changed() == {"rpi": 0}, second.changed_tasks("rpi")
            assert not (boards.workdir("rpi") / ".provision").exists()

            res = CliRunner().invoke(app, ["check", "-i", str(inv), "--device", "rpi", "--json"],
                                     env={"COLUMNS": "250"})
            assert res.exit_code == 0, res.output
            (report,) = json.loads(res.stdout)
            assert report["verdict"] == "ready", report
            assert report["facts"]["runtime"].startswith("numpy ")
    finally:
        subprocess.run(podman_engine.argv("rmi", "--force", image), capture_output=True)
