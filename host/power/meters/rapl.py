"""x86 CPU package power from the RAPL energy counters of Linux powercap (``/sys/class/powercap``).

Facts: docs/power.md §11. The kernel's powercap framework (Documentation/power/powercap/powercap.rst,
Documentation/ABI/testing/sysfs-class-powercap) lists one directory per power zone of the
``intel-rapl`` control type (also used for AMD's RAPL since Linux 5.8): ``intel-rapl:<p>`` for a
package, ``intel-rapl:<p>:<n>`` for its sub-zones, each with

* ``name`` — ``package-0``, ``core``, ``uncore``, ``dram``, ``psys``;
* ``energy_uj`` — the zone's energy counter in µJ, counting up and restarting at 0;
* ``max_energy_range_uj`` — the counter's range in µJ: it takes the values 0 .. range.

**Power from energy.** Each :meth:`RaplPackage.read` reads every zone's counter and the host
monotonic clock right after; the power of a zone is the energy the counter advanced since the
previous read over the host time between the two reads: ``ΔE / Δt``, an average over that
interval (not a point sample). The advance is ``(e1 - e0) mod (range + 1)``, which is ``e1 - e0``
without a wrap and ``e1 + (range + 1 - e0)`` when the counter restarted at 0 in between. The kernel's
RAPL driver computes the counter from a 32-bit hardware count × the energy unit, so the true period
is range + one energy unit (about 15–61 µJ) rather than range + 1 µJ: a wrap costs at most one unit.
More than one wrap between two reads cannot be seen; at 0.1 s per read that needs
``range / 0.1 s`` (a few hundred kW for the usual 262 kJ range), so it never happens.

**What is measured** (``scope = "cpu-package"``): the sum of the top-level ``package-*`` zones —
CPU cores, caches, uncore and, on client parts, the integrated GPU. Not DRAM (a ``dram`` zone,
reported but not summed), not the platform (``psys``, the whole SoC platform on some laptops:
measured only when there is no package zone), and never the rest of the machine or the power
supply: **CPU package power (RAPL), not wall power**. Every zone's own power is kept per read as
a rail.

**Errors.** No zone: :class:`~host.errors.MeterConnectionError` naming the folder looked in (VMs
usually have none). ``energy_uj`` is readable by root only on kernels patched for PLATYPUS
(CVE-2020-8694, November 2020): a connection error that says so. A counter that is not an integer or
above its range: :class:`~host.errors.MeterProtocolError`. A read that implies more than
``max_power_w`` (default 2000 W) in a zone — a counter someone reset by writing 0, a broken
counter — is flagged ``implausible`` and never enters the statistics.
"""

from __future__ import annotations

import bisect
import collections
import math
import re
import time
from dataclasses import dataclass

from host.errors import MeterConnectionError, MeterProtocolError
from host.power.meters._sysfs import Spacing, integer, read_files, sysfs
from host.power.meters.base import Meter, MeterInfo, Reading, number_option, unknown_options

#: The powercap folder and the files read in each zone.
POWERCAP = "/sys/class/powercap"
ZONE_FILES = ("name", "energy_uj", "max_energy_range_uj")
DEFAULT_INTERVAL_S = 0.1
DEFAULT_MAX_POWER_W = 2000.0
#: Reads kept for :meth:`RaplPackage.window_telemetry` (about 2.8 h at 0.1 s); older ones are dropped.
HISTORY_KEPT = 100_000
#: What the number is, for results and tables.
LABEL = "CPU package power (RAPL), not wall power"

_ZONE = re.compile(r"intel-rapl(:\d+)+")


def counter_delta_uj(e0: int, e1: int, range_uj: int) -> int:
    """µJ a counter that runs 0 .. ``range_uj`` and then restarts at 0 advanced from ``e0`` to
    ``e1`` (at most one wrap): ``(e1 - e0) mod (range_uj + 1)``."""
    return (e1 - e0) % (range_uj + 1)


@dataclass
class Zone:
    """One RAPL zone: its folder name (``intel-rapl:0:1``), ``name`` file, counter file (with the
    root), range in µJ and ``label``: ``package-0``, or ``package-0/core`` for a sub-zone (under its
    package's name); ``top`` for a package-level zone."""

    zone_id: str
    name: str
    energy_file: str
    range_uj: int
    label: str = ""

    @property
    def top(self) -> bool:
        return self.zone_id.count(":") == 1


