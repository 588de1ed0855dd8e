"""The meter interface and its typed errors.

A meter yields :class:`Reading` objects, one per meter update, in SI units named in the
field (``power_w``, ``voltage_v``, ``current_a``). Timestamps are taken by the sampler on the
host (:mod:`host.power`), not here; a meter's own sequence number or clock, where it has one,
goes in ``meter_seq`` / ``meter_time_s``.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass, field

from host.errors import HostError, MeterConnectionError, MeterError, MeterOptionError, MeterTimeoutError

#: What a meter measures (docs/power.md §7). ``cpu-package`` and ``component`` are a machine's own
#: counters and sensors (RAPL, hwmon: docs/power.md §11), never wall or board input power.
SCOPES = ("wall", "board-input", "module", "rails", "cpu-package", "component")


def number_option(label: str, name: str, value, *, lo: float, hi: float, integer: bool = False):
    """A driver option's value as a finite number in ``[lo, hi]`` (an ``int`` when ``integer``).

    Raises:
        MeterOptionError: not a number (or not a whole one), not finite, or out of range; the
            message names ``label``'s option ``name`` and the range it accepts.
    """
    kind = "an integer" if integer else "a number"
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not (math.isfinite(number) and lo <= number <= hi and (not integer or number.is_integer())):
        raise MeterOptionError(f"{label} option {name}={value!r}: expected {kind} from {_plain(lo)} to "
                               f"{_plain(hi)}",
                               hint=f"set {name} to {kind} in that range, or leave it out (the default)")
    return int(number) if integer else number


def _plain(x: float) -> str:
    """``4000000`` rather than ``4e+06``, ``0.5`` as is."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def unknown_options(label: str, options: dict, known: tuple) -> None:
    """Raises MeterOptionError naming the ``options`` that are not in ``known`` and listing these."""
    stray = sorted(set(options) - set(known))
    if stray:
        raise MeterOptionError(f"unknown {label} option(s): {', '.join(stray)}",
                               hint="options: " + (", ".join(known) or "none"))


def run_on_board(run, command: str, label: str) -> str:
    """Run ``command`` with an on-board source's ``run`` callable (a shell on the board,
    usually over SSH) and return its stdout as text.

    Raises:
        MeterConnectionError: the command could not run (transport or OS error).
    """
    try:
        out = run(command)
    except MeterError:
        raise
    except (HostError, OSError) as exc:
        raise MeterConnectionError(f"{label}: command on the board failed: {exc}",
                                   hint=getattr(exc, "hint", None)) from exc
    if isinstance(out, bytes):
        out = out.decode("utf-8", "replace")
    return out if isinstance(out, str) else str(getattr(out, "stdout", out))


def run_command(run, command: str, *, board_label: str, label: str, timeout_s: float,
                hint: str | None = None) -> str:
    """An on-board source's one shell command: through ``run`` (:func:`run_on_board`) when the
    source has one, else ``/bin/sh -c`` on this machine with a ``timeout_s`` deadline; stdout and
    stderr together.

    Raises:
        MeterTimeoutError: no answer within ``timeout_s`` (``hint`` attached).
        MeterConnectionError: the command could not run.
    """
    if run is not None:
        return run_on_board(run, command, board_label)
    try:
        proc = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True,
                              timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise MeterTimeoutError(f"{label}: no answer within {timeout_s} s", hint=hint) from exc
    except OSError as exc:
        raise MeterConnectionError(f"cannot start /bin/sh for {label}: {exc}") from exc
    return proc.stdout + proc.stderr


@dataclass(frozen=True)
class MeterInfo:
    """What a driver declares about itself, as its class attribute ``INFO``; the registry
    (:func:`host.power.meters.registry`), ``host meter --help`` / ``host meter list`` and the meter
    table of docs/power.md (``host meter list --markdown``) are read from it, so a meter's name is
    written only here.

    Attributes:
        names: the names the driver is chosen by (inventory ``meter=``, ``--meter``), lower case.
        link: how the host reaches the meter (docs table).
        scope: what it measures, one or more of :data:`SCOPES` in words (docs table).
        interval: its default update interval in words (docs table).
        onboard: True when the meter is read on the board (a shell command over the device's own
            connection, option ``run``) instead of from a port on the host.
    """

    names: tuple
    link: str
    scope: str
    interval: str
    onboard: bool = False


@dataclass(frozen=True)
class Reading:
    """One meter update.

    ``power_w`` is None only when the meter itself reported no valid value (NaN/INF/
    over-range tokens); then ``flags`` says why ("invalid", "over_range", ...). ``rails``
    holds per-rail watts for on-board sources.
    """

    power_w: float | None
    voltage_v: float | None = None
    current_a: float | None = None
    flags: tuple = ()
    meter_seq: int | None = None
    meter_time_s: float | None = None
    rails: dict = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.power_w is not None and math.isfinite(self.power_w) and not self.flags


class Meter:
    """Interface of a meter driver.

    Args:
        port: a port string (``/dev/ttyUSB0``, a pyserial URL) or an already open
            ``serial.Serial``-like object (then the driver does not close it). On-board
            sources take ``None`` and their own options.
        name: the registry name the meter was opened by (e.g. ``um25c``).

    Every hook the host calls a meter through is declared here (the sampler, the power session,
    the idle and load windows and ``host meter`` call nothing else, and never probe with
    ``getattr``): :meth:`open`, :meth:`read`, :meth:`close`, :meth:`window_telemetry`,
    :meth:`describe` and the class attributes below.
    """

    #: what the driver declares about itself (names, docs row, on-board); None: not a driver
    #: (a base class such as :class:`host.power.meters._serial.SerialMeter`), not in the registry.
    INFO: MeterInfo | None = None
    #: what the meter measures, one of :data:`SCOPES`.
    scope = "board-input"
    #: the meter's own update period in seconds: the sampler never polls faster than this is useful.
    update_interval_s = 1.0
    #: True: :meth:`read` itself waits for the meter's next update, as a streaming logger does, so
    #: the sampler does not pace its calls; False (default): the sampler paces them.
    read_blocks = False

    def __init__(self, port=None, *, name: str = "", **options):
        self.port = port
        self.name = name
        self.options = options
        self.model = name  # refined by open() when the meter identifies itself

    def open(self) -> None:
        """Open the port, identify and configure the meter.

        Raises:
            MeterConnectionError, MeterTimeoutError, MeterProtocolError.
        """
        raise NotImplementedError

    def read(self) -> Reading:
        """One fresh reading (blocks up to the timeout).

        Raises:
            MeterConnectionError, MeterTimeoutError, MeterProtocolError.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Close the port if this driver opened it."""

    def window_telemetry(self, t_start_ns: int, t_end_ns: int) -> dict | None:
        """What the meter saw besides power in a load window ``[t_start_ns, t_end_ns]`` (host
        ``time.monotonic_ns``), for the cell's ``power.telemetry`` block (nvml: GPU utilization,
        memory used, SM clock, temperature). None (the default): the meter has none. Raises nothing."""
        return None

    def describe(self) -> dict:
        """``{"meter", "model", "port", "scope", "update_interval_s"}`` for results."""
        port = self.port
        if not isinstance(port, (str, type(None))):
            port = getattr(port, "port", repr(port))
        return {"meter": self.name, "model": self.model, "port": port, "scope": self.scope,
                "update_interval_s": self.update_interval_s}

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()
