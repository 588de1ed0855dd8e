#!/usr/bin/env python3
"""Smoke test of an edgegauge device image (or the ZCU104 native bundle).

    python3 /opt/edgegauge/smoke_test.py [--runtime ort|tensorrt|vart|tvm|...] [--model M] [--json]

Standard library + numpy + the ``runners`` package only (found beside this file, on
``PYTHONPATH``, or in the image at ``/opt/edgegauge``). Steps, each printed as one line:

1. ``versions``: Python, machine, numpy, runners, and every runtime module that imports
   (those the backend descriptors in ``runners/backends/`` name: onnxruntime, tensorrt,
   vart/xir), plus ``/etc/nv_tegra_release`` where present.
2. ``backends``: ``python -m runners backends`` runs.
3. ``null``: ``python -m runners run --backend null`` (short policy) exits 0 with status ok.
4. The image's runtime (``--runtime``, default ``$EDGEGAUGE_RUNTIME``, else the ``RUNTIME``
   file beside this script as in the ZCU104 bundle, else ``ort``; ``cpu`` means ``ort``; any
   backend the runners' descriptors declare) on the tiny ONNX model ``smoke/tiny.onnx``
   (838 bytes, input x[1,3,8,8] -> y[1,2]):

   * ``ort``: ``python -m runners run smoke/tiny.onnx --backend ort`` exits 0 with status
     ok, and a direct ONNX Runtime session reproduces ``smoke/tiny.expected.json``
     (numpy reference, atol 1e-4 / rtol 1e-3).
   * ``tensorrt``: first ``cuda``: cuda-python imports through ``runners.cuda_rt`` and sees a
     device (else the step fails with cuda_rt's reason: module missing, no driver, an old
     driver); then ``tensorrt`` imports, the ONNX parser reads the model and the builder
     builds a serialized engine (needs the GPU: ``--runtime nvidia`` / ``--gpus all``).
   * ``vart``: ``vart`` and ``xir`` import; with ``--xmodel``, the graph deserializes and
     has a DPU subgraph. (The tiny ONNX model cannot run on the DPU: it needs a compiled
     xmodel, see images/vitis-ai/.)
   * ``tvm``: ``tvm`` imports and a CPU tensor makes the round trip numpy -> TVM -> numpy; with
     ``--model X.tvm`` (an artefact compiled on the host for this board, docs/tvm.md), ``python
     -m runners run X.tvm --backend tvm`` exits 0 with status ok, and, when the artefact was
     compiled from ``smoke/tiny.onnx`` (its ``meta.json`` source sha256), the tvm backend's
     outputs on the fixed input match ``smoke/tiny.expected.json`` (``tvm-check``). Without
     ``--model`` no model ran through TVM: PARTIAL (a ``.tvm`` artefact is made on the host).
   * any other backend: its descriptor's ``runtime_modules`` import, then
     ``python -m runners run smoke/tiny.onnx --backend NAME`` exits 0 with status ok.

   When the runtime's descriptor says ``implemented=False`` (tensorrt and vart in this
   version), the runtime check above still runs, but the model is **not** run through the
   runners, and the result is PARTIAL, never PASS.
   Images that also ship onnxruntime (Jetson, x86 TensorRT) run the ``ort`` check too.

Exit codes: 0 PASS (every step ran and passed); 1 FAIL (a step failed); 2 bad command line;
3 PARTIAL (nothing failed, but the runtime's runner backend is not implemented yet, so the
image cannot benchmark with its runtime). The last line is ``smoke: PASS|PARTIAL|FAIL`` (with
``--json``: one JSON document with ``verdict`` instead).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = HERE / "smoke" / "tiny.onnx"
EXPECTED = HERE / "smoke" / "tiny.expected.json"
#: Other names of a runtime (the x86-a100 image sets EDGEGAUGE_RUNTIME to its variant name).
ALIASES = {"cpu": "ort"}
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
#: A short runner policy: enough to exercise the lifecycle, not a measurement.
POLICY = ["--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "20", "--min-s", "0",
          "--max-s", "20", "--cov-max", "1000"]
#: Where to look for the runners package, in order (the image sets PYTHONPATH=/opt/edgegauge).
RUNNERS_DIRS = (HERE, HERE.parent, Path("/opt/edgegauge"))


class Report:
    """Collects ``(step, status, detail)``; status is ok | fail | partial | skip | info."""

    def __init__(self, as_json: bool):
        self.steps: list = []
        self.as_json = as_json

    def add(self, step: str, status: str, detail: str = "") -> None:
        self.steps.append({"step": step, "status": status, "detail": detail})
        if not self.as_json:
            print(f"{step:<10} {status.upper():<7} {detail}", flush=True)

    def verdict(self) -> str:
        statuses = {s["status"] for s in self.steps}
        if "fail" in statuses:
            return "FAIL"
        return "PARTIAL" if "partial" in statuses else "PASS"


def smoke_input():
    """The fixed input of tiny.onnx (same formula as images/smoke/make_tiny_onnx.py)."""
    import numpy as np

    return (np.arange(1 * 3 * 8 * 8, dtype=np.float32).reshape(1, 3, 8, 8) % 17 - 8.0) / 8.0


def runners_path() -> str | None:
    """The folder that holds the ``runners`` package, or None."""
    for d in RUNNERS_DIRS:
        if (d / "runners" / "__init__.py").is_file():
            return str(d)
    for d in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if d and (Path(d) / "runners" / "__init__.py").is_file():
            return d
    return None


def _env(rpath: str) -> dict:
    env = dict(os.environ)
    parts = [rpath] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != rpath]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def _module_version(name: str):
    """(version or None, error or None) of an importable module."""
    try:
        mod = importlib.import_module(name)
    except Exception as exc:  # ImportError, or a runtime library missing underneath (OSError)
        return None, f"{type(exc).__name__}: {exc}"
    return str(getattr(mod, "__version__", "unknown")), None


def backend_descriptors(rpath: str | None) -> dict:
    """``{name: BackendDescriptor}`` of the runners package in ``rpath`` ({} when it does not import)."""
    if rpath is None:
        return {}
    sys.path.insert(0, rpath)
    try:
        from runners.backends import descriptors

        return descriptors()
    except Exception:  # reported by the versions step (runners must import)
        return {}


def versions(report: Report, descs: dict) -> dict:
    found = {"python": platform.python_version(), "machine": platform.machine()}
    modules = ["numpy"] + [m for d in descs.values() for m in d.runtime_modules]
    for name in dict.fromkeys(modules):
        version, err = _module_version(name)
        found[name] = version if err is None else None
        if err is not None and name not in ("numpy",):
            found[f"{name}_error"] = err.splitlines()[0][:200]
    tegra = Path("/etc/nv_tegra_release")
    if tegra.is_file():
        found["nv_tegra_release"] = tegra.read_text(errors="replace").splitlines()[0][:120]
    rpath = runners_path()
    if rpath:
        sys.path.insert(0, rpath)
        try:
            import runners

            found["runners"] = runners.__version__
        except Exception as exc:
            found["runners_error"] = str(exc)
    shown = " ".join(f"{k}={v}" for k, v in found.items() if v is not None and not k.endswith("_error"))
    ok = found.get("numpy") is not None and found.get("runners") is not None
    report.add("versions", "ok" if ok else "fail",
               shown if ok else shown + " (numpy and the runners package must import)")
    return found


def run_runner(report: Report, step: str, rpath: str, args: list) -> dict | None:
    """``python -m runners run ARGS``; the result document when exit 0 and status ok."""
    with tempfile.TemporaryDirectory(prefix="edgegauge-smoke-") as tmp:
        out = Path(tmp) / "result.json"
        argv = [sys.executable, "-m", "runners", "run", *args, *POLICY, "--out", str(out)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=_env(rpath), timeout=300)
        except subprocess.TimeoutExpired:
            report.add(step, "fail", "runner did not finish within 300 s")
            return None
        doc = None
        if out.is_file():
            try:
                doc = json.loads(out.read_text())
            except ValueError as exc:
                report.add(step, "fail", f"result is not JSON: {exc}")
                return None
        if proc.returncode != 0 or doc is None or doc.get("status") != "ok":
            status = doc.get("status") if doc else None
            err = (doc or {}).get("error") or proc.stderr.strip().splitlines()[-1:] or ""
            report.add(step, "fail", f"runner exit {proc.returncode}, status {status}: {err}")
            return None
    lat = doc.get("latency") or {}
    rt = doc.get("runtime") or {}
    name = " ".join(str(x) for x in (rt.get("name"), rt.get("version")) if x)
    report.add(step, "ok", f"{name}: {lat.get('iterations')} iterations, "
               f"p50 {lat.get('latency_ms_p50') or 0:.4f} ms")
    return doc


def check_backends(report: Report, rpath: str) -> dict:
    """``python -m runners backends`` -> {backend: status line}."""
    proc = subprocess.run([sys.executable, "-m", "runners", "backends"], capture_output=True, text=True,
                          env=_env(rpath), timeout=120)
    lines = dict(line.split("\t", 1) for line in proc.stdout.splitlines() if "\t" in line)
    if proc.returncode != 0 or not lines:
        report.add("backends", "fail", f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
        return {}
    report.add("backends", "ok", "; ".join(f"{k}: {v}" for k, v in sorted(lines.items())))
    return lines


def check_ort(report: Report, rpath: str) -> None:
    """The tiny model through the runners (ort backend) and a numeric check against the reference."""
    import numpy as np

    if run_runner(report, "ort", rpath, [str(MODEL), "--backend", "ort", "--threads", "1"]) is None:
        return
    try:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"x": smoke_input()})[0]
    except Exception as exc:
        report.add("ort-check", "fail", f"{type(exc).__name__}: {exc}")
        return
    exp = json.loads(EXPECTED.read_text())
    want = np.asarray(exp["output"]["values"], dtype=np.float32).reshape(exp["output"]["shape"])
    if got.shape == want.shape and np.allclose(got, want, atol=exp["atol"], rtol=exp["rtol"]):
        report.add("ort-check", "ok", f"output {np.round(got.ravel(), 5).tolist()} matches the reference")
    else:
        report.add("ort-check", "fail", f"output {got.ravel().tolist()} != reference {want.ravel().tolist()}")


def check_cuda(report: Report) -> None:
    """cuda-python, through ``runners.cuda_rt`` (the tensorrt backend's streams, events and copies):
    it imports and sees a device; else the step fails with cuda_rt's reason."""
    try:
        from runners import cuda_rt

        reason = cuda_rt.unavailable_reason()
        if reason is None:
            found, (major, minor) = cuda_rt.versions(), cuda_rt.compute_capability()
            detail = (f"cuda-python {found['cuda-python']}: {cuda_rt.device_name()} "
                      f"(compute {major}.{minor}), driver CUDA {found['driver_cuda']}")
    except Exception as exc:
        reason = f"runners.cuda_rt: {type(exc).__name__}: {exc}"
    if reason is not None:
        report.add("cuda", "fail", reason)
    else:
        report.add("cuda", "ok", detail)


def check_tensorrt(report: Report) -> None:
    """tensorrt imports; parse tiny.onnx and build a serialized engine (needs a GPU)."""
    try:
        import tensorrt as trt
    except Exception as exc:
        report.add("tensorrt", "fail", f"import tensorrt: {type(exc).__name__}: {exc}")
        return
    major = int(trt.__version__.split(".")[0])
    logger = trt.Logger(trt.Logger.ERROR)
    try:
        builder = trt.Builder(logger)
    except Exception as exc:
        report.add("tensorrt", "fail", f"TensorRT {trt.__version__} imports, but no builder (GPU "
                   f"visible? run with --runtime nvidia / --gpus all): {type(exc).__name__}: {exc}")
        return
    if builder is None:
        report.add("tensorrt", "fail", f"TensorRT {trt.__version__} imports, but the builder could not "
                   "be created (no GPU visible? run with --runtime nvidia / --gpus all)")
        return
    flags = 0
    if major < 10:  # explicit batch is the only mode in TensorRT 10 (the flag is deprecated there)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(MODEL.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        report.add("tensorrt", "fail", f"ONNX parser: {errors}")
        return
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 26)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        report.add("tensorrt", "fail", "build_serialized_network returned None")
        return
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        report.add("tensorrt", "fail", "deserialize_cuda_engine returned None")
        return
    report.add("tensorrt", "ok", f"TensorRT {trt.__version__}: tiny.onnx parsed, engine built "
               f"({plan.nbytes} bytes) and deserialized")


