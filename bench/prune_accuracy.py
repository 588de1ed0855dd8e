"""Top-1 accuracy of the trained digits CNN against the pruning ratio, without fine-tune (run by hand).

    .venv/bin/python bench/prune_accuracy.py [--json]

Prunes ``examples/models/digits_cnn.onnx`` with :func:`host.models.prune.prune_model` at each
unstructured ratio (0.5 ... 0.99, global L1 magnitude) and each channel ratio (0.1 ... 0.9, L1 over
output channels), nothing re-trained, and runs each model with ONNX Runtime (CPU, one sample per call)
over the 360 held-out test digits of ``examples/datasets/digits``. Prints one line per ratio: sparsity
of the Conv/Gemm weights, top-1 accuracy, and top-1 agreement with the dense model. Takes a few seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
UNSTRUCTURED = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)
CHANNELS = (0.1, 0.25, 0.5, 0.75, 0.9)


def _predict(model, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.array([int(np.argmax(sess.run(None, {name: s[None]})[0])) for s in x])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print JSON rows instead of lines")
    args = ap.parse_args()

    import onnx

    from host.models.prune import PruneRecipe, prune_model

    data = ROOT / "examples" / "datasets" / "digits"
    x, y = np.load(data / "inputs.npy"), np.load(data / "labels.npy")
    dense = onnx.load(str(ROOT / "examples" / "models" / "digits_cnn.onnx"))
    ref = _predict(dense, x)
    rows = [{"method": "dense", "ratio": 0.0, "sparsity": 0.0, "params": None,
             "top1": float(np.mean(ref == y)), "agree": 1.0}]
    for method, ratios in (("unstructured", UNSTRUCTURED), ("channels", CHANNELS)):
        for ratio in ratios:
            model, summary = prune_model(dense, PruneRecipe(method, ratio))
            pred = _predict(model, x)
            rows.append({"method": method, "ratio": ratio, "sparsity": summary["sparsity"],
                         "params": summary["params"], "top1": float(np.mean(pred == y)),
                         "agree": float(np.mean(pred == ref))})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"digits_cnn, {len(y)} test digits, no fine-tune")
    print(f"{'method':<13}{'ratio':>6}{'sparsity':>10}{'weights':>9}{'top-1 %':>9}{'agree %':>9}")
    for r in rows:
        params = "-" if r["params"] is None else f"{r['params']:,}"
        print(f"{r['method']:<13}{r['ratio']:>6g}{r['sparsity']:>10.3f}{params:>9}"
              f"{100 * r['top1']:>9.1f}{100 * r['agree']:>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
