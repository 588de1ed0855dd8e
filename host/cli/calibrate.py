"""``host calibrate``: a device's noise levels from the reference workload (:mod:`host.campaign.reference`),
stored in ``<results>/.devices/<device>.json`` and shown by ``host devices`` and ``host report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from host.cli.lab import AcceptNewOpt, ConnectTimeoutOpt, InventoryOpt, JsonOpt, KnownHostsOpt, fail
from host.errors import HostError


def calibrate(
    device: Annotated[str, typer.Option("--device", "-d", help="the device to calibrate (inventory host, "
                                                               "or local)")],
    campaigns: Annotated[int, typer.Option(help="short campaigns, each a fresh connection (1..100)")] = 3,
    processes: Annotated[int, typer.Option(help="fresh reference processes per campaign (2..100)")] = 5,
    results: Annotated[Path, typer.Option(help="results root folder; the figures go to "
                                               "RESULTS/.devices/DEVICE.json")] = Path("results"),
    inventory: InventoryOpt = None,
    known_hosts: KnownHostsOpt = None,
    accept_new_host_keys: AcceptNewOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    json_out: JsonOpt = False,
):
    """Measure how much a device's speed moves: the reference workload (python -m runners
    reference, about 1 s a process) in --campaigns short campaigns of --processes fresh processes.

    Stores the noise levels, as sds of log latency (relative): within a process, between
    processes, between campaigns, and "speed varies ±X % between runs" (95 % of re-runs), which
    host devices --results and host report show.
    """
    from host.campaign.reference import calibrate as run_calibration
    from host.campaign.reference import store_device_noise, varies_line
    from host.cli.lab import board_options, select
    from host.cli.render import console, print_json
    from host.lab.board import Board, open_transport

    out = console(stderr=json_out)
    try:
        _, found = select(inventory, [device], None, False)
        if len(found) != 1:
            raise HostError(f"--device {device} selects {len(found)} devices; calibrate one at a time",
                            hint="name one inventory host")
        ssh = board_options(known_hosts, accept_new_host_keys, connect_timeout)

        def progress(c, p, doc):
            out.print(f"campaign {c}/{campaigns} process {p}/{processes}: p50 {doc['latency_ms_p50']:.4g} ms",
                      highlight=False)

        doc = run_calibration(found[0], lambda d: Board(d, open_transport(d, ssh)), campaigns, processes,
                              on_run=progress)
        path = store_device_noise(results, doc)
    except HostError as exc:
        fail(exc)
        return
    except OSError as exc:
        fail(HostError(f"cannot write the device's figures under {results}: {exc}",
                       hint="pass --results to a writable folder"))
        return
    if json_out:
        print_json(doc)
        return
    n = doc["noise"]

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f} %"

    out.print(f"{doc['device']}: within a process {pct(n['within_process'])}, between processes "
              f"{pct(n['between_processes'])}, between campaigns {pct(n['between_campaigns'])} (sd of log "
              "latency)", highlight=False)
    out.print(f"{doc['device']}: {varies_line(doc)}", highlight=False)
    out.print(f"wrote {path}", highlight=False)
