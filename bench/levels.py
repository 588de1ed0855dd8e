"""Where does the latency variance live on this machine? (issue 11)

For each model, R fresh runner processes × S fresh sessions × one short timed loop each,
the models interleaved process by process (seeded shuffle per round) so slow drift lands on
every model alike. Reports, per model, the spread at each level as the standard deviation of
log medians (≈ coefficient of variation):

* iterations: the median robust CoV inside one timed loop (noise a loop's own CI sees);
* sessions: std of log session medians inside a process (pooled over processes);
* processes: std of log process means (session medians averaged), minus the part the
  sessions explain (one-way nested variance components, method of moments);
* time: the slope of log process means against start time, over the whole experiment;

and the cost of each level (process start, session creation + warm-up, timed loop), then
the cheapest number of sessions per process for a given precision (Kalibera & Jones,
ISMM 2013, eq. for the optimal repetition count of a lower level:
S* = sqrt(c_process / c_session × var_session / var_process)).

    python bench/levels.py [--processes 8] [--sessions 4] [--loop-s 0.3] [MODEL ...]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = [ROOT / "examples/models/squeezenet1_1_imagenet.onnx",
           ROOT / "examples/models/mobilenet_v2_w0.25_cifar10.onnx"]


def one_process(model: Path, sessions: int, loop_s: float, warm_s: float) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "runners", "run", str(model), "--out", out.name,
                        "--sessions", str(sessions), "--min-s", str(loop_s), "--min-iters", "20",
                        "--warmup-s", str(warm_s), "--warmup-iters", "5"], cwd=ROOT, check=False)
        wall = time.monotonic() - t0
        doc = json.loads(Path(out.name).read_text())
    blocks = doc["sessions"]
    return {"t": t0, "wall_s": wall,
            "medians": [b["latency"]["latency_ms_p50"] for b in blocks],
            "cov_robust": [b["latency"]["cov_robust"] for b in blocks],
            "session_s": [b["load_ms"] / 1e3 + b["first_inference_ms"] / 1e3 + b["warmup"]["duration_s"]
                          for b in blocks],
            "loop_s": [b["latency"]["duration_s"] for b in blocks]}


def components(procs: list) -> dict:
    y = [np.log(p["medians"]) for p in procs]
    s = len(y[0])
    within = float(np.mean([np.var(v, ddof=1) for v in y])) if s > 1 else float("nan")
    means = np.array([v.mean() for v in y])
    var_means = float(np.var(means, ddof=1))
    var_proc = max(var_means - (within / s if s > 1 else 0.0), 0.0)
    t = np.array([p["t"] for p in procs]) - procs[0]["t"]
    slope = float(np.polyfit(t, means, 1)[0]) if len(t) > 2 else float("nan")
    cost_session = float(np.mean([np.mean(p["session_s"]) + np.mean(p["loop_s"]) for p in procs]))
    cost_process = float(np.mean([p["wall_s"] - sum(p["session_s"]) - sum(p["loop_s"]) for p in procs]))
    s_opt = math.sqrt(cost_process / cost_session * within / var_proc) if var_proc > 0 and s > 1 else None
    return {"p50_ms_median": float(np.exp(np.median(means))),
            "iterations_cov_robust": float(np.median([c for p in procs for c in p["cov_robust"]])),
            "sessions_sd_log": math.sqrt(within) if s > 1 else None,
            "processes_sd_log": math.sqrt(var_proc), "process_means_sd_log": math.sqrt(var_means),
            "time_drift_per_min": slope * 60, "cost_process_s": cost_process,
            "cost_session_s": cost_session, "sessions_optimal": s_opt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path, default=DEFAULT)
    ap.add_argument("--processes", type=int, default=8)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--loop-s", type=float, default=0.3)
    ap.add_argument("--warmup-s", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    runs = {m: [] for m in args.models}
    t0 = time.monotonic()
    for _ in range(args.processes):
        order = list(args.models)
        rng.shuffle(order)
        for m in order:
            runs[m].append(one_process(m, args.sessions, args.loop_s, args.warmup_s))
    print(f"# {args.processes} processes x {args.sessions} sessions x {args.loop_s} s loops, "
          f"{time.monotonic() - t0:.0f} s in all")
    for m, procs in runs.items():
        c = components(procs)
        print(f"{m.stem}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in c.items()))


if __name__ == "__main__":
    main()
