"""The thermal timeline plot of a cell (issue 24): latency per second, temperature and clock on one
time axis, for cells whose ``thermal`` block has a timeline (``<cell>.thermal.csv``).

Time is seconds on the host monotonic clock from the start of the measured window (the runner's
first timed loop, ``thermal.window_start_ns``), so the three panels line up with each other and
with the power timeline. Latency per second: the first process's first timed loop from the cell's
``<cell>.samples.npz``; each call ends at the loop start plus the calls up to it (they run back to
back) plus an equal share per call of the loop time the calls do not cover (the loop's own cost);
the median of each 1 s bin in ms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from host.analysis.plots import DPI, Plot, _cell_file, _cell_name, _label, _save
from host.campaign.samples import read_samples
from host.campaign.store import _get
from host.errors import ResultsError
from host.thermal.sampler import read_timeline


def latency_per_second(cell: dict, t0_ns: int):
    """``(bin start s, median ms)`` of the first timed loop, or None without its samples."""
    path = _cell_file(cell, _get(cell, "samples", "file"))
    if path is None or not path.is_file():
        return None
    try:
        first = read_samples(path)[0][0].astype(np.float64)
    except (OSError, ValueError, IndexError):
        return None
    every = int(_get(cell, "samples", "thinned_every") or 1)
    start, end = _get(cell, "thermal", "window_start_ns"), _get(cell, "thermal", "window_end_ns")
    if first.size == 0 or start is None or end is None:
        return None
    busy = np.cumsum(first * every)
    gap = max(0.0, (end - start - busy[-1]) / first.size)  # the loop's own time between calls, shared out
    t = (start - t0_ns + busy + gap * np.arange(1, first.size + 1)) / 1e9
    bins = np.floor(t).astype(np.int64)
    keys = np.unique(bins)
    return keys.astype(float), np.array([np.median(first[bins == k]) / 1e6 for k in keys])


def _series(ticks: list, attr: str):
    names = []
    for t in ticks:
        names += [n for n, v in getattr(t, attr).items() if n not in names and v is not None]
    return {n: np.array([np.nan if getattr(t, attr).get(n) is None else getattr(t, attr)[n] for t in ticks])
            for n in names}


def thermal_timeline(cell: dict, out_dir: Path) -> Path:
    """Three panels on one time axis (s from the measured window's start): latency per second
    (ms), every thermal zone (°C) and every clock (MHz), the measured window shaded and the first
    throttle marked.

    Raises:
        ResultsError: the cell has no thermal timeline file, or it holds no tick.
    """
    thermal = cell.get("thermal") or {}
    path = _cell_file(cell, thermal.get("timeline_file"))
    if path is None or not path.is_file():
        raise ResultsError(f"{_cell_name(cell)}: no thermal timeline")
    try:
        ticks = [t for t in read_timeline(path) if t.error is None]
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: cannot read the thermal timeline ({exc})") from None
    if not ticks:
        raise ResultsError(f"{path}: no thermal sample")
    t0 = thermal.get("window_start_ns") or ticks[0].t_mono_ns
    t = np.array([(k.t_mono_ns - t0) / 1e9 for k in ticks])
    fig = Figure(figsize=(7.5, 7.2), dpi=DPI, layout="constrained")
    lat_ax, temp_ax, clock_ax = fig.subplots(3, 1, sharex=True)
    lat = latency_per_second(cell, t0)
    if lat is not None:
        lat_ax.plot(lat[0] + 0.5, lat[1], "o-", markersize=3, linewidth=0.8,
                    label="median of each 1 s bin (drawn at its centre)")
    else:
        lat_ax.text(0.5, 0.5, "no per-call samples", ha="center", va="center", transform=lat_ax.transAxes)
    lat_ax.set_ylabel("latency (ms)")
    for ax, attr, unit in ((temp_ax, "temps_c", "temperature (°C)"), (clock_ax, "clocks_mhz", "clock (MHz)")):
        for name, values in _series(ticks, attr).items():
            ax.plot(t, values, ".-", markersize=3, linewidth=0.8, label=name)
        ax.set_ylabel(unit)
    end = thermal.get("window_end_ns")
    for ax in (lat_ax, temp_ax, clock_ax):
        if thermal.get("window_start_ns") is not None and end is not None:
            ax.axvspan(0.0, (end - t0) / 1e9, color="C1", alpha=0.15)
        if thermal.get("time_to_throttle_s") is not None:
            ax.axvline(thermal["time_to_throttle_s"], color="red", linestyle="--", linewidth=0.8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=2)
        ax.grid(True, alpha=0.3)
    clock_ax.set_xlabel("host monotonic time (s, from the start of the measured window, shaded)")
    verdict = _get(thermal, "verdict", "result") or "not judged"
    lat_ax.set_title(f"{_get(cell, 'cell', 'device')} / {_label(cell)}: latency, temperature and clock "
                     f"while the cell's first process ran\n(thermal verdict {verdict}; red dashed line: "
                     "first throttle)", fontsize=9)
    return _save(fig, out_dir, f"thermal__{_cell_name(cell)}.png")


def thermal_plots(cells: list, out_dir: Path) -> tuple[list, list]:
    """:func:`thermal_timeline` of every measured cell with a timeline file: ``(plots, notes)`` as
    :func:`host.analysis.plots.all_plots` returns them (cells without a thermal source are passed over)."""
    drawn, notes = [], []
    for cell in cells:
        if cell.get("status") not in ("ok", "invalid") or not _get(cell, "thermal", "timeline_file"):
            continue
        name = f"{_get(cell, 'cell', 'device')} / {_label(cell)} ({_get(cell, 'cell', 'config')})"
        try:
            drawn.append(Plot("thermal_timeline", f"{name}: latency, temperature and clock",
                              thermal_timeline(cell, out_dir)))
        except ResultsError as exc:
            notes.append(f"thermal_timeline: {exc}")
    return drawn, notes


__all__ = ["latency_per_second", "thermal_plots", "thermal_timeline"]
