"""Issue 20 (items 4-resume, 5, 6, 7): `host bench` on hostile campaign folders and names.

Every test drives the real CLI (`host bench --device local --backend null`) on the real file
system (tmpfs mounts for read-only ones); the name functions get hypothesis property tests.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from host.cli import app

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "models"
HOSTILE = ROOT / "tests" / "fixtures" / "hostile" / "campaigns"
FAST = ["--backend", "null", "--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "20", "--min-s", "0.05",
        "--target-ci", "0.5", "--max-s", "5"]
MEASURED = (0, 3)  # VALID or INVALID: the verdict is not what these tests are about
runner = CliRunner()


def bench(models, results, campaign="c"):
    return runner.invoke(app, ["bench", *map(str, models), "--results", str(results), "--campaign", campaign,
                               *FAST], env={"COLUMNS": "400"})


def flat(result) -> str:
    return " ".join(result.output.split())


def assert_no_traceback(result):
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def tmpfs(tmp_path):
    """A fresh tmpfs (root only): made read-only by the tests with `mount -o remount,ro`."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def remount_ro(mnt: Path):
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)


# -- item 4: resume moves an unusable cell aside and measures it again --------------------------

@pytest.mark.parametrize("corrupt", [
    b"[1, 2, 3]\n",  # a list
    b'{"schema_version": "2.0", "status": "ok", "latency": "x"',  # truncated
    "hand-edited",  # a string where a number belongs
])
def test_resume_moves_an_unusable_cell_aside_and_measures_it_again(tmp_path, corrupt):
    res = tmp_path / "r"
    first = bench([FIX / "identity.onnx"], res)
    assert first.exit_code in MEASURED, first.output
    folder = res / "c" / "local"
    cell = folder / "identity__null-b1-tall.json"
    sidecar = folder / "identity__null-b1-tall.samples.npz"
    assert sidecar.exists()
    if corrupt == "hand-edited":
        doc = json.loads(cell.read_text())
        doc["latency"]["latency_ms_p50"] = "fast"
        corrupt = json.dumps(doc).encode()
    cell.write_bytes(corrupt)
    old_samples = sidecar.read_bytes()

    again = bench([FIX / "identity.onnx"], res)
    assert_no_traceback(again)
    assert again.exit_code in MEASURED, again.output
    moved = sorted(p.name for p in folder.glob("identity__null-b1-tall.*.corrupt-*"))
    assert [n.split(".corrupt-")[0] for n in moved] == ["identity__null-b1-tall.json",
                                                        "identity__null-b1-tall.samples.npz"]
    stamp = moved[0].split(".corrupt-")[1]
    assert (folder / moved[0]).read_bytes() == corrupt  # kept as it was, never deleted
    assert (folder / f"identity__null-b1-tall.samples.npz.corrupt-{stamp}").read_bytes() == old_samples
    fresh = json.loads(cell.read_text())
    assert fresh["cell"]["model_stem"] == "identity" and fresh["status"] in ("ok", "invalid")
    assert "1 run, 0 kept" in flat(again) and "moved aside" in flat(again)
    log = json.loads((res / "c" / "campaign.json").read_text())["runs"][-1]["moved_aside"]
    assert {e["file"] for e in log} == {"local/identity__null-b1-tall.json",
                                        "local/identity__null-b1-tall.samples.npz"}
    assert all(e["problem"] and "identity__null-b1-tall.json" in e["problem"] for e in log)


# -- item 5: a corrupt campaign.json is refused, nothing changed ------------------------------

