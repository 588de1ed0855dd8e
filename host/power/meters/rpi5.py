"""Raspberry Pi 5 on-board rails from the PMIC ADC: ``vcgencmd pmic_read_adc``.

Facts: docs/power.md §6. The command prints one line per ADC channel::

    VDD_CORE_A current(7)=6.22421000A
    VDD_CORE_V volt(15)=0.86173300V
    EXT5V_V volt(24)=5.09066000V

The ``(N)`` indices of a rail's ``_A`` and ``_V`` lines do not line up, so rails are paired
by name (``<RAIL>_A`` with ``<RAIL>_V``); power is the sum of V × A over the paired rails.
Rails with only one of the two (``BATT_V``, ...) are left out of the sum and listed in
:meth:`Rpi5Pmic.describe`. ``EXT5V_V`` (the 5 V input) has no current: it is reported as
``voltage_v`` and never summed. The result is a **sum of rails** (``scope = "rails"``): it
misses the USB ports, 5 V loads and the power supply, so it is lower than board-input power
(docs/power.md §7); use an external meter for input power.

Rate: every read spawns one ``vcgencmd`` process on the board. About 10 Hz is the practical
limit (``update_interval_s = 0.1``): a public harness that sampled at 50 Hz slowed its
workload about 6×. Keep the sampler off the benchmark cores, or measure power in a separate
run from throughput.

Boards without the PMIC (Pi 4 and older) answer ``error=1 error_msg="Command not
registered"``. Reading the ADC may need the user in group ``video``.
"""

from __future__ import annotations

import math
import re
import shlex

from host.errors import MeterConnectionError, MeterProtocolError
from host.power.meters.base import Meter, MeterInfo, Reading, number_option, run_command, unknown_options

#: The board input voltage line (no matching current).
INPUT_VOLTAGE = "EXT5V"

_LINE = re.compile(r"\s*([A-Za-z0-9_]+)_([AV])\s+(current|volt)\((\d+)\)=(\S*?)([AV]?)\s*")
_ERROR = re.compile(r"error=(\d+)(?:\s+error_msg=\"?([^\"]*)\"?)?")
_RC = re.compile(r"__edgegauge_rc=(\d+)\s*$")


