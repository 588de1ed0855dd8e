"""Calibration data for static int8 quantization (:mod:`host.models.precision`): seeded random
batches, or the arrays of a folder (``.npy`` / ``.npz`` per input; an image folder is first turned
into arrays by :func:`host.models.datasets.calibration_arrays`), each described for the variant's
recipe (source, digest, files, samples), and ONNX Runtime's reader over them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx

from host.errors import QuantizationError
from runners.util import file_sha256


def _input_specs(proto: onnx.ModelProto) -> list[tuple[str, np.dtype, list[int | None]]]:
    """(name, numpy dtype, shape with None for each symbolic or unset dim) of each real input."""
    inits = {t.name for t in proto.graph.initializer}
    specs = []
    for v in proto.graph.input:
        if v.name in inits:
            continue
        tt = v.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        specs.append((v.name, dtype, dims))
    return specs


def _ones(dims: list[int | None]) -> list[int]:
    """``dims`` with each symbolic dim set to 1."""
    return [1 if d is None else d for d in dims]


def calibration_feeds(model: Path, proto: onnx.ModelProto, recipe) -> dict:
    """Calibration batches and their description: ``{"feeds": [{input: array}], "data": str,
    "data_sha256": str | None, "files": [...] | None, "samples": int}``.

    ``recipe`` is the variant's :class:`host.models.precision.Recipe` (its ``calibration_data``,
    ``calibration_samples`` and ``seed`` are read).

    Raises:
        QuantizationError: the folder is missing, holds no usable arrays, or they do not fit the inputs.
    """
    specs = _input_specs(proto)
    n = recipe.calibration_samples
    if recipe.calibration_data is None:
        rng = np.random.default_rng(recipe.seed)
        feeds = [{name: (rng.standard_normal(_ones(dims)).astype(dtype) if dtype.kind == "f"
                         else np.zeros(_ones(dims), dtype)) for name, dtype, dims in specs} for _ in range(n)]
        label = (f"random seed={recipe.seed} n={n} (standard normal for float inputs, "
                 "zeros for integer inputs)")
        return {"feeds": feeds, "data": label, "data_sha256": None, "files": None, "samples": n}
    from host.models.datasets import calibration_arrays

    folder = Path(recipe.calibration_data)
    arrays = calibration_arrays(folder)  # an image folder becomes calibration.npy (cached)
    calib = _folder_calibration(model, arrays, specs, n)
    if arrays != folder:
        meta = json.loads((arrays / "meta.json").read_text(encoding="utf-8"))
        calib.update(data=str(folder.resolve()), files=None, images=meta["n"], prepared=str(arrays),
                     preprocess=meta["preprocess"], preprocess_sha256=meta["preprocess_sha256"])
    return calib


def _read_arrays(model: Path, folder: Path, specs) -> tuple[dict[str, np.ndarray], list[Path]]:
    """The calibration folder's arrays per input, concatenated over its files (sorted by name)."""
    if not folder.is_dir():
        raise QuantizationError(f"{folder}: calibration data folder not found (model {model})",
                                hint="--calibration-data DIR with .npy/.npz files, or leave it out")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".npy", ".npz") and p.is_file())
    if not files:
        raise QuantizationError(f"{folder}: no .npy or .npz file (calibration data for {model})",
                                hint="save arrays with numpy.save / numpy.savez(input_name=array)")
    names = [s[0] for s in specs]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for f in files:
        try:
            loaded = np.load(f, allow_pickle=False)
            arrays = dict(loaded) if f.suffix == ".npz" else {None: loaded}
        except (OSError, ValueError) as exc:
            raise QuantizationError(f"{f}: not a numpy file ({exc})") from exc
        if None in arrays:
            if len(names) != 1:
                raise QuantizationError(f"{f}: one array for a model with inputs {names} ({model})",
                                        hint="use .npz files with one array per input name")
            arrays = {names[0]: arrays[None]}
        missing = [n for n in names if n not in arrays]
        if missing:
            raise QuantizationError(f"{f}: no array for input(s) {missing} of {model}",
                                    hint=f"keys must be the input names {names}")
        for name in names:
            parts[name].append(arrays[name])
    try:
        return {name: np.concatenate(parts[name]) for name in names}, files
    except ValueError as exc:
        raise QuantizationError(f"{folder}: arrays of different shapes for one input ({exc})") from exc


def _folder_calibration(model: Path, folder: Path, specs, n: int) -> dict:
    """Calibration batches from a folder (see :func:`calibration_feeds`)."""
    arrays, files = _read_arrays(model, folder, specs)
    batches = None
    for name, _, dims in specs:
        arr = arrays[name]
        fits = arr.ndim == len(dims) and all(d is None or d == a for d, a in zip(dims[1:], arr.shape[1:]))
        if not fits:
            raise QuantizationError(
                f"{folder}: input {name!r} of {model} has shape {dims} (None: any), the data "
                f"{list(arr.shape)}", hint="leading axis = samples, the other axes as the model's input")
        count = arr.shape[0] // (dims[0] or 1) if arr.ndim else 0
        batches = count if batches is None else min(batches, count)
    if not batches:
        raise QuantizationError(f"{folder}: fewer samples than one batch of {model}")
    used = min(n, batches)
    feeds = []
    for i in range(used):
        feeds.append({name: np.ascontiguousarray(arrays[name][i * (d[0] or 1):(i + 1) * (d[0] or 1)], dtype)
                      for name, dtype, d in specs})
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}\0{file_sha256(f)}\n".encode())
    return {"feeds": feeds, "data": str(folder.resolve()), "data_sha256": digest.hexdigest(),
            "files": [f.name for f in files], "samples": used}


def calibration_reader(feeds: list[dict]):
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``feeds``."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    return _Feeds()
