"""Power-state probe: what power mode, governor and clocks a board is in, as one JSON object.

Runs on the board, natively (never inside a container), either as ``python3 -m runners.power_state
[--root R] [--state-dir D] [--family F]`` or as a plain script (``ansible.builtin.script:
power_state.py --root R --detection JSON``), so it uses the standard library only (Python 3.8+) and
imports only :mod:`runners.families` (the families and their detection rule, one descriptor each); a
lone copy of this file gets that table as ``--detection`` (``python -m runners.families
--detection``). It prints exactly one JSON object on stdout and exits 0 even when parts are missing:
those are ``null`` and the reason is listed in ``errors``.

Schema ``edgegauge.power_state/1`` (see the issue-5 contract)::

    {"schema", "family", "cpufreq", "nvpmodel", "jetson_clocks", "fan", "gpu", "dpu", "rpi",
     "mode_key", "errors"}

Sources (docs/devices.md): cpufreq sysfs under ``<root>/sys/devices/system/cpu/cpufreq``
(§2); Jetson ``nvpmodel -q`` (last all-digit line = id) and ``<root>/etc/nvpmodel.conf`` (mode names
and ``PM_CONFIG DEFAULT``), ``jetson_clocks --show``, fan pwm (§3.2, §3.3); ``nvidia-smi
--query-gpu`` (§5); ``xdputil query`` (§4.4); ``vcgencmd`` (§2). Every command runs with stdin
closed (``nvpmodel`` never blocks on a prompt here) and a timeout.

``<root>`` prefixes every /sys, /proc, /etc and /var/lib path (a fake tree in tests); vendor tools
are looked up on PATH. ``--state-dir`` (default ``<root>/var/lib/edgegauge``) holds what the
power_mode playbook stored: ``l4t_dfs.conf`` (``jetson_clocks --store``) and ``nvidia_lgc.gpu<N>``
(``MIN,MAX`` of a ``nvidia-smi -lgc`` lock; nvidia-smi has no portable query for it).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

if __package__ in (None, "") and os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                             "families", "__init__.py")):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout's script
try:
    from runners import families as _families
except ImportError:  # a lone copy (ansible.builtin.script): the table comes with --detection
    _families = None  # type: ignore[assignment]

SCHEMA = "edgegauge.power_state/1"
#: The family detection table (:func:`runners.families.detection_table`), empty for a lone copy.
TABLE: List[Dict[str, Any]] = _families.detection_table() if _families else []
FAMILIES = tuple(rule["name"] for rule in TABLE)
CPUFREQ_DIR = "sys/devices/system/cpu/cpufreq"
NVPMODEL_CONF = "etc/nvpmodel.conf"
TEGRA_RELEASE = "etc/nv_tegra_release"
STORE_FILE = "l4t_dfs.conf"
LOCK_MARKER = "nvidia_lgc.gpu{index}"
#: fan pwm files, first match wins (Xavier, Orin, Raspberry Pi 5)
FAN_GLOBS = (
    "sys/devices/pwm-fan/target_pwm",
    "sys/devices/platform/pwm-fan/hwmon/hwmon*/pwm1",
    "sys/devices/platform/cooling_fan/hwmon/hwmon*/pwm1",
)
GPU_FIELDS = (
    "index",
    "name",
    "persistence_mode",
    "clocks.sm",
    "clocks.max.sm",
    "power.limit",
    "mig.mode.current",
)
COMMAND_TIMEOUT_S = 20.0

Runner = Callable[[Sequence[str]], Tuple[int, str, str]]


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------


def _path(root: str, rel: str) -> str:
    return os.path.join(root, rel.lstrip("/"))


def _read(path: str) -> Optional[str]:
    try:
        with open(path, errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _int(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _float(text: Optional[str]) -> Optional[float]:
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None


def run_command(argv: Sequence[str]) -> Tuple[int, str, str]:
    """Run ``argv`` with stdin closed and a timeout; (rc, stdout, stderr). rc 127 = not found."""
    try:
        p = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            timeout=COMMAND_TIMEOUT_S,
        )
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: not found on PATH"
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]}: timed out after {COMMAND_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return 126, "", f"{argv[0]}: {exc}"
    return p.returncode, p.stdout, p.stderr


def cpu_list(text: str) -> str:
    """``"0 1 2 3"`` / ``"0-3"`` / ``"0,2-3"`` -> compact range form ``"0-3"`` / ``"0,2-3"``."""
    nums = set()
    for part in re.split(r"[\s,]+", text.strip()):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            nums.update(range(int(a), int(b) + 1))
        else:
            nums.add(int(part))
    runs: List[List[int]] = []
    for n in sorted(nums):
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    out = [str(a) if a == b else f"{a}-{b}" for a, b in runs]
    return ",".join(out)


# ------------------------------------------------------------------------------------------------
# parsers (pure: tested on recorded outputs)
# ------------------------------------------------------------------------------------------------


def parse_nvpmodel_conf(text: str) -> Dict[str, Any]:
    """``{"modes": {"0": "MAXN", ...}, "default_id": int|None}`` from an nvpmodel.conf."""
    modes: Dict[str, str] = {}
    default = None
    for line in text.splitlines():
        m = re.match(r"\s*<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)\s*>", line)
        if m:
            modes[str(int(m.group(1)))] = m.group(2)
            continue
        m = re.match(r"\s*<\s*PM_CONFIG\s+DEFAULT=(\d+)\s*>", line)
        if m:
            default = int(m.group(1))
    return {"modes": dict(sorted(modes.items(), key=lambda kv: int(kv[0]))), "default_id": default}


def parse_nvpmodel_q(text: str) -> Dict[str, Any]:
    """``nvpmodel -q``: ``{"id": int|None, "name": str|None}``. Extra first lines (``NV Fan Mode:..``,
    ``NVPM WARN: ..``) are ignored; the id is the last all-digit line."""
    ident = None
    name = None
    for line in text.splitlines():
        s = line.strip()
        if s.isdigit():
            ident = int(s)
        m = re.match(r"NV Power Mode\s*:\s*(\S+)", s)
        if m:
            name = m.group(1)
    return {"id": ident, "name": name}


def parse_nvpmodel_status(text: str) -> Optional[int]:
    """``/var/lib/nvpmodel/status`` (``pmode:0002 fmode:quiet``) -> 2."""
    m = re.search(r"pmode:(\d+)", text or "")
    return int(m.group(1)) if m else None


def parse_jetson_clocks_show(text: str) -> Dict[str, Any]:
    """Key facts of ``jetson_clocks --show`` plus ``pinned`` (every CPU and the GPU at min == max)."""
    out: Dict[str, Any] = {"soc": None, "online_cpus": None, "cpus": {}, "gpu": None, "emc": None,
                           "fan_pwm": None, "nv_power_mode": None}
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"SOC family:\s*(\S+)", s)
        if m:
            out["soc"] = m.group(1)
            continue
        m = re.match(r"Online CPUs:\s*(\S+)", s)
        if m:
            out["online_cpus"] = m.group(1)
            continue
        kv = dict(re.findall(r"(\w+)=(\S+)", s))
        m = re.match(r"(cpu\d+):", s)
        if m:
            out["cpus"][m.group(1)] = {
                "online": kv.get("Online") == "1",
                "governor": kv.get("Governor"),
                "min_khz": _int(kv.get("MinFreq")),
                "max_khz": _int(kv.get("MaxFreq")),
                "cur_khz": _int(kv.get("CurrentFreq")),
            }
            continue
        if s.startswith(("GPU ", "EMC ")) and "MinFreq" in kv:
            entry = {"min_hz": _int(kv.get("MinFreq")), "max_hz": _int(kv.get("MaxFreq")),
                     "cur_hz": _int(kv.get("CurrentFreq"))}
            if "FreqOverride" in kv:
                entry["override"] = _int(kv["FreqOverride"])
            out["gpu" if s.startswith("GPU") else "emc"] = entry
            continue
        m = re.match(r"Fan:\s*PWM=(\d+)", s)
        if m:
            out["fan_pwm"] = int(m.group(1))
            continue
        m = re.match(r"NV Power Mode:\s*(\S+)", s)
        if m:
            out["nv_power_mode"] = m.group(1)
    cpus = [c for c in out["cpus"].values() if c["online"]]
    gpu = out["gpu"]
    out["pinned"] = bool(cpus) and all(c["min_khz"] == c["max_khz"] for c in cpus) and (
        gpu is None or gpu["min_hz"] == gpu["max_hz"])
    return out


def _na(value: str) -> Optional[str]:
    v = value.strip()
    return None if v in ("[N/A]", "N/A", "[Not Supported]", "") else v


def parse_nvidia_smi_csv(text: str, fields: Sequence[str] = GPU_FIELDS) -> List[Dict[str, Optional[str]]]:
    """``--format=csv,noheader,nounits`` lines -> one dict per GPU (``[N/A]`` -> None)."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = [_na(v) for v in line.split(", ")]
        if len(values) != len(fields):
            values = [_na(v) for v in line.split(",")]
        if len(values) == len(fields):
            rows.append(dict(zip(fields, values)))
    return rows


