"""Static metrics of an ONNX model, computed on the host without running it.

:func:`model_metrics` reads one ``.onnx`` file and returns a JSON-serialisable dict: parameter
count, multiply-accumulate count (MACs), critical datapath length (CDL), operator counts, weight
bytes, largest activation, a static memory-footprint estimate, weight precision, and the declared
inputs/outputs. :func:`metrics_or_error` wraps it for the benchmark loop, which must go on past a
corrupt model.

Conventions (each is also stated where it is implemented):

* **params** -- elements of the *weight tensors*: initializers and ``Constant``-node values (of
  the main graph and of any subgraph) that some node consumes, each stored tensor counted once
  however many nodes share it. Excluded: rank-0 scalars (operator settings such as ``Clip``
  bounds, per-tensor quantization scales and zero points), tensors of dtype int64, bool or
  string (shapes, axes, indices, masks), and int32 tensors whose every use is a
  shape/axes/indices input slot (``Reshape`` shape, ``Slice`` starts/ends/axes/steps,
  ``Unsqueeze``/``Squeeze`` axes, ``Gather`` indices, ...). Floating tensors and 8/4/16-bit and
  int32 (quantized-bias) integer tensors of rank >= 1 count. Unused initializers do not count.
  Why the count differs from PyTorch's ``sum(p.numel())`` for the same network: the exporter
  folds eval-mode BatchNorm into the preceding Conv (PyTorch counts BN gamma and beta, 2*C; the
  folded Conv gains a bias of C), and ``torch.onnx.export`` stores identical tensors once (the
  folded biases of an untrained, random-init network are all zero and are shared through
  Identity nodes). Example: torchvision ``mobilenet_v2(num_classes=10)`` has 2,236,682 PyTorch
  params and 2,206,818 here; BN running mean/var are PyTorch buffers, not params, but are ONNX
  params when BN is *not* folded.
* **macs** -- multiply-accumulates for one inference at the resolved input shapes.
  Conv: ``N*Cout*prod(out_spatial)*(Cin/group)*prod(kernel)`` (grouped and depthwise included);
  ConvTranspose: ``N*Cin*prod(in_spatial)*(Cout/group)*prod(kernel)`` (every input element
  times every kernel tap it scatters to); Gemm: ``M*N*K``; MatMul: ``prod(batch dims)*M*N*K``
  (also MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv). **Bias is ignored** (the
  convention of thop, fvcore and torchvision's published figures; onnx-tool adds one per output
  element for a bias). Element-wise arithmetic and activations (Add, Sub, Mul, Div, Relu, Clip,
  Sigmoid, HardSigmoid, HardSwish, Tanh, ...): **1 MAC per output element** whatever the
  function's real cost (onnx-tool instead weights e.g. exp as 32); variadic Sum/Max/Min/Mean:
  ``n_inputs-1`` per output element. BatchNormalization / Instance- / Layer- / Group-
  normalization, Softmax, LogSoftmax: 1 per output element. MaxPool/AveragePool/LpPool:
  ``prod(output)*prod(kernel_shape)``; GlobalAveragePool/GlobalMaxPool and Reduce*: 1 per input
  element. Everything else (Reshape, Transpose, Concat, Resize, Gather, Cast, ...) is 0. Ops
  inside If/Loop/Scan bodies are not counted; if such a body holds a counted op, ``macs`` is
  None (trip count / branch unknown). ``macs_by_op`` gives the share of each op type, so the
  conv+linear-only figure of published tables is ``macs_by_op['Conv'] + ['Gemm'] + ...``.
  ``flops`` is exactly ``2*macs``. Checked: torchvision ``mobilenet_v2`` at 1x3x224x224 gives
  Conv+Gemm = 300,774,272 with a 1000-class head, torchvision's published "0.30 GFLOPS" (which
  are MACs); ``mobilenet_v3_small`` gives 56,510,400 (published 0.06); Conv/Gemm agree exactly
  with onnx-tool once its bias adds are taken off (``bench/metrics_crosscheck.py``).
* **cdl** -- critical datapath length, Langerman et al. 2020, "Beyond Floating-Point Ops: CNN
  Performance Prediction with Critical Datapath Length" (IEEE HPEC): the number of operators on
  the longest path of the main graph's DAG (vertices = operator nodes, edges = tensor
  producer -> consumer, including outer-scope tensors read inside a subgraph). Only datapath
  operators count: nodes that depend, directly or not, on a graph input. ``Constant`` nodes
  and weight-side nodes (an ``Identity`` or ``DequantizeLinear`` of an initializer) are left
  out. An If/Loop/Scan node counts once; its body is not expanded. Computed with
  :func:`networkx.dag_longest_path_length` (which counts edges) + 1.
* **largest activation** -- the largest tensor of the main graph that is not a weight: graph
  inputs, node outputs and graph outputs (the input image counts as an activation), in bytes
  at its inferred dtype and shape.
"""

