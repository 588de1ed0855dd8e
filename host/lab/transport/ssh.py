"""A board over SSH: run a command (deadline, kill, interrupt), hold one open, probe the clock and
copy files by SFTP, on the connection :class:`host.lab.transport.ssh_connect.SshConnector` opens."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
from pathlib import Path

from host.errors import CommandAborted, TransportError, UnreachableError
from host.lab import sessions
from host.lab.transport.base import CLOCK_SCRIPT, OP_DEADLINE_S, CommandResult, LineReader, probe_loop
from host.lab.transport.ssh_connect import SshConnector


class _ConnectionLost(Exception):
    """Internal: the SSH channel or connection went away during a command."""


def _drain(chan, out: bytearray, err: bytearray, chunks: int = 64) -> None:
    """Move what a paramiko channel holds into ``out``/``err`` (at most ``chunks`` reads of
    64 KiB each, so a chatty command cannot keep the caller from its deadline)."""
    for _ in range(chunks):
        if not chan.recv_ready():
            break
        out.extend(chan.recv(65536))
    for _ in range(chunks):
        if not chan.recv_stderr_ready():
            break
        err.extend(chan.recv_stderr(65536))



def _drain_to_eof(chan, out: bytearray, err: bytearray, limit_s: float = 5.0) -> None:
    """After the exit status: read on until the board's EOF on the channel. sshd may send the
    exit status before the last of the output (RFC 4254 sets no order), so stopping at the
    status loses lines. ``limit_s`` bounds the wait when a process the command left behind
    keeps the output open."""
    end = time.monotonic() + limit_s
    while True:
        _drain(chan, out, err)
        if (chan.eof_received or chan.closed) and not chan.recv_ready() and not chan.recv_stderr_ready():
            return
        if time.monotonic() >= end:
            return
        time.sleep(0.002)



class _ChannelHolder(LineReader):
    """A long-lived command on an SSH channel (see :meth:`SshTransport.hold`)."""

    def __init__(self, chan):
        super().__init__()
        self.chan = chan

    @property
    def alive(self) -> bool:
        transport = self.chan.get_transport()
        return not (self.chan.closed or self.chan.exit_status_ready() or transport is None
                    or not transport.is_active())

    def _recv(self, left_s: float) -> bytes | None:
        self.chan.settimeout(left_s)
        try:
            return self.chan.recv(4096)
        except (socket.timeout, OSError, EOFError):
            return None

    def send(self, data: bytes) -> None:
        self.chan.settimeout(OP_DEADLINE_S)
        try:
            self.chan.sendall(data)
        except (socket.timeout, EOFError) as exc:
            raise OSError(f"lock holder gone: {exc}") from None

    def error(self) -> str:
        err = bytearray()
        while self.chan.recv_stderr_ready():
            err.extend(self.chan.recv_stderr(65536))
        return err.decode("utf-8", "replace")

    def close(self) -> None:
        try:
            self.chan.close()
        except Exception:  # best effort
            pass




class SshTransport(SshConnector):
    """A board over SSH with strict host-key checking (see :mod:`host.lab.transport`).

    Args:
        name: device name (for messages).
        host, port, user: where to connect (``user`` None = the local user name).
        key_file: private key (``ansible_ssh_private_key_file``); else ssh-agent and the
            default ``~/.ssh/id_*`` keys. Passwords are never used.
        known_hosts: known_hosts file checked (and, with ``accept_new_host_keys``, appended).
        connect_timeout: seconds per connection attempt.
        retries: connection attempts after the first (exponential backoff from ``backoff_s``).
        jump: one jump host ``[user@]host[:port]`` (ssh ``ProxyJump``): the board is reached
            through a ``direct-tcpip`` channel of an SSH connection to it, opened with the same
            known_hosts file, host-key policy, key file and timeouts (no user: the local one).
        key_source: where ``key_file`` was set (``inventory.ini:12``), for the error when the
            file is missing.
    """

    @property
    def conn(self):
        self.connect()
        return self._conn

    @contextlib.contextmanager
    def _deadline(self, limit_s: float, what: str):
        """Inside the block, a board that does not answer within ``limit_s`` seconds has its
        connection closed from a timer thread, so the blocked paramiko call returns with an
        error; :meth:`_frozen` then names what timed out. Paramiko waits without a limit for
        a channel request's answer and for SFTP's channel: this is the limit."""
        transport = self._conn.client.get_transport() if self._conn is not None else None

        def expire():
            self._expired = f"the board did not answer for {limit_s:.0f} s during {what}"
            if transport is not None:
                transport.close()

        timer = threading.Timer(limit_s, expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _active(self) -> bool:
        """Whether the SSH connection is still up (no round trip)."""
        transport = self._conn.client.get_transport() if self._conn is not None else None
        return transport is not None and transport.is_active()

    def _frozen(self, default: str) -> str:
        return getattr(self, "_expired", None) or default

    def sftp(self):
        """The SFTP session (opened on first use within :data:`OP_DEADLINE_S`; every read inside
        a transfer then waits at most :data:`OP_DEADLINE_S`)."""
        if self._sftp is None:
            conn = self.conn
            with self._deadline(OP_DEADLINE_S, "opening SFTP"):
                self._sftp = conn.sftp()
            self._sftp.get_channel().settimeout(OP_DEADLINE_S)
        return self._sftp

    # -- commands -----------------------------------------------------------------------

    def run(self, command: str, *, timeout: float | None = None, kill_pattern: str | None = None,
            on_kill: str | None = None, retry: bool = False) -> CommandResult:
        """Run a shell command on the board, as the leader of its own session.

        The deadline is ours (no library timer): on timeout, or when :meth:`abort` is called,
        the command's whole session on the board is killed by its session id and checked gone
        (:mod:`host.lab.sessions`; ``kill_pattern`` only if the id never arrived), then
        ``on_kill`` runs (e.g. ``docker rm -f NAME``). ``retry=True`` (idempotent commands
        only) reconnects and runs again once when the connection drops.

        Raises:
            CommandAborted: :meth:`abort` was called (before or during the command).
            HostKeyError, UnreachableError: see :meth:`connect`; ``UnreachableError`` also
                when the connection is lost during the command.
        """
        for attempt in (0, 1):
            self._refuse_if_aborted()
            try:
                return self._run_once(command, timeout, kill_pattern, on_kill)
            except _ConnectionLost as exc:
                self.close()
                if retry and attempt == 0:
                    continue
                raise UnreachableError(f"{self.name}: connection lost during a command: "
                                       f"{self._frozen(str(exc))}", device=self.name) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _open_channel(self):
        """A new session channel on the open connection. Raises _ConnectionLost."""
        import paramiko

        try:
            transport = self.conn.client.get_transport()
            if transport is None or not transport.is_active():
                raise _ConnectionLost("the SSH transport is closed")
            return transport.open_session(timeout=max(5.0, self.connect_timeout))
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _ConnectionLost(str(exc) or type(exc).__name__) from None

    def _run_once(self, command: str, timeout, kill_pattern, on_kill,
                  abortable: bool = True) -> CommandResult:
        start = time.monotonic()
        chan = self._open_channel()
        out, err = bytearray(), bytearray()
        try:
            try:
                with self._deadline(OP_DEADLINE_S, "starting a command"):
                    chan.exec_command(sessions.wrap(command))
                stop = self._pump(chan, out, err, None if timeout is None else start + timeout, abortable)
            except (OSError, EOFError) as exc:
                raise _ConnectionLost(str(exc) or type(exc).__name__) from None
            if stop is None:
                code = chan.recv_exit_status()
                if code == -1:  # channel closed without an exit status
                    raise _ConnectionLost("no exit status")
                _, stderr = sessions.split_sid(err.decode("utf-8", "replace"))
                return CommandResult(code, out.decode("utf-8", "replace"), stderr, time.monotonic() - start)
            note = self._kill_session(chan, out, err, kill_pattern, on_kill)
        finally:
            chan.close()
        if stop == "interrupted":
            raise CommandAborted(f"{self.name}: interrupted; the command's session was killed{note}",
                                 device=self.name)
        _, stderr = sessions.split_sid(err.decode("utf-8", "replace"))
        return CommandResult(None, out.decode("utf-8", "replace"), stderr + note, time.monotonic() - start,
                             timed_out=True)

    def _pump(self, chan, out: bytearray, err: bytearray, deadline: float | None,
              abortable: bool = True) -> str | None:
        """Read stdout/stderr until the command exits (None), the deadline passes ("timeout")
        or :meth:`abort` is called ("interrupted"). Raises _ConnectionLost."""
        status = getattr(chan, "status_event", None)
        while True:
            _drain(chan, out, err)
            if chan.exit_status_ready():
                _drain_to_eof(chan, out, err)
                return None
            if abortable and self._aborted.is_set():
                return "interrupted"
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"
            if chan.closed or not chan.get_transport().is_active():
                raise _ConnectionLost("channel closed")
            if status is not None:
                status.wait(0.02)
            else:  # pragma: no cover - every paramiko release has status_event
                time.sleep(0.02)

    def _kill_session(self, chan, out: bytearray, err: bytearray, kill_pattern, on_kill) -> str:
        """Kill the command's session on the board through a second channel; returns a note
        for stderr ("" when the session is gone)."""
        sid, _ = sessions.split_sid(err.decode("utf-8", "replace"))
        wait_until = time.monotonic() + 2.0
        while sid is None and time.monotonic() < wait_until and not chan.closed:
            time.sleep(0.02)  # the marker is the command's first write; it is on its way
            _drain(chan, out, err)
            sid, _ = sessions.split_sid(err.decode("utf-8", "replace"))
        script = sessions.kill_script(sid, pattern=None if sid is not None else kill_pattern, on_kill=on_kill)
        try:
            res = self._run_once(script, sessions.KILL_WAIT_S + 60, None, None, abortable=False)
        except (_ConnectionLost, TransportError) as exc:
            # the command passed its deadline and the board does not answer: frozen or cut off
            # (its runner is killed by the next run's sweep, host.lab.lease)
            self.stats.notes.append(f"could not kill session {sid} on {self.name}: {exc}")
            raise _ConnectionLost(f"the command passed its deadline and the board did not answer "
                                  f"the kill ({self._frozen(str(exc))})") from None
        if res.exit_code == 0:
            return ""
        self.stats.notes.append(f"session {sid} on {self.name} not fully killed: {res.stdout.strip()}")
        return f"\n[edgegauge] session {sid} not fully killed: {res.stdout.strip()}"

    def abort(self) -> None:
        """Stop: the command in flight (in another thread) has its whole session killed and
        raises :class:`CommandAborted`; no new command starts. Safe to call from any thread."""
        self._aborted.set()

    def hold(self, command: str) -> _ChannelHolder:
        """Start ``command`` on its own channel and keep it running while the caller holds it;
        it sees EOF on its stdin when the caller closes it or the connection ends.

        Raises:
            CommandAborted: :meth:`abort` was called.
            UnreachableError: the board cannot be reached or does not answer.
        """
        self._refuse_if_aborted()
        try:
            chan = self._open_channel()
            with self._deadline(OP_DEADLINE_S, "starting a command"):
                chan.exec_command(command)
        except (_ConnectionLost, OSError, EOFError) as exc:
            self.close()
            raise UnreachableError(f"{self.name}: cannot start a command: {self._frozen(str(exc))}",
                                   device=self.name) from None
        return _ChannelHolder(chan)

    def clock_probes(self, python: str, n: int = 7) -> list:
        """Bracketed reads of the board's CLOCK_MONOTONIC over one SSH channel: a small
        ``python`` loop on the board answers each line with ``time.monotonic_ns()``, so a
        probe costs one network round trip, not a new command (docs/power.md §8.6).

        Raises:
            UnreachableError: the connection failed or the probe did not answer.
        """
        import shlex

        import paramiko

        chan = None
        try:
            chan = self.conn.client.get_transport().open_session()
            chan.settimeout(max(5.0, self.connect_timeout))
            chan.exec_command(f"{shlex.quote(python)} -u -c {shlex.quote(CLOCK_SCRIPT)}")
            buf = bytearray()

            def recv_line():
                while b"\n" not in buf:
                    data = chan.recv(4096)
                    if not data:
                        err = chan.recv_stderr(4096).decode(errors="replace")
                        raise EOFError(f"board clock probe ended: {err.strip()[-300:]}")
                    buf.extend(data)
                line, _, rest = bytes(buf).partition(b"\n")
                buf[:] = rest
                return line

            return probe_loop(chan.sendall, recv_line, n)
        except (paramiko.SSHException, EOFError, OSError, ValueError) as exc:
            raise UnreachableError(f"{self.name}: clock probe failed: {exc}", device=self.name) from None
        finally:
            if chan is not None:
                chan.close()

    # -- files --------------------------------------------------------------------------

    def put(self, local: Path, remote: str) -> int:
        """Copy ``local`` to ``remote`` over SFTP atomically (``.part`` + rename).

        Raises:
            UnreachableError: the connection failed or dropped.
            OSError: the remote file cannot be written.
        """
        import paramiko

        part = remote + ".part"
        try:
            sftp = self.sftp()
            sftp.put(str(local), part)
            sftp.posix_rename(part, remote)
        except (paramiko.SSHException, EOFError, socket.error) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise
            if isinstance(exc, OSError) and not isinstance(exc, socket.timeout) and self._active():
                # the server refused the write (SFTP v3 says only "Failure": a full disk, a quota)
                self.remove(part)
                raise OSError(errno.EIO, f"SFTP could not write {part}: {exc}") from None
            self.close()
            raise UnreachableError(f"{self.name}: connection lost while sending {local.name}: "
                                   f"{self._frozen(str(exc) or type(exc).__name__)}",
                                   device=self.name) from None
        size = Path(local).stat().st_size
        self.stats.bytes_sent += size
        self.stats.files_sent += 1
        return size

    def read(self, remote: str) -> bytes:
        """Raises: OSError (missing file), UnreachableError (connection)."""
        import paramiko

        try:
            with self.sftp().open(remote, "rb") as fh:
                fh.prefetch()
                return fh.read()
        except (paramiko.SSHException, EOFError, socket.timeout) as exc:
            self.close()
            raise UnreachableError(f"{self.name}: connection lost while reading {remote}: "
                                   f"{self._frozen(str(exc) or type(exc).__name__)}",
                                   device=self.name) from None

    def remove(self, remote: str) -> None:
        try:
            self.sftp().remove(remote)
        except (OSError, Exception):  # best effort cleanup
            pass

    def close(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:
                pass
            self._sftp = None
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None
