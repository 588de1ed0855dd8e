"""``host report``'s across-the-stack table (:mod:`host.analysis.stack`): one table per device and
dense source model, one row per compression x runtime / code generation, each against the dense fp32
model on its own stack (expected, achieved, share: DLAS) and against the reference stack."""

from __future__ import annotations

from host.cli.render import PlainTable

CAPTION = ("expected: the compression ratio, of non-zero weights (W: unstructured), FLOPs (F: channels) and "
           "32 bits / the precision's bits (b); achieved: the stack's dense fp32 p50 / this p50 [95 %; cells "
           "one run measured interleaved: their within-campaign intervals] (share: achieved / expected); vs "
           "ref: the reference stack's dense fp32 p50 / this p50; -: no interval (fewer than 5 processes) or "
           "no ratio")

_OF = {"nonzeros": "W", "flops": "F", "bits": "b"}


def _times(value, ci=None, note: str = "") -> str:
    """``1.15x`` (with ``note``) and ``[1.02, 1.29]`` on a second line when there is an interval;
    ``-`` for None."""
    if value is None:
        return "-"
    text = f"{value:.2f}x{note}"
    return text if ci is None else f"{text}\n[{ci[0]:.2f}, {ci[1]:.2f}]"


def stack_tables(cells: list) -> list:
    """The tables (one per device and source model) for ``cells``; [] when no cell has its dense
    fp32 baseline; a group whose only row is its baseline gets none (nothing to compare)."""
    from host.analysis.stack import stack_rows

    groups: dict = {}
    for r in stack_rows(cells):
        groups.setdefault((str(r["device"]), str(r["source_model"])), []).append(r)
    return [_table(device, model, group) for (device, model), group in groups.items() if len(group) > 1]


def _table(device: str, model: str, rows: list):
    rests = {r["config_rest"] for r in rows}
    short = len(rests) == 1  # every stack has the same configuration apart from its backend: name it once
    ref = next(r for r in rows if r["stack"] == rows[0]["reference_stack"])
    title = (f"across the stack: {model} on {device}" + (f", configuration {rests.pop()}" if short else "")
             + f"; reference: {ref['short_stack'] if short else ref['stack']} dense fp32")
    table = PlainTable(title=title, caption=CAPTION)
    for col in ("compression", "stack", "p50 ms", "verdict", "expected", "achieved (share)", "vs ref"):
        table.add_column(col, justify="left" if col in ("compression", "stack", "verdict") else "right")
    for r in rows:
        base = r["pruning"] == "dense" and r["arithmetic"] == "fp32"
        of = "·".join(_OF.get(part, part) for part in r["expected_of"].split("x")) if r["expected_of"] else ""
        expected = "-" if r["expected"] is None else f"{r['expected']:.1f}x {of}"
        share = "" if r["share"] is None else f" ({100 * r['share']:.0f}%)"
        table.add_row(f"{r['pruning']} {r['precision']}", r["short_stack"] if short else r["stack"],
                      "-" if r["p50_ms"] is None else f"{r['p50_ms']:.3g}", str(r["verdict"] or "-"),
                      "baseline" if base else expected,
                      "1x" if base else _times(r["achieved"], r["achieved_ci95"], share),
                      _times(r["vs_reference"], r["vs_reference_ci95"]))
    return table