def parse_xdputil_query(text: str) -> Dict[str, Any]:
    """``xdputil query`` JSON -> ``{"fingerprint", "clock_mhz", "arch", "vai_version"}``."""
    doc = json.loads(text)
    kernels = doc.get("kernels") or [{}]
    k0 = kernels[0]
    vai = None
    for value in (doc.get("VAI Version") or {}).values():
        m = re.search(r"(\d+\.\d+(?:\.\d+)?)", str(value))
        if m:
            vai = m.group(1)
            break
    clock = k0.get("DPU Frequency (MHz)", k0.get("XRT Frequency (MHz)"))
    return {
        "fingerprint": k0.get("fingerprint"),
        "clock_mhz": int(clock) if isinstance(clock, (int, float)) or str(clock).isdigit() else None,
        "arch": k0.get("DPU Arch"),
        "vai_version": vai,
        "cores": len(kernels),
    }


def parse_vcgencmd(text: str) -> Optional[str]:
    """``frequency(48)=1500398464`` / ``temp=47.2'C`` / ``throttled=0x0`` -> the value part."""
    m = re.search(r"=\s*(\S+)", text.strip())
    return m.group(1) if m else None


# ------------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------------


def _matches(rule: Dict[str, Any], root: str, which: Callable[[str], Optional[str]], machine: str) -> bool:
    """Every criterion ``rule`` declares holds (a rule that declares none never matches)."""
    machines, files = rule.get("machines") or [], rule.get("files") or []
    commands = rule.get("commands") or []
    if not (machines or files or commands):
        return False
    if machines and machine not in machines:
        return False
    if files and not any(os.path.exists(_path(root, f)) for f in files):
        return False
    return not commands or any(which(c) for c in commands)


