"""The plan: which models (:func:`discover_models`), at which precisions (:func:`make_variants`),
on which devices with which configuration — the matrix recorded in ``campaign.json``
(:class:`Plan`) — and, per board, which cells run and which stored ones stand (:func:`plan_work`).
A cell the device's runtime cannot run (its model format, a precision or a device family the
runtime's descriptor does not declare) is not planned: it is logged with its reason."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from host.campaign.document import NOT_RUN, host_manifest
from host.campaign.folders import check_cell_path, stored_cell
from host.campaign.options import CampaignOptions
from host.campaign.store import CAMPAIGN_FILE, STEM_BYTES, cell_path, safe_name
from host.errors import (
    CampaignFileError,
    CampaignMismatchError,
    DuplicateModelStemError,
    InputNotFoundError,
    ModelFormatError,
    NoModelsError,
    PowerModeChanged,
)
from host.lab.benchconfig import BenchConfig
from host.models import ONNX_SUFFIX
from runners import SCHEMA_VERSION
from runners.fileio import write_json_atomic
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
        "reference": {"type": "object",
                      "additionalProperties": {"type": "array", "items": {"type": "object"}}},
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



class Plan:
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
            # device -> reference workload runs, one per round (host.campaign.reference.record)
            "reference": old.get("reference") if isinstance(old.get("reference"), dict) else {},
        }
        self._index = {(e["device"], e["model"], e["config"]): e for e in self.doc["plan"]}
        self.unplanned: list = []  # [device, model file, backend]: a format the backend cannot load
        self.skipped: list = []  # {device, model, config, reason}: a precision or family the runtime lacks

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

    def add_reference(self, device: str, record: dict) -> None:
        """Append one reference run of ``device`` (:func:`host.campaign.reference.record`)."""
        self.doc["reference"].setdefault(device, []).append(record)

    def save(self) -> None:
        write_json_atomic(self.doc, str(self.path))



def refuse_if_nothing_runs(work: dict, plan: Plan) -> None:
    """Raises NoModelsError when no device can run any of the planned cells: a model format its
    runtime does not load (a ``vart`` board runs compiled ``.xmodel`` files, the others ``.onnx``),
    or a precision or device family its runtime's descriptor does not declare
    (:func:`runtime_refuses`, each reason in the message)."""
    if any(w.items for w in work.values()):
        return
    if plan.skipped:
        reasons = sorted({f"{s['device']}: {s['reason']}" for s in plan.skipped})
        raise NoModelsError("no cell left that the chosen devices' runtimes run: " + "; ".join(reasons),
                            hint="bench another --precision, or choose devices whose runtime runs it "
                                 "(`host runtimes` lists each runtime's precisions and families)")
    wants = sorted({f"{name} (runtime {w.config.backend}) runs "
                    + "/".join(_suffixes(w.config.backend))
                    for name, w in work.items()})
    raise NoModelsError("no model given that the chosen devices can run: " + "; ".join(wants),
                        hint="for a ZCU104, compile first: `host zoo compile --target zcu104 MODEL`, "
                             "then bench the .xmodel")



@dataclass
class Variant:
    """A model at one precision: the source model (the cell's name, the fidelity reference),
    what the runner runs (the source for fp32, else the variant ONNX) and the variant's recipe."""

    model: Path
    precision: str  # the recipe's slug (int8-dyn, fp16-io16, ...); fp32 for the model as given
    run_model: Path
    recipe: dict | None = None
    arithmetic: str = "fp32"  # what a runtime's descriptor declares: fp32, fp16, int8
    problem: str | None = None  # why it cannot run (its model did not compile): its cells fail `compile`
    devices: tuple | None = None  # the device names it was compiled for (a board's own file); None: all


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
                out.append(Variant(model, "fp32", model))
                continue
            from host.models.precision import variant

            p = _with_model_calibration(model, p)
            path, recipe = variant(model, p)
            out.append(Variant(model, p.slug(), path, recipe, arithmetic=p.precision))
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
class Item:
    """One cell of a board: the model variant, the device's configuration at its precision,
    the cell file and the stored document that makes the cell skipped (None: run it)."""

    variant: Variant
    cfg: BenchConfig
    path: Path
    old: dict | None
    problem: str | None = None  # why the stored file is unusable (moved aside, measured again)
    error: dict | None = None  # the failure known before any run (compile_failure): stored as it is

    @property
    def model(self) -> Path:
        return self.variant.model


@dataclass
class BoardWork:
    """One board's share of the campaign: its configuration and its cells."""

    device: object
    config: BenchConfig
    items: list  # [Item]
    notes: list = field(default_factory=list)  # shown with the board's summary


def plan_work(plan: Plan, variants: list, devices: list, options: CampaignOptions, shas: dict) -> dict:
    """Add every (device, model, configuration × precision × batch) to the plan and decide, per cell,
    whether its stored document stands (resume) or the cell runs: a failed cell runs again
    when its board never ran the model (:data:`NOT_RUN`) or with ``options.retry_failed``. Returns
    device name -> :class:`BoardWork`.

    A stored cell that is not valid JSON or fails the cell schema runs again (its ``problem``
    set: :func:`host.campaign.folders.move_aside_unusable` moves it aside first).

    Raises:
        CampaignMismatchError: a planned model's content changed.
        ResultsLocationError: a cell's file names exceed the file system's limits.
    """
    work: dict = {}
    for device in devices:
        base = device_config(options.config, device, options.backend)
        items, notes = [], {}
        for v, batch in ((v, b) for v in variants for b in options.batch_axis):
            if v.devices is not None and device.name not in v.devices:
                continue
            if v.problem is None and not runs_format(base.backend, v.run_model):
                plan.unplanned.append([device.name, v.run_model.name, base.backend])
                continue
            cfg = dataclasses.replace(base, precision=v.precision, batch=batch)
            why = None if v.problem is not None else runtime_refuses(base.backend, device, v)
            if why is not None:
                plan.skipped.append({"device": device.name, "model": v.model.stem, "config": cfg.slug,
                                     "reason": why})
                notes.setdefault(why, []).append(f"{v.model.stem} {cfg.slug}")
                continue
            plan.add(device, v.model, shas[v.model], cfg, variant_sha=shas[v.run_model] if v.recipe else None)
            path = cell_path(options.results, options.campaign, device.name, v.model.stem, cfg.slug)
            check_cell_path(path)
            old, problem = stored_cell(path)
            rerun = old is not None and old.get("status") == "failed" and (
                options.retry_failed or (old.get("error") or {}).get("category") in NOT_RUN)
            items.append(Item(v, cfg, path, old if (old is not None and not rerun) else None, problem,
                              compile_failure(v)))
        work[device.name] = BoardWork(device, base, items, [
            f"not run ({why}): {', '.join(cells)}" for why, cells in notes.items()])
    return work


def compile_failure(variant: Variant) -> dict | None:
    """The failed cell's ``error`` record of a variant whose model did not compile on the host
    (``{"type": "ModelCompileError", "category": "compile", "message", "where": "host"}``), else
    None. Its cells are stored failed without running; a resume tries the compile again
    (``compile`` is in :data:`NOT_RUN`). Raises nothing."""
    if variant.problem is None:
        return None
    return {"type": "ModelCompileError", "category": "compile", "message": variant.problem, "where": "host"}


def runtime_refuses(backend: str, device, variant: Variant) -> str | None:
    """Why the runtime ``backend`` does not run ``variant`` on ``device`` (None: it does), from its
    descriptor: the device's family is not one it targets (``targets_family``; a device whose family
    is None or no family of ``runners.families`` may be any), or the variant's arithmetic is not a
    precision it runs (``runs_precision``). A model as given is not asked: its precision is its own
    (a compiled model's, say), not one the host made. Raises nothing."""
    from runners import families
    from runners.backends import descriptors

    desc = descriptors().get(backend)
    if desc is None:
        return None
    family = device.family if device.family in families.names() else None
    if not desc.targets_family(family):
        return f"runtime {backend} targets the families {', '.join(desc.families)}, not {family}"
    if variant.recipe is not None and not desc.runs_precision(variant.arithmetic):
        return f"runtime {backend} runs {', '.join(desc.precisions)}, not {variant.arithmetic}"
    return None


