"""Serial power-meter emulators on pseudo-terminals, byte for byte like the real meters.

Recipe (docs/testing.md §5): ``os.openpty()``,
the emulator thread owns the master fd, the slave is set raw and kept open (else master
reads raise EIO while no client is attached), and ``.port`` (``os.ttyname(slave)``) is what
the code under test opens with pyserial, exactly as it would open ``/dev/ttyUSB0``.

Each emulator replays a power profile: ``Profile(idle_w, load_w, step_at_s, volts)`` (idle,
then a load step) or any callable ``t -> watts``, evaluated at the emulator's clock (seconds
since the emulator started). Inject ``clock=ManualClock()`` to make the time a test input.

Fault injection (all emulators): :meth:`PtyEmulator.unplug` (close the master: the client
sees EIO / ``SerialException``), :meth:`~PtyEmulator.garbage` (junk before or instead of the
next reply), :meth:`~PtyEmulator.truncate_next` (half the next reply, then silence),
:meth:`~PtyEmulator.stop_answering` / :meth:`~PtyEmulator.resume`. Requests received are
recorded in ``.requests``; :meth:`~PtyEmulator.wait_request` waits for one.
"""

from __future__ import annotations

import math
import os
import re
import select
import struct
import threading
import time
import tty
from dataclasses import dataclass

from host.power.meters.um import (
    END_MARKER,
    FIELDS,
    FRAME_LEN,
    GROUPS,
    MODEL_IDS,
    MODELS,
    SCALES,
    um34c_checksum,
)


class ManualClock:
    """A clock the test sets: ``clock.t = 1.5`` or ``clock.advance(0.5)``; call it for the time."""

    def __init__(self, t: float = 0.0):
        self.t = float(t)

    def __call__(self) -> float:
        return self.t

    def set(self, t: float) -> None:
        self.t = float(t)

    def advance(self, dt: float) -> None:
        self.t += dt


@dataclass
class Profile:
    """Idle power until ``step_at_s``, then the load power; constant voltage. W, V, s."""

    idle_w: float = 2.0
    load_w: float = 5.0
    step_at_s: float = 1.0
    volts: float = 5.0

    def power(self, t: float) -> float:
        return self.idle_w if t < self.step_at_s else self.load_w

    def voltage(self, t: float) -> float:
        return self.volts

    def current(self, t: float) -> float:
        volts = self.voltage(t)
        return self.power(t) / volts if volts else 0.0


class FuncProfile(Profile):
    """A profile from callables: ``watts(t)`` and ``volts`` (a number or a callable)."""

    def __init__(self, watts, volts=5.0):
        super().__init__()
        self._watts = watts
        self._volts = volts

    def power(self, t: float) -> float:
        return float(self._watts(t))

    def voltage(self, t: float) -> float:
        return float(self._volts(t) if callable(self._volts) else self._volts)


def as_profile(profile) -> Profile:
    """None -> ``Profile()``; an object with ``.power`` as is; a callable ``t -> W`` wrapped."""
    if profile is None:
        return Profile()
    if hasattr(profile, "power"):
        return profile
    if callable(profile):
        return FuncProfile(profile)
    raise TypeError(f"not a power profile: {profile!r}")


