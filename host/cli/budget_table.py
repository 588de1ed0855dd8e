"""The budget table ``host bench`` and ``host report`` print by default: one row per cell, the
budget statistic with its 95 % interval, one mark (✓ ? ✗) per budget judged by
:func:`host.analysis.budgets.judge`, memory, power, accuracy and the verdict; each cell's reasons
wrapped below its row. :class:`TableView` chooses it or, ``--wide``, every figure
(:func:`host.cli.render.bench_table`). Text, never markup (see :mod:`host.cli.render`)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from host.cli.render import (  # the wide table's cell formats
    _agreement,
    _batch,
    _count,
    _num,
    _pm,
    bench_table,
    plain,
    power_legend,
    styled,
    verdict_notes,
    verdict_text,
)

#: the rule of :mod:`host.analysis.budgets` in one sentence, the budget table's caption
BUDGET_RULE = ("meets when the upper end of the statistic's 95 % interval is within the budget (for the "
               "accuracy floor: its lower end), uncertain when the interval straddles it (or the latency "
               "has no interval or would not reproduce: INVALID), misses otherwise; no meter: power was "
               "not measured")
_MARK_STYLE = {"meets": "green", "uncertain": "yellow", "misses": "red", "no meter": "dim",
               "not measured": ""}


def sig(value: float, digits: int = 3) -> str:
    """``value`` rounded to ``digits`` significant digits, never in exponent form (1690, not
    1.69e+03; 0.000123 stays as it is)."""
    text = f"{value:.{digits}g}"
    if "e+" in text:
        return f"{float(text):.0f}"
    return text


def quantity(value, unit: str, digits: int = 3) -> str:
    """``value`` with its unit in ``digits`` significant digits; milliseconds below 1 ms in µs."""
    if value is None:
        return "-"
    if unit == "ms" and abs(value) < 1:
        return f"{sig(value * 1000, digits)} µs"
    return sig(value, digits) + (f" {unit}" if unit else "")


def with_interval(value, interval, unit: str) -> str:
    """``17.8 (14.2–24.3) µs``: a value and its 95 % interval, one unit (µs below 1 ms)."""
    if value is None:
        return "-"
    if not interval:
        return quantity(value, unit)
    scale, unit = (1000.0, "µs") if unit == "ms" and abs(value) < 1 else (1.0, unit)
    lo, hi = (x * scale for x in interval)
    return f"{sig(value * scale)} ({sig(lo)}–{sig(hi)})" + (f" {unit}" if unit else "")


def budget_words(budgets) -> str:
    """The budgets in words: ``p99 ≤ 16.67 ms (60 fps), peak RSS (process) ≤ 100 MiB, …``."""
    parts = []
    limit = budgets.latency_limit_ms
    if limit is not None:
        fps = f" ({budgets.fps:g} fps)" if budgets.fps and abs(1000 / budgets.fps - limit) < 1e-9 else ""
        parts.append(f"{budgets.statistic} ≤ {limit:.4g} ms{fps}")
    if budgets.memory_mib is not None:
        parts.append(f"peak RSS ({budgets.memory_scope}) ≤ {budgets.memory_mib:g} MiB")
    if budgets.power_w is not None:
        parts.append(f"power ≤ {budgets.power_w:g} W")
    if budgets.energy_mj is not None:
        parts.append(f"energy ≤ {budgets.energy_mj:g} mJ/inference")
    if budgets.accuracy_min is not None:
        parts.append(f"top-1 ≥ {budgets.accuracy_min * 100:g} %")
    return ", ".join(parts) or "none"


def _marked(check, text: str) -> Text:
    """``✓ text``: the check's mark (styled) before the figure; ``no meter`` alone; the figure
    alone when the budget was not judged (a failed cell)."""
    if check is None or check.verdict == "not measured":
        return plain(text)
    if check.verdict == "no meter":
        return plain("no meter", "dim")
    return styled((check.mark, _MARK_STYLE[check.verdict]), f" {text}")


class _Row:
    """One cell as the budget table sees it: the cell, its judgement and each check by budget."""

    def __init__(self, cell: dict, judgement, budgets):
        self.cell, self.judgement, self.budgets = cell, judgement, budgets
        self.checks = {c.budget: c for c in judgement.checks}
        self.lat = cell.get("latency") or {}
        self.info = cell.get("cell") or {}


def _latency_cell(r: _Row) -> Text:
    stat = f"latency_ms_{r.budgets.statistic}"
    ci = r.lat.get(f"{stat}_ci95")
    return _marked(r.checks.get("latency"), with_interval(r.lat.get(stat), ci if ci else None, "ms"))


def _memory_cell(r: _Row) -> Text:
    check = r.checks.get("memory")
    if check is not None and check.value is not None:
        return _marked(check, f"{check.value:.1f} MiB")
    mem = r.cell.get("memory") or {}
    peak, before = mem.get("rss_mib_peak"), mem.get("rss_mib_before_session")
    if r.budgets.memory_scope == "model" and peak is not None and before is not None:
        peak = max(peak - before, 0.0)
    return _marked(check, "-" if peak is None else f"{peak:.1f} MiB")


def _power_cell(r: _Row) -> Text:
    pw = r.cell.get("power") if isinstance(r.cell.get("power"), dict) else {}
    if pw.get("no_source") and r.cell.get("status") != "failed":  # the local machine has nothing to read
        return plain("no source", "dim")
    if not pw or not pw.get("meter"):
        return plain("-" if r.cell.get("status") == "failed" else "no meter", "dim")
    watts, mj = pw.get("power_w_mean"), pw.get("energy_mj_per_inference")
    own = "†" if pw.get("measures") and watts is not None else ""  # an on-host counter: not wall power
    parts = [_marked(r.checks.get("power"), "-" if watts is None else f"{watts:.2f} W{own}"),
             _marked(r.checks.get("energy"), "-" if mj is None else f"{sig(mj)} mJ")]
    return Text(" ").join(parts)


def _accuracy_cell(r: _Row) -> Text:
    top1 = (r.cell.get("accuracy") or {}).get("top1")
    return _marked(r.checks.get("accuracy"), "-" if top1 is None else f"{top1 * 100:.1f} %")


def deadline_misses(cell: dict) -> str:
    """A scheduled scenario's deadline misses as a share of its slots (``scenario.deadline_miss_pct``,
    2 significant digits, never exponent form), "-" for other cells."""
    pct = (cell.get("scenario") or {}).get("deadline_miss_pct")
    return "-" if pct is None else sig(pct, 2)


def load_text(cell: dict) -> str:
    """An offline cell's samples/s and a server cell's QPS (the peak found, else the run's achieved
    QPS; "✗" when the run missed its bound), with the streams: ``412/s ×2``, ``36 qps ×2``; "-" for
    other cells. 3 significant digits."""
    sc = cell.get("scenario") or {}
    streams = f" ×{sc.get('streams')}" if sc.get("streams") else ""
    if sc.get("throughput_sps") is not None:
        return f"{sig(sc['throughput_sps'], 3)}/s{streams}"
    qps = sc.get("qps_peak") if sc.get("qps_peak") is not None else sc.get("qps_achieved")
    if qps is None:
        return "-"
    return f"{sig(qps, 3)} qps{streams}" + ("" if sc.get("met") else " ✗")


def _verdict_cell(r: _Row) -> Text:
    if r.cell.get("status") == "failed":
        return styled(("FAILED", "red"))
    return plain(r.judgement.verdict, _MARK_STYLE[r.judgement.verdict])


def _status_cell(r: _Row) -> Text:
    return verdict_text(r.cell, full=False)


#: the budget table's columns by name (``--columns``): (header, justify, cell), header may use
#: ``{stat}`` (the latency statistic) and ``{scope}`` (the memory scope)
TABLE_COLUMNS = {
    "campaign": ("campaign", "left", lambda r: plain(r.info.get("campaign") or "-")),
    "device": ("device", "left", lambda r: plain(r.info.get("device") or "-")),
    "model": ("model", "left", lambda r: plain(r.info.get("model_stem")
                                               or str((r.cell.get("model") or {}).get("path")))),
    "precision": ("prec", "left", lambda r: plain((r.cell.get("precision") or {}).get("name") or "fp32")),
    "batch": ("batch", "right", lambda r: plain(str(_batch(r.cell)))),
    "config": ("config", "left", lambda r: plain(r.info.get("config") or "-")),
    "params": ("params", "right", lambda r: plain(_count((r.cell.get("metrics") or {}).get("params")))),
    "mflops": ("MFLOPs", "right",
               lambda r: plain(_num((r.cell.get("metrics") or {}).get("flops"), ",.1f", 1e-6))),
    "level": ("level", "left", lambda r: plain(str(r.lat.get("level") or "-"))),
    "latency": ("{stat} (95 % CI)", "right", _latency_cell),
    "p50": ("p50", "right", lambda r: plain(quantity(r.lat.get("latency_ms_p50"), "ms"))),
    "ci95": ("CI95 %", "right", lambda r: plain(_pm(r.lat.get("latency_ms_p50_ci95_rel")))),
    "rerun": ("re-run %", "right", lambda r: plain(_pm(r.lat.get("latency_ms_p50_rerun95_rel")))),
    "processes": ("proc", "right", lambda r: plain(_num(r.lat.get("processes"), "d"))),
    "p99": ("p99", "right", lambda r: plain(quantity(r.lat.get("latency_ms_p99"), "ms"))),
    "misses": ("miss %", "right", lambda r: plain(deadline_misses(r.cell))),
    "load": ("load", "right", lambda r: plain(load_text(r.cell))),
    "samples_s": ("samples/s", "right", lambda r: plain(_num(r.lat.get("throughput_sps"), ",.0f"))),
    "memory": ("{scope} RSS", "right", _memory_cell),
    "power": ("power", "left", _power_cell),
    "agree": ("agree %", "right", lambda r: plain(_agreement(r.cell))),
    "accuracy": ("top-1", "right", _accuracy_cell),
    "verdict": ("verdict", "left", _verdict_cell),
    "status": ("measurement", "left", _status_cell),
}
#: columns folded (wrapped within the cell) when the table is wider than the terminal
_FOLDABLE = ("campaign", "device", "model", "config")


def default_columns(cells: list[dict]) -> list[str]:
    """The verdict-first columns: [campaign,] [device,] model, precision, [batch,] the budget
    statistic with its interval, [deadline misses,] [load,] memory, power · energy, accuracy, verdict
    (campaign, device and batch only when the cells have several; misses when a cell ran a scheduled
    scenario; load, :func:`load_text`, when one ran offline or server)."""
    several = {k: len({(c.get("cell") or {}).get(k) for c in cells}) > 1 for k in ("campaign", "device")}
    sweep = len({_batch(c) for c in cells}) > 1
    scheduled = any((c.get("scenario") or {}).get("deadline_miss_pct") is not None for c in cells)
    loaded = any((c.get("scenario") or {}).get("name") in ("offline", "server") for c in cells)
    return [*(["campaign"] if several["campaign"] else []), *(["device"] if several["device"] else []),
            "model", "precision", *(["batch"] if sweep else []), "latency",
            *(["misses"] if scheduled else []), *(["load"] if loaded else []), "memory", "power", "accuracy",
            "verdict"]


def parse_columns(text: str | None) -> list[str] | None:
    """``--columns a,b,c`` as a list of names (None: the default columns).

    Raises:
        ValueError: an unknown or no name; the message lists the names there are.
    """
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in TABLE_COLUMNS]
    if unknown or not names:
        given = ", ".join(map(repr, unknown)) or "(none given)"
        raise ValueError(f"unknown column {given}; the columns are: {', '.join(TABLE_COLUMNS)}")
    return names


def _cell_notes(r: _Row) -> list[str]:
    """What stands below a row: each budget the cell does not meet, with why, then the
    measurement's own reasons and warnings (:func:`verdict_notes` without the model name)."""
    stem = (r.info.get("model_stem") or "?") + ": "
    notes = [n[len(stem):] if n.startswith(stem) else n for n in verdict_notes([r.cell])]
    return [*r.judgement.reasons(), *notes]


