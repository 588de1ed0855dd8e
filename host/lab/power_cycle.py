"""Power-cycling the board of a labgrid place (issue 26): through the place's power resource
(a ``NetworkPowerPort`` of one of labgrid's PDU models, or any other power port labgrid's
``power`` command drives), then waiting until the board's SSH answers again.

How the power is switched: ``labgrid-client -x ADDRESS -p PLACE power cycle -t DELAY`` run as a
subprocess (``python -m labgrid.remote.client``, the same pinned labgrid as the import), while
this process holds the place (:class:`host.lab.coordinator.PlaceLease`; labgrid lets only the
holder switch it, and the child is the same ``host/user``). Why a subprocess rather than
building labgrid's ``Target`` + ``RemotePlace`` + ``NetworkPowerDriver`` in this process:

* the PDU backends call ``requests`` without a timeout (``labgrid/driver/power/shelly_gen1.py``,
  ``simplerest.py``): a power strip that accepts the connection and never answers would hang an
  in-process call for ever, and a thread cannot be interrupted; a child is killed at our
  deadline (:data:`SWITCH_TIMEOUT_S`) and the campaign goes on;
* labgrid's ``RemotePlaceManager`` is a process-wide singleton bound to one session and one
  asyncio loop, while our boards run in threads of their own; a child has its own;
* it is exactly the code path a lab's people use by hand (every power resource labgrid-client
  knows, the exporter's proxy included), so "it works with labgrid-client" means it works here.

The cost: a Python start per switch (about 1 s) and failures as text (exit status 1 and labgrid's
message, which is shown as the reason). Whether a place has a power resource at all is read
through the Python client first (:class:`host.lab.coordinator.PlaceInfo` ``resources``), so a
place without one is a typed error before anything is switched.

Errors raised (host/errors.py): NoPowerResourceError, PowerCycleError.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from host.errors import NoPowerResourceError, PowerCycleError
from host.lab.coordinator import PlaceInfo, SshAddress, normalise_address
from runners.util import utc_now

#: Resource classes (as a client sees them, exported) that labgrid-client's ``power`` drives.
POWER_RESOURCES = ("NetworkPowerPort", "PDUDaemonPort", "TasmotaPowerPort", "NetworkUSBPowerPort",
                   "NetworkSiSPMPowerPort", "NetworkYKUSHPowerPort", "NetworkSysfsGPIO")
#: Seconds between power off and power on (labgrid's NetworkPowerDriver default is 2 s; a board's
#: supply capacitors may need longer to drain).
DEFAULT_DELAY_S = 5.0
#: Seconds a board may take to answer SSH after power comes back (a Jetson boots in about 60 s).
DEFAULT_BOOT_S = 300.0
#: Seconds one ``labgrid-client power`` call may take beyond the off-on delay.
SWITCH_TIMEOUT_S = 60.0
#: Seconds between two SSH probes while a board boots.
PROBE_S = 1.0


def power_resource(info: PlaceInfo) -> str | None:
    """The class of the place's power resource (``NetworkPowerPort``, ...), None without one."""
    return next((cls for cls in info.resources if cls in POWER_RESOURCES), None)


def require_power(address: str, info: PlaceInfo) -> str:
    """The place's power resource class. Raises NoPowerResourceError (with the command that adds one)."""
    found = power_resource(info)
    if found is None:
        address = normalise_address(address)
        raise NoPowerResourceError(
            f"place {info.name} of {address} has no power resource (it matches: "
            f"{', '.join(info.resources) or 'nothing'}): nothing can switch its board off and on",
            address=address, place=info.name,
            hint=f"export a NetworkPowerPort for its outlet (docs/devices.md §10) and labgrid-client -x "
                 f"{address} -p {info.name} add-match EXPORTER/GROUP/NetworkPowerPort")
    return found


