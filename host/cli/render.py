"""Rich tables for people, JSON for scripts. No measurement logic here.

Strings from a user, a file or a board (model, campaign and device names, error messages, query
results) are printed as text, never read as rich markup: :func:`console` does not parse markup,
:class:`PlainTable` holds every string as :class:`~rich.text.Text`, and a style is applied by code
(``Text(..., style=)``, :func:`styled`), never written into a string.
"""

from __future__ import annotations

import json
import math
import os
import sys

from rich.console import Console, Group
from rich.protocol import is_renderable
from rich.table import Table
from rich.text import Text


def plain(value, style: str = "") -> Text:
    """``value`` as text (``str()`` of it unless it is Text already): ``[bold]x`` stays ``[bold]x``."""
    return value if isinstance(value, Text) else Text(str(value), style=style)


def styled(*parts) -> Text:
    """Text of ``parts``: a string (plain) or ``(string, style)``; no part is read as markup."""
    return Text.assemble(*((str(p[0]), p[1]) if isinstance(p, tuple) else str(p) for p in parts))


class PlainTable(Table):
    """A rich Table whose title, caption, headers and cells given as strings are text, not markup
    (a model named ``x[/]y`` is shown as such instead of raising MarkupError)."""

    _ANNOTATION_STYLES = {"title": "table.title", "caption": "table.caption"}

    def __setattr__(self, name, value):
        if name in self._ANNOTATION_STYLES and isinstance(value, str):
            value = Text(value, style=self._ANNOTATION_STYLES[name])
        super().__setattr__(name, value)

    def add_column(self, header="", *args, **kwargs) -> None:
        """A column; a cell too long for it wraps (``overflow="fold"``), never cut to ``…``."""
        kwargs.setdefault("overflow", "fold")
        super().add_column(plain(header), *args, **kwargs)

    def add_row(self, *renderables, **kwargs) -> None:
        """A row; a cell that is a string (or a number) becomes Text, None an empty cell."""
        super().add_row(*(r if r is None or (is_renderable(r) and not isinstance(r, str)) else plain(r)
                          for r in renderables), **kwargs)

    def __rich_console__(self, console, options):
        """The table as wide as the terminal allows: as it is when it fits; else with the widest
        columns wrapped at spaces (no word broken); else vertically (:func:`vertical`), one
        ``column: value`` block per row."""
        saved = [c.width for c in self.columns]
        try:
            widths = _fitted_widths(self, console, options)
            if widths is None:
                yield from vertical(self).__rich_console__(console, options)
                return
            for column, width in zip(self.columns, widths):
                column.width = width
            yield from super().__rich_console__(console, options)
        finally:
            for column, width in zip(self.columns, saved):
                column.width = width


def _fitted_widths(table: Table, console: Console, options) -> list | None:
    """Content widths for ``table``'s columns within ``options.max_width``: each column's widest
    cell when they fit, else the widest columns narrowed but never below their longest word; None
    when even that does not fit. Columns with a set width keep it."""
    from rich.measure import Measurement

    opts = options.update(width=10**6)
    lows, highs = [], []
    for column in table.columns:
        found = [Measurement.get(console, opts, c) for c in [column.header, *column.cells] if c is not None]
        high = max((m.maximum for m in found), default=1)
        low = high if column.no_wrap else max((m.minimum for m in found), default=1)
        lows.append(column.width or low)
        highs.append(column.width or high)
    # borders and padding (rich's own arithmetic, as Table._calculate_column_widths uses it)
    overhead = table._extra_width + sum(table._get_padding_width(i) for i in range(len(table.columns)))
    room = options.max_width - overhead
    widths = list(highs)
    if sum(widths) <= room:
        return [c.width for c in table.columns]
    if sum(lows) > room:
        return None
    while sum(widths) > room:
        i = max(range(len(widths)), key=lambda j: widths[j] - lows[j])
        widths[i] -= 1
    return widths


def vertical(table: Table) -> Group:
    """``table`` as one block per row, ``column: value`` on each line (values wrap in the room
    left), under the table's title and above its caption: for rows wider than the terminal."""
    blocks: list = [table.title] if table.title else []
    headers = [c.header for c in table.columns]
    rows = list(zip(*(c.cells for c in table.columns)))
    for n, row in enumerate(rows):
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for header, value in zip(headers, row):
            grid.add_row(styled(f"{header.plain if isinstance(header, Text) else header}:"), value)
        blocks.append(grid)
        if n < len(rows) - 1:
            blocks.append(plain(""))
    if table.caption:
        blocks.append(table.caption)
    return Group(*blocks)


def _num(value, fmt: str, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value * scale if scale != 1.0 else value, fmt)


