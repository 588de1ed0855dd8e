"""The campaign loop: discover models, plan the matrix (device × model × configuration),
run each cell in a fresh runner process on its board, merge host-side facts (model
metrics, ``.info`` sidecar) and store the cells.

One code path for every device (``local`` included); boards run in parallel, cells on
one board strictly one after another.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import host
from host.campaign.store import CAMPAIGN_FILE, cell_path, safe_name, write_cell
from host.errors import (
    CampaignInterrupted,
    CampaignMismatchError,
    DuplicateModelStemError,
    HostError,
    InputNotFoundError,
    ModelFormatError,
    NoModelsError,
    PowerModeChanged,
)
from host.lab.runner import RESULT_EXIT_CODES, BenchConfig, RunnerOutcome
from host.models.metrics import metrics_or_error
from host.power.session import failed_block
from runners import SCHEMA_VERSION
from runners.core import write_json_atomic
from runners.manifest import git_revision
from runners.util import utc_now


def discover_models(paths: Iterable[Path]) -> list[Path]:
    """Expand files and folders into a sorted list of ``.onnx`` files (recursive).

    Raises:
        InputNotFoundError: a path does not exist.
        ModelFormatError: a file given explicitly does not end in ``.onnx``.
        NoModelsError: nothing was found.
        DuplicateModelStemError: two models share a file stem (their cells would collide).
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputNotFoundError(f"{path} does not exist",
                                     hint="pass .onnx files or folders that hold them")
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.onnx") if p.is_file()))
        elif path.suffix.lower() != ".onnx":
            raise ModelFormatError(path, "not an ONNX model (expected a .onnx file)",
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
        key = safe_name(p.stem)
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
NOT_RUN = ("unreachable", "host_key", "setup", "power_mode")
_RUNNER_CATEGORY = {
    "ModelLoadError": "invalid_model",
    "UnresolvedShapeError": "invalid_model",
    "InputSpecError": "invalid_model",
    "OutOfMemory": "out_of_memory",
}


def classify_failure(outcome: RunnerOutcome) -> dict:
    """Error record (``type``, ``category``, ``message``) for a runner that left no usable
    result: timeout, killed by a signal (SIGKILL without a timeout: likely the OOM
    killer), container engine errors (125–127), other exit codes."""
    if outcome.timed_out:
        return {"type": "Timeout", "category": "timeout",
                "message": f"runner exceeded the cell timeout after {outcome.wall_s:.1f} s and was killed"}
    if outcome.signal:
        if outcome.signal == "SIGKILL":
            return {"type": "OutOfMemory", "category": "out_of_memory", "signal": outcome.signal,
                    "message": "runner killed by SIGKILL, most likely by the kernel's OOM killer"}
        return {"type": "RunnerCrash", "category": "runner_crash", "signal": outcome.signal,
                "message": f"runner killed by {outcome.signal}"}
    last = outcome.stderr_tail.strip().splitlines()[-1:] or [""]
    code = outcome.exit_code
    if "MemoryError" in outcome.stderr_tail:
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
    kind = {"unreachable": "Unreachable", "host_key": "HostKeyRejected"}.get(category, "SetupError")
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
            doc["error"].setdefault("category", _RUNNER_CATEGORY.get(doc["error"].get("type"),
                                                                     "runtime_error"))
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


@dataclass
class CampaignResult:
    """Cells (device order, then model order) and per-board summaries."""

    name: str
    folder: Path
    cells: list
    boards: dict
    interrupted: bool = False


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def store_cell(path: Path, doc: dict) -> None:
    """Write a cell. A previous (failed) document at ``path`` is moved to
    ``.attempts/<name>.<n>.json`` first, so no attempt is ever lost."""
    if path.exists():
        attempts = path.parent / ".attempts"
        attempts.mkdir(exist_ok=True)
        n = 1 + sum(1 for _ in attempts.glob(path.stem + ".*.json"))
        os.replace(path, attempts / f"{path.stem}.{n}.json")
    write_cell(path, doc)


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


class _Plan:
    """The campaign manifest ``campaign.json``: the planned matrix (device × model ×
    configuration, with each model's sha256), the devices' settings and a log of runs."""

    def __init__(self, folder: Path, name: str):
        self.path = folder / CAMPAIGN_FILE
        old = _read_json(self.path) or {}
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

    def add(self, device, model: Path, sha: str, config: BenchConfig) -> None:
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
                 "model_path": str(model), "config": config.slug}
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
) -> CampaignResult:
    """Run every model on every device; boards in parallel, cells on one board strictly
    one after another, each in a fresh runner process.

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
            ``power`` block and ``<cell>.power.csv`` per cell.

    Raises:
        CampaignMismatchError: a planned model's content changed.
        CampaignInterrupted: Ctrl-C (after the folder was left consistent).
        OSError: the results folder cannot be written.
    """
    from host.lab.board import Board, cached_sha256, open_transport

    notify = on_event or (lambda event: None)
    if open_board is None:
        def open_board(device):
            return Board(device, open_transport(device))
    camp_dir = Path(results) / safe_name(campaign)
    camp_dir.mkdir(parents=True, exist_ok=True)
    plan = _Plan(camp_dir, campaign)
    shas = {m: cached_sha256(m) for m in models}
    work: dict = {}
    summaries: dict = {}
    for device in devices:
        cfg = device_config(config, device, backend)
        items = []
        for model in models:
            plan.add(device, model, shas[model], cfg)
            path = cell_path(results, campaign, device.name, model.stem, cfg.slug)
            old = _read_json(path) if path.exists() else None
            rerun = old is not None and old.get("status") == "failed" and (
                retry_failed or (old.get("error") or {}).get("category") in NOT_RUN)
            items.append((model, path, old if (old is not None and not rerun) else None))
        work[device.name] = (device, cfg, items)
        summaries[device.name] = BoardSummary(device.name, planned=len(items))
    run_log = {"start_utc": utc_now(), "devices": [d.name for d in devices], "models": len(models),
               "config": config.slug, "retry_failed": retry_failed, "end_utc": None,
               "interrupted": None}
    plan.doc["runs"].append(run_log)
    plan.save()

    stop = threading.Event()
    plan_lock = threading.Lock()
    boards: dict = {}
    metrics_cache: dict = {}
    metrics_lock = threading.Lock()
    docs: dict = {}

    def metrics_for(model: Path, cfg: BenchConfig) -> dict:
        key = (model, cfg.batch, cfg.shapes)
        with metrics_lock:
            if key not in metrics_cache:
                metrics_cache[key] = metrics_or_error(model, batch=cfg.batch,
                                                      shapes=cfg.shapes_dict() or None)
            return metrics_cache[key]

    def worker(name: str) -> None:
        device, cfg, items = work[name]
        summary = summaries[name]
        total = len(items)
        pending = []
        for i, (model, path, old) in enumerate(items, 1):
            if old is None:
                pending.append((i, model, path))
                continue
            summary.skipped += 1
            docs[(name, i)] = dict(old, _path=str(path))
            notify(CellEvent(name, i, total, model, "skipped", docs[(name, i)], path))
        board = None
        session = None
        power_error = None
        power_state = None
        try:
            down: Exception | None = None
            if pending:
                notify(CellEvent(name, 0, total, None, "connecting"))
                try:
                    board = open_board(device)
                    boards[name] = board
                    board.prepare()
                    power_state = board.power_state()
                    with plan_lock:
                        plan.check_power_mode(name, power_state)
                        plan.save()
                except HostError as exc:  # TransportError, DeployError, PowerModeChanged
                    down = exc
                    summary.error = str(exc)
                    notify(CellEvent(name, 0, total, None, "board_down", message=str(exc)))
            run_cfg = cfg
            if power is not None and pending and down is None:
                try:
                    session = power(device, board, Path(results) / safe_name(campaign) / safe_name(name))
                    if session is not None:
                        session.open()
                        run_cfg = session.extend(cfg)
                except HostError as exc:  # MeterError, PowerError
                    power_error, session = f"meter could not be opened: {exc}", None
                    summary.notes.append(power_error)
            board_info = {k: v for k, v in device.to_json().items() if k != "vars"}
            for i, model, path in pending:
                if stop.is_set():
                    return
                outcome, error, token = None, None, None
                if down is None:
                    if session is not None and session.idle_due():
                        notify(CellEvent(name, i, total, model, "idle"))
                        try:
                            session.measure_idle()
                            power_error = None
                        except HostError as exc:
                            power_error = str(exc)
                            summary.notes.append(power_error)
                    notify(CellEvent(name, i, total, model, "running"))
                    if session is not None and power_error is None:
                        token = session.start_cell()
                    try:
                        outcome = board.run_cell(model, shas[model], run_cfg)
                    except HostError as exc:
                        error = transport_failure(exc)
                        try:  # one more connection attempt (with the transport's retries)
                            board.transport.connect()
                        except HostError as exc2:
                            down = exc2
                            summary.error = str(exc2)
                            notify(CellEvent(name, i, total, model, "board_down", message=str(exc2)))
                    if stop.is_set():
                        if token is not None:
                            token["sampler"].stop()
                        return  # interrupted mid-cell: not a result
                else:
                    error = transport_failure(down)
                info, info_error = read_info(model)
                doc = build_cell(outcome, model=model, config=run_cfg, device=name, campaign=campaign,
                                 metrics=metrics_for(model, cfg), info=info, info_error=info_error,
                                 error=error, board=board_info)
                if power_state is not None:
                    dev = doc.setdefault("manifest", {}).setdefault("device", {})
                    dev["power_state"] = power_state
                    dev["power_mode_key"] = power_state.get("mode_key")
                if token is not None:
                    doc["power"] = session.finish_cell(token, doc, path.with_suffix(".power.csv"))
                elif power_error is not None and outcome is not None:
                    doc["power"] = failed_block(session.spec if session else None, power_error)
                store_cell(path, doc)
                summary.run += 1
                docs[(name, i)] = dict(doc, _path=str(path))
                notify(CellEvent(name, i, total, model, "done", docs[(name, i)], path))
        finally:
            if session is not None:
                session.close()
            if board is not None:
                stats = board.transport.stats
                summary.bytes_sent, summary.files_sent = stats.bytes_sent, stats.files_sent
                summary.models_sent, summary.model_bytes_sent = board.models_sent, board.model_bytes_sent
                summary.notes.extend(stats.notes)
                board.transport.close()
            notify(CellEvent(name, total, total, None, "finished"))

    pool = ThreadPoolExecutor(max_workers=max(1, len(work)), thread_name_prefix="board")
    futures = [pool.submit(worker, name) for name in work]
    interrupted = False
    try:
        while not all(f.done() for f in futures):
            wait(futures, timeout=0.2)
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
        for board in list(boards.values()):
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
    run_log["end_utc"] = utc_now()
    run_log["interrupted"] = interrupted
    run_log["cells_run"] = {n: s.run for n, s in summaries.items()}
    plan.save()
    if interrupted:
        raise CampaignInterrupted(
            f"interrupted: campaign {campaign!r} keeps its finished cells",
            hint=f"resume with the same command and --campaign {campaign}")
    cells = [docs[(name, i)] for name, (_, _, items) in work.items()
             for i in range(1, len(items) + 1) if (name, i) in docs]
    return CampaignResult(campaign, camp_dir, cells, summaries)
