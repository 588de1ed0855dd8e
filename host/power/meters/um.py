"""RDTech UM24C / UM25C / UM34C USB inline meters over Bluetooth SPP (``/dev/rfcommN``).

Link: pair (PIN 1234), ``rfcomm bind 0 <MAC>``, open ``/dev/rfcomm0``; the baud rate is
ignored by rfcomm (rd-usb uses 9600, libsigrok 115200).

Protocol (docs/power.md §3; rfinnie/rdserialtool ``rdserial/um/``,
libsigrok ``src/hardware/rdtech-um/protocol.c``):

* request: the single byte ``0xF0`` ("data dump"); leave ~0.5 s between requests, the meter
  drops some otherwise (rdserialtool ``tool.py``);
* reply: a 130-byte big-endian frame (layout in :data:`FIELDS`); bytes 0-1 are the model id
  (:data:`MODELS`), voltage and current scales differ on the UM25C (:data:`SCALES`);
* integrity: UM24C/UM25C end with ``0xFFF1`` at bytes 128-129; on the UM34C byte 129 is the
  XOR of the bytes in :data:`UM34C_CHECKSUM_POSITIONS` (libsigrok ``poll_csum_um34c``), and
  byte 128 is not checked (its meaning is not documented in either reference);
* framing: drop one byte at a time while bytes 0-1 are not a known model id (libsigrok
  ``recv_poll_data``).

The internal refresh rate (~1-2 Hz) is unverified; :attr:`UMMeter.update_interval_s` is the
request spacing ``min_interval_s``.
"""

from __future__ import annotations

import struct
import time

from host.errors import MeterProtocolError, MeterTimeoutError
from host.power.meters._serial import SerialMeter
from host.power.meters.base import MeterInfo, Reading, number_option

FRAME_LEN = 130
REQUEST = b"\xf0"

#: model name -> model id at bytes 0-1.
MODELS = {"UM24C": 0x0963, "UM25C": 0x09C9, "UM34C": 0x0D4C}
MODEL_IDS = {ident: model for model, ident in MODELS.items()}

#: model -> (volts per count, amps per count) of bytes 2-3 and 4-5.
SCALES = {"UM24C": (0.01, 0.001), "UM25C": (0.001, 0.0001), "UM34C": (0.01, 0.001)}

END_MARKER = 0xFFF1

#: UM34C: byte 129 is the XOR of these bytes (libsigrok ``poll_csum_um34c``).
UM34C_CHECKSUM_POSITIONS = (1, 3, 7, 9, 15, 17, 19, 23, 31, 39, 41, 45, 49, 53, 55, 57, 59, 63,
                            67, 69, 73, 79, 83, 89, 97, 99, 109, 111, 113, 119, 121, 127)

#: (field, offset, struct code, scale) for the fields other than voltage/current and the
#: per-group counters. Units are in the names; scales per docs/power.md §3.
FIELDS = (
    ("watts", 6, "I", 0.001),
    ("temp_c", 10, "H", 1),
    ("temp_f", 12, "H", 1),
    ("group", 14, "H", 1),
    ("dplus_v", 96, "H", 0.01),
    ("dminus_v", 98, "H", 0.01),
    ("charge_mode", 100, "H", 1),
    ("rec_ah", 102, "I", 0.001),
    ("rec_wh", 106, "I", 0.001),
    ("rec_threshold_a", 110, "H", 0.01),
    ("rec_seconds", 112, "I", 1),
    ("rec_active", 116, "H", 1),
    ("screen_timeout_min", 118, "H", 1),
    ("brightness", 120, "H", 1),
    ("load_ohm", 122, "I", 0.1),
    ("screen", 126, "H", 1),
)
GROUPS = 10  # data groups 0-9: mAh at 16+8g, mWh at 20+8g (u32, x0.001 Ah / Wh)

#: Give up resynchronising after dropping this many bytes without a model id.
MAX_RESYNC_BYTES = 4 * FRAME_LEN


def _model_name(model) -> str:
    if isinstance(model, int):
        if model not in MODEL_IDS:
            raise ValueError(f"unknown UM model id 0x{model:04X}")
        return MODEL_IDS[model]
    name = str(model).upper()
    if name not in MODELS:
        raise ValueError(f"unknown UM model {model!r}; one of {', '.join(MODELS)}")
    return name


