"""The timeout and Ctrl-C scenarios of ``host bench``, repeated from cold (run by hand).

    .venv/bin/python bench/fault_repeat.py [--repeat 10] [--load]

Each repeat runs, in a fresh pytest process, the two end-to-end tests that once failed on fresh
installs (``tests/test_lab.py``: a hung runner on a loopback SSH board must come back as
``timeout`` with nothing left on the board; Ctrl-C of ``host bench`` must leave a campaign that
resumes and no runner behind). Every repeat gets an empty ``PYTHONPYCACHEPREFIX`` folder, so
no module of the host, the runners or the libraries has compiled bytecode: every import is
cold, as on a first run. ``--load`` keeps every core busy meanwhile.

Prints one line per repeat and the tally; writes ``bench/out/fault_repeat.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/test_lab.py::test_remote_timeout_kills_the_runner_and_crashes_are_classified",
         "tests/test_lab.py::test_ctrl_c_leaves_a_consistent_campaign_that_resumes"]


def one_repeat() -> dict:
    with tempfile.TemporaryDirectory(prefix="eg-pycache-") as cache:
        env = dict(os.environ, PYTHONPYCACHEPREFIX=cache)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        last = (proc.stdout.strip().splitlines() or [""])[-1]
        return {"rc": proc.returncode, "summary": last, "wall_s": round(time.monotonic() - start, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--load", action="store_true", help="one busy process per CPU meanwhile")
    args = ap.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 1)] if args.load else []
    runs = []
    try:
        for i in range(1, args.repeat + 1):
            run = one_repeat()
            runs.append(run)
            print(f"{i:3d}  rc={run['rc']}  {run['wall_s']:6.1f} s  {run['summary']}", flush=True)
    finally:
        for proc in busy:
            proc.kill()
    ok = sum(r["rc"] == 0 for r in runs)
    print(f"{ok}/{len(runs)} repeats passed both tests ({'loaded' if args.load else 'idle'}, cold bytecode)")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "fault_repeat.json").write_text(json.dumps({"load": args.load, "runs": runs}, indent=1))
    return 0 if ok == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
