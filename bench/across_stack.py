"""The across-the-stack campaign of issue 25 (run by hand, on a quiet machine): compression x runtime x
code generation for two example models, in one campaign, then ``host report``'s table.

    .venv/bin/python bench/across_stack.py --out DIR [--models A,B] [--trials 16] [--max-s 16]

For each model (default ``mobilenet_v2_w0.25_cifar10`` and ``mobilenet_v2_w0.5_cifar10`` from
examples/models): ``host zoo prune`` at unstructured 0.9 and channels 0.5 into ``DIR/models``; then
three ``host bench`` commands into the one campaign ``DIR/results/across``, ``--device local``:

1. ``--backend ort --precision fp32,int8,fp16`` (ONNX Runtime's CPU provider);
2. ``--backend tvm --compile-option codegen=untuned --precision fp32,int8,fp16``;
3. ``--backend tvm --compile-option codegen=tuned --compile-option tune_trials=N --precision fp32``
   (MetaSchedule on this machine; the int8 and fp16 variants are not tuned);

and ``host report`` on the campaign. Prints the wall time of each step, the compile and tuning wall
times the compiler's recipes record (``precision.recipe.compile_s``, ``tuning.s``), and writes
``DIR/report.txt`` (the report at 100 columns). Nothing is measured by this script itself: the
figures are the commands' own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the ``host`` command of the Python running this script (its venv's), else the one on PATH
HOST = [str(Path(sys.executable).with_name("host"))] if Path(sys.executable).with_name("host").exists() \
    else ["host"]
MODELS = ("mobilenet_v2_w0.25_cifar10", "mobilenet_v2_w0.5_cifar10")


def _run(label: str, argv: list, log: Path) -> float:
    """Run ``argv`` (output appended to ``log``), return its wall seconds; exit codes 0 and 3 (a cell
    INVALID) are fine, others stop the script."""
    t0 = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(map(str, argv))}\n")
        out.flush()
        code = subprocess.run(list(map(str, argv)), stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "COLUMNS": "100"}).returncode
    wall = time.monotonic() - t0
    print(f"{label:<46} {wall:8.1f} s  (exit {code})", flush=True)
    if code not in (0, 3):
        sys.exit(f"{label} failed (exit {code}); see {log}")
    return wall


def _recipes(results: Path) -> list:
    """(cell name, compile_s, tuning s, records, cache_hit) of every compiled cell."""
    out = []
    for path in sorted(results.glob("*/*.json")):
        if path.name == "campaign.json":
            continue
        recipe = (json.loads(path.read_text()).get("precision") or {}).get("recipe") or {}
        if "compile_options" in recipe:
            tuning = recipe.get("tuning") or {}
            out.append((path.stem, recipe.get("compile_s"), tuning.get("s"), tuning.get("records"),
                        recipe.get("cache_hit")))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="work folder (models, results, logs)")
    ap.add_argument("--models", default=",".join(MODELS), help="example model stems, comma-separated")
    ap.add_argument("--trials", type=int, default=16, help="MetaSchedule trials per tuned model")
    ap.add_argument("--max-s", type=float, default=16.0, help="host bench --max-s per cell")
    args = ap.parse_args()
    models, results, log = args.out / "models", args.out / "results", args.out / "run.log"
    models.mkdir(parents=True, exist_ok=True)
    common = ["--device", "local", "--quick", "--max-s", args.max_s, "--results", results,
              "--campaign", "across"]
    steps = []
    for stem in args.models.split(","):
        src = ROOT / "examples" / "models" / f"{stem}.onnx"
        for suffix in (".onnx", ".info"):
            shutil.copy(src.with_suffix(suffix), models / f"{stem}{suffix}")
        for how in (["--unstructured", "0.9"], ["--channels", "0.5"]):
            steps.append((f"prune {stem} {' '.join(how)}", [*HOST, "zoo", "prune", src, *how, "-o", models]))
    bench = [*HOST, "bench", models]
    tuned = ["--compile-option", "codegen=tuned", "--compile-option", f"tune_trials={args.trials}"]
    steps += [
        ("bench ort fp32,int8,fp16", [*bench, "--backend", "ort", "--precision", "fp32,int8,fp16", *common]),
        ("bench tvm untuned fp32,int8,fp16", [*bench, "--backend", "tvm", "--compile-option",
                                              "codegen=untuned", "--precision", "fp32,int8,fp16", *common]),
        (f"bench tvm tuned{args.trials} fp32", [*bench, "--backend", "tvm", *tuned, "--precision", "fp32",
                                               *common]),
    ]
    total = sum(_run(label, argv, log) for label, argv in steps)
    t0 = time.monotonic()
    report = subprocess.run([*HOST, "report", results / "across"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "100"})
    (args.out / "report.txt").write_text(report.stdout + report.stderr)
    print(f"{'host report':<46} {time.monotonic() - t0:8.1f} s  (exit {report.returncode})")
    print(f"{'all steps':<46} {total:8.1f} s")
    print("\ncompiled cells: compile_s, tuning s, tuning records, cache hit")
    for name, compile_s, tune_s, records, hit in _recipes(results / "across"):
        print(f"  {name:<62} {compile_s!s:>7} {tune_s!s:>8} {records!s:>4} {hit}")
    print(f"\nreport: {args.out / 'report.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