def um34c_checksum(frame: bytes) -> int:
    """XOR of the UM34C checksum positions of a 130-byte frame (the expected byte 129)."""
    value = 0
    for pos in UM34C_CHECKSUM_POSITIONS:
        value ^= frame[pos]
    return value


def parse_um_frame(frame: bytes, model=None) -> dict:
    """Decode and check one 130-byte frame.

    Args:
        frame: exactly :data:`FRAME_LEN` bytes starting at the model id.
        model: the expected model (name or id); None accepts any known model.

    Returns:
        ``{"model", "volts", "amps", "watts", "group_ah", "group_wh", <FIELDS names>}``
        in V, A, W, Ah, Wh, Ω, °C/°F, s.

    Raises:
        MeterProtocolError: wrong length, unknown or unexpected model id, bad end marker or
            UM34C checksum (the message shows expected vs received, in hex).
    """
    frame = bytes(frame)
    if len(frame) != FRAME_LEN:
        raise MeterProtocolError(f"expected a {FRAME_LEN}-byte UM frame, received {len(frame)} bytes")
    ident = struct.unpack_from(">H", frame, 0)[0]
    if ident not in MODEL_IDS:
        raise MeterProtocolError(f"expected a UM model id ({', '.join(f'0x{i:04X}' for i in MODEL_IDS)}), "
                                 f"received 0x{ident:04X}")
    name = MODEL_IDS[ident]
    if model is not None:
        expected = _model_name(model)
        if name != expected:
            raise MeterProtocolError(f"expected a {expected} frame (id 0x{MODELS[expected]:04X}), "
                                     f"received a {name} frame (id 0x{ident:04X})",
                                     hint="meter_type does not match the meter on this port")
    if name == "UM34C":
        want = um34c_checksum(frame)
        if frame[129] != want:
            raise MeterProtocolError(f"UM34C frame checksum: expected 0x{want:02X}, received "
                                     f"0x{frame[129]:02X}; frame {frame.hex(' ')}")
    else:
        end = struct.unpack_from(">H", frame, 128)[0]
        if end != END_MARKER:
            raise MeterProtocolError(f"{name} frame end marker: expected 0x{END_MARKER:04X}, received "
                                     f"0x{end:04X}; frame {frame.hex(' ')}")
    volt_scale, amp_scale = SCALES[name]
    out = {"model": name,
           "volts": struct.unpack_from(">H", frame, 2)[0] * volt_scale,
           "amps": struct.unpack_from(">H", frame, 4)[0] * amp_scale}
    for field, offset, code, scale in FIELDS:
        raw = struct.unpack_from(">" + code, frame, offset)[0]
        out[field] = raw * scale if scale != 1 else raw
    out["group_ah"] = tuple(struct.unpack_from(">I", frame, 16 + 8 * g)[0] * 0.001 for g in range(GROUPS))
    out["group_wh"] = tuple(struct.unpack_from(">I", frame, 20 + 8 * g)[0] * 0.001 for g in range(GROUPS))
    return out


def _non_negative(name: str, value) -> float:
    return number_option("UM meter", name, value, lo=0, hi=3600)


