"""A power or energy sensor of Linux hwmon (``/sys/class/hwmon/hwmon*``), read from sysfs.

Facts: docs/power.md §11. The kernel's hwmon sysfs interface (Documentation/hwmon/sysfs-interface.rst)
names every sensor chip in ``hwmon<N>/name`` and its channels in fixed units:

* ``power<i>_input`` — instantaneous power, µW; ``power<i>_average`` — average power, µW (used when
  the channel has no ``_input``);
* ``energy<i>_input`` — cumulative energy, µJ;
* ``power<i>_label`` / ``energy<i>_label`` — what the channel is (optional).

Which chips have them depends on the machine: ``amdgpu`` (GPU), ``power_meter`` (ACPI power meter),
``ina2xx`` / ``ina3221`` (shunt monitors on a rail), ``amd_energy`` (per core and socket), ... What
one channel measures is what its driver says, usually one component: ``scope = "component"``,
**a component's own sensor, not wall power**. Summing channels could count one thing twice
(``amd_energy`` lists the socket and its cores), so exactly one channel is read: the one named by
the option ``sensor`` (``<chip>/<label>``, ``<chip>/power1``, or ``hwmon<N>/power1``), or the only
one there is. With several and no ``sensor``, :meth:`HwmonSensor.open` fails and lists them.

**Power.** A power channel gives the reading directly (µW / 10⁶). An energy channel gives power as
``ΔE / Δt``: the counter's advance since the previous read over the host time between the two reads.
The interface documents no range for ``energy*_input`` (it is a cumulative count the driver
extends), so a counter that goes back is not unwrapped: that read is flagged ``invalid``.

**Errors.** No channel (or no ``sensor`` match): :class:`~host.errors.MeterConnectionError` listing
what was found; an unreadable file: the same, with the reason; a value that is not an integer:
:class:`~host.errors.MeterProtocolError`; more than ``max_power_w`` (default 2000 W): the reading is
flagged ``implausible``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from host.errors import MeterConnectionError, MeterProtocolError
from host.power.meters._sysfs import Spacing, integer, read_files
from host.power.meters.base import Meter, MeterInfo, Reading, number_option, unknown_options

HWMON = "/sys/class/hwmon"
FILES = ("name", "power*_input", "power*_average", "power*_label", "energy*_input", "energy*_label")
DEFAULT_INTERVAL_S = 0.1
DEFAULT_MAX_POWER_W = 2000.0

_CHANNEL = re.compile(r"(power|energy)(\d+)_(input|average)")


@dataclass(frozen=True)
class Channel:
    """One hwmon power or energy channel. ``file`` includes the sysfs root."""

    hwmon: str
    chip: str
    kind: str  # "power" (µW) or "energy" (µJ)
    index: int
    file: str
    label: str = ""

    @property
    def key(self) -> str:
        """``<chip>/<label>`` or ``<chip>/<kind><index>``: how results and the ``sensor`` option name it."""
        return f"{self.chip}/{self.label or self.kind + str(self.index)}"

    def matches(self, wanted: str) -> bool:
        channel = f"{self.kind}{self.index}"
        return wanted in (self.key, f"{self.chip}/{channel}", f"{self.hwmon}/{channel}")


def channels(files: dict) -> list:
    """:class:`Channel` list from :func:`host.power.meters._sysfs.read_files` output over :data:`FILES`,
    in hwmon number then channel order; a power channel's ``_input`` wins over its ``_average``."""
    by_dir: dict = {}
    for path, entry in files.items():
        folder, _, fname = path.rpartition("/")
        by_dir.setdefault(folder, {})[fname] = entry
    found = []
    for folder in sorted(by_dir, key=_hwmon_number):
        got = by_dir[folder]
        chip = got.get("name", (False, ""))[1] if got.get("name", (False, ""))[0] else ""
        hwmon = folder.rpartition("/")[2]
        seen = set()
        for fname in sorted(got, key=lambda f: (f.endswith("_average"), f)):
            m = _CHANNEL.fullmatch(fname)
            if not m or (m.group(1), m.group(2)) in seen:
                continue
            seen.add((m.group(1), m.group(2)))
            label_ok, label = got.get(f"{m.group(1)}{m.group(2)}_label", (False, ""))
            found.append(Channel(hwmon, chip or hwmon, m.group(1), int(m.group(2)), f"{folder}/{fname}",
                                 label if label_ok else ""))
    return sorted(found, key=lambda c: (_hwmon_number(c.hwmon), c.kind, c.index))


def _hwmon_number(path: str) -> int:
    digits = re.search(r"hwmon(\d+)$", path)
    return int(digits.group(1)) if digits else -1