class RaplPackage(Meter):
    """CPU package power from the powercap RAPL energy counters, read from sysfs.

    Args:
        port: unused (``None``).
        name: registry name (``rapl``).
        run: ``run(command) -> stdout`` executing a shell command on the board; ``None`` reads the
            files on this machine.
        root: sysfs root prefix, ``"/"`` on a machine, a fake tree in tests.
        clock: ``() -> int`` host monotonic ns taken right after each read (``time.monotonic_ns``).
        timeout_s: kept for interface symmetry (``run`` enforces its own timeout).
        interval_s: option, the read interval in s (default 0.1).
        max_power_w: option, the largest plausible power of one zone in W (default 2000).

    After :meth:`open`: ``zones`` (every :class:`Zone`), ``measured`` (the zone labels summed),
    ``wraps`` (counter wrap-arounds seen).
    """

    INFO = MeterInfo(names=("rapl",),
                     link="sysfs powercap (`intel-rapl:*/energy_uj`) here, or on a board over SSH (§11)",
                     scope="`cpu-package` (not wall power)", interval="0.1 s (`interval_s` option)",
                     onboard=True)

    scope = "cpu-package"
    update_interval_s = DEFAULT_INTERVAL_S

    def __init__(self, port=None, *, name: str = "", run=None, root: str = "/", clock=time.monotonic_ns,
                 timeout_s: float = 5.0, **options):
        unknown_options("rapl", options, ("root", "timeout_s", "interval_s", "max_power_w"))
        super().__init__(port, name=name, **options)
        self.run = run
        self.root = str(root)
        self.clock = clock
        self.timeout_s = number_option("rapl", "timeout_s", timeout_s, lo=0.01, hi=3600)
        self.update_interval_s = number_option("rapl", "interval_s", options.get("interval_s")
                                               or DEFAULT_INTERVAL_S, lo=0.001, hi=3600)
        self.max_power_w = number_option("rapl", "max_power_w", options.get("max_power_w")
                                         or DEFAULT_MAX_POWER_W, lo=1, hi=1e6)
        self.zones: list = []
        self.measured: list = []
        self.wraps = 0
        self._last: tuple | None = None  # (host ns, {zone_id: counter µJ})
        # (host ns, µJ the measured zones used since open(), unwrapped), one per read
        self._history = collections.deque(maxlen=HISTORY_KEPT)
        self._spacing = Spacing(self.update_interval_s / 2)

    def _folder(self) -> str:
        return sysfs(self.root, POWERCAP)

    def open(self) -> None:
        """Find the zones, choose the measured ones and read the counters once.

        Raises:
            MeterConnectionError: no RAPL zone, or a measured counter cannot be read (the message
                says why: root-only ``energy_uj``).
            MeterProtocolError: a zone's range or counter is not a positive integer.
        """
        files = read_files(self.root, [f"{POWERCAP}/intel-rapl:*/{f}" for f in ZONE_FILES], run=self.run,
                           label=self.name or "rapl")
        self.zones = _zones(files, self._folder())
        if not self.zones:
            raise MeterConnectionError(
                f"rapl: no RAPL zone in {self._folder()} (looked for intel-rapl:*/energy_uj and "
                "max_energy_range_uj)",
                hint="RAPL needs an x86 CPU and Linux's intel_rapl driver; most virtual machines have none")
        tops = [z for z in self.zones if z.top]
        chosen = [z for z in tops if z.name.startswith("package")] or [z for z in tops if z.name == "psys"]
        if not chosen:
            raise MeterConnectionError(f"rapl: no package or psys zone in {self._folder()} (zones: "
                                       f"{', '.join(z.label for z in self.zones)})")
        self.measured = [z.label for z in chosen]
        self.model = "RAPL " + " + ".join(self.measured)
        self._spacing.wait()
        self._last = (self.clock(), self._counters(open_=True))
        self._history.append((self._last[0], 0))

    def _counters(self, open_: bool = False) -> dict:
        """``{zone_id: counter µJ}`` of every zone, from one pass over the files.

        Raises:
            MeterConnectionError: a counter cannot be read (root-only, gone).
            MeterProtocolError: a counter that is not an integer or is above its range.
        """
        files = read_files(self.root, [z.energy_file[len(self.root.rstrip("/")):] for z in self.zones],
                           run=self.run, label=self.name or "rapl")
        values = {}
        for zone in self.zones:
            ok, text = files.get(zone.energy_file, (False, "No such file or directory"))
            if not ok:
                raise _unreadable(zone.energy_file, text, during="open" if open_ else "read")
            try:
                value = integer(zone.energy_file, text, what="an energy counter in µJ")
            except ValueError as exc:
                raise MeterProtocolError(f"rapl: {exc}") from None
            if value > zone.range_uj:
                raise MeterProtocolError(f"rapl: {zone.energy_file}: counter {value} µJ is above its range "
                                         f"max_energy_range_uj = {zone.range_uj}")
            values[zone.zone_id] = value
        return values

    def read(self) -> Reading:
        """The measured zones' power since the previous read (W); every zone's power as a rail.

        Raises:
            MeterConnectionError, MeterProtocolError: as :meth:`open`; also a read before it.
        """
        if self._last is None:
            raise MeterConnectionError("rapl: read() before open()")
        self._spacing.wait()  # at least half the interval after the previous read
        counters = self._counters()
        now = self.clock()
        t0, before = self._last
        self._last = (now, counters)
        dt_s = (now - t0) / 1e9
        if dt_s <= 0:
            return Reading(power_w=None, flags=("invalid",))
        rails, used_uj = {}, 0
        for zone in self.zones:
            if counters[zone.zone_id] < before[zone.zone_id]:
                self.wraps += 1
            delta_uj = counter_delta_uj(before[zone.zone_id], counters[zone.zone_id], zone.range_uj)
            rails[zone.label] = delta_uj / 1e6 / dt_s
            used_uj += delta_uj if zone.label in self.measured else 0
        self._history.append((now, self._history[-1][1] + used_uj))
        total = math.fsum(rails[label] for label in self.measured)
        implausible = any(w > self.max_power_w for w in rails.values())
        return Reading(power_w=total, flags=("implausible",) if implausible else (), rails=rails)

    def window_telemetry(self, t_start_ns: int, t_end_ns: int) -> dict | None:
        """The measured zones' energy over ``[t_start_ns, t_end_ns]`` (host monotonic ns) straight from
        the counters: their unwrapped total at each read, linearly interpolated at the two edges
        (``energy_j_counter``, and ``power_w_mean_counter`` = it / the window), a cross-check of the
        trapezoid over the per-read powers. None for an empty window or one not inside the reads.
        Raises nothing."""
        points = list(self._history)
        if t_end_ns <= t_start_ns or not points or t_start_ns < points[0][0] or t_end_ns > points[-1][0]:
            return None
        times = [t for t, _ in points]

        def energy_uj(t: int) -> float:
            i = min(max(bisect.bisect_left(times, t), 1), len(points) - 1)
            (t0, e0), (t1, e1) = points[i - 1], points[i]
            return e0 if t1 == t0 else e0 + (e1 - e0) * (t - t0) / (t1 - t0)

        joules = (energy_uj(t_end_ns) - energy_uj(t_start_ns)) / 1e6
        return {"energy_j_counter": joules, "power_w_mean_counter": joules / ((t_end_ns - t_start_ns) / 1e9),
                "reads": sum(1 for t in times if t_start_ns <= t <= t_end_ns),
                "source": "RAPL counters of " + " + ".join(self.measured)
                          + ", interpolated linearly at the window edges"}

    def describe(self) -> dict:
        info = super().describe()
        info.update(source="on-host energy counter", label=LABEL, root=self.root,
                    zones=[{"zone": z.zone_id, "name": z.name, "max_energy_range_uj": z.range_uj}
                           for z in self.zones],
                    measured=list(self.measured), wraps=self.wraps,
                    method="power = counter advance (mod max_energy_range_uj + 1) / host time between reads",
                    via="run" if self.run is not None else "local")
        return info


