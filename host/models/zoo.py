"""Example model zoo: export PyTorch models to ONNX with a provenance sidecar.

``host zoo export`` (see :mod:`host.cli.zoo`) builds the small torchvision classifiers listed
in :data:`ZOO` with **random weights** and writes, per model, into one folder:

* ``<name>.onnx``: opset 17 (by default), one static-shape input ``input`` (float32, NCHW)
  and one output ``logits`` (float32, ``(batch, num_classes)``);
* ``<name>.info``: a JSON sidecar saying what the file is and how to make it again
  (PyTorch parameter count, input shape, versions, seed, export flags, the exact command).

The export itself (torch -> ONNX, checked against ONNX Runtime, with its sidecar) is
:mod:`host.models.onnxexport`; this module names what to export and where.

Random weights are fine for latency and memory measurements (the graph, shapes and FLOPs are
those of the real model) but useless for accuracy or quantisation-error studies.

torch and torchvision are optional: they are imported lazily, so ``import host.models.zoo`` (and
reading :data:`ZOO`) works without them. Every failure is raised as
:class:`host.errors.ExportError` with a ``hint``; nothing here prints or exits.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host.errors import ExportError
from host.models.onnxexport import DEFAULT_OPSET, export_module, info_path

#: Hint when torchvision is missing or does not import (e.g. beside the 2.13.0 CPU torch).
TORCHVISION_HINT = (
    "pip install torch==2.14.1 torchvision==0.29.1  "
    "(the CPU torch 2.13.0 cannot import PyPI torchvision)"
)
#: Default folder of the committed example models (relative to the repository root).
DEFAULT_OUT_DIR = "examples/models"


@dataclass(frozen=True)
class ZooEntry:
    """One example model of the zoo.

    ``arch`` is a ``torchvision.models`` builder name; it is called as
    ``builder(weights=None, num_classes=num_classes, **kwargs)``. ``input_shape`` is the static
    NCHW input shape (batch 1, float32); ``num_classes`` the width of the ``logits`` output.
    """

    name: str
    arch: str
    input_shape: tuple[int, ...]
    num_classes: int
    dataset: str
    width_mult: float | None = None
    summary: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: where ``arch`` comes from: "torchvision" (``torchvision.models``), "scaled"
    #: (:mod:`host.models.scaled`) or "timm" (``timm.create_model``, an optional library)
    builder: str = "torchvision"
    #: the model set (``host zoo export --set``) of this entry; "" for :data:`ZOO`
    set_name: str = ""

    def builder_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the torchvision builder (``weights=None``: never download)."""
        kw: dict[str, Any] = {"weights": None, "num_classes": self.num_classes, **self.kwargs}
        if self.width_mult is not None:
            kw["width_mult"] = self.width_mult
        return kw


CIFAR10_SHAPE = (1, 3, 32, 32)
IMAGENET_SHAPE = (1, 3, 224, 224)


def _mnv2_cifar(w: float) -> ZooEntry:
    return ZooEntry(
        name=f"mobilenet_v2_w{w}_cifar10",
        arch="mobilenet_v2",
        input_shape=CIFAR10_SHAPE,
        num_classes=10,
        dataset="cifar10",
        width_mult=w,
        summary=f"MobileNetV2, width multiplier {w:g}, CIFAR-10 shaped",
    )


#: The example models, in export order. Stock torchvision architectures (no CIFAR-specific
#: stem changes): at 32x32 the last feature map is 1x1.
ZOO: list[ZooEntry] = [
    _mnv2_cifar(0.25),
    _mnv2_cifar(0.5),
    _mnv2_cifar(0.75),
    _mnv2_cifar(1.0),
    ZooEntry(
        name="mobilenet_v3_small_cifar10",
        arch="mobilenet_v3_small",
        input_shape=CIFAR10_SHAPE,
        num_classes=10,
        dataset="cifar10",
        summary="MobileNetV3-Small, CIFAR-10 shaped",
    ),
    # ImageNet shaped. mobilenet_v3_small (10.2 MB) or mobilenet_v2 w0.5 (7.9 MB) at 224/1000
    # would push examples/models past its 30 MB budget; squeezenet1_1 is 5.0 MB.
    ZooEntry(
        name="squeezenet1_1_imagenet",
        arch="squeezenet1_1",
        input_shape=IMAGENET_SHAPE,
        num_classes=1000,
        dataset="imagenet",
        summary="SqueezeNet 1.1, ImageNet shaped (224x224, 1000 classes)",
    ),
]


