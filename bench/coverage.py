"""Do the cell intervals cover a re-run? (issue 11)

For each trial: campaign A then, right after it, an independent campaign B of the same
models on this machine (``run_campaign`` with the default protocol, or the one chosen
here). A trial covers when A's 95 % CI of a model's p50 contains B's p50. Also reported:
the same for A's re-run interval (``latency_ms_p50_rerun95``), how many processes each
cell took and each campaign's wall time.

Target: CI coverage >= 90 % per model over 20 trials.

    python bench/coverage.py [--trials 20] [--preset default] [MODEL ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from host.campaign.protocol import PRESETS
from host.campaign.run import run_campaign
from host.lab.benchconfig import BenchConfig
from host.lab.inventory import local_device

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = [ROOT / "examples/models/squeezenet1_1_imagenet.onnx",
           ROOT / "examples/models/mobilenet_v2_w0.25_cifar10.onnx"]


def campaign(models, preset: str, folder: Path, name: str) -> tuple:
    protocol, policy = PRESETS[preset]
    t0 = time.monotonic()
    res = run_campaign(models, [local_device(str(folder / "work"))], BenchConfig(policy=policy),
                       results=folder, campaign=name, protocol=protocol)
    return {c["cell"]["model_stem"]: c for c in res.cells}, time.monotonic() - t0


def regimes(rows: list, shift: float = 0.10) -> None:
    """Split the trials: "machine changed state" where every model moved by more than
    ``shift`` in the same direction between A and B, and the others; print the coverage of
    each group."""
    trials: dict = {}
    for r in rows:
        trials.setdefault(r["trial"], []).append(r["p50_b"] / r["p50_a"] - 1)
    moved = {t for t, d in trials.items() if all(x > shift for x in d) or all(x < -shift for x in d)}
    for name, group in (("machine changed state", moved), ("otherwise", set(trials) - moved)):
        mine = [r for r in rows if r["trial"] in group]
        if mine:
            print(f"{name} ({len(group)} trials): CI covers {sum(r['ci_covers'] for r in mine)}/{len(mine)}, "
                  f"re-run interval {sum(r['rerun_covers'] for r in mine)}/{len(mine)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path, default=DEFAULT)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--from-json", type=Path, help="only summarise an earlier run's bench/out/coverage.json")
    args = ap.parse_args()
    if args.from_json:
        regimes(json.loads(args.from_json.read_text())["rows"])
        return
    rows, walls = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.trials):
            a, wa = campaign(args.models, args.preset, Path(tmp), f"a{k}")
            b, wb = campaign(args.models, args.preset, Path(tmp), f"b{k}")
            walls += [wa, wb]
            for stem, cell in a.items():
                la, lb = cell["latency"], b[stem]["latency"]
                ci, rr, other = la["latency_ms_p50_ci95"], la["latency_ms_p50_rerun95"], lb["latency_ms_p50"]
                rows.append({"trial": k, "model": stem, "p50_a": la["latency_ms_p50"], "p50_b": other,
                             "ci95": ci, "rerun95": rr, "processes": la["processes"],
                             "status_a": cell["status"], "ci_covers": bool(ci and ci[0] <= other <= ci[1]),
                             "rerun_covers": bool(rr and rr[0] <= other <= rr[1]),
                             "ci95_rel": la["latency_ms_p50_ci95_rel"]})
            print(f"trial {k + 1}/{args.trials}: " + ", ".join(
                f"{r['model'][:18]} {r['p50_a']:.4f}->{r['p50_b']:.4f} ci{'+' if r['ci_covers'] else '-'}"
                f" rerun{'+' if r['rerun_covers'] else '-'}" for r in rows[-len(a):]), flush=True)
    print(f"\n# preset {args.preset}, {args.trials} trials, campaign wall time median "
          f"{statistics.median(walls):.1f} s (min {min(walls):.1f}, max {max(walls):.1f})")
    for stem in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == stem]
        width = statistics.median(r["ci95_rel"] or 0 for r in mine)
        print(f"{stem}: CI covers {sum(r['ci_covers'] for r in mine)}/{len(mine)}, re-run interval covers "
              f"{sum(r['rerun_covers'] for r in mine)}/{len(mine)}; CI ±{width:.1%} median; "
              f"processes median {statistics.median(r['processes'] for r in mine)}; "
              f"VALID {sum(r['status_a'] == 'ok' for r in mine)}/{len(mine)}")
    regimes(rows)
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "coverage.json").write_text(json.dumps({"rows": rows, "walls_s": walls}, indent=1))


if __name__ == "__main__":
    main()
