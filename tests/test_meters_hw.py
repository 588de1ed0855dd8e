"""Real power meters (opt-in: `pytest -m meter_hw --meter-port PORT --meter NAME`).

Wiring:
* UM24C/UM25C/UM34C: pair over Bluetooth (PIN 1234), `rfcomm bind 0 <MAC>`, port
  `/dev/rfcomm0`; the board's USB supply goes through the meter.
* INA219/INA226: the microcontroller running the line-protocol sketch (host/power/meters/ina.py)
  on USB (`/dev/ttyACM0`); shunt in the board's DC input, bus voltage on the load side.
* WT310E/WT332E/WT333E: RS-232 null-modem or USB-serial adapter (9600 8N1); the board's
  PSU plugged into the meter's input element 1.
"""

import time

import pytest

from host.power import Sampler
from host.power.meters import open_meter

pytestmark = pytest.mark.meter_hw


@pytest.fixture
def meter(request):
    m = open_meter(request.config.getoption("--meter"), request.config.getoption("--meter-port"))
    yield m
    m.close()


def test_a_real_meter_gives_plausible_readings(meter):
    reading = meter.read()
    assert reading.valid, reading
    assert 0.0 < reading.power_w < 3000.0
    if reading.voltage_v is not None and reading.current_a is not None:
        assert reading.power_w == pytest.approx(reading.voltage_v * reading.current_a, rel=0.2, abs=0.05)


def test_a_real_meter_samples_at_its_update_rate(meter):
    sampler = Sampler(meter)
    sampler.start()
    time.sleep(max(3.0, 10 * meter.update_interval_s))
    samples = sampler.stop()
    assert not sampler.errors and sampler.fatal_error is None
    assert len(samples) >= 3
