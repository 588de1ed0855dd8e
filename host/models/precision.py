"""Precision variants of an ONNX model (int8, fp16), their recipes, and static metrics at precision.

:func:`variant` turns an fp32 ONNX model into the variant a :class:`Recipe` asks for, using the
libraries only (no quantizer of our own):

* **int8, static** (the default): ``onnxruntime.quantization.shape_inference.quant_pre_process``
  then ``onnxruntime.quantization.quantize_static`` in **QDQ** format (QuantizeLinear /
  DequantizeLinear pairs around each quantized op, the format TensorRT's explicit quantization
  also reads), signed int8 weights and activations (S8S8, ONNX Runtime's recommended first choice
  for QDQ on CPU), per-channel weights unless asked otherwise, activation ranges from a
  calibration method (MinMax, Entropy or Percentile) over calibration data: a folder of
  ``.npy``/``.npz`` files, an image folder with a ``preprocess.json`` (converted to arrays by
  :func:`host.models.datasets.calibration_arrays`), or seeded random data (standard normal for
  float inputs, zeros for integer ones; labelled ``random seed=S n=N`` in the recipe).
  Activations are asymmetric (ORT's default), so the zero points are not all 0.
* **int8, dynamic**: ``quant_pre_process`` then ``quantize_dynamic`` (QOperator format:
  ``DynamicQuantizeLinear`` + ``MatMulInteger``/``ConvInteger``; weights int8, activation ranges
  computed at run time): for MatMul-heavy models (transformers, RNNs); no calibration.
* **fp16**: ``onnxruntime.transformers.float16.convert_float_to_float16``; graph inputs and
  outputs stay fp32 (Cast nodes at the edges) unless ``keep_io_fp32=False``.

Variants are cached under ``~/.cache/edgegauge/variants/`` (or ``cache_dir``) as
``<stem>.<slug>.<key>.onnx`` plus a ``.info`` JSON recipe beside it; ``key`` is a hash of the
source's sha256, the effective recipe fields, the calibration data's sha256 and the tool
versions, so a changed model, recipe, calibration set or tool version makes a new file and
an unchanged one is re-used without re-quantizing. Files are produced in a temporary folder
inside the cache and renamed into place (the ``.info`` last): the cache never holds a partial
variant, and a variant without its ``.info`` is made again.

:func:`precision_metrics` gives the static metrics of any ONNX file at its stored precision
(weight bytes and parameters by dtype, bits per weight, stored weight bytes, share of compute ops inside
QDQ pairs, op types left in float). Every failure is a :class:`host.errors.QuantizationError`
naming the model; nothing here prints or exits. ONNX Runtime is imported lazily.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from host.errors import HostError, QuantizationError
from host.models.calibration import calibration_feeds, calibration_reader
from host.models.onnxexport import copy_with_info
from host.models.onnxgraph import (
    SHAPE_SLOTS,
    all_graphs,
    dtype_name,
    load_onnx,
    tensor_nbytes,
    weight_tensors,
)
from runners.fileio import write_json_atomic
from runners.util import file_sha256, utc_now

__all__ = [
    "CALIBRATIONS", "DEFAULT_CACHE_DIR", "METHODS", "PRECISIONS", "Recipe", "copy_variant",
    "precision_metrics", "variant",
]

#: Precisions :func:`variant` knows (``fp32`` is the source model itself).
PRECISIONS = ("fp32", "fp16", "int8")
#: int8 methods: post-training static quantization (QDQ) or dynamic quantization.
METHODS = ("static", "dynamic")
#: Calibration methods of static int8 (ORT's ``CalibrationMethod`` MinMax, Entropy, Percentile).
CALIBRATIONS = ("minmax", "entropy", "percentile")
#: Default cache folder of the variants (``~`` expanded at use).
DEFAULT_CACHE_DIR = Path("~/.cache/edgegauge/variants")
#: ``schema`` of the ``.info`` recipe files.
INFO_SCHEMA = "edgegauge.variant/1"

# Compute ops (float forms) and their integer (QOperator) forms; slots 0 and 1 are data and weight.
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
INTEGER_COMPUTE_OPS = frozenset({
    "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "QGemm",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
})
# Quantization plumbing and type edges: never reported as "left in float".
_PLUMBING = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast", "Identity"})
# op type -> input slots holding quantization parameters (scale, zero point).
_QPARAM_SLOTS = {
    "QuantizeLinear": {1, 2}, "DequantizeLinear": {1, 2}, "ConvInteger": {2, 3},
    "MatMulInteger": {2, 3}, "QLinearConv": {1, 2, 4, 5, 6, 7}, "QLinearMatMul": {1, 2, 4, 5, 6, 7},
}
_FULL_FLOAT = ("float32", "float64")
_CAL_SHORT = {"minmax": "", "entropy": "ent", "percentile": "pct"}

_CORRUPT_HINT = "check the file: `host models MODEL` reads it; re-export it (e.g. `host zoo export`)"


@dataclass(frozen=True)
class Recipe:
    """How to make a precision variant (see the module docstring for the tools used).

    ``precision``: fp32 | fp16 | int8. ``method`` (int8): static | dynamic. ``calibration``
    (int8 static): minmax | entropy | percentile. ``per_channel`` (int8): per-output-channel
    weight scales. ``calibration_data`` (int8 static): folder of ``.npy``/``.npz`` files (arrays
    keyed by input name, or one array for a single-input model; leading axis = samples, the
    model's batch size per sample), or an image folder with a ``preprocess.json`` (single-input
    models; :mod:`host.models.datasets`); None = seeded random data. ``calibration_samples``: at most
    this many calibration batches. ``seed``: of the random data. ``keep_io_fp32`` (fp16): keep
    graph inputs/outputs in fp32. Fields a precision/method does not use are ignored (they
    change neither the slug nor the cache key).

    Raises:
        QuantizationError: an unknown precision, method or calibration, or samples < 1.
    """

    precision: str
    method: str = "static"
    calibration: str = "minmax"
    per_channel: bool = True
    calibration_data: str | None = None
    calibration_samples: int = 32
    seed: int = 0
    keep_io_fp32: bool = True

    def __post_init__(self) -> None:
        for value, allowed, what in ((self.precision, PRECISIONS, "precision"),
                                     (self.method, METHODS, "method"),
                                     (self.calibration, CALIBRATIONS, "calibration")):
            if value not in allowed:
                raise QuantizationError(f"unknown {what} {value!r}", hint=f"one of {', '.join(allowed)}")
        if int(self.calibration_samples) < 1:
            raise QuantizationError(f"calibration_samples must be >= 1, not {self.calibration_samples}")

    @property
    def static(self) -> bool:
        """True for static (calibrated, QDQ) int8."""
        return self.precision == "int8" and self.method == "static"

    def slug(self) -> str:
        """Short file-name part: "" (fp32), "fp16", "fp16-io16", "int8", "int8-dyn", "int8-ent",
        "int8-pct", with "-pt" (per-tensor), "-cal" (a data folder), "-n<N>" and "-s<S>" (non-default
        sample count and seed) appended as they apply. Not unique across data folders: the
        cache key is."""
        if self.precision == "fp32":
            return ""
        if self.precision == "fp16":
            return "fp16" if self.keep_io_fp32 else "fp16-io16"
        parts = ["int8"]
        if self.method == "dynamic":
            parts.append("dyn")
        else:
            parts.append(_CAL_SHORT[self.calibration])
        if not self.per_channel:
            parts.append("pt")
        if self.static:
            if self.calibration_data:
                parts.append("cal")
            if self.calibration_samples != 32:
                parts.append(f"n{self.calibration_samples}")
            if self.seed != 0 and not self.calibration_data:
                parts.append(f"s{self.seed}")
        return "-".join(p for p in parts if p)

    def fields(self) -> dict:
        """The fields that matter for this precision/method (the rest are left out)."""
        out: dict = {"precision": self.precision}
        if self.precision == "fp16":
            out["keep_io_fp32"] = self.keep_io_fp32
        elif self.precision == "int8":
            out.update(method=self.method, per_channel=self.per_channel)
            if self.static:
                out.update(calibration=self.calibration, calibration_samples=self.calibration_samples,
                           calibration_data=self.calibration_data,
                           seed=None if self.calibration_data else self.seed, symmetric=True)
        return out


# --------------------------------------------------------------------------------------------
# public API


def variant(model: Path, recipe: Recipe, cache_dir: Path | None = None) -> tuple[Path, dict | None]:
    """The ``recipe`` variant of the ONNX file ``model``, made or taken from the cache.

    Returns ``(model, None)`` for fp32 (nothing is read). Otherwise ``(path, info)``: ``path``
    the variant ``<cache_dir>/<stem>.<slug>.<key>.onnx`` (default cache
    ``~/.cache/edgegauge/variants/``), ``info`` its recipe (also in ``<...>.info`` beside it):
    ``source_path``, ``source_sha256``, ``source_size_bytes``, ``precision``, ``method``
    (static | dynamic | convert), ``format`` (QDQ | QOperator | fp16), ``slug``, ``recipe_key``,
    ``recipe`` (the effective :meth:`Recipe.fields`), ``weight_type``/``activation_type``
    (int8), ``per_channel``, ``calibration`` (int8 static: ``method``, ``data`` (``"random
    seed=S n=N ..."`` or the folder), ``data_sha256`` (sha256 over the folder's file names and
    hashes; None for random data), ``samples`` (batches used), ``files``; for an image folder
    also ``images`` (count), ``prepared`` (the cached arrays folder), ``preprocess`` (the
    normalised spec) and ``preprocess_sha256`` (absent otherwise); else None),
    ``keep_io_fp32`` (fp16), ``tool`` (the function used), ``preprocess``, ``tool_versions``
    ({onnxruntime, onnx}), ``ops_left_in_float`` (op types of the source that still compute in
    fp32 in the variant), ``created_utc``, ``variant_path``, ``variant_sha256``,
    ``variant_size_bytes``.

    A cache hit (the ``.onnx`` and its ``.info`` present, the size matching the info) re-uses
    the file: nothing is re-quantized or rewritten.

    Raises:
        QuantizationError: ``model`` missing, corrupt or not ONNX; the calibration folder
            missing, empty or not matching the model's inputs; the quantizer or converter failed;
            nothing quantizable (int8 of a model without a quantizable op); the cache folder
            not writable.
        DatasetFormatError: an image calibration folder without a valid ``preprocess.json``, with
            an unreadable image or images of different sizes after preprocessing.
    """
    model = Path(model)
    if recipe.precision == "fp32":
        return model, None
    proto = _load_model(model)
    src_sha = file_sha256(model)
    calib = calibration_feeds(model, proto, recipe) if recipe.static else None
    key = _recipe_key(src_sha, recipe, calib)
    folder = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    out = folder / f"{model.stem}.{recipe.slug()}.{key}.onnx"
    cached = _cached_info(out)
    if cached is not None:
        return out, cached
    try:
        folder.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
    except OSError as exc:
        raise QuantizationError(f"{folder}: cannot write the variant cache ({exc})",
                                hint="pass another --cache-dir") from exc
    try:
        produced, meta = _produce(model, proto, recipe, calib, work)
        info = _info(model, src_sha, proto, recipe, key, calib, meta, produced, out)
        os.replace(produced, out)
        write_json_atomic(info, str(out.with_suffix(".info")))
    except OSError as exc:
        raise QuantizationError(f"{model}: cannot write the variant to {folder} ({exc})",
                                hint="pass another --cache-dir") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out, info


def precision_metrics(model: Path) -> dict:
    """Static metrics of the ONNX file ``model`` at its stored precision; nothing is run.

    Weights follow :data:`host.models.metrics.PARAMS_RULE` (initializers and Constant values
    consumed by a node, rank >= 1, ...), split into *quantization parameters* (tensors used
    only as scale/zero-point inputs: QuantizeLinear/DequantizeLinear slots 1-2, the zero
    points of ConvInteger/MatMulInteger, ...; per-tensor ones are rank 0 and not counted at
    all) and the weights proper. Keys:

    * ``params_by_dtype`` {dtype: elements} and ``weight_bytes_by_dtype`` {dtype: bytes} of the
      weights proper; ``params``, ``weight_bytes`` their totals;
    * ``qparams``, ``qparam_bytes``: the quantization parameters;
    * ``bits_per_weight``: ``8 * weight_bytes / params`` (mean stored bits per weight, weighted
      by element count; int32 biases count 32), None without weights;
    * ``stored_weight_bytes`` = ``weight_bytes + qparam_bytes`` [bytes]: the weights as stored
      (not ``host models``' ``footprint_bytes``, which adds the largest activation:
      :func:`host.models.metrics.model_metrics`); ``effective_bits_per_weight`` =
      ``8 * stored_weight_bytes / params``;
    * ``compute_ops``: nodes of the main graph of type Conv, ConvTranspose, MatMul, Gemm or an
      integer form (ConvInteger, MatMulInteger, QLinearConv, QLinearMatMul, QGemm, ...);
      ``qdq_compute_ops``: the float ones whose data and weight inputs (slots 0 and 1) both come
      from a DequantizeLinear; ``integer_compute_ops``: the integer forms;
      ``qdq_compute_share`` / ``integer_compute_share``: their shares (None without compute ops);
    * ``ops_left_in_float``: sorted op types of the main graph with a node reading a float32 or
      float64 tensor not produced by a DequantizeLinear (shape/axes slots, Cast, Identity and
      the quantization ops themselves left out); dtypes from ONNX shape inference;
    * ``file_bytes``: the file's size.

    Raises:
        QuantizationError: ``model`` missing, corrupt or not ONNX.
    """
    model = Path(model)
    proto = _load_model(model)
    w = _weights(proto)
    compute = _compute_counts(proto.graph)
    params, wbytes = sum(w["params_by_dtype"].values()), sum(w["weight_bytes_by_dtype"].values())
    stored = wbytes + w["qparam_bytes"]
    n = compute["compute_ops"]
    return {
        **w,
        "params": params,
        "weight_bytes": wbytes,
        "bits_per_weight": round(8 * wbytes / params, 4) if params else None,
        "stored_weight_bytes": stored,
        "effective_bits_per_weight": round(8 * stored / params, 4) if params else None,
        **compute,
        "qdq_compute_share": round(compute["qdq_compute_ops"] / n, 4) if n else None,
        "integer_compute_share": round(compute["integer_compute_ops"] / n, 4) if n else None,
        "ops_left_in_float": _ops_left_in_float(proto),
        "file_bytes": model.stat().st_size,
    }


def copy_variant(path: Path, out: Path, slug: str) -> Path:
    """Copy the variant ``path`` (and its ``.info``, if any) to ``out``: a folder (existing, or
    a name without ``.onnx``) gets ``<source stem>.<slug>.onnx``, a ``.onnx`` name is the file.
    Each file is written to a temp name and renamed. Returns the copy's path.

    Raises:
        QuantizationError: the destination cannot be written.
    """
    path, out = Path(path), Path(out)
    if out.suffix != ".onnx" or out.is_dir():
        cached = re.fullmatch(rf"(.+)\.{re.escape(slug)}\.[0-9a-f]+\.onnx", path.name)  # <stem>.<slug>.<key>
        out = out / f"{cached.group(1) if cached else path.stem}.{slug}.onnx"
    try:
        copy_with_info(path, out)
    except OSError as exc:
        raise QuantizationError(f"cannot copy {path} to {out} ({exc})") from exc
    return out


# --------------------------------------------------------------------------------------------
# loading and caching


def _load_model(model: Path) -> onnx.ModelProto:
    """The checked ModelProto at ``model``; QuantizationError naming it otherwise."""
    try:
        return load_onnx(os.fspath(model))
    except HostError as exc:  # InputNotFoundError, ModelFormatError
        raise QuantizationError(f"{exc}", hint=_CORRUPT_HINT) from exc


def _tool_versions() -> dict:
    import onnxruntime

    return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}


def _recipe_key(src_sha: str, recipe: Recipe, calib: dict | None) -> str:
    """16 hex digits over the source, the effective recipe, the calibration data and tools."""
    fields = recipe.fields()
    if calib is not None:
        fields["calibration_data"] = calib["data_sha256"]  # content, not the folder's name
    doc = {"source_sha256": src_sha, "recipe": fields, "tools": _tool_versions(), "schema": INFO_SCHEMA}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _cached_info(out: Path) -> dict | None:
    """The ``.info`` of a complete cached variant at ``out``, or None (absent or inconsistent)."""
    info_path = out.with_suffix(".info")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if info.get("variant_size_bytes") == out.stat().st_size:
            return info
    except (OSError, ValueError):
        pass
    return None


# --------------------------------------------------------------------------------------------
# producing


def _produce(model: Path, proto, recipe: Recipe, calib: dict | None, work: Path) -> tuple[Path, dict]:
    """Write the variant into ``work``; returns (its path, tool metadata)."""
    out = work / "variant.onnx"
    try:
        if recipe.precision == "fp16":
            meta = _convert_fp16(proto, recipe, out)
        else:
            meta = _quantize_int8(model, recipe, calib, work, out)
        produced = onnx.load(os.fspath(out))
        onnx.checker.check_model(produced)
    except QuantizationError:
        raise
    except Exception as exc:  # the tools raise anything (ValueError, RuntimeError, ORT errors)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise QuantizationError(
            f"{model}: {recipe.precision} ({recipe.slug()}) failed: {type(exc).__name__}: {first}",
            hint="try another recipe (--method dynamic, --per-tensor) or check the model with `host models`",
        ) from exc
    if recipe.precision == "int8" and not _has_quantized_op(produced):
        raise QuantizationError(f"{model}: nothing was quantized (no op type ONNX Runtime quantizes, "
                                "e.g. Conv, MatMul, Gemm)", hint="int8 needs a model with such ops")
    return out, meta


def _convert_fp16(proto, recipe: Recipe, out: Path) -> dict:
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    converted = convert_float_to_float16(onnx.ModelProto.FromString(proto.SerializeToString()),
                                         keep_io_types=recipe.keep_io_fp32)
    # keep_io_types appends the output Casts after their consumers; ONNX wants nodes sorted.
    OnnxModel.graph_topological_sort(converted.graph, is_deterministic=True)
    onnx.save(converted, os.fspath(out))
    return {"method": "convert", "format": "fp16",
            "tool": "onnxruntime.transformers.float16.convert_float_to_float16", "preprocess": None}


def _quantize_int8(model: Path, recipe: Recipe, calib: dict | None, work: Path, out: Path) -> dict:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    pre = work / "preprocessed.onnx"
    preprocess = _preprocess(model, pre)
    meta = {"method": recipe.method, "preprocess": preprocess, "weight_type": "QInt8"}
    # ORT's calibrators print progress to stdout: keep it off the CLI's output.
    with contextlib.redirect_stdout(io.StringIO()):
        if recipe.method == "dynamic":
            quantize_dynamic(pre, out, per_channel=recipe.per_channel, weight_type=QuantType.QInt8)
            return {**meta, "format": "QOperator", "activation_type": "dynamic (uint8 at run time)",
                    "tool": "onnxruntime.quantization.quantize_dynamic"}
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[recipe.calibration]
        # symmetric activations (zero point 0): the QDQ form TensorRT's explicit quantization
        # accepts, so one variant serves ONNX Runtime and TensorRT (TensorRT developer guide,
        # "Explicit quantization": only symmetric INT8 Q/DQ)
        quantize_static(pre, out, calibration_reader(calib["feeds"]), quant_format=QuantFormat.QDQ,
                        per_channel=recipe.per_channel, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=method,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    return {**meta, "format": "QDQ", "activation_type": "QInt8 (symmetric, zero point 0)",
            "tool": "onnxruntime.quantization.quantize_static"}


def _preprocess(model: Path, pre: Path) -> str:
    """``quant_pre_process`` into ``pre``; retried without symbolic shape inference if that
    fails. Returns what ran."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = "onnxruntime.quantization.shape_inference.quant_pre_process"
    try:
        quant_pre_process(os.fspath(model), os.fspath(pre))
        return name
    except Exception:  # symbolic shape inference gives up on some graphs
        quant_pre_process(os.fspath(model), os.fspath(pre), skip_symbolic_shape=True)
        return f"{name}(skip_symbolic_shape=True)"