def zoo_entry(name: str) -> ZooEntry:
    """Return the :data:`ZOO` entry called ``name``; unknown name -> :class:`ExportError`."""
    for entry in ZOO:
        if entry.name == name:
            return entry
    known = ", ".join(e.name for e in ZOO)
    raise ExportError(f"unknown zoo model {name!r} (known: {known})", hint="host zoo export --list")


def zoo_command(out_dir: str | os.PathLike[str], name: str) -> str:
    """The user-facing command line that re-creates one zoo model in ``out_dir``."""
    return f"host zoo export --out {shlex.quote(str(out_dir))} --only {shlex.quote(name)}"


def catalogue(folder: str | os.PathLike[str] | None = None) -> list[dict]:
    """Every model ``host zoo list`` names: the :data:`ZOO` entries (``host zoo export`` makes
    them), then every other model bundled in ``folder`` (default: the repository's
    ``examples/models``) that has a ``.info`` (``digits_cnn``, trained by its own script). Each row:
    ``name``, ``weights`` (``random`` or ``trained``), ``input_shape``, ``num_classes``, ``dataset``
    (its shape), ``bundled`` (the ``.onnx`` is in ``folder``), ``path`` (or None) and ``command``
    (what re-creates it).

    Raises:
        ExportError: a bundled model's ``.info`` is unreadable.
    """
    folder = Path(folder) if folder is not None else _EXAMPLES_DIR / "models"
    rows = []
    for e in ZOO:
        path = folder / f"{e.name}.onnx"
        rows.append({"name": e.name, "weights": "random", "input_shape": list(e.input_shape),
                     "num_classes": e.num_classes, "dataset": e.dataset, "bundled": path.is_file(),
                     "path": str(path) if path.is_file() else None,
                     "command": f"host zoo export --only {shlex.quote(e.name)}"})
    known = {e.name for e in ZOO}
    for path in sorted(folder.glob("*.onnx")) if folder.is_dir() else []:
        info = read_info(path)
        if path.stem in known or info is None:
            continue
        rows.append({"name": path.stem, "weights": info.get("weights") or "random",
                     "input_shape": info.get("input_shape"), "num_classes": info.get("num_classes"),
                     "dataset": info.get("dataset_shape"), "bundled": True, "path": str(path),
                     "command": info.get("command")})
    return rows


# --------------------------------------------------------------------------- model sets
# ``host zoo export --set NAME``: the model populations of the studies this toolkit reproduces.
# Large, so written to a cache folder (never to examples/) and skipped when already exported
# with the same recipe.

#: ModelGauge's input sizes (square, NCHW batch 1) and MobileNetV2 widths.
MODELGAUGE_SIZES = (32, 128, 224)
MODELGAUGE_MNV2_WIDTHS = (0.2, 0.4, 0.6, 0.8, 1.0)
#: The scaling study's width multipliers and architectures (CIFAR-10 shaped).
SCALING_WIDTHS = (0.25, 0.5, 0.75, 1.0)
SCALING_ARCHS = ("vgg11", "mobilenet_v2", "resnet50")
#: ModelGauge's fixed-width torchvision architectures: (builder name, label).
_MG_ARCHS = (
    ("efficientnet_v2_s", "EfficientNetV2-S"),
    ("mobilenet_v3_small", "MobileNetV3-Small"),
    ("mobilenet_v3_large", "MobileNetV3-Large"),
    ("resnet50", "ResNet-50"),
    ("wide_resnet50_2", "WideResNet-50-2"),
)
#: Hint for an unknown set name.
SET_HINT = "host zoo export --set modelgauge --list  (sets: modelgauge, scaling)"


def _mg(arch: str, label: str, size: int, width: float | None = None,
        builder: str = "torchvision") -> ZooEntry:
    tag = f"_w{width:g}" if width is not None else ""
    return ZooEntry(
        name=f"mg_{arch}{tag}_s{size}", arch=arch, input_shape=(1, 3, size, size), num_classes=1000,
        dataset="imagenet", width_mult=width, builder=builder, set_name="modelgauge",
        summary=f"{label}{f', width {width:g}' if width is not None else ''}, {size}x{size}, 1000 classes",
    )


