"""The reference workload on a board (:mod:`runners.reference`): one run through the board's
transport, its record in ``campaign.json`` (``reference: {device: [record, ...]}``), the machine
trend within a campaign, and the device's noise levels (``host calibrate``), kept in
``<results>/.devices/<device>.json`` (a dotted folder: no cell scanner reads it).

Noise levels are standard deviations of natural-log latency (≈ relative for small values):
``within_process`` (the calls of one process), ``between_processes`` (the p50 of fresh processes in
one campaign), ``between_campaigns`` (the campaigns' mean, beyond what the processes explain).
"""

from __future__ import annotations

import json
import math
import statistics
import uuid
from pathlib import Path

from host.errors import ReferenceRunError
from runners.reference import BLAS_THREAD_VARS

#: Seconds one reference process may run on a board before it is killed.
TIMEOUT_S = 120.0
#: A reference p50 that moves more than this (relative, median of the last third of the rounds
#: against the first third) within a campaign is a machine trend.
TREND_THRESHOLD = 0.10
#: z of the two-sided 95 % range a "speed varies ±X %" figure gives.
Z95 = 1.96
DEVICES_DIR = ".devices"
#: A device's first campaign calibrates it briefly (host bench --auto-calibrate): this many groups
#: of this many fresh reference processes, about 1 s each.
AUTO_CAMPAIGNS, AUTO_PROCESSES = 3, 2
#: The runner command line of one reference run.
ARGV = ("reference", "--json")
_TOKEN = "edgegauge-cell-ref-"  # a cell token prefix: the board's lease sweep knows it


