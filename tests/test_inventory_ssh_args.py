"""ansible_ssh_common_args / ansible_ssh_extra_args: what `host`'s own SSH honours (the known_hosts
file, one ProxyJump host, ConnectTimeout), what it accepts and ignores, and what it refuses with the
`file:line` that set it; then a real jump through a loopback OpenSSH board."""

import json
import shlex
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from host.cli import app
from host.errors import HostKeyError, InventoryError, UnreachableError
from host.lab.board import Board, BoardOptions, open_transport
from host.lab.inventory import load_inventory

runner = CliRunner()


def write(folder: Path, text: str) -> Path:
    path = folder / "inv.ini"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def device(tmp_path: Path, text: str, name: str = "b1"):
    return load_inventory(write(tmp_path, text)).devices[name]


def refusal(tmp_path: Path, text: str) -> InventoryError:
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    return info.value


# -- accepted and honoured -----------------------------------------------------------------------


def test_honoured_options_reach_the_device_and_harmless_ones_are_accepted(tmp_path):
    dev = device(tmp_path, """
        [boards]
        b1 ansible_host=10.0.0.5
        [boards:vars]
        ansible_ssh_common_args=-o UserKnownHostsFile=/x/kh -o StrictHostKeyChecking=accept-new -C -o ProxyJump=admin@gw.lab:2222 -o ConnectTimeout=30 -oServerAliveInterval=15 -o ServerAliveCountMax=3 -o IdentitiesOnly=yes -o PubkeyAuthentication=yes -o PasswordAuthentication=no -o BatchMode=yes -o LogLevel=ERROR -o Compression=yes
        """)  # noqa: E501
    assert dev.known_hosts == "/x/kh"
    assert dev.jump == "admin@gw.lab:2222"
    assert dev.connect_timeout == 30.0
    doc = json.loads(json.dumps(dev.to_json()))
    assert doc["jump"] == "admin@gw.lab:2222" and doc["connect_timeout"] == 30.0


@pytest.mark.parametrize("args, jump", [
    ("-J gw", "gw:22"),
    ("-Jroot@10.1.2.3:2201", "root@10.1.2.3:2201"),
    ("-o 'ProxyJump gw:23'", "gw:23"),
    ("-o proxyjump=u@gw", "u@gw:22"),
    ("-o ProxyJump=none", None),
    ("-o UserKnownHostsFile=/k", None),
])
def test_proxyjump_spellings(tmp_path, args, jump):
    dev = device(tmp_path, f"""
        b1 ansible_ssh_common_args={shlex.quote(args)}
        """)
    assert dev.jump == jump


def test_first_value_wins_common_args_before_extra_args_as_on_ssh_command_line(tmp_path):
    dev = device(tmp_path, """
        b1 ansible_ssh_common_args='-J first -o ConnectTimeout=5' ansible_ssh_extra_args='-J second -o UserKnownHostsFile=/e -o ConnectTimeout=9'
        """)  # noqa: E501
    assert (dev.jump, dev.known_hosts, dev.connect_timeout) == ("first:22", "/e", 5.0)


def test_no_ssh_args_means_no_jump(tmp_path):
    dev = device(tmp_path, "b1 ansible_host=10.0.0.5\n")
    assert (dev.jump, dev.connect_timeout, dev.known_hosts) == (None, None, None)


def test_open_transport_passes_the_jump_and_the_longer_connect_timeout(tmp_path):
    slow = device(tmp_path, "b1 ansible_ssh_common_args='-J j:2 -o ConnectTimeout=30'\n")
    transport = open_transport(slow, BoardOptions(connect_timeout=3))
    assert (transport.jump, transport.connect_timeout) == ("j:2", 30.0)
    fast = device(tmp_path, "b1 ansible_ssh_common_args='-o ConnectTimeout=1'\n")
    transport = open_transport(fast, BoardOptions(connect_timeout=3))
    assert (transport.jump, transport.connect_timeout) == (None, 3)


# -- refused, with the line that set it ----------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    ("-o ProxyCommand='ssh -W %h:%p gw'", ["ProxyCommand", "use ProxyJump"]),
    ("-L 8080:localhost:80", ["'-L'", "cannot forward ports"]),
    ("-o LocalForward='8080 localhost:80'", ["LocalForward", "cannot forward ports"]),
    ("-R 9000:localhost:9000", ["'-R'", "cannot forward ports"]),
    ("-D 1080", ["'-D'", "cannot forward ports"]),
    ("-o DynamicForward=1080", ["DynamicForward", "cannot forward ports"]),
    ("-o ControlMaster=auto", ["ControlMaster", "own connection per board"]),
    ("-o ControlPath=/tmp/%C", ["ControlPath", "own connection per board"]),
    ("-o ControlPersist=60s", ["ControlPersist", "own connection per board"]),
    ("-o Port=2222", ["Port", "ansible_port"]),
    ("-i /k/id", ["'-i'", "ansible_ssh_private_key_file"]),
    ("-o IdentityFile=/k/id", ["IdentityFile", "ansible_ssh_private_key_file"]),
    ("-A", ["'-A'", "never forwards the agent"]),
    ("-v", ["'-v'", "remove it"]),
    ("-o Ciphers=aes128-ctr", ["Ciphers", "remove it"]),
    ("-o PubkeyAuthentication=no", ["PubkeyAuthentication=no", "keys only"]),
    ("-o ServerAliveInterval=soon", ["ServerAliveInterval", "whole number"]),
    ("-o ConnectTimeout=0", ["ConnectTimeout", "whole number"]),
    ("-J a,b", ["single jump host", "not a chain"]),
    ("-o ProxyJump=[::1]:22", ["not [user@]host[:port]"]),
    ("-J gw:99999", ["not [user@]host[:port]"]),
    ("gw", ["unexpected 'gw'"]),
    ("-o", ["-o at the end needs a value"]),
])
def test_options_host_cannot_honour_are_refused_at_their_line(tmp_path, args, words):
    err = refusal(tmp_path, f"""
        [boards]
        b1 ansible_host=10.0.0.5
        b2 ansible_host=10.0.0.6

        [boards:vars]
        ansible_user=root
        ansible_ssh_common_args=-o UserKnownHostsFile=/kh {args}
        """)
    assert str(err).startswith(f"{tmp_path / 'inv.ini'}:7: ansible_ssh_common_args: "), str(err)
    assert err.line == 7
    for word in words:
        assert word in str(err), str(err)


