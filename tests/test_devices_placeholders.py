"""``host devices`` lists the built-in ``local`` device and each device's family (not its group);
``host check`` calls the example inventory's documentation addresses placeholders, connects to
none of them, and still calls a real address that does not answer unreachable."""

import json
import shutil
import time
from pathlib import Path

from typer.testing import CliRunner

from host.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "inventory.ini"
runner = CliRunner()


def host(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})


def test_devices_lists_local_and_the_family(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no inventory here
    res = host("devices", "--json")
    assert res.exit_code == 0, res.output
    (local,) = json.loads(res.stdout)["devices"]
    assert local["name"] == "local" and local["connection"] == "local"

    shutil.copy(EXAMPLE, tmp_path / "inventory.ini")
    res = host("devices", "--json")
    assert res.exit_code == 0, res.output
    devices = {d["name"]: d for d in json.loads(res.stdout)["devices"]}
    assert list(devices)[-1] == "local" and {"rpi4-1", "xavier-1", "zcu104-1", "a100-1"} < set(devices)
    assert devices["rpi4-1"]["family"] == "arm_cpu" and "rpi" in devices["rpi4-1"]["groups"]
    table = host("devices")
    assert table.exit_code == 0 and "local" in table.stdout and "arm_cpu" in table.stdout
    named = host("devices", "--device", "rpi4-1", "--json")  # a selection: only what is named
    assert [d["name"] for d in json.loads(named.stdout)["devices"]] == ["rpi4-1"]


def test_check_calls_the_example_addresses_placeholders(tmp_path):
    started = time.monotonic()
    res = host("check", "-i", EXAMPLE, "--connect-timeout", "30", "--json")
    assert time.monotonic() - started < 20  # nothing waited for a connect timeout
    assert res.exit_code == 2, res.output
    reports = json.loads(res.stdout)
    assert {r["verdict"] for r in reports} == {"placeholder"} and len(reports) == 4
    rpi = next(r for r in reports if r["device"] == "rpi4-1")
    assert "192.0.2.11 is a documentation address (192.0.2.0/24, RFC 5737)" in rpi["problems"][0]
    line = next(n for n, text in enumerate(EXAMPLE.read_text().splitlines(), 1) if text.startswith("rpi4-1 "))
    assert f"{EXAMPLE}:{line} (ansible_host=)" in rpi["problems"][0]  # where to put the real address


def test_check_tells_placeholders_from_a_real_address_that_does_not_answer(tmp_path):
    inv = tmp_path / "lab.ini"
    inv.write_text("[lab]\n"
                   "a ansible_host=198.51.100.7\n"
                   "b ansible_host=203.0.113.5\n"
                   "c ansible_host=board.example\n"
                   "d ansible_host=pi.example.com\n"
                   "e ansible_host=gone.invalid\n"
                   "dead ansible_host=127.0.0.1 ansible_port=1\n")
    res = host("check", "-i", inv, "--connect-timeout", "2", "--json")
    assert res.exit_code == 1, res.output  # the real address that refused is unreachable
    verdicts = {r["device"]: r["verdict"] for r in json.loads(res.stdout)}
    assert verdicts == {"a": "placeholder", "b": "placeholder", "c": "placeholder", "d": "placeholder",
                        "e": "placeholder", "dead": "unreachable"}
    table = host("check", "-i", inv, "--connect-timeout", "2")
    assert "placeholder" in table.stdout and "reserved example name" in table.stdout
