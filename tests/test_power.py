"""host.power: integration, idle baseline, adequacy verdict, the sampler thread, clock
alignment and CSV, on known profiles (docs/power.md §8)."""

import random
import threading
import time

import pytest

from host import power
from host.errors import MeterConnectionError, MeterTimeoutError
from host.power import ClockOffset, Sample, Sampler
from host.power.meters.base import Meter, Reading

S = 1_000_000_000  # ns per s
MS = 1_000_000  # ns per ms
T0 = 7_000_000_000_000  # an arbitrary host monotonic origin, ns


def samples_from(profile, t_from_s, t_to_s, step_s, *, t0_ns=T0, phase=""):
    """Samples of ``profile(t_s)`` every ``step_s`` on [t_from_s, t_to_s], at T0 + t."""
    out = []
    n = int(round((t_to_s - t_from_s) / step_s))
    for i in range(n + 1):
        t_ns = t0_ns + int(round((t_from_s + i * step_s) * S))
        t = (t_ns - t0_ns) / S
        out.append(Sample(t_mono_ns=t_ns, t_wall_ns=t_ns + 10 ** 18, power_w=profile(t), meter_seq=i,
                          phase=phase))
    return out


def at(t_s):
    return T0 + int(round(t_s * S))


def step(idle_w, load_w, start_s, end_s):
    return lambda t: load_w if start_s <= t < end_s else idle_w


class FakeMeter(Meter):
    """Readings of P(t) (t = seconds since creation) every call; ``script`` maps a call index to
    an exception to raise or a number of seconds to block first. ``tick`` makes ``read()`` block
    until the next multiple of ``update_interval_s`` (a streaming meter)."""

    scope = "board-input"

    def __init__(self, profile=lambda t: 2.0, update_interval_s=0.01, *, read_s=0.0, script=None,
                 tick=False):
        self.profile = profile
        self.update_interval_s = update_interval_s
        self.read_blocks = tick
        self.read_s = read_s
        self.script = dict(script or {})
        self.calls = 0
        self.t0 = time.monotonic()

    def read(self):
        i = self.calls
        self.calls += 1
        action = self.script.get(i)
        if isinstance(action, BaseException):
            raise action
        if action is not None:
            time.sleep(action)
        self.tick_wait()
        if self.read_s:
            time.sleep(self.read_s)
        t = time.monotonic() - self.t0
        p = self.profile(t)
        return Reading(power_w=p, voltage_v=5.0, current_a=p / 5.0, meter_seq=i, meter_time_s=t)

    def tick_wait(self):
        if self.read_blocks:
            dt = self.update_interval_s
            now = time.monotonic() - self.t0
            time.sleep((int(now / dt) + 1) * dt - now)

    def describe(self):
        return {"meter": "fake", "update_interval_s": self.update_interval_s}