def _modelgauge_set() -> list[ZooEntry]:
    """ModelGauge's 32 models: 10 CNNs x 3 input sizes, ViT-B/16 at 224, MobileViT-S at 256."""
    entries = []
    cnns = [(arch, label, None) for arch, label in _MG_ARCHS[:1]]
    cnns += [("mobilenet_v2", "MobileNetV2", w) for w in MODELGAUGE_MNV2_WIDTHS]
    cnns += [(arch, label, None) for arch, label in _MG_ARCHS[1:]]
    for arch, label, width in cnns:
        entries += [_mg(arch, label, size, width) for size in MODELGAUGE_SIZES]
    entries.append(_mg("vit_b_16", "ViT-B/16", 224))
    entries.append(_mg("mobilevit_s", "MobileViT-S (timm)", 256, builder="timm"))
    return entries


def _scaling_set() -> list[ZooEntry]:
    """The scaling study: VGG-11, MobileNetV2, ResNet-50 at widths 0.25-1.0, CIFAR-10 shaped."""
    labels = {"vgg11": "VGG-11", "mobilenet_v2": "MobileNetV2", "resnet50": "ResNet-50"}
    return [
        ZooEntry(
            name=f"sc_{arch}_w{w:g}_cifar10", arch=arch, input_shape=CIFAR10_SHAPE, num_classes=10,
            dataset="cifar10", width_mult=w, builder="torchvision" if arch == "mobilenet_v2" else "scaled",
            set_name="scaling", summary=f"{labels[arch]}, uniform width {w:g}, CIFAR-10 shaped",
        )
        for arch in SCALING_ARCHS for w in SCALING_WIDTHS
    ]


#: The model sets, by name, each in export order.
MODEL_SETS: dict[str, list[ZooEntry]] = {"modelgauge": _modelgauge_set(), "scaling": _scaling_set()}


def set_entries(set_name: str, only: Sequence[str] | None = None) -> list[ZooEntry]:
    """The entries of model set ``set_name`` (or its ``only`` names, in set order).

    Raises :class:`ExportError`: unknown set (hint lists the sets) or a name not in the set."""
    if set_name not in MODEL_SETS:
        raise ExportError(f"unknown model set {set_name!r} (known: {', '.join(MODEL_SETS)})", hint=SET_HINT)
    entries = MODEL_SETS[set_name]
    if not only:
        return list(entries)
    names = {e.name for e in entries}
    unknown = [n for n in dict.fromkeys(only) if n not in names]
    if unknown:
        raise ExportError(f"not in model set {set_name!r}: {', '.join(unknown)}",
                          hint=f"host zoo export --set {set_name} --list")
    return [e for e in entries if e.name in set(only)]


