"""What a campaign run is asked to do: one frozen object, built once by ``host bench`` (or a
test, or a bench script) and read where it is used. A new ``host bench`` flag touches this
dataclass, the command line and the one place that reads it — nothing in between."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from host.campaign.protocol import Protocol
from host.lab.benchconfig import BenchConfig


@dataclass(frozen=True)
class CampaignOptions:
    """The options of one campaign run (:func:`host.campaign.run.run_campaign`).

    Attributes:
        config: the configuration every device starts from (its backend replaced by the device's
            runtime unless ``backend`` is given).
        results: the results root; the campaign's folder is ``results/<campaign>``.
        campaign: the campaign's name; an existing campaign is resumed.
        backend: runner backend for every device; None = each device's ``runtime``.
        retry_failed: when resuming, run every failed cell again (not only those whose board
            never ran the model).
        protocol: the repetition protocol (:mod:`host.campaign.protocol`).
        memory: ``rss`` (every runner's own figures only), or ``massif`` / ``memray``: one extra
            process per cell under that heap profiler, its peak in the cell's ``memory_profile``.
        break_lock: take a board whose lock another live run holds (its holder is killed; logged).
        wait_lock: seconds to wait for a board whose lock another live run holds (tried again every
            second, a ``lock_wait`` event each time) before its cells fail as ``busy``; 0 = at once.
        precisions: the precision axis: ``"fp32"`` (the model as given) and
            :class:`host.models.precision.Recipe` objects (the host makes each variant, cached).
        compile_axis: the code-generation axis: compile options of the runtime's compiler, one dict
            per combination (:mod:`host.campaign.compiled`); each ONNX variant is compiled at each.
        dataset: ``inputs.npy`` + ``labels.npy`` folder: accuracy on the board for every model
            (else each model's own, named by its ``.info``); its first samples are the fidelity inputs.
        batches: the batch axis (a sweep, e.g. ``(1, 8, 32)``); None = ``config.batch``.
        profile: one more untimed process per cell with the runtime's per-layer profiler: the top
            layers in the cell's ``profile``, every layer in ``<cell>.profile.json``.
        reference: run the reference workload once per round per board (after the round's cells;
            ``campaign.json`` ``reference``, :mod:`host.campaign.reference`).
        auto_calibrate: on a device with fewer than 2 campaigns in its history (results folder
            and this host's), a brief calibration with the reference workload first
            (:func:`host.campaign.reference.brief_calibration`; needs ``reference``). Off here,
            on by default in ``host bench`` (``--no-auto-calibrate``).
    """

    config: BenchConfig
    results: Path
    campaign: str
    backend: str | None = None
    retry_failed: bool = False
    protocol: Protocol = field(default_factory=Protocol)
    memory: str = "rss"
    break_lock: bool = False
    wait_lock: float = 0.0
    precisions: tuple = ("fp32",)
    compile_axis: tuple = ()
    dataset: Path | None = None
    batches: tuple | None = None
    profile: bool = False
    reference: bool = True
    auto_calibrate: bool = False

    @property
    def batch_axis(self) -> tuple:
        """The batch sizes of the matrix: ``batches``, else the configuration's one batch."""
        return tuple(self.batches or (self.config.batch,))
