"""Image folders as array datasets: accuracy sets (``--dataset DIR``) and int8 calibration inputs.

The runner (:mod:`runners.evaluation`) and the int8 calibration of :mod:`host.models.precision`
read arrays only. An *image folder* is turned into arrays here, on the host, once, and cached.

**Accuracy set** (:func:`prepare_dataset`): the ImageFolder convention of torchvision: one
sub-folder per class, its images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, any case; searched
recursively; other files ignored) labelled with the class's index in the sorted sub-folder names
(``0..K-1``), or in the spec's ``classes`` list. A folder that already holds ``inputs.npy`` +
``labels.npy`` is used as it is.

**Calibration set** (:func:`calibration_arrays`): the same folder layout, or images directly in
the folder (labels are not needed); every image, sorted by path, becomes one sample of
``calibration.npy``. A folder of ``.npy``/``.npz`` files is used as it is.

Both need ``preprocess.json`` at the top of the image folder, a JSON object with the keys below
(any other key is an error). Each image is processed in this order:

* ``color``: ``"RGB"`` (default; 3 channels) or ``"L"`` (grayscale, 1 channel; Pillow's ITU-R
  601-2 luma ``L = 0.299 R + 0.587 G + 0.114 B``), by Pillow's ``Image.convert``;
* ``resize_shorter`` (optional, pixels): resize (bilinear) so that the shorter side has this
  length, the longer one ``int(resize_shorter * long / short)`` (torchvision's ``Resize(int)``),
  then center-crop to ``size`` (torchvision's ``CenterCrop``: offsets ``round((H - h) / 2)``,
  ``round((W - w) / 2)``; an image smaller than the crop is an error); needs ``size``;
* ``size`` (optional) ``[H, W]``: without ``resize_shorter``, resize (bilinear) to exactly
  ``H x W``; without ``size`` the images keep their own size, which must then be one size;
* ``scale`` (default 1): pixel values ``0..255`` are multiplied by it (a number, or a string
  ``"1/255"``);
* ``mean``, ``std`` (defaults 0 and 1): one number, or one per channel:
  ``x = (pixel * scale - mean[c]) / std[c]`` (torchvision's ``ToTensor`` + ``Normalize`` is
  ``scale: "1/255"`` with ``mean``/``std`` on the 0..1 scale);
* ``layout``: ``"NCHW"`` (default) or ``"NHWC"``: a sample is ``(C, H, W)`` or ``(H, W, C)``;
* ``dtype``: ``"float32"`` (the only one);
* ``classes`` (optional, accuracy sets): class names in label order; a listed class without a
  sub-folder has no images, a sub-folder not listed is an error;
* ``name``, ``description`` (optional): the dataset's name (``meta.json``'s ``name``, which the
  runner reports; default the folder's name) and free text.

Bilinear resizing is Pillow's ``Image.resize(..., BILINEAR)`` (antialiased when shrinking, as
torchvision's ``Resize`` on PIL images). Arithmetic is in float64, stored as float32.

Converted folders are cached under ``~/.cache/edgegauge/datasets/<key>/`` (or ``cache_dir``),
``key`` = sha256 over the kind (dataset or calibration), the normalised spec, Pillow's version
and every image's path (relative to the folder) and bytes; a dataset folder holds
``inputs.npy``, ``labels.npy`` (int64) and ``meta.json`` (``name``, ``source``, ``preprocess``,
``preprocess_sha256``, ``classes``, ``counts``, ``n``, ``sample_shape``, ...), a calibration
folder ``calibration.npy`` and ``meta.json``. Each is written into a temporary folder beside
it and renamed into place, so the cache never holds a partial folder. A second call with the
same images and spec returns the same folder without reading an image again (the images'
bytes are still hashed unless their sizes and modification times are those of an earlier call
in this process). Every failure is a :class:`host.errors.DatasetFormatError` naming the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np

from host.errors import DatasetFormatError
from runners.fileio import new_temp, write_json_atomic
from runners.util import file_sha256, utc_now

__all__ = ["DEFAULT_CACHE_DIR", "IMAGE_SUFFIXES", "SPEC_FILE", "calibration_arrays", "is_image_folder",
           "prepare_dataset", "read_spec"]

#: The preprocessing spec of an image folder.
SPEC_FILE = "preprocess.json"
#: Image file suffixes read (compared in lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: Default cache of converted folders (``~`` expanded at use).
DEFAULT_CACHE_DIR = Path("~/.cache/edgegauge/datasets")
#: ``schema`` of the cached folders' ``meta.json``.
META_SCHEMA = "edgegauge.dataset/1"

_KEYS = ("size", "resize_shorter", "color", "scale", "mean", "std", "layout", "dtype", "classes", "name",
         "description")
_SPEC_HINT = f"{SPEC_FILE} keys: {', '.join(_KEYS)} (see README, 'Precision variants')"
_memo: dict = {}
_lock = threading.Lock()


# --------------------------------------------------------------------------------------------
# public API


def is_image_folder(folder: Path) -> bool:
    """True when ``folder`` is meant as an image folder: no ``inputs.npy`` in it, and a
    ``preprocess.json`` or a sub-folder holding images. (It may still be invalid.)"""
    folder = Path(folder)
    if not folder.is_dir() or (folder / "inputs.npy").is_file():
        return False
    if (folder / SPEC_FILE).is_file():
        return True
    return any(sub.is_dir() and _images_under(sub) for sub in folder.iterdir())


def read_spec(folder: Path) -> dict:
    """The normalised preprocessing spec of the image folder ``folder`` (its ``preprocess.json``,
    see the module docstring): every key present, ``scale`` a float, ``mean``/``std`` one float
    per channel, ``size`` ``[H, W]`` or None, ``classes`` a list or None.

    Raises:
        DatasetFormatError: no ``preprocess.json``, not a JSON object, an unknown key or a bad value.
    """
    folder = Path(folder)
    path = folder / SPEC_FILE
    if not path.is_file():
        raise DatasetFormatError(folder, f"no {SPEC_FILE}: an image folder states its preprocessing",
                                 hint='e.g. {"size": [32, 32], "scale": "1/255", "layout": "NCHW"}; '
                                      + _SPEC_HINT)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetFormatError(folder, f"{SPEC_FILE} is not readable JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise DatasetFormatError(folder, f"{SPEC_FILE} must be a JSON object")
    unknown = sorted(set(doc) - set(_KEYS))
    if unknown:
        raise DatasetFormatError(folder, f"{SPEC_FILE}: unknown key(s) {unknown}", hint=_SPEC_HINT)
    return _normalise(folder, doc)


def prepare_dataset(folder: Path, cache_dir: Path | None = None) -> Path:
    """The array dataset of ``folder``: ``folder`` itself when it holds ``inputs.npy`` and
    ``labels.npy``; for an image folder (class sub-folders + ``preprocess.json``), the cached
    folder ``<cache_dir>/<key>/`` with ``inputs.npy`` ``(N, C, H, W)`` or ``(N, H, W, C)``
    float32, ``labels.npy`` ``(N,)`` int64 and ``meta.json``, made on the first call.

    Raises:
        DatasetFormatError: ``folder`` missing or neither kind; no ``preprocess.json``; a bad
            spec; no class sub-folder, a sub-folder not in ``classes``, images outside the class
            sub-folders, no image at all; an unreadable image; images of different sizes after
            preprocessing; the cache not writable.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetFormatError(folder, "dataset folder not found")
    if (folder / "inputs.npy").is_file() and (folder / "labels.npy").is_file():
        return folder
    if not is_image_folder(folder):
        raise DatasetFormatError(folder, "neither inputs.npy + labels.npy nor an image folder",
                                 hint=f"one sub-folder of images per class and a {SPEC_FILE}")
    spec = read_spec(folder)
    classes, files, labels = _labelled_images(folder, spec)
    return _cached(folder, "dataset", spec, files, cache_dir,
                   lambda out: _write_dataset(out, folder, spec, classes, files, labels))


