"""Jetson on-board power from the INA3221 monitors (sysfs), plus a tegrastats line parser.

Facts: docs/power.md §5. Three sysfs layouts, looked for in this order:

* ``jp5-hwmon`` — JetPack 5/6 (Orin, kernel ``ina3221`` hwmon driver):
  ``/sys/bus/i2c/drivers/ina3221/*-004*/hwmon/hwmon*/in{N}_label``, ``in{N}_input`` (mV),
  ``curr{N}_input`` (mA), ``update_interval`` (ms).
* ``jp5-xavier-hwmon`` — JetPack 5 on Xavier: the same files under
  ``/sys/bus/i2c/devices/*-004*/hwmon/hwmon*/``.
* ``jp4-iio`` — JetPack 4 (Nano, TX1, Xavier): ``/sys/bus/i2c/drivers/ina3221x/*-004*/
  iio:device*/rail_name_{N}``, ``in_power{N}_input`` (mW), ``in_voltage{N}_input`` (mV),
  ``in_current{N}_input`` (mA).

Rules: ``hwmon*`` is globbed (its number changes per boot), labels containing ``NC`` and the
``in7`` "sum of shunt voltages" channel are skipped, hwmon power is ``mV × mA / 1000`` mW.

The measured quantity is the module input rail (``VDD_IN``, JetPack 4 Nano ``POM_5V_IN``)
when the board has one (``scope = "module"``), else the sum of all rails (AGX Xavier, AGX
Orin: ``scope = "rails"``). Either way it excludes the carrier board and the power supply
(docs/power.md §7): on-board totals are lower than board-input or wall power.

The files are read on the board. ``run`` (a callable ``run(command) -> stdout``, production
builds it on the SSH transport) gets exactly one shell command for detection in
:meth:`JetsonRails.open` and one per :meth:`JetsonRails.read`; without ``run`` the files are
read directly. Every path is ``root`` + the absolute sysfs path, in both modes, so tests
point ``root`` at a fake tree.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from dataclasses import dataclass

from host.errors import MeterConnectionError, MeterProtocolError
from host.power.meters.base import Meter, MeterInfo, Reading, number_option, run_on_board, unknown_options

#: Files probed in each monitor directory.
HWMON_FILES = ("in*_label", "in*_input", "curr*_input", "update_interval")
IIO_FILES = ("rail_name_*", "in_power*_input", "in_voltage*_input", "in_current*_input")
#: (layout name, directory glob under the sysfs root, files probed there), in detection order.
LAYOUTS = (
    ("jp5-hwmon", "/sys/bus/i2c/drivers/ina3221/*-004*/hwmon/hwmon*/", HWMON_FILES),
    ("jp5-xavier-hwmon", "/sys/bus/i2c/devices/*-004*/hwmon/hwmon*/", HWMON_FILES),
    ("jp4-iio", "/sys/bus/i2c/drivers/ina3221x/*-004*/iio:device*/", IIO_FILES),
)

#: Labels of the module input rail: when present it is the measured quantity.
MODULE_INPUT_LABELS = ("VDD_IN", "POM_5V_IN")

#: Used when the monitor does not say how often it updates.
DEFAULT_UPDATE_INTERVAL_S = 0.1

_HWMON_LABEL = re.compile(r"in(\d+)_label")
_IIO_NAME = re.compile(r"rail_name_(\d+)")


@dataclass(frozen=True)
class Rail:
    """One INA3221 channel. Paths include the sysfs root. hwmon channels have voltage and
    current files; iio channels have a power file (and usually voltage and current)."""

    label: str
    device: str
    channel: int
    power_file: str | None = None
    voltage_file: str | None = None
    current_file: str | None = None


def _skipped_label(label: str) -> bool:
    """True for channels that are not rails: empty, ``NC`` (not connected) or the in7 sum."""
    if not label or "sum of shunt" in label.lower():
        return True
    return "NC" in re.split(r"[^A-Za-z0-9]+", label.upper())


def _sysfs(root: str, path: str) -> str:
    """``root`` + absolute ``path`` (``root`` "/" leaves it unchanged)."""
    return root.rstrip("/") + path


class JetsonRails(Meter):
    """Jetson INA3221 rails read from sysfs on the board.

    Args:
        port: unused (``None``).
        name: registry name (``jetson-ina3221``).
        run: ``run(command) -> stdout`` executing a shell command on the board; ``None``
            reads the files on this machine.
        root: sysfs root prefix, ``"/"`` on a board, a fake tree in tests.
        timeout_s: kept for interface symmetry (``run`` enforces its own timeout).

    After :meth:`open`: ``layout`` (``jp5-hwmon``, ``jp5-xavier-hwmon``, ``jp4-iio``),
    ``rails`` (labels read), ``measured`` (the module input label, or ``None`` for the sum
    of rails), ``scope`` and ``update_interval_s``.
    """

    INFO = MeterInfo(names=("jetson-ina3221",),
                     link="sysfs on the board, read over SSH",
                     scope="`module` or `rails`", interval="the monitor's `update_interval`, else 0.1 s",
                     onboard=True)

    scope = "module"
    update_interval_s = DEFAULT_UPDATE_INTERVAL_S

    def __init__(self, port=None, *, name: str = "", run=None, root: str = "/", timeout_s: float = 5.0,
                 **options):
        unknown_options("jetson-ina3221", options, ("root", "timeout_s"))
        super().__init__(port, name=name, **options)
        self.run = run
        self.root = str(root)
        self.timeout_s = number_option("jetson-ina3221", "timeout_s", timeout_s, lo=0.01, hi=3600)
        self.layout: str | None = None
        self.rails: list = []
        self.measured: str | None = None
        self.devices: list = []
        self._rails: list = []
        self._files: list = []

    # -- access to the board's files ---------------------------------------------------

    def _run(self, command: str) -> str:
        return run_on_board(self.run, command, self.name or "jetson-ina3221")

    def _probe(self) -> list:
        """``(layout, path, contents)`` for every file of every layout that exists."""
        found = []
        if self.run is None:
            prefix = glob.escape(self.root.rstrip("/"))
            for layout, base, names in LAYOUTS:
                for name in names:
                    for path in sorted(glob.glob(prefix + base + name)):
                        if os.path.isfile(path):
                            try:
                                with open(path) as fh:
                                    text = fh.read().strip()
                            except OSError:
                                text = ""
                            found.append((layout, path, text))
            return found
        prefix = shlex.quote(self.root.rstrip("/")) if self.root.rstrip("/") else ""
        loops = []
        for layout, base, names in LAYOUTS:
            patterns = " ".join(prefix + base + name for name in names)
            loops.append(f'for f in {patterns}; do [ -f "$f" ] && '
                         f'printf \'{layout}\\t%s\\t%s\\n\' "$f" "$(cat "$f" 2>/dev/null)"; done')
        out = self._run("; ".join(loops) + "; true")
        for line in out.splitlines():
            parts = line.split("\t", 2)
            if len(parts) == 3 and parts[0] in {lay for lay, _, _ in LAYOUTS}:
                found.append((parts[0], parts[1], parts[2].strip()))
        return found

    def _read_files(self, paths: list) -> dict:
        """path -> contents for ``paths`` (one command through ``run``).

        Raises:
            MeterProtocolError: a file is missing or unreadable.
        """
        values = {}
        if self.run is None:
            for path in paths:
                try:
                    with open(path) as fh:
                        values[path] = fh.read().strip()
                except OSError as exc:
                    raise MeterProtocolError(f"{path}: cannot be read ({exc.strerror or exc})",
                                             hint="the INA3221 node went away: re-run open()") from exc
            return values
        quoted = " ".join(shlex.quote(p) for p in paths)
        out = self._run(f'for f in {quoted}; do if v=$(cat "$f" 2>&1); '
                        f'then printf \'ok\\t%s\\t%s\\n\' "$f" "$v"; '
                        f'else printf \'err\\t%s\\t%s\\n\' "$f" "$v"; fi; done; true')
        for line in out.splitlines():
            parts = line.split("\t", 2)
            if len(parts) != 3:
                continue
            status, path, text = parts
            if status == "err":
                raise MeterProtocolError(f"{path}: cannot be read ({text.strip()})",
                                         hint="the INA3221 node went away: re-run open()")
            if status == "ok":
                values[path] = text.strip()
        for path in paths:
            if path not in values:
                raise MeterProtocolError(f"{path}: no contents in the board's answer {out[-200:]!r}")
        return values

    # -- Meter interface -----------------------------------------------------------------

    def open(self) -> None:
        """Find the INA3221 nodes and choose the measured quantity.

        Raises:
            MeterConnectionError: no layout with a usable rail (message lists the paths tried).
        """
        found = self._probe()
        for layout, _, _ in LAYOUTS:
            files = {path: text for lay, path, text in found if lay == layout}
            rails = self._rails_of(layout, files)
            if not rails:
                continue
            self.layout = layout
            self._rails = rails
            self.rails = [r.label for r in rails]
            self.devices = sorted({r.device for r in rails})
            self.measured = next((r.label for r in rails if r.label.upper() in MODULE_INPUT_LABELS), None)
            self.scope = "module" if self.measured else "rails"
            self.model = f"INA3221 ({layout})"
            self.update_interval_s = self._update_interval(files)
            self._files = self._files_to_read()
            return
        tried = [_sysfs(self.root, base + (names[0])) for _, base, names in LAYOUTS]
        raise MeterConnectionError("no Jetson INA3221 rail found; tried " + ", ".join(tried),
                                   hint="is this a Jetson? JetPack 4 Xavier may need sudo to read all rails")

    def _rails_of(self, layout: str, files: dict) -> list:
        """Usable rails of one layout, from path -> contents of its probed files."""
        rails = []
        seen = set()
        for path in sorted(files, key=_natural):
            directory, base = os.path.split(path)
            hwmon = layout != "jp4-iio"
            match = (_HWMON_LABEL if hwmon else _IIO_NAME).fullmatch(base)
            if not match:
                continue
            n = int(match.group(1))
            label = files[path].strip()
            if (hwmon and n == 7) or _skipped_label(label):
                continue
            if hwmon:
                device = directory.split("/")[-3]
                volt, curr = f"{directory}/in{n}_input", f"{directory}/curr{n}_input"
                if volt not in files or curr not in files:
                    continue
                rail = Rail(label, device, n, voltage_file=volt, current_file=curr)
            else:
                device = directory.split("/")[-2]
                power = f"{directory}/in_power{n}_input"
                if power not in files:
                    continue
                volt, curr = f"{directory}/in_voltage{n}_input", f"{directory}/in_current{n}_input"
                rail = Rail(label, device, n, power_file=power,
                            voltage_file=volt if volt in files else None,
                            current_file=curr if curr in files else None)
            if rail.label in seen:
                rail = Rail(f"{label}@{device}", device, n, rail.power_file, rail.voltage_file,
                            rail.current_file)
            seen.add(rail.label)
            rails.append(rail)
        return rails

    @staticmethod
    def _update_interval(files: dict) -> float:
        """The slowest hwmon ``update_interval`` (ms) in seconds, else the default."""
        intervals = []
        for path, text in files.items():
            if os.path.basename(path) == "update_interval":
                try:
                    ms = int(text)
                except ValueError:
                    continue
                if ms > 0:
                    intervals.append(ms / 1000)
        return max(intervals) if intervals else DEFAULT_UPDATE_INTERVAL_S

    def _files_to_read(self) -> list:
        files = []
        for rail in self._rails:
            if rail.power_file:
                files.append(rail.power_file)
                if rail.label == self.measured:
                    files += [p for p in (rail.voltage_file, rail.current_file) if p]
            else:
                files += [rail.voltage_file, rail.current_file]
        return files

    def read(self) -> Reading:
        """Read every rail once (one command through ``run``).

        Raises:
            MeterConnectionError: not opened, or ``run`` failed.
            MeterProtocolError: a file disappeared or does not hold an integer.
        """
        if self.layout is None:
            raise MeterConnectionError("jetson-ina3221: read() before open()")
        values = self._read_files(self._files)

        def num(path):
            text = values[path]
            try:
                return int(text)
            except ValueError:
                raise MeterProtocolError(f"{path}: expected an integer, got {text!r}") from None

        micro_w = {}
        volts = amps = None
        for rail in self._rails:
            if rail.power_file:
                micro_w[rail.label] = num(rail.power_file) * 1000  # mW -> µW
                if rail.label == self.measured and rail.voltage_file and rail.current_file:
                    volts, amps = num(rail.voltage_file) / 1000, num(rail.current_file) / 1000
            else:
                mv, ma = num(rail.voltage_file), num(rail.current_file)
                micro_w[rail.label] = mv * ma  # mV × mA = µW
                if rail.label == self.measured:
                    volts, amps = mv / 1000, ma / 1000
        total = micro_w[self.measured] if self.measured else sum(micro_w.values())
        rails = {label: uw / 1_000_000 for label, uw in micro_w.items()}
        return Reading(power_w=total / 1_000_000, voltage_v=volts, current_a=amps, rails=rails)

    def describe(self) -> dict:
        info = super().describe()
        info.update(source="on-board", layout=self.layout, rails=list(self.rails), measured=self.measured,
                    devices=list(self.devices), via="run" if self.run is not None else "local")
        return info


def _natural(path: str):
    """Sort key that puts ``in2`` before ``in10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


#: ``NAME cur[mW]/avg[mW]`` or ``NAME a[mW]/b[mW]/c[mW]``; the name must start a field and the
#: numbers must end it (so ``RAM 2448/7772MB`` or ``IRAM 0/252kB`` do not match).
_TEGRASTATS_POWER = re.compile(
    r"(?<!\S)([A-Za-z_][A-Za-z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?!\S)")


def parse_tegrastats(line: str) -> dict:
    """Rail powers in W from one tegrastats line: ``{"VDD_IN": 5.52, ...}``.

    Accepts the old form ``GPU 120/100`` (mW without unit), the JetPack 5+ form
    ``VDD_IN 5520mW/5400mW`` and the three-value form ``VDD_GPU 3588mW/3588mW/3588mW``. The
    first number (instantaneous) is used; the others are tegrastats' own averages
    (undocumented window). Fields other than power (RAM, SWAP, CPU, ...) and ``NC`` channels
    are ignored.
    """
    return {m.group(1): int(m.group(2)) / 1000 for m in _TEGRASTATS_POWER.finditer(line)
            if not _skipped_label(m.group(1))}


__all__ = ["JetsonRails", "LAYOUTS", "MODULE_INPUT_LABELS", "Rail", "parse_tegrastats"]
