"""A cell's thermal figures over its measured window, and the ``throttled`` warning.

The measured window is the runner's timed loop on the host clock (:func:`host.power.align.
host_window`, the same mapping power uses). Only ticks stamped inside it count for the window's
figures; the last tick before it is the reference a clock drop is measured from.

* **Clock drop**: the CPU clock of a tick is the highest of its ``cpu/*`` series (the fastest
  core, where a single benchmark thread runs; a big.LITTLE board's idle little cluster never
  lowers it), the GPU clock the highest of its sysfs ``gpu/*`` series. A tick's clock has dropped
  when it is more than ``clock_drop_rel`` (default 10 %, the runner's own ``--throttle-max``)
  below the highest value since the last tick before the window. NVIDIA GPUs are judged by their
  clock event reasons instead: their clock falls whenever they idle.
* **Throttle flags**: Raspberry Pi ``get_throttled`` bits 0-3 set in a tick, or a "has occurred"
  bit (16-19) that was clear in the tick before; NVIDIA reasons in
  :data:`host.thermal.sources.NVIDIA_THROTTLE_MASK`.
* **Time to first throttle**: seconds from the window's start to the first tick inside it with
  either; ``None`` when none.
* **Verdict**: ``WARNING`` with one ``throttled: ...`` line per kind of evidence (numbers and
  when), else ``VALID``; ``None`` (not judged) with no tick inside the window. A warning never
  makes the cell INVALID: the latency was measured, on a board that slowed down.
"""

from __future__ import annotations

import statistics

from host.thermal.sources import NVIDIA_THROTTLE_MASK, RPI_NOW_MASK, RPI_OCCURRED_SHIFT, throttle_words

_SOURCE_WORDS = {"rpi": "Raspberry Pi get_throttled"}
#: A clock this much below its highest value so far has dropped (the runner's --throttle-max).
CLOCK_DROP_REL = 0.10


def cpu_clock(tick) -> float | None:
    """The tick's CPU clock in MHz: the highest ``cpu/*`` series, None without one."""
    values = [v for n, v in tick.clocks_mhz.items() if n.startswith("cpu/") and v is not None]
    return max(values) if values else None


def gpu_clock(tick, judged: bool = False) -> float | None:
    """The tick's GPU clock in MHz: the highest ``gpu/*`` series (``judged``: sysfs ones only)."""
    values = [v for n, v in tick.clocks_mhz.items() if n.startswith("gpu/") and v is not None
              and not (judged and n.startswith("gpu/nvidia"))]
    return max(values) if values else None


def _span(values: list) -> tuple:
    values = [v for v in values if v is not None]
    return (min(values), max(values)) if values else (None, None)


def _first_drop(before, inside: list, clock, what: str, rel: float, t_s: int):
    """``(t_ns, warning)`` of the first tick in ``inside`` whose ``clock`` is more than ``rel``
    below the highest value since ``before`` (the last tick before the window), else None."""
    ref = clock(before) if before is not None else None
    for tick in inside:
        value = clock(tick)
        if value is None:
            continue
        if ref is not None and value < ref * (1 - rel):
            return tick.t_mono_ns, (f"throttled: {what} clock dropped from {ref:.0f} to {value:.0f} MHz "
                                    f"({(value / ref - 1) * 100:+.1f} %, more than the {rel * 100:.0f} % "
                                    f"allowed) {(tick.t_mono_ns - t_s) / 1e9:.1f} s into the measured window")
        ref = value if ref is None else max(ref, value)
    return None


def _flag_bits(prev, tick) -> dict:
    """Throttle evidence of one tick: source -> the bits that count (see the module docstring)."""
    out = {}
    for source, bits in tick.throttle.items():
        if source == "rpi":
            seen = (prev.throttle.get("rpi") if prev is not None else None)
            new = (bits >> RPI_OCCURRED_SHIFT) & RPI_NOW_MASK
            new &= ~((seen >> RPI_OCCURRED_SHIFT) & RPI_NOW_MASK) if seen is not None else 0
            hit = (bits & RPI_NOW_MASK) | (new << RPI_OCCURRED_SHIFT)
        else:
            hit = bits & NVIDIA_THROTTLE_MASK
        if hit:
            out[source] = hit
    return out


def _first_flags(before, inside: list, t_s: int):
    prev = before
    for tick in inside:
        hit = _flag_bits(prev, tick)
        if hit:
            words = "; ".join(f"{_SOURCE_WORDS.get(s, s + ' clock event reasons')}={hex(tick.throttle[s])} "
                              f"({', '.join(throttle_words(s, b))})" for s, b in hit.items())
            when = (tick.t_mono_ns - t_s) / 1e9
            return tick.t_mono_ns, f"throttled: {words} {when:.1f} s into the measured window"
        prev = tick
    return None


