"""Clock alignment of a board's CLOCK_MONOTONIC with the host's: bracketed probes, the
offset with its uncertainty, and mapping a runner's timed loop onto the host clock.
Method: :mod:`host.power`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

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
    the one with the smallest round trip is kept (docs/power.md §8.6; mlcommons/power-dev
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
