"""A machine-wide step in a real campaign (issue 27): is it reported once as the machine's, or as
every cell's own failure?

Runs the README's main job (``host bench --device local`` on the bundled examples) into a fresh
results folder and, ``--hog-after`` seconds in, starts ``--hogs`` CPU-bound processes (busy Python
loops, one per core by default) that run until the campaign ends: the whole machine slows down in
the second part of the campaign, the reference workload with it. Then, from the cells and
``campaign.json``:

* the reference workload's p50 per round and the campaign's machine-trend note;
* per cell: its trend across processes (``repetitions.spread``), which trend check failed —
  ``no_trend_across_processes`` (the cell's own) or ``machine_steady`` (the board's) — and the reason.

The goal: cells whose processes straddle the step fail ``machine_steady`` (the board moved with
them), not ``no_trend_across_processes``; the note appears once.

    python bench/machine_step.py [--hog-after 20] [--hogs 2] [-- HOST BENCH OPTIONS]
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
HOG = "import time\nwhile True:\n    pass\n"


def run(folder: Path, hog_after: float, hogs: int, extra: list) -> tuple:
    """The campaign with the hog: (exit code, wall s, hog start s, cells, stdout+stderr)."""
    env = dict(os.environ, EDGEGAUGE_STATE_DIR=str(folder / "state"))
    cmd = [sys.executable, "-m", "host", "bench", "--device", "local", "--results", str(folder),
           "--campaign", "step", "--json", *extra]
    t0 = time.monotonic()
    bench = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    procs = []
    try:
        try:
            out, err = bench.communicate(timeout=hog_after)
        except subprocess.TimeoutExpired:
            procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
            out, err = bench.communicate()
    finally:
        for p in procs:
            p.kill()
            p.wait()
    wall = time.monotonic() - t0
    cells = json.loads(out) if out.strip() else []
    return bench.returncode, wall, hog_after if procs else None, cells, err


def report(folder: Path, cells: list) -> list:
    """Lines: the reference per round, the machine-trend note, each cell's trend checks."""
    from host.campaign.reference import campaign_trends

    doc = json.loads((folder / "step" / "campaign.json").read_text())
    refs = (doc.get("reference") or {}).get("local") or []
    lines = ["reference p50 per round: " + ", ".join(f"r{r.get('round')} {r.get('latency_ms_p50', 0):.3g} ms"
                                                     for r in refs)]
    lines += [f"note: {t}" for t in campaign_trends(doc)] or ["note: no machine trend"]
    own = board = 0
    for c in cells:
        checks = (c.get("verdict") or {}).get("checks") or {}
        reasons = (c.get("verdict") or {}).get("reasons_by_check") or {}
        trend = ((c.get("repetitions") or {}).get("spread") or {}).get("time_trend_rel")
        failed = [k for k in ("no_trend_across_processes", "machine_steady") if checks.get(k) is False]
        own += "no_trend_across_processes" in failed
        board += "machine_steady" in failed
        rounds = [p.get("round") for p in (c.get("repetitions") or {}).get("processes") or []]
        lines.append(f"  {c['cell']['model_stem'][:24]:24} {c.get('status'):8} rounds {rounds} trend "
                     + (f"{trend:+.0%}" if isinstance(trend, (int, float)) else "-")
                     + f" failed: {', '.join(failed) or 'neither'}"
                     + "".join(f"\n      {k}: {reasons[k]}" for k in failed if reasons.get(k)))
    lines.append(f"cells: {len(cells)}; own trend failed: {own}; machine_steady failed: {board}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hog-after", type=float, default=20.0, help="seconds into the campaign (default 20)")
    ap.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy processes (default: cores)")
    ap.add_argument("--keep", action="store_true", help="keep the results folder (printed)")
    ap.add_argument("extra", nargs="*", help="extra host bench options (after --)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edgegauge-step-"))
    code, wall, hog, cells, err = run(tmp, args.hog_after, args.hogs, args.extra)
    print(f"exit {code}, {wall:.0f} s; {args.hogs} hogs from {hog} s" if hog is not None
          else f"exit {code}, {wall:.0f} s; the campaign ended before the hog started")
    if code not in (0, 1) or not cells:
        print(err[-3000:])
    print("\n".join(report(tmp, cells)) if cells else "no cells")
    if args.keep:
        print(f"results: {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
