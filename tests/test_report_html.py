"""Plots (host/analysis/plots.py) and the self-contained HTML report (host/analysis/html.py,
``host report --html``), on hand-made cells with a samples sidecar, a power CSV and an idle run;
the page is opened in a real headless browser (Debian's chromium)."""

import base64
import io
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from labfix import apt_install
from PIL import Image
from typer.testing import CliRunner

from host.analysis import html as report_html
from host.analysis import plots
from host.campaign.samples import write_samples
from host.campaign.store import cell_path, load_cells, write_cell
from host.cli.main import app
from host.errors import ResultsError
from host.power import Sample, write_power_csv

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ONE = (750, 480)  # plots.FIGSIZE at plots.DPI
TWO = (1100, 480)  # the power timeline with its idle panel
S = 1_000_000_000


def _cell(stem, flops, params, p50, rss, *, device="dev1", status="ok", power=None, samples=None):
    return {
        "schema_version": "2.0", "status": status, "error": None,
        "cell": {"campaign": "c1", "device": device, "model_stem": stem, "config": "ort-b1-t1"},
        "metrics": {"params": params, "flops": flops},
        "latency": {"latency_ms_p50": p50, "latency_ms_p50_ci95": [p50 * 0.95, p50 * 1.1],
                    "latency_ms_p50_ci95_rel": 0.075, "latency_ms_p99": p50 * 1.5, "processes": 5,
                    "throughput_sps": 1000 / p50, "level": "host_call"},
        "memory": {"rss_mib_peak": rss},
        "verdict": {"result": "VALID" if status == "ok" else "INVALID",
                    "checks": {"no_drift": status == "ok"},
                    "reasons": [] if status == "ok" else ["drift: the loop got slower; let the board cool"]},
        "precision": {"name": "fp32"}, "host": {"config": {"batch": 1}},
        "fidelity": {"top1_agreement": 1.0, "warnings": ["fidelity low on output x"]},
        "manifest": {"device": {"hostname": "board-1", "cpu_model": "Cortex-A76", "cpu_count": 4,
                                "arch": "aarch64", "memory_mib_total": 8000.0}},
        "runtime": {"name": "onnxruntime", "version": "1.99", "provider": "CPUExecutionProvider"},
        **({"power": power} if power else {}), **({"samples": samples} if samples else {}),
    }


def _power_block(stem):
    return {"meter": {"meter": "ina226", "scope": "board-input", "update_interval_s": 0.1},
            "samples_file": f"{stem}__ort-b1-t1.power.csv", "samples_total": 31,
            "idle": {"id": "idle-1", "power_w_idle": 2.0, "power_w_std": 0.01, "n_samples": 20,
                     "stable": True},
            "window_start_ns": 101 * S, "window_end_ns": 102 * S, "power_w_idle": 2.0, "power_w_mean": 5.0,
            "power_w_peak": 5.2, "energy_mj_per_inference": 0.8, "energy_mj_per_inference_dynamic": 0.5,
            "throughput_cps": 6000.0, "throughput_per_watt_mean": 1200.0,
            "verdict": {"result": "VALID", "reasons": [], "warnings": ["update interval > 0.1 x window"]}}


SAMPLES = [[np.array([5, 3, 9, 4], dtype=np.int64) * 100_000, np.array([7, 2], dtype=np.int64) * 100_000],
           [np.array([11, 6, 8], dtype=np.int64) * 100_000]]


def _campaign(root):
    """Three cells on dev1 (one with samples, power and an idle run; one INVALID), one on dev2."""
    specs = [("small", 1e6, 1e4, 0.5, 40.0), ("mid", 1e7, 1e5, 2.0, 60.0), ("big", 1e8, 1e6, 9.0, 90.0)]
    for i, (stem, flops, params, p50, rss) in enumerate(specs):
        path = cell_path(root, "c1", "dev1", stem, "ort-b1-t1")
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {}
        if stem == "small":
            extra["samples"] = write_samples(path.with_name(f"{stem}__ort-b1-t1.samples.npz"), SAMPLES)
            extra["power"] = _power_block(stem)
            _power_files(path.parent, stem)
        write_cell(path, _cell(stem, flops, params, p50, rss, status="invalid" if i == 1 else "ok", **extra))
    other = cell_path(root, "c1", "dev2", "small", "ort-b1-t1")
    other.parent.mkdir(parents=True, exist_ok=True)
    write_cell(other, _cell("small", 1e6, 1e4, 3.0, 41.0, device="dev2"))
    return load_cells(root)


