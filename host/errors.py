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


class CellSchemaError(ResultsError):
    """A cell file fails the cell schema (:mod:`host.campaign.schema`): ``path`` is the file,
    ``field`` the JSON pointer of the offending field (``latency/latency_ms_p50_ci95``; ``""`` for
    the document itself), ``problem`` what is wrong."""

    def __init__(self, message: str, *, path="", field: str = "", problem: str = "", hint: str | None = None):
        super().__init__(message, hint=hint)
        self.path, self.field, self.problem = str(path), field, problem or message


class AnalysisError(HostError):
    """Results cannot answer the question asked (:mod:`host.analysis`): no measured cell on the
    device, a metric without data there, too few models to fit, a target the fitted line cannot
    reach or that lies outside the fitted range, or a query DuckDB refuses."""


class QueryRefusedError(AnalysisError):
    """``host query`` SQL tried to reach past the view ``cells``: a file, the network, an
    extension, or a setting (the connection is locked down)."""


class NothingToCompareError(AnalysisError):
    """``host compare``: no cell of one campaign matches a cell of the other (device, model and
    configuration), so there is nothing a regression gate could pass on."""


class DatasetLocationError(HostError):
    """``host dataset --out`` / ``host query --dataset`` names a path the dataset may not
    replace: a file, a folder that is neither empty nor a dataset host wrote, the results folder
    or one holding it, or the current folder."""


class BackendError(HostError):
    """A runner backend this version cannot run (no descriptor in ``runners/backends/``, or one
    with ``implemented=False``), or a backend option no chosen backend declares or a bad value."""


class FidelityError(HostError):
    """The fidelity inputs or the host's fp32 reference outputs could not be produced."""


class MemoryProfileError(HostError):
    """A heap-profiling run (``--memory massif|memray``) could not run or left no readable
    profile (the profiler is not installed where the runner runs, or the run failed)."""


class LayerProfileError(HostError):
    """A per-layer profiling run (``--profile``) failed, its backend wrote no layer profile, or
    the profile could not be read."""


class ExportError(HostError):
    """``host zoo export`` failed (torch/torchvision missing, export error)."""


class QuantizationError(HostError):
    """A precision variant (int8 or fp16, :mod:`host.models.precision`) could not be made: the
    model is missing, corrupt or unsupported by the quantizer, the calibration data is unusable,
    or calibration failed. The message names the model (and the data folder when at fault)."""


class PruneError(HostError):
    """A pruned variant (:mod:`host.models.prune`) could not be made: the model is missing, corrupt or
    has no prunable weight, or the cache cannot be written. The message names the model."""


class PruneRatioError(PruneError):
    """A pruning ratio outside the range its method accepts (a usage error: exit code 2)."""

    exit_code = 2


class DatasetFormatError(HostError):
    """A dataset or calibration folder (:mod:`host.models.datasets`) cannot be used: no
    ``preprocess.json`` beside the images, an unknown or invalid key in it, an unreadable image,
    no class sub-folder, images of different sizes after preprocessing, or the cache not
    writable. ``folder`` is the folder at fault; the message starts with it."""

    def __init__(self, folder, reason: str, *, hint: str | None = None):
        super().__init__(f"{folder}: {reason}", hint=hint)
        self.folder = folder
        self.reason = reason


# --------------------------------------------------------------------------------------------
# lab: inventories, transports, boards, images, playbooks


