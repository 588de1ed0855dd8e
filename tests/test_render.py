"""The terminal table of `host bench` / `host report` (host/cli/render.py): the columns that
appear only when the cells call for them, on cells written by hand."""

from rich.console import Console

from host.cli.render import bench_table


def cell(model, level="host_call", power=None, batch=1):
    doc = {"cell": {"campaign": "c", "device": "d", "model_stem": model, "config": f"ort-b{batch}-tall"},
           "status": "ok", "verdict": {"result": "VALID"}, "metrics": {"params": 1234567, "flops": 2e6},
           "latency": {"level": level, "latency_ms_p50": 1.25, "processes": 5},
           "memory": {"rss_mib_peak": 70.0}, "host": {"config": {"batch": batch}}}
    if power is not None:
        doc["power"] = power
    return doc


def text(table) -> str:
    console = Console(width=250, record=True)
    console.print(table)
    return console.export_text()


def test_power_and_energy_columns_appear_with_power_and_the_level_is_named():
    plain = text(bench_table([cell("a"), cell("b")]))
    assert "W mean" not in plain and "mJ/inf" not in plain and "level" not in plain.split("\n")[1]
    assert "p50 (host_call: what is timed)" in plain and "1.23 M" in plain
    shown = text(bench_table([cell("a", power={"power_w_mean": 4.567, "energy_mj_per_inference": 12.3456}),
                              cell("b", power={"meter": "um25c", "error": "no meter"})]))
    assert "W mean" in shown and "mJ/inf" in shown
    row_a = next(line for line in shown.splitlines() if line.startswith("│ a "))
    assert "4.57" in row_a and "12.346" in row_a


def test_mixed_levels_get_a_column_and_a_batch_sweep_a_batch_column():
    shown = text(bench_table([cell("a", level="host_call"), cell("a", level="device_compute", batch=8)]))
    header = next(line for line in shown.splitlines() if "p50 ms" in line)
    assert "level" in header and "batch" in header
    assert "device_compute" in shown
