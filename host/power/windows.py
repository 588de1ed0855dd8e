"""Idle baseline and load-window statistics: energy, mean/peak/dynamic power, energy per
inference and the adequacy verdict of a window. Method: :mod:`host.power`."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from host.power.meters.base import Meter
from host.power.sampler import Sample, Sampler, count_seq_gaps

#: Idle is "stable" when std / mean of the idle window is below this (docs/power.md §8.2).
STABLE_REL_STD = 0.02
#: Load is distinguishable from idle when P_avg - P_idle exceeds this many idle standard deviations.
NOISE_SIGMAS = 3.0
#: Fewest meter updates a window should hold (docs/power.md §8.2, §8.5).
RECOMMENDED_UPDATES = 30

INTEGRATION_METHOD = "trapezoid_host_timestamps_linear_edge_interpolation"
PEAK_1S_METHOD = "max_1s_moving_average_of_linear_interpolant"
PERCENTILE_METHOD = "linear_interpolation_type7_over_samples"


# --------------------------------------------------------------------------- idle


@dataclass
class IdleResult:
    """The idle baseline (docs/power.md §8.2).

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
        warnings.append(f"idle window holds {n} valid samples < {RECOMMENDED_UPDATES} (docs/power.md §8.2)")
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
        meter_or_sampler_factory: an open :class:`Meter` (sampled at its default rate), a not yet
            started :class:`Sampler`, or a callable returning one.
        settle_s: seconds sampled as phase "settle" and left out of the statistics
            (docs/power.md §8.2: 30-60 s after boot/deploy/previous run is common practice).
        window_s: the idle window in seconds, phase "idle" (docs/power.md §8.2: >= 60 s or >= 30 updates).
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
    elif isinstance(src, Meter):
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

    Definitions (docs/power.md §8.4): ``energy_j_load`` = trapezoid ∫P dt over the window on
    real timestamps, the edge values linearly interpolated between the nearest valid samples
    on either side (held constant when there is none on one side); ``power_w_mean`` =
    E_load / window; ``power_w_peak`` = max valid sample inside; ``power_w_peak_1s`` = max of
    the 1 s moving average of the interpolant (None for windows < 1 s); ``power_w_p95`` over
    the samples inside; ``power_w_dynamic_peak`` = peak - idle (the scaling study's
    definition); ``power_w_dynamic_mean`` = mean - idle; ``energy_j_dynamic`` = E_load -
    P_idle·window; ``energy_mj_per_inference[_dynamic]`` = E / N × 1000;
    ``throughput_per_watt`` = throughput / peak power (inferences per joule at peak load
    power, as the issue asks); ``throughput_per_watt_mean`` = throughput / mean power (docs/power.md §8.4).

    Verdict ``{"result": "VALID"|"INVALID", "reasons", "warnings", "checks": {name: bool|None}}``
    (None = not evaluated). INVALID: fewer than ``min_samples`` valid samples inside; a
    sampler/meter error or a flagged (invalid, over_range, ...) reading inside; alignment
    uncertainty > ``max_alignment_fraction`` × window; a window edge more than one update
    interval from any valid sample; mean load power not above idle + noise. Warnings
    (docs/power.md §8.5): window × update rate < 30; update interval > 0.1 × window; gaps longer than two
    update intervals; meter sequence gaps or repeats; samples ≤ 0 W (MLPerf drops them);
    unknown idle baseline or noise.

    Raises:
        ValueError: ``t_end_ns <= t_start_ns`` or ``iterations < 0``.
    """
    if t_end_ns <= t_start_ns:
        raise ValueError(f"empty load window: end {t_end_ns} <= start {t_start_ns}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    w = _window(samples, t_start_ns, t_end_ns, update_interval_s)
    noise = idle_noise_w if idle_noise_w is not None else (
        None if idle_std_w is None else NOISE_SIGMAS * idle_std_w)
    gaps = count_seq_gaps(w.inside)
    verdict = _verdict(w, iterations=iterations, power_w_idle=power_w_idle, noise=noise, gaps=gaps,
                       min_samples=min_samples, alignment_uncertainty_ms=alignment_uncertainty_ms,
                       max_alignment_fraction=max_alignment_fraction)
    block = {"window_start_ns": int(t_start_ns), "window_end_ns": int(t_end_ns)}
    block.update(_figures(w, iterations, power_w_idle, noise))
    block.update({
        "max_gap_s": w.max_gap_s,
        "alignment_uncertainty_ms": float(alignment_uncertainty_ms),
        "meter_seq": gaps,
        "integration_method": INTEGRATION_METHOD,
        "peak_1s_method": PEAK_1S_METHOD,
        "percentile_method": PERCENTILE_METHOD,
        "verdict": verdict,
    })
    return block


def _figures(w: _Window, iterations: int, power_w_idle: float | None, noise: float | None) -> dict:
    """The window's measured figures, in the ``power`` block's key order (window_s ..
    throughput_per_watt_mean)."""
    window_s, energy, mean, peak = w.window_s, w.energy, w.mean, w.peak

    def sub(a, b):
        return None if a is None or b is None else a - b

    def per_inf(e):
        return None if e is None or iterations == 0 else e / iterations * 1000.0

    throughput = iterations / window_s
    energy_dyn = None if energy is None or power_w_idle is None else energy - power_w_idle * window_s
    return {
        "window_s": window_s,
        "iterations": int(iterations),
        "samples_in_window": w.n_in,
        "samples_invalid_in_window": len(w.inside) - w.n_in,
        "update_interval_s": w.update_interval_s,
        "energy_j_load": energy,
        "energy_j_dynamic": energy_dyn,
        "power_w_mean": mean,
        "power_w_peak": peak,
        "power_w_peak_1s": w.peak_1s,
        "power_w_p95": w.p95,
        "power_w_idle": power_w_idle,
        "power_w_idle_noise": noise,
        "power_w_dynamic_peak": sub(peak, power_w_idle),
        "power_w_dynamic_mean": sub(mean, power_w_idle),
        "energy_mj_per_inference": per_inf(energy),
        "energy_mj_per_inference_dynamic": per_inf(energy_dyn),
        "throughput_cps": throughput,
        "throughput_per_watt": throughput / peak if peak else None,
        "throughput_per_watt_mean": throughput / mean if mean else None,
    }


@dataclass
class _Window:
    """A load window's samples and the figures measured from them (:func:`_window`); units in
    the names, ``None`` where there is no valid sample to compute from."""

    window_s: float
    inside: list  # every sample inside the window
    valid_inside: list
    errors_in: list  # samples inside carrying a sampler/meter error
    flagged_in: list  # readings inside that are not valid (flags)
    update_interval_s: float | None  # given, or the median spacing of the valid samples
    interval: float | None  # update_interval_s when > 0
    energy: float | None = None
    mean: float | None = None
    peak: float | None = None
    p95: float | None = None
    peak_1s: float | None = None
    max_gap_s: float | None = None
    uncovered_start_s: float | None = None  # how far each edge is from real data
    uncovered_end_s: float | None = None

    @property
    def n_in(self) -> int:
        return len(self.valid_inside)


def _window(samples: Sequence[Sample], t_start_ns: int, t_end_ns: int,
            update_interval_s: float | None) -> _Window:
    """Partition the samples around [t_start_ns, t_end_ns] and integrate the valid ones."""
    window_s = (t_end_ns - t_start_ns) / 1e9
    ordered = sorted(samples, key=lambda s: s.t_mono_ns)
    inside = [s for s in ordered if t_start_ns <= s.t_mono_ns <= t_end_ns]
    valid = [s for s in ordered if s.valid]
    t_all = np.array([s.t_mono_ns for s in valid], dtype=np.int64)
    if update_interval_s is None and t_all.size >= 2:
        update_interval_s = float(np.median(np.diff(t_all))) / 1e9
    w = _Window(
        window_s=window_s, inside=inside, valid_inside=[s for s in inside if s.valid],
        errors_in=[s for s in inside if s.error is not None],
        flagged_in=[s for s in inside if s.error is None and not s.valid],
        update_interval_s=update_interval_s,
        interval=update_interval_s if update_interval_s and update_interval_s > 0 else None,
    )
    if t_all.size:
        x_all = (t_all - t_start_ns).astype(np.float64) / 1e9  # s from t_start
        p_all = np.array([s.power_w for s in valid], dtype=np.float64)
        _integrate(w, x_all, p_all)
    if w.n_in:
        pw = np.array([s.power_w for s in w.valid_inside], dtype=np.float64)
        w.peak = float(pw.max())
        w.p95 = float(np.percentile(pw, 95))
    return w


def _integrate(w: _Window, x_all: np.ndarray, p_all: np.ndarray) -> None:
    """Energy, mean, 1 s peak, edge coverage and largest gap from the valid samples at
    ``x_all`` (s from the window start, sorted) with power ``p_all`` (W)."""
    window_s = w.window_s
    interior = (x_all > 0.0) & (x_all < window_s)
    x_in, p_in = x_all[interior], p_all[interior]
    keep = np.concatenate(([True], np.diff(x_in) > 0)) if x_in.size else np.zeros(0, bool)
    x_in, p_in = x_in[keep], p_in[keep]
    edges = np.interp([0.0, window_s], x_all, p_all)  # linear inside, held outside
    x = np.concatenate(([0.0], x_in, [window_s]))
    p = np.concatenate(([edges[0]], p_in, [edges[1]]))
    w.energy = float(np.sum(np.diff(x) * (p[1:] + p[:-1]) / 2.0))
    w.mean = w.energy / window_s
    if window_s >= 1.0:
        w.peak_1s = _peak_moving_average(x, p, 1.0)
    # How far each edge is from real data: 0 when bracketed, else the held stretch.
    w.uncovered_start_s = max(0.0, float(x_all[0]))
    w.uncovered_end_s = max(0.0, window_s - float(x_all[-1]))
    before = x_all[x_all <= 0.0]
    after = x_all[x_all >= window_s]
    span = np.concatenate((before[-1:], x_all[interior], after[:1]))
    if span.size >= 2:
        w.max_gap_s = float(np.diff(span).max())


def _verdict(w: _Window, *, iterations: int, power_w_idle: float | None, noise: float | None,
             gaps: dict, min_samples: int, alignment_uncertainty_ms: float,
             max_alignment_fraction: float) -> dict:
    """The window's verdict (see :func:`load_window_stats`)."""
    align_s = alignment_uncertainty_ms / 1000.0
    checks = {
        "min_samples_met": w.n_in >= min_samples,
        "no_meter_errors": not w.errors_in,
        "no_invalid_readings": not w.flagged_in,
        "alignment_within_limit": align_s <= max_alignment_fraction * w.window_s,
        "edges_covered": None,
        "load_above_idle": None,
    }
    reasons, warnings = [], []
    if not checks["min_samples_met"]:
        reasons.append(f"too few valid samples in the load window: {w.n_in} < {min_samples}")
    if w.errors_in:
        kinds = sorted({s.error.split(":", 1)[0] for s in w.errors_in})
        reasons.append(f"{len(w.errors_in)} meter errors in the load window ({', '.join(kinds)})")
    if w.flagged_in:
        kinds = sorted({f for s in w.flagged_in for f in s.flags} or {"invalid"})
        reasons.append(f"{len(w.flagged_in)} invalid readings in the load window (flags: {', '.join(kinds)})")
    if not checks["alignment_within_limit"]:
        reasons.append(f"alignment uncertainty {alignment_uncertainty_ms:g} ms > "
                       f"{max_alignment_fraction:g} x window ({w.window_s * 1000:.1f} ms)")
    _check_edges(w, checks, reasons, warnings)
    _check_load_above_idle(w, power_w_idle, noise, checks, reasons, warnings)
    warnings += _rate_warnings(w, iterations, gaps)
    return {"result": "INVALID" if reasons else "VALID", "reasons": reasons,
            "warnings": warnings, "checks": checks}