def run_on_board(board, timeout_s: float = TIMEOUT_S) -> dict:
    """Run ``python -m runners reference --json`` once on ``board`` (prepared: work folder and
    runners there), in a fresh process under a lease like a cell's, one BLAS thread.
    Returns the runner's result document.

    Raises:
        ReferenceRunError: it exited non-zero, timed out or printed no usable result.
        TransportError: the board cannot be reached.
    """
    from host.lab import lease
    from host.lab.shell import sh, words

    token = _TOKEN + uuid.uuid4().hex
    on_kill = (sh(*words(board.device.engine or "docker"), "rm", "-f", token) + " >/dev/null 2>&1"
               if board.container else None)
    command = board.command(list(ARGV), name=token, env={k: "1" for k in BLAS_THREAD_VARS})
    command = lease.leased(command, board.workdir, token, board.lease_tag, on_kill)
    res = board.transport.run(command, timeout=timeout_s, kill_pattern=token, on_kill=on_kill)
    stderr, _ = lease.leftovers(res.stderr)
    if res.timed_out or res.exit_code != 0:
        why = f"timed out after {timeout_s:g} s" if res.timed_out else f"exited with {res.exit_code}"
        raise ReferenceRunError(f"{board.name}: the reference workload {why}: {stderr.strip()[-300:]}",
                                hint=f"run it by hand: `host check --device {board.name}`, then "
                                     "`python -m runners reference` on the board")
    try:
        doc = json.loads(res.stdout)
        p50 = float(doc["latency_ms_p50"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ReferenceRunError(f"{board.name}: the reference workload printed no result JSON ({exc})",
                                hint="check the runners on the board: `host deploy`") from None
    if not (math.isfinite(p50) and p50 > 0):
        raise ReferenceRunError(f"{board.name}: the reference workload's p50 is {p50!r}")
    return doc


def record(doc: dict, round_no: int) -> dict:
    """The ``campaign.json`` record of one reference run in round ``round_no``."""
    return {"round": round_no, "start_utc": (doc.get("timestamps") or {}).get("start_utc"),
            "latency_ms_p50": doc["latency_ms_p50"], "samples": doc.get("samples"),
            "noise_within": doc.get("noise_within"), "others_cpu_share": doc.get("others_cpu_share"),
            "checksum": (doc.get("workload") or {}).get("checksum")}


def _run_numbers(records: list) -> list:
    """The run number (1, 2, ...) of each record, in their order: a campaign's later ``host bench``
    run (a resume, another runtime's command) counts its rounds from 1 again, so a round number not
    above the one before starts a new run."""
    out, run, last = [], 1, None
    for r in records or []:
        n = (r.get("round") or 0) if isinstance(r, dict) else 0
        if last is not None and n <= last:
            run += 1
        out.append(run)
        last = n
    return out


def _at(runs: list, rounds: list, many: bool) -> str:
    """``round 4``, ``rounds 1-9`` or, when the records span several runs, ``run 2 round 27`` /
    ``run 2 round 27 to run 3 round 5``."""
    def one(i):
        return f"run {runs[i]} round {rounds[i]}" if many else f"round {rounds[i]}"

    if len(rounds) == 1:
        return one(0)
    if not many:
        return f"rounds {rounds[0]}-{rounds[-1]}"
    return f"{one(0)} to {one(-1)}"


def _p50s(records: list) -> list:
    """``[(round, p50, run)]`` of the usable records, in their order (the order they ran: a resumed
    campaign's rounds count from 1 again: ``run`` says which run, :func:`_run_numbers`)."""
    out = []
    for r, run in zip(records or [], _run_numbers(records)):
        p50 = r.get("latency_ms_p50") if isinstance(r, dict) else None
        if isinstance(p50, (int, float)) and math.isfinite(p50) and p50 > 0:
            out.append((r.get("round") or 0, float(p50), run))
    return out


def machine_trend(records: list, threshold: float = TREND_THRESHOLD) -> dict | None:
    """The drift of one device's reference runs within a campaign: the median p50 of the last
    third of the rounds (at least one) against the first third's. None with fewer than two runs.

    Returns:
        ``{"first_rounds", "last_rounds", "first_at", "last_at", "first_ms", "last_ms", "change",
        "threshold", "trend"}`` and :func:`_load_trend`'s fields; ``change`` is relative (last / first
        - 1), ``trend`` whether ``|change| > threshold``; ``first_at`` / ``last_at`` name the rounds,
        with their run when the records span several runs of the campaign.
    """
    runs = _p50s(records)
    if len(runs) < 2:
        return None
    k = max(1, len(runs) // 3)
    first, last = runs[:k], runs[-k:]
    first_ms = statistics.median(p for _, p, _ in first)
    last_ms = statistics.median(p for _, p, _ in last)
    change = last_ms / first_ms - 1.0
    many = runs[-1][2] > 1
    return {"first_rounds": [r for r, _, _ in first], "last_rounds": [r for r, _, _ in last],
            "first_at": _at([n for _, _, n in first], [r for r, _, _ in first], many),
            "last_at": _at([n for _, _, n in last], [r for r, _, _ in last], many),
            "first_ms": first_ms, "last_ms": last_ms, "change": change, "threshold": threshold,
            "trend": abs(change) > threshold, **_load_trend(records)}


#: A load step needs this many reference runs on each side of it (medians of fewer follow one spike).
LOAD_SIDE_MIN = 3


def _load_trend(records: list) -> dict:
    """Other processes' CPU use during the reference runs (``others_cpu_share``, share of the
    board's capacity), as a step: of every split of the runs that report it into a before and an
    after of at least :data:`LOAD_SIDE_MIN` runs each, the one that fits them best as two levels
    (:func:`host.campaign.machine.level_step`). A load that starts a few rounds in is found there,
    not only between the first and last thirds.
    Returns ``{"load_first", "load_last", "load_from_round", "load_step"}``: the medians before and
    after that split, the round the after part starts at, and whether they differ by at least
    :data:`host.campaign.machine.LOAD_STEP`; Nones (and False) with fewer than
    2 × :data:`LOAD_SIDE_MIN` such runs."""
    from host.campaign.machine import LOAD_STEP, level_step

    runs = [(r.get("round") or 0, r.get("others_cpu_share"), run)
            for r, run in zip(records or [], _run_numbers(records)) if isinstance(r, dict)]
    runs = [(n, x, run) for n, x, run in runs if isinstance(x, (int, float)) and math.isfinite(x)]
    out = {"load_first": None, "load_last": None, "load_from_round": None, "load_from": None,
           "load_step": False}
    step = level_step([x for _, x, _ in runs], LOAD_SIDE_MIN)
    if step is not None:
        n, _, run = runs[step[2]]
        out.update(load_first=step[0], load_last=step[1], load_from_round=n,
                   load_from=_at([run], [n], runs[-1][2] > 1), load_step=abs(step[1] - step[0]) >= LOAD_STEP)
    return out


def trend_line(device: str, trend: dict | None) -> str | None:
    """One line naming a machine trend — the reference workload's speed moved, or other
    processes' load on the board changed (:func:`machine_trend`) — None when there is none."""
    if not trend or not (trend["trend"] or trend.get("load_step")):
        return None

    def rounds(rs):
        return f"round {rs[0]}" if len(rs) == 1 else f"rounds {rs[0]}-{rs[-1]}"

    parts = []
    if trend["trend"]:
        way = "slower" if trend["change"] > 0 else "faster"
        last = trend.get("last_at") or rounds(trend["last_rounds"])
        first = trend.get("first_at") or rounds(trend["first_rounds"])
        parts.append(f"the reference workload ran {abs(trend['change']):.0%} {way} in {last} "
                     f"({trend['last_ms']:.3g} ms) than in {first} ({trend['first_ms']:.3g} ms), "
                     f"beyond ±{trend['threshold']:.0%}")
    if trend.get("load_step"):
        parts.append(f"other processes used {trend['load_first']:.0%} of its CPU before "
                     f"{trend.get('load_from') or 'round ' + str(trend['load_from_round'])} and "
                     f"{trend['load_last']:.0%} from it on")
    return (f"machine trend on {device}: " + "; ".join(parts)
            + ": the whole board's speed moved, and every cell on it with it")


def campaign_trends(campaign_doc: dict) -> list:
    """The machine-trend lines of a ``campaign.json`` document, one per device that has one."""
    refs = campaign_doc.get("reference") if isinstance(campaign_doc, dict) else None
    if not isinstance(refs, dict):
        return []
    lines = (trend_line(dev, machine_trend(recs if isinstance(recs, list) else []))
             for dev, recs in refs.items())
    return [line for line in lines if line]


# -- device noise levels (host calibrate) ---------------------------------------------------


def noise_levels(campaigns: list) -> dict:
    """The noise levels from reference results grouped by campaign (``[[doc, ...], ...]``, at
    least two runs in one campaign).

    Returns:
        ``{"within_process", "between_processes", "between_campaigns" (None with one campaign),
        "rerun", "varies_pct_95"}``: sds of natural-log latency; ``rerun`` combines the two
        between-run terms, ``varies_pct_95`` is ``100 * (exp(1.96 * rerun) - 1)``.

    Raises:
        ReferenceRunError: no campaign has two usable runs.
    """
    logs = [[math.log(d["latency_ms_p50"]) for d in runs] for runs in campaigns]
    within = [d["noise_within"] for runs in campaigns for d in runs if d.get("noise_within") is not None]
    groups = [g for g in logs if len(g) >= 2]
    if not groups:
        raise ReferenceRunError("too few reference runs to estimate the noise (at least two per campaign)")
    dof = sum(len(g) - 1 for g in groups)
    proc_var = sum(statistics.variance(g) * (len(g) - 1) for g in groups) / dof
    camp_sd = None
    if len(logs) >= 2:
        mean_n = statistics.mean(len(g) for g in logs)
        camp_var = statistics.variance([statistics.mean(g) for g in logs]) - proc_var / mean_n
        camp_sd = math.sqrt(max(0.0, camp_var))
    rerun = math.sqrt(proc_var + (camp_sd or 0.0) ** 2)
    return {"within_process": math.sqrt(statistics.mean(w * w for w in within)) if within else None,
            "between_processes": math.sqrt(proc_var), "between_campaigns": camp_sd, "rerun": rerun,
            "varies_pct_95": 100.0 * (math.exp(Z95 * rerun) - 1.0)}


def device_file(results: Path, device: str) -> Path:
    from host.campaign.store import safe_name

    return Path(results) / DEVICES_DIR / f"{safe_name(device)}.json"


def read_device_noise(results: Path, device: str) -> dict | None:
    """The device's stored noise levels (``host calibrate``), or None when it has none or the file
    is not readable."""
    try:
        doc = json.loads(device_file(results, device).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    noise = doc.get("noise") if isinstance(doc, dict) else None
    return doc if isinstance(noise, dict) and isinstance(noise.get("varies_pct_95"), (int, float)) else None


def varies_line(doc: dict | None) -> str | None:
    """"speed varies ±X % between runs" for a device's noise document (None without one)."""
    if not doc:
        return None
    n = doc["noise"]
    return (f"speed varies ±{n['varies_pct_95']:.1f} % between runs (95 % of re-runs; host calibrate, "
            f"{doc.get('campaigns', '?')} campaigns, {str(doc.get('created_utc', '?'))[:10]})")


def calibrate(device, open_board, campaigns: int, processes: int, on_run=None) -> dict:
    """Run the reference in ``campaigns`` short campaigns on ``device`` (each a fresh connection and
    board lock, ``processes`` fresh processes one after another) and return the device's noise
    document (not stored: :func:`store_device_noise`). ``on_run(campaign, process, doc)`` is
    called after each run.

    Raises:
        CalibrationError: ``campaigns`` or ``processes`` out of range.
        ReferenceRunError: a reference run failed.
        TransportError, BoardBusyError, DeployError: the board cannot be used.
    """
    from host.errors import CalibrationError
    from host.lab.lease import campaign_tag, owner_info

    if not 1 <= campaigns <= 100 or not 2 <= processes <= 100:
        raise CalibrationError(f"--campaigns {campaigns} / --processes {processes}: expected 1..100 "
                               "campaigns and 2..100 processes each", hint="e.g. --campaigns 3 --processes 5")
    runs = []
    for c in range(campaigns):
        board = open_board(device)
        try:
            board.prepare()
            board.lease_tag = campaign_tag(f"calibrate-{uuid.uuid4().hex}")
            board.take_lock(owner_info("host calibrate", board.lease_tag))
            runs.append(_runs(board, c + 1, processes, TIMEOUT_S, on_run))
        finally:
            board.release_lock()
            board.transport.close()
    return noise_document(device.name, runs)


def brief_calibration(board, timeout_s: float = TIMEOUT_S, on_run=None) -> dict:
    """A device's first campaign's calibration (``host bench --auto-calibrate``): the reference in
    :data:`AUTO_CAMPAIGNS` groups of :data:`AUTO_PROCESSES` fresh processes on ``board``, already
    prepared and locked by the campaign. Back to back, the groups see the device's short-term
    moves only; later campaigns add the rest. Returns the noise document (:func:`calibrate`'s).

    Raises:
        ReferenceRunError, TransportError: as :func:`run_on_board`.
    """
    runs = [_runs(board, c + 1, AUTO_PROCESSES, timeout_s, on_run) for c in range(AUTO_CAMPAIGNS)]
    return noise_document(board.name, runs)


def _runs(board, campaign: int, processes: int, timeout_s: float, on_run) -> list:
    docs = []
    for p in range(processes):
        docs.append(run_on_board(board, timeout_s))
        if on_run is not None:
            on_run(campaign, p + 1, docs[-1])
    return docs


def noise_document(device: str, runs: list) -> dict:
    """The device noise document of reference results grouped by campaign (``[[doc, ...], ...]``):
    :func:`noise_levels`, the median p50 and every run's :func:`record`."""
    from runners.reference import NAME
    from runners.util import utc_now

    return {"device": device, "kind": "device_noise", "created_utc": utc_now(), "workload": NAME,
            "checksum": runs[0][0]["workload"]["checksum"], "campaigns": len(runs),
            "processes_per_campaign": len(runs[0]),
            "noise_unit": "sd of natural-log latency (relative for small values)",
            "noise": noise_levels(runs),
            "latency_ms_p50": statistics.median(d["latency_ms_p50"] for r in runs for d in r),
            "runs": [[record(d, c + 1) for d in r] for c, r in enumerate(runs)]}


def store_calibration_history(doc: dict) -> None:
    """File a noise document's runs in the device's history on this host
    (:mod:`host.campaign.device_store`), one entry per calibration campaign. Raises OSError."""
    from host.campaign import device_store

    device_store.add(doc["device"], {f"calibrate {doc['created_utc']} {n}": runs
                                     for n, runs in enumerate(doc["runs"], 1)})


def store_device_noise(results: Path, doc: dict) -> Path:
    """Write ``doc`` to ``<results>/.devices/<device>.json`` atomically and file its runs in the
    device's history on this host (:mod:`host.campaign.device_store`), where campaigns in every
    results folder find them. Raises OSError when either is not writable."""
    from runners.fileio import write_json_atomic

    path = device_file(results, doc["device"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(doc, str(path))
    store_calibration_history(doc)
    return path


def _devices_root(folder: Path) -> Path | None:
    """The results root above (or at) ``folder`` that holds a ``.devices`` folder, if any."""
    folder = Path(folder)
    for cand in [folder, *folder.parents][:3]:
        if (cand / DEVICES_DIR).is_dir():
            return cand
    return None


def folder_lines(folder: Path, devices) -> list:
    """What ``host report`` says about the machines under ``folder``: each device's "speed varies"
    figure (``host calibrate``), and each campaign's machine trends (``campaign.json``)."""
    from host.campaign.store import CAMPAIGN_FILE

    lines = []
    root = _devices_root(folder)
    for dev in sorted(devices):
        line = varies_line(read_device_noise(root, dev)) if root is not None else None
        if line:
            lines.append(f"{dev}: {line}")
    folder = Path(folder)
    files = [folder / CAMPAIGN_FILE, folder.parent / CAMPAIGN_FILE] if folder.is_dir() else []
    files += [p for p in folder.rglob(CAMPAIGN_FILE)
              if not any(x.startswith(".") for x in p.relative_to(folder).parts)] if folder.is_dir() else []
    for path in dict.fromkeys(p.resolve() for p in files if p.is_file()):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        lines += [f"campaign {doc.get('campaign', path.parent.name)}: {t}" for t in campaign_trends(doc)]
    return lines
