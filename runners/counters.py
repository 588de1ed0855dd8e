"""Hardware and software counters around one timed loop: Linux ``perf stat`` (standard library only).

Method (``python -m runners run --counters``): the runner starts

    perf stat -x, -e EVENTS -p <own pid> -o FILE --control fifo:CTL,ACK -D -1

before the timed loop of session 0. ``-D -1`` opens every counter *disabled*; the runner writes
``enable`` to the control FIFO and waits for perf's ``ack`` right before the loop, and ``disable``
(again acknowledged) right after it; then it sends perf SIGINT, perf writes FILE and exits. The
counted window is therefore the loop itself — not perf's start-up, not the attach latency (which
a plain ``perf stat -p`` started before the loop would either miss or include, by an unknown
amount), not the parse. ``-p`` counts every thread of the process (the runtime's thread pool
included); perf >= 5.9 is needed for ``--control``. Older perf, no perf, or a
``perf_event_paranoid`` that forbids it: the block says so (``available: false`` and the reason);
the measurement itself is never failed by counters.

Events: ModelGauge's eight hardware events (:data:`MODELGAUGE_EVENTS`) plus three software ones
(:data:`SOFTWARE_EVENTS`), which work without a PMU (in VMs and containers too).

Parsing (:func:`parse_perf_csv`) follows perf-stat(1), ``-x SEP``: optional interval/aggregation
prefix fields, then ``value, unit, event, run time, percent enabled[, metric value, metric unit]``
(``-r`` inserts a variance field after the event). ``<not supported>`` and ``<not counted>`` are
recorded as such, with a reason, and their count is ``None`` — never 0. A percentage below 100
means the kernel multiplexed the counter (perf scaled the count up from a sample): recorded as
``multiplexed``. Hybrid CPUs print one line per PMU (``cpu_core/cycles/``, ``cpu_atom/cycles/``):
the counted parts are summed.

Derived figures (:func:`derive`): IPC = instructions / cycles; cache miss rate = cache-misses /
cache-references; L1D miss rate = L1-dcache-load-misses / L1-dcache-loads; per-inference counts
(count / timed iterations, one ``infer()`` call); SMIR = dTLB load misses per inference / latency
in ms / 10^6 (issue 15; latency = the counted loop's mean latency, so SMIR is millions of dTLB
load misses per millisecond of inference).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time

#: ModelGauge's hardware events, in its order.
MODELGAUGE_EVENTS = (
    "cpu-cycles", "instructions", "cache-references", "cache-misses",
    "L1-dcache-loads", "L1-dcache-load-misses", "branch-misses", "dTLB-load-misses",
)
#: Software events (no PMU needed).
SOFTWARE_EVENTS = ("task-clock", "context-switches", "page-faults")
DEFAULT_EVENTS = MODELGAUGE_EVENTS + SOFTWARE_EVENTS
#: perf's alternative spellings -> the names used here.
ALIASES = {"cycles": "cpu-cycles", "cpu-clock": "cpu-clock"}

NOT_SUPPORTED = "<not supported>"
NOT_COUNTED = "<not counted>"
REASONS = {
    "not supported": "perf reported <not supported>: this CPU/PMU (or the VM or container) does not "
                     "provide the event",
    "not counted": "perf reported <not counted>: the counter was opened but never ran in the window "
                   "(no free counter, or a core type the process did not run on)",
}
_UNIT = re.compile(r"^[A-Za-z%/]*$")


def canonical(name: str) -> str:
    """The event's name without PMU prefix and modifiers: ``cpu_core/cycles/`` -> ``cpu-cycles``,
    ``instructions:u`` -> ``instructions``, ``armv8_pmuv3_0/l1d_cache/u`` -> ``l1d_cache``."""
    base = name.strip()
    if "/" in base:
        parts = base.split("/")
        base = parts[1] if len(parts) > 1 and parts[1] else parts[0]
    base = base.split(":")[0]
    return ALIASES.get(base, base)


def _number(text: str):
    """int or float of a perf count field, None when it is not a number."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _is_count(text: str) -> bool:
    return text in (NOT_SUPPORTED, NOT_COUNTED) or _number(text) is not None


