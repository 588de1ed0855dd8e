"""How the host reaches a board: run a shell command, copy a file there, read one back.

Two transports behind one small interface, so deploy, check and the campaign loop are one
code path for every device:

* :class:`LocalTransport` — this machine (``--device local`` or ``ansible_connection=local``):
  ``/bin/sh -c`` in a fresh process group, files copied on the local file system.
* :class:`SshTransport` — a board over SSH (Fabric 3 / paramiko). Host keys are checked
  against a known_hosts file and an unknown or changed key is refused; only
  ``accept_new_host_keys=True`` trusts a first-seen key (and records it). Connecting is
  retried with exponential backoff; a board that still cannot be reached raises
  :class:`UnreachableError`.

Everything about a board's connection comes from the inventory: ``~/.ssh/config`` and
``/etc/ssh/ssh_config`` are NOT read (Fabric would apply their ``ProxyCommand``, ``HostName``,
``User``, ``IdentityFile``, ... behind the inventory's back), nor are Fabric's own config files.
Each failure to connect has its own error: a missing or unreadable key file (checked before
connecting), a port that answers but not with SSH, a refused connection, no answer in time, a
refused key, an unknown or changed host key. Paramiko's own log (tracebacks of its transport
thread) goes to a ``NullHandler``, not to stderr.

Commands are shell strings; callers build them with :func:`shlex.quote` (see
:func:`host.lab.shell.sh`). Source for the host-key handling: paramiko ``SSHClient``
(``RejectPolicy``, ``BadHostKeyException``) and docs/devices.md §8.

Rooms: :mod:`~host.lab.transport.base` (what both share: results, the line reader, the clock-probe
loop, constants), :mod:`~host.lab.transport.local`, :mod:`~host.lab.transport.ssh_connect` (opening
an SSH connection and what each failure means) and :mod:`~host.lab.transport.ssh` (using it).
"""

from host.lab.transport.base import (
    CLOCK_SCRIPT,
    KEEPALIVE_S,
    OP_DEADLINE_S,
    SIGNAL_BASE,
    CommandResult,
    TransferStats,
    Transport,
)
from host.lab.transport.local import LocalTransport
from host.lab.transport.ssh import SshTransport

__all__ = ["CLOCK_SCRIPT", "KEEPALIVE_S", "OP_DEADLINE_S", "SIGNAL_BASE", "CommandResult", "LocalTransport",
           "SshTransport", "TransferStats", "Transport"]