class UMMeter(SerialMeter):
    """RDTech UM24C / UM25C / UM34C inline USB meter (board input power on USB).

    Readings: ``power_w`` in W (1 mW steps), ``voltage_v`` in V (10 mV; UM25C 1 mV),
    ``current_a`` in A (1 mA; UM25C 0.1 mA). No flags: a frame is either whole and checked,
    or an exception.

    Args:
        port: ``/dev/rfcommN``, a pyserial URL, or an already open serial-like object (its
            ``timeout`` is set to ``timeout_s``; it is never closed here).
        name: registry name ``um24c`` / ``um25c`` / ``um34c``: the frame's model id must
            match it. Any other name accepts whichever model answers.
        timeout_s: seconds to wait for a whole frame after a request.
        baudrate: ignored by rfcomm; 9600 as in rd-usb.
        min_interval_s: least spacing of requests (default 0.5 s, rdserialtool); :meth:`read`
            sleeps as needed. Also the reported ``update_interval_s``.
        scope: default ``"board-input"``.

    Attributes: ``model`` (``"UM25C"`` after :meth:`open`), ``resync_bytes`` (bytes dropped
    while looking for a frame start), ``last_frame`` (the last decoded frame as a dict).

    Raises (from :meth:`open` / :meth:`read`): MeterConnectionError (port cannot be opened
    or went away), MeterTimeoutError (fewer than 130 bytes within ``timeout_s``),
    MeterProtocolError (wrong model, bad end marker/checksum, no frame start found).
    """

    INFO = MeterInfo(names=("um24c", "um25c", "um34c"),
                     link="Bluetooth SPP (`/dev/rfcommN`), binary frames",
                     scope="`board-input`", interval="0.5 s (request spacing)")

    scope = "board-input"
    label = "UM meter"
    port_example = "/dev/rfcomm0"
    open_hint = "pair the meter and run `rfcomm bind 0 <MAC>`"
    gone_hint = "Bluetooth link lost or meter switched off?"

    def __init__(self, port=None, *, name: str = "", timeout_s: float = 2.0, baudrate: int = 9600,
                 min_interval_s: float = 0.5, scope: str = "board-input", **options):
        self._check_options(options, ("timeout_s", "baudrate", "min_interval_s", "scope"))
        super().__init__(port, name=name, timeout_s=timeout_s, baudrate=baudrate,
                         min_interval_s=min_interval_s, scope=scope)
        self.min_interval_s = _non_negative("min_interval_s", min_interval_s)
        self.update_interval_s = self.min_interval_s
        self.scope = scope
        self.expected_model = name.upper() if name and name.upper() in MODELS else None
        self.resync_bytes = 0
        self.last_frame = None
        self._last_request = None

    def _setup(self) -> None:
        """On :meth:`open`: request one frame to identify the model.

        Raises:
            MeterConnectionError, MeterTimeoutError, MeterProtocolError.
        """
        self.model = self._transact()["model"]

    def _transact(self) -> dict:
        if self._last_request is not None and self.min_interval_s > 0:
            wait = self._last_request + self.min_interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self._flush_if_dirty()
        self._io("writing the 0xF0 request", self._ser.write, REQUEST)
        self._last_request = time.monotonic()
        raw = self._read_frame()
        try:
            frame = parse_um_frame(raw, self.expected_model)
        except MeterProtocolError as exc:
            self._dirty = True
            raise MeterProtocolError(f"{self.label} on {self._port_name()}: {exc}", hint=exc.hint) from None
        self.last_frame = frame
        return frame

    def _read_frame(self) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        buf = bytearray()
        dropped = 0
        try:
            while True:
                buf += self._io("reading a frame", self._ser.read, FRAME_LEN - len(buf))
                while len(buf) >= 2 and ((buf[0] << 8) | buf[1]) not in MODEL_IDS:
                    del buf[0]
                    dropped += 1
                if dropped > MAX_RESYNC_BYTES:
                    self._dirty = True
                    raise MeterProtocolError(
                        f"{self.label} on {self._port_name()}: expected a frame starting with a model id "
                        f"({', '.join(f'0x{i:04X}' for i in MODEL_IDS)}), dropped {dropped} bytes "
                        f"without finding one; last bytes {bytes(buf[-16:]).hex(' ')}")
                if len(buf) == FRAME_LEN:
                    return bytes(buf)
                if time.monotonic() >= deadline:
                    self._dirty = True
                    raise MeterTimeoutError(
                        f"{self.label} on {self._port_name()}: expected a {FRAME_LEN}-byte frame within "
                        f"{self.timeout_s} s, received {len(buf)} byte(s)"
                        + (f" after dropping {dropped} unsynchronised byte(s)" if dropped else "")
                        + (f": {bytes(buf[:16]).hex(' ')}{'...' if len(buf) > 16 else ''}" if buf else ""))
        finally:
            self.resync_bytes += dropped

    def read(self) -> Reading:
        """Request and decode one frame: power (W), voltage (V), current (A).

        Raises:
            MeterConnectionError, MeterTimeoutError, MeterProtocolError.
        """
        self._require_open()
        frame = self._transact()
        return Reading(power_w=frame["watts"], voltage_v=frame["volts"], current_a=frame["amps"])

    def describe(self) -> dict:
        info = super().describe()
        info.update(min_interval_s=self.min_interval_s, resync_bytes=self.resync_bytes)
        return info
