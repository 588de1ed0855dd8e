"""What the board workers of one campaign run share (:class:`Shared`: the plan, the options, the
model hashes, the cells stored so far, the stop flag), what they report (:class:`CellEvent`,
:class:`BoardSummary`) and a cell being measured (:class:`MeasuredCell`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from host.campaign.cells import session_medians
from host.campaign.fidelity import CellFidelity
from host.campaign.options import CampaignOptions
from host.campaign.plan import Item, Plan
from host.campaign.protocol import Progress
from host.errors import HostError
from host.lab.benchconfig import BenchConfig, RunnerOutcome
from host.models import is_onnx
from host.models.metrics import metrics_or_error


@dataclass
class CellEvent:
    """Progress report (for the CLI's live display): a board's state or one cell's.

    ``state``: "connecting", "lock_wait", "running", "done", "skipped", "board_down", "power_cycle",
    "finished".
    ``lock_wait``: ``message`` names the lock's holder, ``seconds`` how long the wait may go on;
    ``board_down``: ``category`` is the error's (``busy``, ``unreachable``, ...).
    """

    device: str
    index: int
    total: int
    model: Path | None
    state: str
    doc: dict | None = None
    path: Path | None = None
    message: str | None = None
    seconds: float | None = None
    category: str | None = None


@dataclass
class BoardSummary:
    """What one campaign run did on one board."""

    device: str
    planned: int = 0
    run: int = 0
    skipped: int = 0
    bytes_sent: int = 0  # everything: runners, models
    files_sent: int = 0
    models_sent: int = 0
    model_bytes_sent: int = 0
    error: str | None = None
    notes: list = field(default_factory=list)
    order: list = field(default_factory=list)  # [[round, model stem], ...] as run
    leftovers: list = field(default_factory=list)  # runner sessions of earlier runs killed here


@dataclass
class Shared:
    """State the board workers of one campaign run share (each field's lock next to it).

    ``open_board``: ``device -> Board``; ``power``: ``(device, board, folder) -> PowerSession |
    None``; ``notify``: the caller's ``on_event``."""

    plan: Plan
    options: CampaignOptions
    folder: Path  # the campaign folder
    shas: dict  # model -> sha256
    open_board: Callable
    power: Callable | None
    notify: Callable[[CellEvent], None]
    fidelity: CellFidelity = field(default_factory=CellFidelity)
    locks: dict = field(default_factory=dict)  # device name -> LockInfo.to_json()
    fatal: HostError | None = None  # an error that stops every board (host disk full, folder unwritable)
    stop: threading.Event = field(default_factory=threading.Event)  # set on Ctrl-C
    plan_lock: threading.Lock = field(default_factory=threading.Lock)
    boards: dict = field(default_factory=dict)  # device name -> open Board (for abort)
    docs: dict = field(default_factory=dict)  # (device name, index) -> cell document
    metrics_lock: threading.Lock = field(default_factory=threading.Lock)
    metrics_cache: dict = field(default_factory=dict)
    cycler: object | None = None  # host.lab.power_cycle.PlaceCycler: power cycles through labgrid places

    def at_precision(self, model: Path) -> dict:
        """:func:`host.models.precision.precision_metrics` of what the runner ran (cached), or
        ``{"error": ...}``."""
        from host.errors import QuantizationError
        from host.models.precision import precision_metrics

        if not is_onnx(model):
            return {"error": "a compiled model: see its source ONNX"}
        with self.metrics_lock:
            if ("precision", model) not in self.metrics_cache:
                try:
                    value = precision_metrics(model)
                except (QuantizationError, OSError, ValueError) as exc:
                    value = {"error": str(exc)}
                self.metrics_cache[("precision", model)] = value
            return self.metrics_cache[("precision", model)]

    def metrics_for(self, model: Path, cfg: BenchConfig) -> dict:
        key = (model, cfg.batch, cfg.shapes)
        with self.metrics_lock:
            if key not in self.metrics_cache and not is_onnx(model):
                self.metrics_cache[key] = {"error": {
                    "type": "CompiledModel", "message": "a compiled model: its static metrics are its "
                    "source ONNX's (the .info beside it names the source)"}}
            if key not in self.metrics_cache:
                self.metrics_cache[key] = metrics_or_error(model, batch=cfg.batch,
                                                           shapes=cfg.shapes_dict() or None)
            return self.metrics_cache[key]


@dataclass
class MeasuredCell:
    """A cell being measured: its processes' results, kept latencies and records so far."""

    index: int
    item: Item
    progress: Progress
    outcomes: list = field(default_factory=list)
    docs: list = field(default_factory=list)
    arrays: list = field(default_factory=list)  # per process, per session: int64 ns
    records: list = field(default_factory=list)
    power: dict | None = None
    thermal: dict | None = None  # the cell's thermal block (host.thermal)
    fidelity: dict | None = None
    done: bool = False

    @property
    def model(self) -> Path:
        return self.item.model

    @property
    def path(self) -> Path:
        return self.item.path

    def add(self, outcome: RunnerOutcome, arrays: list, record: dict) -> None:
        self.outcomes.append(outcome)
        self.docs.append(outcome.result)
        self.arrays.append(arrays)
        self.records.append(record)
        self.progress.add(session_medians(outcome.result), outcome.wall_s)
