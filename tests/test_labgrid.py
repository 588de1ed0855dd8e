"""Boards shared through a real labgrid coordinator (issue 26, first slice): a ``labgrid-coordinator``
and a ``labgrid-exporter`` (labgrid 26, the ``lab`` extra) on loopback, the exporter publishing a
``NetworkService`` for each loopback sshd board of tests/labfix.py; places created, tagged, held and
checked with ``labgrid-client`` (the tool a lab uses), never through our own code.

Covered: ``host devices --coordinator`` (table at 100 columns, JSON), ``host bench --coordinator
--place`` running a cell on the place's board and releasing it, a second reservation waiting in
labgrid's queue until the first is released (library and two real ``host bench`` processes),
SIGTERM during a run and during a wait, a place held by someone else past the wait, an unknown
place, an unreachable coordinator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import labfix
import pytest
from labgridfix import Lab
from typer.testing import CliRunner

pytest.importorskip("labgrid.remote.client",
                    reason="labgrid is not installed (the lab extra: pip install -e .[lab])")

from host.cli.main import app  # noqa: E402
from host.errors import NoSuchPlaceError, PlaceBusyError  # noqa: E402
from host.lab.coordinator import PlaceLease, list_places  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODEL = ROOT / "tests" / "fixtures" / "models" / "identity.onnx"
FAST = ["--warmup-iters", "1", "--warmup-s", "0", "--min-iters", "5", "--target-ci", "0.5", "--max-s", "60",
        "--no-reference", "--no-power"]
#: place -> (board of labfix, tags); "spare" has no resource at all
PLACES = {"p1": ("b1", {"rack": "r1", "kind": "loop"}), "p2": ("b2", {"rack": "r1", "kind": "other"}),
          "p3": ("b3", {"rack": "r2", "kind": "loop"})}
#: outlet of the loopback power strip (tests/powerstrip.py) -> board; only p1 (b1) has a power resource
OUTLETS = {0: "b1"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory, ssh_boards):
    for name in ssh_boards.stopped():
        ssh_boards.start(name)
    found = Lab(tmp_path_factory.mktemp("labgrid"), ssh_boards, PLACES, OUTLETS, extra_places=("spare",))
    try:
        yield found
    finally:
        found.close()


@pytest.fixture
def free_lab(lab):
    """The lab with every place free and no reservation, before and after the test."""
    for place in PLACES:
        assert lab.holder(place) == "None", f"{place} left acquired by an earlier test"
    yield lab
    for place in PLACES:
        if lab.holder(place) != "None":
            lab.client("-p", place, "release", "--kick")
            pytest.fail(f"{place} left acquired")
    assert "Reservation" not in lab.reservations()


def host(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "host", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=400, env={**os.environ, "COLUMNS": "200"})


def bench_argv(lab: Lab, tmp_path: Path, *args) -> list:
    return [sys.executable, "-m", "host", "bench", str(MODEL), "--coordinator", lab.address,
            "--inventory", str(lab.inventory), "--results", str(tmp_path / "r"), *FAST, *map(str, args)]


# -- devices -----------------------------------------------------------------------------------


def test_devices_lists_places_with_tags_holder_reservation_address_and_inventory_facts(free_lab, tmp_path):
    lab = free_lab
    lab.client("-p", "p2", "acquire", user="alice", check=True)
    try:
        done = CliRunner().invoke(app, ["devices", "--coordinator", lab.address, "--inventory",
                                        str(lab.inventory), "--json"])
        assert done.exit_code == 0, done.output
        doc = json.loads(done.stdout)
    finally:
        lab.client("-p", "p2", "release", user="alice", check=True)
    rows = {p["name"]: p for p in doc["places"]}
    assert sorted(rows) == ["p1", "p2", "p3", "spare"]
    assert rows["p1"]["tags"] == {"rack": "r1", "kind": "loop"}
    assert rows["p1"]["ssh"] == f"root@127.0.0.1:{lab.boards.ports['b1']}"
    assert (rows["p1"]["device"], rows["p1"]["runtime"], rows["p1"]["holder"]) == ("b1", "ort", None)
    assert rows["p2"]["holder"].endswith("/alice") and rows["p2"]["device"] == "b2"
    assert rows["spare"]["ssh"] is None and rows["spare"]["device"] is None
    assert rows["p3"]["resources"] == ["NetworkService"]
    assert rows["p1"]["resources"] == ["NetworkPowerPort", "NetworkService"]


@pytest.mark.slow
def test_devices_table_fits_100_columns_in_a_real_terminal(free_lab, tmp_path):
    from test_terminal_100 import WIDTH, screen

    if labfix.shutil.which("tmux") is None:
        labfix.apt_install(["tmux"], "the 100-column check runs host devices in tmux")
    lab = free_lab
    lab.client("-p", "p3", "acquire", user="alice", check=True)
    try:
        lines, status = screen(labfix.shutil.which("tmux"), tmp_path, "devices", "--coordinator", lab.address,
                               "--inventory", lab.inventory)
    finally:
        lab.client("-p", "p3", "release", user="alice", check=True)
    text = "\n".join(lines)
    print(text)  # the table as the terminal showed it (the report quotes it)
    assert status == 0, text
    assert max(len(line) for line in lines) <= WIDTH and "…" not in text
    for word in ("p1", "rack=r1", "b1", "ort", "/alice", "spare", f":{lab.boards.ports['b3']}"):
        assert word in text, word


def test_an_unreachable_coordinator_is_one_error_line_with_a_hint(tmp_path):
    port, = labfix.free_ports(1)
    done = host("devices", "--coordinator", f"127.0.0.1:{port}", cwd=tmp_path)
    assert done.returncode == 1
    assert f"error: no labgrid coordinator answers at 127.0.0.1:{port}" in done.stderr
    assert "hint: start one" in done.stderr and "Traceback" not in done.stderr


def test_place_options_without_a_coordinator_are_a_usage_error(tmp_path):
    done = host("bench", MODEL, "--place", "p1", cwd=tmp_path)
    assert done.returncode == 2 and "--coordinator" in done.stderr
    done = host("bench", MODEL, "--coordinator", "127.0.0.1:1", "--place", "p1", "--device", "local",
                cwd=tmp_path)
    assert done.returncode == 2 and "leave out --device" in done.stderr


# -- the lease (library) -----------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_reservation_waits_in_the_queue_and_gets_the_place_when_the_first_releases(free_lab):
    lab, seen, got = free_lab, [], {}
    first = PlaceLease(lab.address, [{"name": "p2"}], wait_s=30, poll_s=0.2)
    places = first.__enter__()
    try:
        assert [p.name for p in places] == ["p2"] and places[0].ssh.port == lab.boards.ports["b2"]
        assert lab.holder("p2") != "None"

        def second():
            lease = PlaceLease(lab.address, [{"name": "p2"}], wait_s=60, poll_s=0.2, on_wait=seen.append)
            with lease as held:
                got["places"], got["at"] = held, time.monotonic()
                got["holder"] = lab.holder("p2")

        thread = threading.Thread(target=second)
        thread.start()
        deadline = time.monotonic() + 30
        while len(seen) < 3:
            assert time.monotonic() < deadline and thread.is_alive(), seen
            time.sleep(0.1)
        assert not got and seen[-1].want == "name=p2" and seen[-1].holders
        assert "waiting" in lab.reservations()  # labgrid's own view of the queue
    finally:
        released = time.monotonic()
        first.__exit__(None, None, None)
    thread.join(60)
    assert got["places"][0].name == "p2" and got["at"] >= released
    assert got["holder"] != "None"  # the second lease held it while inside


def test_tags_pick_a_matching_place_and_an_unknown_place_fails_at_once(free_lab):
    lab = free_lab
    with PlaceLease(lab.address, [{"rack": "r2"}], wait_s=5) as held:
        assert [p.name for p in held] == ["p3"] and held[0].tags["rack"] == "r2"
    start = time.monotonic()
    with pytest.raises(NoSuchPlaceError, match="no place named 'nope'"):
        PlaceLease(lab.address, [{"name": "nope"}], wait_s=60).__enter__()
    with pytest.raises(NoSuchPlaceError, match="no place has the tags rack=r9"):
        PlaceLease(lab.address, [{"rack": "r9"}], wait_s=60).__enter__()
    assert time.monotonic() - start < 20


def test_a_place_held_by_someone_else_past_the_wait_is_a_busy_error_naming_them(free_lab):
    lab = free_lab
    lab.client("-p", "p1", "acquire", user="alice", check=True)
    try:
        with pytest.raises(PlaceBusyError) as caught:
            PlaceLease(lab.address, [{"name": "p1"}], wait_s=1.5, poll_s=0.3).__enter__()
        assert any(h.endswith("/alice") for h in caught.value.holders), caught.value.holders
        assert "still held after" in str(caught.value)
        assert "Reservation" not in lab.reservations()  # ours was cancelled
    finally:
        lab.client("-p", "p1", "release", user="alice", check=True)


def test_list_places_sees_what_labgrid_client_did(free_lab):
    lab = free_lab
    lab.client("-p", "p1", "acquire", user="bob", check=True)
    try:
        found = {p.name: p for p in list_places(lab.address)}
        assert found["p1"].holder.endswith("/bob") and found["p2"].holder is None
    finally:
        lab.client("-p", "p1", "release", user="bob", check=True)


# -- host bench --------------------------------------------------------------------------------


@pytest.mark.slow
def test_bench_on_a_place_runs_on_its_board_and_releases_it(free_lab, tmp_path):
    lab = free_lab
    done = subprocess.run(bench_argv(lab, tmp_path, "--place", "p1", "--campaign", "c1"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=400, env=lab.env())
    assert done.returncode in (0, 3), done.stdout + done.stderr  # 3: INVALID timing on a busy machine
    assert f"acquired place p1 of {lab.address} (root@127.0.0.1:{lab.boards.ports['b1']})" in done.stderr
    assert "released place p1" in done.stderr
    cell = json.loads(next((tmp_path / "r" / "c1" / "b1").glob("identity__*.json")).read_text())
    assert cell["status"] in ("ok", "invalid")
    assert lab.holder("p1") == "None"
    assert (lab.boards.workdir("b1") / ".edgegauge.lock").exists()  # our own board lock ran inside


def _start_bench(lab: Lab, tmp_path: Path, *args) -> subprocess.Popen:
    # Ctrl-C as from a terminal however pytest was started (a background job ignores SIGINT, and an
    # ignored signal stays ignored across exec)
    return subprocess.Popen(bench_argv(lab, tmp_path, *args), cwd=tmp_path, env=lab.env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_acquired(lab: Lab, place: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while lab.holder(place) == "None":
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)


@pytest.mark.slow
def test_two_benches_on_one_place_run_one_after_the_other(free_lab, tmp_path):
    lab = free_lab
    first = _start_bench(lab, tmp_path, "--place", "p2", "--campaign", "one", "--min-s", "1",
                         "--min-processes", "6")
    _wait_acquired(lab, "p2", first)
    second = _start_bench(lab, tmp_path, "--place", "p2", "--campaign", "two", "--wait-lock", "300")
    out1, err1 = first.communicate(timeout=400)
    out2, err2 = second.communicate(timeout=400)
    assert first.returncode in (0, 3), out1 + err1
    assert second.returncode in (0, 3), out2 + err2
    assert "waiting for name=p2 (reservation " in err2 and "held by " in err2
    cells = {c: json.loads(next((tmp_path / "r" / c / "b2").glob("identity__*.json")).read_text())
             for c in ("one", "two")}
    from datetime import datetime

    def utc(text):
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").timestamp()

    one, two = (cells[c]["timestamps"] for c in ("one", "two"))
    assert utc(two["start_utc"]) >= utc(one["end_utc"])  # never at the same time on the board


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "Ctrl-C"])
def test_sigterm_or_ctrl_c_during_a_run_releases_the_place(free_lab, tmp_path, sig, code):
    lab = free_lab
    proc = _start_bench(lab, tmp_path, "--place", "p3", "--campaign", "t", "--min-s", "2",
                        "--min-processes", "20")
    _wait_acquired(lab, "p3", proc)
    leases = lab.boards.workdir("b3") / "leases"
    deadline = time.monotonic() + 120
    while not list(leases.glob("*.lease")):  # a runner is running on the board
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, out + err
    assert "released place p3" in err and "Traceback" not in err
    assert lab.holder("p3") == "None"


@pytest.mark.slow
def test_sigterm_while_waiting_cancels_the_reservation(free_lab, tmp_path):
    lab = free_lab
    lab.client("-p", "p1", "acquire", user="alice", check=True)
    try:
        proc = _start_bench(lab, tmp_path, "--place", "p1", "--campaign", "w", "--wait-lock", "300")
        deadline = time.monotonic() + 60
        while "waiting" not in lab.reservations():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, out + err
        assert "SIGTERM while waiting for places" in err and "Traceback" not in err
        assert "Reservation" not in lab.reservations()
        assert lab.holder("p1").endswith("/alice")
        assert not (tmp_path / "r" / "w").exists()  # nothing ran
    finally:
        lab.client("-p", "p1", "release", user="alice", check=True)


def test_bench_on_an_unknown_place_fails_before_anything_runs(free_lab, tmp_path):
    lab = free_lab
    done = subprocess.run(bench_argv(lab, tmp_path, "--place", "nope"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=lab.env())
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no place named 'nope'" in done.stderr and "places: p1, p2, p3, spare" in done.stderr
    assert not (tmp_path / "r").exists()


# -- check and deploy --------------------------------------------------------------------------


def test_check_on_tagged_places_checks_their_boards_and_releases_them(free_lab):
    lab = free_lab
    done = CliRunner().invoke(app, ["check", "--coordinator", lab.address, "--places", "kind=loop",
                                    "--places", "rack=r1,kind=other", "--inventory", str(lab.inventory),
                                    "--json"])
    assert done.exit_code in (0, 2), done.output  # 2: reachable, not ready (no docker on a loopback board)
    reports = json.loads(done.stdout)
    checked = sorted(r["device"] for r in reports)  # kind=other is p2 (b2); kind=loop p1 (b1) or p3 (b3)
    assert checked in (["b1", "b2"], ["b2", "b3"]), checked
    assert all(r["verdict"] != "unreachable" for r in reports), reports
    assert "acquired place p2 of " in done.stderr and "released place p2" in done.stderr
    assert all(lab.holder(p) == "None" for p in PLACES)


# -- power ------------------------------------------------------------------------------------


def test_power_cycle_switches_the_board_off_and_on_and_waits_for_its_ssh(free_lab, tmp_path):
    lab, strip = free_lab, free_lab.strip
    before, sshd_before = len(strip.events), lab.boards._procs["b1"].pid
    done = host("power", "cycle", "b1", "--coordinator", lab.address, "--inventory", lab.inventory,
                "--delay", "1", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(done.stdout)
    events = strip.events[before:]
    assert [e[1:] for e in events] == [(0, "off"), (0, "on"), (0, "up")]  # the strip saw the cycle
    assert events[1][0] - events[0][0] >= 1.0  # --delay between off and on
    assert record["place"] == "p1" and record["resource"] == "NetworkPowerPort"
    assert record["ssh_after_s"] >= strip.boot_s * 0.8  # it waited for the board to boot
    assert lab.boards.is_up("b1") and lab.boards._procs["b1"].pid != sshd_before  # a new sshd answers
    assert "acquired place p1" in done.stderr and "released place p1" in done.stderr
    assert lab.holder("p1") == "None"


def test_power_cycle_without_a_power_resource_is_one_error_with_the_next_command(free_lab, tmp_path):
    lab, before = free_lab, len(free_lab.strip.events)
    done = host("power", "cycle", "--place", "p2", "--coordinator", lab.address, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: place p2 of " in done.stderr and "has no power resource" in done.stderr
    assert "hint: export a NetworkPowerPort" in done.stderr and "-p p2 add-match" in done.stderr
    assert "Traceback" not in done.stderr and lab.holder("p2") == "None"
    done = host("power", "cycle", "b2", cwd=tmp_path)  # no coordinator: inventory boards have no switch
    assert done.returncode == 1 and "hint: host power cycle b2 --coordinator ADDRESS" in done.stderr
    assert len(lab.strip.events) == before and lab.boards.is_up("b2")


def _wait_for_runner(lab: Lab, board: str, proc: subprocess.Popen) -> None:
    """Until a runner process is running on ``board`` (its lease file exists)."""
    leases, deadline = lab.boards.workdir(board) / "leases", time.monotonic() + 180
    while not list(leases.glob("*.lease")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)


@pytest.mark.slow
def test_a_frozen_board_is_power_cycled_and_its_campaign_completes_while_one_without_power_fails(
        free_lab, tmp_path):
    lab = free_lab
    for board in ("b1", "b2"):
        labfix.shutil.rmtree(lab.boards.workdir(board) / "leases", ignore_errors=True)
    models = []
    for stem in ("m1", "m2"):
        labfix.shutil.copy(MODEL, tmp_path / f"{stem}.onnx")
        models.append(tmp_path / f"{stem}.onnx")
    before = len(lab.strip.events)
    argv = bench_argv(lab, tmp_path, "--place", "p1", "--place", "p2", "--campaign", "frz", "--timeout", "8",
                      "--connect-timeout", "2", "--min-s", "2")
    at = argv.index(str(MODEL))
    argv[at:at + 1] = map(str, models)
    proc = subprocess.Popen(argv, cwd=tmp_path, env=lab.env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        for board in ("b1", "b2"):  # sshd and the runner stopped mid-run: the board stops answering
            _wait_for_runner(lab, board, proc)
            lab.boards.freeze(board)
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
        lab.boards.thaw("b2")
    assert proc.returncode == 1, out + err  # b2's cells failed
    folder = tmp_path / "r" / "frz"
    b1, b2 = ([json.loads(f.read_text()) for f in sorted((folder / b).glob("m*.json"))] for b in ("b1", "b2"))
    assert len(b1) == 2 and all(c["status"] in ("ok", "invalid") for c in b1), b1  # every cell done once
    assert len(b2) == 2 and all(c["error"]["category"] == "unreachable" for c in b2), b2
    assert not (folder / "b1" / ".attempts").exists()
    run = json.loads((folder / "campaign.json").read_text())["runs"][-1]
    (cycled,) = run["power_cycles"]  # one cycle, b1's; none for b2 (p2 has no power resource)
    assert (cycled["device"], cycled["place"], cycled["outcome"], cycled["resource"]) == \
        ("b1", "p1", "ok", "NetworkPowerPort")
    assert cycled["cell_retried"] and cycled["ssh_after_s"] >= lab.strip.boot_s * 0.8 and cycled["why"]
    assert [e[1:] for e in lab.strip.events[before:]] == [(0, "off"), (0, "on"), (0, "up")]
    assert run["cells_run"] == {"b1": 2, "b2": 2}
    said = " ".join(out.split())  # the board's note under the table (wrapped at the terminal's width)
    assert "b1: power-cycled place p1 of " in said and " runs again from its first process" in said, out
    assert "b2: not power-cycled: place p2 has no power resource" in said, out
    print(out, run["power_cycles"])  # the report quotes them
    assert lab.holder("p1") == "None" and lab.holder("p2") == "None"


@pytest.mark.slow
def test_a_board_frozen_before_the_campaign_is_power_cycled_when_opened(free_lab, tmp_path):
    lab, before = free_lab, len(free_lab.strip.events)
    lab.boards.freeze("b1")
    try:
        argv = bench_argv(lab, tmp_path, "--place", "p1", "--campaign", "cold", "--connect-timeout", "2")
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=400, env=lab.env())
    finally:
        lab.boards.thaw("b1")  # (a no-op once the strip restarted it)
    assert done.returncode in (0, 3), done.stdout + done.stderr
    assert [e[1:] for e in lab.strip.events[before:]] == [(0, "off"), (0, "on"), (0, "up")]
    run = json.loads((tmp_path / "r" / "cold" / "campaign.json").read_text())["runs"][-1]
    (cycled,) = run["power_cycles"]
    assert cycled["outcome"] == "ok" and cycled["cell"] is None
    assert "when the campaign opened it" in cycled["why"]
    cell = json.loads(next((tmp_path / "r" / "cold" / "b1").glob("identity__*.json")).read_text())
    assert cell["status"] in ("ok", "invalid") and lab.holder("p1") == "None"


# -- provision and power-mode ------------------------------------------------------------------

#: a stand-in power_mode.yml (as in tests/test_provision_cli.py): reports a power state per host
POWER_PLAY = """\
- name: Stand-in power modes
  hosts: all
  gather_facts: false
  tasks:
    - name: Edgegauge power state
      ansible.builtin.debug:
        var: edgegauge_power_state
      vars:
        edgegauge_power_state:
          schema: edgegauge.power_state/1
          family: arm_cpu
          mode_key: "governor=performance"
          errors: []
      tags: [show, tune, reset]