def _power_files(folder, stem):
    cell = [Sample(t_mono_ns=100 * S + k * S // 10, t_wall_ns=k, power_w=5.0 if 10 <= k <= 20 else 2.0,
                   phase="cell") for k in range(31)]
    write_power_csv(folder / f"{stem}__ort-b1-t1.power.csv", cell)
    idle = [Sample(t_mono_ns=10 * S + k * S // 10, t_wall_ns=k, power_w=2.0 + 0.01 * (k % 3),
                   phase="settle" if k < 10 else "idle") for k in range(30)]
    write_power_csv(folder / "idle-1.power.csv", idle)
    write_cell(folder / "idle-1.json", {"id": "idle-1", "samples_file": "idle-1.power.csv",
                                        "window_start_ns": 11 * S, "window_end_ns": 13 * S})


def _png_size(path_or_bytes):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    assert data[:8] == PNG_MAGIC
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return img.size


def _by_stem(cells, stem, device="dev1"):
    return next(c for c in cells if c["cell"]["model_stem"] == stem and c["cell"]["device"] == device)


# --------------------------------------------------------------------------- plots


def test_the_cdf_is_every_stored_iteration_sorted(tmp_path):
    cells = _campaign(tmp_path / "r")
    cell = _by_stem(cells, "small")
    every = np.concatenate([s for per in SAMPLES for s in per])
    assert np.array_equal(plots.cell_samples_ns(cell), every)
    xs, ys = plots.ecdf(plots.cell_samples_ns(cell))
    assert np.array_equal(xs, np.sort(every))
    assert np.allclose(ys, np.arange(1, every.size + 1) / every.size) and ys[-1] == 1.0
    path = plots.latency_cdf(cell, tmp_path / "p")
    assert path.name.startswith("cdf__") and _png_size(path) == ONE


def test_the_cdf_needs_a_samples_file(tmp_path):
    cells = _campaign(tmp_path / "r")
    with pytest.raises(ResultsError, match="no stored samples"):
        plots.latency_cdf(_by_stem(cells, "mid"), tmp_path / "p")


def test_loglog_fit_recovers_a_power_law():
    x = np.array([1e6, 1e7, 1e8, 3e8])
    slope, intercept, r = plots.loglog_fit(x, 3e-7 * x ** 0.9)
    assert slope == pytest.approx(0.9) and intercept == pytest.approx(np.log10(3e-7))
    assert r == pytest.approx(1)
    assert plots.loglog_fit([5.0, 5.0], [1.0, 2.0]) is None  # one distinct x: no line


def test_pareto_mask():
    front = plots.pareto_mask([1, 2, 3, 4, 2], [5, 3, 4, 1, 3])
    assert front.tolist() == [True, True, False, True, True]  # (3, 4) is beaten by (2, 3); ties stay


def test_per_device_plots_are_pngs(tmp_path):
    cells = _campaign(tmp_path / "r")
    for fn in (plots.flops_latency, plots.params_memory, plots.pareto_front):
        path = fn(cells, tmp_path / "p", "dev1")
        assert path.parent == tmp_path / "p" and _png_size(path) == ONE and path.stat().st_size > 5000
    with pytest.raises(ResultsError, match="nowhere"):
        plots.flops_latency(cells, tmp_path / "p", "nowhere")


def test_power_timeline_with_and_without_the_idle_run(tmp_path):
    cells = _campaign(tmp_path / "r")
    cell = _by_stem(cells, "small")
    assert _png_size(plots.power_timeline(cell, tmp_path / "p")) == TWO
    (tmp_path / "r" / "c1" / "dev1" / "idle-1.json").unlink()
    assert _png_size(plots.power_timeline(cell, tmp_path / "q")) == ONE
    with pytest.raises(ResultsError, match="no power samples"):
        plots.power_timeline(_by_stem(cells, "mid"), tmp_path / "p")


def test_energy_throughput_needs_power(tmp_path):
    cells = _campaign(tmp_path / "r")
    assert _png_size(plots.energy_throughput(cells, tmp_path / "p")) == ONE
    with pytest.raises(ResultsError, match="no power"):
        plots.energy_throughput([c for c in cells if "power" not in c], tmp_path / "p")


def test_all_plots_lists_what_it_drew_and_why_not(tmp_path):
    cells = _campaign(tmp_path / "r")
    drawn, notes = plots.all_plots(cells, tmp_path / "p")
    kinds = [p.kind for p in drawn]
    assert len(kinds) == 9
    assert kinds.count("flops_latency") == kinds.count("params_memory") == kinds.count("pareto_front") == 2
    assert kinds.count("latency_cdf") == 1 and kinds.count("power_timeline") == 1
    assert kinds.count("energy_throughput") == 1
    assert sum("no stored samples" in n for n in notes) == 3  # mid, big, dev2's small
    assert all(p.path.is_file() for p in drawn)


# --------------------------------------------------------------------------- html


