"""The board worker: one thread per board opens it (connection, work folder, lock, power state,
power session), runs its cells' runner processes round by round in a seeded shuffle, stores each
cell when it is done (:mod:`host.campaign.document`) and closes; :func:`run_workers` runs them all
and handles Ctrl-C."""

from __future__ import annotations

import dataclasses
import errno
import random
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from host.campaign import power_cycles
from host.campaign.cells import combine, process_record, take_latencies
from host.campaign.device_effect import device_level_in, earlier_in
from host.campaign.document import add_precision, build_cell, read_info, store_cell, transport_failure
from host.campaign.folders import LOCATION_HINT
from host.campaign.plan import BoardWork
from host.campaign.protocol import Progress
from host.campaign.samples import SUFFIX as SAMPLES_SUFFIX
from host.campaign.samples import write_samples
from host.campaign.shared import BoardSummary, CellEvent, MeasuredCell, Shared
from host.campaign.store import safe_name
from host.errors import BoardBusyError, DiskFullError, HostError, ResultsLocationError
from host.lab.benchconfig import RESULT_EXIT_CODES, BenchConfig
from host.lab.lease import campaign_tag, describe, owner_info
from host.power.session import failed_block
from host.thermal.session import thermal_warnings
from runners.fileio import write_json_atomic

#: Seconds between two tries of a board lock another run holds (``CampaignOptions.wait_lock``).
LOCK_POLL_S = 1.0


def run_workers(workers: list, shared: Shared) -> bool:
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