"""


@pytest.mark.slow
def test_power_mode_show_on_a_place_plays_on_its_board_only_and_releases_it(free_lab, tmp_path):
    lab = free_lab
    (tmp_path / "pb").mkdir()
    (tmp_path / "pb" / "power_mode.yml").write_text(POWER_PLAY)
    inv = lab.boards.write_inventory(tmp_path / "lab.ini", ["b1", "b2", "b3"],
                                     ansible_python_interpreter="/usr/bin/python3")
    env = {**lab.env(), "EDGEGAUGE_PLAYBOOKS": str(tmp_path / "pb"),
           "ANSIBLE_SSH_ARGS": "-o ControlMaster=no"}
    done = subprocess.run([sys.executable, "-m", "host", "power-mode", "show", "--coordinator", lab.address,
                           "--place", "p3", "-i", str(inv), "--artifacts", str(tmp_path / "art"), "--json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert sorted(doc["recap"]) == ["b3"] and doc["reports"]["b3"]["mode_key"] == "governor=performance"
    assert "acquired place p3 of " in done.stderr and "released place p3" in done.stderr
    assert lab.holder("p3") == "None"
    other = lab.boards.write_inventory(tmp_path / "other.ini", ["b1"])  # without the place's board
    done = subprocess.run([sys.executable, "-m", "host", "provision", "--coordinator", lab.address, "--place",
                           "p3", "-i", str(other)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=env)  # refused, and the place released
    assert done.returncode != 0 and "no inventory board answers at the address of place(s) p3" in done.stderr
    assert "Traceback" not in done.stderr and lab.holder("p3") == "None"
