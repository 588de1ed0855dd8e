"""The campaign loop: discover models, plan the matrix (device × model × configuration),
run each cell in a fresh runner process on its board, merge host-side facts (model
metrics, ``.info`` sidecar) and store the cells.

One code path for every device (``local`` included); boards run in parallel, cells on
one board strictly one after another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import platform
import random
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import host
from host.campaign.cells import combine, process_record, session_medians, take_latencies
from host.campaign.fidelity import CellFidelity
from host.campaign.protocol import Progress, Protocol
from host.campaign.samples import SUFFIX as SAMPLES_SUFFIX
from host.campaign.samples import write_samples
from host.campaign.store import (
    CAMPAIGN_FILE,
    STEM_BYTES,
    cell_path,
    earlier_cells,
    parse_cell,
    safe_name,
    write_cell,
)
from host.errors import (
    CampaignBusyError,
    CampaignFileError,
    CampaignInterrupted,
    CampaignMismatchError,
    DiskFullError,
    DuplicateModelStemError,
    HostError,
    InputNotFoundError,
    ModelFormatError,
    NameCollisionError,
    NoModelsError,
    PowerModeChanged,
    ResultsLocationError,
)
from host.lab.lease import campaign_tag, describe, owner_info
from host.lab.runner import RESULT_EXIT_CODES, BenchConfig, RunnerOutcome
from host.models import ONNX_SUFFIX, is_onnx
from host.models.metrics import metrics_or_error
from host.power.session import failed_block
from runners import SCHEMA_VERSION
from runners import errors as runner_errors
from runners.errors import EXIT_NO_RESULT
from runners.fileio import write_json_atomic
from runners.manifest import git_revision
from runners.util import utc_now


def model_suffixes() -> set:
    """The model files ``host bench`` takes: those some backend loads (its descriptor's
    ``model_suffixes``); cells whose device cannot load the file are not planned."""
    from runners.backends import descriptors

    return {s for d in descriptors().values() for s in d.model_suffixes}


def _suffixes(backend: str) -> tuple:
    """The model files ``backend`` loads (``.onnx`` for one this version does not know)."""
    from runners.backends import descriptors

    desc = descriptors().get(backend)
    return desc.model_suffixes if desc is not None else (ONNX_SUFFIX,)


def runs_format(backend: str, model: Path) -> bool:
    """Whether ``backend``'s runner can load ``model``'s file format."""
    return Path(model).suffix.lower() in _suffixes(backend)


def discover_models(paths: Iterable[Path]) -> list[Path]:
    """Expand files and folders into a sorted list of models (recursive): ``.onnx`` files, and
    ``.xmodel`` files (compiled for a Vitis AI DPU: only ``vart`` devices run them).

    Raises:
        InputNotFoundError: a path does not exist.
        ModelFormatError: a file given explicitly is neither ``.onnx`` nor ``.xmodel``.
        NoModelsError: nothing was found.
        DuplicateModelStemError: two models share a file stem (their cells would collide).
    """
    found: list[Path] = []
    suffixes = model_suffixes()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputNotFoundError(f"{path} does not exist",
                                     hint="pass .onnx files or folders that hold them")
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*")
                                if p.is_file() and p.suffix.lower() in suffixes))
        elif path.suffix.lower() not in suffixes:
            raise ModelFormatError(path, "not a model (expected a .onnx file, or .xmodel for a DPU)",
                                   hint="pass .onnx files or folders that hold them")
        else:
            found.append(path)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        shown = ", ".join(str(p) for p in paths)
        raise NoModelsError(f"no .onnx models under {shown}",
                            hint="export the examples with `host zoo export`")
    stems: dict[str, Path] = {}
    for p in unique:
        key = safe_name(p.stem, STEM_BYTES)  # the stem's part of its cells' file names
        if key in stems:
            raise DuplicateModelStemError(
                f"two models would share the cell name {key!r}: {stems[key]} and {p}",
                hint="rename one, or bench them in separate campaigns",
            )
        stems[key] = p
    return unique


def read_info(model: Path) -> tuple[object, str | None]:
    """The ``<stem>.info`` JSON next to ``model``: (content or None, error or None)."""
    info = model.with_suffix(".info")
    if not info.exists():
        return None, None
    try:
        return json.loads(info.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as exc:
        return None, f"{info}: not valid JSON ({exc})"


def host_manifest() -> dict:
    """The host tool's version and revision, and where it ran."""
    return {
        "name": "edgegauge-host",
        "version": host.__version__,
        "git_revision": git_revision(str(Path(host.__file__).resolve().parent)),
        "hostname": platform.node(),
        "python": platform.python_version(),
    }


#: Categories where the board never ran the model: a plain resume runs these cells again.
#: (``disk_full`` too: a full disk says nothing about the model; free space and resume.)
NOT_RUN = ("unreachable", "host_key", "setup", "power_mode", "busy", "disk_full")


def runner_error_category(error: dict) -> str:
    """Category of the ``error`` record in a runner's result: the ``category`` the runner wrote
    (its error class's, inherited by subclasses: ``EngineBuildError`` is ``invalid_model``).

    Fallback, only for a result without one — written by an older runner still on a board
    (a runner that crashed before writing leaves no result: :func:`classify_failure`): the
    ``category`` of the :mod:`runners.errors` class named by ``type``, ``out_of_memory`` for
    ``OutOfMemory``, else ``runtime_error``. Raises nothing.
    """
    category = error.get("category")
    if isinstance(category, str) and category:
        return category
    kind = getattr(runner_errors, str(error.get("type")), None)
    if isinstance(kind, type) and issubclass(kind, runner_errors.RunnerError):
        return kind.category
    if error.get("type") == runner_errors.OUT_OF_MEMORY[0]:
        return runner_errors.OUT_OF_MEMORY[1]
    return runner_errors.RunnerError.category


_NO_SPACE = "No space left on device"  # strerror(ENOSPC) on Linux


