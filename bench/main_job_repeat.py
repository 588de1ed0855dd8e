"""The README's first command, run N times in a row (issue 11).

Each run: ``host bench --device local`` on the bundled examples (the README's main job),
in its own results folder. Reported: wall time per run, how many runs had every cell
VALID, and rank agreement — for every pair of runs and every pair of models whose 95 %
CIs do not overlap in both runs, whether their order flipped (target: no flips).

Targets: wall time <= 120 s; every cell VALID in >= 9 of 10 runs.

    python bench/main_job_repeat.py [--runs 10] [-- EXTRA HOST BENCH OPTIONS]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = [sys.executable, "-m", "host"]


def one_run(folder: Path, extra: list) -> tuple:
    t0 = time.monotonic()
    p = subprocess.run([*HOST, "bench", "--device", "local", "--results", str(folder), "--campaign", "r",
                        "--json", *extra], cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    cells = json.loads(p.stdout) if p.stdout.strip() else []
    return p.returncode, wall, {c["cell"]["model_stem"]: c for c in cells}


def flips(runs: list) -> tuple:
    """(ordered pairs compared, flips) over every pair of runs and models with disjoint CIs."""
    compared = flipped = 0
    for a, b in itertools.combinations(runs, 2):
        for m1, m2 in itertools.combinations(sorted(a), 2):
            ci = [r[m]["latency"].get("latency_ms_p50_ci95") for r in (a, b) for m in (m1, m2)]
            if None in ci or ci[0][1] >= ci[1][0] and ci[1][1] >= ci[0][0] \
                    or ci[2][1] >= ci[3][0] and ci[3][1] >= ci[2][0]:
                continue  # overlapping in one of the runs: no order claimed
            compared += 1
            first = a[m1]["latency"]["latency_ms_p50"] < a[m2]["latency"]["latency_ms_p50"]
            second = b[m1]["latency"]["latency_ms_p50"] < b[m2]["latency"]["latency_ms_p50"]
            flipped += first != second
    return compared, flipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("extra", nargs="*", help="extra host bench options (after --)")
    args = ap.parse_args()
    runs, walls, all_valid, reasons, exit0 = [], [], 0, [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.runs):
            code, wall, cells = one_run(Path(tmp) / f"run{k}", args.extra)
            runs.append(cells)
            walls.append(wall)
            exit0 += code == 0
            valid = all(c["status"] == "ok" for c in cells.values())
            all_valid += valid
            reasons += [f"run {k + 1} {m}: {r}" for m, c in cells.items() for r in c["verdict"]["reasons"]]
            shown = [f"{m[:16]} {c['latency']['latency_ms_p50']:.4f}"
                     f"±{(c['latency']['latency_ms_p50_ci95_rel'] or 0):.1%}"
                     f"{'' if c['status'] == 'ok' else ' INVALID'}" for m, c in sorted(cells.items())]
            print(f"run {k + 1}: exit {code}, {wall:.1f} s, " + ", ".join(shown), flush=True)
    compared, flipped = flips(runs)
    print(f"\n# {args.runs} runs: wall time median {statistics.median(walls):.1f} s (max {max(walls):.1f}); "
          f"exit 0 in {exit0}/{args.runs}; every cell VALID in {all_valid}/{args.runs}; rank flips among "
          "disjoint-CI pairs: "
          f"{flipped}/{compared}")
    for line in reasons:
        print("  " + line)
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "main_job_repeat.json").write_text(json.dumps({
        "walls_s": walls, "exit0": exit0, "all_valid": all_valid, "compared": compared, "flipped": flipped,
        "p50": [{m: c["latency"]["latency_ms_p50"] for m, c in r.items()} for r in runs]}, indent=1))


if __name__ == "__main__":
    main()
