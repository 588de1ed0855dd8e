"""The README's Status table and docs/devices.md's runtime table are what ``host runtimes --markdown``
prints from the runtime descriptors (``runners/backends/``), so they cannot drift from the code.

The reference is the committed text between ``<!-- runtimes:begin -->`` and ``<!-- runtimes:end -->``;
the test compares and never rewrites. After changing a descriptor a developer runs
``python tests/test_docs_generated.py --write`` (which rewrites both blocks) and reviews the diff.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from host.cli.main import app
from host.cli.runtimes import BEGIN, END, Block, devices_table, status_table
from runners.backends import descriptors

REPO = Path(__file__).resolve().parents[1]
FILES = {Block.readme: REPO / "README.md", Block.devices: REPO / "docs" / "devices.md"}


def committed(path: Path) -> str:
    """The block between the markers in ``path`` (fails the test when they are missing)."""
    text = path.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1 and text.index(BEGIN) < text.index(END), \
        f"{path.name}: expected one {BEGIN} … {END} block"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def printed(block: Block) -> str:
    """What ``host runtimes --markdown BLOCK`` prints."""
    result = CliRunner().invoke(app, ["runtimes", "--markdown", block.value])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("block", list(Block), ids=[b.value for b in Block])
def test_committed_block_is_what_host_runtimes_prints(block):
    path = FILES[block]
    want, have = printed(block), committed(path)
    diff = "".join(difflib.unified_diff(have.splitlines(True), want.splitlines(True),
                                        f"{path.name} (committed)", "host runtimes --markdown"))
    assert have == want, f"{path.name} differs from the descriptors; run " \
        f"`python tests/test_docs_generated.py --write` and review:\n{diff}"


def test_every_descriptor_has_its_row_and_its_facts():
    readme, devices = committed(FILES[Block.readme]), committed(FILES[Block.devices])
    for desc in descriptors().values():
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{desc.name}` |"))
        assert desc.tested_here, f"runners/backends/{desc.name}: DESCRIPTOR.tested_here is empty"
        assert desc.tested_here in row
        assert all(place in row for place in desc.verified_on) or "**no**" in row
        assert any(line.startswith(f"| `{desc.name}` |") for line in devices.splitlines())


def test_a_changed_descriptor_changes_the_tables():
    descs = descriptors()
    name = next(iter(descs))
    changed = dict(descs, **{name: dataclasses.replace(descs[name], verified_on=("a real board",),
                                                       families=("a_family",), precisions=("int4",))})
    assert "a real board" in status_table(changed) and "a real board" not in status_table(descs)
    assert "`a_family`" in devices_table(changed) and "`int4`" in devices_table(changed)


def test_host_runtimes_lists_every_descriptor_for_users():
    result = CliRunner().invoke(app, ["runtimes", "--json"])
    assert result.exit_code == 0, result.output
    assert "verified_on" in result.output
    for name in descriptors():
        assert f'"{name}"' in result.output


def write() -> None:
    """Rewrite both blocks from the descriptors (developers only; review the diff)."""
    for block, path in FILES.items():
        text = path.read_text(encoding="utf-8")
        head, rest = text.split(BEGIN, 1)
        body = status_table() if block is Block.readme else devices_table()
        path.write_text(head + BEGIN + "\n" + body + END + rest.split(END, 1)[1], encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_docs_generated.py --write")
    write()