def _check_edges(w: _Window, checks: dict, reasons: list, warnings: list) -> None:
    """``edges_covered``: each window edge within one update interval of a valid sample."""
    if w.uncovered_start_s is None:
        return
    tol = w.interval if w.interval is not None else 0.0
    worst = max(w.uncovered_start_s, w.uncovered_end_s)
    checks["edges_covered"] = worst <= tol
    if not checks["edges_covered"]:
        reasons.append(f"samples do not cover the window: {worst * 1000:.1f} ms at an edge without "
                       "a sample beyond it (sampler started late or stopped early)")
    elif worst > 0:
        warnings.append(f"a window edge has no sample beyond it; power held for {worst * 1000:.1f} ms")


def _check_load_above_idle(w: _Window, power_w_idle: float | None, noise: float | None,
                           checks: dict, reasons: list, warnings: list) -> None:
    """``load_above_idle``: mean load power above idle + noise margin."""
    if power_w_idle is None:
        warnings.append("no idle baseline: dynamic power and energy not computed")
    elif w.mean is not None:
        margin = noise if noise is not None else 0.0
        checks["load_above_idle"] = w.mean - power_w_idle > margin
        if noise is None:
            warnings.append("idle noise unknown: load-vs-idle check uses a zero margin")
        if not checks["load_above_idle"]:
            reasons.append(f"load indistinguishable from idle: mean {w.mean:.4f} W <= idle "
                           f"{power_w_idle:.4f} W + noise {margin:.4f} W")


