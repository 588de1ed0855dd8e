"""Heap profiles (``host bench --memory massif|memray``): the parsers on recorded real
outputs (expected values read off the tools' own reports, not our parser), and the whole
path through ``run_campaign`` with the real tools where they are installed."""

import shutil
from pathlib import Path

import pytest
from labfix import apt_install

from host.campaign.protocol import Protocol
from host.campaign.run import run_campaign
from host.campaign.store import flatten
from host.lab import memprofile
from host.lab.benchconfig import BenchConfig
from host.lab.inventory import local_device
from runners.core import Policy

FIX = Path(__file__).resolve().parent / "fixtures"
FAST_PROTOCOL = Protocol(target_ci=0.5, max_cell_s=30.0)
CONFIG = BenchConfig(backend="null", timeout_s=300, policy=Policy(
    warmup_min_iterations=1, warmup_min_s=0.0, min_iterations=5, min_duration_s=0.01))


def test_parse_massif_on_a_recorded_run():
    """fixtures/memprofile/massif.out.null: valgrind-3.19.0 massif with the options
    ``memprofile.plan`` uses, on ``python -m runners run --backend null`` with
    PYTHONMALLOC=malloc (this project's test machine). massif.expected holds what ms_print
    printed: the peak snapshot's number, its total bytes, and the snapshot count."""
    text = (FIX / "memprofile" / "massif.out.null").read_text()
    expected = (FIX / "memprofile" / "massif.expected").read_text().split()
    block = memprofile.parse_massif(text)
    assert block["memory_method"] == "massif"
    assert block["heap_mib_peak"] * 2**20 == pytest.approx(int(expected[1]))
    assert block["snapshots"] == int(expected[2])


def test_parse_memray_stats_on_a_recorded_run():
    """fixtures/memprofile/memray.stats.json: ``memray stats --json`` (memray 1.20.0) of the
    null runner; ``memray stats`` printed "Peak memory usage" as in memray.expected."""
    block = memprofile.parse_memray_stats((FIX / "memprofile" / "memray.stats.json").read_text())
    peak_mb = float((FIX / "memprofile" / "memray.expected").read_text().split()[0])  # 10^6 bytes
    assert block["memory_method"] == "memray"
    assert block["heap_mib_peak"] * 2**20 / 1e6 == pytest.approx(peak_mb, abs=0.0006)


def test_parsers_refuse_what_is_not_a_profile():
    with pytest.raises(ValueError, match="no complete snapshot"):
        memprofile.parse_massif("desc: x\ncmd: y\n")
    with pytest.raises(ValueError, match="not memray stats"):
        memprofile.parse_memray_stats("{}")
    with pytest.raises(ValueError, match="unknown memory method"):
        memprofile.plan("heaptrack", "/tmp/x")


def _bench(tmp_path, memory, model=None):
    model = model or FIX / "models" / "identity.onnx"
    res = run_campaign([model], [local_device(str(tmp_path / "w"))], CONFIG, results=tmp_path / "r",
                       campaign="m", backend="null", protocol=FAST_PROTOCOL, memory=memory)
    (cell,) = res.cells
    return cell


def test_massif_profile_of_a_cell(tmp_path):
    if shutil.which("valgrind") is None:
        apt_install(["valgrind"], "the Massif test needs valgrind")
    cell = _bench(tmp_path, "massif")
    prof = cell["memory_profile"]
    assert prof["memory_method"] == "massif" and "error" not in prof, prof
    assert 1 < prof["heap_mib_peak"] < cell["memory"]["rss_mib_peak"]  # heap is part of RSS
    row = flatten(cell)
    assert row["heap_mib_peak_massif"] == prof["heap_mib_peak"] and row["heap_mib_peak_memray"] is None
    assert row["rss_mib_peak"] == cell["memory"]["rss_mib_peak"]  # never replaced
    assert cell["status"] in ("ok", "invalid") and cell["latency"]["processes"] == 5  # not the extra run
    assert not list((tmp_path / "w" / "out").iterdir())  # the raw profile was removed


def test_memray_profile_of_a_cell(tmp_path):
    pytest.importorskip("memray")
    cell = _bench(tmp_path, "memray")
    prof = cell["memory_profile"]
    assert prof["memory_method"] == "memray" and "error" not in prof, prof
    assert 1 < prof["heap_mib_peak"] < cell["memory"]["rss_mib_peak"]
    assert flatten(cell)["heap_mib_peak_memray"] == prof["heap_mib_peak"]


def test_a_missing_profiler_is_an_error_in_the_block_not_a_lost_cell(tmp_path, monkeypatch):
    real = memprofile.plan

    def missing(method, raw):
        run = real(method, raw)
        return memprofile.ProfileRun(("no-such-profiler-xyz",), run.python_args, run.env, run.after,
                                     run.report, run.parse)

    monkeypatch.setattr(memprofile, "plan", missing)
    cell = _bench(tmp_path, "massif")
    assert cell["status"] in ("ok", "invalid") and cell["latency"]["processes"] == 5
    prof = cell["memory_profile"]
    assert prof["memory_method"] == "massif" and "massif run exited with 127" in prof["error"]
    assert flatten(cell)["heap_mib_peak_massif"] is None
