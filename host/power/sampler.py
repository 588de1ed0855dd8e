"""Power samples and the sampler thread: every meter reading stamped on the host clock, the
per-cell CSV (one row per reading) and sequence-gap counting. Method: :mod:`host.power`."""

from __future__ import annotations

import csv
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from host.errors import MeterConnectionError, MeterError
from host.power.meters.base import Meter
from runners.fileio import write_atomic

CSV_COLUMNS = ("t_mono_ns", "t_wall_ns", "phase", "power_w", "voltage_v", "current_a", "flags",
               "meter_seq", "meter_time_s", "error")
_FLAG_SEP = "|"


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class Sample:
    """One meter reading (or one failed read) with its host timestamps.

    Attributes:
        t_mono_ns: ``time.monotonic_ns()`` taken right after ``read()`` returned (or raised).
        t_wall_ns: ``time.time_ns()`` taken right after ``t_mono_ns``.
        power_w, voltage_v, current_a: the reading in W, V, A; None when the meter reported
            no valid value (then ``flags`` says why) or when the read failed.
        flags: the driver's flags (``"invalid"``, ``"over_range"``, ...), a tuple of str.
        meter_seq: the meter's own sequence number, if it has one (detects dropped updates).
        meter_time_s: the meter's own clock in seconds, if it has one.
        phase: the sampler's phase label when the sample was taken ("settle", "idle",
            "load", ... or "").
        error: a sampler-level error (``"MeterTimeoutError: ..."``); such samples have
            ``power_w`` None.
    """

    t_mono_ns: int
    t_wall_ns: int
    power_w: float | None
    voltage_v: float | None = None
    current_a: float | None = None
    flags: tuple = ()
    meter_seq: int | None = None
    meter_time_s: float | None = None
    phase: str = ""
    error: str | None = None

    @property
    def valid(self) -> bool:
        """A finite power value, no flags and no error: the sample enters the statistics."""
        return (self.error is None and self.power_w is not None and math.isfinite(self.power_w)
                and not self.flags)


def write_power_csv(path, samples: Iterable[Sample]) -> None:
    """Write samples as CSV with the columns of :data:`CSV_COLUMNS`.

    None is written as an empty field, ``flags`` joined with ``|``, floats with ``repr`` (exact
    round trip through :func:`read_csv`). Written to a temp file in the same folder and renamed,
    so a reader never sees a partial file.

    Raises:
        OSError: the folder is not writable.
    """
    def write(fh):
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for s in samples:
            w.writerow(csv_row(s))

    write_atomic(path, write, suffix=".csv", newline="")


def csv_row(s: Sample) -> list:
    """One sample as a row of :data:`CSV_COLUMNS` (the format :func:`read_csv` reads)."""
    return [s.t_mono_ns, s.t_wall_ns, s.phase, _fmt(s.power_w), _fmt(s.voltage_v),
            _fmt(s.current_a), _FLAG_SEP.join(str(f) for f in s.flags), _fmt(s.meter_seq),
            _fmt(s.meter_time_s), "" if s.error is None else s.error]


def read_csv(path) -> list[Sample]:
    """Read a file written by :func:`write_power_csv` / :meth:`Sampler.write_csv`.

    Raises:
        OSError: the file cannot be read.
        ValueError: a column is missing or a value does not parse (the message names the
            line and column).
    """
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: not a power CSV, missing columns {missing}")
        for row in reader:
            col = None
            try:
                col = "t_mono_ns"
                t_mono = int(row[col])
                col = "t_wall_ns"
                t_wall = int(row[col])
                vals = {}
                for col in ("power_w", "voltage_v", "current_a", "meter_time_s"):
                    vals[col] = float(row[col]) if row[col] != "" else None
                col = "meter_seq"
                seq = int(row[col]) if row[col] != "" else None
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{reader.line_num}: bad {col}: {exc}") from None
            flags = tuple(row["flags"].split(_FLAG_SEP)) if row["flags"] else ()
            out.append(Sample(t_mono_ns=t_mono, t_wall_ns=t_wall, flags=flags, meter_seq=seq,
                              phase=row["phase"], error=row["error"] or None, **vals))
    return out


def _fmt(v) -> str:
    if v is None:
        return ""
    return repr(float(v)) if isinstance(v, float) else str(v)


