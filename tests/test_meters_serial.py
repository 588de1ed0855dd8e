"""Serial meter drivers against byte-exact emulators on pseudo-terminals (tests/meter_emu.py).

The drivers open the emulators' ptys as serial ports, exactly as they would open a real
meter. Time is a test input (``ManualClock``) where readings depend on it; the INA stream
carries its own device clock, so its checks use ``meter_time_s``.
"""

from __future__ import annotations

import time

import pytest
import serial
from meter_emu import (
    INA_BANNER,
    InaEmulator,
    ManualClock,
    Profile,
    UMEmulator,
    WT300EEmulator,
    as_profile,
    build_um_frame,
)

from host.errors import MeterConnectionError, MeterError, MeterProtocolError, MeterTimeoutError
from host.power.meters import meter_class, open_meter, registry
from host.power.meters.base import Reading
from host.power.meters.ina import InaLogger, parse_data_line
from host.power.meters.um import (
    FRAME_LEN,
    MODELS,
    SCALES,
    UM34C_CHECKSUM_POSITIONS,
    UMMeter,
    parse_um_frame,
)
from host.power.meters.wt300e import WT300E, parse_numeric_line

FAST = 0.25  # timeout for tests that expect a timeout


@pytest.fixture
def clock():
    return ManualClock(0.0)


@pytest.fixture
def closing():
    """Register drivers and emulators; closed in reverse order at teardown."""
    things = []
    yield lambda thing: things.append(thing) or thing
    for thing in reversed(things):
        thing.close()


# --------------------------------------------------------------------------------------------
# profiles and emulator helpers


def test_profile_idle_then_step_and_callable():
    p = Profile(idle_w=2.0, load_w=5.0, step_at_s=1.0, volts=5.0)
    assert (p.power(0.99), p.power(1.0), p.current(2.0)) == (2.0, 5.0, 1.0)
    ramp = as_profile(lambda t: 1.0 + t)
    assert ramp.power(2.0) == 3.0 and ramp.voltage(0.0) == 5.0


# --------------------------------------------------------------------------------------------
# Yokogawa WT300E

WT_INIT = [
    "*IDN?",
    ":COMMunicate:HEADer OFF",
    ":NUMeric:FORMat ASCii",
    ":NUMeric:NORMal:NUMber 3",
    ":NUMeric:NORMal:ITEM1 U,1",
    ":NUMeric:NORMal:ITEM2 I,1",
    ":NUMeric:NORMal:ITEM3 P,1",
    ":RATE 100MS",
    ":RATE?",
    ":INPut:VOLTage:AUTO ON",
    ":INPut:CURRent:AUTO ON",
    ":STATus:ERRor?",
    ":STATus:EESR?",
]


@pytest.fixture
def wt(clock, closing):
    return closing(WT300EEmulator(Profile(idle_w=60.0, load_w=95.5, step_at_s=1.0, volts=230.0),
                                  clock=clock))


def test_wt300e_init_sends_commands_in_order(wt, closing):
    meter = closing(WT300E(wt.port, name="wt310e", timeout_s=1.0))
    meter.open()
    assert wt.requests == WT_INIT
    assert wt.state["header"] is False and wt.state["number"] == 3 and wt.state["rate"] == "100MS"
    assert wt.state["voltage_auto"] and wt.state["current_auto"] and wt.errors == []
    assert (meter.model, meter.serial_number, meter.firmware) == ("WT310E", "C2QC12345E", "F1.03")
    assert meter.update_interval_s == 0.1 and meter.rate_command == ":RATE"
    info = meter.describe()
    assert info["scope"] == "wall" and info["model"] == "WT310E" and info["port"] == wt.port


def test_wt300e_readings_follow_profile(wt, clock, closing):
    meter = closing(WT300E(wt.port, name="wt310e", timeout_s=1.0))
    meter.open()
    clock.set(0.55)
    idle = meter.read()
    clock.set(1.55)
    load = meter.read()
    for reading, watts in ((idle, 60.0), (load, 95.5)):
        assert isinstance(reading, Reading) and reading.valid
        assert reading.power_w == pytest.approx(watts, rel=1e-4)  # 5 significant digits
        assert reading.voltage_v == pytest.approx(230.0, rel=1e-4)
        assert reading.current_a == pytest.approx(watts / 230.0, rel=1e-4)
    assert wt.requests[-2:] == [":STATus:EESR?", ":NUMeric:NORMal:VALue?"]


