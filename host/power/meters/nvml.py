"""NVIDIA dGPU on-board power and telemetry from NVML, read with ``nvidia-smi --query-gpu`` on the board.

Facts: docs/power.md §10. One read runs, on the board (through ``run``, like the other on-board
sources) or here::

    nvidia-smi -i <gpu> --query-gpu=timestamp,<power>,utilization.gpu,memory.used,clocks.sm,temperature.gpu
               --format=csv

and parses its two lines (header, one row)::

    timestamp, power.draw.instant [W], utilization.gpu [%], memory.used [MiB], clocks.current.sm [MHz], \
    temperature.gpu
    2026/07/14 08:12:53.353, 625.68 W, 100 %, 19818 MiB, 1980 MHz, 59

(one header line, wrapped here).

**Why nvidia-smi and not nvidia-ml-py.** ``nvidia-smi`` is installed with every NVIDIA driver; the
Python bindings (``nvidia-ml-py``) are not on boards and the runner package allows stdlib + numpy +
its runtime only. ``nvidia-smi`` reads the same NVML counters (``nvmlDeviceGetPowerUsage``,
``nvmlDeviceGetUtilizationRates``, ...). One process per read fits the ``run(command) -> stdout``
interface every on-board source uses (a looping ``-lms`` stream needs a long-lived channel the
transport does not give). Cost: one ``nvidia-smi`` start per read (tens of ms with persistence mode
on, ``nvidia-smi -pm 1``; up to seconds without it), so the default interval is 0.2 s.

**Why the header and units are kept** (``--format=csv``, not ``noheader,nounits``): columns are
found by their header name and every unit is checked (W, %, MiB, MHz), so a driver that renames a
field or changes a unit fails loudly (:class:`~host.errors.MeterProtocolError`) instead of being
misread. Bare numbers (``nounits``) are accepted as well.

**Which power.** ``power.draw`` is, per ``nvidia-smi --help-query-gpu``, "on Ampere or newer
devices ... average power draw over 1 sec; on older devices instantaneous"; ``power.draw.instant``
(drivers from about 530 on) is the last instantaneous reading. :meth:`NvmlGpu.open` asks for
``power.draw.instant`` and falls back to ``power.draw`` when the driver does not know the field;
``describe()["power_field"]`` says which. Either is the whole board's draw, accurate to ±5 W
(NVIDIA), ``scope = "board-input"`` (the card, not the host). A load window shorter than about 1 s
measured with the 1 s average is smeared: the window statistics name the interval.

**Values.** ``[N/A]``, ``[Not Supported]`` and other bracketed answers become None: power None
flags the reading ``invalid`` (it never enters the statistics); the other fields are telemetry
(utilization is ``[N/A]`` under MIG). The telemetry of every read is kept with its host timestamp
(:meth:`NvmlGpu.window_telemetry` summarises a load window: utilization, memory used, SM clock,
temperature). ``meter_time_s`` is the board's wall clock from the ``timestamp`` column (local
time of the board, seconds since 1970 read as UTC).

Errors: no ``nvidia-smi`` (exit 127), no driver ("couldn't communicate with the NVIDIA driver"),
no such GPU or any other non-zero exit → :class:`~host.errors.MeterConnectionError`; a missing
column, a wrong unit, a non-number or not exactly one row → :class:`~host.errors.MeterProtocolError`.
"""

from __future__ import annotations

import calendar
import collections
import math
import re
import shlex
import time
from dataclasses import dataclass
from datetime import datetime

from host.errors import MeterConnectionError, MeterOptionError, MeterProtocolError
from host.power.meters.base import Meter, MeterInfo, Reading, number_option, run_command, unknown_options

#: Query fields after the power field, with the unit each must carry (None: no unit).
TELEMETRY_FIELDS = (("utilization.gpu", "%"), ("memory.used", "MiB"), ("clocks.sm", "MHz"),
                    ("temperature.gpu", None))
#: Power fields, preferred first.
POWER_FIELDS = ("power.draw.instant", "power.draw")
#: Header names nvidia-smi prints for query aliases (``clocks.sm`` is printed as ``clocks.current.sm``).
HEADER_ALIASES = {"clocks.sm": ("clocks.sm", "clocks.current.sm"),
                  "power.draw.instant": ("power.draw.instant", "gpu.power.draw.instant")}