def switch(address: str, place: str, action: str, *, delay_s: float = DEFAULT_DELAY_S,
           timeout_s: float = SWITCH_TIMEOUT_S) -> float:
    """``labgrid-client power ACTION`` (``on``, ``off``, ``cycle``) on a place this process holds;
    seconds it took.

    Raises:
        PowerCycleError: labgrid-client failed (its last line is the reason) or took longer than
            ``timeout_s`` + ``delay_s`` (it is killed).
    """
    address = normalise_address(address)
    argv = [sys.executable, "-m", "labgrid.remote.client", "-x", address, "-p", place, "power", action,
            "-t", f"{delay_s:g}"]
    env = {k: v for k, v in os.environ.items() if k not in ("LG_PLACE", "LG_COORDINATOR", "LG_ENV")}
    start = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s + delay_s, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise PowerCycleError(
            f"place {place} of {address}: power {action} got no answer in {timeout_s + delay_s:.0f} s "
            "(the power strip or its exporter does not answer)", address=address, place=place,
            hint=f"check the strip: labgrid-client -x {address} -p {place} power get") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit status {done.returncode}"]
        raise PowerCycleError(f"place {place} of {address}: power {action} failed: {lines[-1]}",
                              address=address, place=place,
                              hint=f"labgrid-client -x {address} -p {place} power {action} shows it")
    return time.monotonic() - start


def ssh_answers(ssh: SshAddress, timeout_s: float = 2.0) -> bool:
    """Whether something at the address accepts a connection and sends an SSH identification
    line (``SSH-``) within ``timeout_s``."""
    try:
        with socket.create_connection((ssh.host, ssh.port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def wait_for_ssh(ssh: SshAddress, deadline_s: float, stop: threading.Event | None = None,
                 probe_s: float = PROBE_S) -> float:
    """Probe the board's SSH every ``probe_s`` until it answers; seconds waited.

    Raises:
        PowerCycleError: it did not answer within ``deadline_s``, or ``stop`` was set.
    """
    start = time.monotonic()
    while not ssh_answers(ssh):
        waited = time.monotonic() - start
        if waited >= deadline_s or (stop is not None and stop.is_set()):
            why = "interrupted" if stop is not None and stop.is_set() else f"not within {deadline_s:g} s"
            raise PowerCycleError(f"{ssh}: SSH did not answer after the power came back ({why})",
                                  hint="the board may not boot: look at its console (labgrid-client "
                                       "console), or give it longer (--boot-s)")
        time.sleep(min(probe_s, max(0.0, deadline_s - waited)))
    return time.monotonic() - start


def cycle_place(address: str, info: PlaceInfo, *, delay_s: float = DEFAULT_DELAY_S,
                boot_s: float = DEFAULT_BOOT_S, stop: threading.Event | None = None) -> dict:
    """Power-cycle a held place's board (off, ``delay_s``, on) and wait up to ``boot_s`` for its
    SSH. Returns the record that ``campaign.json`` and ``host power cycle --json`` keep: place,
    coordinator, resource, start time (UTC), delay, seconds the switch took, seconds until SSH
    answered.

    Raises:
        NoPowerResourceError: the place has no power resource.
        PowerCycleError: the switch failed, or SSH did not answer within ``boot_s``.
    """
    resource = require_power(address, info)
    record = {"place": info.name, "coordinator": normalise_address(address), "resource": resource,
              "start_utc": utc_now(), "delay_s": delay_s}
    record["switch_s"] = round(switch(address, info.name, "cycle", delay_s=delay_s), 3)
    if info.ssh is not None:
        record["ssh"] = str(info.ssh)
        record["ssh_after_s"] = round(wait_for_ssh(info.ssh, boot_s, stop), 3)
    return record


@dataclass
class PlaceCycler:
    """A campaign's power cycles (``host bench --coordinator ... --power-cycles N``): each board's
    place (``places``: device name -> held PlaceInfo), at most ``max_cycles`` cycles per board in
    one run, and the records of those done (``done``: device name -> [record])."""

    address: str
    places: dict
    max_cycles: int = 1
    delay_s: float = DEFAULT_DELAY_S
    boot_s: float = DEFAULT_BOOT_S
    done: dict = field(default_factory=dict)

    def why_not(self, device: str) -> str | None:
        """None when ``device`` can be power-cycled now; else why not (a note's words)."""
        info = self.places.get(device)
        if info is None:
            return "it is no place of a coordinator"
        if power_resource(info) is None:
            return f"place {info.name} has no power resource"
        if len(self.done.get(device, [])) >= self.max_cycles:
            return f"its {self.max_cycles} power cycle(s) of this run are spent (--power-cycles)"
        return None

    def cycle(self, device: str, stop: threading.Event | None = None) -> dict:
        """Power-cycle ``device``'s place (see :func:`cycle_place`); counted even when it fails.
        Raises NoPowerResourceError, PowerCycleError."""
        self.done.setdefault(device, []).append(None)
        record = cycle_place(self.address, self.places[device], delay_s=self.delay_s, boot_s=self.boot_s,
                             stop=stop)
        self.done[device][-1] = record
        return record
