"""Output fidelity of a cell: does the model, as it ran on the device (at its precision, in its
runtime), give the answers of the fp32 ONNX model run by ONNX Runtime on the host?

The host builds a small fixed set of inputs per (model, input shapes) — the first samples of the
model's dataset when it has one, else seeded random inputs (``runners.inputs.synthesize``, the
runner's own generator), labelled as such —, ships it with the cell, and the runner returns its
outputs for them (outside every timed region). The reference is the *source* fp32 model under
ONNX Runtime's CPU execution provider on the host, computed once per input set. The comparison
is the one Polygraphy's ``compare`` makes between runtimes (NVIDIA TensorRT docs, "Polygraphy:
comparing outputs"): per output, top-1 agreement (argmax over the last axis, for every row of
every sample), cosine similarity per sample, the largest absolute error and the largest relative
error, where each element's error is divided by ``max(|ref|, 1e-3 · max|ref|)`` so that
near-zero reference values do not blow it up.

Random-initialised models produce near-uniform outputs whose argmax is decided by noise: their
top-1 agreement says little, and the block says so (``weights``).
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path

import numpy as np

from host.errors import FidelityError
from runners.errors import RunnerError

#: Samples in a fidelity set (each one runner call).
SAMPLES = 8
#: A variant whose top-1 agreement with the fp32 reference is below this gets a warning.
AGREEMENT_MIN = 0.99
#: Relative error floor, as a share of the reference's largest magnitude.
REL_FLOOR = 1e-3


#: ONNX Runtime's input type names -> numpy dtypes (the ones a fidelity set may need).
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
           "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
           "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


def _cache(root: Path | None) -> Path:
    path = Path(root) if root else Path.home() / ".cache" / "edgegauge" / "fidelity"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _session(model: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    try:
        return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's own exception classes
        raise FidelityError(f"{model}: ONNX Runtime cannot load it for the fidelity reference: {exc}") \
            from None


def _from_dataset(session, dataset: Path, batch: int) -> tuple:
    x = np.load(Path(dataset) / "inputs.npy")
    (spec,) = session.get_inputs()
    dims = list(spec.shape[1:])
    if len(dims) != x.ndim - 1 or any(isinstance(d, int) and d != n for d, n in zip(dims, x.shape[1:])):
        raise FidelityError(f"{dataset}: samples of shape {list(x.shape[1:])} do not fit input "
                            f"{spec.name!r} {list(spec.shape)}")
    n = min(SAMPLES, len(x) // batch)
    if n < 1:
        raise FidelityError(f"{dataset}: fewer samples than one batch of {batch}")
    samples = np.stack([x[i * batch:(i + 1) * batch] for i in range(n)]).astype(np.float32)
    return {spec.name: samples}, f"first {n * batch} samples of {dataset}"


def _random(session, batch: int, shapes: dict, seed: int) -> tuple:
    from runners.inputs import TensorSpec, resolve_shapes, synthesize

    specs = [TensorSpec(a.name, _DTYPES.get(a.type, "float32"), tuple(a.shape)) for a in session.get_inputs()]
    resolved = resolve_shapes(specs, batch=batch, shapes=shapes)
    feeds = [synthesize(specs, resolved, seed=seed + i) for i in range(SAMPLES)]
    return ({s.name: np.stack([f[s.name] for f in feeds]) for s in specs},
            f"{SAMPLES} seeded random inputs (runners.inputs.synthesize, seeds {seed}..{seed + SAMPLES - 1})")


def inputs_for(model: Path, *, batch: int = 1, shapes: dict | None = None, dataset: Path | None = None,
               seed: int = 0, cache: Path | None = None) -> tuple[Path, str]:
    """The fidelity input set of ``model``: ``(npz path, description)``. One array per input
    name; ``arr[i]`` is the complete input of call ``i`` (batch dimension included).

    Raises:
        FidelityError: the model cannot be loaded or the dataset does not fit it.
    """
    session = _session(model)
    try:
        feeds, described = (_from_dataset(session, dataset, batch) if dataset is not None and
                            len(session.get_inputs()) == 1 else _random(session, batch, shapes or {}, seed))
    except (OSError, ValueError, RunnerError) as exc:  # RunnerError: shapes that do not fit the model
        raise FidelityError(f"{model}: fidelity inputs could not be built: {exc}") from None
    buf = io.BytesIO()
    np.savez(buf, **feeds)
    data = buf.getvalue()
    path = _cache(cache) / f"inputs-{hashlib.sha256(data).hexdigest()[:32]}.npz"
    if not path.exists():
        from runners.fileio import write_atomic

        write_atomic(path, lambda fh: fh.write(data), suffix=".npz", binary=True)
    return path, described


def reference(model: Path, inputs: Path, cache: Path | None = None) -> dict:
    """The fp32 reference outputs of ``model`` on the input set ``inputs`` (ONNX Runtime CPU,
    one call per sample), cached by the two files' sha256: ``{output name: (N, ...) array}``.

    Raises:
        FidelityError: the model cannot be loaded or run on these inputs.
    """
    from host.lab.deploy import cached_sha256  # hashed once per file, however many cells use it

    key = hashlib.sha256(f"{cached_sha256(model)}:{cached_sha256(inputs)}".encode()).hexdigest()[:32]
    path = _cache(cache) / f"reference-{key}.npz"
    if path.exists():
        with np.load(path) as saved:
            return {k: saved[k] for k in saved.files}
    session = _session(model)
    with np.load(inputs) as feeds:
        names = [o.name for o in session.get_outputs()]
        n = len(feeds[feeds.files[0]])
        try:
            runs = [session.run(names, {k: feeds[k][i] for k in feeds.files}) for i in range(n)]
        except Exception as exc:
            raise FidelityError(f"{model}: the fp32 reference failed on the fidelity inputs: {exc}") from None
    outputs = {name: np.stack([r[j] for r in runs]) for j, name in enumerate(names)}
    buf = io.BytesIO()
    np.savez(buf, **outputs)
    from runners.fileio import write_atomic

    write_atomic(path, lambda fh: fh.write(buf.getvalue()), suffix=".npz", binary=True)
    return outputs


def _one(ref: np.ndarray, got: np.ndarray) -> dict:
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape:
        return {"error": f"shape {list(got.shape)} differs from the reference's {list(ref.shape)}"}
    n = ref.shape[0]
    flat_r, flat_g = ref.reshape(n, -1), got.reshape(n, -1)
    norms = np.linalg.norm(flat_r, axis=1) * np.linalg.norm(flat_g, axis=1)
    cos = np.where(norms > 0, np.sum(flat_r * flat_g, axis=1) / np.where(norms > 0, norms, 1), np.nan)
    diff = np.abs(ref - got)
    scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-30)
    rel = diff / np.maximum(np.abs(ref), REL_FLOOR * scale)
    block = {"samples": int(n), "cosine_min": _num(np.nanmin(cos)), "cosine_mean": _num(np.nanmean(cos)),
             "max_abs_error": float(diff.max()) if diff.size else 0.0,
             "max_rel_error": float(rel.max()) if rel.size else 0.0}
    if ref.ndim >= 2 and ref.shape[-1] > 1:
        top_r = ref.reshape(-1, ref.shape[-1]).argmax(axis=1)
        top_g = got.reshape(-1, got.shape[-1]).argmax(axis=1)
        block["top1_agreement"] = float(np.mean(top_r == top_g))
        block["rows"] = int(top_r.size)
    return block


def _num(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def compare(ref: dict, got: dict, *, weights: str | None = None, inputs: str = "") -> dict:
    """The cell's ``fidelity`` block: per output name the metrics above, the first output's
    figures at the top level, and ``warnings`` (top-1 agreement below :data:`AGREEMENT_MIN`,
    a missing output, random weights). ``ref``/``got``: ``{output name: (N, ...) array}``."""
    per_output = {name: (_one(ref[name], got[name]) if name in got else {"error": "missing on the device"})
                  for name in ref}
    first = per_output[next(iter(ref))] if ref else {}
    block = {"reference": "fp32 source model, ONNX Runtime CPU on the host", "inputs": inputs,
             "weights": weights, "outputs": per_output,
             **{k: first.get(k) for k in ("top1_agreement", "cosine_min", "max_abs_error", "max_rel_error")}}
    warnings = [f"output {name}: {b['error']}" for name, b in per_output.items() if "error" in b]
    agree = first.get("top1_agreement")
    if agree is not None and agree < AGREEMENT_MIN:
        warnings.append(f"fidelity_low: top-1 agreement {agree:.1%} with the fp32 reference is below "
                        f"{AGREEMENT_MIN:.0%} on {first.get('rows')} rows")
    if weights and "random" in weights:
        warnings.append("random weights: outputs are near-uniform, so top-1 agreement is decided by noise; "
                        "judge fidelity on a trained model")
    block["warnings"] = warnings
    return block


def model_dataset(model: Path) -> Path | None:
    """The dataset folder a model's ``.info`` names (``"dataset"``, relative to the .info), or None;
    an image folder (:func:`host.models.datasets.prepare_dataset`) gives its cached arrays folder.

    Raises:
        DatasetFormatError: the named folder is an image folder that cannot be converted.
    """
    from host.models.datasets import is_image_folder, prepare_dataset

    info = Path(model).with_suffix(".info")
    try:
        rel = json.loads(info.read_text(encoding="utf-8")).get("dataset")
    except (OSError, ValueError, AttributeError):
        return None
    if not rel:
        return None
    path = (info.parent / rel).resolve()
    if is_image_folder(path):
        return prepare_dataset(path)
    return path if (path / "inputs.npy").is_file() and (path / "labels.npy").is_file() else None


def model_weights(model: Path) -> str | None:
    """``weights`` of the model's ``.info`` (e.g. ``random-init``, ``trained``), or None."""
    try:
        value = json.loads(Path(model).with_suffix(".info").read_text(encoding="utf-8")).get("weights")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


