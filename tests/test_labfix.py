"""Self-tests for the lab fixtures in tests/labfix.py (loopback SSH boards, podman + runc image)."""

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import fabric
import labfix
import paramiko
import pytest
from paramiko.ssh_exception import NoValidConnectionsError


def _strict_connection(boards, name, known_hosts):
    c = fabric.Connection(
        "127.0.0.1",
        port=boards.ports[name],
        user="root",
        connect_kwargs={"key_filename": str(boards.client_key)},
        connect_timeout=5,
    )
    c.client.load_host_keys(str(known_hosts))
    c.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return c


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] != b"Z"


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_fabric_reaches_every_board_with_strict_host_keys(boards):
    assert boards.names == ["b1", "b2", "b3"]
    assert len(set(boards.ports.values())) == 3
    kh = boards.known_hosts.read_text().splitlines()
    assert kh == [boards.host_key_line(n) for n in boards.names]
    for name in boards.names:
        assert kh[boards.names.index(name)].startswith(f"[127.0.0.1]:{boards.ports[name]} ssh-ed25519 ")
        with _strict_connection(boards, name, boards.known_hosts) as c:
            assert c.run("echo $HOME", hide=True, in_stream=False).stdout.strip() == str(boards.home(name))
        assert boards.workdir(name).is_dir()


def test_changed_host_key_is_rejected(boards, tmp_path):
    wrong = boards.wrong_known_hosts(tmp_path / "known_hosts")
    assert len(wrong.read_text().splitlines()) == 3
    for name in boards.names:
        assert boards.host_key_line(name) not in wrong.read_text()
        with _strict_connection(boards, name, wrong) as c, pytest.raises(paramiko.BadHostKeyException):
            c.run("true", hide=True, in_stream=False)
    with boards.connection("b1") as c:  # the helper builds the same strict connection
        assert c.run("echo ok", hide=True, in_stream=False).stdout.strip() == "ok"


def test_stop_kills_sessions_and_start_restores(boards):
    # a live session on b2 running a remote command (OpenSSH client, strict host keys)
    client = subprocess.Popen(boards.ssh_argv("b2", "sleep 3017"), stdin=subprocess.DEVNULL)
    listener = boards._procs["b2"].pid
    deadline = time.monotonic() + 10
    remote = []
    while not remote and time.monotonic() < deadline:
        # wait for `sleep` itself: killing the login shell while it still runs root's startup
        # files (e.g. a pyenv rehash) could leave stale locks behind on a developer machine
        remote = [p for p in labfix.descendants(listener) if _cmdline(p).startswith(b"sleep\x003017")]
        time.sleep(0.05)
    assert remote, "remote sleep never showed up under the board's sshd"

    boards.stop("b2")
    assert not boards.is_up("b2") and boards.stopped() == ["b2"]
    assert not _alive(listener) and not any(_alive(p) for p in remote)
    assert client.wait(timeout=10) == 255  # ssh: connection closed
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", boards.ports["b2"]), timeout=2).close()
    with (
        _strict_connection(boards, "b2", boards.known_hosts) as c,
        pytest.raises((NoValidConnectionsError, OSError)),
    ):
        c.run("true", hide=True, in_stream=False)
    with _strict_connection(boards, "b1", boards.known_hosts) as c:
        assert c.run("echo $HOME", hide=True, in_stream=False).stdout.strip() == str(boards.home("b1"))

    port = boards.ports["b2"]
    boards.start("b2")
    assert boards.is_up("b2") and boards.ports["b2"] == port
    with _strict_connection(boards, "b2", boards.known_hosts) as c:  # same host key
        assert c.run("echo $HOME", hide=True, in_stream=False).stdout.strip() == str(boards.home("b2"))
    boards.stop("b3")  # left stopped on purpose: the `boards` fixture restarts it


def test_boards_fixture_restarted_stopped_board(boards):
    assert boards.stopped() == []


def test_write_inventory(boards, tmp_path):
    inv = boards.write_inventory(tmp_path / "inv.ini", devices=["b1", "b3"], note="two words", retries=2)
    text = inv.read_text()
    lines = text.splitlines()
    assert lines[0] == "[boards]"
    host = shlex.split(lines[1])
    assert host[0] == "b1" and f"ansible_port={boards.ports['b1']}" in host
    assert f"workdir={boards.workdir('b1')}" in host
    assert "b2 " not in text and lines[2].startswith("b3 ")
    gvars = dict(ln.split("=", 1) for ln in lines[lines.index("[boards:vars]") + 1 :] if ln)
    assert shlex.split(gvars["note"]) == ["two words"]
    assert shlex.split(gvars["ansible_ssh_common_args"]) == [
        f"-o UserKnownHostsFile={boards.known_hosts} -o StrictHostKeyChecking=yes"
    ]
    assert gvars["python"] == sys.executable and gvars["runtime"] == "ort" and gvars["mode"] == "native"

    ansible_inventory = Path(sys.executable).with_name("ansible-inventory")
    if ansible_inventory.exists():  # Ansible itself reads it back the same way
        env = dict(os.environ, ANSIBLE_HOME=str(tmp_path / "ansible"), ANSIBLE_LOCAL_TEMP=str(tmp_path))
        out = subprocess.run(
            [str(ansible_inventory), "-i", str(inv), "--list"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
        hostvars = json.loads(out)["_meta"]["hostvars"]
        assert sorted(hostvars) == ["b1", "b3"]
        assert hostvars["b3"]["ansible_port"] == boards.ports["b3"]
        assert hostvars["b3"]["workdir"] == str(boards.workdir("b3"))
        assert hostvars["b1"]["note"] == "two words"
        assert hostvars["b1"]["ansible_ssh_private_key_file"] == str(boards.client_key)


def test_podman_runs_python_in_test_image(podman_engine):
    assert podman_engine.image == "localhost/edgegauge/test-python:dev"
    argv = [*shlex.split(podman_engine.engine), "run", "--rm", *shlex.split(podman_engine.run_args),
            podman_engine.image, "python3", "-c", "print(1)"]  # fmt: skip
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"


def test_debian_mirror_comes_from_the_machines_apt_sources(tmp_path):
    d = tmp_path / "etc" / "apt" / "sources.list.d"
    d.mkdir(parents=True)
    (d / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://archive.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n")
    assert labfix.debian_mirror(root=tmp_path) == "http://archive.example/debian"
    (d / "debian.sources").unlink()
    (tmp_path / "etc" / "apt" / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64] http://one-line.example/debian bookworm main\n")
    assert labfix.debian_mirror(root=tmp_path) == "http://one-line.example/debian"
    with pytest.raises(RuntimeError, match="no apt source"):
        labfix.debian_mirror("trixie", root=tmp_path)
