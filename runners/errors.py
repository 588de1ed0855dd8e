"""Typed runner errors.

Each maps to a result ``status: "failed"`` with ``error: {"type": <class name>,
"category": <the class's category>, "message": ...}`` (:func:`error_record`); the runner's CLI
writes that result and exits with :data:`EXIT_FAILED`. A subclass inherits its base's
``category`` (``EngineBuildError`` is an ``invalid_model`` like ``ModelLoadError``), so the host
files it without knowing its name. Anything else escaping the runner is a crash (exit code or
signal), classified by the host.
"""

from __future__ import annotations

#: Exit codes of ``python -m runners run``.
EXIT_OK = 0  # result written, status ok (VALID)
EXIT_INVALID = 3  # result written, status invalid (a stop-rule check failed)
EXIT_FAILED = 4  # result written, status failed (typed error below)
EXIT_USAGE = 2  # bad command line (argparse)
EXIT_NO_RESULT = 5  # the result could not be written (e.g. ENOSPC: no space left on the board)


class RunnerError(Exception):
    """Base class of errors the runner reports in its result."""

    #: The result's ``error.category`` (docs/result-schema.md §9); subclasses inherit it.
    category = "runtime_error"


class InputSpecError(RunnerError):
    """Bad ``--shape``/``--batch``, or an input dtype that cannot be synthesized."""

    category = "invalid_model"


class UnresolvedShapeError(InputSpecError):
    """A dynamic input dimension has no value from ``--shape`` or ``--batch``."""


class DatasetError(InputSpecError):
    """A ``--dataset`` folder or a ``--fidelity-inputs`` file is missing, unreadable, or does not
    fit the model (shape, dtype, labels out of range, a model with more than one input)."""

    category = "dataset"


class ModelLoadError(RunnerError):
    """The runtime cannot load the model (not ONNX, corrupt, unsupported operator)."""

    category = "invalid_model"


class ModelCompileError(RunnerError):
    """A runtime's compiler, run on the host (``host zoo compile --backend NAME``: the descriptor's
    ``compiler``), could not make the runtime's model file from the ONNX model."""

    category = "invalid_model"


class BackendUnavailableError(RunnerError):
    """The runtime of the chosen backend is not installed or lacks the provider."""


class CrossCompilerMissingError(BackendUnavailableError):
    """A runtime's compiler was asked for another CPU architecture than the host's, and the cross
    toolchain that links its library is not installed (the message names the Debian package)."""


class ArchitectureMismatchError(ModelLoadError):
    """The model file was compiled for another CPU architecture than the machine that loads it
    (a ``.tvm`` artefact for aarch64 on an x86-64 host, say): refused before ``dlopen``."""


class BoardRuntimeMissingError(BackendUnavailableError):
    """A compile for a board (a descriptor's ``ModelCompiler.board_compile``) needs the runtime on the
    board itself (to measure candidates there, say) and the board's interpreter cannot import it."""


class InferenceError(RunnerError):
    """The runtime failed during an inference call."""


class CudaError(RunnerError):
    """A CUDA runtime call failed (``runners.cuda_rt``: the message names the call and the
    ``cudaError_t``), or cuda-python is missing."""


class EngineBuildError(ModelLoadError):
    """TensorRT could not parse the ONNX model or build an engine from it."""


class UnsupportedFeatureError(BackendUnavailableError):
    """The installed runtime version cannot do what the configuration asks (e.g. TensorRT 11 has
    no FP16/INT8 builder flags; the entropy calibrator stops at TensorRT 10)."""


#: ``error.type`` / ``error.category`` of a ``MemoryError`` caught in the runner.
OUT_OF_MEMORY = ("OutOfMemory", "out_of_memory")


def error_record(exc: BaseException) -> dict:
    """The result's ``error`` record for ``exc``: ``{"type", "category", "message"}``. A
    :class:`RunnerError` gives its class name and ``category``; a ``MemoryError`` gives
    :data:`OUT_OF_MEMORY`; anything else is a ``runtime_error``. Raises nothing."""
    if isinstance(exc, MemoryError):
        return {"type": OUT_OF_MEMORY[0], "category": OUT_OF_MEMORY[1], "message": "MemoryError: %s" % exc}
    return {"type": type(exc).__name__, "category": getattr(exc, "category", RunnerError.category),
            "message": str(exc)}