def check_vart(report: Report, xmodel: str | None) -> None:
    """vart and xir import; with an xmodel, it deserializes and has a DPU subgraph."""
    try:
        import vart  # noqa: F401
        import xir
    except Exception as exc:
        report.add("vart", "fail", f"import vart/xir: {type(exc).__name__}: {exc}")
        return
    if not xmodel:
        report.add("vart", "ok", "vart and xir import (pass --xmodel M to also load a compiled model)")
        return
    try:
        graph = xir.Graph.deserialize(xmodel)
        root = graph.get_root_subgraph()
        dpu = [s for s in root.toposort_child_subgraph()
               if s.has_attr("device") and s.get_attr("device").upper() == "DPU"]
    except Exception as exc:
        report.add("vart", "fail", f"{xmodel}: {type(exc).__name__}: {exc}")
        return
    if not dpu:
        report.add("vart", "fail", f"{xmodel}: no DPU subgraph (compiled for the DPU with vai_c_xir?)")
        return
    report.add("vart", "ok", f"{xmodel}: {len(dpu)} DPU subgraph(s), first {dpu[0].get_name()!r}")


def check_tvm(report: Report) -> None:
    """``tvm`` imports; a CPU tensor makes the numpy -> TVM -> numpy round trip."""
    import numpy as np

    try:
        import tvm

        data = np.arange(6, dtype=np.float32).reshape(2, 3)
        back = tvm.runtime.tensor(data, tvm.cpu(0)).numpy()
    except Exception as exc:
        report.add("tvm", "fail", f"{type(exc).__name__}: {exc}")
        return
    if not np.array_equal(back, data):
        report.add("tvm", "fail", f"tensor round trip gave {back.tolist()}")
        return
    report.add("tvm", "ok", f"tvm {tvm.__version__} imports, CPU tensor round trip")


