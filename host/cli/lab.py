"""Lab commands of the ``host`` CLI: ``devices``, ``check``, ``deploy``, and the options
shared with ``bench`` (inventory, device selection, SSH settings).

Registered on the main app by :mod:`host.cli`; errors become messages only here and there.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Callable, List, Optional

import typer

from host.cli.options import bounded
from host.cli.places import CoordinatorOpt, ListCoordinatorOpt, PlaceOpt, PlacesOpt, chosen
from host.errors import HostError

InventoryOpt = Annotated[Optional[str], typer.Option(
    "--inventory", "-i",
    help="inventory file, or a NAME: NAME.ini, else inventories/NAME.ini, else group NAME of "
         "./inventory.ini [./inventory.ini]")]
DeviceOpt = Annotated[Optional[List[str]], typer.Option(
    "--device", "-d", help="device (inventory host; a group name selects its hosts); repeatable")]
GroupOpt = Annotated[Optional[List[str]], typer.Option(
    "--group", "-g", help="every device of an inventory group; repeatable")]
AllOpt = Annotated[bool, typer.Option("--all", help="every device of the inventory (or its scope)")]
KnownHostsOpt = Annotated[Optional[Path], typer.Option(
    help="known_hosts file to check host keys against [the inventory's UserKnownHostsFile, "
         "else ~/.ssh/known_hosts]")]
AcceptNewOpt = Annotated[bool, typer.Option(
    "--accept-new-host-keys",
    help="trust a board's key on first connection and record it (a CHANGED key is always refused)")]
ConnectTimeoutOpt = Annotated[float, bounded(0.1, 3600, "SSH connect timeout, seconds")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def fail(exc: HostError) -> None:
    """Print a HostError (message + hint) on stderr and exit with its code."""
    from host.cli.render import console, styled

    err = console(stderr=True)  # the message is text: "[group]" in it stays
    err.print(styled(("error:", "red"), f" {exc}"), highlight=False, soft_wrap=True)
    if exc.hint:
        err.print(f"hint: {exc.hint}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def select(inventory: str | None, device, group, all_devices: bool):
    """Resolve the inventory and the selected devices (all in scope when none named).

    Raises:
        InventoryError, UnknownDeviceError.
    """
    from host.lab.inventory import resolve_inventory

    inv = resolve_inventory(inventory)
    devices = inv.select(devices=device or (), groups=group or (), all_devices=all_devices)
    if not devices:
        raise HostError(f"no devices selected ({inv.resolution})",
                        hint="add boards to the inventory, or use --device local")
    return inv, devices


def board_options(known_hosts, accept_new, connect_timeout):
    from host.lab.board import BoardOptions

    return BoardOptions(known_hosts=known_hosts, accept_new_host_keys=accept_new,
                        connect_timeout=connect_timeout)


def on_boards(devices, options, fn: Callable) -> list:
    """``fn(board)`` for every device at once (one thread and one connection each, closed
    afterwards); results in device order."""
    from host.lab.board import Board, open_transport

    def one(device):
        board = Board(device, open_transport(device, options))
        try:
            return fn(board)
        finally:
            board.transport.close()

    with ThreadPoolExecutor(max_workers=max(1, len(devices)), thread_name_prefix="board") as pool:
        return list(pool.map(one, devices))


def devices(
    inventory: InventoryOpt = None,
    device: DeviceOpt = None,
    group: GroupOpt = None,
    json_out: JsonOpt = False,
    results: Annotated[Path, typer.Option(
        help="results root whose .devices/ holds `host calibrate` figures [results]")] = Path("results"),
    coordinator: ListCoordinatorOpt = None,
):
    """List the devices: the inventory's, with family, address and settings, and the built-in
    local device (this machine) when none is named (connects to nothing).

    --inventory NAME resolves to NAME.ini, else inventories/NAME.ini, else the group NAME
    of ./inventory.ini; the resolution is printed above the table. Family: the device family
    (edgegauge_family, or a group named for a family); - when not known. Stability: how much the
    device's speed varies between runs (95 % of re-runs), from `host calibrate` into --results,
    else from the device's history on this host (every campaign's reference runs; - with fewer
    than 2 campaigns).

    --coordinator ADDRESS lists the places of a labgrid coordinator instead: tags, holder,
    reservation, SSH address, and the family and runtime of the inventory board at that address.
    """
    from host.cli.render import PlainTable as Table
    from host.cli.render import console, print_json

    try:
        if coordinator is not None:
            if device or group:
                raise typer.BadParameter("--coordinator lists every place: leave out --device and --group",
                                         param_hint="--coordinator")
            from host.cli.places import print_places

            return print_places(coordinator, inventory, json_out)
        inv, found = _listed(inventory, device, group)
    except HostError as exc:
        fail(exc)
        return
    if json_out:
        print_json({"inventory": str(inv.path) if inv.path else None, "resolution": inv.resolution,
                    "devices": [dict(d.to_json(), stability=_stability(results, d.name)[0]) for d in found]})
        return
    table = Table(title=f"inventory: {inv.resolution}", title_justify="left")
    for col in ("device", "family", "address", "runtime", "mode", "image / python", "workdir", "defined at",
                "stability"):
        table.add_column(col, no_wrap=col in ("device", "address"))
    lines = []
    for d in found:
        figures, line = _stability(results, d.name)
        table.add_row(d.name, d.family or "-", d.address, d.runtime, d.mode,
                      d.image if d.mode == "container" else d.python, d.workdir, d.source,
                      f"±{figures['varies_pct_95']:.1f} %" if figures else "-")
        lines += [f"{d.name}: {line}"] if line else []
    console().print(table)
    for line in lines:
        console().print(line, highlight=False, soft_wrap=True)


def _stability(results: Path, device: str) -> tuple:
    """(figures, line): the device's noise from ``host calibrate`` under ``results``, else its
    between-campaign spread from its history on this host; (None, None) when neither has one."""
    from host.campaign.device_effect import host_stability
    from host.campaign.reference import read_device_noise, varies_line

    noise = read_device_noise(results, device)
    if noise:
        return noise["noise"], varies_line(noise)
    found = host_stability(device)
    if found is None:
        return None, None
    return found, (f"speed varies ±{found['varies_pct_95']:.1f} % between campaigns (95 %; the device's "
                   f"history on this host: {found['campaigns']} campaigns, {found['df']} degrees of freedom)")


def _listed(inventory, device, group) -> tuple:
    """``host devices``' inventory and devices: those selected, or (none named) every device in
    scope and then the built-in ``local`` unless the inventory has a host of that name.

    Raises:
        InventoryError, UnknownDeviceError.
    """
    from host.lab.inventory import local_device, resolve_inventory

    if device or group:
        return select(inventory, device, group, False)
    inv = resolve_inventory(inventory)
    found = inv.select()
    return inv, found + ([] if "local" in inv.devices else [local_device()])


def check(
    inventory: InventoryOpt = None,
    device: DeviceOpt = None,
    group: GroupOpt = None,
    all_devices: AllOpt = False,
    known_hosts: KnownHostsOpt = None,
    accept_new_host_keys: AcceptNewOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    json_out: JsonOpt = False,
    coordinator: CoordinatorOpt = None,
    place: PlaceOpt = None,
    places: PlacesOpt = None,
):
    """Connect to each board in parallel; print facts and a readiness verdict.

    Exit code: 0 every board ready; 2 reachable but not ready, or a placeholder address (the
    example inventory's documentation addresses: not connected to); 1 a board is unreachable.
    --coordinator ADDRESS --place NAME / --places TAG=VALUE checks the boards of labgrid places,
    reserved and acquired for the check and released after it.
    """
    from host.cli.render import PlainTable as Table
    from host.cli.render import console, plain, print_json

    with ExitStack() as held:
        try:
            found = chosen(held, select, inventory, device, group, all_devices, coordinator, place, places)
        except HostError as exc:
            fail(exc)
            return
        reports = _check_reports(found, board_options(known_hosts, accept_new_host_keys, connect_timeout))
    if json_out:
        print_json([r.to_json() for r in reports])
    else:
        table = Table(title="host check", title_justify="left")
        for col in ("device", "verdict", "arch", "cores", "mem GiB", "kernel", "OS", "python",
                    "engine", "runtime", "power mode", "problems"):
            table.add_column(col)
        style = {"ready": plain("ready", "green"), "not ready": plain("not ready", "yellow"),
                 "unreachable": plain("unreachable", "red"), "placeholder": plain("placeholder", "yellow")}
        for r in reports:
            f = r.facts
            engine = f.get("docker") or f.get("podman") or "-"
            power = f.get("nvpmodel") or (f"governor {f['governor']}" if f.get("governor") else "-")
            table.add_row(r.device, style[r.verdict], f.get("arch", "-"), str(f.get("cores", "-")),
                          str(f.get("mem_gib", "-")), f.get("kernel", "-"), f.get("os", "-"),
                          f.get("python", "-"), engine, f.get("runtime", "-"), power,
                          "; ".join(r.problems) or "-")
        out = console()
        out.print(table)
        for r in reports:
            for note in r.notes:
                out.print(f"{r.device}: {note}", highlight=False)
    verdicts = {r.verdict for r in reports}
    if "unreachable" in verdicts:
        raise typer.Exit(1)
    if verdicts & {"not ready", "placeholder"}:
        raise typer.Exit(2)


def _check_reports(found: list, options) -> list:
    """``host check``'s reports in device order: a placeholder address is reported as such
    (:func:`host.lab.facts.placeholder_report`), every other board is connected to and checked."""
    from host.lab.facts import placeholder_report

    placeholders = {d.name: placeholder_report(d) for d in found}
    real = [d for d in found if placeholders[d.name] is None]
    checked = dict(zip([d.name for d in real], on_boards(real, options, lambda board: board.check()) if real
                       else []))
    return [placeholders[d.name] or checked[d.name] for d in found]


def deploy(
    models: Annotated[Optional[List[Path]], typer.Argument(
        help="ONNX files or folders to stage on the boards too (content-addressed)")] = None,
    inventory: InventoryOpt = None,
    device: DeviceOpt = None,
    group: GroupOpt = None,
    all_devices: AllOpt = False,
    known_hosts: KnownHostsOpt = None,
    accept_new_host_keys: AcceptNewOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    json_out: JsonOpt = False,
    coordinator: CoordinatorOpt = None,
    place: PlaceOpt = None,
    places: PlacesOpt = None,
):
    """Prepare boards in parallel: work folder, runner package (by content hash; skipped when
    there), container image (present, loaded from image_archive, or pulled) or the native
    runtime import check, and optionally the given models. One board's failure never stops
    the others. Exit code 1 when any board failed.

    With --coordinator ADDRESS and --place NAME (or --places TAG=VALUE): the boards of labgrid
    places, each held for the deploy only.
    """
    from host.campaign.run import discover_models
    from host.cli.render import PlainTable as Table
    from host.cli.render import console, human_bytes, plain, print_json, styled

    def one(board):
        report = board.deploy(staged)
        report.notes = list(board.transport.stats.notes)
        return report

    with ExitStack() as held:
        try:
            staged = discover_models(models) if models else []
            found = chosen(held, select, inventory, device, group, all_devices, coordinator, place, places)
        except HostError as exc:
            fail(exc)
            return
        reports = on_boards(found, board_options(known_hosts, accept_new_host_keys, connect_timeout), one)
    if json_out:
        print_json([r.to_json() for r in reports])
    else:
        table = Table(title="host deploy", title_justify="left")
        for col in ("device", "result", "steps", "sent"):
            table.add_column(col)
        for r in reports:
            steps = "\n".join(f"{k}: {v}" for k, v in r.steps)
            if r.error:
                steps = styled(steps + "\n" if steps else "", (r.error, "red"))
            table.add_row(r.device, plain("ok", "green") if r.ok else plain("failed", "red"), steps,
                          human_bytes(r.bytes_sent))
        out = console()
        out.print(table)
        for r in reports:
            for note in r.notes:
                out.print(f"{r.device}: {note}", highlight=False)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)
