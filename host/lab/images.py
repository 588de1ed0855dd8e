"""Device images: build them with the docker CLI or podman, save them as archives, and write
the ZCU104 native bundle.

One folder per device family under ``images/`` (see images/README.md), named by the family's
descriptor (``runners/families/<family>.py``: ``image_folder``, its variants, the runtime each
variant's smoke test checks); the build context is always the repository root, so ``runners/``
and the shared smoke test go into every image. ``host image list`` shows the catalogue; a family
is named by its one name (``arm_cpu``, ``jetson``, ``x86_a100``, ``zcu104``). A variant with
``bundle`` is not an image but a native tarball (:mod:`host.lab.bundle`, the ZCU104's).

``<version>`` is the edgegauge version (pyproject / :data:`host.__version__`). Every build passes
``VERSION``, ``REVISION`` (``git rev-parse HEAD``, ``-dirty`` when tracked files changed),
``CREATED`` (UTC, ISO 8601) and ``SOURCE`` (the ``origin`` remote) as build args, and the same
values as ``--label org.opencontainers.image.*`` (plus ``base.name``): buildah 1.28 (podman 4.3)
reuses a cached ``LABEL`` step whose build-arg value changed, so the command-line labels are what
makes them right.

With podman, an unqualified tag ``edgegauge/x:1`` is stored as ``docker.io/edgegauge/x:1`` (podman
would otherwise store ``localhost/edgegauge/x:1``): ``podman save`` then writes a name that
``docker load`` on a board turns back into ``edgegauge/x:1``, the inventory's ``image``.

Library code: raises :class:`ImageError` subclasses (with a hint) and prints nothing; build
output goes to an optional ``log`` callback.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import shlex
import shutil
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from host import REPO_ROOT
from host.errors import (
    EngineNotFoundError,
    ImageBuildError,
    ImageError,
    ImageNotFoundError,
    ImageSaveError,
    UnknownFamilyError,
)
from runners import families
from runners.backends import default_name
from runners.families import FamilyDescriptor, ImageVariant
from runners.util import utc_now

#: OCI annotation keys set on every image (values from build args and --label).
OCI = "org.opencontainers.image"


def image_version() -> str:
    """The edgegauge version the images are tagged with (pyproject ``version``)."""
    from host import __version__

    return __version__


def image_families() -> Dict[str, FamilyDescriptor]:
    """The families that declare an image folder, by name (``runners/families``)."""
    return {name: d for name, d in families.descriptors().items() if d.variants}


def smoke_runtime(variant: ImageVariant) -> str:
    """The runtime ``variant``'s smoke test checks: its own, else the default runtime."""
    return variant.runtime or default_name()


def family(name: str) -> FamilyDescriptor:
    """The family ``name`` (its one spelling), with an image.

    Raises:
        UnknownFamilyError: no such family (an old spelling such as ``arm-cpu`` is told its
            name), or the family declares no image.
    """
    try:
        desc = families.get(name)
    except families.UnknownFamily as exc:
        right = f"write {exc.suggestion!r}" if exc.suggestion else "see `host image list`"
        raise UnknownFamilyError(f"unknown image family {name!r}", hint=f"{right}; families: "
                                 f"{', '.join(image_families())} (`host image list`)") from None
    if not desc.variants:
        raise UnknownFamilyError(f"family {name!r} declares no image (runners/families/{name}.py)",
                                 hint=f"families with images: {', '.join(image_families())}")
    return desc


def resolve_variant(name: str, variant: Optional[str] = None) -> Tuple[str, ImageVariant]:
    """``(family, ImageVariant)`` for a family name and an optional variant.

    Raises:
        UnknownFamilyError: unknown family or variant (see :func:`family`).
    """
    desc = family(name)
    var = desc.variant(variant)
    if var is None:
        raise UnknownFamilyError(f"family {desc.name!r} has no variant {variant!r}",
                                 hint=f"variants of {desc.name}: {', '.join(v.name for v in desc.variants)}")
    return desc.name, var


def default_tag(family: str, variant: Optional[str] = None, version: Optional[str] = None) -> str:
    """``<repository>:<version><suffix>`` (e.g. ``edgegauge/jetson:0.1.0-jp5``).

    Raises:
        UnknownFamilyError: unknown family or variant, or the bundle variant (no image).
    """
    fam, var = resolve_variant(family, variant)
    if var.bundle:
        image = next((v.name for v in families.get(fam).variants if not v.bundle), None)
        raise UnknownFamilyError(f"{fam} variant {var.name!r} is a tarball, not an image",
                                 hint=f"the image of {fam} is variant {image!r}" if image else None)
    return f"{var.repository}:{version or image_version()}{var.tag_suffix}"