def calibration_arrays(folder: Path, cache_dir: Path | None = None) -> Path:
    """The int8 calibration folder for ``folder``: ``folder`` itself unless it is an image folder
    (see :func:`is_image_folder`); then the cached folder ``<cache_dir>/<key>/`` holding
    ``calibration.npy`` (``(N, C, H, W)`` or ``(N, H, W, C)`` float32: the leading axis is the
    sample, i.e. the batch axis of a batch-1 model input, as
    :func:`host.models.precision.variant` reads a folder) and ``meta.json``. Images are taken
    from the folder and all its sub-folders, sorted by relative path.

    Raises:
        DatasetFormatError: as :func:`prepare_dataset` (no image at all, unreadable image,
            mixed sizes, bad or missing spec, cache not writable).
    """
    folder = Path(folder)
    if not is_image_folder(folder):
        return folder
    spec = read_spec(folder)
    files = _images_under(folder)
    if not files:
        raise DatasetFormatError(folder, f"no image ({', '.join(IMAGE_SUFFIXES)}) in it or its sub-folders")
    return _cached(folder, "calibration", spec, files, cache_dir,
                   lambda out: _write_calibration(out, folder, spec, files))


def spec_sha256(spec: dict) -> str:
    """sha256 of a normalised spec (:func:`read_spec`), over its canonical JSON."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# the spec


def _number(folder: Path, key: str, value) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            return float(Fraction(value.strip()))
        return float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise DatasetFormatError(folder, f"{SPEC_FILE}: {key} must be a number or 'a/b', not {value!r}") \
            from None


def _per_channel(folder: Path, key: str, value, channels: int) -> list[float]:
    values = value if isinstance(value, list) else [value]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise DatasetFormatError(folder, f"{SPEC_FILE}: {key} has {len(values)} values for {channels} "
                                 "channel(s)", hint="one number, or one per channel")
    return [_number(folder, key, v) for v in values]


def _positive_ints(folder: Path, key: str, value, count: int) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if len(values) != count or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        want = "[H, W], two positive integers" if count == 2 else "a positive integer"
        raise DatasetFormatError(folder, f"{SPEC_FILE}: {key} must be {want}, not {value!r}")
    return values


def _choice(folder: Path, doc: dict, key: str, allowed: tuple) -> str:
    value = doc.get(key, allowed[0])
    if value not in allowed:
        raise DatasetFormatError(folder, f"{SPEC_FILE}: {key} must be one of {list(allowed)}, not {value!r}")
    return value


def _normalise(folder: Path, doc: dict) -> dict:
    """The validated spec with every key (see :func:`read_spec`)."""
    color = _choice(folder, doc, "color", ("RGB", "L"))
    channels = 3 if color == "RGB" else 1
    size = _positive_ints(folder, "size", doc["size"], 2) if doc.get("size") is not None else None
    shorter = doc.get("resize_shorter")
    if shorter is not None:
        shorter = _positive_ints(folder, "resize_shorter", shorter, 1)[0]
        if size is None:
            raise DatasetFormatError(folder, f"{SPEC_FILE}: resize_shorter needs size (the center crop)")
    std = _per_channel(folder, "std", doc.get("std", 1), channels)
    if any(s == 0 for s in std):
        raise DatasetFormatError(folder, f"{SPEC_FILE}: std must not be 0")
    classes = doc.get("classes")
    if classes is not None and (not isinstance(classes, list) or not classes
                                or len(set(map(str, classes))) != len(classes)
                                or not all(isinstance(c, str) and c for c in classes)):
        raise DatasetFormatError(folder, f"{SPEC_FILE}: classes must be a list of distinct non-empty names")
    for key in ("name", "description"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise DatasetFormatError(folder, f"{SPEC_FILE}: {key} must be a string")
    return {"size": size, "resize_shorter": shorter, "color": color,
            "scale": _number(folder, "scale", doc.get("scale", 1)),
            "mean": _per_channel(folder, "mean", doc.get("mean", 0), channels), "std": std,
            "layout": _choice(folder, doc, "layout", ("NCHW", "NHWC")),
            "dtype": _choice(folder, doc, "dtype", ("float32",)),
            "classes": classes, "name": doc.get("name"), "description": doc.get("description")}


# --------------------------------------------------------------------------------------------
# finding the images


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")


def _images_under(folder: Path) -> list[Path]:
    """Image files in ``folder`` and its sub-folders (hidden ones skipped), sorted by relative path."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root) / n for n in names if _is_image(Path(root) / n)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _labelled_images(folder: Path, spec: dict) -> tuple[list[str], list[Path], list[int]]:
    """(class names in label order, image files, their labels) of an accuracy image folder."""
    subs = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    stray = [p.name for p in folder.iterdir() if _is_image(p)]
    if stray:
        raise DatasetFormatError(folder, f"{len(stray)} image(s) outside the class sub-folders "
                                 f"(e.g. {sorted(stray)[0]})", hint="one sub-folder of images per class")
    if not subs:
        raise DatasetFormatError(folder, "no classes: no sub-folder",
                                 hint="one sub-folder of images per class")
    classes = spec["classes"] or subs
    unlisted = sorted(set(subs) - set(classes))
    if unlisted:
        raise DatasetFormatError(folder, f"sub-folder(s) {unlisted} not in {SPEC_FILE}'s classes")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = _images_under(folder / name) if name in subs else []
        files += found
        labels += [label] * len(found)
    if not files:
        raise DatasetFormatError(folder, f"no image ({', '.join(IMAGE_SUFFIXES)}) in the class sub-folders")
    return classes, files, labels


# --------------------------------------------------------------------------------------------
# converting


def _load(folder: Path, path: Path, spec: dict) -> np.ndarray:
    """One image as a preprocessed float32 sample (see the module docstring)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert(spec["color"])
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetFormatError(folder, f"unreadable image {path.relative_to(folder)} ({exc})") from None
    if spec["resize_shorter"] is not None:
        im = _resize_and_crop(folder, path, im, spec["resize_shorter"], spec["size"])
    elif spec["size"] is not None and im.size != (spec["size"][1], spec["size"][0]):
        im = im.resize((spec["size"][1], spec["size"][0]), Image.Resampling.BILINEAR)
    pixels = np.asarray(im, dtype=np.float64)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    x = (pixels * spec["scale"] - np.asarray(spec["mean"])) / np.asarray(spec["std"])
    return (x.transpose(2, 0, 1) if spec["layout"] == "NCHW" else x).astype(np.float32)


def _resize_and_crop(folder: Path, path: Path, im, shorter: int, size: list[int]):
    """torchvision's ``Resize(shorter)`` then ``CenterCrop(size)`` on a PIL image."""
    from PIL import Image

    w, h = im.size
    nw, nh = (shorter, int(shorter * h / w)) if w <= h else (int(shorter * w / h), shorter)
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    th, tw = size
    if th > nh or tw > nw:
        raise DatasetFormatError(folder, f"{path.relative_to(folder)}: {nw}x{nh} after resize_shorter "
                                 f"is smaller than the crop {tw}x{th} (W x H)")
    top, left = int(round((nh - th) / 2.0)), int(round((nw - tw) / 2.0))
    return im.crop((left, top, left + tw, top + th))