def count_seq_gaps(samples: Sequence[Sample]) -> dict:
    """Meter updates lost or repeated, from ``meter_seq`` (samples in time order).

    Returns:
        ``{"missing": int, "duplicates": int, "resets": int}``: sequence numbers skipped
        between consecutive numbered samples, samples repeating the previous number (polled
        faster than the meter updates, docs/power.md §8.1) and backward jumps
        (meter restarted or counter wrapped; not counted as missing).
    """
    missing = duplicates = resets = 0
    prev = None
    for s in samples:
        if s.meter_seq is None:
            continue
        if prev is not None:
            d = s.meter_seq - prev
            if d == 0:
                duplicates += 1
            elif d > 1:
                missing += d - 1
            elif d < 0:
                resets += 1
        prev = s.meter_seq
    return {"missing": missing, "duplicates": duplicates, "resets": resets}


# --------------------------------------------------------------------------- sampler


class Sampler:
    """A thread that reads a meter at a steady rate and timestamps each reading on the host.

    Args:
        meter: an open :class:`host.power.meters.base.Meter` (the sampler neither opens nor closes it).
        rate_hz: polling rate. Default ``1 / meter.update_interval_s``; a faster rate is capped
            there (polling faster than the meter updates only repeats values, docs/power.md §8.1).
        phase: the initial phase label.
        pace: True polls on an absolute schedule (tick k at ``start + k * period``; a slow read
            never shifts later ticks, so there is no drift); False loops back-to-back, for
            meters whose ``read()`` blocks until the next fresh update (a streaming logger:
            pacing would hand out lines that waited in the buffer, with late timestamps).
            Default: ``not meter.read_blocks`` (a driver attribute; absent means False).
        clock, wall_clock: injectable ``time.monotonic_ns`` / ``time.time_ns``.

    Errors inside the thread never escape it. A :class:`MeterError` is recorded in
    :attr:`errors` and as a :class:`Sample` with ``error`` set, and sampling goes on at the
    period; a :class:`MeterConnectionError` (meter unplugged, port gone) or an unexpected
    exception stops sampling and is kept in :attr:`fatal_error`.

    ``dropped`` counts updates missed by the sampler: paced, the ticks skipped entirely
    because a read overran by more than one period; unpaced, ``round(interval / period) - 1``
    for each longer gap between consecutive samples. Gaps in the meter's own sequence numbers
    are a separate figure (:func:`count_seq_gaps`).

    Raises:
        ValueError: no rate given and the meter has no positive ``update_interval_s``, or a
            non-positive rate.
    """

    def __init__(self, meter: Meter, *, rate_hz: float | None = None, phase: str = "",
                 pace: bool | None = None, clock: Callable[[], int] = time.monotonic_ns,
                 wall_clock: Callable[[], int] = time.time_ns):
        self.meter = meter
        interval = meter.update_interval_s
        max_rate = 1.0 / interval if interval and interval > 0 else None
        if rate_hz is not None and rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.requested_rate_hz = rate_hz
        if rate_hz is None:
            rate_hz = max_rate
        elif max_rate is not None and rate_hz > max_rate:
            rate_hz = max_rate
        if pace is None:
            pace = not meter.read_blocks
        if rate_hz is None and pace:
            raise ValueError("no sampling rate: pass rate_hz or give the meter an update_interval_s")
        #: Effective polling rate in Hz (None: unpaced with unknown meter period).
        self.rate_hz = rate_hz
        #: Tick period in ns (None when unknown).
        self.period_ns = int(round(1e9 / rate_hz)) if rate_hz else None
        self.paced = bool(pace)
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._samples: list[Sample] = []
        self._errors: list[tuple[int, str]] = []
        self._phase = phase
        self._dropped = 0
        #: Message of the error that stopped sampling ("MeterConnectionError: ..."), else None.
        self.fatal_error: str | None = None
        #: The exception behind :attr:`fatal_error`.
        self.fatal_exception: BaseException | None = None
        #: Host monotonic ns of the schedule origin (tick 0) and of stop(); None before.
        self.t_start_ns: int | None = None
        self.t_stop_ns: int | None = None

    # -- control
    def start(self) -> "Sampler":
        """Start the thread; tick 0 is now. Raises RuntimeError when already started."""
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self.t_start_ns = self._clock()
        self._thread = threading.Thread(target=self._run, name="edgegauge-power-sampler",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> list[Sample]:
        """Stop sampling, join the thread and return all samples.

        A read in progress is allowed to finish (the driver's own timeout bounds it). If the
        thread has not ended after ``timeout_s`` it is abandoned (daemon) and an error is
        recorded.
        """
        self._stop.set()
        th = self._thread
        if th is not None and th is not threading.current_thread():
            th.join(timeout_s)
            if th.is_alive():
                self._record_error(self._clock(), f"sampler thread still in read() after {timeout_s:g} s")
        if self.t_stop_ns is None:
            self.t_stop_ns = self._clock()
        return self.samples

    def set_phase(self, name: str) -> int:
        """Label the following samples with ``name``; returns the host monotonic ns of the switch.

        Samples timestamped before the returned time keep the previous label, samples after
        it get the new one.
        """
        with self._lock:
            t = self._clock()
            self._phase = name
        return t

    @property
    def phase(self) -> str:
        return self._phase

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def samples(self) -> list[Sample]:
        """A copy of the samples so far (thread-safe)."""
        with self._lock:
            return list(self._samples)

    @property
    def errors(self) -> list[tuple[int, str]]:
        """A copy of ``(t_mono_ns, message)`` for every error so far (thread-safe)."""
        with self._lock:
            return list(self._errors)

    @property
    def dropped(self) -> int:
        """Updates missed by the sampler so far (see the class docstring)."""
        with self._lock:
            return self._dropped

    def snapshot(self) -> dict:
        """Progress without copying the samples: ``{"running", "phase", "n_samples",
        "n_errors", "dropped", "last": Sample|None, "fatal_error"}``."""
        with self._lock:
            return {"running": self.running, "phase": self._phase, "n_samples": len(self._samples),
                    "n_errors": len(self._errors), "dropped": self._dropped,
                    "last": self._samples[-1] if self._samples else None,
                    "fatal_error": self.fatal_error}

    def describe(self) -> dict:
        """Sampler settings and health for a result: rate, pacing, counts and the meter."""
        return {
            "rate_hz": self.rate_hz,
            "requested_rate_hz": self.requested_rate_hz,
            "paced": self.paced,
            "n_samples": len(self._samples),
            "dropped": self.dropped,
            "n_errors": len(self._errors),
            "fatal_error": self.fatal_error,
            "clock": "host time.monotonic_ns after read() returned",
            "meter": self.meter.describe(),
        }

    def write_csv(self, path) -> None:
        """Write the samples so far with :func:`write_power_csv`."""
        write_power_csv(path, self.samples)

    def __enter__(self) -> "Sampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the thread
    def _record_error(self, t: int, message: str) -> None:
        with self._lock:
            self._errors.append((t, message))

    def _read_once(self) -> bool:
        """One read → one Sample. Returns False when sampling must stop."""
        try:
            r = self.meter.read()
        except MeterError as exc:
            err, fatal = exc, isinstance(exc, MeterConnectionError)
        except Exception as exc:  # a driver bug: stop and keep the evidence
            err, fatal = exc, True
        else:
            with self._lock:
                t = self._clock()
                w = self._wall()
                self._count_gap(t)
                self._samples.append(Sample(
                    t_mono_ns=t, t_wall_ns=w, power_w=r.power_w, voltage_v=r.voltage_v,
                    current_a=r.current_a, flags=tuple(r.flags), meter_seq=r.meter_seq,
                    meter_time_s=r.meter_time_s, phase=self._phase))
            return True
        message = f"{type(err).__name__}: {err}"
        with self._lock:
            t = self._clock()
            w = self._wall()
            self._count_gap(t)
            self._samples.append(Sample(t_mono_ns=t, t_wall_ns=w, power_w=None, phase=self._phase,
                                        error=message))
            self._errors.append((t, message))
            if fatal:
                self.fatal_error = message
                self.fatal_exception = err
        return not fatal

    def _count_gap(self, t: int) -> None:
        # Unpaced only (the paced loop counts skipped ticks itself); called under the lock.
        if self.paced or not self.period_ns or not self._samples:
            return
        missed = int(round((t - self._samples[-1].t_mono_ns) / self.period_ns)) - 1
        if missed > 0:
            self._dropped += missed

    def _run(self) -> None:
        clock = self._clock
        period = self.period_ns
        t0 = self.t_start_ns
        k = 0
        try:
            while not self._stop.is_set():
                if self.paced:
                    delay = t0 + k * period - clock()
                    if delay > 0 and self._stop.wait(delay / 1e9):
                        break
                t_req = clock()
                n_err = len(self._errors)
                if not self._read_once():
                    break
                now = clock()
                if self.paced:
                    k += 1
                    due = (now - t0) // period  # latest tick whose time has come
                    if due > k:  # whole ticks passed during the read: skip them, serve `due` now
                        with self._lock:
                            self._dropped += due - k
                        k = due
                elif period and len(self._errors) > n_err:
                    # a fast-failing read must not spin: retry one period after the last try
                    rest = t_req + period - now
                    if rest > 0 and self._stop.wait(rest / 1e9):
                        break
        finally:
            self.t_stop_ns = clock()
