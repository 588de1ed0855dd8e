"""Campaign folders and result cells on disk, and their flat table form.

Layout: ``<results>/<campaign>/<device>/<model-stem>__<config>.json``, plus
``<results>/<campaign>/campaign.json`` (the planned matrix and the host manifest).
Every file is written atomically (temp file + rename), so a reader or an interrupted
campaign never leaves a partial cell.
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from host.campaign.schema import HINT as SCHEMA_HINT
from host.campaign.schema import validate_cell
from host.errors import CellSchemaError, InputNotFoundError
from runners.fileio import write_json_atomic

CAMPAIGN_FILE = "campaign.json"
_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_DOTS = re.compile(r"\.{2,}")
_UNDERSCORES = re.compile(r"_{2,}")


#: Longest name (bytes) of a campaign or device folder, a model stem's and a configuration's part of a
#: cell's file name. A cell ``<stem>__<config>.json`` and the names made from it (``.samples.npz``,
#: ``.power.csv``, ``.profile.json``, ``.json.corrupt-<UTC time>[-n]``) then stay within the 255 bytes
#: a file name may have (NAME_MAX on Linux file systems; temp files are ``.tmp-<random>.json``).
FOLDER_BYTES, STEM_BYTES, CONFIG_BYTES = 200, 150, 60
_HASH_CHARS = 16


def safe_name(text: str, limit: int = FOLDER_BYTES) -> str:
    """A file-name-safe form of a device, model stem or campaign name; never raises.

    Keeps letters, digits and ``._+-``; every run of other characters (``/``, spaces,
    quotes, ``$``, ``;``, any non-ASCII) becomes one ``_``, runs of dots become one dot, and
    leading or trailing dots and underscores go, so the name cannot leave its folder or hide.
    A result longer than ``limit`` bytes is cut and ends in ``~`` and 16 hex digits of the
    sha256 of the whole ``text`` (:func:`_shortened`): distinct long names get distinct files.
    Short names that differ only in the characters replaced share a name: the campaign loop
    refuses those (:class:`~host.errors.NameCollisionError`,
    :class:`~host.errors.DuplicateModelStemError`); the full name is kept inside the cell
    (``cell.campaign``, ``cell.device``, ``cell.model_stem``, ``cell.config``).
    """
    out = _DOTS.sub(".", _SAFE.sub("_", str(text))).strip("._") or "_"
    return out if len(out) <= limit else _shortened(out, str(text), limit)


def _shortened(safe: str, text: str, limit: int) -> str:
    """``safe`` cut to fit ``limit`` bytes with ``~<hash of text>`` (``~`` never occurs in an uncut
    :func:`safe_name`, so a cut name never equals an uncut one)."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    return f"{safe[: limit - _HASH_CHARS - 1].rstrip('._')}~{digest}"


def cell_name(model_stem: str, config_slug: str) -> str:
    """A cell's file name, ``<stem>__<config>.json``: the stem's :func:`safe_name` (at most
    :data:`STEM_BYTES`), then the configuration's slug as it is when that is a safe name without ``__``
    within :data:`CONFIG_BYTES` (every slug ``host bench`` makes), else cut with a hash: the
    configuration's part is one-to-one and never holds ``__`` or starts with ``_``, so the name splits
    back into its two parts at its last ``__``."""
    config = str(config_slug)
    if safe_name(config, CONFIG_BYTES) != config or "__" in config:
        config = _shortened(_UNDERSCORES.sub("_", safe_name(config, 10 ** 9)), config, CONFIG_BYTES)
    return f"{safe_name(model_stem, STEM_BYTES)}__{config}.json"


