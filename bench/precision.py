"""int8 against fp32 on this machine's CPU, for every example model (run by hand).

    .venv/bin/python bench/precision.py [--quick] [--calibrate minmax]

One local campaign over ``examples/models`` (the five random-init CNNs, SqueezeNet and the trained
digits CNN) at ``--precision fp32,int8`` (ONNX Runtime static QDQ, per-channel weights,
calibration on seeded random data, or on the digits training inputs where the model's dataset
folder holds ``calibration.npy``), interleaved as ``host bench`` runs it. Per model: the p50 of
each precision with its 95 % CI, the int8/fp32 p50 ratio, the file size ratio, the int8
variant's top-1 agreement with the fp32 model on the host, and top-1 accuracy at both
precisions where the model has a dataset. Writes ``bench/out/precision.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the --quick preset (default: the default preset)")
    ap.add_argument("--calibrate", default="minmax", choices=("minmax", "entropy", "percentile"))
    args = ap.parse_args()

    from host.campaign.protocol import PRESETS
    from host.campaign.run import discover_models, run_campaign
    from host.lab.benchconfig import BenchConfig
    from host.lab.inventory import local_device
    from host.models.precision import Recipe

    protocol, policy = PRESETS["quick" if args.quick else "default"]
    models = discover_models([ROOT / "examples" / "models"])
    with tempfile.TemporaryDirectory(prefix="eg-precision-") as tmp:
        result = run_campaign(models, [local_device()], BenchConfig(policy=policy), results=Path(tmp),
                              campaign="precision", protocol=protocol,
                              precisions=("fp32", Recipe("int8", calibration=args.calibrate)))
    rows = {}
    for cell in result.cells:
        stem = cell["cell"]["model_stem"]
        name = (cell.get("precision") or {}).get("name", "fp32")
        rows.setdefault(stem, {})["int8" if name.startswith("int8") else name] = cell
    report = []
    for stem, by in rows.items():
        fp32, int8 = by.get("fp32"), by.get("int8")
        report.append(_row(stem, fp32, int8))
    out = ROOT / "bench" / "out" / "precision.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'model':32} {'fp32 ms':>9} {'int8 ms':>9} {'ratio':>6} {'size':>6} {'agree':>6} "
          f"{'acc32':>6} {'acc8':>6}")
    for r in report:
        print(f"{r['model']:32} {_f(r['fp32_p50_ms'], '.3f'):>9} {_f(r['int8_p50_ms'], '.3f'):>9} "
              f"{_f(r['p50_ratio'], '.2f'):>6} {_f(r['size_ratio'], '.2f'):>6} "
              f"{_f(r['top1_agreement'], '.1%'):>6} {_f(r['accuracy_fp32'], '.1%'):>6} "
              f"{_f(r['accuracy_int8'], '.1%'):>6}")
    return 0


def _row(stem: str, fp32: dict | None, int8: dict | None) -> dict:
    def p50(cell):
        return (cell or {}).get("latency", {}).get("latency_ms_p50")

    def ci(cell):
        return (cell or {}).get("latency", {}).get("latency_ms_p50_ci95")

    recipe = ((int8 or {}).get("precision") or {}).get("recipe") or {}
    src = Path((fp32 or {}).get("model", {}).get("host_path") or "")
    variant_size = recipe.get("size_bytes") or recipe.get("variant_size_bytes")
    size_ratio = (variant_size / src.stat().st_size) if variant_size and src.is_file() else None
    a32 = ((fp32 or {}).get("accuracy") or {}).get("top1")
    a8 = ((int8 or {}).get("accuracy") or {}).get("top1")
    return {
        "model": stem, "fp32_p50_ms": p50(fp32), "fp32_p50_ci95": ci(fp32), "int8_p50_ms": p50(int8),
        "int8_p50_ci95": ci(int8),
        "p50_ratio": (p50(int8) / p50(fp32)) if p50(int8) and p50(fp32) else None,
        "size_ratio": size_ratio,
        "top1_agreement": ((int8 or {}).get("fidelity") or {}).get("top1_agreement"),
        "weights": ((int8 or {}).get("fidelity") or {}).get("weights"),
        "accuracy_fp32": a32, "accuracy_int8": a8,
        "accuracy_drop": (a32 - a8) if a32 is not None and a8 is not None else None,
        "status": [(fp32 or {}).get("status"), (int8 or {}).get("status")],
        "calibration": recipe.get("calibration_data") or recipe.get("calibration"),
    }


def _f(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


if __name__ == "__main__":
    raise SystemExit(main())
