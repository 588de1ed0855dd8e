"""Power for ``--device local`` without a meter: the machine's own counters (docs/power.md §11).

When the local device has no meter configured, :func:`local_power_session` looks for the sources this
machine has and opens them (the drivers' own classes; docs/power.md §11 names them):

1. CPU package power from the powercap RAPL counters (``RaplPackage``);
2. an NVIDIA GPU's board power, when ``nvidia-smi`` answers (``NvmlGpu``);
3. only when neither answered, a single power/energy channel of Linux hwmon
   (``HwmonSensor``): several could be the same thing counted twice.

One source is used as it is; the CPU package and the GPU together are summed (two separate
components; each stays in the samples as a rail). Whatever is read is labelled as what it is (the
cell's ``power.measures``: e.g. "CPU package power (RAPL), not wall power"). With none, every cell gets
a power block that says so (``power.no_source``, with each source's reason), and the table shows
"no source" instead of leaving the column blank.

The sysfs root is ``$EDGEGAUGE_POWER_SYSFS_ROOT`` (default ``/``) and the nvidia-smi executable
``$EDGEGAUGE_NVIDIA_SMI`` (default ``nvidia-smi``), so tests point them at fakes.
"""

from __future__ import annotations

import math
import os

from host.errors import MeterError
from host.power.meters._sysfs import ROOT_ENV
from host.power.meters.base import Meter, Reading
from host.power.session import MeterSpec, PowerSession

NVIDIA_SMI_ENV = "EDGEGAUGE_NVIDIA_SMI"
NVML_LABEL = "NVIDIA GPU board power (NVML), not wall power"


class SummedSources(Meter):
    """Several opened on-host sources read one after the other and summed (W). Not a registered
    driver: :func:`open_local_sources` builds it. ``rails`` holds each source's total (by its name)
    and its own rails (``<source>:<rail>``); a flag of any source flags the sum."""

    scope = "component"

    def __init__(self, meters: list):
        super().__init__(None, name="local")
        self.meters = list(meters)
        self.update_interval_s = max(m.update_interval_s for m in self.meters)
        self.model = " + ".join(m.model for m in self.meters)

    def open(self) -> None:
        """Nothing: the sources are open already."""

    def read(self) -> Reading:
        """The sum of one reading of each source.

        Raises:
            MeterError: as the sources' ``read``.
        """
        readings = [(m.name, m.read()) for m in self.meters]
        rails, flags = {}, []
        for name, r in readings:
            rails[name] = r.power_w
            rails.update({f"{name}:{k}": v for k, v in r.rails.items()})
            flags += [f for f in r.flags if f not in flags]
        powers = [r.power_w for _, r in readings]
        total = None if any(p is None for p in powers) else math.fsum(powers)
        return Reading(power_w=total, flags=tuple(flags), rails=rails)

    def close(self) -> None:
        for m in self.meters:
            m.close()

    def window_telemetry(self, t_start_ns: int, t_end_ns: int) -> dict | None:
        """``{source name: its window telemetry}`` for the sources that have one; None when none has."""
        found = {m.name: m.window_telemetry(t_start_ns, t_end_ns) for m in self.meters}
        return {k: v for k, v in found.items() if v is not None} or None

    def describe(self) -> dict:
        info = super().describe()
        info.update(source="on-host sum", label=" + ".join(_label(m).replace(", not wall power", "")
                                                           for m in self.meters) + ", not wall power",
                    sources=[m.describe() for m in self.meters])
        return info


def _label(meter: Meter) -> str:
    from host.power.meters.nvml import NvmlGpu

    return meter.describe().get("label") or (NVML_LABEL if isinstance(meter, NvmlGpu) else meter.name)


def open_local_sources(root: str = "/", nvidia_smi: str = "nvidia-smi") -> tuple:
    """``(meter or None, reasons)``: this machine's sources opened in the order of the module
    docstring (one meter, or a :class:`SummedSources`), and why each one that was tried is not used.
    Raises nothing (a source that fails to open is a reason)."""
    from host.power.meters.hwmon import HwmonSensor
    from host.power.meters.nvml import NvmlGpu
    from host.power.meters.rapl import RaplPackage

    opened, reasons = [], []
    makers = [(RaplPackage, {"root": root}), (NvmlGpu, {"nvidia_smi": nvidia_smi}),
              (HwmonSensor, {"root": root})]
    for cls, options in makers:
        name = cls.INFO.names[0]
        if cls is HwmonSensor and opened:
            break
        try:
            meter = cls(name=name, **options)
            meter.open()
        except MeterError as exc:
            reasons.append(f"{name}: {exc}")
            continue
        opened.append(meter)
    if not opened:
        return None, reasons
    return (opened[0] if len(opened) == 1 else SummedSources(opened)), reasons


class LocalPowerSession(PowerSession):
    """A :class:`~host.power.session.PowerSession` on this machine's own sources (found by
    :meth:`open`); with none, it measures nothing and gives each cell a ``no_source`` block."""

    def __init__(self, board, folder, *, root: str = "/", nvidia_smi: str = "nvidia-smi", **settings):
        super().__init__(MeterSpec("local", None, {"auto": True}), board, folder, **settings)
        self.root = root
        self.nvidia_smi = nvidia_smi
        self.no_source: str | None = None
        self.reasons: list = []

    def open(self) -> None:
        """Find and open the sources (raises nothing: no source is a state, not an error)."""
        self.meter, self.reasons = open_local_sources(self.root, self.nvidia_smi)
        if self.meter is None:
            self.no_source = "; ".join(self.reasons) or "no source"
        else:
            self.spec = MeterSpec(self.meter.name, None, {"auto": True})

    def idle_due(self) -> bool:
        return self.no_source is None and super().idle_due()

    def extend(self, config):
        return config if self.no_source is not None else super().extend(config)

    def start_cell(self):
        if self.no_source is not None:
            return {"sampler": _NoSampler(), "no_source": self.no_source}
        return super().start_cell()

    def finish_cell(self, token, doc: dict, csv_path) -> dict:
        if "no_source" in token:
            return no_source_block(token["no_source"])
        block = super().finish_cell(token, doc, csv_path)
        block["measures"] = _label(self.meter)
        return block


class _NoSampler:
    """What a no-source cell token holds where a sampler would be (the worker stops it on Ctrl-C)."""

    def stop(self, timeout_s: float = 10.0) -> list:
        return []


def no_source_block(reason: str) -> dict:
    """The ``power`` block of a local cell measured without any power source: ``meter`` None and
    ``no_source`` saying why (each source tried and its error)."""
    return {"meter": None, "no_source": reason}


def local_power_session(device, board, folder, **settings) -> LocalPowerSession | None:
    """The power session of ``device`` when it is this machine (``connection == "local"``) and has no
    meter configured (the caller checks that), else None. Settings as :class:`PowerSession`."""
    if getattr(device, "connection", None) != "local":
        return None
    return LocalPowerSession(board, folder, root=os.environ.get(ROOT_ENV) or "/",
                             nvidia_smi=os.environ.get(NVIDIA_SMI_ENV) or "nvidia-smi", **settings)


__all__ = ["LocalPowerSession", "NVIDIA_SMI_ENV", "SummedSources", "local_power_session", "no_source_block",
           "open_local_sources"]
