"""Deploying to a board: its work folder, the runners bundle (content-addressed, shipped once),
models (content-addressed, sent once), the container image, and ``host deploy``'s report.

Work folder layout on the board (``workdir`` from the inventory; relative = under the
login user's home)::

    <workdir>/runners/<hash>/runners/*.py   the runner package; <hash> = its source_sha256
    <workdir>/models/<sha256>.onnx          models, content-addressed (sent once)
    <workdir>/out/<token>.json              a cell's result, read back and removed

The functions take a :class:`host.lab.board.Board` and keep what they learn on it
(``workdir``, ``runners_present``, ``models_present``, transfer counts); the board's methods
of the same names call them.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import posixpath
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from host.errors import DeployError, DiskFullError, TransportError
from host.lab.benchconfig import tail
from host.lab.shell import kv_lines, set_workdir, sh, words
from runners.backends import default_name, descriptors
from runners.manifest import read_sources, source_sha256
from runners.util import file_sha256


@functools.lru_cache(maxsize=None)
def runners_bundle() -> tuple[str, bytes]:
    """The ``runners`` package as a deterministic ``.tar.gz`` and its content hash.

    Only ``*.py`` files are packed (:func:`runners.manifest.read_sources`), sorted, with
    zeroed owners and times, so the hash changes exactly when the runner code changes.

    Returns:
        (:func:`runners.manifest.source_sha256` of those files -- the ``source_sha256`` a
        result of this bundle reports --, archive bytes).
    """
    sources = read_sources()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for rel, data in sources:
            info = tarfile.TarInfo("runners/" + rel)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return source_sha256(sources), buf.getvalue()


_SHA_CACHE: dict = {}
_SHA_LOCK = threading.Lock()


def cached_sha256(path: Path) -> str:
    """:func:`runners.util.file_sha256` of a file, cached by (path, size, mtime): a campaign
    hashes each model once, however many boards and cells use it.

    Raises:
        OSError: the file cannot be read.
    """
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    with _SHA_LOCK:
        if key in _SHA_CACHE:
            return _SHA_CACHE[key]
    digest = file_sha256(path)
    with _SHA_LOCK:
        _SHA_CACHE[key] = digest
    return digest


@dataclass
class StepReport:
    """What :func:`deploy` did on one board."""

    device: str
    ok: bool = True
    steps: list = field(default_factory=list)  # [(step, detail)]
    error: str | None = None
    category: str | None = None
    bytes_sent: int = 0
    notes: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"device": self.device, "ok": self.ok, "steps": [list(s) for s in self.steps],
                "error": self.error, "category": self.category, "bytes_sent": self.bytes_sent,
                "notes": self.notes}


def prepare(board) -> None:
    """Create the work folder, learn which runners/models are already there (one
    round trip), and ship the runner package when its version is missing.

    Raises:
        TransportError: the board cannot be reached.
        DeployError: the work folder cannot be created or written.
    """
    script = (
        set_workdir(board.device)
        + 'mkdir -p "$W/models" "$W/out" "$W/runners" "$W/inputs" "$W/datasets" && test -w "$W/out" || '
        '{ echo "cannot create or write the work folder $W" >&2; exit 3; }; '
        + (  # images run as their own non-root user: let it write its result (sticky, like /tmp)
            'chmod 1777 "$W/out" || exit 3; ' if board.container else "")
        +
        'printf "workdir=%s\\n" "$W"; '
        f'test -f "$W/runners/{board.runners_hash}/.complete" && echo runners=present; '
        'for f in "$W"/models/*; do '  # content-addressed <sha256><suffix>, whatever the runtime
        '[ -f "$f" ] && printf "model=%s\\n" "${f##*/}"; done; '
        "exit 0"
    )
    res = board.transport.run(script, timeout=60, retry=True)
    if not res.ok:
        raise DeployError(f"{board.name}: {res.stderr.strip() or 'preparing the work folder failed'}",
                          hint="set a writable `workdir` for this device in the inventory")
    facts = kv_lines(res.stdout)
    board.workdir = posixpath.normpath(facts["workdir"])
    board.runners_present = facts.get("runners") == "present"
    board.models_present = set(facts["models"])  # file names: <sha256><model suffix>
    if not board.runners_present:
        ship_runners(board)


def ship_runners(board) -> None:
    """Send the runners bundle and unpack it into ``runners/<hash>/`` (atomically: staged,
    marked ``.complete``, renamed).

    Raises:
        TransportError: connection problems.
        DeployError: unpacking failed.
    """
    digest, data = runners_bundle()
    with tempfile.NamedTemporaryFile(suffix=".tar.gz") as tmp:
        tmp.write(data)
        tmp.flush()
        archive = f"{board.workdir}/runners/{digest}.tar.gz"
        board.transport.put(Path(tmp.name), archive)
    rdir = f"{board.workdir}/runners"
    staging = f"{rdir}/.{digest}.tmp"
    final = f"{rdir}/{digest}"
    cmd = (f"rm -rf {sh(staging)} && mkdir -p {sh(staging)} && tar -xzf {sh(archive)} -C {sh(staging)}"
           f" && touch {sh(staging + '/.complete')} && rm -rf {sh(final)} && mv {sh(staging)} {sh(final)}"
           f"; rc=$?; rm -f {sh(archive)}; exit $rc")
    res = board.transport.run(cmd, timeout=120, retry=True)
    if not res.ok:
        raise DeployError(f"{board.name}: unpacking the runners failed: {res.stderr.strip()}",
                          hint="the board needs `tar` and a writable work folder")
    board.runners_present = True
    board.runners_shipped = True


def _suffix(model) -> str:
    """``model``'s suffix on the board; a file without one gets the default runtime's format."""
    return Path(model).suffix.lower() or descriptors()[default_name()].model_suffixes[0]


def ensure_model(board, model: Path, sha256: str | None = None) -> str:
    """Make sure ``model`` is on the board as ``models/<sha256>.onnx``; returns that
    path. Sent only when absent (content-addressed: the name is the content hash).

    Raises:
        TransportError: connection problems. DiskFullError: the board's work folder has no
        room for it. DeployError: the board refused the file otherwise. OSError: the model
        cannot be read here.
    """
    sha = sha256 or cached_sha256(model)
    name = sha + _suffix(model)
    remote = f"{board.workdir}/models/{name}"
    if name not in board.models_present:
        try:
            sent = board.transport.put(Path(model), remote)
        except OSError as exc:
            size = Path(model).stat().st_size
            raise _write_failure(board, f"sending {Path(model).name}", size, exc) from None
        board.model_bytes_sent += sent
        board.models_sent += 1
        board.models_present.add(name)
    return remote


def ensure_inputs(board, local: Path) -> str:
    """A cell's input set (``.npz``, e.g. the fidelity inputs) on the board as
    ``inputs/<sha256>.npz``, sent once. Raises as :func:`ensure_model`."""
    sha = cached_sha256(local)
    remote = f"{board.workdir}/inputs/{sha}.npz"
    if remote not in board.files_present:
        _put(board, Path(local), remote)
        board.files_present.add(remote)
    return remote


def ensure_dataset(board, local: Path) -> str:
    """A dataset folder (``inputs.npy``, ``labels.npy``) on the board as ``datasets/<sha256>/``
    (the sha256 over both files' hashes), sent once; returns the board folder. Raises as
    :func:`ensure_model`."""
    files = [Path(local) / "inputs.npy", Path(local) / "labels.npy"]
    sha = hashlib.sha256("".join(cached_sha256(f) for f in files).encode()).hexdigest()
    remote = f"{board.workdir}/datasets/{sha}"
    if remote in board.files_present:
        return remote
    done = sh(remote + "/.complete")
    res = board.transport.run(f"mkdir -p {sh(remote)} && test -f {done} && echo present; exit 0",
                              timeout=60, retry=True)
    if "present" not in res.stdout:
        for f in files:
            _put(board, f, f"{remote}/{f.name}")
        board.transport.run(f"touch {done}", timeout=60, retry=True)
    board.files_present.add(remote)
    return remote


def _put(board, local: Path, remote: str) -> None:
    try:
        board.transport.put(local, remote)
    except OSError as exc:
        raise _write_failure(board, f"sending {local.name}", local.stat().st_size, exc) from None


def free_kib(board, path: str) -> int | None:
    """Free space (KiB, for the board's user) of the file system holding ``path``
    (``df -P -k``), or None when it cannot be read."""
    res = board.transport.run(f"df -P -k {sh(path)} | awk 'NR==2 {{print $4}}'", timeout=30)
    text = res.stdout.strip()
    return int(text) if res.ok and text.isdigit() else None


def _write_failure(board, what: str, size: int, exc: OSError):
    """The error for a write the board refused: :class:`DiskFullError` when the work folder
    has no room for ``size`` bytes (checked with ``df``), else :class:`DeployError`."""
    free = free_kib(board, board.workdir)
    if exc.errno == errno.ENOSPC or (free is not None and free * 1024 < size + 65536):
        shown = "unknown" if free is None else f"{free} KiB"
        return DiskFullError(f"{board.name}: no space left in {board.workdir} while {what} "
                             f"({size} B needed, {shown} free): {exc}", where="board",
                             hint=f"free space on {board.name} (old models: {board.workdir}/models), "
                                  "then resume with the same command")
    return DeployError(f"{board.name}: the board refused {what}: {exc}")


def ensure_image(board) -> str:
    """Container mode: make sure ``image`` is on the board (already there, loaded from
    ``image_archive``, or pulled). Returns what was done.

    Raises:
        DeployError: the engine is missing or the image cannot be loaded or pulled.
        TransportError: connection problems.
    """
    engine = words(board.device.engine or "docker")
    image = board.device.image
    res = board.transport.run(f"{sh(*engine, 'image', 'inspect', image)} >/dev/null", timeout=120,
                              retry=True)
    if res.ok:
        return "present"
    if res.exit_code == 127:
        raise DeployError(f"{board.name}: container engine {engine[0]!r} not found on the board",
                          hint="install docker or podman (`host provision`), or set `engine`")
    archive = board.device.image_archive
    if archive:
        local = Path(archive).expanduser()
        if not local.is_file():
            raise DeployError(f"{board.name}: image_archive {local} does not exist on this host",
                              hint="write it with `docker save` / `podman save`")
        remote = f"{board.workdir}/{cached_sha256(local)}.image.tar"
        board.transport.put(local, remote)
        res = board.transport.run(f"{sh(*engine, 'load', '-i', remote)}; rc=$?; rm -f {sh(remote)}; "
                                  "exit $rc", timeout=1800)
        if not res.ok:
            raise DeployError(f"{board.name}: loading {local.name} failed: {tail(res.stderr, 300)}")
        return f"loaded from {local.name}"
    res = board.transport.run(sh(*engine, "pull", image), timeout=3600)
    if not res.ok:
        raise DeployError(f"{board.name}: pulling {image} failed: {tail(res.stderr, 300).strip()}",
                          hint="set image_archive for boards without registry access")
    return "pulled"


def deploy(board, models: list | None = None) -> StepReport:
    """Work folder, runners, image (container mode), runtime import check, and
    optionally pre-staged models. Never raises: the report says what failed."""
    report = StepReport(board.name)
    before = board.transport.stats.bytes_sent
    try:
        prepare(board)
        report.steps.append(("workdir", board.workdir))
        report.steps.append(("runners", f"{board.runners_hash} "
                             + ("sent" if board.runners_shipped else "already there")))
        if board.container:
            report.steps.append(("image", f"{board.device.image}: {ensure_image(board)}"))
        ok, detail = board.runtime_check()
        report.steps.append(("runtime", detail))
        if not ok:
            raise DeployError(f"{board.name}: runtime not usable: {detail}")
        sent = 0
        for model in models or []:
            sha = cached_sha256(model)
            if sha + _suffix(model) not in board.models_present:
                sent += 1
            ensure_model(board, model, sha)
        if models:
            report.steps.append(("models", f"{sent} sent, {len(models) - sent} already there"))
    except (TransportError, DeployError) as exc:
        report.ok = False
        report.error = str(exc)
        report.category = getattr(exc, "category", "deploy")
    report.bytes_sent = board.transport.stats.bytes_sent - before
    return report
