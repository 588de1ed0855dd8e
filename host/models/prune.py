"""Pruned variants of an ONNX model: unstructured (global L1 magnitude) and channel (structured L1).

Two methods, numpy and onnx only, no fine-tune (the weights that stay are not changed):

* **unstructured** (``ratio`` in [0.5, 0.99]): the weight tensors of every Conv (slot 1), Gemm
  (slot 1) and MatMul (an initializer in slot 0 or 1), each stored tensor once, are pooled; the
  ``floor(ratio * total)`` elements of smallest absolute value are set to zero, ties broken by
  position (tensors in graph order, C order inside a tensor; numpy's stable argsort). Biases are
  kept. The file keeps its shapes and size; only the count of non-zero weights falls.
* **channels** (``ratio`` in [0.1, 0.9]): for each *prunable* Conv (``group`` 1, weight an
  initializer) the ``min(C - 1, floor(ratio * C))`` output channels of smallest L1 norm (sum of
  absolute weights over the filter; ties to the lower index) are removed with their bias, and the
  same channels are removed downstream, through element-wise activations (Relu, Clip, ...),
  BatchNormalization (scale, B, mean, var), MaxPool/AveragePool/GlobalAveragePool and depthwise
  Convs (``group`` == channels: their filters, bias and ``group``), from each consumer that
  reduces over channels: a ``group``-1 Conv (its input channels) or, behind a Flatten, a Gemm or
  MatMul (the rows of the flattened features of those channels). The result is a smaller dense
  model; ONNX's checker and shape inference must accept it. A conv whose output reaches anything
  else (Add, Concat, Mul, Reshape, a graph output, a grouped conv) is **skipped**, with the reason
  in the recipe: pruning both sides of a residual identically is not attempted.

:func:`variant` caches the result like :mod:`host.models.precision` does: ``<stem>.<slug>.<key>.onnx``
and a ``.info`` recipe under ``~/.cache/edgegauge/variants/``, ``key`` a hash of the source's sha256,
the method, the ratio and the tool versions. Errors are :class:`host.errors.PruneError` (a bad ratio:
:class:`host.errors.PruneRatioError`, raised before anything is read or written).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from host.errors import HostError, PruneError, PruneRatioError
from host.models.onnxgraph import load_onnx
from runners.fileio import write_json_atomic
from runners.util import file_sha256, utc_now

__all__ = ["DEFAULT_CACHE_DIR", "INFO_SCHEMA", "RANGES", "PruneRecipe", "prune_channels", "prune_model",
           "prune_unstructured", "variant"]

#: ``schema`` of the pruned variants' ``.info`` recipe.
INFO_SCHEMA = "edgegauge.prune/1"
#: method -> (lowest, highest) ratio accepted, both included.
RANGES = {"unstructured": (0.5, 0.99), "channels": (0.1, 0.9)}
DEFAULT_CACHE_DIR = Path("~/.cache/edgegauge/variants")

# ops a pruned channel set passes through unchanged (data in slot 0, one output; not PRelu: its slope
# is per channel)
_ELEMENTWISE = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
                          "Elu", "Selu", "Softplus", "Mish", "Gelu", "Dropout", "Identity"})
_POOLS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool"})


@dataclass(frozen=True)
class PruneRecipe:
    """``method``: unstructured | channels; ``ratio``: the share of weights (unstructured) or of each
    prunable conv's output channels (channels) to remove, within :data:`RANGES`.

    Raises:
        PruneRatioError: an unknown method, or a ratio outside its range (or not a number).
    """

    method: str
    ratio: float

    def __post_init__(self) -> None:
        if self.method not in RANGES:
            raise PruneRatioError(f"unknown pruning method {self.method!r}",
                                  hint=f"one of {', '.join(RANGES)}")
        lo, hi = RANGES[self.method]
        try:
            ok = lo <= float(self.ratio) <= hi
        except (TypeError, ValueError):
            ok = False
        if not ok:
            example = 0.9 if self.method == "unstructured" else 0.5
            raise PruneRatioError(f"--{self.method} {self.ratio!r}: the ratio must be in [{lo}, {hi}]",
                                  hint=f"e.g. --{self.method} {example}")

    def slug(self) -> str:
        """``pu90`` (unstructured 0.9), ``pc50`` (channels 0.5); ``pu87.5`` for a fractional percent."""
        return f"p{self.method[0]}{round(100 * float(self.ratio), 4):g}"

    def fields(self) -> dict:
        return {"method": self.method, "ratio": float(self.ratio)}


# --------------------------------------------------------------------------------------------
# graph helpers


def _initializers(graph) -> dict:
    return {t.name: t for t in graph.initializer}


def _resolve(graph, name: str) -> str | None:
    """The initializer behind ``name`` (through Identity nodes), or None."""
    inits = _initializers(graph)
    producer = {o: n for n in graph.node for o in n.output}
    seen = 0
    while name not in inits and seen < 64:
        node = producer.get(name)
        if node is None or node.op_type != "Identity":
            return None
        name, seen = node.input[0], seen + 1
    return name if name in inits else None


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _set_attr(node, name: str, value: int) -> None:
    for a in node.attribute:
        if a.name == name:
            a.i = value
            return
    node.attribute.append(onnx.helper.make_attribute(name, value))


def _weight_slots(graph) -> list[tuple[onnx.NodeProto, int, str]]:
    """(node, slot, initializer) of every Conv/Gemm/MatMul weight, in graph order."""
    slots = []
    for node in graph.node:
        wanted = {"Conv": (1,), "Gemm": (1,), "MatMul": (0, 1)}.get(node.op_type, ())
        for slot in wanted:
            if slot < len(node.input) and node.input[slot]:
                init = _resolve(graph, node.input[slot])
                if init is not None:
                    slots.append((node, slot, init))
    return slots


def _layer_row(node, init: str, arr: np.ndarray) -> dict:
    nz = int(np.count_nonzero(arr))
    return {"node": node.name, "op": node.op_type, "weight": init, "params": int(arr.size),
            "nonzeros": nz, "density": round(nz / arr.size, 6) if arr.size else None}


# --------------------------------------------------------------------------------------------
# unstructured


def prune_unstructured(proto: onnx.ModelProto, ratio: float) -> tuple[onnx.ModelProto, list[dict]]:
    """Zero the ``floor(ratio * total)`` smallest-magnitude Conv/Gemm/MatMul weights (global).
    Returns (a pruned copy, one row per weight tensor: node, op, weight, params, nonzeros, density).

    Raises:
        PruneError: no Conv/Gemm/MatMul weight initializer.
    """
    out = onnx.ModelProto.FromString(proto.SerializeToString())
    graph = out.graph
    inits = _initializers(graph)
    names, owners = [], {}
    for node, _slot, init in _weight_slots(graph):
        if init not in owners and inits[init].data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                                                             onnx.TensorProto.DOUBLE):
            owners[init] = node
            names.append(init)
    if not names:
        raise PruneError("no Conv, Gemm or MatMul weight initializer to prune",
                         hint="unstructured pruning needs float Conv/Gemm/MatMul weights")
    arrays = [numpy_helper.to_array(inits[n]).copy() for n in names]
    flat = np.concatenate([np.abs(a).ravel().astype(np.float64) for a in arrays])
    k = math.floor(float(ratio) * flat.size + 1e-9)
    mask = np.ones(flat.size, dtype=bool)
    mask[np.argsort(flat, kind="stable")[:k]] = False
    rows, start = [], 0
    for name, arr in zip(names, arrays):
        keep = mask[start:start + arr.size].reshape(arr.shape)
        start += arr.size
        arr[~keep] = 0
        inits[name].CopyFrom(numpy_helper.from_array(arr, name))
        rows.append(_layer_row(owners[name], name, arr))
    return out, rows


# --------------------------------------------------------------------------------------------
# channels


def _consumers(graph) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    users: dict = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            if name:
                users.setdefault(name, []).append((node, slot))
    return users


def _is_depthwise(graph, node, channels: int) -> bool:
    init = _resolve(graph, node.input[1]) if len(node.input) > 1 else None
    if node.op_type != "Conv" or init is None:
        return False
    dims = list(_initializers(graph)[init].dims)
    return _attr(node, "group", 1) == channels and dims[0] == channels and dims[1] == 1


def _params_stored(graph, node) -> bool:
    """Every parameter input (slot 1 on) of ``node`` is an initializer (through Identity nodes)."""
    return all(_resolve(graph, name) is not None for name in node.input[1:] if name)


def _walk(graph, tensor: str, channels: int, ctx: dict, edits: list, hw: int = 0) -> str | None:
    """Follow ``tensor`` (``channels`` channels) to the ops that reduce over them, appending
    ``(kind, node, extra)`` edits; returns the reason it cannot be pruned, or None."""
    if tensor in ctx["outputs"]:
        return f"its output reaches the graph output {tensor!r}"
    for node, slot in ctx["users"].get(tensor, []):
        op, label = node.op_type, node.name or node.op_type
        if hw:  # behind a Flatten: only a matrix product can take the rows away
            if op in ("Gemm", "MatMul") and slot == 0 and _resolve(graph, node.input[1]) is not None \
                    and not (op == "Gemm" and _attr(node, "transA", 0)):
                edits.append(("rows", node, hw))
                continue
            return f"its flattened output reaches {op} ({label})"
        if op in ("Conv", "BatchNormalization") and slot == 0 and not _params_stored(graph, node):
            return f"its output reaches {op} ({label}) whose parameters are not initializers"
        if op == "Conv" and slot == 0 and _attr(node, "group", 1) == 1:
            edits.append(("in", node, None))
            continue
        if op == "Conv" and slot == 0 and _is_depthwise(graph, node, channels):
            edits.append(("depthwise", node, None))
        elif op == "BatchNormalization" and slot == 0:
            edits.append(("bn", node, None))
        elif not ((op in _ELEMENTWISE and slot == 0) or op in _POOLS or op == "Flatten"):
            return f"its output reaches {op} ({label})"
        if op == "Flatten":
            shape = ctx["shapes"].get(tensor)
            if _attr(node, "axis", 1) != 1 or not shape or len(shape) < 2 or not all(
                    isinstance(d, int) and d > 0 for d in shape[2:]):
                return f"Flatten ({label}) of an input of unknown or unsupported shape"
            reason = _walk(graph, node.output[0], channels, ctx, edits, hw=math.prod(shape[2:]) or 1)
        else:
            reason = _walk(graph, node.output[0], channels, ctx, edits)
        if reason:
            return reason
    return None


def _shapes(proto: onnx.ModelProto) -> dict[str, list]:
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # best effort: a Flatten without a known shape is then skipped
        return {}
    out = {}
    for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
            dims = v.type.tensor_type.shape.dim
            out[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return out


def _choose(arr: np.ndarray, ratio: float) -> np.ndarray:
    """Sorted indices of the output channels kept: the lowest-L1 ones go (ties: lower index first)."""
    c = arr.shape[0]
    drop = min(c - 1, math.floor(float(ratio) * c + 1e-9))
    l1 = np.abs(arr.reshape(c, -1).astype(np.float64)).sum(axis=1)
    return np.sort(np.argsort(l1, kind="stable")[drop:])


class _Edits:
    """Pending per-(node, slot) index selections, applied once to fresh copies of the tensors."""

    def __init__(self, graph):
        self.graph, self.take = graph, {}

    def add(self, node, slot: int, axis: int, keep: np.ndarray) -> None:
        if slot < len(node.input) and node.input[slot]:
            self.take.setdefault((node.output[0], slot), (node, {}))[1][axis] = keep

    def apply(self) -> None:
        inits = _initializers(self.graph)
        for (_out, slot), (node, axes) in self.take.items():
            src = _resolve(self.graph, node.input[slot])
            arr = numpy_helper.to_array(inits[src])
            for axis, keep in axes.items():
                arr = np.take(arr, keep, axis=axis)
            name = f"{src}.pruned.{node.name or node.output[0]}.{slot}"
            self.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
            node.input[slot] = name


def _apply_conv(edits: _Edits, graph, conv, keep: np.ndarray, found: list) -> None:
    """Remove the channels not in ``keep`` from ``conv`` and along every edit ``found``."""
    edits.add(conv, 1, 0, keep)
    edits.add(conv, 2, 0, keep)
    for kind, node, hw in found:
        if kind == "in":
            edits.add(node, 1, 1, keep)
        elif kind == "depthwise":
            for slot in (1, 2):
                edits.add(node, slot, 0, keep)
            _set_attr(node, "group", int(keep.size))
        elif kind == "bn":
            for slot in (1, 2, 3, 4):
                edits.add(node, slot, 0, keep)
        else:  # rows of the flattened features behind a Flatten
            rows = (keep[:, None] * hw + np.arange(hw)[None, :]).ravel()
            edits.add(node, 1, 1 if node.op_type == "Gemm" and _attr(node, "transB", 0) else 0, rows)


def prune_channels(proto: onnx.ModelProto, ratio: float) -> tuple[onnx.ModelProto, list[dict], list[dict]]:
    """Remove the lowest-L1 output channels of each prunable conv (see the module docstring).

    Returns (the smaller model, one row per pruned conv: node, op, weight, channels, kept, params,
    nonzeros, density (of its pruned weight), and the skipped convs: node, reason).

    Raises:
        PruneError: no conv could be pruned, or the result fails ONNX's checker.
    """
    out = onnx.ModelProto.FromString(proto.SerializeToString())
    graph = out.graph
    ctx = {"users": _consumers(graph), "outputs": {o.name for o in graph.output}, "shapes": _shapes(out)}
    inits, edits = _initializers(graph), _Edits(graph)
    rows, skipped, plans = [], [], []
    for node in list(graph.node):
        if node.op_type != "Conv":
            continue
        init = _resolve(graph, node.input[1]) if len(node.input) > 1 else None
        label = node.name or node.output[0]
        if init is None or _attr(node, "group", 1) != 1:
            if init is None or not _is_depthwise(graph, node, int(inits[init].dims[0])):
                skipped.append({"node": label, "reason": "grouped conv or weight not an initializer"})
            continue
        arr = numpy_helper.to_array(inits[init])
        found: list = []
        reason = _walk(graph, node.output[0], arr.shape[0], ctx, found)
        if reason:
            skipped.append({"node": label, "reason": reason})
            continue
        plans.append((node, init, arr, _choose(arr, ratio), found))
    if not plans:
        first = f" ({skipped[0]['node']}: {skipped[0]['reason']}, ...)" if skipped else ""
        raise PruneError(f"no conv can be channel-pruned{first}",
                         hint="channel pruning needs a Conv whose output reaches only convs or Flatten+Gemm")
    for node, _init, _arr, keep, found in plans:
        _apply_conv(edits, graph, node, keep, found)
    edits.apply()
    inits = _initializers(graph)
    for node, _init, arr, keep, _found in plans:
        now = node.input[1]
        row = _layer_row(node, now, numpy_helper.to_array(inits[now]))
        rows.append({**row, "channels": int(arr.shape[0]), "kept": int(keep.size)})
    _drop_dead(graph)
    _check(out)
    return out, rows, skipped


def _drop_dead(graph) -> None:
    """Remove nodes and initializers nothing reads any more (and stale inferred shapes)."""
    del graph.value_info[:]
    while True:
        read = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.output and not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    read = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
    gone = {t.name for t in graph.initializer if t.name not in read}
    for t in [t for t in graph.initializer if t.name in gone]:
        graph.initializer.remove(t)
    for v in [v for v in graph.input if v.name in gone]:  # an initializer also listed as an input
        graph.input.remove(v)


def _check(proto: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(proto)
        onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    except Exception as exc:  # the checker raises its own ValidationError / InferenceError
        raise PruneError(f"the channel-pruned model is not consistent: {exc}".splitlines()[0],
                         hint="report the model; prune with --unstructured meanwhile") from exc


# --------------------------------------------------------------------------------------------
# variants and their cache


def prune_model(proto: onnx.ModelProto, recipe: PruneRecipe) -> tuple[onnx.ModelProto, dict]:
    """Prune ``proto`` as ``recipe`` says; returns (model, summary): ``layers``, ``skipped``,
    ``params``, ``nonzeros``, ``sparsity`` (over the Conv/Gemm/MatMul weights after pruning)."""
    if recipe.method == "unstructured":
        pruned, layers = prune_unstructured(proto, recipe.ratio)
        skipped: list = []
    else:
        pruned, layers, skipped = prune_channels(proto, recipe.ratio)
    all_layers = [_layer_row(n, init, numpy_helper.to_array(_initializers(pruned.graph)[init]))
                  for n, _s, init in _weight_slots(pruned.graph)]
    params = sum(r["params"] for r in all_layers)
    nonzeros = sum(r["nonzeros"] for r in all_layers)
    return pruned, {"layers": layers, "skipped": skipped, "params": params, "nonzeros": nonzeros,
                    "sparsity": round(1 - nonzeros / params, 6) if params else None,
                    "weight_layers": all_layers}


def _tool_versions() -> dict:
    return {"numpy": np.__version__, "onnx": onnx.__version__}


def recipe_key(src_sha: str, recipe: PruneRecipe) -> str:
    """16 hex digits over the source's sha256, the method, the ratio, the tools and the schema."""
    doc = {"source_sha256": src_sha, "recipe": recipe.fields(), "tools": _tool_versions(),
           "schema": INFO_SCHEMA}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _load(model: Path) -> onnx.ModelProto:
    try:
        return load_onnx(os.fspath(model))
    except HostError as exc:  # InputNotFoundError, ModelFormatError
        raise PruneError(f"{exc}", hint="check the file: `host models MODEL` reads it") from exc


