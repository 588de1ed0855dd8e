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
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from host.errors import (
    CommandAborted,
    HostKeyError,
    KeyFileError,
    NotSshError,
    SshAuthError,
    TransportError,
    UnreachableError,
)
from host.lab import sessions

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


def _probe_loop(send, recv_line, n: int) -> list:
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

class _LineReader:
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


class _LocalHolder(_LineReader):
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


class _ChannelHolder(_LineReader):
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


class _Transport:
    """What both transports share: the board's name, transfer counts and the abort flag
    (set once by ``abort()``, never cleared: no command starts after it)."""

    def __init__(self, name: str):
        self.name = name
        self.stats = TransferStats()
        self._aborted = threading.Event()

    def _refuse_if_aborted(self) -> None:
        if self._aborted.is_set():
            raise CommandAborted(f"{self.name}: aborted; no new command is started", device=self.name)


class LocalTransport(_Transport):
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
            return _probe_loop(send, proc.stdout.readline, n)
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


class _AcceptNewPolicy:
    """Trust on first use: record an unknown key in ``path`` (OpenSSH's
    ``StrictHostKeyChecking=accept-new``). A changed key still fails in paramiko before
    any policy is asked."""

    _file_lock = threading.Lock()

    def __init__(self, path: Path, stats: TransferStats):
        self.path = path
        self.stats = stats

    def missing_host_key(self, client, hostname, key):  # paramiko policy interface
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with self._file_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(self.path, "a", encoding="ascii") as fh:
                fh.write(line)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.stats.notes.append(
            f"recorded new host key {key.get_name()} {key.fingerprint} for {hostname} in {self.path}")


def _fabric_config():
    """A Fabric config that reads no file: no ssh_config (user's or system's), no Fabric/Invoke
    config files; the inventory is the only source of a connection's settings."""
    import fabric
    import paramiko

    return fabric.Config(lazy=True, ssh_config=paramiko.SSHConfig(), overrides={"load_ssh_configs": False})


#: paramiko's messages when the SSH protocol never started (no or no valid banner in time).
_NO_SSH = re.compile(r"banner|Indecipherable protocol|No existing session|Negotiation failed")


