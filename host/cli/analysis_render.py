"""Rich tables of the analysis commands: correlations (``host report``), scaling advice
(``host advise``) and query results (``host query``). No analysis logic here."""

from __future__ import annotations

import math

from host.cli.render import PlainTable as Table
from host.cli.render import plain

_PAIR_NAMES = {"flops": "FLOPs", "params": "params", "cdl": "CDL", "latency_ms": "latency",
               "rss_mib_peak": "peak RSS", "energy_mj": "energy/inf"}


def _g(value, fmt: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def correlation_table(rows: list[dict], title: str = "correlations") -> Table:
    """One line per fit of :func:`host.analysis.correlate.correlations`: device, precision,
    [batch,] static → measured, n, r, p, slope (y unit per x unit), intercept, r², label (weak,
    insignificant, n<3 and constant fits are shown, in yellow). Every string is text, not markup."""
    table = Table(title=title, title_justify="left")
    sweep = len({r["batch"] for r in rows}) > 1
    for name, justify in [("device", "left"), ("prec", "left"), *([("batch", "right")] if sweep else []),
                          ("static → measured", "left"), ("n", "right"), ("r", "right"), ("p", "right"),
                          ("slope", "right"), ("intercept", "right"), ("r²", "right"), ("label", "left")]:
        table.add_column(name, justify=justify, no_wrap=name in ("device", "static → measured"))
    for row in rows:
        label = plain(row["label"], "" if row["label"] == "ok" else "yellow")
        table.add_row(
            str(row["device"]), str(row["precision"]), *([str(row["batch"])] if sweep else []),
            f"{_PAIR_NAMES.get(row['x'], row['x'])} → {_PAIR_NAMES.get(row['y'], row['y'])}",
            str(row["n"]), _g(row["r"], ".3f"), _g(row["p_value"], ".2g"),
            "-" if row["slope"] is None else f"{row['slope']:.3g} {row['y_unit']}/{row['x_unit']}",
            "-" if row["intercept"] is None else f"{row['intercept']:.3g} {row['y_unit']}",
            _g(row["r2"], ".3f"), label)
    scale = sorted({r["scale"] for r in rows})
    table.caption = ("Pearson r (two-sided p) and least-squares line y = slope·x + intercept over "
                     f"{', '.join(scale)} values, one point per model (latest campaign); labels: weak "
                     "|r| < 0.5, insignificant p ≥ 0.05, n<3 fewer than 3 models; every fit is in "
                     "correlations.csv")
    table.caption_justify = "left"
    return table


def advice_tables(result: dict) -> list:
    """Renderables of :func:`host.analysis.advise.advise`: the fit line, the scaling ratios, the
    budget check and the Pareto fronts."""
    out = [_fit_text(result)]
    if result["scaling"]:
        table = Table(title=f"width scaling ratio S meeting {result['target']:g} {result['unit']}",
                      title_justify="left")
        for name in ("model", result["x"], f"measured {result['unit']}", "S", ""):
            table.add_column(name, justify="left" if name in ("model", "") else "right")
        for row in result["scaling"]:
            table.add_row(str(row["model"]), _g(row["x0"]), _g(row["y"]), f"{row['s']:.3f}", row["direction"])
        table.caption = ("S = sqrt((target − intercept) / (slope · X₀)): FLOPs and params scale as S² under "
                         "uniform width scaling; a starting point to measure")
        table.caption_justify = "left"
        out.append(table)
    out.append(_budget_table(result))
    out.extend(_pareto_tables(result["pareto"]))
    return out


def _fit_text(result: dict):
    fit = result.get("fit")
    head = (f"device {result['device']}, precision {result['precision']}, batch {result['batch']}: "
            f"{result['y']} against {result['x']}")
    if not fit or fit.get("slope") is None:
        return plain(head + ": no line")
    text = (f"{head}: y = {fit['slope']:.4g}·x + {fit['intercept']:.4g} (r = {fit['r']:.3f}, "
            f"p = {fit['p_value']:.2g}, r² = {fit['r2']:.3f}, n = {fit['n']}, {fit['scale']} values, "
            f"fitted on {result['x']} in [{fit['x_min']:.4g}, {fit['x_max']:.4g}])")
    if result.get("x_target") is not None:
        text += f"; the target needs {result['x']} ≈ {result['x_target']:.4g}"
    return plain(text)


def _budget_table(result: dict) -> Table:
    unit = result["unit"]
    table = Table(title=f"measured models against {result['target']:g} {unit}", title_justify="left")
    for name in ("model", "prec", unit, "95 % CI", "status", "why"):
        table.add_column(name, justify="right" if name in (unit, "95 % CI") else "left")
    colour = {"meets": "green", "misses": "red", "uncertain": "yellow"}
    for row in result["budget"]:
        ci = row["ci95"]
        table.add_row(str(row["model"]), row["precision"], _g(row["value"], ".4g"),
                      f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "-",
                      plain(row["status"], colour[row["status"]]), str(row["reason"]))
    if result["target_name"] == "latency_ms":
        table.caption = ("a model meets a latency budget only if the upper bound of its p50's 95 % CI is "
                         "under it")
        table.caption_justify = "left"
    return table


def _pareto_tables(fronts: dict) -> list:
    out = []
    for key, second, fmt in (("latency_params", "params", ",.0f"), ("latency_accuracy", "top1", ".3f"),
                             ("latency_energy", "energy_mj", ".4g")):
        front = fronts.get(key) or []
        if not front:
            continue
        table = Table(title=f"Pareto front: latency vs {second}"
                      + (" (higher is better)" if second == "top1" else ""), title_justify="left")
        for name in ("model", "prec", "p50 ms", second):
            table.add_column(name, justify="left" if name in ("model", "prec") else "right")
        for p in front:
            table.add_row(str(p["model"]), p["precision"], _g(p["latency_ms"], ".4g"), _g(p[second], fmt))
        out.append(table)
    return out


def frame_table(frame) -> Table:
    """A pandas DataFrame as a table (every value as text; missing values as ``-``)."""
    table = Table(show_lines=False)
    for column in frame.columns:
        table.add_column(str(column))
    for values in frame.itertuples(index=False):
        table.add_row(*("-" if _missing(v) else str(v) for v in values))
    return table


def _missing(value) -> bool:
    try:
        return value is None or bool(value != value)
    except (TypeError, ValueError):
        return False