def detect_family(root: str, which: Callable[[str], Optional[str]] = shutil.which,
                  machine: Optional[str] = None, table: Optional[List[Dict[str, Any]]] = None) -> str:
    """The first family of ``table`` [:data:`TABLE`] (detection order) whose rule matches this
    machine: its ``machines`` (``uname -m``), ``files`` (under ``root``) and ``commands`` (on PATH),
    see :class:`runners.families.FamilyDescriptor`; else ``unknown``."""
    machine = (machine or platform.machine()).lower()
    for rule in TABLE if table is None else table:
        if _matches(rule, root, which, machine):
            return str(rule["name"])
    return "unknown"


def _policy_number(path: str) -> int:
    m = re.search(r"(\d+)$", path.rstrip("/").replace("/cpufreq", ""))
    return int(m.group(1)) if m else 0


def read_cpufreq(root: str, errors: List[str]) -> Optional[Dict[str, Any]]:
    base = _path(root, CPUFREQ_DIR)
    dirs = sorted(glob.glob(os.path.join(base, "policy[0-9]*")), key=_policy_number)
    if not dirs:  # older kernels: per-cpu cpufreq folders
        dirs = sorted(glob.glob(_path(root, "sys/devices/system/cpu/cpu[0-9]*/cpufreq")), key=_policy_number)
    if not dirs:
        errors.append(f"cpufreq: no policy folders under {base}")
        return None
    out: Dict[str, Any] = {}
    for d in dirs:
        name = os.path.basename(d) if os.path.basename(d).startswith("policy") else \
            os.path.basename(os.path.dirname(d))
        avail = _read(os.path.join(d, "scaling_available_governors"))
        related = _read(os.path.join(d, "related_cpus")) or _read(os.path.join(d, "affected_cpus")) or ""
        out[name] = {
            "cpus": cpu_list(related) if related else None,
            "governor": _read(os.path.join(d, "scaling_governor")),
            "min_khz": _int(_read(os.path.join(d, "scaling_min_freq"))),
            "max_khz": _int(_read(os.path.join(d, "scaling_max_freq"))),
            "cur_khz": _int(_read(os.path.join(d, "scaling_cur_freq"))),
            "cpuinfo_min_khz": _int(_read(os.path.join(d, "cpuinfo_min_freq"))),
            "cpuinfo_max_khz": _int(_read(os.path.join(d, "cpuinfo_max_freq"))),
            "available_governors": avail.split() if avail else [],
            "sysfs": "/" + os.path.relpath(d, root),
        }
    return out