def engine_argv(engine: Union[str, Sequence[str], None]) -> List[str]:
    """The engine command line as words: ``"docker"``, ``"podman --root /x --runtime runc"``.

    Raises:
        EngineNotFoundError: empty, or its program is not on PATH.
    """
    words = shlex.split(engine) if isinstance(engine, str) else list(engine or ["docker"])
    if not words:
        raise EngineNotFoundError("empty --engine", hint="docker, podman, or a podman command line")
    if shutil.which(words[0]) is None:
        raise EngineNotFoundError(f"container engine {words[0]!r} not found on PATH",
                                  hint="install docker or podman, or pass --engine")
    return words


def is_podman(engine: Sequence[str]) -> bool:
    return Path(engine[0]).name.startswith("podman")


def qualify(image: str, engine: Sequence[str]) -> str:
    """Podman: ``edgegauge/x:1`` -> ``docker.io/edgegauge/x:1`` (see the module docstring);
    names with a registry (``localhost/...``, ``nvcr.io/...``) and docker engines: unchanged."""
    if not is_podman(engine):
        return image
    first = image.split("/", 1)[0]
    if "/" in image and (first == "localhost" or "." in first or ":" in first):
        return image
    return f"docker.io/{image}"


def _git(root: Path, *args: str) -> Optional[str]:
    try:
        res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def git_revision(root: Path = REPO_ROOT) -> str:
    """:func:`runners.manifest.git_revision` of ``root`` (``-dirty`` when tracked files
    differ); ``unknown`` outside a git checkout."""
    from runners.manifest import git_revision as revision

    return revision(str(root)) or "unknown"


def git_source(root: Path = REPO_ROOT) -> str:
    """URL of the ``origin`` remote, or ``""``."""
    return _git(root, "remote", "get-url", "origin") or ""


def parse_build_args(items: Iterable[str]) -> Dict[str, str]:
    """``["K=V", ...]`` -> dict.

    Raises:
        ImageError: an item without ``=``.
    """
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ImageError(f"--build-arg {item!r} is not KEY=VALUE", hint="e.g. --build-arg JETPACK=6")
        out[key] = value
    return out


@dataclass
class BuildPlan:
    """Everything one ``<engine> build`` needs; :meth:`argv` is the command line."""

    family: str
    variant: ImageVariant
    engine: List[str]
    tag: str
    context: Path
    dockerfile: Path
    build_args: Dict[str, str]
    labels: Dict[str, str]
    platform: Optional[str] = None
    build_opts: List[str] = field(default_factory=list)
    wheelhouse: Optional[Path] = None

    def argv(self, extra_build_args: Optional[Dict[str, str]] = None,
             network_host: bool = False) -> List[str]:
        """``ENGINE build -f DOCKERFILE -t TAG [--platform P] --build-arg ... --label ... OPTS CONTEXT``."""
        argv = [*self.engine, "build", "-f", str(self.dockerfile), "-t", self.tag]
        if self.platform:
            argv += ["--platform", self.platform]
        for key, value in {**self.build_args, **(extra_build_args or {})}.items():
            argv += ["--build-arg", f"{key}={value}"]
        for key, value in self.labels.items():
            argv += ["--label", f"{key}={value}"]
        opts = list(self.build_opts)
        if network_host and not any(o == "--network" or o.startswith("--network=") for o in opts):
            opts += ["--network", "host"]
        return argv + opts + [str(self.context)]


