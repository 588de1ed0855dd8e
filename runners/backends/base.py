"""The runtime interface: :class:`Backend` (every hook the runner core calls, each with its default),
:class:`BackendDescriptor` (what the host and the runner command line know of a runtime) and
:class:`BackendOption` (one typed option). Re-exported by :mod:`runners.backends`, which discovers the
runtimes; a runtime's package imports these from here (Python 3.8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from runners.inputs import TensorSpec
from runners.profiles import LayerProfiler

#: Option value types a descriptor may declare.
OPTION_TYPES = (int, float, str, bool)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class BackendOption:
    """One typed option of a backend.

    ``name`` is the key in the backend's options mapping (an identifier, e.g. ``opt_level``);
    its command-line flag is ``--opt-level`` (a bool that defaults to True: ``--no-NAME``; to
    False: ``--NAME``). ``kind`` is one of :data:`OPTION_TYPES`. ``slug`` is the prefix of the
    value in the host's configuration slug when the value differs from ``default`` (empty:
    the name without underscores).
    """

    name: str
    kind: type
    default: Any
    help: str
    choices: Optional[Tuple[Any, ...]] = None
    slug: str = ""

    @property
    def flag(self) -> str:
        """The ``python -m runners run`` flag, e.g. ``--opt-level`` or ``--no-io-binding``."""
        dashed = "--" + self.name.replace("_", "-")
        if self.kind is bool and self.default:
            return "--no-" + dashed[2:]
        return dashed

    def parse(self, text: Any) -> Any:
        """The value of ``text`` (a string from a command line, or a value) as ``kind``.

        Raises:
            ValueError: not a ``kind``, or not one of ``choices``.
        """
        if self.kind is bool and isinstance(text, str):
            low = text.strip().lower()
            if low not in _TRUE + _FALSE:
                raise ValueError(f"{self.name}={text!r}: expected true or false")
            value: Any = low in _TRUE
        elif self.kind is bool:
            value = bool(text)
        else:
            try:
                value = self.kind(text)
            except (TypeError, ValueError):
                raise ValueError(f"{self.name}={text!r}: expected {self.kind.__name__}") from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name}={text!r}: one of {', '.join(map(str, self.choices))}")
        return value

    def to_argv(self, value: Any) -> list:
        """Runner arguments that set this option to ``value`` (``[]`` for a bool at its default)."""
        if self.kind is bool:
            return [self.flag] if bool(value) != bool(self.default) else []
        return [self.flag, str(value)]

    def slug_part(self, value: Any) -> str:
        """``value`` in a configuration slug, e.g. ``optbasic`` (bools: ``on``/``off``)."""
        text = ("on" if value else "off") if self.kind is bool else str(value)
        return (self.slug or self.name.replace("_", "")) + text


@dataclass(frozen=True)
class ModelCompiler:
    """How the host makes a runtime's own model file from an ONNX model (``host zoo compile
    --backend NAME MODEL.onnx``), declared as the descriptor's ``compiler``.

    ``compile(model, proto, options, cache_dir, target)`` runs on the host: ``model`` the ONNX
    file's path, ``proto`` the ``onnx.ModelProto`` the host loaded from it, ``options`` the values
    of ``options`` (:class:`BackendOption`, given as ``--option NAME=VALUE``, defaults filled),
    ``cache_dir`` the folder of its cache, ``target`` the ``--target`` text or None (the host's
    own). It returns ``(path of the model file, recipe dict)``; the recipe's ``cache_hit`` says
    whether it was made now, ``name`` the file name to copy it under. It raises ValueError for a
    bad option or target, :class:`runners.errors.BackendUnavailableError` without its compiler and
    :class:`runners.errors.ModelCompileError` when compiling fails. ``summary``: one line.
    ``tag(values)``: the name a compiled file gets for the resolved options (``tvm-tuned8``), known
    before compiling (a cell whose model failed to compile is named by it); None: the host makes one.

    ``board_compile(model, proto, options, cache_dir, target, board)``, when declared, makes the file
    for one inventory board (``host zoo compile --device BOARD``, ``host bench`` on a board): the
    arguments of ``compile`` plus ``board`` (:class:`CompileBoard`: its name, facts and open SSH
    connection), so that the compiler takes the board's target from its facts (``target`` None) and
    may measure on the board (TVM: MetaSchedule tuning through TVM's RPC). It raises what ``compile``
    raises, and :class:`runners.errors.BoardRuntimeMissingError` when the board lacks what it needs
    there. None: the file does not depend on the board (``compile`` on the host serves every board).
    """

    compile: Callable[..., Tuple[Any, dict]]
    options: Tuple[BackendOption, ...] = ()
    summary: str = ""
    tag: Optional[Callable[[Dict[str, Any]], str]] = None
    board_compile: Optional[Callable[..., Tuple[Any, dict]]] = None

    def resolve(self, given: Mapping[str, Any]) -> Dict[str, Any]:
        """Every option: ``given`` values parsed, defaults for the rest.

        Raises:
            ValueError: a name not declared, or a bad value.
        """
        known = {o.name: o for o in self.options}
        unknown = sorted(k for k in given if k.replace("-", "_") not in known)
        if unknown:
            raise ValueError(f"no compile option {', '.join(unknown)} (its options: "
                             f"{', '.join(known) or 'none'})")
        values = {k.replace("-", "_"): v for k, v in given.items()}
        return {n: o.parse(values[n]) if n in values else o.default for n, o in known.items()}


@dataclass(frozen=True)
class CompileBoard:
    """The board a :attr:`ModelCompiler.board_compile` call is for, as the host hands it over while
    it holds the board's lock.

    ``name``: the inventory name; ``facts``: the board's facts (``host check``'s: ``arch`` as
    ``uname -m`` says, ``cores``, ``mem_gib``, ``os``, ``python``, ..., plus the CPU's identification
    where the board gives it: ``cpu_model``, ``cpu_flags`` or ``cpu_features``, ``cpu_part``,
    ``cpu_implementer``, ``model``); ``connection``: its open SSH connection (a Fabric ``Connection``:
    ``run(command, hide=, warn=, in_stream=, timeout=)`` returns ``return_code``, ``stdout``,
    ``stderr``), valid during the call only; ``python``: the inventory's interpreter on the board;
    ``workdir``: the board's work folder (absolute); ``host_address``: this host's IP address as the
    board reaches it (the SSH connection's local address; None when not known, e.g. through a jump
    host).
    """

    name: str
    facts: Mapping[str, Any]
    connection: Any
    python: str = "python3"
    workdir: str = "/tmp"
    host_address: Optional[str] = None


@dataclass(frozen=True)
class BackendDescriptor:
    """What one runtime backend is, declared once as ``DESCRIPTOR`` in its package's ``__init__.py``.

    Fields: ``name`` (``--backend`` and inventory ``runtime=`` value; equals its folder's, or module's,
    name), ``summary`` (one line), ``backend`` (the :class:`Backend` subclass; None when not
    implemented), ``options`` (:class:`BackendOption`, in command-line order), ``latency_levels``
    (what ``infer`` times, measurement policy; the first is the one results report),
    ``precisions`` (e.g. ``("fp32",)``; empty: runs no arithmetic), ``families`` (device
    families it targets: arm_cpu, jetson, zcu104, x86_a100 as in ``runners.power_state``),
    ``runtime_modules`` (Python modules its runtime needs; the first one's version is reported),
    ``model_suffixes`` (the model files it loads: ``.onnx``, a DPU's compiled ``.xmodel``),
    ``implemented`` and, when not, ``reason``; ``tested_here`` (what is checked without its
    hardware, and against what: stand-ins, recorded outputs) and ``verified_on`` (the real hardware
    it has run on; empty: none yet) — the README's Status table prints them (``host runtimes``).
    What the host asks instead of naming a runtime: ``default`` (the runtime of a device or bench
    that names none; exactly one descriptor sets it), ``returns_outputs`` (whether a run can return
    its outputs for fidelity against the host's fp32 ONNX reference; False: it computes nothing),
    ``layer_profiler`` (a :class:`runners.profiles.LayerProfiler`: how a layer-profile run's result
    becomes per-layer rows, defined in the runtime's own package; None: no profiler) and
    ``profile_options`` (``(name, value)`` options the host sets for that run, e.g. tensorrt's
    ``trtexec``); ``streams`` (how it makes the K independent streams of ``--scenario offline`` /
    ``server``: a key of :data:`runners.load.STREAM_METHODS`, e.g. ``"sessions"``; empty: one stream
    only, ``--streams`` > 1 refused); ``compiler`` (a :class:`ModelCompiler`: how ``host zoo compile
    --backend NAME`` makes its model file from an ONNX model on the host; None: it loads what it is
    given).
    """

    name: str
    summary: str
    backend: Optional[type] = None
    options: Tuple[BackendOption, ...] = ()
    latency_levels: Tuple[str, ...] = ("host_call",)
    precisions: Tuple[str, ...] = ("fp32",)
    families: Tuple[str, ...] = ()
    runtime_modules: Tuple[str, ...] = ()
    model_suffixes: Tuple[str, ...] = (".onnx",)
    implemented: bool = True
    reason: str = ""
    tested_here: str = ""
    verified_on: Tuple[str, ...] = ()
    default: bool = False
    returns_outputs: bool = True
    layer_profiler: Optional[LayerProfiler] = None
    profile_options: Tuple[Tuple[str, Any], ...] = ()
    streams: str = ""
    compiler: Optional[ModelCompiler] = None

    def runs_precision(self, precision: str) -> bool:
        """Whether this runtime runs models at ``precision`` (``fp32``, ``fp16``, ``int8``): it is
        one of ``precisions``; a runtime that declares none (``null``) computes nothing, so any."""
        return not self.precisions or precision in self.precisions

    def targets_family(self, family: Optional[str]) -> bool:
        """Whether this runtime runs on a device of ``family`` (a family name such as ``jetson``):
        it is one of ``families``; True when either is empty or None (not known, not declared)."""
        return not family or not self.families or family in self.families

    def option(self, name: str) -> Optional[BackendOption]:
        """The option called ``name`` (underscores or dashes), or None."""
        key = name.replace("-", "_")
        return next((o for o in self.options if o.name == key), None)

    def resolve(self, given: Mapping[str, Any]) -> Dict[str, Any]:
        """Every option of this backend: ``given`` values parsed, defaults for the rest.

        Raises:
            ValueError: a name this backend does not declare, or a bad value.
        """
        unknown = sorted(k for k in given if self.option(k) is None)
        if unknown:
            names = ", ".join(o.name for o in self.options) or "none"
            raise ValueError(f"backend {self.name!r} has no option {', '.join(unknown)} "
                             f"(its options: {names})")
        values = {self.option(k).name: v for k, v in given.items()}
        return {o.name: o.parse(values[o.name]) if o.name in values else o.default for o in self.options}

    def to_json(self) -> dict:
        """A JSON-ready view (``python -m runners backends --json``)."""
        return {
            "name": self.name, "summary": self.summary, "implemented": self.implemented,
            "reason": self.reason or None,
            "backend": f"{self.backend.__module__}:{self.backend.__qualname__}" if self.backend else None,
            "options": [{"name": o.name, "flag": o.flag, "type": o.kind.__name__, "default": o.default,
                         "choices": list(o.choices) if o.choices else None, "help": o.help}
                        for o in self.options],
            "latency_levels": list(self.latency_levels), "precisions": list(self.precisions),
            "families": list(self.families), "runtime_modules": list(self.runtime_modules),
            "model_suffixes": list(self.model_suffixes),
            "tested_here": self.tested_here, "verified_on": list(self.verified_on),
            "default": self.default, "returns_outputs": self.returns_outputs,
            "layer_profiler": self.layer_profiler.name if self.layer_profiler else None,
            "profile_options": dict(self.profile_options), "streams": self.streams or None,
            "compiler": None if self.compiler is None else {
                "summary": self.compiler.summary,
                "options": [{"name": o.name, "type": o.kind.__name__, "default": o.default,
                             "choices": list(o.choices) if o.choices else None, "help": o.help}
                            for o in self.compiler.options]},
        }


class Backend:
    """Interface of a runtime backend. Lifecycle: ``load`` → ``inputs`` → ``prepare`` →
    ``infer`` (many times) → ``close``.

    ``infer`` is the only call inside the timed region; it must perform one complete,
    synchronous inference on the prepared inputs (outputs ready when it returns).
    ``options`` holds the values of the descriptor's options (see :meth:`BackendDescriptor.resolve`).
    """

    name = "base"
    #: set by :func:`get_backend`; ``latency_level`` reads it
    descriptor: Optional[BackendDescriptor] = None
    #: the runtime's per-layer trace written by this session (``--profile-prefix``), a file path set
    #: by ``close``; None: no trace (the default: no layer profiler). The runner lists it in the
    #: result's ``profile_files``.
    profile_path: Optional[str] = None

    def __init__(self, options: Mapping | None = None):
        self.options = dict(options or {})

    @property
    def latency_level(self) -> str:
        """What ``infer`` times (measurement policy): the descriptor's first latency level,
        "host_call" (a runtime API call) when there is no descriptor."""
        return self.descriptor.latency_levels[0] if self.descriptor else "host_call"

    def load(self, model_path: str | None) -> None:
        """Create the session/engine. Raises ModelLoadError."""
        raise NotImplementedError

    def inputs(self) -> list[TensorSpec]:
        """The model's inputs with declared dtypes and (possibly dynamic) shapes."""
        raise NotImplementedError

    def outputs(self) -> Optional[list]:
        """The model's outputs (:class:`TensorSpec`, declared dtype and possibly dynamic shape) in
        the model's order, called after ``prepare`` for the result's ``model.outputs``; None (the
        default): the backend does not declare them and the result has no ``model.outputs``."""
        return None

    @property
    def samples_per_infer_factor(self) -> int:
        """Jobs one ``infer`` call runs (>= 1; default 1): the runner multiplies the batch by it to
        count samples per call (vart with ``--threads N`` runs N jobs per call)."""
        return 1

    def prepare(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Bind inputs for the following ``infer`` calls and run the model once: the runner
        times this call as the session's ``first_inference_ms``. Raises InferenceError."""
        raise NotImplementedError

    def infer(self) -> None:
        """Run one inference on the prepared inputs. Raises InferenceError."""
        raise NotImplementedError

    def evaluate(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """The model's outputs for ``feeds`` (input name -> array of the input's dtype and a
        concrete shape), by output name in the model's order. Untimed: used after the timed
        loops for output fidelity and accuracy (``--fidelity-inputs``, ``--dataset``); it may
        be called after ``load`` without ``prepare``. Raises InferenceError.

        A backend that does not override this method has no outputs to give: the runner then
        skips fidelity and accuracy with a warning (:func:`can_evaluate`) and never calls it."""
        raise NotImplementedError

    def reset_levels(self) -> None:
        """Forget the per-call device timings recorded so far; called after the warm-up, right
        before the timed loop (:mod:`runners.levels`). Default: nothing to forget."""

    def level_latencies_ns(self) -> Dict[str, Any]:
        """``{level: sequence of int ns}`` (e.g. ``device_compute``, ``device_with_transfers``), one
        value per ``infer`` call since :meth:`reset_levels`, in order; called after the timed loop.
        Default ``{}``: the backend has only its primary level (the runner's own clock)."""
        return {}

    def runtime_info(self) -> dict:
        """``{"name", "version", "provider", "threads", ...}`` for the result."""
        raise NotImplementedError

    def extra_results(self, done: Any) -> Dict[str, Any]:
        """Result blocks this session adds, computed after ``close`` and outside every timed region
        (tensorrt: ``trtexec``, its latency levels and per-layer profile); ``done`` is the
        set of keys the result already has (a block is added once per result, never overwriting).
        Default ``{}``. A failure goes into the block (``{"error": ...}``), not raised."""
        return {}

    def close(self) -> None:
        """Release the session (and write the layer trace, setting :attr:`profile_path`)."""


def can_evaluate(backend: Backend) -> bool:
    """Whether ``backend``'s class implements :meth:`Backend.evaluate` (overrides the base's)."""
    return type(backend).evaluate is not Backend.evaluate


