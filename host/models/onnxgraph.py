"""Reading an ONNX file for its static metrics: load it with checks, name and size its dtypes, walk
every (sub)graph, and tell which tensors are weights (:data:`PARAMS_RULE`, explained in
:mod:`host.models.metrics`) and what precision they give the model. Shared by
:mod:`host.models.metrics` and :mod:`host.models.precision`.
"""

from __future__ import annotations

import math
import os

import onnx
from onnx import TensorProto

from host.errors import InputNotFoundError, ModelFormatError

PARAMS_RULE = (
    "elements of initializers and Constant tensors consumed by a node, each stored tensor once; "
    "excluding rank-0 scalars, int64/bool/string tensors and int32 tensors used only as "
    "shape/axes/indices inputs"
)

# --------------------------------------------------------------------------------------------
# dtypes

_NUMPY_NAMES = {
    TensorProto.FLOAT: "float32",
    TensorProto.DOUBLE: "float64",
    TensorProto.FLOAT16: "float16",
    TensorProto.BFLOAT16: "bfloat16",
    TensorProto.INT8: "int8",
    TensorProto.UINT8: "uint8",
    TensorProto.INT16: "int16",
    TensorProto.UINT16: "uint16",
    TensorProto.INT32: "int32",
    TensorProto.UINT32: "uint32",
    TensorProto.INT64: "int64",
    TensorProto.UINT64: "uint64",
    TensorProto.BOOL: "bool",
    TensorProto.STRING: "string",
    TensorProto.COMPLEX64: "complex64",
    TensorProto.COMPLEX128: "complex128",
}

# Bits per element of each storable dtype (STRING has no fixed size).
_BITS = {
    "float32": 32, "float64": 64, "float16": 16, "bfloat16": 16,
    "int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32, "uint32": 32,
    "int64": 64, "uint64": 64, "bool": 8, "complex64": 64, "complex128": 128,
    "float8e4m3fn": 8, "float8e4m3fnuz": 8, "float8e5m2": 8, "float8e5m2fnuz": 8,
    "float8e8m0": 8, "int4": 4, "uint4": 4, "float4e2m1": 4, "int2": 2, "uint2": 2,
    "float6e2m3": 6, "float6e3m2": 6,
}

# Precision class of a weight dtype, for the ``precision`` key.
_PRECISION_CLASS = {
    "float32": "fp32", "float64": "fp64", "float16": "fp16", "bfloat16": "bf16",
    "int8": "int8", "uint8": "int8", "int4": "int4", "uint4": "int4",
    "float8e4m3fn": "fp8", "float8e4m3fnuz": "fp8", "float8e5m2": "fp8", "float8e5m2fnuz": "fp8",
}

_NEVER_WEIGHT_DTYPES = {"int64", "bool", "string"}


def dtype_name(elem_type: int) -> str:
    """numpy-style name of an ONNX element type (``'float32'``, ``'bfloat16'``, ...)."""
    if elem_type in _NUMPY_NAMES:
        return _NUMPY_NAMES[elem_type]
    try:
        return TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"unknown({elem_type})"


def tensor_nbytes(dtype: str, count: int) -> int | None:
    """Bytes to store ``count`` elements of ``dtype`` (sub-byte types packed); None if unsized."""
    bits = _BITS.get(dtype)
    if bits is None:
        return None
    return (count * bits + 7) // 8


# --------------------------------------------------------------------------------------------
# operator tables

# op_type -> input slots that carry shapes, axes, indices or sizes rather than data.
SHAPE_SLOTS: dict[str, frozenset[int]] = {
    op: frozenset(slots)
    for op, slots in {
        "Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,),
        "Slice": (1, 2, 3, 4), "Squeeze": (1,), "Unsqueeze": (1,), "Pad": (1, 3),
        "Resize": (1, 2, 3), "Upsample": (1,), "Gather": (1,), "GatherElements": (1,),
        "GatherND": (1,), "Scatter": (1,), "ScatterElements": (1,), "ScatterND": (1,),
        "TopK": (1,), "Split": (1,), "Range": (0, 1, 2), "CumSum": (1,), "OneHot": (1,),
        "Trilu": (1,), "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,),
        "ReduceMin": (1,), "ReduceProd": (1,), "ReduceL1": (1,), "ReduceL2": (1,),
        "ReduceLogSum": (1,), "ReduceLogSumExp": (1,), "ReduceSumSquare": (1,),
        "NonMaxSuppression": (2,), "RoiAlign": (2,), "Compress": (1,),
    }.items()
}

# --------------------------------------------------------------------------------------------
# loading


