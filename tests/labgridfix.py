"""A real labgrid lab on loopback for tests/test_labgrid.py and bench/soak.py (issue 26): a
``labgrid-coordinator`` and a ``labgrid-exporter`` (labgrid 26, the ``lab`` extra) started as
processes, the exporter publishing a ``NetworkService`` per loopback sshd board of tests/labfix.py
and a ``NetworkPowerPort`` per outlet of a loopback power strip (tests/powerstrip.py); places
created and tagged with ``labgrid-client``, the tool a lab uses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import labfix
from powerstrip import PowerStrip

BIN = Path(sys.executable).parent
EXPORTER = "eg-rack1"


class Lab:
    """A coordinator and an exporter on loopback, their folder and ``labgrid-client``.

    ``places``: place -> (board of ``boards``, tags): a place per board, matching its
    ``NetworkService``; ``outlets``: outlet of the loopback power strip (:attr:`strip`) -> board,
    exported as that board's ``NetworkPowerPort`` (``shelly_gen1``) and matched by its place;
    ``extra_places``: places created with no resource at all."""

    def __init__(self, directory: Path, boards: labfix.Boards, places: dict, outlets: dict,
                 extra_places: tuple = ()):
        self.dir, self.boards, self.procs = directory, boards, []
        self.places, self.outlets = dict(places), dict(outlets)
        self.strip = PowerStrip(boards, outlets)
        port, = labfix.free_ports(1)
        self.address = f"127.0.0.1:{port}"
        self.inventory = boards.write_inventory(directory / "inventory.ini")
        self._start("coordinator", [BIN / "labgrid-coordinator", "-l", self.address])
        deadline = time.monotonic() + 30
        while not labfix.port_accepts(port):
            self._check(deadline, "coordinator")
            time.sleep(0.1)
        lines = [self._group(board) for board, _ in places.values()]
        (directory / "exporter.yaml").write_text("".join(lines))
        self._start("exporter", [BIN / "labgrid-exporter", "-c", self.address, "-n", EXPORTER,
                                 "--hostname", "127.0.0.1", str(directory / "exporter.yaml")])
        while self.client("resources").stdout.count("/NetworkService") < len(places) \
                or self.client("resources").stdout.count("/NetworkPowerPort") < len(outlets):
            self._check(deadline, "exporter")
            time.sleep(0.2)
        for place, (board, tags) in places.items():
            self.client("-p", place, "create", check=True)
            self.client("-p", place, "add-match", f"{EXPORTER}/{board}/NetworkService", check=True)
            self.client("-p", place, "set-tags", *(f"{k}={v}" for k, v in tags.items()), check=True)
            if board in outlets.values():
                self.client("-p", place, "add-match", f"{EXPORTER}/{board}/NetworkPowerPort", check=True)
        for place in extra_places:
            self.client("-p", place, "create", check=True)

    def _check(self, deadline: float, name: str) -> None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"labgrid-{name} did not come up in 30 s: {self.log(name)}")

    def _group(self, board: str) -> str:
        """The exporter's resources of one board: its SSH address, and its strip outlet if it has one."""
        text = (f"{board}:\n  NetworkService:\n    address: 127.0.0.1\n    port: {self.boards.ports[board]}\n"
                "    username: root\n")
        for index in (i for i, b in self.outlets.items() if b == board):
            text += (f"  NetworkPowerPort:\n    model: shelly_gen1\n    host: {self.strip.url}\n"
                     f"    index: {index}\n")
        return text

    def _start(self, name: str, argv: list) -> None:
        log = open(self.dir / f"{name}.log", "w")
        self.procs.append(subprocess.Popen([str(a) for a in argv], cwd=self.dir, stdout=log,
                                           stderr=subprocess.STDOUT, env=self.env()))

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")[-3000:]

    def env(self, user: str | None = None) -> dict:
        env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
        env.pop("LG_COORDINATOR", None)
        if user:
            env["LG_USERNAME"] = user
        return env

    def client(self, *args, user: str | None = None, check: bool = False) -> subprocess.CompletedProcess:
        """``labgrid-client -x ADDRESS ARGS`` (as ``user`` when given: LG_USERNAME)."""
        done = subprocess.run([str(BIN / "labgrid-client"), "-x", self.address, *args], env=self.env(user),
                              capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"labgrid-client {' '.join(args)}: {done.stdout} {done.stderr}")
        return done

    def holder(self, place: str) -> str:
        """``acquired:`` of ``labgrid-client -p PLACE show`` (``None`` when free)."""
        shown = self.client("-p", place, "show", check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in shown.splitlines()
                    if line.strip().startswith("acquired:"))

    def reservations(self) -> str:
        return self.client("reservations", check=True).stdout

    def close(self) -> None:
        for proc in reversed(self.procs):
            labfix.kill_tree(proc.pid)
            proc.wait(timeout=10)
        self.strip.close()
