"""Yokogawa WT300E family (WT310E, WT332E, WT333E) driven directly with SCPI text commands.

Link: RS-232, 9600 baud 8N1 by default, no handshake, null-modem cable. The meter ends its
replies with CR+LF; we end each command with ``"\\n"``. A USB-TMC device node or a pyserial
URL works too when it behaves like a serial port.

Sources of the protocol facts (summarised in docs/power.md §2):

* link settings, ``*IDN?`` model check, readline framing: intel/yoko-tool README "Serial",
  ``yokolibs/Transport.py``;
* ``:NUMeric:*`` item set-up and ``:NUMeric:NORMal:VALue?``: WT300E manual command list,
  yoko-tool ``_wt310.py``;
* ``:RATE`` (WT300E manual) versus ``:SAMPle:RATE`` (yoko-tool): which one a firmware accepts
  is **unverified**; we try ``:RATE`` and fall back to ``:SAMPle:RATE`` when ``:RATE?`` gets
  no answer;
* the EESR bit map (3 OVRS, 6/9/12 OVR, 7/10/13 POV, 8/11/14 POA) and the
  ``:STATus:EESR?`` / ``:COMMunicate:WAIT 1`` update synchronisation: yoko-tool
  ``_yokobase.py``;
* error tokens in ASCII readings (``NAN``, ``INF``, 9.9E+37 / 9.91E+37): WT3000E manual
  (IM WT3001E-17EN); that the WT300E SCPI path uses the same tokens is **unverified**, so
  every non-finite value or magnitude >= 9.9E+37 counts as invalid.

Sequence (one meter, element 1 only)::

    open():  *IDN?                              -> YOKOGAWA,WT310E,<serial>,F<fw>
             :COMMunicate:HEADer OFF
             :NUMeric:FORMat ASCii
             :NUMeric:NORMal:NUMber 3
             :NUMeric:NORMal:ITEM1 U,1 / ITEM2 I,1 / ITEM3 P,1
             :RATE 100MS, :RATE?                -> 100MS
             :INPut:VOLTage:AUTO ON | :INPut:VOLTage:RANGe <V>
             :INPut:CURRent:AUTO ON | :INPut:CURRent:RANGe <A>
             [:STATus:FILTer1 FALL]             (wait_update=True)
             :STATus:ERRor?                     -> 0,"No error"
             :STATus:EESR?                      (clears stale event bits)
    read():  :STATus:EESR?                      -> NR1 register value
             [:COMMunicate:WAIT 1]              (wait_update=True)
             :NUMeric:NORMal:VALue?             -> 2.3010E+02,5.2000E-02,4.9870E+00
"""

from __future__ import annotations

import math

from host.errors import MeterError, MeterProtocolError, MeterTimeoutError
from host.power.meters._serial import SerialMeter, positive_number
from host.power.meters.base import MeterInfo, Reading

#: ``*IDN?`` model field prefixes accepted as the WT300E family (docs/power.md §2).
MODEL_PREFIXES = ("WT310", "WT330", "WT332", "WT333")

#: ``:RATE`` tokens -> update interval in seconds (WT300E manual); AUTO follows the input.
RATES = {"100MS": 0.1, "250MS": 0.25, "500MS": 0.5, "1S": 1.0, "2S": 2.0, "5S": 5.0, "AUTO": None}

#: EESR bits that make a reading suspect: 3 OVRS, 6..14 OVR/POV/POA of elements 1..3
#: (yoko-tool ``_yokobase.py`` ``_EESR_BITS``).
EESR_OVER_RANGE_MASK = (1 << 3) | sum(1 << bit for bit in range(6, 15))

#: ASCII readings at or above this magnitude are the meter's error codes (WT3000E manual).
ERROR_MAGNITUDE = 9.9e37