@pytest.mark.parametrize("tokens", [("NAN", None, "INF"), (None, "9.91E+37", "-INF"),
                                    ("9.9E+37", None, None)])
def test_wt300e_error_tokens_flag_invalid(wt, closing, tokens):
    meter = closing(WT300E(wt.port, name="wt310e", timeout_s=1.0))
    meter.open()
    wt.next_values(*tokens)
    reading = meter.read()
    got = (reading.voltage_v, reading.current_a, reading.power_w)
    for token, value in zip(tokens, got):
        assert (value is None) == (token is not None)
    assert reading.flags == ("invalid",) and not reading.valid
    assert meter.invalid_count == 1
    assert meter.read().flags == ()  # the next update is clean again


def test_wt300e_eesr_over_range(wt, closing):
    meter = closing(WT300E(wt.port, name="wt310e", timeout_s=1.0))
    meter.open()
    wt.set_eesr_bits(1 << 6)  # OVR1: element 1 U or I over range
    reading = meter.read()
    assert reading.flags == ("over_range",) and reading.power_w == pytest.approx(60.0, rel=1e-4)
    assert meter.last_eesr & (1 << 6)
    wt.set_eesr_bits(1 << 0 | 1 << 1)  # UPD and ITG are not faults
    assert meter.read().flags == ()
    wt.set_eesr_bits(1 << 3)  # OVRS computation overflow
    wt.next_values("NAN")
    assert meter.read().flags == ("invalid", "over_range")
    assert meter.describe()["over_range_count"] == 2


@pytest.mark.parametrize("idn", ["YOKOGAWA,WT210,91H123456,F2.01", "KEITHLEY,2400,1234,C30", "garbage"])
def test_wt300e_wrong_idn_is_protocol_error(clock, closing, idn):
    emu = closing(WT300EEmulator(idn=idn, clock=clock))
    meter = WT300E(emu.port, name="wt310e", timeout_s=1.0)
    with pytest.raises(MeterProtocolError, match="WT300E") as err:
        meter.open()
    assert idn in str(err.value)
    assert emu.requests == ["*IDN?"]  # nothing configured on a foreign instrument


@pytest.mark.parametrize("model", ["WT332E", "WT333E"])
def test_wt300e_family_models_accepted(clock, closing, model):
    emu = closing(WT300EEmulator(idn=f"YOKOGAWA,{model},C2QC1,F1.00", clock=clock))
    meter = closing(WT300E(emu.port, name=model.lower(), timeout_s=1.0))
    meter.open()
    assert meter.model == model


def test_wt300e_fixed_ranges_rate_and_update_sync(wt, closing):
    meter = closing(WT300E(wt.port, name="wt310e", timeout_s=1.0, rate="1s", voltage_range_v=15,
                           current_range_a="0.5", wait_update=True))
    meter.open()
    assert meter.ranging == "fixed" and meter.update_interval_s == 1.0
    assert ":RATE 1S" in wt.requests
    assert ":INPut:VOLTage:RANGe 15" in wt.requests and ":INPut:CURRent:RANGe 0.5" in wt.requests
    assert not any("AUTO" in r for r in wt.requests)
    assert ":STATus:FILTer1 FALL" in wt.requests
    assert (wt.state["voltage_range"], wt.state["current_range"]) == (15.0, 0.5)
    meter.read()
    assert wt.requests[-3:] == [":STATus:EESR?", ":COMMunicate:WAIT 1", ":NUMeric:NORMal:VALue?"]


def test_wt300e_sample_rate_fallback(clock, closing):
    """Firmware that only knows yoko-tool's :SAMPle:RATE: :RATE? stays unanswered."""
    emu = closing(WT300EEmulator(rate_forms=(":SAMPle:RATE",), clock=clock))
    meter = closing(WT300E(emu.port, name="wt310e", timeout_s=FAST, rate=0.5))
    meter.open()
    assert meter.rate_command == ":SAMPle:RATE" and meter.update_interval_s == 0.5
    assert emu.state["rate"] == "500MS" and emu.errors == []  # *CLS dropped the :RATE error
    assert emu.requests.index(":SAMPle:RATE?") > emu.requests.index(":RATE?")


