#!/usr/bin/env python
"""Quantize a PyTorch or ONNX model with Vitis AI 3.0 and compile it for the ZCU104 DPU.

Runs inside the edgegauge Vitis AI compile-flow image (images/vitis-ai/Dockerfile, base
``xilinx/vitis-ai-pytorch-cpu:ubuntu2004-3.0.0.106``, conda env ``vitis-ai-pytorch``)::

    vai_compile.py --model torchvision.models:mobilenet_v2 --input-shape 1x3x224x224 \\
                   --name mnv2 --out xmodels/ [--weights w.pt] [--calib-dir npy/] [--calib-batches 8]
    vai_compile.py --model model.onnx --input-shape 1x3x32x32 --name tiny --out xmodels/
    vai_compile.py --self-test

Flow (Vitis AI UG1414 / the vai_q_pytorch examples; docs/devices.md §4.2):

1. Load the float model on the CPU in eval mode: ``module:callable`` (called without
   arguments, optional ``--weights`` state dict), a ``.py`` file defining ``build_model()``,
   or an ``.onnx`` file converted with onnx2torch.
2. ``torch_quantizer("calib", model, (dummy,), output_dir=Q, device=cpu)``; forward the
   calibration batches through ``quant_model``; ``export_quant_config()``.
3. ``torch_quantizer("test", ...)`` again, batch 1, one forward pass, then
   ``export_xmodel(output_dir=Q, deploy_check=False)`` -> ``Q/<ModelClass>_int.xmodel``.
4. ``vai_c_xir -x Q/<ModelClass>_int.xmodel -a <arch.json> -o OUT -n NAME`` -> ``OUT/NAME.xmodel``.

Calibration data: ``--calib-dir`` with ``.npy`` files (float32, NCHW, one batch each), else
``--calib-batches`` random normal batches (seed 0) -- fine for latency work with random
weights, meaningless for accuracy. Exit codes: 0 done, 1 a step failed, 2 bad command line.
Nothing here was run in the edgegauge CI (no Vitis AI image there); see images/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ARCH = os.environ.get("EDGEGAUGE_VAI_ARCH",
                      "/opt/vitis_ai/compiler/arch/DPUCZDX8G/ZCU104/arch.json")


class CompileError(Exception):
    """A step of the flow failed; the message names it."""


def parse_shape(text: str) -> tuple:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected e.g. 1x3x224x224") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"{text!r}: dimensions must be positive")
    return dims


def load_model(spec: str, weights: str | None):
    """The float torch.nn.Module named by ``spec`` (eval mode, CPU)."""
    import torch

    path = Path(spec)
    if path.suffix == ".onnx":
        import onnx
        from onnx2torch import convert

        model = convert(onnx.load(str(path)))
    elif path.suffix == ".py":
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        if mod_spec is None or mod_spec.loader is None:
            raise CompileError(f"{spec}: cannot import")
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        if not hasattr(module, "build_model"):
            raise CompileError(f"{spec}: defines no build_model()")
        model = module.build_model()
    elif ":" in spec:
        mod_name, _, attr = spec.partition(":")
        model = getattr(importlib.import_module(mod_name), attr)()
    else:
        raise CompileError(f"{spec}: expected MODULE:CALLABLE, a .py file with build_model(), or .onnx")
    if weights:
        state = torch.load(weights, map_location="cpu")
        model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    return model.eval().cpu()


def calibration_batches(shape: tuple, calib_dir: str | None, n_random: int):
    import numpy as np
    import torch

    if calib_dir:
        files = sorted(Path(calib_dir).glob("*.npy"))
        if not files:
            raise CompileError(f"--calib-dir {calib_dir}: no .npy files")
        for f in files:
            yield torch.from_numpy(np.load(f).astype("float32"))
        return
    gen = torch.Generator().manual_seed(0)
    for _ in range(n_random):
        yield torch.randn(shape, generator=gen)


def quantize(model, shape: tuple, qdir: Path, calib_dir: str | None, n_random: int) -> Path:
    """Calib then test mode; returns the exported ``*_int.xmodel``."""
    import torch
    from pytorch_nndct.apis import torch_quantizer

    cpu = torch.device("cpu")
    dummy = torch.randn((1,) + tuple(shape[1:]))
    quantizer = torch_quantizer("calib", model, (dummy,), output_dir=str(qdir), device=cpu)
    qmodel = quantizer.quant_model
    with torch.no_grad():
        for batch in calibration_batches(shape, calib_dir, n_random):
            qmodel(batch)
    quantizer.export_quant_config()

    quantizer = torch_quantizer("test", model, (dummy,), output_dir=str(qdir), device=cpu)
    qmodel = quantizer.quant_model
    with torch.no_grad():
        qmodel(dummy)  # test mode before export: batch 1, one iteration
    quantizer.export_xmodel(output_dir=str(qdir), deploy_check=False)
    found = sorted(qdir.glob("*_int.xmodel"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise CompileError(f"export_xmodel wrote no *_int.xmodel under {qdir}")
    return found[-1]


def compile_xmodel(int_xmodel: Path, arch: str, out: Path, name: str) -> Path:
    if shutil.which("vai_c_xir") is None:
        raise CompileError("vai_c_xir not on PATH (is the vitis-ai-pytorch conda env active?)")
    argv = ["vai_c_xir", "-x", str(int_xmodel), "-a", arch, "-o", str(out), "-n", name]
    print("+", " ".join(argv), flush=True)
    proc = subprocess.run(argv)
    target = out / f"{name}.xmodel"
    if proc.returncode != 0 or not target.is_file():
        raise CompileError(f"vai_c_xir failed (exit {proc.returncode}); no {target}")
    return target


def self_test() -> int:
    problems = []
    try:
        import pytorch_nndct  # noqa: F401
        import torch

        print(f"torch {torch.__version__}, pytorch_nndct {getattr(pytorch_nndct, '__version__', '?')}")
    except Exception as exc:
        problems.append(f"import pytorch_nndct/torch: {exc}")
    for mod in ("onnx", "onnx2torch"):
        try:
            print(f"{mod} {getattr(importlib.import_module(mod), '__version__', '?')}")
        except Exception as exc:
            problems.append(f"import {mod}: {exc}")
    if shutil.which("vai_c_xir") is None:
        problems.append("vai_c_xir not on PATH")
    if not Path(ARCH).is_file():
        problems.append(f"arch file missing: {ARCH}")
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    print("self-test:", "FAIL" if problems else "PASS")
    return 1 if problems else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="vai_compile.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="MODULE:CALLABLE, a .py file with build_model(), or a .onnx file")
    ap.add_argument("--weights", help="state dict (.pt/.pth) to load into the model")
    ap.add_argument("--input-shape", type=parse_shape, help="calibration batch shape, NCHW, e.g. 8x3x224x224")
    ap.add_argument("--name", help="network name: OUT/NAME.xmodel")
    ap.add_argument("--out", default="xmodels", help="output folder [xmodels]")
    ap.add_argument("--arch", default=ARCH, help=f"DPU arch.json [{ARCH}]")
    ap.add_argument("--calib-dir", help="folder of .npy calibration batches (float32 NCHW)")
    ap.add_argument("--calib-batches", type=int, default=8, help="random calibration batches [8]")
    ap.add_argument("--self-test", action="store_true", help="check the tools, compile nothing")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()
    if not (args.model and args.input_shape and args.name):
        ap.error("--model, --input-shape and --name are required")
    out = Path(args.out)
    qdir = out / f"{args.name}.quantize_result"
    qdir.mkdir(parents=True, exist_ok=True)
    try:
        model = load_model(args.model, args.weights)
        int_xmodel = quantize(model, args.input_shape, qdir, args.calib_dir, args.calib_batches)
        xmodel = compile_xmodel(int_xmodel, args.arch, out, args.name)
    except CompileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    meta = {"xmodel": str(xmodel), "int_xmodel": str(int_xmodel), "model": args.model,
            "input_shape": list(args.input_shape), "arch": args.arch,
            "calibration": args.calib_dir or f"{args.calib_batches} random batches (seed 0)"}
    (out / f"{args.name}.compile.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {xmodel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