def plan_build(
    family: str,
    variant: Optional[str] = None,
    *,
    engine: Union[str, Sequence[str], None] = "docker",
    base: Optional[str] = None,
    tag: Optional[str] = None,
    build_args: Union[Dict[str, str], Iterable[str], None] = None,
    platform: Optional[str] = None,
    build_opts: Union[str, Iterable[str], None] = None,
    wheelhouse: Union[str, Path, None] = None,
    repo_root: Union[str, Path] = REPO_ROOT,
    revision: Optional[str] = None,
    created: Optional[str] = None,
) -> BuildPlan:
    """Plan an image build (runs nothing but ``git``).

    Args:
        family, variant: a family of :func:`image_families` and one of its variants.
        engine: ``docker``, ``podman`` or a podman command line (words or one string).
        base: base image; sets the variant's base build arg (``BASE_IMAGE``; Jetson
            ``BASE_IMAGE_JP5``/``_JP6``; x86_a100 ``BASE_IMAGE_TENSORRT``/``_CPU``).
        tag: image tag [``edgegauge/<family>:<version><suffix>``].
        build_args: extra ``KEY=VALUE`` build args (they win over the family's own).
        platform: ``--platform`` (e.g. ``linux/arm64``; cross builds need QEMU binfmt).
        build_opts: extra ``<engine> build`` options, e.g. ``--ulimit nofile=1024:1024``
            (a string is split like a shell does).
        wheelhouse: folder of wheels to install from instead of PyPI (see :func:`build_image`).
        revision, created: OCI revision / creation time [git HEAD, now UTC].

    Raises:
        UnknownFamilyError, EngineNotFoundError, ImageError (the Dockerfile or the wheelhouse
        is missing, the variant is a native bundle).
    """
    fam, var = resolve_variant(family, variant)
    if var.bundle:
        raise UnknownFamilyError(f"{fam} variant {var.name!r} is the native bundle, not an image",
                                 hint=f"`host image build {fam} --variant {var.name}` writes it")
    words = engine_argv(engine)
    root = Path(repo_root).resolve()
    dockerfile = root / var.dockerfile
    if not dockerfile.is_file():
        raise ImageError(f"{dockerfile} does not exist",
                         hint="run from an edgegauge checkout (images/ is not installed with the package)")
    version = image_version()
    extra = dict(build_args) if isinstance(build_args, dict) else parse_build_args(build_args or [])
    args = dict(var.build_args)
    if base:
        args[var.base_arg] = base
    labels = {
        f"{OCI}.version": version,
        f"{OCI}.revision": revision or git_revision(root),
        f"{OCI}.created": created or utc_now(),
        f"{OCI}.source": git_source(root),
        f"{OCI}.base.name": base or var.default_base,
    }
    args.update({"VERSION": labels[f"{OCI}.version"], "REVISION": labels[f"{OCI}.revision"],
                 "CREATED": labels[f"{OCI}.created"], "SOURCE": labels[f"{OCI}.source"]})
    args.update(extra)
    opts = shlex.split(build_opts) if isinstance(build_opts, str) else list(build_opts or [])
    wh = None
    if wheelhouse is not None:
        wh = Path(wheelhouse).expanduser().resolve()
        if not wh.is_dir() or not any(wh.glob("*.whl")):
            raise ImageError(f"wheelhouse {wh} has no .whl files",
                             hint="fill it with `pip download --only-binary=:all: -r "
                                  f"{var.dockerfile.rsplit('/', 1)[0]}/requirements*.txt --dest {wh}`")
    return BuildPlan(fam, var, words, qualify(tag or default_tag(fam, var.name, version), words), root,
                     dockerfile, args, labels, platform, opts, wh)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@contextlib.contextmanager
def serve_wheelhouse(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on ``http://127.0.0.1:<free port>/`` (a directory listing that pip's
    ``--find-links`` reads) for the duration of the block; yields the URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    # A port derived from the folder first: the same wheelhouse gives the same PIP_EXTRA_ARGS
    # build arg, so the engine's layer cache is reused; a random port when that one is taken.
    preferred = 20000 + int(hashlib.sha256(str(directory).encode()).hexdigest(), 16) % 20000
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", preferred), handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="wheelhouse", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class BuildResult:
    """A finished build: ``tag`` as stored by the engine, ``seconds`` wall time, ``argv`` run."""

    tag: str
    seconds: float
    argv: List[str]
    labels: Dict[str, str]


def build_image(plan: BuildPlan, *, log: Optional[Callable[[str], None]] = None,
                timeout: Optional[float] = None) -> BuildResult:
    """Run ``<engine> build`` for ``plan``; output lines go to ``log`` as they come.

    With ``plan.wheelhouse``, the folder is served on 127.0.0.1 for the build, the Dockerfiles'
    ``PIP_EXTRA_ARGS`` build arg becomes ``--no-index --find-links http://127.0.0.1:PORT/`` and
    the build uses the host network (``--network host``, unless ``build_opts`` name one): pip
    then installs only from those wheels, offline.

    Raises:
        ImageBuildError: the engine exited non-zero or ran past ``timeout`` seconds (the
            message ends with the last lines of its output).
        EngineNotFoundError: the engine vanished.
    """
    with contextlib.ExitStack() as stack:
        extra, network_host = {}, False
        if plan.wheelhouse is not None:
            url = stack.enter_context(serve_wheelhouse(plan.wheelhouse))
            extra["PIP_EXTRA_ARGS"] = f"--no-index --find-links {url}"
            network_host = True
        argv = plan.argv(extra, network_host)
        return _run_build(plan, argv, log, timeout)


def _run_build(plan: BuildPlan, argv: List[str], log, timeout) -> BuildResult:
    last: deque = deque(maxlen=25)
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", bufsize=1)
    except FileNotFoundError:
        raise EngineNotFoundError(f"container engine {argv[0]!r} not found",
                                  hint="install docker or podman, or pass --engine") from None
    timer = None
    if timeout:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            last.append(line)
            if log:
                log(line)
        rc = proc.wait()
    finally:
        if timer:
            timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - t0
    if rc != 0:
        why = f"ran past {timeout:.0f} s" if timeout and seconds >= timeout else f"exit {rc}"
        tail = "\n".join(last)
        raise ImageBuildError(f"building {plan.tag} failed ({why}): {shlex.join(argv)}\n{tail}",
                              hint=_build_hint(plan, tail))
    return BuildResult(plan.tag, seconds, argv, dict(plan.labels))


