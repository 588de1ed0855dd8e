"""Export one PyTorch module to ONNX and prove the file right: lazy torch import, a seeded reference
run, the exporter's flags, ONNX Runtime vs PyTorch on the same input within a tolerance, and the
``.info`` sidecar written atomically next to the model. :mod:`host.models.zoo` names what to
export; every failure is a :class:`host.errors.ExportError` with a ``hint``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from host.errors import ExportError
from runners.util import file_sha256

#: Hint when torch itself is missing (the CPU wheel is enough for :func:`export_module`).
TORCH_HINT = "pip install -e '.[export]'"
#: Default opset of exported models.
DEFAULT_OPSET = 17
#: Relative tolerance of the ONNX Runtime vs PyTorch check, relative to max |torch output|.
DEFAULT_RTOL = 1e-3
#: Absolute floor added to the tolerance (random-init mobilenets output values ~1e-8).
DEFAULT_ATOL = 1e-12
#: What every sidecar says about the weights.
RANDOM_INIT_NOTE = (
    "Weights are random (seeded) initialisation, not trained: fine for latency, throughput "
    "and memory measurements, meaningless for accuracy or quantisation error."
)


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ExportError(f"PyTorch is not installed ({e})", hint=TORCH_HINT) from e
    return torch


# --------------------------------------------------------------------------- helpers


def _tmp_path(final: Path) -> Path:
    """A fresh, empty temporary file in the destination folder (same filesystem)."""
    from runners.fileio import new_temp  # the mode of an ordinary new file (umask), not mkstemp's 0600

    fd, tmp = new_temp(final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def write_info_json(path: Path, data: dict) -> None:
    """``data`` as indented JSON at ``path``, through a temporary file in its folder (all or nothing)."""
    tmp = _tmp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def copy_with_info(src: Path, dst: Path) -> None:
    """Copy the file ``src`` and its ``.info`` sidecar (when there is one) to ``dst`` and
    ``dst``'s ``.info``, making ``dst``'s folder; each written to a temp name and renamed, so a
    reader never sees half a file. Raises OSError."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    for a, b in ((src, dst), (src.with_suffix(".info"), dst.with_suffix(".info"))):
        if a.exists():
            tmp = b.with_name(f".tmp-{b.name}")
            shutil.copyfile(a, tmp)
            os.replace(tmp, b)


def info_path(onnx_path: str | os.PathLike[str]) -> Path:
    """The ``.info`` sidecar next to an ONNX file: same folder and stem, suffix ``.info``."""
    return Path(onnx_path).with_suffix(".info")


