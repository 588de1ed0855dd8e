"""Opening an SSH connection to a board (Fabric 3 / paramiko): strict host keys (or trust on first
use), an optional jump host, retries with backoff, and one typed error per way it fails (see
:mod:`host.lab.transport`); :class:`host.lab.transport.ssh.SshTransport` runs commands on it."""

from __future__ import annotations

import errno
import functools
import os
import re
import socket
import stat
import threading
import time
from pathlib import Path

from host.errors import (
    HostKeyError,
    KeyFileError,
    NotSshError,
    SshAuthError,
    TransportError,
    UnreachableError,
)
from host.lab.transport.base import KEEPALIVE_S, TransferStats, Transport


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


class SshConnector(Transport):
    """The connection half of :class:`host.lab.transport.ssh.SshTransport` (its arguments are
    documented there): :meth:`connect` and what each failure to connect means."""

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