def _stack(folder: Path, files: list[Path], spec: dict) -> np.ndarray:
    samples = []
    for path in files:
        x = _load(folder, path, spec)
        if samples and x.shape != samples[0].shape:
            raise DatasetFormatError(
                folder, f"mixed sizes after preprocessing: {files[0].relative_to(folder)} gives "
                f"{list(samples[0].shape)}, {path.relative_to(folder)} {list(x.shape)}",
                hint=f"set size [H, W] (or resize_shorter + size) in {SPEC_FILE}")
        samples.append(x)
    return np.stack(samples)


def _meta(folder: Path, spec: dict, files: list[Path], x: np.ndarray, kind: str) -> dict:
    from PIL import __version__ as pillow

    return {"schema": META_SCHEMA, "kind": kind, "name": spec["name"] or folder.name,
            "source": str(folder.resolve()), "preprocess": spec, "preprocess_sha256": spec_sha256(spec),
            "n": len(files), "sample_shape": list(x.shape[1:]), "layout": spec["layout"],
            "dtype": str(x.dtype), "pillow": pillow, "created_utc": utc_now()}


def _write_dataset(out: Path, folder: Path, spec: dict, classes: list[str], files: list[Path],
                   labels: list[int]) -> None:
    x = _stack(folder, files, spec)
    np.save(out / "inputs.npy", x)
    np.save(out / "labels.npy", np.asarray(labels, dtype=np.int64))
    meta = _meta(folder, spec, files, x, "dataset")
    meta.update(classes=classes, counts={c: labels.count(i) for i, c in enumerate(classes)})
    write_json_atomic(meta, str(out / "meta.json"))


