"""``host report --html``: one self-contained HTML page of a results folder.

The page holds the device manifest summary (``campaign.json`` devices and each cell's
``manifest.device``), the results table (the terminal table's columns plus the latency level and,
when measured, power and energy), verdicts and warnings (every INVALID or FAILED reason, power
verdict reasons, fidelity and cell warnings, power-mode conflicts) and the plots of
:mod:`host.analysis.plots` as base64 PNG data URIs. CSS is inline; there is no script and no
external reference, so the file opens offline in any browser. Every string that comes from a
result is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from host.analysis.plots import Plot, all_plots
from host.analysis.report import mode_conflicts
from host.analysis.thermal_plot import thermal_plots
from host.campaign.store import CAMPAIGN_FILE, _get
from runners.fileio import write_atomic

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f0f0f0; } td.l, th.l { text-align: left; }
tr.invalid td { background: #fff8e0; } tr.failed td { background: #fde8e8; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #b35900; font-weight: 600; }
.fail { color: #c62828; font-weight: 600; }
figure { display: inline-block; margin: 0.6em; vertical-align: top; max-width: 47%; }
figure img { max-width: 100%; height: auto; } figcaption { font-size: 0.8em; color: #555; }
p.note, li { font-size: 0.85em; }
"""

DEVICE_FIELDS = (("hostname", "manifest"), ("cpu_model", "manifest"), ("cpu_count", "manifest"),
                 ("arch", "manifest"), ("os", "manifest"), ("kernel", "manifest"), ("python", "manifest"),
                 ("memory_mib_total", "manifest"), ("cpu_governor", "manifest"),
                 ("cpu_freq_mhz_max", "manifest"), ("power_mode_key", "manifest"),
                 ("connection", "inventory"), ("runtime", "inventory"), ("mode", "inventory"),
                 ("image", "inventory"))


def _e(value) -> str:
    """A result value as escaped text; None is ``-``."""
    return "-" if value is None else html.escape(str(value), quote=True)


def _num(value, fmt: str, scale: float = 1.0) -> str:
    if not isinstance(value, (int, float)) or value != value:
        return "-"
    return format(value * scale if scale != 1.0 else value, fmt)


