"""``host bench``'s progress: one line per board on stderr while the campaign runs (the lock
wait's countdown, each cell's outcome)."""

from __future__ import annotations

import math


def run_bench(found, found_devices, options, *, ssh, power, cycler=None):
    """Step 4 of bench: run the campaign (``options``: a CampaignOptions; SSH options ``ssh``, power
    sessions from ``power``, power cycles through labgrid places by ``cycler``), one progress line per
    board on stderr. Returns the CampaignResult;
    raises what :func:`host.campaign.run.run_campaign` raises."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from host.campaign.run import run_campaign
    from host.cli.render import console
    from host.lab.board import Board, open_transport

    with Progress(
        TextColumn("{task.fields[board]:<14}", markup=False), BarColumn(bar_width=24), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("{task.description}", markup=False),  # names are text, not markup
        console=console(stderr=True), transient=False,
    ) as progress:
        tasks = {d.name: progress.add_task("waiting", total=len(found), board=d.name) for d in found_devices}
        return run_campaign(found, found_devices, options, on_event=_progress_handler(progress, tasks),
                            open_board=lambda d: Board(d, open_transport(d, ssh)), power=power,
                            cycler=cycler)


def _progress_handler(progress, tasks: dict):
    """``on_event`` for run_campaign: updates the board's progress line."""
    waits: dict = {}  # board -> seconds left when a wait line was last printed
    outcomes: dict = {}  # board -> its last cell's line, which the finished line shows

    def on_event(event):
        task = tasks[event.device]
        if getattr(event, "total", None):  # the cells planned for the board (precisions, batches)
            progress.update(task, total=event.total)
        if event.state == "connecting":
            progress.update(task, description="connecting")
        elif event.state == "running":
            progress.update(task, description=f"{event.model.stem} ({event.index}/{event.total})")
        elif event.state == "profiling":
            progress.update(task, description=f"{event.model.stem}: heap profile")
        elif event.state == "idle":
            progress.update(task, description="measuring idle power")
        elif event.state in ("reference", "power_cycle"):
            progress.update(task, description=event.message)
        elif event.state == "lock_wait":
            _lock_wait(progress, task, event, waits)
        elif event.state == "board_down":
            progress.update(task, description=f"{event.category or 'failed'}: {event.message}")
        elif event.state in ("done", "skipped"):
            status = (event.doc or {}).get("status", "?")
            outcomes[task] = f"{event.model.stem}: {status}" + (" (kept)" if event.state == "skipped" else "")
            progress.update(task, advance=1, description=outcomes[task])
        elif event.state == "finished":
            last = outcomes.get(task, progress.tasks[task].description)  # not the reference workload's
            progress.update(task, description=last + " · finished")

    return on_event


def _lock_wait(progress, task, event, waits: dict) -> None:
    """A board's lock is held by another run: a line naming the holder when the wait starts, the
    countdown in the progress line, and (not a terminal, where that line does not redraw) a line
    every 30 s."""
    left = max(0, int(math.ceil(event.seconds or 0)))
    clock = f"{left // 60}:{left % 60:02d}"
    last = waits.get(event.device)
    if last is None:
        progress.console.print(
            f"{event.device}: busy, in use by {event.message}; waiting up to {clock} for it to end "
            "(--wait-lock SECONDS; --no-wait fails at once; --break-lock takes it over)", highlight=False)
        waits[event.device] = left
    elif not progress.console.is_terminal and last - left >= 30:
        progress.console.print(f"{event.device}: still waiting for the lock, {clock} left", highlight=False)
        waits[event.device] = left
    progress.update(task, description=f"busy: waiting for the lock, {clock} left")


def bench_power_factory(meter, meter_port, options, **settings):
    """``(device, board, folder) -> PowerSession | None`` for run_campaign (the local device without a
    meter: :func:`host.power.local.local_power_session`)."""
    from host.lab.board import open_transport
    from host.power.session import PowerSession, meter_spec

    def factory(device, board, folder):
        spec = meter_spec(device, meter, meter_port)
        if spec is None:  # --device local: its own counters (RAPL, NVML), else "no source"; others: none
            from host.power.local import local_power_session

            return local_power_session(device, board, folder, **settings)
        run = on_close = None
        if spec.onboard:  # on-board sources are read on the board, over their own connection
            transport = open_transport(device, options)
            run = lambda cmd: transport.run(cmd, timeout=30).stdout  # noqa: E731
            on_close = transport.close
        return PowerSession(spec, board, folder, run=run, on_close=on_close, **settings)

    return factory