def _has_quantized_op(proto: onnx.ModelProto) -> bool:
    ops = {n.op_type for n in proto.graph.node}
    return bool(ops & ({"DequantizeLinear", "QuantizeLinear"} | INTEGER_COMPUTE_OPS))


def _info(model: Path, src_sha: str, proto, recipe: Recipe, key: str, calib, meta, produced: Path,
          out: Path) -> dict:
    """The ``.info`` recipe of a freshly produced variant (see :func:`variant`)."""
    source_ops = {n.op_type for n in proto.graph.node}
    left = [op for op in _ops_left_in_float(onnx.load(os.fspath(produced))) if op in source_ops]
    calibration = None
    if calib is not None:
        calibration = {"method": recipe.calibration, "data": calib["data"],
                       "data_sha256": calib["data_sha256"], "samples": calib["samples"],
                       "files": calib["files"],
                       **{k: calib[k] for k in ("images", "prepared", "preprocess", "preprocess_sha256")
                          if k in calib}}
    info = {
        "schema": INFO_SCHEMA,
        "source_path": str(model.resolve()),
        "source_sha256": src_sha,
        "source_size_bytes": model.stat().st_size,
        "precision": recipe.precision,
        "method": meta["method"],
        "format": meta["format"],
        "slug": recipe.slug(),
        "recipe_key": key,
        "recipe": recipe.fields(),
        "per_channel": recipe.per_channel if recipe.precision == "int8" else None,
        "weight_type": meta.get("weight_type"),
        "activation_type": meta.get("activation_type"),
        "calibration": calibration,
        "keep_io_fp32": recipe.keep_io_fp32 if recipe.precision == "fp16" else None,
        "tool": meta["tool"],
        "preprocess": meta["preprocess"],
        "tool_versions": _tool_versions(),
        "ops_left_in_float": left,
        "created_utc": utc_now(),
        "variant_path": str(out.resolve()),
        "variant_sha256": file_sha256(produced),
        "variant_size_bytes": produced.stat().st_size,
    }
    return info


