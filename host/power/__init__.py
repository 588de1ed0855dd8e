"""Power: meters, the timestamping sampler, idle baseline, load-window statistics and their
adequacy verdict, clock alignment, and the power session of a campaign.

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