def wait_until(cond, timeout_s=2.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


# --------------------------------------------------------------------------- integration


def test_step_profile_energy_mean_peak_dynamic_per_inference():
    # idle 2 W, load 5 W for exactly 3 s from t = 1.0037 s; samples every 10 ms from 0 to 5 s
    # (no sample on an edge). 300 inferences.
    ls, le = 1.0037, 4.0037
    samples = samples_from(step(2.0, 5.0, ls, le), 0.0, 5.0, 0.01)
    r = power.load_window_stats(samples, at(ls), at(le), iterations=300, power_w_idle=2.0,
                                idle_std_w=0.01, update_interval_s=0.01)
    rel = 0.005
    assert r["window_s"] == pytest.approx(3.0)
    assert r["energy_j_load"] == pytest.approx(15.0, rel=rel)
    assert r["power_w_mean"] == pytest.approx(5.0, rel=rel)
    assert r["power_w_peak"] == 5.0
    assert r["power_w_peak_1s"] == pytest.approx(5.0, rel=rel)
    assert r["power_w_p95"] == 5.0
    assert r["power_w_dynamic_peak"] == pytest.approx(3.0, rel=rel)
    assert r["power_w_dynamic_mean"] == pytest.approx(3.0, rel=rel)
    assert r["energy_j_dynamic"] == pytest.approx(9.0, rel=rel)
    assert r["energy_mj_per_inference"] == pytest.approx(50.0, rel=rel)
    assert r["energy_mj_per_inference_dynamic"] == pytest.approx(30.0, rel=rel)
    assert r["throughput_cps"] == pytest.approx(100.0)
    assert r["throughput_per_watt"] == pytest.approx(100.0 / 5.0)
    assert r["throughput_per_watt_mean"] == pytest.approx(100.0 / r["power_w_mean"])
    assert r["samples_in_window"] == 300
    assert r["verdict"]["result"] == "VALID", r["verdict"]
    assert r["verdict"]["warnings"] == []


def test_edges_are_interpolated_from_samples_outside_the_window():
    # P = 2 + t W sampled once a second; window [2.5, 7.5] s. The trapezoid of a linear
    # profile is exact when the edge values are interpolated: E = 5 * 2 + (7.5² - 2.5²) / 2.
    samples = samples_from(lambda t: 2.0 + t, 0.0, 10.0, 1.0)
    r = power.load_window_stats(samples, at(2.5), at(7.5), iterations=10, power_w_idle=2.0,
                                min_samples=1)
    assert r["energy_j_load"] == pytest.approx(35.0, rel=1e-9)
    assert r["power_w_mean"] == pytest.approx(7.0, rel=1e-9)
    # Using only the samples inside (3..7 s) would give 28 J over 4 s: 20 % low.
    assert r["samples_in_window"] == 5
    assert r["power_w_peak"] == 9.0  # the raw max is a sample, not an interpolated edge
    assert r["verdict"]["checks"]["edges_covered"] is True


def test_edge_without_a_sample_beyond_it_is_held_and_flagged():
    samples = samples_from(lambda t: 4.0, 0.5, 3.0, 0.01)  # sampler started 0.5 s late
    r = power.load_window_stats(samples, at(0.0), at(3.0), iterations=10, power_w_idle=2.0,
                                update_interval_s=0.01)
    assert r["power_w_mean"] == pytest.approx(4.0)  # held constant over the uncovered 0.5 s
    assert r["verdict"]["result"] == "INVALID"
    assert r["verdict"]["checks"]["edges_covered"] is False
    assert any("do not cover" in m for m in r["verdict"]["reasons"])


def test_peak_1s_is_the_max_of_a_moving_average_and_finds_interior_maxima():
    # A triangle 0 -> 10 -> 0 W over 2 s sampled at 0, 1, 2 s: the 1 s average peaks at
    # τ = 1.5 s (between knots) with ∫_0.5^1.5 P = 7.5 J.
    samples = samples_from(lambda t: 10.0 - 10.0 * abs(t - 1.0), 0.0, 2.0, 1.0)
    r = power.load_window_stats(samples, at(0.0), at(2.0), iterations=1, power_w_idle=0.0,
                                min_samples=1)
    assert r["power_w_peak_1s"] == pytest.approx(7.5, rel=1e-12)
    assert r["power_w_peak"] == 10.0
    # A 0.5 s burst of 10 W on 2 W: raw peak 10 W, 1 s peak (0.5·10 + 0.5·2) / 1 = 6 W.
    samples = samples_from(step(2.0, 10.0, 2.0, 2.5), 0.0, 5.0, 0.01)
    r = power.load_window_stats(samples, at(0.0), at(5.0), iterations=1, power_w_idle=2.0)
    assert r["power_w_peak"] == 10.0
    assert r["power_w_peak_1s"] == pytest.approx(6.0, rel=0.01)
    # Windows shorter than 1 s have no 1 s peak.
    r = power.load_window_stats(samples, at(2.0), at(2.4), iterations=1, power_w_idle=2.0)
    assert r["power_w_peak_1s"] is None


def test_p95_over_samples_in_the_window():
    samples = samples_from(lambda t: 2.0 + round(t * 100) % 100 / 10.0, 0.0, 0.99, 0.01)
    r = power.load_window_stats(samples, at(0.0), at(0.99), iterations=1, power_w_idle=1.0)
    # values 2.0 .. 11.9 in steps of 0.1: p95 (type 7) = 2 + 0.95 * 9.9
    assert r["power_w_p95"] == pytest.approx(2.0 + 0.95 * 9.9)


# --------------------------------------------------------------------------- idle


def test_idle_median_ignores_a_spike_and_stable_flag():
    noise = [2.0 + (0.005 if i % 2 else -0.005) for i in range(100)]
    base = samples_from(lambda t: noise[int(round(t * 100)) % 100], 0.0, 0.99, 0.01)
    res = power.idle_from_samples(base, at(0.0), at(0.99))
    assert res.n_samples == 100
    assert res.power_w_idle == pytest.approx(2.0)
    assert res.stable and res.rel_std < 0.02
    assert res.noise_w == pytest.approx(3 * res.power_w_std)
    spiked = list(base)
    spiked[50] = Sample(t_mono_ns=spiked[50].t_mono_ns, t_wall_ns=0, power_w=12.0)
    res = power.idle_from_samples(spiked, at(0.0), at(0.99))
    assert res.power_w_idle == pytest.approx(2.0, abs=0.006)  # the median does not move
    assert res.power_w_mean > 2.09  # the mean does
    assert not res.stable
    assert any("not stable" in w for w in res.warnings)
    d = res.to_dict()
    assert "samples" not in d and d["window_s"] == pytest.approx(0.99)


def test_idle_window_bounds_and_invalid_samples():
    samples = samples_from(lambda t: 9.0 if t < 1.0 else 2.0, 0.0, 2.0, 0.1)  # settle at 9 W
    samples.append(Sample(t_mono_ns=at(1.55), t_wall_ns=0, power_w=None, error="MeterTimeoutError: x"))
    samples.sort(key=lambda s: s.t_mono_ns)
    res = power.idle_from_samples(samples, at(1.0), at(2.0))
    assert res.power_w_idle == 2.0 and res.n_samples == 11 and res.n_invalid == 1
    assert any("< 30" in w for w in res.warnings)
    with pytest.raises(ValueError):
        power.idle_from_samples(samples, at(2.0), at(1.0))


# --------------------------------------------------------------------------- adequacy


def _load(min_s=0.0, max_s=4.0, load_w=5.0, step_s=0.01):
    return samples_from(step(2.0, load_w, 1.0, 4.0), min_s, max_s + 1.0, step_s)


def _stats(samples, **kw):
    args = dict(iterations=300, power_w_idle=2.0, idle_std_w=0.01, update_interval_s=0.01)
    args.update(kw)
    return power.load_window_stats(samples, at(1.0), at(4.0), **args)


def _replace(samples, t_s, **fields):
    i = min(range(len(samples)), key=lambda k: abs(samples[k].t_mono_ns - at(t_s)))
    old = samples[i]
    samples[i] = Sample(t_mono_ns=old.t_mono_ns, t_wall_ns=old.t_wall_ns,
                        **{"power_w": None, **fields})
    return samples


def test_too_few_samples_is_invalid():
    r = _stats(_load(step_s=0.2), min_samples=20, update_interval_s=0.2)
    assert r["verdict"]["result"] == "INVALID"
    assert r["verdict"]["checks"]["min_samples_met"] is False
    assert any("too few valid samples" in m and "< 20" in m for m in r["verdict"]["reasons"])


@pytest.mark.parametrize("flag", ["over_range", "invalid"])
def test_flagged_reading_in_the_window_is_invalid(flag):
    r = _stats(_replace(_load(), 2.0, flags=(flag,)))
    assert r["verdict"]["result"] == "INVALID"
    assert r["verdict"]["checks"]["no_invalid_readings"] is False
    assert any(flag in m for m in r["verdict"]["reasons"])
    assert r["samples_invalid_in_window"] == 1


def test_sampler_error_in_the_window_is_invalid_outside_it_is_not():
    r = _stats(_replace(_load(), 2.5, error="MeterTimeoutError: no line in 0.2 s"))
    assert r["verdict"]["result"] == "INVALID"
    assert r["verdict"]["checks"]["no_meter_errors"] is False
    assert any("MeterTimeoutError" in m for m in r["verdict"]["reasons"])
    r = _stats(_replace(_load(), 0.5, error="MeterTimeoutError: no line in 0.2 s"))
    assert r["verdict"]["result"] == "VALID", r["verdict"]


def test_alignment_uncertainty_limit():
    assert _stats(_load(), alignment_uncertainty_ms=100.0)["verdict"]["result"] == "VALID"
    r = _stats(_load(), alignment_uncertainty_ms=200.0)  # 5 % of 3 s is 150 ms
    assert r["verdict"]["result"] == "INVALID"
    assert r["verdict"]["checks"]["alignment_within_limit"] is False
    assert any("alignment uncertainty 200 ms" in m for m in r["verdict"]["reasons"])
    assert r["alignment_uncertainty_ms"] == 200.0


def test_load_indistinguishable_from_idle_is_invalid():
    for load_w in (2.0, 2.02):  # noise margin 3 x 0.01 W
        r = _stats(_load(load_w=load_w))
        assert r["verdict"]["result"] == "INVALID", load_w
        assert r["verdict"]["checks"]["load_above_idle"] is False
        assert any("indistinguishable from idle" in m for m in r["verdict"]["reasons"])
    assert _stats(_load(load_w=2.05))["verdict"]["result"] == "VALID"
    # idle_noise_w overrides 3 x idle_std_w
    assert _stats(_load(load_w=2.05), idle_noise_w=0.1)["verdict"]["result"] == "INVALID"


def test_no_idle_baseline_skips_dynamic_figures():
    r = _stats(_load(), power_w_idle=None)
    assert r["power_w_dynamic_peak"] is None and r["energy_j_dynamic"] is None
    assert r["energy_mj_per_inference_dynamic"] is None
    assert r["verdict"]["checks"]["load_above_idle"] is None
    assert any("no idle baseline" in w for w in r["verdict"]["warnings"])


def test_low_rate_warnings():
    # A 1 Hz meter over a 20 s window: 20 updates < 30 -> warning; still VALID with min 10.
    samples = samples_from(step(2.0, 5.0, 1.0, 21.0), 0.0, 22.0, 1.0)
    r = power.load_window_stats(samples, at(1.0), at(21.0), iterations=100, power_w_idle=2.0,
                                idle_std_w=0.01, update_interval_s=1.0)
    assert r["verdict"]["result"] == "VALID", r["verdict"]
    assert any("< 30 meter updates" in w for w in r["verdict"]["warnings"])
    assert not any("0.1 x window" in w for w in r["verdict"]["warnings"])
    # Over a 5 s window the update interval is > 0.1 x window as well.
    r = power.load_window_stats(samples, at(1.0), at(6.0), iterations=100, power_w_idle=2.0,
                                idle_std_w=0.01, update_interval_s=1.0, min_samples=5)
    assert any("0.1 x window" in w for w in r["verdict"]["warnings"])
    # The update interval defaults to the median sample spacing.
    assert r["update_interval_s"] == 1.0
    r = power.load_window_stats(samples, at(1.0), at(6.0), iterations=100, power_w_idle=2.0)
    assert r["update_interval_s"] == pytest.approx(1.0)


def test_gap_and_sequence_warnings():
    samples = [s for s in _load() if not (at(2.0) < s.t_mono_ns < at(2.1))]  # 9 updates lost
    r = _stats(samples)
    assert r["verdict"]["result"] == "VALID"
    assert r["meter_seq"]["missing"] == 9
    assert any("sequence gaps" in w for w in r["verdict"]["warnings"])
    assert any("largest gap" in w for w in r["verdict"]["warnings"])
    assert r["max_gap_s"] == pytest.approx(0.1)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        _stats(_load(), iterations=-1)
    with pytest.raises(ValueError):
        power.load_window_stats(_load(), at(2.0), at(2.0), iterations=1, power_w_idle=2.0)


def test_no_samples_at_all_is_invalid_not_an_exception():
    r = power.load_window_stats([], at(0.0), at(1.0), iterations=5, power_w_idle=2.0)
    assert r["energy_j_load"] is None and r["power_w_mean"] is None
    assert r["verdict"]["result"] == "INVALID"


def test_required_window_s():
    assert power.required_window_s(0.5, 10) == pytest.approx(5.5)
    assert power.required_window_s(1.0, 30, spare=0) == pytest.approx(30.0)
    # a window that long holds min_samples whatever the phase of the sampling grid
    for phase in (0.0, 0.3, 0.999):
        w = power.required_window_s(1.0, 10)
        n = sum(1 for k in range(100) if phase <= k <= phase + w)
        assert n >= 10
    with pytest.raises(ValueError):
        power.required_window_s(0.0, 10)


def test_count_seq_gaps():
    seq = [1, 2, 2, 5, 6, 0, 1]
    samples = [Sample(t_mono_ns=i, t_wall_ns=0, power_w=1.0, meter_seq=q) for i, q in enumerate(seq)]
    samples.insert(3, Sample(t_mono_ns=2, t_wall_ns=0, power_w=1.0))  # unnumbered: ignored
    assert power.count_seq_gaps(samples) == {"missing": 2, "duplicates": 1, "resets": 1}


# --------------------------------------------------------------------------- sampler


def test_sampler_100hz_count_monotonic_and_absolute_schedule():
    # Each read takes 3 ms: a sleep-after-read loop would drift by 3 ms per sample (~150 ms).
    meter = FakeMeter(update_interval_s=0.01, read_s=0.003)
    s = Sampler(meter)
    assert s.rate_hz == pytest.approx(100.0) and s.paced
    with s:
        time.sleep(0.5)
    samples = s.samples
    n = len(samples)
    assert 45 <= n <= 56, n
    t = [x.t_mono_ns for x in samples]
    assert all(b > a for a, b in zip(t, t[1:]))
    assert all(x.valid and x.phase == "" for x in samples)
    period = 10 * MS
    expected_last = s.t_start_ns + (n - 1 + s.dropped) * period + 3 * MS
    assert abs(t[-1] - expected_last) <= period, (t[-1] - expected_last) / MS
    assert [x.meter_seq for x in samples] == list(range(n))
    assert s.errors == [] and s.fatal_error is None and not s.running


def test_sampler_never_polls_faster_than_the_meter_and_needs_a_rate():
    assert Sampler(FakeMeter(update_interval_s=0.01), rate_hz=1000).rate_hz == pytest.approx(100.0)
    assert Sampler(FakeMeter(update_interval_s=0.01), rate_hz=20).rate_hz == 20
    with pytest.raises(ValueError):
        Sampler(FakeMeter(update_interval_s=None))
    with pytest.raises(ValueError):
        Sampler(FakeMeter(), rate_hz=0)


def test_sampler_records_a_timeout_and_keeps_sampling():
    meter = FakeMeter(script={10: MeterTimeoutError("expected a line within 0.05 s, got 0 bytes")})
    with Sampler(meter, phase="load") as s:
        assert wait_until(lambda: len(s.samples) >= 25)
    samples = s.samples
    assert s.fatal_error is None
    errs = s.errors
    assert len(errs) == 1 and errs[0][1].startswith("MeterTimeoutError: expected a line")
    bad = samples[10]
    assert bad.power_w is None and bad.error.startswith("MeterTimeoutError") and not bad.valid
    assert bad.phase == "load" and errs[0][0] == bad.t_mono_ns
    assert all(x.valid for x in samples[11:])


def test_sampler_stops_on_connection_error():
    meter = FakeMeter(script={5: MeterConnectionError("/dev/ttyACM0 went away")})
    s = Sampler(meter).start()
    assert wait_until(lambda: not s.running)
    assert s.fatal_error == "MeterConnectionError: /dev/ttyACM0 went away"
    assert isinstance(s.fatal_exception, MeterConnectionError)
    samples = s.stop()
    assert len(samples) == 6 and samples[-1].error == s.fatal_error
    assert meter.calls == 6
    assert s.snapshot()["fatal_error"] == s.fatal_error


def test_sampler_unexpected_exception_is_fatal_not_silent():
    meter = FakeMeter(script={2: ZeroDivisionError("driver bug")})
    s = Sampler(meter).start()
    assert wait_until(lambda: not s.running)
    assert s.fatal_error == "ZeroDivisionError: driver bug"
    s.stop()


def test_paced_sampler_counts_skipped_ticks():
    meter = FakeMeter(script={5: 0.025})  # one read overruns 2.5 periods
    with Sampler(meter) as s:
        assert wait_until(lambda: len(s.samples) >= 20)
    assert s.dropped >= 1


def test_unpaced_sampler_for_a_blocking_meter():
    # read() blocks until the meter's next 10 ms tick; one update is missed at call 10.
    meter = FakeMeter(update_interval_s=0.01, tick=True, script={10: 0.01})
    s = Sampler(meter)
    assert not s.paced
    with s:
        time.sleep(0.5)
    n = len(s.samples)
    assert 40 <= n <= 55, n
    assert s.dropped >= 1
    d = s.describe()
    assert d["paced"] is False and d["meter"]["meter"] == "fake" and d["n_samples"] == n


def test_set_phase_splits_the_stream_at_the_returned_time():
    with Sampler(FakeMeter(), phase="idle") as s:
        assert wait_until(lambda: len(s.samples) >= 5)
        t_switch = s.set_phase("load")
        assert s.phase == "load"
        assert wait_until(lambda: len(s.samples) >= 12)
    for x in s.samples:
        assert x.phase == ("idle" if x.t_mono_ns < t_switch else "load")
    snap = s.snapshot()
    assert snap["n_samples"] == len(s.samples) and snap["last"].phase == "load"
    with pytest.raises(RuntimeError):
        s.start()


def test_measure_idle_with_a_meter_and_with_a_factory():
    meter = FakeMeter(lambda t: 5.0 if t < 0.1 else 2.0, update_interval_s=0.01)
    res = power.measure_idle(meter, settle_s=0.15, window_s=0.3)
    assert res.power_w_idle == 2.0 and res.stable
    assert 24 <= res.n_samples <= 33
    phases = {x.phase for x in res.samples}
    assert {"settle", "idle"} <= phases
    assert all(x.t_mono_ns < res.window_start_ns for x in res.samples if x.phase == "settle")
    assert res.window_s == pytest.approx(0.3, abs=0.05)
    res = power.measure_idle(lambda: Sampler(FakeMeter(lambda t: 3.0), rate_hz=50), settle_s=0.02,
                             window_s=0.2)
    assert res.power_w_idle == 3.0 and 8 <= res.n_samples <= 12


def test_measure_idle_raises_when_the_meter_goes_away():
    meter = FakeMeter(script={3: MeterConnectionError("unplugged")})
    with pytest.raises(MeterConnectionError):
        power.measure_idle(meter, settle_s=0.05, window_s=0.05)


# --------------------------------------------------------------------------- clocks


def test_estimate_offset_picks_the_smallest_rtt_probe():
    probes = iter([
        (1_000, 5_000_700, 1_400),  # rtt 400
        (2_000, 5_001_030, 2_060),  # rtt 60 <- best
        (3_000, 5_002_200, 3_300),  # rtt 300
    ])
    off = power.estimate_offset(lambda: next(probes), repeats=3)
    assert off == ClockOffset(offset_ns=5_001_030 - 2_030, uncertainty_ns=30, rtt_ns=60, n=3)
    assert power.to_host_ns(5_001_030, off) == 2_030


def test_estimate_offset_brackets_the_true_offset():
    rng = random.Random(0)
    true = 123_456_789_012
    clock = [10 ** 12]

    def probe():
        t1 = clock[0]
        there = rng.randint(50_000, 5_000_000)
        back = rng.randint(50_000, 5_000_000)
        r = t1 + there + true
        t2 = t1 + there + back
        clock[0] = t2 + 1_000_000
        return t1, r, t2

    off = power.estimate_offset(probe, repeats=7)
    assert abs(off.offset_ns - true) <= off.uncertainty_ns
    assert off.uncertainty_ns == (off.rtt_ns + 1) // 2 and off.n == 7
    with pytest.raises(ValueError):
        power.estimate_offset(lambda: (10, 0, 5))
    with pytest.raises(ValueError):
        power.estimate_offset(probe, repeats=0)


def test_combine_widens_the_uncertainty_by_half_the_drift():
    before = ClockOffset(offset_ns=1_000, uncertainty_ns=20, rtt_ns=40, n=5)
    after = ClockOffset(offset_ns=1_100, uncertainty_ns=30, rtt_ns=60, n=5)
    c = power.combine(before, after)
    assert c == ClockOffset(offset_ns=1_050, uncertainty_ns=30 + 50, rtt_ns=60, n=10)
    for o in (before, after):  # both estimates lie inside the combined interval
        assert abs(o.offset_ns - c.offset_ns) + o.uncertainty_ns <= c.uncertainty_ns
    assert power.combine(before, before).uncertainty_ns == 20


def test_host_window_from_the_runner_latency_block():
    latency = {"loop_start_monotonic_ns": 5 * S, "loop_end_monotonic_ns": 8 * S, "iterations": 300}
    assert power.host_window(latency) == (5 * S, 8 * S, 300, 0.0)
    off = ClockOffset(offset_ns=2 * S, uncertainty_ns=3 * MS, rtt_ns=6 * MS, n=7)
    assert power.host_window(latency, off) == (3 * S, 6 * S, 300, 3.0)


# --------------------------------------------------------------------------- CSV


def test_csv_round_trip(tmp_path):
    samples = [
        Sample(t_mono_ns=T0, t_wall_ns=1_700_000_000_123_456_789, power_w=2.123456789012345,
               voltage_v=5.0712, current_a=0.41871, meter_seq=17, meter_time_s=12.345678,
               phase="idle"),
        Sample(t_mono_ns=T0 + 10 * MS, t_wall_ns=1_700_000_000_133_456_789, power_w=None,
               flags=("over_range", "invalid"), meter_seq=18, phase="load"),
        Sample(t_mono_ns=T0 + 20 * MS, t_wall_ns=1_700_000_000_143_456_789, power_w=None,
               phase="load", error='MeterProtocolError: expected 6 fields, got "1,2\nx"'),
        Sample(t_mono_ns=T0 + 30 * MS, t_wall_ns=1_700_000_000_153_456_789, power_w=0.1 + 0.2),
    ]
    path = tmp_path / "sub" / "power.csv"
    power.write_power_csv(path, samples)
    assert power.read_csv(path) == samples
    header = path.read_text().splitlines()[0]
    assert header == ",".join(power.CSV_COLUMNS)
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp file left


def test_sampler_write_csv_uses_the_same_format(tmp_path):
    with Sampler(FakeMeter(), phase="load") as s:
        assert wait_until(lambda: len(s.samples) >= 3)
    s.write_csv(tmp_path / "s.csv")
    assert power.read_csv(tmp_path / "s.csv") == s.samples


def test_read_csv_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        power.read_csv(bad)
    bad.write_text(",".join(power.CSV_COLUMNS) + "\nnot-a-number,1,,,,,,,,\n")
    with pytest.raises(ValueError, match="t_mono_ns"):
        power.read_csv(bad)


def test_sampler_thread_is_a_daemon_named_thread():
    s = Sampler(FakeMeter()).start()
    try:
        names = {t.name: t.daemon for t in threading.enumerate()}
        assert names.get("edgegauge-power-sampler") is True
    finally:
        s.stop()
