"""``host advise`` with several budgets at once (the rule of host.analysis.budgets), the
width-scaling fit per architecture family (never across unrelated ones), and "every measured model
meets it" as an answer with exit 0; on hand-written cells (tests/advise_cells.py), references
worked out by hand here."""

from __future__ import annotations

import json
import math

import pytest
from advise_cells import F1, ICPT, SLOPE, cell, family, strangers, write_cells
from typer.testing import CliRunner

from host.analysis.advise import advise, family_of
from host.analysis.budgets import Budgets
from host.cli import app
from host.errors import AnalysisError, UnknownDeviceError

runner = CliRunner()
INT8 = cell("mnv2_w1_cifar10", p99=7.0, ci=(6.5, 7.5), flops=F1, params=2e6, precision="int8",
            power={"power_w_mean": 2.5, "energy_mj_per_inference": 0.6})


def _rows(result) -> dict:
    return {(r["model"], r["precision"]): (r["verdict"], [c["mark"] for c in r["checks"]])
            for r in result["rows"]}


def test_several_budgets_at_once_one_mark_each():
    # 60 FPS = 16.67 ms on p99; 100 MiB process peak; 5 W.
    # mnv2: p99 ≤ 12.5 ms upper end, peaks ≤ 75 MiB, 3 W -> meets all; int8 7.5 ms, 2.5 W -> meets.
    # digits_cnn: 22 µs, 55 MiB, no meter -> uncertain. squeezenet: 19..22 ms (✗), 95..104 MiB (?), 4 W (✓).
    result = advise(family() + strangers() + [INT8], Budgets(fps=60, memory_mib=100, power_w=5))
    assert [lim["budget"] for lim in result["limits"]] == ["latency", "memory", "power"]
    assert result["limits"][0]["statistic"] == "latency_ms_p99"
    assert result["limits"][0]["limit"] == pytest.approx(1000 / 60)
    got = _rows(result)
    for w in ("0.25", "0.5", "0.75", "1"):
        assert got[(f"mnv2_w{w}_cifar10", "fp32")] == ("meets", ["✓", "✓", "✓"])
    assert got[("mnv2_w1_cifar10", "int8")] == ("meets", ["✓", "✓", "✓"])
    assert got[("digits_cnn", "fp32")] == ("uncertain", ["✓", "✓", "no meter"])
    assert got[("squeezenet1_1_imagenet", "fp32")] == ("misses", ["✗", "?", "✓"])
    assert [r["verdict"] for r in result["rows"]] == ["meets"] * 5 + ["uncertain", "misses"]
    assert result["answer"].startswith("5 of 7 measured models meet every budget: ")
    assert "squeezenet" not in result["answer"] and "1 uncertain" in result["answer"]
    why = {r["model"]: r["reasons"] for r in result["rows"]}
    assert why["squeezenet1_1_imagenet"][0].startswith("latency: ") and "straddles 100" in \
        why["squeezenet1_1_imagenet"][1]


def test_statistic_and_memory_scope_are_named_and_used():
    # p50 = 0.8·p99 with no p50 interval: uncertain whatever the limit; model scope: peak − 40 MiB.
    doc = cell("solo_net", p99=10.0, ci=(9.0, 11.0), peaks=(130.0, 135.0))
    result = advise([doc], Budgets(latency_ms=12, statistic="p50", memory_mib=100, memory_scope="model"))
    (row,) = result["rows"]
    assert [(c["statistic"], c["verdict"]) for c in row["checks"]] == [
        ("latency_ms_p50", "uncertain"), ("rss_mib_model", "meets")]  # 90..95 MiB over 2 processes
    assert list(row["checks"][1]["interval"]) == [90.0, 95.0]


def test_one_line_per_family_never_across_architectures():
    # A second family: resnet_w{0.5,0.75,1}: FLOPs w²·1e9, p99 = 1e-8·FLOPs + 5 ms.
    resnet = [cell(f"resnet_w{w:g}_cifar10", p99=10 * w * w + 5, ci=(10 * w * w + 4.9, 10 * w * w + 5.1),
                   flops=w * w * 1e9, params=w * w * 1e7) for w in (0.5, 0.75, 1.0)]
    result = advise(family() + resnet + strangers(), Budgets(latency_ms=10))
    fits = {f["family"]: f for f in result["fits"]}
    assert set(fits) == {"mnv2_cifar10", "resnet_cifar10"}
    mnv2, res = fits["mnv2_cifar10"], fits["resnet_cifar10"]
    assert sorted(mnv2["models"]) == sorted(f"mnv2_w{w:g}_cifar10" for w in (0.25, 0.5, 0.75, 1.0))
    assert mnv2["fit"]["slope"] == pytest.approx(SLOPE) and mnv2["fit"]["intercept"] == pytest.approx(ICPT)
    assert res["fit"]["slope"] == pytest.approx(1e-8) and res["fit"]["intercept"] == pytest.approx(5.0)
    # mnv2 at w=1 (FLOPs 4e8): S = sqrt((10 − 2) / (2.5e-8 · 4e8)) = sqrt(0.8)
    s = {r["model"]: r["s"] for r in mnv2["scaling"]}
    assert s["mnv2_w1_cifar10"] == pytest.approx(math.sqrt(0.8))
    # resnet at w=1 (FLOPs 1e9): S = sqrt((10 − 5) / (1e-8 · 1e9)) = sqrt(0.5)
    assert {r["model"]: r["s"] for r in res["scaling"]}["resnet_w1_cifar10"] == pytest.approx(math.sqrt(0.5))
    (line,) = result["not_fitted"]
    assert line.startswith("not fitted: 8×8 digits_cnn and 224×224 squeezenet1_1_imagenet are different "
                           "architectures")