def _cached(out: Path) -> dict | None:
    try:
        info = json.loads(out.with_suffix(".info").read_text(encoding="utf-8"))
        if info.get("variant_size_bytes") == out.stat().st_size:
            return info
    except (OSError, ValueError):
        pass
    return None


def variant(model: Path, recipe: PruneRecipe, cache_dir: Path | None = None) -> tuple[Path, dict]:
    """The pruned variant of ``model``, made or re-used from the cache; returns (path, info).

    ``info`` (also ``<path>.info``): ``schema``, ``source_path``, ``source_sha256``, ``method``,
    ``ratio`` (asked), ``slug``, ``recipe_key``, ``sparsity`` (achieved, over the Conv/Gemm/MatMul
    weights), ``params`` and ``nonzeros`` of those weights before and after, ``layers`` (the pruned
    layers: node, op, weight, params, nonzeros, density; channels and kept for channel pruning),
    ``skipped`` (node, reason), ``tool`` and ``tool_versions``, ``created_utc``, ``variant_path``,
    ``variant_sha256``, ``variant_size_bytes``.

    Raises:
        PruneError: ``model`` missing or not ONNX, nothing prunable, the cache not writable.
    """
    model = Path(model)
    proto = _load(model)
    src_sha = file_sha256(model)
    key = recipe_key(src_sha, recipe)
    folder = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    out = folder / f"{model.stem}.{recipe.slug()}.{key}.onnx"
    info = _cached(out)
    if info is not None:
        return out, info
    try:
        pruned, summary = prune_model(proto, recipe)
    except PruneError as exc:
        raise PruneError(f"{model}: {exc}", hint=exc.hint) from exc
    _, before = prune_model_counts(proto)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
        try:
            produced = work / "variant.onnx"
            onnx.save(pruned, os.fspath(produced))
            info = _info(model, src_sha, recipe, key, summary, before, produced, out)
            os.replace(produced, out)
            write_json_atomic(info, str(out.with_suffix(".info")))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except OSError as exc:
        raise PruneError(f"{model}: cannot write the pruned variant to {folder} ({exc})",
                         hint="pass another --cache-dir") from exc
    return out, info


