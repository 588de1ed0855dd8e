"""Emulated vendor tools (``nvpmodel``, ``jetson_clocks``, ``nvidia-smi``, ``xdputil``, ``vcgencmd``)
and fake sysfs/etc trees for the playbook and probe tests. Standard library only.

Formats follow docs/devices.md §3.2 (nvpmodel), §3.3 (jetson_clocks), §4.4 (xdputil),
§2 (cpufreq sysfs, vcgencmd), §5 (nvidia-smi). Nothing here was captured on a real board, so the
emulators print what those sources document and plausible text around it.

Stable API (other test modules import it)::

    from tests.vendor_emu import make_fake_root, install_tools, VendorEmu, ALL_TOOLS, FAMILY_TOOLS

    root = make_fake_root(tmp / "root", "jetson")           # or arm_cpu / x86_a100 / zcu104
    emu = install_tools(tmp / "bin", tmp / "state", tools=FAMILY_TOOLS["jetson"],
                        root=root, nvpmodel_mode=2, reboot_modes=("MODE_10W",))
    env = {"PATH": emu.env_path()}                         # emulators first on the board's PATH
    ...
    emu.state()["nvpmodel"]["mode"]; emu.calls("nvpmodel"); emu.writes(); emu.clear_calls()

* :func:`make_fake_root(root, family, **opts) <make_fake_root>` writes ``<root>/sys/devices/system/cpu/
  cpufreq/policy<K>/{scaling_governor, scaling_available_governors, scaling_min_freq, scaling_max_freq,
  scaling_cur_freq, cpuinfo_min_freq, cpuinfo_max_freq, related_cpus}``, ``<root>/proc/device-tree/model``
  and per family: jetson ``<root>/etc/nvpmodel.conf`` (real ``< POWER_MODEL ID=.. NAME=.. >`` /
  ``< PM_CONFIG DEFAULT=.. >`` format; table ``board="agx_xavier"`` or ``"orin_nano_jp62"``),
  ``<root>/etc/nv_tegra_release`` (R35 line), ``<root>/sys/devices/pwm-fan/target_pwm``,
  ``<root>/var/lib/nvpmodel/status``. Returns the root as a :class:`~pathlib.Path`.
* :func:`install_tools(bin_dir, state_dir, tools=ALL_TOOLS, root=None, **profile) <install_tools>`
  writes one executable Python script per tool (shebang = ``sys.executable``) into ``bin_dir`` (give
  ``tools=FAMILY_TOOLS[family]`` so family detection, which looks at PATH, sees one family). They
  keep their state in ``state_dir/state.json`` and append every call to ``state_dir/calls.jsonl``
  (``{"tool", "argv", "write", "stdin"}``; ``write`` is true for calls that change something or try
  to: ``nvpmodel -m``, ``jetson_clocks`` without ``--show``, ``nvidia-smi -pm/-lgc/-rgc/-mig``).
  Profile keys (all optional): ``nvpmodel_mode`` (initial id; default the conf's PM_CONFIG DEFAULT),
  ``reboot_modes`` (mode NAMES whose switch asks for a reboot; default ``("MODE_10W", "7W")`` -- the
  real conf has no such flag), ``nvpmodel_first_line`` (e.g. ``"NV Fan Mode:cool"`` or
  ``"NVPM WARN: fan mode is not set to cool"``, printed before ``-q`` output), ``nvpmodel_refuse_rc``
  (exit status after a refused reboot prompt, default 1), ``prompt_timeout_s`` (an unanswered reboot
  prompt blocks like the real tool, then gives up after this many seconds and logs ``"hung": true``;
  default 60), ``gpus`` (count, default 1), ``gpu_name``, ``persistence`` (bool), ``mig``
  (``"Disabled"``/``"Enabled"``), ``gpu_max_mhz`` (1410), ``power_limit_w`` (400.0), ``driver``,
  ``dpu_fingerprint``, ``dpu_arch``, ``dpu_clock_mhz``, ``vai_version``, ``rpi_temp_c``,
  ``throttled``, ``arm_freq``.
* Tool behaviour: ``nvpmodel -q`` (optional first line, ``NV Power Mode: NAME``, the id alone),
  ``-m ID`` (reads the reboot answer from stdin for reboot modes: ``YES``/``yes`` switches and records
  ``reboot_requested``, anything else prints ``NVPM ERROR: optMask is 1, no request for power mode``
  and keeps the mode; a switch rewrites the fake cpufreq max and unpins clocks), ``-p --verbose``;
  ``jetson_clocks`` (pins cpufreq min=max and GPU/EMC), ``--show``, ``--store [F]``, ``--restore
  [F]`` (default ``$HOME/l4t_dfs.conf``), ``--fan``; ``nvidia-smi`` ``-L``, ``-q [-d
  SUPPORTED_CLOCKS]``, ``--query-gpu=F,.. --format=csv,noheader[,nounits]``, ``[-i N] -pm 0|1``,
  ``[-i N] -lgc MIN,MAX``, ``[-i N] -rgc``; ``xdputil query|status``; ``vcgencmd measure_clock arm |
  measure_temp | get_throttled | get_config arm_freq`` (the ARM clock follows the fake cpufreq).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

ALL_TOOLS = ("nvpmodel", "jetson_clocks", "nvidia-smi", "xdputil", "vcgencmd")
FAMILIES = ("jetson", "arm_cpu", "x86_a100", "zcu104")
#: the tools a board of each family has (installing others would change family detection)
FAMILY_TOOLS = {
    "jetson": ("nvpmodel", "jetson_clocks"),
    "arm_cpu": ("vcgencmd",),
    "x86_a100": ("nvidia-smi",),
    "zcu104": ("xdputil",),
}
CPUFREQ = "sys/devices/system/cpu/cpufreq"
FAN_PWM = "sys/devices/pwm-fan/target_pwm"
TEGRA_RELEASE_R35 = (
    "# R35 (release), REVISION: 3.1, GCID: 32827747, BOARD: t186ref, EABI: aarch64, "
    "DATE: Sun Mar 19 15:19:21 UTC 2023"
)
ZCU104_FINGERPRINT = "0x101000016010407"

#: nvpmodel tables: (id, name, cpu max kHz or -1 = cpuinfo max, gpu max Hz or -1, online cores)
NVPMODEL_TABLES: Dict[str, Dict[str, Any]] = {
    "agx_xavier": {
        "default": 2,
        "cpu_cluster": "CPU_DENVER_0",
        "modes": [
            (0, "MAXN", -1, -1, 8),
            (1, "MODE_10W", 1200000, 520200000, 2),
            (2, "MODE_15W", 1200000, 670000000, 4),
            (3, "MODE_30W_ALL", 1200000, 900000000, 8),
            (4, "MODE_30W_6CORE", 1450000, 900000000, 6),
            (5, "MODE_30W_4CORE", 1780000, 900000000, 4),
            (6, "MODE_30W_2CORE", 2100000, 900000000, 2),
        ],
        "cpuinfo": (115200, 2265600),
        "gpu_hz": (114750000, 1377000000),
        "model": "Jetson-AGX",
    },
    "orin_nano_jp62": {
        "default": 2,
        "cpu_cluster": "CPU_A78_0",
        "modes": [
            (0, "15W", 1497600, 612000000, 6),
            (1, "25W", 1344000, 918000000, 6),
            (2, "MAXN_SUPER", -1, -1, 6),
            (3, "7W", 960000, 408000000, 4),
        ],
        "cpuinfo": (115200, 1728000),
        "gpu_hz": (306000000, 1020000000),
        "model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
    },
}

#: family -> cpufreq policies {name: (related_cpus, governor, available, cpuinfo_min, cpuinfo_max)}
_POLICIES = {
    "arm_cpu": {"policy0": ("0 1 2 3", "ondemand", "conservative ondemand userspace powersave "
                            "performance schedutil", 600000, 1500000)},
    "jetson": {"policy0": ("0 1 2 3 4 5 6 7", "schedutil", "interactive conservative ondemand "
                           "userspace powersave performance schedutil", 115200, 2265600)},
    "zcu104": {"policy0": ("0 1 2 3", "ondemand", "ondemand userspace performance", 299999, 1199999)},
    "x86_a100": {"policy0": ("0", "powersave", "performance powersave", 800000, 3500000),
                 "policy1": ("1", "powersave", "performance powersave", 800000, 3500000)},
}
_MODELS = {
    "arm_cpu": "Raspberry Pi 4 Model B Rev 1.4",
    "zcu104": "ZynqMP ZCU104 RevC",
}


# ------------------------------------------------------------------------------------------------
# fake root
# ------------------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def nvpmodel_conf_text(board: str = "agx_xavier") -> str:
    """An ``/etc/nvpmodel.conf`` in the real layout (PARAM blocks, POWER_MODEL blocks, PM_CONFIG)."""
    table = NVPMODEL_TABLES[board]
    cl = table["cpu_cluster"]
    ncpu = max(m[4] for m in table["modes"])
    lines = [
        "#",
        "# Copyright (c) NVIDIA CORPORATION.  All rights reserved.  (edgegauge test emulation)",
        "#",
        "< PARAM TYPE=FILE NAME=CPU_ONLINE >",
        *[f"CORE_{i} /sys/devices/system/cpu/cpu{i}/online" for i in range(ncpu)],
        "",
        f"< PARAM TYPE=CLOCK NAME={cl} >",
        "FREQ_TABLE /sys/devices/system/cpu/cpu0/cpufreq/scaling_available_frequencies",
        "MAX_FREQ /sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq",
        "MIN_FREQ /sys/devices/system/cpu/cpu0/cpufreq/scaling_min_freq",
        "",
        "< PARAM TYPE=CLOCK NAME=GPU >",
        "MAX_FREQ /sys/devices/gpu.0/devfreq/17000000.gv11b/max_freq",
        "",
    ]
    for mid, name, cpu_max, gpu_max, online in table["modes"]:
        lines.append(f"< POWER_MODEL ID={mid} NAME={name} >")
        lines += [f"CPU_ONLINE CORE_{i} {1 if i < online else 0}" for i in range(ncpu)]
        lines += [f"{cl} MIN_FREQ 0", f"{cl} MAX_FREQ {cpu_max}"]
        lines += ["GPU MIN_FREQ 0", f"GPU MAX_FREQ {gpu_max}", ""]
    lines.append(f"< PM_CONFIG DEFAULT={table['default']} >")
    return "\n".join(lines) + "\n"


def make_fake_root(
    root: os.PathLike,
    family: str,
    *,
    board: str = "agx_xavier",
    policies: Optional[Dict[str, Sequence[Any]]] = None,
    governor: Optional[str] = None,
    tegra_release: str = TEGRA_RELEASE_R35,
    model: Optional[str] = None,
) -> Path:
    """Write a fake ``/sys``, ``/proc``, ``/etc`` tree for ``family`` under ``root``; return ``root``.

    ``policies``: ``{"policy0": (related_cpus, governor, available_governors, cpuinfo_min_khz,
    cpuinfo_max_khz), ...}`` to replace the family's default; ``governor`` overrides every policy's
    starting governor. scaling_min/max start at cpuinfo min/max, scaling_cur at the min.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; families: {FAMILIES}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    pols = dict(policies or _POLICIES[family])
    table = NVPMODEL_TABLES.get(board) if family == "jetson" else None
    for pname, (cpus, gov, avail, fmin, fmax) in pols.items():
        smax = None
        if table:
            fmin, fmax = table["cpuinfo"]
            cpu_max = next(m[2] for m in table["modes"] if m[0] == table["default"])
            smax = fmax if cpu_max < 0 else min(cpu_max, fmax)
        d = root / CPUFREQ / pname
        values = {
            "related_cpus": cpus,
            "affected_cpus": cpus,
            "scaling_governor": governor or gov,
            "scaling_available_governors": avail,
            "scaling_driver": "tegra194" if family == "jetson" else "cpufreq-dt",
            "cpuinfo_min_freq": fmin,
            "cpuinfo_max_freq": fmax,
            "scaling_min_freq": fmin,
            "scaling_max_freq": smax or fmax,
            "scaling_cur_freq": fmin,
        }
        for key, value in values.items():
            _write(d / key, f"{value}\n")
    model = model or (table["model"] if table else _MODELS.get(family))
    if model:
        _write(root / "proc/device-tree/model", model + "\0")
    if family == "jetson":
        _write(root / "etc/nvpmodel.conf", nvpmodel_conf_text(board))
        _write(root / "etc/nv_tegra_release", tegra_release + "\n")
        _write(root / FAN_PWM, "0\n")
        _write(root / "var/lib/nvpmodel/status", f"pmode:{table['default']:04d} fmode:quiet\n")
    return root