def default_set_dir(set_name: str) -> Path:
    """``$XDG_CACHE_HOME/edgegauge/models/<set>`` (default ``~/.cache/...``): where sets go."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgegauge" / "models" / set_name


def entry_recipe(entry: ZooEntry, *, seed: int, opset: int, versions: dict) -> dict:
    """What makes an exported set model what it is (JSON-normal): name, set, builder, arch,
    input shape, classes, width, builder kwargs, seed, opset and the library ``versions``
    (``{"torch": ..., "torchvision": ..., ["timm": ...]}``). Stored in the ``.info`` as ``recipe``."""
    doc = {"name": entry.name, "set": entry.set_name, "builder": entry.builder, "arch": entry.arch,
           "input_shape": list(entry.input_shape), "num_classes": entry.num_classes,
           "width_mult": entry.width_mult, "kwargs": dict(entry.kwargs), "seed": seed, "opset": opset,
           "versions": dict(versions)}
    return json.loads(json.dumps(doc))


def cached_info(out_dir: str | os.PathLike[str], entry: ZooEntry, recipe: dict) -> dict | None:
    """The ``.info`` of ``<out_dir>/<name>.onnx`` when it was exported with exactly ``recipe`` and
    the file still has the recorded size; ``None`` (export again) otherwise, also for a missing
    or unreadable sidecar."""
    path = Path(out_dir) / f"{entry.name}.onnx"
    try:
        info = read_info(path)
    except ExportError:
        return None
    if info is None or not path.is_file() or info.get("recipe") != recipe:
        return None
    return info if info.get("size_bytes") == path.stat().st_size else None


# --------------------------------------------------------------------------- lazy imports



def _import_torchvision():
    _import_torch_for_zoo()
    try:
        import torchvision
        import torchvision.models
    except Exception as e:  # ImportError, or RuntimeError "operator torchvision::nms ..."
        raise ExportError(
            f"torchvision is missing or does not import ({type(e).__name__}: {e})",
            hint=TORCHVISION_HINT,
        ) from e
    return torchvision


def _import_torch_for_zoo():
    try:
        import torch
    except ImportError as e:
        raise ExportError(
            f"PyTorch is not installed ({e}); the zoo needs torch and torchvision",
            hint=TORCHVISION_HINT,
        ) from e
    return torch


def build_entry(entry: ZooEntry, *, seed: int = 0):
    """Build the torchvision model of ``entry`` with seeded random weights (no download)."""
    torch = _import_torch_for_zoo()
    torchvision = _import_torchvision()
    try:
        builder = getattr(torchvision.models, entry.arch)
    except AttributeError as e:
        raise ExportError(
            f"{entry.name}: torchvision {torchvision.__version__} has no model {entry.arch!r}",
            hint=TORCHVISION_HINT,
        ) from e
    torch.manual_seed(seed)
    try:
        return builder(**entry.builder_kwargs())
    except Exception as e:
        raise ExportError(f"{entry.name}: building {entry.arch} failed: {e}") from e


def export_zoo(
    out_dir: str | os.PathLike[str] = DEFAULT_OUT_DIR,
    only: Sequence[str] | None = None,
    progress: Callable[[int, int, ZooEntry], None] | None = None,
    *,
    seed: int = 0,
    opset: int = DEFAULT_OPSET,
) -> list[dict]:
    """Export the :data:`ZOO` models (or the ``only`` names, in zoo order) into ``out_dir``.

    Writes ``<out_dir>/<name>.onnx`` and ``<name>.info`` per model (see :func:`export_module`)
    and returns their info dicts. Each model is built after ``torch.manual_seed(seed)``, so the
    files are reproducible for a given torch/torchvision pair. The ``command`` recorded is
    ``host zoo export --out <out_dir> --only <name>`` with ``out_dir`` as given, so pass the
    path the user would type (e.g. ``examples/models`` from the repository root).

    ``progress(i, total, entry)`` is called before each model (``i`` from 0).

    Raises :class:`ExportError`: unknown name in ``only`` (hint ``host zoo export --list``),
    torch or torchvision missing or not importable (hint
    ``pip install torch==2.14.1 torchvision==0.29.1``), or any :func:`export_module` error.
    """
    if only:
        wanted = list(dict.fromkeys(only))
        for n in wanted:
            zoo_entry(n)  # raises on unknown names before any work
        entries = [e for e in ZOO if e.name in wanted]
    else:
        entries = list(ZOO)
    _import_torchvision()

    out = Path(out_dir)
    infos = []
    for i, entry in enumerate(entries):
        if progress is not None:
            progress(i, len(entries), entry)
        model = build_entry(entry, seed=seed)
        extra: dict[str, Any] = {
            "arch": f"torchvision.models.{entry.arch}",
            "dataset_shape": entry.dataset,
            "num_classes": entry.num_classes,
        }
        if entry.width_mult is not None:
            extra["width_mult"] = entry.width_mult
        info = export_module(
            model,
            entry.input_shape,
            out / f"{entry.name}.onnx",
            name=entry.name,
            command=zoo_command(out_dir, entry.name),
            extra_info=extra,
            opset=opset,
            seed=seed,
        )
        infos.append(info)
    return infos


def read_info(onnx_path: str | os.PathLike[str]) -> dict | None:
    """The parsed ``.info`` sidecar of an ONNX file, or ``None`` when there is none."""
    p = info_path(onnx_path)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"{p}: unreadable .info sidecar: {e}") from e


# --------------------------------------------------------------------------- model set export

#: The repository's examples/ folder: model sets are never written there.
_EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


def _set_versions(entry: ZooEntry) -> dict:
    """Library versions that go into ``entry``'s recipe (imports torch/torchvision, timm for timm)."""
    torch = _import_torch_for_zoo()
    versions = {"torch": str(torch.__version__), "torchvision": str(_import_torchvision().__version__)}
    if entry.builder == "timm":
        import timm

        versions["timm"] = str(timm.__version__)
    return versions


def _unavailable(entry: ZooEntry) -> str | None:
    """Why ``entry`` cannot be built with the installed libraries (it is then skipped), or None."""
    if entry.builder == "timm":
        try:
            import timm  # noqa: F401
        except Exception as e:  # ImportError, or a broken install
            return f"timm is not importable ({type(e).__name__}: {e}); {entry.summary} comes from timm"
        return None
    if entry.builder == "torchvision" and not hasattr(_import_torchvision().models, entry.arch):
        return f"torchvision {_import_torchvision().__version__} has no model {entry.arch!r}"
    return None


