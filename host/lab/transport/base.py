"""What both transports share: the command result, transfer counts, line reading with a deadline,
the clock-probe loop, the abort flag (:class:`Transport`) and the constants of a connection."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from host.errors import CommandAborted

# paramiko logs its transport thread's exceptions (with tracebacks) at ERROR; without a handler
# Python's last-resort handler prints them on stderr. The errors raised here say what happened.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

#: Exit codes ≥ this from ``sh -c`` mean "killed by signal (code - 128)".
SIGNAL_BASE = 128

#: Seconds between SSH keepalive messages on every connection (paramiko ``set_keepalive``):
#: a dead peer or a NAT that dropped the flow shows as a broken connection instead of silence.
KEEPALIVE_S = 5.0
#: Deadline (s) for one remote request that should answer at once (starting a command, opening
#: SFTP) and the longest silence accepted inside an SFTP transfer: a frozen board or link fails
#: the operation within this, instead of the TCP retransmission timeout (many minutes).
OP_DEADLINE_S = 30.0

#: Board side of the clock probe: answers each line on stdin with CLOCK_MONOTONIC in ns
#: (the clock the runner stamps its timed loop with).
CLOCK_SCRIPT = ("import sys, time\n"
                "for _ in sys.stdin:\n"
                "    sys.stdout.write('%d\\n' % time.monotonic_ns())\n"
                "    sys.stdout.flush()\n")


def probe_loop(send, recv_line, n: int) -> list:
    """``n`` bracketed reads of the board's monotonic clock: (t1_host_ns, board_ns, t2_host_ns)."""
    probes = []
    for _ in range(n):
        t1 = time.monotonic_ns()
        send(b"x\n")
        line = recv_line()
        t2 = time.monotonic_ns()
        probes.append((t1, int(line), t2))
    return probes


@dataclass
class CommandResult:
    """One remote (or local) shell command.

    ``exit_code`` is the shell's status (``128 + N`` = killed by signal N); ``None`` when
    the command was killed by us (``timed_out`` or an interrupt).
    """

    exit_code: int | None
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class TransferStats:
    """Bytes and files sent to one board by this host process."""

    bytes_sent: int = 0
    files_sent: int = 0
    notes: list = field(default_factory=list)



class LineReader:
    """Line reading with a deadline over a holder's ``_recv(left_s)``: bytes read, ``b""`` at EOF,
    or None when nothing came within ``left_s`` (or the link broke)."""

    def __init__(self):
        self._buf = bytearray()

    def _recv(self, left_s: float) -> bytes | None:
        raise NotImplementedError

    def readline(self, timeout: float) -> str:
        """One line of its stdout ("" at EOF, on a broken link or after ``timeout`` seconds)."""
        end = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = end - time.monotonic()
            data = self._recv(left) if left > 0 else None
            if data is None:
                return ""
            if not data:
                break
            self._buf.extend(data)
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf[:] = rest
        return line.decode("utf-8", "replace")



class Transport:
    """What both transports share: the board's name, transfer counts and the abort flag
    (set once by ``abort()``, never cleared: no command starts after it)."""

    def __init__(self, name: str):
        self.name = name
        self.stats = TransferStats()
        self._aborted = threading.Event()

    def _refuse_if_aborted(self) -> None:
        if self._aborted.is_set():
            raise CommandAborted(f"{self.name}: aborted; no new command is started", device=self.name)

