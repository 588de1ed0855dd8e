"""Command line of the runners package (argparse; standard library only).

    python -m runners run MODEL [--backend ort] [--out result.json] ...
        [--fidelity-inputs IN.npz --fidelity-out OUT.npz] [--dataset DIR]
    python -m runners manifest
    python -m runners backends
    python -m runners reference [--json]

Exit codes of ``run``: 0 status ok, 3 status invalid, 4 status failed (a result document
is written in all three cases), 2 bad command line; anything else is a crash.
"""

from __future__ import annotations

import argparse
import errno
import io
import json
import math
import os
import sys

import runners
from runners.core import Policy
from runners.errors import EXIT_FAILED, EXIT_INVALID, EXIT_NO_RESULT, EXIT_OK, InputSpecError

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
    "sessions": "--sessions",
    "drift_max": "--drift-max",
    "mode_share_max": "--mode-share-max",
    "throttle_max": "--throttle-max",
    "load_max": "--load-max",
}


#: Policy field -> runner option of the scenario (:mod:`runners.scenarios`); passed only for a scenario
#: other than single-stream, so a single-stream command line is what it was before scenarios.
SCENARIO_OPTIONS = {
    "scenario": "--scenario",
    "rate_hz": "--rate-hz",
    "duration_s": "--duration",
    "samples_per_query": "--samples-per-query",
    "streams": "--streams",
    "qps": "--qps",
    "latency_bound_ms": "--latency-bound-ms",
    "search_runs": "--search-runs",
    "arrival_seed": "--arrival-seed",
}


def policy_to_argv(policy: Policy) -> list:
    """``python -m runners run`` options that reproduce ``policy`` exactly."""
    argv = []
    for name, option in POLICY_OPTIONS.items():
        argv += [option, repr(getattr(policy, name))]
    if policy.scenario != _DEFAULT.scenario:
        argv += ["--scenario", policy.scenario]
        for name, option in SCENARIO_OPTIONS.items():
            if name != "scenario":
                argv += [option, repr(getattr(policy, name))]
    return argv

_POLICY_HELP = """\
Protocol: --sessions fresh sessions one after another, each: load, first inference
(timed alone), warm-up until both --warmup-iters and --warmup-s are met, timed loop
until both --min-iters and --min-s are met, capped at --max-s (each). Defaults: one
session; warm-up >= 20 iterations and >= 1 s; timed loop >= 100 iterations and
>= 5 s, cap 60 s (see runners.core.Policy). The result is INVALID when a loop hit its
cap, drifted (--drift-max), had a second mode (--mode-share-max) or saw the CPU
clock change (--throttle-max); load from other processes and a wide CoV warn.
One process cannot measure process-to-process variation: `host bench` repeats
processes until its interval is precise enough.
"""


#: Policy field -> (lowest, highest) value its option takes; every value is finite.
POLICY_RANGES = {
    "warmup_min_iterations": (0, 10**9),
    "warmup_min_s": (0, 86400),
    "min_iterations": (1, 10**9),
    "min_duration_s": (0, 86400),
    "max_duration_s": (0.001, 86400),
    "cov_max": (1e-9, 1000),
    "fps": (0.001, 100000),
    "sessions": (1, 1000),
    "drift_max": (1e-9, 1000),
    "mode_share_max": (1e-9, 1),
    "throttle_max": (1e-9, 1000),
    "load_max": (1e-9, 1000),
}
#: backend option -> (lowest, highest); other int and float options need only be finite
BACKEND_RANGES = {"threads": (0, 1024)}
BATCH_RANGE = (1, 65536)
SEED_RANGE = (0, 2**32 - 1)