def _reasons(verdict: dict) -> list[str]:
    """The verdict's reasons, each under its check (``check: reason``) when the cell keys them
    (``reasons_by_check``, since issue 22); a stored cell's plain ``reasons`` otherwise."""
    by_check = verdict.get("reasons_by_check")
    if isinstance(by_check, dict) and by_check:
        return [f"{check}: {text}" for check, text in by_check.items()]
    return [str(r) for r in verdict.get("reasons") or []]


def verdict_text(cell: dict, full: bool = True) -> Text:
    """FAILED with the error type, VALID, or INVALID with the failed checks' names as stored
    (``full``: with the reasons, each under its check)."""
    status = cell.get("status")
    if status == "failed":
        err = cell.get("error") or {}
        return styled(("FAILED", "red"), f" {err.get('type', '')}")
    verdict = cell.get("verdict") or {}
    if verdict.get("result") == "VALID":
        return styled(("VALID", "green"))
    if full:
        return styled((verdict.get("result", "?"), "yellow"), " " + "; ".join(_reasons(verdict)))
    failed = [str(name) for name, ok in (verdict.get("checks") or {}).items() if not ok]
    return styled((verdict.get("result", "?"), "yellow"), " " + ", ".join(failed))


#: Check-bound warnings shown below the table for VALID cells too: a stable second mode.
NOTED_WARNINGS = ("modes_stable_across_processes",)


def verdict_notes(cells: list[dict]) -> list[str]:
    """One line per reason of every INVALID or failed cell, ``model: check: reason`` (old
    cells: ``model: reason``), per stable second mode, ``model: warning: second mode: …``, and per
    thermal warning (:mod:`host.thermal`), ``model: warning: throttled: …``."""
    lines = []
    for cell in cells:
        stem = (cell.get("cell") or {}).get("model_stem") or "?"
        if cell.get("status") == "failed":
            lines.append(f"{stem}: {(cell.get('error') or {}).get('message', '')}")
        verdict = cell.get("verdict") or {}
        lines += [f"{stem}: {reason}" for reason in _reasons(verdict)]
        noted = verdict.get("warnings_by_check")
        if isinstance(noted, dict):
            lines += [f"{stem}: warning: {noted[c]}" for c in NOTED_WARNINGS if noted.get(c)]
        thermal = cell.get("thermal") if isinstance(cell.get("thermal"), dict) else {}
        lines += [f"{stem}: warning: {w}" for w in (thermal.get("verdict") or {}).get("warnings") or []
                  if str(w).startswith("throttled:")]
    return lines


def _batch(cell: dict):
    """The cell's batch size (its configuration's), or "-"."""
    return ((cell.get("host") or {}).get("config") or {}).get("batch", "-")


def _count(n) -> str:
    """A parameter count in 3 significant figures: ``9,930``, ``242 k``, ``1.35 M``."""
    if n is None:
        return "-"
    if n >= 1e6:
        return f"{n / 1e6:.3g} M"
    return f"{n / 1e3:.3g} k" if n >= 1e4 else f"{n:,}"


