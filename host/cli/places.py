"""Boards from a labgrid coordinator on the command line: ``host devices --coordinator`` (the
places table) and ``--coordinator ADDRESS --place NAME / --places TAG=VALUE`` for ``bench``,
``check`` and ``deploy`` (reserve, wait with a visible line on stderr, acquire; the places'
boards are the devices; released on every way out). Library: :mod:`host.lab.coordinator`."""

from __future__ import annotations

import contextlib
import time
from typing import Annotated, List, Optional

import typer

from host.errors import HostError, PlaceWaitInterrupted

CoordinatorOpt = Annotated[Optional[str], typer.Option(
    "--coordinator", metavar="ADDRESS",
    help="with --place or --places: run on places of this labgrid coordinator, HOST[:PORT] (port 20408 "
         "when left out), reserved in its queue, acquired, and released afterwards")]
ListCoordinatorOpt = Annotated[Optional[str], typer.Option(
    "--coordinator", metavar="ADDRESS",
    help="list the places of this labgrid coordinator, HOST[:PORT] (port 20408 when left out), instead")]
PlaceOpt = Annotated[Optional[List[str]], typer.Option(
    "--place", metavar="NAME", help="a place of --coordinator to reserve and run on; repeatable")]
PlacesOpt = Annotated[Optional[List[str]], typer.Option(
    "--places", metavar="TAG=VALUE",
    help="any one place of --coordinator with this tag (several: TAG=VALUE,TAG=VALUE); repeatable, "
         "one place each")]

#: Seconds between two lines of a reservation wait (sooner when the holders change).
WAIT_LINE_S = 15.0
#: Seconds ``check`` and ``deploy`` wait in a coordinator's queue (``bench``: ``--wait-lock``).
PLACE_WAIT_S = 600.0


def wants_of(coordinator, place, places, selection_given: bool) -> list:
    """The filters ``--place``/``--places`` ask for (``[]`` without ``--coordinator``).

    Raises typer.BadParameter: ``--place`` without ``--coordinator`` or the reverse, a coordinator
    together with ``--device``/``--group``/``--all``, or a malformed ``--places``."""
    from host.lab.coordinator import parse_want

    if coordinator is None:
        if place or places:
            raise typer.BadParameter("--place and --places name places of a coordinator: add --coordinator "
                                     "ADDRESS", param_hint="--place")
        return []
    if not (place or places):
        raise typer.BadParameter("name the places to run on: --place NAME or --places TAG=VALUE",
                                 param_hint="--coordinator")
    if selection_given:
        raise typer.BadParameter("the coordinator's places are the boards: leave out --device, --group "
                                 "and --all", param_hint="--coordinator")
    wants = [{"name": name} for name in place or []]
    for text in places or []:
        try:
            wants.append(parse_want(text))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--places") from None
    return wants


def chosen(held, select, inventory, device, group, all_devices: bool, coordinator, place, places) -> list:
    """``check``/``deploy``'s devices: the boards of the places asked for, held until ``held``
    (an ExitStack) closes (waiting up to :data:`PLACE_WAIT_S`), else ``select(...)``'s.
    Raises typer.BadParameter (see :func:`wants_of`) and what :func:`held_devices` raises."""
    wants = wants_of(coordinator, place, places, bool(device or group or all_devices))
    if not wants:
        return select(inventory, device, group, all_devices)[1]
    return held.enter_context(held_devices(coordinator, wants, inventory, PLACE_WAIT_S))


def wait_printer():
    """``on_wait`` for a PlaceLease: a line on stderr when the wait starts, when who holds the
    places changes, and every :data:`WAIT_LINE_S` seconds."""
    from host.cli.render import console

    last = {"at": -WAIT_LINE_S, "holders": None, "want": None}

    def on_wait(status) -> None:
        now = time.monotonic()
        same = (status.want, status.holders) == (last["want"], last["holders"])
        if same and now - last["at"] < WAIT_LINE_S:
            return
        last.update(at=now, holders=status.holders, want=status.want)
        who = ", ".join(status.holders) or "reservations ahead of this one"
        console(stderr=True).print(
            f"waiting for {status.want} (reservation {status.token}): held by {who}; "
            f"{status.waited_s:.0f} s of {status.wait_s:.0f} s", highlight=False, soft_wrap=True)

    return on_wait


