"""INA219 / INA226 current monitor on a small microcontroller, speaking the edgegauge line
protocol (ours, not a standard; summary in docs/power.md §4).

Line protocol v1
================

Link: USB-CDC or UART, 115200 baud 8N1, ASCII lines. The device ends lines with ``"\\r\\n"``
(Arduino ``Serial.println``) or ``"\\n"``; the host ends commands with ``"\\n"``.

Device -> host::

    #ina v1 fields=seq,t_us,bus_mV,shunt_uV,current_uA,power_uW
    <seq>,<t_us>,<bus_mV>,<shunt_uV>,<current_uA>,<power_uW>

* The first line is the **banner**, sent at boot and in answer to ``?``. It may carry
  extra ``key=value`` tokens after ``fields=...`` (e.g. ``chip=ina226``); ``chip`` becomes
  the meter's model. Any other line starting with ``#`` is information and is skipped.
* A **data line** is six decimal integers, no spaces:

  - ``seq``: sample counter, uint32, 0 for the first sample after ``S``, +1 per sample
    *including samples the device could not send* (a full UART buffer): the host counts
    gaps as dropped samples. Wraps at 2**32.
  - ``t_us``: device ``micros()`` when the sample was taken, uint32, wraps at 2**32 us
    (~71.6 min; the host unwraps it).
  - ``bus_mV`` bus voltage, ``shunt_uV`` shunt voltage, ``current_uA``, ``power_uW``:
    signed integers in the named units, from the chip's calibrated registers.

Host -> device::

    ?\\n              identify: answer with the banner
    S<period_ms>\\n   start: one data line every period_ms (integer >= 1), seq restarts at 0
    X\\n              stop streaming

Example sketch outline (Arduino-style C++, INA226 on I2C; the ADC conversion time times
the averaging count must be below the period — docs/power.md §4)::

    uint32_t seq = 0, period_us = 0, next_us = 0;
    void banner() {
      Serial.println("#ina v1 fields=seq,t_us,bus_mV,shunt_uV,current_uA,power_uW chip=ina226");
    }
    void setup() { Serial.begin(115200); ina_begin_and_calibrate(SHUNT_OHM, MAX_AMPS); banner(); }
    void loop() {
      if (Serial.available()) {
        String cmd = Serial.readStringUntil('\\n'); cmd.trim();
        if (cmd == "?") banner();
        else if (cmd[0] == 'S') {
          period_us = cmd.substring(1).toInt() * 1000UL; seq = 0; next_us = micros();
        } else if (cmd == "X") period_us = 0;
      }
      if (period_us && (int32_t)(micros() - next_us) >= 0) {
        uint32_t t = micros(); next_us += period_us;
        long bus_mV = ..., shunt_uV = ..., current_uA = ..., power_uW = ...;   // read the chip
        char line[80];
        snprintf(line, sizeof line, "%lu,%lu,%ld,%ld,%ld,%ld",
                 seq++, t, bus_mV, shunt_uV, current_uA, power_uW);
        if (Serial.availableForWrite() > (int)strlen(line) + 2) Serial.println(line);  // else dropped
      }
    }

Host side (this driver): ``open()`` sends ``X`` (stop a stream left running), ``?`` and
waits for the banner (data lines before it are skipped), then ``S<period_ms>``;
``read()`` returns the next data line; ``close()`` sends ``X``.
"""

from __future__ import annotations

import re
import time

from host.errors import MeterProtocolError, MeterTimeoutError
from host.power.meters._serial import IO_ERRORS, SerialMeter
from host.power.meters.base import MeterInfo, Reading, number_option

BAUDRATE = 115200
FIELDS = ("seq", "t_us", "bus_mV", "shunt_uV", "current_uA", "power_uW")
BANNER_PREFIX = "#ina v1"
BANNER = f"{BANNER_PREFIX} fields={','.join(FIELDS)}"
_WRAP = 1 << 32
_FRAGMENT = re.compile(r"[-0-9,]*")
#: Skip at most this many stale data lines while waiting for the banner in open().
MAX_LINES_BEFORE_BANNER = 10000


