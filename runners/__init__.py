"""edgegauge runners: self-contained benchmark runners for device images.

Imports only the standard library and numpy at module level; each backend imports its
runtime lazily. ``python -m runners --help`` lists the commands.
"""

__version__ = "0.1.0"

#: Version of the result JSON document (see README, "Result format").
SCHEMA_VERSION = "2.0"
