"""ORT runner latency vs ONNX Runtime's own profiler, same session and model (run by hand).

    .venv/bin/python bench/ort_overhead.py [MODEL.onnx] [--threads N] [--iters 300]
                                           [--warmup 30] [--processes 3] [--no-investigate]

For each of ``io_binding`` True and False, in each of several fresh processes (a subprocess
of this script), it creates ``OrtBackend({"threads": N, "profile_prefix": ...})``, loads
the model (default ``examples/models/squeezenet1_1_imagenet.onnx``, >= 1 ms here),
synthesizes inputs (``resolve_shapes`` + ``synthesize``), ``prepare``s, warms up for a
fixed count, runs :func:`runners.core.timed_loop` for a fixed count and ``close()``s to get
ORT's profile JSON. From the profile it takes the ``"cat": "Session"`` / ``"model_run"``
events (``dur`` in us), checks their count is 1 (prepare's ``session.run``) + warm-up +
timed, and keeps the last ``--iters`` ones: exactly the runs of the timed loop, in order.

Reported per mode: our mean and median (``perf_counter_ns`` around ``backend.infer()``),
the profiler's mean and median ``model_run``, the ratio ours/profiler - 1 (target <= 1 %
on the mean), and the median of the paired per-iteration difference ours_i - model_run_i.

With ``--investigate`` (default) each process also splits the gap (see :func:`investigate`):
on the 1-node ``tests/fixtures/models/identity.onnx`` it times ``backend.infer`` (I/O
binding), the bare pybind ``_sess.run_with_iobinding``, ``backend.infer`` with
``session.run`` and a profiled session, in interleaved blocks (the Python wrapper's cost,
session.run's extra cost, the fixed per-call cost); on MODEL it compares a session without
and one with the profiler (the profiler's own cost, which inflates both sides of the ratio).

Prints a report and writes ``bench/out/ort_overhead.json``.
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
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEFAULT_MODEL = os.path.join(ROOT, "examples", "models", "squeezenet1_1_imagenet.onnx")
TARGET_RATIO = 0.01
BIG_NS = 600 * 10**9


def _backend(model, threads, io_binding, profile_prefix=None):
    from runners.backends.ort import OrtBackend
    from runners.inputs import resolve_shapes, synthesize

    opts = {"threads": threads, "io_binding": io_binding}
    if profile_prefix:
        opts["profile_prefix"] = profile_prefix
    be = OrtBackend(opts)
    be.load(model)
    specs = be.inputs()
    feeds = synthesize(specs, resolve_shapes(specs, batch=1), seed=0)
    be.prepare(feeds)
    return be


def _stats_us(values_us):
    import numpy as np

    arr = np.asarray(values_us, dtype=np.float64)
    return {"mean_us": float(arr.mean()), "median_us": float(np.median(arr)),
            "p99_us": float(np.percentile(arr, 99)), "min_us": float(arr.min())}


def measure_mode(model, threads, io_binding, iters, warmup, tmpdir) -> dict:
    """One profiled session: ours vs the profiler's model_run for the timed loop only."""
    import numpy as np

    from runners.core import timed_loop

    prefix = os.path.join(tmpdir, "bind" if io_binding else "run")
    be = _backend(model, threads, io_binding, prefix)  # prepare() does one session.run
    bound = be._bound
    timed_loop(be.infer, warmup, 0, BIG_NS)
    lat, start, end, _ = timed_loop(be.infer, iters, 0, BIG_NS)
    be.close()
    with open(be.profile_path, encoding="utf-8") as fh:
        events = json.load(fh)
    size = os.path.getsize(be.profile_path)
    os.unlink(be.profile_path)
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    expected = 1 + warmup + iters
    if len(runs) != expected:
        raise SystemExit(f"expected {expected} model_run events (1 prepare + {warmup} warm-up + "
                         f"{iters} timed), found {len(runs)}")
    timed = runs[-iters:]
    prof_us = np.array([e["dur"] for e in timed], dtype=np.float64)
    ours_us = np.frombuffer(lat, dtype=np.int64) / 1000.0
    ts = np.array([e["ts"] for e in timed], dtype=np.float64)
    gaps_us = ts[1:] - (ts[:-1] + prof_us[:-1])  # time between model_runs (outside Run)
    ours = _stats_us(ours_us)
    prof = _stats_us(prof_us)
    return {
        "io_binding_requested": io_binding,
        "io_binding_used": bound,
        "iterations": iters,
        "warmup": warmup,
        "model_run_events": len(runs),
        "profile_bytes": size,
        "ours": ours,
        "profiler_model_run": prof,
        "ratio_mean": ours["mean_us"] / prof["mean_us"] - 1.0,
        "ratio_median": ours["median_us"] / prof["median_us"] - 1.0,
        "paired_diff_median_us": float(np.median(ours_us - prof_us)),
        "paired_diff_mean_us": float(np.mean(ours_us - prof_us)),
        "loop_wall_per_iter_us": (end - start) / iters / 1000.0,
        "gap_between_model_runs_median_us": float(np.median(gaps_us)),
    }


