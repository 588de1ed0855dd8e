"""Shared pytest fixtures (lab helpers live in tests/labfix.py)."""

import labfix
import pytest


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


def pytest_collection_modifyitems(config, items):
    if config.getoption("--meter-port"):
        return
    skip = pytest.mark.skip(reason="real meter test: pass --meter-port PORT [--meter NAME]")
    for item in items:
        if "meter_hw" in item.keywords:
            item.add_marker(skip)
