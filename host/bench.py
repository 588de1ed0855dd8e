"""The campaign loop: discover models, plan cells, run each in a fresh runner process on a
target, merge host-side facts (model metrics, ``.info`` sidecar) and store the cells.

One code path for every target; cells on one target run strictly one after another.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import host
from host.errors import (
    DuplicateModelStemError,
    InputNotFoundError,
    ModelFormatError,
    NoModelsError,
)
from host.metrics import metrics_or_error
from host.results import CAMPAIGN_FILE, cell_path, safe_name, write_cell
from host.targets import RESULT_EXIT_CODES, BenchConfig, RunnerOutcome
from runners import SCHEMA_VERSION
from runners.core import write_json_atomic
from runners.manifest import git_revision


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


def classify_failure(outcome: RunnerOutcome) -> dict:
    """Error record for a runner that left no usable result."""
    if outcome.timed_out:
        return {"type": "Timeout",
                "message": f"runner exceeded the cell timeout after {outcome.wall_s:.1f} s"}
    if outcome.signal:
        note = " (possibly the kernel's OOM killer)" if outcome.signal == "SIGKILL" else ""
        return {"type": "RunnerCrash",
                "message": f"runner killed by {outcome.signal}{note}", "signal": outcome.signal}
    last = outcome.stderr_tail.strip().splitlines()[-1:] or [""]
    kind = "OutOfMemory" if "MemoryError" in outcome.stderr_tail else "RunnerCrash"
    return {
        "type": kind,
        "message": f"runner exited with code {outcome.exit_code}"
        + (f": {last[0]}" if last[0] else "")
        + (f"; {outcome.result_error}" if outcome.result_error else ""),
        "exit_code": outcome.exit_code,
    }


def build_cell(
    outcome: RunnerOutcome,
    *,
    model: Path,
    config: BenchConfig,
    device: str,
    campaign: str,
    metrics: dict,
    info,
    info_error: str | None,
) -> dict:
    """Merge the runner's result with host-side facts into the stored cell document."""
    usable = outcome.result is not None and outcome.exit_code in RESULT_EXIT_CODES
    if usable:
        doc = dict(outcome.result)
    else:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "status": "failed",
            "error": classify_failure(outcome),
            "model": {"path": str(model)},
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
        doc["model"]["precision"] = metrics.get("precision")  # None when unreadable
    doc["info"] = info
    if info_error:
        doc.setdefault("warnings", []).append(info_error)
    doc["host"] = {"tool": host_manifest(), "config": config.to_json(),
                   "runner_process": outcome.to_json()}
    return doc


@dataclass
class CellEvent:
    """Progress report for one cell (for the CLI's live display)."""

    index: int
    total: int
    model: Path
    state: str  # "running" | "done" | "skipped"
    doc: dict | None = None
    path: Path | None = None


def run_campaign(
    models: list[Path],
    target,
    config: BenchConfig,
    *,
    results: Path,
    campaign: str,
    device: str,
    on_event: Callable[[CellEvent], None] | None = None,
) -> list[dict]:
    """Run every model on ``target`` with ``config`` and store one cell file each.

    An existing cell file is never overwritten: that cell is skipped and its stored
    document returned. A failing model never stops the campaign.

    Returns:
        The cell documents in model order, each with ``_path`` set to its file.

    Raises:
        OSError: the results folder cannot be written.
    """
    notify = on_event or (lambda event: None)
    camp_dir = Path(results) / safe_name(campaign)
    camp_dir.mkdir(parents=True, exist_ok=True)
    plan = {
        "schema_version": SCHEMA_VERSION,
        "campaign": campaign,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "devices": [device],
        "models": [str(m) for m in models],
        "configs": [config.to_json()],
        "host": host_manifest(),
    }
    if not (camp_dir / CAMPAIGN_FILE).exists():
        write_json_atomic(plan, str(camp_dir / CAMPAIGN_FILE))
    cells = []
    for i, model in enumerate(models, 1):
        path = cell_path(results, campaign, device, model.stem, config.slug)
        if path.exists():
            doc = json.loads(path.read_text(encoding="utf-8"))
            doc["_path"] = str(path)
            cells.append(doc)
            notify(CellEvent(i, len(models), model, "skipped", doc, path))
            continue
        notify(CellEvent(i, len(models), model, "running"))
        metrics = metrics_or_error(model, batch=config.batch, shapes=config.shapes_dict() or None)
        info, info_error = read_info(model)
        outcome = target.run_cell(model, config)
        doc = build_cell(outcome, model=model, config=config, device=device,
                         campaign=campaign, metrics=metrics, info=info, info_error=info_error)
        write_cell(path, doc)
        doc["_path"] = str(path)
        cells.append(doc)
        notify(CellEvent(i, len(models), model, "done", doc, path))
    return cells
