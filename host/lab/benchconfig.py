"""What a cell is run with (:class:`BenchConfig`) and what the runner process did
(:class:`RunnerOutcome`). Where it runs — this machine or a board over SSH — is
:class:`host.lab.board.Board`; the campaign (:mod:`host.campaign.run`, its board worker
:mod:`host.campaign.worker`) is the same for all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from host.errors import BackendError
from runners.backends import default_name
from runners.cli import policy_to_argv
from runners.core import Policy
from runners.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from runners.scenarios import slug_part


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark configuration (the "configuration" axis of the campaign matrix).

    ``policy`` is the runner's own stop/verdict policy (``runners.core.Policy``, whose
    defaults are the README's "Measurement policy"); ``timeout_s`` bounds the whole
    runner process. ``threads`` (0 = all CPUs the runner may use) is part of every
    configuration's slug and reaches backends that declare a ``threads`` option;
    ``options`` holds the other backend options set explicitly, ``((name, value), ...)``
    (e.g. ``(("opt_level", "basic"),)``): each backend gets those its descriptor
    (``runners.backends``) declares, the others are ignored, so one configuration can
    serve devices of different runtimes.
    """

    backend: str = field(default_factory=default_name)  # the descriptor that says default
    batch: int = 1
    shapes: tuple = ()  # ((input name, (d1, d2, ...)), ...), hashable
    threads: int = 0  # 0 = all CPUs the runner may use
    seed: int = 0
    policy: Policy = field(default_factory=Policy)
    timeout_s: float = 600.0
    options: tuple = ()  # ((backend option name, value), ...), hashable
    precision: str = "fp32"  # the model variant's recipe slug (host.models.precision); fp32 = as given
    counters: bool = False  # perf stat around the timed loop (runner --counters, runners.counters)

    @property
    def descriptor(self):
        """The backend's :class:`runners.backends.BackendDescriptor`, or None when unknown."""
        from runners.backends import descriptors

        return descriptors().get(self.backend)

    def backend_options(self) -> dict:
        """Every option the backend declares: ``threads``, ``options`` where set, else its
        defaults (``{}`` for an unknown backend). Raises ValueError for a bad value."""
        desc = self.descriptor
        if desc is None:
            return {}
        given = {"threads": self.threads, **dict(self.options)}
        return desc.resolve({k: v for k, v in given.items() if desc.option(k) is not None})

    @property
    def slug(self) -> str:
        """File-name part naming the configuration, e.g. ``ort-b1-tall``, ``ort-b1-t2-optbasic``,
        ``ort-b1-tall-int8``: backend, batch, threads, then each explicitly set backend option that
        differs from its default (in descriptor order), then the shapes, then the precision
        (nothing for fp32, the model as given), then the scenario (:func:`runners.scenarios.slug_part`:
        nothing for single-stream, e.g. ``paced60hz-120s``)."""
        parts = [self.backend, f"b{self.batch}", f"t{self.threads or 'all'}"]
        desc, given = self.descriptor, dict(self.options)
        for opt in desc.options if desc else ():
            if opt.name != "threads" and opt.name in given and given[opt.name] != opt.default:
                parts.append(opt.slug_part(given[opt.name]))
        if self.shapes:
            parts.append("s" + "_".join("x".join(map(str, dims)) for _, dims in self.shapes))
        if self.precision != "fp32":
            parts.append(self.precision)
        scenario = slug_part(self.policy)  # "" for single-stream: those names are what they were
        if scenario:
            parts.append(scenario)
        return "-".join(parts)

    def shapes_dict(self) -> dict:
        return {name: list(dims) for name, dims in self.shapes}

    def runner_args(self) -> list[str]:
        """Arguments of ``python -m runners run`` after the model path: the policy, always
        ``--keep-latencies``, and every option the backend's descriptor declares, explicitly
        (ort: ``--threads N --opt-level L``)."""
        args = [
            "--backend", self.backend,
            "--batch", str(self.batch),
            "--seed", str(self.seed),
            *policy_to_argv(self.policy),
            "--keep-latencies",  # the host keeps every sample (the cell's samples sidecar)
        ]
        desc = self.descriptor
        for name, value in self.backend_options().items():
            args += desc.option(name).to_argv(value)
        for name, dims in self.shapes:
            args += ["--shape", f"{name}=" + "x".join(map(str, dims))]
        if self.counters:
            args.append("--counters")
        return args

    def to_json(self) -> dict:
        doc = asdict(self)
        doc["shapes"] = self.shapes_dict()
        doc["options"] = dict(self.options)
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
    arrays: dict | None = None  # fidelity outputs read back from the board (not in the JSON)

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


def check_backend(name: str) -> None:
    """Refuse a ``--backend`` this version cannot run.

    Raises:
        BackendError: ``name`` is no backend module's descriptor (``runners/backends/``), or its
            descriptor says ``implemented=False`` (e.g. tensorrt).
    """
    from runners.backends import descriptors, implemented_names

    desc = descriptors().get(name)
    if desc is None or not desc.implemented:
        why = f": not implemented in this version ({desc.reason})" if desc else ""
        raise BackendError(f"unknown backend {name!r}{why}",
                           hint="use --backend " + " or ".join(implemented_names()))


def check_backend_options(given: Mapping[str, Any], backends) -> dict:
    """Typed values of backend options set on the command line, checked against the
    descriptors of ``backends`` (the backends the selected devices will run).

    Args:
        given: ``{name: text or value}``; names as in the descriptor (``opt_level``, ``-o opt_level=…``)
            or with dashes (``opt-level``).
        backends: backend names; unknown names are skipped.

    Returns:
        ``{option name: value}`` parsed with the first declaring backend's option type.

    Raises:
        BackendError: no backend in ``backends`` declares an option, or a value is not of its
            type or not one of its choices.
    """
    from runners.backends import descriptors

    descs = [descriptors()[b] for b in backends if b in descriptors()]
    values = {}
    for key, raw in given.items():
        flag = "--threads" if key == "threads" else f"-o {key}"  # as host bench takes it
        owners = [d for d in descs if d.option(key) is not None]
        if not owners:
            own = sorted({o.name for d in descs for o in d.options})
            raise BackendError(f"{flag} is not an option of backend {', '.join(backends)}",
                               hint=("its options: -o " + ", -o ".join(own)) if own else "it has no options")
        opt = owners[0].option(key)
        try:
            values[opt.name] = opt.parse(raw)
        except ValueError as exc:
            if opt.choices:
                raise BackendError(f"unknown {flag} {raw!r}",
                                   hint="one of " + ", ".join(map(str, opt.choices))) from None
            raise BackendError(f"bad {flag}: {exc}") from None
    return values