from __future__ import annotations

import math
import os
from typing import Any

import networkx as nx
import numpy as np
import onnx
import onnx.numpy_helper

from host.errors import InputNotFoundError, ModelFormatError
from host.models.onnxgraph import (
    PARAMS_RULE,
    all_graphs,
    constant_value,
    dtype_name,
    load_onnx,
    node_reads,
    tensor_nbytes,
    weight_precision,
    weight_tensors,
)
from runners.util import file_sha256

__all__ = ["PARAMS_RULE", "critical_datapath_length", "metrics_or_error", "model_metrics"]

# --------------------------------------------------------------------------------------------
# operator tables (MAC counting)

# 1 MAC per output element (times n_inputs-1 for the variadic ones).
_ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Neg", "Abs", "Reciprocal", "Sqrt", "Exp", "Log",
    "Erf", "Sin", "Cos", "Tan", "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu",
    "ThresholdedRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus",
    "Softsign", "Mish", "Sum", "Max", "Min", "Mean",
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
    "Softmax", "LogSoftmax",
})
_VARIADIC = frozenset({"Sum", "Max", "Min", "Mean"})
_WINDOW_POOL = frozenset({"MaxPool", "AveragePool", "LpPool"})
# 1 MAC per input element.
_PER_INPUT = frozenset({
    "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceSum", "ReduceMean",
    "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceSumSquare",
})
# op_type -> (data input slot, weight input slot) for the convolution family.
_CONV = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
# op_type -> (A slot, B slot) for the matrix-product family.
_MATMUL = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}
_COUNTED = (
    _ELEMENTWISE | _WINDOW_POOL | _PER_INPUT | set(_CONV) | set(_MATMUL)
    | {"Gemm", "ConvTranspose"}
)
_CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})


# --------------------------------------------------------------------------------------------
# public API


