"""Rich tables for people, JSON for scripts. No measurement logic here."""

from __future__ import annotations

import json
import math
import os
import sys

from rich.console import Console
from rich.table import Table


def _num(value, fmt: str, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value * scale if scale != 1.0 else value, fmt)


def verdict_text(cell: dict) -> str:
    status = cell.get("status")
    if status == "failed":
        err = cell.get("error") or {}
        return f"[red]FAILED[/] {err.get('type', '')}"
    verdict = (cell.get("verdict") or {}).get("result", "?")
    if verdict == "VALID":
        return "[green]VALID[/]"
    reasons = "; ".join((cell.get("verdict") or {}).get("reasons") or [])
    return f"[yellow]{verdict}[/] {reasons}"


def bench_table(cells: list[dict], title: str | None = None, show_device: bool = False) -> Table:
    """Summary table: [device,] model, params, MFLOPs, p50/p99 ms, throughput, peak RSS, verdict."""
    table = Table(title=title, title_justify="left")
    if show_device:
        table.add_column("device", no_wrap=True)
    for name, justify in [("model", "left"), ("params", "right"), ("MFLOPs", "right"),
                          ("p50 ms", "right"), ("p99 ms", "right"), ("inf/s", "right"),
                          ("peak RSS MiB", "right"), ("verdict", "left")]:
        table.add_column(name, justify=justify, no_wrap=(name == "model"))
    for cell in cells:
        lat = cell.get("latency") or {}
        met = cell.get("metrics") or {}
        mem = cell.get("memory") or {}
        first = [(cell.get("cell") or {}).get("device") or "-"] if show_device else []
        table.add_row(
            *first,
            (cell.get("cell") or {}).get("model_stem") or str((cell.get("model") or {}).get("path")),
            _num(met.get("params"), ","),
            _num(met.get("flops"), ",.1f", 1e-6),
            _num(lat.get("latency_ms_p50"), ".3f"),
            _num(lat.get("latency_ms_p99"), ".3f"),
            _num(lat.get("throughput_ips"), ",.0f"),
            _num(mem.get("rss_mib_peak"), ".1f"),
            verdict_text(cell),
        )
    return table


def metrics_table(rows: list[tuple[str, dict]]) -> Table:
    """Static model metrics: one row per (name, metrics dict)."""
    table = Table()
    for name, justify in [("model", "left"), ("params", "right"), ("MFLOPs", "right"),
                          ("CDL", "right"), ("footprint MiB", "right"), ("precision", "left"),
                          ("inputs", "left")]:
        table.add_column(name, justify=justify, no_wrap=(name == "model"))
    notes = []
    for name, met in rows:
        if "error" in met:
            table.add_row(name, "-", "-", "-", "-", "-", "[red]error[/]")
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
    """A console; 160 columns when not a terminal (pipes, CI logs) instead of rich's 80."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, width=width)