def parse_numeric_line(line: str, count: int) -> tuple[list, bool]:
    """Parse one ``:NUMeric:NORMal:VALue?`` ASCII reply (comma-separated NR3 numbers).

    Returns:
        ``(values, invalid)``: ``count`` floats, with None for each NaN/INF/>=9.9E+37 token
        (the meter's "no data"/over-range codes), and whether any value was such a token.

    Raises:
        MeterProtocolError: wrong number of fields, or a field that is not a number.
    """
    fields = [f.strip() for f in line.split(",")]
    if len(fields) != count:
        raise MeterProtocolError(
            f"expected {count} comma-separated numbers from :NUMeric:NORMal:VALue?, "
            f"received {len(fields)} field(s): {line!r}")
    values, invalid = [], False
    for text in fields:
        try:
            value = float(text)
        except ValueError:
            raise MeterProtocolError(
                f"expected an NR3 number from :NUMeric:NORMal:VALue?, received {text!r} "
                f"in {line!r}") from None
        if not math.isfinite(value) or abs(value) >= ERROR_MAGNITUDE:
            values.append(None)
            invalid = True
        else:
            values.append(value)
    return values, invalid


def _rate_token(rate) -> str:
    """Normalise a rate option ("100MS", "1s", 0.25, "auto") to a ``:RATE`` token."""
    if isinstance(rate, str):
        token = rate.strip().upper()
        if token in RATES:
            return token
        try:
            rate = float(token)
        except ValueError:
            rate = None
    if isinstance(rate, (int, float)):
        for token, seconds in RATES.items():
            if seconds is not None and math.isclose(seconds, float(rate)):
                return token
    raise MeterError(f"unsupported WT300E update rate {rate!r}",
                     hint="one of: " + ", ".join(RATES) + " (or seconds, e.g. 0.25)")


