"""Harness overhead of the runner with the null backend (run by hand).

    .venv/bin/python bench/null_overhead.py [--processes 5] [--iters 1000000]
                                            [--runner-processes 5] [--runner-min-s 1.0]

Two measurements, each in several fresh processes (one process = one sample):

1. ``timed_loop``: :func:`runners.core.timed_loop` calling ``NullBackend().infer`` for a fixed
   number of iterations (after a short warm-up loop). Per process: the median, p99 and mean of
   the per-iteration latencies the harness records (two ``perf_counter_ns`` reads around a
   bound-method call), and the loop wall time per iteration ((end - start) / n, which adds the
   ``array.append``, the counter and the stop-rule checks). Also the clock floor: the median
   of back-to-back ``perf_counter_ns`` differences.
2. ``runners run``: the whole :func:`runners.core.run` via ``python -m runners run --backend
   null --out ...`` in fresh processes; the same figures from its result document
   (``latency_ms_p50``, ``latency_ms_p99``, ``duration_s / iterations``) plus process wall time.

Target: median harness latency <= 5 us per iteration. Prints a report and writes
``bench/out/null_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TARGET_MEDIAN_NS = 5_000


def _pct(sorted_vals, q):
    """Percentile by linear interpolation (numpy's default) on a sorted list."""
    if not sorted_vals:
        return None
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def child_loop(iters: int) -> dict:
    """One process's timed_loop measurement (called in a fresh interpreter)."""
    import numpy as np

    from runners.backends.null import NullBackend
    from runners.core import timed_loop

    backend = NullBackend()
    backend.load(None)
    backend.prepare({})
    infer = backend.infer
    big = 60 * 10**9
    timed_loop(infer, 10_000, 0, big)  # warm-up: caches, branch predictors, array growth code
    lat, start, end, max_hit = timed_loop(infer, iters, 0, big)
    arr = np.frombuffer(lat, dtype=np.int64).astype(np.float64)
    clock = time.perf_counter_ns
    floor = np.empty(100_000, dtype=np.int64)
    for i in range(floor.size):
        floor[i] = -clock() + clock()
    return {
        "iterations": len(lat),
        "median_ns": float(np.median(arr)),
        "p99_ns": float(np.percentile(arr, 99)),
        "mean_ns": float(arr.mean()),
        "min_ns": float(arr.min()),
        "max_ns": float(arr.max()),
        "loop_wall_per_iter_ns": (end - start) / len(lat),
        "clock_floor_median_ns": float(np.median(floor)),
        "max_hit": max_hit,
    }


def run_children(n: int, iters: int) -> list[dict]:
    out = []
    for _ in range(n):
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", "--iters", str(iters)],
            capture_output=True, text=True, cwd=ROOT, check=True,
        )
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def run_runner_cli(n: int, min_s: float, warmup_s: float) -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory(prefix="edgegauge-null-") as tmp:
        for i in range(n):
            path = os.path.join(tmp, f"null-{i}.json")
            argv = [sys.executable, "-m", "runners", "run", "--backend", "null", "--out", path,
                    "--min-s", str(min_s), "--warmup-s", str(warmup_s)]
            t0 = time.monotonic()
            proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
            wall = time.monotonic() - t0
            if proc.returncode not in (0, 3):
                raise SystemExit(f"runner failed ({proc.returncode}): {proc.stderr[-2000:]}")
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
            lat = doc["latency"]
            out.append({
                "status": doc["status"],
                "verdict": doc["verdict"]["result"],
                "iterations": lat["iterations"],
                "median_ns": lat["latency_ms_p50"] * 1e6,
                "p99_ns": lat["latency_ms_p99"] * 1e6,
                "mean_ns": lat["latency_ms_mean"] * 1e6,
                "cov": lat["cov"],
                "loop_wall_per_iter_ns": lat["duration_s"] * 1e9 / lat["iterations"],
                "process_wall_s": wall,
                "rss_delta": doc.get("memory"),
            })
    return out


