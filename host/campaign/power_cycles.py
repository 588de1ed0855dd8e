"""A board that stops answering mid-campaign, power-cycled through its labgrid place (issue 26;
``host bench --coordinator ... --place ... --power-cycles N``, :class:`host.lab.power_cycle.PlaceCycler`).

When: a runner process failed because the board did not answer (``error.category`` unreachable:
the transport could not reach it, or could not kill the runner after the cell's ``--timeout``),
and one more connection (with the transport's retries) fails too. A cell that merely timed out on
a board that still answers is not power-cycled: the transport killed its runner, the cell fails
``timeout`` as before. Then, if the board's place has a power resource and the board has cycles
left this run: power off, ``delay``, on, wait until SSH answers, reconnect, take the board lock again
(its holder died with the power), and go on with the board's cells.

The cell that hung runs again once, from its first process: the processes it ran before the power
cycle are discarded (they measured a board before a reboot; mixing them with processes after it
would blend two machine states in one interval) and counted in the log. If it fails the same way
again, it fails as before (a cycle is used on it only while cycles are left; it is not retried a
second time). Without a power resource, with no cycles left, or when the cycle fails, nothing
changes from before: the cell fails ``unreachable`` and, the board staying down, so do its
remaining cells; other boards go on.

A board that does not answer when the campaign opens it (before any cell) is power-cycled the
same way (:func:`reopened`) and opened again.

Logged: each cycle (done or failed) in ``campaign.json`` (``runs[-1].power_cycles``: device,
place, coordinator, resource, the cell and why, seconds to switch and for SSH, processes
discarded, retried) and as a note of the board (printed under ``host bench``'s table).
"""

from __future__ import annotations

from host.campaign.protocol import Progress
from host.errors import HostError


def recover(worker, cell, error: dict | None, token) -> bool:
    """After a runner process of ``cell`` failed on ``worker``'s board (``error``: its error
    record): power-cycle the board when it does not answer (see the module docstring). Returns
    True when the board answers again and the cell runs again (nothing is stored for it now);
    False otherwise (the caller stores the failure and reconnects, as without a power cycle)."""
    cycler = worker.shared.cycler
    if cycler is None or worker.board is None or (error or {}).get("category") != "unreachable" \
            or worker.shared.stop.is_set():
        return False
    why_not = cycler.why_not(worker.name)
    if why_not is not None:
        if f"not power-cycled: {why_not}" not in worker.summary.notes:
            worker.summary.notes.append(f"not power-cycled: {why_not}")
        return False
    try:
        worker.board.transport.connect()  # it answers again: no power cycle
        return False
    except HostError as exc:
        why = f"{(error or {}).get('message', 'the board failed')}; then: {exc}"
    retry = cell.index not in worker.__dict__.setdefault("_power_retried", set())
    worker.event(cell.index, cell.model, "power_cycle",
                 message=f"not answering: power-cycling place {cycler.places[worker.name].name}")
    entry = {"device": worker.name, "place": cycler.places[worker.name].name, "coordinator": cycler.address,
             "cell": cell.model.stem, "cell_index": cell.index, "why": why,
             "processes_discarded": len(cell.docs) if retry else 0, "cell_retried": retry}
    try:
        entry.update(cycler.cycle(worker.name, worker.shared.stop))
        worker.board.transport.connect()
    except HostError as exc:
        entry.update(outcome="failed", error=str(exc))
        _log(worker, entry, f"power cycle of place {cycler.places[worker.name].name} after {cell.model.stem} "
                            f"failed: {exc}")
        return False
    entry["outcome"] = "ok"
    _log(worker, entry, _note(entry))
    if token is not None:  # the power meter's token of the process that hung
        token["sampler"].stop()
    worker._relock_if_lost()
    if not retry or worker.down is not None:
        return False
    worker._power_retried.add(cell.index)
    _restart(cell, worker.shared.options.protocol)
    return True


def reopened(worker, exc: Exception) -> bool:
    """The board did not answer when the campaign opened it (``exc``: why): power-cycle it through
    its place (when it has a power resource and cycles left) and open it again. Returns True
    when it opened (its cells run), False otherwise (the caller marks it down, as before)."""
    cycler = worker.shared.cycler
    if cycler is None or getattr(exc, "category", None) != "unreachable" or worker.shared.stop.is_set():
        return False
    why_not = cycler.why_not(worker.name)
    if why_not is not None:
        worker.summary.notes.append(f"not power-cycled: {why_not}")
        return False
    if worker.board is not None:
        worker.board.transport.close()
        worker.shared.boards.pop(worker.name, None)
        worker.board = None
    place = cycler.places[worker.name].name
    worker.event(0, None, "power_cycle", message=f"not answering: power-cycling place {place}")
    entry = {"device": worker.name, "place": place, "coordinator": cycler.address, "cell": None,
             "cell_index": None, "why": f"when the campaign opened it: {exc}", "processes_discarded": 0,
             "cell_retried": False}
    try:
        entry.update(cycler.cycle(worker.name, worker.shared.stop))
    except HostError as failed:
        entry.update(outcome="failed", error=str(failed))
        _log(worker, entry, f"power cycle of place {place} (not answering when opened) failed: {failed}")
        return False
    entry["outcome"] = "ok"
    _log(worker, entry, f"power-cycled place {place} of {cycler.address} ({entry['resource']}): it did not "
                        f"answer when the campaign opened it ({exc}); SSH answered "
                        f"{entry.get('ssh_after_s', 0):.1f} s after power on")
    worker._open_board()
    return True


def _restart(cell, protocol) -> None:
    """Forget the cell's processes so far: it starts again from its first process."""
    cell.outcomes, cell.docs, cell.arrays, cell.records = [], [], [], []
    cell.power = cell.thermal = cell.fidelity = None
    cell.progress = Progress(protocol)


def _note(entry: dict) -> str:
    """The board's note for a cycle that worked."""
    again = f"{entry['cell']} runs again from its first process" + (
        f" ({entry['processes_discarded']} process(es) before the cycle discarded)"
        if entry["processes_discarded"] else "") if entry["cell_retried"] else \
        f"{entry['cell']} is not retried a second time"
    return (f"power-cycled place {entry['place']} of {entry['coordinator']} ({entry['resource']}) after "
            f"{entry['cell']} stopped answering ({entry['why']}); SSH answered "
            f"{entry.get('ssh_after_s', 0):.1f} s after power on; {again}")


def _log(worker, entry: dict, note: str) -> None:
    """The cycle in ``campaign.json`` (this run's ``power_cycles``, saved now) and the board's notes."""
    shared = worker.shared
    worker.summary.notes.append(note)
    with shared.plan_lock:
        shared.plan.doc["runs"][-1].setdefault("power_cycles", []).append(entry)
        shared.plan.save()