# long: its docstring is the key-by-key contract of the returned dict (~50 of its lines)
def model_metrics(
    path: str | os.PathLike,
    *,
    batch: int = 1,
    shapes: dict[str, list[int]] | None = None,
) -> dict:
    """Static metrics of the ONNX model at ``path``; nothing is executed.

    Shapes: each graph input whose leading dim is symbolic (or unset) gets ``batch`` there;
    ``shapes`` replaces whole input shapes by name (``{"x": [1, 3, 224, 224]}``). Then ONNX
    shape inference (``onnx.shape_inference.infer_shapes``, strict mode off, data propagation
    on) gives every tensor's shape.

    Returns a dict with exactly these keys (units in brackets):

    * ``params`` [elements] and ``params_rule`` (one line, ``PARAMS_RULE``): see the module
      docstring; briefly, elements of consumed initializers and Constant values, excluding
      rank-0 scalars, int64/bool/string tensors and int32 tensors used only as
      shape/axes/indices inputs.
    * ``macs`` [multiply-accumulates], ``flops`` (= 2 * macs exactly), ``macs_by_op``
      (op_type -> MACs), ``macs_reason``: ``macs``/``flops`` are None -- never a guess -- when a
      counted op has an unresolved tensor shape, and ``macs_reason`` names the tensor, the node
      and any graph input left with symbolic dims (``macs_by_op`` is then ``{}``); otherwise
      ``macs_reason`` is None.
      Conventions (bias ignored; element-wise ops 1 per output element; pooling per window
      tap) are in the module docstring.
    * ``cdl`` [operators]: critical datapath length (Langerman et al. 2020): operators on the
      longest producer->consumer path from the graph inputs; Constant and weight-side nodes
      (Identity of an initializer) excluded, control-flow nodes counted once.
    * ``nodes`` [operators] and ``op_counts`` (op_type -> count): all nodes of the main graph,
      Constant nodes included, subgraph bodies not expanded.
    * ``weight_bytes`` [bytes]: the weight tensors counted in ``params`` at their stored
      precision (4-bit types packed two per byte).
    * ``largest_activation_bytes`` [bytes] and ``largest_activation`` (tensor name): the
      largest non-weight tensor of the main graph (graph inputs included); None when any
      such tensor's shape or dtype is unresolved.
    * ``footprint_bytes`` [bytes] = ``weight_bytes + largest_activation_bytes``, a static
      memory-footprint estimate; None when the largest activation is unknown.
    * ``nonzeros`` [elements]: the elements of the weight tensors counted in ``params`` that are not
      zero (a pruned model's count); ``density`` = ``nonzeros / params`` (None without params);
      ``nonzeros_by_layer``: one row per weight of a Conv, ConvTranspose, Gemm or MatMul node of
      the main graph (slot 1; MatMul also slot 0 when a weight), ``{"node", "op", "weight",
      "params", "nonzeros", "density"}``, a weight shared by several nodes listed once.
    * ``precision``: "fp32", "fp16", "bf16", "int8" or "mixed" (also "fp64", "fp8", "int4"
      where they occur, "none" for a model without weights or float inputs), from the dtypes
      of the rank>=2 weight tensors (kernels and matrices; biases, scales and zero points are
      ignored; int8 and uint8 are both "int8"); ``weight_dtypes`` (dtype -> elements) of all
      counted weight tensors.
    * ``opset`` (default-domain opset), ``ir_version``, ``producer`` ("name version").
    * ``inputs`` / ``outputs``: ``[{"name", "dtype", "shape"}]`` as declared in the file; dtype
      is numpy-style ("float32"); shape is a list of int or str ("N" for a symbolic dim, "?"
      for an unset one), or None when the rank is unknown.
    * ``sha256`` (hex, of the ``.onnx`` file's bytes, external data not included) and
      ``size_bytes`` [bytes] of the file.

    Raises:
        InputNotFoundError: ``path`` does not exist.
        ModelFormatError: the file is not ONNX, cannot be parsed (garbage, text, truncated
            protobuf), its external data cannot be loaded, or ``onnx.checker`` rejects it.
        ValueError: ``shapes`` names an input the graph does not have, or ``batch`` < 1.
    """
    path = os.fspath(path)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    model = load_onnx(path)
    graph = model.graph
    init_names = {t.name for t in graph.initializer}

    declared_inputs = [_describe_value(v) for v in graph.input if v.name not in init_names]
    declared_outputs = [_describe_value(v) for v in graph.output]

    weights = weight_tensors(model)
    weight_dtypes: dict[str, int] = {}
    weight_bytes = 0
    for w in weights:
        weight_dtypes[w.dtype] = weight_dtypes.get(w.dtype, 0) + w.count
        weight_bytes += tensor_nbytes(w.dtype, w.count) or 0

    op_counts: dict[str, int] = {}
    for node in graph.node:
        op_counts[node.op_type] = op_counts.get(node.op_type, 0) + 1

    unresolved_inputs, changed = _fix_input_shapes(graph, init_names, batch, shapes)
    if changed:  # declared shapes downstream of a changed input are stale: infer them anew
        _forget_inferred_shapes(graph)
    shape_map, inference_error = _infer(model)
    if inference_error is not None:
        macs, macs_by_op, reason = None, {}, inference_error
        act_name, act_bytes = None, None
    else:
        macs, macs_by_op, reason = _count_macs(graph, shape_map)
        act_name, act_bytes = _largest_activation(graph, shape_map, init_names)
    if reason is not None and unresolved_inputs:
        reason += "; graph input " + ", ".join(unresolved_inputs) + " (pass shapes=)"

    size_bytes, sha256 = os.path.getsize(path), file_sha256(path)
    return {
        "params": sum(w.count for w in weights),
        "params_rule": PARAMS_RULE,
        "macs": macs,
        "flops": None if macs is None else 2 * macs,
        "macs_reason": reason,
        "macs_by_op": macs_by_op,
        "cdl": critical_datapath_length(graph),
        "nodes": len(graph.node),
        "op_counts": op_counts,
        "weight_bytes": weight_bytes,
        "largest_activation_bytes": act_bytes,
        "largest_activation": act_name,
        "footprint_bytes": None if act_bytes is None else weight_bytes + act_bytes,
        **_nonzeros(model, weights),
        "precision": weight_precision(weights, declared_inputs),
        "weight_dtypes": weight_dtypes,
        "opset": _default_opset(model),
        "ir_version": int(model.ir_version),
        "producer": " ".join(s for s in (model.producer_name, model.producer_version) if s),
        "inputs": declared_inputs,
        "outputs": declared_outputs,
        "sha256": sha256,
        "size_bytes": size_bytes,
    }