EXPECTED = {k: v for k, v in json.loads((HOSTILE / "expected.json").read_text()).items()
            if not k.startswith("_")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_corrupt_campaign_file_is_refused_and_nothing_changes(tmp_path, name):
    res = tmp_path / "r"
    (res / "c" / "local").mkdir(parents=True)
    shutil.copy(HOSTILE / name, res / "c" / "campaign.json")
    (res / "c" / "local" / "other__null-b1-tall.json").write_text('{"kept": true}\n')
    before = snapshot(res)
    result = bench([FIX / "identity.onnx"], res)
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    out, want = flat(result), EXPECTED[name]
    assert sorted(EXPECTED) == sorted(p.name for p in HOSTILE.glob("*.json") if p.name != "expected.json")
    assert f"{res / 'c' / 'campaign.json'}: " in out
    assert want["says"] in out and (f": {want['field']}: " in out if want["field"] else True)
    assert "nothing was changed" in out and "--campaign" in out  # how to recover
    assert snapshot(res) == before


# -- item 6: long names --------------------------------------------------------------------------

@pytest.mark.parametrize("stem", ["m" * 245, "m.b" * 83], ids=["245-chars", "250-chars-with-dots"])
def test_a_long_model_name_is_stored_once_and_kept_on_resume(tmp_path, stem):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(FIX / "identity.onnx", models / f"{stem}.onnx")
    res = tmp_path / "r"
    first = bench([models], res)
    assert_no_traceback(first)
    assert first.exit_code in MEASURED, first.output
    [cell] = (res / "c" / "local").glob("*.json")
    assert len(os.fsencode(cell.name)) + len(".corrupt-20261207T000000Z-99") <= 255
    assert json.loads(cell.read_text())["cell"]["model_stem"] == stem  # the full name, inside the cell
    before = cell.read_bytes()
    again = bench([models], res)
    assert again.exit_code in MEASURED and "0 run, 1 kept" in flat(again), again.output
    assert cell.read_bytes() == before


def test_a_300_character_campaign_name_runs_and_resumes(tmp_path):
    name = "campaign-" + "c" * 291
    res = tmp_path / "r"
    first = bench([FIX / "identity.onnx"], res, campaign=name)
    assert_no_traceback(first)
    assert first.exit_code in MEASURED, first.output
    [folder] = res.iterdir()
    assert len(os.fsencode(folder.name)) <= 255
    assert json.loads((folder / "campaign.json").read_text())["campaign"] == name
    [cell] = (folder / "local").glob("*.json")
    assert json.loads(cell.read_text())["cell"]["campaign"] == name
    again = bench([FIX / "identity.onnx"], res, campaign=name)
    assert again.exit_code in MEASURED and "0 run, 1 kept" in flat(again), again.output


# -- item 7: where the results go ----------------------------------------------------------------

@pytest.mark.parametrize("where", ["results", "campaign", "device"])
def test_a_file_in_place_of_a_results_folder_is_refused_before_measuring(tmp_path, where):
    res = tmp_path / "r"
    blocker = {"results": res, "campaign": res / "c", "device": res / "c" / "local"}[where]
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("mine\n")
    before = snapshot(tmp_path)
    result = bench([FIX / "identity.onnx"], res)
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    assert f"{blocker} is a file, not a folder" in flat(result)
    assert snapshot(tmp_path) == before  # nothing measured, nothing written


def test_a_read_only_results_file_system_is_refused_before_measuring(tmpfs):
    remount_ro(tmpfs)
    result = bench([FIX / "identity.onnx"], tmpfs / "r")
    assert_no_traceback(result)
    assert result.exit_code == 1 and "Read-only file system" in flat(result), result.output
    assert f"{tmpfs / 'r'}" in flat(result)


def test_resuming_on_a_file_system_made_read_only_is_refused_before_measuring(tmpfs):
    res = tmpfs / "r"
    assert bench([FIX / "identity.onnx"], res).exit_code in MEASURED
    models = tmpfs.parent / "models"
    models.mkdir()
    shutil.copy(FIX / "identity.onnx", models)
    shutil.copy(FIX / "tiny_cnn.onnx", models)  # a new cell to measure
    before = snapshot(res)
    remount_ro(tmpfs)
    result = bench([models], res)
    assert_no_traceback(result)
    assert result.exit_code == 1 and "Read-only file system" in flat(result), result.output
    assert "cannot write in the results folder" in flat(result)
    assert snapshot(res) == before


# -- name sanitising: property tests --------------------------------------------------------------

ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=400)
# few characters, so that names that differ only in characters sanitising replaces come up often
NEAR = st.text(st.sampled_from("ab_ .~/é\x00-"), max_size=12)
LONGEST_EXTRA = len(".corrupt-20261207T000000Z-99")