def classify_failure(outcome: RunnerOutcome) -> dict:
    """Error record (``type``, ``category``, ``message``) for a runner that left no usable
    result: timeout; killed by SIGKILL — ``out_of_memory`` only with evidence (the board's
    OOM-kill counter rose during the cell: ``extra["oom_kills_during"]``), else ``killed``;
    another signal; ``disk_full`` when the board ran out of space (ENOSPC in the runner's
    stderr); container engine errors (125–127); other exit codes."""
    if outcome.timed_out:
        return {"type": "Timeout", "category": "timeout",
                "message": f"runner exceeded the cell timeout after {outcome.wall_s:.1f} s and was killed"}
    if outcome.signal:
        oom = (outcome.extra or {}).get("oom_kills_during")
        if outcome.signal == "SIGKILL" and oom:
            return {"type": "OutOfMemory", "category": "out_of_memory", "signal": outcome.signal,
                    "oom_kills_during": oom,
                    "message": f"runner killed by SIGKILL while the kernel's OOM-kill counter rose by {oom} "
                               "(/proc/vmstat oom_kill)"}
        if outcome.signal == "SIGKILL":
            evidence = "did not rise" if oom == 0 else "could not be read"
            return {"type": "Killed", "category": "killed", "signal": outcome.signal,
                    "message": f"runner killed by SIGKILL; the kernel's OOM-kill counter {evidence}, "
                               "so it is not called out of memory"}
        return {"type": "RunnerCrash", "category": "runner_crash", "signal": outcome.signal,
                "message": f"runner killed by {outcome.signal}"}
    last = outcome.stderr_tail.strip().splitlines()[-1:] or [""]
    code = outcome.exit_code
    if _NO_SPACE in outcome.stderr_tail or "(ENOSPC)" in outcome.stderr_tail:
        kind, category = "DiskFull", "disk_full"
    elif code == EXIT_NO_RESULT:
        kind, category = "ResultWriteError", "runner_crash"
    elif "MemoryError" in outcome.stderr_tail:
        kind, category = "OutOfMemory", "out_of_memory"
    elif code in (125, 126, 127):
        kind, category = "ContainerError" if code == 125 else "RunnerNotFound", "setup"
    else:
        kind, category = "RunnerCrash", "runner_crash"
    return {
        "type": kind,
        "category": category,
        "message": f"runner exited with code {code}"
        + (f": {last[0]}" if last[0] else "")
        + (f"; {outcome.result_error}" if outcome.result_error else ""),
        "exit_code": code,
    }


def transport_failure(exc: Exception) -> dict:
    """Error record for a cell whose board could not be used (never ran the model)."""
    category = getattr(exc, "category", "setup")
    kind = {"unreachable": "Unreachable", "host_key": "HostKeyRejected", "busy": "BoardBusy",
            "disk_full": "DiskFull"}.get(category, "SetupError")
    return {"type": kind, "category": category, "message": str(exc)}


def build_cell(
    outcome: RunnerOutcome | None,
    *,
    model: Path,
    config: BenchConfig,
    device: str,
    campaign: str,
    metrics: dict,
    info,
    info_error: str | None,
    error: dict | None = None,
    board: dict | None = None,
) -> dict:
    """Merge the runner's result with host-side facts into the stored cell document.

    ``outcome`` None means the runner never ran; ``error`` then says why.
    """
    usable = outcome is not None and outcome.result is not None and outcome.exit_code in RESULT_EXIT_CODES
    if usable:
        doc = dict(outcome.result)
        if doc.get("status") == "failed" and isinstance(doc.get("error"), dict):
            doc["error"]["category"] = runner_error_category(doc["error"])
    else:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "status": "failed",
            "error": error if outcome is None else classify_failure(outcome),
            "model": {"path": None},
            "runtime": {"name": config.backend},
        }
    doc["cell"] = {
        "campaign": campaign,
        "device": device,
        "model_stem": model.stem,
        "config": config.slug,
    }
    doc["metrics"] = metrics
    if isinstance(doc.get("model"), dict):
        doc["model"]["host_path"] = str(model)
        doc["model"]["precision"] = metrics.get("precision")  # None when unreadable
    doc["info"] = info
    if info_error:
        doc.setdefault("warnings", []).append(info_error)
    doc["host"] = {"tool": host_manifest(), "config": config.to_json(), "board": board,
                   "runner_process": outcome.to_json() if outcome is not None else None}
    return doc


@dataclass
class CellEvent:
    """Progress report (for the CLI's live display): a board's state or one cell's.

    ``state``: "connecting", "running", "done", "skipped", "board_down", "finished".
    """

    device: str
    index: int
    total: int
    model: Path | None
    state: str
    doc: dict | None = None
    path: Path | None = None
    message: str | None = None


@dataclass
class BoardSummary:
    """What one campaign run did on one board."""

    device: str
    planned: int = 0
    run: int = 0
    skipped: int = 0
    bytes_sent: int = 0  # everything: runners, models
    files_sent: int = 0
    models_sent: int = 0
    model_bytes_sent: int = 0
    error: str | None = None
    notes: list = field(default_factory=list)
    order: list = field(default_factory=list)  # [[round, model stem], ...] as run
    leftovers: list = field(default_factory=list)  # runner sessions of earlier runs killed here


@dataclass
class CampaignResult:
    """Cells (device order, then model order) and per-board summaries."""

    name: str
    folder: Path
    cells: list
    boards: dict
    interrupted: bool = False


def store_cell(path: Path, doc: dict) -> None:
    """Write a cell. A previous (failed) document at ``path`` is moved to
    ``.attempts/<name>.<n>.json`` first, so no attempt is ever lost."""
    if path.exists():
        attempts = path.parent / ".attempts"
        attempts.mkdir(exist_ok=True)
        n = 1 + sum(1 for _ in attempts.glob(path.stem + ".*.json"))
        os.replace(path, attempts / f"{path.stem}.{n}.json")
    write_cell(path, doc)


def _add_precision(doc: dict, variant: "_Variant", fidelity: dict | None, at_precision: dict) -> None:
    """The cell's precision (name, the variant's recipe, its static metrics at that precision:
    weight bytes by dtype, bits per weight, footprint, QDQ share) and fidelity blocks. The
    cell's ``metrics`` (params, FLOPs, CDL) stay those of the source model."""
    doc["precision"] = {"name": variant.precision, "recipe": variant.recipe, "metrics": at_precision}
    if fidelity is not None:
        doc["fidelity"] = fidelity
        low = [w for w in fidelity.get("warnings") or [] if w.startswith("fidelity_low")]
        if low and isinstance(doc.get("verdict"), dict):
            doc["verdict"].setdefault("warnings", []).extend(low)


def device_config(config: BenchConfig, device, backend: str | None) -> BenchConfig:
    """The configuration for one device: ``backend`` if given, else the device's runtime
    (an inventory ``runtime`` is a backend name)."""
    return dataclasses.replace(config, backend=backend or device.runtime)


def unsupported_backends(devices, config: BenchConfig, backend: str | None) -> list[str]:
    """Devices whose runner backend is not implemented in this version (e.g. tensorrt: its
    descriptor in ``runners.backends`` says ``implemented=False``)."""
    from runners.backends import implemented_names

    return [f"{d.name} (runtime {d.runtime})" for d in devices
            if device_config(config, d, backend).backend not in implemented_names()]


_STR = {"type": "string"}
_STR_OR_NULL = {"type": ["string", "null"]}
#: The fields of ``campaign.json`` a run reads, with their types (others are kept as they are).
CAMPAIGN_SCHEMA = {
    "type": "object",
    "properties": {
        "campaign": _STR,
        "created_utc": _STR_OR_NULL,
        "plan": {"type": "array", "items": {
            "type": "object", "required": ["device", "model", "config"],
            "properties": {"device": _STR, "model": _STR, "config": _STR, "model_sha256": _STR}}},
        "devices": {"type": "object", "additionalProperties": {"type": "object"}},
        "configs": {"type": "object"},
        "runs": {"type": "array", "items": {"type": "object"}},
    },
}
_CAMPAIGN_HINT = ("nothing was changed. Restore {path} from a copy (it holds the run log, the planned "
                  "models' sha256 and the power-mode record), or move it aside and bench in a new campaign "
                  "(--campaign NEW)")