def _nonzeros(model: onnx.ModelProto, weights: list) -> dict:
    """``nonzeros``, ``density`` and ``nonzeros_by_layer`` of :func:`model_metrics`."""
    values: dict[str, Any] = {}
    for g in all_graphs(model.graph):
        values.update({t.name: t for t in g.initializer})
        for node in g.node:
            if node.op_type == "Constant" and node.output:
                tensor = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
                if tensor is not None:
                    values[node.output[0]] = tensor
    counts: dict[str, int] = {}
    for w in weights:
        try:
            counts[w.name] = int(np.count_nonzero(onnx.numpy_helper.to_array(values[w.name])))
        except (KeyError, ValueError, TypeError):  # value_floats etc.: count every element
            counts[w.name] = w.count
    sizes = {w.name: w.count for w in weights}
    producer = {o: n for n in model.graph.node for o in n.output}
    layers, seen = [], set()
    for node in model.graph.node:
        slots = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (1,), "MatMul": (0, 1)}.get(node.op_type, ())
        for slot in slots:
            name = node.input[slot] if slot < len(node.input) else ""
            while name not in sizes and name in producer and producer[name].op_type == "Identity":
                name = producer[name].input[0]
            if name in sizes and name not in seen:
                seen.add(name)
                layers.append({"node": node.name, "op": node.op_type, "weight": name, "params": sizes[name],
                               "nonzeros": counts[name],
                               "density": round(counts[name] / sizes[name], 6) if sizes[name] else None})
    total, nonzeros = sum(sizes.values()), sum(counts.values())
    return {"nonzeros": nonzeros, "density": round(nonzeros / total, 6) if total else None,
            "nonzeros_by_layer": layers}


def metrics_or_error(path: str | os.PathLike, **kw: Any) -> dict:
    """:func:`model_metrics`, or ``{"error": {"type": ..., "message": ...}}`` for a bad file.

    :class:`~host.errors.ModelFormatError` and :class:`~host.errors.InputNotFoundError`
    become the error dict (``type`` is the class name, ``message`` its text), and so does
    the ``ValueError`` of a ``shapes``/``batch`` that does not fit this model (``type``
    "InputSpecError", as the runner names it), so a benchmark loop can record the model and
    go on; other exceptions propagate.
    """
    try:
        return model_metrics(path, **kw)
    except (ModelFormatError, InputNotFoundError) as exc:
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}
    except ValueError as exc:
        return {"error": {"type": "InputSpecError", "message": str(exc)}}