def _event_index(fields: list) -> int | None:
    """Index of the event-name field: the first k >= 2 with a count at k-2, a unit (empty or
    letters: msec, ns, Joules) at k-1 and a name with a letter at k."""
    for k in range(2, len(fields)):
        name = fields[k]
        if not name or _number(name) is not None or not re.search(r"[A-Za-z]", name):
            continue
        if _is_count(fields[k - 2]) and _UNIT.match(fields[k - 1]) and fields[k - 2]:
            return k
    return None


def parse_line(line: str, sep: str = ",") -> dict | None:
    """One ``perf stat -x SEP`` line as ``{"event", "value", "unit", "status", "run_time",
    "percent_enabled", "variance", "metric"}``; None for comments, blanks and metric-only lines.
    ``value`` is None unless ``status`` is "counted"."""
    line = line.rstrip("\n")
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    fields = [f.strip() for f in line.split(sep)]
    k = _event_index(fields)
    if k is None:
        return None
    raw, rest = fields[k - 2], fields[k + 1:]
    variance = None
    if rest and rest[0].endswith("%"):  # -r: variance right after the event (perf-stat(1))
        variance, rest = rest[0], rest[1:]
    run_time = _number(rest[0]) if len(rest) > 0 and rest[0] else None
    pct = _number(rest[1]) if len(rest) > 1 and rest[1] else None
    metric = [m for m in rest[2:4] if m] or None
    status = {NOT_SUPPORTED: "not supported", NOT_COUNTED: "not counted"}.get(raw, "counted")
    return {"event": fields[k], "value": _number(raw) if status == "counted" else None,
            "unit": fields[k - 1], "status": status, "run_time": run_time,
            "percent_enabled": None if pct is None else float(pct), "variance": variance,
            "metric": metric}


def parse_perf_csv(text: str, sep: str = ",") -> dict:
    """Every event of a ``perf stat -x SEP`` output, keyed by :func:`canonical` name.

    Each value: ``{"count": number or None, "unit", "status": "counted" | "not supported" |
    "not counted", "supported": bool, "reason": None or why, "percent_enabled": lowest of its
    lines (None when perf printed none), "multiplexed": percent < 100, "run_time": sum, "names":
    perf's names}``. Lines of one event (hybrid PMUs, or several intervals) are summed over the
    counted ones; the event is "counted" when any line was."""
    events = {}
    for line in text.splitlines():
        rec = parse_line(line, sep)
        if rec is not None:
            events.setdefault(canonical(rec["event"]), []).append(rec)
    return {name: _merge(recs) for name, recs in events.items()}


def _merge(recs: list) -> dict:
    counted = [r for r in recs if r["status"] == "counted"]
    status = "counted" if counted else ("not counted" if any(r["status"] == "not counted" for r in recs)
                                        else "not supported")
    pcts = [r["percent_enabled"] for r in counted if r["percent_enabled"] is not None]
    runs = [r["run_time"] for r in counted if r["run_time"] is not None]
    count = None
    if counted:
        values = [r["value"] for r in counted]
        count = sum(values) if all(isinstance(v, int) for v in values) else float(sum(values))
    return {
        "count": count, "unit": recs[0]["unit"], "status": status, "supported": bool(counted),
        "reason": None if counted else REASONS[status],
        "percent_enabled": min(pcts) if pcts else None,
        "multiplexed": bool(pcts) and min(pcts) < 100.0,
        "run_time": sum(runs) if runs else None,
        "names": [r["event"] for r in recs],
        "parts_not_counted": [r["event"] for r in recs if r["status"] != "counted"] if counted else [],
    }


def _ratio(events: dict, num: str, den: str):
    """(value, note): num / den when both were counted and den > 0, else None and why."""
    for name in (num, den):
        ev = events.get(name)
        if ev is None:
            return None, f"{name} not measured"
        if not ev["supported"]:
            return None, f"{name}: {ev['status']}"
    if not events[den]["count"]:
        return None, f"{den} is 0"
    return events[num]["count"] / events[den]["count"], None


