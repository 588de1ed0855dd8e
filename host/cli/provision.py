"""``host provision`` and ``host power-mode show|tune|reset``: the playbooks in
``playbooks/`` run through ansible-runner (:mod:`host.lab.ansible`) with a live per-host
display and a recap. Registered on the main app by :mod:`host.cli`.

Exit codes: 0 every host succeeded; 1 a host failed or was unreachable (the message names
the host, the task and Ansible's message); 2 bad usage; 130 interrupted by Ctrl-C, 143 by
SIGTERM (a cancelled CI job), 129 by SIGHUP (a closed terminal): ansible-playbook is stopped
(its whole process group), the artifacts and the per-host results received are kept and shown,
and the message names the task it stopped in and what to run next.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from host.cli.lab import AllOpt, DeviceOpt, GroupOpt, InventoryOpt, JsonOpt, fail, select
from host.cli.options import DAY_S, bounded
from host.cli.places import CoordinatorOpt, PlaceOpt, PlacesOpt
from host.errors import HostError, PlaybookInterrupted, SelectionError

LimitOpt = Annotated[Optional[str], typer.Option(
    "--limit", "-l", help="Ansible host pattern, intersected with the selection, e.g. 'rpi:!rpi4-2'")]
ArtifactsOpt = Annotated[Path, typer.Option(
    help="ansible-runner private data folder; each run's artifacts are kept there (last 20)")]
TimeoutOpt = Annotated[Optional[int], bounded(1, int(7 * DAY_S), "stop ansible-playbook after, seconds")]
AskBecomeOpt = Annotated[bool, typer.Option(
    "--ask-become-pass", "-K", help="ask for the boards' sudo password (for boards whose sudo wants one)")]
BecomeFileOpt = Annotated[Optional[Path], typer.Option(
    "--become-password-file", help="read the boards' sudo password from this file (first line)")]

power_app = typer.Typer(
    name="power-mode",
    help="show, tune or reset boards' power modes (playbooks/power_mode.yml).",
    no_args_is_help=True,
)

#: power_mode.yml's last task; it reports ``edgegauge_power_state`` for every host.
POWER_STATE_TASK = "Edgegauge power state"
#: What to run next after ``host power-mode TAG`` was interrupted.
_INTERRUPTED_HINTS = {
    "show": "run `host power-mode show` again (it changes nothing)",
    "tune": "a board may be left between modes: `host power-mode show` says what each is in now; "
            "run `host power-mode tune` again to finish, or `host power-mode reset` to go back",
    "reset": "a board may be partly restored: run `host power-mode reset` again to finish "
             "(`host power-mode show` says what each is in now)",
}


def _become_password(ask: bool, path: Optional[Path]) -> Optional[str]:
    """The sudo password from a hidden prompt (``-K``) or a file; None when neither is asked.

    Raises:
        SelectionError: both given, or the file cannot be read.
    """
    if ask and path is not None:
        raise SelectionError("give --ask-become-pass or --become-password-file, not both")
    if path is not None:
        try:
            lines = Path(path).expanduser().read_text().splitlines()
        except OSError as exc:
            raise SelectionError(f"cannot read the become password file {path}: {exc.strerror}") from None
        return lines[0] if lines else ""
    if ask:
        return typer.prompt("BECOME password", hide_input=True, default="", show_default=False)
    return None


def _target(inventory, device, group, all_devices, limit, held=None,
            placed=(None, None, None)) -> tuple[Path, str, list]:
    """(inventory file, Ansible limit pattern, selected devices). ``placed``: ``--coordinator``,
    ``--place``, ``--places``: the boards of those places, held until ``held`` (an ExitStack)
    closes; each must be an inventory host (Ansible reaches boards through the inventory)."""
    from host.cli.places import chosen
    from host.lab.inventory import resolve_inventory

    if any(placed):
        found = chosen(held, select, inventory, device, group, all_devices, *placed)
        inv = resolve_inventory(inventory)
        off = [d.name for d in found if d.source.startswith("labgrid place")]
        if off:
            raise SelectionError(f"no inventory board answers at the address of place(s) {', '.join(off)}: "
                                 f"Ansible reaches boards through the inventory ({inv.resolution})",
                                 hint="add the board to the inventory with the place's address "
                                      "(ansible_host, ansible_port) and pass it with --inventory")
    else:
        inv, found = select(inventory, device, group, all_devices)
    if inv.path is None:
        raise SelectionError("no inventory file", hint="write ./inventory.ini or pass --inventory FILE")
    if any(d.name == "local" and d.family == "local" for d in found):
        raise SelectionError("`local` is this machine, not an inventory board: playbooks run on boards only",
                             hint="add the machine to the inventory (ansible_connection=local)")
    pattern = ",".join(d.name for d in found)
    if limit:
        pattern = f"{pattern}:&{limit}"
    return Path(inv.path), pattern, found


class _Progress:
    """Live table of hosts: the task in progress and their counts so far."""

    STATES = ("ok", "changed", "failed", "unreachable", "skipped")

    def __init__(self, hosts: list, title: str):
        self.title = title
        self.task = "starting"
        self.rows = {h: {"task": "-", **{s: 0 for s in self.STATES}} for h in hosts}
        self.live = None

    def render(self):
        from host.cli.render import PlainTable as Table  # host and task names are text, not markup

        table = Table(title=f"{self.title} — task: {self.task}", title_justify="left")
        for col in ("host", "last task", *self.STATES):
            table.add_column(col)
        for host, row in self.rows.items():
            table.add_row(host, row["task"], *(str(row[s]) for s in self.STATES))
        return table

    def __call__(self, event) -> None:
        if event.kind == "task":
            self.task = event.task
        elif event.kind in self.STATES and event.host:
            row = self.rows.setdefault(event.host, {"task": "-", **{s: 0 for s in self.STATES}})
            row[event.kind] += 1
            row["task"] = event.task or "-"
        if self.live is not None:
            self.live.update(self.render())

    def __enter__(self):
        from rich.live import Live

        from host.cli.render import console

        self.live = Live(self.render(), console=console(stderr=True), refresh_per_second=4, transient=True)
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.live.__exit__(*exc)
        self.live = None


def _recap_table(run, title: str):
    from host.cli.render import PlainTable as Table
    from host.cli.render import plain

    mode = " (check mode: nothing was changed; 'would change' counts what a real run changes)" \
        if run.check else ""
    if run.partial:
        mode += " (partial: the results received before ansible-playbook was stopped)"
    table = Table(title=f"{title}: {run.status} in {run.duration_s:.1f} s{mode}", title_justify="left")
    for col in ("host", "result", "ok", "would change" if run.check else "changed", "unreachable", "failed",
                "skipped", "rescued", "ignored"):
        table.add_column(col)
    for host, r in sorted(run.recap.items()):
        result = (plain("stopped", "yellow") if r.success and run.partial
                  else plain("ok", "green") if r.success
                  else plain("unreachable", "red") if r.unreachable else plain("failed", "red"))
        table.add_row(host, result, str(r.ok), str(r.changed), str(r.unreachable), str(r.failed),
                      str(r.skipped), str(r.rescued), str(r.ignored))
    return table


def _play(playbook: str, what: str, inventory, device, group, all_devices, limit, artifacts, timeout,
          json_out: bool, *, tags=None, extravars=None, collect=None, check=False, become=(False, None),
          placed=(None, None, None)):
    """Run one playbook with the live display (or none, for --json); print the recap. With
    ``placed`` (``--coordinator``, ``--place``, ``--places``) on the places' boards, held meanwhile.

    Returns (the :class:`host.lab.ansible.PlaybookRun`, the :class:`host.cli.signals.Cancel`
    set by Ctrl-C, SIGTERM or SIGHUP during the play, which stops it)."""
    from contextlib import ExitStack

    with ExitStack() as held:
        path, pattern, found = _target(inventory, device, group, all_devices, limit, held, placed)
        return _play_on(playbook, what, path, pattern, found, artifacts, timeout, json_out, tags=tags,
                        extravars=extravars, collect=collect, check=check, become=become)


def _play_on(playbook: str, what: str, path, pattern, found, artifacts, timeout, json_out: bool, *, tags,
             extravars, collect, check, become):
    from host.cli.render import console
    from host.cli.signals import cancelling
    from host.lab.ansible import run_playbook

    password = _become_password(*become)
    with cancelling() as cancel:
        options = dict(limit=pattern, tags=tags, extravars=extravars, private_dir=artifacts,
                       collect=collect, timeout_s=timeout, check=check, become_password=password,
                       cancel=cancel.is_set)
        if json_out:
            run = run_playbook(playbook, path, **options)
        else:
            progress = _Progress([d.name for d in found], what)
            with progress:
                run = run_playbook(playbook, path, on_event=progress, **options)
    if not json_out:
        out = console()
        out.print(_recap_table(run, what))
        out.print(f"artifacts: {run.artifact_dir}", highlight=False)
    return run, cancel


def _outcome(run, cancel, *, what: str, hint: str, interrupted_hint: str) -> None:
    """Raise unless every host succeeded; a canceled run raises PlaybookInterrupted with the
    exit code of the signal that stopped it (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).

    Raises:
        PlaybookInterrupted, PlaybookFailed (see :func:`host.lab.ansible.raise_for_failures`).
    """
    from host.cli.render import console
    from host.lab.ansible import raise_for_failures

    try:
        raise_for_failures(run, what=what, hint=hint)
    except PlaybookInterrupted as exc:
        console(stderr=True).print(f"{what}: {cancel.name} received", highlight=False)
        exc.exit_code = cancel.exit_code(exc.exit_code)
        exc.hint = interrupted_hint
        raise


def provision(
    inventory: InventoryOpt = None,
    device: DeviceOpt = None,
    group: GroupOpt = None,
    all_devices: AllOpt = False,
    limit: LimitOpt = None,
    artifacts: ArtifactsOpt = Path("results/ansible"),
    timeout: TimeoutOpt = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Ansible check mode: report what would change on each board; change nothing")
    ] = False,
    ask_become_pass: AskBecomeOpt = False,
    become_password_file: BecomeFileOpt = None,
    json_out: JsonOpt = False,
    coordinator: CoordinatorOpt = None,
    place: PlaceOpt = None,
    places: PlacesOpt = None,
):
    """Bring boards to "ready for host bench" with playbooks/provision.yml (ansible-runner):
    container engine and image, or the ZCU104 native bundle; work folder. Idempotent: a
    second run changes nothing. Then `host deploy` and `host check`. With --check nothing is
    changed: the recap counts what a real run would change.
    """
    from host.cli.render import print_json

    try:
        run, cancel = _play("provision.yml", "host provision" + (" --check" if check else ""), inventory,
                            device, group, all_devices, limit, artifacts, timeout, json_out, check=check,
                            become=(ask_become_pass, become_password_file),
                            placed=(coordinator, place, places))
        if json_out:
            print_json(run.to_json())
        _outcome(run, cancel, what="host provision",
                 hint="fix the cause on the board (or its inventory variables) and run "
                      "`host provision` again; it only changes what is missing",
                 interrupted_hint="run `host provision` again when ready: it only changes what is "
                                  "still missing (this run's log stays in the artifacts)")
    except HostError as exc:
        fail(exc)


def _power(tag: str, inventory, device, group, all_devices, limit, artifacts, timeout, json_out,
           extravars=None, become=(False, None), placed=(None, None, None)):
    from host.cli.render import console, print_json

    what = f"host power-mode {tag}"
    try:
        run, cancel = _play("power_mode.yml", what, inventory, device, group, all_devices, limit, artifacts,
                            timeout, json_out, tags=[tag], extravars=extravars, collect=POWER_STATE_TASK,
                            become=become, placed=placed)
        if json_out:
            print_json(run.to_json())
        else:
            console().print(power_table(run.reports))
        _outcome(run, cancel, what=what, hint="`host power-mode show` prints what each board is in now",
                 interrupted_hint=_INTERRUPTED_HINTS[tag])
    except HostError as exc:
        fail(exc)


def power_table(reports: dict):
    """Per host: family, the mode key and the facts behind it (``edgegauge.power_state/1``)."""
    from host.cli.render import PlainTable as Table

    table = Table(title="power state", title_justify="left")
    for col in ("host", "family", "mode", "details", "errors"):
        table.add_column(col)
    for host, state in sorted(reports.items()):
        state = state if isinstance(state, dict) else {}
        table.add_row(host, str(state.get("family", "-")), str(state.get("mode_key") or "-"),
                      power_details(state), "; ".join(state.get("errors") or []) or "-")
    return table


def power_details(state: dict) -> str:
    """A few lines naming the facts of one power state (nvpmodel, governors, GPU, DPU)."""
    lines = []
    nv = state.get("nvpmodel") or {}
    if nv:
        lines.append(f"nvpmodel {nv.get('name')} (id {nv.get('id')})")
    for policy, p in sorted((state.get("cpufreq") or {}).items()):
        lines.append(f"{policy} cpus {p.get('cpus')}: {p.get('governor')} max {p.get('max_khz')} kHz")
    for gpu in state.get("gpu") or []:
        lines.append(f"gpu{gpu.get('index')} {gpu.get('name')}: persistence {gpu.get('persistence_mode')}, "
                     f"SM lock {gpu.get('locked_sm_clocks') or 'none'}")
    dpu = state.get("dpu") or {}
    if dpu:
        lines.append(f"DPU {dpu.get('arch')} fingerprint {dpu.get('fingerprint')} "
                     f"clock {dpu.get('clock_mhz')} MHz")
    return "\n".join(lines) or "-"


@power_app.command()
def show(
    inventory: InventoryOpt = None,
    device: DeviceOpt = None,
    group: GroupOpt = None,
    all_devices: AllOpt = False,
    limit: LimitOpt = None,
    artifacts: ArtifactsOpt = Path("results/ansible"),
    timeout: TimeoutOpt = None,
    ask_become_pass: AskBecomeOpt = False,
    become_password_file: BecomeFileOpt = None,
    json_out: JsonOpt = False,
    coordinator: CoordinatorOpt = None,
    place: PlaceOpt = None,
    places: PlacesOpt = None,
):
    """Report each board's power mode, governors, clocks (changes nothing)."""
    _power("show", inventory, device, group, all_devices, limit, artifacts, timeout, json_out,
           become=(ask_become_pass, become_password_file), placed=(coordinator, place, places))