def critical_datapath_length(graph: onnx.GraphProto) -> int:
    """Critical datapath length of ``graph`` [operators] (Langerman et al. 2020).

    Vertices are the graph's datapath operators: nodes that read a graph input or the output
    of another datapath operator (so ``Constant`` nodes and weight-side nodes such as an
    ``Identity`` of an initializer are left out). An edge joins the node that produces a tensor
    to each node that reads it; reads inside an If/Loop/Scan body are edges to the control-flow
    node, which counts as one operator. Returns the number of vertices on the longest path
    (``networkx.dag_longest_path_length``, which counts edges, plus one), or 0 for a graph
    without datapath operators. ``graph.node`` must be topologically sorted, as the ONNX
    checker requires.
    """
    init_names = {t.name for t in graph.initializer}
    on_datapath = {v.name for v in graph.input if v.name not in init_names}
    dag = nx.DiGraph()
    producer: dict[str, int] = {}
    for i, node in enumerate(graph.node):  # nodes are topologically sorted (checker)
        reads = node_reads(node)
        if not reads & on_datapath:
            continue
        dag.add_node(i)
        for name in reads:
            src = producer.get(name)
            if src is not None:
                dag.add_edge(src, i)
        for out in node.output:
            if out:
                producer[out] = i
                on_datapath.add(out)
    if dag.number_of_nodes() == 0:
        return 0
    return nx.dag_longest_path_length(dag) + 1


def _default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _describe_value(v: onnx.ValueInfoProto) -> dict:
    t = v.type
    if t.HasField("tensor_type"):
        dtype = dtype_name(t.tensor_type.elem_type)
        shape = None
        if t.tensor_type.HasField("shape"):
            shape = []
            for d in t.tensor_type.shape.dim:
                if d.HasField("dim_value"):
                    shape.append(int(d.dim_value))
                elif d.dim_param:
                    shape.append(d.dim_param)
                else:
                    shape.append("?")
        return {"name": v.name, "dtype": dtype, "shape": shape}
    return {"name": v.name, "dtype": t.WhichOneof("value") or "unknown", "shape": None}


# --------------------------------------------------------------------------------------------
# shapes


def _fix_input_shapes(graph, init_names, batch, shapes) -> tuple[list[str], bool]:
    """Write batch/override dims into the graph inputs.

    Returns (descriptions of inputs still not fully known, whether any input dim changed).
    """
    inputs = {v.name: v for v in graph.input if v.name not in init_names}
    shapes = dict(shapes or {})
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise ValueError(
            f"shapes names unknown input(s) {unknown}; the model's inputs are {sorted(inputs)}"
        )
    unresolved = []
    changed = False
    for name, v in inputs.items():
        if not v.type.HasField("tensor_type"):
            continue
        tt = v.type.tensor_type
        if name in shapes:
            new_dims = [int(d) for d in shapes[name]]
            old_dims = [d.dim_value if d.HasField("dim_value") else None
                        for d in tt.shape.dim] if tt.HasField("shape") else None
            if old_dims != new_dims:
                changed = True
                tt.ClearField("shape")
                tt.shape.SetInParent()  # a rank-0 override still needs a shape field
                for d in new_dims:
                    tt.shape.dim.add().dim_value = d
            continue
        if not tt.HasField("shape"):
            unresolved.append(f"'{name}' has unknown rank")
            continue
        dims = tt.shape.dim
        if len(dims) > 0 and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch  # also clears dim_param (oneof)
            changed = True
        left = [d.dim_param or "?" for d in dims if not d.HasField("dim_value")]
        if left:
            unresolved.append(f"'{name}' has symbolic dims {left}")
    return unresolved, changed


def _forget_inferred_shapes(graph) -> None:
    """Drop value_info and graph-output shapes (dtypes kept) so inference recomputes them."""
    graph.ClearField("value_info")
    for v in graph.output:
        if v.type.HasField("tensor_type"):
            v.type.tensor_type.ClearField("shape")


