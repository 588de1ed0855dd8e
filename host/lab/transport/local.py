"""This machine as a board (``--device local``, ``ansible_connection=local``): ``/bin/sh -c`` in a
fresh process group, files copied on the local file system."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from host.errors import CommandAborted, TransportError
from host.lab import sessions
from host.lab.transport.base import (
    CLOCK_SCRIPT,
    SIGNAL_BASE,
    CommandResult,
    LineReader,
    Transport,
    probe_loop,
)


class _LocalHolder(LineReader):
    """A long-lived child process (see :meth:`LocalTransport.hold`)."""

    def __init__(self, proc: subprocess.Popen):
        super().__init__()
        self.proc = proc

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _recv(self, left_s: float) -> bytes | None:
        import select

        fd = self.proc.stdout.fileno()
        return os.read(fd, 4096) if select.select([fd], [], [], left_s)[0] else None

    def send(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def error(self) -> str:
        return "" if self.alive else (self.proc.stderr.read() or b"").decode("utf-8", "replace")

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()




class LocalTransport(Transport):
    """This machine. ``run`` uses ``/bin/sh -c`` in a new session so a timeout or Ctrl-C
    kills the whole process tree."""

    kind = "local"

    def __init__(self, name: str = "local"):
        super().__init__(name)
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def connect(self) -> None:
        """Nothing to connect; present for interface symmetry."""

    def run(self, command: str, *, timeout: float | None = None, kill_pattern: str | None = None,
            on_kill: str | None = None, retry: bool = False) -> CommandResult:
        """Run ``command`` with ``/bin/sh -c`` as the leader of a new session; on timeout (or
        :meth:`abort`) kill the whole session (:mod:`host.lab.sessions`) and run ``on_kill``.
        ``kill_pattern`` is accepted for symmetry with :class:`SshTransport` (the session id is
        always known here).

        Raises:
            CommandAborted: :meth:`abort` was called (before or during the command).
            OSError: ``/bin/sh`` cannot be started.
        """
        start = time.monotonic()
        with self._lock:  # abort() either comes first (refused here) or sees the process
            self._refuse_if_aborted()
            proc = subprocess.Popen(["/bin/sh", "-c", command], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                    start_new_session=True)
            self._proc = proc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            out, err, note = self._kill_session(proc, on_kill)
            return CommandResult(None, out, err + note, time.monotonic() - start, timed_out=True)
        except BaseException:  # Ctrl-C in this thread: never leave a runner behind
            self._kill_session(proc, on_kill)
            raise
        finally:
            with self._lock:
                self._proc = None
        if self._aborted.is_set():
            self._kill_session(proc, on_kill)
            raise CommandAborted(f"{self.name}: interrupted; the command's session was killed",
                                 device=self.name)
        code = proc.returncode
        if code < 0:  # sh itself killed by a signal
            code = SIGNAL_BASE - code
        return CommandResult(code, out or "", err or "", time.monotonic() - start)

    def _kill_session(self, proc: subprocess.Popen, on_kill: str | None) -> tuple:
        """SIGKILL the session of ``proc`` until nothing of it is left, reap it, run ``on_kill``;
        returns the output read so far and a note when processes survived."""
        sid = proc.pid
        self._killpg(proc)
        try:
            proc.wait(timeout=sessions.KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            pass
        script = sessions.kill_script(sid, on_kill=on_kill)
        res = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                             start_new_session=True, timeout=sessions.KILL_WAIT_S + 60)
        note = "" if res.returncode == 0 else f"\n[edgegauge] session {sid} not fully killed: {res.stdout}"
        try:  # pipes held by a process that left the session must not hang us
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            for stream in (proc.stdout, proc.stderr):
                stream.close()
            out, err = "", ""
        return out or "", err or "", note

    @staticmethod
    def _killpg(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def abort(self) -> None:
        """Stop: kill the command in flight (its whole session) and refuse new ones. Safe to call
        from another thread (the CLI's signal handling does)."""
        with self._lock:
            self._aborted.set()
            proc = self._proc
        if proc is not None:
            self._killpg(proc)

    def hold(self, command: str) -> _LocalHolder:
        """Start ``command`` (``/bin/sh -c``, own session) with pipes for as long as the caller
        keeps it: it sees EOF on its stdin when the caller closes it or this process dies.

        Raises:
            CommandAborted: :meth:`abort` was called.
        """
        self._refuse_if_aborted()
        return _LocalHolder(subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             start_new_session=True))

    def clock_probes(self, python: str, n: int = 7) -> list:
        """Bracketed reads of this machine's monotonic clock through a child ``python``
        (same clock: the offset comes out near 0, which checks the method).

        Raises:
            TransportError: the interpreter cannot be started or answers garbage.
        """
        proc = subprocess.Popen([python, "-u", "-c", CLOCK_SCRIPT], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            def send(data):
                proc.stdin.write(data)
                proc.stdin.flush()
            return probe_loop(send, proc.stdout.readline, n)
        except (OSError, ValueError) as exc:
            raise TransportError(f"{self.name}: clock probe failed: {exc}", device=self.name) from None
        finally:
            proc.kill()
            proc.wait()

    def put(self, local: Path, remote: str) -> int:
        """Copy ``local`` to ``remote`` atomically (``.part`` then rename); returns bytes."""
        part = remote + ".part"
        Path(part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, part)
        os.replace(part, remote)
        size = Path(remote).stat().st_size
        self.stats.bytes_sent += size
        self.stats.files_sent += 1
        return size

    def read(self, remote: str) -> bytes:
        """Raises: OSError (missing, unreadable)."""
        return Path(remote).read_bytes()

    def remove(self, remote: str) -> None:
        try:
            os.unlink(remote)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Nothing to close."""