# ------------------------------------------------------------------------------------------------
# installing the tools
# ------------------------------------------------------------------------------------------------

_STUB = """\
#!{python}
# edgegauge test emulator for {tool!r}: see {module}
import sys
sys.path.insert(0, {moddir!r})
from {modname} import main
sys.exit(main({tool!r}, {state_dir!r}, sys.argv[1:]))
"""


def write_tool_scripts(bin_dir: Path, state_dir: Path, state: Dict[str, Any], tools: Iterable[str],
                       known: Sequence[str], module_file: str) -> None:
    """Start fresh emulators: ``state_dir/state.json`` = ``state``, no ``calls.jsonl``, and one
    executable script per tool in ``bin_dir`` that runs ``main(tool, state_dir, argv)`` of the
    module at ``module_file`` (this one, or tests/provision_emu.py).

    Raises:
        ValueError: a tool not in ``known``.
    """
    (state_dir / "state.json").write_text(json.dumps(state, indent=1))
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "calls.jsonl").unlink()
    module = Path(module_file).resolve()
    for tool in tools:
        if tool not in known:
            raise ValueError(f"unknown tool {tool!r}; tools: {tuple(known)}")
        path = bin_dir / tool
        path.write_text(_STUB.format(python=sys.executable, tool=tool, module=module,
                                     moddir=str(module.parent), modname=module.stem,
                                     state_dir=str(state_dir)))
        path.chmod(0o755)

