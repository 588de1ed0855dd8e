"""Correlation tables: how well a model's static size predicts what it costs on a device.

For every device × precision × batch group of measured cells, and for each pair of
:data:`PAIRS` (FLOPs→latency, params→memory, CDL→latency, params→latency, FLOPs→energy per
inference), :func:`correlations` gives Pearson's r with its two-sided p-value and n
(:func:`scipy.stats.pearsonr`) and the least-squares line ``y = slope·x + intercept`` with its
r² (:func:`scipy.stats.linregress`).

Scale: **linear, on raw values** (``scale="linear"``, recorded in every row). ModelGauge's
tables III/IV, as the issue describes them, are Pearson coefficients between the raw static
metric and the raw measurement per device (FLOPs vs latency, params vs memory, CDL vs latency),
and the scaling study fits latency *linearly* against FLOPs to solve its equation 1
(:mod:`host.analysis.advise`), which needs the raw-value line. A log–log fit
(``scale="loglog"``: r and the line over log10 of both values) is available from the library for
families spanning decades, where a few large models dominate a raw-value r; it is never mixed
with linear rows without the ``scale`` column saying so. (The papers' own text was not at hand
here: the choice rests on the issue's description.)

Which cells count: status ``ok`` or ``invalid`` (measured; ``invalid`` cells are counted in
``n_invalid``) with both values present. One point per model: when several campaigns measured
the same model (same stem and precision) on a device, the latest (``timestamps.start_utc``)
counts, so repeated campaigns do not inflate n. Batch sizes are kept apart (a batch sweep would
otherwise correlate the batch, not the model).

Labels (column ``label``; ``ok`` when none applies), never a reason to drop a row:
``n<3`` (fewer than 3 models: no test is meaningful; r is still given from 2 on),
``constant`` (x or y does not vary: r undefined), ``weak`` (|r| < :data:`WEAK_R`),
``insignificant`` (p ≥ :data:`ALPHA`).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from host.campaign.store import _get

WEAK_R = 0.5
ALPHA = 0.05
MIN_N = 3
MEASURED = ("ok", "invalid")

# name: (cell path of x, x unit, cell path of y, y unit)
METRICS = {
    "flops": (("metrics", "flops"), "FLOPs"),
    "params": (("metrics", "params"), "params"),
    "cdl": (("metrics", "cdl"), "layers"),
    "latency_ms": (("latency", "latency_ms_p50"), "ms"),
    "rss_mib_peak": (("memory", "rss_mib_peak"), "MiB"),
    "energy_mj": (("power", "energy_mj_per_inference"), "mJ"),
}
PAIRS = (("flops", "latency_ms"), ("params", "rss_mib_peak"), ("cdl", "latency_ms"),
         ("params", "latency_ms"), ("flops", "energy_mj"))

COLUMNS = ("device", "precision", "batch", "x", "y", "scale", "n", "n_invalid", "r", "p_value",
           "slope", "intercept", "r2", "x_min", "x_max", "x_unit", "y_unit", "label", "models")


def value(cell: dict, metric: str) -> float | None:
    """The cell's value of ``metric`` (a key of :data:`METRICS`) as a finite float, or None."""
    raw = _get(cell, *METRICS[metric][0])
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        return None
    return float(raw)


def precision_of(cell: dict) -> str:
    """The cell's precision axis name (``precision.name``); ``fp32`` for cells without one."""
    return (cell.get("precision") or {}).get("name") or "fp32"


def batch_of(cell: dict):
    return _get(cell, "configuration", "batch")


def latest_per_model(cells: list[dict]) -> list[dict]:
    """Measured cells (status ok/invalid), one per (device, precision, batch, model stem): the
    latest by ``timestamps.start_utc`` (then by path)."""
    best: dict = {}
    for cell in cells:
        if cell.get("status") not in MEASURED:
            continue
        key = (_get(cell, "cell", "device"), precision_of(cell), batch_of(cell),
               _get(cell, "cell", "model_stem"))
        rank = (_get(cell, "timestamps", "start_utc") or "", cell.get("_path") or "")
        if key not in best or rank >= best[key][0]:
            best[key] = (rank, cell)
    return [cell for _, cell in sorted(best.values(), key=lambda rc: rc[0])]


def groups(cells: list[dict]) -> dict:
    """``{(device, precision, batch): [cell, …]}`` of :func:`latest_per_model`, sorted by key."""
    out: dict = {}
    for cell in latest_per_model(cells):
        key = (_get(cell, "cell", "device"), precision_of(cell), batch_of(cell))
        out.setdefault(key, []).append(cell)
    return dict(sorted(out.items(), key=lambda kv: tuple(map(str, kv[0]))))


