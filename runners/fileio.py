"""Files every part of edgegauge writes: atomically (temp file in the same folder, fsync, rename,
fsync of the folder) and with the mode of an ordinary new file (0666 less the umask).

Standard library and numpy only (numpy lazily, to write its scalars as JSON), like all of runners/;
the host imports its writers from here too.
"""

from __future__ import annotations

import json
import os
import secrets


def fsync_dir(folder) -> None:
    """fsync a folder, so that a rename inside it survives a crash (``rename(2)`` is atomic but
    not durable until its folder is synced). A no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(os.fspath(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def new_temp(folder, prefix: str = ".tmp-", suffix: str = "", directory: bool = False):
    """A new, empty file (``directory``: folder) with a random name in ``folder``, created with
    the mode every tool gives a new file: 0666 (0777) less the user's umask, applied by the
    kernel (``tempfile.mkstemp``/``mkdtemp`` give 0600/0700, which would make results private).
    Returns ``(fd, path)`` for a file (open for writing), ``(None, path)`` for a folder.
    Raises OSError when ``folder`` is not writable.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        path = os.path.join(os.fspath(folder), prefix + secrets.token_hex(4) + suffix)
        try:
            if directory:
                os.mkdir(path, 0o777)
                return None, path
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")  # pragma: no cover


def write_atomic(path, write, *, suffix: str = "", newline: str | None = None, binary: bool = False) -> None:
    """Call ``write(fh)`` on a text file (``binary``: a binary one) that becomes ``path`` only
    when complete (temp file in the same folder, fsync, rename, fsync of the folder). A reader
    never sees a partial file; an interrupted write leaves no ``path``. Raises OSError when the
    folder is not writable or full.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = new_temp(folder, suffix=suffix)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline)) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(folder)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json_atomic(doc: dict, path: str) -> None:
    """Write ``doc`` as JSON to ``path`` atomically (:func:`write_atomic`).

    Raises OSError when the folder is not writable.
    """
    def write(fh):
        json.dump(doc, fh, indent=2, sort_keys=False, allow_nan=False, default=_json_default)
        fh.write("\n")

    write_atomic(path, write, suffix=".json")


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