def number_type(kind, lo=None, hi=None):
    """An argparse ``type``: ``kind(text)``, finite and within ``[lo, hi]`` (None: unbounded)
    (argparse.ArgumentTypeError otherwise, which argparse reports as exit 2 naming the option)."""
    def parse(text):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f"from {lo} to {hi}" if lo is not None else "finite"
            raise argparse.ArgumentTypeError(f"{text!r}: expected {span}")
        return value

    parse.__name__ = kind.__name__
    return parse


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
    run.add_argument("--backend", default="ort", help=_backend_help())
    run.add_argument("--out", help="write the result JSON here (atomically); default stdout")
    run.add_argument("--batch", type=number_type(int, *BATCH_RANGE), default=1,
                     help="value of a dynamic leading (batch) dimension, %d..%d [1]" % BATCH_RANGE)
    run.add_argument("--shape", type=_shape_arg, action="append", default=[],
                     metavar="NAME=D1xD2x...", help="full shape of one input (repeatable)")
    run.add_argument("--seed", type=number_type(int, *SEED_RANGE), default=0,
                     help=f"seed of the random inputs, {SEED_RANGE[0]}..{SEED_RANGE[1]} [0]")
    _add_backend_options(run)
    d = _DEFAULT
    helps = {
        "warmup_min_iterations": (int, f"warm-up minimum iterations [{d.warmup_min_iterations}]"),
        "warmup_min_s": (float, f"warm-up minimum seconds [{d.warmup_min_s}]"),
        "min_iterations": (int, f"timed minimum iterations [{d.min_iterations}]"),
        "min_duration_s": (float, f"timed minimum seconds [{d.min_duration_s}]"),
        "max_duration_s": (float, f"cap in seconds on warm-up and on the timed loop, each "
                                  f"[{d.max_duration_s}]"),
        "cov_max": (float, f"robust or classic CoV above this warns [{d.cov_max}]"),
        "fps": (float, f"real-time frame rate; budget = 1000/fps ms on the p99 [{d.fps}]"),
        "sessions": (int, f"fresh sessions in this process, one after another [{d.sessions}]"),
        "drift_max": (float, f"largest trend across a timed loop for VALID [{d.drift_max}]"),
        "mode_share_max": (float, "largest share of iterations beyond ±50 %% of the median "
                                  f"[{d.mode_share_max}]"),
        "throttle_max": (float, f"largest CPU clock change across a loop [{d.throttle_max}]"),
        "load_max": (float, f"other processes' CPU share above this warns [{d.load_max}]"),
    }
    for name, option in POLICY_OPTIONS.items():
        kind, text = helps[name]
        lo, hi = POLICY_RANGES[name]
        run.add_argument(option, dest=name, type=number_type(kind, lo, hi), default=getattr(d, name),
                         help=f"{text} ({lo:g}..{hi:g})", metavar="N" if kind is int else "X")
    _add_scenario_options(run)
    run.add_argument("--keep-latencies", action="store_true",
                     help="include every latency (ns) in the result")
    run.add_argument("--counters", action="store_true",
                     help="Linux perf stat around session 0's timed loop (hardware and software "
                          "counters, per inference, IPC, miss rates, SMIR); the result gains counters")
    run.add_argument("--counter-events", metavar="E1,E2,...",
                     help="events for --counters (default: ModelGauge's eight hardware events, "
                          "task-clock, context-switches, page-faults)")
    _add_evaluation_options(run)

    sub.add_parser("manifest", help="print the device and tool manifest as JSON")
    ref = sub.add_parser("reference", help="time the fixed reference workload (runners.reference)")
    ref.add_argument("--json", action="store_true", help="print the whole result JSON")
    backends = sub.add_parser("backends", help="list backends and whether their runtime imports")
    backends.add_argument("--json", action="store_true",
                          help="print every backend's descriptor (options, levels, precisions, families)")
    return parser


