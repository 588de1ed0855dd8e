"""What a cell is run with (:class:`BenchConfig`) and what the runner process did
(:class:`RunnerOutcome`). Where it runs — this machine or a board over SSH — is
:class:`host.lab.board.Board`; the campaign loop in :mod:`host.campaign.run` is the same for all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
            "orchestration": self.extra,
        }


def tail(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


#: Exit codes after which the runner has written a result document.
RESULT_EXIT_CODES = (EXIT_OK, EXIT_INVALID, EXIT_FAILED)
