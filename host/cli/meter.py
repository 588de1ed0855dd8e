"""``host meter``: find serial ports, read a meter once, log it live, measure idle power.

A meter is named with ``--meter NAME --port PORT [--opt key=value]``, or taken from the
inventory with ``--device X [--inventory lab]`` (``meter``, ``meter_port``, ``meter_*``;
on-board sources such as ``jetson-ina3221`` are then read over SSH on the board).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from host.cli.lab import (
    AcceptNewOpt,
    ConnectTimeoutOpt,
    InventoryOpt,
    JsonOpt,
    KnownHostsOpt,
    board_options,
    fail,
)
from host.cli.options import DAY_S, bounded
from host.errors import HostError

app = typer.Typer(no_args_is_help=True, help="power meters: list ports, read, log, idle")


def _meter_help() -> str:
    """``--meter``'s help: the names the drivers declare (host/power/meters, ``MeterInfo.names``);
    when a driver is broken, a pointer to ``host meter list``, which then says what is wrong."""
    from host.power.meters import meter_names

    try:
        return "meter: " + " ".join(meter_names())
    except HostError:
        return "meter name (`host meter list` shows them)"


MeterOpt = Annotated[Optional[str], typer.Option("--meter", help=_meter_help())]
PortOpt = Annotated[Optional[str], typer.Option("--port", help="serial port or pyserial URL")]
OptOpt = Annotated[Optional[List[str]], typer.Option(
    "--opt", help="driver option key=value (e.g. baudrate=9600, rate=100MS, period_ms=20); repeatable")]
DeviceOpt = Annotated[Optional[str], typer.Option(
    "--device", "-d", help="take the meter from this inventory device instead")]


def _open(meter, port, opt, device, inventory, known_hosts, accept_new, connect_timeout):
    """Open the meter named on the command line or by an inventory device.

    Returns:
        (meter, transport or None) — close both.

    Raises:
        HostError (UnknownMeterError, MeterError, InventoryError, TransportError).
    """
    from host.power.meters import open_meter
    from host.power.session import MeterSpec, meter_spec

    options = _options(opt)
    transport = None
    if device:
        from host.cli.lab import select
        from host.lab.board import open_transport

        _, (dev,) = select(inventory, [device], None, False)
        spec = meter_spec(dev, meter, port)
        if spec is None:
            raise HostError(f"device {device!r} has no meter in the inventory",
                            hint="set meter= and meter_port= for it, or pass --meter and --port")
        spec.options.update(options)
        if spec.onboard:
            transport = open_transport(dev, board_options(known_hosts, accept_new, connect_timeout))
            spec.options["run"] = lambda cmd: transport.run(cmd, timeout=30).stdout
    else:
        if not meter:
            raise HostError("which meter? pass --meter NAME --port PORT, or --device X",
                            hint="`host meter list` shows serial ports")
        spec = MeterSpec(meter, port, options)
    try:
        return open_meter(spec.name, spec.port, **spec.options), transport
    except BaseException:
        if transport is not None:
            transport.close()
        raise


def _options(opt: Optional[List[str]]) -> dict:
    """``--opt key=value`` items as driver options (``key`` with ``-`` as ``_``; numbers as numbers).

    Raises:
        MeterOptionError: an item without ``=`` or without a key.
    """
    from host.errors import MeterOptionError
    from host.power.session import _value

    options = {}
    for item in opt or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise MeterOptionError(f"--opt {item!r} is not key=value",
                                   hint="e.g. --opt baudrate=9600 (each driver's options: docs/power.md)")
        options[key] = _value(value.strip())
    return options


@contextlib.contextmanager
def _meter(meter, port, opt, device, inventory, known_hosts, accept_new, connect_timeout):
    """The opened meter for one command; an error to open it ends the command (exit code,
    message, hint); the meter and its SSH connection are closed afterwards."""
    try:
        m, transport = _open(meter, port, opt, device, inventory, known_hosts, accept_new, connect_timeout)
    except HostError as exc:
        fail(exc)
    try:
        yield m
    finally:
        m.close()
        if transport is not None:
            transport.close()


@app.command("list")
def list_ports(
    json_out: JsonOpt = False,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="print docs/power.md's meter table (from the drivers) instead")] = False,
):
    """Serial ports on this host, with USB vendor/product where known, and the meter names."""
    from serial.tools import list_ports as lp

    from host.cli.render import PlainTable as Table
    from host.cli.render import console, print_json
    from host.power.meters import markdown_table, meter_names

    try:
        names = meter_names()
    except HostError as exc:
        fail(exc)
    if markdown:
        typer.echo(markdown_table(), nl=False)
        return

    ports = []
    for p in sorted(lp.comports(), key=lambda p: p.device):
        ports.append({"port": p.device, "description": p.description, "hwid": p.hwid,
                      "vid": f"{p.vid:04x}" if p.vid is not None else None,
                      "pid": f"{p.pid:04x}" if p.pid is not None else None,
                      "manufacturer": p.manufacturer, "product": p.product, "serial": p.serial_number})
    if json_out:
        print_json({"ports": ports, "meters": names})
        return
    table = Table(title="serial ports", title_justify="left")
    for col in ("port", "USB vid:pid", "manufacturer", "product", "description"):
        table.add_column(col)
    for p in ports:
        vidpid = f"{p['vid']}:{p['pid']}" if p["vid"] else "-"
        table.add_row(p["port"], vidpid, p["manufacturer"] or "-", p["product"] or "-", p["description"])
    out = console()
    out.print(table)
    if not ports:
        out.print("no serial ports found (Bluetooth UM meters appear after `rfcomm bind`)", highlight=False)
    out.print("meters: " + ", ".join(names), highlight=False)


def _reading_dict(reading) -> dict:
    return {"power_w": reading.power_w, "voltage_v": reading.voltage_v, "current_a": reading.current_a,
            "flags": list(reading.flags), "meter_seq": reading.meter_seq,
            "meter_time_s": reading.meter_time_s, "rails": reading.rails}


@app.command()
def read(
    meter: MeterOpt = None, port: PortOpt = None, opt: OptOpt = None, device: DeviceOpt = None,
    inventory: InventoryOpt = None, known_hosts: KnownHostsOpt = None,
    accept_new_host_keys: AcceptNewOpt = False, connect_timeout: ConnectTimeoutOpt = 10.0,
    json_out: JsonOpt = False,
):
    """Open the meter and print one reading (W, V, A)."""
    from host.cli.render import console, print_json

    with _meter(meter, port, opt, device, inventory, known_hosts, accept_new_host_keys,
                connect_timeout) as m:
        try:
            reading = m.read()
        except HostError as exc:
            fail(exc)
        desc = m.describe()
    doc = {**desc, **_reading_dict(reading)}
    if json_out:
        print_json(doc)
        return

    def fmt(v, unit):
        return "-" if v is None else f"{v:.4g} {unit}"

    flags = f"  flags {list(reading.flags)}" if reading.flags else ""
    console().print(f"{desc['model']} on {desc['port']} ({desc['scope']}): "
                    f"{fmt(reading.power_w, 'W')}  {fmt(reading.voltage_v, 'V')}  "
                    f"{fmt(reading.current_a, 'A')}{flags}", highlight=False)


@app.command()
def log(
    meter: MeterOpt = None, port: PortOpt = None, opt: OptOpt = None, device: DeviceOpt = None,
    inventory: InventoryOpt = None,
    seconds: Annotated[float, bounded(0.1, 7 * DAY_S, "how long to log, seconds")] = 30.0,
    out: Annotated[Optional[Path], typer.Option(help="CSV file for the samples")] = None,
    known_hosts: KnownHostsOpt = None, accept_new_host_keys: AcceptNewOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
):
    """Sample the meter for --seconds with a live display, streaming the samples to a CSV file
    (flushed every 0.25 s, so Ctrl-C, SIGTERM or SIGHUP keeps every sample taken: exit 130,
    143, 129)."""
    import csv

    from host.cli.render import console, styled
    from host.cli.signals import interruptible
    from host.power import CSV_COLUMNS, Sampler
    from host.power.sampler import csv_row

    err = console(stderr=True)
    path = out or Path(f"meter-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.power.csv")
    with _meter(meter, port, opt, device, inventory, known_hosts, accept_new_host_keys,
                connect_timeout) as m, open(path, "w", encoding="utf-8", newline="") as fh, \
            interruptible() as received:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        sampler = Sampler(m, phase="log")
        sampler.start()
        written, interrupted = [0], False  # rows on disk, updated by the loop as it goes
        try:
            _log_loop(sampler, seconds, err, writer, fh, written)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            samples = sampler.stop()
            for sample in samples[written[0]:]:
                writer.writerow(csv_row(sample))
            fh.flush()
            os.fsync(fh.fileno())
    console().print(f"{len(samples)} samples, {len(sampler.errors)} errors -> {path}", highlight=False)
    if interrupted:
        err.print(f"interrupted: the {len(samples)} samples taken are in {path}", highlight=False)
        raise typer.Exit(received.exit_code(130))
    if sampler.fatal_error:
        err.print(styled(("error:", "red"), f" meter stopped: {sampler.fatal_error}"), highlight=False)
        raise typer.Exit(1)


def _log_loop(sampler, seconds: float, err, writer, fh, written: list) -> None:
    """The live display of ``meter log``; appends new samples to the CSV every 0.25 s and
    keeps ``written[0]`` = the rows on disk (also when interrupted)."""
    from rich.live import Live

    from host.power.sampler import csv_row

    end = time.monotonic() + seconds
    with Live(console=err, refresh_per_second=4, transient=False) as live:
        while time.monotonic() < end:
            samples = sampler.samples
            for sample in samples[written[0]:]:
                writer.writerow(csv_row(sample))
                written[0] += 1
            fh.flush()
            valid = [s.power_w for s in samples if s.power_w is not None]
            last = valid[-1] if valid else None
            spread = (f"  min {min(valid):.3f}  mean {sum(valid) / len(valid):.3f}  "
                      f"max {max(valid):.3f} W") if valid else ""
            now = "-" if last is None else f"{last:.3f}"
            live.update(f"{len(samples)} samples  now {now} W{spread}  errors {len(sampler.errors)}"
                        f"  {max(0.0, end - time.monotonic()):.0f} s left")
            time.sleep(0.25)


@app.command()
def idle(
    meter: MeterOpt = None, port: PortOpt = None, opt: OptOpt = None, device: DeviceOpt = None,
    inventory: InventoryOpt = None,
    settle_s: Annotated[float, bounded(0, 3600, "settle before the window, seconds")] = 5.0,
    window_s: Annotated[float, bounded(0.1, 3600, "idle window, seconds")] = 10.0,
    known_hosts: KnownHostsOpt = None, accept_new_host_keys: AcceptNewOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0, json_out: JsonOpt = False,
):
    """Measure idle power alone: settle, then an idle window; idle = median of the window."""
    from host.cli.render import console, print_json
    from host.power import measure_idle

    with _meter(meter, port, opt, device, inventory, known_hosts, accept_new_host_keys,
                connect_timeout) as m:
        try:
            doc = measure_idle(m, settle_s=settle_s, window_s=window_s).to_dict()
        except HostError as exc:
            fail(exc)
        doc["meter"] = m.describe()
    if json_out:
        print_json(doc)
    else:
        console().print(f"idle {doc.get('power_w_idle')} W (median of {doc.get('n_samples')} samples; "
                        f"std {doc.get('power_w_std')} W; stable {doc.get('stable')})", highlight=False)
    if not doc.get("n_samples"):
        raise typer.Exit(1)
