"""Hand-written cell documents for the tests of ``host advise`` and ``host compare --by``: a
width-scaled family (mnv2_w*_cifar10, p99 an exact line in FLOPs), two unrelated one-model
architectures (8×8 digits_cnn, 224 px squeezenet1_1_imagenet) and an int8 variant; every figure is
written here, none computed by the code under test."""

from __future__ import annotations

import json
from pathlib import Path

# mnv2 family: FLOPs = w² · F1, p99 = SLOPE · FLOPs + ICPT (ms), interval ± HALF.
F1, SLOPE, ICPT, HALF = 4e8, 2.5e-8, 2.0, 0.5
WIDTHS = (0.25, 0.5, 0.75, 1.0)


def cell(model, *, p99, ci=None, p50=None, p50_ci=None, flops=1e8, params=1e6, peaks=(50.0, 52.0, 55.0),
         power=None, precision="fp32", batch=1, device="pi4", campaign="c1", shape=(1, 3, 32, 32),
         sessions=None, verdict="VALID"):
    """One stored cell: latency p99/p50 with their 95 % intervals, memory peaks per process,
    an optional power block (``{"power_w_mean", "energy_mj_per_inference"}``, with a meter)."""
    slug = f"ort-b{batch}-tall" + ("" if precision == "fp32" else f"-{precision}")
    p50 = p99 * 0.8 if p50 is None else p50
    procs = [{"round": i + 1, "memory": {"rss_mib_peak": peak, "rss_mib_before_session": 40.0},
              "sessions": [{"latency_ms_p50": s} for s in (sessions[i] if sessions else [p50])]}
             for i, peak in enumerate(peaks)]
    doc = {
        "schema_version": "2.0", "status": "ok",
        "cell": {"campaign": campaign, "device": device, "model_stem": model, "config": slug},
        "metrics": {"params": params, "flops": flops},
        "latency": {"latency_ms_p99": p99, "latency_ms_p99_ci95": list(ci) if ci else None,
                    "latency_ms_p50": p50, "latency_ms_p50_ci95": list(p50_ci) if p50_ci else None,
                    "processes": len(peaks)},
        "memory": {"rss_mib_peak": max(peaks), "rss_mib_before_session": 40.0},
        "repetitions": {"processes": procs},
        "configuration": {"batch": batch, "backend": "ort"},
        "runtime": {"name": "ort"},
        "verdict": {"result": verdict, "checks": {"no_drift": verdict == "VALID"}},
        "info": {"input_shape": list(shape)},
        "timestamps": {"start_utc": "2026-12-01T00:00:00Z"},
        "precision": {"name": precision, "recipe": None, "metrics": {}},
    }
    if power is not None:
        doc["power"] = {"meter": {"meter": "um25c"}, **power}
    return doc


def family(**extra) -> list[dict]:
    """mnv2_w{0.25,0.5,0.75,1}_cifar10: p99 2.625, 4.5, 7.625, 12 ms (± 0.5), FLOPs w²·4e8, params
    w²·2e6, peak RSS 50..55 + 20·w² MiB over three processes, 3 W and 1 mJ on a meter."""
    out = []
    for w in WIDTHS:
        p99 = SLOPE * w * w * F1 + ICPT
        peaks = tuple(p + 20 * w * w for p in (50.0, 52.0, 55.0))
        out.append(cell(f"mnv2_w{w:g}_cifar10", p99=p99, ci=(p99 - HALF, p99 + HALF), flops=w * w * F1,
                        params=w * w * 2e6, peaks=peaks, **extra,
                        power={"power_w_mean": 3.0, "energy_mj_per_inference": 1.0}))
    return out


def strangers() -> list[dict]:
    """Two unrelated one-model architectures: 8×8 digits_cnn (no meter) and 224 px SqueezeNet."""
    return [cell("digits_cnn", p99=0.02, ci=(0.018, 0.022), flops=1e5, params=1e4, shape=(1, 1, 8, 8)),
            cell("squeezenet1_1_imagenet", p99=20.0, ci=(19.0, 22.0), flops=7e8, params=1.2e6,
                 peaks=(95.0, 98.0, 104.0), shape=(1, 3, 224, 224),
                 power={"power_w_mean": 4.0, "energy_mj_per_inference": 9.0})]


def write_cells(root: Path, cells) -> Path:
    """Each cell as ``root/<campaign>/<device>/<stem>__<config>.json`` (the store's layout)."""
    for doc in cells:
        info = doc["cell"]
        path = root / info["campaign"] / info["device"] / f"{info['model_stem']}__{info['config']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc), encoding="utf-8")
    return root
