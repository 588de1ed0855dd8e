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

Commands are shell strings; callers build them with :func:`shlex.quote` (see
:func:`host.lab.board.sh`). Source for the host-key handling: paramiko ``SSHClient``
(``RejectPolicy``, ``BadHostKeyException``) and shared/reference/devices.md §8.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from host.errors import HostError

#: Exit codes ≥ this from ``sh -c`` mean "killed by signal (code - 128)".
SIGNAL_BASE = 128

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


class TransportError(HostError):
    """A board could not be used (base class). ``device`` names the board."""

    category = "unreachable"

    def __init__(self, message: str, *, device: str = "", hint: str | None = None):
        super().__init__(message, hint=hint)
        self.device = device


class UnreachableError(TransportError):
    """Connecting failed after all retries, authentication failed, or the connection
    dropped in the middle of a command."""


class HostKeyError(TransportError):
    """The board's host key is unknown (and trust-on-first-use was not asked for) or
    differs from the recorded one. Never retried."""

    category = "host_key"


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


class LocalTransport:
    """This machine. ``run`` uses ``/bin/sh -c`` in a new session so a timeout or Ctrl-C
    kills the whole process tree."""

    kind = "local"

    def __init__(self, name: str = "local"):
        self.name = name
        self.stats = TransferStats()
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def connect(self) -> None:
        """Nothing to connect; present for interface symmetry."""

    def run(self, command: str, *, timeout: float | None = None, kill_pattern: str | None = None,
            retry: bool = False) -> CommandResult:
        """Run ``command`` with ``/bin/sh -c``; on timeout kill its process group.

        Raises:
            OSError: ``/bin/sh`` cannot be started.
        """
        start = time.monotonic()
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                start_new_session=True)
        with self._lock:
            self._proc = proc
        try:
            out, err = proc.communicate(timeout=timeout)
            code = proc.returncode
            timed_out = False
        except subprocess.TimeoutExpired:
            self._killpg(proc)
            out, err = proc.communicate()
            code, timed_out = None, True
        except BaseException:  # Ctrl-C: never leave a runner behind
            self._killpg(proc)
            proc.wait()
            raise
        finally:
            with self._lock:
                self._proc = None
        if code is not None and code < 0:  # sh itself killed by a signal
            code = SIGNAL_BASE - code
        return CommandResult(code, out or "", err or "", time.monotonic() - start, timed_out)

    @staticmethod
    def _killpg(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def abort(self, kill_pattern: str | None = None, extra_command: str | None = None) -> None:
        """Kill the command in flight (called from another thread on Ctrl-C)."""
        with self._lock:
            proc = self._proc
        if proc is not None:
            self._killpg(proc)
        if extra_command:
            subprocess.run(["/bin/sh", "-c", extra_command], capture_output=True, timeout=30)

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


class SshTransport:
    """A board over SSH with strict host-key checking (see the module docstring).

    Args:
        name: device name (for messages).
        host, port, user: where to connect (``user`` None = the local user name).
        key_file: private key (``ansible_ssh_private_key_file``); else ssh-agent and the
            default ``~/.ssh/id_*`` keys. Passwords are never used.
        known_hosts: known_hosts file checked (and, with ``accept_new_host_keys``, appended).
        connect_timeout: seconds per connection attempt.
        retries: connection attempts after the first (exponential backoff from ``backoff_s``).
    """

    kind = "ssh"

    def __init__(self, name: str, host: str, port: int = 22, user: str | None = None, *,
                 key_file: str | None = None, known_hosts: Path | None = None,
                 accept_new_host_keys: bool = False, connect_timeout: float = 10.0,
                 retries: int = 2, backoff_s: float = 0.5):
        self.name = name
        self.host = host
        self.port = int(port)
        self.user = user
        self.key_file = key_file
        self.known_hosts = Path(known_hosts or Path.home() / ".ssh" / "known_hosts").expanduser()
        self.accept_new = accept_new_host_keys
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.stats = TransferStats()
        self._conn = None
        self._sftp = None

    @property
    def key_name(self) -> str:
        """How known_hosts names this board: ``host`` or ``[host]:port``."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    # -- connection ---------------------------------------------------------------------

    def _open_once(self):
        import fabric
        import paramiko

        kwargs: dict = {"banner_timeout": self.connect_timeout, "auth_timeout": self.connect_timeout,
                        "allow_agent": True, "look_for_keys": self.key_file is None}
        if self.key_file:
            kwargs["key_filename"] = str(Path(self.key_file).expanduser())
        conn = fabric.Connection(self.host, user=self.user, port=self.port,
                                 connect_timeout=self.connect_timeout, connect_kwargs=kwargs)
        client = conn.client
        if self.known_hosts.exists():
            client.load_host_keys(str(self.known_hosts))
        policy = _AcceptNewPolicy(self.known_hosts, self.stats) if self.accept_new \
            else paramiko.RejectPolicy()
        client.set_missing_host_key_policy(policy)
        conn.open()
        return conn

    def connect(self) -> None:
        """Open the connection unless it is open.

        Raises:
            HostKeyError: unknown key (without ``accept_new_host_keys``) or changed key.
            UnreachableError: no connection after ``1 + retries`` attempts, or
                authentication failed.
        """
        import paramiko
        from paramiko.ssh_exception import NoValidConnectionsError

        if self._conn is not None and self._conn.is_connected:
            return
        self.close()
        delay = self.backoff_s
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                self._conn = self._open_once()
                return
            except paramiko.BadHostKeyException as exc:
                raise HostKeyError(
                    f"{self.name}: host key of {self.key_name} has CHANGED: it offered "
                    f"{exc.key.get_name()} {exc.key.fingerprint}, {self.known_hosts} expects "
                    f"{exc.expected_key.fingerprint}; refusing to connect",
                    device=self.name,
                    hint=f"if the board was reinstalled, check the new key, then "
                         f"`ssh-keygen -R '{self.key_name}' -f {self.known_hosts}`",
                ) from None
            except paramiko.AuthenticationException as exc:
                raise UnreachableError(
                    f"{self.name}: SSH authentication to {self.user or ''}@{self.key_name} "
                    f"failed ({exc})", device=self.name,
                    hint="load the key into ssh-agent or set ansible_ssh_private_key_file",
                ) from None
            except paramiko.SSHException as exc:
                if "not found in known_hosts" in str(exc):
                    raise HostKeyError(
                        f"{self.name}: host key of {self.key_name} is not in {self.known_hosts}; "
                        "refusing to connect to an unknown host",
                        device=self.name,
                        hint=f"check the fingerprint, then `ssh-keyscan -p {self.port} {self.host} "
                             f">> {self.known_hosts}`, or pass --accept-new-host-keys",
                    ) from None
                last = exc
            except (NoValidConnectionsError, socket.timeout, OSError, EOFError) as exc:
                last = exc
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        raise UnreachableError(
            f"{self.name}: cannot connect to {self.key_name} after {self.retries + 1} attempts: "
            f"{last}", device=self.name,
            hint=f"is the board on and sshd running? try `host check --device {self.name}`",
        )

    @property
    def conn(self):
        self.connect()
        return self._conn

    def sftp(self):
        if self._sftp is None:
            self._sftp = self.conn.sftp()
        return self._sftp

    # -- commands -----------------------------------------------------------------------

    def run(self, command: str, *, timeout: float | None = None, kill_pattern: str | None = None,
            retry: bool = False) -> CommandResult:
        """Run a shell command on the board.

        ``retry=True`` (idempotent commands only) reconnects and runs again once when
        the connection drops. On timeout the remote processes matching ``kill_pattern``
        (``pkill -f``) are killed and ``timed_out`` is set.

        Raises:
            HostKeyError, UnreachableError: see :meth:`connect`; ``UnreachableError`` also
                when the connection is lost during the command.
        """
        import paramiko
        from invoke.exceptions import CommandTimedOut

        for attempt in (0, 1):
            conn = self.conn
            start = time.monotonic()
            try:
                res = conn.run(command, hide=True, warn=True, timeout=timeout, in_stream=False)
            except CommandTimedOut as exc:
                if kill_pattern:
                    self._kill(kill_pattern)
                res = exc.result
                return CommandResult(None, res.stdout, res.stderr, time.monotonic() - start, True)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                self.close()
                if retry and attempt == 0:
                    continue
                raise UnreachableError(f"{self.name}: connection lost during a command: {exc}",
                                       device=self.name) from None
            if res.exited == -1 or res.exited is None:  # channel closed without a status
                self.close()
                if retry and attempt == 0:
                    continue
                raise UnreachableError(f"{self.name}: connection lost during a command "
                                       "(no exit status)", device=self.name)
            return CommandResult(res.exited, res.stdout, res.stderr, time.monotonic() - start)
        raise AssertionError("unreachable")  # pragma: no cover

    def _kill(self, pattern: str, extra_command: str | None = None) -> None:
        """Kill every process of the session(s) running a command line that matches
        ``pattern`` (sshd starts each command in its own session, so a runner's children
        go too), then anything still matching. Best effort."""
        import shlex

        regex = shlex.quote(f"[{pattern[0]}]{pattern[1:]}")  # "[x]yz" never matches this line
        cmd = (f"for p in $(pgrep -f -- {regex}); do "
               's=$(ps -o sid= -p "$p" 2>/dev/null | tr -d " "); '
               '[ -n "$s" ] && [ "$s" != 0 ] && pkill -KILL -s "$s"; done; '
               f"pkill -KILL -f -- {regex}; true")
        if extra_command:
            cmd = f"{extra_command}; {cmd}"
        try:
            self._conn.run(cmd, hide=True, warn=True, timeout=30, in_stream=False)
        except Exception:  # best effort: the board may be gone
            pass

    def abort(self, kill_pattern: str | None = None, extra_command: str | None = None) -> None:
        """Kill the remote command in flight (from another thread, on Ctrl-C)."""
        if self._conn is not None and self._conn.is_connected and (kill_pattern or extra_command):
            self._kill(kill_pattern or "edgegauge-none", extra_command)

    def clock_probes(self, python: str, n: int = 7) -> list:
        """Bracketed reads of the board's CLOCK_MONOTONIC over one SSH channel: a small
        ``python`` loop on the board answers each line with ``time.monotonic_ns()``, so a
        probe costs one network round trip, not a new command (power-meters.md §10).

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
            self.close()
            raise UnreachableError(f"{self.name}: connection lost while sending {local.name}: {exc}",
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
        except (paramiko.SSHException, EOFError) as exc:
            self.close()
            raise UnreachableError(f"{self.name}: connection lost while reading {remote}: {exc}",
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
