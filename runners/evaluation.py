"""Untimed evaluation after the timed loops: output fidelity and accuracy on a labelled set.

Both run in one fresh session of the cell's backend, after the last timed loop and after the
memory probe's ``end`` mark, so latency and RSS figures never include them. They call
:meth:`runners.backends.Backend.evaluate` (ORT: ``session.run``), never ``infer``.

* **Fidelity** (``--fidelity-inputs IN.npz --fidelity-out OUT.npz``): ``IN.npz`` holds one
  array per model input, named as the input; its leading axis is the sample: ``arr[i]`` is a
  complete input tensor for one call (it already has the model's batch dimension). Sample
  ``i`` of every input is fed together; ``OUT.npz`` gets one array per model output, stacked
  the same way (``(N, *output shape)``), for the host to compare with its own reference.
* **Accuracy** (``--dataset DIR``): ``DIR/inputs.npy`` ``(N, *one sample without the batch
  dimension)`` and ``DIR/labels.npy`` ``(N,)`` integers in ``[0, classes)``; an optional
  ``DIR/meta.json`` (a JSON object; only ``name`` is read, other keys are ignored). The model
  must have one input; the set is fed in batches of the cell's batch size (the first input's
  resolved leading dimension: ``--batch``, or the model's fixed batch); a last, partial batch
  is padded with zeros and the padding's outputs are dropped. The model's **first output** is
  taken as the scores (logits or probabilities), ``(batch, classes)`` (trailing size-1
  dimensions allowed, e.g. ``(batch, classes, 1, 1)``). Top-k ranks classes by score, ties
  broken towards the lower class index (a stable sort, as ``argmax``).

Float data is cast to a float input's dtype (fp16 models with fp16 inputs); any other dtype
difference is an error. Errors: :class:`~runners.errors.InputSpecError` for a fidelity input
that does not fit the model, :class:`~runners.errors.DatasetError` (a subclass) for a missing
or unreadable file and for a dataset that does not fit; both give ``status: "failed"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from typing import Dict, List, Mapping, Sequence

import numpy as np

from runners.errors import DatasetError, InputSpecError
from runners.fileio import write_atomic
from runners.inputs import TensorSpec, resolve_shapes

# ---------------------------------------------------------------------------------- shared


def _fmt(shape: Sequence) -> str:
    """``1x3x224x224``; a dynamic dimension by its name, or ``?``."""
    return "x".join(d if isinstance(d, str) and d else "?" if not isinstance(d, int) or d <= 0 else str(d)
                    for d in shape)


def fit_to_spec(spec: TensorSpec, arr: np.ndarray, what: str) -> np.ndarray:
    """``arr`` (one call's input, batch dimension included) checked against ``spec``: same rank,
    every fixed dimension equal; float data cast to a float input's dtype. Returns a
    C-contiguous array of the input's dtype.

    Raises:
        InputSpecError: another rank, a fixed dimension that differs, or a dtype that cannot
            be cast (integers for a float input, floats for an integer input, ...).
    """
    want = np.dtype(spec.dtype)
    if arr.dtype != want:
        if want.kind != "f" or arr.dtype.kind != "f":
            raise InputSpecError(f"{what}: dtype {arr.dtype}, the model's input {spec.name!r} is {want} "
                                 "(only float data is cast to a float input)")
        arr = arr.astype(want)
    bad = len(arr.shape) != len(spec.shape) or any(
        isinstance(d, int) and d > 0 and d != got for d, got in zip(spec.shape, arr.shape))
    if bad:
        raise InputSpecError(f"{what}: shape {_fmt(arr.shape)} does not fit the model's input "
                             f"{spec.name!r} ({_fmt(spec.shape)})")
    return np.ascontiguousarray(arr)


def _file_digest(paths: Sequence[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------- fidelity


def read_fidelity_inputs(path: str, specs: Sequence[TensorSpec]) -> Dict[str, np.ndarray]:
    """The arrays of ``path`` (``.npz``), one per model input, each ``(N, *input shape)``.

    Raises:
        DatasetError: the file is missing or not a readable ``.npz``, or holds no samples.
        InputSpecError: its names differ from the model's inputs, or the inputs disagree on N.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"--fidelity-inputs {path}: cannot read it as .npz ({exc})") from None
    names = [s.name for s in specs]
    if sorted(arrays) != sorted(names):
        raise InputSpecError(f"--fidelity-inputs {os.path.basename(path)} holds {sorted(arrays)}; "
                             f"the model's inputs are {sorted(names)}")
    counts = {name: (arr.shape[0] if arr.ndim else 0) for name, arr in arrays.items()}
    if len(set(counts.values())) != 1:
        raise InputSpecError(f"--fidelity-inputs: inputs disagree on the number of samples {counts}")
    if not next(iter(counts.values())):
        raise DatasetError(f"--fidelity-inputs {os.path.basename(path)}: no samples (leading axis is 0)")
    return arrays


def _write_npz(fh, arrays: Mapping[str, np.ndarray]) -> None:
    """An uncompressed ``.npz`` (what ``numpy.savez`` writes) with any key, ``file`` included."""
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)