def test_wt300e_rejected_setting_is_reported(wt, closing):
    meter = WT300E(wt.port, name="wt310e", timeout_s=1.0, voltage_range_v=15, current_range_a=0.5)
    wt.errors.append('224,"Illegal parameter value"')  # as if a range had been refused
    with pytest.raises(MeterProtocolError, match="224"):
        meter.open()


def test_wt300e_malformed_values_line(wt, closing):
    meter = closing(WT300E(wt.port, name="wt310e", timeout_s=1.0))
    meter.open()
    wt.next_values(None, "1.2A-3", None)
    with pytest.raises(MeterProtocolError, match=r"1\.2A-3"):
        meter.read()
    assert meter.read().valid  # the driver recovers on the next update


def test_parse_numeric_line():
    assert parse_numeric_line("2.3010E+02,5.2000E-02,4.9870E+00", 3) == ([230.1, 0.052, 4.987], False)
    assert parse_numeric_line(" NAN , 1.0E+00 ,INF", 3) == ([None, 1.0, None], True)
    for bad in ("1.0E+00,2.0E+00", "1,2,3,4", "1,,3", ""):
        with pytest.raises(MeterProtocolError, match="expected"):
            parse_numeric_line(bad, 3)


def test_wt300e_option_validation():
    with pytest.raises(MeterError, match="rate"):
        WT300E("/dev/null", rate="3S")
    with pytest.raises(MeterError, match="fixed"):
        WT300E("/dev/null", ranging="fixed", voltage_range_v=15)
    with pytest.raises(MeterError, match="conflicts"):
        WT300E("/dev/null", ranging="auto", current_range_a=1)
    with pytest.raises(MeterError, match="unknown WT300E option"):
        WT300E("/dev/null", sample_rate="1S")


# --------------------------------------------------------------------------------------------
# RDTech UM24C / UM25C / UM34C


@pytest.mark.parametrize("model", sorted(MODELS))
def test_um_frame_round_trip(model):
    frame = build_um_frame(model, 5.123, 0.4567, 2.3397, temp_c=31, group=3, group_ah=[0.5, 1.25],
                           group_wh=[2.5], dplus_v=0.6, dminus_v=0.55, charge_mode=2, load_ohm=11.2,
                           rec_seconds=123456, brightness=4)
    assert len(frame) == FRAME_LEN and frame[:2] == MODELS[model].to_bytes(2, "big")
    decoded = parse_um_frame(frame, model)
    volt_scale, amp_scale = SCALES[model]
    assert decoded["model"] == model
    assert decoded["volts"] == pytest.approx(5.123, abs=volt_scale / 2 + 1e-12)
    assert decoded["amps"] == pytest.approx(0.4567, abs=amp_scale / 2 + 1e-12)
    assert decoded["watts"] == pytest.approx(2.3397, abs=0.0005 + 1e-12)
    assert [decoded[k] for k in ("temp_c", "group", "charge_mode", "brightness")] == [31, 3, 2, 4]
    assert decoded["group_ah"][:3] == pytest.approx((0.5, 1.25, 0.0))
    assert decoded["group_wh"][0] == pytest.approx(2.5)
    assert [decoded[k] for k in ("dplus_v", "load_ohm", "rec_seconds")] == pytest.approx([0.6, 11.2, 123456])
    again = parse_um_frame(build_um_frame(model, decoded["volts"], decoded["amps"], decoded["watts"]))
    assert [again[k] for k in ("volts", "amps", "watts")] == pytest.approx(
        [decoded[k] for k in ("volts", "amps", "watts")])


def test_um_frame_builder_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown UM model"):
        build_um_frame("UM99", 5, 1)
    with pytest.raises(ValueError, match="does not fit"):
        build_um_frame("UM25C", 70.0, 1)  # 65.535 V max at 1 mV
    with pytest.raises(ValueError, match="unknown UM frame field"):
        build_um_frame("UM24C", 5, 1, colour="red")


