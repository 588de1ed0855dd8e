"""The reference workload: a small, fixed, deterministic numpy computation that runs on every board
image (standard library + numpy only), timed with the runners' own protocol
(:func:`runners.core.timed_loop`, :func:`runners.stats.summarize`).

``host bench`` runs it once per round per board, beside the cells, so that a change of the whole
machine's speed within a campaign shows in it (a machine trend, reported once); ``host calibrate``
runs it in several short campaigns to learn the device's noise levels.

The workload: a fixed-seed float32 ``(SIZE, SIZE)`` activation through ``LAYERS`` dense layers
(``x = tanh(x @ w_i)``), about 1 ms per call on a desktop core (tens of ms on a small ARM
board). BLAS runs one thread (:func:`pin_blas_threads`, called before numpy loads by
``python -m runners reference``): a multi-threaded BLAS would measure the scheduler more than the core.
"""

from __future__ import annotations

import os

#: Workload shape: SIZE x SIZE float32, LAYERS dense+tanh layers, fixed seed.
SIZE = 256
LAYERS = 4
SEED = 20261207
NAME = f"matmul-tanh-f32-{SIZE}x{SIZE}x{LAYERS}"
#: Loop settings: warm-up >= 10 calls and 0.1 s; timed loop >= 30 calls and 0.3 s; cap 5 s each.
WARMUP_ITERATIONS, WARMUP_S = 10, 0.1
MIN_ITERATIONS, MIN_S, MAX_S = 30, 0.3, 5.0
#: The environment variables that pin the BLAS libraries numpy may use to one thread.
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
#: Whether :func:`pin_blas_threads` ran before numpy loaded (None: not called in this process).
_PINNED = None


def pin_blas_threads() -> bool:
    """Set every :data:`BLAS_THREAD_VARS` to 1. Returns whether it came in time: False when numpy
    was already imported (its BLAS may then keep its own thread count)."""
    import sys

    global _PINNED
    for name in BLAS_THREAD_VARS:
        os.environ[name] = "1"
    _PINNED = "numpy" not in sys.modules
    return _PINNED


class Workload:
    """The fixed arrays and one call (:meth:`__call__`); :meth:`checksum` of one call's output."""

    def __init__(self):
        import numpy as np

        rng = np.random.default_rng(SEED)
        self.x = rng.standard_normal((SIZE, SIZE)).astype(np.float32)
        scale = np.float32(1.0 / np.sqrt(SIZE))
        self.weights = [(rng.standard_normal((SIZE, SIZE)).astype(np.float32) * scale) for _ in range(LAYERS)]
        self.out = None

    def __call__(self) -> None:
        import numpy as np

        x = self.x
        for w in self.weights:
            x = np.tanh(x @ w)
        self.out = x

    def checksum(self) -> str:
        """sha256 of one call's output bytes (the same on every run on one machine)."""
        import hashlib

        self()
        return hashlib.sha256(self.out.tobytes()).hexdigest()


def run_reference(min_iterations: int = MIN_ITERATIONS, min_s: float = MIN_S, max_s: float = MAX_S) -> dict:
    """Warm up and time the workload in this process. Returns the result document:
    ``kind`` "reference", ``workload`` (name, shape, seed, ``checksum``), ``numpy``,
    ``blas_threads`` (the variables' values, ``pinned_before_numpy``), ``warmup``, ``latency``
    (:func:`runners.stats.summarize`), ``latency_ms_p50``, ``samples`` (timed calls),
    ``noise_within`` (the loop's robust CoV, IQR / 1.349 / median: the within-process noise, an sd
    of log latency for small values), ``others_cpu_share`` and ``steal_share`` (CPU time other
    processes and other guests took during the timed loop, share of the machine's capacity:
    :mod:`runners.environment`; None where not exposed), ``timestamps``.
    """
    import numpy as np

    import runners
    from runners import environment, stats
    from runners.core import timed_loop
    from runners.util import utc_now

    pinned = bool(_PINNED)
    start = utc_now()
    work = Workload()
    checksum = work.checksum()
    warm, w0, w1, _ = timed_loop(work, WARMUP_ITERATIONS, int(WARMUP_S * 1e9), int(max_s * 1e9))
    before = environment.snapshot()
    lat, t0, t1, max_hit = timed_loop(work, min_iterations, int(min_s * 1e9), int(max_s * 1e9))
    env = environment.delta(before, environment.snapshot())
    summary = stats.summarize(lat, loop_duration_ns=t1 - t0)
    return {
        "schema_version": runners.SCHEMA_VERSION,
        "kind": "reference",
        "workload": {"name": NAME, "size": SIZE, "layers": LAYERS, "dtype": "float32", "seed": SEED,
                     "checksum": checksum},
        "numpy": np.__version__,
        "blas_threads": {**{k: os.environ.get(k) for k in BLAS_THREAD_VARS}, "pinned_before_numpy": pinned},
        "warmup": {"iterations": len(warm), "duration_s": (w1 - w0) / 1e9},
        "latency": dict(summary, max_duration_hit=max_hit),
        "latency_ms_p50": summary["latency_ms_p50"],
        "samples": len(lat),
        "noise_within": summary["cov_robust"],
        "others_cpu_share": env["others_cpu_share"],
        "steal_share": env["steal_share"],
        "timestamps": {"start_utc": start, "end_utc": utc_now()},
    }


