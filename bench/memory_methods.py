"""Heap profilers against the runner's RSS figures on the example models (issue 11).

Per model, three fresh runner processes with the same short policy (one session, warm-up
1 iteration, a 10-iteration loop): plain, under memray and under Valgrind Massif
(``PYTHONMALLOC=malloc``), each through :meth:`host.lab.board.Board.profile_memory` or a
plain ``run_cell`` on ``--device local``. Reported per model: wall time of each and the
cost ratio against the plain run; the plain run's ``rss_mib_peak``, memray's and Massif's
heap peak; then Pearson's r between each heap peak and the RSS peak across the models.

    python bench/memory_methods.py [MODEL ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from host.lab.benchconfig import BenchConfig
from host.lab.board import Board
from host.lab.deploy import cached_sha256
from host.lab.inventory import local_device
from host.lab.transport import LocalTransport
from runners.core import Policy

ROOT = Path(__file__).resolve().parent.parent
POLICY = Policy(warmup_min_iterations=1, warmup_min_s=0.0, min_iterations=10, min_duration_s=0.0, sessions=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path,
                    default=sorted((ROOT / "examples" / "models").glob("*.onnx")))
    args = ap.parse_args()
    config = BenchConfig(policy=POLICY, timeout_s=1800)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        board = Board(local_device(str(Path(tmp) / "w")), LocalTransport("local"))
        board.prepare()
        for model in args.models:
            sha = cached_sha256(model)
            t0 = time.monotonic()
            plain = board.run_cell(model, sha, config)
            row = {"model": model.stem, "plain_s": time.monotonic() - t0,
                   "rss_mib_peak": plain.result["memory"]["rss_mib_peak"]}
            for method in ("memray", "massif"):
                t0 = time.monotonic()
                prof = board.profile_memory(model, sha, config, method)
                row[f"{method}_s"] = time.monotonic() - t0
                row[f"{method}_mib_peak"] = prof["heap_mib_peak"]
            rows.append(row)
            print(f"{model.stem}: plain {row['plain_s']:.1f} s, RSS peak {row['rss_mib_peak']:.1f} MiB; "
                  f"memray {row['memray_s']:.1f} s ({row['memray_s'] / row['plain_s']:.1f}x), heap peak "
                  f"{row['memray_mib_peak']:.1f} MiB; massif {row['massif_s']:.1f} s "
                  f"({row['massif_s'] / row['plain_s']:.1f}x), heap peak {row['massif_mib_peak']:.1f} MiB",
                  flush=True)
    rss = np.array([r["rss_mib_peak"] for r in rows])
    for method in ("memray", "massif"):
        heap = np.array([r[f"{method}_mib_peak"] for r in rows])
        ratio = statistics.median(r[f"{method}_s"] / r["plain_s"] for r in rows)
        r = float(np.corrcoef(rss, heap)[0, 1]) if len(rows) > 2 else float("nan")
        print(f"{method}: cost median {ratio:.1f}x a plain run; Pearson r with RSS peak {r:.3f}")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "memory_methods.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