def read_nvpmodel(root: str, run: Runner, errors: List[str]) -> Optional[Dict[str, Any]]:
    conf_path = _path(root, NVPMODEL_CONF)
    text = _read(conf_path)
    if text is None:
        errors.append(f"nvpmodel: cannot read {conf_path}")
        return None
    conf = parse_nvpmodel_conf(text)
    real = os.path.realpath(conf_path)
    root_real = os.path.realpath(root)
    shown = "/" + os.path.relpath(real, root_real) if real.startswith(root_real.rstrip("/") + "/") else real
    info: Dict[str, Any] = {"id": None, "name": None, "modes": conf["modes"],
                            "default_id": conf["default_id"], "conf": shown}
    rc, out, err = run(["nvpmodel", "-q"])
    q = parse_nvpmodel_q(out) if rc == 0 else {"id": None, "name": None}
    if q["id"] is None:
        errors.append(f"nvpmodel -q: rc={rc} {(err or out).strip()[:200]}")
        q["id"] = parse_nvpmodel_status(_read(_path(root, "var/lib/nvpmodel/status")) or "")
    info["id"] = q["id"]
    info["name"] = conf["modes"].get(str(q["id"])) if q["id"] is not None else None
    if info["name"] is None:
        info["name"] = q["name"]
    return info


def read_jetson_clocks(state_dir: str, run: Runner, errors: List[str]) -> Optional[Dict[str, Any]]:
    rc, out, err = run(["jetson_clocks", "--show"])
    if rc != 0:
        errors.append(f"jetson_clocks --show: rc={rc} {(err or out).strip()[:200]}")
        return None
    show = parse_jetson_clocks_show(out)
    return {"stored": os.path.exists(os.path.join(state_dir, STORE_FILE)), "pinned": show.pop("pinned"),
            "show": show}


def read_fan(root: str) -> Optional[Dict[str, Any]]:
    root_real = os.path.realpath(root)
    for pattern in FAN_GLOBS:
        for path in sorted(glob.glob(_path(root, pattern))):
            pwm = _int(_read(path))
            if pwm is not None:
                shown = "/" + os.path.relpath(os.path.realpath(path), root_real)
                return {"pwm": pwm, "max_pwm": 255, "path": shown}
    return None


