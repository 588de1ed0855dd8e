"""``host runtimes``: the runtimes this version knows, read from their descriptors (``runners/backends/``).

The README's Status table and docs/devices.md's runtime table are this module's output (``host
runtimes --markdown readme`` / ``devices``), kept between ``<!-- runtimes:begin -->`` and
``<!-- runtimes:end -->``; tests/test_docs_generated.py fails when they differ. After changing a
descriptor, ``python tests/test_docs_generated.py --write`` rewrites both blocks. Nothing here names
a runtime: every row comes from a descriptor.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Callable, Dict, Iterable, Optional, Tuple

import typer

from runners.backends import descriptors

BEGIN, END = "<!-- runtimes:begin -->", "<!-- runtimes:end -->"


class Block(str, Enum):
    """Which generated documentation block to print."""

    readme = "readme"
    devices = "devices"


def _code(items: Iterable[str], none: str = "—") -> str:
    shown = ", ".join(f"`{item}`" for item in items)
    return shown or none


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _table(head: Tuple[str, ...], rows: Iterable[Tuple[str, ...]]) -> str:
    lines = [_row(head), "|" + "---|" * len(head), *(_row(r) for r in rows)]
    return "\n".join(lines) + "\n"


def _what(desc) -> str:
    return desc.summary if desc.implemented else f"{desc.summary} (**not implemented**: {desc.reason})"


def status_table(descs: Optional[Dict] = None) -> str:
    """The README's Status table: one row per runtime descriptor, in name order."""
    descs = _descriptors() if descs is None else descs
    head = ("Runtime (`--backend`)", "What it is", "Device families", "Loads", "Precisions",
            "Tested here", "Verified on real hardware")
    return _table(head, ((f"`{d.name}`", _what(d), _code(d.families), _code(d.model_suffixes),
                          _code(d.precisions, "none (runs no arithmetic)"), d.tested_here or "—",
                          "; ".join(d.verified_on) or "**no**") for d in descs.values()))


def _options(desc) -> str:
    shown = (f"`{o.name}` ({o.kind.__name__}, default `{o.default!r}`)" for o in desc.options)
    return "<br>".join(shown) or "—"


def devices_table(descs: Optional[Dict] = None) -> str:
    """docs/devices.md's runtime table: what each runtime loads, serves, times and takes as options."""
    descs = _descriptors() if descs is None else descs
    head = ("Runtime (`runtime=`)", "What it is", "Families (`edgegauge_family`)", "Loads", "Precisions",
            "Latency levels (first: reported)", "Options (`-o NAME=VALUE`)", "Python modules")
    return _table(head, ((f"`{d.name}`", _what(d), _code(d.families), _code(d.model_suffixes),
                          _code(d.precisions, "none"), _code(d.latency_levels), _options(d),
                          _code(d.runtime_modules)) for d in descs.values()))


#: each generated block's generator
BLOCKS: Dict[Block, Callable[[], str]] = {Block.readme: status_table, Block.devices: devices_table}


def _descriptors() -> Dict:
    return descriptors()


def runtimes(
    markdown: Annotated[Optional[Block], typer.Option(
        help="print a documentation block instead: readme (the Status table) or devices "
        "(docs/devices.md's runtime table)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the descriptors as JSON")] = False,
):
    """List the runtimes (`--backend` values) this version knows: what each loads, the device
    families and precisions it serves, and whether it has run on real hardware."""
    from host.cli.render import console, print_json

    descs = _descriptors()
    if markdown is not None:
        typer.echo(BLOCKS[markdown](), nl=False)
    elif json_out:
        print_json([d.to_json() for d in descs.values()])
    else:
        _print_table(console(), descs)


def _print_table(out, descs: Dict) -> None:
    from rich.table import Table

    table = Table("runtime", "implemented", "families", "loads", "precisions", "options", "verified on")
    for d in descs.values():
        table.add_row(d.name, "yes" if d.implemented else f"no: {d.reason}", ", ".join(d.families),
                      ", ".join(d.model_suffixes), ", ".join(d.precisions) or "none",
                      ", ".join(o.name for o in d.options) or "—", "; ".join(d.verified_on) or "no")
    out.print(table)