def _temps(before, inside: list) -> dict:
    hottest = None
    for tick in inside:
        for name, value in tick.temps_c.items():
            if value is not None and (hottest is None or value > hottest[1]):
                hottest = (name, value)
    start_tick = before if before is not None else (inside[0] if inside else None)
    start = [v for v in (start_tick.temps_c.values() if start_tick else ()) if v is not None]
    return {"temp_c_max": hottest[1] if hottest else None, "temp_c_max_zone": hottest[0] if hottest else None,
            "temp_c_start": max(start) if start else None}


def _clocks(inside: list) -> dict:
    names = sorted({n for t in inside for n in t.clocks_mhz})
    out = {}
    for name in names:
        lo, hi = _span([t.clocks_mhz.get(name) for t in inside])
        out[name] = {"clock_mhz_min": lo, "clock_mhz_max": hi}
    return out


def summarise(ticks: list, window: tuple | None, *, clock_drop_rel: float = CLOCK_DROP_REL) -> dict:
    """The window's thermal figures and verdict.

    Args:
        ticks: :class:`host.thermal.sampler.Tick` in time order (failed ticks are skipped).
        window: ``(t_start_ns, t_end_ns)`` of the measured window on the host monotonic clock,
            or None when it is unknown (then nothing is judged).
        clock_drop_rel: the relative fall that counts as a clock drop.

    Returns:
        ``window_start_ns``, ``window_end_ns``, ``window_s``, ``samples_in_window``,
        ``temp_c_max`` (°C, hottest zone in the window) with ``temp_c_max_zone``, ``temp_c_start``,
        ``clock_mhz_min``/``clock_mhz_max`` (CPU), ``gpu_clock_mhz_min``/``gpu_clock_mhz_max``,
        ``clocks`` (per series min/max in MHz), ``time_to_throttle_s``, ``throttle_flags``
        (source -> hex mask of the bits seen in the window) and ``verdict``.
    """
    good = [t for t in ticks if t.error is None]
    if window is None:
        return {"verdict": _verdict(None, [], "measured window unknown: nothing judged")}
    t_s, t_e = window
    before = next((t for t in reversed(good) if t.t_mono_ns < t_s), None)
    inside = [t for t in good if t_s <= t.t_mono_ns <= t_e]
    out = {"window_start_ns": int(t_s), "window_end_ns": int(t_e), "window_s": (t_e - t_s) / 1e9,
           "samples_in_window": len(inside), **_temps(before, inside)}
    out["clock_mhz_min"], out["clock_mhz_max"] = _span([cpu_clock(t) for t in inside])
    out["gpu_clock_mhz_min"], out["gpu_clock_mhz_max"] = _span([gpu_clock(t) for t in inside])
    out["clocks"] = _clocks(inside)
    flags: dict = {}
    for t in inside:
        for source, bits in t.throttle.items():
            flags[source] = flags.get(source, 0) | bits
    out["throttle_flags"] = {s: hex(b) for s, b in flags.items()}
    events = [e for e in (_first_drop(before, inside, cpu_clock, "CPU", clock_drop_rel, t_s),
                          _first_drop(before, inside, lambda t: gpu_clock(t, judged=True), "GPU",
                                      clock_drop_rel, t_s),
                          _first_flags(before, inside, t_s)) if e is not None]
    out["time_to_throttle_s"] = (min(e[0] for e in events) - t_s) / 1e9 if events else None
    note = None if inside else (f"no thermal sample inside the measured window ({out['window_s']:.3g} s, "
                                "shorter than the sampling interval): nothing judged")
    out["verdict"] = _verdict(bool(inside), [e[1] for e in sorted(events)], note)
    return out


def _verdict(judged: bool | None, warnings: list, note: str | None) -> dict:
    if not judged:
        return {"result": None, "reasons": [], "warnings": [note] if note else [], "checks": {}}
    return {"result": "WARNING" if warnings else "VALID", "reasons": [], "warnings": warnings,
            "checks": {"no_throttle_in_window": not warnings}}


def tick_ms_median(ticks: list) -> float | None:
    """The median round trip of the ticks in ms (the sampler's cost on the board's link)."""
    values = [t.tick_ms for t in ticks]
    return statistics.median(values) if values else None


__all__ = ["CLOCK_DROP_REL", "cpu_clock", "gpu_clock", "summarise", "tick_ms_median"]
