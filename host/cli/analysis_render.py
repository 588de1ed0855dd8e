"""Rich tables of the analysis commands: correlations (``host report``), scaling advice
(``host advise``) and query results (``host query``). No analysis logic here."""

from __future__ import annotations

import math

from rich.padding import Padding

from host.cli.budget_table import quantity, with_interval
from host.cli.render import PlainTable as Table
from host.cli.render import plain, styled

_PAIR_NAMES = {"flops": "FLOPs", "params": "params", "cdl": "CDL", "latency_ms": "latency",
               "rss_mib_peak": "peak RSS", "energy_mj": "energy/inf"}


def _g(value, fmt: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def correlation_table(rows: list[dict], title: str = "correlations") -> Table:
    """One line per fit of :func:`host.analysis.correlate.correlations`: [device, precision, batch,]
    static → measured, n, r, p, slope (y unit per x unit), intercept, r², label (weak,
    insignificant, n<3 and constant fits are shown, in yellow). A device, precision or batch that
    is the same on every row goes into the title instead of a column, so the table fits 100
    columns. Every string is text, not markup."""
    shared = {k: rows[0][k] for k in ("device", "precision", "batch") if len({r[k] for r in rows}) == 1} \
        if rows else {}
    heads = [(k, h) for k, h in (("device", "device"), ("precision", "prec"), ("batch", "batch"))
             if k not in shared]
    named = "; ".join(f"{k} {v}" for k, v in shared.items() if k != "batch" or len(shared) < 3)
    table = Table(title=f"{title} ({named})" if named else title, title_justify="left")
    for name, justify in [*((h, "left") for _, h in heads), ("static → measured", "left"), ("n", "right"),
                          ("r", "right"), ("p", "right"), ("slope", "right"), ("intercept", "right"),
                          ("r²", "right"), ("label", "left")]:
        table.add_column(name, justify=justify, no_wrap=name in ("device", "static → measured"))
    for row in rows:
        label = plain(row["label"], "" if row["label"] == "ok" else "yellow")
        table.add_row(
            *(str(row[k]) for k, _ in heads),
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


_BUDGET_COLUMNS = {"latency": "latency", "memory": "memory", "power": "power", "energy": "energy",
                   "accuracy": "accuracy"}
_VERDICT_STYLE = {"meets": "green", "misses": "red", "uncertain": "yellow"}
_X_NAMES = {"flops": "FLOPs", "params": "params"}


def _with_interval(check: dict) -> str:
    return with_interval(check["value"], check["interval"], check["unit"])


def limits_text(limits: list[dict], scope: str) -> str:
    """The budgets in words: ``latency_ms_p99 ≤ 16.7 ms, rss_mib_peak (process) ≤ 100 MiB``."""
    parts = []
    for lim in limits:
        sign = "≤" if lim["kind"] == "max" else "≥"
        what = lim["statistic"] + (f" ({scope})" if lim["budget"] == "memory" else "")
        parts.append(f"{what} {sign} {lim['limit']:.4g}" + (f" {lim['unit']}" if lim["unit"] else ""))
    return ", ".join(parts)


def advice_tables(result: dict) -> list:
    """Renderables of :func:`host.analysis.advise.advise`: the answer, the verdict table (one ✓/?/✗
    per budget), why the others do not meet, the per-family scaling fits and the Pareto fronts."""
    out = [styled((f"device {result['device']}: ", "bold"), result["answer"])]
    if result["rows"]:
        out.append(_budget_table(result))
        out.extend(_why(result["rows"]))
    out.extend(_fit_parts(result))
    out.extend(_pareto_tables(result["pareto"]))
    return out


def _budget_table(result: dict) -> Table:
    rows, limits = result["rows"], result["limits"]
    latency = next((lim for lim in limits if lim["budget"] == "latency"), None)
    batches = len({str(r["batch"]) for r in rows}) > 1
    table = Table(title=f"budgets: {limits_text(limits, result['memory_scope'])}", title_justify="left")
    table.add_column("model", overflow="fold")
    table.add_column("prec")
    if batches:
        table.add_column("batch", justify="right")
    if latency:
        table.add_column(f"{latency['statistic'].rsplit('_', 1)[-1]} (95 % CI)", justify="right")
    for lim in limits:
        table.add_column(_BUDGET_COLUMNS[lim["budget"]], justify="center")
    table.add_column("verdict")
    for row in rows:
        checks = row["checks"]
        lat = next((c for c in checks if c["budget"] == "latency"), None)
        table.add_row(row["model"], row["precision"], *([str(row["batch"])] if batches else []),
                      *([_with_interval(lat)] if latency else []),
                      *(plain(c["mark"], _VERDICT_STYLE.get(c["verdict"], "")) for c in checks),
                      plain(row["verdict"], _VERDICT_STYLE.get(row["verdict"], "")))
    table.caption = ("meets: the statistic's whole 95 % interval is within the budget; uncertain: it "
                     "straddles it, or no interval (< 5 processes, INVALID); misses: wholly outside; "
                     "memory: the peak over processes; no meter: measured without a power meter")
    table.caption_justify = "left"
    return table


def _why(rows: list[dict]) -> list:
    lines = [styled(("why not", "bold"))] if any(r["reasons"] for r in rows) else []
    for row in rows:
        for reason in row["reasons"]:
            line = plain(f"{row['model']} ({row['precision']}, batch {row['batch']}): {reason}")
            lines.append(Padding(line, (0, 0, 0, 2)))  # wrapped lines stay indented
    return lines


def _fit_parts(result: dict) -> list:
    if not result["fits"] and not result["not_fitted"]:
        return []
    out = [styled((f"width scaling per architecture family ({result['precision']}, batch "
                   f"{result['batch']})", "bold"))]
    for entry in result["fits"]:
        out.append(plain(_fit_line(entry)))
        for warning in entry["warnings"]:
            out.append(plain(f"  warning: {warning}", "yellow"))
        if entry["note"]:
            out.append(plain(f"  {entry['note']}"))
        if entry["scaling"]:
            out.append(_scaling_table(entry))
    out.extend(plain(line, "yellow") for line in result["not_fitted"])
    return out


def _fit_line(entry: dict) -> str:
    head = (f"{entry['family']}: {entry['y']} against {_X_NAMES.get(entry['x'], entry['x'])} "
            f"over {len(entry['models'])} model(s), target {entry['target']:.4g} {entry['unit']}")
    fit = entry["fit"]
    if not fit or fit.get("slope") is None:
        return head
    return (f"{head}: y = {fit['slope']:.4g}·x + {fit['intercept']:.4g} (r = {fit['r']:.3f}, n = "
            f"{fit['n']}, x in [{fit['x_min']:.3g}, {fit['x_max']:.3g}])")


def _scaling_table(entry: dict) -> Table:
    table = Table(title=None)
    for name in ("model", _X_NAMES.get(entry["x"], entry["x"]), "measured", "S", ""):
        table.add_column(name, justify="left" if name in ("model", "") else "right")
    for row in entry["scaling"]:
        table.add_row(str(row["model"]), _g(row["x0"]), quantity(row["y"], entry["unit"]), f"{row['s']:.3f}",
                      row["direction"])
    table.caption = "S = sqrt((target − intercept) / (slope · X₀)), X ∝ S²: a starting point to measure"
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


_CALL_STYLE = {"faster": "green", "slower": "red", "same": "", "n/a": "yellow"}


def by_tables(result: dict) -> list:
    """Tables of :func:`host.analysis.compare.compare_by`, one per campaign: the pair (A → B on
    the axis), both p50, the ratio B/A with its 95 % interval and the call; the caption states
    the method of each interval and the rule of the call."""
    axis, rows = result["axis"], result["rows"]
    out = []
    for campaign in sorted({str(r["campaign"]) for r in rows}):
        mine = [r for r in rows if str(r["campaign"]) == campaign]
        out.append(_by_table(campaign, axis, mine, result["methods"]))
    if result.get("unpaired"):
        out.append(plain(f"{result['unpaired']} cell(s) without a partner differing only in {axis} "
                         "are not shown"))
    return out


def _by_table(campaign: str, axis: str, rows: list, methods: dict) -> Table:
    context = [k for k in ("device", "batch", "precision")
               if k != axis and len({str(r[k]) for r in rows}) > 1]
    per = " per sample" if axis == "batch" else ""
    table = Table(title=f"campaign {campaign}: latency by {axis}, B against A{per}", title_justify="left")
    table.add_column("model", overflow="fold")
    for key in context:
        table.add_column(key, justify="right" if key == "batch" else "left")
    table.add_column(f"{axis} A → B")
    for name in ("p50 A", "p50 B", f"B/A{per} (95 % CI)"):
        table.add_column(name, justify="right")
    table.add_column("call")
    marks = {m: "" if len(methods) == 1 else "*" * (i + 1) for i, m in enumerate(methods)}
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3g}"
        ci = f" ({r['ci95'][0]:.3g}–{r['ci95'][1]:.3g})" if r["ci95"] else ""
        table.add_row(str(r["model"]), *(str(r[k]) for k in context), f"{r['a']} → {r['b']}",
                      quantity(r["p50_ms_a"], "ms"), quantity(r["p50_ms_b"], "ms"),
                      ratio + ci + marks[r["method"]], plain(r["call"], _CALL_STYLE[r["call"]]))
    notes = [f"{marks[m] + ' ' if marks[m] else ''}{m}: {how}" for m, how in methods.items()]
    table.caption = ("B/A < 1: B is faster; same when the 95 % interval contains 1, faster/slower when it "
                     "lies below/above. " + "; ".join(notes))
    table.caption_justify = "left"
    return table


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
