"""The campaign's entry: :func:`run_campaign` plans the matrix (device × model × configuration,
:mod:`host.campaign.plan`), runs each board's cells in its own thread
(:mod:`host.campaign.worker`) and logs the run in ``campaign.json``.

Where things are: the options (:mod:`.options`), the plan and model discovery (:mod:`.plan`), the
cell document and error categories (:mod:`.document`), the results folders and locks
(:mod:`.folders`), what the workers share and report (:mod:`.shared`), the board worker
(:mod:`.worker`). One code path for every device (``local`` included); boards run in parallel,
cells on one board strictly one after another.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from host.campaign.compiled import compile_variants
from host.campaign.document import (  # noqa: F401 - re-exported: the campaign's public names
    NOT_RUN,
    build_cell,
    classify_failure,
    runner_error_category,
    store_cell,
)
from host.campaign.fidelity import CellFidelity
from host.campaign.folders import (
    campaign_lock,
    move_aside_unusable,
    prepare_folders,
    refuse_collisions,
    refuse_files_as_folders,
    remove_partials,
)
from host.campaign.options import CampaignOptions
from host.campaign.plan import (  # noqa: F401 - discover_models, unsupported_backends: re-exported
    Plan,
    discover_models,
    make_variants,
    plan_work,
    read_campaign_file,
    refuse_if_nothing_runs,
    unsupported_backends,
)
from host.campaign.shared import CellEvent, Shared
from host.campaign.store import CAMPAIGN_FILE, safe_name
from host.campaign.worker import BoardWorker, run_workers
from host.errors import CampaignInterrupted, NoModelsError
from runners.util import utc_now


@dataclass
class CampaignResult:
    """Cells (device order, then model order) and per-board summaries."""

    name: str
    folder: Path
    cells: list
    boards: dict
    interrupted: bool = False


def run_campaign(
    models: list[Path],
    devices: list,
    options: CampaignOptions | object,
    *,
    open_board: Callable | None = None,
    on_event: Callable[[CellEvent], None] | None = None,
    power: Callable | None = None, cycler=None,
    **fields,
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
        options: a :class:`CampaignOptions`; or its ``config`` (a :class:`BenchConfig`) with the
            other options as keywords (``results=``, ``campaign=``, ``backend=``, …).
        open_board: ``device -> Board`` (default: :func:`host.lab.board.open_transport`
            with default SSH options).
        on_event: called with each :class:`CellEvent` (the CLI's progress lines).
        power: ``(device, board, folder) -> PowerSession | None`` — power measurement
            for devices with a meter (:mod:`host.power.session`): idle per device, a
            ``power`` block and ``<cell>.power.csv`` per cell, measured during the cell's
            first process and aligned to its first timed loop.
        cycler: a PlaceCycler (host.lab.power_cycle): boards that stop answering power-cycled (.power_cycles).

    Every cell's first process also returns its outputs for a fixed input set, compared with
    the fp32 source model under ONNX Runtime on the host (:mod:`host.campaign.fidelity`).
    Each board is locked while the campaign uses it, and every runner process first kills the
    leftovers of earlier runs on its board (:mod:`host.lab.lease`); both are logged.

    Raises:
        TypeError: ``options`` is a :class:`CampaignOptions` and keywords were given too.
        CampaignMismatchError: a planned model's content changed.
        NameCollisionError: two names would share a folder.
        NoModelsError: no device can run any of the planned cells (model format, precision, family).
        CampaignInterrupted: Ctrl-C (after the folder was left consistent).
        CampaignBusyError: another process is running this campaign.
        DiskFullError: this host's disk filled up (every board stops; finished cells kept).
        CampaignFileError: ``campaign.json`` is unreadable or malformed (nothing is changed).
        ResultsLocationError: a results, campaign or device folder or a cell's file cannot be
            written (checked before any cell is measured).
    """
    from host.lab.board import Board, open_transport

    if isinstance(options, CampaignOptions):
        if fields:
            raise TypeError(f"run_campaign: options given twice: {sorted(fields)}")
    else:
        options = CampaignOptions(config=options, **fields)
    if open_board is None:
        def open_board(device):
            return Board(device, open_transport(device))
    results, campaign = Path(options.results), options.campaign
    camp_dir = results / safe_name(campaign)
    held = read_campaign_file(camp_dir / CAMPAIGN_FILE).get("campaign")
    refuse_collisions(camp_dir, campaign, devices, held)
    device_dirs = [camp_dir / safe_name(d.name) for d in devices]
    refuse_files_as_folders([results, camp_dir, *device_dirs])
    fresh = not camp_dir.exists()
    prepare_folders(results, camp_dir, [])
    try:
        with campaign_lock(camp_dir, campaign):  # a refused second run writes nothing
            prepare_folders(results, camp_dir, device_dirs)
            shared = Shared(plan=Plan(camp_dir, campaign), options=options, folder=camp_dir, shas={},
                            open_board=open_board, power=power, notify=on_event or (lambda event: None),
                            fidelity=CellFidelity(options.dataset), cycler=cycler)
            return _run_locked(models, devices, shared)
    except NoModelsError:
        if fresh:
            _remove_empty_campaign(camp_dir, device_dirs)
        raise


