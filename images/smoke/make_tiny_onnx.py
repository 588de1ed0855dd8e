"""Regenerate ``images/smoke/tiny.onnx`` and ``tiny.expected.json`` (needs the ``onnx`` package).

    python images/smoke/make_tiny_onnx.py

The model: input ``x`` float32 [1, 3, 8, 8] -> Conv(4 filters, 3x3, pad 1) -> Relu ->
GlobalAveragePool -> Flatten -> Gemm(4 -> 2) -> output ``y`` float32 [1, 2]. Weights are
fixed (numpy seed 0), opset 13 and IR version 7 so that every runtime the images ship reads
it (ONNX Runtime 1.19 on JetPack 5, TensorRT 8.5 and 10). The expected output for the
deterministic input :func:`smoke_input` is computed here with a plain numpy reference and
stored beside the model; ``images/smoke_test.py`` compares the runtime's output with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OPSET = 13
IR_VERSION = 7


def smoke_input() -> np.ndarray:
    """The fixed input (same formula in images/smoke_test.py)."""
    return (np.arange(1 * 3 * 8 * 8, dtype=np.float32).reshape(1, 3, 8, 8) % 17 - 8.0) / 8.0


def weights():
    rng = np.random.default_rng(0)
    w_conv = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.5
    b_conv = rng.standard_normal(4).astype(np.float32) * 0.1
    w_fc = rng.standard_normal((2, 4)).astype(np.float32)  # Gemm with transB=1: [out, in]
    b_fc = rng.standard_normal(2).astype(np.float32) * 0.1
    return w_conv, b_conv, w_fc, b_fc


def reference(x: np.ndarray) -> np.ndarray:
    w_conv, b_conv, w_fc, b_fc = weights()
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros((n, 4, h, w), dtype=np.float64)
    for i in range(h):
        for j in range(w):
            patch = xp[:, :, i:i + 3, j:j + 3].astype(np.float64)
            conv[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w_conv.astype(np.float64))
    conv += b_conv[None, :, None, None]
    pooled = np.maximum(conv, 0).mean(axis=(2, 3))
    return (pooled @ w_fc.T.astype(np.float64) + b_fc).astype(np.float32)


def build():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w_conv, b_conv, w_fc, b_fc = weights()
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w_conv, "w_conv"), (b_conv, "b_conv"), (w_fc, "w_fc"), (b_fc, "b_fc"))]
    nodes = [
        helper.make_node("Conv", ["x", "w_conv", "b_conv"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w_fc", "b_fc"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "edgegauge_smoke",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, producer_name="edgegauge-images",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def main() -> None:
    model = build()
    (HERE / "tiny.onnx").write_bytes(model.SerializeToString())
    expected = reference(smoke_input())
    values = [float(v) for v in expected.ravel()]
    doc = {"input": {"name": "x", "shape": [1, 3, 8, 8], "formula": "(arange(192) % 17 - 8) / 8"},
           "output": {"name": "y", "shape": list(expected.shape), "values": values},
           "atol": 1e-4, "rtol": 1e-3}
    (HERE / "tiny.expected.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote tiny.onnx ({(HERE / 'tiny.onnx').stat().st_size} bytes), expected {expected.ravel()}")


if __name__ == "__main__":
    main()
