"""Issue 20 item 12: a board's SSH settings come from the inventory only (~/.ssh/config is not
read, so its ProxyCommand never runs), and each way of failing to connect has its own message:
a missing key file (before connecting, naming the inventory line), a port that does not speak SSH
(no paramiko traceback on the terminal), a refused connection, silence, a refused key. On loopback
OpenSSH boards (tests/labfix.py) and tiny local TCP servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import labfix
import pytest

from host.errors import KeyFileError, NotSshError, SshAuthError, UnreachableError
from host.lab.board import BoardOptions, open_transport
from host.lab.inventory import load_inventory
from host.lab.transport import SshTransport

QUICK = BoardOptions(connect_timeout=5, retries=1, backoff_s=0.05)


def host_check(inventory: Path, device: str, home: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """``host check --json`` as the user would run it, with ``HOME=home``."""
    env = dict(os.environ, HOME=str(home), COLUMNS="250")
    res = subprocess.run([sys.executable, "-m", "host", "check", "-i", str(inventory), "--device", device,
                          "--json", "--connect-timeout", "3"], capture_output=True, text=True, env=env,
                         timeout=120)
    (report,) = json.loads(res.stdout)
    return res, report


class Server:
    """A TCP server on 127.0.0.1 that sends ``reply`` to each connection (nothing: silence) and
    counts connections."""

    def __init__(self, reply: bytes | None):
        self.reply, self.connections = reply, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.reply is None:
                self.held.append(conn)  # silent: keep it open
                continue
            try:
                conn.sendall(self.reply)
            finally:
                conn.close()

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def home(tmp_path):
    """A HOME whose ~/.ssh/config would send every connection through a ProxyCommand that
    leaves a marker file (and to a wrong port, user and key)."""
    marker = tmp_path / "proxycommand-ran"
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "config").write_text(f"Host *\n    ProxyCommand touch {marker}\n    Port 1\n    User nobody\n"
                                f"    IdentityFile {tmp_path / 'no-such-key'}\n")
    return tmp_path / "home", marker


def test_the_users_ssh_config_does_not_apply(boards, tmp_path, home):
    home_dir, marker = home
    inv = boards.write_inventory(tmp_path / "lab.ini", ["b1"])
    res, report = host_check(inv, "b1", home_dir)
    assert not marker.exists(), "the ProxyCommand of ~/.ssh/config ran"
    assert res.returncode == 0 and report["verdict"] == "ready", res.stdout + res.stderr


def test_a_missing_key_file_is_named_with_its_inventory_line_before_connecting(boards, tmp_path, home):
    inv = boards.write_inventory(tmp_path / "lab.ini", ["b1"], ansible_ssh_private_key_file=tmp_path / "gone")
    line = next(n for n, text in enumerate(inv.read_text().splitlines(), 1)
                if text.startswith("ansible_ssh_private_key_file="))
    res, report = host_check(inv, "b1", home[0])
    assert res.returncode == 1 and report["verdict"] == "unreachable"
    (problem,) = report["problems"]
    assert f"cannot use the private key file {tmp_path / 'gone'}" in problem, problem
    assert f"{inv}:{line}" in problem and "No such file or directory" in problem
    assert "attempts" not in problem

    transport = open_transport(load_inventory(inv).devices["b1"], QUICK)
    with pytest.raises(KeyFileError):
        transport.connect()


def test_a_port_that_does_not_speak_ssh_says_so_without_tracebacks(tmp_path, home):
    server = Server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    try:
        inv = tmp_path / "lab.ini"
        inv.write_text(f"web ansible_host=127.0.0.1 ansible_port={server.port} ansible_user=root\n")
        res, report = host_check(inv, "web", home[0])
        assert res.returncode == 1 and report["verdict"] == "unreachable"
        (problem,) = report["problems"]
        assert f"127.0.0.1:{server.port} answered but does not speak SSH (banner: 'HTTP/1.1 400 Bad Request" \
            in problem, problem
        assert "Traceback" not in res.stderr and "Exception (client)" not in res.stderr, res.stderr
        assert server.connections <= 2  # paramiko's try and one look at the banner: no retries
    finally:
        server.close()


def test_a_refused_connection_says_refused(tmp_path):
    (port,) = labfix.free_ports(1)
    transport = SshTransport("b9", "127.0.0.1", port, "root", retries=1, backoff_s=0.05,
                             known_hosts=tmp_path / "kh")
    with pytest.raises(UnreachableError) as info:
        transport.connect()
    assert type(info.value) is UnreachableError
    assert f"connection refused at 127.0.0.1:{port}: nothing listens on that port (2 attempts)" \
        in str(info.value)


def test_silence_is_a_timeout_not_a_protocol_error(tmp_path):
    server = Server(None)
    try:
        transport = SshTransport("b9", "127.0.0.1", server.port, "root", retries=0, connect_timeout=1,
                                 known_hosts=tmp_path / "kh")
        with pytest.raises(UnreachableError) as info:
            transport.connect()
        assert type(info.value) is UnreachableError
        assert f"127.0.0.1:{server.port} accepted the connection but sent no SSH banner within 1 s" \
            in str(info.value), str(info.value)
    finally:
        server.close()


def test_a_key_the_board_refuses_is_an_authentication_error_not_retried(boards, tmp_path):
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    inv = boards.write_inventory(tmp_path / "lab.ini", ["b1"], ansible_ssh_private_key_file=stranger)
    transport = open_transport(load_inventory(inv).devices["b1"], QUICK)
    with pytest.raises(SshAuthError) as info:
        transport.connect()
    message = str(info.value)
    assert f"SSH authentication to root@[127.0.0.1]:{boards.ports['b1']} failed" in message
    assert f"the key file {stranger}" in message and "attempts" not in message


def test_not_ssh_is_its_own_error_class(tmp_path):
    server = Server(b"220 mail.example ESMTP\r\n")
    try:
        transport = SshTransport("m", "127.0.0.1", server.port, "root", retries=2, connect_timeout=3,
                                 known_hosts=tmp_path / "kh")
        with pytest.raises(NotSshError) as info:
            transport.connect()
        assert "(banner: '220 mail.example ESMTP')" in str(info.value)
    finally:
        server.close()