def prune_model_counts(proto: onnx.ModelProto) -> tuple[list[dict], dict]:
    """(per-weight rows, {params, nonzeros}) of the Conv/Gemm/MatMul weights of ``proto``."""
    inits = _initializers(proto.graph)
    rows = [_layer_row(n, init, numpy_helper.to_array(inits[init]))
            for n, _s, init in _weight_slots(proto.graph)]
    return rows, {"params": sum(r["params"] for r in rows), "nonzeros": sum(r["nonzeros"] for r in rows)}


def _info(model: Path, src_sha: str, recipe: PruneRecipe, key: str, summary: dict, before: dict,
          produced: Path, out: Path) -> dict:
    return {
        "schema": INFO_SCHEMA, "source_path": str(model.resolve()), "source_sha256": src_sha,
        "source_size_bytes": model.stat().st_size, "method": recipe.method, "ratio": float(recipe.ratio),
        "slug": recipe.slug(), "recipe_key": key, "recipe": recipe.fields(),
        "sparsity": summary["sparsity"],
        "params_before": before["params"], "nonzeros_before": before["nonzeros"],
        "params": summary["params"], "nonzeros": summary["nonzeros"],
        "layers": summary["layers"], "skipped": summary["skipped"],
        "tool": f"host.models.prune.prune_{recipe.method}", "tool_versions": _tool_versions(),
        "created_utc": utc_now(), "variant_path": str(out.resolve()),
        "variant_sha256": file_sha256(produced), "variant_size_bytes": produced.stat().st_size,
    }
