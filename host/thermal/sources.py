"""Which thermal and clock sources a board has, the one shell command that reads them all, and
the parser of its answer.

Every command runs on the board through ``run(command) -> stdout`` (the board's shell, over its
own connection), as the on-board power sources do (:mod:`host.power.meters.jetson`). Paths are
``root`` + the absolute path, so tests point ``root`` at a fake tree built from the kernel's
documented layout. Sources, units and where each is documented (docs/power.md, "Thermal and
clocks during a run"):

* ``/sys/class/thermal/thermal_zone*/temp`` — millidegree Celsius, ``type`` names the zone
  (kernel ``Documentation/driver-api/thermal/sysfs-api.rst``); Jetson's CPU/GPU/SoC sensors are
  zones like any other;
* cpufreq ``scaling_cur_freq`` — kHz, per policy ``/sys/devices/system/cpu/cpufreq/policy*``,
  else per CPU ``/sys/devices/system/cpu/cpu*/cpufreq`` (kernel
  ``Documentation/admin-guide/pm/cpufreq.rst``);
* devfreq ``/sys/class/devfreq/*/cur_freq`` — Hz (kernel ``Documentation/ABI/testing/
  sysfs-class-devfreq``); on Jetson the GPU (``17000000.gv11b`` Xavier, ``17000000.ga10b`` Orin,
  ``57000000.gpu`` Nano) is a devfreq device;
* ``vcgencmd get_throttled`` (Raspberry Pi firmware; bits in :data:`RPI_BITS`) and ``vcgencmd
  measure_clock arm`` (Hz: the clock the firmware really runs, which a cap lowers);
* ``nvidia-smi --query-gpu=index,temperature.gpu,clocks.sm,<reasons>`` — °C, MHz and the active
  clock event reasons bit mask (``clocks_event_reasons.active``, called
  ``clocks_throttle_reasons.active`` by older drivers; bits in :data:`NVIDIA_BITS`, NVML's
  ``nvmlClocksEventReasons``).

Series names: temperatures by zone type (``cpu-thermal``, ``GPU-therm``, ``nvidia0``), clocks
with their kind first (``cpu/policy0``, ``cpu/arm``, ``gpu/17000000.ga10b``, ``gpu/nvidia0``,
``other/<devfreq name>``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from host.errors import ThermalError

#: Raspberry Pi ``get_throttled`` bits (firmware documentation, ``vcgencmd``): 0-3 now, 16-19
#: "has occurred" since boot.
RPI_BITS = {0: "under-voltage detected", 1: "arm frequency capped", 2: "currently throttled",
            3: "soft temperature limit active", 16: "under-voltage has occurred",
            17: "arm frequency capping has occurred", 18: "throttling has occurred",
            19: "soft temperature limit has occurred"}
RPI_NOW_MASK = 0xF
RPI_OCCURRED_SHIFT = 16
#: NVML clock event reasons (``nvmlClocksEventReasons``); the ones in
#: :data:`NVIDIA_THROTTLE_MASK` slow the clock for power or heat, the others (idle, application
#: clocks, sync boost, display) do not count as throttling.
NVIDIA_BITS = {0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap",
               0x8: "hw_slowdown", 0x10: "sync_boost", 0x20: "sw_thermal_slowdown",
               0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown",
               0x100: "display_clock_setting"}
NVIDIA_THROTTLE_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80
#: Field names of the active reasons, newest first (drivers before ~535 know only the second).
NVIDIA_REASON_FIELDS = ("clocks_event_reasons.active", "clocks_throttle_reasons.active")
#: devfreq devices that are a GPU (Jetson names).
GPU_DEVFREQ = re.compile(r"gpu|gv11b|ga10b|gp10b|gm20b", re.IGNORECASE)
#: Temperatures at or below this are a driver's "no reading" value (-256 °C on some), not heat.
TEMP_C_FLOOR = -100.0

_THROTTLED = re.compile(r"throttled=(0x[0-9a-fA-F]+)")
_FREQUENCY = re.compile(r"frequency\(\d+\)=(\d+)")
_NV_PROBE = re.compile(r"\s*(\d+)\s*,\s*(\S.*?)\s*")


@dataclass
class Sources:
    """What :func:`probe` found on a board.

    Attributes:
        zones: ``[(series name, path of temp)]``.
        cpufreq: ``[(series name, path of scaling_cur_freq, cpuinfo_max_freq in MHz or None)]``.
        devfreq: ``[(series name, path of cur_freq, max_freq in MHz or None)]``.
        vcgencmd: the executable when ``get_throttled`` answered, else None.
        nvidia_smi: the executable when ``--query-gpu`` answered, else None.
        nvidia_field: the reasons field it knows (one of :data:`NVIDIA_REASON_FIELDS`), or None.
        gpus: the NVIDIA GPU indices.
        missing: one line per source looked for and not found (why), for the block.
    """

    zones: list = field(default_factory=list)
    cpufreq: list = field(default_factory=list)
    devfreq: list = field(default_factory=list)
    vcgencmd: str | None = None
    nvidia_smi: str | None = None
    nvidia_field: str | None = None
    gpus: list = field(default_factory=list)
    missing: list = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.zones or self.cpufreq or self.devfreq or self.vcgencmd or self.nvidia_smi)

    def describe(self) -> list:
        """One dict per source for the cell's ``thermal.sources``: ``kind``, ``name``, ``read``
        (path or command) and ``unit`` as the source gives it."""
        out = [{"kind": "thermal_zone", "name": n, "read": p, "unit": "millidegree C"} for n, p in self.zones]
        out += [{"kind": "cpufreq", "name": n, "read": p, "unit": "kHz"} for n, p, _ in self.cpufreq]
        out += [{"kind": "devfreq", "name": n, "read": p, "unit": "Hz"} for n, p, _ in self.devfreq]
        if self.vcgencmd:
            out.append({"kind": "vcgencmd", "name": "get_throttled, measure_clock arm",
                        "read": f"{self.vcgencmd} get_throttled; {self.vcgencmd} measure_clock arm",
                        "unit": "bit mask; Hz"})
        if self.nvidia_smi:
            out.append({"kind": "nvidia-smi", "name": ", ".join(f"nvidia{g}" for g in self.gpus),
                        "read": f"{self.nvidia_smi} --query-gpu={_nv_fields(self.nvidia_field)}",
                        "unit": "C, MHz, bit mask"})
        return out

    def max_mhz(self) -> dict:
        """Clock series -> its maximum in MHz where the board says (cpufreq, devfreq)."""
        return {n: m for n, _, m in self.cpufreq + self.devfreq if m is not None}


def _nv_fields(reasons: str | None) -> str:
    return "index,temperature.gpu,clocks.sm" + (f",{reasons}" if reasons else "")


def _prefix(root: str) -> str:
    return shlex.quote(root.rstrip("/")) if root.rstrip("/") else ""


def probe_command(root: str = "/", vcgencmd: str = "vcgencmd", nvidia_smi: str = "nvidia-smi") -> str:
    """The one shell command that lists the board's sources (see :func:`parse_probe`)."""
    r = _prefix(root)
    vc, nv = shlex.quote(vcgencmd), shlex.quote(nvidia_smi)

    def each(kind, pattern, test, extra):
        return (f'for d in {r}{pattern}; do [ -f "$d/{test}" ] || continue; x=; '
                f'read -r x 2>/dev/null < "$d/{extra}"; printf \'{kind}\\t%s\\t%s\\n\' "$d" "$x"; done')

    nv_loop = "; ".join(
        f'printf \'nvidia\\t{q}\\t%s\\n\' "$({nv} --query-gpu=index,{q} --format=csv,noheader 2>&1 '
        f'| while IFS= read -r l; do printf "%s;" "$l"; done)"' for q in NVIDIA_REASON_FIELDS)
    return "; ".join([
        each("zone", "/sys/class/thermal/thermal_zone*", "temp", "type"),
        "found=",
        each("cpufreq", "/sys/devices/system/cpu/cpufreq/policy*", "scaling_cur_freq", "cpuinfo_max_freq")
        .replace("printf", "found=1; printf", 1),
        f'[ -n "$found" ] || {{ {each("cpufreq", "/sys/devices/system/cpu/cpu[0-9]*/cpufreq", "scaling_cur_freq", "cpuinfo_max_freq")}; }}',  # noqa: E501
        each("devfreq", "/sys/class/devfreq/*", "cur_freq", "max_freq"),
        f'if command -v {vc} >/dev/null 2>&1; then printf \'vcgencmd\\t%s\\n\' "$({vc} get_throttled 2>&1)"; '
        "else printf 'vcgencmd\\t-\\n'; fi",
        f"if command -v {nv} >/dev/null 2>&1; then {nv_loop}; else printf 'nvidia\\t-\\t-\\n'; fi",
        "true"])


