"""What else happened on the machine during a timed loop (Linux ``/proc`` and ``/sys``).

A snapshot is taken just before and just after each timed loop; :func:`delta` turns the
pair into the figures the verdict checks:

* ``others_cpu_share`` — CPU time used by everything except this process during the loop,
  as a share of the machine's capacity (loop wall time × online CPUs), from the busy
  jiffies in ``/proc/stat`` minus this process's own user + system time (``os.times``);
* ``steal_share`` — CPU time the hypervisor gave to other guests, same denominator;
* ``cpu_mhz_change_rel`` — change of the mean CPU clock (cpufreq ``scaling_cur_freq``,
  else ``/proc/cpuinfo``), a sign of frequency scaling or thermal throttling;
* ``temp_c_change`` — change of the hottest thermal zone;
* ``loadavg_1m`` before and after.

Figures that the machine does not expose are None, never guessed.
"""

from __future__ import annotations

import glob
import os
import time

#: /proc/stat "cpu" columns counted as busy (user nice system idle iowait irq softirq steal)
_BUSY = (0, 1, 2, 5, 6)
_STEAL = 7


def _cpu_jiffies(path: str = "/proc/stat"):
    try:
        with open(path, encoding="ascii") as fh:
            fields = fh.readline().split()
    except (OSError, ValueError):
        return None, None
    if not fields or fields[0] != "cpu":
        return None, None
    vals = [int(v) for v in fields[1:]]
    busy = sum(vals[i] for i in _BUSY if i < len(vals))
    steal = vals[_STEAL] if len(vals) > _STEAL else 0
    return busy, steal


def _sysfs_values(pattern: str, scale: float) -> list:
    """Every readable integer file matching ``pattern``, divided by ``scale``."""
    values = []
    for path in glob.glob(pattern):
        try:
            with open(path, encoding="ascii") as fh:
                values.append(int(fh.read().strip()) / scale)
        except (OSError, ValueError):
            continue
    return values


def _mean_mhz():
    freqs = _sysfs_values("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq", 1000.0)
    if not freqs:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
                freqs = [float(line.split(":")[1]) for line in fh if line.startswith("cpu MHz")]
        except (OSError, ValueError, IndexError):
            freqs = []
    return sum(freqs) / len(freqs) if freqs else None


def _max_temp_c():
    temps = _sysfs_values("/sys/class/thermal/thermal_zone*/temp", 1000.0)
    return max(temps) if temps else None


def _loadavg():
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            return float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def snapshot() -> dict:
    """The machine's state now (see the module docstring); cheap (< 1 ms)."""
    busy, steal = _cpu_jiffies()
    t = os.times()
    return {"t_ns": time.monotonic_ns(), "busy_jiffies": busy, "steal_jiffies": steal,
            "self_cpu_s": t.user + t.system, "cpu_mhz": _mean_mhz(), "temp_c": _max_temp_c(),
            "loadavg_1m": _loadavg()}


def delta(before: dict, after: dict, cpus: int | None = None) -> dict:
    """Figures over the interval between two :func:`snapshot` calls (see the module
    docstring). ``cpus`` defaults to ``os.cpu_count()``."""
    wall_s = (after["t_ns"] - before["t_ns"]) / 1e9
    cpus = cpus or os.cpu_count() or 1
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out = {"wall_s": wall_s, "others_cpu_share": None, "steal_share": None,
           "cpu_mhz_before": before.get("cpu_mhz"), "cpu_mhz_after": after.get("cpu_mhz"),
           "cpu_mhz_change_rel": None, "temp_c_before": before.get("temp_c"),
           "temp_c_after": after.get("temp_c"), "temp_c_change": None,
           "loadavg_1m_before": before.get("loadavg_1m"), "loadavg_1m_after": after.get("loadavg_1m")}
    capacity = wall_s * cpus
    if capacity > 0 and before.get("busy_jiffies") is not None and after.get("busy_jiffies") is not None:
        busy_s = (after["busy_jiffies"] - before["busy_jiffies"]) / hz
        own_s = after["self_cpu_s"] - before["self_cpu_s"]
        out["others_cpu_share"] = min(max((busy_s - own_s) / capacity, 0.0), 1.0)
        steal_s = (after["steal_jiffies"] - before["steal_jiffies"]) / hz
        out["steal_share"] = min(max(steal_s / capacity, 0.0), 1.0)
    if before.get("cpu_mhz") and after.get("cpu_mhz"):
        out["cpu_mhz_change_rel"] = after["cpu_mhz"] / before["cpu_mhz"] - 1.0
    if before.get("temp_c") is not None and after.get("temp_c") is not None:
        out["temp_c_change"] = after["temp_c"] - before["temp_c"]
    return out
