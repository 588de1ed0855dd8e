"""Issue 20 item 10 and the inventory's property tests: the reader is linear and bounded (a file
over 1 MiB, a line over 8192 characters, more hosts, groups or variables than its limits are
refused with ``file[:line]:``), never blocks on a FIFO, answers any text with an inventory or an
InventoryError (never a traceback), gives back what a generated inventory says, and meets the
committed corpus of hostile inventories (tests/fixtures/hostile/inventories/expected.json).

Timings live in bench/inventory_size.py, not here."""

from __future__ import annotations

import json
import os
import shlex
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.errors import InventoryError
from host.lab.inventory import (
    MAX_FILE_BYTES,
    MAX_HOST_GROUPS,
    MAX_HOST_VARS,
    MAX_HOSTS,
    MAX_LINE_CHARS,
    load_inventory,
)
from runners.families import names as family_names

HOSTILE = Path(__file__).parent / "fixtures" / "hostile" / "inventories"
EXPECTED = {k: v for k, v in json.loads((HOSTILE / "expected.json").read_text()).items()
            if not k.startswith("_")}
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def refused(path: Path) -> InventoryError:
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    return info.value


# -- size limits ----------------------------------------------------------------------------------


def test_a_file_over_1_mib_is_refused_without_reading_it_whole(tmp_path):
    path = tmp_path / "big.ini"
    line = "b{} meter=usb0\n"
    with path.open("w") as fh:  # valid lines only: the size alone is refused
        size, i = 0, 0
        while size <= MAX_FILE_BYTES:
            size += fh.write(line.format(i % MAX_HOSTS))
            i += 1
    err = refused(path)
    assert str(err).startswith(f"{path}: ") and err.line is None
    assert "1 MiB" in str(err) and str(MAX_FILE_BYTES) in str(err) and err.hint


def test_a_file_of_exactly_the_limit_is_read(tmp_path):
    path = tmp_path / "edge.ini"
    body = "b1 meter=usb0\n"
    lines, rest = divmod(MAX_FILE_BYTES - len(body), 100)
    path.write_text(body + ("#" + "x" * 98 + "\n") * lines + ("#" * (rest - 1) + "\n" if rest else ""))
    assert path.stat().st_size == MAX_FILE_BYTES
    assert list(load_inventory(path).devices) == ["b1"]


def test_a_line_over_the_limit_is_refused_at_its_line(tmp_path):
    path = tmp_path / "long.ini"
    path.write_text("[boards]\nb1\n" + "b2 meter=" + "a" * (MAX_LINE_CHARS - 9) + "\nb3 meter="
                    + "a" * (MAX_LINE_CHARS - 8) + "\n")
    err = refused(path)
    assert err.line == 4 and str(err).startswith(f"{path}:4: ")
    assert f"the limit is {MAX_LINE_CHARS} characters per line" in str(err)
    path.write_text("b2 meter=" + "a" * (MAX_LINE_CHARS - 9) + "\n")  # exactly the limit: read
    assert load_inventory(path).devices["b2"].vars["meter"] == "a" * (MAX_LINE_CHARS - 9)


def test_host_group_and_variable_counts_are_bounded(tmp_path):
    path = tmp_path / "n.ini"
    path.write_text("".join(f"h{i}\n" for i in range(MAX_HOSTS + 1)))
    assert refused(path).line == MAX_HOSTS + 1
    path.write_text("[g]\nb1\n[g:vars]\n" + "".join(f"meter{i}=x\n" for i in range(MAX_HOST_VARS + 1)))
    err = refused(path)
    assert err.line == 3 + MAX_HOST_VARS + 1 and f"{MAX_HOST_VARS} variables per host" in str(err)
    path.write_text("".join(f"[g{i}]\nb1\n" for i in range(MAX_HOST_GROUPS + 1)))
    err = refused(path)
    assert err.line == 2 * (MAX_HOST_GROUPS + 1) and f"{MAX_HOST_GROUPS} groups per host" in str(err)


def test_a_deep_children_chain_is_refused_not_a_recursion_error(tmp_path):
    path = tmp_path / "chain.ini"
    path.write_text("".join(f"[g{i}:children]\ng{i + 1}\n" for i in range(5000)) + "[g5000]\nb1\n")
    assert "groups per host" in str(refused(path))


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "inv.ini"
    os.mkfifo(fifo)
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(refused(fifo)), daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # unblock the reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_inventory blocked on a FIFO")
    assert "not a regular file" in str(outcome[0])


# -- any text: an inventory or an InventoryError ---------------------------------------------------

INI_BITS = st.sampled_from([
    "[", "]", ":vars", ":children", "=", "'", '"', "\\", "#", ";", " ", "\n", "\r\n", "\u2028", "\x00",
    "b1", "g", "all", "ungrouped", "lab", "ansible_host", "ansible_port", "ansible_user", "meter", "runtime",
    "mode", "container", "image", "ansible_ssh_common_args", "-o", "-J", "ProxyJump", "ProxyCommand",
    "ConnectTimeout", "ansible_group_priority", "ansible_password", "1", "0", "99999", "-", ",", "@",
    "ort", "native", "ssh", "local", "ansible_connection", "\ufeff", "é"])


def chain(depth: int) -> bytes:
    """Groups nested ``depth`` deep, a host at the bottom (5000: deeper than the recursion limit,
    which hypothesis raises by 2000 while a test runs)."""
    return ("".join(f"[g{i}:children]\ng{i + 1}\n" for i in range(depth)) + f"[g{depth}]\nb1\n").encode()