class BoardWorker:
    """One board's cells (one thread): open the board and its power session, run the
    cells' processes round by round, store each cell when it is done, close. A board that cannot be used
    gets a failed cell (category from the error) for each pending model."""

    def __init__(self, shared: Shared, work: BoardWork):
        self.shared = shared
        self.device, self.cfg, self.items = work.device, work.config, work.items
        self.name = work.device.name
        self.total = len(work.items)
        self.summary = BoardSummary(self.name, planned=len(work.items), notes=list(work.notes))
        self.board = None
        self.session = None  # PowerSession, when the device has a meter that opened
        self.power_error: str | None = None
        self.power_state: dict | None = None
        self.thermal = None  # ThermalSession: the board's thermal and clock sources (host.thermal)
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
        board_info = {k: v for k, v in self.device.to_json().items() if k != "vars"}
        for i, item in (p for p in pending if p[1].error is not None):  # failed before any run (compile)
            self._store(MeasuredCell(i, item, Progress(self.shared.options.protocol)), None, item.error, None,
                        board_info)
        pending = [p for p in pending if p[1].error is None]
        try:
            if pending:
                self._open_board()
                if self.shared.power is not None and self.down is None:
                    self._open_power()
                if self.down is None:
                    self._open_thermal()
                self._calibrate_if_new()
            cells = [MeasuredCell(i, item, Progress(self.shared.options.protocol)) for i, item in pending]
            self._rounds(cells, board_info)
        finally:
            self._close()

    def _rounds(self, cells: list, board_info: dict) -> None:
        """Round by round, one process of every unfinished cell, in a seeded shuffle, then the
        reference workload (:meth:`_reference`); its machine trend, if any, is one note."""
        rng = random.Random(f"{self.shared.options.protocol.order_seed}:{self.name}")
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
            self._reference(round_no)
        if round_no:
            self._reference_trend()

    def _reference(self, round_no: int) -> None:
        """Run the reference workload once after round ``round_no``'s cells (``--no-reference``:
        not) and log it in ``campaign.json``; a failure is a warning note, never the campaign's."""
        from host.campaign import reference

        if not self.shared.options.reference or self.board is None or self.down is not None \
                or self.shared.stop.is_set() or getattr(self, "_reference_failed", False):
            return
        self.event(0, None, "reference", message=f"reference workload, round {round_no}")
        timeout = min(reference.TIMEOUT_S, self.shared.options.config.timeout_s)  # a cell's --timeout
        try:
            rec = reference.record(reference.run_on_board(self.board, timeout), round_no)
        except HostError as exc:  # ReferenceRunError, TransportError
            self._reference_failed = True  # a board where it fails once: not again in this run
            self.summary.notes.append(f"warning: reference run of round {round_no} failed, not run again "
                                      f"in this campaign: {exc}")
            return
        with self.shared.plan_lock:
            self.shared.plan.add_reference(self.name, rec)
            self.shared.plan.save()

    def _calibrate_if_new(self) -> None:
        """A device's first campaign (fewer than 2 campaigns in its history: this results folder
        and this host's store): a brief calibration with the reference workload before the cells,
        filed in the store, so this campaign's intervals already carry a between-campaign spread
        (``--no-auto-calibrate`` or ``--no-reference``: not). A failure is a warning note."""
        from host.campaign import reference
        from host.campaign.device_effect import MIN_CAMPAIGNS

        opts = self.shared.options
        if not (opts.reference and opts.auto_calibrate) or self.board is None or self.down is not None \
                or self._device_level()["campaigns"] >= MIN_CAMPAIGNS:
            return
        total = reference.AUTO_CAMPAIGNS * reference.AUTO_PROCESSES

        def progress(c, p, _doc):
            done = (c - 1) * reference.AUTO_PROCESSES + p
            self.event(0, None, "reference",
                       message=f"first campaign on this device: calibrating, {done}/{total}")

        self.event(0, None, "reference", message=f"first campaign on this device: calibrating, 0/{total}")
        timeout = min(reference.TIMEOUT_S, opts.config.timeout_s)
        try:
            doc = reference.brief_calibration(self.board, timeout, on_run=progress)
            reference.store_calibration_history(doc)
        except HostError as exc:
            self.summary.notes.append(f"warning: the first-campaign calibration failed: {exc}")
            return
        except OSError as exc:
            self.summary.notes.append(f"warning: the first-campaign calibration was not filed in "
                                      f"{self._store_dir()} ({exc}); set EDGEGAUGE_STATE_DIR to a writable "
                                      "folder")
            return
        self._device_effect = None  # read again, with the calibration
        varies = reference.varies_line(doc).replace("host calibrate", "brief calibration")
        self.summary.notes.append(f"first campaign on this device: calibrated with {total} reference runs; "
                                  f"{varies}")

    @staticmethod
    def _store_dir():
        from host.campaign import device_store

        return device_store.state_dir()

    def _reference_trend(self) -> None:
        """One note when the reference's p50 moved beyond the threshold within this campaign."""
        from host.campaign import reference

        with self.shared.plan_lock:
            records = list(self.shared.plan.doc.get("reference", {}).get(self.name, []))
        line = reference.trend_line(self.name, reference.machine_trend(records))
        if line:
            self.summary.notes.append(line)
        self._file_reference(records)

    def _file_reference(self, records: list) -> None:
        """File this campaign's reference records and its cells' p50s in the device's history on
        this host (:mod:`host.campaign.device_store`), which later campaigns in any results folder
        read; a failure is a note."""
        from host.campaign import device_store
        from host.campaign.store import cell_observation

        folder = self.shared.folder
        key = device_store.campaign_key(folder.parent, folder.name)
        docs = [d for (name, _), d in sorted(list(self.shared.docs.items())) if name == self.name]
        cells = [o for o in map(cell_observation, docs) if o is not None]
        try:
            if records or cells:
                device_store.add(self.name, {key: records}, {key: cells})
        except OSError as exc:
            self.summary.notes.append(f"warning: the device history in {device_store.state_dir()} was not "
                                      f"updated ({exc}); set EDGEGAUGE_STATE_DIR to a writable folder")

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
            self.board.lease_tag = campaign_tag(shared.options.campaign)
            self._lock(shared.options.break_lock)
            self.power_state = self.board.power_state()
            with shared.plan_lock:
                shared.plan.check_power_mode(self.name, self.power_state)
                shared.plan.save()
        except HostError as exc:  # TransportError, DeployError, PowerModeChanged, BoardBusyError
            if not power_cycles.reopened(self, exc):  # not answering: power-cycled through its place
                self._mark_down(0, None, exc)

    def _lock(self, break_lock: bool) -> None:
        """Take the board's lock; a stale or broken lock is logged (notes, ``campaign.json``).

        Raises:
            BoardBusyError: another live run holds it.
            TransportError: the board cannot be reached.
        """
        info = self._take_lock(break_lock)
        if info.stale:
            self.summary.notes.append(f"lock {info.path} was stale: {describe(info.stale)} had ended "
                                      "without releasing it (killed, or its link lost); taken over")
        if info.broken is not None:
            self.summary.notes.append(f"--break-lock: killed the lock holder of {describe(info.broken)} "
                                      f"and took {info.path}")
        self.shared.locks.setdefault(self.name, []).append(info.to_json())

    def _take_lock(self, break_lock: bool):
        """Take the board's lock, waiting up to ``options.wait_lock`` seconds for a live holder
        (tried again every :data:`LOCK_POLL_S`, a ``lock_wait`` event with the seconds left each
        time; Ctrl-C ends the wait); the wait is a note.

        Raises:
            BoardBusyError: still held when the wait is over (how long it waited in the message).
            TransportError: the board cannot be reached.
        """
        owner = owner_info("host bench", self.board.lease_tag)
        start = time.monotonic()
        while True:
            try:
                info = self.board.take_lock(owner, break_lock)
            except BoardBusyError as exc:
                waited = time.monotonic() - start
                left = self.shared.options.wait_lock - waited
                if left <= 0 or self.shared.stop.is_set():
                    if waited < 1:
                        raise
                    raise BoardBusyError(f"{exc} (still held after waiting {waited:.0f} s)",
                                         device=exc.device, holder=exc.holder, hint=exc.hint) from None
                self.event(0, None, "lock_wait", message=describe(exc.holder), seconds=left)
                self.shared.stop.wait(min(LOCK_POLL_S, left))
                continue
            waited = time.monotonic() - start
            if waited >= LOCK_POLL_S:
                self.summary.notes.append(f"waited {waited:.0f} s for the board lock")
            return info

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
        if getattr(exc, "hint", None):
            self.summary.notes.append(f"hint: {exc.hint}")
        self.event(i, model, "board_down", message=str(exc), category=getattr(exc, "category", "setup"))

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

    def _open_thermal(self) -> None:
        """Probe the board's thermal and clock sources once (:mod:`host.thermal`; never fails)."""
        from host.thermal.session import ThermalSession

        self.thermal = ThermalSession.for_board(self.board)
        self.thermal.open()

    def _step(self, cell: MeasuredCell, round_no: int, slot: int, board_info: dict) -> bool:
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
        thermal = self.thermal.start_cell() if first and self.thermal is not None else None
        # only the process whose loop the meter watches needs the lengthened loop
        cfg = self.session.extend(cell.item.cfg) if token is not None else cell.item.cfg
        outcome, error = self._run_on_board(cell, cfg, self._extras(cell) if first else None)
        if self.shared.stop.is_set():
            if token is not None:
                token["sampler"].stop()
            if thermal is not None:
                self.thermal.cancel(thermal)
            return False
        self._note_leftovers(outcome)
        doc = outcome.result if outcome is not None else None
        if outcome is None or doc is None or outcome.exit_code not in RESULT_EXIT_CODES \
                or doc.get("status") == "failed" or not doc.get("sessions"):
            if thermal is not None:
                self.thermal.cancel(thermal)
            if outcome is None and power_cycles.recover(self, cell, error, token):
                return True  # it did not answer, was power-cycled through its place: the cell runs again
            self._store(cell, outcome, error, token, board_info)
            if outcome is None:  # the board failed: stored first, then one reconnect attempt
                self._reconnect(cell)
            return True
        cell.add(outcome, take_latencies(doc), process_record(doc, outcome.wall_s, round_no, slot))
        if first and self.thermal is not None:  # the timeline of the first process, aligned to its first loop
            cell.thermal = self.thermal.finish_cell(thermal, doc["sessions"][0]["latency"],
                                                    cell.path.with_suffix(".thermal.csv"))
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

    def _run_on_board(self, cell: MeasuredCell, cfg: BenchConfig, extras) -> tuple:
        """(runner outcome or None, error record or None): a board error fails the cell."""
        run_model = cell.item.variant.run_model
        try:
            return self.board.run_cell(run_model, self.shared.shas[run_model], cfg, extras), None
        except HostError as exc:
            return None, transport_failure(exc)

    def _extras(self, cell: MeasuredCell):
        """The first process's extras: the fidelity inputs (None for a backend without outputs,
        or when they cannot be built: a note) and the model's dataset."""
        from host.lab.board import CellExtras

        fid = self.shared.fidelity
        return CellExtras(fidelity_inputs=fid.inputs(cell.model, cell.item.cfg)[0],
                          dataset=fid.dataset(cell.model))

    def _fidelity(self, cell: MeasuredCell, outcome) -> dict | None:
        """The ``fidelity`` block of the cell from its first process's outputs."""
        return self.shared.fidelity.block(cell.model, cell.item.cfg, outcome)

    def _reconnect(self, cell: MeasuredCell) -> None:
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

    def _store(self, cell: MeasuredCell, outcome, error, token, board_info: dict) -> None:
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
                                           hint=LOCATION_HINT) from None
            raise DiskFullError(f"no space left on this host to store {cell.path.name} in "
                                f"{cell.path.parent}: {exc}", where="host",
                                hint="free space on this host, then resume with the same command") from None

    def _store_doc(self, cell: MeasuredCell, outcome, error, token, board_info: dict) -> None:
        session, model, path, item = self.session, cell.model, cell.path, cell.item
        run_model = item.variant.run_model
        info, info_error = read_info(model)
        combined = outcome is None and error is None
        if combined:
            earlier = earlier_in(self.shared.folder.parent, self.shared.folder.name, self.name,
                                 (model.stem, item.cfg.slug, self.shared.shas[run_model]),
                                 self._stored_cells())
            with self.shared.plan_lock:
                refs = list(self.shared.plan.doc.get("reference", {}).get(self.name, []))
            measured = combine(cell.docs, cell.arrays, cell.records, cell.progress, earlier,
                               self._device_level(), refs)
            outcome = dataclasses.replace(cell.outcomes[0], result=measured)
        config = session.extend(item.cfg) if session is not None else item.cfg
        doc = build_cell(outcome, model=model, config=config, device=self.name,
                         campaign=self.shared.options.campaign,
                         metrics=self.shared.metrics_for(model, item.cfg),
                         info=info, info_error=info_error, error=error, board=board_info)
        add_precision(doc, item.variant, cell.fidelity, self.shared.at_precision(run_model))
        if cell.outcomes:
            doc["host"]["runner_processes"] = [o.to_json() for o in cell.outcomes]
        if self.power_state is not None:
            dev = doc.setdefault("manifest", {}).setdefault("device", {})
            dev["power_state"] = self.power_state
            dev["power_mode_key"] = self.power_state.get("mode_key")
        if combined and self.shared.options.memory != "rss":
            doc["memory_profile"] = self._profile(run_model, config)
        if combined and self.shared.options.profile:
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
        if cell.thermal is not None:
            doc["thermal"] = cell.thermal
            doc.setdefault("warnings", []).extend(thermal_warnings(cell.thermal))
        store_cell(path, doc)
        cell.done = True
        self.summary.run += 1
        doc = self.shared.docs[(self.name, cell.index)] = dict(doc, _path=str(path))
        self.event(cell.index, model, "done", doc=doc, path=path)

    def _device_level(self) -> dict:
        """This device's campaign effect from the other campaigns in the results folder (read once
        per run: this campaign's own cells are not part of it)."""
        if getattr(self, "_device_effect", None) is None:
            folder = self.shared.folder
            self._device_effect = device_level_in(folder.parent, folder.name, self.name)
        return self._device_effect

    def _stored_cells(self) -> dict:
        """The device's cells in its history on this host, read once per run (this campaign files
        its own only when it ends)."""
        if getattr(self, "_stored", None) is None:
            from host.campaign import device_store

            self._stored = device_store.cell_campaigns(self.name)
        return self._stored

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
        method = self.shared.options.memory
        try:
            return self.board.profile_memory(model, self.shared.shas[model], config, method)
        except HostError as exc:
            return {"memory_method": method, "error": str(exc)}

    def _close(self) -> None:
        """Close the power session and the transport; copy the transfer counts into the
        summary; report the board finished."""
        if self.session is not None:
            self.session.close()
        if self.thermal is not None:
            self.thermal.close()
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
