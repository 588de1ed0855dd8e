"""Our ``offline`` / ``server`` scenarios against MLPerf LoadGen's own Offline and Server (issue 24).

    .venv/bin/python bench/loadgen_compare.py [MODEL] [--streams 2] [--threads 1] [--duration 10]
        [--rounds 3] [--qps 150] [--latency-bound-ms 50]

Both sides drive the same K ONNX Runtime sessions (``runners.backends`` ``ort``, ``--threads`` intra-op
threads each, I/O bound once), one thread per session, one sample (batch 1) per query:

* ours: :func:`runners.streams.measure` (the code ``python -m runners run --scenario offline|server``
  runs): offline K streams back to back for ``--duration`` s; server seeded Poisson arrivals at ``--qps``
  (at least 662 queries) queued behind busy streams.
* LoadGen (PyPI ``mlcommons-loadgen``, module ``mlperf_loadgen``; ``TestMode.PerformanceOnly``): its
  SUT's ``issue_queries`` puts every sample in a FIFO queue that the same K threads drain, each calling
  ``QuerySamplesComplete`` when its inference returns. Offline: ``offline_expected_qps`` from our
  first offline run, ``min_duration_ms`` = ``--duration``; Server: ``server_target_qps`` = ``--qps``,
  ``server_target_latency_ns`` = the bound, ``min_duration_ms`` = ``--duration``, ``min_query_count`` 662.
  Figures from its ``mlperf_log_detail.txt`` (``result_samples_per_second``,
  ``result_completed_samples_per_sec``, ``result_99.00_percentile_latency_ns``,
  ``early_stopping_result``... as LoadGen names them).

Runs alternate A B A B (ours, LoadGen) for ``--rounds`` rounds per scenario; the script prints each run
and the medians with their ratio (ours / LoadGen). The issue's target: within ±5 %.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runners import streams  # noqa: E402
from runners.backends import get_backend  # noqa: E402
from runners.core import Policy  # noqa: E402
from runners.inputs import resolve_shapes, synthesize  # noqa: E402

DEFAULT_MODEL = ROOT / "examples" / "models" / "squeezenet1_1_imagenet.onnx"


def open_sessions(model: str, k: int, threads: int) -> list:
    """K prepared ort sessions (batch 1, seed 0), each warmed up by 50 inferences."""
    out = []
    for _ in range(k):
        b = get_backend("ort", {"threads": threads})
        b.load(model)
        specs = b.inputs()
        b.prepare(synthesize(specs, resolve_shapes(specs, batch=1, shapes={}), seed=0))
        for _ in range(50):
            b.infer()
        out.append(b)
    return out


def ours(backends: list, scenario: str, args) -> dict:
    policy = Policy(scenario=scenario, streams=len(backends), duration_s=args.duration, qps=args.qps,
                    latency_bound_ms=args.latency_bound_ms)
    _, _, _, block = streams.measure(backends, policy, 1)
    if scenario == "offline":
        return {"throughput_sps": block["throughput_sps"]}
    return {"qps_achieved": block["qps_achieved"], "latency_ms_p99_sample": block["latency_ms_p99_sample"],
            "latency_ms_p99_early_stopping": block["latency_ms_p99"],
            "latency_ms_p50": block["latency_ms_p50"], "queries": block["completed"]}


def _detail(path: Path) -> dict:
    """``mlperf_log_detail.txt``'s ``:::MLLOG {json}`` lines as ``{key: value}``."""
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith(":::MLLOG"):
            rec = json.loads(line[len(":::MLLOG"):])
            out[rec.get("key")] = rec.get("value")
    return out


def loadgen(backends: list, scenario: str, args, expected_qps: float) -> dict:
    """One LoadGen run of ``scenario`` on the same sessions; its figures from the detail log."""
    import mlperf_loadgen as lg

    work: queue.Queue = queue.Queue()

    def worker(b):
        while True:
            sample = work.get()
            if sample is None:
                return
            b.infer()
            lg.QuerySamplesComplete([lg.QuerySampleResponse(sample.id, 0, 0)])

    def issue(samples):
        for s in samples:
            work.put(s)

    threads = [threading.Thread(target=worker, args=(b,), daemon=True) for b in backends]
    for t in threads:
        t.start()
    settings = lg.TestSettings()
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_duration_ms = int(args.duration * 1000)
    if scenario == "offline":
        settings.scenario = lg.TestScenario.Offline
        settings.offline_expected_qps = expected_qps
    else:
        settings.scenario = lg.TestScenario.Server
        settings.server_target_qps = args.qps
        settings.server_target_latency_ns = int(args.latency_bound_ms * 1e6)
        settings.min_query_count = 662
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(1024, 1024, lambda ids: None, lambda ids: None)
    with tempfile.TemporaryDirectory() as tmp:
        log = lg.LogSettings()
        log.log_output.outdir = tmp
        log.log_output.copy_summary_to_stdout = False
        lg.StartTestWithLogSettings(sut, qsl, settings, log)
        detail = _detail(Path(tmp) / "mlperf_log_detail.txt")
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join()
    if scenario == "offline":
        return {"throughput_sps": detail.get("result_samples_per_second")}
    return {"qps_achieved": detail.get("result_completed_samples_per_sec"),
            "latency_ms_p99_sample": _ns_ms(detail.get("result_99.00_percentile_latency_ns")),
            "early_stopping": {k: v for k, v in detail.items() if "early_stopping" in str(k)},
            "latency_ms_p50": _ns_ms(detail.get("result_50.00_percentile_latency_ns")),
            "valid": detail.get("result_validity")}


def _ns_ms(v):
    return None if v is None else float(v) / 1e6


def _median(runs: list, key: str):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return float(np.median(vals)) if vals else None


def compare(backends: list, args) -> dict:
    out = {}
    for scenario, keys in (("offline", ("throughput_sps",)),
                           ("server", ("qps_achieved", "latency_ms_p99_sample", "latency_ms_p50"))):
        a_runs, b_runs = [], []
        expected = None
        for r in range(args.rounds):
            a_runs.append(ours(backends, scenario, args))
            expected = expected or a_runs[0].get("throughput_sps")
            b_runs.append(loadgen(backends, scenario, args, expected or args.qps))
            print(f"{scenario} round {r + 1}: ours {a_runs[-1]}  loadgen {b_runs[-1]}", flush=True)
        med = {k: (_median(a_runs, k), _median(b_runs, k)) for k in keys}
        out[scenario] = {k: {"ours": a, "loadgen": b, "ratio": a / b if a and b else None}
                         for k, (a, b) in med.items()}
        out[scenario]["runs"] = {"ours": a_runs, "loadgen": b_runs}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--qps", type=float, default=150.0)
    parser.add_argument("--latency-bound-ms", dest="latency_bound_ms", type=float, default=50.0)
    parser.add_argument("--json", help="write the comparison here")
    args = parser.parse_args()
    backends = open_sessions(args.model, args.streams, args.threads)
    try:
        result = compare(backends, args)
    finally:
        streams.close_streams(backends)
    for scenario in ("offline", "server"):
        for key, v in result[scenario].items():
            if key != "runs":
                ratio = f"{v['ratio']:.3f}" if v["ratio"] else "-"
                print(f"{scenario:8} {key:21} ours {v['ours']:.4g}  loadgen {v['loadgen']:.4g}  "
                      f"ratio {ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
