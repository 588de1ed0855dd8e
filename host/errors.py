"""Typed errors of the host library.

Library code raises these with context; only :mod:`host.cli` turns them into a one-line
message (plus ``hint``, the next useful command) and an exit code.
"""

from __future__ import annotations


class HostError(Exception):
    """Base class. ``hint`` is a short suggestion shown by the CLI after the message."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class InputNotFoundError(HostError):
    """A path given on the command line does not exist."""


class ModelFormatError(HostError):
    """A file is not ONNX or cannot be parsed as an ONNX model."""

    def __init__(self, path, reason: str, *, hint: str | None = None):
        super().__init__(f"{path}: {reason}", hint=hint)
        self.path = path
        self.reason = reason


class NoModelsError(HostError):
    """No ``.onnx`` file was found under the given paths."""


class DuplicateModelStemError(HostError):
    """Two models would write the same ``<stem>__<config>.json`` cell file."""


class UnknownDeviceError(HostError):
    """The device is neither ``local`` nor known to an inventory."""


class ResultsError(HostError):
    """A results folder or cell file cannot be read."""


class ExportError(HostError):
    """``host zoo export`` failed (torch/torchvision missing, export error)."""
