"""Power as part of a campaign: which meter a device has, idle measurement per device,
sampling around each cell, alignment of the runner's timed loop with host-side samples,
and the ``power`` block of a cell (docs/power.md §8).

Per device with a meter (inventory ``meter``, ``meter_port``, ``meter_<option>``):

1. at the start (and again every ``idle_every_s``): settle, then an idle window with
   nothing of ours running → ``power_w_idle`` = median; stored as
   ``<device>/idle-<n>.json`` + ``.power.csv``;
2. per cell: the sampler runs from before the runner starts until after it ends; the
   runner's timed loop (board CLOCK_MONOTONIC) is mapped onto the host clock with an
   offset estimated by bracketed probes before and after the cell; the load window is
   the timed loop, lengthened (more iterations) so it holds at least ``min_samples``
   meter updates; samples go to ``<cell>.power.csv`` next to the cell JSON.

A meter failure makes the power part INVALID (with the error); the latency result stays.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from host.errors import HostError, PowerError
from runners.fileio import write_json_atomic
from runners.util import utc_now

#: Inventory variables that configure the meter itself (not driver options).
_NOT_OPTIONS = ("meter", "meter_port")


def _value(text):
    """Inventory strings to numbers where they are numbers (``"9600"`` -> 9600)."""
    if not isinstance(text, str):
        return text
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass
class MeterSpec:
    """Which meter a device has: registry name, port and driver options."""

    name: str
    port: str | None = None
    options: dict = field(default_factory=dict)

    @property
    def onboard(self) -> bool:
        """True when the driver declares it is read on the board (``MeterInfo.onboard``)."""
        from host.power.meters import is_onboard

        return is_onboard(self.name)

    def to_json(self) -> dict:
        return {"meter": self.name, "port": self.port, "options": dict(self.options)}


def meter_spec(device, meter: str | None = None, port: str | None = None) -> MeterSpec | None:
    """The device's meter from its inventory variables (``meter``, ``meter_port``,
    ``meter_<option>`` -> driver option ``<option>``), or from explicit ``meter``/``port``
    (CLI). None when the device has no meter."""
    vars_ = getattr(device, "vars", {}) or {}
    name = meter or vars_.get("meter")
    if not name:
        return None
    options = {k[len("meter_"):]: _value(v) for k, v in vars_.items()
               if k.startswith("meter_") and k not in _NOT_OPTIONS}
    return MeterSpec(str(name), port or vars_.get("meter_port"), options)


class PowerSession:
    """Power measurement for one device during a campaign (one thread uses it).

    Args:
        spec: the meter.
        board: the :class:`host.lab.board.Board` the cells run on (for clock probes).
        folder: the device's folder in the campaign (idle files go there).
        run: for on-board meters, ``run(command) -> stdout`` on the board.
    """

    def __init__(self, spec: MeterSpec, board, folder: Path, *, settle_s: float = 5.0,
                 window_s: float = 10.0, idle_every_s: float = 1800.0, min_samples: int = 10,
                 probes: int = 5, run=None, on_close=None):
        self.spec = spec
        self.board = board
        self.folder = Path(folder)
        self.settle_s = settle_s
        self.window_s = window_s
        self.idle_every_s = idle_every_s
        self.min_samples = min_samples
        self.probes = probes
        self.run = run
        self.on_close = on_close
        self.meter = None
        self.idle = None  # latest idle result (dict)
        self._idle_at = None
        self._idle_n = _last_idle_number(self.folder)  # a resumed campaign continues the numbering

    # -- meter --------------------------------------------------------------------------

    def open(self) -> None:
        """Open the meter.

        Raises:
            MeterError: the meter cannot be opened.
        """
        from host.power.meters import open_meter

        options = dict(self.spec.options)
        if self.spec.onboard and self.run is not None:
            options["run"] = self.run
        self.meter = open_meter(self.spec.name, self.spec.port, **options)

    def close(self) -> None:
        if self.meter is not None:
            try:
                self.meter.close()
            except Exception:  # closing a broken meter must not hide the campaign's result
                pass
            self.meter = None
        if self.on_close is not None:
            self.on_close()
            self.on_close = None

    def required_window_s(self) -> float:
        from host.power import required_window_s

        return required_window_s(self.meter.update_interval_s, self.min_samples)

    def extend(self, config):
        """``config`` with the timed loop lengthened so the load window holds at least
        ``min_samples`` meter updates (more iterations; nothing else changes)."""
        need = self.required_window_s()
        policy = config.policy
        if policy.min_duration_s >= need:
            return config
        longer = dataclasses.replace(policy, min_duration_s=need,
                                     max_duration_s=max(policy.max_duration_s, 2 * need))
        return dataclasses.replace(config, policy=longer)

    # -- idle ---------------------------------------------------------------------------

    def idle_due(self) -> bool:
        return self._idle_at is None or time.monotonic() - self._idle_at >= self.idle_every_s

    def measure_idle(self) -> dict:
        """Settle, then an idle window (:func:`host.power.measure_idle`); store
        ``idle-<n>.json`` and its samples (n continues after any idle file already in the
        folder: a resumed campaign never overwrites one).

        Raises:
            PowerError: the meter failed or too few valid samples were read.
        """
        from host.power import measure_idle, write_power_csv

        self._idle_n += 1
        stem = f"idle-{self._idle_n}"
        try:
            result = measure_idle(self.meter, settle_s=self.settle_s, window_s=self.window_s)
        except Exception as exc:  # the meter went away (MeterConnectionError or the driver's own)
            raise PowerError(f"{self.board.name}: idle measurement failed: {exc}") from exc
        write_power_csv(self.folder / f"{stem}.power.csv", result.samples)
        doc = {"id": stem, "meter": self.meter.describe(), "settle_s": self.settle_s,
               "start_utc": utc_now(),
               "samples_file": f"{stem}.power.csv", **result.to_dict()}
        write_json_atomic(doc, str(self.folder / f"{stem}.json"))
        if not doc["n_samples"]:
            raise PowerError(f"{self.board.name}: idle measurement failed: "
                             "no valid meter samples in the idle window")
        self.idle = doc
        self._idle_at = time.monotonic()
        return doc

    # -- cells --------------------------------------------------------------------------

    def offset(self):
        from host.power import estimate_offset

        probes = iter(self.board.clock_probes(self.probes + 1)[1:])  # the first pays process start
        return estimate_offset(lambda: next(probes), repeats=self.probes)

    def start_cell(self):
        """Clock offset before the cell, then start sampling. Returns a token for
        :meth:`finish_cell`."""
        from host.power import Sampler

        before, err = None, None
        try:
            before = self.offset()
        except HostError as exc:
            err = str(exc)
        sampler = Sampler(self.meter, phase="cell")
        sampler.start()
        return {"sampler": sampler, "before": before, "offset_error": err}

    def finish_cell(self, token, doc: dict, csv_path: Path) -> dict:
        """Stop sampling, align the runner's timed loop, compute the ``power`` block."""
        from host.power import combine, host_window, load_window_stats, write_power_csv

        sampler = token["sampler"]
        samples = sampler.stop()
        after, err = None, token["offset_error"]
        try:
            after = self.offset()
        except HostError as exc:
            err = err or str(exc)
        write_power_csv(csv_path, samples)
        described = self.meter.describe()
        block = {"meter": described, "samples_file": csv_path.name,
                 "samples_total": len(samples),
                 "idle": {k: self.idle.get(k) for k in ("id", "power_w_idle", "power_w_std", "n_samples",
                                                        "stable")}
                 if self.idle else None}
        if described.get("label"):  # on-host counters and sensors say what they measure (not wall power)
            block["measures"] = described["label"]
        fatal = sampler.fatal_error
        lat = doc.get("latency") or {}
        start, end = lat.get("loop_start_monotonic_ns"), lat.get("loop_end_monotonic_ns")
        reasons = []
        if fatal:
            reasons.append(f"meter failed during the cell: {fatal}")
        if start is None or end is None:
            reasons.append("no load window: the runner did not finish its timed loop")
        if token["before"] is None or after is None:
            reasons.append(f"clock offset unknown: {err}")
        if reasons:
            block["verdict"] = {"result": "INVALID", "reasons": reasons, "warnings": [], "checks": {}}
            return block
        offset = combine(token["before"], after)
        t_s, t_e, iterations, uncertainty_ms = host_window(lat, offset)
        stats = load_window_stats(
            samples, t_s, t_e, iterations=iterations, power_w_idle=self.idle["power_w_idle"],
            idle_std_w=self.idle.get("power_w_std"), min_samples=self.min_samples,
            update_interval_s=self.meter.update_interval_s, alignment_uncertainty_ms=uncertainty_ms)
        block.update(stats)
        telemetry = self.meter.window_telemetry(t_s, t_e)
        if telemetry is not None:  # nvml: GPU utilization, memory used, SM clock, temperature in the window
            block["telemetry"] = telemetry
        block["alignment"] = {"method": "bracketed monotonic-clock probes before and after the cell",
                              "offset_ns": offset.offset_ns, "uncertainty_ms": uncertainty_ms,
                              "rtt_ms": offset.rtt_ns / 1e6,
                              "load_window_host_ns": [t_s, t_e]}
        return block


def _last_idle_number(folder: Path) -> int:
    """The highest n of ``idle-<n>.json`` / ``idle-<n>.power.csv`` in ``folder`` (0: none), so
    that a resumed campaign never overwrites an idle window its earlier cells reference."""
    numbers = [0]
    for path in Path(folder).glob("idle-*"):
        head = path.name[len("idle-"):].split(".", 1)[0]
        if head.isdigit():
            numbers.append(int(head))
    return max(numbers)


def failed_block(spec: MeterSpec | None, message: str) -> dict:
    """The ``power`` block of a cell whose power could not be measured at all."""
    return {"meter": spec.to_json() if spec else None, "error": message,
            "verdict": {"result": "INVALID", "reasons": [message], "warnings": [], "checks": {}}}


__all__ = ["MeterSpec", "PowerError", "PowerSession", "failed_block", "meter_spec"]