def _build_hint(plan: BuildPlan, tail: str) -> str:
    low = tail.lower()
    if "cgroups in hybrid mode" in low or "crun:" in low:
        return "podman's crun cannot run here: pass --engine 'podman --runtime runc'"
    if "setrlimit" in low or "error setting rlimit" in low:
        return "lower the limits: --build-opt '--ulimit nofile=1024:1024 --ulimit nproc=4096:4096'"
    if "exec format error" in low:
        return "foreign --platform without QEMU: install qemu-user-static and register binfmt_misc"
    if any(s in low for s in ("no such host", "name resolution", "could not resolve", "connection refused",
                              "network is unreachable", "no matching distribution")):
        return ("the build needs the network (base image, apt, PyPI); offline: a local --base and "
                "--wheelhouse DIR")
    if "short-name" in low:
        return "name local base images fully, e.g. localhost/debian:bookworm-minbase"
    return f"see the build output above; build by hand with: docker build -f {plan.variant.dockerfile} ."


def build(family: str, variant: Optional[str] = None, *, log=None, timeout=None, **kw) -> BuildResult:
    """:func:`plan_build` then :func:`build_image` (same arguments and errors)."""
    return build_image(plan_build(family, variant, **kw), log=log, timeout=timeout)


# ----------------------------------------------------------------------------------------
# save
# ----------------------------------------------------------------------------------------


@dataclass
class SaveResult:
    image: str
    path: Path
    bytes: int
    seconds: float


def resolve_image(image_or_family: str, variant: Optional[str] = None) -> str:
    """A family name -> its default tag; anything else is an image reference.

    Raises:
        UnknownFamilyError: ``variant`` given with an image reference, or a bad variant."""
    if image_or_family in image_families():
        return default_tag(image_or_family, variant or _image_variant(image_or_family))
    if variant:
        raise UnknownFamilyError(f"--variant needs a family name, not the image {image_or_family!r}",
                                 hint=f"families: {', '.join(image_families())}")
    return image_or_family


def _image_variant(name: str) -> Optional[str]:
    """The family's default variant, or its first image when the default is a bundle."""
    desc = families.get(name)
    if desc.variant().bundle:
        return next(v.name for v in desc.variants if not v.bundle)
    return None


def save_image(image_or_family: str, output: Union[str, Path], *, variant: Optional[str] = None,
               engine: Union[str, Sequence[str], None] = "docker",
               timeout: Optional[float] = 3600) -> SaveResult:
    """Write ``<engine> save -o OUTPUT IMAGE`` (a docker-archive tarball that ``docker load`` and
    ``podman load`` read; ``host deploy`` loads it from the inventory's ``image_archive``).
    Written to a temporary name beside ``output`` and renamed when complete.

    Raises:
        ImageNotFoundError: the image is not in the engine's storage.
        ImageSaveError: the engine failed, or ``output``'s folder cannot be written.
        EngineNotFoundError, UnknownFamilyError.
    """
    words = engine_argv(engine)
    image = qualify(resolve_image(image_or_family, variant), words)
    out = Path(output).expanduser()
    res = subprocess.run([*words, "image", "inspect", image], capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        why = res.stderr.strip()
        if not any(s in why.lower() for s in ("no such image", "image not known", "no such object",
                                              "failed to find image", "not found")):
            raise ImageSaveError(f"{shlex.join(words)} cannot inspect {image}: {why[-400:]}",
                                 hint="is the engine usable here (docker daemon running, podman storage)?")
        hint = "check the name with `<engine> images`"
        if image_or_family in image_families():
            var = variant or _image_variant(image_or_family)
            hint = f"build it first: host image build {image_or_family}" + (f" --variant {var}" * bool(var))
        raise ImageNotFoundError(f"image {image} not found by {shlex.join(words)}", hint=hint)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageSaveError(f"cannot create {out.parent}: {exc}") from None
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    t0 = time.monotonic()
    argv = [*words, "save", "-o", str(tmp), image]
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        raise ImageSaveError(f"{shlex.join(argv)} ran past {timeout} s") from None
    if res.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise ImageSaveError(f"saving {image} failed (exit {res.returncode}): {res.stderr.strip()[-600:]}",
                             hint="is there room in the output folder?")
    os.replace(tmp, out)
    return SaveResult(image, out, out.stat().st_size, time.monotonic() - t0)