class CellFidelity:
    """What a campaign run needs per cell for fidelity and accuracy: the input set and dataset
    each cell's first process gets, and the ``fidelity`` block from its outputs. Input sets and
    references are cached (per model and input shapes); a failure to build them is a note, and
    the cell runs without fidelity.

    Args:
        dataset: ``--dataset DIR`` for every model whose input it fits; else each model's own
            (its ``.info`` ``dataset``).
        cache: folder for input sets and references (default ``~/.cache/edgegauge/fidelity``).
    """

    def __init__(self, dataset: Path | None = None, cache: Path | None = None):
        self.dataset_override = Path(dataset) if dataset else None
        self.cache = cache
        self.notes: list = []
        self._inputs: dict = {}
        self._lock = threading.Lock()

    def dataset(self, model: Path) -> Path | None:
        """The arrays folder of ``model``'s dataset (``--dataset`` or its own), image folders
        converted (cached); None, with a note, when an image folder cannot be converted."""
        from host.errors import DatasetFormatError
        from host.models.datasets import is_image_folder, prepare_dataset

        try:
            if self.dataset_override is not None and is_image_folder(self.dataset_override):
                return prepare_dataset(self.dataset_override)
            return self.dataset_override or model_dataset(model)
        except DatasetFormatError as exc:
            if str(exc) not in self.notes:
                self.notes.append(str(exc))
            return None

    def inputs(self, model: Path, cfg) -> tuple:
        """``(npz path or None, description)`` for ``model`` under configuration ``cfg``; None
        for a backend whose descriptor says it returns no outputs (``null``)."""
        from host.models import is_onnx
        from runners.backends import descriptors

        desc = descriptors().get(cfg.backend)
        if desc is not None and not desc.returns_outputs:
            return None, f"the {cfg.backend} backend has no outputs"
        if not is_onnx(model):
            return None, "a compiled model has no fp32 ONNX reference here"
        key = (Path(model), cfg.batch, cfg.shapes, self.dataset(model))
        with self._lock:
            if key not in self._inputs:
                try:
                    self._inputs[key] = inputs_for(model, batch=cfg.batch, shapes=cfg.shapes_dict(),
                                                   dataset=key[3], seed=cfg.seed, cache=self.cache)
                except FidelityError as exc:
                    self.notes.append(str(exc))
                    self._inputs[key] = (None, str(exc))
            return self._inputs[key]

    def block(self, model: Path, cfg, outcome) -> dict | None:
        """The cell's ``fidelity`` block from the first process's ``outcome`` (None when no
        input set was sent); a reference that fails is reported in the block."""
        path, described = self.inputs(model, cfg)
        if path is None:
            return None
        if not outcome.arrays:
            why = outcome.result_error or "the runner returned none"
            return {"error": f"no outputs from the device: {why}", "inputs": described}
        try:
            ref = reference(model, path, self.cache)
        except FidelityError as exc:
            return {"error": str(exc), "inputs": described}
        return compare(ref, outcome.arrays, weights=model_weights(model), inputs=described)
