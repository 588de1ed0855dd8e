"""The cell document: a runner's result merged with host-side facts (model metrics, the ``.info``
sidecar, the configuration, the board), the error record of a runner that left no result
(:func:`classify_failure`), the category of a runner's error, and storing a cell without losing
an earlier attempt (:func:`store_cell`)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import host
from host.campaign.store import write_cell
from host.lab.benchconfig import RESULT_EXIT_CODES, BenchConfig, RunnerOutcome
from runners import SCHEMA_VERSION
from runners import errors as runner_errors
from runners.errors import EXIT_NO_RESULT
from runners.manifest import git_revision


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
NOT_RUN = ("unreachable", "host_key", "setup", "power_mode", "busy", "disk_full", "compile")


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



def store_cell(path: Path, doc: dict) -> None:
    """Write a cell. A previous (failed) document at ``path`` is moved to
    ``.attempts/<name>.<n>.json`` first, so no attempt is ever lost."""
    if path.exists():
        attempts = path.parent / ".attempts"
        attempts.mkdir(exist_ok=True)
        n = 1 + sum(1 for _ in attempts.glob(path.stem + ".*.json"))
        os.replace(path, attempts / f"{path.stem}.{n}.json")
    write_cell(path, doc)


def add_precision(doc: dict, variant, fidelity: dict | None, at_precision: dict) -> None:
    """The cell's precision (name, the variant's recipe, its static metrics at that precision:
    weight bytes by dtype, bits per weight, stored weight bytes, QDQ share) and fidelity blocks. The
    cell's ``metrics`` (params, FLOPs, CDL) stay those of the source model."""
    doc["precision"] = {"name": variant.precision, "recipe": variant.recipe, "metrics": at_precision}
    if fidelity is not None:
        doc["fidelity"] = fidelity
        low = [w for w in fidelity.get("warnings") or [] if w.startswith("fidelity_low")]
        if low and isinstance(doc.get("verdict"), dict):
            doc["verdict"].setdefault("warnings", []).extend(low)


