"""Power measurement: a timestamping sampler, idle baseline, load-window statistics, adequacy
verdict and clock alignment.

Method (shared/reference/power-meters.md §10, "Measurement method"):

* Every reading is timestamped **on the host** right after ``Meter.read()`` returns, with
  ``time.monotonic_ns()`` (intervals, alignment) and ``time.time_ns()`` (humans, other logs);
  the meter's own sequence number / clock is kept where it has one. A ``phase`` column
  ("settle", "idle", "load", ...) goes into the sample stream.
* A reading is treated as a point sample of P(t) at its host timestamp. Meters that average
  over their update interval, and the transport delay, lag by up to about one update
  interval; include that in ``alignment_uncertainty_ms`` when it matters.
* ``E_load = ∫ P dt`` over the load window [t_s, t_e] by the trapezoid rule on the real
  timestamps, with P(t_s) and P(t_e) linearly interpolated from the valid samples on either
  side of each edge; ``P_avg = E_load / (t_e - t_s)``. The peak is reported raw and as the
  maximum of a 1 s moving average; ``P_dyn = P_peak - P_idle`` and ``P_avg - P_idle``;
  ``E_dyn = E_load - P_idle (t_e - t_s)``; energy per inference ``E / N`` (divide by N only at
  the end).
* The idle baseline is the median of an idle window after a settle period (§10 protocol,
  steps 2-3); it is "stable" when the relative standard deviation is below 2 %.
* Adequacy (§11 and MLPerf Power's rules: only samples between ``power_begin`` and
  ``power_end`` count, phase timestamps must agree within a tolerance): a load window is
  INVALID with too few valid samples, with a meter error or an invalid / over-range reading
  inside it, with an alignment uncertainty that is a large fraction of the window, or when
  the load power cannot be told from idle.
* Clock alignment of a board's CLOCK_MONOTONIC with the host's by bracketing a remote clock
  read between two host reads and keeping the probe with the smallest round trip (§10 "Time
  alignment"; mlcommons/power-dev ``lib/time_sync.py`` brackets the same way).

Units are in the names: ``_ns`` integer nanoseconds on the host monotonic clock unless said
otherwise, ``_s`` seconds, ``_w`` watts, ``_j`` joules, ``_mj`` millijoules.
"""

from __future__ import annotations

import csv
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from host.meters.base import MeterConnectionError, MeterError
from runners.core import write_atomic

#: Idle is "stable" when std / mean of the idle window is below this (power-meters.md §10, 2.).
STABLE_REL_STD = 0.02
#: Load is distinguishable from idle when P_avg - P_idle exceeds this many idle standard deviations.
NOISE_SIGMAS = 3.0
#: Fewest meter updates a window should hold (power-meters.md §11 "Samples per window").
RECOMMENDED_UPDATES = 30

