"""Compare host.models.metrics MAC/param counts with onnx-tool's profile, per op type (run by hand).

    python bench/metrics_crosscheck.py MODEL.onnx [MODEL.onnx ...] [--batch N]
        [--shape input=1,3,224,224]

For each model it prints, per op type: our MACs, onnx-tool's MACs, and onnx-tool's MACs less
one per output element of a biased Conv/ConvTranspose/Gemm (onnx-tool counts the bias add,
host.models.metrics follows thop/fvcore/torchvision and ignores it). Conv/Gemm/MatMul should agree
exactly on the bias-adjusted column; element-wise and pooling ops differ by convention
(onnx-tool weights exp as 32, div as 4, GlobalAveragePool as inputs + 4*outputs; host.models.metrics
counts 1 per element). onnx-tool's ConvTranspose formula (output volume x Cout/g x kernel)
also differs from ours (input volume x Cout/g x kernel). Needs ``pip install onnx-tool``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys

import numpy as np
import onnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from host.models.metrics import model_metrics

_BIASED = {"Conv": 3, "ConvTranspose": 3, "Gemm": 3}  # op -> input count when a bias is given
_LINEAR = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def onnx_tool_profile(path: str, ours: dict, batch: int, shapes: dict) -> tuple[dict, dict, int]:
    """(macs by op, bias-adjusted macs by op, params) from onnx-tool at our input shapes."""
    import onnx_tool

    feeds = {}
    for inp in ours["inputs"]:
        if inp["name"] in shapes:
            shape = list(shapes[inp["name"]])
        else:
            shape = [d if isinstance(d, int) else 1 for d in inp["shape"] or []]
            if inp["shape"] and not isinstance(inp["shape"][0], int):
                shape[0] = batch
        feeds[inp["name"]] = np.zeros(shape, dtype=np.dtype(inp["dtype"]))
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        model = onnx_tool.Model(path, {"verbose": False})
        graph = model.graph
        graph.graph_reorder_nodes()
        graph.shape_infer(feeds)
        graph.profile()
    raw: dict[str, int] = {}
    adjusted: dict[str, int] = {}
    for node in graph.nodemap.values():
        macs = round(node.macs[0])
        raw[node.op_type] = raw.get(node.op_type, 0) + macs
        if len([i for i in node.input if i]) == _BIASED.get(node.op_type, -1):
            macs -= math.prod(graph.tensormap[node.output[0]].get_shape())
        adjusted[node.op_type] = adjusted.get(node.op_type, 0) + macs
    return raw, adjusted, int(graph.params)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--shape", action="append", default=[], metavar="NAME=D0,D1,...",
                    help="override an input shape, e.g. input=1,3,224,224 (repeatable)")
    args = ap.parse_args(argv)
    shapes = {}
    for item in args.shape:
        name, _, dims = item.partition("=")
        shapes[name] = [int(d) for d in dims.split(",")]
    for path in args.models:
        known = {i.name for i in onnx.load(path, load_external_data=False).graph.input}
        ours = model_metrics(path, batch=args.batch,
                             shapes={k: v for k, v in shapes.items() if k in known})
        print(f"== {path}")
        print(f"   params ours {ours['params']:,}  ({ours['params_rule']})")
        if ours["macs"] is None:
            print(f"   macs: unresolved: {ours['macs_reason']}")
            continue
        try:
            raw, adjusted, tool_params = onnx_tool_profile(
                path, ours, args.batch, {k: v for k, v in shapes.items() if k in known})
        except ImportError:
            print("   onnx-tool not installed")
            raw, adjusted, tool_params = {}, {}, None
        if tool_params is not None:
            print(f"   params onnx-tool {tool_params:,}")
        print(f"   {'op':<22}{'ours':>16}{'onnx-tool':>16}{'onnx-tool-bias':>16}")
        for op in sorted(set(ours["macs_by_op"]) | {k for k, v in raw.items() if v}):
            print(f"   {op:<22}{ours['macs_by_op'].get(op, 0):>16,}"
                  f"{raw.get(op, 0):>16,}{adjusted.get(op, 0):>16,}")
        lin_ours = sum(ours["macs_by_op"].get(op, 0) for op in _LINEAR)
        lin_tool = sum(adjusted.get(op, 0) for op in _LINEAR)
        print(f"   {'conv+linear':<22}{lin_ours:>16,}{'':>16}{lin_tool:>16,}")
        print(f"   {'total':<22}{ours['macs']:>16,}{sum(raw.values()):>16,}"
              f"{sum(adjusted.values()):>16,}")
        print(f"   cdl {ours['cdl']}  nodes {ours['nodes']}  precision {ours['precision']}  "
              f"footprint {ours['footprint_bytes']:,} B  opset {ours['opset']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