#: Result keys of the telemetry fields.
TELEMETRY_KEYS = {"utilization.gpu": "utilization_gpu_pct", "memory.used": "memory_used_mib",
                  "clocks.sm": "sm_clock_mhz", "temperature.gpu": "temperature_c"}
DEFAULT_INTERVAL_S = 0.2
#: Telemetry entries kept (about 5.5 h at 0.2 s); older ones are dropped first.
TELEMETRY_KEPT = 100_000

_HEADER = re.compile(r"\s*([A-Za-z0-9_.]+)\s*(?:\[([^\]]*)\])?\s*")
_RC = re.compile(r"__edgegauge_rc=(\d+)\s*$")
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


@dataclass(frozen=True)
class GpuSample:
    """One parsed ``--query-gpu`` row. Units in the names; None where nvidia-smi answered
    ``[N/A]``/``[Not Supported]``. ``time_s``: the row's ``timestamp`` as seconds since 1970
    (the board's local wall clock read as UTC); None without a timestamp column."""

    power_w: float | None
    utilization_gpu_pct: float | None = None
    memory_used_mib: float | None = None
    sm_clock_mhz: float | None = None
    temperature_c: float | None = None
    time_s: float | None = None

    def telemetry(self) -> dict:
        return {k: getattr(self, k) for k in TELEMETRY_KEYS.values()}


def query_fields(power_field: str = "power.draw.instant") -> tuple:
    """The ``--query-gpu`` fields in order: timestamp, the power field, then :data:`TELEMETRY_FIELDS`."""
    return ("timestamp", power_field) + tuple(f for f, _ in TELEMETRY_FIELDS)


def _cell_value(field: str, text: str, unit: str | None, header_unit: str | None) -> float | None:
    """A numeric cell (``"625.68 W"`` or ``"625.68"``) as float, None for a bracketed answer.

    Raises:
        MeterProtocolError: a wrong unit, a non-number or a non-finite number.
    """
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):  # [N/A], [Not Supported], [Unknown Error], ...
        return None
    number, _, cell_unit = text.partition(" ")
    for got in (cell_unit.strip() or None, header_unit):
        if got is not None and got != unit:
            raise MeterProtocolError(f"nvidia-smi {field}: expected unit {unit or 'none'}, got {got!r} "
                                     f"in {text!r}")
    if not _NUMBER.fullmatch(number) or not math.isfinite(float(number)):
        raise MeterProtocolError(f"nvidia-smi {field}: not a number: {text!r}")
    return float(number)


def _timestamp(text: str) -> float | None:
    text = text.strip()
    if text.startswith("["):
        return None
    try:
        stamp = datetime.strptime(text, "%Y/%m/%d %H:%M:%S.%f")
    except ValueError:
        raise MeterProtocolError(f"nvidia-smi timestamp: expected 'YYYY/MM/DD HH:MM:SS.mmm', got {text!r}"
                                 ) from None
    return calendar.timegm(stamp.timetuple()) + stamp.microsecond / 1e6


def _columns(header: str, fields: tuple) -> dict:
    """query field -> (column index, unit in the header or None) from the CSV header line.

    Raises:
        MeterProtocolError: a field has no column.
    """
    names = []
    for cell in header.split(","):
        m = _HEADER.fullmatch(cell)
        names.append((m.group(1), m.group(2)) if m else (cell.strip(), None))
    found = {}
    for field in fields:
        accepted = HEADER_ALIASES.get(field, (field,))
        index = next((i for i, (name, _) in enumerate(names) if name in accepted), None)
        if index is None:
            raise MeterProtocolError(f"nvidia-smi: no {field} column in the header {header.strip()!r}")
        found[field] = (index, names[index][1])
    return found


def parse_query(text: str, power_field: str = "power.draw.instant") -> list:
    """:class:`GpuSample` rows from ``nvidia-smi --query-gpu=<query_fields(power_field)> --format=csv``
    output (a header line, then one row per GPU). Lines starting with ``#`` and blank lines are skipped.
    The row may hold more columns than asked for (only the named ones are read).

    Raises:
        MeterProtocolError: no header, a missing column, a short row, a wrong unit or a non-number.
    """
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise MeterProtocolError("nvidia-smi --query-gpu: empty answer")
    fields = query_fields(power_field)
    cols = _columns(lines[0], fields)
    units = dict(TELEMETRY_FIELDS, **{power_field: "W"})
    rows = []
    for line in lines[1:]:
        cells = line.split(",")
        need = max(i for i, _ in cols.values()) + 1
        if len(cells) < need:
            raise MeterProtocolError(f"nvidia-smi --query-gpu: {len(cells)} columns, expected {need}: "
                                     f"{line.strip()[:200]!r}")
        values = {f: _cell_value(f, cells[i], units[f], hu)
                  for f, (i, hu) in cols.items() if f != "timestamp"}
        rows.append(GpuSample(power_w=values[power_field], time_s=_timestamp(cells[cols["timestamp"][0]]),
                              **{TELEMETRY_KEYS[f]: values[f] for f, _ in TELEMETRY_FIELDS}))
    return rows