def _mhz(text: str, per_mhz: float) -> float | None:
    text = text.strip()
    return int(text) / per_mhz if text.isdigit() and int(text) > 0 else None


def _unique(name: str, taken: set, number: str) -> str:
    name = name or f"thermal_zone{number}"
    if name in taken:
        name = f"{name}#{number}"
    taken.add(name)
    return name


def parse_probe(out: str, *, vcgencmd: str = "vcgencmd", nvidia_smi: str = "nvidia-smi") -> Sources:
    """:class:`Sources` from the answer to :func:`probe_command` (unknown lines are ignored)."""
    src, names, tool_notes = Sources(), set(), []
    for line in out.splitlines():
        kind, _, rest = line.partition("\t")
        path, _, value = rest.partition("\t")
        base = path.rstrip("/").split("/")[-1]
        if kind == "zone":
            src.zones.append((_unique(value.strip(), names, base[len("thermal_zone"):]), f"{path}/temp"))
        elif kind == "cpufreq":
            label = base if base.startswith("policy") else path.rstrip("/").split("/")[-2]
            src.cpufreq.append((f"cpu/{label}", f"{path}/scaling_cur_freq", _mhz(value, 1000)))
        elif kind == "devfreq":
            group = "gpu" if GPU_DEVFREQ.search(base) else "other"
            src.devfreq.append((f"{group}/{base}", f"{path}/cur_freq", _mhz(value, 1e6)))
        elif kind == "vcgencmd":
            _probe_vcgencmd(src, rest, vcgencmd, tool_notes)
        elif kind == "nvidia":
            _probe_nvidia(src, path, value, nvidia_smi, tool_notes)
    for found, what in ((src.zones, "/sys/class/thermal/thermal_zone*/temp"), (src.cpufreq, "cpufreq "
                        "scaling_cur_freq"), (src.devfreq, "devfreq cur_freq")):
        if not found:
            src.missing.append(f"no {what}")
    src.missing += tool_notes  # sysfs first, then the tools that answered wrongly
    return src


