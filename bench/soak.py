"""Soak test of the lab's fault handling (run by hand, as root: it mounts a tmpfs).

    .venv/bin/python bench/soak.py [--models 20] [--fault-every 10] [--faults-for 120] [--seed 1]

Three loopback OpenSSH boards (``tests/labfix.py``), one campaign of ``3 × --models`` short cells
(null backend, five processes per cell), driven by ``python -m host bench`` as a user would.
While the campaign runs, a fault is injected every ``--fault-every`` s (uniform ±30 %) for the
first ``--faults-for`` s, chosen at random among:

* ``drop``: the SSH connections of a board are killed (its runner is left running, no pty);
* ``runner_kill``: a board's runner processes get SIGKILL (a crash on the board);
* ``sshd_restart``: a board's sshd and everything under it is killed, restarted 2 s later;
* ``host_sigterm``: ``host`` gets SIGTERM (a cancelled job); it is resumed at once;
* ``disk_full``: board b3's work folder (a 24 MiB tmpfs) is filled for 8 s.

With ``--coordinator`` (issue 26) the boards are shared through a real ``labgrid-coordinator``
and ``labgrid-exporter`` on loopback (tests/labgridfix.py), each board's place with a power
resource (a ``NetworkPowerPort`` on the loopback power strip of tests/powerstrip.py), and two
"hosts" (``LG_HOSTNAME`` hostA and hostB) run their own campaigns at the same time: hostA on
places p1 and p2, hostB on p2 and p3 (so they queue for p2), each ``--power-cycles 3``. One more
fault joins the draw: ``freeze`` (a board's sshd and runners SIGSTOPped: it stops answering
and only a power cycle brings it back). The audit adds, per host, its cells and the power cycles
logged, and across hosts: runs of the two hosts that used the same board at overlapping times
(must be 0) and places left acquired at the end (must be 0). Writes ``bench/out/soak_coordinator.json``.

After each exit of ``host`` the same command runs again with ``--retry-failed`` until every
cell is stored and finished. Then the campaign is audited: cells planned, finished, lost
(planned but not finished: must be 0), duplicated (a cell stored twice: must be 0), runner
processes or lease files left on the boards (must be 0). The same campaign without faults gives
the baseline wall time. Writes ``bench/out/soak.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import labfix  # noqa: E402

NULL = ["--backend", "null", "--warmup-iters", "1", "--warmup-s", "0", "--min-iters", "5", "--min-s", "0.2",
        "--target-ci", "0.5", "--max-processes", "5", "--timeout", "30", "--connect-timeout", "3"]
FAULTS = ("drop", "runner_kill", "sshd_restart", "host_sigterm", "disk_full")
#: --coordinator: place -> (board, tags); each board's outlet on the strip; each host's places
PLACES = {"p1": ("b1", {"rack": "r1"}), "p2": ("b2", {"rack": "r1"}), "p3": ("b3", {"rack": "r2"})}
OUTLETS = {0: "b1", 1: "b2", 2: "b3"}
HOSTS = {"hostA": ("p1", "p2"), "hostB": ("p2", "p3")}


def runner_pids(workdir: Path) -> list:
    out = subprocess.run(["pgrep", "-f", f"{workdir}/out/edgegauge-cell-"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


class Injector(threading.Thread):
    """Injects one random fault every ~``every`` s until ``until`` (monotonic)."""

    def __init__(self, boards, tmpfs: Path, every: float, until: float, rng: random.Random,
                 faults: tuple = FAULTS):
        super().__init__(daemon=True)
        self.boards, self.tmpfs, self.every, self.until, self.rng = boards, tmpfs, every, until, rng
        self.faults = faults
        self.hosts: dict = {}  # host name -> its running ``host bench`` process
        self.log: list = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.every * self.rng.uniform(0.7, 1.3)):
            if time.monotonic() > self.until:
                return
            kind, board = self.rng.choice(self.faults), self.rng.choice(self.boards.names)
            try:
                getattr(self, kind)(board)
                self.log.append({"t": round(time.monotonic(), 1), "fault": kind, "board": board})
            except Exception as exc:  # a fault that could not be injected is logged, not fatal
                self.log.append({"fault": kind, "board": board, "error": str(exc)})

    def drop(self, board: str) -> None:
        self.boards.drop_connections(board)

    def runner_kill(self, board: str) -> None:
        for pid in runner_pids(self.boards.workdir(board)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def sshd_restart(self, board: str) -> None:
        self.boards.stop(board)
        time.sleep(2)
        self.boards.start(board)

    def host_sigterm(self, board: str) -> None:
        running = [p for _, p in sorted(self.hosts.items()) if p.poll() is None]
        if running:
            self.rng.choice(running).send_signal(signal.SIGTERM)

    def freeze(self, board: str) -> None:
        self.boards.freeze(board)

    def disk_full(self, board: str) -> None:
        filler = self.tmpfs / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=64"], capture_output=True)
        time.sleep(8)
        filler.unlink(missing_ok=True)


def campaign(boards, inv: Path, models: list, results: Path, injector: Injector | None, *,
             where: list | None = None, env: dict | None = None, host: str = "host") -> dict:
    """Run ``host bench`` until every cell is finished; returns runs, exit codes and wall time.
    ``where``: the device options (default ``-i INV --all``); ``env``: the process's environment."""
    argv = [sys.executable, "-m", "host", "bench", *map(str, models), *(where or ["-i", str(inv), "--all"]),
            "--results", str(results), "--campaign", "soak", *NULL]
    start, codes = time.monotonic(), []
    for attempt in range(40):
        for name in boards.stopped():  # a restart fault may be half-way
            try:
                boards.start(name)
            except RuntimeError:  # started meanwhile (the power strip's boot)
                pass
        proc = subprocess.Popen(argv + (["--retry-failed"] if attempt else []), cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if injector is not None:
            injector.hosts[host] = proc
        codes.append(proc.wait())
        # 3: no cell failed, one is INVALID (a verdict of the measurement on a busy machine, not a fault)
        if codes[-1] in (0, 3) and (injector is None or time.monotonic() > injector.until):
            break
    return {"runs": len(codes), "exit_codes": codes, "wall_s": round(time.monotonic() - start, 1)}


def _categories(folder: Path) -> dict:
    """Failed attempts kept under ``.attempts/`` (replaced on resume), by ``error.category``."""
    counts: dict = {}
    for path in folder.glob("*/.attempts/*.json"):
        category = (json.loads(path.read_text()).get("error") or {}).get("category", "?")
        counts[category] = counts.get(category, 0) + 1
    return counts


def audit(boards, results: Path, planned: int) -> dict:
    """Cells finished, lost and duplicated; what is left on the boards."""
    keys: dict = {}
    for path in (results / "soak").glob("*/*.json"):
        doc = json.loads(path.read_text())
        cell = doc["cell"]
        keys.setdefault((cell["device"], cell["model_stem"], cell["config"]), []).append(doc["status"])
    finished = sum(1 for v in keys.values() if v and v[-1] in ("ok", "invalid"))
    plan = json.loads((results / "soak" / "campaign.json").read_text())
    leftovers = sum(len(v) for run in plan["runs"] for v in (run.get("leftovers_killed") or {}).values())
    return {
        "cells_planned": planned, "cells_finished": finished, "cells_lost": planned - finished,
        "cells_duplicated": sum(1 for v in keys.values() if len(v) > 1),
        "failed_attempts_kept": _categories(results / "soak"),
        "leftover_sessions_killed_by_sweeps": leftovers,
        "orphaned_runners_at_end": sum(len(runner_pids(boards.workdir(n))) for n in boards.names),
        "lease_files_at_end": sum(len(list((boards.workdir(n) / "leases").glob("*.lease")))
                                  for n in boards.names if (boards.workdir(n) / "leases").exists()),
    }


def _fresh(boards) -> None:
    """A fresh start for the faulty run (models sent again)."""
    for name in boards.names:
        for sub in ("models", "leases", "out"):
            shutil.rmtree(boards.workdir(name) / sub, ignore_errors=True)


def _hosts(boards, lab, models: list, results: Path, injector: Injector | None) -> dict:
    """--coordinator: each host's campaign loop (:func:`campaign`) in a thread of its own, at once."""
    done: dict = {}

    def one(host: str, places: tuple) -> None:
        where = ["--coordinator", lab.address, "--inventory", str(lab.inventory), "--wait-lock", "900",
                 "--power-cycles", "3", *(x for p in places for x in ("--place", p))]
        env = {**lab.env(), "LG_HOSTNAME": host, "LG_USERNAME": "soak"}
        done[host] = campaign(boards, lab.inventory, models, results / host, injector, where=where, env=env,
                              host=host)

    threads = [threading.Thread(target=one, args=item) for item in HOSTS.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done


def _overlaps(results: Path) -> dict:
    """Runs of two hosts that used one board at overlapping times (``campaign.json`` runs: start and
    end, UTC seconds, logged while the run holds its places), and runs without an end (killed)."""
    runs = []
    for host in HOSTS:
        plan = json.loads((results / host / "soak" / "campaign.json").read_text())
        runs += [(host, r["start_utc"], r.get("end_utc"), set(r["devices"])) for r in plan["runs"]]
    bad = [f"{a[0]} {a[1]}..{a[2]} and {b[0]} {b[1]}..{b[2]} on {sorted(a[3] & b[3])}"
           for a in runs for b in runs if a[0] < b[0] and a[3] & b[3] and a[2] and b[2]
           and a[1] < b[2] and b[1] < a[2]]
    return {"overlapping_runs": bad, "runs_without_end": sum(1 for r in runs if not r[2])}


def _cycles(folder: Path) -> dict:
    """The power cycles a host's campaign logged, by outcome, and what each was after."""
    found = [c for run in json.loads((folder / "campaign.json").read_text())["runs"]
             for c in run.get("power_cycles") or []]
    return {"done": sum(1 for c in found if c["outcome"] == "ok"),
            "failed": sum(1 for c in found if c["outcome"] != "ok"),
            "log": [{k: c.get(k) for k in ("device", "place", "cell", "outcome", "ssh_after_s",
                                           "cell_retried")} for c in found]}


def coordinated(boards, work: Path, models: list, tmpfs: Path, args) -> dict:
    """--coordinator: the two hosts' campaigns through a loopback labgrid lab, without and with
    faults (``freeze`` among them), audited per host and across hosts."""
    from labgridfix import Lab

    (work / "lab").mkdir()
    lab = Lab(work / "lab", boards, PLACES, OUTLETS)
    try:
        base = _hosts(boards, lab, models, work / "base", None)
        _fresh(boards)
        injector = Injector(boards, tmpfs, args.fault_every, time.monotonic() + args.faults_for,
                            random.Random(args.seed), faults=FAULTS + ("freeze",))
        injector.start()
        faulty = _hosts(boards, lab, models, work / "faulty", injector)
        injector.stop_event.set()
        time.sleep(1.0)
        hosts = {h: {**faulty[h], **audit(boards, work / "faulty" / h, 2 * len(models)),
                     "power_cycles": _cycles(work / "faulty" / h / "soak")} for h in HOSTS}
        return {"fault_free": base, "with_faults": hosts, "faults": injector.log,
                **_overlaps(work / "faulty"),
                "places_left_acquired": [p for p in PLACES if lab.holder(p) != "None"],
                "wall_ratio": round(max(h["wall_s"] for h in faulty.values())
                                    / max(h["wall_s"] for h in base.values()), 2)}
    finally:
        for name in boards.names:  # a board frozen after the last run
            try:
                boards.thaw(name)
            except RuntimeError:
                pass
        lab.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--fault-every", type=float, default=10.0)
    ap.add_argument("--faults-for", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--coordinator", action="store_true",
                    help="two hosts' campaigns on the boards through a loopback labgrid coordinator")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eg-soak-"))
    models = []
    for i in range(args.models):
        models.append(work / "models" / f"m{i:02d}.onnx")
        models[-1].parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / "tests" / "fixtures" / "models" / "identity.onnx", models[-1])
    with labfix.Boards(work / "boards", names=("b1", "b2", "b3")) as boards:
        tmpfs = boards.workdir("b3")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(tmpfs)], check=True)
        try:
            if args.coordinator:
                report = coordinated(boards, work, models, tmpfs, args)
            else:
                report = _single(boards, work, models, tmpfs, args)
        finally:
            subprocess.run(["umount", "-l", str(tmpfs)], check=False)
    out = ROOT / "bench" / "out" / ("soak_coordinator.json" if args.coordinator else "soak.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    counts: dict = {}
    for f in report["faults"]:
        counts[f["fault"]] = counts.get(f["fault"], 0) + 1
    print(json.dumps({k: v for k, v in report.items() if k != "faults"}, indent=2))
    print("faults injected:", counts)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if _bad(report) == 0 else 1


def _single(boards, work: Path, models: list, tmpfs: Path, args) -> dict:
    """One host's campaign on the inventory's three boards, without and with faults."""
    inv = boards.write_inventory(work / "lab.ini")
    base = campaign(boards, inv, models, work / "base", None)
    _fresh(boards)
    injector = Injector(boards, tmpfs, args.fault_every, time.monotonic() + args.faults_for,
                        random.Random(args.seed))
    injector.start()
    faulty = campaign(boards, inv, models, work / "faulty", injector)
    injector.stop_event.set()
    time.sleep(1.0)
    return {"fault_free": base, "with_faults": faulty, "faults": injector.log,
            **audit(boards, work / "faulty", 3 * args.models),
            "wall_ratio": round(faulty["wall_s"] / base["wall_s"], 2)}


def _bad(report: dict) -> int:
    """Cells lost or duplicated, runners left, runs overlapping on a board, places left held."""
    audits = list(report["with_faults"].values()) if "overlapping_runs" in report else [report]
    return sum(a["cells_lost"] + a["cells_duplicated"] + a["orphaned_runners_at_end"] for a in audits) \
        + len(report.get("overlapping_runs", [])) + len(report.get("places_left_acquired", []))


if __name__ == "__main__":
    sys.exit(main())
