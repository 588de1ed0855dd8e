"""Power sampler against a 50 Hz emulated meter: dropped samples and timestamp jitter (run by hand).

    .venv/bin/python bench/sampler_jitter.py [--seconds 60] [--rate-hz 50] [--meter auto|emu|fake]
                                             [--pace auto|on|off]

Meter (``--meter``):

* ``emu``: ``tests/meter_emu.InaEmulator(rate_hz)`` (a pty speaking the INA line protocol) read
  through the real driver, ``host.power.meters.open_meter("ina226", emu.port, period_ms=1000/rate)``;
* ``fake``: an in-process meter whose ``read()`` sleeps to its next 1/rate tick (its own
  monotonic grid) and returns that tick's sequence number and time;
* ``auto`` (default): ``emu`` when the emulator and the driver import, else ``fake``. The
  report says which was used. A failure to *open* the emulated meter is an error, not a
  fallback.

Pacing (``--pace``): ``auto`` runs the sampler unpaced for both meters (their ``read()`` blocks
until the next update: the INA logger streams lines), ``on`` forces the absolute-schedule
polling loop, ``off`` the back-to-back loop.

Reported: samples, expected samples (sampling time x rate), dropped = the sampler's
``dropped`` + gaps in the meter's sequence numbers (target 0), errors, the host inter-sample
interval (median / p99 / max, ms) and its jitter (std and p99 of |interval - period|, ms), the
meter's own interval for reference, and the delivery delay (host time minus meter time, minus
its minimum: how much the host timestamps wander against the meter's clock). Writes
``bench/out/sampler_jitter.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from host.power import Sampler, count_seq_gaps  # noqa: E402
from host.power.meters.base import Meter, Reading  # noqa: E402

TARGET_DROPPED = 0


class TickMeter(Meter):
    """In-process fake: ``read()`` blocks until the next tick of its own 1/rate grid."""

    scope = "board-input"
    read_blocks = True

    def __init__(self, rate_hz: float):
        self.update_interval_s = 1.0 / rate_hz
        self.period_ns = int(round(1e9 / rate_hz))
        self.name = self.model = "fake-tick"
        self.port = None
        self._t0 = time.monotonic_ns()

    def read(self) -> Reading:
        now = time.monotonic_ns() - self._t0
        k = now // self.period_ns + 1
        time.sleep((k * self.period_ns - now) / 1e9)
        return Reading(power_w=2.0 + 0.5 * (k % 2), voltage_v=5.0, current_a=0.4, meter_seq=int(k),
                       meter_time_s=k * self.period_ns / 1e9)

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"meter": "fake-tick", "model": self.model, "port": None, "scope": self.scope,
                "update_interval_s": self.update_interval_s}


def _import_emulator():
    """(InaEmulator, open_meter) or raise ImportError."""
    try:
        from tests.meter_emu import InaEmulator
    except ImportError:
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from meter_emu import InaEmulator
    import host.power.meters.ina  # noqa: F401  (the driver must exist too)
    from host.power.meters import open_meter

    return InaEmulator, open_meter


def open_source(kind: str, rate_hz: float, stack: contextlib.ExitStack):
    """(meter, description) for ``kind`` in auto|emu|fake; cleanup goes on ``stack``."""
    note = None
    if kind in ("auto", "emu"):
        try:
            InaEmulator, open_meter = _import_emulator()
        except ImportError as exc:
            if kind == "emu":
                raise SystemExit(f"--meter emu: cannot import the emulator or driver: {exc}") from exc
            note = f"emulator not importable ({exc}); fell back to the in-process fake"
        else:
            emu = InaEmulator(rate_hz)
            if hasattr(emu, "__enter__"):
                emu = stack.enter_context(emu) or emu
            else:
                if hasattr(emu, "start"):
                    emu.start()
                for name in ("close", "stop"):
                    if hasattr(emu, name):
                        stack.callback(getattr(emu, name))
                        break
            period_ms = int(round(1000.0 / rate_hz))
            meter = open_meter("ina226", emu.port, period_ms=period_ms)
            stack.callback(meter.close)
            return meter, {"source": "emu", "what": f"tests/meter_emu.InaEmulator({rate_hz:g}) + "
                                                  f"host.power.meters.ina.InaLogger(period_ms={period_ms})",
                           "port": str(emu.port)}
    meter = TickMeter(rate_hz)
    return meter, {"source": "fake", "what": "in-process TickMeter (read() sleeps to its next tick)",
                   "note": note}


def _pct(values, q):
    return float(np.percentile(values, q)) if len(values) else None


def analyse(samples, sampler: Sampler, rate_hz: float, meter) -> dict:
    period_ms = 1000.0 / rate_hz
    t = np.array([s.t_mono_ns for s in samples], dtype=np.int64)
    dur_s = (sampler.t_stop_ns - sampler.t_start_ns) / 1e9
    iv = np.diff(t) / 1e6
    dev = np.abs(iv - period_ms)
    gaps = count_seq_gaps(samples)
    numbered = [s for s in samples if s.meter_time_s is not None]
    mt = np.array([s.meter_time_s for s in numbered], dtype=np.float64)
    miv = np.diff(mt) * 1e3
    delay = (np.array([s.t_mono_ns for s in numbered], dtype=np.int64) / 1e6 - mt * 1e3)
    delay = delay - delay.min() if delay.size else delay
    return {
        "samples": len(samples),
        "expected_samples": int(round(dur_s * rate_hz)),
        "sampling_s": dur_s,
        "dropped": sampler.dropped + gaps["missing"],
        "dropped_sampler": sampler.dropped,
        "meter_seq": gaps,
        "meter_driver_dropped": getattr(meter, "dropped", None),
        "errors": len(sampler.errors),
        "error_messages": [m for _, m in sampler.errors[:5]],
        "fatal_error": sampler.fatal_error,
        "period_ms": period_ms,
        "interval_ms": {"median": _pct(iv, 50), "p99": _pct(iv, 99),
                        "min": float(iv.min()) if iv.size else None,
                        "max": float(iv.max()) if iv.size else None},
        "jitter_ms": {"std": float(np.std(iv - period_ms)) if iv.size else None,
                      "p99_abs": _pct(dev, 99), "max_abs": float(dev.max()) if dev.size else None},
        "meter_interval_ms": {"median": _pct(miv, 50), "p99": _pct(miv, 99),
                              "max": float(miv.max()) if miv.size else None},
        "delivery_delay_ms": {"p50": _pct(delay, 50), "p99": _pct(delay, 99),
                              "max": float(delay.max()) if delay.size else None,
                              "note": "host t_mono - meter time, minus its minimum"},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="sampling time [60]")
    ap.add_argument("--rate-hz", type=float, default=50.0, help="meter update rate [50]")
    ap.add_argument("--meter", choices=("auto", "emu", "fake"), default="auto")
    ap.add_argument("--pace", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "sampler_jitter.json"))
    args = ap.parse_args(argv)

    with contextlib.ExitStack() as stack:
        meter, source = open_source(args.meter, args.rate_hz, stack)
        pace = {"on": True, "off": False}.get(args.pace, False)
        sampler = Sampler(meter, rate_hz=args.rate_hz, pace=pace)
        print(f"meter: {source['source']} — {source['what']}")
        if source.get("note"):
            print(f"  ({source['note']})")
        print(f"sampler: {sampler.rate_hz:g} Hz, {'paced' if sampler.paced else 'unpaced'}, "
              f"{args.seconds:g} s ...", flush=True)
        sampler.start()
        try:
            time.sleep(args.seconds)
        finally:
            samples = sampler.stop()
        res = analyse(samples, sampler, args.rate_hz, meter)
        meter_info = meter.describe()

    ok = res["dropped"] <= TARGET_DROPPED and res["errors"] == 0 and res["fatal_error"] is None
    iv, jit, md = res["interval_ms"], res["jitter_ms"], res["delivery_delay_ms"]
    print(f"samples {res['samples']} (expected {res['expected_samples']}), dropped {res['dropped']} "
          f"(sampler {res['dropped_sampler']}, meter seq gaps {res['meter_seq']['missing']}, "
          f"repeats {res['meter_seq']['duplicates']}), errors {res['errors']}"
          + (f", FATAL {res['fatal_error']}" if res["fatal_error"] else ""))
    print(f"interval ms: median {iv['median']:.3f}  p99 {iv['p99']:.3f}  max {iv['max']:.3f}  "
          f"(period {res['period_ms']:.3f})")
    print(f"jitter ms:   std {jit['std']:.3f}  p99 |interval - period| {jit['p99_abs']:.3f}  "
          f"max {jit['max_abs']:.3f}")
    if md["p50"] is not None:
        mi = res["meter_interval_ms"]
        print(f"meter interval ms: median {mi['median']:.3f} p99 {mi['p99']:.3f}; delivery delay ms "
              f"(vs its min): p50 {md['p50']:.3f} p99 {md['p99']:.3f} max {md['max']:.3f}")
    print(f"target: dropped <= {TARGET_DROPPED} -> {'PASS' if ok else 'MISS'}")

    doc = {
        "benchmark": "sampler_jitter",
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1m": os.getloadavg()[0]},
        "settings": {"seconds": args.seconds, "rate_hz": args.rate_hz, "meter": args.meter,
                     "pace": args.pace, "paced": sampler.paced},
        "meter": {**source, "describe": meter_info},
        "target_dropped": TARGET_DROPPED,
        "pass": ok,
        "result": res,
    }
    from runners.fileio import write_json_atomic

    write_json_atomic(doc, args.out)
    print(f"wrote {os.path.relpath(args.out, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
