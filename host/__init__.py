"""edgegauge host side: plans, runs and gathers inference benchmarks.

Sub-packages, by layer (each imports only from those below it, and from :mod:`runners`):

* :mod:`host.cli` — commands: parse, call, render; the only place errors become messages;
* :mod:`host.analysis` — reports over stored cells;
* :mod:`host.campaign` — plan, run, resume, cell store;
* :mod:`host.lab`, :mod:`host.power`, :mod:`host.models` — boards and transports; meters and
  power statistics; static model metrics and the zoo;
* :mod:`host.errors` — every typed error of the host library.

Library modules raise :class:`host.errors.HostError` subclasses and never print or exit.
"""

from pathlib import Path

__version__ = "0.1.0"

#: The checkout this package runs from (``playbooks/``, ``images/``, ``examples/`` live there).
REPO_ROOT = Path(__file__).resolve().parent.parent