def load_onnx(path: str) -> onnx.ModelProto:
    """The model at ``path`` with its external data, passed by ``onnx.checker``.

    Raises:
        InputNotFoundError: no such file.
        ModelFormatError: a folder, unreadable, not an ONNX protobuf, or rejected by the checker.
    """
    if not os.path.exists(path):
        raise InputNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ModelFormatError(path, "is a directory, not an .onnx file")
    try:
        model = onnx.load(path, load_external_data=True)
    except OSError as exc:  # unreadable file or missing external-data file
        raise ModelFormatError(path, f"cannot read model or its external data: {exc}") from exc
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelFormatError(path, f"not an ONNX protobuf ({type(exc).__name__}: {exc})") from exc
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # ValidationError, or ValueError for a >2 GiB proto
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFormatError(path, f"ONNX checker rejected the model: {first}") from exc
    return model


# --------------------------------------------------------------------------------------------
# weights


class Weight:
    """One weight tensor: name, dtype name, element count, rank."""

    __slots__ = ("count", "dtype", "name", "rank")

    def __init__(self, name: str, dtype: str, count: int, rank: int):
        self.name, self.dtype, self.count, self.rank = name, dtype, count, rank


def all_graphs(graph: onnx.GraphProto):
    """``graph`` and, recursively, every subgraph held by a node attribute."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from all_graphs(g)


def constant_value(node: onnx.NodeProto) -> tuple[str, list[int]] | None:
    """(dtype, dims) of a Constant node's value, or None for sparse/string/unknown values."""
    for attr in node.attribute:
        if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
            return dtype_name(attr.t.data_type), list(attr.t.dims)
        if attr.name == "value_float":
            return "float32", []
        if attr.name == "value_floats":
            return "float32", [len(attr.floats)]
        if attr.name == "value_int":
            return "int64", []
        if attr.name == "value_ints":
            return "int64", [len(attr.ints)]
    return None


def weight_tensors(model: onnx.ModelProto) -> list[Weight]:
    """The tensors counted as weights (see ``PARAMS_RULE``), from all graphs."""
    graphs = list(all_graphs(model.graph))
    uses: dict[str, list[tuple[str, int]]] = {}  # tensor -> [(consumer op_type, slot)]
    for g in graphs:
        for node in g.node:
            for slot, name in enumerate(node.input):
                if name:
                    uses.setdefault(name, []).append((node.op_type, slot))
            for name in subgraph_reads(node):
                uses.setdefault(name, []).append((node.op_type, -1))

    candidates: list[tuple[str, str, list[int]]] = []
    for g in graphs:
        for t in g.initializer:
            candidates.append((t.name, dtype_name(t.data_type), list(t.dims)))
        for node in g.node:
            if node.op_type == "Constant" and node.output:
                value = constant_value(node)
                if value is not None:
                    candidates.append((node.output[0], value[0], value[1]))

    weights = []
    for name, dtype, dims in candidates:
        consumers = uses.get(name)
        if not consumers or dtype in _NEVER_WEIGHT_DTYPES:
            continue
        if not dims:  # rank 0: an operator setting (Clip bound, scale, zero point)
            continue
        if dtype == "int32" and all(slot in SHAPE_SLOTS.get(op, ()) for op, slot in consumers):
            continue
        weights.append(Weight(name, dtype, math.prod(dims), len(dims)))
    return weights


def weight_precision(weights: list[Weight], inputs: list[dict]) -> str:
    """Precision class of the model from its rank>=2 weight tensors (see model_metrics)."""
    pool = [w for w in weights if w.rank >= 2 and w.dtype not in ("int32", "uint32")]
    if pool:
        classes = {_PRECISION_CLASS.get(w.dtype, "other") for w in pool}
    else:  # no kernels/matrices: fall back to every weight, then to the float inputs
        classes = {_PRECISION_CLASS[w.dtype] for w in weights if w.dtype in _PRECISION_CLASS}
        if not classes:
            classes = {_PRECISION_CLASS[i["dtype"]] for i in inputs
                       if i["dtype"] in _PRECISION_CLASS}
    if not classes:
        return "none"
    return classes.pop() if len(classes) == 1 else "mixed"


# --------------------------------------------------------------------------------------------
# graph reads


def subgraph_reads(node) -> set[str]:
    """Outer-scope tensor names read inside the node's subgraphs (recursively)."""
    reads: set[str] = set()
    for attr in node.attribute:
        bodies = []
        if attr.type == onnx.AttributeProto.GRAPH:
            bodies = [attr.g]
        elif attr.type == onnx.AttributeProto.GRAPHS:
            bodies = list(attr.graphs)
        for body in bodies:
            local = {v.name for v in body.input} | {t.name for t in body.initializer}
            for inner in body.node:
                local.update(o for o in inner.output if o)
            for inner in body.node:
                reads.update(n for n in inner.input if n and n not in local)
                reads.update(n for n in subgraph_reads(inner) if n not in local)
            reads.update(v.name for v in body.output if v.name not in local)
    return reads


def node_reads(node) -> set[str]:
    """Tensor names the node reads: its inputs and what its subgraphs read from outside."""
    return {n for n in node.input if n} | subgraph_reads(node)