def _banner(host: str, port: int, timeout: float) -> bytes | None:
    """The first bytes a server at ``host:port`` sends within ``timeout`` seconds (b"" when it
    closes at once; None when it cannot be reached or sends nothing in time)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return sock.recv(200)
    except OSError:
        return None


@functools.cache
def _connection_class():
    """``fabric.Connection`` whose ``close()`` also closes its gateway ``Connection`` (Fabric
    leaves a ProxyJump gateway open when the connection through it closes)."""
    import fabric

    class _Connection(fabric.Connection):
        def close(self):
            try:
                super().close()
            finally:
                if isinstance(self.gateway, fabric.Connection):
                    self.gateway.close()

    return _Connection


def _discard(conn) -> None:
    """Close a Connection whose ``open()`` failed (its paramiko client may hold a transport
    that Fabric's ``close()`` skips) and its gateway."""
    conn.client.close()
    conn.close()


class SshTransport(_Transport):
    """A board over SSH with strict host-key checking (see the module docstring).

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

    kind = "ssh"

    def __init__(self, name: str, host: str, port: int = 22, user: str | None = None, *,
                 key_file: str | None = None, known_hosts: Path | None = None,
                 accept_new_host_keys: bool = False, connect_timeout: float = 10.0,
                 retries: int = 2, backoff_s: float = 0.5, jump: str | None = None,
                 key_source: str | None = None):
        super().__init__(name)
        self.key_source = key_source
        self.host = host
        self.port = int(port)
        self.user = user
        self.key_file = key_file
        self.known_hosts = Path(known_hosts or Path.home() / ".ssh" / "known_hosts").expanduser()
        self.accept_new = accept_new_host_keys
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.jump = jump
        self._conn = None
        self._sftp = None

    @property
    def key_name(self) -> str:
        """How known_hosts names this board: ``host`` or ``[host]:port``."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    # -- connection ---------------------------------------------------------------------

    def _open_once(self):
        import paramiko

        kwargs: dict = {"banner_timeout": self.connect_timeout, "auth_timeout": self.connect_timeout,
                        "allow_agent": True, "look_for_keys": self.key_file is None}
        if self.key_file:
            kwargs["key_filename"] = str(Path(self.key_file).expanduser())
        policy = _AcceptNewPolicy(self.known_hosts, self.stats) if self.accept_new \
            else paramiko.RejectPolicy()

        def connection(host: str, **extra):
            conn = _connection_class()(host, config=_fabric_config(), connect_timeout=self.connect_timeout,
                                       connect_kwargs=dict(kwargs), **extra)
            if self.known_hosts.exists():
                conn.client.load_host_keys(str(self.known_hosts))
            conn.client.set_missing_host_key_policy(policy)
            return conn

        gateway = self._open_jump(connection(self.jump)) if self.jump else None
        conn = connection(self.host, user=self.user, port=self.port, gateway=gateway)
        try:
            conn.open()
        except paramiko.ChannelException as exc:  # only the gateway opens channels here
            _discard(conn)
            where = f"jump host {self.jump} cannot open a connection to {self.host}:{self.port}"
            if exc.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                raise UnreachableError(f"{self.name}: {where}: forwarding refused ({exc.text})",
                                       device=self.name,
                                       hint="the jump host's sshd must allow it (AllowTcpForwarding, "
                                            "PermitOpen)") from None
            raise ConnectionError(f"{where} ({exc.text})") from None
        except BaseException:
            _discard(conn)
            raise
        return conn

    def _open_jump(self, gateway):
        """Open the jump host's connection; its failures name it (host keys and authentication
        are not retried, like the board's own; anything else is, as a ``ConnectionError``)."""
        import paramiko

        where = f"{self.name}: jump host {self.jump}"
        key_name = gateway.host if gateway.port == 22 else f"[{gateway.host}]:{gateway.port}"
        try:
            gateway.open()
            return gateway
        except paramiko.BadHostKeyException as exc:
            raise HostKeyError(
                f"{where}: host key of {key_name} has CHANGED: it offered {exc.key.get_name()} "
                f"{exc.key.fingerprint}, {self.known_hosts} expects {exc.expected_key.fingerprint}; "
                "refusing to connect", device=self.name,
                hint=f"if it was reinstalled, check the new key, then "
                     f"`ssh-keygen -R '{key_name}' -f {self.known_hosts}`") from None
        except paramiko.AuthenticationException as exc:
            raise SshAuthError(f"{where}: SSH authentication failed ({exc})", device=self.name,
                                   hint="the jump host gets the board's key (ansible_ssh_private_key_file) "
                                        "or ssh-agent; give its user as ProxyJump=user@host") from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise HostKeyError(
                    f"{where}: host key of {key_name} is not in {self.known_hosts}; refusing to connect "
                    "to an unknown host", device=self.name,
                    hint=f"check the fingerprint, then `ssh-keyscan -p {gateway.port} {gateway.host} "
                         f">> {self.known_hosts}`, or pass --accept-new-host-keys") from None
            raise ConnectionError(f"jump host {self.jump}: {exc}") from None
        except (socket.timeout, OSError, EOFError) as exc:
            raise ConnectionError(f"jump host {self.jump}: {exc}") from None
        finally:
            if not gateway.is_connected:
                _discard(gateway)

    def connect(self) -> None:
        """Open the connection unless it is open. Refused connections, silence and other network
        errors are retried (``1 + retries`` attempts, exponential backoff); the rest is not.

        Raises:
            KeyFileError: the key file is missing or unreadable (checked before connecting).
            HostKeyError: unknown key (without ``accept_new_host_keys``) or changed key.
            SshAuthError: the board refused every key offered.
            NotSshError: the port answered, but not with SSH.
            UnreachableError: refused, no answer in time, or another network error on every
                attempt (the message says which).
        """
        if self._conn is not None and self._conn.is_connected:
            return
        self.close()
        self._check_key_file()
        delay = self.backoff_s
        last = ""
        for attempt in range(self.retries + 1):
            try:
                self._conn = self._open_once()
                self._keepalive()
                self._expired = None
                return
            except TransportError:
                raise
            except Exception as exc:  # classified below; what is not retried raises there
                last = self._classify(exc)
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        raise UnreachableError(
            f"{self.name}: {last} ({self.retries + 1} attempts)", device=self.name,
            hint=f"is the board on and sshd running on port {self.port}? "
                 f"try `host check --device {self.name}`",
        )

    def _check_key_file(self) -> None:
        """Raises KeyFileError when ``key_file`` is set and is not a readable regular file."""
        if not self.key_file:
            return
        path = Path(self.key_file).expanduser()
        where = f", set at {self.key_source}" if self.key_source else ""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                problem = None if stat.S_ISREG(os.fstat(fd).st_mode) else "not a regular file"
            finally:
                os.close(fd)
        except OSError as exc:
            problem = exc.strerror or str(exc)
        if problem:
            raise KeyFileError(
                f"{self.name}: cannot use the private key file {path} (ansible_ssh_private_key_file"
                f"{where}): {problem}", device=self.name,
                hint="fix the path in the inventory, or remove ansible_ssh_private_key_file to log in "
                     "with ssh-agent and ~/.ssh/id_*")

    def _classify(self, exc: Exception) -> str:
        """What one failed attempt means. Raises the error of a failure that retrying cannot
        change (host key, authentication, not SSH); returns the description of the others."""
        import paramiko
        from paramiko.ssh_exception import NoValidConnectionsError

        where = f"{self.host}:{self.port}"
        if isinstance(exc, paramiko.BadHostKeyException):
            raise HostKeyError(
                f"{self.name}: host key of {self.key_name} has CHANGED: it offered "
                f"{exc.key.get_name()} {exc.key.fingerprint}, {self.known_hosts} expects "
                f"{exc.expected_key.fingerprint}; refusing to connect", device=self.name,
                hint=f"if the board was reinstalled, check the new key, then "
                     f"`ssh-keygen -R '{self.key_name}' -f {self.known_hosts}`") from None
        if isinstance(exc, paramiko.AuthenticationException):
            offered = f"the key file {self.key_file}" if self.key_file else "ssh-agent's keys and ~/.ssh/id_*"
            encrypted = isinstance(exc, paramiko.PasswordRequiredException)
            raise SshAuthError(
                f"{self.name}: SSH authentication to {self.user or ''}@{self.key_name} failed: "
                f"{'the key file is encrypted and host never prompts' if encrypted else 'it refused'} "
                f"({offered}; {exc})", device=self.name,
                hint="load the key into ssh-agent, or set ansible_ssh_private_key_file to a key the "
                     "board's authorized_keys holds") from None
        if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
            raise HostKeyError(
                f"{self.name}: host key of {self.key_name} is not in {self.known_hosts}; "
                "refusing to connect to an unknown host", device=self.name,
                hint=f"check the fingerprint, then `ssh-keyscan -p {self.port} {self.host} "
                     f">> {self.known_hosts}`, or pass --accept-new-host-keys") from None
        if isinstance(exc, paramiko.SSHException) and _NO_SSH.search(str(exc)) and not self.jump:
            return self._no_banner(where)
        if isinstance(exc, NoValidConnectionsError) and all(
                getattr(e, "errno", None) == errno.ECONNREFUSED for e in exc.errors.values()):
            return f"connection refused at {where}: nothing listens on that port"
        if isinstance(exc, ConnectionRefusedError):
            return f"connection refused at {where}: nothing listens on that port"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve the host name {self.host!r} ({exc.strerror})"
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return f"no answer from {where} within {self.connect_timeout:g} s"
        if isinstance(exc, EOFError):
            return f"{where} closed the connection before SSH started"
        if isinstance(exc, (paramiko.SSHException, OSError)):
            return f"cannot connect to {where}: {exc}"
        raise exc

    def _no_banner(self, where: str) -> str:
        """After paramiko read no SSH banner: a second look at what the port sends. Raises
        NotSshError when it sends something else; returns the description of silence."""
        banner = _banner(self.host, self.port, min(self.connect_timeout, 5.0))
        if banner and not banner.startswith(b"SSH-"):
            text = banner.decode("utf-8", "replace").strip()
            raise NotSshError(f"{self.name}: {where} answered but does not speak SSH (banner: {text[:80]!r})",
                              device=self.name,
                              hint="check ansible_port (and ansible_host) in the inventory: another service "
                                   "listens there")
        return f"{where} accepted the connection but sent no SSH banner within {self.connect_timeout:g} s"

    def _keepalive(self) -> None:
        """Keepalive (:data:`KEEPALIVE_S`) on the board's connection and on its jump host's."""
        self._conn.client.get_transport().set_keepalive(KEEPALIVE_S)
        jump = getattr(getattr(self._conn, "gateway", None), "transport", None)
        if jump is not None and hasattr(jump, "set_keepalive"):
            jump.set_keepalive(KEEPALIVE_S)

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

            return _probe_loop(chan.sendall, recv_line, n)
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