def _add_scenario_options(run: argparse.ArgumentParser) -> None:
    """``--scenario`` and its settings (:mod:`runners.scenarios`)."""
    from runners.scenarios import SCENARIOS

    d = _DEFAULT
    group = run.add_argument_group(
        "scenario", "how the timed loop issues queries (runners.scenarios); paced and multi-stream run one "
        "fixed schedule per session instead of --min-iters/--min-s")
    names = [f"{s.name}" + ("" if s.implemented else f" ({s.reason})") for s in SCENARIOS.values()]
    group.add_argument("--scenario", choices=list(SCENARIOS), default=d.scenario, metavar="NAME",
                       help="one of: " + ", ".join(names) + f" [{d.scenario}]")
    group.add_argument("--rate-hz", dest="rate_hz", type=number_type(float, 0.001, 100000), default=d.rate_hz,
                       metavar="X", help=f"paced / multi-stream: queries per second [{d.rate_hz:g}]")
    group.add_argument("--duration", dest="duration_s", type=number_type(float, 0.001, 7 * 86400),
                       default=d.duration_s, metavar="X",
                       help=f"paced / multi-stream: seconds of schedule per session [{d.duration_s:g}]")
    group.add_argument("--samples-per-query", dest="samples_per_query", type=number_type(int, 1, 65536),
                       default=d.samples_per_query, metavar="N",
                       help="multi-stream: samples per query, a multiple of the batch "
                            f"[{d.samples_per_query}]")
    _add_load_options(group)


def _add_load_options(group) -> None:
    """offline / server settings (:mod:`runners.load`)."""
    d = _DEFAULT
    group.add_argument("--streams", type=number_type(int, 1, 1024), default=d.streams, metavar="K",
                       help=f"offline / server: concurrent streams, as the backend's descriptor makes them "
                            f"[{d.streams}]")
    group.add_argument("--qps", type=number_type(float, 0.001, 1e6), default=d.qps, metavar="X",
                       help=f"server: Poisson arrivals per second (the search's first target) [{d.qps:g}]")
    group.add_argument("--latency-bound-ms", dest="latency_bound_ms", type=number_type(float, 0.001, 1e7),
                       default=d.latency_bound_ms, metavar="X",
                       help=f"server: the p99 bound, ms [{d.latency_bound_ms:g}]")
    group.add_argument("--search-runs", dest="search_runs", type=number_type(int, 0, 100),
                       default=d.search_runs, metavar="N",
                       help="server: runs of the peak-QPS search at most (0: one run at --qps) "
                            f"[{d.search_runs}]")
    group.add_argument("--arrival-seed", dest="arrival_seed", type=number_type(int, 0, 2**32 - 1),
                       default=d.arrival_seed, metavar="N",
                       help=f"server: the arrivals' seed [{d.arrival_seed}]")


def _add_evaluation_options(run: argparse.ArgumentParser) -> None:
    """Untimed evaluation after the timed loops (``runners.evaluation``)."""
    group = run.add_argument_group(
        "untimed evaluation", "after the timed loops, in one fresh session; latency and memory figures "
        "exclude it (see runners.evaluation)")
    group.add_argument("--fidelity-inputs", metavar="IN.npz",
                       help="one array per model input, leading axis = sample (each sample a complete "
                            "input, batch dimension included); the outputs go to --fidelity-out and the "
                            "result gains fidelity_outputs")
    group.add_argument("--fidelity-out", metavar="OUT.npz",
                       help="write the outputs here (atomically): one array per output, stacked per sample")
    group.add_argument("--dataset", metavar="DIR",
                       help="inputs.npy (N, *sample) + labels.npy (N,) [+ meta.json]: top-1/top-5 of "
                            "the first output, in batches of the cell's batch; the result gains accuracy")
    group.add_argument("--profile-prefix", metavar="PREFIX",
                       help="the runtime's own per-layer profiler on (ort: session profiling, a Chrome "
                            "trace JSON written at PREFIX_<time>.json when the session closes; the result "
                            "gains profile_file); slows every call: for a separate, untimed run")