TINY_MODEL = os.path.join(ROOT, "tests", "fixtures", "models", "identity.onnx")


def _interleave(variants: dict, rounds: int, block: int, skip: int) -> dict:
    """Time each callable in blocks, rotating the order every round; per-variant samples (us)."""
    import time

    samples = {k: [] for k in variants}
    per_round = {k: [] for k in variants}
    clock = time.perf_counter_ns
    names = list(variants)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn = variants[name]
            block_vals = []
            for i in range(block):
                t0 = clock()
                fn()
                t1 = clock()
                if i >= skip:  # first calls of a block may meet the other sessions' spinners
                    block_vals.append((t1 - t0) / 1000.0)
            samples[name].extend(block_vals)
            per_round[name].append(statistics.median(block_vals))
    return samples, per_round


def investigate(model, threads, tmpdir) -> dict:
    """Split the gap: per-call costs on a 1-node model, the profiler's cost on ``model``.

    (a) On ``tests/fixtures/models/identity.onnx`` (Run itself ~1 us): ``backend.infer`` with
        I/O binding, the bare pybind ``_sess.run_with_iobinding`` (no Python wrapper, no
        try/except), ``backend.infer`` with ``session.run``, and a profiled session's
        ``backend.infer``; plus that profiled session's ours - model_run gap. The whole
        un-profiled ``infer`` here bounds the fixed per-call cost of harness + Python + pybind
        + Run set-up from above.
    (b) On ``model``: ``backend.infer`` on a session without and one with the profiler,
        interleaved; the median over rounds of the per-round relative difference.
    """
    import numpy as np

    from runners.core import timed_loop

    out = {}
    tiny = {
        "plain": _backend(TINY_MODEL, threads, True),
        "run": _backend(TINY_MODEL, threads, False),
        "prof": _backend(TINY_MODEL, threads, True, os.path.join(tmpdir, "tiny")),
    }
    sess, binding = tiny["plain"].session._sess, tiny["plain"]._binding._iobinding

    def bare():
        sess.run_with_iobinding(binding, None)

    samples, _ = _interleave({
        "infer_iobinding": tiny["plain"].infer,
        "bare_pybind_run_with_iobinding": bare,
        "infer_session_run": tiny["run"].infer,
        "infer_iobinding_profiled": tiny["prof"].infer,
    }, rounds=20, block=500, skip=50)
    tiny_res = {k: _stats_us(v) for k, v in samples.items()}
    # ours - model_run gap on the profiled tiny session, timed loop only
    n = 5000
    lat, _, _, _ = timed_loop(tiny["prof"].infer, n, 0, BIG_NS)
    tiny["prof"].close()
    with open(tiny["prof"].profile_path, encoding="utf-8") as fh:
        runs = sorted((e for e in json.load(fh)
                       if e.get("cat") == "Session" and e.get("name") == "model_run"),
                      key=lambda e: e["ts"])[-n:]
    os.unlink(tiny["prof"].profile_path)
    diff = np.frombuffer(lat, dtype=np.int64) / 1000.0 - np.array([e["dur"] for e in runs])
    med = {k: v["median_us"] for k, v in tiny_res.items()}
    out["tiny_model"] = {
        "model": os.path.relpath(TINY_MODEL, ROOT),
        "variants": tiny_res,
        "python_wrapper_cost_us": med["infer_iobinding"] - med["bare_pybind_run_with_iobinding"],
        "session_run_extra_us": med["infer_session_run"] - med["infer_iobinding"],
        "profiler_cost_us": med["infer_iobinding_profiled"] - med["infer_iobinding"],
        "profiled_gap_ours_minus_model_run_median_us": float(np.median(diff)),
    }

    plain = _backend(model, threads, True)
    profiled = _backend(model, threads, True, os.path.join(tmpdir, "inv"))
    samples, per_round = _interleave({"plain": plain.infer, "profiled": profiled.infer},
                                     rounds=16, block=12, skip=2)
    profiled.close()
    os.unlink(profiled.profile_path)
    rel = [p / q - 1.0 for p, q in zip(per_round["profiled"], per_round["plain"])]
    out["model_profiler_cost"] = {
        "plain_median_us": _stats_us(samples["plain"])["median_us"],
        "profiled_median_us": _stats_us(samples["profiled"])["median_us"],
        "relative_median_over_rounds": statistics.median(rel),
        "rounds": len(rel),
    }
    return out


