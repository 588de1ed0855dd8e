"""SIGTERM and SIGHUP handled like Ctrl-C for commands that run long (a CI job cancelled, a
terminal closed): the signal raises KeyboardInterrupt in the main thread, so the command
takes its Ctrl-C path (finished work kept, runners killed), and the exit code is
128 + the signal's number (143, 129) instead of 130."""

from __future__ import annotations

import contextlib
import signal
import threading

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


class Cancel(Received):
    """The flag set by :func:`cancelling`: ``is_set`` is the cancel callable to hand to work
    that stops itself (``run_playbook(cancel=...)``); ``signum`` is the signal received
    (SIGINT too, so :meth:`exit_code` gives 130, 143 or 129)."""

    def __init__(self):
        self.event = threading.Event()

    def is_set(self) -> bool:
        return self.event.is_set()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "-"


@contextlib.contextmanager
def cancelling():
    """Inside the block, SIGINT (Ctrl-C), SIGTERM and SIGHUP set the yielded :class:`Cancel`
    instead of raising: for work that polls a cancel flag and stops its own child processes
    (ansible-runner's ``cancel_callback`` kills ``ansible-playbook``'s process group), where
    a KeyboardInterrupt raised mid-call would leave them running. The previous handlers come
    back on exit."""
    cancel = Cancel()

    def handler(signum, frame):
        cancel.signum = cancel.signum or signum  # the first signal names the interruption
        cancel.event.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, *HANDLED)}
    try:
        yield cancel
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
