"""SIGTERM and SIGHUP handled like Ctrl-C for commands that run long (a CI job cancelled, a
terminal closed): the signal raises KeyboardInterrupt in the main thread, so the command
takes its Ctrl-C path (finished work kept, runners killed), and the exit code is
128 + the signal's number (143, 129) instead of 130."""

from __future__ import annotations

import contextlib
import signal

#: Signals turned into KeyboardInterrupt inside :func:`interruptible`.
HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Received:
    """The signal that interrupted the command, if any (``signum`` None: none or Ctrl-C)."""

    signum: int | None = None

    def exit_code(self, default: int = 130) -> int:
        return 128 + self.signum if self.signum else default


@contextlib.contextmanager
def interruptible():
    """Inside the block, SIGTERM and SIGHUP raise KeyboardInterrupt (recorded in the
    yielded :class:`Received`); the previous handlers come back on exit."""
    received = Received()

    def handler(signum, frame):
        received.signum = signum
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
