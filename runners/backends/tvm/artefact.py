"""The ``.tvm`` artefact: one file that travels like a model (Python 3.8, standard library only).

A ``.tvm`` file is a ZIP archive (members stored, not compressed) of exactly two members:

* ``model.so``: the Relax VM executable exported by TVM's ``export_library`` (a shared library:
  the generated kernels, the VM bytecode and the model's weights as constants);
* ``meta.json``: what the runner needs to call it and what it is (:data:`SCHEMA`): ``entry`` (the
  VM function, ``main``), ``inputs`` / ``outputs`` (``name``, ``shape``, ``dtype``, in the
  function's order; static shapes), ``target`` (the TVM target it was compiled for, as a JSON
  dict, and its text), ``tvm_version`` and ``tvm_ffi_version`` of the compiler, ``source``
  (``path`` and ``sha256`` of the ONNX it came from), ``codegen`` (``untuned`` | ``tuned``),
  ``trials`` (MetaSchedule trials; 0 untuned), ``implementation`` (which code ran, in words);
  since cross-compiling, also ``arch`` (``aarch64`` | ``x86_64``: the CPU architecture of the
  library's code) and ``linker`` (``cc``, its ``version``, ``cross``: the C compiler that linked
  it, e.g. ``aarch64-linux-gnu-gcc`` 12.2.0 on an x86-64 host). Optional: older files lack them.

One file rather than a library plus a sidecar because ``host bench`` ships models to boards
content-addressed, one file each (``models/<sha256><suffix>``); the host's own recipe (compile
and tuning wall times, the cache key) is the ``.info`` beside the ``.tvm`` on the host
(:mod:`runners.backends.tvm.compile`). The runner unpacks ``model.so`` to a private temporary
folder, loads it (``dlopen``) and removes the folder (:mod:`runners.backends.tvm.backend`).
"""

from __future__ import annotations

import json
import zipfile
from typing import Tuple

from runners.errors import ModelLoadError

#: ``schema`` of ``meta.json``
SCHEMA = "edgegauge.tvm/1"
LIBRARY, META = "model.so", "meta.json"
#: the keys ``meta.json`` must hold
REQUIRED = ("schema", "entry", "inputs", "outputs", "target", "tvm_version", "source", "codegen", "trials")
CODEGENS = ("untuned", "tuned")
#: a ``meta.json`` larger than this is not ours
MAX_META_BYTES = 1 << 20


def write_artefact(path, library: bytes, meta: dict) -> None:
    """Write the archive ``path`` (a new file) from the library's bytes and ``meta``.

    Raises:
        ValueError: ``meta`` lacks a key of :data:`REQUIRED` or names another schema.
        OSError: the file cannot be written.
    """
    check_meta(meta, str(path), error=ValueError)
    with zipfile.ZipFile(str(path), "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(META, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        zf.writestr(LIBRARY, library)


def read_artefact(path) -> Tuple[dict, bytes]:
    """``(meta, library bytes)`` of the ``.tvm`` file ``path``.

    Raises:
        ModelLoadError: not a ZIP archive, a member missing, ``meta.json`` unreadable, too large or
            not of :data:`SCHEMA`, or a field of the wrong kind.
    """
    try:
        with zipfile.ZipFile(str(path)) as zf:
            names = set(zf.namelist())
            missing = [m for m in (META, LIBRARY) if m not in names]
            if missing:
                raise ModelLoadError(f"{path}: not a TVM artefact (no {', '.join(missing)} inside; "
                                     "make one with `host zoo compile --backend tvm MODEL.onnx`)")
            if zf.getinfo(META).file_size > MAX_META_BYTES:
                raise ModelLoadError(f"{path}: {META} is over {MAX_META_BYTES} bytes")
            meta = json.loads(zf.read(META).decode("utf-8"))
            library = zf.read(LIBRARY)
    except ModelLoadError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not a TVM artefact ({type(exc).__name__}: {exc})") from None
    check_meta(meta, str(path))
    return meta, library


def check_meta(meta, where: str, error=ModelLoadError) -> None:
    """Raise ``error`` when ``meta`` is not a ``meta.json`` of :data:`SCHEMA` with every field
    of :data:`REQUIRED`, static integer input shapes (outputs: int or None) and a known ``codegen``."""
    if not isinstance(meta, dict):
        raise error(f"{where}: {META} is not a JSON object")
    if meta.get("schema") != SCHEMA:
        raise error(f"{where}: {META} schema {meta.get('schema')!r}, this runner reads {SCHEMA!r}")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise error(f"{where}: {META} lacks {', '.join(missing)}")
    if meta["codegen"] not in CODEGENS:
        raise error(f"{where}: codegen {meta['codegen']!r}, one of {', '.join(CODEGENS)}")
    for kind in ("inputs", "outputs"):
        specs = meta[kind]
        if not isinstance(specs, list) or (kind == "inputs" and not specs):
            raise error(f"{where}: {META} {kind} must be a non-empty list")
        for spec in specs:
            ok = isinstance(spec, dict) and isinstance(spec.get("name"), str) and \
                isinstance(spec.get("dtype"), str) and isinstance(spec.get("shape"), list)
            dynamic_ok = kind == "outputs"  # an output dimension TVM could not infer is None
            if not ok or not all(_static(d) or (dynamic_ok and d is None) for d in spec["shape"]):
                raise error(f"{where}: {META} {kind}: {spec!r} is not {{name, dtype, static shape}}")


def _static(dim) -> bool:
    return isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0