def check_tvm_model(report: Report, rpath: str, model) -> None:
    """A host-compiled ``.tvm`` artefact through the runners, and its outputs on the fixed input
    against the reference when it was compiled from ``smoke/tiny.onnx``; PARTIAL without one."""
    import hashlib

    import numpy as np

    if not model:
        report.add("runner", "partial", "tvm imports, but no --model X.tvm ran: compile one on the host for "
                   "this board (host zoo compile MODEL.onnx --backend tvm --target ...)")
        return
    if run_runner(report, "tvm-run", rpath, [model, "--backend", "tvm", "--threads", "1"]) is None:
        return
    try:
        from runners.backends import get_backend

        backend = get_backend("tvm", {"threads": 1})
        backend.load(model)
        if (backend.meta.get("source") or {}).get("sha256") != hashlib.sha256(MODEL.read_bytes()).hexdigest():
            backend.close()
            report.add("tvm-check", "skip", f"{model} was not compiled from {MODEL.name}: outputs not "
                       "checked")
            return
        got = backend.evaluate({backend.meta["inputs"][0]["name"]: smoke_input()})
        backend.close()
    except Exception as exc:
        report.add("tvm-check", "fail", f"{type(exc).__name__}: {exc}")
        return
    exp = json.loads(EXPECTED.read_text())
    want = np.asarray(exp["output"]["values"], dtype=np.float32).reshape(exp["output"]["shape"])
    out = next(iter(got.values()))
    if out.shape == want.shape and np.allclose(out, want, atol=exp["atol"], rtol=exp["rtol"]):
        report.add("tvm-check", "ok", f"output {np.round(out.ravel(), 5).tolist()} matches the reference")
    else:
        report.add("tvm-check", "fail", f"output {out.ravel().tolist()} != reference {want.ravel().tolist()}")


