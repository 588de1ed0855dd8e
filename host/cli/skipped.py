"""The reader commands' note on cell files that fail the cell schema (:mod:`host.campaign.schema`).

``report``, ``compare``, ``dataset``, ``query`` and ``advise`` load cells inside
:func:`report_skipped`: the files :func:`host.campaign.store.load_cells` skipped are counted and the
first few named on stderr, as plain text (file names are never read as rich markup), and the command
goes on with the rest.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import typer

#: How many skipped files are named; the count covers all.
SHOWN = 5


def skipped_lines(skipped: list, shown: int = SHOWN) -> list[str]:
    """``skipped N cell(s) that fail the schema:`` then ``file: field: problem`` for the first
    ``shown`` (each file once) and a hint; ``[]`` when nothing was skipped."""
    unique = list({s.path: s for s in skipped}.values())
    if not unique:
        return []
    lines = [f"skipped {len(unique)} cell(s) that fail the schema:"]
    lines += [f"  {s.line()}" for s in unique[:shown]]
    if len(unique) > shown:
        lines.append(f"  ... and {len(unique) - shown} more")
    lines.append("hint: move such a file aside, or re-run `host bench` on its campaign to re-measure it "
                 "(docs/result-schema.md)")
    return lines


@contextmanager
def report_skipped() -> Iterator[list]:
    """Collect the cells skipped by every ``load_cells`` in the block; print them on leaving it
    (also when the block raises, so the note comes before the error)."""
    from host.campaign.store import collect_skipped

    with collect_skipped() as skipped:
        try:
            yield skipped
        finally:
            for line in skipped_lines(skipped):
                typer.echo(line, err=True)
