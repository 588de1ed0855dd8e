"""Print where an installed set (``pip freeze`` on stdin) differs from requirements/lock.txt.

Usage: ``VENV/bin/pip freeze --all --exclude-editable | python scripts/lock_diff.py [requirements/lock.txt]``.
``pip`` itself (the venv's installer, never locked) is left out. One line per package:
``name: lock X -> installed Y`` (``-`` where absent). Standard library only; exit status 0 always
(a report, not a check).
"""

from __future__ import annotations

import re
import sys


def _pins(lines):
    """``{normalised name: version}`` from ``name==version`` lines; comments and options skipped."""
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def main(argv):
    path = argv[1] if len(argv) > 1 else "requirements/lock.txt"
    with open(path, encoding="utf-8") as f:
        locked = _pins(f)
    installed = _pins(sys.stdin)
    installed.pop("pip", None)
    changed = sorted(n for n in set(locked) | set(installed) if locked.get(n) != installed.get(n))
    for name in changed:
        print(f"{name}: lock {locked.get(name, '-')} -> installed {installed.get(name, '-')}")
    if not changed:
        print(f"installed versions match {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