def _probe_vcgencmd(src: Sources, answer: str, vcgencmd: str, missing: list) -> None:
    if answer.strip() == "-":
        return
    if _THROTTLED.search(answer):
        src.vcgencmd = vcgencmd
    else:
        missing.append(f"{vcgencmd} get_throttled answered {answer.strip()[:120]!r}")


def _probe_nvidia(src: Sources, reasons: str, answer: str, nvidia_smi: str, missing: list) -> None:
    if reasons == "-":
        return
    rows = [_NV_PROBE.fullmatch(r) for r in answer.split(";") if r.strip()]
    if rows and all(rows):
        if src.nvidia_field is None:
            src.nvidia_smi, src.nvidia_field = nvidia_smi, reasons
            src.gpus = [int(m.group(1)) for m in rows]
    elif reasons == NVIDIA_REASON_FIELDS[-1] and src.nvidia_field is None:
        missing.append(f"{nvidia_smi} --query-gpu answered {answer.strip()[:120]!r}")


def tick_command(src: Sources) -> str:
    """The one shell command of a tick: every file read with the shell's own ``read`` (no
    process per file), then ``vcgencmd`` twice and ``nvidia-smi`` once where the board has them."""
    paths = [p for _, p in src.zones] + [p for _, p, _ in src.cpufreq + src.devfreq]
    parts = []
    if paths:
        quoted = " ".join(shlex.quote(p) for p in paths)
        parts.append(f'for f in {quoted}; do v=; read -r v 2>/dev/null < "$f"; '
                     'printf \'f\\t%s\\t%s\\n\' "$f" "$v"; done')
    if src.vcgencmd:
        vc = shlex.quote(src.vcgencmd)
        parts.append(f'printf \'vc\\t%s\\t%s\\n\' "$({vc} get_throttled 2>&1)" '
                     f'"$({vc} measure_clock arm 2>&1)"')
    if src.nvidia_smi:
        parts.append(f"{shlex.quote(src.nvidia_smi)} --query-gpu={_nv_fields(src.nvidia_field)} "
                     "--format=csv,noheader,nounits 2>&1 "
                     "| while IFS= read -r l; do printf 'nv\\t%s\\n' \"$l\"; done")
    parts.append("true")
    return "; ".join(parts)


