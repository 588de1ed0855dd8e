"""Process memory from ``/proc/self/status`` (Linux).

``VmRSS`` is the current resident set, ``VmHWM`` its high-water mark since the process
started ("peak RSS"; both count mapped shared-library pages as well as heap). Values are
reported in MiB (2**20 bytes). The method is named ``rss_vmhwm`` in results; other
methods (Massif heap, GPU memory) get their own names.
"""

from __future__ import annotations

import os

MEMORY_METHOD = "rss_vmhwm"
_KIB_PER_MIB = 1024.0


def read_status(path: str = "/proc/self/status") -> dict[str, float]:
    """Return ``{"rss_mib": ..., "hwm_mib": ...}`` read from a proc status file.

    Returns an empty dict when the file is unreadable (not Linux); callers then record
    null memory figures rather than guesses.
    """
    out: dict[str, float] = {}
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    kib = float(rest.split()[0])
                    out["rss_mib" if key == "VmRSS" else "hwm_mib"] = kib / _KIB_PER_MIB
    except (OSError, ValueError, IndexError):
        return {}
    return out


class MemoryProbe:
    """Snapshots of RSS at the runner's lifecycle points, for one fresh process.

    Call :meth:`mark` with ``"before_import"`` (interpreter, numpy and the runners
    imported), ``"start"`` (the backend's runtime modules imported, before the first
    session), ``"after_session"`` (first session created) and ``"end"`` (after the last
    timed loop); then :meth:`result` gives the figures below, in MiB:

    * ``rss_mib_runtime_import`` — VmRSS after importing the runtime minus before it;
    * ``rss_mib_before_session`` — VmRSS before the first session is created (runtime
      imported);
    * ``rss_mib_peak`` — VmHWM at the end: the whole process's peak;
    * ``rss_mib_session_delta`` — VmHWM after the first session's creation minus the RSS
      before it: what loading the model cost at its peak (the import is not in it);
    * ``rss_mib_inference_delta`` — VmHWM at the end minus VmHWM after session creation:
      the further peak growth from input buffers, warm-up, the timed loops and later
      sessions.
    """

    def __init__(self, status_path: str = "/proc/self/status"):
        self.status_path = status_path
        self.points: dict[str, dict[str, float]] = {}

    def mark(self, point: str) -> None:
        self.points[point] = read_status(self.status_path)

    def result(self) -> dict:
        before = self.points.get("before_import", {})
        start = self.points.get("start", {})
        sess = self.points.get("after_session", {})
        end = self.points.get("end", {})

        def diff(a, b):
            return None if a is None or b is None else max(a - b, 0.0)

        return {
            "memory_method": MEMORY_METHOD,
            "rss_mib_runtime_import": diff(start.get("rss_mib"), before.get("rss_mib")),
            "rss_mib_before_session": start.get("rss_mib"),
            "rss_mib_after_session": sess.get("rss_mib"),
            "rss_mib_peak": end.get("hwm_mib"),
            "rss_mib_session_delta": diff(sess.get("hwm_mib"), start.get("rss_mib")),
            "rss_mib_inference_delta": diff(end.get("hwm_mib"), sess.get("hwm_mib")),
            "pid": os.getpid(),
        }
