"""ONNX -> ``.tvm`` artefact on the host: Relax ONNX frontend, then TVM's default pipeline
(``untuned``) or MetaSchedule tuning first (``tuned``), ``tvm.compile``, ``export_library``.

Called by ``host zoo compile --backend tvm MODEL.onnx [--option codegen=tuned --option
tune_trials=32] [--target ...]`` through the descriptor's :class:`~runners.backends.base.ModelCompiler`
(the host loads the ONNX file and hands the ``ModelProto`` in, so this module imports neither onnx
nor the host). Runs where ``tvm`` is installed, i.e. on the host; never on a board.

* **Import**: ``tvm.relax.frontend.onnx.from_onnx(proto, shape_dict, dtype_dict,
  keep_params_in_input=False)``: the weights become constants of the module. Input shapes are the
  ONNX graph's (a dynamic leading dimension becomes 1, any other dynamic one is refused).
* **untuned**: ``tvm.compile(mod, target)`` with TVM's default Relax pipeline for the CPU
  (``LegalizeOps`` to TIR, ``FoldConstant``, ``FuseOps``/``FuseTIR``, memory planning): the loops
  as the operators' legalization writes them, with no MetaSchedule record.
* **tuned**: ``relax.get_pipeline("static_shape_tuning", total_trials=N, target=...,
  work_dir=DB)`` first: MetaSchedule (Shao et al., NeurIPS 2022) tunes the fused TIR functions
  locally on this machine (its default evolutionary search and XGBoost cost model, builder and
  runner in local processes: needs psutil, cloudpickle, xgboost) and applies the best record
  found for each task; then ``tvm.compile`` as untuned. Tuning on a board through TVM's RPC
  tracker: ``rpc.py`` (``compile_model(..., measure=...)``).
* **Target**: default this host's CPU, ``{"kind": "llvm", "mtriple": <LLVM's host triple>,
  "mcpu": <LLVM's host CPU name>, "num-cores": <CPU count>}``; ``--target`` takes the same as a
  JSON object or as ``llvm -mtriple=... -mcpu=... -mattr=+a,+b -num-cores=N``; a board's target
  from its facts: :func:`runners.backends.tvm.targets.target_for`.
* **Cross-compiling**: an ``mtriple`` of another architecture (aarch64 on this x86-64 host): LLVM
  emits that architecture's code and ``export_library`` links it with the cross C compiler of
  :data:`~runners.backends.tvm.targets.CROSS_LINKERS` (``tvm.support.cc.cross_compiler``; Debian's
  ``aarch64-linux-gnu-gcc`` from ``gcc-aarch64-linux-gnu``); without it
  :class:`~runners.errors.CrossCompilerMissingError` names the package. ``meta.json`` and the
  ``.info`` record ``arch`` and ``linker``. Only ``untuned``: MetaSchedule would run the candidates
  on this host (tuning on the board through RPC with a cross builder is not done).

**Cache.** Artefacts live in ``CACHE/<stem>.tvm-<codegen>[<trials>[p<per task>]].<key>.tvm`` with a ``.info``
beside them; ``key`` (:func:`cache_key`) hashes the source's sha256, the target, the TVM and
tvm-ffi versions, the codegen and the trials, so the same request is a cache hit (nothing runs)
and any change makes a new file. MetaSchedule's database of a tuned request lives in
``CACHE/tuning/<tuning key>/`` (:func:`tuning_key`: source sha256 x target x TVM version x
trials) and is re-used, without tuning again, when the artefact itself has to be built again.
The ``.info`` holds ``meta.json``'s fields plus ``key``, ``tuning_key``, ``compile_s`` (import,
build, export; wall seconds), ``tuning`` (``s``: wall seconds of tuning, ``cache_hit``,
``database``, ``records``) and the file's sha256 and size.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional, Tuple

from runners.backends.base import BackendOption
from runners.backends.tvm.artefact import CODEGENS, LIBRARY, SCHEMA, write_artefact
from runners.backends.tvm.targets import CROSS_LINKERS, arch_of
from runners.errors import BackendUnavailableError, CrossCompilerMissingError, ModelCompileError
from runners.fileio import new_temp, write_json_atomic
from runners.util import file_sha256, utc_now

#: the suffix of the artefact (the descriptor's ``model_suffixes``)
SUFFIX = ".tvm"
#: ``schema`` of the host's ``.info`` recipe beside an artefact
INFO_SCHEMA = "edgegauge.tvm-recipe/1"
#: ONNX ``TensorProto`` element types -> numpy dtype names
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
               10: "float16", 11: "float64"}
MAX_TRIALS = 100_000

OPTIONS = (
    BackendOption("codegen", str, "untuned", "untuned: TVM's default pipeline; tuned: MetaSchedule tuning "
                  "on this machine first", choices=CODEGENS),
    BackendOption("tune_trials", int, 32, "MetaSchedule trials in all (codegen=tuned; 1..100000)"),
    BackendOption("trials_per_task", int, 0, "MetaSchedule's cap per task (max_trials_per_task; "
                  "codegen=tuned); 0: Relax's default, the same as tune_trials, which may spend them all "
                  "on a few tasks"),
)

IMPLEMENTATION = {
    "untuned": "TVM Relax default CPU pipeline: operators legalized to TIR and fused, no MetaSchedule "
               "record; one implementation per operator (no direct/GEMM/spatial-pack choice, dense "
               "kernels only)",
    "tuned": "TVM Relax static_shape_tuning pipeline: MetaSchedule-tuned schedules of the fused TIR "
             "functions (evolutionary search, XGBoost cost model, local builder and runner), default "
             "schedules where a task got no record; dense kernels only",
}


# ------------------------------------------------------------------------------------------------
# request: options, target, keys
# ------------------------------------------------------------------------------------------------


def check_options(options: dict) -> dict:
    """``{"codegen", "tune_trials", "trials_per_task"}`` checked (0 trials untuned). Raises ValueError."""
    codegen = options.get("codegen", "untuned")
    if codegen not in CODEGENS:
        raise ValueError(f"codegen={codegen!r}: one of {', '.join(CODEGENS)}")
    trials = int(options.get("tune_trials", 32))
    if not 1 <= trials <= MAX_TRIALS:
        raise ValueError(f"tune_trials={trials}: 1..{MAX_TRIALS}")
    per_task = int(options.get("trials_per_task", 0))
    if not 0 <= per_task <= MAX_TRIALS:
        raise ValueError(f"trials_per_task={per_task}: 0..{MAX_TRIALS}")
    tuned = codegen == "tuned"
    return {"codegen": codegen, "tune_trials": trials if tuned else 0,
            "trials_per_task": per_task if tuned else 0}


def parse_target(text: Optional[str], host: dict) -> dict:
    """The target as a JSON-ready dict: ``host`` (this machine's) when ``text`` is empty, else
    ``text`` as a JSON object or ``llvm -key=value ...`` (``-mattr`` a comma list; ``num-cores``
    an int, default ``host``'s). Another architecture than ``host``'s is cross-compiled when
    :data:`~runners.backends.tvm.targets.CROSS_LINKERS` knows it. Raises ValueError (not llvm,
    malformed, an architecture not compiled for here)."""
    if not text or not text.strip():
        return dict(host)
    text = text.strip()
    if text.startswith(("{", "[")):
        target = json.loads(text)
        if not isinstance(target, dict):
            raise ValueError("--target: a JSON object")
    else:
        words = text.split()
        target = {"kind": words[0]}
        for word in words[1:]:
            key, sep, value = word.lstrip("-").partition("=")
            if not word.startswith("-") or not sep or not key:
                raise ValueError(f"--target: {word!r} is not -key=value")
            target[key] = value.split(",") if key == "mattr" else value
    if target.get("kind") != "llvm":
        raise ValueError(f"--target kind {target.get('kind')!r}: only llvm (CPU) targets are compiled here")
    target["num-cores"] = int(target.get("num-cores") or host["num-cores"])
    target.setdefault("mtriple", host["mtriple"])
    arch, here = arch_of(target["mtriple"]), arch_of(host["mtriple"])
    if arch != here and arch not in CROSS_LINKERS:
        raise ValueError(f"--target mtriple {target['mtriple']}: this host is {host['mtriple']}; "
                         f"TVM artefacts are cross-compiled here for {', '.join(sorted(CROSS_LINKERS))} only")
    return target


def linker_for(target: dict, host: dict) -> dict:
    """The C compiler that links the target's library: ``{"arch", "cross", "cc", "path", "version"
    [, "package"]}``; this host's for its own architecture (TVM's default, ``tvm.support.cc.get_cc``:
    ``$CXX``, ``$CC``, else the first of g++, gcc, clang++, clang, c++, cc on PATH),
    else the cross compiler of :data:`~runners.backends.tvm.targets.CROSS_LINKERS`.

    Raises:
        CrossCompilerMissingError: the cross compiler is not on PATH (the message names its Debian
            package).
    """
    arch = arch_of(target.get("mtriple") or host["mtriple"]) or str(target.get("mtriple"))
    if arch == arch_of(host["mtriple"]):
        found = (shutil.which(n) for n in ("g++", "gcc", "clang++", "clang", "c++", "cc"))
        cc_name = os.environ.get("CXX") or os.environ.get("CC") or next((f for f in found if f), "g++")
        package = None
    else:
        cc_name, package = CROSS_LINKERS[arch]
    path = shutil.which(cc_name)
    if path is None and package:
        raise CrossCompilerMissingError(
            f"cross-compiling for {arch} ({target.get('mtriple')}) needs the cross linker {cc_name}, "
            f"not on PATH: install it (Debian/Ubuntu: apt-get install {package})")
    info = {"arch": arch, "cross": package is not None, "cc": cc_name, "path": path,
            "version": _cc_version(path)}
    return dict(info, package=package) if package else info


def _cc_version(path: Optional[str]) -> Optional[str]:
    """``CC -dumpfullversion`` (GCC's x.y.z), None when it does not answer."""
    if not path:
        return None
    try:
        res = subprocess.run([path, "-dumpfullversion"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return (res.stdout.strip() or None) if res.returncode == 0 else None


def target_text(target: dict) -> str:
    """``llvm -mtriple=... -mcpu=... -num-cores=N`` (for people and the recipe)."""
    parts = [str(target.get("kind", "llvm"))]
    for key in sorted(k for k in target if k != "kind"):
        value = target[key]
        parts.append(f"-{key}={','.join(value) if isinstance(value, list) else value}")
    return " ".join(parts)


def _digest(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def tuning_key(source_sha256: str, target: dict, tvm_version: str, trials: int, per_task: int = 0,
               measured_on: Optional[dict] = None) -> str:
    """Key of a MetaSchedule database: source sha256 x target x TVM version x trials (in all, and per
    task) [x the board it was measured on, when tuned through RPC (``rpc.py``)]."""
    doc = {"source": source_sha256, "target": target, "tvm": tvm_version, "trials": int(trials),
           "per_task": int(per_task)}
    return _digest(doc if measured_on is None else dict(doc, measured_on=measured_on))


def cache_key(source_sha256: str, target: dict, versions: dict, codegen: str, trials: int,
              per_task: int = 0, measured_on: Optional[dict] = None) -> str:
    """Key of an artefact: source sha256 x target x TVM (and tvm-ffi) versions x codegen x trials (in
    all, and per task) x the artefact's schema [x the board the tuning measured on]."""
    doc = {"source": source_sha256, "target": target, "versions": versions, "codegen": codegen,
           "trials": int(trials), "per_task": int(per_task), "schema": SCHEMA}
    return _digest(doc if measured_on is None else dict(doc, measured_on=measured_on))


def slug(codegen: str, trials: int, per_task: int = 0) -> str:
    """``tvm-untuned``, ``tvm-tuned32`` or ``tvm-tuned256p8`` (8 per task): the part of the artefact's
    name after the model stem."""
    if codegen == "untuned":
        return "tvm-untuned"
    return f"tvm-tuned{int(trials)}" + (f"p{int(per_task)}" if per_task else "")


# ------------------------------------------------------------------------------------------------
# the ONNX graph's inputs and outputs (from the ModelProto the host loaded)
# ------------------------------------------------------------------------------------------------


def graph_inputs(proto) -> list:
    """``[{"name", "shape", "dtype"}]`` of the graph's inputs that are not initializers; a dynamic
    leading dimension becomes 1. Raises ModelCompileError (another dynamic dimension, a dtype
    without a numpy name)."""
    graph = proto.graph
    inits = {i.name for i in graph.initializer}
    specs = []
    for value in graph.input:
        if value.name in inits:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if dims and dims[0] is None:
            dims[0] = 1
        if any(d is None for d in dims):
            raise ModelCompileError(f"input {value.name!r} has dynamic dimensions {dims}: TVM artefacts are "
                                    "compiled for static shapes (export the model with fixed ones)")
        dtype = ONNX_DTYPES.get(tensor.elem_type)
        if dtype is None:
            raise ModelCompileError(f"input {value.name!r}: ONNX element type {tensor.elem_type} is not "
                                    "supported")
        specs.append({"name": value.name, "shape": [int(d) for d in dims], "dtype": dtype})
    if not specs:
        raise ModelCompileError("the ONNX graph has no input")
    return specs


def _struct_shapes(info) -> list:
    """``[(shape or None, dtype)]`` of a Relax return type (a tensor, or a tuple of them)."""
    fields = getattr(info, "fields", None)
    if fields is not None:
        return [s for f in fields for s in _struct_shapes(f)]
    shape = getattr(info, "shape", None)
    values = getattr(shape, "values", None)
    dims = None
    if values is not None:
        dims = [int(v.value) if hasattr(v, "value") else None for v in values]
    return [(dims, str(getattr(info, "dtype", "float32")))]


def graph_outputs(proto, mod) -> list:
    """``[{"name", "shape", "dtype"}]``: the ONNX outputs' names with the shapes and dtypes of the
    Relax ``main``'s return (None for a dimension TVM does not know)."""
    names = [o.name for o in proto.graph.output]
    main = mod["main"]
    ret = getattr(main, "ret_ty", None)  # TVM 0.27 (earlier releases: ret_struct_info)
    shapes = _struct_shapes(ret if ret is not None else getattr(main, "ret_struct_info", None))
    if len(shapes) != len(names):
        shapes = [(None, "float32")] * len(names)
    return [{"name": n, "shape": s if s is not None else [], "dtype": d} for n, (s, d) in zip(names, shapes)]


# ------------------------------------------------------------------------------------------------
# TVM: import, tune, build
# ------------------------------------------------------------------------------------------------


def _tvm():
    """``(tvm, relax, from_onnx)``. Raises BackendUnavailableError without tvm."""
    try:
        import tvm
        from tvm import relax
        from tvm.relax.frontend.onnx import from_onnx
    except ImportError as exc:
        raise BackendUnavailableError(f"tvm is not importable here ({exc}); install the tvm extra: "
                                      "pip install -c requirements/lock.txt -e '.[tvm]'") from None
    return tvm, relax, from_onnx


def versions(tvm) -> dict:
    """``{"tvm", "tvm_ffi"}``: the compiler's versions (part of every cache key)."""
    from importlib import metadata

    try:
        ffi = metadata.version("apache-tvm-ffi")
    except metadata.PackageNotFoundError:
        ffi = None
    return {"tvm": str(tvm.__version__), "tvm_ffi": ffi}


def host_target(tvm) -> dict:
    """This machine's CPU as an llvm target (LLVM's host triple and CPU name, its CPU count)."""
    from tvm.target import codegen

    # os.cpu_count(), not this process's affinity: TVM's thread pool pins the threads that ran it,
    # so the affinity would change the target (and the cache key) within one process
    return {"kind": "llvm", "mtriple": str(codegen.llvm_get_system_triple()),
            "mcpu": str(codegen.llvm_get_system_cpu()), "num-cores": max(os.cpu_count() or 1, 1)}


def import_onnx(proto, inputs: list):
    """The Relax module of the ONNX ``proto`` at the inputs' static shapes, weights as constants."""
    _, _, from_onnx = _tvm()
    try:
        return from_onnx(proto, shape_dict={s["name"]: s["shape"] for s in inputs},
                         dtype_dict={s["name"]: s["dtype"] for s in inputs}, keep_params_in_input=False)
    except Exception as exc:  # the frontend raises TVMError, OpNotImplemented, ValueError, ...
        raise ModelCompileError(f"the Relax ONNX frontend: {type(exc).__name__}: {exc}".strip()) from None


def tune(mod, target: dict, trials: int, work_dir: str, per_task: int = 0):
    """MetaSchedule on this host: tune ``mod``'s fused TIR functions with ``trials`` trials in all (at
    most ``per_task`` each; 0: no cap of ours), the database in ``work_dir``, and apply its best
    records (:func:`runners.backends.tvm.tuning.local_tune`: the builder allowed ``tuning.BUILD_S`` a
    candidate). Raises ModelCompileError when no candidate was measured."""
    from runners.backends.tvm.tuning import local_tune

    local_tune(mod, target, trials, work_dir, per_task)
    return apply_database(mod, target, str(work_dir))


def apply_database(mod, target: dict, work_dir: str):
    """The same pipeline with 0 trials: no tuning, the records of ``work_dir`` applied."""
    _, relax, _ = _tvm()
    return relax.get_pipeline("static_shape_tuning", total_trials=0, target=dict(target),
                              work_dir=str(work_dir))(mod)


def tuned_module(mod, target: dict, trials: int, cache: Path, key: str, per_task: int = 0,
                 tuner=None) -> tuple:
    """``(mod with the tuned schedules applied, tuning record)``: the database of ``key`` under
    ``cache/tuning/`` when there (no tuning; one whose records all failed is removed and tuned again),
    else tuned now (by ``tuner``, :func:`tune`'s signature; default :func:`tune`) into a new folder
    renamed into place. The record counts ``records`` and ``measured_records`` (run times that are
    not MetaSchedule's failure mark)."""
    from runners.backends.tvm.tuning import measured_records

    db = cache / "tuning" / key
    measured, total, _ = measured_records(db)
    if db.is_dir() and total and not measured:  # made before tuning.py's check: nothing measured, tune again
        shutil.rmtree(db, ignore_errors=True)
    if db.is_dir():
        return apply_database(mod, target, str(db)), {
            "cache_hit": True, "s": None, "database": str(db), "records": total,
            "measured_records": measured, "trials": trials, "trials_per_task": per_task}
    db.parent.mkdir(parents=True, exist_ok=True)
    _, tmp = new_temp(db.parent, directory=True)
    try:
        started = time.perf_counter()
        try:
            mod = (tuner or tune)(mod, target, trials, tmp, per_task)
        except BackendUnavailableError:  # a board without TVM, an RPC tracker or server that did not start
            raise
        except Exception as exc:  # MetaSchedule's errors, a worker that died
            raise ModelCompileError(f"MetaSchedule tuning: {type(exc).__name__}: {exc}".strip()) from None
        seconds = time.perf_counter() - started
        os.replace(tmp, db)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    measured, total, _ = measured_records(db)
    return mod, {"cache_hit": False, "s": round(seconds, 3), "database": str(db), "records": total,
                 "measured_records": measured, "trials": trials, "trials_per_task": per_task,
                 "finished_utc": utc_now()}



def build_library(mod, target: dict, path: Path, linker: Optional[dict] = None) -> None:
    """``tvm.compile`` (default Relax pipeline) and ``export_library`` to the shared library ``path``,
    linked by ``linker`` (:func:`linker_for`; None or not ``cross``: the host's C compiler)."""
    tvm, _, _ = _tvm()
    try:
        executable = tvm.compile(mod, target=tvm.target.Target(target))
        if linker and linker.get("cross"):
            from tvm.support import cc

            executable.export_library(str(path), fcompile=cc.cross_compiler(linker["path"]))
        else:
            executable.export_library(str(path))
    except Exception as exc:
        raise ModelCompileError(f"tvm.compile / export_library: {type(exc).__name__}: {exc}".strip()) \
            from None


# ------------------------------------------------------------------------------------------------
# the cached artefact
# ------------------------------------------------------------------------------------------------


def cached(out: Path, key: str) -> Optional[dict]:
    """The ``.info`` of ``out`` when the artefact and its recipe are there and match ``key`` and
    the recorded size, else None."""
    info_path = out.with_suffix(".info")
    if not out.is_file() or not info_path.is_file():
        return None
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if info.get("key") != key or info.get("size") != out.stat().st_size:
        return None
    return info


def compile_model(model, proto, options: dict, cache_dir, target: Optional[str] = None,
                  measure: Optional[dict] = None) -> Tuple[Path, dict]:
    """Compile the ONNX file ``model`` (its parsed ``proto``) to a cached ``.tvm`` artefact.

    ``options``: ``codegen``, ``tune_trials`` and ``trials_per_task`` (:data:`OPTIONS`); ``target``:
    None (this host) or :func:`parse_target`'s text; ``measure``: None (tune on this host) or
    ``{"on": <the board's identity>, "tuner": <tune's signature>}`` (``rpc.py``: tuned on a board
    through TVM's RPC; the board is part of both keys and recorded as ``measured_on``).
    Returns ``(path, info)``; ``info["cache_hit"]`` says whether it was made now.

    Raises:
        ValueError: a bad option or target (``tuned`` for another architecture than this host's).
        BackendUnavailableError: tvm is not installed.
        CrossCompilerMissingError: another architecture's cross linker is not installed.
        ModelCompileError: the frontend, tuning or the build failed (nothing is left in the cache).
    """
    opts = check_options(options)
    tvm, _, _ = _tvm()
    vers = versions(tvm)
    host = host_target(tvm)
    tgt = parse_target(target, host)
    if opts["codegen"] == "tuned" and arch_of(tgt["mtriple"]) != arch_of(host["mtriple"]):
        raise ValueError(f"codegen=tuned for {tgt['mtriple']}: MetaSchedule would time the candidates on "
                         "this host; tuning for another architecture (on the board, through RPC, with a "
                         "cross-linking builder) is not done here: compile codegen=untuned")
    sha = file_sha256(model)
    on = (measure or {}).get("on") if opts["codegen"] == "tuned" else None
    key = cache_key(sha, tgt, vers, opts["codegen"], opts["tune_trials"], opts["trials_per_task"], on)
    folder = Path(cache_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{Path(model).stem}.{slug(opts['codegen'], opts['tune_trials'], opts['trials_per_task'])}"
    out = folder / f"{name}.{key}{SUFFIX}"
    hit = cached(out, key)
    if hit is not None:
        return out, dict(hit, cache_hit=True)
    linker = linker_for(tgt, host)
    request = {"model": Path(model), "sha256": sha, "linker": linker, "target": tgt, "versions": vers,
               "key": key, "codegen": opts["codegen"], "trials": opts["tune_trials"],
               "per_task": opts["trials_per_task"],
               "name": name + SUFFIX, "measured_on": on, "tuner": (measure or {}).get("tuner")}
    return out, dict(make_artefact(request, proto, folder, out), cache_hit=False)


def make_artefact(req: dict, proto, folder: Path, out: Path) -> dict:
    """Import, tune (``tuned``), build and write ``out`` and its ``.info`` (last); the recipe."""
    started = time.perf_counter()
    inputs = graph_inputs(proto)
    mod = import_onnx(proto, inputs)
    outputs = graph_outputs(proto, mod)
    tuning = None
    if req["codegen"] == "tuned":
        tkey = tuning_key(req["sha256"], req["target"], req["versions"]["tvm"], req["trials"],
                          req["per_task"], req.get("measured_on"))
        mod, tuning = tuned_module(mod, req["target"], req["trials"], folder, tkey, req["per_task"],
                                   req.get("tuner"))
        tuning["key"] = tkey
    _, tmp = new_temp(folder, directory=True)
    try:
        library = Path(tmp) / LIBRARY
        build_library(mod, req["target"], library, req.get("linker"))
        meta = {"schema": SCHEMA, "entry": "main", "inputs": inputs, "outputs": outputs,
                "target": req["target"], "target_text": target_text(req["target"]),
                "arch": (req.get("linker") or {}).get("arch"), "linker": req.get("linker"),
                "tvm_version": req["versions"]["tvm"], "tvm_ffi_version": req["versions"]["tvm_ffi"],
                "source": {"path": str(req["model"]), "sha256": req["sha256"]}, "codegen": req["codegen"],
                "trials": req["trials"], "trials_per_task": req["per_task"],
                "implementation": IMPLEMENTATION[req["codegen"]],
                **({"measured_on": req["measured_on"]} if req.get("measured_on") else {}),
                "created_utc": utc_now()}
        staged = Path(tmp) / ("artefact" + SUFFIX)
        write_artefact(staged, library.read_bytes(), meta)
        wall = time.perf_counter() - started
        info = dict(meta, schema=INFO_SCHEMA, artefact_schema=SCHEMA, key=req["key"], name=req["name"],
                    sha256=file_sha256(staged), size=staged.stat().st_size, tuning=tuning,
                    compile_s=round(wall - ((tuning or {}).get("s") or 0.0), 3), wall_s=round(wall, 3))
        os.replace(staged, out)
        write_json_atomic(info, str(out.with_suffix(".info")))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info
