"""Power: meters, sampler, idle baseline, load-window statistics and verdict, alignment, session.

The method in short (full description and sources: docs/power.md §8):

* **Sampler** (:mod:`host.power.sampler`): a thread reads the meter at its update rate and
  stamps every reading on the host, right after ``read()`` returns, with ``time.monotonic_ns()``
  and ``time.time_ns()``; the meter's own sequence number and clock are kept, and each sample
  carries the phase it was taken in. A reading counts as a point sample of P(t) at that stamp
  (a meter that averages over its interval lags by up to one interval).
* **Idle** (:mod:`host.power.windows`): after a settle period, the median of the valid samples of
  an idle window; "stable" when their relative standard deviation is below 2 %.
* **Load window**: the runner's timed loop, mapped onto the host clock; only samples inside it
  count. Energy is the trapezoid integral over the window on the real timestamps, the edge values
  interpolated from the samples either side; mean power = energy / window; peak raw and as the
  largest 1 s moving average; dynamic figures subtract idle; energy per inference divides by N
  last.
* **Verdict**: INVALID with too few valid samples, a meter error or a flagged reading inside the
  window, an edge without a nearby sample, an alignment uncertainty above 5 % of the window, or
  load power within idle noise.
* **Clock alignment** (:mod:`host.power.align`): a board's CLOCK_MONOTONIC against the host's by
  bracketed probes (host time, board time, host time; the smallest round trip wins), before and
  after each cell — the scheme of mlcommons/power-dev's ``time_sync.py``.

Units are in the names: ``_ns`` integer nanoseconds on the host monotonic clock unless said
otherwise, ``_s`` seconds, ``_w`` watts, ``_j`` joules, ``_mj`` millijoules.
"""

from host.power.align import ClockOffset, combine, estimate_offset, host_window, to_host_ns
from host.power.sampler import CSV_COLUMNS, Sample, Sampler, count_seq_gaps, read_csv, write_power_csv
from host.power.windows import (
    IdleResult,
    idle_from_samples,
    load_window_stats,
    measure_idle,
    required_window_s,
)

__all__ = [
    "CSV_COLUMNS", "ClockOffset", "IdleResult", "Sample", "Sampler", "combine",
    "count_seq_gaps", "estimate_offset", "host_window", "idle_from_samples", "load_window_stats",
    "measure_idle", "read_csv", "required_window_s", "to_host_ns", "write_power_csv",
]