def read_gpus(state_dir: str, run: Runner, errors: List[str]) -> Optional[List[Dict[str, Any]]]:
    rc, out, err = run(["nvidia-smi", "--query-gpu=" + ",".join(GPU_FIELDS), "--format=csv,noheader,nounits"])
    if rc != 0:
        errors.append(f"nvidia-smi --query-gpu: rc={rc} {(err or out).strip()[:200]}")
        return None
    gpus = []
    for row in parse_nvidia_smi_csv(out):
        index = _int(row["index"])
        marker = _read(os.path.join(state_dir, LOCK_MARKER.format(index=index)))
        gpus.append({
            "index": index,
            "name": row["name"],
            "persistence_mode": row["persistence_mode"],
            "clocks_sm_mhz": _int(row["clocks.sm"]),
            "clocks_max_sm_mhz": _int(row["clocks.max.sm"]),
            "locked_sm_clocks": marker or None,
            "power_limit_w": _float(row["power.limit"]),
            "mig_mode": row["mig.mode.current"] or "N/A",
        })
    if not gpus:
        errors.append(f"nvidia-smi --query-gpu: no GPU rows in {out.strip()[:200]!r}")
        return None
    return gpus


def read_dpu(run: Runner, errors: List[str]) -> Optional[Dict[str, Any]]:
    rc, out, err = run(["xdputil", "query"])
    if rc != 0:
        errors.append(f"xdputil query: rc={rc} {(err or out).strip()[:200]}")
        return None
    try:
        return parse_xdputil_query(out)
    except (ValueError, AttributeError, IndexError) as exc:
        errors.append(f"xdputil query: unreadable output ({exc})")
        return None


def read_rpi(run: Runner, errors: List[str]) -> Optional[Dict[str, Any]]:
    vals: Dict[str, Optional[str]] = {}
    for key, argv in (("arm", ["vcgencmd", "measure_clock", "arm"]), ("temp", ["vcgencmd", "measure_temp"]),
                      ("throttled", ["vcgencmd", "get_throttled"]),
                      ("arm_freq", ["vcgencmd", "get_config", "arm_freq"])):
        rc, out, err = run(argv)
        vals[key] = parse_vcgencmd(out) if rc == 0 else None
        if vals[key] is None:
            errors.append(f"{' '.join(argv)}: rc={rc} {(err or out).strip()[:200]}")
    if all(v is None for v in vals.values()):
        return None
    temp = re.sub(r"[^0-9.\-]", "", vals["temp"] or "")
    return {
        "arm_clock_hz": _int(vals["arm"]),
        "temp_c": _float(temp) if temp else None,
        "throttled": vals["throttled"],
        "arm_freq_mhz": _int(vals["arm_freq"]),
    }


def _per_policy(cpufreq: Optional[Dict[str, Any]], key: str) -> Optional[str]:
    if not cpufreq:
        return None
    values = [(name, p.get(key)) for name, p in cpufreq.items()]
    distinct = {str(v) for _, v in values}
    if len(distinct) == 1:
        return distinct.pop()
    return ",".join(f"{name}:{v}" for name, v in values)


def mode_key(state: Dict[str, Any], pinned_section: bool = False) -> str:
    """Short, stable summary of the facts that change a measurement (``pinned_section``: the
    family reads nvpmodel and jetson_clocks, so they are named even when unreadable)."""
    parts: List[str] = []
    nvp = state.get("nvpmodel")
    if pinned_section or nvp:
        parts.append(f"nvpmodel={nvp['name'] if nvp and nvp.get('name') else '?'}")
        jc = state.get("jetson_clocks")
        parts.append(f"jetson_clocks={'?' if jc is None else ('on' if jc.get('pinned') else 'off')}")
    for gpu in state.get("gpu") or []:
        lock = gpu.get("locked_sm_clocks") or "none"
        pm = "on" if gpu.get("persistence_mode") == "Enabled" else "off"
        parts.append(f"gpu{gpu['index']}=lgc:{lock},pm:{pm},mig:{gpu.get('mig_mode')}")
    dpu = state.get("dpu")
    if dpu:
        parts.append(f"dpu={dpu.get('fingerprint')}@{dpu.get('clock_mhz')}MHz")
    cf = state.get("cpufreq")
    if cf:
        parts.append(f"governor={_per_policy(cf, 'governor')}")
        parts.append(f"max_khz={_per_policy(cf, 'max_khz')}")
    return " ".join(parts) if parts else "unknown"