@power_app.command()
def tune(
    inventory: InventoryOpt = None,
    device: DeviceOpt = None,
    group: GroupOpt = None,
    all_devices: AllOpt = False,
    limit: LimitOpt = None,
    mode: Annotated[Optional[str], typer.Option(
        help="Jetson: nvpmodel mode NAME (e.g. MAXN, MODE_15W); ARM CPU: cpufreq governor; "
             "A100: 'max' or MIN,MAX MHz SM clock lock [each family's default]")] = None,
    allow_reboot: Annotated[bool, typer.Option(
        "--allow-reboot", help="let a Jetson reboot when the chosen mode needs it (else refused)")] = False,
    artifacts: ArtifactsOpt = Path("results/ansible"),
    timeout: TimeoutOpt = None,
    ask_become_pass: AskBecomeOpt = False,
    become_password_file: BecomeFileOpt = None,
    json_out: JsonOpt = False,
    coordinator: CoordinatorOpt = None,
    place: PlaceOpt = None,
    places: PlacesOpt = None,
):
    """Put boards in the benchmark power mode (Jetson nvpmodel + jetson_clocks, ARM cpufreq
    governor and max frequency, A100 persistence mode and locked clocks); the state before
    is stored on the board for `reset`. A second tune changes nothing."""
    extravars = {"power_allow_reboot": allow_reboot}
    if mode:
        extravars["power_mode_name"] = mode
    _power("tune", inventory, device, group, all_devices, limit, artifacts, timeout, json_out, extravars,
           become=(ask_become_pass, become_password_file), placed=(coordinator, place, places))


@power_app.command()
def reset(
    inventory: InventoryOpt = None,
    device: DeviceOpt = None,
    group: GroupOpt = None,
    all_devices: AllOpt = False,
    limit: LimitOpt = None,
    artifacts: ArtifactsOpt = Path("results/ansible"),
    timeout: TimeoutOpt = None,
    ask_become_pass: AskBecomeOpt = False,
    become_password_file: BecomeFileOpt = None,
    json_out: JsonOpt = False,
    coordinator: CoordinatorOpt = None,
    place: PlaceOpt = None,
    places: PlacesOpt = None,
):
    """Restore the state stored by `tune` (nvpmodel mode, jetson_clocks, governors, clocks)."""
    _power("reset", inventory, device, group, all_devices, limit, artifacts, timeout, json_out,
           become=(ask_become_pass, become_password_file), placed=(coordinator, place, places))