def _table(head: list, rows: list, left: int = 1, row_classes: list | None = None) -> str:
    """An HTML table; ``head`` and the cells are already-escaped strings; the first ``left``
    columns are left-aligned."""
    def cls(i):
        return ' class="l"' if i < left else ""

    out = ["<table>", "<tr>" + "".join(f"<th{cls(i)}>{h}</th>" for i, h in enumerate(head)) + "</tr>"]
    for k, row in enumerate(rows):
        rc = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        out.append(f"<tr{rc}>" + "".join(f"<td{cls(i)}>{v}</td>" for i, v in enumerate(row)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


# --------------------------------------------------------------------------- devices


def _campaign_docs(cells: list) -> dict:
    """``{campaign folder: campaign.json}`` for the campaigns of ``cells`` (unreadable ones skipped)."""
    docs = {}
    for cell in cells:
        if not cell.get("_path"):
            continue
        path = Path(cell["_path"]).parent.parent / CAMPAIGN_FILE
        if str(path) in docs or not path.is_file():
            continue
        try:
            docs[str(path)] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return docs


def device_rows(cells: list) -> list[dict]:
    """One summary per (campaign, device): the fields of :data:`DEVICE_FIELDS` from the first
    cell's ``manifest.device`` and the campaign's inventory settings, plus the runtime and the
    power meter. Returns dicts with ``campaign``, ``device``, ``cells`` and those fields."""
    inventory = {}
    for doc in _campaign_docs(cells).values():
        for name, settings in (doc.get("devices") or {}).items():
            inventory[(doc.get("campaign"), name)] = settings or {}
    rows: dict = {}
    for cell in cells:
        key = (_get(cell, "cell", "campaign"), _get(cell, "cell", "device"))
        if key in rows:
            rows[key]["cells"] += 1
            continue
        manifest = _get(cell, "manifest", "device") or {}
        settings = inventory.get(key, {})
        row = {"campaign": key[0], "device": key[1], "cells": 1}
        for name, source in DEVICE_FIELDS:
            row[name] = (manifest if source == "manifest" else settings).get(name)
        row["power_mode_key"] = row["power_mode_key"] or settings.get("power_mode_key")
        rt = cell.get("runtime") or {}
        row["runtime_version"] = " ".join(str(rt[k]) for k in ("name", "version", "provider") if rt.get(k))
        meter = _get(cell, "power", "meter") or {}
        row["meter"] = " ".join(str(meter[k]) for k in ("meter", "model", "scope") if meter.get(k)) or None
        rows[key] = row
    return list(rows.values())


def _field(value) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return _e(", ".join(map(str, value)))
    return _e(value)


def _devices_section(cells: list) -> str:
    """Devices as columns, fields as rows (a device table with 17 columns does not fit a page)."""
    rows = device_rows(cells)
    fields = [("cells", "cells"), *((n, n) for n, _ in DEVICE_FIELDS),
              ("runtime (as run)", "runtime_version"), ("power meter", "meter")]
    head = ["", *(f"{_e(r['device'])}<br><small>{_e(r['campaign'])}</small>" for r in rows)]
    body = [[_e(label), *(_field(r[key] if r[key] != "" else None) for r in rows)] for label, key in fields]
    return ("<h2>Devices</h2>\n<p class=\"note\">From each cell's manifest.device (recorded on the device "
            "when the cell ran) and the campaign's inventory settings (campaign.json).</p>\n"
            + _table(head, body, left=len(head)))


# --------------------------------------------------------------------------- results


def _verdict_html(cell: dict) -> str:
    if cell.get("status") == "failed":
        return f'<span class="fail">FAILED</span> {_e(_get(cell, "error", "type"))}'
    verdict = cell.get("verdict") or {}
    if verdict.get("result") == "VALID":
        return '<span class="ok">VALID</span>'
    failed = [name for name, ok in (verdict.get("checks") or {}).items() if ok is False]
    return f'<span class="bad">{_e(verdict.get("result", "?"))}</span> {_e(", ".join(failed))}'


def _agreement(cell: dict) -> str:
    value = _get(cell, "fidelity", "top1_agreement")
    if value is None:
        return "-"
    return f"{value * 100:.1f}" + ("*" if "random" in str(_get(cell, "fidelity", "weights") or "") else "")


def _ci(lat: dict) -> str:
    ci = lat.get("latency_ms_p50_ci95")
    if not ci or None in ci:
        return "-"
    rel = lat.get("latency_ms_p50_ci95_rel")
    return f"{ci[0]:.4g}–{ci[1]:.4g}" + (f" (±{rel * 100:.1f} %)" if rel is not None else "")


def _power_cells(cell: dict) -> list:
    p = cell.get("power") or {}
    verdict = _get(p, "verdict", "result")
    tag = ("-" if verdict is None else '<span class="ok">VALID</span>' if verdict == "VALID"
           else f'<span class="bad">{_e(verdict)}</span>')
    return [_num(p.get("power_w_mean"), ".3g"), _num(p.get("power_w_peak"), ".3g"),
            _num(p.get("energy_mj_per_inference"), ".4g"),
            _num(p.get("energy_mj_per_inference_dynamic"), ".4g"),
            _num(p.get("throughput_per_watt_mean"), ",.1f"), tag]


POWER_HEAD = ["power W mean", "power W peak", "energy mJ/inf", "dyn. energy mJ/inf", "inf/J", "power verdict"]


_BUDGET_CLASS = {"meets": "ok", "uncertain": "bad", "misses": "fail"}


def _budget_html(cell: dict, budgets=None) -> str:
    """The cell against the budgets (``budgets``, a :class:`host.analysis.budgets.Budgets`, given to
    ``host report``): the overall verdict, then each budget's mark, statistic, value and interval;
    without them, the cell's own frame-rate budget (:func:`host.analysis.dataset.fps_budget`),
    e.g. ``✓ meets: p99 8.3 (8.1–8.6) ≤ 16.67 ms``."""
    from host.analysis.budgets import MARKS, judge
    from host.analysis.dataset import fps_budget

    if budgets is not None and budgets.names():
        judged = judge(cell, budgets)
        parts = [f"{_e(c.budget)} {_check_html(c)}" for c in judged.checks]
        return _mark_html(judged.verdict, MARKS[judged.verdict]) + ": " + "; ".join(parts)
    check = fps_budget(cell)
    if check is None:
        return "-"
    return _check_html(check)


def _mark_html(verdict: str, mark: str) -> str:
    return f'<span class="{_BUDGET_CLASS.get(verdict, "")}">{_e(mark)} {_e(verdict)}</span>'


def _check_html(check) -> str:
    """One budget check: its mark and verdict, the statistic with its 95 % interval and the limit."""
    mark = _mark_html(check.verdict, check.mark)
    if check.value is None:
        return mark
    stat = check.statistic.rsplit("_", 1)[-1] if check.budget == "latency" else check.statistic
    interval = f" ({check.interval[0]:.4g}–{check.interval[1]:.4g})" if check.interval else ""
    rel = "≥" if check.kind == "min" else "≤"
    return f"{mark}: {_e(stat)} {check.value:.4g}{interval} {rel} {check.limit:.4g} {_e(check.unit)}".rstrip()


def results_columns(cells: list) -> tuple[list, bool, bool]:
    """The table's header, whether it has a batch column (a batch sweep) and power columns."""
    sweep = len({_get(c, "host", "config", "batch") for c in cells}) > 1
    power = any(c.get("power") for c in cells)
    head = ["device", "model", "prec", *(["batch"] if sweep else []), "level", "params", "MFLOPs",
            "p50 ms", "CI95 ms", "re-run %", "proc", "p99 ms", "samples/s", "RSS MiB",
            *(POWER_HEAD if power else []), "agree %", "acc %", "frame budget", "verdict"]
    return head, sweep, power


def _results_section(cells: list, budgets=None) -> str:
    head, sweep, power = results_columns(cells)
    if budgets is not None and budgets.names():
        head[head.index("frame budget")] = "budgets"
    rows, classes = [], []
    for cell in cells:
        lat, met = cell.get("latency") or {}, cell.get("metrics") or {}
        rerun = lat.get("latency_ms_p50_rerun95_rel")
        rows.append([
            _e(_get(cell, "cell", "device")), _e(_get(cell, "cell", "model_stem")),
            _e(_get(cell, "precision", "name") or "fp32"),
            *([_e(_get(cell, "host", "config", "batch"))] if sweep else []),
            _e(lat.get("level")), _num(met.get("params"), ","), _num(met.get("flops"), ",.1f", 1e-6),
            _num(lat.get("latency_ms_p50"), ".4g"), _ci(lat), "-" if rerun is None else f"±{rerun * 100:.1f}",
            _num(lat.get("processes"), "d"), _num(lat.get("latency_ms_p99"), ".4g"),
            _num(lat.get("throughput_sps"), ",.0f"), _num(_get(cell, "memory", "rss_mib_peak"), ".1f"),
            *(_power_cells(cell) if power else []),
            _agreement(cell), _num(_get(cell, "accuracy", "top1"), ".1f", 100.0), _budget_html(cell, budgets),
            _verdict_html(cell)])
        classes.append({"failed": "failed", "invalid": "invalid"}.get(cell.get("status"), ""))
    note = ("p50: median of session medians over fresh processes; CI95: its 95 % interval (hierarchical "
            "bootstrap over processes); re-run: where a re-run's p50 should land (95 %); level: what the "
            "timed region holds; p99: median of session p99s; RSS: peak resident set of the first process; "
            "agree: top-1 agreement with the fp32 model on the host (* random weights); acc: top-1 accuracy "
            "on the model's dataset; frame budget: the cell's frame rate (--fps) as a latency ceiling on "
            "its statistic (p99: at most 1 % of frames late), judged by one rule: meets when the upper end "
            "of the statistic's 95 % interval is within the budget, uncertain when the interval straddles "
            "it (or there is no interval, or the latency would not reproduce: INVALID), misses otherwise")
    if budgets is not None and budgets.names():
        note += ("; budgets: those given to host report, each judged by that rule (accuracy: the lower "
                 "end of its Wilson interval at least the floor; power and energy: the meter's value; no "
                 "meter when power was not measured); the cell meets them when it meets every one")
    if power:
        note += ("; power: meter power over the first timed loop (scope in the device table), energy per "
                 "inference = its trapezoid integral / calls, dynamic = minus idle, inf/J = calls per joule")
    return (f"<h2>Results</h2>\n{_table(head, rows, left=3, row_classes=classes)}\n"
            f"<p class=\"note\">{_e(note)}</p>")


# --------------------------------------------------------------------------- verdicts, warnings


def warning_lines(cells: list) -> list[str]:
    """Plain-text lines: per cell every FAILED error, INVALID reason, verdict warning, power
    verdict reason and warning, fidelity warning and cell warning; then power-mode conflicts."""
    lines = []
    for cell in cells:
        who = " / ".join(str(_get(cell, "cell", k) or "?") for k in ("device", "model_stem", "config"))
        if cell.get("status") == "failed":
            err = cell.get("error") or {}
            lines.append(f"{who}: FAILED {err.get('type') or ''}: {err.get('message') or ''}")
        power_error = _get(cell, "power", "error")
        for kind, items in (("INVALID", _get(cell, "verdict", "reasons")),
                            ("warning", _get(cell, "verdict", "warnings")),
                            ("power INVALID", _get(cell, "power", "verdict", "reasons")),
                            ("power warning", _get(cell, "power", "verdict", "warnings")),
                            ("power error", [power_error] if power_error else []),
                            ("fidelity warning", _get(cell, "fidelity", "warnings")),
                            ("warning", cell.get("warnings"))):
            lines.extend(f"{who}: {kind}: {item}" for item in items or [])
    lines.extend(f"power modes: {line}" for line in mode_conflicts(cells))
    return lines


def _warnings_section(cells: list, plot_notes: list) -> str:
    lines = warning_lines(cells) + [f"plot not drawn: {n}" for n in plot_notes]
    body = ("<ul>\n" + "\n".join(f"<li>{_e(x)}</li>" for x in lines) + "\n</ul>") if lines else \
        "<p class=\"note\">None: every cell VALID, no warnings.</p>"
    return f"<h2>Verdicts and warnings</h2>\n{body}"


# --------------------------------------------------------------------------- plots, page


def png_data_uri(path: Path) -> str:
    """``data:image/png;base64,…`` of a PNG file."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _plots_section(plots: list[Plot]) -> str:
    figures = [f'<figure><img src="{png_data_uri(p.path)}" alt="{_e(p.title)}">'
               f"<figcaption>{_e(p.title)}</figcaption></figure>" for p in plots]
    return "<h2>Plots</h2>\n" + ("\n".join(figures) if figures else "<p class=\"note\">No plot.</p>")


def _correlations_section(cells: list) -> str:
    """The correlation table of :func:`host.analysis.correlate.correlations` (the groups
    ``host report`` prints: at least 3 models), or "" when there is none."""
    from host.analysis.correlate import correlations, printable

    rows = printable(correlations(cells))
    if not rows:
        return ""
    body = [[_e(r["device"]), _e(r["precision"]), _e(r["batch"]), _e(f"{r['x']} → {r['y']}"), _e(r["n"]),
             _num(r["r"], ".3f"), _num(r["p_value"], ".2g"), _num(r["slope"], ".3g"),
             _num(r["intercept"], ".3g"), _num(r["r2"], ".3f"), _e(r["label"])] for r in rows]
    head = ["device", "precision", "batch", "static → measured", "n", "r", "p", "slope", "intercept", "r²",
            "label"]
    return ("<h2>Correlations</h2>\n" + _table(head, body, left=4)
            + "\n<p class=\"note\">Pearson r (two-sided p) and least-squares line over linear values, one "
              "point per model; weak: |r| &lt; 0.5, insignificant: p ≥ 0.05, n&lt;3: fewer than 3 models. "
              "Every fit is also in correlations.csv.</p>")


def render_html(cells: list, title: str, plots: list[Plot], plot_notes: list, budgets=None) -> str:
    """The page as a string (see the module docstring); ``plots`` are embedded, so their files
    must exist while this runs; ``budgets`` (:class:`host.analysis.budgets.Budgets`): the budgets
    column judges each cell against them instead of its own frame rate."""
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>edgegauge report: {_e(title)}</title>", f"<style>{CSS}</style></head><body>",
        f"<h1>edgegauge report: {_e(title)}</h1>",
        f"<p class=\"note\">{len(cells)} cells; written {made} by host report --html.</p>",
        _devices_section(cells), _results_section(cells, budgets), _correlations_section(cells),
        _warnings_section(cells, plot_notes), _plots_section(plots), "</body></html>", ""])


def write_html(cells: list, path: Path, title: str, notes_out: list | None = None, budgets=None) -> Path:
    """Draw every plot (:func:`host.analysis.plots.all_plots` and the thermal timelines of
    :func:`host.analysis.thermal_plot.thermal_plots`, in a temporary folder) and write
    the page to ``path`` atomically; returns ``path``. The notes of plots not drawn (also on the
    page) are appended to ``notes_out`` when given; ``budgets``: see :func:`render_html`.

    Raises:
        OSError: ``path`` cannot be written.
    """
    with tempfile.TemporaryDirectory(prefix="edgegauge-plots-") as tmp:
        plots, notes = all_plots(cells, Path(tmp))
        more, more_notes = thermal_plots(cells, Path(tmp))  # latency, temperature, clock (host.thermal)
        plots, notes = plots + more, notes + more_notes
        page = render_html(cells, title, plots, notes, budgets)
    if notes_out is not None:
        notes_out.extend(notes)
    path = Path(path)
    write_atomic(path, lambda fh: fh.write(page), suffix=".html")
    return path