def _remove_empty_campaign(camp_dir: Path, device_dirs: list) -> None:
    """Take back the folders a refused run made (nothing was planned, so they hold only the lock
    file); ``rmdir`` leaves any folder that holds anything else."""
    for folder in device_dirs:
        with contextlib.suppress(OSError):
            folder.rmdir()
    with contextlib.suppress(OSError):
        (camp_dir / ".lock").unlink()
    with contextlib.suppress(OSError):
        camp_dir.rmdir()


def _run_locked(models: list, devices: list, shared: Shared) -> CampaignResult:
    """:func:`run_campaign` once the campaign folder is locked."""
    from host.lab.deploy import cached_sha256

    options, plan, camp_dir = shared.options, shared.plan, shared.folder
    partials = remove_partials(camp_dir)
    variants = compile_variants(make_variants(models, options.precisions), options.backend,
                                options.compile_axis, devices=devices, open_board=shared.open_board)
    shared.shas.update({m: cached_sha256(m) for v in variants for m in (v.model, v.run_model)})
    work = plan_work(plan, variants, devices, options, shared.shas)
    refuse_if_nothing_runs(work, plan)
    moved = move_aside_unusable(work, camp_dir)
    run_log = _log_run(plan, devices, models, options)
    run_log.update(moved_aside=moved, partials_removed=partials,
                   precisions=sorted({v.precision for v in variants}),
                   unplanned=plan.unplanned,  # e.g. a model format the device's runtime does not load
                   skipped=plan.skipped)  # a precision or device family the runtime does not declare
    workers = [BoardWorker(shared, w) for w in work.values()]
    interrupted = run_workers(workers, shared)
    summaries = {w.name: w.summary for w in workers}
    run_log.update(end_utc=utc_now(), interrupted=interrupted,
                   cells_run={n: s.run for n, s in summaries.items()},
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
            f"interrupted: campaign {options.campaign!r} keeps its finished cells",
            hint=f"resume with the same command and --campaign {options.campaign}")
    cells = [shared.docs[(w.name, i)] for w in workers
             for i in range(1, len(w.items) + 1) if (w.name, i) in shared.docs]
    return CampaignResult(options.campaign, camp_dir, cells, summaries)


def _log_run(plan: Plan, devices: list, models: list, options: CampaignOptions) -> dict:
    """Append this run's entry to ``campaign.json`` (saved now; finished by the caller)."""
    run_log = {"start_utc": utc_now(), "devices": [d.name for d in devices], "models": len(models),
               "config": options.config.slug, "retry_failed": options.retry_failed,
               "protocol": options.protocol.to_json(), "memory": options.memory,
               "end_utc": None, "interrupted": None, "order": None}
    plan.doc["runs"].append(run_log)
    plan.save()
    return run_log
