"""On-board power sources: Jetson INA3221 sysfs (fake trees), tegrastats lines, Raspberry Pi 5
``vcgencmd pmic_read_adc`` (a fake vcgencmd on PATH). docs/power.md §5, §6; docs/testing.md §5."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from host.errors import MeterConnectionError, MeterProtocolError
from host.power.meters import open_meter
from host.power.meters.jetson import JetsonRails, parse_tegrastats
from host.power.meters.rpi5 import Rpi5Pmic

FIXTURES = Path(__file__).parent / "fixtures" / "onboard"

HWMON = "sys/bus/i2c/drivers/ina3221"
IIO = "sys/bus/i2c/drivers/ina3221x"


# -- helpers ------------------------------------------------------------------------------


def write_tree(root: Path, files: dict) -> Path:
    """Write ``{relative path: contents}`` under ``root`` (sysfs files end in a newline)."""
    for rel, value in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
    return root


def hwmon_dir(base: str, device: str, hwmon: str, channels: dict, **extra) -> dict:
    """Files of one ina3221 hwmon node: ``channels`` = {N: (label, mV, mA)}, in7 = the sum."""
    d = f"{base}/{device}/hwmon/{hwmon}"
    files = {f"{d}/name": "ina3221"}
    for n, (label, mv, ma) in channels.items():
        files.update({f"{d}/in{n}_label": label, f"{d}/in{n}_input": mv, f"{d}/curr{n}_input": ma,
                      f"{d}/in{n + 3}_input": 2, f"{d}/curr{n}_crit": 32760})
    files.update({f"{d}/in7_label": "sum of shunt voltages", f"{d}/in7_input": 12, f"{d}/curr4_input": 9})
    files.update({f"{d}/{k}": v for k, v in extra.items()})
    return files


def orin_nano_jp6(root: Path) -> Path:
    """Orin Nano, JetPack 6: one device 1-0040, in1 = VDD_IN (5080 mV, 1234 mA)."""
    files = hwmon_dir(HWMON, "1-0040", "hwmon3", {
        1: ("VDD_IN", 5080, 1234),
        2: ("VDD_CPU_GPU_CV", 5072, 96),
        3: ("VDD_SOC", 5064, 285),
    }, update_interval=20, samples=512)
    write_tree(root, files)
    # /sys/bus/i2c/devices/1-0040 is a link to the same device: the driver layout wins.
    devices = root / "sys/bus/i2c/devices"
    devices.mkdir(parents=True, exist_ok=True)
    (devices / "1-0040").symlink_to(root / HWMON / "1-0040")
    return root


def agx_orin(root: Path) -> Path:
    """AGX Orin: 1-0040 and 1-0041, NC channels, no VDD_IN."""
    files = hwmon_dir(HWMON, "1-0040", "hwmon1", {
        1: ("VDD_GPU_SOC", 5016, 478),
        2: ("VDD_CPU_CV", 5016, 80),
        3: ("VIN_SYS_5V0", 4992, 485),
    }, update_interval=5)
    files.update(hwmon_dir(HWMON, "1-0041", "hwmon2", {
        1: ("NC", 5000, 7),
        2: ("VDDQ_VDD2_1V8AO", 4996, 60),
        3: ("NC", 4990, 3),
    }, update_interval=5))
    return write_tree(root, files)


def xavier_jp4(root: Path) -> Path:
    """AGX Xavier, JetPack 4: ina3221x iio, rails GPU/CPU/SOC on 1-0040, CV/VDDRQ/SYS5V on 1-0041."""
    files = {}
    for device, iio, rails in (("1-0040", "iio:device0", (("GPU", 155), ("CPU", 311), ("SOC", 1245))),
                               ("1-0041", "iio:device1", (("CV", 0), ("VDDRQ", 155), ("SYS5V", 1749)))):
        d = f"{IIO}/{device}/{iio}"
        for n, (name, mw) in enumerate(rails):
            files.update({f"{d}/rail_name_{n}": name, f"{d}/in_power{n}_input": mw,
                          f"{d}/in_voltage{n}_input": 5000 + n, f"{d}/in_current{n}_input": mw // 5})
    return write_tree(root, files)


def nano_jp4(root: Path) -> Path:
    """Jetson Nano, JetPack 4: ina3221x 6-0040, POM_5V_IN = module input."""
    d = f"{IIO}/6-0040/iio:device0"
    files = {}
    for n, (name, mw, mv, ma) in enumerate((("POM_5V_IN", 2403, 5008, 480), ("POM_5V_GPU", 0, 5016, 0),
                                            ("POM_5V_CPU", 490, 5000, 98))):
        files.update({f"{d}/rail_name_{n}": name, f"{d}/in_power{n}_input": mw,
                      f"{d}/in_voltage{n}_input": mv, f"{d}/in_current{n}_input": ma})
    return write_tree(root, files)


def xavier_nx_jp5(root: Path) -> Path:
    """Xavier NX, JetPack 5: hwmon under /sys/bus/i2c/devices/7-0040."""
    return write_tree(root, hwmon_dir("sys/bus/i2c/devices", "7-0040", "hwmon5", {
        1: ("VDD_IN", 5000, 800),
        2: ("VDD_CPU_GPU_CV", 5000, 100),
        3: ("VDD_SOC", 5000, 250),
    }))


class FakeRun:
    """``run(command) -> stdout`` executing locally with /bin/sh, counting calls."""

    def __init__(self):
        self.commands = []

    def __call__(self, command: str) -> str:
        self.commands.append(command)
        return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=30).stdout


def make_meter(mode: str, root: Path) -> JetsonRails:
    return JetsonRails(name="jetson-ina3221", root=str(root), run=FakeRun() if mode == "run" else None)


MODES = ("local", "run")


# -- Jetson sysfs ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_orin_nano_jp6_reads_vdd_in_as_module_power(tmp_path, mode):
    meter = make_meter(mode, orin_nano_jp6(tmp_path / "my sysfs"))
    meter.open()
    assert meter.layout == "jp5-hwmon"
    assert meter.rails == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    assert meter.measured == "VDD_IN" and meter.scope == "module"
    assert meter.update_interval_s == 0.02
    r = meter.read()
    assert r.power_w == 6.26872  # 5080 mV × 1234 mA
    assert (r.voltage_v, r.current_a) == (5.08, 1.234)
    assert r.rails == {"VDD_IN": 6.26872, "VDD_CPU_GPU_CV": 0.486912, "VDD_SOC": 1.44324}
    assert r.valid
    d = meter.describe()
    assert d["scope"] == "module" and d["layout"] == "jp5-hwmon" and d["update_interval_s"] == 0.02
    assert d["rails"] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"] and d["port"] is None
    meter.close()


@pytest.mark.parametrize("mode", MODES)
def test_agx_orin_sums_rails_and_skips_nc(tmp_path, mode):
    meter = make_meter(mode, agx_orin(tmp_path))
    meter.open()
    assert meter.layout == "jp5-hwmon" and meter.scope == "rails" and meter.measured is None
    assert meter.rails == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]
    assert meter.devices == ["1-0040", "1-0041"]
    r = meter.read()
    assert r.power_w == 5.519808  # (5016×478 + 5016×80 + 4992×485 + 4996×60) µW
    assert r.voltage_v is None and r.current_a is None
    assert r.rails == {"VDD_GPU_SOC": 2.397648, "VDD_CPU_CV": 0.40128, "VIN_SYS_5V0": 2.42112,
                       "VDDQ_VDD2_1V8AO": 0.29976}
    assert meter.describe()["scope"] == "rails"
    assert meter.update_interval_s == 0.005


@pytest.mark.parametrize("mode", MODES)
def test_xavier_jp4_iio_total_is_sum_of_rail_powers(tmp_path, mode):
    meter = make_meter(mode, xavier_jp4(tmp_path))
    meter.open()
    assert meter.layout == "jp4-iio" and meter.scope == "rails"
    assert meter.rails == ["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"]
    assert meter.update_interval_s == 0.1
    r = meter.read()
    assert r.power_w == 3.615  # 155 + 311 + 1245 + 0 + 155 + 1749 mW
    assert r.rails["SYS5V"] == 1.749 and meter.describe()["scope"] == "rails"
    assert r.voltage_v is None


@pytest.mark.parametrize("mode", MODES)
def test_nano_jp4_pom_5v_in_is_module_input(tmp_path, mode):
    meter = make_meter(mode, nano_jp4(tmp_path))
    meter.open()
    assert meter.layout == "jp4-iio" and meter.measured == "POM_5V_IN" and meter.scope == "module"
    r = meter.read()
    assert (r.power_w, r.voltage_v, r.current_a) == (2.403, 5.008, 0.48)
    assert r.rails == {"POM_5V_IN": 2.403, "POM_5V_GPU": 0.0, "POM_5V_CPU": 0.49}


@pytest.mark.parametrize("mode", MODES)
def test_xavier_jp5_devices_hwmon_layout(tmp_path, mode):
    meter = make_meter(mode, xavier_nx_jp5(tmp_path))
    meter.open()
    assert meter.layout == "jp5-xavier-hwmon" and meter.scope == "module"
    assert meter.devices == ["7-0040"]
    assert meter.read().power_w == 4.0


@pytest.mark.parametrize("mode", MODES)
def test_nothing_found_is_a_connection_error_listing_paths(tmp_path, mode):
    (tmp_path / "sys/bus/i2c/devices").mkdir(parents=True)
    meter = make_meter(mode, tmp_path)
    with pytest.raises(MeterConnectionError) as exc:
        meter.open()
    msg = str(exc.value)
    for part in ("drivers/ina3221/*-004*/hwmon/hwmon*/in*_label", "devices/*-004*/hwmon/hwmon*/in*_label",
                 "drivers/ina3221x/*-004*/iio:device*/rail_name_*"):
        assert f"{tmp_path}/sys/bus/i2c/{part}" in msg


def test_only_nc_channels_is_a_connection_error(tmp_path):
    write_tree(tmp_path, hwmon_dir(HWMON, "1-0041", "hwmon2", {1: ("NC", 5000, 7), 3: ("NC", 4990, 3)}))
    with pytest.raises(MeterConnectionError):
        JetsonRails(root=str(tmp_path)).open()


@pytest.mark.parametrize("mode", MODES)
def test_values_changed_between_reads_are_reflected(tmp_path, mode):
    root = orin_nano_jp6(tmp_path)
    meter = make_meter(mode, root)
    meter.open()
    assert meter.read().power_w == 6.26872
    d = root / HWMON / "1-0040/hwmon/hwmon3"
    (d / "in1_input").write_text("5000\n")
    (d / "curr1_input").write_text("2000\n")
    (d / "curr3_input").write_text("300\n")
    r = meter.read()
    assert r.power_w == 10.0 and (r.voltage_v, r.current_a) == (5.0, 2.0)
    assert r.rails["VDD_SOC"] == 1.5192


@pytest.mark.parametrize("mode", MODES)
def test_garbage_in_a_file_is_a_protocol_error(tmp_path, mode):
    root = orin_nano_jp6(tmp_path)
    meter = make_meter(mode, root)
    meter.open()
    meter.read()
    bad = root / HWMON / "1-0040/hwmon/hwmon3/curr2_input"
    bad.write_text("garbage\n")
    with pytest.raises(MeterProtocolError) as exc:
        meter.read()
    assert str(bad) in str(exc.value) and "'garbage'" in str(exc.value)


@pytest.mark.parametrize("mode", MODES)
def test_a_file_that_disappears_is_a_protocol_error(tmp_path, mode):
    root = agx_orin(tmp_path)
    meter = make_meter(mode, root)
    meter.open()
    gone = root / HWMON / "1-0041/hwmon/hwmon2/in2_input"
    gone.unlink()
    with pytest.raises(MeterProtocolError) as exc:
        meter.read()
    assert str(gone) in str(exc.value)


def test_run_gets_one_command_for_open_and_one_per_read(tmp_path):
    run = FakeRun()
    meter = JetsonRails(name="jetson-ina3221", root=str(tmp_path / "a b"), run=run)
    agx_orin(tmp_path / "a b")
    meter.open()
    assert len(run.commands) == 1
    for i in range(3):
        meter.read()
        assert len(run.commands) == 2 + i
    assert all(str(tmp_path) in c for c in run.commands)


def test_run_in_production_form_uses_absolute_sysfs_paths():
    run = FakeRun()
    meter = JetsonRails(run=lambda cmd: run(cmd) and "")  # records the command, finds nothing
    with pytest.raises(MeterConnectionError):
        meter.open()
    assert " /sys/bus/i2c/drivers/ina3221/*-004*/hwmon/hwmon*/in*_label " in run.commands[0]


def test_read_before_open_is_a_connection_error(tmp_path):
    with pytest.raises(MeterConnectionError):
        JetsonRails(root=str(tmp_path)).read()


def test_registry_opens_jetson_on_a_fake_root(tmp_path):
    tree = orin_nano_jp6(tmp_path)
    meter = open_meter("jetson-ina3221", None, root=tree)
    assert isinstance(meter, JetsonRails) and meter.name == "jetson-ina3221"
    assert meter.read().power_w == 6.26872
    assert meter.describe()["meter"] == "jetson-ina3221"


# -- tegrastats --------------------------------------------------------------------------

TEGRASTATS = {
    "tegrastats_agx_xavier_jp4.txt": {"GPU": 0.155, "CPU": 0.311, "SOC": 1.245, "CV": 0.0, "VDDRQ": 0.155,
                                      "SYS5V": 1.749},
    "tegrastats_nano_jp4.txt": {"POM_5V_IN": 2.403, "POM_5V_GPU": 0.0, "POM_5V_CPU": 0.49},
    "tegrastats_orin_nano_jp6.txt": {"VDD_IN": 5.52, "VDD_CPU_GPU_CV": 0.481, "VDD_SOC": 1.443},
    "tegrastats_agx_orin_jp5.txt": {"VDD_GPU_SOC": 2.399, "VDD_CPU_CV": 0.399, "VIN_SYS_5V0": 2.421,
                                    "VDDQ_VDD2_1V8AO": 0.302},
    "tegrastats_agx_thor_jp7.txt": {"VDD_GPU": 3.588, "VDD_CPU_SOC_MSS": 6.571, "VIN_SYS_5V0": 4.242},
}


@pytest.mark.parametrize("fixture", sorted(TEGRASTATS))
def test_tegrastats_first_line(fixture):
    lines = (FIXTURES / fixture).read_text().splitlines()
    assert parse_tegrastats(lines[0]) == TEGRASTATS[fixture]
    for line in lines:  # every line of a capture has the same rails
        assert parse_tegrastats(line).keys() == TEGRASTATS[fixture].keys()


def test_tegrastats_uses_the_instantaneous_value():
    lines = (FIXTURES / "tegrastats_orin_nano_jp6.txt").read_text().splitlines()
    assert parse_tegrastats(lines[1]) == {"VDD_IN": 9.876, "VDD_CPU_GPU_CV": 3.921, "VDD_SOC": 1.804}
    old = (FIXTURES / "tegrastats_agx_xavier_jp4.txt").read_text().splitlines()[1]
    assert parse_tegrastats(old)["GPU"] == 6.84


def test_tegrastats_ignores_memory_and_other_fields():
    line = "RAM 2448/7772MB (lfb 1x4MB) SWAP 0/3886MB IRAM 0/252kB(lfb 252kB) EMC_FREQ 0%@1600 APE 25"
    assert parse_tegrastats(line) == {}
    assert parse_tegrastats("VDD_IN 5520mW/5400mW NC 0mW/0mW") == {"VDD_IN": 5.52}


# -- Raspberry Pi 5 ----------------------------------------------------------------------

PI5_RAILS = {  # rail: (V, A) from pmic_read_adc_pi5.txt; EXT5V_V and BATT_V have no current
    "3V7_WL_SW": (3.72207200, 0.00390372), "3V3_SYS": (3.30402400, 0.05172000),
    "1V8_SYS": (1.79963000, 0.16104600), "DDR_VDD2": (1.11146500, 0.02049600),
    "DDR_VDDQ": (0.60439500, 0.00000000), "1V1_SYS": (1.10454100, 0.18932700),
    "0V8_SYS": (0.80024200, 0.32841500), "VDD_CORE": (0.72249600, 0.71760000),
    "3V3_DAC": (3.30402400, 0.00048840), "3V3_ADC": (3.30402400, 0.00048840),
    "0V8_AON": (0.80024200, 0.00439560), "HDMI": (5.14917600, 0.02193000),
}


@pytest.fixture
def fake_vcgencmd(tmp_path, monkeypatch):
    """A ``vcgencmd`` first on PATH that prints ``answer.txt`` and exits with ``rc``.
    Returns ``set(fixture_name, rc=0)``."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "vcgencmd"
    script.write_text('#!/bin/sh\n[ "$1" = pmic_read_adc ] || exit 2\n'
                      f'cat "{bindir}/answer.txt"\nexit "$(cat "{bindir}/rc")"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")

    def set_answer(fixture: str, rc: int = 0):
        (bindir / "answer.txt").write_text((FIXTURES / fixture).read_text())
        (bindir / "rc").write_text(f"{rc}\n")

    set_answer("pmic_read_adc_pi5.txt")
    return set_answer


@pytest.mark.parametrize("mode", MODES)
def test_pi5_sums_paired_rails(fake_vcgencmd, mode):
    run = FakeRun() if mode == "run" else None
    meter = Rpi5Pmic(name="rpi5-pmic", run=run)
    meter.open()
    r = meter.read()
    expected = sum(v * a for v, a in PI5_RAILS.values())
    assert r.power_w == pytest.approx(expected, rel=1e-15, abs=0)
    assert round(r.power_w, 9) == 1.608078232
    assert r.voltage_v == 5.14831 and r.current_a is None
    assert r.rails["VDD_CORE"] == 0.722496 * 0.7176
    assert set(r.rails) == set(PI5_RAILS)
    d = meter.describe()
    assert d["scope"] == "rails" and d["update_interval_s"] == 0.1 and d["unpaired"] == ["BATT_V"]
    assert "EXT5V" not in d["rails"]
    if run is not None:
        assert len(run.commands) == 2  # open + one read


def test_pi5_unpaired_current_rail_is_ignored_but_listed(fake_vcgencmd):
    fake_vcgencmd("pmic_read_adc_unpaired.txt")
    meter = open_meter("rpi5-pmic")
    r = meter.read()
    assert r.power_w == 0.75 * 2.0 + 3.3 * 0.5  # RTC_BAT_A (no _V) and EXT5V_V left out
    assert r.voltage_v == 5.1
    assert "RTC_BAT" not in r.rails
    assert meter.unpaired == ["RTC_BAT_A", "BATT_V"]
    assert meter.describe()["unpaired"] == ["RTC_BAT_A", "BATT_V"]


@pytest.mark.parametrize("rc", [0, 255])
def test_pi5_command_not_registered_is_a_connection_error(fake_vcgencmd, rc):
    fake_vcgencmd("pmic_read_adc_not_registered.txt", rc=rc)
    with pytest.raises(MeterConnectionError, match="no PMIC on this board"):
        open_meter("rpi5-pmic")


def test_pi5_nan_is_a_protocol_error(fake_vcgencmd):
    meter = Rpi5Pmic()
    meter.open()
    fake_vcgencmd("pmic_read_adc_nan.txt")
    with pytest.raises(MeterProtocolError, match="nanV"):
        meter.read()


def test_pi5_garbage_number_is_a_protocol_error(fake_vcgencmd, tmp_path):
    meter = Rpi5Pmic()
    meter.open()
    (tmp_path / "bin/answer.txt").write_text("  VDD_CORE_A current(7)=0.7x1A\n  VDD_CORE_V volt(15)=0.72V\n")
    with pytest.raises(MeterProtocolError, match="VDD_CORE_A"):
        meter.read()


@pytest.mark.parametrize("mode", MODES)
def test_pi5_missing_vcgencmd_is_a_connection_error(tmp_path, monkeypatch, mode):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    meter = Rpi5Pmic(run=FakeRun() if mode == "run" else None)
    with pytest.raises(MeterConnectionError, match="not found"):
        meter.open()


def test_pi5_vcgencmd_option_names_the_executable(fake_vcgencmd, tmp_path):
    with pytest.raises(MeterConnectionError, match="not found"):
        Rpi5Pmic(vcgencmd=str(tmp_path / "no-such-vcgencmd")).open()
    meter = Rpi5Pmic(vcgencmd=str(tmp_path / "bin" / "vcgencmd"))
    meter.open()
    assert meter.read().voltage_v == 5.14831