def _infer(model: onnx.ModelProto):
    """name -> (dtype, dims or None) for every main-graph tensor; or (None, reason)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001 -- any inference failure only nulls macs/footprint
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"ONNX shape inference failed: {msg}"
    g = inferred.graph
    shape_map: dict[str, tuple[str, list[int] | None]] = {}
    for v in list(g.input) + list(g.value_info) + list(g.output):
        if not v.type.HasField("tensor_type"):
            continue
        tt = v.type.tensor_type
        dims = None
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            dims = [int(d.dim_value) for d in tt.shape.dim]
        prev = shape_map.get(v.name)
        if prev is None or prev[1] is None:
            shape_map[v.name] = (dtype_name(tt.elem_type), dims)
    for t in g.initializer:
        shape_map[t.name] = (dtype_name(t.data_type), list(t.dims))
    for node in g.node:
        if node.op_type == "Constant" and node.output:
            value = constant_value(node)
            if value is not None:
                shape_map[node.output[0]] = value
    return shape_map, None


def _largest_activation(graph, shape_map, init_names):
    """(name, bytes) of the largest non-weight main-graph tensor, or (None, None)."""
    constants = {n.output[0] for n in graph.node if n.op_type == "Constant" and n.output}
    names = [v.name for v in graph.input if v.name not in init_names]
    for node in graph.node:
        if node.op_type != "Constant":
            names.extend(o for o in node.output if o)
    names.extend(v.name for v in graph.output)
    best_name, best_bytes = None, -1
    for name in dict.fromkeys(names):
        if name in init_names or name in constants:
            continue
        dtype, dims = shape_map.get(name, (None, None))
        nbytes = None if dims is None or dtype is None else tensor_nbytes(dtype, math.prod(dims))
        if nbytes is None:
            return None, None
        if nbytes > best_bytes:
            best_name, best_bytes = name, nbytes
    return (best_name, best_bytes) if best_name is not None else (None, None)


# --------------------------------------------------------------------------------------------
# MACs


class _Unresolved(Exception):
    pass


def _count_macs(graph, shape_map):
    """(macs, macs_by_op, None) or (None, {}, reason)."""
    by_op: dict[str, int] = {}
    try:
        for i, node in enumerate(graph.node):
            if node.op_type in _CONTROL_FLOW:
                _reject_counted_body(node, i)
                continue
            if node.op_type not in _COUNTED:
                continue
            macs = _node_macs(node, i, shape_map)
            by_op[node.op_type] = by_op.get(node.op_type, 0) + macs
    except _Unresolved as exc:
        return None, {}, str(exc)
    return sum(by_op.values()), by_op, None


def _label(node, index: int) -> str:
    return f"'{node.name or f'#{index}'}' ({node.op_type})"


def _reject_counted_body(node, index):
    for attr in node.attribute:
        bodies = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for body in bodies:
            for g in all_graphs(body):
                inner = sorted({n.op_type for n in g.node if n.op_type in _COUNTED})
                if inner:
                    raise _Unresolved(
                        f"node {_label(node, index)} has a subgraph with counted ops "
                        f"{inner}; MACs depend on the branch/trip count taken at run time"
                    )


def _node_macs(node, index, shape_map) -> int:
    def dims(slot: int, kind: str = "input") -> list[int]:
        names = node.input if kind == "input" else node.output
        name = names[slot] if slot < len(names) else ""
        shape = shape_map.get(name, (None, None))[1] if name else None
        if shape is None:
            raise _Unresolved(f"shape of {kind} '{name}' to node {_label(node, index)} unresolved")
        return shape

    def attr(name, default):
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    op = node.op_type
    if op in _CONV:
        x_slot, w_slot = _CONV[op]
        dims(x_slot)
        w = dims(w_slot)
        y = dims(0, "output")
        return math.prod(y) * math.prod(w[1:])  # N*Cout*spatial * (Cin/g)*kernel
    if op == "ConvTranspose":
        x = dims(0)
        w = dims(1)  # [Cin, Cout/group, *kernel]
        dims(0, "output")
        return math.prod(x) * math.prod(w[1:])
    if op == "Gemm":
        a = dims(0)
        dims(1)
        y = dims(0, "output")
        k = a[0] if attr("transA", 0) else a[1]
        return math.prod(y) * k
    if op in _MATMUL:
        a_slot, b_slot = _MATMUL[op]
        a = dims(a_slot)
        dims(b_slot)
        y = dims(0, "output")
        return math.prod(y) * a[-1]
    if op in _WINDOW_POOL:
        dims(0)
        y = dims(0, "output")
        return math.prod(y) * math.prod(attr("kernel_shape", []))
    if op in _PER_INPUT:
        return math.prod(dims(0))
    # element-wise family
    y = dims(0, "output")
    for slot, name in enumerate(node.input):
        if name:
            dims(slot)
    per_element = max(1, sum(1 for n in node.input if n) - 1) if op in _VARIADIC else 1
    return math.prod(y) * per_element