# --------------------------------------------------------------------------------------------
# metrics


def _weights(proto: onnx.ModelProto) -> dict:
    """Weights proper and quantization parameters by dtype (see :func:`precision_metrics`)."""
    uses: dict[str, list[tuple[str, int]]] = {}
    for g in all_graphs(proto.graph):
        for node in g.node:
            for slot, name in enumerate(node.input):
                if name:
                    uses.setdefault(name, []).append((node.op_type, slot))
    params: dict[str, int] = {}
    nbytes: dict[str, int] = {}
    qparams = qbytes = 0
    for w in weight_tensors(proto):
        size = tensor_nbytes(w.dtype, w.count) or 0
        consumers = uses.get(w.name, [])
        if consumers and all(slot in _QPARAM_SLOTS.get(op, ()) for op, slot in consumers):
            qparams += w.count
            qbytes += size
            continue
        params[w.dtype] = params.get(w.dtype, 0) + w.count
        nbytes[w.dtype] = nbytes.get(w.dtype, 0) + size
    return {"params_by_dtype": dict(sorted(params.items())),
            "weight_bytes_by_dtype": dict(sorted(nbytes.items())),
            "qparams": qparams, "qparam_bytes": qbytes}


def _compute_counts(graph: onnx.GraphProto) -> dict:
    producer = {out: n.op_type for n in graph.node for out in n.output}
    total = qdq = integer = 0
    for node in graph.node:
        if node.op_type in INTEGER_COMPUTE_OPS:
            total += 1
            integer += 1
        elif node.op_type in COMPUTE_OPS:
            total += 1
            ins = [name for name in node.input[:2] if name]
            if ins and all(producer.get(name) == "DequantizeLinear" for name in ins):
                qdq += 1
    return {"compute_ops": total, "qdq_compute_ops": qdq, "integer_compute_ops": integer}