class InventoryError(HostError):
    """An inventory cannot be found, read or accepted.

    The message always starts with ``'<file>:<line>: '`` when a line is at fault; ``path``
    and ``line`` hold the same (``None`` when not applicable), ``reason`` the message
    without the prefix.
    """

    def __init__(self, message: str, *, hint: str | None = None, path=None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = message
        if path is not None and line is not None:
            message = f"{path}:{line}: {message}"
        elif path is not None:
            message = f"{path}: {message}"
        super().__init__(message, hint=hint)


class TransportError(HostError):
    """A board could not be used (base class). ``device`` names the board."""

    category = "unreachable"

    def __init__(self, message: str, *, device: str = "", hint: str | None = None):
        super().__init__(message, hint=hint)
        self.device = device


class UnreachableError(TransportError):
    """Connecting failed after all retries, authentication failed, or the connection
    dropped in the middle of a command."""


class KeyFileError(UnreachableError):
    """The private key file the inventory names is missing or unreadable (checked before
    connecting; never retried)."""


class NotSshError(UnreachableError):
    """Something answered at the board's address and port, but not an SSH server (never
    retried)."""


class SshAuthError(UnreachableError):
    """The board's sshd refused every key offered (never retried)."""


class HostKeyError(TransportError):
    """The board's host key is unknown (and trust-on-first-use was not asked for) or
    differs from the recorded one. Never retried."""

    category = "host_key"


class CommandAborted(TransportError):
    """The transport was aborted (Ctrl-C, SIGTERM): the command in flight had its whole session
    killed, and no new command starts on this transport."""

    category = "interrupted"


class BoardBusyError(TransportError):
    """Another host (or another run on this host) holds the board's lock
    (:mod:`host.lab.lease`). ``holder``: the lock file's record of who holds it."""

    category = "busy"

    def __init__(self, message: str, *, device: str = "", holder: dict | None = None,
                 hint: str | None = None):
        super().__init__(message, device=device, hint=hint)
        self.holder = holder


class DiskFullError(HostError):
    """No space left (ENOSPC) where edgegauge had to write: the board's work folder or the
    host's results folder. ``where``: ``board`` or ``host``."""

    category = "disk_full"

    def __init__(self, message: str, *, where: str = "host", hint: str | None = None):
        super().__init__(message, hint=hint)
        self.where = where


class ReferenceRunError(HostError):
    """The reference workload (``python -m runners reference``) did not give a result on a board:
    a warning in a campaign, an error of ``host calibrate``."""


class CalibrationError(HostError):
    """``host calibrate``: bad input (number of campaigns or processes), or too few reference runs
    to estimate the device's noise levels."""


class CampaignBusyError(HostError):
    """Another process on this host is running the same campaign (its folder is locked)."""


class DeployError(HostError):
    """A deploy step failed on one board (work folder, runners, image, runtime)."""


class ImageError(HostError):
    """Base class of image build/save errors."""


class UnknownFamilyError(ImageError):
    """The family (runners/families, one spelling) or its image variant is unknown."""

    exit_code = 2


class EngineNotFoundError(ImageError):
    """The container engine (docker, podman) is not on PATH."""


class ImageBuildError(ImageError):
    """``<engine> build`` failed or the bundle could not be written."""


class ImageNotFoundError(ImageError):
    """The image to save is not in the engine's local storage."""


class ImageSaveError(ImageError):
    """``<engine> save`` failed."""


class CompileError(HostError):
    """``host zoo compile`` failed: the Vitis AI compile flow, or a runtime's compiler (the
    descriptor's ``compiler``, ``--backend NAME``), or it was given bad arguments."""


class CompileUsageError(CompileError):
    """``host zoo compile --backend NAME``: a runtime without a compiler, an option it does not
    declare or a bad value, a bad ``--target`` (a usage error: exit code 2, nothing compiled)."""

    exit_code = 2


class CompilerImageMissingError(CompileError):
    """The Vitis AI compile-flow image is not in the container engine's local storage."""


class AnsibleError(HostError):
    """ansible-runner or ``ansible-playbook`` is missing, or a playbook does not exist."""


class PlaybookFailed(HostError):
    """The playbook failed on at least one host; :attr:`run` (a
    :class:`host.lab.ansible.PlaybookRun`) has the recap and failures."""

    def __init__(self, message: str, run, *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.run = run


class PlaybookInterrupted(PlaybookFailed):
    """The playbook was cancelled (Ctrl-C, SIGTERM, SIGHUP) and ``ansible-playbook`` stopped;
    :attr:`run` holds the per-host results received before the stop and the artifacts. The
    CLI sets ``exit_code`` to 128 + the signal (130, 143, 129)."""

    exit_code = 130


# --------------------------------------------------------------------------------------------
# power: meters and the power session


class MeterError(HostError):
    """A meter could not deliver a reading (base class)."""


class UnknownMeterError(MeterError):
    """No driver for this meter name."""


class MeterOptionError(MeterError, ValueError):
    """A meter option (``--opt key=value``, inventory ``meter_*``) is unknown to the driver, or its
    value is not what the option takes (the message names the option and what it accepts)."""


class MeterConnectionError(MeterError):
    """The port cannot be opened, or it went away (meter unplugged, pty closed)."""


class MeterTimeoutError(MeterError):
    """The meter did not answer, or answered too little, within the timeout. The message
    says what was expected and what (how many bytes) arrived."""


class MeterProtocolError(MeterError):
    """A corrupt or unexpected answer (bad frame, garbage, wrong model). The message shows
    what was expected and what was received."""


class PowerError(HostError):
    """Power could not be measured for a device (meter missing, idle failed)."""


class ThermalError(HostError):
    """A board's thermal and clock sources could not be read (the command failed, timed out,
    or answered something that does not parse); the message names the source and what came back.
    Never fails a cell: its ``thermal`` block records it."""


# --------------------------------------------------------------------------------------------
# campaign


class CampaignMismatchError(HostError):
    """A model changed since the campaign planned it (same name, other content), or another
    campaign's name maps to the same folder."""


class CampaignFileError(HostError):
    """A campaign's ``campaign.json`` cannot be read, is not JSON, or a field the run reads has the
    wrong type: the run is refused and nothing is changed (its run log, planned models' hashes and
    power-mode record would be lost). ``path`` is the file, ``field`` the offending field."""

    def __init__(self, message: str, *, path="", field: str = "", hint: str | None = None):
        super().__init__(message, hint=hint)
        self.path, self.field = str(path), field


class ResultsLocationError(HostError):
    """``--results`` (or the campaign or device folder in it, or a cell's file) cannot be written:
    a file where a folder belongs, a read-only or full file system, no permission, a name too long.
    Checked before any cell is measured; ``path`` is the path refused."""

    def __init__(self, message: str, *, path="", hint: str | None = None):
        super().__init__(message, hint=hint)
        self.path = str(path)


class NameCollisionError(HostError):
    """Two distinct names (devices, or a campaign and the one already in its folder) map to
    the same folder after :func:`host.campaign.store.safe_name`; they are refused, never
    merged."""


class PowerModeChanged(HostError):
    """A board's power mode differs from the one its earlier cells in this campaign were
    measured in: its cells are not run (category ``power_mode``), so one campaign never
    mixes modes. Resume after restoring the mode, or start a new campaign."""

    category = "power_mode"


class CampaignInterrupted(HostError):
    """Ctrl-C: finished cells are kept; the campaign can be resumed."""

    exit_code = 130


# --------------------------------------------------------------------------------------------
# a labgrid coordinator (host/lab/coordinator.py)


class CoordinatorError(HostError):
    """A labgrid coordinator refused or failed a request (base class). ``address``: the
    coordinator's ``HOST:PORT``; ``place``: the place concerned, when one is."""

    def __init__(self, message: str, *, address: str = "", place: str | None = None,
                 hint: str | None = None):
        super().__init__(message, hint=hint)
        self.address, self.place = address, place


class CoordinatorUnreachableError(CoordinatorError):
    """No labgrid coordinator answered at the address (refused, timed out, or the stream to it
    broke)."""


class NoSuchPlaceError(CoordinatorError):
    """The coordinator has no place of that name, or none with the tags asked for."""


class PlaceBusyError(CoordinatorError):
    """The place (or every place with the tags asked for) stayed held by someone else for
    longer than the wait allowed; ``holders``: labgrid's ``host/user`` of each holder."""

    category = "busy"

    def __init__(self, message: str, *, address: str = "", place: str | None = None,
                 holders: tuple = (), hint: str | None = None):
        super().__init__(message, address=address, place=place, hint=hint)
        self.holders = tuple(holders)


class PlaceWaitInterrupted(CoordinatorError):
    """Ctrl-C or SIGTERM while waiting in a coordinator's queue: nothing ran; every reservation
    made was cancelled and every place taken released. ``exit_code``: 130, or 128 + the signal."""

    exit_code = 130


class NoPowerResourceError(CoordinatorError):
    """The place has no power resource labgrid can switch (no ``NetworkPowerPort`` or other power
    port among its matched resources), or the device is no place of a coordinator."""


class PowerCycleError(CoordinatorError):
    """Switching a place's power failed (the PDU refused or did not answer in time), or its board's
    SSH did not answer again before the deadline after the power came back."""

    category = "unreachable"


# --------------------------------------------------------------------------------------------
# cli


class SelectionError(HostError):
    """The selection cannot be provisioned (no inventory file, or the built-in local device)."""

    exit_code = 2