def test_um34c_checksum():
    frame = build_um_frame("UM34C", 12.0, 1.5)
    want = 0
    for pos in UM34C_CHECKSUM_POSITIONS:
        want ^= frame[pos]
    assert frame[129] == want
    assert parse_um_frame(frame, "UM34C")["volts"] == pytest.approx(12.0)
    bad = bytearray(frame)
    bad[3] ^= 0x01  # a covered byte: voltage low byte
    with pytest.raises(MeterProtocolError, match=f"expected 0x{want ^ 0x01:02X}, received 0x{want:02X}"):
        parse_um_frame(bytes(bad))
    bad = bytearray(frame)
    bad[2] ^= 0x01  # an even byte is not covered by the UM34C checksum (libsigrok)
    parse_um_frame(bytes(bad))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_um_readings_follow_profile_per_model(clock, closing, model):
    profile = Profile(idle_w=1.234, load_w=4.321, step_at_s=1.0, volts=5.123)
    emu = closing(UMEmulator(model, profile, clock=clock))
    meter = closing(UMMeter(emu.port, name=model.lower(), min_interval_s=0, timeout_s=1.0))
    meter.open()
    assert meter.model == model and meter.describe()["scope"] == "board-input"
    volt_scale, amp_scale = SCALES[model]
    clock.set(0.5)
    idle = meter.read()
    clock.set(1.5)
    load = meter.read()
    for reading, watts in ((idle, 1.234), (load, 4.321)):
        assert reading.valid and reading.flags == ()
        assert reading.power_w == pytest.approx(watts, abs=0.0005 + 1e-9)
        assert reading.voltage_v == pytest.approx(5.123, abs=volt_scale / 2 + 1e-9)
        assert reading.current_a == pytest.approx(watts / 5.123, abs=amp_scale / 2 + 1e-9)
    assert emu.requests == [0xF0, 0xF0, 0xF0]  # probe in open(), then one per read


def test_um_resync_after_leading_garbage(clock, closing):
    emu = closing(UMEmulator("UM25C", clock=clock))
    meter = closing(UMMeter(emu.port, name="um25c", min_interval_s=0, timeout_s=1.0))
    meter.open()
    emu.garbage(b"\x00\x09\xc8\xff\xf1\x55")  # includes a near-miss of the UM25C id
    reading = meter.read()
    assert reading.power_w == pytest.approx(2.0) and meter.resync_bytes == 6
    assert meter.describe()["resync_bytes"] == 6


def test_um_bad_end_marker_is_protocol_error(clock, closing):
    emu = closing(UMEmulator("UM24C", clock=clock))
    meter = closing(UMMeter(emu.port, name="um24c", min_interval_s=0, timeout_s=1.0))
    meter.open()
    emu.garbage(build_um_frame("UM24C", 5.0, 0.4, end_marker=0xFFF0), replace=True)
    with pytest.raises(MeterProtocolError, match="expected 0xFFF1, received 0xFFF0"):
        meter.read()
    assert meter.read().valid  # next request is answered normally


def test_um34c_bad_checksum_on_the_wire(clock, closing):
    emu = closing(UMEmulator("UM34C", clock=clock))
    meter = closing(UMMeter(emu.port, name="um34c", min_interval_s=0, timeout_s=1.0))
    meter.open()
    good = build_um_frame("UM34C", 5.0, 0.4)
    emu.garbage(build_um_frame("UM34C", 5.0, 0.4, checksum=good[129] ^ 0xFF), replace=True)
    with pytest.raises(MeterProtocolError, match="checksum"):
        meter.read()


def test_um_wrong_model_is_protocol_error(clock, closing):
    emu = closing(UMEmulator("UM24C", clock=clock))
    meter = UMMeter(emu.port, name="um25c", min_interval_s=0, timeout_s=1.0)
    with pytest.raises(MeterProtocolError, match="expected a UM25C frame .* received a UM24C"):
        meter.open()


def test_um_short_frame_is_timeout(clock, closing):
    emu = closing(UMEmulator("UM25C", clock=clock))
    meter = closing(UMMeter(emu.port, name="um25c", min_interval_s=0, timeout_s=FAST))
    meter.open()
    emu.truncate_next()
    with pytest.raises(MeterTimeoutError, match="expected a 130-byte frame .* received 65 byte"):
        meter.read()