def _summary(values: list) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


class NvmlGpu(Meter):
    """One NVIDIA GPU's board power (NVML, through ``nvidia-smi``) plus its telemetry.

    Args:
        port: unused (``None``).
        name: registry name (``nvml``).
        run: ``run(command) -> stdout`` executing a shell command on the board; ``None`` runs it
            here with ``/bin/sh -c``.
        root: accepted for symmetry with the other on-board sources (unused).
        timeout_s: limit for the local command.
        gpu: option, the GPU index or UUID given to ``nvidia-smi -i`` (default 0).
        interval_s: option, the read interval in s (default :data:`DEFAULT_INTERVAL_S`).
        power_field: option, ``power.draw.instant`` or ``power.draw`` (default: the first the
            driver knows).
        nvidia_smi: option, the executable (default ``nvidia-smi``).

    After :meth:`open`: ``power_field``, ``gpu_name``, ``last`` (the latest :class:`GpuSample`).
    """

    INFO = MeterInfo(names=("nvml",),
                     link="`nvidia-smi --query-gpu` on the board, over SSH (§10)",
                     scope="`board-input` (the GPU card)", interval="0.2 s (`interval_s` option)",
                     onboard=True)

    scope = "board-input"
    update_interval_s = DEFAULT_INTERVAL_S

    def __init__(self, port=None, *, name: str = "", run=None, root: str = "/", timeout_s: float = 10.0,
                 **options):
        unknown_options("nvml", options,
                        ("root", "timeout_s", "gpu", "nvidia_smi", "interval_s", "power_field"))
        super().__init__(port, name=name, **options)
        self.run = run
        self.root = str(root)
        self.timeout_s = number_option("nvml", "timeout_s", timeout_s, lo=0.01, hi=3600)
        self.gpu = str(options.get("gpu", 0))
        self.nvidia_smi = str(options.get("nvidia_smi") or "nvidia-smi")
        interval = options.get("interval_s") or DEFAULT_INTERVAL_S
        self.update_interval_s = number_option("nvml", "interval_s", interval, lo=0.001, hi=3600)
        wanted = options.get("power_field")
        if wanted is not None and wanted not in POWER_FIELDS:
            raise MeterOptionError(f"nvml: power_field must be one of {', '.join(POWER_FIELDS)}, "
                                   f"got {wanted!r}")
        self._power_fields = (wanted,) if wanted else POWER_FIELDS
        self.power_field: str | None = None
        self.gpu_name: str | None = None
        self.last: GpuSample | None = None
        self.telemetry = collections.deque(maxlen=TELEMETRY_KEPT)  # (host monotonic ns, GpuSample)

    # -- the command -----------------------------------------------------------------------

    def _command(self, fields: tuple) -> str:
        # stderr folded into stdout and the exit status echoed: `run` only returns stdout.
        return (f"{shlex.quote(self.nvidia_smi)} -i {shlex.quote(self.gpu)} --query-gpu={','.join(fields)} "
                f"--format=csv 2>&1; echo __edgegauge_rc=$?")

    def _execute(self, command: str) -> str:
        return run_command(self.run, command, board_label=self.name or "nvml", label=self.nvidia_smi,
                           timeout_s=self.timeout_s, hint="is persistence mode on? nvidia-smi -pm 1")

    def _query(self, power_field: str) -> GpuSample:
        """One run of the query: the GPU's row.

        Raises:
            MeterConnectionError: nvidia-smi missing or failing (the message quotes it).
            MeterProtocolError: an answer that does not parse, or not exactly one row.
        """
        out = self._execute(self._command(query_fields(power_field)))
        lines = out.splitlines()
        rc = None
        if lines and _RC.search(lines[-1]):
            rc = int(_RC.search(lines[-1]).group(1))
            lines = lines[:-1]
        text = "\n".join(lines).strip()
        if rc:
            raise self._failure(rc, text, power_field)
        rows = parse_query(text, power_field)
        if len(rows) != 1:
            raise MeterProtocolError(f"{self.nvidia_smi} -i {self.gpu}: expected one row, got {len(rows)}: "
                                     f"{text[:200]!r}")
        return rows[0]

    def _failure(self, rc: int, text: str, power_field: str) -> MeterConnectionError:
        low = text.lower()
        if rc in (126, 127) or "not found" in low:
            return MeterConnectionError(f"{self.nvidia_smi}: command not found on the board ({text[:200]!r})",
                                        hint="install the NVIDIA driver (nvidia-smi comes with it)")
        if "not a valid field" in low:
            return _UnknownField(f"{self.nvidia_smi}: the driver does not know {power_field}: {text[:200]!r}")
        if "communicate with the nvidia driver" in low:
            return MeterConnectionError(f"{self.nvidia_smi}: no NVIDIA driver answering ({text[:200]!r})",
                                        hint="is the driver loaded? (nvidia-smi alone shows the same)")
        return MeterConnectionError(f"{self.nvidia_smi} -i {self.gpu} exited with {rc}: {text[:200]!r}",
                                    hint="check the GPU index (meter_gpu=) with nvidia-smi -L")

    # -- Meter interface ---------------------------------------------------------------------

    def open(self) -> None:
        """Run the query once: checks that the GPU answers with a power value and picks the
        power field (``power.draw.instant`` when the driver knows it).

        Raises:
            MeterConnectionError, MeterTimeoutError, MeterProtocolError (also when the GPU reports
            no power: power management unsupported).
        """
        for field in self._power_fields:
            try:
                sample = self._query(field)
            except _UnknownField:
                if field == self._power_fields[-1]:
                    raise
                continue
            if sample.power_w is None:
                raise MeterProtocolError(f"{self.nvidia_smi} -i {self.gpu}: {field} is [N/A]: this GPU does "
                                         "not report its power", hint="use an external meter")
            self.power_field = field
            self.model = f"NVIDIA GPU {self.gpu} ({field})"
            self._keep(sample)
            return

    def read(self) -> Reading:
        """One run of the query. Power ``[N/A]`` is a reading flagged ``invalid``.

        Raises:
            MeterConnectionError, MeterTimeoutError, MeterProtocolError.
        """
        if self.power_field is None:
            raise MeterConnectionError("nvml: read() before open()")
        sample = self._query(self.power_field)
        self._keep(sample)
        flags = () if sample.power_w is not None else ("invalid",)
        return Reading(power_w=sample.power_w, flags=flags, meter_time_s=sample.time_s)

    def _keep(self, sample: GpuSample) -> None:
        self.last = sample
        self.telemetry.append((time.monotonic_ns(), sample))

    def window_telemetry(self, t_start_ns: int, t_end_ns: int) -> dict:
        """Telemetry of the reads stamped in ``[t_start_ns, t_end_ns]`` (host monotonic ns):
        ``{"reads", "utilization_gpu_pct", "memory_used_mib", "sm_clock_mhz", "temperature_c",
        "source"}``, each field ``{"mean", "min", "max", "n"}`` or None (no value: [N/A] or no read)."""
        inside = [s for t, s in self.telemetry if t_start_ns <= t <= t_end_ns]
        out = {"reads": len(inside)}
        for key in TELEMETRY_KEYS.values():
            out[key] = _summary([getattr(s, key) for s in inside])
        out["source"] = f"nvidia-smi --query-gpu, GPU {self.gpu}, host-stamped after each read"
        return out

    def describe(self) -> dict:
        info = super().describe()
        power_note = ("1 s average on Ampere and newer, instantaneous before"
                      if self.power_field == "power.draw" else "instantaneous")
        info.update(source="on-board", gpu=self.gpu, power_field=self.power_field, power_note=power_note,
                    telemetry=[f for f, _ in TELEMETRY_FIELDS],
                    last=self.last.telemetry() if self.last else None,
                    via="run" if self.run is not None else "local")
        return info


class _UnknownField(MeterConnectionError):
    """The driver does not know a query field (older drivers and ``power.draw.instant``)."""


__all__ = ["GpuSample", "NvmlGpu", "POWER_FIELDS", "TELEMETRY_FIELDS", "parse_query", "query_fields"]