class Rpi5Pmic(Meter):
    """Raspberry Pi 5 PMIC rails via ``vcgencmd pmic_read_adc``.

    Args:
        port: unused (``None``).
        name: registry name (``rpi5-pmic``).
        run: ``run(command) -> stdout`` executing a shell command on the board; ``None``
            runs it here with ``/bin/sh -c``.
        root: accepted for symmetry with :class:`host.power.meters.jetson.JetsonRails` (unused).
        timeout_s: limit for the local command.
        vcgencmd: option, the executable (default ``vcgencmd``).

    After :meth:`open`: ``paired`` (rails in the sum) and ``unpaired`` (``NAME_A``/``NAME_V``
    lines without their partner, ignored).
    """

    INFO = MeterInfo(names=("rpi5-pmic",),
                     link="`vcgencmd` on the board, over SSH",
                     scope="`rails`", interval="0.1 s",
                     onboard=True)

    scope = "rails"
    update_interval_s = 0.1

    def __init__(self, port=None, *, name: str = "", run=None, root: str = "/", timeout_s: float = 5.0,
                 **options):
        unknown_options("rpi5-pmic", options, ("root", "timeout_s", "vcgencmd"))
        super().__init__(port, name=name, **options)
        self.run = run
        self.root = str(root)
        self.timeout_s = number_option("rpi5-pmic", "timeout_s", timeout_s, lo=0.01, hi=3600)
        self.vcgencmd = str(options.get("vcgencmd") or "vcgencmd")
        self.paired: list = []
        self.unpaired: list = []
        self._opened = False

    def _command(self) -> str:
        # stderr folded into stdout and the exit status echoed: `run` only returns stdout.
        return f"{shlex.quote(self.vcgencmd)} pmic_read_adc 2>&1; echo __edgegauge_rc=$?"

    def _execute(self) -> str:
        return run_command(self.run, self._command(), board_label=self.name or "rpi5-pmic",
                           label=f"{self.vcgencmd} pmic_read_adc", timeout_s=self.timeout_s)

    def _query(self) -> dict:
        """``{"A": {rail: amps}, "V": {rail: volts}}`` from one run of the command.

        Raises:
            MeterConnectionError: no PMIC / command missing / command failed.
            MeterProtocolError: an unparsable or non-finite number, or no ADC lines.
        """
        out = self._execute()
        lines = out.splitlines()
        rc = None
        if lines and _RC.search(lines[-1]):
            rc = int(_RC.search(lines[-1]).group(1))
            lines = lines[:-1]
        text = "\n".join(lines).strip()
        err = _ERROR.search(text)
        if err:
            msg = (err.group(2) or "").strip()
            if "not registered" in msg.lower():
                raise MeterConnectionError(
                    f"{self.vcgencmd} pmic_read_adc: {msg!r}: no PMIC on this board or vcgencmd lacks "
                    "pmic_read_adc", hint="a Raspberry Pi 5 with current firmware is needed; "
                    "use an external meter on other boards")
            raise MeterConnectionError(f"{self.vcgencmd} pmic_read_adc failed: {text[:200]!r}",
                                       hint="the user may need to be in group 'video'")
        if rc in (126, 127) or (rc and "not found" in text.lower()):
            raise MeterConnectionError(f"{self.vcgencmd}: command not found on the board ({text[:200]!r})",
                                       hint="install the Raspberry Pi utilities (package raspi-utils)")
        if rc:
            raise MeterConnectionError(f"{self.vcgencmd} pmic_read_adc exited with {rc}: {text[:200]!r}",
                                       hint="the user may need to be in group 'video'")
        values = {"A": {}, "V": {}}
        for line in lines:
            if not line.strip():
                continue
            m = _LINE.fullmatch(line)
            if not m:
                raise MeterProtocolError(f"{self.vcgencmd} pmic_read_adc: expected 'NAME_A current(N)=xA' or "
                                         f"'NAME_V volt(N)=yV', got {line.strip()!r}")
            rail, kind, word, _, number, unit = m.groups()
            if (kind == "A") != (word == "current") or (unit and unit != kind):
                raise MeterProtocolError(f"{self.vcgencmd} pmic_read_adc: inconsistent line {line.strip()!r}")
            try:
                value = float(number)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or not re.fullmatch(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?", number):
                raise MeterProtocolError(f"{self.vcgencmd} pmic_read_adc: {rail}_{kind}: not a number: "
                                         f"{line.strip()!r}")
            values[kind][rail] = value
        if not values["A"] and not values["V"]:
            raise MeterProtocolError(f"{self.vcgencmd} pmic_read_adc: no ADC lines in {text[:200]!r}")
        return values

    def open(self) -> None:
        """Run the command once: checks that the PMIC answers and records the rails.

        Raises:
            MeterConnectionError, MeterTimeoutError, MeterProtocolError.
        """
        values = self._query()
        self._set_rails(values)
        if not self.paired:
            raise MeterProtocolError(f"{self.vcgencmd} pmic_read_adc: no rail has both _A and _V lines")
        self.model = "Raspberry Pi 5 PMIC"
        self._opened = True

    def _set_rails(self, values: dict) -> None:
        amps, volts = values["A"], values["V"]
        self.paired = [r for r in amps if r in volts and r != INPUT_VOLTAGE]
        self.unpaired = sorted(f"{r}_A" for r in amps if r not in volts) + sorted(
            f"{r}_V" for r in volts if r not in amps and r != INPUT_VOLTAGE)

    def read(self) -> Reading:
        """One run of ``vcgencmd pmic_read_adc``: the sum of V × A over paired rails.

        Raises:
            MeterConnectionError, MeterTimeoutError, MeterProtocolError.
        """
        if not self._opened:
            raise MeterConnectionError("rpi5-pmic: read() before open()")
        values = self._query()
        self._set_rails(values)
        amps, volts = values["A"], values["V"]
        rails = {rail: volts[rail] * amps[rail] for rail in self.paired}
        total = sum(rails.values())
        return Reading(power_w=total, voltage_v=volts.get(INPUT_VOLTAGE), current_a=None, rails=rails)

    def describe(self) -> dict:
        info = super().describe()
        info.update(source="on-board", rails=list(self.paired), unpaired=list(self.unpaired),
                    input_voltage=f"{INPUT_VOLTAGE}_V (not in the sum)",
                    via="run" if self.run is not None else "local")
        return info


__all__ = ["Rpi5Pmic"]