class _TimedSerial(serial.Serial):
    """A real pyserial port that notes ``time.monotonic()`` just before each write."""

    def __init__(self, *args, **kwargs):
        self.write_times = []
        super().__init__(*args, **kwargs)

    def write(self, data):
        self.write_times.append(time.monotonic())
        return super().write(data)


def test_um_min_interval_between_requests(clock, closing):
    emu = closing(UMEmulator("UM25C", clock=clock))
    port = closing(_TimedSerial(emu.port, 9600, timeout=1.0))
    meter = closing(UMMeter(port, name="um25c", min_interval_s=0.05, timeout_s=1.0))
    assert meter.update_interval_s == 0.05
    meter.open()
    meter.read()
    meter.read()
    gaps = [b - a for a, b in zip(port.write_times, port.write_times[1:])]
    assert len(gaps) == 2 and min(gaps) >= 0.05
    assert emu.requests == [0xF0] * 3


def test_um_loop_url_framing():
    """pyserial's loop:// echoes writes: pre-loaded frames are read back, and the echoed 0xF0
    requests and leading junk are skipped by the resync."""
    port = serial.serial_for_url("loop://", timeout=FAST)
    frame = build_um_frame("UM25C", 5.05, 0.5)
    port.write(b"\x13\x37" + frame + build_um_frame("UM25C", 5.0, 1.0))
    meter = UMMeter(port, name="um25c", min_interval_s=0, timeout_s=FAST)
    meter.open()
    assert meter.resync_bytes == 2 and meter.last_frame["volts"] == pytest.approx(5.05)
    reading = meter.read()  # behind frame 2 sits the echoed 0xF0 of open()
    assert (reading.voltage_v, reading.current_a, reading.power_w) == pytest.approx((5.0, 1.0, 5.0))
    with pytest.raises(MeterTimeoutError, match="received 1 byte.* after dropping 2"):
        meter.read()  # only the three echoed requests are left: no frame start
    meter.close()
    assert port.is_open
    port.close()


def test_open_meter_through_registry(clock, closing):
    assert registry()["um25c"] is UMMeter
    for name in ("wt310e", "wt332e", "wt333e", "um24c", "um25c", "um34c", "ina219", "ina226"):
        assert issubclass(meter_class(name), (WT300E, UMMeter, InaLogger))
    emu = closing(UMEmulator("UM25C", clock=clock))
    meter = closing(open_meter("um25c", emu.port, min_interval_s=0, timeout_s=1.0))
    assert isinstance(meter, UMMeter) and meter.name == "um25c" and meter.model == "UM25C"
    assert meter.read().power_w == pytest.approx(2.0)


# --------------------------------------------------------------------------------------------
# INA219 / INA226 logger


def test_ina_banner_then_stream_follows_profile(closing):
    profile = Profile(idle_w=1.7, load_w=4.3, step_at_s=0.05, volts=5.1)
    emu = closing(InaEmulator(profile=profile))
    meter = closing(InaLogger(emu.port, name="ina226", period_ms=1))
    meter.open()
    emu.wait_request("S1")  # S has no answer: wait until the emulator has seen it
    assert emu.requests == ["X", "?", "S1"]
    assert meter.banner == {"fields": "seq,t_us,bus_mV,shunt_uV,current_uA,power_uW"}
    assert meter.update_interval_s == 0.001
    readings = [meter.read() for _ in range(120)]
    assert [r.meter_seq for r in readings] == list(range(120)) and meter.dropped == 0
    times = [r.meter_time_s for r in readings]
    assert all(b - a == pytest.approx(0.001) for a, b in zip(times, times[1:]))
    phases = {"idle": 0, "load": 0}
    for r in readings:
        watts = profile.power(r.meter_time_s)
        phases["idle" if watts == 1.7 else "load"] += 1
        assert r.valid
        assert r.voltage_v == pytest.approx(5.1, abs=1.25e-3)  # INA226 bus LSB
        assert r.current_a == pytest.approx(watts / 5.1, abs=25e-6)  # 2.5 uV / 0.1 ohm
        assert r.power_w == pytest.approx(watts, rel=1e-3)
    assert phases["idle"] >= 10 and phases["load"] >= 10


