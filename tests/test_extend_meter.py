"""README "Adding a meter" holds: a throwaway serial meter added as one module works everywhere.

In a copy of the repository (``git ls-files``), the test writes ``host/power/meters/toyline.py`` (a
line-protocol meter: ``P?`` -> ``P=<W>,U=<V>,I=<A>``), regenerates docs/power.md as the README says,
and runs the copy's own ``python -m host meter ...`` against a pseudo-terminal emulator of that
protocol: ``meter read`` and ``meter log`` read its real frames, ``--meter``'s help and ``meter list``
name it, and the files that changed are exactly the ones the README's section lists.
"""

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.meter_emu import Profile, PtyEmulator

ROOT = Path(__file__).resolve().parent.parent
MODULE = "toyline"
NAME = "toyline1"

DRIVER = '''"""Toy line meter (a throwaway of tests/test_extend_meter.py): ``P?`` -> ``P=<W>,U=<V>,I=<A>``."""

from __future__ import annotations

from host.errors import MeterProtocolError
from host.power.meters._serial import SerialMeter
from host.power.meters.base import MeterInfo, Reading


class ToyLine(SerialMeter):
    """A line-protocol USB-serial meter.

    Raises (from :meth:`read`): MeterConnectionError, MeterTimeoutError, MeterProtocolError.
    """

    INFO = MeterInfo(names=("toyline1",), link="USB-serial, ASCII lines", scope="`board-input`",
                     interval="0.1 s")
    label = "toy line meter"
    update_interval_s = 0.1

    def __init__(self, port=None, *, name: str = "", timeout_s: float = 1.0, baudrate: int = 9600,
                 **options):
        self._check_options(options, ("timeout_s", "baudrate"))
        super().__init__(port, name=name, timeout_s=timeout_s, baudrate=baudrate)

    def read(self) -> Reading:
        self._require_open()
        self._flush_if_dirty()
        self._send("P?")
        line = self._read_line("a P=<W>,U=<V>,I=<A> line")
        try:
            fields = dict(item.split("=", 1) for item in line.split(","))
            return Reading(power_w=float(fields["P"]), voltage_v=float(fields["U"]),
                           current_a=float(fields["I"]))
        except (KeyError, ValueError):
            self._dirty = True
            raise MeterProtocolError(f"toy line meter: expected P=..,U=..,I=.., received {line!r}") from None
'''


class ToyLineEmulator(PtyEmulator):
    """The throwaway meter's protocol on a pty: one ``P=..,U=..,I=..`` line per ``P?``, at 5 V;
    the watts of the n-th request (from 1) are ``watts(n)``."""

    def __init__(self, watts):
        super().__init__(Profile(volts=5.0))
        self.watts = watts

    def _on_data(self, data: bytes) -> None:
        for line in self._lines(data):
            if line == "P?":
                w = self.watts(len(self.requests))
                self._emit(f"P={w:.3f},U=5.000,I={w / 5:.4f}\r\n".encode())


def listed_files(readme: str) -> set:
    """The files README's "Adding a meter" lists (its ``- `path` —`` items), ``<module>`` filled in."""
    section = re.search(r"^## Adding a meter\n(.*?)^## ", readme, re.S | re.M)
    assert section, 'README.md has no "## Adding a meter" section'
    paths = re.findall(r"^- `([^`]+)` —", section.group(1), re.M)
    assert paths, 'README "Adding a meter" lists no files (as "- `path` — what")'
    return {p.replace("<module>", MODULE) for p in paths}


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The repository's files as git sees them (tracked, and new ones not ignored), copied."""
    dest = tmp_path_factory.mktemp("repo")
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, tracked.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _run(copy: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(copy), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def extended(copy):
    """The copy after the README's steps; yields (copy, files changed)."""
    before = _snapshot(copy)
    (copy / "host/power/meters" / f"{MODULE}.py").write_text(DRIVER, encoding="utf-8")
    wrote = _run(copy, "tests/test_meter_registry.py", "--write")
    assert wrote.returncode == 0, wrote.stderr
    after = _snapshot(copy)
    changed = {rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel)}
    return copy, changed


def test_the_throwaway_changes_exactly_the_files_the_readme_lists(extended):
    _, changed = extended
    assert changed == listed_files((ROOT / "README.md").read_text(encoding="utf-8"))


def test_help_list_and_docs_name_the_throwaway(extended):
    copy, _ = extended
    helped = _run(copy, "-m", "host", "meter", "read", "--help")
    assert helped.returncode == 0, helped.stderr
    assert NAME in helped.stdout
    listed = _run(copy, "-m", "host", "meter", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert NAME in json.loads(listed.stdout)["meters"]
    assert f"| `{NAME}` | `{MODULE}.py` | USB-serial, ASCII lines |" in (copy / "docs/power.md").read_text()
    checked = _run(copy, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
                   "tests/test_meter_registry.py")
    assert checked.returncode == 0, checked.stdout[-3000:]


def test_meter_read_reads_a_real_frame(extended):
    copy, _ = extended
    with ToyLineEmulator(lambda n: 2.5) as emu:
        got = _run(copy, "-m", "host", "meter", "read", "--meter", NAME, "--port", emu.port, "--json")
        assert got.returncode == 0, got.stderr
        doc = json.loads(got.stdout)
        assert emu.requests == ["P?"]
    assert (doc["meter"], doc["power_w"], doc["voltage_v"], doc["current_a"]) == (NAME, 2.5, 5.0, 0.5)
    assert doc["port"] == emu.port and doc["scope"] == "board-input"


def test_meter_log_streams_its_frames_to_csv(extended, tmp_path):
    copy, _ = extended
    out = tmp_path / "toy.power.csv"
    with ToyLineEmulator(lambda n: 1.0 if n <= 2 else 4.0) as emu:  # a step after two frames
        got = _run(copy, "-m", "host", "meter", "log", "--meter", NAME, "--port", emu.port,
                   "--seconds", "1.5", "--out", str(out))
        assert got.returncode == 0, got.stderr
        asked = len(emu.requests)
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    watts = [float(r["power_w"]) for r in rows]
    assert len(rows) >= 3 and asked >= len(rows)
    assert set(watts) <= {1.0, 4.0} and watts[0] == 1.0 and watts[-1] == 4.0
    assert f"{len(rows)} samples, 0 errors" in got.stdout


def test_a_second_driver_taking_the_name_is_an_error_not_a_traceback(extended):
    copy, _ = extended
    twin = copy / "host/power/meters" / f"{MODULE}_twin.py"
    twin.write_text(DRIVER.replace("class ToyLine(", "class ToyTwin("), encoding="utf-8")
    try:
        listed = _run(copy, "-m", "host", "meter", "list")
        helped = _run(copy, "-m", "host", "meter", "read", "--help")
    finally:
        twin.unlink()
    assert listed.returncode == 1 and "Traceback" not in listed.stderr
    assert f"meter name '{NAME}' of host.power.meters.{MODULE}_twin.ToyTwin: also declared by " \
           f"host.power.meters.{MODULE}.ToyLine" in listed.stderr
    assert helped.returncode == 0 and "host meter list" in helped.stdout
