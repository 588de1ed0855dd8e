"""A short real campaign on this machine with the null backend: what tests/test_reference.py,
tests/test_device_store.py and tests/test_auto_calibrate.py run (`host bench --device local`,
real runner processes, the real reference workload), in seconds."""

from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "fixtures" / "models" / "identity.onnx"
FAST = ["--device", "local", "--backend", "null", "--warmup-iters", "2", "--warmup-s", "0",
        "--min-iters", "20", "--min-s", "0.05", "--target-ci", "0.5", "--max-s", "5"]
MEASURED = (0, 3)  # VALID or INVALID: the verdict is not what these tests are about
runner = CliRunner()