def build_set_entry(entry: ZooEntry, *, seed: int = 0):
    """Build one set model with seeded random weights (never downloads: ``weights=None``,
    ``pretrained=False``). Raises :class:`ExportError` when the builder fails."""
    if entry.builder == "torchvision":
        return build_entry(entry, seed=seed)
    torch = _import_torch_for_zoo()
    _import_torchvision()
    torch.manual_seed(seed)
    try:
        if entry.builder == "scaled":
            from host.models.scaled import build_scaled

            return build_scaled(entry.arch, float(entry.width_mult or 1.0), entry.num_classes,
                                input_size=entry.input_shape[-1])
        if entry.builder == "timm":
            import timm

            return timm.create_model(entry.arch, pretrained=False, num_classes=entry.num_classes)
    except Exception as e:
        raise ExportError(f"{entry.name}: building {entry.builder} {entry.arch} failed: {e}") from e
    raise ExportError(f"{entry.name}: unknown builder {entry.builder!r}")


def _set_extra_info(entry: ZooEntry, recipe: dict) -> dict:
    source = {"torchvision": f"torchvision.models.{entry.arch}",
              "scaled": f"host.models.scaled.build_scaled({entry.arch!r}, width) on torchvision blocks",
              "timm": f"timm.create_model({entry.arch!r})"}[entry.builder]
    return {"arch": source, "source": entry.builder, "set": entry.set_name, "summary": entry.summary,
            "dataset_shape": entry.dataset, "num_classes": entry.num_classes,
            "input_size": list(entry.input_shape[2:]), "width_mult": entry.width_mult, "recipe": recipe}


def export_set(
    set_name: str,
    out_dir: str | os.PathLike[str] | None = None,
    only: Sequence[str] | None = None,
    progress: Callable[[int, int, ZooEntry], None] | None = None,
    *,
    seed: int = 0,
    opset: int = DEFAULT_OPSET,
) -> list[dict]:
    """Export model set ``set_name`` (:data:`MODEL_SETS`) into ``out_dir``
    (default :func:`default_set_dir`), skipping models already there with the same recipe.

    Returns one dict per entry, in set order: the ``.info`` dict plus ``status`` ("exported" or
    "cached") and ``export_s`` (seconds, 0 when cached); or ``{"name", "status": "skipped",
    "reason"}`` when the installed libraries cannot build it (e.g. MobileViT without timm).
    Each ``.info`` also holds ``set``, ``source``, ``input_size``, ``width_mult`` and ``recipe``
    (:func:`entry_recipe`); ``torch_params`` is the exact PyTorch parameter count.

    Raises :class:`ExportError`: unknown set or name (before importing torch), ``out_dir`` inside
    the repository's examples/, torch/torchvision missing, or any :func:`export_module` error.
    """
    import time

    entries = set_entries(set_name, only)
    out = Path(out_dir) if out_dir is not None else default_set_dir(set_name)
    resolved = out.resolve()
    if resolved == _EXAMPLES_DIR or _EXAMPLES_DIR in resolved.parents:
        raise ExportError(f"{out}: model sets are large and never go into examples/",
                          hint=f"leave out --out (default {default_set_dir(set_name)})")
    _import_torchvision()
    rows = []
    for i, entry in enumerate(entries):
        if progress is not None:
            progress(i, len(entries), entry)
        reason = _unavailable(entry)
        if reason is not None:
            rows.append({"name": entry.name, "status": "skipped", "reason": reason})
            continue
        recipe = entry_recipe(entry, seed=seed, opset=opset, versions=_set_versions(entry))
        hit = cached_info(out, entry, recipe)
        if hit is not None:
            rows.append(dict(hit, status="cached", export_s=0.0))
            continue
        t0 = time.perf_counter()
        info = export_module(
            build_set_entry(entry, seed=seed), entry.input_shape, out / f"{entry.name}.onnx",
            name=entry.name, extra_info=_set_extra_info(entry, recipe), opset=opset, seed=seed,
            command=f"host zoo export --set {shlex.quote(set_name)} --out {shlex.quote(str(out))} "
                    f"--only {shlex.quote(entry.name)}",
        )
        rows.append(dict(info, status="exported", export_s=round(time.perf_counter() - t0, 3)))
    return rows
