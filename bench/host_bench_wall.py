"""Wall time of a whole ``host bench --device local`` on the example set (run by hand).

    .venv/bin/python bench/host_bench_wall.py [--repeat 1] [-- EXTRA HOST BENCH ARGS]

Each repeat runs ``.venv/bin/host bench --device local --results TMP --campaign wall-<i>
--json`` (default settings otherwise: examples/models, warm-up >= 20 it and >= 1 s, timed
loop >= 100 it and >= 5 s) into a fresh temporary results folder, timed with
``time.monotonic()``. Reported: total wall seconds, and per cell (from the stored cell JSONs)
the runner process wall time ``host.runner_process.wall_s``, the warm-up and timed-loop
durations, the rest (process start, imports, model load, statistics, JSON: ``wall - warm-up -
timed``), the median latency and the verdict. Prints a report and writes
``bench/out/host_bench_wall.json``. With the defaults one repeat takes about a minute.
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
from pathlib import Path

from runners.fileio import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
HOST = ROOT / ".venv" / "bin" / "host"


def one_run(i: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="edgegauge-wall-") as tmp:
        campaign = f"wall-{i}"
        argv = [str(HOST), "bench", "--device", "local", "--results", tmp,
                "--campaign", campaign, "--json", *extra]
        t0 = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        wall = time.monotonic() - t0
        if proc.returncode not in (0, 3):
            raise SystemExit(f"host bench exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        stdout_cells = json.loads(proc.stdout)
        cells = []
        for path in sorted((Path(tmp) / campaign).rglob("*.json")):
            doc = json.loads(path.read_text(encoding="utf-8"))
            if "schema_version" not in doc or "cell" not in doc:
                continue  # campaign.json
            rp = doc.get("host", {}).get("runner_process", {})
            lat = doc.get("latency") or {}
            warm = doc.get("warmup") or {}
            cell_wall = rp.get("wall_s")
            in_loops = (warm.get("duration_s") or 0.0) + (lat.get("duration_s") or 0.0)
            cells.append({
                "model": doc["cell"]["model_stem"],
                "status": doc.get("status"),
                "verdict": (doc.get("verdict") or {}).get("result"),
                "reasons": (doc.get("verdict") or {}).get("reasons"),
                "runner_wall_s": cell_wall,
                "warmup_s": warm.get("duration_s"),
                "timed_s": lat.get("duration_s"),
                "rest_s": cell_wall - in_loops if cell_wall is not None else None,
                "iterations": lat.get("iterations"),
                "p50_ms": lat.get("latency_ms_p50"),
                "cov": lat.get("cov"),
            })
    return {"exit_code": proc.returncode, "wall_s": wall, "cells_in_stdout": len(stdout_cells),
            "cells": cells, "sum_runner_wall_s": sum(c["runner_wall_s"] or 0 for c in cells)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="how many whole campaigns [1]")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "host_bench_wall.json"))
    ap.add_argument("extra", nargs="*", help="extra `host bench` arguments (after --)")
    args = ap.parse_args(argv)

    runs = []
    for i in range(args.repeat):
        r = one_run(i, args.extra)
        runs.append(r)
        print(f"\nrun {i}: host bench wall {r['wall_s']:.2f} s (exit {r['exit_code']}), "
              f"{len(r['cells'])} cells, sum of runner walls {r['sum_runner_wall_s']:.2f} s, "
              f"host-side rest {r['wall_s'] - r['sum_runner_wall_s']:.2f} s")
        print(f"  {'cell':<30} {'wall':>6} {'warmup':>7} {'timed':>6} {'rest':>6} {'iters':>6} "
              f"{'p50 ms':>8} {'cov':>6}  verdict")
        for c in r["cells"]:
            print(f"  {c['model']:<30} {c['runner_wall_s']:>6.2f} {c['warmup_s'] or 0:>7.2f} "
                  f"{c['timed_s'] or 0:>6.2f} {c['rest_s'] or 0:>6.2f} {c['iterations'] or 0:>6} "
                  f"{c['p50_ms'] or 0:>8.3f} {c['cov'] or 0:>6.3f}  {c['verdict'] or c['status']}"
                  + (f" ({'; '.join(c['reasons'])})" if c.get("reasons") else ""))
    walls = [r["wall_s"] for r in runs]
    print(f"\nhost bench wall: median {statistics.median(walls):.2f} s "
          f"(spread {min(walls):.2f} .. {max(walls):.2f} s over {len(walls)} run(s))")

    import onnxruntime

    doc = {
        "benchmark": "host_bench_wall",
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "ort": onnxruntime.__version__,
                    "loadavg_1m": os.getloadavg()[0]},
        "command": [str(HOST), "bench", "--device", "local", "--results", "TMP", "--campaign",
                    "wall-<i>", "--json", *args.extra],
        "wall_s_median": statistics.median(walls),
        "runs": runs,
    }
    write_json_atomic(doc, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