def _backend_help() -> str:
    from runners.backends import descriptors

    names = [f"{d.name} ({d.summary})" for d in descriptors().values() if d.implemented]
    later = [d.name for d in descriptors().values() if not d.implemented]
    return ("one of: " + "; ".join(names) + (f"; not implemented yet: {', '.join(later)}" if later else "")
            + " [ort]")


def _add_backend_options(run: argparse.ArgumentParser) -> None:
    """One flag per option name declared by any backend's descriptor (unset: the backend's default).

    Raises:
        ValueError: two backends declare the same option name with different types or choices.
    """
    from runners.backends import descriptors

    seen = {}
    for desc in descriptors().values():
        for opt in desc.options:
            if opt.name in seen:
                first = seen[opt.name]
                if (first.kind, first.choices, first.flag) != (opt.kind, opt.choices, opt.flag):
                    raise ValueError(f"backends declare option {opt.name!r} differently")
                continue
            seen[opt.name] = opt
            users = [d.name for d in descriptors().values() if d.option(opt.name) is not None]
            text = f"{'/'.join(users)}: {opt.help}"
            if opt.kind is bool:
                action = "store_false" if opt.default else "store_true"
                run.add_argument(opt.flag, dest=opt.name, action=action, default=argparse.SUPPRESS, help=text)
            else:
                kind = number_type(opt.kind, *BACKEND_RANGES.get(opt.name, (None, None))) \
                    if opt.kind in (int, float) else opt.kind
                run.add_argument(opt.flag, dest=opt.name, type=kind, choices=opt.choices,
                                 default=argparse.SUPPRESS, help=f"{text} [{opt.default}]",
                                 metavar=None if opt.choices else opt.kind.__name__.upper())


def backend_options(args) -> dict:
    """The chosen backend's options from parsed ``run`` arguments (its defaults for unset ones).

    Raises:
        ValueError: an option flag the chosen backend does not declare.
    """
    from runners.backends import descriptors

    names = {o.name for d in descriptors().values() for o in d.options}
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    desc = descriptors().get(args.backend)
    if desc is None or not desc.implemented:
        return given  # the run fails with BackendUnavailableError, in its result document
    stray = sorted(n for n in given if desc.option(n) is None)
    if stray:
        own = ", ".join(o.flag for o in desc.options) or "none"
        raise ValueError(f"{', '.join('--' + n.replace('_', '-') for n in stray)}: not an option of "
                         f"backend {desc.name!r} (its options: {own})")
    return desc.resolve(given)