_DEFAULT_PROFILE: Dict[str, Any] = {
    "nvpmodel_mode": None,
    "reboot_modes": ["MODE_10W", "7W"],
    "nvpmodel_first_line": None,
    "nvpmodel_refuse_rc": 1,
    "prompt_timeout_s": 60,
    "gpus": 1,
    "gpu_name": "NVIDIA A100-SXM4-40GB",
    "persistence": False,
    "mig": "Disabled",
    "gpu_max_mhz": 1410,
    "gpu_idle_mhz": 210,
    "power_limit_w": 400.0,
    "driver": "535.104.05",
    "cuda": "12.2",
    "dpu_fingerprint": ZCU104_FINGERPRINT,
    "dpu_arch": "DPUCZDX8G_ISA1_B4096",
    "dpu_clock_mhz": 300,
    "vai_version": "3.0.0",
    "rpi_temp_c": 47.2,
    "throttled": "0x0",
    "arm_freq": 1500,
}


class VendorEmu:
    """Handle on installed emulators: ``bin_dir``, ``state_dir``, ``root`` (or None)."""

    def __init__(self, bin_dir: Path, state_dir: Path, root: Optional[Path]):
        self.bin_dir, self.state_dir, self.root = Path(bin_dir), Path(state_dir), root

    def env_path(self, rest: str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") -> str:
        """A ``PATH`` with the emulators first."""
        return f"{self.bin_dir}:{rest}"

    def state(self) -> Dict[str, Any]:
        return _load(self.state_dir)

    def update(self, **changes: Any) -> None:
        """Shallow-update the state (e.g. ``update(profile={...})`` or ``update(nvpmodel={...})``)."""
        with _locked(self.state_dir) as st:
            for key, value in changes.items():
                if isinstance(value, dict) and isinstance(st.get(key), dict):
                    st[key].update(value)
                else:
                    st[key] = value

    def calls(self, tool: Optional[str] = None) -> List[Dict[str, Any]]:
        path = self.state_dir / "calls.jsonl"
        if not path.exists():
            return []
        out = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [c for c in out if tool is None or c["tool"] == tool]

    def writes(self) -> List[Dict[str, Any]]:
        """Calls that changed something or tried to."""
        return [c for c in self.calls() if c["write"]]

    def clear_calls(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "calls.jsonl").unlink()


def install_tools(
    bin_dir: os.PathLike,
    state_dir: os.PathLike,
    tools: Iterable[str] = ALL_TOOLS,
    root: Optional[os.PathLike] = None,
    **profile: Any,
) -> VendorEmu:
    """Write the emulators for ``tools`` into ``bin_dir`` and a fresh state into ``state_dir``."""
    unknown = set(profile) - set(_DEFAULT_PROFILE)
    if unknown:
        raise TypeError(f"unknown emulator profile keys {sorted(unknown)}; known: {sorted(_DEFAULT_PROFILE)}")
    bin_dir, state_dir = Path(bin_dir), Path(state_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    prof = {**_DEFAULT_PROFILE, **profile}
    prof["reboot_modes"] = list(prof["reboot_modes"])
    root_p = Path(root) if root is not None else None
    mode = prof["nvpmodel_mode"]
    if mode is None and root_p is not None and (root_p / "etc/nvpmodel.conf").exists():
        mode = _parse_conf(root_p / "etc/nvpmodel.conf")["default"]
    if prof["nvpmodel_mode"] is not None and root_p is not None and (root_p / "etc/nvpmodel.conf").exists():
        _apply_sysfs(root_p, _parse_conf(root_p / "etc/nvpmodel.conf")["modes"], int(mode))
    gpus = [
        {"persistence": bool(prof["persistence"]), "mig": prof["mig"], "locked": None,
         "sm_mhz": prof["gpu_idle_mhz"]}
        for _ in range(int(prof["gpus"]))
    ]
    state = {
        "root": str(root_p) if root_p else None,
        "profile": prof,
        "nvpmodel": {"mode": mode, "reboot_requested": False, "reboots": 0},
        "jetson_clocks": {"pinned": False, "gpu_min_hz": None, "emc_override": 0},
        "gpus": gpus,
    }
    write_tool_scripts(bin_dir, state_dir, state, tools, ALL_TOOLS, __file__)
    return VendorEmu(bin_dir, state_dir, root_p)


# ------------------------------------------------------------------------------------------------
# state helpers
# ------------------------------------------------------------------------------------------------


def _load(state_dir: Path) -> Dict[str, Any]:
    return json.loads((Path(state_dir) / "state.json").read_text())


@contextlib.contextmanager
def _locked(state_dir: Path):
    state_dir = Path(state_dir)
    with open(state_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            st = _load(state_dir)
            yield st
            tmp = state_dir / "state.json.tmp"
            tmp.write_text(json.dumps(st, indent=1))
            os.replace(tmp, state_dir / "state.json")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _log(state_dir: Path, tool: str, argv: List[str], write: bool, **extra: Any) -> None:
    rec = {"tool": tool, "argv": argv, "write": write, "t": round(time.time(), 3), **extra}
    with open(Path(state_dir) / "calls.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")


def _parse_conf(path: Path) -> Dict[str, Any]:
    """Modes (id -> {name, cpu_max, gpu_max}) and default id from an nvpmodel.conf."""
    modes: Dict[int, Dict[str, Any]] = {}
    default = None
    current = None
    for line in Path(path).read_text().splitlines():
        m = re.match(r"\s*<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+)\s*>", line)
        if m:
            current = int(m.group(1))
            modes[current] = {"name": m.group(2), "cpu_max": -1, "gpu_max": -1}
            continue
        m = re.match(r"\s*<\s*PM_CONFIG\s+DEFAULT=(\d+)\s*>", line)
        if m:
            default = int(m.group(1))
            current = None
            continue
        if line.lstrip().startswith("<"):
            current = None
            continue
        m = re.match(r"\s*(CPU\S*|GPU)\s+MAX_FREQ\s+(-?\d+)", line)
        if m and current is not None:
            modes[current]["gpu_max" if m.group(1) == "GPU" else "cpu_max"] = int(m.group(2))
    return {"modes": modes, "default": default}


def _root(st: Dict[str, Any]) -> Path:
    if not st.get("root"):
        raise SystemExit("emulator: no fake root configured (install_tools(root=...))")
    return Path(st["root"])


def _rd(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def _policies(root: Path) -> List[Path]:
    base = root / CPUFREQ
    return sorted(base.glob("policy*")) if base.is_dir() else []


# ------------------------------------------------------------------------------------------------
# nvpmodel
# ------------------------------------------------------------------------------------------------


def _nvpmodel(state_dir: Path, argv: List[str]) -> int:
    st = _load(state_dir)
    root = _root(st)
    prof = st["profile"]
    conf_path = root / "etc/nvpmodel.conf"
    try:
        conf = _parse_conf(conf_path)
    except OSError:
        print(f"NVPM ERROR: failed to read config file {conf_path}", file=sys.stderr)
        _log(state_dir, "nvpmodel", argv, False)
        return 1
    modes = conf["modes"]
    if "-q" in argv:
        _log(state_dir, "nvpmodel", argv, False)
        if prof.get("nvpmodel_first_line"):
            print(prof["nvpmodel_first_line"])
        mid = st["nvpmodel"]["mode"]
        print(f"NV Power Mode: {modes[mid]['name']}")
        print(mid)
        return 0
    if "-p" in argv:
        _log(state_dir, "nvpmodel", argv, False)
        print(f"NVPM VERB: Config file: {conf_path}")
        print(f"NVPM VERB: parsing done for {conf_path}")
        for mid, mode in sorted(modes.items()):
            print(f"NVPM VERB: POWER_MODEL: ID={mid} NAME={mode['name']}")
        print(f"NVPM VERB: PM_CONFIG: DEFAULT={conf['default']}")
        return 0
    if "-m" in argv:
        i = argv.index("-m")
        arg = argv[i + 1] if i + 1 < len(argv) else ""
        if not arg.isdigit() or int(arg) not in modes:
            _log(state_dir, "nvpmodel", argv, True)
            print(f"NVPM ERROR: Invalid power mode ID: {arg}", file=sys.stderr)
            return 1
        target = int(arg)
        name = modes[target]["name"]
        cur = st["nvpmodel"]["mode"]
        if target != cur and name in prof["reboot_modes"]:
            print(f"NVPM WARN: Reboot required for changing to this power mode: {target}")
            print("NVPM WARN: DO YOU WANT TO REBOOT NOW? enter YES/yes to confirm:", flush=True)
            ready, _, _ = select.select([sys.stdin], [], [], float(prof["prompt_timeout_s"]))
            if not ready:
                _log(state_dir, "nvpmodel", argv, True, hung=True)
                print("EMULATOR: nobody answered the reboot prompt (stdin left open)", file=sys.stderr)
                return 124
            answer = sys.stdin.readline().strip()
            _log(state_dir, "nvpmodel", argv, True, stdin=answer)
            if answer not in ("YES", "yes"):
                print("NVPM ERROR: optMask is 1, no request for power mode")
                return int(prof["nvpmodel_refuse_rc"])
            with _locked(state_dir) as s2:
                s2["nvpmodel"].update(reboot_requested=True, reboots=s2["nvpmodel"]["reboots"] + 1)
            _apply_mode(state_dir, root, modes, target)
            return 0
        _log(state_dir, "nvpmodel", argv, True)
        _apply_mode(state_dir, root, modes, target)
        return 0
    _log(state_dir, "nvpmodel", argv, False)
    print("Usage: nvpmodel [-m <id>] [-q] [-p --verbose] [-d cool|quiet]", file=sys.stderr)
    return 1


def _apply_mode(state_dir: Path, root: Path, modes: Dict[int, Dict[str, Any]], target: int) -> None:
    _apply_sysfs(root, modes, target)
    with _locked(state_dir) as st:
        st["nvpmodel"]["mode"] = target
        st["jetson_clocks"].update(pinned=False, emc_override=0)


def _apply_sysfs(root: Path, modes: Dict[int, Dict[str, Any]], target: int) -> None:
    """What a mode switch does to cpufreq: max = the mode's CPU max, min = cpuinfo min."""
    cpu_max = modes[target]["cpu_max"]
    for pol in _policies(root):
        info_max = int(_rd(pol / "cpuinfo_max_freq", "0") or 0)
        info_min = _rd(pol / "cpuinfo_min_freq", "0")
        new_max = info_max if cpu_max < 0 else min(cpu_max, info_max)
        (pol / "scaling_max_freq").write_text(f"{new_max}\n")
        (pol / "scaling_min_freq").write_text(f"{info_min}\n")
        (pol / "scaling_cur_freq").write_text(f"{info_min}\n")
    with contextlib.suppress(OSError):
        (root / "var/lib/nvpmodel/status").write_text(f"pmode:{target:04d} fmode:quiet\n")


# ------------------------------------------------------------------------------------------------
# jetson_clocks
# ------------------------------------------------------------------------------------------------


def _gpu_hz(st: Dict[str, Any], root: Path) -> Dict[str, int]:
    conf = _parse_conf(root / "etc/nvpmodel.conf")
    table = next((t for t in NVPMODEL_TABLES.values()
                  if [m[1] for m in t["modes"]] == [conf["modes"][k]["name"] for k in sorted(conf["modes"])]),
                 NVPMODEL_TABLES["agx_xavier"])
    gmin, gmax_hw = table["gpu_hz"]
    gmax = conf["modes"][st["nvpmodel"]["mode"]]["gpu_max"]
    gmax = gmax_hw if gmax < 0 else gmax
    pinned = st["jetson_clocks"]["pinned"]
    return {"min": gmax if pinned else gmin, "max": gmax, "cur": gmax if pinned else gmin}


def _jetson_clocks(state_dir: Path, argv: List[str]) -> int:
    st = _load(state_dir)
    root = _root(st)
    home = os.environ.get("HOME", "/root")
    conf = _parse_conf(root / "etc/nvpmodel.conf")
    if "--show" in argv:
        _log(state_dir, "jetson_clocks", argv, False)
        table_model = _rd(root / "proc/device-tree/model").rstrip("\0")
        print(f"SOC family:tegra194  Machine:{table_model}")
        cpus: List[str] = []
        for pol in _policies(root):
            cpus += _rd(pol / "related_cpus").split()
        print(f"Online CPUs: {_cpu_range(cpus)}")
        for pol in _policies(root):
            gov = _rd(pol / "scaling_governor")
            fmin, fmax, cur = (_rd(pol / f"scaling_{k}_freq") for k in ("min", "max", "cur"))
            if st["jetson_clocks"]["pinned"]:
                cur = fmax
            for cpu in _rd(pol / "related_cpus").split():
                print(f"cpu{cpu}: Online=1 Governor={gov} MinFreq={fmin} MaxFreq={fmax} "
                      f"CurrentFreq={cur} IdleStates: C1=1 c6=1 ")
        g = _gpu_hz(st, root)
        print(f"GPU MinFreq={g['min']} MaxFreq={g['max']} CurrentFreq={g['cur']}")
        emc = 2133000000
        print(f"EMC MinFreq=204000000 MaxFreq={emc} CurrentFreq={emc} "
              f"FreqOverride={st['jetson_clocks']['emc_override']}")
        print(f"Fan: PWM={_rd(root / FAN_PWM, '0')}")
        print(f"NV Power Mode: {conf['modes'][st['nvpmodel']['mode']]['name']}")
        return 0
    _log(state_dir, "jetson_clocks", argv, True)
    if "--store" in argv:
        f = _opt_file(argv, "--store", home)
        lines = []
        for pol in _policies(root):
            for key in ("scaling_governor", "scaling_min_freq", "scaling_max_freq"):
                lines.append(f"/{(pol / key).relative_to(root)}:{_rd(pol / key)}")
        if (root / FAN_PWM).exists():
            lines.append(f"/{FAN_PWM}:{_rd(root / FAN_PWM)}")
        lines.append(f"emulator:pinned:{int(st['jetson_clocks']['pinned'])}")
        lines.append(f"emulator:emc_override:{st['jetson_clocks']['emc_override']}")
        Path(f).parent.mkdir(parents=True, exist_ok=True)
        Path(f).write_text("\n".join(lines) + "\n")
        return 0
    if "--restore" in argv:
        f = Path(_opt_file(argv, "--restore", home))
        if not f.exists():
            print(f"Error: {f} file doesn't exist!", file=sys.stderr)
            return 1
        pinned, emc = False, 0
        for line in f.read_text().splitlines():
            if line.startswith("emulator:pinned:"):
                pinned = line.rsplit(":", 1)[1] == "1"
            elif line.startswith("emulator:emc_override:"):
                emc = int(line.rsplit(":", 1)[1])
            elif ":" in line:
                path, value = line.rsplit(":", 1)
                target = root / path.lstrip("/")
                if target.exists():
                    target.write_text(value + "\n")
        for pol in _policies(root):
            (pol / "scaling_cur_freq").write_text(_rd(pol / "scaling_min_freq") + "\n")
        with _locked(state_dir) as s2:
            s2["jetson_clocks"].update(pinned=pinned, emc_override=emc)
        return 0
    for pol in _policies(root):  # plain run (or --fan): pin min = max
        (pol / "scaling_min_freq").write_text(_rd(pol / "scaling_max_freq") + "\n")
        (pol / "scaling_cur_freq").write_text(_rd(pol / "scaling_max_freq") + "\n")
    with _locked(state_dir) as s2:
        s2["jetson_clocks"].update(pinned=True, emc_override=1)
    if "--fan" in argv and (root / FAN_PWM).exists():
        (root / FAN_PWM).write_text("255\n")
    return 0


def _opt_file(argv: List[str], opt: str, home: str) -> str:
    i = argv.index(opt)
    if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
        return argv[i + 1]
    return os.path.join(home, "l4t_dfs.conf")


def _cpu_range(cpus: List[str]) -> str:
    nums = sorted({int(c) for c in cpus})
    if not nums:
        return ""
    if nums == list(range(nums[0], nums[-1] + 1)):
        return f"{nums[0]}-{nums[-1]}" if len(nums) > 1 else str(nums[0])
    return ",".join(str(n) for n in nums)


# ------------------------------------------------------------------------------------------------
# nvidia-smi
# ------------------------------------------------------------------------------------------------


def _bus(i: int) -> str:
    return f"00000000:{7 + i * 8:02X}:00.0"


def _supported(prof: Dict[str, Any]) -> List[int]:
    top = int(prof["gpu_max_mhz"])
    return [top - 15 * k for k in range((top - 210) // 15 + 1)]


def _gpu_values(st: Dict[str, Any], i: int) -> Dict[str, str]:
    prof, g = st["profile"], st["gpus"][i]
    sm = g["sm_mhz"]
    if g["locked"]:
        sm = int(g["locked"].split(",")[1])
    return {
        "index": str(i),
        "name": prof["gpu_name"],
        "uuid": f"GPU-0000000{i}-1111-2222-3333-444444444444",
        "pci.bus_id": _bus(i),
        "driver_version": prof["driver"],
        "persistence_mode": "Enabled" if g["persistence"] else "Disabled",
        "clocks.sm": str(sm),
        "clocks.gr": str(sm),
        "clocks.mem": "1215",
        "clocks.max.sm": str(prof["gpu_max_mhz"]),
        "clocks.max.gr": str(prof["gpu_max_mhz"]),
        "clocks.max.graphics": str(prof["gpu_max_mhz"]),
        "clocks.max.mem": "1215",
        "power.limit": f"{float(prof['power_limit_w']):.2f}",
        "power.draw": "54.31",
        "temperature.gpu": "31",
        "utilization.gpu": "0",
        "mig.mode.current": g["mig"],
        "mig.mode.pending": g["mig"],
        "timestamp": time.strftime("%Y/%m/%d %H:%M:%S.000"),
    }


_UNITS = {"clocks.sm": " MHz", "clocks.gr": " MHz", "clocks.mem": " MHz", "clocks.max.sm": " MHz",
          "clocks.max.gr": " MHz", "clocks.max.graphics": " MHz", "clocks.max.mem": " MHz",
          "power.limit": " W", "power.draw": " W", "utilization.gpu": " %"}


def _nvidia_smi(state_dir: Path, argv: List[str]) -> int:
    st = _load(state_dir)
    prof = st["profile"]
    n = len(st["gpus"])
    idx = list(range(n))
    if "-i" in argv:
        v = argv[argv.index("-i") + 1]
        if not v.isdigit() or int(v) >= n:
            _log(state_dir, "nvidia-smi", argv, False)
            print(f"No devices were found matching the id {v!r}", file=sys.stderr)
            return 6
        idx = [int(v)]
    write = any(a in argv for a in ("-pm", "-lgc", "-rgc", "-mig", "--persistence-mode"))
    _log(state_dir, "nvidia-smi", argv, write)
    if "-L" in argv:
        for i in idx:
            v = _gpu_values(st, i)
            print(f"GPU {i}: {v['name']} (UUID: {v['uuid']})")
        return 0
    query = next((a for a in argv if a.startswith("--query-gpu=")), None)
    if query:
        fields = query.split("=", 1)[1].split(",")
        fmt = next((a.split("=", 1)[1] for a in argv if a.startswith("--format=")), "")
        if "csv" not in fmt.split(","):
            print('"--format" option is required with --query-gpu', file=sys.stderr)
            return 2
        for f in fields:
            if f not in _gpu_values(st, 0):
                print(f'Field "{f}" is not a valid field to query.', file=sys.stderr)
                return 2
        if "noheader" not in fmt:
            print(", ".join(f + (f" [{_UNITS[f].strip()}]" if f in _UNITS and "nounits" not in fmt else "")
                            for f in fields))
        for i in idx:
            vals = _gpu_values(st, i)
            print(", ".join(vals[f] + ("" if "nounits" in fmt else _UNITS.get(f, "")) for f in fields))
        return 0
    if "-pm" in argv:
        v = argv[argv.index("-pm") + 1]
        if v not in ("0", "1"):
            print(f'Invalid value "{v}" for -pm', file=sys.stderr)
            return 2
        on = v == "1"
        with _locked(state_dir) as s2:
            for i in idx:
                word = "Enabled" if on else "Disabled"
                if s2["gpus"][i]["persistence"] == on:
                    print(f"Persistence mode is already {word} for GPU {_bus(i)}.")
                else:
                    s2["gpus"][i]["persistence"] = on
                    print(f"{word} persistence mode for GPU {_bus(i)}.")
        print("All done.")
        return 0
    if "-lgc" in argv:
        v = argv[argv.index("-lgc") + 1]
        m = re.fullmatch(r"(\d+),(\d+)", v)
        if not m or int(m.group(1)) > int(m.group(2)):
            print(f'Invalid clock values "{v}"', file=sys.stderr)
            return 2
        if os.environ.get("EDGEGAUGE_EMU_NONROOT") == "1":
            print("Setting locked GPU clocks is not supported for GPU... Insufficient Permissions",
                  file=sys.stderr)
            return 4
        lo, hi = (min(int(x), int(prof["gpu_max_mhz"])) for x in m.groups())
        with _locked(state_dir) as s2:
            for i in idx:
                s2["gpus"][i]["locked"] = f"{lo},{hi}"
                print(f'GPU clocks set to "(gpuClkMin {lo}, gpuClkMax {hi})" for GPU {_bus(i)}')
        print("All done.")
        return 0
    if "-rgc" in argv:
        with _locked(state_dir) as s2:
            for i in idx:
                s2["gpus"][i]["locked"] = None
                print(f"All done. GPU clocks reset for GPU {_bus(i)}")
        return 0
    if "-mig" in argv:
        v = argv[argv.index("-mig") + 1]
        with _locked(state_dir) as s2:
            for i in idx:
                s2["gpus"][i]["mig"] = "Enabled" if v == "1" else "Disabled"
                print(f"{s2['gpus'][i]['mig']} MIG Mode for GPU {_bus(i)}.")
        print("All done.")
        return 0
    if "-q" in argv:
        _print_q(st, idx, argv)
        return 0
    # bare nvidia-smi: a short table
    print("+---------------------------------------------------------------------------------------+")
    print(f"| NVIDIA-SMI {prof['driver']}   Driver Version: {prof['driver']}   "
          f"CUDA Version: {prof['cuda']} |")
    for i in idx:
        v = _gpu_values(st, i)
        print(f"|   {i}  {v['name']}  {'On' if v['persistence_mode'] == 'Enabled' else 'Off'}  | {_bus(i)} |")
    return 0


def _print_q(st: Dict[str, Any], idx: List[int], argv: List[str]) -> None:
    prof = st["profile"]
    display = argv[argv.index("-d") + 1].upper() if "-d" in argv else ""
    print("\n==============NVSMI LOG==============\n")
    print(f"Timestamp                                 : {time.strftime('%a %b %d %H:%M:%S %Y')}")
    print(f"Driver Version                            : {prof['driver']}")
    print(f"CUDA Version                              : {prof['cuda']}\n")
    print(f"Attached GPUs                             : {len(st['gpus'])}")
    for i in idx:
        v = _gpu_values(st, i)
        print(f"GPU {_bus(i)}")
        if display == "SUPPORTED_CLOCKS":
            print("    Supported Clocks")
            print("        Memory                            : 1215 MHz")
            for mhz in _supported(prof):
                print(f"            Graphics                      : {mhz} MHz")
            continue
        print(f"    Product Name                          : {v['name']}")
        print(f"    Persistence Mode                      : {v['persistence_mode']}")
        print("    MIG Mode")
        print(f"        Current                           : {v['mig.mode.current']}")
        print(f"        Pending                           : {v['mig.mode.pending']}")
        print(f"    GPU UUID                              : {v['uuid']}")
        print("    Power Readings")
        print(f"        Power Draw                        : {v['power.draw']} W")
        print(f"        Current Power Limit               : {v['power.limit']} W")
        print("    Clocks")
        print(f"        Graphics                          : {v['clocks.gr']} MHz")
        print(f"        SM                                : {v['clocks.sm']} MHz")
        print("        Memory                            : 1215 MHz")
        print("    Max Clocks")
        print(f"        Graphics                          : {prof['gpu_max_mhz']} MHz")
        print(f"        SM                                : {prof['gpu_max_mhz']} MHz")
        print("        Memory                            : 1215 MHz")


# ------------------------------------------------------------------------------------------------
# xdputil, vcgencmd
# ------------------------------------------------------------------------------------------------


def xdputil_query_doc(prof: Dict[str, Any]) -> Dict[str, Any]:
    vai = prof["vai_version"]
    return {
        "DPU IP Spec": {
            "DPU Core Count": 1,
            "IP version": "v4.1.0",
            "generation timestamp": "2022-08-05 12-30-00",
            "git commit id": "ad1b6b8",
            "git commit time": 2022080512,
            "regmap": "1to1 version",
        },
        "VAI Version": {
            "libvart-runner.so": f"Xilinx vart-runner Version: {vai}-e3ce4f2b2e52e7c3a0c95a2f5ab0",
            "libvitis_ai_library-dpu_task.so": f"Xilinx vitis_ai_library dpu_task Version: {vai}",
            "libxir.so": f"Xilinx xir Version: xir-{vai}",
            "target_factory": f"target-factory.{vai}-7b5b2b1c",
        },
        "kernels": [
            {
                "DPU Arch": prof["dpu_arch"],
                "DPU Frequency (MHz)": prof["dpu_clock_mhz"],
                "IP Type": "DPU",
                "Load Parallel": 2,
                "Load augmentation": "enable",
                "Load minus mean": "disable",
                "Save Parallel": 2,
                "XRT Frequency (MHz)": prof["dpu_clock_mhz"],
                "cu_addr": "0x80000000",
                "cu_handle": "0xaaaae1e4c0f0",
                "cu_idx": 0,
                "cu_mask": 1,
                "cu_name": "DPUCZDX8G:DPUCZDX8G_1",
                "device_id": 0,
                "fingerprint": prof["dpu_fingerprint"],
                "name": "DPU Core 0",
            }
        ],
    }


def _xdputil(state_dir: Path, argv: List[str]) -> int:
    st = _load(state_dir)
    _log(state_dir, "xdputil", argv, False)
    cmd = argv[0] if argv else ""
    if cmd == "query":
        print(json.dumps(xdputil_query_doc(st["profile"]), indent=4))
        return 0
    if cmd == "status":
        print(json.dumps({"kernels": [{"addrs_registers": {}, "common_registers": {
            "ADDR_CODE": "0x0", "LOAD START": 0, "LOAD END": 0, "SAVE START": 0, "SAVE END": 0,
            "CONV START": 0, "CONV END": 0, "MISC START": 0, "MISC END": 0}, "name": "DPU Core 0"}]},
            indent=4))
        return 0
    print("usage: xdputil <query|status|xmodel|benchmark|...>", file=sys.stderr)
    return 1


def _vcgencmd(state_dir: Path, argv: List[str]) -> int:
    st = _load(state_dir)
    prof = st["profile"]
    _log(state_dir, "vcgencmd", argv, False)
    cmd = argv[0] if argv else ""
    if cmd == "measure_clock" and argv[1:] == ["arm"]:
        khz = 1500000
        if st.get("root"):
            pols = _policies(Path(st["root"]))
            if pols:
                pol = pols[0]
                gov = _rd(pol / "scaling_governor")
                key = "scaling_max_freq" if gov == "performance" else "scaling_min_freq"
                khz = int(_rd(pol / key, "1500000") or 1500000)
        print(f"frequency(48)={khz * 1000 + 398}")
        return 0
    if cmd == "measure_temp":
        print(f"temp={float(prof['rpi_temp_c']):.1f}'C")
        return 0
    if cmd == "get_throttled":
        print(f"throttled={prof['throttled']}")
        return 0
    if cmd == "get_config" and argv[1:] == ["arm_freq"]:
        print(f"arm_freq={prof['arm_freq']}")
        return 0
    print(f"error=1 error_msg=\"Command not registered\" ({' '.join(argv)})")
    return 255


_TOOLS = {
    "nvpmodel": _nvpmodel,
    "jetson_clocks": _jetson_clocks,
    "nvidia-smi": _nvidia_smi,
    "xdputil": _xdputil,
    "vcgencmd": _vcgencmd,
}


def main(tool: str, state_dir: str, argv: List[str]) -> int:
    """Entry point of the installed stubs."""
    return _TOOLS[tool](Path(state_dir), list(argv))
