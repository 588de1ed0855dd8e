"""Port handling shared by the serial meter drivers (WT300E, UM24C/25C/34C, INA logger).

:class:`SerialMeter` opens the port given as a string (device path or pyserial URL) with
``serial.serial_for_url(port, baudrate, timeout=timeout_s, write_timeout=timeout_s)`` and
closes it again in :meth:`SerialMeter.close`; a port given as an already open serial-like
object is adopted (its ``timeout`` is set to ``timeout_s``) and never closed here. Every
port operation goes through :meth:`SerialMeter._io`, which turns pyserial and OS errors
into the typed meter errors; messages start with the driver's :attr:`SerialMeter.label`
and the port name.

Errors raised:

* :class:`MeterError`: an unknown option or a bad ``timeout_s`` (constructor);
* :class:`MeterConnectionError`: no port given, the port cannot be opened, or it went away
  (``serial.SerialException``, ``OSError``, ``termios.error``), or a read on a closed meter;
* :class:`MeterTimeoutError`: a write did not complete, or a line was incomplete, within
  ``timeout_s``;
* :class:`MeterProtocolError`: a line that is not ASCII.
"""

from __future__ import annotations

import math

import serial

from host.errors import MeterConnectionError, MeterOptionError, MeterProtocolError, MeterTimeoutError
from host.power.meters.base import Meter, number_option

try:  # termios.error is what tcflush raises on a port that went away (POSIX only)
    from termios import error as _TermiosError
except ImportError:  # pragma: no cover - Windows
    _TermiosError = OSError

#: Errors of a port that cannot be used (any more).
IO_ERRORS = (serial.SerialException, OSError, _TermiosError)


def positive_number(name: str, value) -> float:
    """``float(value)``, which must be finite and > 0.

    Raises:
        MeterOptionError: not a number, not finite, or not positive.
    """
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise MeterOptionError(f"{name} must be a number, got {value!r}") from None
    if not (number > 0 and math.isfinite(number)):
        raise MeterOptionError(f"{name} must be a finite number > 0, got {value!r}")
    return number