def check_imports(report: Report, desc) -> None:
    """A backend without a check of its own: its descriptor's runtime modules import."""
    for name in desc.runtime_modules:
        version, err = _module_version(name)
        if err is not None:
            report.add(desc.name, "fail", f"import {name}: {err}")
            return
    report.add(desc.name, "ok", ", ".join(desc.runtime_modules) + " import" if desc.runtime_modules
               else "no runtime module to import")


def default_runtime() -> str:
    """``$EDGEGAUGE_RUNTIME`` (set by the images), else the ``RUNTIME`` file beside this script
    (written into the ZCU104 bundle), else ``ort``."""
    env = os.environ.get("EDGEGAUGE_RUNTIME", "").strip()
    if env:
        return env
    f = HERE / "RUNTIME"
    if f.is_file():
        return f.read_text().strip() or "ort"
    return "ort"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="smoke_test.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", default=default_runtime(),
                        help="the image's runtime, a runners backend: ort | tensorrt | vart | ... "
                             "(cpu = ort) "
                             "[$EDGEGAUGE_RUNTIME, else the RUNTIME file beside this script, else ort]")
    parser.add_argument("--model", "--xmodel", dest="xmodel", metavar="M",
                        help="the runtime's own compiled model: vart .xmodel, tvm .tvm artefact")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_PASS
    args.runtime = ALIASES.get(args.runtime, args.runtime)
    rpath = runners_path()
    descs = backend_descriptors(rpath)
    if descs and args.runtime not in descs:
        print(f"error: --runtime {args.runtime!r}: one of {', '.join(descs)}", file=sys.stderr)
        return EXIT_USAGE

    report = Report(args.json)
    found = versions(report, descs)
    if rpath is None or found.get("runners") is None or not descs:
        report.add("runners", "fail", "the runners package is not importable "
                   f"(looked in {', '.join(map(str, RUNNERS_DIRS))} and PYTHONPATH)")
    else:
        check_backends(report, rpath)
        run_runner(report, "null", rpath, ["--backend", "null"])
        if args.runtime == "ort" or found.get("onnxruntime"):
            check_ort(report, rpath)
        if args.runtime == "tensorrt":
            check_cuda(report)
            check_tensorrt(report)
        elif args.runtime == "vart":
            check_vart(report, args.xmodel)
        elif args.runtime == "tvm":
            check_tvm(report)
        elif args.runtime not in ("ort", "null"):
            check_imports(report, descs[args.runtime])
        if args.runtime not in ("ort", "null"):
            if not descs[args.runtime].implemented:
                report.add("runner", "partial", f"runners {found.get('runners')} has no "
                           f"{args.runtime!r} backend yet: the runtime was checked above, but no "
                           "model ran through the runners with it")
            elif args.runtime == "vart" and not args.xmodel:
                report.add("runner", "partial", "vart backend present, but no --xmodel to run")
            elif args.runtime == "tvm":
                check_tvm_model(report, rpath, args.xmodel)
            else:
                model = args.xmodel if args.runtime == "vart" else str(MODEL)
                run_runner(report, args.runtime, rpath, [model, "--backend", args.runtime])
    verdict = report.verdict()
    if args.json:
        print(json.dumps({"verdict": verdict, "runtime": args.runtime, "versions": found,
                          "steps": report.steps}, indent=2))
    else:
        print(f"smoke: {verdict}", flush=True)
    return {"PASS": EXIT_PASS, "PARTIAL": EXIT_PARTIAL}.get(verdict, EXIT_FAIL)


if __name__ == "__main__":
    sys.exit(main())
