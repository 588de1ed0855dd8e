"""Alignment error of board timestamps with host-side meter samples, on a loopback SSH
board with a known injected load step (run by hand; needs root or openssh-server).

    .venv/bin/python bench/power_alignment.py [--steps 10] [--period-ms 1]

An emulated INA226 logger (tests/meter_emu.py, on a pty, ``--period-ms`` per sample) reads
load power while a marker file exists, idle otherwise. For each step, over SSH, a script on
the board stamps CLOCK_MONOTONIC and creates the marker (rising edge), sleeps 0.5 s, then
stamps and removes it (falling edge). The host maps the board stamps onto its clock with
:meth:`host.lab.board.Board.clock_probes` + :func:`host.power.estimate_offset` (as `host bench`
does) and compares them with the edges seen in the sample stream (midpoint between the
last sample before and the first after the change). Reported: |error| median / p90 / max in
ms, the offset uncertainty, and the sample period (the edge's own resolution). On loopback
the board and host share one clock, so this measures the method's error (probe round trip,
sampling, file visibility), not real clock drift.

Writes ``bench/out/power_alignment.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import labfix  # noqa: E402
from meter_emu import InaEmulator  # noqa: E402

from host.lab.board import Board, open_transport  # noqa: E402
from host.lab.inventory import resolve_inventory  # noqa: E402
from host.power import Sampler, estimate_offset, to_host_ns  # noqa: E402
from host.power.meters import open_meter  # noqa: E402
from runners.fileio import write_json_atomic  # noqa: E402

STEP = """import os, sys, time
mark = sys.argv[1]
t_up = time.monotonic_ns(); open(mark, "w").close()
time.sleep(0.5)
t_down = time.monotonic_ns(); os.remove(mark)
print(t_up, t_down)
"""


def edges(samples, load_w: float, idle_w: float):
    """Host times (ns) of rising and falling edges: midpoints between neighbouring samples."""
    mid = (load_w + idle_w) / 2
    out = []
    for a, b in zip(samples, samples[1:]):
        if a.power_w is None or b.power_w is None:
            continue
        if (a.power_w < mid) != (b.power_w < mid):
            out.append(("up" if b.power_w >= mid else "down", (a.t_mono_ns + b.t_mono_ns) // 2,
                        b.t_mono_ns - a.t_mono_ns))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--period-ms", type=int, default=1)
    args = ap.parse_args()
    errors_ms, uncertainties_ms, gaps_ms = [], [], []
    with tempfile.TemporaryDirectory(prefix="edgegauge-align-") as tmp_s:
        tmp = Path(tmp_s)
        mark = tmp / "LOAD"
        with labfix.Boards(tmp / "boards", names=("b1",)) as boards, \
                InaEmulator(profile=lambda t: 5.0 if mark.exists() else 2.0) as emu:
            inv = resolve_inventory(str(boards.write_inventory(tmp / "lab.ini")))
            device = inv.select(all_devices=True)[0]
            board = Board(device, open_transport(device))
            board.prepare()
            meter = open_meter("ina226", emu.port, period_ms=args.period_ms)
            try:
                for _ in range(args.steps):
                    probes = iter(board.clock_probes(8)[1:])
                    offset = estimate_offset(probes.__next__, repeats=7)
                    sampler = Sampler(meter, phase="step")
                    sampler.start()
                    time.sleep(0.2)  # idle before the step
                    res = board.transport.run(f"{device.python} -c '{STEP}' {mark}", timeout=30)
                    time.sleep(0.2)  # and after it, so both edges are in the stream
                    samples = sampler.stop()
                    t_up, t_down = (int(x) for x in res.stdout.split())
                    seen = edges(samples, 5.0, 2.0)
                    for kind, t_board in (("up", t_up), ("down", t_down)):
                        match = [e for e in seen if e[0] == kind]
                        if not match:
                            raise SystemExit(f"no {kind} edge in {len(samples)} samples: {res.stderr}")
                        _, t_seen, gap = match[0]
                        errors_ms.append(abs(to_host_ns(t_board, offset) - t_seen) / 1e6)
                        gaps_ms.append(gap / 1e6)
                    uncertainties_ms.append(offset.uncertainty_ns / 1e6)
            finally:
                meter.close()
                board.transport.close()
    errors_ms.sort()
    report = {
        "steps": args.steps, "edges": len(errors_ms), "period_ms": args.period_ms,
        "error_ms_median": statistics.median(errors_ms),
        "error_ms_p90": errors_ms[int(0.9 * (len(errors_ms) - 1))],
        "error_ms_max": errors_ms[-1],
        "offset_uncertainty_ms_median": statistics.median(uncertainties_ms),
        "edge_sample_gap_ms_median": statistics.median(gaps_ms),
        "errors_ms": errors_ms,
    }
    out = ROOT / "bench" / "out" / "power_alignment.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(report, str(out))
    print(f"alignment |error| over {len(errors_ms)} edges: median {report['error_ms_median']:.2f} ms, "
          f"p90 {report['error_ms_p90']:.2f} ms, max {report['error_ms_max']:.2f} ms "
          f"(offset uncertainty median {report['offset_uncertainty_ms_median']:.3f} ms, "
          f"sample gap at the edge {report['edge_sample_gap_ms_median']:.2f} ms)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