def fidelity(backend, specs: Sequence[TensorSpec], in_path: str, out_path: str) -> dict:
    """Run every sample of ``in_path`` through ``backend.evaluate`` and write the stacked
    outputs to ``out_path`` atomically. Returns the result's ``fidelity_outputs`` block:
    ``file`` (basename of ``out_path``), ``samples``, ``outputs`` (names, model order),
    ``inputs_sha256`` (of ``in_path``), ``wall_s`` (reading, evaluating and writing).

    Raises:
        InputSpecError, DatasetError: inputs that do not fit (see :func:`read_fidelity_inputs`).
        InferenceError: the runtime failed on a sample.
        OSError: ``out_path`` cannot be written.
    """
    t0 = time.perf_counter()
    arrays = read_fidelity_inputs(in_path, specs)
    n = next(iter(arrays.values())).shape[0]
    outputs: Dict[str, List[np.ndarray]] = {}
    for i in range(n):
        feeds = {s.name: fit_to_spec(s, arrays[s.name][i], f"--fidelity-inputs {s.name}[{i}]")
                 for s in specs}
        for name, out in backend.evaluate(feeds).items():
            outputs.setdefault(name, []).append(np.asarray(out))
    stacked = {name: np.stack(outs) for name, outs in outputs.items()}
    write_atomic(out_path, lambda fh: _write_npz(fh, stacked), suffix=".npz", binary=True)
    return {"file": os.path.basename(out_path), "samples": int(n), "outputs": list(stacked),
            "inputs_sha256": _file_digest([in_path]), "wall_s": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------- accuracy


def read_dataset(folder: str) -> tuple:
    """``(inputs, labels, meta)`` of a dataset folder: ``inputs.npy`` memory-mapped,
    ``labels.npy`` as int64, ``meta.json`` as a dict (``{}`` when absent).

    Raises:
        DatasetError: a missing or unreadable file, labels that are not ``(N,)`` integers
            matching the inputs' N, an empty set, or a ``meta.json`` that is not a JSON object.
    """
    if not os.path.isdir(folder):
        raise DatasetError(f"--dataset {folder}: not a folder")
    try:
        inputs = np.load(os.path.join(folder, "inputs.npy"), mmap_mode="r", allow_pickle=False)
        labels = np.load(os.path.join(folder, "labels.npy"), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"--dataset {folder}: needs inputs.npy and labels.npy ({exc})") from None
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(f"--dataset {folder}: labels.npy must be (N,) integers, got "
                           f"{labels.dtype} {labels.shape}")
    if inputs.ndim < 1 or inputs.shape[0] != labels.shape[0] or not labels.shape[0]:
        raise DatasetError(f"--dataset {folder}: inputs.npy {inputs.shape} and labels.npy {labels.shape} "
                           "must have the same N > 0")
    meta = {}
    meta_path = os.path.join(folder, "meta.json")
    if os.path.exists(meta_path):
        try:
            with open(meta_path, encoding="utf-8") as fh:
                meta = json.load(fh)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"--dataset {folder}: meta.json is not readable JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise DatasetError(f"--dataset {folder}: meta.json must be a JSON object")
    return inputs, labels.astype(np.int64), meta


def _batch_of(specs: Sequence[TensorSpec], batch, shapes) -> int:
    """The cell's batch: the single input's resolved leading dimension.

    Raises:
        DatasetError: the model has no input or more than one.
        InputSpecError: the shape cannot be resolved (as in the timed sessions).
    """
    if len(specs) != 1:
        raise DatasetError(f"--dataset needs a model with one input; this one has {len(specs)} "
                           f"({', '.join(s.name for s in specs)})")
    resolved = resolve_shapes(specs, batch=batch, shapes=shapes)[specs[0].name]
    if not resolved:
        raise DatasetError(f"--dataset: input {specs[0].name!r} is a scalar; it has no batch dimension")
    return int(resolved[0])


def _check_samples(spec: TensorSpec, shape: tuple, folder: str) -> None:
    """Raise DatasetError unless samples of ``shape[1:]`` fit ``spec`` without its batch axis."""
    want = tuple(spec.shape[1:])
    got = tuple(shape[1:])
    if len(got) != len(want) or any(isinstance(d, int) and d > 0 and d != g for d, g in zip(want, got)):
        raise DatasetError(f"--dataset {folder}: samples of shape {_fmt(got) or 'scalar'} (inputs.npy "
                           f"{_fmt(shape)}); the model's input {spec.name!r} ({_fmt(spec.shape)}) takes "
                           f"samples of {_fmt(want) or 'scalar'}")


def _scores(outputs: Mapping[str, np.ndarray], batch: int) -> np.ndarray:
    """The first output as ``(batch, classes)``. Raises DatasetError when it is not one."""
    if not outputs:
        raise DatasetError("--dataset: the backend returned no outputs")
    name, first = next(iter(outputs.items()))
    first = np.asarray(first)
    if first.ndim < 2 or first.shape[0] != batch or any(d != 1 for d in first.shape[2:]):
        raise DatasetError(f"--dataset: the first output {name!r} has shape {first.shape}; accuracy "
                           f"needs scores (batch={batch}, classes)")
    return first.reshape(batch, -1)


def _hits(scores: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows have their label among the ``k`` highest scores (stable: ties to the lower
    class index)."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def accuracy(backend, specs: Sequence[TensorSpec], folder: str, batch=1, shapes=None) -> dict:
    """Top-1 and top-5 accuracy of ``backend`` on the dataset in ``folder``. ``batch`` and
    ``shapes`` are the cell's ``--batch`` and ``--shape`` values.

    Returns the result's ``accuracy`` block: ``top1``, ``top5`` (``null`` with fewer than 5
    classes), ``n``, ``classes``, ``batch``, ``name`` (``meta.json``'s ``name``, else the
    folder's name), ``dataset_sha256`` (sha256 over the bytes of ``inputs.npy`` then
    ``labels.npy``), ``wall_s``.

    Raises:
        DatasetError: see :func:`read_dataset`; a multi-input model; samples whose shape does not
            fit the input; a first output that is not ``(batch, classes)``; labels outside
            ``[0, classes)``.
        InferenceError: the runtime failed.
    """
    t0 = time.perf_counter()
    inputs, labels, meta = read_dataset(folder)
    spec = specs[0] if specs else None
    size = _batch_of(specs, batch, shapes or {})
    _check_samples(spec, inputs.shape, folder)
    n = labels.shape[0]
    hits1 = hits5 = 0
    classes = None
    for start in range(0, n, size):
        chunk = np.asarray(inputs[start:start + size])
        real = chunk.shape[0]
        if real < size:
            chunk = np.concatenate([chunk, np.zeros((size - real,) + chunk.shape[1:], chunk.dtype)])
        try:
            feed = fit_to_spec(spec, chunk, f"--dataset inputs[{start}:{start + real}]")
        except InputSpecError as exc:
            raise DatasetError(str(exc)) from None
        scores = _scores(backend.evaluate({spec.name: feed}), size)[:real]
        if classes is None:
            classes = scores.shape[1]
            if labels.min() < 0 or labels.max() >= classes:
                raise DatasetError(f"--dataset: labels span [{labels.min()}, {labels.max()}], the model's "
                                   f"first output has {classes} classes")
        part = labels[start:start + real]
        hits1 += _hits(scores, part, 1)
        hits5 += _hits(scores, part, 5) if classes >= 5 else 0
    name = meta.get("name")
    if not isinstance(name, str):
        name = os.path.basename(os.path.abspath(folder))
    return {"top1": hits1 / n, "top5": hits5 / n if classes >= 5 else None, "n": int(n),
            "classes": int(classes), "batch": size, "name": name,
            "dataset_sha256": _file_digest([os.path.join(folder, "inputs.npy"),
                                            os.path.join(folder, "labels.npy")]),
            "wall_s": time.perf_counter() - t0}