def _zones(files: dict, folder: str) -> list:
    """:class:`Zone` for every ``intel-rapl:...`` folder with all three files, sorted by folder name.

    Raises:
        MeterProtocolError: a range that is not a positive integer.
    """
    by_zone: dict = {}
    for path, (ok, text) in files.items():
        zone_dir, _, fname = path.rpartition("/")
        zone_id = zone_dir.rpartition("/")[2]
        if _ZONE.fullmatch(zone_id):
            by_zone.setdefault(zone_id, {})[fname] = (path, ok, text)
    zones = []
    for zone_id in sorted(by_zone, key=lambda z: [int(n) for n in z.split(":")[1:]]):
        got = by_zone[zone_id]
        if not all(f in got for f in ZONE_FILES):
            continue
        range_path, ok, text = got["max_energy_range_uj"]
        if not ok:
            raise _unreadable(range_path, text, during="open")
        try:
            range_uj = integer(range_path, text, what="the counter range in µJ")
        except ValueError as exc:
            raise MeterProtocolError(f"rapl: {exc}") from None
        if range_uj <= 0:
            raise MeterProtocolError(f"rapl: {range_path}: the counter range is {range_uj} µJ")
        _, name_ok, name = got["name"]
        name = (name if name_ok else "") or zone_id
        parent = next((z for z in zones if zone_id.startswith(z.zone_id + ":")), None)
        label = f"{parent.label}/{name}" if parent else name
        zones.append(Zone(zone_id, name, got["energy_uj"][0], range_uj, label))
    return zones


def _unreadable(path: str, reason: str, *, during: str) -> MeterConnectionError:
    if "permission" in reason.lower():
        return MeterConnectionError(
            f"rapl: {path}: {reason} during {during}: energy_uj is readable by root only on kernels with "
            "the PLATYPUS fix (CVE-2020-8694)",
            hint="run as root, or let this user read it (a udev rule, or chmod a+r on the energy_uj files)")
    return MeterConnectionError(f"rapl: {path}: cannot be read during {during} ({reason})",
                                hint="the powercap zone went away (driver unloaded?)")


__all__ = ["LABEL", "RaplPackage", "Zone", "counter_delta_uj"]