class SerialMeter(Meter):
    """Base of the drivers that talk to a meter over a serial port.

    Args:
        port: device path, pyserial URL, or an already open serial-like object (its
            ``timeout`` is set to ``timeout_s``; it is never closed here).
        name: registry name.
        timeout_s: seconds per port operation (> 0). None leaves :attr:`timeout_s` None
            for the subclass to fill in from its other options.
        baudrate: line speed.
        **options: the driver's own options, kept in :attr:`options` with the above.

    Class attributes used in messages: ``label`` (``"WT300E"``), ``port_example``
    (``/dev/ttyUSB0``, for "no port given"), ``open_hint`` (port cannot be opened),
    ``gone_hint`` (port went away).

    :meth:`open` opens or adopts the port and runs the driver's :meth:`_setup`, closing the
    port again when that fails. ``_dirty`` is set after a failed or partial exchange;
    :meth:`_flush_if_dirty` then discards stale input before the next request.
    """

    label = "serial meter"
    port_example = "/dev/ttyUSB0"
    open_hint = "check the cable, the path and the permissions (group dialout)"
    gone_hint = "meter unplugged or switched off?"

    def __init__(self, port=None, *, name: str = "", timeout_s: float | None = None,
                 baudrate: int = 9600, **options):
        super().__init__(port, name=name, timeout_s=timeout_s, baudrate=baudrate, **options)
        self.timeout_s = None if timeout_s is None else positive_number("timeout_s", timeout_s)
        self.baudrate = number_option(self.label, "baudrate", baudrate, lo=50, hi=4_000_000, integer=True)
        self._ser = None
        self._owned = False
        self._dirty = False

    @classmethod
    def _check_options(cls, options: dict, known: tuple) -> None:
        """Raises MeterOptionError naming the unknown ``options`` and listing the ``known`` ones."""
        if options:
            raise MeterOptionError(f"unknown {cls.label} option(s): {', '.join(sorted(options))}",
                                   hint="options: " + ", ".join(known))

    # -- port handling ---------------------------------------------------------------------

    def _port_name(self) -> str:
        if isinstance(self.port, str):
            return self.port
        return str(getattr(self.port, "port", None) or getattr(self.port, "name", None) or self.port)

    def _open_port(self) -> None:
        if self.port is None:
            raise MeterConnectionError(f"{self.name or self.label}: no port given",
                                       hint=f"set meter_port (e.g. {self.port_example})")
        if isinstance(self.port, str):
            try:
                self._ser = serial.serial_for_url(self.port, self.baudrate, timeout=self.timeout_s,
                                                  write_timeout=self.timeout_s)
            except (serial.SerialException, OSError, ValueError) as exc:
                raise MeterConnectionError(f"cannot open {self.label} port {self.port}: {exc}",
                                           hint=self.open_hint) from exc
            self._owned = True
        else:
            self._ser = self.port
            self._owned = False
            self._ser.timeout = self.timeout_s

    def _require_open(self) -> None:
        if self._ser is None:
            raise MeterConnectionError(f"{self.label} on {self._port_name()} is not open",
                                       hint="call open() first")

    def _io(self, what: str, func, *args):
        """``func(*args)`` with port errors turned into MeterTimeoutError (a write timeout)
        or MeterConnectionError; ``what`` names the operation in the message."""
        try:
            return func(*args)
        except serial.SerialTimeoutException as exc:
            self._dirty = True
            raise MeterTimeoutError(f"{self.label} on {self._port_name()}: {what} did not complete "
                                    f"within {self.timeout_s} s") from exc
        except IO_ERRORS as exc:
            self._dirty = True
            raise MeterConnectionError(f"{self.label} on {self._port_name()} went away during {what}: "
                                       f"{exc}", hint=self.gone_hint) from exc

    def _flush_if_dirty(self) -> None:
        if self._dirty:
            self._io("discarding stale input", self._ser.reset_input_buffer)
            self._dirty = False

    # -- line protocols --------------------------------------------------------------------

    def _send(self, command: str) -> None:
        """Write ``command`` and a line feed (ASCII)."""
        self._io(f"writing {command!r}", self._ser.write, (command + "\n").encode("ascii"))

    def _read_line(self, expected: str) -> str:
        """One line up to ``"\\n"``, stripped; ``expected`` describes it in messages.

        Raises:
            MeterTimeoutError (no whole line within ``timeout_s``), MeterProtocolError (not
            ASCII), MeterConnectionError.
        """
        raw = self._io(f"reading {expected}", self._ser.read_until, b"\n")
        if not raw.endswith(b"\n"):
            self._dirty = True
            raise MeterTimeoutError(
                f"{self.label} on {self._port_name()}: expected {expected} within {self.timeout_s} s, "
                f"received {len(raw)} byte(s)" + (f": {raw!r}" if raw else ""))
        try:
            return raw.decode("ascii").strip()
        except UnicodeDecodeError:
            self._dirty = True
            raise MeterProtocolError(f"{self.label} on {self._port_name()}: expected {expected} "
                                     f"(ASCII), received bytes {raw.hex(' ')}") from None

    # -- Meter interface -------------------------------------------------------------------

    def open(self) -> None:
        """Open (or adopt) the port, then identify and configure the meter (:meth:`_setup`);
        the port is closed again when that fails.

        Raises:
            MeterConnectionError, MeterTimeoutError, MeterProtocolError.
        """
        self._open_port()
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        """The driver's identify/configure exchange on the freshly opened port."""

    def close(self) -> None:
        """Close the port if this driver opened it (an injected port stays open)."""
        ser, self._ser = self._ser, None
        if ser is not None and self._owned:
            try:
                ser.close()
            except IO_ERRORS:
                pass