def probe(root: str = "/", state_dir: Optional[str] = None, family: Optional[str] = None,
          run: Runner = run_command, which: Callable[[str], Optional[str]] = shutil.which,
          machine: Optional[str] = None, table: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """The power state of this machine (``root`` prefixes sysfs/etc paths; tools come from PATH).
    ``table``: the family detection table [:data:`TABLE`]; the family's ``sections`` are read."""
    root = root or "/"
    table = TABLE if table is None else table
    state_dir = state_dir or _path(root, "var/lib/edgegauge")
    errors: List[str] = []
    fam = family or detect_family(root, which, machine, table)
    rules = {str(rule["name"]): rule for rule in table}
    if fam not in rules and fam != "unknown":
        errors.append(f"family {fam!r} is not one of {', '.join(rules) or '(no detection table)'}")
    sections = set(rules.get(fam, {}).get("sections") or ())
    state: Dict[str, Any] = {"schema": SCHEMA, "family": fam, "cpufreq": None, "nvpmodel": None,
                             "jetson_clocks": None, "fan": None, "gpu": None, "dpu": None, "rpi": None,
                             "mode_key": "", "errors": errors}
    state["cpufreq"] = read_cpufreq(root, errors)
    if "nvpmodel" in sections:
        state["nvpmodel"] = read_nvpmodel(root, run, errors)
    if "jetson_clocks" in sections:
        state["jetson_clocks"] = read_jetson_clocks(state_dir, run, errors)
    state["fan"] = read_fan(root)
    if "gpu" in sections or (fam == "unknown" and which("nvidia-smi")):
        state["gpu"] = read_gpus(state_dir, run, errors)
    if "dpu" in sections or (fam == "unknown" and which("xdputil")):
        state["dpu"] = read_dpu(run, errors)
    model = (_read(_path(root, "proc/device-tree/model")) or "").replace("\0", "")
    if "Raspberry Pi" in model or ("rpi" in sections and which("vcgencmd")):
        state["rpi"] = read_rpi(run, errors)
    state["mode_key"] = mode_key(state, pinned_section="jetson_clocks" in sections)
    return state


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="power_state", description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/", help="prefix of /sys, /proc, /etc, /var/lib [/]")
    ap.add_argument("--state-dir", default=None, help="edgegauge state folder [<root>/var/lib/edgegauge]")
    ap.add_argument("--family", default=None, help="skip detection (a family of the detection table)")
    ap.add_argument("--detection", default=None, type=json.loads,
                    help="the family detection table as JSON [`python -m runners.families --detection`]")
    ap.add_argument("--detect", action="store_true", help='print only {"family": F} (the detected family)')
    ap.add_argument("--indent", type=int, default=None)
    args = ap.parse_args(argv)
    if args.detect:
        family = args.family or detect_family(args.root, table=args.detection)
        sys.stdout.write(json.dumps({"family": family}) + "\n")
        return 0
    try:
        state = probe(args.root, args.state_dir, args.family, table=args.detection)
    except Exception as exc:  # never a traceback instead of JSON
        state = {"schema": SCHEMA, "family": args.family or "unknown", "cpufreq": None, "nvpmodel": None,
                 "jetson_clocks": None, "fan": None, "gpu": None, "dpu": None, "rpi": None,
                 "mode_key": "unknown", "errors": [f"probe failed: {type(exc).__name__}: {exc}"]}
    sys.stdout.write(json.dumps(state, indent=args.indent) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
