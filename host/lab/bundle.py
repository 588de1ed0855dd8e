"""The native bundle of a family whose boards run no container engine (the ZCU104's: a variant
with ``bundle`` in ``runners/families/zcu104.py``): a deterministic tarball of ``runners/`` and the
smoke test, written by ``host image build zcu104``.

Library code: raises :class:`ImageBuildError` (with a hint) and prints nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

from host import REPO_ROOT
from host.errors import ImageBuildError, UnknownFamilyError
from host.lab.images import git_revision, image_families, image_version, resolve_variant, smoke_runtime

BUNDLE_TOP = "edgegauge"

_BUNDLE_README = """\
edgegauge {version} native bundle for the Xilinx ZCU104 (Vitis AI 3.0 board image
xilinx-zcu104-dpu-v2022.2-v3.0.0; Docker is not supported there). Pure Python: runs on the
board image's python3, numpy, vart and xir; installs nothing.

  tar -xzf {name} -C /opt
  PYTHONPATH=/opt/edgegauge python3 -m runners backends
  python3 /opt/edgegauge/smoke_test.py [--xmodel /usr/share/vitis_ai_library/models/M/M.xmodel]

smoke_test.py exit codes: 0 PASS, 1 FAIL, 3 PARTIAL (vart/xir import but the runners have no
vart backend yet). RUNTIME names the runtime the smoke test checks by default ({runtime}).
"""


@dataclass
class BundleResult:
    path: Path
    sha256: str
    bytes: int
    files: List[str]


def _bundle_files(root: Path) -> Dict[str, Union[Path, bytes]]:
    """archive name -> source file or content."""
    files: Dict[str, Union[Path, bytes]] = {}
    runners = root / "runners"
    if not (runners / "__init__.py").is_file():
        raise ImageBuildError(f"{runners} is not the runners package", hint="run from an edgegauge checkout")
    for path in sorted(runners.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        files[f"{BUNDLE_TOP}/runners/{path.relative_to(runners).as_posix()}"] = path
    images = root / "images"
    smoke = sorted(p.name for p in (images / "smoke").glob("tiny.*")) if (images / "smoke").is_dir() else []
    if len(smoke) < 2:
        raise ImageBuildError(f"{images / 'smoke'} lacks the tiny model and its expected outputs",
                              hint="run from an edgegauge checkout")
    for rel in ["smoke_test.py"] + [f"smoke/{name}" for name in smoke]:
        if not (images / rel).is_file():
            raise ImageBuildError(f"{images / rel} is missing", hint="run from an edgegauge checkout")
        files[f"{BUNDLE_TOP}/{rel}"] = images / rel
    return files


def bundle_family() -> str:
    """The family with a native bundle variant (the first one).

    Raises:
        UnknownFamilyError: no family declares one."""
    for name, desc in image_families().items():
        if any(v.bundle for v in desc.variants):
            return name
    raise UnknownFamilyError("no family declares a native bundle variant (runners/families/)")


def build_bundle(out_dir: Union[str, Path, None] = None, *, family: Optional[str] = None,
                 repo_root: Union[str, Path] = REPO_ROOT, revision: Optional[str] = None,
                 mtime: Optional[int] = None) -> BundleResult:
    """Write ``<out_dir>/edgegauge-<image folder>-bundle-<version>.tar.gz`` of ``family``
    [:func:`bundle_family`] (out_dir: ``<repo>/dist``).

    Layout: ``edgegauge/`` holding ``runners/`` (the package's ``.py`` files), ``smoke_test.py``,
    the tiny smoke model + ``tiny.expected.json``, ``VERSION``, ``RUNTIME`` (the bundle variant's
    smoke-test runtime), ``BUILD_INFO.json`` (version, revision) and ``README``. Deterministic:
    sorted entries, owner 0:0, modes 0644/0755, every mtime = ``mtime`` [``$SOURCE_DATE_EPOCH``,
    else 0], gzip header without name or time -- the same tree and revision give the same bytes
    (sha256). Written to a temporary name and renamed.

    Raises:
        ImageBuildError: sources missing, or the file cannot be written.
        UnknownFamilyError: the family has no bundle variant.
    """
    root = Path(repo_root).resolve()
    version = image_version()
    fam = family or bundle_family()
    desc = image_families().get(fam)
    var = next((v for v in desc.variants if v.bundle), None) if desc else None
    if var is None:
        resolve_variant(fam)  # an unknown family: its own error
        raise UnknownFamilyError(f"family {fam!r} has no native bundle variant",
                                 hint=f"`host image build {fam}` builds its image")
    archive = f"edgegauge-{desc.image_folder}-bundle-{version}.tar.gz"
    runtime = smoke_runtime(var)
    if mtime is None:
        mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    files: Dict[str, Union[Path, bytes]] = _bundle_files(root)
    info = {"name": f"edgegauge-{desc.image_folder}-bundle", "version": version,
            "revision": revision or git_revision(root), "runtime": runtime, "target": desc.summary}
    files[f"{BUNDLE_TOP}/VERSION"] = f"{version}\n".encode()
    files[f"{BUNDLE_TOP}/RUNTIME"] = f"{runtime}\n".encode()
    files[f"{BUNDLE_TOP}/BUILD_INFO.json"] = (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()
    readme = _BUNDLE_README.format(version=version, name=archive, runtime=runtime)
    files[f"{BUNDLE_TOP}/README"] = readme.encode()
    dirs = sorted({p for name in files for p in _parents(name)})

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for d in dirs:
            tar.addfile(_tarinfo(d + "/", tarfile.DIRTYPE, 0o755, 0, mtime))
        for name in sorted(files):
            src = files[name]
            data = src.read_bytes() if isinstance(src, Path) else src
            mode = 0o755 if name.endswith("smoke_test.py") else 0o644
            tar.addfile(_tarinfo(name, tarfile.REGTYPE, mode, len(data), mtime), io.BytesIO(data))
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=mtime, compresslevel=9) as f:
        f.write(buf.getvalue())
    payload = gz.getvalue()

    out = Path(out_dir).expanduser() if out_dir is not None else root / "dist"
    path = out / archive
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(payload)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ImageBuildError(f"cannot write {path}: {exc}", hint="pass --out to a writable folder") from None
    return BundleResult(path, hashlib.sha256(payload).hexdigest(), len(payload), sorted(files))


def _parents(name: str) -> List[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _tarinfo(name: str, kind: bytes, mode: int, size: int, mtime: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.mtime = kind, mode, size, mtime
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti
