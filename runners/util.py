"""Small helpers shared by the runners and the host (the host imports runners, never the reverse).

Standard library only; runs on Python 3.8.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """sha256 (64 lowercase hex digits) of a file's bytes, read ``chunk`` bytes at a time.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def utc_now() -> str:
    """Now, UTC, ISO 8601 to the second (``2026-11-24T05:12:00Z``): every ``*_utc`` field of
    results, campaigns and power files, and image ``created`` labels. Sub-second timing is
    in the ``*_monotonic_ns`` fields, never here."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
