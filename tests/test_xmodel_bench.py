"""`host bench` with compiled .xmodel files: planned only on vart devices (and .onnx only on
the others), shipped to the board content-addressed with their suffix, and run by the vart
backend — whose runtime (xir, vart) this machine lacks, so the cell fails saying so."""

import hashlib
import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from host.cli import app

FIX = Path(__file__).resolve().parent / "fixtures" / "models"
runner = CliRunner()


def test_xmodels_go_to_vart_boards_only_and_arrive_with_their_suffix(boards, tmp_path):
    for name in boards.names:
        shutil.rmtree(boards.workdir(name))
        boards.workdir(name)
    xmodel = tmp_path / "m" / "net.xmodel"
    xmodel.parent.mkdir()
    xmodel.write_bytes(b"\x00compiled for a DPU (stand-in bytes)\x00")
    shutil.copy(FIX / "identity.onnx", tmp_path / "m" / "identity.onnx")
    inv = boards.write_inventory(tmp_path / "lab.ini", devices=["b1", "b2"])
    text = inv.read_text().replace("[boards]\nb1 ", "[boards]\nb1 runtime=vart ")
    inv.write_text(text)
    res = runner.invoke(app, ["bench", str(tmp_path / "m"), "-i", str(inv), "--all", "--results",
                              str(tmp_path / "r"), "--campaign", "x", "--warmup-iters", "1",
                              "--warmup-s", "0", "--min-iters", "5", "--min-s", "0.01", "--target-ci", "0.5",
                              "--json"])
    cells = {(c["cell"]["device"], c["cell"]["model_stem"]): c for c in json.loads(res.stdout)}
    assert set(cells) == {("b1", "net"), ("b2", "identity")}, res.output  # formats the boards run
    sha = hashlib.sha256(xmodel.read_bytes()).hexdigest()
    assert (boards.workdir("b1") / "models" / f"{sha}.xmodel").read_bytes() == xmodel.read_bytes()
    vart = cells[("b1", "net")]
    assert vart["status"] == "failed" and "vart" in vart["error"]["message"]  # no vart/xir here
    assert vart["metrics"]["error"]["type"] == "CompiledModel" and "fidelity" not in vart
    assert cells[("b2", "identity")]["status"] != "failed"
    plan = json.loads((tmp_path / "r" / "x" / "campaign.json").read_text())
    assert sorted(map(tuple, plan["runs"][-1]["unplanned"])) == [("b1", "identity.onnx", "vart"),
                                                                  ("b2", "net.xmodel", "ort")]
