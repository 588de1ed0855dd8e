"""One options object (issue 21): ``host bench`` builds a frozen :class:`CampaignOptions` once and the
campaign's functions take it whole, so a new flag touches the dataclass, the command line and the
one place that reads it — no parameter list in between (``--profile`` went through five)."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from host.campaign import plan, run, worker
from host.campaign.options import CampaignOptions
from host.lab.benchconfig import BenchConfig

OPTION_NAMES = {f.name for f in dataclasses.fields(CampaignOptions)}


def _params(func) -> set:
    return set(inspect.signature(func).parameters)


def test_no_campaign_function_threads_an_option_by_name():
    """Between the command line and the worker, options travel as one object."""
    for func in (run.run_campaign, run._run_locked, plan.plan_work, worker.BoardWorker.__init__):
        assert not _params(func) & (OPTION_NAMES - {"options"}), func.__qualname__
    assert "options" in _params(plan.plan_work)


def test_the_options_are_frozen_and_their_batch_axis_defaults_to_the_configuration():
    opts = CampaignOptions(config=BenchConfig(batch=4), results=Path("r"), campaign="c")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.profile = True
    assert opts.batch_axis == (4,)
    assert dataclasses.replace(opts, batches=(1, 8)).batch_axis == (1, 8)


def test_options_given_twice_are_refused(tmp_path):
    opts = CampaignOptions(config=BenchConfig(backend="null"), results=tmp_path, campaign="c")
    with pytest.raises(TypeError, match="options given twice"):
        run.run_campaign([], [], opts, profile=True)
    assert not list(tmp_path.iterdir())  # refused before a folder is made