def _verify(tmp: Path, x, ref, *, opset: int, rtol: float, atol: float) -> dict:
    """Check the ONNX file and compare ONNX Runtime with the torch output ``ref``."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    try:
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model)
    except Exception as e:
        raise ExportError(f"exported file is not valid ONNX: {e}") from e
    got_opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if got_opset != opset:
        raise ExportError(f"exported opset {got_opset}, asked for {opset}")
    initializer_elements = int(sum(int(np.prod(t.dims)) for t in model.graph.initializer))

    try:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(tmp), so, providers=["CPUExecutionProvider"])
        (out,) = sess.run(["logits"], {"input": x})
    except Exception as e:
        raise ExportError(f"onnxruntime cannot run the exported model: {e}") from e
    if out.shape != ref.shape:
        raise ExportError(f"onnxruntime output shape {out.shape} != torch {ref.shape}")
    diff = float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64)), initial=0.0))
    scale = float(np.max(np.abs(ref)))
    tol = rtol * scale + atol
    if not np.isfinite(diff) or diff > tol:
        raise ExportError(
            f"onnxruntime output differs from torch: max abs diff {diff:.3g} > "
            f"tolerance {tol:.3g} (rtol {rtol:g} x max|torch| {scale:.3g})",
            hint="export with another --opset, or report the model",
        )
    return {
        "max_abs_diff": diff,
        "torch_output_max_abs": scale,
        "rtol": rtol,
        "atol": atol,
        "onnxruntime_version": ort.__version__,
        "onnx_initializer_elements": initializer_elements,
    }


# --------------------------------------------------------------------------- export


def export_module(
    module,
    input_shape: tuple[int, ...],
    path: str | os.PathLike[str],
    *,
    name: str,
    command: str,
    extra_info: dict | None = None,
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
    rtol: float = DEFAULT_RTOL,
) -> dict:
    """Export a ``torch.nn.Module`` to ONNX, verify it, and write its ``.info`` sidecar.

    The module is put in eval mode and traced with the TorchScript exporter
    (``dynamo=False``) on one float32 tensor of the static shape ``input_shape`` (e.g.
    ``(1, 3, 32, 32)``, NCHW; no dynamic axes), drawn from ``numpy.random.default_rng(seed)``.
    The graph has input ``input`` and output ``logits``.

    The file is written to a temporary file in the destination folder, checked with
    ``onnx.checker``, run in ONNX Runtime (CPU) on the same input and compared with the torch
    output: ``max|ort - torch| <= rtol * max|torch| + 1e-12``. Only then is it moved into place
    (``os.replace``), followed by ``<stem>.info`` (JSON, also atomic).

    Returns the info dict: ``name``, ``file``, ``size_bytes``, ``sha256``, ``torch_params``
    (exact ``sum(p.numel())`` over ``module.parameters()``), ``torch_buffers`` (elements of
    all buffers, e.g. BatchNorm running stats), ``input_shape``, ``output_shape``,
    ``weights`` (``"random-init"`` unless ``extra_info`` says otherwise), ``seed``, ``opset``,
    ``torch_version``, ``torchvision_version`` (``None`` unless torchvision is imported),
    ``export`` (exporter flags), ``max_abs_diff``, ``verify`` (tolerances, ORT version),
    ``command``, ``note``, plus ``extra_info`` (e.g. ``num_classes``, ``width_mult``).

    Raises :class:`ExportError` when torch is missing (hint ``pip install -e '.[export]'``),
    when the export or the ONNX check fails, or when ONNX Runtime disagrees with torch. On
    error no file is left at ``path`` (a previous file there is kept) nor any temporary file.
    """
    torch = _import_torch()
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d <= 0 for d in shape):
        raise ExportError(f"input_shape must be positive integers, got {input_shape!r}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ExportError(f"{path}: the output file must end in .onnx")
    path.parent.mkdir(parents=True, exist_ok=True)

    ref = _reference_run(torch, module, shape, seed, name)
    size, digest, verify = _export_verified(torch, module, ref, path, name=name, opset=opset, rtol=rtol)
    tv = sys.modules.get("torchvision")
    info: dict[str, Any] = {
        "name": name,
        "file": path.name,
        "size_bytes": size,
        "sha256": digest,
        "torch_params": ref["torch_params"],
        "torch_buffers": ref["torch_buffers"],
        "input_shape": list(shape),
        "input_dtype": "float32",
        "output_shape": list(ref["output"].shape),
        "weights": "random-init",
        "seed": seed,
        "opset": opset,
        "torch_version": str(torch.__version__),
        "torchvision_version": str(tv.__version__) if tv is not None else None,
        "export": _export_flags(opset),
        "max_abs_diff": verify.pop("max_abs_diff"),
        "verify": verify,
        "command": command,
        "note": RANDOM_INIT_NOTE,
    }
    if extra_info:
        info = with_extra_info(info, extra_info)
    write_info_json(info_path(path), info)
    return info


def _reference_run(torch, module, shape: tuple, seed: int, name: str) -> dict:
    """Eval mode, the seeded float32 input and torch's output on it: ``{"x"`` (numpy),
    ``"xt"`` (tensor), ``"output"`` (numpy), ``"torch_params"``, ``"torch_buffers"}``."""
    import numpy as np

    module.eval()
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    xt = torch.from_numpy(x.copy())
    torch_params = int(sum(p.numel() for p in module.parameters()))
    torch_buffers = int(sum(b.numel() for b in module.buffers()))
    try:
        with torch.no_grad():
            out = module(xt)
    except Exception as e:
        raise ExportError(f"{name}: forward pass on shape {shape} failed: {e}") from e
    if not isinstance(out, torch.Tensor):
        raise ExportError(f"{name}: the module must return one tensor, got {type(out).__name__}")
    return {"x": x, "xt": xt, "output": out.detach().cpu().numpy(),
            "torch_params": torch_params, "torch_buffers": torch_buffers}


def _export_flags(opset: int) -> dict:
    """The exporter settings :func:`_export_verified` uses, as recorded in the ``.info``."""
    return {
        "exporter": "torch.onnx.export",
        "dynamo": False,
        "opset_version": opset,
        "input_names": ["input"],
        "output_names": ["logits"],
        "dynamic_axes": None,
        "do_constant_folding": True,
        "mode": "eval",
    }


def _export_verified(torch, module, ref: dict, path: Path, *, name: str, opset: int,
                     rtol: float) -> tuple[int, str, dict]:
    """Export to a temporary file next to ``path``, verify it against ``ref`` and move it
    into place: (size_bytes, sha256, verify dict). On any error no temporary file is left
    and ``path`` is untouched."""
    tmp = _tmp_path(path)
    try:
        try:
            with warnings.catch_warnings():
                # dynamo=False is deliberate (dynamo=True ignores opset 17): mute its notice.
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                torch.onnx.export(
                    module,
                    (ref["xt"],),
                    str(tmp),
                    opset_version=opset,
                    input_names=["input"],
                    output_names=["logits"],
                    do_constant_folding=True,
                    dynamo=False,
                )
        except Exception as e:
            raise ExportError(f"{name}: torch.onnx.export failed: {e}") from e
        verify = _verify(tmp, ref["x"], ref["output"], opset=opset, rtol=rtol, atol=DEFAULT_ATOL)
        size = tmp.stat().st_size
        digest = file_sha256(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size, digest, verify


def with_extra_info(info: dict, extra_info: dict) -> dict:
    """Extra keys (num_classes, width_mult, ...) go right after the shapes and may override
    a core value (e.g. "weights")."""
    keys = list(info)
    cut = keys.index("output_shape") + 1
    head = {k: info[k] for k in keys[:cut]}
    tail = {k: info[k] for k in keys[cut:]}
    return {**head, **extra_info, **{k: v for k, v in tail.items() if k not in extra_info}}


