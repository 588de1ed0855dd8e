"""PNG plots of result cells (matplotlib's Agg renderer: no display, no pyplot state).

Per device: FLOPs vs latency (log–log, least-squares line, 95 % CI error bars), parameters vs
peak RSS, and the Pareto front of latency vs parameters. Per cell: the empirical CDF of every
stored iteration (``<cell>.samples.npz``) and the power timeline (``<cell>.power.csv``, with the
idle run of ``idle-<n>.power.csv`` beside it) with the idle and load windows shaded. Over all
cells with power: energy per inference vs throughput.

Every function writes one PNG into ``out_dir`` (created if missing, written atomically) and
returns its path. A function given nothing it can plot raises :class:`host.errors.ResultsError`
(:func:`all_plots` records that as a note and goes on). Each title says what was timed; each
axis names its unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from host.campaign.samples import read_samples
from host.campaign.store import _get, safe_name
from host.errors import ResultsError
from runners.fileio import write_atomic

#: Figure size in inches and resolution: 7.5 × 4.8 in at 100 dpi = 750 × 480 px.
FIGSIZE = (7.5, 4.8)
DPI = 100
P50_METHOD = "p50: median of session medians over fresh processes"


@dataclass(frozen=True)
class Plot:
    """One written plot: ``kind`` (function name), ``title`` (for a caption), ``path``."""

    kind: str
    title: str
    path: Path


# --------------------------------------------------------------------------- helpers


def _figure(ncols: int = 1, width: float | None = None):
    fig = Figure(figsize=(width or FIGSIZE[0], FIGSIZE[1]), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _plain_text(fig: Figure) -> None:
    """Draw every title, axis label, annotation and legend entry as the text it holds: they carry
    model, device and campaign names, and ``$...$`` in one must not be read as math text (a name
    like ``x$\\foo$`` would stop the plot). Tick labels keep math text (log axes' ``10^n``)."""
    for ax in fig.axes:
        texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        legend = ax.get_legend()
        if legend is not None:
            texts += [*legend.get_texts(), legend.get_title()]
        for text in texts:
            text.set_parse_math(False)
    for text in fig.texts:
        text.set_parse_math(False)


def _save(fig: Figure, out_dir: Path, name: str) -> Path:
    _plain_text(fig)
    path = Path(out_dir) / name
    write_atomic(path, lambda fh: fig.savefig(fh, format="png"), suffix=".png", binary=True)
    return path


def _label(cell: dict) -> str:
    """``model`` (``model fp16 b8`` when the precision is not fp32 or the batch is not 1)."""
    stem = _get(cell, "cell", "model_stem") or "?"
    prec = _get(cell, "precision", "name") or "fp32"
    batch = _get(cell, "host", "config", "batch")
    return stem + (f" {prec}" if prec != "fp32" else "") + (f" b{batch}" if batch not in (None, 1) else "")


def _cell_name(cell: dict) -> str:
    parts = [_get(cell, "cell", k) or "_" for k in ("campaign", "device", "model_stem", "config")]
    return "__".join(safe_name(str(p)) for p in parts)


def _measured(cells: list, device: str | None = None) -> list:
    """Cells with a p50 (status ok or invalid), of ``device`` when given."""
    return [c for c in cells if c.get("status") in ("ok", "invalid")
            and _get(c, "latency", "latency_ms_p50") is not None
            and (device is None or _get(c, "cell", "device") == device)]


def _level(cells: list) -> str:
    levels = sorted({str(_get(c, "latency", "level") or "host_call") for c in cells})
    return "/".join(levels)


def _cell_file(cell: dict, name: str | None) -> Path | None:
    """A sidecar named in the cell, next to the cell's JSON (``_path`` from load_cells)."""
    if not name or not cell.get("_path"):
        return None
    return Path(cell["_path"]).parent / name


def loglog_fit(x, y) -> tuple[float, float, float | None] | None:
    """Least-squares line of log10(y) on log10(x) (the ``loglog`` scale of
    :func:`host.analysis.correlate.fit`): ``(slope, intercept, r)`` with Pearson's r of the
    logs (None when y is constant), or None with fewer than two distinct positive x.
    ``y ≈ 10**intercept * x**slope``; pairs with x or y ≤ 0 are left out."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (x > 0) & (y > 0)
    if np.unique(x[keep]).size < 2:
        return None
    lx, ly = np.log10(x[keep]), np.log10(y[keep])
    slope, intercept = np.polyfit(lx, ly, 1)
    r = float(np.corrcoef(lx, ly)[0, 1]) if np.unique(ly).size > 1 else None
    return float(slope), float(intercept), r


def pareto_mask(x, y) -> np.ndarray:
    """Points no other point beats in both (smaller ``x`` and ``y`` are better): a boolean
    array, True on the front. A point equal to another in both is kept."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    front = np.ones(x.size, dtype=bool)
    for i in range(x.size):
        worse = (x <= x[i]) & (y <= y[i]) & ((x < x[i]) | (y < y[i]))
        front[i] = not worse.any()
    return front


# --------------------------------------------------------------------------- per device


def _name_points(ax, x, y, rows: list) -> None:
    """Label each point with its cell (model, precision)."""
    for xi, yi, c in zip(x, y, rows):
        ax.annotate(_label(c), (xi, yi), fontsize=7, xytext=(4, 4), textcoords="offset points")


def flops_latency(cells: list, out_dir: Path, device: str) -> Path:
    """FLOPs (``metrics.flops``) vs p50 latency in ms on ``device``, log–log, with the 95 % CI
    of the p50 (``latency_ms_p50_ci95``) as error bars and the least-squares line in log–log.

    Raises:
        ResultsError: fewer than one measured cell with FLOPs on ``device``.
    """
    rows = [c for c in _measured(cells, device) if (_get(c, "metrics", "flops") or 0) > 0]
    if not rows:
        raise ResultsError(f"{device}: no measured cell with a FLOPs count")
    x = np.array([c["metrics"]["flops"] for c in rows], dtype=float)
    y = np.array([c["latency"]["latency_ms_p50"] for c in rows], dtype=float)
    ci = [c["latency"].get("latency_ms_p50_ci95") or [v, v] for c, v in zip(rows, y)]
    yerr = np.array([[max(v - lo, 0.0) for (lo, _), v in zip(ci, y)],
                     [max(hi - v, 0.0) for (_, hi), v in zip(ci, y)]])
    fig, (ax,) = _figure()
    ax.errorbar(x, y, yerr=yerr, fmt="o", capsize=3, label="cells (bars: 95 % CI of p50)")
    fit = loglog_fit(x, y)
    if fit:
        xs = np.geomspace(x.min(), x.max(), 50)
        ax.plot(xs, 10 ** fit[1] * xs ** fit[0], "--", label=f"least squares in log–log: slope {fit[0]:.2f}"
                + (f", r {fit[2]:.2f} (n {x.size})" if fit[2] is not None else ""))
    else:
        ax.plot([], [], " ", label="no fitted line: fewer than 2 distinct FLOPs counts")
    _name_points(ax, x, y, rows)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOPs per call (static count of the ONNX graph)")
    ax.set_ylabel("p50 latency per call (ms)")
    ax.set_title(f"{device}: FLOPs vs latency\n({P50_METHOD}; timed: {_level(rows)})", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, out_dir, f"flops_latency__{safe_name(device)}.png")


def params_memory(cells: list, out_dir: Path, device: str) -> Path:
    """Parameters (``metrics.params``) vs peak RSS of the cell's first process
    (``memory.rss_mib_peak``, MiB) on ``device``; log x, with the least-squares line.

    Raises:
        ResultsError: no measured cell with both on ``device``.
    """
    rows = [c for c in _measured(cells, device)
            if (_get(c, "metrics", "params") or 0) > 0 and _get(c, "memory", "rss_mib_peak") is not None]
    if not rows:
        raise ResultsError(f"{device}: no measured cell with parameters and peak RSS")
    x = np.array([c["metrics"]["params"] for c in rows], dtype=float)
    y = np.array([c["memory"]["rss_mib_peak"] for c in rows], dtype=float)
    fig, (ax,) = _figure()
    ax.plot(x, y, "o", label="cells")
    if np.unique(x).size >= 2:
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(xs, slope * xs + intercept, "--",
                label=f"least squares: {slope * 1e6:.3g} MiB per M params + {intercept:.1f} MiB")
    _name_points(ax, x, y, rows)
    ax.set_xscale("log")
    ax.set_xlabel("parameters (count, static)")
    ax.set_ylabel("peak RSS of the runner process (MiB)")
    ax.set_title(f"{device}: parameters vs memory\n"
                 "(peak resident set size, VmHWM, of the whole runner process)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, out_dir, f"params_memory__{safe_name(device)}.png")


def pareto_front(cells: list, out_dir: Path, device: str) -> Path:
    """p50 latency (ms) vs parameters on ``device``, the Pareto front (no other cell has both
    fewer parameters and a lower p50) joined and marked.

    Raises:
        ResultsError: no measured cell with parameters on ``device``.
    """
    rows = [c for c in _measured(cells, device) if (_get(c, "metrics", "params") or 0) > 0]
    if not rows:
        raise ResultsError(f"{device}: no measured cell with parameters")
    x = np.array([c["metrics"]["params"] for c in rows], dtype=float)
    y = np.array([c["latency"]["latency_ms_p50"] for c in rows], dtype=float)
    front = pareto_mask(x, y)
    order = np.argsort(x[front])
    fig, (ax,) = _figure()
    ax.plot(x[~front], y[~front], "o", color="0.6", label="dominated")
    ax.plot(x[front][order], y[front][order], "o-", color="C3", drawstyle="steps-post", label="Pareto front")
    _name_points(ax, x, y, rows)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters (count, static)")
    ax.set_ylabel("p50 latency per call (ms)")
    ax.set_title(f"{device}: Pareto front, latency vs parameters\n({P50_METHOD}; timed: {_level(rows)})",
                 fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, out_dir, f"pareto__{safe_name(device)}.png")


# --------------------------------------------------------------------------- per cell


def cell_samples_ns(cell: dict) -> np.ndarray:
    """Every stored iteration of the cell (all processes and sessions), int64 ns, run order.

    Raises:
        ResultsError: the cell names no samples file, or it cannot be read.
    """
    path = _cell_file(cell, _get(cell, "samples", "file"))
    if path is None:
        raise ResultsError(f"{_cell_name(cell)}: no stored samples (no samples.file in the cell)")
    try:
        per_process = read_samples(path)
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: cannot read the samples ({exc})") from None
    arrays = [s for sessions in per_process for s in sessions]
    return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, np.int64)


def ecdf(samples_ns) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF: ``(sorted samples, i / n for i = 1..n)``; same dtype as given."""
    xs = np.sort(np.asarray(samples_ns))
    return xs, np.arange(1, xs.size + 1) / max(xs.size, 1)


def latency_cdf(cell: dict, out_dir: Path) -> Path:
    """Empirical CDF of every stored iteration of the cell (ms, log x), with p50 and p99 of
    the pooled samples marked.

    Raises:
        ResultsError: no samples file, or it is empty.
    """
    samples = cell_samples_ns(cell)
    if samples.size == 0:
        raise ResultsError(f"{_cell_name(cell)}: the samples file holds no iteration")
    xs, ys = ecdf(samples)
    ms = xs / 1e6
    fig, (ax,) = _figure()
    ax.step(ms, ys, where="post", label="empirical CDF")
    for q, style in ((0.5, ":"), (0.99, "--")):
        v = float(np.quantile(ms, q))
        ax.axvline(v, color="0.4", linestyle=style, label=f"pooled p{round(q * 100)}: {v:.4g} ms")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latency per call (ms, log scale)")
    ax.set_ylabel("share of iterations ≤ x")
    every = _get(cell, "samples", "thinned_every") or 1
    procs = _get(cell, "latency", "processes")
    ax.set_title(f"{_get(cell, 'cell', 'device')} / {_label(cell)}: latency CDF\n{samples.size:,} timed "
                 f"iterations of {procs} processes{f' (every {every}th kept)' if every > 1 else ''}; "
                 f"timed: {_get(cell, 'latency', 'level') or 'host_call'}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, out_dir, f"cdf__{_cell_name(cell)}.png")


def _power_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(t_mono_ns, power_w)`` of the valid samples of a power CSV."""
    from host.power import read_csv

    try:
        samples = [s for s in read_csv(path) if s.valid]
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: cannot read the power samples ({exc})") from None
    return (np.array([s.t_mono_ns for s in samples], dtype=np.int64),
            np.array([s.power_w for s in samples], dtype=float))


def _idle_run(cell: dict):
    """The idle run the cell used: ``(t_ns, power_w, idle json)`` or None when not on disk."""
    import json

    idle_id = _get(cell, "power", "idle", "id")
    doc_path = _cell_file(cell, f"{idle_id}.json" if idle_id else None)
    if doc_path is None or not doc_path.is_file():
        return None
    try:
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    csv_path = doc_path.parent / (doc.get("samples_file") or f"{idle_id}.power.csv")
    if not csv_path.is_file():
        return None
    t, p = _power_series(csv_path)
    return t, p, doc


def power_timeline(cell: dict, out_dir: Path) -> Path:
    """Meter power (W) over host time (s) for the cell: its samples (``<cell>.power.csv``) with
    the load window (``power.window_start_ns``/``window_end_ns``) shaded and, when the idle run
    it used is on disk (``idle-<n>.json`` and its CSV), that run in a left panel with its idle
    window shaded; the idle baseline is a dashed line on both.

    Raises:
        ResultsError: the cell has no power samples file, or it holds no valid sample.
    """
    power = cell.get("power") or {}
    path = _cell_file(cell, power.get("samples_file"))
    if path is None or not path.is_file():
        raise ResultsError(f"{_cell_name(cell)}: no power samples")
    t, p = _power_series(path)
    if t.size == 0:
        raise ResultsError(f"{path}: no valid power sample")
    idle = _idle_run(cell)
    fig, axes = _figure(2 if idle else 1, width=11 if idle else None)
    base = power.get("power_w_idle") or _get(power, "idle", "power_w_idle")
    if idle:
        ti, pi, doc = idle
        t0 = ti.min() if ti.size else doc["window_start_ns"]
        _timeline_panel(axes[0], ti, pi, t0, (doc.get("window_start_ns"), doc.get("window_end_ns")),
                        "idle window", "C2", base)
        axes[0].set_title(f"idle run {doc.get('id')} (settle, then idle window)", fontsize=9)
    start, end = power.get("window_start_ns"), power.get("window_end_ns")
    _timeline_panel(axes[-1], t, p, t.min(), (start, end), "load window (first timed loop)", "C1", base)
    meter = power.get("meter") or {}
    axes[-1].set_title(
        f"{_get(cell, 'cell', 'device')} / {_label(cell)}: power while the cell's first process ran\n"
        f"(meter {meter.get('meter', '?')}, scope {meter.get('scope', '?')})", fontsize=9)
    return _save(fig, out_dir, f"power__{_cell_name(cell)}.png")


def _timeline_panel(ax, t_ns, p_w, t0_ns, window, window_label, color, idle_w) -> None:
    ax.plot((t_ns - t0_ns) / 1e9, p_w, ".-", markersize=3, linewidth=0.8, label="meter samples (valid)")
    if window[0] is not None and window[1] is not None:
        ax.axvspan((window[0] - t0_ns) / 1e9, (window[1] - t0_ns) / 1e9, color=color, alpha=0.25,
                   label=window_label)
    if idle_w is not None:
        ax.axhline(idle_w, color="0.3", linestyle="--", linewidth=0.8, label=f"idle baseline {idle_w:.3g} W")
    ax.set_xlabel("host monotonic time (s, from the first sample)")
    ax.set_ylabel("power (W)")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)