def _agg(rows: list[dict], key: str) -> dict:
    vals = [r[key] for r in rows]
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def _print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"  {'proc':>4} {'iters':>10} {'median':>9} {'p99':>9} {'mean':>9} {'wall/it':>9}")
    for i, r in enumerate(rows):
        print(f"  {i:>4} {r['iterations']:>10} {r['median_ns']:>7.0f}ns {r['p99_ns']:>7.0f}ns "
              f"{r['mean_ns']:>7.0f}ns {r['loop_wall_per_iter_ns']:>7.0f}ns")
    for key in ("median_ns", "p99_ns", "loop_wall_per_iter_ns"):
        a = _agg(rows, key)
        print(f"  {key:<22} median of processes {a['median']:7.0f} ns  "
              f"(spread {a['min']:.0f} .. {a['max']:.0f} ns)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=5, help="fresh processes for timed_loop [5]")
    ap.add_argument("--iters", type=int, default=1_000_000, help="timed_loop iterations [1e6]")
    ap.add_argument("--runner-processes", type=int, default=5,
                    help="fresh `python -m runners run --backend null` processes [5]; 0 = skip")
    ap.add_argument("--runner-min-s", type=float, default=1.0,
                    help="--min-s of the runner processes [1.0; the runner default 5 s records "
                         "~tens of millions of samples]")
    ap.add_argument("--runner-warmup-s", type=float, default=0.2, help="--warmup-s [0.2]")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "null_overhead.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(child_loop(args.iters)))
        return 0

    loop_rows = run_children(args.processes, args.iters)
    _print_rows(f"timed_loop(NullBackend().infer), {args.iters} iterations, "
                f"{args.processes} fresh processes", loop_rows)
    floor = _agg(loop_rows, "clock_floor_median_ns")
    print(f"  clock floor (back-to-back perf_counter_ns) median {floor['median']:.0f} ns")

    cli_rows = []
    if args.runner_processes:
        cli_rows = run_runner_cli(args.runner_processes, args.runner_min_s, args.runner_warmup_s)
        _print_rows(f"python -m runners run --backend null --min-s {args.runner_min_s:g}, "
                    f"{args.runner_processes} fresh processes", cli_rows)
        print("  process wall s: " + ", ".join(f"{r['process_wall_s']:.2f}" for r in cli_rows)
              + "; verdicts: " + ", ".join(r["verdict"] for r in cli_rows))

    all_medians = [r["median_ns"] for r in loop_rows + cli_rows]
    worst = max(all_medians)
    ok = statistics.median(all_medians) <= TARGET_MEDIAN_NS and worst <= TARGET_MEDIAN_NS
    print(f"\ntarget: median <= {TARGET_MEDIAN_NS / 1000:g} us per iteration -> "
          f"{'PASS' if ok else 'MISS'} (worst process median {worst:.0f} ns)")

    import onnxruntime  # noqa: F401  (version only, for the record)

    doc = {
        "benchmark": "null_overhead",
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "loadavg_1m": os.getloadavg()[0]},
        "target_median_ns": TARGET_MEDIAN_NS,
        "pass": ok,
        "timed_loop": {"iterations": args.iters, "processes": loop_rows,
                       "median_of_medians_ns": _agg(loop_rows, "median_ns"),
                       "p99_ns": _agg(loop_rows, "p99_ns"),
                       "loop_wall_per_iter_ns": _agg(loop_rows, "loop_wall_per_iter_ns")},
        "runner_cli": {"min_s": args.runner_min_s, "warmup_s": args.runner_warmup_s,
                       "processes": cli_rows,
                       "median_of_medians_ns": _agg(cli_rows, "median_ns") if cli_rows else None,
                       "p99_ns": _agg(cli_rows, "p99_ns") if cli_rows else None,
                       "loop_wall_per_iter_ns":
                           _agg(cli_rows, "loop_wall_per_iter_ns") if cli_rows else None},
    }
    from runners.fileio import write_json_atomic

    write_json_atomic(doc, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