def _rate_warnings(w: _Window, iterations: int, gaps: dict) -> list:
    """Warnings about the sample rate, gaps, sequence gaps and samples <= 0 W (docs/power.md §8.5)."""
    warnings = []
    window_s, interval = w.window_s, w.interval
    if interval is not None:
        rate_hz = 1.0 / interval
        if window_s * rate_hz < RECOMMENDED_UPDATES:
            warnings.append(f"window {window_s:.3f} s x update rate {rate_hz:.3g} Hz = "
                            f"{window_s * rate_hz:.1f} < {RECOMMENDED_UPDATES} meter updates")
        if interval > 0.1 * window_s:
            warnings.append(f"update interval {interval:.3g} s > 0.1 x window {window_s:.3f} s: "
                            "per-inference energy is coarse")
        if w.max_gap_s is not None and w.max_gap_s > 2.0 * interval:
            warnings.append(f"largest gap between samples {w.max_gap_s * 1000:.1f} ms > 2 update intervals")
    if iterations == 0:
        warnings.append("no inferences in the window: per-inference energy not computed")
    if gaps["missing"]:
        warnings.append(f"{gaps['missing']} meter updates missing in the window (sequence gaps)")
    if gaps["duplicates"]:
        warnings.append(f"{gaps['duplicates']} repeated meter updates in the window (polled faster "
                        "than the meter updates)")
    nonpos = sum(1 for s in w.valid_inside if s.power_w <= 0)
    if nonpos:
        warnings.append(f"{nonpos} samples <= 0 W in the window (MLPerf drops such samples)")
    return warnings