def test_ina_banner_extra_tokens_and_boot_lines(closing):
    emu = closing(InaEmulator(banner=INA_BANNER + " chip=ina219 shunt_mohm=100"))
    emu.garbage(b"# booting\r\n")
    meter = closing(InaLogger(emu.port, name="ina219", period_ms=2))
    meter.open()
    assert meter.model == "ina219" and meter.banner["shunt_mohm"] == "100"
    assert meter.read().meter_seq == 0


@pytest.mark.parametrize("banner", ["#ina v2 fields=seq,t_us,bus_mV,shunt_uV,current_uA,power_uW",
                                    "#ina v1 fields=t_us,bus_mV,current_mA",
                                    "Bus Voltage: 5.00 V"])
def test_ina_wrong_banner_is_protocol_error(closing, banner):
    emu = closing(InaEmulator(banner=banner))
    meter = InaLogger(emu.port, name="ina226", timeout_s=1.0)
    with pytest.raises(MeterProtocolError, match="banner"):
        meter.open()
    assert "S20" not in emu.requests


def test_ina_seq_gap_counted_as_dropped(closing):
    emu = closing(InaEmulator())
    meter = closing(InaLogger(emu.port, name="ina226", period_ms=1))
    meter.open()
    first = meter.read()
    emu.drop_next(3)
    readings = [meter.read() for _ in range(20)]
    assert meter.dropped == 3 and meter.describe()["dropped"] == 3
    assert all(r.flags == () for r in readings)
    assert readings[-1].meter_seq - first.meter_seq == 23


def test_ina_malformed_line_is_protocol_error(closing):
    emu = closing(InaEmulator())
    meter = closing(InaLogger(emu.port, name="ina226", period_ms=1))
    meter.open()
    meter.read()
    emu.garbage(b"17,2000,5000,oops,400000,2000000\r\n")
    with pytest.raises(MeterProtocolError, match="17,2000,5000,oops"):
        for _ in range(1000):
            meter.read()


def test_parse_data_line():
    assert parse_data_line("5,1000,5000,-40,-400,2000") == (5, 1000, 5000, -40, -400, 2000)
    for bad in ("1,2,3", "1,2,3,4,5,6,7", "1,2,3.5,4,5,6", "-1,2,3,4,5,6", "a,b,c,d,e,f"):
        with pytest.raises(MeterProtocolError, match="six integers"):
            parse_data_line(bad)


class _ScriptedLines:
    """A minimal serial-like object (write, read_until, timeout) replaying canned lines."""

    def __init__(self, lines):
        self.lines = [line.encode() + b"\r\n" for line in lines]
        self.written = []
        self.timeout = None

    def write(self, data):
        self.written.append(data)
        return len(data)

    def read_until(self, terminator=b"\n"):
        return self.lines.pop(0) if self.lines else b""


def test_ina_seq_wrap_and_restart_on_a_serial_like_object():
    port = _ScriptedLines([INA_BANNER, "4294967294,10,5000,0,0,0", "4294967295,20,5000,0,0,0",
                           "1,40,5000,0,0,0", "0,50,5000,0,0,0"])
    meter = InaLogger(port, name="ina226", period_ms=5, timeout_s=0.5)
    meter.open()
    assert port.written == [b"X\n", b"?\n", b"S5\n"] and port.timeout == 0.5
    assert [meter.read().meter_seq for _ in range(3)] == [4294967294, 4294967295, 1]
    assert meter.dropped == 1  # seq 0 was lost across the wrap
    with pytest.raises(MeterProtocolError, match="went backwards"):
        meter.read()
    with pytest.raises(MeterTimeoutError, match="received 0 byte"):
        meter.read()
    meter.close()
    assert port.written[-1] == b"X\n"


def test_ina_seq_restart_fails_one_read_then_goes_on():
    port = _ScriptedLines([INA_BANNER, "7,4294967000,5000,0,0,0", "8,200,5000,0,0,0",
                           "0,50,5000,0,0,0", "1,60,5000,0,0,0", "3,80,5000,0,0,0"])
    meter = InaLogger(port, name="ina226", period_ms=5, timeout_s=0.5)
    meter.open()
    assert [meter.read().meter_time_s for _ in range(2)] == [4294.967, ((1 << 32) + 200) / 1e6]
    with pytest.raises(MeterProtocolError, match="expected seq 9, received 0"):
        meter.read()  # the device restarted: exactly this reading fails
    after = [meter.read() for _ in range(2)]
    assert [r.meter_seq for r in after] == [1, 3] and meter.dropped == 1
    assert [r.meter_time_s for r in after] == [60e-6, 80e-6]  # the new clock, not unwrapped


