"""Reading sysfs files for the energy-counter sources (:mod:`~host.power.meters.rapl`,
:mod:`~host.power.meters.hwmon`), on this machine or on a board through ``run``.

Every path is ``root`` + the absolute sysfs path, so tests point ``root`` at a fake tree built
from the kernel's documented layout. Without ``run`` the files are read here (:func:`read_text`,
the one place a file is opened); with ``run`` (``run(command) -> stdout``, a shell on the board)
one shell command reads every file and reports per file whether ``cat`` succeeded.
"""

from __future__ import annotations

import glob
import os
import shlex
import time

from host.power.meters.base import run_on_board

#: The environment variable that points the automatic local power sources (:mod:`host.power.local`) at
#: another sysfs root: a fake tree in tests. Its own variable, so the runners' manifest (which reads
#: ``EDGEGAUGE_SYSFS_ROOT``) still describes the real machine.
ROOT_ENV = "EDGEGAUGE_POWER_SYSFS_ROOT"


def sysfs(root: str, path: str) -> str:
    """``root`` + absolute ``path`` (``root`` "/" leaves it unchanged)."""
    return str(root).rstrip("/") + path


def read_text(path: str) -> str:
    """The stripped contents of one file on this machine.

    Raises:
        OSError: as ``open`` does (PermissionError for a root-only file read by a user).
    """
    with open(path) as fh:
        return fh.read().strip()


def read_files(root: str, patterns: list, *, run=None, label: str) -> dict:
    """``{path: (ok, text)}`` for every existing file matching the glob ``patterns`` (absolute sysfs
    paths, ``*`` allowed) under ``root``; the keys are :func:`sysfs` paths (``root`` in front). ``ok``
    False and ``text`` the error (``Permission denied``, ...) when the file exists but cannot be
    read. Files that do not exist are not in the result.

    Raises:
        MeterConnectionError: ``run`` failed (transport or OS error).
    """
    found: dict = {}
    prefix = str(root).rstrip("/")
    if run is None:
        for pattern in patterns:
            for path in sorted(glob.glob(glob.escape(prefix) + pattern)):
                if not os.path.isfile(path):
                    continue
                try:
                    found[path] = (True, read_text(path))
                except OSError as exc:
                    found[path] = (False, exc.strerror or str(exc))
        return found
    # the patterns are globbed by the board's shell: quote everything but the glob characters
    words = " ".join((shlex.quote(prefix) if prefix else "") + _quote_glob(p) for p in patterns)
    command = (f'for f in {words}; do [ -f "$f" ] || continue; if v=$(cat "$f" 2>&1); '
               f'then printf \'ok\\t%s\\t%s\\n\' "$f" "$v"; else printf \'err\\t%s\\t%s\\n\' "$f" "$v"; fi; '
               f'done; true')
    for line in run_on_board(run, command, label).splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3 and parts[0] in ("ok", "err"):
            text = parts[2].strip()
            if parts[0] == "err":  # "cat: <path>: Permission denied" -> "Permission denied"
                text = text.rpartition(": ")[2] or text
            found[parts[1]] = (parts[0] == "ok", text)
    return found


def _quote_glob(pattern: str) -> str:
    """``pattern`` quoted for sh with ``*`` left outside the quotes, so the shell still globs it."""
    return "*".join(shlex.quote(part) if part else "" for part in pattern.split("*"))


class Spacing:
    """Keeps reads of an energy counter at least ``min_s`` apart on the real monotonic clock: a read
    right after the previous one (``host meter read`` just after ``open``) would divide a counter
    step or none by microseconds. The sampler paces reads at the update interval, so there it never
    waits."""

    def __init__(self, min_s: float):
        self.min_s = min_s
        self._at: float | None = None

    def wait(self) -> None:
        """Sleep until ``min_s`` has passed since the previous call (not on the first)."""
        now = time.monotonic()
        if self._at is not None and now - self._at < self.min_s:
            time.sleep(self.min_s - (now - self._at))
        self._at = time.monotonic()


def integer(path: str, text: str, *, what: str) -> int:
    """The non-negative decimal integer a sysfs counter file holds.

    Raises:
        ValueError: anything else (the message names the file, ``what`` it is and its contents).
    """
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{path}: expected {what} as a non-negative integer, got {text[:60]!r}")
    return int(text)


__all__ = ["ROOT_ENV", "Spacing", "integer", "read_files", "read_text", "sysfs"]
