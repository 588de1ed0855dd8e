"""The ``host`` command line: parse, call the library, render; the only place errors become exits."""

from host.cli.main import app, main

__all__ = ["app", "main"]