@dataclass(frozen=True)
class Reading:
    """One tick's values: ``temps_c`` (series -> °C or None), ``clocks_mhz`` (series -> MHz or
    None) and ``throttle`` (``"rpi"`` / ``"nvidia<i>"`` -> the raw bit mask)."""

    temps_c: dict
    clocks_mhz: dict
    throttle: dict


def parse_tick(src: Sources, out: str) -> Reading:
    """The values in the answer to :func:`tick_command`.

    Raises:
        ThermalError: the answer has none of the lines the command prints (the board's shell
            failed, or something else answered); a single unreadable file is None, not an error.
    """
    names = {p: (n, 1000.0, "t") for n, p in src.zones}
    names.update({p: (n, 1000.0, "c") for n, p, _ in src.cpufreq})
    names.update({p: (n, 1e6, "c") for n, p, _ in src.devfreq})
    temps = {n: None for n, _ in src.zones}
    clocks = {n: None for n, _, _ in src.cpufreq + src.devfreq}
    throttle, seen = {}, False
    for line in out.splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "f":
            seen = True
            path, _, value = rest.partition("\t")
            if path in names:
                name, scale, what = names[path]
                _store_file(temps if what == "t" else clocks, name, value.strip(), scale, what)
        elif kind == "vc":
            seen = True
            _store_vcgencmd(rest, clocks, throttle)
        elif kind == "nv":
            seen = True
            _store_nvidia(src, rest, temps, clocks, throttle)
    if not seen and (temps or clocks or src.vcgencmd or src.nvidia_smi):
        raise ThermalError(f"the thermal read on the board answered {out.strip()[:200]!r} "
                           "(expected one line per source)")
    return Reading(temps, clocks, throttle)


def _store_file(into: dict, name: str, text: str, scale: float, what: str) -> None:
    if not re.fullmatch(r"-?\d+", text):
        return
    value = int(text) / scale
    if what == "t":
        into[name] = value if value > TEMP_C_FLOOR else None
    else:
        into[name] = value if value > 0 else None


def _store_vcgencmd(rest: str, clocks: dict, throttle: dict) -> None:
    bits, _, arm = rest.partition("\t")
    m = _THROTTLED.search(bits)
    if m:
        throttle["rpi"] = int(m.group(1), 16)
    f = _FREQUENCY.search(arm)
    clocks["cpu/arm"] = int(f.group(1)) / 1e6 if f and int(f.group(1)) > 0 else None


def _nv_number(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return None  # [N/A], [Not Supported]


def _store_nvidia(src: Sources, row: str, temps: dict, clocks: dict, throttle: dict) -> None:
    cells = [c.strip() for c in row.split(",")]
    if len(cells) < 3 or not cells[0].isdigit():
        return
    gpu = f"nvidia{cells[0]}"
    temps[gpu] = _nv_number(cells[1])
    clocks[f"gpu/{gpu}"] = _nv_number(cells[2])
    if src.nvidia_field and len(cells) > 3 and re.fullmatch(r"0x[0-9a-fA-F]+", cells[3]):
        throttle[gpu] = int(cells[3], 16)


def throttle_words(source: str, bits: int) -> list:
    """The names of the set bits of one source's mask (``rpi`` or ``nvidia<i>``)."""
    table = RPI_BITS if source == "rpi" else NVIDIA_BITS
    if source == "rpi":
        return [table[b] for b in sorted(table) if bits >> b & 1]
    return [table[b] for b in sorted(table) if bits & b]


__all__ = ["NVIDIA_BITS", "NVIDIA_REASON_FIELDS", "NVIDIA_THROTTLE_MASK", "RPI_BITS", "Reading", "Sources",
           "parse_probe", "parse_tick", "probe_command", "throttle_words", "tick_command"]
