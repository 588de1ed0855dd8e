"""``host power cycle``: switch a board off and on through the power resource of its labgrid
place (:mod:`host.lab.power_cycle`), and wait until its SSH answers again. Also the
``--power-cycles`` option of ``host bench`` (a campaign's power cycles, :func:`bench_cycler`).

Exit codes: 0 the board answered SSH again; 1 no coordinator, no such place, no power resource,
the switch failed or SSH did not answer in time (each a message and the next command); 2 bad
usage; 130/143/129 interrupted while waiting for the place (nothing switched)."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Annotated, Optional

import typer

from host.cli.lab import InventoryOpt, JsonOpt, fail
from host.cli.options import DAY_S, bounded
from host.errors import HostError, NoPowerResourceError, NoSuchPlaceError

app = typer.Typer(no_args_is_help=True, help="switch boards' power through their labgrid places: cycle")

DeviceArg = Annotated[Optional[str], typer.Argument(
    metavar="DEVICE", help="the inventory board (or place name) to power-cycle; its place is the one at "
                             "its SSH address")]
CycleCoordinatorOpt = Annotated[Optional[str], typer.Option(
    "--coordinator", metavar="ADDRESS",
    help="the labgrid coordinator whose place powers the board, HOST[:PORT] (port 20408 when left out)")]
CyclePlaceOpt = Annotated[Optional[str], typer.Option(
    "--place", metavar="NAME", help="the place to power-cycle (instead of DEVICE)")]
DelayOpt = Annotated[float, bounded(0, 600, "seconds between power off and power on", "--delay")]
BootOpt = Annotated[float, bounded(1, DAY_S, "seconds the board may take to answer SSH again", "--boot-s")]
PlaceWaitOpt = Annotated[float, bounded(
    0, 7 * DAY_S, "seconds to wait in the coordinator's queue for the place", "--wait-lock")]
PowerCyclesOpt = Annotated[int, bounded(
    0, 100, "with --coordinator: power-cycle a board that stops answering mid-campaign through its place's "
    "power resource, at most N times per board in this run, then run its remaining cells (the cell that "
    "hung runs again once); 0 = never", "--power-cycles")]


@app.command()
def cycle(
    device: DeviceArg = None,
    coordinator: CycleCoordinatorOpt = None,
    place: CyclePlaceOpt = None,
    inventory: InventoryOpt = None,
    delay: DelayOpt = 5.0,
    boot_s: BootOpt = 300.0,
    wait_lock: PlaceWaitOpt = 600.0,
    json_out: JsonOpt = False,
):
    """Power-cycle a board through its labgrid place: reserve and acquire the place (waiting in
    the coordinator's queue), switch its power resource off, wait --delay s, on, wait until the
    board's SSH answers (--boot-s), release the place. Inventory boards have no power switch of
    their own: name the coordinator whose place feeds them."""
    from host.cli.places import held_devices
    from host.cli.render import console, print_json
    from host.lab.power_cycle import cycle_place, require_power

    if not (device or place):
        raise typer.BadParameter("name the board (DEVICE) or the place (--place NAME)", param_hint="DEVICE")
    if device and place:
        raise typer.BadParameter("give DEVICE or --place, not both", param_hint="--place")
    try:
        if coordinator is None:
            raise NoPowerResourceError(
                f"{device or place}: an inventory board has no power switch edgegauge drives; power is "
                "switched through the power resource of a labgrid place",
                hint=f"host power cycle {device or '--place ' + place} --coordinator ADDRESS "
                     "(docs/devices.md §10)")
        name = place or _place_of(coordinator, device, inventory)
        infos: dict = {}
        with ExitStack() as held:
            held.enter_context(held_devices(coordinator, [{"name": name}], inventory, wait_lock, infos))
            info = next(iter(infos.values()))
            require_power(coordinator, info)
            err = console(stderr=True)
            err.print(f"power-cycling place {info.name}: off, {delay:g} s, on; then waiting up to "
                      f"{boot_s:g} s for SSH at {info.ssh}", highlight=False, soft_wrap=True)
            record = cycle_place(coordinator, info, delay_s=delay, boot_s=boot_s)
    except HostError as exc:
        fail(exc)
        return
    if json_out:
        print_json(record)
        return
    r = record
    console().print(f"power-cycled place {r['place']} ({r['resource']}, {r['switch_s']:.1f} s); SSH at "
                    f"{r.get('ssh', '-')} answered {r.get('ssh_after_s', 0):.1f} s after power on",
                    highlight=False, soft_wrap=True)


def _place_of(coordinator: str, device: str, inventory) -> str:
    """The place that is ``device``: a place of that name, else the place whose SSH address is the
    inventory board's (:func:`host.lab.placed.matching_device`). Raises NoSuchPlaceError,
    CoordinatorUnreachableError, InventoryError."""
    from host.lab.coordinator import list_places, normalise_address
    from host.lab.inventory import resolve_inventory
    from host.lab.placed import matching_device

    found = list_places(coordinator)
    if any(p.name == device for p in found):
        return device
    board = [d for d in resolve_inventory(inventory).in_scope() if d.name == device]
    for info in found:
        if board and matching_device(info, board) is not None:
            return info.name
    address = normalise_address(coordinator)
    raise NoSuchPlaceError(
        f"{address}: no place is {device!r} or answers at its inventory address "
        f"(places: {', '.join(p.name for p in found) or 'none'})", address=address,
        hint=f"host devices --coordinator {address} shows each place's board; or name it: --place NAME")


def bench_cycler(coordinator: Optional[str], infos: dict, power_cycles: int):
    """``host bench``'s PlaceCycler: None without ``--coordinator`` or with ``--power-cycles 0``."""
    if coordinator is None or power_cycles <= 0:
        return None
    from host.lab.power_cycle import PlaceCycler

    return PlaceCycler(coordinator, infos, max_cycles=power_cycles)