def parse_banner(line: str) -> dict:
    """The ``key=value`` tokens of a v1 banner (``fields`` checked against :data:`FIELDS`).

    Raises:
        MeterProtocolError: not a v1 banner or other fields.
    """
    tokens = line.split()
    if line.startswith(BANNER_PREFIX + " ") and len(tokens) >= 3:
        info = dict(tok.split("=", 1) for tok in tokens[2:] if "=" in tok)
        if info.get("fields") == ",".join(FIELDS):
            return info
    raise MeterProtocolError(f"expected the INA logger banner {BANNER!r}, received {line!r}",
                             hint="flash a sketch that speaks the edgegauge line protocol v1 "
                                  "(see host/power/meters/ina.py)")


def parse_data_line(line: str) -> tuple:
    """``(seq, t_us, bus_mV, shunt_uV, current_uA, power_uW)`` as ints.

    Raises:
        MeterProtocolError: not six decimal integers, or a negative seq/t_us.
    """
    parts = line.split(",")
    try:
        if len(parts) != len(FIELDS):
            raise ValueError
        values = tuple(int(p, 10) for p in parts)
        if values[0] < 0 or values[1] < 0:
            raise ValueError
    except ValueError:
        raise MeterProtocolError(f"expected an INA data line {','.join(FIELDS)} (six integers), "
                                 f"received {line!r}") from None
    return values