def read_campaign_file(path: Path) -> dict:
    """The campaign manifest at ``path`` ({} when there is none), checked against
    :data:`CAMPAIGN_SCHEMA` (jsonschema).

    Raises:
        CampaignFileError: it cannot be read, is not JSON, or a field has the wrong type.
    """
    import jsonschema

    if not path.exists() and not path.is_symlink():
        return {}
    hint = _CAMPAIGN_HINT.format(path=path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CampaignFileError(f"{path}: not a readable campaign file ({exc})", path=path,
                                hint=hint) from None
    err = min(jsonschema.Draft202012Validator(CAMPAIGN_SCHEMA).iter_errors(doc),
              key=lambda e: len(e.absolute_path), default=None)
    if err is None:
        return doc
    field = "/".join(map(str, err.absolute_path))
    what = err.message if len(err.message) < 160 else err.message[:160] + "…"
    raise CampaignFileError(f"{path}: {field or 'the document'}: {what}", path=path, field=field, hint=hint)


_LOCATION_HINT = "pass a writable folder with --results (default ./results), or free the path named"


def refuse_files_as_folders(folders: list) -> None:
    """Raises ResultsLocationError when a file (not a folder) stands at one of ``folders``."""
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise ResultsLocationError(f"{folder} is a file, not a folder: no results can be stored there",
                                       path=folder, hint=_LOCATION_HINT)


def prepare_folders(results: Path, camp_dir: Path, device_dirs: list) -> None:
    """Make the results, campaign and device folders and check each new file can be made in the
    campaign and device folders (a ``.tmp-*`` probe made and removed), before anything is measured.

    Raises:
        ResultsLocationError: a file stands where a folder belongs, or a folder cannot be made or
            written (read-only file system, no permission, full).
    """
    refuse_files_as_folders([results, camp_dir, *device_dirs])
    for folder in (results, camp_dir, *device_dirs):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsLocationError(f"cannot make the results folder {folder}: {exc.strerror or exc}",
                                       path=folder, hint=_LOCATION_HINT) from None
    for folder in (camp_dir, *device_dirs):
        try:
            fd, probe = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ResultsLocationError(f"cannot write in the results folder {folder}: {exc.strerror or exc}",
                                       path=folder, hint=_LOCATION_HINT) from None


#: The longest name made from a cell's file name: ``<cell>.json.corrupt-<UTC time>-<n>``.
_LONGEST_EXTRA = len(".corrupt-20261207T000000Z-99")


def check_cell_path(path: Path) -> None:
    """Check that ``path`` and every name made from it (sidecars, a moved-aside copy) fit the limits
    of the file system holding its folder (NAME_MAX, PATH_MAX).

    Raises:
        ResultsLocationError: a name or the path would be too long.
    """
    limits = {}
    for key, default in (("PC_NAME_MAX", 255), ("PC_PATH_MAX", 4096)):
        try:
            limits[key] = os.pathconf(path.parent, key)
        except (OSError, ValueError):
            limits[key] = default
    name = len(os.fsencode(path.name)) + _LONGEST_EXTRA
    full = len(os.fsencode(str(path.absolute()))) + _LONGEST_EXTRA
    if name > limits["PC_NAME_MAX"] or full >= limits["PC_PATH_MAX"]:
        raise ResultsLocationError(
            f"{path}: too long for its file system ({name} bytes of file name of at most "
            f"{limits['PC_NAME_MAX']}, {full} bytes of path of fewer than {limits['PC_PATH_MAX']})",
            path=path, hint="pass a shorter --results folder or --campaign name")


def stored_cell(path: Path) -> tuple:
    """The cell stored at ``path``: (document, None); (None, None) when there is none; (None, why)
    when it is not valid JSON or fails the cell schema (:func:`host.campaign.schema.validate_cell`).

    Raises:
        ResultsLocationError: it exists but cannot be read (no permission, not a file).
    """
    from host.errors import CellSchemaError

    if not path.exists() and not path.is_symlink():
        return None, None
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ResultsLocationError(f"cannot read the stored cell {path}: {exc.strerror or exc}", path=path,
                                   hint="make it readable, or move it aside to measure it again") from None
    try:
        return parse_cell(raw, path), None
    except CellSchemaError as exc:
        return None, str(exc)


def _cell_files(path: Path) -> list:
    """A cell's file and its sidecars that exist (samples, power samples, layer profile)."""
    base = str(path)[: -len(".json")]
    found = [Path(base + s) for s in (SAMPLES_SUFFIX, ".power.csv", ".profile.json")]
    return [path, *(p for p in found if p.exists() or p.is_symlink())]


def move_aside(path: Path, stamp: str) -> Path:
    """Rename ``path`` to ``<name>.corrupt-<stamp>`` (``-2``, ``-3``… when taken); never deletes.
    Returns the new path. Raises OSError."""
    target, n = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while target.exists() or target.is_symlink():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.rename(path, target)
    return target


def _move_aside_unusable(work: dict, camp_dir: Path) -> list:
    """Move every stored cell that failed to load (``_Item.problem``), and its sidecars, aside
    (:func:`move_aside`); each becomes a note of its board. Returns the log entries
    ``[{"file", "moved_to", "problem"}]`` (paths relative to the campaign folder).

    Raises:
        ResultsLocationError: a file could not be moved.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log = []
    for w in work.values():
        for item in (i for i in w.items if i.problem):
            for path in _cell_files(item.path):
                try:
                    target = move_aside(path, stamp)
                except OSError as exc:
                    raise ResultsLocationError(f"cannot move the unusable cell {path} aside: "
                                               f"{exc.strerror or exc}", path=path,
                                               hint=_LOCATION_HINT) from None
                log.append({"file": str(path.relative_to(camp_dir)), "moved_to": target.name,
                            "problem": item.problem})
                w.notes.append(f"{path.name} moved aside to {target.name}"
                               + (f" ({item.problem}); measuring it again" if path == item.path else ""))
    return log


class _Plan:
    """The campaign manifest ``campaign.json``: the planned matrix (device × model ×
    configuration, with each model's sha256), the devices' settings and a log of runs."""

    def __init__(self, folder: Path, name: str):
        self.path = folder / CAMPAIGN_FILE
        old = read_campaign_file(self.path)
        self.doc = {
            "schema_version": SCHEMA_VERSION,
            "campaign": name,
            "created_utc": old.get("created_utc") or utc_now(),
            "host": host_manifest(),
            "plan": old.get("plan") if isinstance(old.get("plan"), list) else [],
            "devices": old.get("devices") if isinstance(old.get("devices"), dict) else {},
            "configs": old.get("configs") if isinstance(old.get("configs"), dict) else {},
            "runs": old.get("runs") if isinstance(old.get("runs"), list) else [],
        }
        self._index = {(e["device"], e["model"], e["config"]): e for e in self.doc["plan"]}
        self.unplanned: list = []  # [device, model file, backend]: a format the backend cannot load

    def add(self, device, model: Path, sha: str, config: BenchConfig, variant_sha: str | None = None) -> None:
        key = (device.name, model.stem, config.slug)
        entry = self._index.get(key)
        if entry is not None:
            if entry.get("model_sha256") != sha:
                raise CampaignMismatchError(
                    f"campaign {self.doc['campaign']!r}: model {model.stem!r} has changed since it was "
                    f"planned (sha256 {entry.get('model_sha256', '?')[:12]}… then, {sha[:12]}… now)",
                    hint="bench the new model in a new campaign (omit --campaign)",
                )
            return
        entry = {"device": device.name, "model": model.stem, "model_sha256": sha,
                 "model_path": str(model), "config": config.slug, "precision": config.precision}
        if variant_sha:
            entry["variant_sha256"] = variant_sha
        self.doc["plan"].append(entry)
        self._index[key] = entry
        self.doc["devices"].setdefault(device.name, {}).update(
            {k: v for k, v in device.to_json().items() if k != "vars"})
        self.doc["configs"][config.slug] = config.to_json()

    def check_power_mode(self, device: str, state: dict) -> None:
        """Record the first power state a board was measured in; later runs must match.

        Raises:
            PowerModeChanged: both the recorded and the current ``mode_key`` are known and
                they differ.
        """
        entry = self.doc["devices"].setdefault(device, {})
        key = state.get("mode_key")
        if "power_mode_key" not in entry or entry["power_mode_key"] is None:
            entry["power_mode_key"] = key
            entry["power_state"] = state
            return
        if key is not None and key != entry["power_mode_key"]:
            raise PowerModeChanged(
                f"{device}: power mode is now {key!r}; this campaign measured it in "
                f"{entry['power_mode_key']!r}, so its cells are not run",
                hint=f"restore the mode (`host power-mode tune --device {device} --mode ...`) and resume, "
                     "or bench in a new campaign (omit --campaign)")

    def save(self) -> None:
        write_json_atomic(self.doc, str(self.path))


# long: the public entry point; most of it is the docstring of its options
def run_campaign(
    models: list[Path],
    devices: list,
    config: BenchConfig,
    *,
    results: Path,
    campaign: str,
    backend: str | None = None,
    retry_failed: bool = False,
    open_board: Callable | None = None,
    on_event: Callable[[CellEvent], None] | None = None,
    power: Callable | None = None,
    protocol: Protocol | None = None,
    memory: str = "rss",
    break_lock: bool = False,
    precisions: tuple = ("fp32",),
    dataset: Path | None = None,
    batches: tuple | None = None,
    profile: bool = False,
) -> CampaignResult:
    """Run every model on every device; boards in parallel, runner processes on one board
    one after another, each cell by fresh processes (:mod:`host.campaign.protocol`)
    interleaved round by round in a seeded shuffle (logged in ``campaign.json``) until its
    interval meets ``protocol.target_ci`` or its budget is spent; then combined
    (:func:`host.campaign.cells.combine`) and stored with its samples sidecar.

    Resume: a cell whose file exists is skipped, except failed cells whose board never
    ran the model (``error.category`` in :data:`NOT_RUN`) and, with ``retry_failed``,
    every failed cell; a replaced failed cell is kept under ``.attempts/``. Cells are
    written atomically; Ctrl-C kills the runners in flight and keeps every finished cell.

    Args:
        devices: inventory devices (:class:`host.lab.inventory.Device`).
        backend: runner backend for every device; None = each device's ``runtime``.
        open_board: ``device -> Board`` (default: :func:`host.lab.board.open_transport`
            with default SSH options).
        power: ``(device, board, folder) -> PowerSession | None`` — power measurement
            for devices with a meter (:mod:`host.power.session`): idle per device, a
            ``power`` block and ``<cell>.power.csv`` per cell, measured during the cell's
            first process and aligned to its first timed loop.
        protocol: the repetition protocol (default :class:`Protocol()`).
        memory: ``rss`` (every runner's own figures only), or ``massif`` / ``memray``: one
            extra process per cell under that heap profiler (:mod:`host.lab.memprofile`),
            its peak in the cell's ``memory_profile``.
        break_lock: take a board whose lock another live run holds (its holder is killed;
            logged in ``campaign.json``). Without it such a board is down (``busy``).
        precisions: the precision axis: ``"fp32"`` (the model as given) and
            :class:`host.models.precision.Recipe` objects; the host makes each variant
            (cached) and the cell records its recipe.
        profile: one more untimed process per cell with the runtime's per-layer profiler
            (:mod:`host.lab.layerprofile`): the top layers in the cell's ``profile``, every
            layer in ``<cell>.profile.json``.
        batches: the batch axis (a sweep, e.g. ``(1, 8, 32)``): one cell per batch size
            (default: ``config.batch``); throughput is in samples/s.
        dataset: ``inputs.npy`` + ``labels.npy`` folder: accuracy on the board for every model
            (else each model's own, named by its ``.info``); its first samples are the fidelity
            inputs.

    Every cell's first process also returns its outputs for a fixed input set, compared with
    the fp32 source model under ONNX Runtime on the host (:mod:`host.campaign.fidelity`).

    Each board is locked while the campaign uses it, and every runner process first kills the
    leftovers of earlier runs on its board (:mod:`host.lab.lease`); both are logged.

    Raises:
        CampaignMismatchError: a planned model's content changed.
        NameCollisionError: two names would share a folder (:func:`_refuse_collisions`).
        CampaignInterrupted: Ctrl-C (after the folder was left consistent).
        CampaignBusyError: another process is running this campaign.
        DiskFullError: this host's disk filled up (every board stops; finished cells kept).
        CampaignFileError: ``campaign.json`` is unreadable or malformed (nothing is changed).
        ResultsLocationError: a results, campaign or device folder or a cell's file cannot be
            written (checked before any cell is measured).
    """
    from host.lab.board import Board, open_transport

    if open_board is None:
        def open_board(device):
            return Board(device, open_transport(device))
    camp_dir = Path(results) / safe_name(campaign)
    held = read_campaign_file(camp_dir / CAMPAIGN_FILE).get("campaign")
    _refuse_collisions(camp_dir, campaign, devices, held)
    device_dirs = [camp_dir / safe_name(d.name) for d in devices]
    refuse_files_as_folders([Path(results), camp_dir, *device_dirs])
    prepare_folders(Path(results), camp_dir, [])
    with _campaign_lock(camp_dir, campaign):  # a refused second run writes nothing
        prepare_folders(Path(results), camp_dir, device_dirs)
        return _run_locked(camp_dir, models, devices, config, campaign=campaign, backend=backend,
                           retry_failed=retry_failed, open_board=open_board, on_event=on_event,
                           power=power, protocol=protocol or Protocol(), memory=memory,
                           break_lock=break_lock, results=results, precisions=precisions, dataset=dataset,
                           batches=tuple(batches or (config.batch,)), profile=profile)


@contextlib.contextmanager
def _campaign_lock(camp_dir: Path, campaign: str):
    """Hold ``<campaign>/.lock`` (``flock``) while a run writes the campaign: a second run of
    the same campaign on this host is refused instead of writing duplicates.

    Raises:
        CampaignBusyError: another process holds it (its pid in the message).
    """
    fd = os.open(camp_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            raise CampaignBusyError(
                f"campaign {campaign!r} is being run by another process (pid {holder}) in {camp_dir}",
                hint="wait for it to end, or bench in another campaign (omit --campaign)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _remove_partials(camp_dir: Path) -> list:
    """Remove the temp files (``.tmp-*``, :func:`runners.fileio.write_atomic`) a killed run left in
    the campaign folder: only whole files ever become cells. Returns their names."""
    found = sorted(camp_dir.rglob(".tmp-*"))
    for path in found:
        path.unlink(missing_ok=True)
    return [str(p.relative_to(camp_dir)) for p in found]


def _run_locked(camp_dir: Path, models: list, devices: list, config: BenchConfig, *, campaign: str,
                backend, retry_failed: bool, open_board, on_event, power, protocol: Protocol, memory: str,
                break_lock: bool, results: Path, precisions: tuple, dataset: Path | None,
                batches: tuple, profile: bool) -> CampaignResult:
    """:func:`run_campaign` once the campaign folder is locked."""
    from host.lab.deploy import cached_sha256

    partials = _remove_partials(camp_dir)
    plan = _Plan(camp_dir, campaign)
    variants = make_variants(models, precisions)
    shas = {m: cached_sha256(m) for v in variants for m in (v.model, v.run_model)}
    work = _plan_work(plan, variants, devices, config, backend=backend, results=results, campaign=campaign,
                      shas=shas, retry_failed=retry_failed, batches=batches)
    _refuse_if_nothing_runs(work)
    moved = _move_aside_unusable(work, camp_dir)
    run_log = _log_run(plan, devices, models, config, retry_failed=retry_failed, protocol=protocol,
                       memory=memory)
    run_log["moved_aside"] = moved
    run_log["partials_removed"] = partials
    run_log["precisions"] = sorted({v.precision for v in variants})
    run_log["unplanned"] = plan.unplanned  # e.g. .onnx on a vart board, .xmodel on an ort one

    shared = _Shared(plan=plan, campaign=campaign, folder=camp_dir, shas=shas, open_board=open_board,
                     power=power, protocol=protocol, memory=memory, notify=on_event or (lambda event: None),
                     break_lock=break_lock, fidelity=CellFidelity(dataset), profile=profile)
    workers = [_BoardWorker(shared, w) for w in work.values()]
    interrupted = _run_workers(workers, shared)
    summaries = {w.name: w.summary for w in workers}
    run_log["end_utc"] = utc_now()
    run_log["interrupted"] = interrupted
    run_log.update(cells_run={n: s.run for n, s in summaries.items()},
                   order={n: s.order for n, s in summaries.items()},
                   locks=shared.locks, leftovers_killed={n: s.leftovers for n, s in summaries.items()},
                   fidelity_notes=shared.fidelity.notes)
    if shared.fatal is not None:
        with contextlib.suppress(OSError):  # the disk may still be full
            plan.save()
        raise shared.fatal
    plan.save()
    if interrupted:
        raise CampaignInterrupted(
            f"interrupted: campaign {campaign!r} keeps its finished cells",
            hint=f"resume with the same command and --campaign {campaign}")
    cells = [shared.docs[(w.name, i)] for w in workers
             for i in range(1, len(w.items) + 1) if (w.name, i) in shared.docs]
    return CampaignResult(campaign, camp_dir, cells, summaries)


def _refuse_if_nothing_runs(work: dict) -> None:
    """Raises NoModelsError when no device can run any of the models (file formats: a ``vart``
    board runs compiled ``.xmodel`` files, the others ``.onnx``)."""
    if any(w.items for w in work.values()):
        return
    wants = sorted({f"{name} (runtime {w.config.backend}) runs "
                    + "/".join(_suffixes(w.config.backend))
                    for name, w in work.items()})
    raise NoModelsError("no model given that the chosen devices can run: " + "; ".join(wants),
                        hint="for a ZCU104, compile first: `host zoo compile --target zcu104 MODEL`, "
                             "then bench the .xmodel")


def _refuse_collisions(camp_dir: Path, campaign: str, devices: list, held: str | None) -> None:
    """Refuse names that :func:`safe_name` would merge: two devices with one folder, or a
    campaign whose folder holds another campaign ``held`` (``a b`` and ``a_b``).

    Raises:
        NameCollisionError: with both names.
    """
    seen: dict = {}
    for device in devices:
        other = seen.setdefault(safe_name(device.name), device.name)
        if other != device.name:
            raise NameCollisionError(
                f"devices {other!r} and {device.name!r} would share the results folder {safe_name(other)!r}",
                hint="rename one of them in the inventory")
    if held is not None and held != campaign:
        raise NameCollisionError(
            f"campaign {campaign!r} would write into {camp_dir}, which holds campaign {held!r}",
            hint=f"use --campaign {held!r} to resume that one, or another name")


def _log_run(plan: _Plan, devices: list, models: list, config: BenchConfig, **settings) -> dict:
    """Append this run's entry to ``campaign.json`` (saved now; finished by the caller)."""
    run_log = {"start_utc": utc_now(), "devices": [d.name for d in devices], "models": len(models),
               "config": config.slug, "retry_failed": settings["retry_failed"],
               "protocol": settings["protocol"].to_json(), "memory": settings["memory"],
               "end_utc": None, "interrupted": None, "order": None}
    plan.doc["runs"].append(run_log)
    plan.save()
    return run_log


@dataclass
class _Variant:
    """A model at one precision: the source model (the cell's name, the fidelity reference),
    what the runner runs (the source for fp32, else the variant ONNX) and the variant's recipe."""

    model: Path
    precision: str
    run_model: Path
    recipe: dict | None = None


def make_variants(models: list, precisions: tuple) -> list:
    """Every model at every precision, in model order: ``"fp32"`` is the model as given;
    a :class:`host.models.precision.Recipe` gives its variant (made on the host and cached).

    Raises:
        QuantizationError: a variant could not be made.
    """
    out = []
    for model in models:
        for p in precisions:
            if p == "fp32" or getattr(p, "precision", None) == "fp32":
                out.append(_Variant(model, "fp32", model))
                continue
            from host.models.precision import variant

            p = _with_model_calibration(model, p)
            path, recipe = variant(model, p)
            out.append(_Variant(model, p.slug(), path, recipe))
    return out


def _with_model_calibration(model: Path, recipe):
    """A static int8 recipe without calibration data calibrates on the model's own calibration
    inputs when its dataset folder has them (``<dataset>/calibration/``, training images: never
    the evaluation set); else on seeded random data, as the recipe says."""
    from host.campaign.fidelity import model_dataset

    if recipe.precision != "int8" or recipe.method != "static" or recipe.calibration_data:
        return recipe
    folder = model_dataset(model)
    if folder is None or not (folder / "calibration").is_dir():
        return recipe
    return dataclasses.replace(recipe, calibration_data=str(folder / "calibration"))


@dataclass
class _Item:
    """One cell of a board: the model variant, the device's configuration at its precision,
    the cell file and the stored document that makes the cell skipped (None: run it)."""

    variant: _Variant
    cfg: BenchConfig
    path: Path
    old: dict | None
    problem: str | None = None  # why the stored file is unusable (moved aside, measured again)

    @property
    def model(self) -> Path:
        return self.variant.model


@dataclass
class _BoardWork:
    """One board's share of the campaign: its configuration and its cells."""

    device: object
    config: BenchConfig
    items: list  # [_Item]
    notes: list = field(default_factory=list)  # shown with the board's summary


def _plan_work(plan: _Plan, variants: list, devices: list, config: BenchConfig, *,
               backend: str | None, results: Path, campaign: str, shas: dict,
               retry_failed: bool, batches: tuple = (1,)) -> dict:
    """Add every (device, model, configuration × precision × batch) to the plan and decide, per cell,
    whether its stored document stands (resume) or the cell runs: a failed cell runs again
    when its board never ran the model (:data:`NOT_RUN`) or with ``retry_failed``. Returns
    device name -> :class:`_BoardWork`.

    A stored cell that is not valid JSON or fails the cell schema runs again (its ``problem``
    set: :func:`_move_aside_unusable` moves it aside first).

    Raises:
        CampaignMismatchError: a planned model's content changed.
        ResultsLocationError: a cell's file names exceed the file system's limits.
    """
    work: dict = {}
    for device in devices:
        base = device_config(config, device, backend)
        items = []
        for v, batch in ((v, b) for v in variants for b in batches):
            if not runs_format(base.backend, v.run_model):
                plan.unplanned.append([device.name, v.run_model.name, base.backend])
                continue
            cfg = dataclasses.replace(base, precision=v.precision, batch=batch)
            plan.add(device, v.model, shas[v.model], cfg, variant_sha=shas[v.run_model] if v.recipe else None)
            path = cell_path(results, campaign, device.name, v.model.stem, cfg.slug)
            check_cell_path(path)
            old, problem = stored_cell(path)
            rerun = old is not None and old.get("status") == "failed" and (
                retry_failed or (old.get("error") or {}).get("category") in NOT_RUN)
            items.append(_Item(v, cfg, path, old if (old is not None and not rerun) else None, problem))
        work[device.name] = _BoardWork(device, base, items)
    return work


@dataclass
class _Shared:
    """State the board workers of one campaign run share (each field's lock next to it)."""

    plan: _Plan
    campaign: str
    folder: Path  # the campaign folder
    shas: dict  # model -> sha256
    open_board: Callable
    power: Callable | None
    protocol: Protocol
    memory: str
    notify: Callable[[CellEvent], None]
    break_lock: bool = False
    profile: bool = False
    fidelity: CellFidelity = field(default_factory=CellFidelity)
    locks: dict = field(default_factory=dict)  # device name -> LockInfo.to_json()
    fatal: HostError | None = None  # an error that stops every board (host disk full, folder unwritable)
    stop: threading.Event = field(default_factory=threading.Event)  # set on Ctrl-C
    plan_lock: threading.Lock = field(default_factory=threading.Lock)
    boards: dict = field(default_factory=dict)  # device name -> open Board (for abort)
    docs: dict = field(default_factory=dict)  # (device name, index) -> cell document
    metrics_lock: threading.Lock = field(default_factory=threading.Lock)
    metrics_cache: dict = field(default_factory=dict)

    def at_precision(self, model: Path) -> dict:
        """:func:`host.models.precision.precision_metrics` of what the runner ran (cached), or
        ``{"error": ...}``."""
        from host.errors import QuantizationError
        from host.models.precision import precision_metrics

        if not is_onnx(model):
            return {"error": "a compiled model: see its source ONNX"}
        with self.metrics_lock:
            if ("precision", model) not in self.metrics_cache:
                try:
                    value = precision_metrics(model)
                except (QuantizationError, OSError, ValueError) as exc:
                    value = {"error": str(exc)}
                self.metrics_cache[("precision", model)] = value
            return self.metrics_cache[("precision", model)]

    def metrics_for(self, model: Path, cfg: BenchConfig) -> dict:
        key = (model, cfg.batch, cfg.shapes)
        with self.metrics_lock:
            if key not in self.metrics_cache and not is_onnx(model):
                self.metrics_cache[key] = {"error": {
                    "type": "CompiledModel", "message": "a compiled model: its static metrics are its "
                    "source ONNX's (the .info beside it names the source)"}}
            if key not in self.metrics_cache:
                self.metrics_cache[key] = metrics_or_error(model, batch=cfg.batch,
                                                           shapes=cfg.shapes_dict() or None)
            return self.metrics_cache[key]


def _run_workers(workers: list, shared: _Shared) -> bool:
    """Run every board's worker in its own thread until all are done; on Ctrl-C set
    ``shared.stop``, abort every open board (its runner in flight is killed) and wait up
    to 60 s. Returns whether it was interrupted; re-raises a worker's unexpected error
    otherwise."""
    pool = ThreadPoolExecutor(max_workers=max(1, len(workers)), thread_name_prefix="board")
    futures = [pool.submit(w.run) for w in workers]
    interrupted = False
    try:
        while not all(f.done() for f in futures):
            wait(futures, timeout=0.2)
    except KeyboardInterrupt:
        interrupted = True
        shared.stop.set()
        for board in list(shared.boards.values()):
            try:
                board.abort()
            except Exception:  # best effort; the campaign folder stays consistent anyway
                pass
        wait(futures, timeout=60)
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=True)
    for f in futures:
        if f.done() and not f.cancelled() and f.exception() is not None and not interrupted:
            raise f.exception()
    return interrupted


@dataclass
class _Cell:
    """A cell being measured: its processes' results, kept latencies and records so far."""

    index: int
    item: _Item
    progress: Progress
    outcomes: list = field(default_factory=list)
    docs: list = field(default_factory=list)
    arrays: list = field(default_factory=list)  # per process, per session: int64 ns
    records: list = field(default_factory=list)
    power: dict | None = None
    fidelity: dict | None = None
    done: bool = False

    @property
    def model(self) -> Path:
        return self.item.model

    @property
    def path(self) -> Path:
        return self.item.path

    def add(self, outcome: RunnerOutcome, arrays: list, record: dict) -> None:
        self.outcomes.append(outcome)
        self.docs.append(outcome.result)
        self.arrays.append(arrays)
        self.records.append(record)
        self.progress.add(session_medians(outcome.result), outcome.wall_s)


class _BoardWorker:
    """One board's cells (one thread): open the board and its power session, run the
    cells' processes round by round, store each cell when it is done, close. A board that cannot be used
    gets a failed cell (category from the error) for each pending model."""

    def __init__(self, shared: _Shared, work: _BoardWork):
        self.shared = shared
        self.device, self.cfg, self.items = work.device, work.config, work.items
        self.name = work.device.name
        self.total = len(work.items)
        self.summary = BoardSummary(self.name, planned=len(work.items), notes=list(work.notes))
        self.board = None
        self.session = None  # PowerSession, when the device has a meter that opened
        self.power_error: str | None = None
        self.power_state: dict | None = None
        self.down: Exception | None = None  # why the board cannot be used

    def event(self, index: int, model: Path | None, state: str, **kw) -> None:
        self.shared.notify(CellEvent(self.name, index, self.total, model, state, **kw))

    def run(self) -> None:
        try:
            self._run()
        except (DiskFullError, ResultsLocationError) as exc:  # the host cannot store cells: stop every board
            self.shared.fatal = exc
            self.shared.stop.set()
            for board in list(self.shared.boards.values()):
                board.abort()

    def _run(self) -> None:
        pending = self._skip_stored()
        try:
            if pending:
                self._open_board()
                if self.shared.power is not None and self.down is None:
                    self._open_power()
            board_info = {k: v for k, v in self.device.to_json().items() if k != "vars"}
            cells = [_Cell(i, item, Progress(self.shared.protocol)) for i, item in pending]
            self._rounds(cells, board_info)
        finally:
            self._close()

    def _rounds(self, cells: list, board_info: dict) -> None:
        """Round by round, one process of every unfinished cell, in a seeded shuffle."""
        rng = random.Random(f"{self.shared.protocol.order_seed}:{self.name}")
        round_no = 0
        while cells:
            round_no += 1
            order = list(cells)
            rng.shuffle(order)
            for slot, cell in enumerate(order):
                if self.shared.stop.is_set():
                    return
                self.summary.order.append([round_no, cell.model.stem])
                if not self._step(cell, round_no, slot, board_info):
                    return  # interrupted mid-process: not a result
                if cell.done:
                    cells.remove(cell)

    def _skip_stored(self) -> list:
        """Report the cells whose stored document stands; return the others as
        ``[(index, item)]``."""
        pending = []
        for i, item in enumerate(self.items, 1):
            if item.old is None:
                pending.append((i, item))
                continue
            self.summary.skipped += 1
            doc = self.shared.docs[(self.name, i)] = dict(item.old, _path=str(item.path))
            self.event(i, item.model, "skipped", doc=doc, path=item.path)
        return pending

    def _open_board(self) -> None:
        """Connect, prepare the work folder, read the power state and check it against the
        campaign's; on failure the board is down (its cells fail with that error)."""
        self.event(0, None, "connecting")
        shared = self.shared
        try:
            self.board = shared.open_board(self.device)
            shared.boards[self.name] = self.board
            self.board.prepare()
            self.board.lease_tag = campaign_tag(shared.campaign)
            self._lock(shared.break_lock)
            self.power_state = self.board.power_state()
            with shared.plan_lock:
                shared.plan.check_power_mode(self.name, self.power_state)
                shared.plan.save()
        except HostError as exc:  # TransportError, DeployError, PowerModeChanged, BoardBusyError
            self._mark_down(0, None, exc)

    def _lock(self, break_lock: bool) -> None:
        """Take the board's lock; a stale or broken lock is logged (notes, ``campaign.json``).

        Raises:
            BoardBusyError: another live run holds it.
            TransportError: the board cannot be reached.
        """
        info = self.board.take_lock(owner_info("host bench", self.board.lease_tag), break_lock)
        if info.stale:
            self.summary.notes.append(f"lock {info.path} was stale: {describe(info.stale)} had ended "
                                      "without releasing it (killed, or its link lost); taken over")
        if info.broken is not None:
            self.summary.notes.append(f"--break-lock: killed the lock holder of {describe(info.broken)} "
                                      f"and took {info.path}")
        self.shared.locks.setdefault(self.name, []).append(info.to_json())

    def _relock_if_lost(self) -> None:
        """After a reconnect the lock holder is gone: take the lock again, or the board is down."""
        if self.down is not None or self.board is None or self.board.lock is None or self.board.lock.alive:
            return
        try:
            self._lock(False)
        except HostError as exc:
            self._mark_down(0, None, exc)

    def _mark_down(self, i: int, model: Path | None, exc: Exception) -> None:
        self.down = exc
        self.summary.error = str(exc)
        self.event(i, model, "board_down", message=str(exc))

    def _open_power(self) -> None:
        """Open the device's power session, if it has a meter; a meter that cannot be
        opened is a note, and the cells run without power."""
        folder = self.shared.folder / safe_name(self.name)
        try:
            self.session = self.shared.power(self.device, self.board, folder)
            if self.session is not None:
                self.session.open()
        except HostError as exc:  # MeterError, PowerError
            self.power_error, self.session = f"meter could not be opened: {exc}", None
            self.summary.notes.append(self.power_error)

    def _step(self, cell: "_Cell", round_no: int, slot: int, board_info: dict) -> bool:
        """Run one process of ``cell`` (or record why it could not run); store the cell when
        it is done or failed. Returns False when Ctrl-C came while it ran (nothing stored)."""
        self._relock_if_lost()
        if self.down is not None:
            self._store(cell, None, transport_failure(self.down), None, board_info)
            return True
        first = not cell.docs
        if first:
            self._idle_if_due(cell.index, cell.model)
        self.event(cell.index, cell.model, "running", message=f"process {len(cell.docs) + 1}")
        token = None
        if first and self.session is not None and self.power_error is None:
            token = self.session.start_cell()
        # only the process whose loop the meter watches needs the lengthened loop
        cfg = self.session.extend(cell.item.cfg) if token is not None else cell.item.cfg
        outcome, error = self._run_on_board(cell, cfg, self._extras(cell) if first else None)
        if self.shared.stop.is_set():
            if token is not None:
                token["sampler"].stop()
            return False
        self._note_leftovers(outcome)
        doc = outcome.result if outcome is not None else None
        if outcome is None or doc is None or outcome.exit_code not in RESULT_EXIT_CODES \
                or doc.get("status") == "failed" or not doc.get("sessions"):
            self._store(cell, outcome, error, token, board_info)
            if outcome is None:  # the board failed: stored first, then one reconnect attempt
                self._reconnect(cell)
            return True
        cell.add(outcome, take_latencies(doc), process_record(doc, outcome.wall_s, round_no, slot))
        if first:
            cell.fidelity = self._fidelity(cell, outcome)
        if token is not None:  # power of the first process, aligned to its first timed loop
            cell.power = self.session.finish_cell(token, {"latency": doc["sessions"][0]["latency"]},
                                                  cell.path.with_suffix(".power.csv"))
        if cell.progress.decide():
            self._store(cell, None, None, None, board_info)
        return True

    def _idle_if_due(self, i: int, model: Path) -> None:
        """Measure idle power when the session says it is due (a failure is a note and
        leaves the next cells without power)."""
        if self.session is None or not self.session.idle_due():
            return
        self.event(i, model, "idle")
        try:
            self.session.measure_idle()
            self.power_error = None
        except HostError as exc:
            self.power_error = str(exc)
            self.summary.notes.append(self.power_error)

    def _run_on_board(self, cell: "_Cell", cfg: BenchConfig, extras) -> tuple:
        """(runner outcome or None, error record or None): a board error fails the cell."""
        run_model = cell.item.variant.run_model
        try:
            return self.board.run_cell(run_model, self.shared.shas[run_model], cfg, extras), None
        except HostError as exc:
            return None, transport_failure(exc)

    def _extras(self, cell: "_Cell"):
        """The first process's extras: the fidelity inputs (None for a backend without outputs,
        or when they cannot be built: a note) and the model's dataset."""
        from host.lab.board import CellExtras

        fid = self.shared.fidelity
        return CellExtras(fidelity_inputs=fid.inputs(cell.model, cell.item.cfg)[0],
                          dataset=fid.dataset(cell.model))

    def _fidelity(self, cell: "_Cell", outcome) -> dict | None:
        """The ``fidelity`` block of the cell from its first process's outputs."""
        return self.shared.fidelity.block(cell.model, cell.item.cfg, outcome)

    def _reconnect(self, cell: "_Cell") -> None:
        """One more connection attempt (with the transport's retries) and the lock again;
        when that fails, the board is down for the cells after it."""
        try:
            self.board.transport.connect()
        except HostError as exc:
            self._mark_down(cell.index, cell.model, exc)
            return
        self._relock_if_lost()

    def _note_leftovers(self, outcome) -> None:
        """Log the leftover runner sessions this process's sweep killed on the board."""
        for item in ((outcome.extra or {}).get("leftovers_killed") or []) if outcome is not None else []:
            self.summary.leftovers.append(item)
            self.summary.notes.append(
                f"killed a leftover runner session {item['sid']} ({item['processes']} processes, campaign "
                f"tag {item['tag']}) left by an earlier run on this board")

    def _store(self, cell: "_Cell", outcome, error, token, board_info: dict) -> None:
        """Build the cell document and store it: combined from its processes when the last
        one succeeded (``outcome`` None), else failed with ``outcome``/``error``.

        Raises:
            DiskFullError: this host has no space left (every file is written atomically: the
                cell is not stored and runs again on resume).
            ResultsLocationError: the cell's folder cannot be written (changed since the check).
        """
        try:
            self._store_doc(cell, outcome, error, token, board_info)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise ResultsLocationError(f"cannot store {cell.path}: {exc.strerror or exc}", path=cell.path,
                                           hint=_LOCATION_HINT) from None
            raise DiskFullError(f"no space left on this host to store {cell.path.name} in "
                                f"{cell.path.parent}: {exc}", where="host",
                                hint="free space on this host, then resume with the same command") from None

    def _store_doc(self, cell: "_Cell", outcome, error, token, board_info: dict) -> None:
        session, model, path, item = self.session, cell.model, cell.path, cell.item
        run_model = item.variant.run_model
        info, info_error = read_info(model)
        combined = outcome is None and error is None
        if combined:
            earlier = earlier_cells(self.shared.folder.parent, self.shared.folder.name, self.name, model.stem,
                                    item.cfg.slug, self.shared.shas[run_model])
            measured = combine(cell.docs, cell.arrays, cell.records, cell.progress, earlier)
            outcome = dataclasses.replace(cell.outcomes[0], result=measured)
        config = session.extend(item.cfg) if session is not None else item.cfg
        doc = build_cell(outcome, model=model, config=config, device=self.name,
                         campaign=self.shared.campaign, metrics=self.shared.metrics_for(model, item.cfg),
                         info=info, info_error=info_error, error=error, board=board_info)
        _add_precision(doc, item.variant, cell.fidelity, self.shared.at_precision(run_model))
        if cell.outcomes:
            doc["host"]["runner_processes"] = [o.to_json() for o in cell.outcomes]
        if self.power_state is not None:
            dev = doc.setdefault("manifest", {}).setdefault("device", {})
            dev["power_state"] = self.power_state
            dev["power_mode_key"] = self.power_state.get("mode_key")
        if combined and self.shared.memory != "rss":
            doc["memory_profile"] = self._profile(run_model, config)
        if combined and self.shared.profile:
            sidecar = Path(str(path)[: -len(".json")] + ".profile.json")
            doc["profile"] = self._layers(run_model, config, sidecar)
        if combined:
            doc["samples"] = write_samples(Path(str(path)[: -len(".json")] + SAMPLES_SUFFIX), cell.arrays)
        if token is not None:
            doc["power"] = session.finish_cell(token, doc, path.with_suffix(".power.csv"))
        elif cell.power is not None:
            doc["power"] = cell.power
        elif self.power_error is not None and outcome is not None:
            doc["power"] = failed_block(session.spec if session else None, self.power_error)
        store_cell(path, doc)
        cell.done = True
        self.summary.run += 1
        doc = self.shared.docs[(self.name, cell.index)] = dict(doc, _path=str(path))
        self.event(cell.index, model, "done", doc=doc, path=path)

    def _layers(self, model: Path, config: BenchConfig, sidecar: Path) -> dict:
        """The cell's per-layer profile (``--profile``): its summary, every row in ``sidecar``;
        or its error."""
        from host.lab.layerprofile import summary

        self.event(0, model, "profiling")
        try:
            found = self.board.profile_layers(model, self.shared.shas[model], config)
        except HostError as exc:
            return {"error": str(exc)}
        write_json_atomic({"layers": found["rows"]}, str(sidecar))
        return dict(summary(found["rows"], method=found["method"]), file=sidecar.name, wall_s=found["wall_s"])

    def _profile(self, model: Path, config: BenchConfig) -> dict:
        """The cell's heap profile (``--memory massif|memray``), or its error."""
        self.event(0, model, "profiling")
        try:
            return self.board.profile_memory(model, self.shared.shas[model], config, self.shared.memory)
        except HostError as exc:
            return {"memory_method": self.shared.memory, "error": str(exc)}

    def _close(self) -> None:
        """Close the power session and the transport; copy the transfer counts into the
        summary; report the board finished."""
        if self.session is not None:
            self.session.close()
        board = self.board
        if board is not None:
            stats = board.transport.stats
            self.summary.bytes_sent, self.summary.files_sent = stats.bytes_sent, stats.files_sent
            self.summary.models_sent = board.models_sent
            self.summary.model_bytes_sent = board.model_bytes_sent
            self.summary.notes.extend(stats.notes)
            board.release_lock()
            board.transport.close()
        self.event(self.total, None, "finished")