def child(args) -> dict:
    import onnxruntime

    from runners.backends.ort import default_threads

    threads = args.threads or default_threads()
    modes = [True, False] if args.order == 0 else [False, True]
    out = {"threads": threads, "ort_version": onnxruntime.__version__, "modes": {}}
    with tempfile.TemporaryDirectory(prefix="edgegauge-ortprof-") as tmp:
        for mode in modes:
            out["modes"]["io_binding" if mode else "session_run"] = measure_mode(
                args.model, threads, mode, args.iters, args.warmup, tmp)
        if args.investigate:
            out["investigate"] = investigate(args.model, threads, tmp)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=DEFAULT_MODEL, help="ONNX model (>= 1 ms)")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 = all CPUs [0]")
    ap.add_argument("--iters", type=int, default=300, help="timed iterations per mode [300]")
    ap.add_argument("--warmup", type=int, default=30, help="warm-up iterations per mode [30]")
    ap.add_argument("--processes", type=int, default=3, help="fresh processes [3]")
    ap.add_argument("--investigate", action=argparse.BooleanOptionalAction, default=True,
                    help="also time wrapper/profiler/session.run variants [on]")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "ort_overhead.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--order", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.model = os.path.abspath(args.model)

    if args.child:
        print(json.dumps(child(args)))
        return 0

    procs = []
    for i in range(args.processes):
        argv_c = [sys.executable, os.path.abspath(__file__), args.model, "--child",
                  "--order", str(i % 2), "--threads", str(args.threads), "--iters",
                  str(args.iters), "--warmup", str(args.warmup),
                  "--investigate" if args.investigate else "--no-investigate"]
        proc = subprocess.run(argv_c, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        procs.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    first = procs[0]
    print(f"model {os.path.relpath(args.model, ROOT)}; ORT {first['ort_version']}; "
          f"threads {first['threads']}; {args.iters} timed + {args.warmup} warm-up iterations "
          f"per mode; {args.processes} fresh processes")
    summary = {}
    for mode in ("io_binding", "session_run"):
        print(f"\n{mode}:")
        print(f"  {'proc':>4} {'ours mean':>10} {'prof mean':>10} {'ratio':>7} "
              f"{'ours med':>9} {'prof med':>9} {'ratio':>7} {'pair d med':>10} {'gap med':>8}")
        rows = [p["modes"][mode] for p in procs]
        for i, r in enumerate(rows):
            print(f"  {i:>4} {r['ours']['mean_us']:>8.1f}us {r['profiler_model_run']['mean_us']:>8.1f}us "
                  f"{r['ratio_mean'] * 100:>6.2f}% {r['ours']['median_us']:>7.1f}us "
                  f"{r['profiler_model_run']['median_us']:>7.1f}us {r['ratio_median'] * 100:>6.2f}% "
                  f"{r['paired_diff_median_us']:>8.1f}us {r['gap_between_model_runs_median_us']:>6.1f}us")
        rm = [r["ratio_mean"] for r in rows]
        rmed = [r["ratio_median"] for r in rows]
        pd = [r["paired_diff_median_us"] for r in rows]
        summary[mode] = {
            "ratio_mean_median": statistics.median(rm), "ratio_mean_min": min(rm),
            "ratio_mean_max": max(rm), "ratio_median_median": statistics.median(rmed),
            "paired_diff_median_us": statistics.median(pd),
            "ours_mean_us_median": statistics.median(r["ours"]["mean_us"] for r in rows),
            "profiler_mean_us_median": statistics.median(
                r["profiler_model_run"]["mean_us"] for r in rows),
            "pass": statistics.median(rm) <= TARGET_RATIO,
        }
        s = summary[mode]
        print(f"  median over processes: ratio(mean) {s['ratio_mean_median'] * 100:.2f}% "
              f"(spread {s['ratio_mean_min'] * 100:.2f} .. {s['ratio_mean_max'] * 100:.2f}%), "
              f"ratio(median) {s['ratio_median_median'] * 100:.2f}%, paired diff "
              f"{s['paired_diff_median_us']:.1f} us -> target <= {TARGET_RATIO * 100:g}%: "
              f"{'PASS' if s['pass'] else 'MISS'}")

    if args.investigate:
        print("\ninvestigation (per process):")
        print(f"  {'':<4} {'tiny: infer':>11} {'bare pybind':>11} {'sess.run':>9} {'profiled':>9} "
              f"{'prof gap':>9} | {'model plain':>11} {'profiled':>10} {'prof cost':>9}")
        for i, p in enumerate(procs):
            t, m = p["investigate"]["tiny_model"], p["investigate"]["model_profiler_cost"]
            v = {k: x["median_us"] for k, x in t["variants"].items()}
            print(f"  {i:<4} {v['infer_iobinding']:>9.2f}us {v['bare_pybind_run_with_iobinding']:>9.2f}us "
                  f"{v['infer_session_run']:>7.2f}us {v['infer_iobinding_profiled']:>7.2f}us "
                  f"{t['profiled_gap_ours_minus_model_run_median_us']:>7.2f}us | "
                  f"{m['plain_median_us']:>9.1f}us {m['profiled_median_us']:>8.1f}us "
                  f"{m['relative_median_over_rounds'] * 100:>8.2f}%")
        for key, label in (("python_wrapper_cost_us", "Python wrapper + try/except (us)"),
                           ("session_run_extra_us", "session.run - io_binding (us)"),
                           ("profiler_cost_us", "profiler cost, 1-node model (us)")):
            vals = [p["investigate"]["tiny_model"][key] for p in procs]
            print(f"  {label:<36} median {statistics.median(vals):6.2f} "
                  f"(spread {min(vals):.2f} .. {max(vals):.2f})")
        vals = [p["investigate"]["model_profiler_cost"]["relative_median_over_rounds"] * 100
                for p in procs]
        print(f"  {'profiler cost on this model (%)':<36} median {statistics.median(vals):6.2f} "
              f"(spread {min(vals):.2f} .. {max(vals):.2f})")

    doc = {
        "benchmark": "ort_overhead",
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "loadavg_1m": os.getloadavg()[0]},
        "model": os.path.relpath(args.model, ROOT),
        "target_ratio": TARGET_RATIO,
        "summary": summary,
        "processes": procs,
    }
    from runners.fileio import write_json_atomic

    write_json_atomic(doc, args.out)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
