"""Models on the host: static metrics of ONNX files and the example-model zoo."""

from pathlib import Path

#: The suffix of the host's own model tooling (export, quantize, static metrics, the fidelity
#: reference): ONNX. Which files a runtime loads is its descriptor's ``model_suffixes``.
ONNX_SUFFIX = ".onnx"


def is_onnx(model) -> bool:
    """Whether ``model`` (a path) is an ONNX file the host's tooling can read."""
    return Path(model).suffix.lower() == ONNX_SUFFIX