def test_ina_streams_so_the_sampler_reads_back_to_back():
    from host.power import Sampler

    assert InaLogger.read_blocks is True
    assert not Sampler(InaLogger("/dev/null", period_ms=5)).paced


def test_ina_device_clock_unwraps_32bit_micros(closing):
    emu = closing(InaEmulator(micros_offset=(1 << 32) - 15_000))  # wraps ~15 ms after start
    meter = closing(InaLogger(emu.port, name="ina226", period_ms=1))
    meter.open()
    times = [meter.read().meter_time_s for _ in range(40)]
    assert all(b - a == pytest.approx(0.001) for a, b in zip(times, times[1:]))
    assert times[-1] > (1 << 32) / 1e6


def test_ina_fixed_rate_sketch_and_close_sends_stop(closing):
    emu = closing(InaEmulator(rate_hz=500))
    meter = InaLogger(emu.port, name="ina226", period_ms=20)
    meter.open()
    a, b = meter.read(), meter.read()
    assert b.meter_time_s - a.meter_time_s == pytest.approx(0.002)  # device clock, not the request
    meter.close()
    emu.wait_request("X", count=2)
    assert emu.requests[-1] == "X"


# --------------------------------------------------------------------------------------------
# faults common to all drivers

DRIVERS = {
    "wt300e": (lambda clock: WT300EEmulator(clock=clock), WT300E, {"name": "wt310e"}),
    "um25c": (lambda clock: UMEmulator("UM25C", clock=clock), UMMeter,
              {"name": "um25c", "min_interval_s": 0}),
    "ina226": (lambda clock: InaEmulator(), InaLogger, {"name": "ina226", "period_ms": 1}),
}


@pytest.fixture(params=sorted(DRIVERS))
def rig(request, clock, closing):
    """(emulator, open driver) for each meter type."""
    make_emu, cls, kwargs = DRIVERS[request.param]
    emu = closing(make_emu(clock))
    meter = closing(cls(emu.port, timeout_s=FAST, **kwargs))
    meter.open()
    meter.read()
    return emu, meter


def test_unplug_mid_read_is_connection_error(rig):
    emu, meter = rig
    emu.unplug(next_reply=True)  # the master closes while the driver waits for the reply
    with pytest.raises(MeterConnectionError, match="went away"):
        for _ in range(1000):  # the INA stream may still have lines buffered
            meter.read()
    assert emu.wait_unplugged()


def test_unplugged_before_read_is_connection_error(rig):
    emu, meter = rig
    emu.unplug()
    with pytest.raises(MeterConnectionError):
        for _ in range(1000):
            meter.read()
    meter.close()  # closing a dead port does not raise


def test_stop_answering_is_timeout(rig):
    emu, meter = rig
    emu.stop_answering()
    start = time.monotonic()
    with pytest.raises(MeterTimeoutError, match="expected"):
        for _ in range(1000):
            meter.read()
    assert time.monotonic() - start < 5 * FAST


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_injected_serial_port_is_used_and_not_closed(kind, clock, closing):
    make_emu, cls, kwargs = DRIVERS[kind]
    emu = closing(make_emu(clock))
    port = closing(serial.Serial(emu.port, 9600, timeout=1.0))
    meter = cls(port, timeout_s=1.0, **kwargs)
    meter.open()
    assert meter.read().power_w == pytest.approx(2.0, rel=1e-3)
    meter.close()
    assert port.is_open
    assert meter.describe()["port"] == emu.port


@pytest.mark.parametrize("cls", [WT300E, UMMeter, InaLogger])
def test_open_failure_names_the_port(cls, tmp_path):
    missing = str(tmp_path / "ttyNOPE")
    with pytest.raises(MeterConnectionError, match="ttyNOPE"):
        cls(missing, timeout_s=FAST).open()
    with pytest.raises(MeterConnectionError, match="no port"):
        cls(None).open()
    with pytest.raises(MeterError, match="option"):
        cls(missing, colour="red")