@SETTINGS
@given(st.one_of(st.lists(INI_BITS, max_size=60).map("".join).map(str.encode),
                 st.text(max_size=200).map(str.encode), st.binary(max_size=200),
                 st.sampled_from([0, 1, 63, 64, 65, 5000]).map(chain)))
def test_any_text_gives_an_inventory_or_an_inventory_error(tmp_path, data):
    path = tmp_path / "fuzz.ini"
    path.write_bytes(data)
    try:
        inventory = load_inventory(path)
    except InventoryError as exc:
        assert str(exc).startswith(f"{path}:"), exc
        return
    json.dumps([dev.to_json() for dev in inventory.devices.values()])


# -- round trip: a generated inventory gives back what it says ------------------------------------

NAME = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
HOST = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,12}", fullmatch=True)
VAR = st.from_regex(r"(meter|power_|edgegauge_|provision_)[a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda v: v != "edgegauge_family")  # checked against runners/families: test_inventory.py
PLAIN = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp", "Zs")),
                max_size=12).filter(lambda v: "'" not in v and '"' not in v)
ANY = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@st.composite
def labs(draw):
    """A lab model: groups (children of ``lab``) with vars, hosts in one group each with vars."""
    groups = draw(st.lists(NAME.filter(lambda g: g not in ("all", "ungrouped", "lab")), min_size=1,
                           max_size=4, unique=True))
    hosts = draw(st.lists(HOST, min_size=1, max_size=6, unique=True))
    return {
        "all": draw(st.dictionaries(VAR, ANY, max_size=3)),
        "lab": draw(st.dictionaries(VAR, ANY, max_size=3)),
        "groups": {g: draw(st.dictionaries(VAR, ANY, max_size=3)) for g in groups},
        "hosts": {h: {"group": draw(st.sampled_from(groups)),
                      "vars": draw(st.dictionaries(VAR, PLAIN, max_size=3)),
                      "address": draw(st.none() | HOST), "port": draw(st.none() | st.integers(1, 65535)),
                      "user": draw(st.none() | NAME)} for h in hosts},
    }


def render(lab: dict) -> str:
    """The model as INI: host-line values shell-quoted, [group:vars] values as Python literals."""
    lines = ["[all:vars]"] + [f"{k}={v!r}" for k, v in lab["all"].items()]
    lines += ["[lab:children]"] + list(lab["groups"])
    lines += ["[lab:vars]"] + [f"{k}={v!r}" for k, v in lab["lab"].items()]
    for group, variables in lab["groups"].items():
        lines.append(f"[{group}]")
        for name, host in lab["hosts"].items():
            if host["group"] != group:
                continue
            words = [name] + [f"{k}={shlex.quote(v)}" for k, v in host["vars"].items()]
            words += [f"ansible_host={host['address']}"] if host["address"] else []
            words += [f"ansible_port={host['port']}"] if host["port"] else []
            words += [f"ansible_user={host['user']}"] if host["user"] else []
            lines.append(" ".join(words) + "  # a comment")
        lines += [f"[{group}:vars]"] + [f"{k}={v!r}" for k, v in variables.items()]
    return "\n".join(lines) + "\n"


@SETTINGS
@given(labs())
def test_a_generated_inventory_round_trips(tmp_path, lab):
    path = tmp_path / "lab.ini"
    path.write_text(render(lab), encoding="utf-8")
    devices = load_inventory(path).devices
    in_file_order = [h for g in lab["groups"] for h, spec in lab["hosts"].items() if spec["group"] == g]
    assert list(devices) == in_file_order
    for name, spec in lab["hosts"].items():
        dev = devices[name]
        merged = {**lab["all"], **lab["lab"], **lab["groups"][spec["group"]], **spec["vars"]}
        assert {k: v for k, v in dev.vars.items() if not k.startswith("ansible_")} == merged
        assert dev.groups == tuple(sorted((spec["group"], "lab")))
        assert dev.family == (spec["group"] if spec["group"] in family_names() else None)
        assert (dev.host, dev.port, dev.user) == (spec["address"] or name, spec["port"] or 22, spec["user"])


# -- the committed corpus --------------------------------------------------------------------------


def test_the_hostile_inventory_corpus_is_complete():
    assert sorted(EXPECTED) == sorted(p.name for p in HOSTILE.glob("*.ini"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_hostile_inventory_gives_what_the_corpus_says(name):
    path, want = HOSTILE / name, EXPECTED[name]
    if "says" in want:
        err = refused(path)
        prefix = f"{path}:{want['line']}: " if want["line"] is not None else f"{path}: "
        assert str(err).startswith(prefix) and err.line == want["line"], str(err)
        assert want["says"] in str(err), str(err)
        return
    devices = load_inventory(path).devices
    assert sorted(devices) == sorted(want["devices"])
    for dev_name, fields in want["devices"].items():
        doc = devices[dev_name].to_json()
        for key, value in fields.items():
            got = {k: doc["vars"].get(k) for k in value} if key == "vars" else doc[key]
            assert got == value, (dev_name, key)


def test_the_limits_are_the_documented_ones():
    docs = (Path(__file__).parents[1] / "docs" / "devices.md").read_text()
    for words in ("1 MiB", f"{MAX_LINE_CHARS} characters", f"{MAX_HOSTS} hosts", f"{MAX_HOST_GROUPS} groups",
                  f"{MAX_HOST_VARS} variables"):
        assert words in docs, words
