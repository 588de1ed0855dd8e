"""Wall time to a ±5 % and a ±2 % interval: our adaptive protocol against a fixed one
(issue 11).

* **Adaptive** (ours): ``run_campaign`` on one model with ``--target-ci`` P (default preset
  otherwise, budget raised to 300 s so the target decides); wall time of the campaign and
  the CI it achieved. Repeated ``--repeats`` times.
* **Fixed** (the scaling study's: 20 warm-up + 80 timed iterations × 50 trials in one
  process; estimate = median of the trial medians): run ``--fixed-runs`` times as fresh
  processes. Its honest precision is the spread of its estimate between runs (its own
  trials all share one process and session, so they cannot see that spread):
  P_fixed = 1.96 × sd(log estimate). To reach P with it, a user must average
  n = ceil((1.96 sd / P)^2) runs: wall time n × (median wall time of one run).

Target: >= 5x less wall time for ours at equal achieved precision.

    python bench/time_to_precision.py [--repeats 3] [--fixed-runs 10] [MODEL ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = [ROOT / "examples/models/squeezenet1_1_imagenet.onnx",
           ROOT / "examples/models/mobilenet_v2_w0.25_cifar10.onnx"]


def fixed_child(model: str) -> None:
    """One run of the fixed protocol in this process; prints its estimate (ms)."""
    from runners.backends import get_backend
    from runners.core import timed_loop
    from runners.inputs import resolve_shapes, synthesize

    backend = get_backend("ort", {"threads": 0})
    backend.load(model)
    specs = backend.inputs()
    backend.prepare(synthesize(specs, resolve_shapes(specs, batch=1, shapes={}), seed=0))
    medians = []
    for _ in range(50):
        timed_loop(backend.infer, 20, 0, 10**12)
        lat, *_ = timed_loop(backend.infer, 80, 0, 10**12)
        medians.append(float(np.median(lat)) / 1e6)
    print(json.dumps({"estimate_ms": float(np.median(medians))}))


def fixed(model: Path, runs: int) -> dict:
    estimates, walls = [], []
    for _ in range(runs):
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, __file__, "--child", str(model)], capture_output=True, text=True,
                           check=True, cwd=ROOT)
        walls.append(time.monotonic() - t0)
        estimates.append(json.loads(p.stdout)["estimate_ms"])
    sd = float(np.std(np.log(estimates), ddof=1))
    return {"estimates_ms": estimates, "wall_s_median": statistics.median(walls), "sd_log": sd,
            "precision": 1.96 * sd}


def adaptive(model: Path, target: float) -> dict:
    from host.campaign.protocol import PRESETS
    from host.campaign.run import run_campaign
    from host.lab.benchconfig import BenchConfig
    from host.lab.inventory import local_device

    protocol, policy = PRESETS["default"]
    protocol = dataclasses.replace(protocol, target_ci=target, max_cell_s=300.0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        res = run_campaign([model], [local_device(str(Path(tmp) / "w"))], BenchConfig(policy=policy),
                           results=Path(tmp), campaign="t", protocol=protocol)
        wall = time.monotonic() - t0
    lat = res.cells[0]["latency"]
    return {"wall_s": wall, "achieved": lat["latency_ms_p50_ci95_rel"], "processes": lat["processes"],
            "p50_ms": lat["latency_ms_p50"]}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        fixed_child(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path, default=DEFAULT)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fixed-runs", type=int, default=10)
    args = ap.parse_args()
    report = {}
    for model in args.models:
        fx = fixed(model, args.fixed_runs)
        print(f"{model.stem}: fixed protocol {fx['wall_s_median']:.1f} s per run, between-run sd "
              f"{fx['sd_log']:.1%} -> one run is good to ±{fx['precision']:.1%}", flush=True)
        report[model.stem] = {"fixed": fx}
        for target in (0.05, 0.02):
            ours = [adaptive(model, target) for _ in range(args.repeats)]
            wall = statistics.median(o["wall_s"] for o in ours)
            n_fixed = max(1, math.ceil((fx["precision"] / target) ** 2))
            fixed_wall = n_fixed * fx["wall_s_median"]
            print(f"  ±{target:.0%}: ours {wall:.1f} s median (achieved "
                  + ", ".join(f"±{o['achieved']:.1%}/{o['processes']}p" for o in ours)
                  + f"); fixed needs {n_fixed} runs = {fixed_wall:.1f} s; ratio fixed/ours "
                  f"{fixed_wall / wall:.1f}x", flush=True)
            report[model.stem][f"target_{target}"] = {"ours": ours, "fixed_runs": n_fixed,
                                                      "fixed_wall_s": fixed_wall, "ratio": fixed_wall / wall}
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "time_to_precision.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