def _write_calibration(out: Path, folder: Path, spec: dict, files: list[Path]) -> None:
    x = _stack(folder, files, spec)
    np.save(out / "calibration.npy", x)
    meta = _meta(folder, spec, files, x, "calibration")
    meta["files"] = [f.relative_to(folder).as_posix() for f in files]
    write_json_atomic(meta, str(out / "meta.json"))


# --------------------------------------------------------------------------------------------
# the cache


def _key(folder: Path, kind: str, spec: dict, files: list[Path]) -> str:
    from PIL import __version__ as pillow

    digest = hashlib.sha256(f"{META_SCHEMA}\0{kind}\0{spec_sha256(spec)}\0pillow {pillow}\n".encode())
    for f in files:
        digest.update(f"{f.relative_to(folder).as_posix()}\0{file_sha256(f)}\n".encode())
    return digest.hexdigest()


def _complete(out: Path, kind: str) -> bool:
    names = ("inputs.npy", "labels.npy") if kind == "dataset" else ("calibration.npy",)
    names += ("meta.json",)
    return all((out / n).is_file() for n in names)


def _cached(folder: Path, kind: str, spec: dict, files: list[Path], cache_dir: Path | None, write) -> Path:
    """The cached folder for these images and spec, made by ``write(tmp_folder)`` when absent."""
    root = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    stats = tuple((f.as_posix(), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    memo_key = (kind, str(folder.resolve()), str(root), spec_sha256(spec), stats)
    with _lock:
        out = _memo.get(memo_key)
        if out is not None and _complete(out, kind):
            return out
        out = root / _key(folder, kind, spec, files)
        if not _complete(out, kind):
            _make(folder, root, out, kind, write)
        _memo[memo_key] = out
        return out


def _make(folder: Path, root: Path, out: Path, kind: str, write) -> None:
    """``write`` into a temporary folder under ``root``, renamed to ``out`` when complete."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(new_temp(root, directory=True)[1])  # umask mode, not mkdtemp's 0700
    except OSError as exc:
        raise DatasetFormatError(folder, f"cannot write the dataset cache {root} ({exc})") from None
    try:
        write(work)
        if out.exists() and not _complete(out, kind):  # left incomplete by hand or by an older version
            shutil.rmtree(out, ignore_errors=True)
        try:
            os.rename(work, out)
        except OSError:
            if not _complete(out, kind):  # else another process made the same folder first
                raise
    except OSError as exc:
        raise DatasetFormatError(folder, f"cannot write the converted arrays to {root} ({exc})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