def test_the_page_escapes_result_strings_and_has_power_columns(tmp_path):
    cells = _campaign(tmp_path / "r")
    cells[0]["cell"]["model_stem"] = "<script>alert(1)</script>"
    page = report_html.render_html(cells, "t & <b>", [], [])
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "t &amp; &lt;b&gt;" in page
    head, _, power = report_html.results_columns(cells)
    assert power and "energy mJ/inf" in head and "level" in head and "prec" in head
    head, _, power = report_html.results_columns([c for c in cells if "power" not in c])
    assert not power and "energy mJ/inf" not in head


def test_warning_lines_name_every_reason(tmp_path):
    lines = report_html.warning_lines(_campaign(tmp_path / "r"))
    assert "dev1 / mid / ort-b1-t1: INVALID: drift: the loop got slower; let the board cool" in lines
    assert any("power warning: update interval" in x for x in lines)
    assert sum("fidelity warning: fidelity low" in x for x in lines) == 4


class _Dom(HTMLParser):
    """Tables (rows of cell texts) and <img> sources of a page."""

    def __init__(self):
        super().__init__()
        self.tables, self.imgs, self._cell = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.imgs.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _chromium():
    if shutil.which("chromium") is None:
        apt_install(["chromium"], "the HTML report test opens the page in a headless chromium")
    return shutil.which("chromium")


def test_the_page_renders_in_a_headless_browser(tmp_path):
    browser = _chromium()
    cells = _campaign(tmp_path / "r")
    page = report_html.write_html(cells, tmp_path / "out" / "report.html", title="r")
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = _Dom()
    parsed.feed(dom.stdout)
    devices, results = parsed.tables[0], parsed.tables[1]
    assert devices[0][1:] == ["dev1c1", "dev2c1"] and ["cpu_model", "Cortex-A76", "Cortex-A76"] in devices
    assert len(results) == 1 + len(cells)
    header = results[0]
    rows = {(r[0], r[1]): dict(zip(header, r)) for r in results[1:]}
    assert rows[("dev1", "small")]["energy mJ/inf"] == "0.8"
    assert rows[("dev2", "small")]["energy mJ/inf"] == "-"
    assert rows[("dev1", "mid")]["verdict"].startswith("INVALID")
    assert rows[("dev1", "big")]["verdict"] == "VALID"
    assert rows[("dev1", "big")]["p50 ms"] == "9" and rows[("dev1", "big")]["CI95 ms"] == "8.55–9.9 (±7.5 %)"
    sizes = []
    for img in parsed.imgs:
        head, _, data = img["src"].partition(",")
        assert head == "data:image/png;base64"
        sizes.append(_png_size(base64.b64decode(data, validate=True)))
    # 2 devices x 3 per-device plots, the CDF, the power timeline, energy vs throughput
    assert len(sizes) == 9 and sizes.count(TWO) == 1 and sizes.count(ONE) == 8
    shot = tmp_path / "shot.png"
    r = subprocess.run([*args, f"--screenshot={shot}", "--window-size=1400,2000", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (2000, 1400) and img.std() > 10  # drawn, not a blank page


def test_host_report_html_writes_the_page(tmp_path):
    _campaign(tmp_path / "r")
    result = CliRunner().invoke(app, ["report", str(tmp_path / "r"), "--html", "--out", str(tmp_path / "o")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    page = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert page.count("<img ") == 9 and "http://" not in page and "https://" not in page
    assert "<script" not in page
    assert f"wrote {tmp_path / 'o' / 'report.html'}" in " ".join(result.output.split())


def test_the_page_has_the_correlation_table_of_devices_with_three_models(tmp_path):
    cells = _campaign(tmp_path / "r")
    page = report_html.render_html(cells, "t", [], [])
    assert "<h2>Correlations</h2>" in page
    r = np.corrcoef([1e6, 1e7, 1e8], [0.5, 2.0, 9.0])[0, 1]  # dev1's FLOPs and p50, by numpy
    row = next(line for line in page.splitlines() if "flops → latency_ms" in line and ">dev1<" in line)
    assert f"<td>{r:.3f}</td>" in row and "<td>3</td>" in row
    assert ">dev2<" not in page.split("<h2>Correlations</h2>")[1].split("</table>")[0]  # one model only


def test_the_page_judges_the_budgets_given_to_host_report(tmp_path):
    """``host report --html --memory-mib 60``: the page's budgets column holds the memory check too,
    judged by the one rule (mnv2_w1 peaks 70..75 MiB over its processes: wholly above 60)."""
    from advise_cells import family, write_cells

    root = write_cells(tmp_path / "results", family())
    result = CliRunner().invoke(app, ["report", str(root), "--out", str(tmp_path / "out"), "--html",
                                      "--memory-mib", "60"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<th>budgets</th>" in page.replace(' class="left"', "")
    row = next(r for r in page.split("<tr") if ">mnv2_w1_cifar10<" in r)
    assert "✗ misses</span>: latency" in row and "memory <span" in row
    assert "rss_mib_peak 75 (70–75) ≤ 60 MiB" in row