def fit(xs, ys, *, scale: str = "linear") -> dict:
    """Pearson r, p-value and the least-squares line of ``ys`` on ``xs`` (equal-length number
    sequences).

    Returns:
        ``{"scale", "n", "r", "p_value", "slope", "intercept", "r2", "x_min", "x_max", "label"}``;
        with ``scale="loglog"`` r and the line are over log10 values (``x_min``/``x_max`` stay
        raw) and non-positive pairs are left out of n. r, p and the line are None when they are
        undefined (n < 2, or x or y constant); ``label`` as in the module docstring.

    Raises:
        ValueError: ``scale`` is neither ``linear`` nor ``loglog``, or the lengths differ.
    """
    if scale not in ("linear", "loglog"):
        raise ValueError(f"scale must be 'linear' or 'loglog', not {scale!r}")
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    pairs = [(float(x), float(y)) for x, y in zip(xs, ys)]
    if scale == "loglog":
        pairs = [(x, y) for x, y in pairs if x > 0 and y > 0]
    out = {"scale": scale, "n": len(pairs), "r": None, "p_value": None, "slope": None,
           "intercept": None, "r2": None, "x_min": min((x for x, _ in pairs), default=None),
           "x_max": max((x for x, _ in pairs), default=None)}
    fx = [math.log10(x) if scale == "loglog" else x for x, _ in pairs]
    fy = [math.log10(y) if scale == "loglog" else y for _, y in pairs]
    constant = len(pairs) >= 2 and (len(set(fx)) == 1 or len(set(fy)) == 1)
    if len(pairs) >= 2 and not constant:
        out.update(_pearson_line(fx, fy))
    out["label"] = _label(out["n"], out["r"], out["p_value"], constant)
    return out


def _pearson_line(fx: list, fy: list) -> dict:
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n = 2: r = ±1 with p = 1, which the labels say
        r, p = stats.pearsonr(fx, fy)
        line = stats.linregress(fx, fy)
    return {"r": float(r), "p_value": float(p), "slope": float(line.slope),
            "intercept": float(line.intercept), "r2": float(line.rvalue) ** 2}


def _label(n: int, r, p, constant: bool) -> str:
    flags = []
    if n < MIN_N:
        flags.append("n<3")
    if constant:
        flags.append("constant")
    if r is not None and abs(r) < WEAK_R:
        flags.append("weak")
    if p is not None and p >= ALPHA:
        flags.append("insignificant")
    return ", ".join(flags) or "ok"


def correlations(cells: list[dict], *, scale: str = "linear") -> list[dict]:
    """One row per (device, precision, batch) group and pair of :data:`PAIRS` that has at least
    one model with both values (pairs without any data, e.g. energy without a meter, give no
    row). Keys: :data:`COLUMNS` (``models``: the stems used, comma-joined).

    Raises:
        ValueError: an unknown ``scale``.
    """
    rows = []
    for (device, precision, batch), members in groups(cells).items():
        for xm, ym in PAIRS:
            used = [(c, value(c, xm), value(c, ym)) for c in members]
            used = [(c, x, y) for c, x, y in used if x is not None and y is not None]
            if not used:
                continue
            result = fit([x for _, x, _ in used], [y for _, _, y in used], scale=scale)
            rows.append({"device": device, "precision": precision, "batch": batch, "x": xm, "y": ym,
                         **result, "n_invalid": sum(c.get("status") == "invalid" for c, _, _ in used),
                         "x_unit": METRICS[xm][1], "y_unit": METRICS[ym][1],
                         "models": ",".join(str(_get(c, "cell", "model_stem")) for c, _, _ in used)})
    return [{k: row.get(k) for k in COLUMNS} for row in rows]


def printable(rows: list[dict]) -> list[dict]:
    """The rows of groups with at least :data:`MIN_N` models in some pair (what ``host report``
    prints; the others stay in ``correlations.csv``, labelled ``n<3``)."""
    big = {(r["device"], r["precision"], r["batch"]) for r in rows if r["n"] >= MIN_N}
    return [r for r in rows if (r["device"], r["precision"], r["batch"]) in big]


def write_correlations(rows: list[dict], out_dir: Path) -> Path:
    """Write ``correlations.csv`` (columns :data:`COLUMNS`, one row per fit) into ``out_dir``
    atomically; returns its path.

    Raises:
        OSError: ``out_dir`` cannot be written.
    """
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "correlations.csv"
    tmp = path.with_name(f".tmp-{path.name}")
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(tmp, index=False)
    tmp.replace(path)
    return path