def test_unrelated_models_alone_are_refused_not_pooled():
    result = advise(strangers() + [family()[0]], Budgets(fps=60))
    assert result["fits"] == []
    (line,) = result["not_fitted"]
    assert "different architectures" in line
    for name in ("8×8 digits_cnn", "32×32 mnv2_cifar10", "224×224 squeezenet1_1_imagenet"):
        assert name in line


def test_target_beyond_the_family_is_a_note_not_an_error():
    # 16.67 ms needs FLOPs (16.67 − 2) / 2.5e-8 ≈ 5.87e8 > 4e8, the widest measured
    result = advise(family(), Budgets(fps=60))
    (fit,) = result["fits"]
    assert fit["scaling"] == [] and "above the largest measured" in fit["note"]
    assert fit["x_target"] == pytest.approx((1000 / 60 - ICPT) / SLOPE)
    assert result["answer"].startswith("every measured model meets every budget (4: ")


@pytest.mark.parametrize("stem, fam", [("mnv2_w0.25_cifar10", "mnv2_cifar10"),
                                       ("sc_vgg11_w0.25_cifar10", "sc_vgg11_cifar10"),
                                       ("mg_mobilenet_v2_w1_s224", "mg_mobilenet_v2_s224"),
                                       ("net_w0.5.int8.ab12", "net"), ("digits_cnn", "digits_cnn"),
                                       ("wide_resnet50_2", "wide_resnet50_2")])
def test_family_is_the_stem_without_its_width_tag(stem, fam):
    assert family_of({"cell": {"model_stem": stem}}) == fam


def test_user_errors_stay_errors():
    with pytest.raises(AnalysisError, match="no result cells"):
        advise([], Budgets(fps=60))
    with pytest.raises(AnalysisError, match="no budget"):
        advise(family(), Budgets())
    with pytest.raises(UnknownDeviceError, match="'nano'"):
        advise(family(), Budgets(fps=60), device="nano")
    with pytest.raises(AnalysisError, match="several devices"):
        advise(family() + [cell("x", p99=1.0, device="nano")], Budgets(fps=60))
    with pytest.raises(AnalysisError, match="precision 'fp16'"):
        advise(family(), Budgets(fps=60), precision="fp16")


def _screen(res) -> list:
    lines = res.stdout.splitlines()
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    assert "…" not in res.stdout
    return lines


def test_host_advise_cli_answers_on_one_screen(tmp_path):
    root = write_cells(tmp_path / "results", family() + strangers() + [INT8])
    res = runner.invoke(app, ["advise", str(root), "--fps", "60", "--memory-mib", "100", "--power-w", "5"],
                        env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    lines = _screen(res)
    assert lines[0].startswith("device pi4: 5 of 7 measured models meet every budget")
    squeeze = next(line for line in lines if line.startswith("│ squeezenet1_1_imagenet"))
    assert [c.strip() for c in squeeze.split("│")[1:-1]] == [
        "squeezenet1_1_imagenet", "fp32", "20 (19–22) ms", "✗", "?", "✓", "misses"]
    digits = next(line for line in lines if line.startswith("│ digits_cnn"))
    assert "20 (18–22) µs" in digits and "no meter" in digits and "uncertain" in digits
    assert "not fitted: 8×8 digits_cnn and 224×224 squeezenet1_1_imagenet" in " ".join(lines)
    res = runner.invoke(app, ["advise", str(root), "--fps", "60", "--json"])
    doc = json.loads(res.stdout)
    assert doc["statistic"] == "p99" and len(doc["rows"]) == 7


def test_every_model_meets_is_an_answer_with_exit_0(tmp_path):
    root = write_cells(tmp_path / "results", family())
    res = runner.invoke(app, ["advise", str(root), "--fps", "60", "--memory-mib", "500"],
                        env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    assert "every measured model meets every budget" in res.stdout
    assert "above the largest measured" in " ".join(_screen(res))


def test_host_advise_cli_errors(tmp_path):
    root = write_cells(tmp_path / "results", family())
    res = runner.invoke(app, ["advise", str(root)])
    assert res.exit_code == 2 and "at least one budget" in res.output
    res = runner.invoke(app, ["advise", str(root), "--fps", "60", "--device", "nano"])
    assert res.exit_code == 1 and "no measured cell of device 'nano'" in res.stderr
    res = runner.invoke(app, ["advise", str(root), "--fps", "60", "--statistic", "p42"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["advise", str(root), "--accuracy-min", "1.5"])
    assert res.exit_code == 2
