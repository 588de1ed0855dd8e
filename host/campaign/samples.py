"""The per-iteration samples of a cell, kept next to it: ``<cell>.samples.npz``.

numpy's compressed ``.npz`` (zip of ``.npy`` arrays; readable anywhere numpy is):

* ``latency_ns`` — int64, every kept iteration in run order, sessions concatenated;
* ``session_offsets`` — int64, shape (sessions + 1,): session k is
  ``latency_ns[offsets[k]:offsets[k+1]]``;
* ``session_process`` — int32, shape (sessions,): the process (0-based, in run order) of
  each session;
* ``thinned_every`` — int64 scalar: 1, or k when only every k-th iteration of each session
  was kept.

Size: about 3–5 bytes per iteration after compression. Above :data:`MAX_SAMPLES`
iterations per cell, every session is thinned systematically (every k-th iteration, time
order kept), so percentiles, drift and bootstrap intervals stay computable and the file
stays under ~5 MB; ``thinned_every`` records k.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from runners.fileio import write_atomic

#: Most iterations kept per cell (about 8 MB raw, 3-5 MB compressed).
MAX_SAMPLES = 1 << 20
SUFFIX = ".samples.npz"


def write_samples(path: Path, processes: list) -> dict:
    """Write ``processes`` (per process, per session, an int64 array of latencies in ns)
    to ``path`` atomically. Returns the cell's ``samples`` block: ``file``, ``format``,
    ``iterations`` (kept), ``thinned_every``, ``bytes``.

    Raises:
        OSError: the folder is not writable.
    """
    sessions = [np.asarray(s, dtype=np.int64) for per in processes for s in per]
    owner = [i for i, per in enumerate(processes) for _ in per]
    total = sum(s.size for s in sessions)
    every = max(1, -(-total // MAX_SAMPLES))
    kept = [s[::every] for s in sessions]
    offsets = np.concatenate([[0], np.cumsum([s.size for s in kept])]).astype(np.int64)
    path = Path(path)

    def write(fh):
        np.savez_compressed(fh, latency_ns=np.concatenate(kept) if kept else np.zeros(0, np.int64),
                            session_offsets=offsets, session_process=np.asarray(owner, dtype=np.int32),
                            thinned_every=np.int64(every))

    write_atomic(path, write, suffix=".npz", binary=True)
    return {"file": path.name, "format": "npz", "iterations": int(offsets[-1]), "thinned_every": every,
            "bytes": path.stat().st_size}


def read_samples(path: Path) -> list:
    """The samples of ``path`` as written: per process, per session, int64 ns arrays.

    Raises:
        OSError: unreadable; ValueError: not a samples file (not a zip, truncated, corrupt
        compressed data, arrays missing or inconsistent with each other).
    """
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            lat, off, owner = (np.asarray(z[k]) for k in ("latency_ns", "session_offsets", "session_process"))
    except KeyError as exc:
        raise ValueError(f"{path}: not an edgegauge samples file (no array {exc})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a readable samples file ({type(exc).__name__}: {exc})") from None
    _check(path, lat, off, owner)
    out: list = [[] for _ in range(int(owner.max()) + 1 if owner.size else 0)]
    for k, proc in enumerate(owner.tolist()):
        out[proc].append(lat[off[k]:off[k + 1]].astype(np.int64))
    return out


def _check(path, lat, off, owner) -> None:
    """Raises ValueError unless the three arrays fit together as :func:`write_samples` writes them."""
    ints = all(a.dtype.kind in "iu" for a in (lat, off, owner))
    if not ints or lat.ndim != 1 or off.ndim != 1 or owner.ndim != 1 or off.size != owner.size + 1:
        raise ValueError(f"{path}: not an edgegauge samples file (array types or shapes do not fit)")
    if off[0] != 0 or off[-1] != lat.size or np.any(np.diff(off) < 0):
        raise ValueError(f"{path}: session_offsets do not cover latency_ns in order")
    if owner.size and (owner.min() < 0 or owner.max() >= owner.size):
        raise ValueError(f"{path}: session_process names a process that cannot exist")