def derive(events: dict, iterations: int, latency_ms_total: float, window_ms: float | None = None) -> dict:
    """Derived figures from :func:`parse_perf_csv` ``events`` over a window of ``iterations``
    timed ``infer()`` calls whose latencies sum to ``latency_ms_total`` ms; the window lasted
    ``window_ms`` (the loop's wall time; default ``latency_ms_total``). ``cpus_utilized`` =
    task-clock ms / ``window_ms``.

    Returns ``{"per_inference": {event: count / iterations}, "ipc", "cache_miss_rate",
    "l1d_miss_rate", "branch_misses_per_inference", "dtlb_load_misses_per_inference",
    "smir", "task_clock_ms_per_inference", "cpus_utilized", "unavailable": {figure: why},
    "multiplexed_inputs": [events scaled by perf]}``; a figure whose inputs were not counted is
    None (its reason in ``unavailable``), never 0."""
    n = max(int(iterations), 1)
    per = {k: ev["count"] / n for k, ev in events.items() if ev["supported"]}
    out, why = {"per_inference": per}, {}
    for key, num, den in (("ipc", "instructions", "cpu-cycles"),
                          ("cache_miss_rate", "cache-misses", "cache-references"),
                          ("l1d_miss_rate", "L1-dcache-load-misses", "L1-dcache-loads")):
        out[key], note = _ratio(events, num, den)
        if note:
            why[key] = note
    for key, name in (("branch_misses_per_inference", "branch-misses"),
                      ("dtlb_load_misses_per_inference", "dTLB-load-misses"),
                      ("task_clock_ms_per_inference", "task-clock")):
        out[key] = per.get(name)
        if out[key] is None:
            why[key] = f"{name}: {events[name]['status']}" if name in events else f"{name} not measured"
    mean_ms = latency_ms_total / n if latency_ms_total > 0 else None
    dtlb = out["dtlb_load_misses_per_inference"]
    out["smir"] = dtlb / mean_ms / 1e6 if dtlb is not None and mean_ms else None
    if out["smir"] is None:
        why["smir"] = why.get("dtlb_load_misses_per_inference", "no latency")
    task = events.get("task-clock")
    wall = window_ms if window_ms else latency_ms_total
    out["cpus_utilized"] = (task["count"] / wall if task and task["supported"]
                            and task["unit"] == "msec" and wall > 0 else None)
    out["unavailable"] = why
    out["multiplexed_inputs"] = sorted(k for k, ev in events.items() if ev["multiplexed"])
    return out


# --------------------------------------------------------------------------- the perf process


class CountersUnavailable(Exception):
    """perf could not count this window (the block records the reason; the run goes on)."""


class PerfStat:
    """``perf stat`` attached to this process, counting only between :meth:`enable` and
    :meth:`disable` (see the module docstring). Use :meth:`start`, :meth:`enable`, the loop,
    :meth:`disable`, :meth:`finish`; :meth:`close` always."""

    def __init__(self, events=DEFAULT_EVENTS, perf: str = "perf", timeout_s: float = 10.0):
        self.events = tuple(events)
        self.perf = perf
        self.timeout_s = timeout_s
        self.dir = None
        self.proc = None
        self.ctl = self.ack = None
        self.argv = []

    def start(self) -> None:
        """Start perf (counters disabled) and wait until its control FIFO is open.
        Raises CountersUnavailable (perf missing, or exited: its stderr is the reason)."""
        exe = shutil.which(self.perf)
        if exe is None:
            raise CountersUnavailable(f"{self.perf} not found on PATH (install linux-perf / linux-tools)")
        self.dir = tempfile.mkdtemp(prefix="eg-perf-")
        ctl, ack = os.path.join(self.dir, "ctl"), os.path.join(self.dir, "ack")
        os.mkfifo(ctl)
        os.mkfifo(ack)
        self.argv = [exe, "stat", "-x,", "-e", ",".join(self.events), "-p", str(os.getpid()),
                     "-o", os.path.join(self.dir, "out.csv"), "--control", f"fifo:{ctl},{ack}", "-D", "-1"]
        with open(os.path.join(self.dir, "stderr"), "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err)
        self.ack = os.open(ack, os.O_RDONLY | os.O_NONBLOCK)
        deadline = time.monotonic() + self.timeout_s
        while self.ctl is None:
            try:
                self.ctl = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise CountersUnavailable(self._why("perf did not open its control FIFO")) from None
                time.sleep(0.002)

    def _command(self, word: str) -> None:
        """Write ``word`` to the control FIFO and wait for perf's ``ack``."""
        os.write(self.ctl, word.encode() + b"\n")
        buf, deadline = b"", time.monotonic() + self.timeout_s
        while b"ack" not in buf:
            left = deadline - time.monotonic()
            ready = select.select([self.ack], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                raise CountersUnavailable(self._why(f"perf did not acknowledge {word!r}"))
            try:
                chunk = os.read(self.ack, 64)
            except BlockingIOError:
                continue
            if not chunk and self.proc.poll() is not None:
                raise CountersUnavailable(self._why(f"perf exited before acknowledging {word!r}"))
            buf += chunk

    def enable(self) -> None:
        self._command("enable")

    def disable(self) -> None:
        self._command("disable")

    def finish(self) -> str:
        """Stop perf (SIGINT) and return its CSV output. Raises CountersUnavailable."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise CountersUnavailable("perf did not exit after SIGINT") from None
        try:
            with open(os.path.join(self.dir, "out.csv"), encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            raise CountersUnavailable(self._why("perf wrote no output")) from None

    def _why(self, what: str) -> str:
        try:
            with open(os.path.join(self.dir, "stderr"), encoding="utf-8", errors="replace") as fh:
                tail = " ".join(fh.read().split())[-400:]
        except OSError:
            tail = ""
        return f"{what}: {tail}" if tail else what

    def close(self) -> None:
        """Close the FIFOs, end perf if still running, remove the temporary folder."""
        for fd in (self.ctl, self.ack):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.ctl = self.ack = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def perf_version(perf: str = "perf") -> str | None:
    """``perf --version`` (e.g. "perf version 6.1.187"), None when perf does not run."""
    try:
        p = subprocess.run([perf, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() or None


def unavailable_block(reason: str, events=DEFAULT_EVENTS) -> dict:
    """The ``counters`` block when nothing could be counted."""
    return {"available": False, "reason": reason, "tool": "perf stat", "requested": list(events)}


def counters_block(csv_text: str, *, events, iterations: int, latency_ms_total: float,
                   samples_per_call: int, session: int, argv: list, version,
                   window_ms: float | None = None) -> dict:
    """The result's ``counters`` block from perf's CSV over one timed loop."""
    parsed = parse_perf_csv(csv_text)
    warnings = [f"{k}: {ev['reason']}" for k, ev in parsed.items() if not ev["supported"]]
    warnings += [f"{k}: multiplexed, counted {ev['percent_enabled']:.2f} % of the window (perf scaled "
                 "the count up)" for k, ev in parsed.items() if ev["multiplexed"]]
    missing = [e for e in events if canonical(e) not in parsed]
    warnings += [f"{e}: perf printed no line for it" for e in missing]
    return {
        "available": True, "tool": "perf stat", "perf_version": version,
        "method": "perf stat -x, -p <runner pid> --control fifo -D -1: enabled right before the timed "
                  "loop and disabled right after it (session %d)" % session,
        "argv": argv, "session": session, "iterations": iterations, "samples_per_call": samples_per_call,
        "latency_ms_total": latency_ms_total, "window_ms": window_ms, "requested": list(events),
        "events": parsed, "derived": derive(parsed, iterations, latency_ms_total, window_ms),
        "warnings": warnings,
        "raw": csv_text,
    }


class LoopCounters:
    """Counters around one timed loop: :meth:`start` right before it, :meth:`stop` right after
    it, :meth:`close` always. Never raises for perf trouble: the block then says why."""

    def __init__(self, events=DEFAULT_EVENTS, session: int = 0, perf: str = "perf"):
        self.events = tuple(events)
        self.session = session
        self.perf = PerfStat(self.events, perf=perf)
        self.error = None

    def start(self) -> None:
        try:
            self.perf.start()
            self.perf.enable()
        except (CountersUnavailable, OSError) as exc:
            self.error = str(exc)
            self.perf.close()

    def stop(self, latencies_ns, samples_per_call: int, loop_ns: int | None = None) -> dict:
        """The ``counters`` block for the loop whose per-call latencies (ns) are ``latencies_ns``
        and whose wall time was ``loop_ns``."""
        if self.error is not None:
            return unavailable_block(self.error, self.events)
        try:
            self.perf.disable()
            text = self.perf.finish()
        except (CountersUnavailable, OSError) as exc:
            return unavailable_block(str(exc), self.events)
        finally:
            self.perf.close()
        return counters_block(text, events=self.events, iterations=len(latencies_ns),
                              latency_ms_total=sum(latencies_ns) / 1e6, samples_per_call=samples_per_call,
                              session=self.session, argv=self.perf.argv, version=perf_version(self.perf.perf),
                              window_ms=None if loop_ns is None else loop_ns / 1e6)

    def close(self) -> None:
        self.perf.close()
