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


def runner_pids(workdir: Path) -> list:
    out = subprocess.run(["pgrep", "-f", f"{workdir}/out/edgegauge-cell-"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


class Injector(threading.Thread):
    """Injects one random fault every ~``every`` s until ``until`` (monotonic)."""

    def __init__(self, boards, tmpfs: Path, every: float, until: float, rng: random.Random):
        super().__init__(daemon=True)
        self.boards, self.tmpfs, self.every, self.until, self.rng = boards, tmpfs, every, until, rng
        self.host: subprocess.Popen | None = None
        self.log: list = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.every * self.rng.uniform(0.7, 1.3)):
            if time.monotonic() > self.until:
                return
            kind, board = self.rng.choice(FAULTS), self.rng.choice(self.boards.names)
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
        if self.host is not None and self.host.poll() is None:
            self.host.send_signal(signal.SIGTERM)

    def disk_full(self, board: str) -> None:
        filler = self.tmpfs / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=64"], capture_output=True)
        time.sleep(8)
        filler.unlink(missing_ok=True)


def campaign(boards, inv: Path, models: list, results: Path, injector: Injector | None) -> dict:
    """Run ``host bench`` until every cell is finished; returns runs, exit codes and wall time."""
    argv = [sys.executable, "-m", "host", "bench", *map(str, models), "-i", str(inv), "--all",
            "--results", str(results), "--campaign", "soak", *NULL]
    start, codes = time.monotonic(), []
    for attempt in range(40):
        for name in boards.stopped():  # a restart fault may be half-way
            boards.start(name)
        proc = subprocess.Popen(argv + (["--retry-failed"] if attempt else []), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if injector is not None:
            injector.host = proc
        codes.append(proc.wait())
        if codes[-1] == 0 and (injector is None or time.monotonic() > injector.until):
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--fault-every", type=float, default=10.0)
    ap.add_argument("--faults-for", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=1)
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
            inv = boards.write_inventory(work / "lab.ini")
            base = campaign(boards, inv, models, work / "base", None)
            for name in boards.names:  # a fresh start for the faulty run (models sent again)
                for sub in ("models", "leases", "out"):
                    shutil.rmtree(boards.workdir(name) / sub, ignore_errors=True)
            injector = Injector(boards, tmpfs, args.fault_every, time.monotonic() + args.faults_for,
                                random.Random(args.seed))
            injector.start()
            faulty = campaign(boards, inv, models, work / "faulty", injector)
            injector.stop_event.set()
            time.sleep(1.0)
            report = {"fault_free": base, "with_faults": faulty, "faults": injector.log,
                      **audit(boards, work / "faulty", 3 * args.models),
                      "wall_ratio": round(faulty["wall_s"] / base["wall_s"], 2)}
        finally:
            subprocess.run(["umount", "-l", str(tmpfs)], check=False)
    out = ROOT / "bench" / "out" / "soak.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    counts: dict = {}
    for f in report["faults"]:
        counts[f["fault"]] = counts.get(f["fault"], 0) + 1
    print(json.dumps({k: v for k, v in report.items() if k != "faults"}, indent=2))
    print("faults injected:", counts)
    shutil.rmtree(work, ignore_errors=True)
    bad = report["cells_lost"] + report["cells_duplicated"] + report["orphaned_runners_at_end"]
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
