"""ONNX (or PyTorch) -> quantized ``.xmodel`` for the ZCU104's DPU, through the Vitis AI image.

``host zoo compile --target zcu104 MODEL`` runs the edgegauge Vitis AI 3.0 compile-flow image
(``images/vitis-ai/Dockerfile``, built with ``host image build zcu104 --variant compile``)
with docker or podman. Inside, ``vai_compile.py`` quantizes with the PyTorch quantizer
(``pytorch_nndct``: ``torch_quantizer`` calib, then test + ``export_xmodel``; ONNX through
onnx2torch) and compiles with ``vai_c_xir -x Q/<Model>_int.xmodel -a
/opt/vitis_ai/compiler/arch/DPUCZDX8G/ZCU104/arch.json -o OUT -n NAME``. Calibration: a
folder of ``.npy`` batches (float32 NCHW, one batch per file), else random normal batches
(seed 0 in ``vai_compile.py``; fine for latency, meaningless for accuracy), labelled in the recipe.

Beside ``OUT/NAME.xmodel`` goes ``OUT/NAME.info`` (JSON): the source's sha256, the target, the
arch.json and its fingerprint, the VAI version of the image (its base image tag), the
quantizer, the calibration, the exact command. This module builds the commands
(:func:`compile_argv`, :func:`arch_argv`, :func:`inspect_argv`) as data, so they are tested
without an engine; :func:`compile_model` runs them.

Status: the commands are tested here; the flow itself has not run in edgegauge's CI (no Vitis AI
image there, ~10 GB, x86 only).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from host.errors import CompileError, CompilerImageMissingError

#: target -> arch.json inside the Vitis AI 3.0 image
TARGETS = {"zcu104": "/opt/vitis_ai/compiler/arch/DPUCZDX8G/ZCU104/arch.json"}
#: where the model's folder, the output folder and the calibration data are mounted
MOUNT_IN, MOUNT_OUT, MOUNT_CALIB = "/in", "/out", "/calib"
BUILD_HINT = "build it with `host image build zcu104 --variant compile` (x86_64, ~10 GB), or pass --image"
#: the Vitis AI image release this flow was written for (base xilinx/vitis-ai-pytorch-cpu:*-3.0.0.*)
VAI_VERSION = "3.0"


@dataclass(frozen=True)
class CompileJob:
    """One compile: ``model`` (.onnx, or a .py with ``build_model()``), ``target``, network
    ``name``, output folder ``out``, calibration ``input_shape`` (NCHW), ``calibration_data``
    (folder of .npy batches, or None for ``calib_batches`` random batches), ``image`` (tag)."""

    model: Path
    target: str
    name: str
    out: Path
    input_shape: Tuple[int, ...]
    image: str
    calibration_data: Optional[Path] = None
    calib_batches: int = 8


def make_job(model, target: str, *, image: str, out=None, name: Optional[str] = None,
             input_shape: Optional[Sequence[int]] = None, calibration_data=None,
             calib_batches: int = 8) -> CompileJob:
    """Check the arguments and fill the defaults: ``out`` = the model's folder, ``name`` = its
    stem, ``input_shape`` = the ONNX model's first input (a dynamic batch -> 1).

    Raises:
        CompileError: unknown target, missing model or calibration folder, an input shape
            that cannot be read or is not positive, calib_batches < 1.
    """
    model = Path(model)
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}", hint="targets: " + ", ".join(sorted(TARGETS)))
    if not model.is_file():
        raise CompileError(f"{model} does not exist", hint="pass an .onnx model")
    if calibration_data is not None and not Path(calibration_data).is_dir():
        raise CompileError(f"--calibration-data {calibration_data}: not a folder",
                           hint="a folder of .npy batches (float32, NCHW, one batch per file)")
    if calib_batches < 1:
        raise CompileError("calib_batches must be >= 1")
    shape = tuple(int(d) for d in input_shape) if input_shape else onnx_input_shape(model)
    if not shape or any(d <= 0 for d in shape):
        raise CompileError(f"input shape {list(shape)}: dimensions must be positive",
                           hint="pass --input-shape")
    return CompileJob(model=model.resolve(), target=target, name=name or model.stem,
                      out=Path(out or model.parent).resolve(), input_shape=shape, image=image,
                      calibration_data=None if calibration_data is None else Path(calibration_data).resolve(),
                      calib_batches=int(calib_batches))


def onnx_input_shape(model: Path) -> Tuple[int, ...]:
    """The first graph input's shape; a dynamic leading dimension becomes 1.

    Raises:
        CompileError: not readable as ONNX, or another dimension is dynamic.
    """
    try:
        import onnx

        graph = onnx.load(str(model), load_external_data=False).graph
        inits = {i.name for i in graph.initializer}
        first = next(i for i in graph.input if i.name not in inits)
    except Exception as exc:  # onnx raises DecodeError and friends; StopIteration: no input
        raise CompileError(f"{model}: cannot read its input shape ({type(exc).__name__}: {exc})",
                           hint="pass --input-shape NxCxHxW") from None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in first.type.tensor_type.shape.dim]
    if dims and dims[0] is None:
        dims[0] = 1
    if any(d is None for d in dims):
        raise CompileError(f"{model}: input {first.name!r} has dynamic dimensions {dims}",
                           hint="pass --input-shape NxCxHxW")
    return tuple(int(d) for d in dims)


def compile_argv(engine: Sequence[str], job: CompileJob) -> List[str]:
    """``<engine> run --rm -v MODEL_DIR:/in:ro -v OUT:/out [-v CALIB:/calib:ro] IMAGE
    --model /in/FILE --input-shape NxCxHxW --name NAME --out /out --arch ARCH
    (--calib-dir /calib | --calib-batches N)`` (the image's entrypoint is vai_compile.py)."""
    argv = [*engine, "run", "--rm", "-v", f"{job.model.parent}:{MOUNT_IN}:ro", "-v", f"{job.out}:{MOUNT_OUT}"]
    if job.calibration_data is not None:
        argv += ["-v", f"{job.calibration_data}:{MOUNT_CALIB}:ro"]
    argv += [job.image, "--model", f"{MOUNT_IN}/{job.model.name}",
             "--input-shape", "x".join(str(d) for d in job.input_shape), "--name", job.name,
             "--out", MOUNT_OUT, "--arch", TARGETS[job.target]]
    if job.calibration_data is not None:
        return argv + ["--calib-dir", MOUNT_CALIB]
    return argv + ["--calib-batches", str(job.calib_batches)]


def arch_argv(engine: Sequence[str], job: CompileJob) -> List[str]:
    """``<engine> run --rm --entrypoint cat IMAGE ARCH``: the arch.json the compile uses."""
    return [*engine, "run", "--rm", "--entrypoint", "cat", job.image, TARGETS[job.target]]


def inspect_argv(engine: Sequence[str], image: str) -> List[str]:
    """``<engine> image inspect --format '{{json .Config.Labels}}' IMAGE``."""
    return [*engine, "image", "inspect", "--format", "{{json .Config.Labels}}", image]


def vai_version(labels: dict) -> Optional[str]:
    """The Vitis AI version from the image's ``org.opencontainers.image.base.name`` label
    (``...:ubuntu2004-3.0.0.106`` -> ``3.0.0.106``), or None."""
    base = str(labels.get("org.opencontainers.image.base.name", ""))
    match = re.search(r"(\d+\.\d+\.\d+(?:\.\d+)?)$", base)
    return match.group(1) if match else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recipe(job: CompileJob, argv: List[str], arch_text: str, labels: dict) -> dict:
    """The ``.info`` document of a compiled xmodel (see the module docstring)."""
    try:
        arch = json.loads(arch_text)
    except ValueError:
        arch = {}
    calib = ({"kind": "files", "folder": str(job.calibration_data), "files": sorted(
        p.name for p in job.calibration_data.glob("*.npy"))} if job.calibration_data is not None else
        {"kind": "random", "batches": job.calib_batches, "distribution": "normal", "seed": 0,
         "note": "random calibration: latency only, accuracy meaningless"})
    return {"kind": "xmodel", "target": job.target, "name": job.name,
            "source": {"path": str(job.model), "sha256": _sha256(job.model)},
            "input_shape": list(job.input_shape),
            "quantizer": "vai_q_pytorch (pytorch_nndct) post-training, via vai_compile.py",
            "compiler": "vai_c_xir", "arch_json": TARGETS[job.target], "arch": arch,
            "arch_sha256": hashlib.sha256(arch_text.encode()).hexdigest() if arch_text else None,
            "fingerprint": arch.get("fingerprint"), "dpu_target": arch.get("target"),
            "vai_version": vai_version(labels) or VAI_VERSION, "image": job.image,
            "image_base": labels.get("org.opencontainers.image.base.name"),
            "calibration": calib, "command": argv}


Run = Callable[..., "subprocess.CompletedProcess"]


def _labels(engine: Sequence[str], image: str, run: Run) -> dict:
    """The image's labels. Raises CompilerImageMissingError when the engine has no such image."""
    res = run(inspect_argv(engine, image), capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise CompilerImageMissingError(f"the Vitis AI compile image {image} is not in "
                                        f"{engine[0]}'s local storage", hint=BUILD_HINT)
    try:
        return json.loads(res.stdout or "{}") or {}
    except ValueError:
        return {}


def compile_model(engine: Sequence[str], job: CompileJob, run: Run = subprocess.run) -> Path:
    """Run the compile in the image; write ``OUT/NAME.info``; return ``OUT/NAME.xmodel``.

    ``run`` is :func:`subprocess.run` (injectable for tests).

    Raises:
        CompilerImageMissingError: the image is not there (hint: how to build it).
        CompileError: the compile exited non-zero, or wrote no xmodel.
    """
    labels = _labels(engine, job.image, run)
    arch = run(arch_argv(engine, job), capture_output=True, text=True, timeout=300)
    job.out.mkdir(parents=True, exist_ok=True)
    argv = compile_argv(engine, job)
    res = run(argv, capture_output=True, text=True, timeout=6 * 3600)
    xmodel = job.out / f"{job.name}.xmodel"
    if res.returncode != 0 or not xmodel.is_file():
        tail = ((res.stderr or "") + (res.stdout or ""))[-1500:]
        raise CompileError(f"the Vitis AI compile of {job.model.name} failed (exit {res.returncode}): {tail}",
                           hint="rerun by hand: " + " ".join(argv))
    doc = recipe(job, argv, arch.stdout if arch.returncode == 0 else "", labels)
    (job.out / f"{job.name}.info").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return xmodel