def _value_dtypes(proto: onnx.ModelProto) -> dict[str, str]:
    """Tensor name -> dtype name over the main graph, after ONNX shape inference (best effort)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # inference is best effort: fall back to what the file declares
        inferred = proto
    g = inferred.graph
    types = {t.name: dtype_name(t.data_type) for t in g.initializer}
    for v in [*g.input, *g.value_info, *g.output]:
        if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type:
            types[v.name] = dtype_name(v.type.tensor_type.elem_type)
    for node in g.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    types[node.output[0]] = dtype_name(attr.t.data_type)
    return types


def _ops_left_in_float(proto: onnx.ModelProto) -> list[str]:
    """Op types of the main graph with a node reading fp32/fp64 data not from a DequantizeLinear."""
    types = _value_dtypes(proto)
    producer = {out: n.op_type for n in proto.graph.node for out in n.output}
    left = set()
    for node in proto.graph.node:
        if node.op_type in _PLUMBING or node.op_type in INTEGER_COMPUTE_OPS:
            continue
        skip = SHAPE_SLOTS.get(node.op_type, frozenset())
        for slot, name in enumerate(node.input):
            if (name and slot not in skip and types.get(name) in _FULL_FLOAT
                    and producer.get(name) != "DequantizeLinear"):
                left.add(node.op_type)
                break
    return sorted(left)
