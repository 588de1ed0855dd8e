"""Lab fixtures for tests: loopback OpenSSH "boards" and a podman + runc test image.

Recipes: docs/testing.md §2 (fake boards, SSH), §6 (podman + runc).

* :class:`Boards` runs one ``/usr/sbin/sshd -D -e`` per board on 127.0.0.1 (dynamic ports, own
  host key per board, one client key, a strict ``known_hosts``) and writes Ansible INI inventories.
* :func:`podman_engine` prepares ``localhost/edgegauge/test-python:dev`` (Debian bookworm minbase
  from debootstrap + python3 + numpy) in a persistent cache and returns a :class:`PodmanEngine`.

Missing system tools are installed with apt-get when running as root (CI is root on a fresh Debian
machine, so these tests run there); without root the tests are skipped with the reason.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import pytest

SSHD = "/usr/sbin/sshd"
LOCALHOST = "127.0.0.1"

# ----------------------------------------------------------------------------------------------
# apt-get helpers
# ----------------------------------------------------------------------------------------------

_APT_LOCK_RE = re.compile(r"Could not get lock|Unable to (acquire|lock)|is another process using it", re.I)


def _is_root() -> bool:
    return os.geteuid() == 0


def _apt_get(args: Sequence[str], deadline_s: float = 900.0) -> subprocess.CompletedProcess:
    """Run ``apt-get ARGS`` non-interactively; wait and retry while another apt/dpkg holds the lock."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=60", *args]
    end = time.monotonic() + deadline_s
    while True:
        r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if r.returncode == 0 or not _APT_LOCK_RE.search(r.stderr + r.stdout) or time.monotonic() > end:
            return r
        time.sleep(5)


def apt_install(packages: Sequence[str], why: str) -> None:
    """Install Debian packages (root only; otherwise ``pytest.skip``). Raises if apt-get fails."""
    if not _is_root():
        pytest.skip(f"{why}; not root, so cannot `apt-get install {' '.join(packages)}`")
    r = _apt_get(["install", "-y", *packages])
    if r.returncode != 0:
        _apt_get(["update"])
        r = _apt_get(["install", "-y", *packages])
    if r.returncode != 0:
        raise RuntimeError(
            f"apt-get install {' '.join(packages)} failed (rc={r.returncode}) [{why}]:\n"
            f"{_tail(r.stdout)}\n{_tail(r.stderr)}"
        )


def ensure_openssh() -> None:
    """Make sure ``/usr/sbin/sshd``, ``ssh-keygen`` and ``ssh-keyscan`` exist (apt-get as root)."""
    pkgs = []
    if not os.access(SSHD, os.X_OK):
        pkgs.append("openssh-server")
    if not (shutil.which("ssh-keygen") and shutil.which("ssh-keyscan")):
        pkgs.append("openssh-client")
    if pkgs:
        apt_install(pkgs, f"{SSHD}/ssh-keygen/ssh-keyscan missing")
    for tool in (SSHD, "ssh-keygen", "ssh-keyscan"):
        if not shutil.which(tool):
            raise RuntimeError(f"{tool} still missing after installing {pkgs}")


def _tail(text: str, n: int = 30) -> str:
    return "\n".join(text.splitlines()[-n:])


def _read_tail(path: Path, n: int = 30) -> str:
    try:
        return _tail(path.read_text(errors="replace"), n)
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


# ----------------------------------------------------------------------------------------------
# processes and ports
# ----------------------------------------------------------------------------------------------


