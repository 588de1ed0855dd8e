"""edgegauge host side: plans, runs and gathers inference benchmarks.

The CLI lives in :mod:`host.cli`; library modules raise :class:`host.errors.HostError`
subclasses and never print or exit.
"""

__version__ = "0.1.0"
