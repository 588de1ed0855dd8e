"""Where a cell runs. A target takes one model and one configuration, runs the runner in
a fresh process and hands back what happened; the campaign loop in :mod:`host.bench` is
the same for every target.

Only :class:`LocalTarget` (``--device local``: this machine) exists so far; SSH boards
from an inventory implement the same ``run_cell`` (lab issue).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runners.cli import policy_to_argv
from runners.core import Policy
from runners.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark configuration (the "configuration" axis of the campaign matrix).

    ``policy`` is the runner's own stop/verdict policy (``runners.core.Policy``, whose
    defaults are the README's "Measurement policy"); ``timeout_s`` bounds the whole
    runner process.
    """

    backend: str = "ort"
    batch: int = 1
    shapes: tuple = ()  # ((input name, (d1, d2, ...)), ...), hashable
    threads: int = 0  # 0 = all CPUs the runner may use
    opt_level: str = "all"
    seed: int = 0
    policy: Policy = field(default_factory=Policy)
    timeout_s: float = 600.0

    @property
    def slug(self) -> str:
        """File-name part naming the configuration, e.g. ``ort-b1-tall``."""
        parts = [self.backend, f"b{self.batch}", f"t{self.threads or 'all'}"]
        if self.opt_level != "all":
            parts.append(f"opt{self.opt_level}")
        if self.shapes:
            parts.append("s" + "_".join("x".join(map(str, dims)) for _, dims in self.shapes))
        return "-".join(parts)

    def shapes_dict(self) -> dict:
        return {name: list(dims) for name, dims in self.shapes}

    def runner_args(self) -> list[str]:
        """Arguments of ``python -m runners run`` after the model path."""
        args = [
            "--backend", self.backend,
            "--batch", str(self.batch),
            "--seed", str(self.seed),
            *policy_to_argv(self.policy),
        ]
        if self.backend == "ort":
            args += ["--threads", str(self.threads), "--opt-level", self.opt_level]
        for name, dims in self.shapes:
            args += ["--shape", f"{name}=" + "x".join(map(str, dims))]
        return args

    def to_json(self) -> dict:
        doc = asdict(self)
        doc["shapes"] = self.shapes_dict()
        doc["slug"] = self.slug
        return doc


@dataclass
class RunnerOutcome:
    """What one runner process did. ``result`` is its JSON document when it wrote one."""

    argv: list
    exit_code: int | None
    signal: str | None
    wall_s: float
    timed_out: bool
    stderr_tail: str
    result: dict | None = None
    result_error: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "argv": self.argv,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "wall_s": self.wall_s,
            "timed_out": self.timed_out,
            "stderr_tail": self.stderr_tail,
            "result_error": self.result_error,
        }


def _tail(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


class LocalTarget:
    """Runs each cell as ``python -m runners run …`` in a fresh child process here.

    ``runner_command`` is the argv prefix (default: this interpreter, ``-m runners``); a
    lab may point it at another interpreter or a container wrapper.
    """

    name = "local"

    def __init__(self, runner_command: list[str] | None = None, env: dict | None = None):
        self.runner_command = list(runner_command or [sys.executable, "-m", "runners"])
        self.env = env

    def run_cell(self, model: Path, config: BenchConfig) -> RunnerOutcome:
        """Run one cell; never raises for runner failures (they are in the outcome).

        Raises:
            OSError: when the runner command itself cannot be started.
        """
        import json

        with tempfile.TemporaryDirectory(prefix="edgegauge-cell-") as tmp:
            out = Path(tmp) / "result.json"
            argv = [*self.runner_command, "run", str(model), "--out", str(out),
                    *config.runner_args()]
            env = dict(os.environ if self.env is None else self.env)
            # The runner must import the runners package that sits beside this host.
            root = str(Path(__file__).resolve().parent.parent)
            env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            start = time.monotonic()
            timed_out = False
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env, start_new_session=True)
            try:
                _, stderr = proc.communicate(timeout=config.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                _, stderr = proc.communicate()
            except BaseException:  # Ctrl-C: do not leave a runner behind
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
            wall = time.monotonic() - start
            code = proc.returncode
            sig = None
            if code is not None and code < 0:
                sig = signal.Signals(-code).name
                code = None
            outcome = RunnerOutcome(argv=argv, exit_code=code, signal=sig, wall_s=wall,
                                    timed_out=timed_out, stderr_tail=_tail(stderr or ""))
            if out.exists() and not timed_out:
                try:
                    outcome.result = json.loads(out.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    outcome.result_error = f"unreadable result JSON: {exc}"
            return outcome


#: Exit codes after which the runner has written a result document.
RESULT_EXIT_CODES = (EXIT_OK, EXIT_INVALID, EXIT_FAILED)