class InaLogger(SerialMeter):
    """INA219/INA226 logger speaking the line protocol of this module.

    Readings: ``power_w`` = power_uW / 1e6 (W), ``voltage_v`` = bus_mV / 1e3 (V),
    ``current_a`` = current_uA / 1e6 (A), ``meter_seq`` = seq, ``meter_time_s`` = t_us / 1e6
    (device clock, unwrapped). Readings carry no flags; samples the device skipped (gaps in
    ``seq``) are counted in :attr:`dropped`.

    Args:
        port: device path (``/dev/ttyACM0``), pyserial URL, or an already open serial-like
            object (its ``timeout`` is set to ``timeout_s``; it is never closed here).
        name: registry name ``ina219`` / ``ina226``.
        timeout_s: seconds to wait for a line (default max(1 s, 5 periods)). Boards that
            reset when the port opens (Arduino Uno) need ~2 s for the boot banner.
        baudrate: default 115200.
        period_ms: sample period requested with ``S`` (integer >= 1; default 20).
        scope: default ``"board-input"`` (where the shunt sits decides; set it).

    Attributes: ``dropped`` (samples lost, from seq gaps), ``banner`` (dict of the banner
    tokens), ``period_ms``, ``update_interval_s`` (= period).

    Raises (from :meth:`open` / :meth:`read`): MeterConnectionError (port cannot be opened
    or went away), MeterTimeoutError (no whole line within ``timeout_s``),
    MeterProtocolError (no banner, malformed line, seq going backwards: that one read fails,
    the stream then goes on from the new seq).
    """

    INFO = MeterInfo(names=("ina219", "ina226"),
                     link="USB-CDC/UART 115200, our line protocol",
                     scope="`board-input`", interval="20 ms (`period_ms`)")

    scope = "board-input"
    # read() blocks until the device streams the next line: the sampler reads back-to-back.
    read_blocks = True
    label = "INA logger"
    port_example = "/dev/ttyACM0"
    open_hint = "check the USB cable and the permissions (group dialout)"
    gone_hint = "USB cable unplugged or board reset?"

    def __init__(self, port=None, *, name: str = "", timeout_s: float | None = None,
                 baudrate: int = BAUDRATE, period_ms: int = 20, scope: str = "board-input", **options):
        self._check_options(options, ("timeout_s", "baudrate", "period_ms", "scope"))
        super().__init__(port, name=name, timeout_s=timeout_s, baudrate=baudrate, period_ms=period_ms,
                         scope=scope)
        self.period_ms = number_option(self.label, "period_ms", period_ms, lo=1, hi=60_000, integer=True)
        self.update_interval_s = self.period_ms / 1000
        if self.timeout_s is None:
            self.timeout_s = max(1.0, 5 * self.update_interval_s)
        self.scope = scope
        self.dropped = 0
        self.banner = None
        self._last_seq = None
        self._last_t_raw = None
        self._t_offset = 0

    def _setup(self) -> None:
        """On :meth:`open`: stop any running stream, check the banner and start streaming.

        Raises:
            MeterConnectionError, MeterTimeoutError (no banner), MeterProtocolError (a line
            that is neither data nor a v1 banner).
        """
        self._send("X")
        self._send("?")
        for count in range(MAX_LINES_BEFORE_BANNER):
            line = self._read_line("the banner line in answer to '?'")
            if line.startswith("#ina"):
                self.banner = parse_banner(line)
                break
            if not line or line.startswith("#"):
                continue  # information line
            if count == 0 and _FRAGMENT.fullmatch(line):
                continue  # the tail of a data line cut when the port was opened
            try:
                parse_data_line(line)  # a data line from a stream left running: skip it
            except MeterProtocolError:
                raise MeterProtocolError(f"{self.label} on {self._port_name()}: expected the banner "
                                         f"{BANNER!r}, received {line!r}",
                                         hint="flash a sketch that speaks the edgegauge line protocol v1 "
                                              "(see host/power/meters/ina.py)") from None
        else:
            raise MeterProtocolError(f"{self.label} on {self._port_name()}: expected the banner, "
                                     f"received {MAX_LINES_BEFORE_BANNER} data lines")
        self.model = self.banner.get("chip", self.model)
        self._last_seq = None
        self._last_t_raw = None
        self._t_offset = 0
        self._send(f"S{self.period_ms}")

    def read(self) -> Reading:
        """The next data line as a reading (W, V, A; device seq and time).

        Raises:
            MeterConnectionError, MeterTimeoutError, MeterProtocolError (malformed line,
            seq going backwards: the device restarted; the next read goes on from the new seq).
        """
        self._require_open()
        deadline = time.monotonic() + self.timeout_s
        while True:
            line = self._read_line("a data line")
            if line and not line.startswith("#"):
                break
            if time.monotonic() >= deadline:
                raise MeterTimeoutError(f"{self.label} on {self._port_name()}: expected a data line "
                                        f"within {self.timeout_s} s, received only comment lines")
        try:
            seq, t_us, bus_mv, _shunt_uv, current_ua, power_uw = parse_data_line(line)
        except MeterProtocolError as exc:
            raise MeterProtocolError(f"{self.label} on {self._port_name()}: {exc}") from None
        if self._last_seq is not None:
            gap = (seq - self._last_seq - 1) % _WRAP
            if gap >= _WRAP // 2:
                expected = self._last_seq + 1
                # accept the restarted stream, so that only this one reading fails
                self._last_seq, self._last_t_raw, self._t_offset = seq, t_us, 0
                raise MeterProtocolError(
                    f"{self.label} on {self._port_name()}: expected seq {expected}, received "
                    f"{seq} (went backwards: device restarted?)",
                    hint="later reads go on from the new seq; check the board's supply if it repeats")
            self.dropped += gap
        if self._last_t_raw is not None and t_us < self._last_t_raw and self._last_t_raw - t_us > _WRAP // 2:
            self._t_offset += _WRAP  # 32-bit micros() wrapped
        self._last_seq, self._last_t_raw = seq, t_us
        return Reading(power_w=power_uw / 1e6, voltage_v=bus_mv / 1e3, current_a=current_ua / 1e6,
                       meter_seq=seq, meter_time_s=(t_us + self._t_offset) / 1e6)

    def close(self) -> None:
        """Send ``X`` (best effort) and close the port if this driver opened it."""
        if self._ser is not None:
            try:
                self._ser.write(b"X\n")
            except IO_ERRORS:
                pass
        super().close()

    def describe(self) -> dict:
        info = super().describe()
        info.update(period_ms=self.period_ms, dropped=self.dropped)
        return info