def _component_ok(name: str, limit: int):
    assert name and name not in (".", "..") and "/" not in name and "\x00" not in name
    assert len(name.encode("utf-8")) <= limit <= 255


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT, ANY_TEXT)
@example("a b", "a_b")
@example("m" * 300, "x")
@example("\udcff", "")
def test_names_never_raise_and_are_one_bounded_path_component(text, config):
    from host.campaign.store import cell_name, safe_name

    _component_ok(safe_name(text), 255)
    name = cell_name(text, config)
    _component_ok(name, 255 - LONGEST_EXTRA)
    for suffix in (".samples.npz", ".power.csv", ".profile.json"):
        _component_ok(name[: -len(".json")] + suffix, 255)


@settings(max_examples=300, deadline=None)
@given(st.one_of(NEAR, ANY_TEXT), st.one_of(NEAR, ANY_TEXT), st.one_of(NEAR, ANY_TEXT),
       st.one_of(NEAR, ANY_TEXT))
@example("a b", "ort", "a_b", "ort")
@example("a__b", "c", "a", "b__c")
@example("a_", "_b", "a", "__b")
@example("m" * 200 + "1", "c", "m" * 200 + "2", "c")
def test_distinct_cells_never_share_a_file_unless_the_stems_are_refused(s1, c1, s2, c2):
    """Two distinct (model stem, config) pairs share a file name only when their configurations
    are equal and their stems sanitise alike: discover_models refuses those two models."""
    from host.campaign.store import STEM_BYTES, cell_name, safe_name

    if (s1, c1) != (s2, c2) and cell_name(s1, c1) == cell_name(s2, c2):
        assert c1 == c2 and safe_name(s1, STEM_BYTES) == safe_name(s2, STEM_BYTES)


def test_models_named_alike_are_refused_when_short_and_both_measured_when_long(tmp_path):
    """The refusal the property above relies on, through the CLI (short names that sanitise alike
    share a file name); long names that sanitise alike are cut with distinct hashes: both measured."""
    for n, (a, b) in enumerate([("a b", "a_b"), ("m" * 160 + " ", "m" * 160 + "_")]):
        for sub, stem in (("one", a), ("two", b)):
            (tmp_path / f"{sub}{n}").mkdir()
            shutil.copy(FIX / "identity.onnx", tmp_path / f"{sub}{n}" / f"{stem}.onnx")
        result = bench([tmp_path / f"one{n}", tmp_path / f"two{n}"], tmp_path / f"r{n}")
        assert_no_traceback(result)
        if n == 0:
            assert result.exit_code == 1 and "would share the cell name" in flat(result), result.output
            continue
        assert result.exit_code in MEASURED, result.output
        cells = (tmp_path / f"r{n}" / "c" / "local").glob("*.json")
        assert {json.loads(p.read_text())["cell"]["model_stem"] for p in cells} == {a, b}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ANY_TEXT, NEAR, ANY_TEXT, st.one_of(NEAR, ANY_TEXT))
def test_a_cell_stored_under_any_names_holds_them_whole(tmp_path, campaign, device, stem, config):
    """Round trip on the real file system: the path can be made, and the cell in it gives back
    every full name (the file name is only a bounded, sanitised form)."""
    from host.campaign.run import build_cell
    from host.campaign.store import cell_path, write_cell
    from host.lab.benchconfig import BenchConfig

    cfg = dataclasses.replace(BenchConfig(backend="null"))
    root = tmp_path / uuid.uuid4().hex
    path = cell_path(root, campaign, device, stem, config)
    assert path.parent.parent.parent == root
    doc = build_cell(None, model=Path("m.onnx"), config=cfg, device=device, campaign=campaign, metrics={},
                     info=None, info_error=None, error={"type": "X", "category": "setup", "message": "-"})
    doc["cell"].update(model_stem=stem, config=config)
    write_cell(path, doc)
    back = json.loads(path.read_text(encoding="utf-8"))["cell"]
    assert back == {"campaign": campaign, "device": device, "model_stem": stem, "config": config}
    shutil.rmtree(root)