def test_the_line_is_the_one_whose_value_the_host_uses(tmp_path):
    # b1's own host line overrides the group's (fine) value with a refused one: line 2, not 5.
    err = refusal(tmp_path, """
        [boards]
        b1 ansible_ssh_extra_args='-o ProxyCommand=nc'
        b2
        [boards:vars]
        ansible_ssh_extra_args=-J gw
        """)
    assert str(err).startswith(f"{tmp_path / 'inv.ini'}:2: ansible_ssh_extra_args: ssh option ProxyCommand")
    # an [all:vars] value is reported at its own line even though the host is defined elsewhere
    err = refusal(tmp_path, """
        [all:vars]
        ansible_ssh_common_args=-o UserKnownHostsFile=/kh
        ansible_ssh_extra_args=-o ControlMaster=auto
        [boards]
        b1
        """)
    assert err.line == 3 and "ControlMaster" in err.reason
    # a refused value that a host line overrides with an accepted one is never used: no error
    dev = device(tmp_path, """
        [boards]
        b1 ansible_ssh_common_args='-J gw'
        [boards:vars]
        ansible_ssh_common_args=-o ProxyCommand=nc
        """)
    assert dev.jump == "gw:22"


# -- a real jump through a loopback OpenSSH board ------------------------------------------------


def jump_inventory(boards, path: Path, jump: str, known_hosts: Path | None = None) -> Path:
    """b2 reached through ``jump`` (the same key, known_hosts and strict host keys)."""
    kh = known_hosts or boards.known_hosts
    common = f"-o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes -J {jump}"
    lines = ["[boards]",
             f"b2 ansible_host=127.0.0.1 ansible_port={boards.ports['b2']} "
             f"workdir={shlex.quote(str(boards.workdir('b2')))}",
             "[boards:vars]", "ansible_user=root", f"ansible_ssh_private_key_file={boards.client_key}",
             f"ansible_ssh_common_args={common}", "runtime=ort", "mode=native", f"python={sys.executable}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def direct_tcpip_lines(boards, jump: str, port: int) -> int:
    """How many direct-tcpip channels to 127.0.0.1:port the jump board's sshd (LogLevel DEBUG1) logged."""
    text = boards.log_path(jump).read_text(errors="replace")
    return sum(1 for line in text.splitlines()
               if "server_request_direct_tcpip" in line and line.endswith(f"target 127.0.0.1 port {port}"))


def wait_for(predicate, timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def test_host_check_reaches_a_board_through_a_proxyjump_board(boards, tmp_path):
    port = boards.ports["b2"]
    jump = f"root@127.0.0.1:{boards.ports['b1']}"
    inv = jump_inventory(boards, tmp_path / "lab.ini", jump)
    try:
        boards.set_sshd_options("b1", ["LogLevel DEBUG1"])
        before = direct_tcpip_lines(boards, "b1", port)
        res = runner.invoke(app, ["check", "-i", str(inv), "--device", "b2", "--json"],
                            env={"COLUMNS": "250"})
        assert res.exit_code == 0, res.output
        (b2,) = json.loads(res.stdout)
        assert b2["verdict"] == "ready", b2
        # the jump board's sshd opened the forwarded connection to b2 (and only then did b2 answer)
        assert wait_for(lambda: direct_tcpip_lines(boards, "b1", port) > before), \
            boards.log_path("b1").read_text()[-3000:]

        # with forwarding off on the jump board the same inventory cannot reach b2, which itself is up
        boards.set_sshd_options("b1", ["AllowTcpForwarding no"])
        dev = load_inventory(inv).devices["b2"]
        board = Board(dev, open_transport(dev, BoardOptions(connect_timeout=5, retries=1, backoff_s=0.1)))
        with pytest.raises(UnreachableError) as info:
            board.transport.run("echo hi", timeout=20)
        assert "forwarding refused" in str(info.value) and jump in str(info.value)
        board.transport.close()
        with boards.connection("b2") as direct:
            assert direct.run("echo hi", hide=True, in_stream=False).stdout == "hi\n"
    finally:
        boards.set_sshd_options("b1", ())


def test_the_jump_host_key_is_checked_against_the_same_known_hosts(boards, tmp_path):
    only_b2 = tmp_path / "known_hosts"
    only_b2.write_text(boards.host_key_line("b2") + "\n")
    jump = f"root@127.0.0.1:{boards.ports['b1']}"
    dev = load_inventory(jump_inventory(boards, tmp_path / "lab.ini", jump, only_b2)).devices["b2"]
    transport = open_transport(dev, BoardOptions(connect_timeout=5, retries=0))
    with pytest.raises(HostKeyError) as info:
        transport.run("echo hi", timeout=20)
    message = str(info.value)
    assert f"jump host {jump}" in message and f"[127.0.0.1]:{boards.ports['b1']}" in message
    assert "not in" in message and str(only_b2) in message
    assert only_b2.read_text() == boards.host_key_line("b2") + "\n"  # nothing recorded silently
    transport.close()
