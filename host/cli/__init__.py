"""The ``host`` command line: commands parse options, call the library and render; the only
place where typed errors become messages and exit codes."""

from host.cli.main import app, main

__all__ = ["app", "main"]
