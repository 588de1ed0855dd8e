"""Lab orchestration over loopback SSH (run by hand): per-cell overhead, bytes re-sent,
and parallel fan-out. Starts its own three loopback sshd boards (tests/labfix.py; needs
root or openssh-server installed).

    .venv/bin/python bench/lab_overhead.py [--cells 10] [--min-s 0.05] [--repeat 3]

1. **Overhead per cell**: the same ``--cells`` null-backend cells (warm-up 1 iteration,
   timed loop >= 5 iterations and >= ``--min-s``) run through ``host.campaign.run.run_campaign``
   on ``--device local`` (LocalTransport) and on one SSH board (SshTransport). For each
   cell the host records ``cell_wall_s`` (staging + runner command + fetching the result)
   and the runner process reports its own loop window (``timestamps``). Overhead per
   cell = median SSH ``cell_wall_s`` - median local ``cell_wall_s`` (the runner's own time:
   process start, imports, loops, JSON — identical work on the same CPU). Also reported:
   the SSH medians of ``stage_s``, ``runner_command_s`` and ``fetch_s``.
2. **Bytes re-sent**: ``host deploy`` then two ``host bench`` campaigns with the
   unchanged example models on three boards; model bytes sent by each (target: 0 the
   second time).
3. **Parallel fan-out**: wall time of one campaign (``--cells`` null cells) on one board,
   repeated on each board alone, vs the same campaign on the three boards at once;
   ratio = parallel wall / slowest single-board wall (target <= 1.2). Done twice: with the
   plain null runner (each cell is ~0.2 s of CPU for interpreter start, imports and the
   busy timed loop, so three boards on a 2-core host compete for CPU), and with
   ``--idle-s`` of sleep added before each runner starts (the board's ``python`` is a
   shim ``sleep X; exec python "$@"``), which leaves the host's cores mostly idle and
   shows whether the orchestration itself runs boards in parallel.

Writes ``bench/out/lab_overhead.json``.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import labfix  # noqa: E402

from host.campaign.run import run_campaign  # noqa: E402
from host.lab.benchconfig import BenchConfig  # noqa: E402
from host.lab.board import Board, open_transport  # noqa: E402
from host.lab.inventory import local_device, resolve_inventory  # noqa: E402
from runners.core import Policy  # noqa: E402
from runners.fileio import write_json_atomic  # noqa: E402


def null_config(min_s: float) -> BenchConfig:
    return BenchConfig(backend="null", timeout_s=120, policy=Policy(
        warmup_min_iterations=1, warmup_min_s=0.0, min_iterations=5, min_duration_s=min_s, cov_max=100.0))


def models(tmp: Path, n: int) -> list[Path]:
    d = tmp / "models"
    d.mkdir(exist_ok=True)
    src = ROOT / "tests" / "fixtures" / "models" / "identity.onnx"
    out = []
    for i in range(n):
        shutil.copy(src, d / f"m{i:03d}.onnx")
        out.append(d / f"m{i:03d}.onnx")
    return out


def campaign(mods, devices, cfg, results, name, backend="null"):
    t0 = time.monotonic()
    res = run_campaign(mods, devices, cfg, results=results, campaign=name, backend=backend,
                       open_board=lambda d: Board(d, open_transport(d)))
    wall = time.monotonic() - t0
    bad = [c for c in res.cells if c.get("status") != "ok"]
    if bad:
        raise SystemExit(f"{len(bad)} cells not ok: {bad[0].get('error')}")
    return res, wall


def orch(cell: dict) -> dict:
    return cell["host"]["runner_process"]["orchestration"]


def med(values) -> float:
    return statistics.median(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=10)
    ap.add_argument("--min-s", type=float, default=0.05)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--idle-s", type=float, default=0.5)
    args = ap.parse_args()
    cfg = null_config(args.min_s)
    report: dict = {"machine": platform.node(), "python": platform.python_version(), "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="edgegauge-labbench-") as tmp_s:
        tmp = Path(tmp_s)
        with labfix.Boards(tmp / "boards", names=("b1", "b2", "b3")) as boards:
            inv = resolve_inventory(str(boards.write_inventory(tmp / "lab.ini")))
            lab = inv.select(all_devices=True)
            mods = models(tmp, args.cells)
            local = local_device(str(tmp / "localwork"))

            # 1. overhead per cell (median over cells; repeats alternate local / ssh)
            local_walls, ssh_walls, stage, cmd, fetch, inner = [], [], [], [], [], []
            for r in range(args.repeat):
                for which in (("local", "ssh") if r % 2 == 0 else ("ssh", "local")):
                    dev = [local] if which == "local" else [lab[0]]
                    res, _ = campaign(mods, dev, cfg, tmp / "r", f"ovh-{which}-{r}")
                    for c in res.cells:
                        o = orch(c)
                        if which == "local":
                            local_walls.append(o["cell_wall_s"])
                        else:
                            ssh_walls.append(o["cell_wall_s"])
                            stage.append(o["stage_s"])
                            cmd.append(o["runner_command_s"])
                            fetch.append(o["fetch_s"])
                            ts = c["timestamps"]
                            inner.append((ts["end_monotonic_ns"] - ts["start_monotonic_ns"]) / 1e9)
            report["overhead"] = {
                "cells": len(ssh_walls),
                "local_cell_wall_s_median": med(local_walls),
                "ssh_cell_wall_s_median": med(ssh_walls),
                "overhead_s_per_cell": med(ssh_walls) - med(local_walls),
                "ssh_stage_s_median": med(stage),
                "ssh_runner_command_s_median": med(cmd),
                "ssh_fetch_s_median": med(fetch),
                "runner_in_process_s_median": med(inner),
            }

            # 2. bytes re-sent with unchanged models
            examples = sorted((ROOT / "examples" / "models").glob("*.onnx"))
            deploy = [Board(d, open_transport(d)).deploy(examples) for d in lab]
            first, _ = campaign(examples, lab, null_config(0.01), tmp / "r", "bytes-1")
            second, _ = campaign(examples, lab, null_config(0.01), tmp / "r", "bytes-2")
            report["bytes"] = {
                "example_models": len(examples),
                "example_bytes": sum(p.stat().st_size for p in examples),
                "deploy_bytes_sent": {r.device: r.bytes_sent for r in deploy},
                "bench1_model_bytes_sent": {n: s.model_bytes_sent for n, s in first.boards.items()},
                "bench2_model_bytes_sent": {n: s.model_bytes_sent for n, s in second.boards.items()},
                "bench2_bytes_sent_all": {n: s.bytes_sent for n, s in second.boards.items()},
            }

            # 3. parallel fan-out vs each board alone (plain, then with an idle shim)
            shim = tmp / "python-idle"
            shim.write_text(f"#!/bin/sh\nsleep {args.idle_s}\nexec {sys.executable} \"$@\"\n")
            shim.chmod(0o755)
            idle_lab = resolve_inventory(str(boards.write_inventory(tmp / "idle.ini", python=shim)))
            for key, devs in (("parallel", lab), ("parallel_idle", idle_lab.select(all_devices=True))):
                singles, parallels = {}, []
                for r in range(args.repeat):
                    for dev in devs:
                        _, wall = campaign(mods, [dev], cfg, tmp / "r", f"{key}-single-{dev.name}-{r}")
                        singles.setdefault(dev.name, []).append(wall)
                    _, wall = campaign(mods, devs, cfg, tmp / "r", f"{key}-three-{r}")
                    parallels.append(wall)
                slowest = max(med(v) for v in singles.values())
                report[key] = {
                    "single_board_wall_s_median": {k: round(med(v), 3) for k, v in singles.items()},
                    "three_boards_wall_s_median": med(parallels),
                    "ratio_to_slowest_single": med(parallels) / slowest,
                    "single_walls": singles, "parallel_walls": parallels,
                }
    out = ROOT / "bench" / "out" / "lab_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(report, str(out))
    o, b = report["overhead"], report["bytes"]
    print(f"overhead per cell: {o['overhead_s_per_cell'] * 1000:.0f} ms "
          f"(ssh cell {o['ssh_cell_wall_s_median']:.3f} s vs local {o['local_cell_wall_s_median']:.3f} s; "
          f"stage {o['ssh_stage_s_median'] * 1000:.1f} ms, fetch {o['ssh_fetch_s_median'] * 1000:.1f} ms; "
          f"runner loops {o['runner_in_process_s_median']:.3f} s)")
    print(f"bytes: deploy {b['deploy_bytes_sent']}; bench 1 models {b['bench1_model_bytes_sent']}; "
          f"bench 2 models {b['bench2_model_bytes_sent']} (all {b['bench2_bytes_sent_all']})")
    for key in ("parallel", "parallel_idle"):
        p = report[key]
        print(f"{key}: 3 boards {p['three_boards_wall_s_median']:.2f} s vs single "
              f"{p['single_board_wall_s_median']} -> ratio {p['ratio_to_slowest_single']:.2f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
