"""Command line of the runners package (argparse; standard library only).

    python -m runners run MODEL [--backend ort] [--out result.json] ...
    python -m runners manifest
    python -m runners backends

Exit codes of ``run``: 0 status ok, 3 status invalid, 4 status failed (a result document
is written in all three cases), 2 bad command line; anything else is a crash.
"""

from __future__ import annotations

import argparse
import json
import sys

import runners
from runners.core import Policy
from runners.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK, InputSpecError

_DEFAULT = Policy()
#: Policy field -> runner option; the one mapping used to parse and to build argv.
POLICY_OPTIONS = {
    "warmup_min_iterations": "--warmup-iters",
    "warmup_min_s": "--warmup-s",
    "min_iterations": "--min-iters",
    "min_duration_s": "--min-s",
    "max_duration_s": "--max-s",
    "cov_max": "--cov-max",
    "fps": "--fps",
}


def policy_to_argv(policy: Policy) -> list:
    """``python -m runners run`` options that reproduce ``policy`` exactly."""
    argv = []
    for name, option in POLICY_OPTIONS.items():
        argv += [option, repr(getattr(policy, name))]
    return argv

_POLICY_HELP = """\
Stop rule (MLPerf LoadGen style): warm-up runs until both --warmup-iters and
--warmup-s are met; the timed loop runs until both --min-iters and --min-s are met,
capped at --max-s (each). Defaults: warm-up >= 20 iterations and >= 1 s; timed loop
>= 100 iterations and >= 5 s, cap 60 s (see runners.core.Policy). The result is
INVALID when a minimum was not met, the cap was hit, or the robust coefficient of
variation, IQR/(1.349*median), exceeds --cov-max (default 0.10).
"""


def _shape_arg(text: str):
    from runners.inputs import parse_shape_option

    try:
        return parse_shape_option(text)
    except InputSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runners",
        description="edgegauge benchmark runner: one model, one configuration, one fresh "
        "process; prints or writes a versioned result JSON.",
    )
    parser.add_argument("--version", action="version", version=f"runners {runners.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="benchmark one model",
        description="Benchmark one model: load, warm up, timed loop, result JSON.",
        epilog=_POLICY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("model", nargs="?", help="path to the model (.onnx); optional for null")
    run.add_argument("--backend", default="ort", help="ort (ONNX Runtime CPU) or null [ort]")
    run.add_argument("--out", help="write the result JSON here (atomically); default stdout")
    run.add_argument("--batch", type=int, default=1,
                     help="value of a dynamic leading (batch) dimension [1]")
    run.add_argument("--shape", type=_shape_arg, action="append", default=[],
                     metavar="NAME=D1xD2x...", help="full shape of one input (repeatable)")
    run.add_argument("--seed", type=int, default=0, help="seed of the random inputs [0]")
    run.add_argument("--threads", type=int, default=0,
                     help="ORT intra-op threads; 0 = all CPUs this process may use [0]")
    run.add_argument("--opt-level", default="all", choices=["disable", "basic", "extended", "all"],
                     help="ORT graph optimization level [all]")
    run.add_argument("--no-io-binding", action="store_true",
                     help="ORT: call session.run with numpy inputs instead of I/O binding")
    d = _DEFAULT
    helps = {
        "warmup_min_iterations": (int, f"warm-up minimum iterations [{d.warmup_min_iterations}]"),
        "warmup_min_s": (float, f"warm-up minimum seconds [{d.warmup_min_s}]"),
        "min_iterations": (int, f"timed minimum iterations [{d.min_iterations}]"),
        "min_duration_s": (float, f"timed minimum seconds [{d.min_duration_s}]"),
        "max_duration_s": (float, f"cap in seconds on warm-up and on the timed loop, each "
                                  f"[{d.max_duration_s}]"),
        "cov_max": (float, f"largest robust CoV (IQR/(1.349*median)) for VALID [{d.cov_max}]"),
        "fps": (float, f"real-time frame rate; budget = 1000/fps ms on the p99 [{d.fps}]"),
    }
    for name, option in POLICY_OPTIONS.items():
        kind, text = helps[name]
        run.add_argument(option, dest=name, type=kind, default=getattr(d, name), help=text,
                         metavar="N" if kind is int else "X")
    run.add_argument("--keep-latencies", action="store_true",
                     help="include every latency (ns) in the result")

    sub.add_parser("manifest", help="print the device and tool manifest as JSON")
    sub.add_parser("backends", help="list backends and whether their runtime imports")
    return parser


def _cmd_run(args) -> int:
    from runners.core import RunConfig, run, write_json_atomic

    policy = Policy(**{name: getattr(args, name) for name in POLICY_OPTIONS})
    try:
        policy.check()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = {}
    if args.backend == "ort":
        options = {"threads": args.threads, "opt_level": args.opt_level,
                   "io_binding": not args.no_io_binding}
    config = RunConfig(
        backend=args.backend,
        model=args.model,
        batch=args.batch,
        shapes=dict(args.shape),
        seed=args.seed,
        options=options,
        policy=policy,
        keep_latencies=args.keep_latencies,
    )
    result = run(config)
    if args.out:
        write_json_atomic(result, args.out)
    else:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    if result["status"] == "failed":
        err = result["error"]
        print(f"error: {err['type']}: {err['message']}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_INVALID if result["status"] == "invalid" else EXIT_OK


def _cmd_backends() -> int:
    import importlib

    from runners.backends import REGISTRY

    runtimes = {"ort": "onnxruntime", "null": None}
    for name in sorted(REGISTRY):
        mod = runtimes.get(name)
        if mod is None:
            status = "available"
        else:
            try:
                version = importlib.import_module(mod).__version__
                status = f"available ({mod} {version})"
            except ImportError as exc:
                status = f"unavailable ({exc})"
        print(f"{name}\t{status}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "manifest":
        from runners.manifest import device_manifest, tool_manifest

        json.dump({"device": device_manifest(), "tool": tool_manifest()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    return _cmd_backends()
