"""``host zoo list`` names every example model (the trained ``digits_cnn`` too); ``zoo quantize``
warns on stderr when it calibrates on random data; "footprint" has one meaning (``host models``:
weights + largest activation) and ``zoo quantize`` names its own figure ``stored_weight_bytes``."""

import json
from pathlib import Path

from typer.testing import CliRunner

from host.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "models"
DIGITS = EXAMPLES / "digits_cnn.onnx"
CALIBRATION = ROOT / "examples" / "datasets" / "digits" / "calibration"
runner = CliRunner()


def host(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})


def test_zoo_list_names_every_bundled_model_with_its_weights_and_maker():
    res = host("zoo", "list", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert {p.stem for p in EXAMPLES.glob("*.onnx")} <= set(rows)  # digits_cnn included
    digits = rows["digits_cnn"]
    assert digits["weights"] == "trained" and digits["bundled"] and digits["input_shape"] == [1, 1, 8, 8]
    assert digits["command"] == json.loads(DIGITS.with_suffix(".info").read_text())["command"]
    assert rows["squeezenet1_1_imagenet"]["command"] == "host zoo export --only squeezenet1_1_imagenet"
    table = host("zoo", "list")
    assert table.exit_code == 0 and "digits_cnn" in table.stdout and "trained" in table.stdout


def test_quantize_warns_on_random_calibration_only(tmp_path):
    res = host("zoo", "quantize", DIGITS, "--int8", "--samples", "4", "--cache-dir", tmp_path, "--json")
    assert res.exit_code == 0, res.output
    assert "warning: calibrated on random data (random seed=0" in res.stderr
    assert "--calibration-data DIR" in res.stderr
    json.loads(res.stdout)  # stdout stays JSON
    res = host("zoo", "quantize", DIGITS, "--int8", "--samples", "4", "--cache-dir", tmp_path,
               "--calibration-data", CALIBRATION, "--json")
    assert res.exit_code == 0, res.output
    assert "warning" not in res.stderr


def test_footprint_has_one_meaning(tmp_path):
    res = host("zoo", "quantize", DIGITS, "--int8", "--samples", "4", "--cache-dir", tmp_path, "--json")
    doc = json.loads(res.stdout)
    for metrics in (doc["metrics"], doc["source_metrics"]):
        assert "footprint_bytes" not in metrics
        assert metrics["stored_weight_bytes"] == metrics["weight_bytes"] + metrics["qparam_bytes"]
    models = host("models", DIGITS, "--json")
    assert models.exit_code == 0, models.output
    m = json.loads(models.stdout)["digits_cnn"]
    assert m["footprint_bytes"] == m["weight_bytes"] + m["largest_activation_bytes"]
    table = host("zoo", "quantize", DIGITS, "--int8", "--samples", "4", "--cache-dir", tmp_path)
    assert "stored weight bytes" in table.stdout and "│ footprint" not in table.stdout
