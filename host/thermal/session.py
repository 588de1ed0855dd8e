"""Thermal and clocks as part of a campaign: probe a board's sources once, sample them during each
cell's first runner process, align the timeline with the runner's timed loop, and the cell's
``thermal`` block (docs/result-schema.md; method in docs/power.md, "Thermal and clocks during a
run").

The sampler reads the board over a connection of its own (a second SSH connection, or a second
local shell), never the one the runner uses: a board's transport serves one thread. Nothing here
fails a cell: a missing source, a failed read or an unknown clock offset is written in the block.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from host.errors import HostError, ThermalError
from host.thermal.sampler import DEFAULT_INTERVAL_S, ThermalSampler, write_timeline
from host.thermal.sources import parse_probe, probe_command
from host.thermal.summary import CLOCK_DROP_REL, summarise, tick_ms_median

#: Seconds one thermal command may take on the board before it counts as failed.
COMMAND_TIMEOUT_S = 15.0
NO_SOURCE = "no thermal source"
#: Environment variables :meth:`ThermalSession.for_board` reads, so a test suite can point every board
#: at fakes: the sysfs root prefix, and the ``vcgencmd`` and ``nvidia-smi`` executables.
ROOT_ENV = "EDGEGAUGE_THERMAL_SYSFS_ROOT"
VCGENCMD_ENV = "EDGEGAUGE_THERMAL_VCGENCMD"
NVIDIA_SMI_ENV = "EDGEGAUGE_THERMAL_NVIDIA_SMI"


def _second_connection(transport):
    """A new transport to the same board as ``transport`` (same settings), or None for a
    transport of another kind (a test double)."""
    from host.lab.transport.local import LocalTransport
    from host.lab.transport.ssh import SshTransport

    if isinstance(transport, LocalTransport):
        return LocalTransport(transport.name)
    if isinstance(transport, SshTransport):
        t = transport
        return SshTransport(t.name, t.host, t.port, t.user, key_file=t.key_file, known_hosts=t.known_hosts,
                            accept_new_host_keys=t.accept_new, connect_timeout=t.connect_timeout,
                            retries=t.retries, backoff_s=t.backoff_s, jump=t.jump, key_source=t.key_source)
    return None


class ThermalSession:
    """One board's thermal timeline during a campaign (the board worker's thread uses it).

    Args:
        run: ``run(command) -> stdout`` on the board (tests: a local shell over a fake tree);
            None with ``board``: :meth:`for_board` builds it.
        board: the :class:`host.lab.board.Board` (clock probes for the alignment), or None.
        root: sysfs root prefix (``"/"`` on a board).
        same_clock: True when the runner's CLOCK_MONOTONIC is this host's (``--device local``):
            no offset is estimated.
        interval_s: seconds between ticks (1 Hz by default).
        vcgencmd, nvidia_smi: the executables looked for.
        on_close: called once by :meth:`close` (closes the second connection).
    """

    def __init__(self, run: Callable[[str], str] | None, *, board=None, root: str = "/",
                 same_clock: bool = False, interval_s: float = DEFAULT_INTERVAL_S, probes: int = 5,
                 clock_drop_rel: float = CLOCK_DROP_REL, vcgencmd: str = "vcgencmd",
                 nvidia_smi: str = "nvidia-smi", on_close=None):
        self.run, self.board, self.root, self.same_clock = run, board, root, same_clock
        self.interval_s, self.probes, self.clock_drop_rel = interval_s, probes, clock_drop_rel
        self.vcgencmd, self.nvidia_smi, self.on_close = vcgencmd, nvidia_smi, on_close
        self.sources = None
        #: The block every cell gets when there is nothing to sample (no source, or the probe failed).
        self.unavailable: dict | None = None

    @classmethod
    def for_board(cls, board, **kw) -> "ThermalSession":
        """A session reading ``board`` over a second connection of the same kind as its own; the
        sysfs root and the executables come from :data:`ROOT_ENV`, :data:`VCGENCMD_ENV` and
        :data:`NVIDIA_SMI_ENV` when set (``/``, ``vcgencmd``, ``nvidia-smi`` otherwise)."""
        kw.setdefault("root", os.environ.get(ROOT_ENV) or "/")
        kw.setdefault("vcgencmd", os.environ.get(VCGENCMD_ENV) or "vcgencmd")
        kw.setdefault("nvidia_smi", os.environ.get(NVIDIA_SMI_ENV) or "nvidia-smi")
        own = getattr(board, "transport", None)
        transport = _second_connection(own)
        if transport is None:
            session = cls(None, board=board, **kw)
            session.unavailable = {"status": "failed", "sources": [], "error": (
                f"the board's transport ({type(own).__name__}) cannot open a second "
                "connection for the thermal sampler")}
            return session

        def run(command: str) -> str:
            res = transport.run(command, timeout=COMMAND_TIMEOUT_S)
            if res.timed_out:
                raise ThermalError(f"{board.name}: the thermal read took over {COMMAND_TIMEOUT_S:g} s")
            return res.stdout

        return cls(run, board=board, same_clock=transport.kind == "local", on_close=transport.close, **kw)

    def open(self) -> None:
        """Probe the board's sources once. Never raises: without a source (or when the probe
        fails) :attr:`unavailable` holds the block every cell gets."""
        if self.unavailable is not None:
            return
        try:
            out = self.run(probe_command(self.root, self.vcgencmd, self.nvidia_smi))
        except (HostError, OSError) as exc:
            self.unavailable = {"status": "failed", "sources": [],
                                "error": f"probing the thermal sources failed: {type(exc).__name__}: {exc}"}
            self.close()  # nothing to sample: the second connection is not kept open
            return
        self.sources = parse_probe(out, vcgencmd=self.vcgencmd, nvidia_smi=self.nvidia_smi)
        if self.sources.empty:
            missing = self.sources.missing
            tools = [f"no {t}" for t in (self.vcgencmd, self.nvidia_smi) if not any(t in m for m in missing)]
            looked = missing + tools
            self.unavailable = {"status": NO_SOURCE, "sources": [],
                                "message": f"{NO_SOURCE}: " + "; ".join(dict.fromkeys(looked))}
            self.close()

    def _offset(self):
        """The board clock's offset (bracketed probes, :mod:`host.power.align`); None on this host."""
        from host.power.align import estimate_offset

        if self.same_clock or self.board is None:
            return None
        probes = iter(self.board.clock_probes(self.probes + 1)[1:])  # the first pays process start
        return estimate_offset(lambda: next(probes), repeats=self.probes)

    def start_cell(self) -> dict | None:
        """Start sampling before a cell's first process; None when there is nothing to sample."""
        if self.unavailable is not None or self.sources is None:
            return None
        token = {"before": None, "error": None}
        try:
            token["before"] = self._offset()
        except HostError as exc:
            token["error"] = str(exc)
        token["sampler"] = ThermalSampler(self.run, self.sources, interval_s=self.interval_s).start()
        return token

    def cancel(self, token: dict | None) -> None:
        """Stop a token's sampler without a block and without a last read (the process failed or
        was interrupted: the board may not answer)."""
        if token is not None:
            token["sampler"].stop(final=False)

    def finish_cell(self, token: dict | None, latency: dict | None, csv_path: Path) -> dict:
        """Stop sampling, write ``csv_path`` (``<cell>.thermal.csv``) and return the ``thermal``
        block: sources, timeline file, figures over the runner's first timed loop (``latency``'s
        ``loop_*_monotonic_ns``) and verdict. Never raises; a failure is the block's ``error``."""
        if token is None:
            return dict(self.unavailable or {"status": "failed", "sources": [], "error": "not sampled"})
        from host.power.align import combine, host_window

        ticks = token["sampler"].stop()
        sampler = token["sampler"]
        block = {"status": "measured", "sources": self.sources.describe(),
                 "timeline_file": Path(csv_path).name,
                 "interval_s": self.interval_s, "samples_total": len(ticks),
                 "samples_failed": sum(1 for t in ticks if t.error), "tick_ms_median": tick_ms_median(ticks),
                 "clock_drop_rel": self.clock_drop_rel, "error": sampler.fatal_error}
        try:
            write_timeline(csv_path, ticks, self.sources)
        except OSError as exc:
            block.update(timeline_file=None, error=f"timeline not written: {exc}")
        window, note = None, None
        try:
            after = self._offset()
            offset = None if token["before"] is None and after is None else combine(token["before"], after)
            if latency and latency.get("loop_start_monotonic_ns") is not None:
                t_s, t_e, _, unc_ms = host_window(latency, offset)
                window = (t_s, t_e)
                block["alignment"] = {"offset_ns": offset.offset_ns if offset else 0,
                                      "uncertainty_ms": unc_ms,
                                      "method": "same clock" if offset is None else
                                      "bracketed monotonic-clock probes before and after the cell"}
            else:
                note = "no measured window: the runner did not finish its timed loop"
        except (HostError, TypeError, KeyError, ValueError) as exc:
            note = f"clock offset unknown ({token['error'] or exc}): nothing judged"
        block.update(summarise(ticks, window, clock_drop_rel=self.clock_drop_rel))
        if note:
            block["verdict"]["warnings"] = [note]
        return block

    def close(self) -> None:
        if self.on_close is not None:
            try:
                self.on_close()
            except Exception:  # closing a broken connection must not hide the campaign's result
                pass
            self.on_close = None


def thermal_warnings(block: dict | None) -> list:
    """The ``throttled: ...`` warnings of a cell's thermal block (for the cell's ``warnings``)."""
    verdict = (block or {}).get("verdict") or {}
    return [w for w in verdict.get("warnings") or [] if str(w).startswith("throttled:")]


__all__ = ["NO_SOURCE", "ThermalSession", "thermal_warnings"]
