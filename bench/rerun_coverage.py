"""Does a run's interval hold the next run's p50? The README's main job, run again and again (issue 27).

Runs ``host bench --device local`` on the bundled examples ``--runs`` times in a row, in each mode
of ``--modes``:

* ``fresh``: every run into its own new results folder (no history: a first campaign);
* ``calibrated``: the same, after ``host calibrate --device local`` into that folder (what a
  device's calibration buys a first campaign);
* ``shared``: every run into one results folder (campaigns r1, r2, …: later runs see the
  device's and each cell's history).

Each mode starts from an empty device history on this host (its own ``EDGEGAUGE_STATE_DIR``;
``--keep-store``: the one in the environment), so its first run is the device's first campaign
(which calibrates it briefly unless ``--no-auto-calibrate`` is passed through).

For each mode, each pair of consecutive runs and each model: does run i's 95 % CI, and its
re-run interval (``latency_ms_p50_rerun95``), contain run i+1's p50? Beside the coverage, the
widths: the median relative half-width of each interval, against the spread actually seen
(median, 90th and 95th percentile of |p50 ratio − 1| between consecutive runs: a 95 % re-run
interval that is right is about as wide as the 95th percentile, and about 2.9 × the median) — an
interval that covers by being uselessly wide is not the goal. The CI is also checked against
the model's median p50 over all runs of the mode (the long-run value a CI is for: a re-run's p50
carries its own campaign's error too, so an exact 95 % CI holds the next run's p50 only about
83 % of the time, P(|Z| < 1.96 / √2)). Also per ``latency.campaign_level.source``
(none / device / cell / cell+device).

Targets (issue 27): over >= 50 model-run pairs, re-run interval >= 95 %, CI >= 90 %. Also split by
run i's verdict (``ok`` = VALID, ``invalid`` = INVALID, which already says "would not reproduce").

    python bench/rerun_coverage.py [--runs 9] [--modes fresh,shared] [--keep-store] [-- HOST BENCH OPTIONS]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = [sys.executable, "-m", "host"]


ENV = dict(os.environ)


def bench(folder: Path, campaign: str, extra: list) -> tuple:
    """One main job into ``folder``/``campaign``: (exit code, wall s, {model stem: cell})."""
    t0 = time.monotonic()
    p = subprocess.run([*HOST, "bench", "--device", "local", "--results", str(folder), "--campaign", campaign,
                        "--json", *extra], cwd=ROOT, capture_output=True, text=True, env=ENV)
    cells = json.loads(p.stdout) if p.stdout.strip() else []
    return p.returncode, time.monotonic() - t0, {c["cell"]["model_stem"]: c for c in cells}


def calibrate(folder: Path) -> float:
    t0 = time.monotonic()
    subprocess.run([*HOST, "calibrate", "--device", "local", "--results", str(folder)], cwd=ROOT,
                   capture_output=True, text=True, check=True, env=ENV)
    return time.monotonic() - t0


def run_mode(mode: str, runs: int, tmp: Path, extra: list, keep_store: bool) -> list:
    """``runs`` main jobs in ``mode``: a list of {model stem: cell} per run."""
    if not keep_store:
        ENV["EDGEGAUGE_STATE_DIR"] = str(tmp / f"state-{mode}")
    out = []
    for k in range(runs):
        folder = tmp / mode if mode == "shared" else tmp / f"{mode}{k}"
        cal = calibrate(folder) if mode == "calibrated" else 0.0
        code, wall, cells = bench(folder, f"r{k + 1}", extra)
        out.append(cells)
        shown = ", ".join(f"{m[:14]} {c['latency']['latency_ms_p50']:.4g}"
                          f" ±{(c['latency'].get('latency_ms_p50_rerun95_rel') or 0):.0%}" for m, c in
                          sorted(cells.items()))
        print(f"{mode} run {k + 1}: exit {code}, {wall:.0f} s" + (f" (+{cal:.0f} s calibrate)" if cal else "")
              + f": {shown}", flush=True)
    return out


def pairs(runs: list) -> list:
    """One row per consecutive pair of runs and model present in both."""
    rows = []
    grand = {}
    for run in runs:
        for stem, c in run.items():
            if c["latency"].get("latency_ms_p50"):
                grand.setdefault(stem, []).append(c["latency"]["latency_ms_p50"])
    grand = {stem: statistics.median(v) for stem, v in grand.items()}
    for i, (a, b) in enumerate(zip(runs, runs[1:])):
        for stem in sorted(set(a) & set(b)):
            la, lb = a[stem]["latency"], b[stem]["latency"]
            if not la.get("latency_ms_p50") or not lb.get("latency_ms_p50"):
                continue
            ci, rr = la.get("latency_ms_p50_ci95"), la.get("latency_ms_p50_rerun95")
            nxt = lb["latency_ms_p50"]
            rows.append({"pair": i + 1, "model": stem, "p50": la["latency_ms_p50"], "next_p50": nxt,
                         "ci_covers": bool(ci and ci[0] <= nxt <= ci[1]),
                         "ci_covers_median": bool(ci and ci[0] <= grand[stem] <= ci[1]),
                         "rerun_covers": bool(rr and rr[0] <= nxt <= rr[1]),
                         "ci_rel": la.get("latency_ms_p50_ci95_rel"),
                         "rerun_rel": la.get("latency_ms_p50_rerun95_rel"),
                         "source": (la.get("campaign_level") or {}).get("source", "none"),
                         "status": a[stem].get("status")})
    return rows


def summary(name: str, rows: list) -> str:
    if not rows:
        return f"{name}: no pairs"
    n = len(rows)
    moved = sorted(abs(r["next_p50"] / r["p50"] - 1) for r in rows)
    p90, p95 = moved[min(n - 1, int(0.9 * n))], moved[min(n - 1, int(0.95 * n))]

    def med(key):
        vals = [r[key] for r in rows if r[key] is not None]
        return f"±{statistics.median(vals):.1%}" if vals else "-"

    rerun, ci = sum(r["rerun_covers"] for r in rows), sum(r["ci_covers"] for r in rows)
    ci_med = sum(r["ci_covers_median"] for r in rows)
    return (f"{name}: {n} pairs; re-run interval holds the next p50 in {rerun}/{n} ({rerun / n:.0%}), "
            f"CI in {ci}/{n} ({ci / n:.0%}); "
            f"CI holds the all-runs median in {ci_med}/{n} ({ci_med / n:.0%}); "
            f"widths (median half-width): re-run {med('rerun_rel')}, "
            f"CI {med('ci_rel')}; the next run moved by median {statistics.median(moved):.1%}, "
            f"90th pct {p90:.1%}, 95th pct {p95:.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--modes", default="fresh,shared")
    ap.add_argument("--keep-store", action="store_true", help="use the device history in the environment")
    ap.add_argument("extra", nargs="*", help="extra host bench options (after --)")
    args = ap.parse_args()
    report, lines = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            rows = pairs(run_mode(mode, args.runs, Path(tmp), args.extra, args.keep_store))
            report[mode] = rows
            lines.append(summary(mode, rows))
            for source in sorted({r["source"] for r in rows}):
                mine = [r for r in rows if r["source"] == source]
                lines.append("  " + summary(f"source {source}", mine))
            for status in sorted({str(r.get("status")) for r in rows}):
                mine = [r for r in rows if str(r.get("status")) == status]
                lines.append("  " + summary(f"run i's verdict {status}", mine))
            lines.append("  " + summary("pairs 1-2", [r for r in rows if r["pair"] <= 2]))
            lines.append("  " + summary("pairs 3-", [r for r in rows if r["pair"] > 2]))
    print("\n# " + "\n# ".join(lines))
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "rerun_coverage.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