INTEGRATION_METHOD = "trapezoid_host_timestamps_linear_edge_interpolation"
PEAK_1S_METHOD = "max_1s_moving_average_of_linear_interpolant"
PERCENTILE_METHOD = "linear_interpolation_type7_over_samples"

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
            w.writerow([
                s.t_mono_ns, s.t_wall_ns, s.phase, _fmt(s.power_w), _fmt(s.voltage_v),
                _fmt(s.current_a), _FLAG_SEP.join(str(f) for f in s.flags), _fmt(s.meter_seq),
                _fmt(s.meter_time_s), "" if s.error is None else s.error,
            ])

    write_atomic(path, write, suffix=".csv", newline="")


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
        faster than the meter updates, power-meters.md §11 "Duplicates") and backward jumps
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
        meter: an open :class:`host.meters.base.Meter` (the sampler neither opens nor closes it).
        rate_hz: polling rate. Default ``1 / meter.update_interval_s``; a faster rate is capped
            there (polling faster than the meter updates only repeats values, §11).
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

    def __init__(self, meter, *, rate_hz: float | None = None, phase: str = "",
                 pace: bool | None = None, clock: Callable[[], int] = time.monotonic_ns,
                 wall_clock: Callable[[], int] = time.time_ns):
        self.meter = meter
        interval = getattr(meter, "update_interval_s", None)
        max_rate = 1.0 / interval if interval and interval > 0 else None
        if rate_hz is not None and rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.requested_rate_hz = rate_hz
        if rate_hz is None:
            rate_hz = max_rate
        elif max_rate is not None and rate_hz > max_rate:
            rate_hz = max_rate
        if pace is None:
            pace = not bool(getattr(meter, "read_blocks", False))
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
        describe = getattr(self.meter, "describe", None)
        return {
            "rate_hz": self.rate_hz,
            "requested_rate_hz": self.requested_rate_hz,
            "paced": self.paced,
            "n_samples": len(self._samples),
            "dropped": self.dropped,
            "n_errors": len(self._errors),
            "fatal_error": self.fatal_error,
            "clock": "host time.monotonic_ns after read() returned",
            "meter": describe() if callable(describe) else None,
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


# --------------------------------------------------------------------------- idle


@dataclass
class IdleResult:
    """The idle baseline (power-meters.md §10 protocol, steps 2-3).

    Attributes:
        power_w_idle: median of the valid samples in the window, W (None without any).
        power_w_mean, power_w_std: mean and sample standard deviation (ddof=1), W.
        rel_std: ``power_w_std / power_w_mean`` (None when undefined).
        n_samples: valid samples in the window; ``n_invalid``: the others (errors, flags).
        window_start_ns, window_end_ns: the idle window on the host monotonic clock.
        stable: ``rel_std < 0.02`` with at least 2 samples.
        samples: every sample given (settle included), for the CSV.
        warnings: fewer than 30 updates, invalid samples, not stable.
    """

    power_w_idle: float | None
    power_w_mean: float | None
    power_w_std: float | None
    rel_std: float | None
    n_samples: int
    n_invalid: int
    window_start_ns: int
    window_end_ns: int
    stable: bool
    samples: list = field(default_factory=list, repr=False)
    warnings: list = field(default_factory=list)

    @property
    def window_s(self) -> float:
        return (self.window_end_ns - self.window_start_ns) / 1e9

    @property
    def noise_w(self) -> float | None:
        """``3 × power_w_std``: the margin load power must exceed (None without a std)."""
        return None if self.power_w_std is None else NOISE_SIGMAS * self.power_w_std

    def to_dict(self) -> dict:
        """The result fields without the samples, plus ``window_s`` and ``noise_w``."""
        d = asdict(self)
        d.pop("samples")
        d["window_s"] = self.window_s
        d["noise_w"] = self.noise_w
        d["stable_rel_std_max"] = STABLE_REL_STD
        return d


def idle_from_samples(samples: Sequence[Sample], window_start_ns: int, window_end_ns: int) -> IdleResult:
    """Idle statistics of the samples with ``window_start_ns <= t_mono_ns <= window_end_ns``.

    Only valid samples count; the median is the baseline (robust to a spike). Pure function.

    Raises:
        ValueError: ``window_end_ns <= window_start_ns``.
    """
    if window_end_ns <= window_start_ns:
        raise ValueError(f"empty idle window: end {window_end_ns} <= start {window_start_ns}")
    inside = [s for s in samples if window_start_ns <= s.t_mono_ns <= window_end_ns]
    p = np.array([s.power_w for s in inside if s.valid], dtype=np.float64)
    n = int(p.size)
    n_invalid = len(inside) - n
    warnings = []
    if n == 0:
        warnings.append("no valid sample in the idle window")
        return IdleResult(None, None, None, None, 0, n_invalid, window_start_ns, window_end_ns,
                          False, list(samples), warnings)
    median = float(np.median(p))
    mean = float(p.mean())
    std = float(p.std(ddof=1)) if n > 1 else None
    rel = std / mean if std is not None and mean > 0 else None
    stable = rel is not None and rel < STABLE_REL_STD
    if n < RECOMMENDED_UPDATES:
        warnings.append(f"idle window holds {n} valid samples < {RECOMMENDED_UPDATES} (power-meters.md §11)")
    if n_invalid:
        warnings.append(f"{n_invalid} invalid samples (errors or flags) in the idle window")
    if not stable:
        shown = "n/a" if rel is None else f"{rel:.4f}"
        warnings.append(f"idle not stable: relative std {shown} >= {STABLE_REL_STD:g}")
    return IdleResult(median, mean, std, rel, n, n_invalid, window_start_ns, window_end_ns, stable,
                      list(samples), warnings)


def measure_idle(meter_or_sampler_factory, *, settle_s: float = 5.0, window_s: float = 10.0,
                 clock: Callable[[], int] = time.monotonic_ns,
                 sleep: Callable[[float], None] = time.sleep) -> IdleResult:
    """Settle, then measure an idle window, with a sampler of its own.

    Args:
        meter_or_sampler_factory: an open meter (anything with ``read()``: sampled at its
            default rate), a not yet started :class:`Sampler`, or a callable returning one.
        settle_s: seconds sampled as phase "settle" and left out of the statistics
            (§10 asks for 30-60 s after boot/deploy/previous run).
        window_s: the idle window in seconds, phase "idle" (§10: >= 60 s or >= 30 updates).
        clock, sleep: injectable ``time.monotonic_ns`` / ``time.sleep``.

    Returns:
        :func:`idle_from_samples` over the idle window; ``samples`` holds the settle samples too.

    Raises:
        MeterConnectionError (or the driver's unexpected exception): the meter went away;
        ValueError: see :class:`Sampler`.
    """
    src = meter_or_sampler_factory
    if isinstance(src, Sampler):
        sampler = src
    elif hasattr(src, "read"):
        sampler = Sampler(src)
    elif callable(src):
        sampler = src()
    else:
        raise TypeError(f"expected a meter, a Sampler or a factory, got {type(src).__name__}")
    sampler.set_phase("settle")
    sampler.start()
    try:
        sleep(settle_s)
        t_start = sampler.set_phase("idle")
        sleep(window_s)
        t_end = clock()
        sampler.set_phase("")
    finally:
        samples = sampler.stop()
    if sampler.fatal_exception is not None:
        raise sampler.fatal_exception
    return idle_from_samples(samples, t_start, t_end)


# --------------------------------------------------------------------------- load window


def required_window_s(update_interval_s: float, min_samples: int, *, spare: int = 1) -> float:
    """Shortest load window that holds ``min_samples`` meter updates, in s.

    A window of length T with updates every Δ contains at least ``floor(T / Δ)`` of them,
    whatever the phase; ``spare`` extra intervals absorb jitter and one missed update:
    ``(min_samples + spare) × Δ``. Use it to extend the runner's timed loop
    (``min_duration_s = max(policy, required_window_s(...))``).

    Raises:
        ValueError: non-positive interval or negative counts.
    """
    if not update_interval_s or update_interval_s <= 0:
        raise ValueError(f"update_interval_s must be > 0, got {update_interval_s}")
    if min_samples < 0 or spare < 0:
        raise ValueError("min_samples and spare must be >= 0")
    return (min_samples + spare) * float(update_interval_s)


def _cum_at(x: np.ndarray, p: np.ndarray, cum: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact ∫_0^q of the piecewise-linear interpolant through (x, p), cum = its values at x."""
    j = np.clip(np.searchsorted(x, q, side="right") - 1, 0, len(x) - 2)
    h = x[j + 1] - x[j]
    u = q - x[j]
    slope = (p[j + 1] - p[j]) / h
    return cum[j] + p[j] * u + 0.5 * slope * u * u


def _peak_moving_average(x: np.ndarray, p: np.ndarray, width: float) -> float:
    """Max over τ ∈ [width, x[-1]] of (1/width) ∫_{τ-width}^{τ} P, P linear through (x, p)."""
    cum = np.concatenate(([0.0], np.cumsum(np.diff(x) * (p[1:] + p[:-1]) / 2.0)))
    t_end = x[-1]
    cand = np.concatenate((x, x + width, [width, t_end]))
    cand = np.unique(cand[(cand >= width) & (cand <= t_end)])
    # Between consecutive candidates both P(τ) and P(τ - width) are linear, so the average
    # is quadratic there: add the interior stationary points (derivative + to -).
    d = np.interp(cand, x, p) - np.interp(cand - width, x, p)
    turn = (d[:-1] > 0) & (d[1:] < 0)
    if turn.any():
        a, b = cand[:-1][turn], cand[1:][turn]
        roots = a + d[:-1][turn] / (d[:-1][turn] - d[1:][turn]) * (b - a)
        cand = np.concatenate((cand, roots))
    avg = (_cum_at(x, p, cum, cand) - _cum_at(x, p, cum, cand - width)) / width
    return float(min(avg.max(), p.max()))  # an average never exceeds the max (float rounding)


def load_window_stats(
    samples: Sequence[Sample],
    t_start_ns: int,
    t_end_ns: int,
    *,
    iterations: int,
    power_w_idle: float | None,
    idle_std_w: float | None = None,
    idle_noise_w: float | None = None,
    min_samples: int = 10,
    update_interval_s: float | None = None,
    alignment_uncertainty_ms: float = 0.0,
    max_alignment_fraction: float = 0.05,
) -> dict:
    """The ``power`` block of a result cell for the load window [t_start_ns, t_end_ns].

    Args:
        samples: the sampler's samples (any order; all phases), host monotonic timestamps.
        t_start_ns, t_end_ns: the load window on the host monotonic clock (e.g. the runner's
            ``loop_start/end_monotonic_ns`` through :func:`host_window`).
        iterations: inferences N completed in the window (``latency.iterations``).
        power_w_idle: idle baseline in W (:attr:`IdleResult.power_w_idle`); None leaves the
            dynamic figures None and skips the load-vs-idle check.
        idle_std_w: idle standard deviation in W; the noise margin is ``3 × idle_std_w``.
        idle_noise_w: the noise margin in W, overriding ``3 × idle_std_w``.
        min_samples: fewest valid samples inside the window for a VALID result.
        update_interval_s: the meter's update interval in s (``meter.update_interval_s``);
            default: the median spacing of the valid samples.
        alignment_uncertainty_ms: ± uncertainty of the window edges on the host clock, ms
            (:attr:`ClockOffset.uncertainty_ns` / 1e6; 0 when timed on the host).
        max_alignment_fraction: INVALID when the uncertainty exceeds this fraction of the window.

    Definitions (power-meters.md §10): ``energy_j_load`` = trapezoid ∫P dt over the window on
    real timestamps, the edge values linearly interpolated between the nearest valid samples
    on either side (held constant when there is none on one side); ``power_w_mean`` =
    E_load / window; ``power_w_peak`` = max valid sample inside; ``power_w_peak_1s`` = max of
    the 1 s moving average of the interpolant (None for windows < 1 s); ``power_w_p95`` over
    the samples inside; ``power_w_dynamic_peak`` = peak - idle (the scaling study's
    definition); ``power_w_dynamic_mean`` = mean - idle; ``energy_j_dynamic`` = E_load -
    P_idle·window; ``energy_mj_per_inference[_dynamic]`` = E / N × 1000;
    ``throughput_per_watt`` = throughput / peak power (inferences per joule at peak load
    power, as the issue asks); ``throughput_per_watt_mean`` = throughput / mean power (§10).

    Verdict ``{"result": "VALID"|"INVALID", "reasons", "warnings", "checks": {name: bool|None}}``
    (None = not evaluated). INVALID: fewer than ``min_samples`` valid samples inside; a
    sampler/meter error or a flagged (invalid, over_range, ...) reading inside; alignment
    uncertainty > ``max_alignment_fraction`` × window; a window edge more than one update
    interval from any valid sample; mean load power not above idle + noise. Warnings
    (§11): window × update rate < 30; update interval > 0.1 × window; gaps longer than two
    update intervals; meter sequence gaps or repeats; samples ≤ 0 W (MLPerf drops them);
    unknown idle baseline or noise.

    Raises:
        ValueError: ``t_end_ns <= t_start_ns`` or ``iterations < 0``.
    """
    if t_end_ns <= t_start_ns:
        raise ValueError(f"empty load window: end {t_end_ns} <= start {t_start_ns}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    window_s = (t_end_ns - t_start_ns) / 1e9
    ordered = sorted(samples, key=lambda s: s.t_mono_ns)
    inside = [s for s in ordered if t_start_ns <= s.t_mono_ns <= t_end_ns]
    valid = [s for s in ordered if s.valid]
    valid_inside = [s for s in inside if s.valid]
    n_in = len(valid_inside)
    errors_in = [s for s in inside if s.error is not None]
    flagged_in = [s for s in inside if s.error is None and not s.valid]

    t_all = np.array([s.t_mono_ns for s in valid], dtype=np.int64)
    if update_interval_s is None and t_all.size >= 2:
        update_interval_s = float(np.median(np.diff(t_all))) / 1e9
    interval = update_interval_s if update_interval_s and update_interval_s > 0 else None

    energy = mean = peak = peak_1s = p95 = None
    max_gap_s = uncovered_start_s = uncovered_end_s = None
    if t_all.size:
        x_all = (t_all - t_start_ns).astype(np.float64) / 1e9  # s from t_start
        p_all = np.array([s.power_w for s in valid], dtype=np.float64)
        interior = (x_all > 0.0) & (x_all < window_s)
        x_in, p_in = x_all[interior], p_all[interior]
        keep = np.concatenate(([True], np.diff(x_in) > 0)) if x_in.size else np.zeros(0, bool)
        x_in, p_in = x_in[keep], p_in[keep]
        edges = np.interp([0.0, window_s], x_all, p_all)  # linear inside, held outside
        x = np.concatenate(([0.0], x_in, [window_s]))
        p = np.concatenate(([edges[0]], p_in, [edges[1]]))
        energy = float(np.sum(np.diff(x) * (p[1:] + p[:-1]) / 2.0))
        mean = energy / window_s
        if window_s >= 1.0:
            peak_1s = _peak_moving_average(x, p, 1.0)
        # How far each edge is from real data: 0 when bracketed, else the held stretch.
        uncovered_start_s = max(0.0, float(x_all[0]))
        uncovered_end_s = max(0.0, window_s - float(x_all[-1]))
        before = x_all[x_all <= 0.0]
        after = x_all[x_all >= window_s]
        span = np.concatenate((before[-1:], x_all[interior], after[:1]))
        if span.size >= 2:
            max_gap_s = float(np.diff(span).max())
    if n_in:
        pw = np.array([s.power_w for s in valid_inside], dtype=np.float64)
        peak = float(pw.max())
        p95 = float(np.percentile(pw, 95))

    def sub(a, b):
        return None if a is None or b is None else a - b

    throughput = iterations / window_s
    energy_dyn = None if energy is None or power_w_idle is None else energy - power_w_idle * window_s

    def per_inf(e):
        return None if e is None or iterations == 0 else e / iterations * 1000.0

    noise = idle_noise_w if idle_noise_w is not None else (
        None if idle_std_w is None else NOISE_SIGMAS * idle_std_w)

    # ---- verdict
    align_s = alignment_uncertainty_ms / 1000.0
    checks = {
        "min_samples_met": n_in >= min_samples,
        "no_meter_errors": not errors_in,
        "no_invalid_readings": not flagged_in,
        "alignment_within_limit": align_s <= max_alignment_fraction * window_s,
        "edges_covered": None,
        "load_above_idle": None,
    }
    reasons, warnings = [], []
    if not checks["min_samples_met"]:
        reasons.append(f"too few valid samples in the load window: {n_in} < {min_samples}")
    if errors_in:
        kinds = sorted({s.error.split(":", 1)[0] for s in errors_in})
        reasons.append(f"{len(errors_in)} meter errors in the load window ({', '.join(kinds)})")
    if flagged_in:
        kinds = sorted({f for s in flagged_in for f in s.flags} or {"invalid"})
        reasons.append(f"{len(flagged_in)} invalid readings in the load window (flags: {', '.join(kinds)})")
    if not checks["alignment_within_limit"]:
        reasons.append(f"alignment uncertainty {alignment_uncertainty_ms:g} ms > "
                       f"{max_alignment_fraction:g} x window ({window_s * 1000:.1f} ms)")
    if uncovered_start_s is not None:
        tol = interval if interval is not None else 0.0
        worst = max(uncovered_start_s, uncovered_end_s)
        checks["edges_covered"] = worst <= tol
        if not checks["edges_covered"]:
            reasons.append(f"samples do not cover the window: {worst * 1000:.1f} ms at an edge without "
                           "a sample beyond it (sampler started late or stopped early)")
        elif worst > 0:
            warnings.append(f"a window edge has no sample beyond it; power held for {worst * 1000:.1f} ms")
    if power_w_idle is None:
        warnings.append("no idle baseline: dynamic power and energy not computed")
    elif mean is not None:
        margin = noise if noise is not None else 0.0
        checks["load_above_idle"] = mean - power_w_idle > margin
        if noise is None:
            warnings.append("idle noise unknown: load-vs-idle check uses a zero margin")
        if not checks["load_above_idle"]:
            reasons.append(f"load indistinguishable from idle: mean {mean:.4f} W <= idle "
                           f"{power_w_idle:.4f} W + noise {margin:.4f} W")
    if interval is not None:
        rate_hz = 1.0 / interval
        if window_s * rate_hz < RECOMMENDED_UPDATES:
            warnings.append(f"window {window_s:.3f} s x update rate {rate_hz:.3g} Hz = "
                            f"{window_s * rate_hz:.1f} < {RECOMMENDED_UPDATES} meter updates")
        if interval > 0.1 * window_s:
            warnings.append(f"update interval {interval:.3g} s > 0.1 x window {window_s:.3f} s: "
                            "per-inference energy is coarse")
        if max_gap_s is not None and max_gap_s > 2.0 * interval:
            warnings.append(f"largest gap between samples {max_gap_s * 1000:.1f} ms > 2 update intervals")
    if iterations == 0:
        warnings.append("no inferences in the window: per-inference energy not computed")
    gaps = count_seq_gaps(inside)
    if gaps["missing"]:
        warnings.append(f"{gaps['missing']} meter updates missing in the window (sequence gaps)")
    if gaps["duplicates"]:
        warnings.append(f"{gaps['duplicates']} repeated meter updates in the window (polled faster "
                        "than the meter updates)")
    nonpos = sum(1 for s in valid_inside if s.power_w <= 0)
    if nonpos:
        warnings.append(f"{nonpos} samples <= 0 W in the window (MLPerf drops such samples)")

    return {
        "window_start_ns": int(t_start_ns),
        "window_end_ns": int(t_end_ns),
        "window_s": window_s,
        "iterations": int(iterations),
        "samples_in_window": n_in,
        "samples_invalid_in_window": len(inside) - n_in,
        "update_interval_s": update_interval_s,
        "energy_j_load": energy,
        "energy_j_dynamic": energy_dyn,
        "power_w_mean": mean,
        "power_w_peak": peak,
        "power_w_peak_1s": peak_1s,
        "power_w_p95": p95,
        "power_w_idle": power_w_idle,
        "power_w_idle_noise": noise,
        "power_w_dynamic_peak": sub(peak, power_w_idle),
        "power_w_dynamic_mean": sub(mean, power_w_idle),
        "energy_mj_per_inference": per_inf(energy),
        "energy_mj_per_inference_dynamic": per_inf(energy_dyn),
        "throughput_ips": throughput,
        "throughput_per_watt": throughput / peak if peak else None,
        "throughput_per_watt_mean": throughput / mean if mean else None,
        "max_gap_s": max_gap_s,
        "alignment_uncertainty_ms": float(alignment_uncertainty_ms),
        "meter_seq": gaps,
        "integration_method": INTEGRATION_METHOD,
        "peak_1s_method": PEAK_1S_METHOD,
        "percentile_method": PERCENTILE_METHOD,
        "verdict": {"result": "INVALID" if reasons else "VALID", "reasons": reasons,
                    "warnings": warnings, "checks": checks},
    }


# --------------------------------------------------------------------------- clock alignment


@dataclass(frozen=True)
class ClockOffset:
    """``remote_clock - host_clock`` in ns, known to ± ``uncertainty_ns``.

    ``rtt_ns`` is the round trip of the probe used, ``n`` the number of probes behind it.
    """

    offset_ns: int
    uncertainty_ns: int
    rtt_ns: int
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_offset(probe: Callable[[], tuple], repeats: int = 7) -> ClockOffset:
    """Estimate a remote clock's offset from the host clock by bracketing.

    ``probe()`` reads the host clock (t1), the remote clock (r) and the host clock again (t2),
    all in ns, and returns ``(t1, r, t2)``. The remote read happened somewhere in [t1, t2], so
    ``offset = r - (t1 + t2) / 2`` with uncertainty ``± (t2 - t1) / 2``; of ``repeats`` probes
    the one with the smallest round trip is kept (power-meters.md §10; mlcommons/power-dev
    ``lib/time_sync.py`` brackets the same way). Read the clock the runner reports on the
    board (CLOCK_MONOTONIC for ``loop_*_monotonic_ns``), not its wall clock, and keep the
    remote read cheap: its start-up cost widens the bracket.

    Raises:
        ValueError: ``repeats < 1`` or a probe with ``t2 < t1``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    best = None
    for _ in range(repeats):
        t1, r, t2 = (int(v) for v in probe())
        if t2 < t1:
            raise ValueError(f"probe returned t2 < t1 ({t2} < {t1}): not a host monotonic clock?")
        if best is None or t2 - t1 < best[2] - best[0]:
            best = (t1, r, t2)
    t1, r, t2 = best
    rtt = t2 - t1
    return ClockOffset(offset_ns=(2 * r - t1 - t2) // 2, uncertainty_ns=(rtt + 1) // 2, rtt_ns=rtt,
                       n=repeats)


def to_host_ns(remote_ns: int, offset: ClockOffset) -> int:
    """A remote clock reading converted to the host clock: ``remote_ns - offset_ns``."""
    return int(remote_ns) - offset.offset_ns


def combine(before: ClockOffset, after: ClockOffset) -> ClockOffset:
    """One offset for a run from estimates taken before and after it (bounds the drift).

    The midpoint of the two offsets, with uncertainty ``max(u_before, u_after) + |Δoffset| / 2``
    so that the interval covers both estimates and their own uncertainties.
    """
    delta = after.offset_ns - before.offset_ns
    return ClockOffset(
        offset_ns=before.offset_ns + delta // 2,
        uncertainty_ns=max(before.uncertainty_ns, after.uncertainty_ns) + (abs(delta) + 1) // 2,
        rtt_ns=max(before.rtt_ns, after.rtt_ns),
        n=before.n + after.n,
    )


def host_window(latency: dict, offset: ClockOffset | None = None) -> tuple[int, int, int, float]:
    """The runner's timed loop as a load window on the host clock.

    Args:
        latency: the result's ``latency`` block (``loop_start_monotonic_ns``,
            ``loop_end_monotonic_ns`` on the board's CLOCK_MONOTONIC, ``iterations``).
        offset: the board's clock offset; None when the runner ran on this host (same clock).

    Returns:
        ``(t_start_ns, t_end_ns, iterations, alignment_uncertainty_ms)`` for
        :func:`load_window_stats`.

    Raises:
        KeyError: a field is missing from ``latency``.
    """
    start, end = int(latency["loop_start_monotonic_ns"]), int(latency["loop_end_monotonic_ns"])
    n = int(latency["iterations"])
    if offset is None:
        return start, end, n, 0.0
    return to_host_ns(start, offset), to_host_ns(end, offset), n, offset.uncertainty_ns / 1e6


__all__ = [
    "CSV_COLUMNS", "ClockOffset", "IdleResult", "Sample", "Sampler", "combine",
    "count_seq_gaps", "estimate_offset", "host_window", "idle_from_samples", "load_window_stats",
    "measure_idle", "read_csv", "required_window_s", "to_host_ns", "write_power_csv",
]
