"""Device and tool manifest: what a result was measured on and with.

Everything is read from standard Linux interfaces (procfs, sysfs, os-release); a value
that cannot be read is recorded as None, never guessed. The root of /proc and /sys is
injectable (``root`` argument or ``EDGEGAUGE_SYSFS_ROOT``) so tests can use a fake tree.
Keys follow pyperf's metadata (psf/pyperf ``_collect_metadata.py``) with units in names.
"""

from __future__ import annotations

import glob
import hashlib
import os
import platform
import socket
import subprocess
import sys

import runners


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _cpu_model(root: str) -> str | None:
    text = _read(f"{root}/proc/cpuinfo")
    if not text:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    # x86: "model name"; ARM boards: "Model" (e.g. "Raspberry Pi 4 Model B"), "Hardware".
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if fields.get(key):
            return fields[key]
    return None


def _os_name(root: str) -> str | None:
    text = _read(f"{root}/etc/os-release")
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def _meminfo_mib(root: str) -> float | None:
    text = _read(f"{root}/proc/meminfo")
    for line in (text or "").splitlines():
        if line.startswith("MemTotal:"):
            try:
                return float(line.split()[1]) / 1024.0
            except (IndexError, ValueError):
                return None
    return None


def _cpufreq(root: str) -> dict:
    base = f"{root}/sys/devices/system/cpu/cpu0/cpufreq"
    governor = _read(f"{base}/scaling_governor")
    cur = _read(f"{base}/scaling_cur_freq")
    maxf = _read(f"{base}/scaling_max_freq")

    def mhz(v):
        try:
            return float(v) / 1000.0  # sysfs reports kHz
        except (TypeError, ValueError):
            return None

    return {
        "cpu_governor": governor,
        "cpu_freq_mhz_cur": mhz(cur),
        "cpu_freq_mhz_max": mhz(maxf),
    }


def _temperatures(root: str) -> dict[str, float]:
    temps = {}
    for zone in sorted(glob.glob(f"{root}/sys/class/thermal/thermal_zone*")):
        raw = _read(f"{zone}/temp")
        kind = _read(f"{zone}/type") or os.path.basename(zone)
        try:
            temps[kind] = float(raw) / 1000.0  # millidegree Celsius
        except (TypeError, ValueError):
            continue
    return temps


def device_manifest(root: str | None = None) -> dict:
    """Describe the machine the runner runs on.

    Returns keys: ``hostname``, ``cpu_model``, ``cpu_count`` (logical CPUs online),
    ``cpu_affinity`` (CPUs this process may use), ``arch``, ``kernel``, ``os``,
    ``python``, ``memory_mib_total``, ``cpu_governor``, ``cpu_freq_mhz_cur``,
    ``cpu_freq_mhz_max``, ``load_avg_1m_5m_15m``, ``temperatures_c`` (per thermal
    zone type, degree Celsius). Unreadable values are None (temperatures: empty dict).
    """
    if root is None:
        root = os.environ.get("EDGEGAUGE_SYSFS_ROOT", "")
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        load = list(os.getloadavg())
    except (AttributeError, OSError):
        load = None
    out = {
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(root),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "arch": platform.machine(),
        "kernel": platform.release(),
        "os": _os_name(root),
        "python": platform.python_version(),
        "memory_mib_total": _meminfo_mib(root),
        "load_avg_1m_5m_15m": load,
        "temperatures_c": _temperatures(root),
    }
    out.update(_cpufreq(root))
    return out


def read_sources() -> list:
    """The runners package's ``.py`` files as ``[(relative posix path, bytes)]``, sorted by
    path (``__pycache__`` skipped): what :func:`source_sha256` hashes and what the host ships
    to a board (``host.lab.deploy.runners_bundle``)."""
    pkg = os.path.dirname(os.path.abspath(runners.__file__))
    found = []
    for dirpath, dirnames, filenames in os.walk(pkg):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                found.append((os.path.relpath(path, pkg).replace(os.sep, "/"), path))
    out = []
    for rel, path in sorted(found):
        with open(path, "rb") as fh:
            out.append((rel, fh.read()))
    return out


def source_sha256(sources: list | None = None) -> str:
    """Content hash (64 hex digits) of the runner sources: sha256 over ``path NUL bytes NUL``
    of each file of :func:`read_sources` (or of the given ``sources``), in path order.

    Identifies the runner code even where there is no git checkout (inside images); it is
    also the folder name ``runners/<source_sha256>/`` the runners are deployed to on a board,
    so a result's ``manifest.tool.source_sha256`` names the bundle that produced it.
    """
    digest = hashlib.sha256()
    for rel, data in read_sources() if sources is None else sources:
        digest.update(rel.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def git_revision(path: str | None = None) -> str | None:
    """``git rev-parse HEAD`` of the checkout holding ``path`` (default: this package),
    with ``-dirty`` appended when tracked files differ; None outside a checkout."""
    where = path or os.path.dirname(os.path.abspath(runners.__file__))
    try:
        rev = subprocess.run(
            ["git", "-C", where, "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "") if rev else None


def tool_manifest() -> dict:
    """``{"name", "version", "source_sha256", "git_revision", "python_executable"}``."""
    return {
        "name": "edgegauge-runners",
        "version": runners.__version__,
        "source_sha256": source_sha256(),
        "git_revision": git_revision(),
        "python_executable": sys.executable,
    }