class PtyEmulator:
    """Base: a pty, a thread serving it, fault injection and request recording.

    Args:
        profile: see :func:`as_profile`.
        clock: time source in seconds (default ``time.monotonic``); the profile is evaluated
            at ``clock() - clock_at_start``.

    Attributes: ``port`` (slave tty path), ``requests`` (what the client sent, per emulator),
    ``profile``, ``clock``, ``unplugged``, ``overruns`` (bytes dropped because the client did
    not read them).
    """

    def __init__(self, profile=None, *, clock=None):
        self.profile = as_profile(profile)
        self.clock = clock or time.monotonic
        self._t0 = self.clock()
        self.requests = []
        self.unplugged = False
        self.overruns = 0
        self._cond = threading.Condition()
        self._garbage = None
        self._truncate = False
        self._stalled = False
        self._unplug_next = False
        self._unplug_now = False
        self._stop = threading.Event()
        self._unplugged_evt = threading.Event()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"{type(self).__name__}:{self.port}",
                                        daemon=True)
        self._thread.start()

    # -- time ------------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the emulator started, on its clock."""
        return self.clock() - self._t0

    # -- test controls ---------------------------------------------------------------------

    def unplug(self, next_reply: bool = False) -> None:
        """Close the pty master now (returns once closed), or instead of the next reply
        (``next_reply=True``: the client is then blocked reading when it happens)."""
        with self._cond:
            if next_reply:
                self._unplug_next = True
            else:
                self._unplug_now = True
        self._wake()
        if not next_reply and not self._unplugged_evt.wait(2.0):
            raise RuntimeError("emulator thread did not close the pty master")

    def wait_unplugged(self, timeout: float = 2.0) -> bool:
        return self._unplugged_evt.wait(timeout)

    def garbage(self, data: bytes, replace: bool = False) -> None:
        """Send ``data`` before the next reply (or instead of it with ``replace=True``)."""
        with self._cond:
            prefix = self._garbage[0] if self._garbage else b""
            self._garbage = (prefix + bytes(data), replace)

    def truncate_next(self) -> None:
        """Send the first half of the next reply, then stop answering (until :meth:`resume`)."""
        with self._cond:
            self._truncate = True

    def stop_answering(self) -> None:
        """Record requests but send nothing (until :meth:`resume`)."""
        with self._cond:
            self._stalled = True

    def resume(self) -> None:
        with self._cond:
            self._stalled = False
        self._wake()

    def wait_request(self, match, timeout: float = 2.0, count: int = 1) -> None:
        """Wait until ``count`` recorded requests equal ``match`` (or satisfy ``match(request)``).

        Raises:
            AssertionError: not within ``timeout`` seconds (the message lists the requests).
        """
        test = match if callable(match) else (lambda req: req == match)
        with self._cond:
            found = self._cond.wait_for(lambda: sum(1 for r in self.requests if test(r)) >= count, timeout)
        if not found:
            raise AssertionError(f"fewer than {count} request(s) matching {match!r} within {timeout} s; "
                                 f"got {self.requests!r}")

    def close(self) -> None:
        """Stop and join the thread, close every fd."""
        self._stop.set()
        self._wake()
        self._thread.join(5.0)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = self._wake_r = self._wake_w = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- thread ----------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except (OSError, TypeError):
            pass

    _rx = b""  # request bytes not yet ending in a newline

    def _lines(self, data: bytes):
        """Complete request lines received so far (stripped, non-empty), each recorded;
        a partial line stays buffered for the next chunk."""
        self._rx += data
        while b"\n" in self._rx:
            raw, self._rx = self._rx.split(b"\n", 1)
            line = raw.decode("ascii", "replace").strip()
            if line:
                self._record(line)
                yield line

    def _record(self, request) -> None:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    def _close_master(self) -> None:
        self.unplugged = True  # before the close: the client may see EIO at once
        if self._master is not None:
            os.close(self._master)
            self._master = None
        self._unplugged_evt.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            fds = [self._wake_r] + ([self._master] if self._master is not None else [])
            timeout = self._poll_timeout() if self._master is not None else None
            readable, _, _ = select.select(fds, [], [], timeout)
            if self._wake_r in readable:
                os.read(self._wake_r, 1024)
            with self._cond:
                unplug_now, self._unplug_now = self._unplug_now, False
            if unplug_now:
                self._close_master()
            if self._master is None:
                continue
            if self._master in readable:
                try:
                    data = os.read(self._master, 4096)
                except OSError:  # EAGAIN, or EIO while no client holds the slave
                    data = b""
                if data:
                    self._on_data(data)
            if self._master is not None:
                self._tick()

    def _poll_timeout(self):
        """Seconds until :meth:`_tick` has work (None: only on input)."""
        return None

    def _tick(self) -> None:
        """Periodic work (streaming emulators)."""

    def _on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def _emit(self, payload: bytes) -> None:
        """Send a reply through the fault injectors."""
        with self._cond:
            if self._stalled:
                return
            if self._unplug_next:
                self._unplug_next = False
                unplug = True
            else:
                unplug = False
                if self._garbage is not None:
                    junk, replace = self._garbage
                    self._garbage = None
                    payload = junk if replace else junk + payload
                if self._truncate:
                    self._truncate = False
                    self._stalled = True
                    payload = payload[:len(payload) // 2]
        if unplug:
            self._close_master()
            return
        self._write(payload)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._master is not None:
            try:
                sent = os.write(self._master, view)
            except BlockingIOError:
                self.overruns += len(view)  # the client is not reading: a UART would lose it too
                return
            except OSError:
                return
            view = view[sent:]


# --------------------------------------------------------------------------------------------
# Yokogawa WT300E (SCPI over RS-232)


def _short(node: str) -> str:
    return "".join(c for c in node if c.isupper() or c == "*")


def _scpi_match(sent: str, pattern: str):
    """Numeric node suffixes if header ``sent`` (long or short form, any case) matches
    ``pattern`` (long form, capitals = short form), else None."""
    sent_nodes = sent.lstrip(":").split(":")
    pattern_nodes = pattern.lstrip(":").split(":")
    if len(sent_nodes) != len(pattern_nodes):
        return None
    suffixes = []
    for node, pat in zip(sent_nodes, pattern_nodes):
        m = re.fullmatch(r"([A-Za-z*]+?)(\d*)", node)
        if not m or m.group(1).upper() not in (pat.upper(), _short(pat)):
            return None
        suffixes.append(m.group(2))
    return suffixes


WT_RATES = ("100MS", "250MS", "500MS", "1S", "2S", "5S", "AUTO")
_WT_RATE_S = {"100MS": 0.1, "250MS": 0.25, "500MS": 0.5, "1S": 1.0, "2S": 2.0, "5S": 5.0, "AUTO": 0.25}


class WT300EEmulator(PtyEmulator):
    """A WT310E/WT332E/WT333E answering the SCPI subset of docs/power.md §2.

    Args:
        profile, clock: see :class:`PtyEmulator`; U = ``profile.voltage``, P =
            ``profile.power``, I = P/U, sampled at the start of the current update interval.
        idn: the ``*IDN?`` answer.
        rate: initial update rate token.
        rate_forms: which rate headers the emulated firmware accepts (``":RATE"``,
            ``":SAMPle:RATE"``); others are undefined headers (no answer, error queued).

    Controls: :meth:`next_values` (tokens such as ``"NAN"``/``"INF"`` for the next reply),
    :meth:`set_eesr_bits`. Attributes: ``requests`` (command lines as sent), ``state``
    (dict: header, format, number, items, rate, voltage/current auto and range, filter1),
    ``errors`` (the error queue).
    """

    def __init__(self, profile=None, *, idn: str = "YOKOGAWA,WT310E,C2QC12345E,F1.03", rate: str = "250MS",
                 rate_forms=(":RATE",), clock=None):
        self.idn = idn
        self.rate_forms = tuple(rate_forms)
        self.state = {"header": True, "verbose": False, "format": "ASCII", "number": 15,
                      "items": {1: ("U", "1"), 2: ("I", "1"), 3: ("P", "1")}, "rate": rate,
                      "voltage_auto": True, "voltage_range": 300.0, "current_auto": True,
                      "current_range": 20.0, "filter1": "NEVer"}
        self.errors = []
        self._eesr = 0
        self._last_update = None
        self._next_values = None
        self._rx = b""
        super().__init__(profile, clock=clock)

    # controls
    def next_values(self, *tokens) -> None:
        """Reply to the next ``:NUMeric:NORMal:VALue?`` with these tokens (None = profile value)."""
        with self._cond:
            self._next_values = tokens

    def set_eesr_bits(self, mask: int) -> None:
        """OR bits into the extended event register (e.g. ``1 << 6`` OVR1)."""
        with self._cond:
            self._eesr |= mask

    # protocol
    def _on_data(self, data: bytes) -> None:
        for line in self._lines(data):
            replies = []
            for part in line.split(";"):
                try:
                    reply = self._command(part.strip())
                except (ValueError, KeyError):  # a malformed parameter: queued error, no reply
                    reply = self._error(part, 224, "Illegal parameter value")
                if reply is not None:
                    replies.append(reply)
            if replies:
                self._emit(b";".join(r if isinstance(r, bytes) else r.encode() for r in replies) + b"\r\n")

    def _update_index(self) -> int:
        interval = _WT_RATE_S[self.state["rate"]]
        return math.floor(self.now() / interval + 1e-9)

    def _sample_time(self) -> float:
        return self._update_index() * _WT_RATE_S[self.state["rate"]]

    def _reply(self, header: str, value) -> str:
        return f"{header} {value}" if self.state["header"] else str(value)

    def _command(self, text: str):
        header, _, args = text.partition(" ")
        query = header.endswith("?")
        header = header.rstrip("?")
        args = args.strip()
        s = self.state

        def match(pattern):
            return _scpi_match(header, pattern)

        if match("*IDN") is not None and query:
            return self.idn
        if match("*CLS") is not None:
            self.errors.clear()
            with self._cond:
                self._eesr = 0
            return None
        if match(":COMMunicate:HEADer") is not None:
            return self._on_off(query, "header", args, ":COMM:HEAD")
        if match(":COMMunicate:VERBose") is not None:
            return self._on_off(query, "verbose", args, ":COMM:VERB")
        if any(match(p) is not None for p in (":COMMunicate:REMote", ":COMMunicate:WAIT", ":SYSTem:KLOCk",
                                                ":SYSTem:COMMunicate:COMMand", ":NUMeric:HOLD")):
            return None
        if match(":STATus:FILTer") is not None:
            s["filter1"] = args
            return None
        if match(":NUMeric:FORMat") is not None:
            if query:
                return self._reply(":NUM:FORM", s["format"])
            s["format"] = "FLOAT" if args.upper().startswith("FLO") else "ASCII"
            return None
        if match(":NUMeric:NORMal:NUMber") is not None:
            if query:
                return self._reply(":NUM:NORM:NUM", s["number"])
            s["number"] = 255 if args.upper() == "ALL" else int(args)
            return None
        item = match(":NUMeric:NORMal:ITEM")
        if item is not None:
            index = int(item[-1] or 0)
            if not 1 <= index <= 255:
                return self._error(text)
            if query:
                fn, elem = s["items"].get(index, ("NONE", ""))
                return self._reply(f":NUM:NORM:ITEM{index}", f"{fn},{elem}" if elem else fn)
            fn, _, elem = args.partition(",")
            s["items"][index] = (fn.strip().upper(), elem.strip())
            return None
        if match(":NUMeric:NORMal:VALue") is not None and query:
            return self._values()
        for form in self.rate_forms:
            if match(form) is not None:
                if query:
                    return self._reply(_short(form), s["rate"])
                if args.upper() not in WT_RATES:
                    return self._error(text, 224, "Illegal parameter value")
                s["rate"] = args.upper()
                return None
        for kind in ("VOLTage", "CURRent"):
            key = "voltage" if kind == "VOLTage" else "current"
            if match(f":INPut:{kind}:AUTO") is not None:
                return self._on_off(query, f"{key}_auto", args, f":INP:{_short(kind)}:AUTO")
            if match(f":INPut:{kind}:RANGe") is not None:
                if query:
                    return self._reply(f":INP:{_short(kind)}:RANG", f"{s[key + '_range']:.1E}")
                try:
                    s[key + "_range"] = float(args)
                except ValueError:
                    return self._error(text, 224, "Illegal parameter value")
                s[key + "_auto"] = False
                return None
        if match(":STATus:EESR") is not None and query:
            with self._cond:
                index = self._update_index()
                if index != self._last_update:
                    self._eesr |= 1  # UPD: a new update since the last read
                self._last_update = index
                value, self._eesr = self._eesr, 0
            return str(value)
        if match(":STATus:ERRor") is not None and query:
            return self.errors.pop(0) if self.errors else '0,"No error"'
        return self._error(text)

    def _on_off(self, query, key, args, short_header):
        if query:
            return self._reply(short_header, 1 if self.state[key] else 0)
        self.state[key] = args.upper() in ("ON", "1")
        return None

    def _error(self, text, code=113, message="Undefined header"):
        self.errors.append(f'{code},"{message}"')
        return None

    def _values(self):
        t = self._sample_time()
        volts, watts = self.profile.voltage(t), self.profile.power(t)
        by_fn = {"U": volts, "I": watts / volts if volts else 0.0, "P": watts}
        with self._cond:
            overrides, self._next_values = self._next_values, None
        count = min(self.state["number"], max(self.state["items"]) if self.state["items"] else 0)
        values = []
        for index in range(1, count + 1):
            fn, _elem = self.state["items"].get(index, ("NONE", ""))
            value = by_fn.get(fn, math.nan)
            if overrides and index <= len(overrides) and overrides[index - 1] is not None:
                value = overrides[index - 1]
            values.append(value)
        if self.state["format"] == "FLOAT":
            body = b"".join(struct.pack(">f", float(v)) for v in values)
            return f"#4{len(body):04d}".encode() + body
        return ",".join(v if isinstance(v, str) else ("NAN" if math.isnan(v) else f"{v:.4E}")
                        for v in values)


# --------------------------------------------------------------------------------------------
# RDTech UM24C / UM25C / UM34C


def _pack(buf: bytearray, name: str, offset: int, code: str, scale: float, value) -> None:
    raw = round(float(value) / scale)
    limit = 0xFFFF if code == "H" else 0xFFFFFFFF
    if not 0 <= raw <= limit:
        raise ValueError(f"{name}={value!r} does not fit the frame field ({limit * scale:g} max)")
    struct.pack_into(">" + code, buf, offset, raw)


def build_um_frame(model, volts: float, amps: float, watts: float | None = None, **fields) -> bytes:
    """A 130-byte UM24C/UM25C/UM34C reply frame, as the meter sends it (layout in
    :data:`host.power.meters.um.FIELDS`).

    Args:
        model: ``"UM25C"`` (any case) or a model id.
        volts, amps: bus voltage (V) and current (A), rounded to the model's resolution.
        watts: power in W (1 mW steps); default ``volts * amps``.
        **fields: any name in :data:`FIELDS` (``temp_c``, ``dplus_v``, ``load_ohm``, ...),
            ``group_ah`` / ``group_wh`` (up to 10 values each), and to forge bad frames
            ``end_marker`` (UM24C/25C bytes 128-129), ``checksum`` (UM34C byte 129),
            ``byte128`` (UM34C byte 128, default 0).

    Raises:
        ValueError: unknown model or field, or a value that does not fit its field.
    """
    name = MODEL_IDS.get(model) if isinstance(model, int) else str(model).upper()
    if name not in MODELS:
        raise ValueError(f"unknown UM model {model!r}; one of {', '.join(MODELS)}")
    volt_scale, amp_scale = SCALES[name]
    watts = volts * amps if watts is None else watts
    end_marker = fields.pop("end_marker", END_MARKER)
    checksum = fields.pop("checksum", None)
    byte128 = fields.pop("byte128", 0)
    group_ah = tuple(fields.pop("group_ah", ()))
    group_wh = tuple(fields.pop("group_wh", ()))
    values = {"load_ohm": volts / amps if amps > 0 else 9999.9, "temp_f": None}
    known = {f[0] for f in FIELDS}
    unknown = set(fields) - known
    if unknown:
        raise ValueError(f"unknown UM frame field(s): {', '.join(sorted(unknown))}")
    values.update(fields)
    if values["temp_f"] is None:
        values["temp_f"] = round(values.get("temp_c", 25) * 9 / 5 + 32)
    values.setdefault("temp_c", 25)
    values["watts"] = watts
    if len(group_ah) > GROUPS or len(group_wh) > GROUPS:
        raise ValueError(f"at most {GROUPS} data groups")

    buf = bytearray(FRAME_LEN)
    struct.pack_into(">H", buf, 0, MODELS[name])
    _pack(buf, "volts", 2, "H", volt_scale, volts)
    _pack(buf, "amps", 4, "H", amp_scale, amps)
    for field, offset, code, scale in FIELDS:
        _pack(buf, field, offset, code, scale, values.get(field, 0))
    for g, value in enumerate(group_ah):
        _pack(buf, f"group_ah[{g}]", 16 + 8 * g, "I", 0.001, value)
    for g, value in enumerate(group_wh):
        _pack(buf, f"group_wh[{g}]", 20 + 8 * g, "I", 0.001, value)
    if name == "UM34C":
        buf[128] = byte128
        buf[129] = um34c_checksum(buf) if checksum is None else checksum
    else:
        struct.pack_into(">H", buf, 128, end_marker)
    return bytes(buf)


class UMEmulator(PtyEmulator):
    """A UM24C/UM25C/UM34C: each ``0xF0`` byte is answered with a 130-byte frame from
    :func:`build_um_frame` (V, A and W of the profile at that time); other
    bytes are recorded and ignored.

    Args:
        model: ``"UM24C"``, ``"UM25C"`` or ``"UM34C"``.
        profile, clock: see :class:`PtyEmulator`.
        **frame_fields: extra fields for every frame (``temp_c``, ``end_marker``, ...).

    Attributes: ``requests`` (ints, one per byte received), ``request_times``
    (``time.monotonic()`` of each).
    """

    def __init__(self, model: str = "UM25C", profile=None, *, clock=None, **frame_fields):
        self.model = model.upper()
        if self.model not in MODELS:
            raise ValueError(f"unknown UM model {model!r}")
        self.frame_fields = frame_fields
        self.request_times = []
        super().__init__(profile, clock=clock)

    def frame(self, t: float | None = None) -> bytes:
        """The frame the meter would send at time ``t`` (default: now)."""
        t = self.now() if t is None else t
        p = self.profile
        return build_um_frame(self.model, p.voltage(t), p.current(t), p.power(t), **self.frame_fields)

    def _on_data(self, data: bytes) -> None:
        for byte in data:
            self.request_times.append(time.monotonic())
            self._record(byte)
            if byte == 0xF0:
                self._emit(self.frame())


# --------------------------------------------------------------------------------------------
# INA219 / INA226 logger (edgegauge line protocol, host/power/meters/ina.py)

INA_BANNER = "#ina v1 fields=seq,t_us,bus_mV,shunt_uV,current_uA,power_uW"
#: chip -> (bus voltage LSB in mV, shunt voltage LSB in uV) (TI INA219 / INA226 datasheets)
INA_LSB = {"ina219": (4.0, 10.0), "ina226": (1.25, 2.5)}


class InaEmulator(PtyEmulator):
    """A microcontroller with an INA219/INA226 speaking our line protocol.

    ``?`` -> banner; ``S<period_ms>`` -> data lines every period (seq from 0); ``X`` -> stop.
    The device clock is sample based: sample ``n`` is taken at ``t = t_start + n * period``
    (``t_start`` = emulator time of the ``S``), its values are the profile at ``t`` and
    ``t_us`` is ``micros_offset + t`` in us (uint32, wrapping). Lines are paced in real time.

    Args:
        rate_hz: stream at this rate whatever ``S`` asks (a sketch with a fixed rate);
            None follows ``S<period_ms>``.
        profile, clock: see :class:`PtyEmulator`.
        chip: ``"ina219"`` or ``"ina226"``: bus and shunt values are quantised to its LSBs.
        shunt_ohm: shunt resistance (current = shunt voltage / shunt_ohm).
        banner: the line answered to ``?`` (default the v1 banner).
        micros_offset: device ``micros()`` at emulator start (to test the 32-bit wrap).

    Controls: :meth:`drop_next` (skip samples: a seq gap). Attributes: ``requests`` (command
    lines), ``streaming``, ``lines_sent``.
    """

    def __init__(self, rate_hz: float | None = None, profile=None, *, chip: str = "ina226",
                 shunt_ohm: float = 0.1, banner: str = INA_BANNER, micros_offset: int = 0, clock=None):
        self.rate_hz = rate_hz
        self.chip = chip
        self.shunt_ohm = shunt_ohm
        self.banner = banner
        self.micros_offset = micros_offset
        self.streaming = False
        self.lines_sent = 0
        self._period_s = None
        self._n = 0
        self._t_start = 0.0
        self._next_wall = 0.0
        self._drop = 0
        self._rx = b""
        super().__init__(profile, clock=clock)

    def drop_next(self, n: int = 1) -> None:
        """Skip the next ``n`` samples (seq and time advance, no lines): a seq gap."""
        with self._cond:
            self._drop += n

    def sample_line(self, n: int) -> str:
        """The data line for sample ``n`` of the current stream."""
        t = self._t_start + n * self._period_s
        bus_lsb, shunt_lsb = INA_LSB[self.chip]
        p = self.profile
        bus_mv = round(p.voltage(t) * 1000 / bus_lsb) * bus_lsb
        shunt_uv = round(p.current(t) * self.shunt_ohm * 1e6 / shunt_lsb) * shunt_lsb
        current_ua = shunt_uv / self.shunt_ohm
        power_uw = bus_mv / 1000 * current_ua
        t_us = (self.micros_offset + round(t * 1e6)) % (1 << 32)
        return f"{n},{t_us},{round(bus_mv)},{round(shunt_uv)},{round(current_ua)},{round(power_uw)}"

    def _on_data(self, data: bytes) -> None:
        for line in self._lines(data):
            if line == "?":
                self._emit((self.banner + "\r\n").encode())
            elif line == "X":
                self.streaming = False
            elif line[0] == "S" and line[1:].isdigit() and int(line[1:]) >= 1:
                self._period_s = 1.0 / self.rate_hz if self.rate_hz else int(line[1:]) / 1000
                self._n = 0
                self._t_start = self.now()
                self._next_wall = time.monotonic()
                self.streaming = True

    def _poll_timeout(self):
        if not self.streaming:
            return None
        return max(0.0, self._next_wall - time.monotonic())

    def _tick(self) -> None:
        burst = 0
        while self.streaming and self._master is not None and time.monotonic() >= self._next_wall:
            with self._cond:
                skip = self._drop > 0
                if skip:
                    self._drop -= 1
            if not skip:
                self._emit((self.sample_line(self._n) + "\r\n").encode())
                self.lines_sent += 1
            self._n += 1
            self._next_wall += self._period_s
            burst += 1
            if burst >= 64:  # catch up later rather than starve the command input
                break