def free_ports(n: int) -> List[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bound to :0 together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOCALHOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ssh_banner(port: int, timeout: float = 2.0) -> bool:
    """True when something on ``port`` accepts and sends an SSH identification string."""
    try:
        with socket.create_connection((LOCALHOST, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _ppid_map() -> Dict[int, int]:
    """pid -> ppid for every process, from /proc/*/stat."""
    out: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ..." -- comm may contain spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 2:
            out[int(entry)] = int(fields[1])
    return out


def descendants(pid: int) -> List[int]:
    """All live descendants of ``pid`` (children, grandchildren, ...)."""
    children: Dict[int, List[int]] = {}
    for child, parent in _ppid_map().items():
        children.setdefault(parent, []).append(child)
    found: List[int] = []
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), ()):
            found.append(c)
            todo.append(c)
    return found


def _signal(pids: Iterable[int], sig: int) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


def kill_tree(pid: int, timeout: float = 5.0) -> None:
    """SIGKILL ``pid`` and every descendant, freezing the tree first so nothing escapes."""
    frozen = {pid}
    _signal([pid], signal.SIGSTOP)
    while True:  # stop descendants until the set is stable (stopped processes cannot fork)
        new = [p for p in descendants(pid) if p not in frozen]
        if not new:
            break
        _signal(new, signal.SIGSTOP)
        frozen.update(new)
    _signal(frozen - {pid}, signal.SIGKILL)
    _signal([pid], signal.SIGKILL)
    # SIGKILL is asynchronous: wait until every process is gone or a zombie
    end = time.monotonic() + timeout
    while any(_alive(p) for p in frozen - {pid}) and time.monotonic() < end:
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


# ----------------------------------------------------------------------------------------------
# loopback SSH boards
# ----------------------------------------------------------------------------------------------

_SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 50
SetEnv {setenv}
Subsystem sftp internal-sftp
{extra}"""


def _keygen(path: Path, comment: str) -> None:
    for p in (path, path.with_name(path.name + ".pub")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def _ini_value(value: object) -> str:
    """A value for an Ansible INI inventory: quoted (shlex-style) when it needs it."""
    s = str(value)
    return s if s and shlex.quote(s) == s else shlex.quote(s)


class Boards:
    """Loopback OpenSSH servers standing in for lab boards (all on 127.0.0.1, one port each).

    Attributes: ``dir``, ``names``, ``ports`` (name -> port), ``client_key`` (ed25519, no
    passphrase; ``client_key.pub`` is the only authorized key), ``known_hosts`` (one
    ``[127.0.0.1]:PORT ssh-ed25519 ...`` line per board, from ssh-keyscan), ``env`` (name -> extra
    session environment set by sshd ``SetEnv``, e.g. a ``PATH`` with emulated vendor tools first).
    """

    START_TIMEOUT = 10.0

    def __init__(
        self,
        directory: Path,
        names: Sequence[str] = ("b1", "b2", "b3"),
        env: Optional[Dict[str, Dict[str, str]]] = None,
    ):
        ensure_openssh()
        self.env: Dict[str, Dict[str, str]] = {n: dict(v) for n, v in (env or {}).items()}
        self.sshd_options: Dict[str, List[str]] = {}  # name -> extra sshd_config lines
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.names: List[str] = list(names)
        self.ports: Dict[str, int] = {}
        self._procs: Dict[str, subprocess.Popen] = {}
        self._logs: Dict[str, object] = {}
        self.client_key = self.dir / "client_key"
        self.authorized_keys = self.dir / "authorized_keys"
        self.known_hosts = self.dir / "known_hosts"
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        atexit.register(self.close)  # safety net if the fixture teardown never runs
        _keygen(self.client_key, "edgegauge-tests-client")
        shutil.copyfile(self.client_key.with_name("client_key.pub"), self.authorized_keys)
        try:
            ports = free_ports(len(self.names))
            for name, port in zip(self.names, ports):
                _keygen(self._host_key(name), f"edgegauge-tests-{name}")
                self.workdir(name)
                self._start_new(name, port)
            self.known_hosts.write_text("".join(self._keyscan(n) for n in self.names))
        except BaseException:
            self.close()
            raise

    # -- paths --------------------------------------------------------------------------------
    def _host_key(self, name: str) -> Path:
        return self.dir / f"host_{name}_key"

    def _cfg(self, name: str) -> Path:
        return self.dir / f"sshd_{name}.conf"

    def log_path(self, name: str) -> Path:
        return self.dir / f"sshd_{name}.log"

    def home(self, name: str) -> Path:
        """This board's login HOME (sshd ``SetEnv HOME=``): sessions never read the real
        root's shell startup files (on a dev machine ``~/.bashrc`` may run ``pyenv init``,
        whose rehash lock a killed session can leave behind), and runtimes write their
        caches here, as on a separate board."""
        self._check(name)
        d = self.dir / "homes" / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def workdir(self, name: str) -> Path:
        """This board's own remote directory (all boards share one filesystem)."""
        self._check(name)
        d = self.dir / "boards" / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _check(self, name: str) -> None:
        if name not in self.names:
            raise KeyError(f"unknown board {name!r}; boards: {self.names}")

    # -- lifecycle ----------------------------------------------------------------------------
    def _write_cfg(self, name: str, port: int) -> Path:
        cfg = self._cfg(name)
        cfg.write_text(
            _SSHD_CONFIG.format(
                port=port,
                host_key=self._host_key(name),
                pid_file=self.dir / f"sshd_{name}.pid",
                authorized_keys=self.authorized_keys,
                setenv=self._setenv(name),
                extra="".join(line + "\n" for line in self.sshd_options.get(name, ())),
            )
        )
        return cfg

    def _setenv(self, name: str) -> str:
        env = {"HOME": str(self.home(name)), **self.env.get(name, {})}
        for key, value in env.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or '"' in value or "\n" in value:
                raise ValueError(f"board {name}: unusable environment entry {key}={value!r}")
        return " ".join(f'"{k}={v}"' for k, v in env.items())

    def set_env(self, name: str, env: Dict[str, str]) -> None:
        """Replace the extra environment of ``name``'s sessions (sshd ``SetEnv``, which
        beats the default environment, so ``PATH`` works) and restart that board."""
        self._check(name)
        self.env[name] = dict(env)
        self.stop(name)
        self._write_cfg(name, self.ports[name])
        self._spawn(name)

    def set_sshd_options(self, name: str, lines: Sequence[str] = ()) -> None:
        """Append ``lines`` (e.g. ``AllowTcpForwarding no``, ``LogLevel DEBUG1``) to ``name``'s
        sshd_config and restart that board; ``()`` restores the default. sshd keeps the first
        value of a keyword, so only keywords the default config does not set take effect."""
        self._check(name)
        self.sshd_options[name] = [str(line) for line in lines]
        self.stop(name)
        self._write_cfg(name, self.ports[name])
        self._spawn(name)

    def _start_new(self, name: str, port: int) -> None:
        """First start; if the port was grabbed meanwhile, retry on other free ports."""
        for _attempt in range(5):
            self.ports[name] = port
            self._write_cfg(name, port)
            try:
                self._spawn(name)
                return
            except RuntimeError as exc:
                if "Bind to port" not in str(exc) and "Cannot bind" not in str(exc):
                    raise
                port = free_ports(1)[0]
        raise RuntimeError(f"board {name}: no free port after 5 attempts")

    def _spawn(self, name: str) -> None:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # tmpfs on most hosts
        port = self.ports[name]
        log_path = self.log_path(name)
        log = open(log_path, "ab")  # closed in _reap
        log.write(f"--- {time.strftime('%H:%M:%S')} starting sshd for {name} on {port}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self._cfg(name))],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        self._procs[name], self._logs[name] = proc, log
        end = time.monotonic() + self.START_TIMEOUT
        while True:
            if proc.poll() is not None:
                self._reap(name)
                raise RuntimeError(
                    f"sshd for board {name} (port {port}) exited with {proc.returncode}; "
                    f"log {log_path}:\n{_read_tail(log_path)}"
                )
            if _ssh_banner(port, timeout=1.0):
                return
            if time.monotonic() > end:
                self.stop(name)
                raise RuntimeError(
                    f"sshd for board {name} not accepting on 127.0.0.1:{port} after "
                    f"{self.START_TIMEOUT:.0f} s; log {log_path}:\n{_read_tail(log_path)}"
                )
            time.sleep(0.05)

    def _reap(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        log = self._logs.pop(name, None)
        if log is not None:
            log.close()

    def start(self, name: str) -> None:
        """(Re)start a stopped board on the same port with the same host key; waits until it accepts."""
        self._check(name)
        proc = self._procs.get(name)
        if proc is not None and proc.poll() is None:
            return
        self._reap(name)
        self._spawn(name)

    def stop(self, name: str) -> None:
        """Kill the board's sshd and all its descendants (sessions and what they run).

        Returns once the port refuses connections.
        """
        self._check(name)
        proc = self._procs.get(name)
        if proc is not None and proc.poll() is None:
            kill_tree(proc.pid)
        self._reap(name)
        port = self.ports[name]
        end = time.monotonic() + self.START_TIMEOUT
        while port_accepts(port, timeout=0.2):
            if time.monotonic() > end:
                raise RuntimeError(f"board {name}: port {port} still accepts after stop()")
            time.sleep(0.05)

    def _tree(self, name: str) -> List[int]:
        self._check(name)
        proc = self._procs.get(name)
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"board {name} is not running")
        return [proc.pid, *descendants(proc.pid)]

    def freeze(self, name: str) -> List[int]:
        """SIGSTOP the board's sshd and everything under it (sessions, runners): a board that
        stops answering while its kernel still accepts TCP. Returns the stopped pids."""
        frozen: List[int] = []
        while True:  # until stable: a stopped process cannot fork
            new = [p for p in self._tree(name) if p not in frozen]
            if not new:
                return frozen
            _signal(new, signal.SIGSTOP)
            frozen.extend(new)

    def thaw(self, name: str) -> None:
        """SIGCONT what :meth:`freeze` stopped (and anything else under the board's sshd)."""
        _signal(self._tree(name), signal.SIGCONT)

    def drop_connections(self, name: str) -> List[int]:
        """SIGKILL the per-connection sshd processes of the board, leaving the commands they
        started: a link lost without a pty (nothing signals those commands). Returns the
        killed pids."""
        listener = self._tree(name)[0]
        victims = []
        for pid in self._tree(name)[1:]:
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm.startswith("sshd") and pid != listener:
                victims.append(pid)
        _signal(victims, signal.SIGKILL)
        return victims

    def is_up(self, name: str) -> bool:
        self._check(name)
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None and port_accepts(self.ports[name])

    def stopped(self) -> List[str]:
        return [n for n in self.names if not self.is_up(n)]

    def close(self) -> None:
        """Stop every board (teardown)."""
        for name in list(self._procs):
            with contextlib.suppress(Exception):
                self.stop(name)

    def __enter__(self) -> Boards:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- host keys ----------------------------------------------------------------------------
    def _keyscan(self, name: str) -> str:
        port = self.ports[name]
        expected = self.host_key_line(name)
        last = None
        for _ in range(5):
            last = subprocess.run(
                ["ssh-keyscan", "-T", "5", "-t", "ed25519", "-p", str(port), LOCALHOST],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
            )
            lines = [ln for ln in last.stdout.splitlines() if ln and not ln.startswith("#")]
            if lines:
                if lines[0].split()[:3] != expected.split()[:3]:
                    raise RuntimeError(f"ssh-keyscan of {name}: {lines[0]!r} != host key {expected!r}")
                return lines[0] + "\n"
            time.sleep(0.2)
        raise RuntimeError(f"ssh-keyscan -p {port} {LOCALHOST} returned nothing: {last and last.stderr}")

    def host_key_line(self, name: str) -> str:
        """This board's known_hosts line: ``[127.0.0.1]:PORT ssh-ed25519 AAAA...``."""
        self._check(name)
        kind, blob = self._host_key(name).with_name(f"host_{name}_key.pub").read_text().split()[:2]
        return f"[{LOCALHOST}]:{self.ports[name]} {kind} {blob}"

    def wrong_known_hosts(self, path: Path) -> Path:
        """Write a known_hosts mapping each board's port to a DIFFERENT, freshly generated key."""
        path = Path(path)
        lines = []
        with tempfile.TemporaryDirectory(dir=self.dir) as tmp:
            for name in self.names:
                key = Path(tmp) / f"wrong_{name}"
                _keygen(key, "edgegauge-tests-wrong")
                kind, blob = key.with_name(key.name + ".pub").read_text().split()[:2]
                lines.append(f"[{LOCALHOST}]:{self.ports[name]} {kind} {blob}\n")
        path.write_text("".join(lines))
        return path

    # -- clients ------------------------------------------------------------------------------
    def ssh_argv(self, name: str, *command: str, known_hosts: Optional[Path] = None) -> List[str]:
        """OpenSSH client argv for this board (strict host key checking, batch mode)."""
        self._check(name)
        return [
            "ssh", "-p", str(self.ports[name]), "-i", str(self.client_key),
            "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-o", "IdentitiesOnly=yes", f"root@{LOCALHOST}", *command,
        ]  # fmt: skip

    def connection(self, name: str, known_hosts: Optional[Path] = None, connect_timeout: int = 5):
        """A Fabric Connection to this board with strict host keys (RejectPolicy)."""
        import fabric
        import paramiko

        self._check(name)
        c = fabric.Connection(
            LOCALHOST,
            port=self.ports[name],
            user="root",
            connect_kwargs={"key_filename": str(self.client_key)},
            connect_timeout=connect_timeout,
        )
        c.client.load_host_keys(str(known_hosts or self.known_hosts))
        c.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        return c

    # -- inventory ----------------------------------------------------------------------------
    def write_inventory(
        self, path: Path, devices: Optional[Sequence[str]] = None, **group_vars: object
    ) -> Path:
        """Write an Ansible INI inventory (group ``boards``) for all boards or the ``devices`` subset."""
        names = list(devices) if devices is not None else self.names
        for n in names:
            self._check(n)
        lines = ["[boards]"]
        for n in names:
            workdir = _ini_value(self.workdir(n))
            lines.append(f"{n} ansible_host={LOCALHOST} ansible_port={self.ports[n]} workdir={workdir}")
        common = f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes"
        base = {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": self.client_key,
            "ansible_ssh_common_args": common,
            "runtime": "ort",
            "mode": "native",
            "python": sys.executable,
        }
        base.update(group_vars)
        lines += ["", "[boards:vars]"] + [f"{k}={_ini_value(v)}" for k, v in base.items()]
        path = Path(path)
        path.write_text("\n".join(lines) + "\n")
        return path


# ----------------------------------------------------------------------------------------------
# podman + runc
# ----------------------------------------------------------------------------------------------

BASE_IMAGE = "localhost/debian:bookworm-minbase"
TEST_IMAGE = "localhost/edgegauge/test-python:dev"
RUN_ARGS = "--ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --network none"
BUILD_ARGS = ["--network", "host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
PODMAN_PACKAGES = ["podman", "runc", "uidmap", "fuse-overlayfs", "slirp4netns", "debootstrap"]
CONTAINERFILE = f"""\
FROM {BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-numpy \\
    && rm -rf /var/lib/apt/lists/*
"""


def debian_mirror(suite: str = "bookworm", root: Path = Path("/")) -> str:
    """The Debian archive this machine's apt uses for ``suite`` (main archive, not security):
    read from ``etc/apt/sources.list.d/*.sources`` (deb822 ``URIs:``/``Suites:``) or
    ``etc/apt/sources.list`` (``deb URI SUITE ...``) under ``root``. No host name is written in
    this repository; debootstrap goes where apt already goes.

    Raises:
        RuntimeError: no apt source names ``suite``.
    """
    apt = root / "etc" / "apt"
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text(errors="replace").split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith(("#", " ")):
                    fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and suite in fields.get("suites", []) and fields.get("uris"):
                return fields["uris"][0]
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = line.split("#", 1)[0].split()
            if words[:1] == ["deb"]:
                words = [w for w in words[1:] if not w.startswith("[")]
                if len(words) >= 2 and words[1] == suite:
                    return words[0]
    raise RuntimeError(f"no apt source for Debian {suite!r} under {apt}; debootstrap needs one")


@dataclass(frozen=True)
class PodmanEngine:
    """``engine``: podman command line (a string, shlex-split it); ``run_args``: extra ``run``
    arguments that containers need here; ``image``: the test image (python3 + numpy)."""

    engine: str
    run_args: str
    image: str

    def argv(self, *args: str) -> List[str]:
        return [*shlex.split(self.engine), *args]

    def run_argv(self, *command: str, extra: Sequence[str] = ()) -> List[str]:
        """``ENGINE run --rm RUN_ARGS [extra] IMAGE command...``"""
        return self.argv("run", "--rm", *shlex.split(self.run_args), *extra, self.image, *command)


class PodmanUnusable(RuntimeError):
    """podman (or its runtime) cannot run on this machine at all."""


def cache_dir() -> Path:
    """``$EDGEGAUGE_TEST_CACHE`` or ``~/.cache/edgegauge-tests`` (the real home, even if HOME is faked)."""
    env = os.environ.get("EDGEGAUGE_TEST_CACHE")
    if env:
        return Path(env)
    try:
        home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        home = Path.home()
    return home / ".cache" / "edgegauge-tests"


def ensure_podman() -> None:
    """podman, runc and debootstrap on PATH (apt-get as root, else skip)."""
    missing = [t for t in ("podman", "runc", "debootstrap") if not shutil.which(t)]
    if missing:
        apt_install(PODMAN_PACKAGES, f"{', '.join(missing)} missing")
    still = [t for t in ("podman", "runc", "debootstrap") if not shutil.which(t)]
    if still:
        raise RuntimeError(f"{still} still missing after apt-get install {PODMAN_PACKAGES}")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _engine_for(cache: Path, driver: str) -> str:
    root, runroot = cache / driver / "root", cache / driver / "run"
    return (
        f"podman --root {shlex.quote(str(root))} --runroot {shlex.quote(str(runroot))} "
        f"--storage-driver {driver} --cgroup-manager cgroupfs --events-backend file --runtime runc"
    )


def _run(argv: Sequence[str], what: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if r.returncode != 0:
        raise RuntimeError(
            f"{what} failed (rc={r.returncode}): {shlex.join(argv)}\n{_tail(r.stdout)}\n{_tail(r.stderr)}"
        )
    return r


def remove_rootfs(rootfs: Path) -> None:
    """Remove a half-built rootfs, first unmounting what an interrupted debootstrap left mounted in
    it (its /proc): rmtree cannot remove that, and every later debootstrap into it failed."""
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(f"{rootfs}/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(rootfs, ignore_errors=True)


def _rootfs_tarball(cache: Path) -> Path:
    """``debootstrap --variant=minbase bookworm`` rootfs as a tarball, built once into the cache."""
    tarball = cache / "debian-bookworm-minbase.tar"
    if tarball.exists():
        return tarball
    rootfs = cache / "rootfs.tmp"
    remove_rootfs(rootfs)
    _run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), debian_mirror()], "debootstrap")
    tmp = tarball.with_suffix(".tar.tmp")
    _run(["tar", "-C", str(rootfs), "-cf", str(tmp), "."], "tar rootfs")
    os.replace(tmp, tarball)
    shutil.rmtree(rootfs, ignore_errors=True)
    return tarball


def _image_exists(engine: str, image: str) -> bool:
    r = subprocess.run([*shlex.split(engine), "image", "exists", image], capture_output=True, text=True)
    return r.returncode == 0


def _prepare(cache: Path, driver: str) -> PodmanEngine:
    engine = _engine_for(cache, driver)
    argv = shlex.split(engine)
    try:
        _run([*argv, "info"], f"podman info ({driver})", timeout=120)
    except RuntimeError as exc:
        raise PodmanUnusable(str(exc)) from None
    if not _image_exists(engine, BASE_IMAGE):
        tarball = _rootfs_tarball(cache)
        _run([*argv, "import", str(tarball), BASE_IMAGE], "podman import")
    try:  # can the OCI runtime start a container here at all?
        _run(
            [*argv, "run", "--rm", *shlex.split(RUN_ARGS), BASE_IMAGE, "true"], f"podman run ({driver})", 120
        )
    except RuntimeError as exc:
        raise PodmanUnusable(str(exc)) from None
    if not _image_exists(engine, TEST_IMAGE):
        with tempfile.TemporaryDirectory(dir=cache, prefix="ctx.") as ctx:
            (Path(ctx) / "Containerfile").write_text(CONTAINERFILE)
            build = [
                *argv,
                "build",
                *BUILD_ARGS,
                "-t",
                TEST_IMAGE,
                "-f",
                str(Path(ctx) / "Containerfile"),
                ctx,
            ]
            try:
                _run(build, "podman build (runc)")
            except RuntimeError as exc_runc:
                try:  # chroot isolation needs no OCI runtime (host network only)
                    _run([*argv, "build", "--isolation", "chroot", *BUILD_ARGS[2:], "-t", TEST_IMAGE,
                          "-f", str(Path(ctx) / "Containerfile"), ctx], "podman build (chroot)")  # fmt: skip
                except RuntimeError as exc_chroot:
                    raise RuntimeError(f"{exc_runc}\n\n{exc_chroot}") from None
    return PodmanEngine(engine=engine, run_args=RUN_ARGS, image=TEST_IMAGE)


def podman_engine() -> PodmanEngine:
    """Ready-to-use podman + runc with ``localhost/edgegauge/test-python:dev`` (cached).

    Skips when not root and tools are missing, or when podman cannot run containers here.
    """
    ensure_podman()
    cache = cache_dir() / "podman"
    cache.mkdir(parents=True, exist_ok=True)
    marker = cache / "storage-driver"
    with _file_lock(cache / ".lock"):
        drivers = ["overlay", "vfs"]
        if marker.exists() and marker.read_text().strip() in drivers:
            drivers.sort(key=lambda d: d != marker.read_text().strip())
        errors: List[str] = []
        unusable = True
        for driver in drivers:  # overlay first; vfs when overlay does not work here
            try:
                pe = _prepare(cache, driver)
            except PodmanUnusable as exc:
                errors.append(f"[{driver}] {exc}")
                continue
            except RuntimeError as exc:
                errors.append(f"[{driver}] {exc}")
                unusable = False
                continue
            marker.write_text(driver + "\n")
            break
        else:
            if unusable:
                pytest.skip("podman + runc cannot run containers here:\n" + "\n\n".join(errors))
            raise RuntimeError("preparing the podman test image failed:\n" + "\n\n".join(errors))
    r = _run(
        pe.run_argv("python3", "-c", "import numpy; print(numpy.__version__)"), "numpy check in test image"
    )
    if not re.match(r"\d+\.\d+", r.stdout.strip()):
        raise RuntimeError(f"unexpected numpy version output: {r.stdout!r}")
    return pe
