"""Shared pytest fixtures (lab helpers live in tests/labfix.py), and the grouping that lets
pytest-xdist run the suite on two workers (README "Tests"): see :func:`xdist_group_of`."""

import functools
import inspect
import os
import re

import labfix
import pytest


@pytest.fixture(scope="session", autouse=True)
def _local_workdir(tmp_path_factory):
    """`--device local` gets a work folder of its own per test session, so its board lock and
    leases never meet another pytest process's or a real campaign's on this machine."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEGAUGE_LOCAL_WORKDIR", str(tmp_path_factory.mktemp("local-work")))
    # the device history too (host.campaign.device_store): module fixtures that bench run
    # before _device_history gives each test its own
    mp.setenv("EDGEGAUGE_STATE_DIR", str(tmp_path_factory.mktemp("session-state")))
    # every test's store is empty, so every bench would be a device's first campaign and calibrate
    # (about 6 s): off, except in the tests of it (tests/test_auto_calibrate.py)
    mp.setenv("EDGEGAUGE_AUTO_CALIBRATE", "0")
    # `--device local` reads this machine's own power counters when it has no meter (host/power/local.py):
    # none in the suite, on every machine (an empty sysfs root, no nvidia-smi), so a real RAPL or GPU
    # never adds an idle window to a test; tests/test_meters_rapl.py points them at fakes
    mp.setenv("EDGEGAUGE_POWER_SYSFS_ROOT", str(tmp_path_factory.mktemp("no-power-sysfs")))
    mp.setenv("EDGEGAUGE_NVIDIA_SMI", str(tmp_path_factory.mktemp("no-nvidia-smi") / "nvidia-smi"))
    # the thermal sampler (host/thermal/) likewise finds no source on any machine, so a laptop's clocks never
    # add a 'throttled' warning to a test's cell; tests/test_thermal.py uses fakes, and this machine's own
    # sources in its live campaign
    mp.setenv("EDGEGAUGE_THERMAL_SYSFS_ROOT", str(tmp_path_factory.mktemp("no-thermal-sysfs")))
    nothing = tmp_path_factory.mktemp("no-thermal-tools")
    mp.setenv("EDGEGAUGE_THERMAL_VCGENCMD", str(nothing / "vcgencmd"))
    mp.setenv("EDGEGAUGE_THERMAL_NVIDIA_SMI", str(nothing / "nvidia-smi"))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _device_history(tmp_path_factory, monkeypatch):
    """Each test gets an empty device history (host.campaign.device_store), so no test sees the
    campaigns of another test or of a real lab on this machine."""
    monkeypatch.setenv("EDGEGAUGE_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session")
def ssh_boards(tmp_path_factory):
    """Three loopback OpenSSH boards b1, b2, b3 (labfix.Boards) for the whole session.

    Tests should request ``boards`` instead: it restarts boards an earlier test stopped.
    """
    boards = labfix.Boards(tmp_path_factory.mktemp("boards"), names=("b1", "b2", "b3"))
    try:
        yield boards
    finally:
        boards.close()


@pytest.fixture
def boards(ssh_boards):
    """``ssh_boards`` with every board up (restarts boards stopped by earlier tests)."""
    for name in ssh_boards.stopped():
        ssh_boards.start(name)
    return ssh_boards


@pytest.fixture(scope="session")
def podman_engine():
    """labfix.PodmanEngine(engine, run_args, image) with localhost/edgegauge/test-python:dev built."""
    return labfix.podman_engine()


def pytest_addoption(parser):
    group = parser.getgroup("edgegauge hardware")
    group.addoption("--meter-port", default=None,
                    help="serial port of a real power meter for the meter_hw tests (opt-in)")
    group.addoption("--meter", default="um25c", help="meter name for --meter-port [um25c]")
    group.addoption("--board", default=None,
                    help="inventory name of a real board for the board_hw tests (opt-in)")
    group.addoption("--board-inventory", default="inventory.ini",
                    help="inventory that holds --board [inventory.ini]")
    group.addoption("--board-become-password-file", default=None,
                    help="file with the sudo password of --board, when its sudo wants one")
    group.addoption("--gpu", action="store_true", default=False,
                    help="run the gpu tests on this machine's NVIDIA GPU (CUDA, onnxruntime-gpu, nvidia-smi)")
    group.addoption("--qemu-arm64", action="store_true", default=False,
                    help="also build the ARM-CPU image for linux/arm64 under QEMU (slow, opt-in)")


#: marker -> (option that enables it, skip reason)
OPT_IN = {
    "meter_hw": ("--meter-port", "real meter test: pass --meter-port PORT [--meter NAME]"),
    "board_hw": ("--board", "real board test: pass --board NAME [--board-inventory FILE]"),
    "qemu_arm64": ("--qemu-arm64", "arm64 image build under QEMU: pass --qemu-arm64"),
    "gpu": ("--gpu", "needs an NVIDIA GPU: pass --gpu"),
}

#: marker -> environment variable that enables it too (CI sets EDGEGAUGE_QEMU_ARM64=1: the arm64
#: build takes about 6 min from cold, under the 15 min the provisioning issue allows in CI).
ENABLE_ENV = {"qemu_arm64": "EDGEGAUGE_QEMU_ARM64"}


#: A test that times real inference: `host bench` (in-process or a subprocess), run_campaign,
#: Board.run_cell, or a module's ``_bench`` helper in its own source.
TIMED_SOURCE = re.compile(r"""["']bench["']|\brun_campaign\(|\.run_cell\(|\b_bench\(""")


@functools.lru_cache(maxsize=None)
def _times_inference(function) -> bool:
    try:
        return bool(TIMED_SOURCE.search(inspect.getsource(function)))
    except (OSError, TypeError):
        return False


def xdist_group_of(item) -> "str | None":
    """The xdist group of a test (``--dist loadgroup``: a group runs on one worker, in order).

    ``qemu-arm64``: the arm64 image build (about 6 min), alone so it starts first;
    ``module:<file>``: the tests of a file that use one of its module-scoped fixtures (a fixture is
    built once per worker: the provisioned boards of test_provision.py, the image builds of
    test_images.py that share podman's storage and tags);
    ``timed``: every test that times real inference, one after another, never two at once;
    None: the rest (nothing timed), spread over the workers one test at a time.
    """
    if "qemu_arm64" in item.keywords:
        return "qemu-arm64"
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    if any(d and d[-1].scope == "module" for d in defs.values()):
        return f"module:{item.path.name}"
    function = getattr(item, "function", None)
    return "timed" if function is not None and _times_inference(function) else None


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group markers
def pytest_collection_modifyitems(config, items):
    enabled = set()
    for marker, (option, reason) in OPT_IN.items():
        if config.getoption(option) or os.environ.get(ENABLE_ENV.get(marker, "-")) == "1":
            enabled.add(marker)
            continue
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)
    groups = {item.nodeid: xdist_group_of(item) for item in items}
    for item in items:
        if groups[item.nodeid]:
            item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    # xdist hands out work in this order (--no-loadscope-reorder): the long arm64 build first
    # (when enabled), then the timed group, so neither starts last; the rest fills in around them
    first = {"qemu-arm64": 0 if "qemu_arm64" in enabled else 3, "timed": 1}
    items.sort(key=lambda item: first.get(groups[item.nodeid], 2))
    if getattr(config.option, "loadgroup", False):  # an xdist worker under --dist loadgroup
        _name_groups_in_ids(items, groups)


def _name_groups_in_ids(items, groups) -> None:
    """Append ``@group`` to each grouped test's id, as pytest-xdist does for loadgroup: xdist 3.8
    rewrites ``item._nodeid``, which pytest 9 no longer reads (the id is ``item._id``), so without
    this every group was silently ignored and its tests spread over both workers."""
    from _pytest.nodeid import NodeId

    for item in items:
        group = groups[item.nodeid]
        if group and hasattr(item, "_id") and not item.nodeid.endswith(f"@{group}"):
            item._id = NodeId.parse(f"{item.nodeid}@{group}")


@pytest.fixture(scope="session")
def hw_board(pytestconfig):
    """The real board named by ``--board``: its :class:`host.lab.inventory.Device` from
    ``--board-inventory``. Only board_hw tests use it (they are skipped without --board)."""
    from host.lab.inventory import load_inventory

    name = pytestconfig.getoption("--board")
    if not name:
        pytest.skip("real board test: pass --board NAME")
    inventory = load_inventory(pytestconfig.getoption("--board-inventory"))
    return inventory.select([name], [], False)[0]