def _rate_seconds(reply: str):
    """Seconds from a ``:RATE?`` reply (token, or NR3 seconds); None for AUTO."""
    token = reply.strip().split()[-1].upper() if reply.strip() else ""
    if token in RATES:
        return RATES[token]
    try:
        seconds = float(token)
    except ValueError:
        raise MeterProtocolError(
            f"expected an update rate (one of {', '.join(RATES)}) from the rate query, "
            f"received {reply!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise MeterProtocolError(f"expected a positive update rate, received {reply!r}")
    return seconds


def _positive(name: str, value):
    return None if value is None else positive_number(name, value)


def _flag(value) -> bool:
    """Booleans from options that may come from an inventory as strings."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class WT300E(SerialMeter):
    """Yokogawa WT310E / WT332E / WT333E power analyzer (element 1: U, I, P).

    Readings: ``power_w`` active power P in W, ``voltage_v`` U in V (RMS in RMS mode),
    ``current_a`` I in A. A value the meter reports as NaN/INF/>=9.9E+37 becomes None and
    the reading is flagged ``"invalid"``; a set EESR bit 3 or 6..14 since the previous read
    flags it ``"over_range"``.

    Args:
        port: device path (``/dev/ttyUSB0``), pyserial URL, or an already open serial-like
            object (its ``timeout`` is set to ``timeout_s``; it is never closed here).
        name: registry name (``wt310e``, ``wt332e``, ``wt333e``).
        timeout_s: per-reply timeout in seconds (yoko-tool uses 5 s).
        baudrate: RS-232 speed (meter default 9600).
        rate: update interval, a ``:RATE`` token (``100MS`` .. ``5S``, ``AUTO``) or seconds.
        ranging: ``"auto"`` (both inputs auto-ranged) or ``"fixed"`` (needs both ranges).
            Default: fixed for an input whose range is given, auto for the other.
        voltage_range_v, current_range_a: fixed ranges in V and A (``:INPut:*:RANGe``);
            the valid values depend on model and crest factor (docs/power.md §2).
        wait_update: send ``:COMMunicate:WAIT 1`` before each value query, so each reading
            comes from a new meter update (no duplicates); ``timeout_s`` must then exceed
            the update interval.
        check_errors: read ``:STATus:ERRor?`` after configuring and fail on a queued error.
        scope: what is measured (default ``"wall"``: AC input of the whole board).

    Attributes (after :meth:`open`): ``model``, ``serial_number``, ``firmware``,
    ``update_interval_s``, ``rate_command`` (``":RATE"`` or ``":SAMPle:RATE"``),
    ``last_eesr``, ``invalid_count``, ``over_range_count``.

    Raises (from :meth:`open` / :meth:`read`): MeterConnectionError (port cannot be opened
    or went away), MeterTimeoutError (no or partial reply within ``timeout_s``),
    MeterProtocolError (not a WT300E, malformed reply, queued SCPI error).
    """

    INFO = MeterInfo(names=("wt310e", "wt332e", "wt333e"),
                     link="RS-232 or USB-serial, SCPI text",
                     scope="`wall`", interval="100 ms (`rate` option: 100 ms – 5 s)")

    scope = "wall"
    update_interval_s = 0.1
    label = "WT300E"
    port_example = "/dev/ttyUSB0"
    open_hint = "check the cable, the path and the permissions (group dialout)"
    gone_hint = "meter unplugged or switched off?"

    def __init__(self, port=None, *, name: str = "", timeout_s: float = 5.0, baudrate: int = 9600,
                 rate="100MS", ranging: str | None = None, voltage_range_v=None, current_range_a=None,
                 wait_update: bool = False, check_errors: bool = True, scope: str = "wall",
                 **options):
        self._check_options(options, ("timeout_s", "baudrate", "rate", "ranging", "voltage_range_v",
                                      "current_range_a", "wait_update", "check_errors", "scope"))
        super().__init__(port, name=name, timeout_s=timeout_s, baudrate=baudrate, rate=rate,
                         ranging=ranging, voltage_range_v=voltage_range_v,
                         current_range_a=current_range_a, wait_update=wait_update,
                         check_errors=check_errors, scope=scope)
        self.rate = _rate_token(rate)
        self.voltage_range_v = _positive("voltage_range_v", voltage_range_v)
        self.current_range_a = _positive("current_range_a", current_range_a)
        given = self.voltage_range_v is not None or self.current_range_a is not None
        if ranging is None:
            ranging = "fixed" if given else "auto"
        ranging = str(ranging).lower()
        if ranging == "auto" and given:
            raise MeterError("ranging='auto' conflicts with a fixed voltage_range_v/current_range_a",
                             hint="drop the ranges, or use ranging='fixed'")
        if ranging == "fixed" and (self.voltage_range_v is None or self.current_range_a is None):
            raise MeterError("ranging='fixed' needs both voltage_range_v and current_range_a")
        if ranging not in ("auto", "fixed"):
            raise MeterError(f"ranging must be 'auto' or 'fixed', got {ranging!r}")
        self.ranging = ranging
        self.wait_update = _flag(wait_update)
        self.check_errors = _flag(check_errors)
        self.scope = scope
        self.update_interval_s = RATES[self.rate] or 1.0
        self.serial_number = None
        self.firmware = None
        self.rate_command = None
        self.last_eesr = None
        self.invalid_count = 0
        self.over_range_count = 0

    # -- SCPI exchange ---------------------------------------------------------------------

    def _query(self, command: str) -> str:
        self._send(command)
        return self._read_line(f"a CR+LF-terminated reply to {command!r}")

    def _query_int(self, command: str) -> int:
        reply = self._query(command)
        try:
            return int(reply.split()[-1])
        except (ValueError, IndexError):
            self._dirty = True
            raise MeterProtocolError(f"{self.label} on {self._port_name()}: expected an integer from "
                                     f"{command!r}, received {reply!r}") from None

    # -- Meter interface -------------------------------------------------------------------

    def _setup(self) -> None:
        """On :meth:`open`: check ``*IDN?``, configure items, rate and ranges.

        Raises:
            MeterConnectionError, MeterTimeoutError, MeterProtocolError (not a WT300E; an
            unreadable rate; a queued SCPI error after configuration).
        """
        if self._owned:
            self._io("discarding stale input", self._ser.reset_input_buffer)
        idn = self._query("*IDN?")
        fields = [f.strip() for f in idn.split(",")]
        model = fields[1] if len(fields) > 1 else ""
        if not model.upper().startswith(MODEL_PREFIXES):
            raise MeterProtocolError(
                f"{self._port_name()}: expected a Yokogawa WT300E (*IDN? model starting with "
                f"{'/'.join(MODEL_PREFIXES)}), received {idn!r}",
                hint="wrong meter or wrong port; for a WT210/WT310 use a matching driver")
        self.model = model
        self.serial_number = fields[2] if len(fields) > 2 else None
        self.firmware = fields[3] if len(fields) > 3 else None
        for command in (":COMMunicate:HEADer OFF", ":NUMeric:FORMat ASCii", ":NUMeric:NORMal:NUMber 3",
                        ":NUMeric:NORMal:ITEM1 U,1", ":NUMeric:NORMal:ITEM2 I,1",
                        ":NUMeric:NORMal:ITEM3 P,1"):
            self._send(command)
        self._set_rate()
        if self.voltage_range_v is None:
            self._send(":INPut:VOLTage:AUTO ON")
        else:
            self._send(f":INPut:VOLTage:RANGe {self.voltage_range_v:g}")
        if self.current_range_a is None:
            self._send(":INPut:CURRent:AUTO ON")
        else:
            self._send(f":INPut:CURRent:RANGe {self.current_range_a:g}")
        if self.wait_update:
            self._send(":STATus:FILTer1 FALL")
        if self.check_errors:
            reply = self._query(":STATus:ERRor?")
            code = reply.split(",", 1)[0].strip()
            if code not in ("0", "+0"):
                raise MeterProtocolError(f"{self.label} on {self._port_name()} rejected the set-up: "
                                         f"expected 0,\"No error\" from :STATus:ERRor?, received "
                                         f"{reply!r}", hint="check rate and range values for this model")
        self._query_int(":STATus:EESR?")  # reading clears the event bits collected so far

    def _set_rate(self) -> None:
        """``:RATE`` per the WT300E manual; ``:SAMPle:RATE`` (yoko-tool) when that gets no
        answer. Which form a firmware accepts is unverified (docs/power.md §2)."""
        try:
            self._send(f":RATE {self.rate}")
            reply = self._query(":RATE?")
            self.rate_command = ":RATE"
        except MeterTimeoutError:
            self._io("discarding stale input", self._ser.reset_input_buffer)
            self._send(f":SAMPle:RATE {self.rate}")
            try:
                reply = self._query(":SAMPle:RATE?")
            except MeterTimeoutError as exc:
                raise MeterTimeoutError(
                    f"{self.label} on {self._port_name()}: expected an update rate from :RATE? or "
                    f":SAMPle:RATE? within {self.timeout_s} s each, received none") from exc
            self.rate_command = ":SAMPle:RATE"
            self._send("*CLS")  # drop the error the unknown :RATE queued
        seconds = _rate_seconds(reply)
        self.update_interval_s = seconds if seconds is not None else 1.0

    def read(self) -> Reading:
        """One reading of element 1: U (V), I (A), P (W), flags from EESR and error tokens.

        Raises:
            MeterConnectionError, MeterTimeoutError, MeterProtocolError (a reply that is not
            three numbers, or a non-integer EESR).
        """
        self._require_open()
        self._flush_if_dirty()
        eesr = self._query_int(":STATus:EESR?")
        if self.wait_update:
            self._send(":COMMunicate:WAIT 1")
        line = self._query(":NUMeric:NORMal:VALue?")
        try:
            (volts, amps, watts), invalid = parse_numeric_line(line, 3)
        except MeterProtocolError as exc:
            self._dirty = True
            raise MeterProtocolError(f"{self.label} on {self._port_name()}: {exc}") from None
        self.last_eesr = eesr
        flags = []
        if invalid:
            flags.append("invalid")
            self.invalid_count += 1
        if eesr & EESR_OVER_RANGE_MASK:
            flags.append("over_range")
            self.over_range_count += 1
        return Reading(power_w=watts, voltage_v=volts, current_a=amps, flags=tuple(flags))

    def describe(self) -> dict:
        info = super().describe()
        info.update(serial_number=self.serial_number, firmware=self.firmware, rate=self.rate,
                    rate_command=self.rate_command, ranging=self.ranging,
                    voltage_range_v=self.voltage_range_v, current_range_a=self.current_range_a,
                    last_eesr=self.last_eesr, invalid_count=self.invalid_count,
                    over_range_count=self.over_range_count)
        return info