# --------------------------------------------------------------------------- all cells


def energy_throughput(cells: list, out_dir: Path) -> Path:
    """Energy per inference (``power.energy_mj_per_inference``, mJ per call) vs throughput in
    the load window (``power.throughput_cps``, calls/s), one colour per device; cells whose
    power verdict is INVALID are drawn hollow.

    Raises:
        ResultsError: no cell has both figures.
    """
    rows = [c for c in cells if _get(c, "power", "energy_mj_per_inference") is not None
            and _get(c, "power", "throughput_cps") is not None]
    if not rows:
        raise ResultsError("no cell with energy per inference and throughput (no power measured)")
    fig, (ax,) = _figure()
    for i, device in enumerate(sorted({str(_get(c, "cell", "device")) for c in rows})):
        mine = [c for c in rows if str(_get(c, "cell", "device")) == device]
        for valid in (True, False):
            part = [c for c in mine if (_get(c, "power", "verdict", "result") == "VALID") == valid]
            if part:
                ax.plot([c["power"]["throughput_cps"] for c in part],
                        [c["power"]["energy_mj_per_inference"] for c in part], "o", color=f"C{i}",
                        markerfacecolor=f"C{i}" if valid else "none",
                        label=device + ("" if valid else " (power INVALID)"))
        for c in mine:
            ax.annotate(_label(c), (c["power"]["throughput_cps"], c["power"]["energy_mj_per_inference"]),
                        fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("throughput in the load window (calls/s)")
    ax.set_ylabel("energy per inference (mJ per call, meter scope)")
    ax.set_title("Energy per inference vs throughput\n(trapezoid integral of meter power over the "
                 "first timed loop / its calls)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, out_dir, "energy_throughput.png")


def all_plots(cells: list, out_dir: Path) -> tuple[list, list]:
    """Every plot the cells allow: per device FLOPs–latency, params–memory and Pareto; per cell
    the latency CDF and (with power) the timeline; energy vs throughput over all.

    Returns:
        ``(plots, notes)``: :class:`Plot` in that order, and one line per plot that could not be
        drawn (the :class:`ResultsError` message).
    """
    plots, notes = [], []

    def attempt(kind, title, fn, *args):
        try:
            plots.append(Plot(kind, title, fn(*args)))
        except ResultsError as exc:
            notes.append(f"{kind}: {exc}")

    devices = sorted({str(_get(c, "cell", "device")) for c in _measured(cells)})
    for device in devices:
        attempt("flops_latency", f"{device}: FLOPs vs p50 latency", flops_latency, cells, out_dir, device)
        attempt("params_memory", f"{device}: parameters vs peak RSS", params_memory, cells, out_dir, device)
        attempt("pareto_front", f"{device}: Pareto front (latency vs parameters)", pareto_front,
                cells, out_dir, device)
    for cell in _measured(cells):
        name = f"{_get(cell, 'cell', 'device')} / {_label(cell)} ({_get(cell, 'cell', 'config')})"
        attempt("latency_cdf", f"{name}: latency CDF", latency_cdf, cell, out_dir)
        if (cell.get("power") or {}).get("samples_file"):  # not a local cell with no source
            attempt("power_timeline", f"{name}: power timeline", power_timeline, cell, out_dir)
    if any((c.get("power") or {}).get("samples_file") for c in cells):
        attempt("energy_throughput", "Energy per inference vs throughput", energy_throughput, cells, out_dir)
    return plots, notes
