"""Power modes: the probe (runners/power_state.py), the vendor-tool emulators (tests/vendor_emu.py)
and playbooks/power_mode.yml run for real through ansible-runner against loopback sshd boards.

Boards (one per family), each with its emulators first on PATH (sshd SetEnv) and its own fake root
(``edgegauge_root``): ``jet`` (AGX Xavier table, detected by <root>/etc/nv_tegra_release), ``pi``
(``edgegauge_family=arm_cpu``: this machine is x86_64), ``gpu`` (detected: nvidia-smi on x86_64),
``zcu`` (detected: xdputil on PATH). Recipes: docs/testing.md §2-§4.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runners import power_state as ps
from runners.families import detection_table
from tests import labfix
from tests.vendor_emu import (
    FAMILY_TOOLS,
    ZCU104_FINGERPRINT,
    install_tools,
    make_fake_root,
    nvpmodel_conf_text,
    xdputil_query_doc,
)

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = ROOT / "playbooks" / "power_mode.yml"
PROBE = ROOT / "runners" / "power_state.py"
VENV_BIN = Path(sys.executable).parent
FINAL_TASK = "Edgegauge power state"

# ------------------------------------------------------------------------------------------------
# recorded outputs (docs/devices.md §3.1, §3.2)
# ------------------------------------------------------------------------------------------------

Q_PLAIN = "NV Power Mode: MAXN\n0\n"
Q_XAVIER_FAN = "NV Fan Mode:cool\nNV Power Mode: MODE_15W\n2\n"
Q_JP6_WARN = "NVPM WARN: fan mode is not set to cool\nNV Power Mode: MAXN_SUPER\n2\n"
CONF_LINES = "< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n< POWER_MODEL ID=0 NAME=15W >\n< PM_CONFIG DEFAULT=2 >\n"


def test_nvpmodel_query_takes_the_last_all_digit_line():
    assert ps.parse_nvpmodel_q(Q_PLAIN) == {"id": 0, "name": "MAXN"}
    assert ps.parse_nvpmodel_q(Q_XAVIER_FAN) == {"id": 2, "name": "MODE_15W"}
    assert ps.parse_nvpmodel_q(Q_JP6_WARN) == {"id": 2, "name": "MAXN_SUPER"}
    assert ps.parse_nvpmodel_q("NVPM ERROR: something\n") == {"id": None, "name": None}


def test_nvpmodel_conf_ids_names_and_default():
    conf = ps.parse_nvpmodel_conf(CONF_LINES)
    assert conf == {"modes": {"0": "15W", "2": "MAXN_SUPER"}, "default_id": 2}
    xavier = ps.parse_nvpmodel_conf(nvpmodel_conf_text("agx_xavier"))
    assert xavier["modes"]["1"] == "MODE_10W" and xavier["default_id"] == 2 and len(xavier["modes"]) == 7
    nano = ps.parse_nvpmodel_conf(nvpmodel_conf_text("orin_nano_jp62"))
    assert nano["modes"] == {"0": "15W", "1": "25W", "2": "MAXN_SUPER", "3": "7W"}


def test_small_parsers():
    assert ps.parse_nvpmodel_status("pmode:0002 fmode:quiet") == 2
    assert ps.parse_vcgencmd("frequency(48)=1500398464\n") == "1500398464"
    assert ps.parse_vcgencmd("temp=47.2'C") == "47.2'C"
    assert ps.parse_vcgencmd("throttled=0x50005") == "0x50005"
    assert ps.cpu_list("0 1 2 3") == "0-3" and ps.cpu_list("0,2-3,5 6 7") == "0,2-3,5-7"
    rows = ps.parse_nvidia_smi_csv("0, NVIDIA A100-SXM4-40GB, Enabled, 1410, 1410, 400.00, [N/A]\n")
    assert rows[0]["mig.mode.current"] is None and rows[0]["clocks.sm"] == "1410"
    dpu = ps.parse_xdputil_query(json.dumps(xdputil_query_doc({
        "vai_version": "3.0.0", "dpu_arch": "DPUCZDX8G_ISA1_B4096", "dpu_clock_mhz": 300,
        "dpu_fingerprint": ZCU104_FINGERPRINT})))
    assert dpu == {"fingerprint": ZCU104_FINGERPRINT, "clock_mhz": 300, "arch": "DPUCZDX8G_ISA1_B4096",
                   "vai_version": "3.0.0", "cores": 1}


def test_probe_source_is_python38_stdlib_only():
    """The probe and the family descriptors it imports: Python 3.8 syntax, the standard library
    (and runners.families) only."""
    tops = set()
    for path in [PROBE, *sorted((ROOT / "runners" / "families").glob("*.py"))]:
        tree = ast.parse(path.read_text(), feature_version=(3, 8))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                tops.add(node.module)
    tops -= {"runners", "runners.families"}
    assert {t.split(".")[0] for t in tops} <= set(sys.stdlib_module_names), tops


# ------------------------------------------------------------------------------------------------
# probe on fake roots + emulators (no ssh)
# ------------------------------------------------------------------------------------------------


def _emu(tmp_path: Path, family: str, **profile):
    root = make_fake_root(tmp_path / "root", family)
    emu = install_tools(tmp_path / "bin", tmp_path / "state", FAMILY_TOOLS[family], root=root, **profile)
    return root, emu


def _run_probe(argv, path: str, cwd=None):
    env = dict(os.environ, PATH=path, PYTHONPATH="")
    r = subprocess.run([sys.executable, *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_probe_jetson_as_module_and_as_plain_script(tmp_path):
    root, emu = _emu(tmp_path, "jetson", nvpmodel_first_line="NV Fan Mode:cool")
    as_module = _run_probe(["-m", "runners.power_state", "--root", str(root)], emu.env_path(), cwd=ROOT)
    lone = tmp_path / "elsewhere"
    lone.mkdir()
    shutil.copy(PROBE, lone / "power_state.py")  # what ansible.builtin.script ships: the file alone
    table = json.dumps(detection_table())  # what power_mode.yml passes the lone copy
    as_script = _run_probe([str(lone / "power_state.py"), "--root", str(root), "--detection", table],
                           emu.env_path(), cwd=lone)
    for st in (as_module, as_script):
        assert st["schema"] == "edgegauge.power_state/1" and st["family"] == "jetson"
        assert st["nvpmodel"]["id"] == 2 and st["nvpmodel"]["name"] == "MODE_15W"
        assert st["nvpmodel"]["default_id"] == 2 and st["nvpmodel"]["conf"] == "/etc/nvpmodel.conf"
        assert st["jetson_clocks"]["stored"] is False and st["jetson_clocks"]["pinned"] is False
        assert st["cpufreq"]["policy0"]["cpus"] == "0-7" and st["fan"]["pwm"] == 0
        assert st["mode_key"].startswith("nvpmodel=MODE_15W jetson_clocks=off governor=schedutil")
        assert st["errors"] == []
    assert not [c for c in emu.calls() if c["write"]], "the probe must never change anything"


def test_probe_runs_on_python38_when_one_is_installed(tmp_path):
    pyenv = sorted(Path.home().glob(".pyenv/versions/3.8*/bin/python3.8"))
    found = shutil.which("python3.8")
    py38 = pyenv[0] if pyenv else (found if found and "shims" not in found else None)
    if not py38:
        pytest.skip("no python3.8 here (the AST check above still holds the source to 3.8 syntax)")
    root, emu = _emu(tmp_path, "jetson")
    env = dict(os.environ, PATH=emu.env_path(), PYTHONPATH="")
    r = subprocess.run([str(py38), str(PROBE), "--root", str(root)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["nvpmodel"]["name"] == "MODE_15W" and st["errors"] == []


def test_probe_follows_the_emulated_tools(tmp_path, monkeypatch):
    root, emu = _emu(tmp_path, "jetson")
    monkeypatch.setenv("PATH", emu.env_path())
    subprocess.run(["nvpmodel", "-m", "0"], input="no\n", text=True, check=True)
    subprocess.run(["jetson_clocks", "--store", str(tmp_path / "state" / "dfs")], check=True)
    subprocess.run(["jetson_clocks", "--fan"], check=True)
    st = ps.probe(str(root), state_dir=str(tmp_path / "state"))
    assert st["nvpmodel"]["name"] == "MAXN" and st["jetson_clocks"]["pinned"] is True
    assert st["fan"]["pwm"] == 255 and st["cpufreq"]["policy0"]["min_khz"] == 2265600


def test_probe_a100_zcu104_and_rpi(tmp_path, monkeypatch):
    root, emu = _emu(tmp_path / "a", "x86_a100", persistence=True)
    (root / "var/lib/edgegauge").mkdir(parents=True)
    (root / "var/lib/edgegauge/nvidia_lgc.gpu0").write_text("1410,1410\n")
    monkeypatch.setenv("PATH", emu.env_path())
    st = ps.probe(str(root), machine="x86_64")
    assert st["family"] == "x86_a100"
    assert st["gpu"] == [{"index": 0, "name": "NVIDIA A100-SXM4-40GB", "persistence_mode": "Enabled",
                          "clocks_sm_mhz": 210, "clocks_max_sm_mhz": 1410, "locked_sm_clocks": "1410,1410",
                          "power_limit_w": 400.0, "mig_mode": "Disabled"}]
    assert "gpu0=lgc:1410,1410,pm:on,mig:Disabled" in st["mode_key"]

    root, emu = _emu(tmp_path / "z", "zcu104")
    monkeypatch.setenv("PATH", emu.env_path())
    st = ps.probe(str(root), machine="aarch64")
    assert st["family"] == "zcu104" and st["dpu"]["fingerprint"] == ZCU104_FINGERPRINT
    assert st["dpu"]["clock_mhz"] == 300 and "dpu=0x101000016010407@300MHz" in st["mode_key"]

    root, emu = _emu(tmp_path / "p", "arm_cpu", throttled="0x50005")
    monkeypatch.setenv("PATH", emu.env_path())
    st = ps.probe(str(root), machine="aarch64")
    assert st["family"] == "arm_cpu" and st["gpu"] is None and st["nvpmodel"] is None
    assert st["rpi"] == {"arm_clock_hz": 600000398, "temp_c": 47.2, "throttled": "0x50005",
                         "arm_freq_mhz": 1500}
    assert st["mode_key"] == "governor=ondemand max_khz=1500000"


def test_probe_reports_missing_parts_and_still_exits_0(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    bare_path = str(tmp_path / "nobin")
    st = _run_probe([str(PROBE), "--root", str(empty), "--family", "jetson"], bare_path)
    assert st["family"] == "jetson" and st["nvpmodel"] is None and st["cpufreq"] is None
    assert any("nvpmodel" in e for e in st["errors"]) and any("jetson_clocks" in e for e in st["errors"])
    st = _run_probe([str(PROBE), "--root", str(empty)], bare_path)
    assert st["family"] == "unknown"  # x86_64 without vendor tools
    make_fake_root(tmp_path / "j", "jetson")
    st = _run_probe([str(PROBE), "--root", str(tmp_path / "j")], bare_path)
    assert st["family"] == "jetson" and st["nvpmodel"]["id"] == 2  # from /var/lib/nvpmodel/status
    assert any("nvpmodel -q" in e for e in st["errors"])


def test_nvpmodel_reboot_prompt(tmp_path):
    root, emu = _emu(tmp_path, "jetson", prompt_timeout_s=1)
    env = dict(os.environ, PATH=emu.env_path())
    r = subprocess.run(["nvpmodel", "-m", "1"], input="no\n", env=env, capture_output=True, text=True)
    assert "Reboot required for changing to this power mode: 1" in r.stdout
    assert "NVPM ERROR: optMask is 1, no request for power mode" in r.stdout and r.returncode != 0
    assert emu.state()["nvpmodel"]["mode"] == 2
    # stdin left open and silent: the real tool hangs; the emulator gives up after prompt_timeout_s
    p = subprocess.Popen(["nvpmodel", "-m", "1"], stdin=subprocess.PIPE, env=env, stdout=subprocess.PIPE)
    assert p.wait(timeout=30) == 124
    p.stdin.close()
    p.stdout.close()
    assert emu.calls("nvpmodel")[-1].get("hung") is True
    r = subprocess.run(["nvpmodel", "-m", "1"], input="YES\n", env=env, capture_output=True, text=True)
    assert r.returncode == 0 and emu.state()["nvpmodel"]["mode"] == 1
    assert emu.state()["nvpmodel"]["reboot_requested"] is True


# ------------------------------------------------------------------------------------------------
# power_mode.yml through ansible-runner against loopback boards
# ------------------------------------------------------------------------------------------------

BOARDS = {"jet": "jetson", "pi": "arm_cpu", "gpu": "x86_a100", "zcu": "zcu104"}


class Lab:
    def __init__(self, base: Path):
        self.base = base
        self.roots, self.emus = {}, {}
        env = {}
        for name, family in BOARDS.items():
            root = make_fake_root(base / name / "root", family)
            self.roots[name] = root
            self.emus[name] = install_tools(base / name / "bin", base / name / "emu", FAMILY_TOOLS[family],
                                            root=root, prompt_timeout_s=60)
            env[name] = {"PATH": self.emus[name].env_path()}
        self.boards = labfix.Boards(base / "ssh", names=tuple(BOARDS), env=env)
        inv_dir = base / "inventory"
        (inv_dir / "host_vars").mkdir(parents=True)
        self.inventory = self.boards.write_inventory(
            inv_dir / "hosts.ini", ansible_python_interpreter=sys.executable, ansible_become=False)
        for name in BOARDS:
            hv = {"edgegauge_root": str(self.roots[name]), "power_jetson_reboot_delay_s": 0,
                  "power_jetson_verify_delay_s": 1}
            if name == "pi":
                hv["edgegauge_family"] = "arm_cpu"
            (inv_dir / "host_vars" / f"{name}.yml").write_text(json.dumps(hv))
        self.pdd = base / "runner"
        self.pdd.mkdir()
        self.cp_dir = base / "cp"
        self.cp_dir.mkdir()

    def state_dir(self, name: str) -> Path:
        return self.roots[name] / "var/lib/edgegauge"

    def play(self, tags: str, limit=None, timeout: int = 240, **extravars):
        import ansible_runner

        t0 = time.monotonic()
        r = ansible_runner.run(
            private_data_dir=str(self.pdd), playbook=str(PLAYBOOK), inventory=str(self.inventory),
            tags=tags, limit=limit, extravars=extravars, quiet=True, timeout=timeout, rotate_artifacts=4,
            suppress_env_files=True,  # else the first play's extravars come back in every later one
            envvars={"PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
                     # one multiplexed connection per board (~1.5 s per task without it); the
                     # masters live in our own folder and are told to exit at teardown
                     "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s",
                     "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.cp_dir), "ANSIBLE_PIPELINING": "True",
                     "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_NOCOLOR": "1"},
        )
        r.elapsed = time.monotonic() - t0
        print(f"play --tags {tags} limit={limit} {extravars}: {r.status} in {r.elapsed:.1f} s")
        r.final = {}
        r.failures = {}
        for ev in r.events:
            data = ev.get("event_data", {})
            if ev.get("event") == "runner_on_ok" and data.get("task") == FINAL_TASK:
                r.final[data["host"]] = data["res"]["edgegauge_power_state"]
            failed = ev.get("event") in ("runner_on_failed", "runner_on_unreachable")
            if failed and not data.get("ignore_errors"):
                r.failures[data["host"]] = (data.get("task"), data["res"].get("msg", ""))
        return r

    def close(self):
        for sock in self.cp_dir.iterdir():  # end the ssh ControlPersist masters we started
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "board"],
                           capture_output=True, timeout=10)
        self.boards.close()


def _changed(r, host):
    return r.stats.get("changed", {}).get(host, 0) if r.stats else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not shutil.which("ansible-playbook", path=str(VENV_BIN)):
        pytest.skip("ansible-playbook is not in the test venv")
    lab = Lab(tmp_path_factory.mktemp("power"))
    yield lab
    lab.close()


def _mtimes(root: Path):
    return {p: p.stat().st_mtime_ns for p in sorted((root / "sys").rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_show_tune_again_show_reset(lab):
    # show: the untouched boards
    r0 = r = lab.play("show")
    assert r.status == "successful", r.failures
    assert set(r.final) == set(BOARDS)
    assert {h: s["family"] for h, s in r.final.items()} == BOARDS
    assert r.final["jet"]["nvpmodel"]["name"] == "MODE_15W"
    assert r.final["pi"]["cpufreq"]["policy0"]["governor"] == "ondemand"
    assert r.final["gpu"]["gpu"][0]["locked_sm_clocks"] is None
    assert r.final["zcu"]["dpu"]["fingerprint"] == ZCU104_FINGERPRINT
    assert not any(e.writes() for e in lab.emus.values())
    assert all(_changed(r, h) == 0 for h in BOARDS)

    # tune with the role defaults: MAXN + jetson_clocks + fan, performance + max, lgc max
    r = lab.play("tune")
    assert r.status == "successful", r.failures
    assert all(_changed(r, h) > 0 for h in ("jet", "pi", "gpu")) and _changed(r, "zcu") == 0
    jet = r.final["jet"]
    assert jet["nvpmodel"]["name"] == "MAXN" and jet["jetson_clocks"]["pinned"] is True
    assert jet["jetson_clocks"]["stored"] is True and jet["fan"]["pwm"] == 255
    assert jet["mode_key"].startswith("nvpmodel=MAXN jetson_clocks=on")
    assert lab.emus["jet"].state()["nvpmodel"]["mode"] == 0
    assert [c["argv"][:1] for c in lab.emus["jet"].writes()] == [["-m"], ["--store"], ["--fan"]]
    pol = r.final["pi"]["cpufreq"]["policy0"]
    assert (pol["governor"], pol["max_khz"]) == ("performance", 1500000)
    gpu = r.final["gpu"]["gpu"][0]
    assert gpu["persistence_mode"] == "Enabled" and gpu["locked_sm_clocks"] == "1410,1410"
    assert lab.emus["gpu"].state()["gpus"][0]["locked"] == "1410,1410"
    assert sorted(p.name for p in lab.state_dir("jet").iterdir()) == ["l4t_dfs.conf", "nvpmodel.before"]
    assert (lab.state_dir("pi") / "cpufreq.json").exists()

    # a second tune changes nothing and writes nothing
    for e in lab.emus.values():
        e.clear_calls()
    before = {h: _mtimes(lab.roots[h]) for h in BOARDS}
    r2 = lab.play("tune")
    assert r2.status == "successful", r2.failures
    assert all(_changed(r2, h) == 0 for h in BOARDS), r2.stats
    assert {h: e.writes() for h, e in lab.emus.items()} == {h: [] for h in BOARDS}
    assert {h: _mtimes(lab.roots[h]) for h in BOARDS} == before
    assert {h: s["mode_key"] for h, s in r2.final.items()} == {h: s["mode_key"] for h, s in r.final.items()}

    # show reports the tuned state
    r3 = lab.play("show")
    assert r3.status == "successful", r3.failures
    assert r3.final["jet"]["nvpmodel"]["name"] == "MAXN"
    assert r3.final["pi"]["cpufreq"]["policy0"]["governor"] == "performance"
    assert r3.final["gpu"]["gpu"][0]["locked_sm_clocks"] == "1410,1410"

    # reset restores everything and removes the state files
    r4 = lab.play("reset")
    assert r4.status == "successful", r4.failures
    assert r4.final["jet"]["nvpmodel"]["name"] == "MODE_15W"
    assert r4.final["jet"]["jetson_clocks"]["pinned"] is False and r4.final["jet"]["fan"]["pwm"] == 0
    assert r4.final["pi"]["cpufreq"]["policy0"]["governor"] == "ondemand"
    g = r4.final["gpu"]["gpu"][0]
    assert (g["locked_sm_clocks"], g["persistence_mode"]) == (None, "Disabled")
    assert lab.emus["gpu"].state()["gpus"][0]["locked"] is None
    for h in BOARDS:
        assert not lab.state_dir(h).exists() or not list(lab.state_dir(h).iterdir()), h
    assert {h: s["mode_key"] for h, s in r4.final.items()} == {h: s["mode_key"] for h, s in r0.final.items()}
    assert _changed(r4, "jet") > 0 and _changed(r4, "pi") > 0 and _changed(r4, "gpu") > 0


@pytest.mark.slow
def test_reboot_mode_is_refused_unknown_names_fail_and_reboot_when_allowed(lab):
    emu = lab.emus["jet"]
    emu.clear_calls()
    start = emu.state()["nvpmodel"]["mode"]

    r = lab.play("tune", limit="jet", timeout=120, power_mode_name="MODE_10W")
    assert r.status == "failed" and r.elapsed < 100
    task, msg = r.failures["jet"]
    assert "MODE_10W" in msg and "needs a reboot" in msg and "power_allow_reboot" in msg, msg
    assert emu.state()["nvpmodel"]["mode"] == start
    calls = emu.calls("nvpmodel")
    assert [c.get("stdin") for c in calls if c["write"]] == ["no"] and not any(c.get("hung") for c in calls)

    r = lab.play("tune", limit="jet", power_mode_name="MAXQ")
    assert r.status == "failed"
    msg = r.failures["jet"][1]
    assert "'MAXQ'" in msg and "MAXN (0)" in msg and "MODE_10W (1)" in msg, msg
    assert "MODE_30W_2CORE (6)" in msg

    r = lab.play("tune", limit="pi", power_mode_name="turbo")
    assert r.status == "failed" and "performance" in r.failures["pi"][1] and "'turbo'" in r.failures["pi"][1]

    r = lab.play("tune", limit="jet", power_mode_name="mode_10w", power_allow_reboot=True)
    assert r.status == "successful", r.failures
    assert emu.state()["nvpmodel"]["mode"] == 1 and emu.state()["nvpmodel"]["reboot_requested"] is True
    assert r.final["jet"]["nvpmodel"]["name"] == "MODE_10W"
    assert r.final["jet"]["jetson_clocks"]["pinned"] is True

    r = lab.play("reset", limit="jet")
    assert r.status == "successful", r.failures
    assert emu.state()["nvpmodel"]["mode"] == start