@contextlib.contextmanager
def held_devices(coordinator: str, wants: list, inventory, wait_s: float, infos: dict | None = None):
    """Reserve and acquire the places (waiting up to ``wait_s`` s), yield their boards as
    devices (:func:`host.lab.placed.device_for`, matched against ``--inventory``; ``infos``, when
    given, gets device name -> its held PlaceInfo), release them on the way out. SIGTERM/SIGHUP
    raise KeyboardInterrupt meanwhile (host/cli/signals.py); one during
    the wait becomes PlaceWaitInterrupted (exit 130, 143, 129). Problems of the release while
    another error is on its way are printed as warnings.

    Raises: InventoryError, CoordinatorUnreachableError, NoSuchPlaceError, PlaceBusyError,
    PlaceWaitInterrupted, CoordinatorError."""
    from host.cli.render import console
    from host.cli.signals import interruptible
    from host.lab.coordinator import PlaceLease
    from host.lab.inventory import resolve_inventory
    from host.lab.placed import device_for

    inv = resolve_inventory(inventory)
    lease = PlaceLease(coordinator, wants, wait_s=wait_s, on_wait=wait_printer())
    with interruptible() as received:
        try:
            places = lease.__enter__()
        except KeyboardInterrupt:
            import signal

            why = signal.Signals(received.signum).name if received.signum else "Ctrl-C"
            exc = PlaceWaitInterrupted(f"{why} while waiting for places of {lease.address}: nothing ran, "
                                       "its reservations are cancelled", address=lease.address)
            exc.exit_code = received.exit_code()
            raise exc from None
        err = console(stderr=True)
        for info in places:
            err.print(f"acquired place {info.name} of {lease.address} ({info.ssh})", highlight=False)
        try:
            devices = [device_for(info, inv.in_scope()) for info in places]
            if infos is not None:
                infos.update({d.name: info for d, info in zip(devices, places)})
            yield devices
        except BaseException as exc:
            lease.__exit__(type(exc), exc, exc.__traceback__)
            for problem in lease.problems:
                err.print(f"warning: place not released: {problem}", highlight=False, soft_wrap=True)
            raise
        try:
            lease.__exit__(None, None, None)
        except HostError as exc:  # the run's own outcome is on disk; this one is the coordinator's
            err.print(f"error: {exc}", highlight=False, soft_wrap=True)
            err.print(f"hint: {exc.hint}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
    for info in places:
        err.print(f"released place {info.name}", highlight=False)


def print_places(coordinator: str, inventory, json_out: bool) -> None:
    """``host devices --coordinator``: every place with its tags, holder, reservation and SSH
    address, beside the family and runtime of the inventory board at that address.

    Raises: InventoryError, CoordinatorUnreachableError."""
    from host.cli.render import PlainTable as Table
    from host.cli.render import console, print_json
    from host.lab.coordinator import list_places, normalise_address
    from host.lab.inventory import resolve_inventory
    from host.lab.placed import matching_device

    inv = resolve_inventory(inventory)
    found = list_places(coordinator)
    rows = [(info, matching_device(info, inv.in_scope())) for info in found]
    if json_out:
        print_json({"coordinator": normalise_address(coordinator), "inventory": inv.resolution,
                    "places": [dict(info.to_json(), device=d and d.name, family=d and d.family,
                                    runtime=d and d.runtime) for info, d in rows]})
        return
    table = Table(title=f"places of {normalise_address(coordinator)} · inventory: {inv.resolution}",
                  title_justify="left")
    for col in ("place", "tags", "holder", "reservation", "ssh", "device", "family", "runtime"):
        table.add_column(col, no_wrap=col in ("place",))
    for info, device in rows:
        table.add_row(info.name, " ".join(f"{k}={v}" for k, v in sorted(info.tags.items())) or "-",
                      info.holder or "-", _reservation(info), str(info.ssh) if info.ssh else "-",
                      device.name if device else "-", (device.family or "-") if device else "-",
                      device.runtime if device else "-")
    out = console()
    out.print(table)
    if not found:
        out.print("no places: create one with labgrid-client -p NAME create (docs/devices.md)",
                  highlight=False)


def _reservation(info) -> str:
    """``acquired by host/user``, ``allocated to host/user``, ``-``; ``+ N waiting``."""
    text = f"{info.reservation} {'by' if info.reservation == 'acquired' else 'to'} {info.reservation_owner}" \
        if info.reservation else "-"
    return f"{text} + {info.waiting} waiting" if info.waiting else text