class BudgetTable:
    """The verdict-first table of ``host bench`` and ``host report``: one row per cell, the
    columns of ``columns`` (:data:`TABLE_COLUMNS`), each row's reasons wrapped below it across
    the whole width (never squeezed into a column), the budgets in the title and the rule as the
    caption. A rich renderable; every column but campaign, device, model and config is as wide as
    its widest cell, those fold when the terminal is narrower than the table."""

    def __init__(self, cells: list[dict], budgets, title: str | None = None,
                 columns: list[str] | None = None):
        from host.analysis.budgets import judge

        self.budgets, self.title = budgets, title
        self.columns = columns or default_columns(cells)
        self.rows = [_Row(c, judge(c, budgets), budgets) for c in cells]

    def _headers(self) -> list[str]:
        scope = "peak" if self.budgets.memory_scope == "process" else "model"
        return [TABLE_COLUMNS[n][0].format(stat=self.budgets.statistic, scope=scope) for n in self.columns]

    def _widths(self, grid: list[list[Text]], max_width: int) -> list[int]:
        widths = [max(t.cell_len for t in column) for column in zip(*grid)]
        excess = sum(widths) + len(widths) - max_width  # one space after each column
        foldable = [i for i, n in enumerate(self.columns) if n in _FOLDABLE]
        while excess > 0 and foldable:
            i = max(foldable, key=lambda j: widths[j])
            if widths[i] <= 8:
                break
            widths[i] -= 1
            excess -= 1
        return widths

    def _line(self, texts: list[Text], widths: list[int], header: bool = False) -> Table:
        grid = Table(box=None, show_header=False, padding=(0, 1, 0, 0), collapse_padding=True, expand=False)
        for name, width in zip(self.columns, widths):
            grid.add_column(justify=TABLE_COLUMNS[name][1], width=width, overflow="fold",
                            no_wrap=name not in _FOLDABLE, style="bold" if header else "")
        grid.add_row(*texts)
        return grid

    def __rich_console__(self, console, options):
        from rich.padding import Padding

        headers = [plain(h) for h in self._headers()]
        body = [[TABLE_COLUMNS[n][2](r) for n in self.columns] for r in self.rows]
        widths = self._widths([headers, *body], options.max_width)
        if self.title:
            yield plain(self.title, "table.title")
        yield plain(f"budgets: {budget_words(self.budgets)}", "table.title")
        yield self._line(headers, widths, header=True)
        yield plain("─" * min(options.max_width, sum(widths) + len(widths) - 1), "dim")
        for row, texts in zip(self.rows, body):
            yield self._line(texts, widths)
            for note in _cell_notes(row):
                yield Padding(plain(note, "dim"), (0, 0, 0, 4))
        yield plain(BUDGET_RULE, "table.caption")
        legend = power_legend([r.cell for r in self.rows]) if "power" in self.columns else ""
        if legend:
            yield plain(legend, "table.caption")


class TableView:
    """How ``host bench`` and ``host report`` show cells: the budget table (:class:`BudgetTable`,
    ``columns`` or the default ones) or, ``wide``, every measured figure (:func:`bench_table`
    with the reasons below it)."""

    def __init__(self, budgets, wide: bool = False, columns: list[str] | None = None):
        self.budgets, self.wide, self.columns = budgets, wide, columns

    def print(self, out: Console, cells: list[dict], title: str | None, *, show_device: bool = False,
              ties: dict | None = None) -> None:
        """The table of ``cells`` on ``out``, with each cell's reasons."""
        if not self.wide:
            out.print(BudgetTable(cells, self.budgets, title=title, columns=self.columns))
            return
        out.print(bench_table(cells, title=title, show_device=show_device, ties=ties))
        for line in verdict_notes(cells):
            out.print(f"  {line}", highlight=False)
