"""``host compare --by precision|batch|device``: inside one campaign, the cells that differ only in
that axis, as a latency ratio with its 95 % interval and a same/faster/slower call; on hand-written
cells (tests/advise_cells.py), the references worked out here by hand."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from advise_cells import cell, write_cells
from typer.testing import CliRunner

from host.analysis.compare import compare_by
from host.cli import app
from host.errors import AnalysisError, NothingToCompareError

runner = CliRunner()
Z = 1.959963984540054
# Five processes (rounds 1..5) of three sessions each; int8 is exactly half of fp32 in each session.
FP32_SESSIONS = [[4.0 + 0.01 * (3 * i + j) for j in range(3)] for i in range(5)]
INT8_SESSIONS = [[x / 2 for x in s] for s in FP32_SESSIONS]


def cells() -> list:
    """mnv2 (5 rounds: paired bootstrap), digits_cnn and squeezenet (one process: from the CIs)."""
    return [
        cell("mnv2_w1_cifar10", p99=5.0, p50=4.07, peaks=(50.0,) * 5, sessions=FP32_SESSIONS),
        cell("mnv2_w1_cifar10", p99=2.5, p50=2.035, peaks=(50.0,) * 5, sessions=INT8_SESSIONS,
             precision="int8"),
        cell("digits_cnn", p99=0.03, p50=0.020, p50_ci=(0.019, 0.021), peaks=(50.0,)),
        cell("digits_cnn", p99=0.03, p50=0.0205, p50_ci=(0.0195, 0.0215), peaks=(50.0,), precision="int8"),
        cell("squeezenet1_1_imagenet", p99=30.0, p50=20.0, p50_ci=(19.8, 20.2), peaks=(50.0,)),
        cell("squeezenet1_1_imagenet", p99=30.0, p50=24.0, p50_ci=(23.6, 24.4), peaks=(50.0,),
             precision="int8"),
    ]


def _from_cis(pa, ci_a, pb, ci_b):
    """The interval by hand: r·exp(±1.96·√(s_a² + s_b²)), s = ln(hi/lo) / (2·1.96)."""
    sa, sb = math.log(ci_a[1] / ci_a[0]) / (2 * Z), math.log(ci_b[1] / ci_b[0]) / (2 * Z)
    r = pb / pa
    half = Z * math.sqrt(sa * sa + sb * sb)
    return r, (r * math.exp(-half), r * math.exp(half))


def _row(result, model):
    (found,) = [r for r in result["rows"] if r["model"] == model]
    return found


def test_int8_against_fp32_ratio_interval_and_call():
    result = compare_by(cells(), "precision")
    assert len(result["rows"]) == 3 and result["unpaired"] == 0
    digits = _row(result, "digits_cnn")
    r, (lo, hi) = _from_cis(0.020, (0.019, 0.021), 0.0205, (0.0195, 0.0215))
    assert (digits["a"], digits["b"], digits["method"]) == ("fp32", "int8", "from CIs")
    assert digits["ratio"] == pytest.approx(r) and digits["ci95"] == pytest.approx([lo, hi])
    assert lo < 1 < hi and digits["call"] == "same"
    squeeze = _row(result, "squeezenet1_1_imagenet")
    r, (lo, hi) = _from_cis(20.0, (19.8, 20.2), 24.0, (23.6, 24.4))
    assert squeeze["ratio"] == pytest.approx(1.2) and squeeze["ci95"] == pytest.approx([lo, hi])
    assert lo > 1 and squeeze["call"] == "slower"
    mnv2 = _row(result, "mnv2_w1_cifar10")
    median = statistics.median([x for s in INT8_SESSIONS for x in s]) / statistics.median(
        [x for s in FP32_SESSIONS for x in s])
    assert mnv2["method"] == "paired bootstrap"
    assert mnv2["ratio"] == pytest.approx(median) == pytest.approx(0.5)
    assert mnv2["ci95"][0] <= 0.5 <= mnv2["ci95"][1] < 1 and mnv2["call"] == "faster"
    assert set(result["methods"]) == {"paired bootstrap", "from CIs"}


def test_only_cells_differing_in_that_axis_alone_are_paired():
    docs = [cell("a_net", p99=2.0, p50=1.0, p50_ci=(0.9, 1.1)),
            cell("a_net", p99=2.0, p50=1.0, p50_ci=(0.9, 1.1), precision="int8", batch=8),  # two axes
            cell("a_net", p99=2.0, p50=0.5, p50_ci=(0.45, 0.55), precision="int8", campaign="c2"),  # c2
            cell("b_net", p99=2.0, p50=1.0, p50_ci=(0.9, 1.1), device="nano", precision="int8")]  # no fp32
    with pytest.raises(NothingToCompareError, match="differ only in precision") as info:
        compare_by(docs, "precision")
    assert "--precision fp32,int8" in info.value.hint


def test_batch_ratio_is_per_sample_and_device_pairs_devices():
    docs = [cell("a_net", p99=5.0, p50=4.0, p50_ci=(3.9, 4.1)),
            cell("a_net", p99=20.0, p50=16.0, p50_ci=(15.6, 16.4), batch=8)]
    (row,) = compare_by(docs, "batch")["rows"]
    r, (lo, hi) = _from_cis(4.0, (3.9, 4.1), 16.0, (15.6, 16.4))  # per call: 4×
    assert (row["a"], row["b"]) == (1, 8)
    assert row["ratio"] == pytest.approx(r / 8) == pytest.approx(0.5)  # per sample: (16/8) / (4/1)
    assert row["ci95"] == pytest.approx([lo / 8, hi / 8]) and row["call"] == "faster"
    docs = [cell("a_net", p99=5.0, p50=4.0, p50_ci=(3.9, 4.1), device="pi4"),
            cell("a_net", p99=5.0, p50=4.1, p50_ci=(4.0, 4.2), device="nano")]
    (row,) = compare_by(docs, "device")["rows"]
    assert (row["a"], row["b"], row["call"]) == ("nano", "pi4", "same")  # nano first by name
    (row,) = compare_by(docs, "device", reference="pi4")["rows"]
    assert (row["a"], row["b"]) == ("pi4", "nano") and row["ratio"] == pytest.approx(4.1 / 4.0)
    with pytest.raises(AnalysisError, match="cannot compare by 'threads'"):
        compare_by(docs, "threads")


def _screen(res) -> list:
    lines = res.stdout.splitlines()
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    assert "…" not in res.stdout
    return lines


def test_host_compare_by_precision_cli(tmp_path):
    root = write_cells(tmp_path / "results", cells())
    res = runner.invoke(app, ["compare", "--by", "precision", str(root)], env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    lines = _screen(res)
    calls = {cols[0]: cols[-1] for cols in ([c.strip() for c in line.split("│")[1:-1]]
                                            for line in lines if line.startswith("│"))}
    assert calls == {"digits_cnn": "same", "mnv2_w1_cifar10": "faster", "squeezenet1_1_imagenet": "slower"}
    text = " ".join(" ".join(lines).split())
    assert "same when the 95 % interval contains 1" in text and "paired bootstrap:" in text
    assert "from CIs:" in text
    res = runner.invoke(app, ["compare", "--by", "precision", str(root / "c1"), "--json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)["rows"]) == 3


def test_host_compare_by_errors_and_two_folders_still_work(tmp_path):
    root = write_cells(tmp_path / "results", cells())
    res = runner.invoke(app, ["compare", "--by", "batch", str(root)])
    assert res.exit_code == 1 and "nothing to compare by batch" in res.stderr and "--batch 1,8" in res.stderr
    res = runner.invoke(app, ["compare", "--by", "precision", str(root), str(root)])
    assert res.exit_code == 2
    res = runner.invoke(app, ["compare", str(root)])
    assert res.exit_code == 2 and "two results folders" in res.output
    res = runner.invoke(app, ["compare", "--by", "width", str(root)])
    assert res.exit_code == 2
    res = runner.invoke(app, ["compare", str(root / "c1"), str(root / "c1")])
    assert res.exit_code == 0, res.output
