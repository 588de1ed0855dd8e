"""Plot text is the text it holds (issue 20 item 9): a model, device or campaign name with
``$...$`` in it is drawn as written, not read as matplotlib math text (``x$\\foo^^$y`` used to stop
``host report --html`` with a ValueError). Every plot is rendered for real; the text drawn is read
back from an SVG of the same figure (``svg.fonttype: none`` keeps each text as one string)."""

import html
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from host.analysis import plots
from host.campaign.samples import write_samples
from host.campaign.store import cell_path, load_cells, write_cell
from host.power import Sample, write_power_csv

FIX = Path(__file__).resolve().parent / "fixtures" / "models"
NULL = ["--backend", "null", "--warmup-iters", "1", "--warmup-s", "0", "--min-iters", "5",
        "--min-s", "0.01", "--target-ci", "0.5", "--max-s", "20"]
HOSTILE = ["x$\\foo^^$y", "$\\alpha$ one", "a$_b$^c"]
DEVICE = "dev$\\bad{$"
S = 1_000_000_000


def _cell(stem, i):
    p50 = 0.5 * (i + 1)
    return {"schema_version": "2.0", "status": "ok", "error": None,
            "cell": {"campaign": "c$1$", "device": DEVICE, "model_stem": stem, "config": "ort-b1-t1"},
            "metrics": {"params": 10 ** (4 + i), "flops": 10 ** (6 + i)},
            "latency": {"latency_ms_p50": p50, "latency_ms_p50_ci95": [p50 * 0.9, p50 * 1.1],
                        "processes": 5, "level": "host_call"},
            "memory": {"rss_mib_peak": 40.0 + i}, "verdict": {"result": "VALID"},
            "precision": {"name": "fp32"}, "host": {"config": {"batch": 1}},
            "power": {"energy_mj_per_inference": 0.8 + i, "throughput_cps": 1000.0 / p50,
                      "verdict": {"result": "VALID"}, "meter": {"meter": "m$a$", "scope": "$s$"},
                      "samples_file": f"p{i}.power.csv", "window_start_ns": S, "window_end_ns": 2 * S}}


def _cells(root):
    for i, stem in enumerate(HOSTILE):
        path = cell_path(root, "c$1$", DEVICE, stem, "ort-b1-t1")
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = _cell(stem, i)
        doc["samples"] = write_samples(path.with_name(path.stem + ".samples.npz"),
                                       [[np.arange(1, 40, dtype=np.int64) * 100_000]])
        write_power_csv(path.parent / f"p{i}.power.csv", [
            Sample(t_mono_ns=k * S // 10, t_wall_ns=k, power_w=5.0, phase="cell") for k in range(30)])
        write_cell(path, doc)
    return load_cells(root)


def test_names_with_dollar_signs_are_drawn_as_written(tmp_path, monkeypatch):
    svgs = []
    real_save = plots._save

    def save_and_svg(fig, out_dir, name):
        path = real_save(fig, out_dir, name)  # the PNG, as the report writes it
        svg = tmp_path / (name + ".svg")
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            fig.savefig(svg, format="svg")
        svgs.append(svg.read_text(encoding="utf-8"))
        return path

    monkeypatch.setattr(plots, "_save", save_and_svg)
    drawn, notes = plots.all_plots(_cells(tmp_path / "r"), tmp_path / "png")
    assert notes == [] and [p.kind for p in drawn] == (["flops_latency", "params_memory", "pareto_front"]
                                                       + ["latency_cdf", "power_timeline"] * 3
                                                       + ["energy_throughput"])
    assert all(p.path.stat().st_size > 1000 for p in drawn)
    text = "\n".join(svgs)
    for name in HOSTILE:  # each name, as written: the 4 plots naming points, its CDF and power titles
        assert text.count(html.escape(name, quote=False)) >= 6, name
    assert text.count(html.escape(DEVICE, quote=False)) >= 6  # the per-device titles and the legend


def test_host_report_html_on_a_model_named_with_math_text(tmp_path):
    name = "x$\\foo^^$y"
    shutil.copy(FIX / "tiny_cnn.onnx", tmp_path / f"{name}.onnx")
    shutil.copy(FIX / "identity.onnx", tmp_path / "plain.onnx")
    env = {**os.environ, "COLUMNS": "200"}

    def host(*args):
        return subprocess.run([sys.executable, "-m", "host", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    bench = host("bench", f"{name}.onnx", "plain.onnx", "--device", "local", "--campaign", "m",
                 "--results", "res", *NULL)
    assert bench.returncode in (0, 3), bench.stdout + bench.stderr  # VALID or (busy machine) INVALID
    report = host("report", "res/m", "--html")
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stdout + report.stderr
    page = (tmp_path / "res" / "m" / "report.html").read_text(encoding="utf-8")
    assert html.escape(name) in page and page.count("<img ") >= 4


@pytest.mark.parametrize("name", HOSTILE)
def test_one_cell_cdf_with_a_hostile_name(tmp_path, name):
    cells = [c for c in _cells(tmp_path / "r") if c["cell"]["model_stem"] == name]
    assert plots.latency_cdf(cells[0], tmp_path / "png").stat().st_size > 1000