def default_campaign_name() -> str:
    """UTC timestamp, e.g. ``20261124T051200Z``."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def cell_path(results: Path, campaign: str, device: str, model_stem: str, config_slug: str) -> Path:
    """``<results>/<campaign>/<device>/<cell_name>``: every part a single bounded file name."""
    return Path(results) / safe_name(campaign) / safe_name(device) / cell_name(model_stem, config_slug)


def write_cell(path: Path, doc: dict) -> None:
    write_json_atomic(doc, str(path))


def is_cell_file(path: Path) -> bool:
    return path.suffix == ".json" and path.name != CAMPAIGN_FILE and not path.name.startswith(".")


@dataclass(frozen=True)
class Skipped:
    """A file :func:`load_cells` skipped: ``path``, ``field`` (JSON pointer, ``""`` for the whole
    document) and ``problem``."""

    path: str
    field: str
    problem: str

    def line(self) -> str:
        return f"{self.path}: {self.field or '(document)'}: {self.problem}"


class Cells(list):
    """What :func:`load_cells` returns: the valid cells (a plain list of dicts) plus ``skipped``,
    the files that fail the cell schema (:class:`Skipped`, in path order)."""

    def __init__(self, cells=(), skipped=()):
        super().__init__(cells)
        self.skipped = list(skipped)


_COLLECTORS: ContextVar[tuple] = ContextVar("skipped_cell_collectors", default=())


@contextmanager
def collect_skipped() -> Iterator[list]:
    """Gather the :class:`Skipped` files of every :func:`load_cells` call inside the block (also
    calls made deep in a library, e.g. by ``host dataset``) into the list it yields."""
    found: list = []
    token = _COLLECTORS.set(_COLLECTORS.get() + (found,))
    try:
        yield found
    finally:
        _COLLECTORS.reset(token)


def _looks_like_cell(path: Path) -> bool:
    """Named as a cell is (``<model>__<config>.json``; not a ``.profile.json`` sidecar)."""
    return "__" in path.name and not path.name.endswith(".profile.json")


def read_cell(path: Path) -> dict | None:
    """The cell in ``path`` (validated, see :mod:`host.campaign.schema`), or None when the file
    holds a JSON object that is not a cell (no ``schema_version``: an idle run, a sidecar) and is
    not named like one.

    Raises:
        CellSchemaError: the file cannot be read, is not JSON, or fails the cell schema.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    doc = _json(raw, path)
    if isinstance(doc, dict) and "schema_version" not in doc and not _looks_like_cell(path):
        return None
    validate_cell(doc, path)
    return doc


def parse_cell(raw: bytes, path: Path) -> object:
    """The cell held in the bytes ``raw`` of the file ``path``, validated.

    Raises:
        CellSchemaError: ``raw`` is not UTF-8 JSON, or fails the cell schema.
    """
    doc = _json(raw, path)
    validate_cell(doc, path)
    return doc


def _json(raw: bytes, path: Path) -> object:
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: Exception) -> CellSchemaError:
    problem = f"not a readable JSON file ({type(exc).__name__}: {str(exc)[:200]})"
    return CellSchemaError(f"{path}: the document: {problem}", path=path, problem=problem, hint=SCHEMA_HINT)