def _tie_labels(ties: dict) -> tuple:
    """Letters for groups of cells whose p50 cannot be told apart (connected through
    :func:`host.analysis.compare.indistinguishable`'s pairs, within one campaign, device and
    configuration): ``({tie key: letter}, "A: m1, m2; B: ...")``."""
    parent: dict = {}

    def find(k):
        while parent.setdefault(k, k) != k:
            k = parent[k]
        return k

    for key, others in ties.items():
        for other in others:
            parent[find((*key[:2], other, key[3]))] = find(key)
    groups: dict = {}
    for key in sorted(parent, key=str):
        groups.setdefault(find(key), []).append(key)
    labels, legend = {}, []
    for i, members in enumerate(sorted(groups.values(), key=lambda m: str(m[0]))):
        letter = chr(ord("A") + i % 26) + ("" if i < 26 else str(i // 26))
        labels.update({k: letter for k in members})
        legend.append(f"{letter}: {', '.join(k[2] for k in members)}")
    return labels, "; ".join(legend)


def _power_cells(cell: dict) -> list:
    """Mean power (W) over the load window and energy per inference (mJ), or "-"; "†" marks the
    machine's own counter or sensor (``power.measures``: not wall power); "no source" a local
    device with nothing to read (``power.no_source``)."""
    pw = cell.get("power") if isinstance(cell.get("power"), dict) else {}
    if pw.get("no_source"):
        return ["no source", "-"]
    mark = "†" if pw.get("measures") and pw.get("power_w_mean") is not None else ""
    return [_num(pw.get("power_w_mean"), ".2f") + mark, _num(pw.get("energy_mj_per_inference"), ".3f")]


def _has_power(cell: dict) -> bool:
    pw = cell.get("power")
    return isinstance(pw, dict) and (pw.get("power_w_mean") is not None or bool(pw.get("no_source")))


def power_legend(cells: list) -> str:
    """What "†" and "no source" mean in the power columns of ``cells`` ("" when neither appears):
    each ``power.measures`` (an on-host counter: not wall power) and why a local cell has none."""
    pws = [c["power"] for c in cells if isinstance(c.get("power"), dict)]
    parts = [f"† {m}" for m in sorted({p["measures"] for p in pws if p.get("measures")})]
    if any(p.get("no_source") for p in pws):
        parts.append("no source: the local machine has no energy counter or power sensor to read "
                     "(the cell's power.no_source says why)")
    return "; ".join(parts)


def _agreement(cell: dict) -> str:
    """Top-1 agreement (%) with the fp32 reference; ``*`` marks random weights."""
    fid = cell.get("fidelity") or {}
    value = fid.get("top1_agreement")
    if value is None:
        return "-"
    mark = "*" if "random" in str(fid.get("weights") or "") else ""
    return f"{value * 100:.1f}{mark}"


def _pm(rel) -> str:
    return "-" if rel is None else f"±{rel * 100:.1f}"


def bench_table(cells: list[dict], title: str | None = None, show_device: bool = False,
                ties: dict | None = None) -> Table:
    """Summary table: [device,] model, precision, params, MFLOPs, p50 ms with its 95 % CI and
    re-run interval (±%), processes, p99 ms, samples/s, peak RSS, top-1 agreement with the fp32
    model (fidelity), top-1 accuracy, verdict; ``ties`` (from
    :func:`host.analysis.compare.indistinguishable`, keyed by campaign, device, model,
    config) adds "≈ other" to models whose p50 cannot be told apart."""
    labels, legend = _tie_labels(ties or {})
    table = PlainTable(title=title, title_justify="left")
    if show_device:
        table.add_column("device", no_wrap=True)
    sweep = len({_batch(c) for c in cells}) > 1
    levels = {(c.get("latency") or {}).get("level") for c in cells} - {None}
    mixed = len(levels) > 1
    scheduled = any((c.get("scenario") or {}).get("deadline_miss_pct") is not None for c in cells)
    power = any(_has_power(c) for c in cells)
    for name, justify in [("model", "left"), ("prec", "left"), *([("batch", "right")] if sweep else []),
                          ("params", "right"), ("MFLOPs", "right"), *([("level", "left")] if mixed else []),
                          ("p50 ms", "right"), ("CI95 %", "right"), ("re-run %", "right"), ("proc", "right"),
                          ("p99 ms", "right"), *([("miss %", "right")] if scheduled else []),
                          ("samples/s", "right"), ("RSS MiB", "right"),
                          *([("W mean", "right"), ("mJ/inf", "right")] if power else []),
                          ("agree %", "right"), ("acc %", "right"), ("verdict", "left")]:
        table.add_column(name, justify=justify, no_wrap=(name == "model"))
    for cell in cells:
        lat = cell.get("latency") or {}
        met = cell.get("metrics") or {}
        mem = cell.get("memory") or {}
        info = cell.get("cell") or {}
        first = [info.get("device") or "-"] if show_device else []
        model = info.get("model_stem") or str((cell.get("model") or {}).get("path"))
        key = tuple(info.get(k) for k in ("campaign", "device", "model_stem", "config"))
        label = labels.get(key)
        table.add_row(
            *first,
            styled(model, (f" ≈{label}" if label else "", "dim")),
            (cell.get("precision") or {}).get("name") or "fp32",
            *([str(_batch(cell))] if sweep else []),
            _count(met.get("params")),
            _num(met.get("flops"), ",.1f", 1e-6),
            *([str(lat.get("level") or "-")] if mixed else []),
            _num(lat.get("latency_ms_p50"), ".3f"),
            _pm(lat.get("latency_ms_p50_ci95_rel")),
            _pm(lat.get("latency_ms_p50_rerun95_rel")),
            _num(lat.get("processes"), "d"),
            _num(lat.get("latency_ms_p99"), ".3f"),
            *([_num((cell.get("scenario") or {}).get("deadline_miss_pct"), ".3g")] if scheduled else []),
            _num(lat.get("throughput_sps"), ",.0f"),
            _num(mem.get("rss_mib_peak"), ".1f"),
            *(_power_cells(cell) if power else []),
            _agreement(cell),
            _num((cell.get("accuracy") or {}).get("top1"), ".1f", 100.0),
            verdict_text(cell, full=False),
        )
    level = f" ({next(iter(levels))}: what is timed)" if len(levels) == 1 else ""
    table.caption = (f"p50{level}: median of session medians over fresh processes; CI95: its 95 % interval "
                     "(with the spread between earlier campaigns of the cell, once there are 2); "
                     "re-run: where a re-run's p50 should land (95 %); ≈X: not significantly different "
                     "from the other models marked ≈X" + (f" ({legend})" if legend else "") + "; "
                     "agree: top-1 agreement of the device's outputs with the fp32 model on the host "
                     "(* random weights: noise decides it); acc: top-1 accuracy on the model's dataset, "
                     "on the device"
                     + ("; W mean: mean power over the load window; mJ/inf: energy per inference "
                        "(external or on-board meter, see the cell's power block)" if power else "")
                     + (f"; {power_legend(cells)}" if power and power_legend(cells) else ""))
    table.caption_justify = "left"
    return table


def profile_table(cell: dict, top: int = 10) -> Table | None:
    """The cell's per-layer profile (``host bench --profile``): its ``top`` layers by median
    kernel time, with op type and share; None when the cell has no profile."""
    prof = cell.get("profile") or {}
    if not prof.get("top"):
        return None
    info = cell.get("cell") or {}
    table = PlainTable(title=f"layers of {info.get('model_stem')} ({info.get('config')}) "
                        f"(top {min(top, len(prof['top']))} of {prof.get('layers')})", title_justify="left")
    for name, justify in [("node", "left"), ("op", "left"), ("median µs", "right"), ("share %", "right"),
                          ("calls", "right")]:
        table.add_column(name, justify=justify)
    for row in prof["top"][:top]:
        table.add_row(str(row["node"]), str(row["op"]), f"{row['median_us']:,.1f}",
                      f"{row['share'] * 100:.1f}", str(row["calls"]))
    table.caption = ("median kernel time per node in one untimed process with the profiler on "
                     "(it slows every call)")
    table.caption_justify = "left"
    return table


def compare_table(result: dict, title: str | None = None) -> Table:
    """``host compare`` rows: p50 in A and B, ratio B/A with its 95 % CI, change."""
    table = PlainTable(title=title, title_justify="left")
    for name, justify in [("device", "left"), ("model", "left"), ("config", "left"), ("p50 A ms", "right"),
                          ("p50 B ms", "right"), ("B/A", "right"), ("CI95", "right"), ("change", "left")]:
        table.add_column(name, justify=justify, no_wrap=True)
    for row in result["rows"]:
        ci = row["ci95"]
        change = styled(row["change"], (" REGRESSION" if row["regression"] else "", "red"))
        table.add_row(row["device"], row["model"], row["config"], _num(row["p50_ms_a"], ".3f"),
                      _num(row["p50_ms_b"], ".3f"), _num(row["ratio"], ".3f"),
                      f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "-", change)
    return table


def metrics_table(rows: list[tuple[str, dict]]) -> Table:
    """Static model metrics: one row per (name, metrics dict)."""
    table = PlainTable()
    for name, justify in [("model", "left"), ("params", "right"), ("density", "right"), ("MFLOPs", "right"),
                          ("CDL", "right"), ("footprint MiB", "right"), ("precision", "left"),
                          ("inputs", "left")]:
        table.add_column(name, justify=justify, no_wrap=(name == "model"))
    notes = []
    for name, met in rows:
        if "error" in met:
            table.add_row(name, "-", "-", "-", "-", "-", "-", plain("error", "red"))
            notes.append(f"{name}: {met['error']['message']}")
            continue
        if met.get("macs_reason"):
            notes.append(f"{name}: MACs unknown: {met['macs_reason']}")
        inputs = ", ".join(
            f"{i['name']}:{'x'.join(str(d) for d in i['shape'])}" for i in met.get("inputs", [])
        )
        table.add_row(
            name,
            _num(met.get("params"), ","),
            _num(met.get("density"), ".3f"),
            _num(met.get("flops"), ",.1f", 1e-6),
            _num(met.get("cdl"), "d"),
            _num(met.get("footprint_bytes"), ".2f", 1 / 2**20),
            met.get("precision") or "-",
            inputs,
        )
    if notes:
        table.caption = "\n".join(notes)
        table.caption_justify = "left"
    return table


def human_bytes(n: int | None) -> str:
    """``1536`` -> ``1.5 KiB``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def print_json(obj) -> None:
    """JSON to stdout (strip private ``_`` keys at the top level of dicts in lists)."""
    def clean(x):
        if isinstance(x, dict):
            return {k: v for k, v in x.items() if not str(k).startswith("_")}
        return x

    if isinstance(obj, list):
        obj = [clean(x) for x in obj]
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def console(stderr: bool = False) -> Console:
    """A console that prints strings as text, never as markup (style with :func:`styled`); 160
    columns when not a terminal (pipes, CI logs) instead of rich's 80."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, width=width, markup=False)