class HwmonSensor(Meter):
    """One hwmon power or energy channel, read from sysfs.

    Args:
        port: unused (``None``).
        name: registry name (``hwmon``).
        run: ``run(command) -> stdout`` executing a shell command on the board; ``None`` reads the
            files on this machine.
        root: sysfs root prefix, ``"/"`` on a machine, a fake tree in tests.
        clock: ``() -> int`` host monotonic ns taken right after each read (``time.monotonic_ns``).
        timeout_s: kept for interface symmetry (``run`` enforces its own timeout).
        sensor: option, which channel (see the module docstring); default: the only one.
        interval_s: option, the read interval in s (default 0.1).
        max_power_w: option, the largest plausible power in W (default 2000).

    After :meth:`open`: ``channel`` (the :class:`Channel` read) and ``found`` (every channel's key).
    """

    INFO = MeterInfo(names=("hwmon",),
                     link="sysfs hwmon (`power*_input` µW, `energy*_input` µJ) here, or on a board over SSH "
                          "(§11)",
                     scope="`component` (one sensor, not wall power)", interval="0.1 s (`interval_s` option)",
                     onboard=True)

    scope = "component"
    update_interval_s = DEFAULT_INTERVAL_S

    def __init__(self, port=None, *, name: str = "", run=None, root: str = "/", clock=time.monotonic_ns,
                 timeout_s: float = 5.0, **options):
        unknown_options("hwmon", options, ("root", "timeout_s", "sensor", "interval_s", "max_power_w"))
        super().__init__(port, name=name, **options)
        self.run = run
        self.root = str(root)
        self.clock = clock
        self.timeout_s = number_option("hwmon", "timeout_s", timeout_s, lo=0.01, hi=3600)
        self.sensor = str(options["sensor"]) if options.get("sensor") else None
        self.update_interval_s = number_option("hwmon", "interval_s", options.get("interval_s")
                                               or DEFAULT_INTERVAL_S, lo=0.001, hi=3600)
        self.max_power_w = number_option("hwmon", "max_power_w", options.get("max_power_w")
                                         or DEFAULT_MAX_POWER_W, lo=1, hi=1e6)
        self.channel: Channel | None = None
        self.found: list = []
        self._last: tuple | None = None  # energy channels: (host ns, counter µJ)
        self._spacing = Spacing(self.update_interval_s / 2)

    def open(self) -> None:
        """Find the channels, choose one and read it once.

        Raises:
            MeterConnectionError: no channel, several and no ``sensor``, no match, or unreadable.
            MeterProtocolError: the value is not an integer.
        """
        files = read_files(self.root, [f"{HWMON}/hwmon*/{f}" for f in FILES], run=self.run,
                           label=self.name or "hwmon")
        found = channels(files)
        self.found = [c.key for c in found]
        folder = self.root.rstrip("/") + HWMON
        if not found:
            raise MeterConnectionError(f"hwmon: no power*_input, power*_average or energy*_input in "
                                       f"{folder}/hwmon*", hint="this machine's sensors report no power")
        chosen = [c for c in found if c.matches(self.sensor)] if self.sensor else found
        if len(chosen) != 1:
            what = (f"no channel {self.sensor!r}" if self.sensor and not chosen else
                    f"{len(chosen)} channels match {self.sensor!r}" if self.sensor else
                    f"{len(found)} power/energy channels")
            raise MeterConnectionError(f"hwmon: {what} in {folder}: {', '.join(self.found)}",
                                       hint="choose one with the option sensor=<chip>/<label> "
                                            "(inventory meter_sensor=, host meter --opt sensor=...)")
        self.channel = chosen[0]
        self.model = f"hwmon {self.channel.key} ({self.channel.file.rpartition('/')[2]})"
        value = self._value()
        if self.channel.kind == "energy":
            self._spacing.wait()
            self._last = (self.clock(), value)

    def _value(self) -> int:
        channel = self.channel
        files = read_files(self.root, [channel.file[len(self.root.rstrip("/")):]], run=self.run,
                           label=self.name or "hwmon")
        ok, text = files.get(channel.file, (False, "No such file or directory"))
        if not ok:
            raise MeterConnectionError(f"hwmon: {channel.file}: cannot be read ({text})",
                                       hint="run as root if it is root-only, or the sensor went away")
        unit = "µW" if channel.kind == "power" else "µJ"
        try:
            return integer(channel.file, text, what=f"{channel.kind} in {unit}")
        except ValueError as exc:
            raise MeterProtocolError(f"hwmon: {exc}") from None

    def read(self) -> Reading:
        """The channel's power in W (an energy channel: since the previous read).

        Raises:
            MeterConnectionError, MeterProtocolError: as :meth:`open`; also a read before it.
        """
        if self.channel is None:
            raise MeterConnectionError("hwmon: read() before open()")
        if self.channel.kind == "energy":
            self._spacing.wait()  # at least half the interval after the previous read
        value = self._value()
        if self.channel.kind == "power":
            watts = value / 1e6
        else:
            now = self.clock()
            t0, before = self._last
            self._last = (now, value)
            dt_s = (now - t0) / 1e9
            if dt_s <= 0 or value < before:  # no interval, or a counter that went back (reset)
                return Reading(power_w=None, flags=("invalid",))
            watts = (value - before) / 1e6 / dt_s
        return Reading(power_w=watts, flags=("implausible",) if watts > self.max_power_w else ())

    def describe(self) -> dict:
        info = super().describe()
        channel = self.channel
        info.update(source="on-host sensor", root=self.root,
                    label=f"hwmon sensor {channel.key if channel else '?'}: a component's own sensor, "
                          "not wall power",
                    sensor=channel.key if channel else None, file=channel.file if channel else None,
                    found=list(self.found),
                    method=("power*_input/average µW as read" if channel and channel.kind == "power"
                            else "energy*_input advance / host time between reads"),
                    via="run" if self.run is not None else "local")
        return info


__all__ = ["Channel", "HwmonSensor", "channels"]