def load_cells(root: Path) -> Cells:
    """Load every cell JSON under ``root`` (recursively), sorted by path.

    Each document gains ``_path`` (its file). JSON objects that are not cells (no
    ``schema_version`` and not named ``<model>__<config>.json``) and hidden folders
    (``.attempts/``: replaced failed attempts) are passed over. A file that is not JSON or fails the
    cell schema is skipped: it is listed in the result's ``skipped`` (and in any
    :func:`collect_skipped` block), never raised.

    Raises:
        InputNotFoundError: ``root`` does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise InputNotFoundError(f"results folder {root} does not exist",
                                 hint="run `host bench` first, or pass the folder it wrote")
    files = [root] if root.is_file() else sorted(
        p for p in root.rglob("*.json")
        if is_cell_file(p) and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    out = Cells()
    for path in files:
        try:
            doc = read_cell(path)
        except CellSchemaError as exc:
            out.skipped.append(Skipped(str(path), exc.field, exc.problem))
            continue
        if doc is not None:
            doc["_path"] = str(path)
            out.append(doc)
    for found in _COLLECTORS.get():
        found.extend(out.skipped)
    return out


def earlier_cells(results: Path, campaign: str, device: str, model_stem: str, config_slug: str,
                  sha256: str) -> list[dict]:
    """The same cell (device, model with this sha256, configuration) measured by other
    campaigns under ``results``, oldest first: ``[{"campaign", "p50_ms", "ci95"}]`` for each
    with a p50 and an interval (status ok or invalid). Unreadable files and files that fail the
    cell schema are skipped (they are reported by the readers and moved aside by a resume of their
    own campaign)."""
    name = cell_name(model_stem, config_slug)
    found = []
    for path in Path(results).glob(f"*/{safe_name(device)}/{name}"):
        if path.parent.parent.name == safe_name(campaign):
            continue
        try:
            doc = read_cell(path)
        except CellSchemaError:
            continue
        if doc is None:
            continue
        lat = doc.get("latency") or {}
        if (doc.get("status") in ("ok", "invalid") and _get(doc, "model", "sha256") == sha256
                and lat.get("latency_ms_p50") and lat.get("latency_ms_p50_ci95_within")):
            found.append({"campaign": _get(doc, "cell", "campaign"), "p50_ms": lat["latency_ms_p50"],
                          "ci95": lat["latency_ms_p50_ci95_within"],
                          "start_utc": _get(doc, "timestamps", "start_utc") or ""})
    return sorted(found, key=lambda c: c["start_utc"])


def device_history(results: Path, campaign: str, device: str) -> list[dict]:
    """Every cell of ``device`` measured by the other campaigns under ``results``:
    ``[{"campaign", "cell", "p50_ms", "ci95"}]`` (``cell`` names model stem, configuration and model
    sha256; ``ci95`` the within-campaign interval), for cells with a p50 and that interval (status
    ok or invalid), for :func:`host.campaign.device_effect.device_level`. Unreadable files and files
    that fail the cell schema are passed over, as in :func:`earlier_cells`."""
    found = []
    for path in sorted(Path(results).glob(f"*/{safe_name(device)}/*.json")):
        if path.parent.parent.name == safe_name(campaign) or not is_cell_file(path):
            continue
        try:
            obs = cell_observation(read_cell(path))
        except CellSchemaError:
            continue
        if obs is not None:
            found.append(dict(obs, campaign=path.parent.parent.name))
    return found


def cell_key(model_stem: str, config_slug: str, sha256: str) -> str:
    """The name of a cell across campaigns and results folders: model stem, configuration, sha256."""
    return "|".join(str(x or "") for x in (model_stem, config_slug, sha256))


def cell_observation(doc: dict | None) -> dict | None:
    """``{"cell", "p50_ms", "ci95", "start_utc"}`` of a stored cell document with a p50 and a
    within-campaign interval (status ok or invalid; ``cell`` is :func:`cell_key`), else None."""
    lat = (doc or {}).get("latency") or {}
    if not (doc and doc.get("status") in ("ok", "invalid") and lat.get("latency_ms_p50")
            and lat.get("latency_ms_p50_ci95_within")):
        return None
    key = cell_key(_get(doc, "cell", "model_stem"), _get(doc, "cell", "config"), _get(doc, "model", "sha256"))
    return {"cell": key, "p50_ms": lat["latency_ms_p50"], "ci95": lat["latency_ms_p50_ci95_within"],
            "start_utc": _get(doc, "timestamps", "start_utc") or ""}


def reference_history(results: Path, campaign: str, device: str) -> dict:
    """The reference workload's records for ``device`` in the other campaigns under ``results``:
    ``{campaign folder: [record, ...]}`` from each ``campaign.json``'s ``reference`` mapping
    (``{device: [{"latency_ms_p50": ...}, ...]}``), and the short campaigns of ``host calibrate``
    (:func:`_calibration_runs`); campaigns without one, or whose file is unreadable or not of that
    shape, are passed over."""
    out = {}
    for path in sorted(Path(results).glob(f"*/{CAMPAIGN_FILE}")):
        if path.parent.name == safe_name(campaign):
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        records = (doc.get("reference") if isinstance(doc, dict) else None) or {}
        records = records.get(device) if isinstance(records, dict) else None
        if isinstance(records, list) and records:
            out[path.parent.name] = records
    return {**out, **_calibration_runs(results, device)}


def _calibration_runs(results: Path, device: str) -> dict:
    """The reference records of each short campaign ``host calibrate`` stored for ``device``
    (``<results>/.devices/<device>.json``, ``runs``: one list of records per campaign), keyed
    ``calibrate <created_utc> <n>``; nothing when there is no such file or it is not of that shape."""
    try:
        path = Path(results) / ".devices" / f"{safe_name(device)}.json"
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    runs = doc.get("runs") if isinstance(doc, dict) else None
    return {f"calibrate {doc.get('created_utc')} {n}": r for n, r in enumerate(runs or [], 1)
            if isinstance(r, list) and r} if isinstance(runs, list) else {}


def _get(doc: dict, *keys, default=None):
    for key in keys:
        if not isinstance(doc, dict) or key not in doc:
            return default
        doc = doc[key]
    return doc


def flatten(cell: dict) -> dict:
    """One flat row per cell (the columns of ``results.csv`` / ``results.parquet`` and the dataset,
    which add the frame-rate budget's verdict: :func:`host.analysis.dataset.budget_columns`)."""
    lat = cell.get("latency") or {}
    mem = cell.get("memory") or {}
    met = cell.get("metrics") or {}
    verdict = cell.get("verdict") or {}
    ci = lat.get("latency_ms_p50_ci95") or [None, None]
    rerun = lat.get("latency_ms_p50_rerun95") or [None, None]
    profile = cell.get("memory_profile") or {}
    row = {
        "campaign": _get(cell, "cell", "campaign"),
        "device": _get(cell, "cell", "device"),
        "model": _get(cell, "cell", "model_stem"),
        "config": _get(cell, "cell", "config"),
        "status": cell.get("status"),
        "verdict": verdict.get("result"),
        "verdict_reasons": "; ".join(verdict.get("reasons") or []),
        "error_type": _get(cell, "error", "type"),
        "error_message": _get(cell, "error", "message"),
        "params": met.get("params"),
        "macs": met.get("macs"),
        "flops": met.get("flops"),
        "cdl": met.get("cdl"),
        "footprint_bytes": met.get("footprint_bytes"),
        # the variant's precision (an int8 cell of an fp32 model is int8), else the model's own
        "precision": _get(cell, "precision", "name") or met.get("precision"),
        "iterations": lat.get("iterations"),
    }
    for key in ("mean", "std", "min", "max", "p50", "p90", "p95", "p99"):
        row[f"latency_ms_{key}"] = lat.get(f"latency_ms_{key}")
    row.update(
        {
            "latency_ms_p50_ci95_lo": ci[0],
            "latency_ms_p50_ci95_hi": ci[1],
            "latency_ms_p50_rerun95_lo": rerun[0],
            "latency_ms_p50_rerun95_hi": rerun[1],
            "ci_method": lat.get("ci_method"),
            "processes": lat.get("processes"),
            "sessions": lat.get("sessions"),
            "cov": lat.get("cov"),
            "cov_robust": lat.get("cov_robust"),
            "throughput_cps": lat.get("throughput_cps"),
            "throughput_sps": lat.get("throughput_sps"),
            "fps": _get(cell, "realtime", "fps"),
            "memory_method": mem.get("memory_method"),
            "rss_mib_peak": mem.get("rss_mib_peak"),
            "rss_mib_before_session": mem.get("rss_mib_before_session"),
            "rss_mib_session_delta": mem.get("rss_mib_session_delta"),
            "rss_mib_inference_delta": mem.get("rss_mib_inference_delta"),
            "rss_mib_runtime_import": mem.get("rss_mib_runtime_import"),
            # one column per heap-profiling method: never mixed in one column
            "heap_mib_peak_massif": profile.get("heap_mib_peak") if profile.get("memory_method") == "massif"
            else None,
            "heap_mib_peak_memray": profile.get("heap_mib_peak") if profile.get("memory_method") == "memray"
            else None,
            "runtime": _get(cell, "runtime", "name"),
            "runtime_version": _get(cell, "runtime", "version"),
            "provider": _get(cell, "runtime", "provider"),
            "threads": _get(cell, "runtime", "threads"),
            "batch": _get(cell, "configuration", "batch"),
            "model_sha256": _get(cell, "model", "sha256"),
            "hostname": _get(cell, "manifest", "device", "hostname"),
            "cpu_model": _get(cell, "manifest", "device", "cpu_model"),
            "power_mode_key": _get(cell, "manifest", "device", "power_mode_key"),
            "start_utc": _get(cell, "timestamps", "start_utc"),
            "path": cell.get("_path"),
        }
    )
    return row