def _cmd_run(args, out) -> int:
    from runners.core import RunConfig, run
    from runners.fileio import write_json_atomic

    policy = Policy(**{name: getattr(args, name) for name in (*POLICY_OPTIONS, *SCENARIO_OPTIONS)})
    try:
        policy.check()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        options = backend_options(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.profile_prefix:
        options["profile_prefix"] = args.profile_prefix
    if bool(args.fidelity_inputs) != bool(args.fidelity_out):
        print("error: --fidelity-inputs and --fidelity-out go together", file=sys.stderr)
        return 2
    config = RunConfig(
        backend=args.backend,
        model=args.model,
        batch=args.batch,
        shapes=dict(args.shape),
        seed=args.seed,
        options=options,
        policy=policy,
        keep_latencies=args.keep_latencies,
        fidelity_inputs=args.fidelity_inputs,
        fidelity_out=args.fidelity_out,
        dataset=args.dataset,
        counters=args.counters or bool(args.counter_events),
        counter_events=tuple(e.strip() for e in (args.counter_events or "").split(",") if e.strip()),
    )
    result = run(config)
    if args.out:
        try:
            write_json_atomic(result, args.out)
        except OSError as exc:
            code = errno.errorcode.get(exc.errno, "?") if exc.errno else "?"
            print(f"error: ResultWriteError: cannot write {args.out}: {exc.strerror or exc} ({code})",
                  file=sys.stderr)
            return EXIT_NO_RESULT
    else:
        json.dump(result, out, indent=2)
        out.write("\n")
    if result["status"] == "failed":
        err = result["error"]
        print(f"error: {err['type']}: {err['message']}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_INVALID if result["status"] == "invalid" else EXIT_OK


def _cmd_backends(out, as_json: bool = False) -> int:
    """One line per backend, ``NAME<TAB>STATUS``: ``available [(MODULE VERSION)]``,
    ``unavailable (ERROR)`` (its runtime does not import) or ``not implemented (REASON)``."""
    from runners.backends import descriptors

    if as_json:
        docs = [dict(d.to_json(), status=_backend_status(d)) for d in descriptors().values()]
        json.dump(docs, out, indent=2)
        out.write("\n")
        return 0
    for name, desc in descriptors().items():
        status = _backend_status(desc)  # imports the runtime: anything it prints goes to stderr
        out.write(f"{name}\t{status}\n")
    return 0


def _backend_status(desc) -> str:
    import importlib

    if not desc.implemented:
        return f"not implemented ({desc.reason})"
    version = None
    for i, mod in enumerate(desc.runtime_modules):
        try:
            module = importlib.import_module(mod)
        except Exception as exc:  # ImportError, or a runtime library missing underneath (OSError)
            return f"unavailable ({exc})"
        if i == 0:
            version = f"{mod} {getattr(module, '__version__', 'unknown')}"
    return f"available ({version})" if version else "available"


def _cmd_reference(out, as_json: bool) -> int:
    """``python -m runners reference``: the result JSON, or one line (p50, calls, checksum)."""
    from runners.reference import run_reference

    result = run_reference()
    if as_json:
        json.dump(result, out, indent=2)
        out.write("\n")
    else:
        out.write(f"{result['workload']['name']}: p50 {result['latency_ms_p50']:.3f} ms over "
                  f"{result['samples']} calls (checksum {result['workload']['checksum'][:12]})\n")
    return 0


def reserve_stdout():
    """Keep this process's stdout for the runner's own output; returns the stream to write it to.

    Descriptor 1 is duplicated (the returned text stream writes to the copy) and then pointed at
    stderr (descriptor 2) for the rest of the process, so whatever else writes to stdout lands on
    stderr: ``print`` in a runtime's Python code (ONNX Runtime's "EP Error ... Falling back"
    lines, onnxruntime_inference_collection.py), C/C++ code writing to descriptor 1 or through
    its stdio buffer, child processes that inherit it. A swap of ``sys.stdout`` alone would miss
    all but the first. For the process entry point (``python -m runners``): descriptor 1 is not
    restored, so a C library's stdio buffer flushed at exit still goes to stderr. When
    descriptor 1 or 2 is not open, returns ``sys.stdout`` and changes nothing.
    """
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):
        return sys.stdout
    try:
        os.dup2(2, 1)
    except OSError:
        os.close(saved)
        return sys.stdout
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    return io.TextIOWrapper(io.FileIO(saved, "w", closefd=True), encoding=encoding, errors="backslashreplace")


def main(argv=None, out=None) -> int:
    """Run the command in ``argv``; its output (result JSON, tables) goes to ``out``
    (default ``sys.stdout``; ``python -m runners`` passes :func:`reserve_stdout`'s stream)."""
    out = sys.stdout if out is None else out
    stdout, sys.stdout = sys.stdout, out  # argparse prints --help and --version to sys.stdout
    try:
        args = build_parser().parse_args(argv)
    finally:
        sys.stdout = stdout
    if args.command == "run":
        return _cmd_run(args, out)
    if args.command == "reference":
        return _cmd_reference(out, args.json)
    if args.command == "manifest":
        from runners.manifest import device_manifest, tool_manifest

        json.dump({"device": device_manifest(), "tool": tool_manifest()}, out, indent=2)
        out.write("\n")
        return 0
    return _cmd_backends(out, args.json)
