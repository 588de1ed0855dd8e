"""Comparisons of cells: the ratio of two cells' p50 with its 95 % CI and whether the
difference is significant; which models of a campaign are indistinguishable; one campaign
against another (``host compare``); inside one campaign, the cells that differ only in precision,
batch or device (``host compare --by``, :func:`compare_by`, methods in :data:`BY_METHODS`).

Method (``COMPARE_METHOD``): the ratio of the two cells' estimates (median of session
medians, :func:`runners.stats.repetition_interval`), with a percentile interval from the
two-stage bootstrap of each cell (:func:`runners.stats.bootstrap_replicates`). Within a
campaign the board interleaves cells round by round, so the two cells' processes of one
round ran minutes apart at most: the bootstrap draws the same rounds for both (paired),
which cancels drift the two share. Across campaigns the draws are independent. The
difference is significant at the 5 % level when the 95 % interval of the ratio excludes 1
(a bootstrap test by interval inversion: Efron & Tibshirani, *An Introduction to the
Bootstrap*, 1993, §16.4).
"""

from __future__ import annotations

import numpy as np

from runners.stats import BOOTSTRAP_RESAMPLES, MIN_REPETITIONS, bootstrap_replicates

COMPARE_METHOD = "ratio of medians, two-stage bootstrap percentile interval; significant when it excludes 1"


def cell_groups(cell: dict) -> tuple:
    """(per process, its session medians in ms; per process, its round) of a stored cell;
    ([], []) when the cell has no repetitions (failed, or from an older version)."""
    procs = ((cell.get("repetitions") or {}).get("processes")) or []
    return ([[s["latency_ms_p50"] for s in p["sessions"]] for p in procs],
            [p.get("round") for p in procs])


def _paired(a: tuple, b: tuple) -> tuple | None:
    """Both cells' groups restricted to the rounds they share, in the same order; None when
    fewer than MIN_REPETITIONS rounds are shared."""
    ra = {r: g for g, r in zip(*a) if r is not None}
    rb = {r: g for g, r in zip(*b) if r is not None}
    common = sorted(set(ra) & set(rb))
    if len(common) < MIN_REPETITIONS:
        return None
    return [ra[r] for r in common], [rb[r] for r in common]


def ratio(cell_a: dict, cell_b: dict, *, paired: bool = True, seed: int = 0,
          resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """B's p50 over A's (> 1: B is slower) with its 95 % CI (see the module docstring).

    Returns:
        ``{"ratio", "ci95": [lo, hi] | None, "significant": bool | None, "paired": bool,
        "processes": [n_a, n_b], "method"}``; ``ratio`` None when either cell has no
        repetitions; interval and significance None with fewer than MIN_REPETITIONS
        processes on a side.
    """
    a, b = cell_groups(cell_a), cell_groups(cell_b)
    out = {"ratio": None, "ci95": None, "significant": None, "paired": False,
           "processes": [len(a[0]), len(b[0])], "method": COMPARE_METHOD}
    if not a[0] or not b[0]:
        return out
    est = float(np.median(np.concatenate(b[0]))) / float(np.median(np.concatenate(a[0])))
    out["ratio"] = est
    if min(len(a[0]), len(b[0])) < MIN_REPETITIONS:
        return out
    both = _paired(a, b) if paired else None
    if both is not None:
        pick = np.random.default_rng(seed).integers(0, len(both[0]), size=(resamples, len(both[0])))
        ra = bootstrap_replicates(both[0], seed=seed + 1, rounds=pick)
        rb = bootstrap_replicates(both[1], seed=seed + 2, rounds=pick)
    else:
        ra = bootstrap_replicates(a[0], seed=seed + 1, resamples=resamples)
        rb = bootstrap_replicates(b[0], seed=seed + 2, resamples=resamples)
    lo, hi = np.percentile(rb / ra, (2.5, 97.5))
    out.update({"ci95": [float(lo), float(hi)], "significant": bool(lo > 1.0 or hi < 1.0),
                "paired": both is not None})
    return out


def _key(cell: dict) -> tuple:
    c = cell.get("cell") or {}
    return c.get("device"), c.get("model_stem"), c.get("config")


def tie_key(cell: dict) -> tuple:
    """(campaign, device, model, config): the key of :func:`indistinguishable`'s result."""
    return ((cell.get("cell") or {}).get("campaign"), *_key(cell))


def indistinguishable(cells: list) -> dict:
    """Per cell (:func:`tie_key`), the other models of the same campaign, device and
    configuration whose p50 it cannot be told apart from (paired ratio not significant),
    checked between neighbours in p50 order. Cells without an interval are left out."""
    groups: dict = {}
    for cell in cells:
        if (cell.get("latency") or {}).get("latency_ms_p50") is not None and cell_groups(cell)[0]:
            campaign, d, _, cfg = tie_key(cell)
            groups.setdefault((campaign, d, cfg), []).append(cell)
    ties: dict = {}
    for members in groups.values():
        members.sort(key=lambda c: c["latency"]["latency_ms_p50"])
        for x, y in zip(members, members[1:]):
            if ratio(x, y)["significant"] is False:
                ties.setdefault(tie_key(x), []).append(_key(y)[1])
                ties.setdefault(tie_key(y), []).append(_key(x)[1])
    return ties


def compare_campaigns(cells_a: list, cells_b: list, *, fail_above: float | None = None,
                      labels: tuple = ("A", "B")) -> dict:
    """Campaign B against campaign A, cell by cell (matched on device, model, configuration).

    A row's ``change`` is "slower" or "faster" when significant, else "same"; it is a
    ``regression`` when significantly slower by more than ``fail_above`` (0.05 = 5 %).
    ``labels`` name A and B in the error (e.g. their folders).

    Returns:
        ``{"rows": [{"device", "model", "config", "p50_ms_a", "p50_ms_b", **ratio,
        "change", "regression"}], "only_a": [keys], "only_b": [keys], "regressions": int}``.

    Raises:
        NothingToCompareError: no cell of B matches a cell of A (a gate would pass vacuously).
    """
    index_a = {_key(c): c for c in cells_a}
    index_b = {_key(c): c for c in cells_b}
    if not set(index_a) & set(index_b):
        raise _nothing_in_common(index_a, index_b, labels)
    rows = []
    for key in sorted(set(index_a) & set(index_b), key=lambda k: tuple(map(str, k))):
        a, b = index_a[key], index_b[key]
        r = ratio(a, b, paired=False)
        sig = r["significant"]
        change = "same" if not sig else ("slower" if r["ratio"] > 1 else "faster")
        regression = bool(sig and fail_above is not None and r["ratio"] > 1 + fail_above)
        rows.append({"device": key[0], "model": key[1], "config": key[2],
                     "p50_ms_a": (a.get("latency") or {}).get("latency_ms_p50"),
                     "p50_ms_b": (b.get("latency") or {}).get("latency_ms_p50"),
                     **r, "change": change if r["ratio"] is not None else "n/a", "regression": regression})
    return {"rows": rows, "only_a": sorted(set(index_a) - set(index_b), key=lambda k: tuple(map(str, k))),
            "only_b": sorted(set(index_b) - set(index_a), key=lambda k: tuple(map(str, k))),
            "regressions": sum(r["regression"] for r in rows)}


def _nothing_in_common(index_a: dict, index_b: dict, labels: tuple) -> Exception:
    """The :class:`NothingToCompareError` for two campaigns without a common cell."""
    from host.errors import NothingToCompareError

    def some(index: dict) -> str:
        keys = sorted(("/".join(map(str, k)) for k in index), key=str)
        return f"{len(keys)} cell(s): " + (", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "") or "none")

    return NothingToCompareError(
        f"nothing to compare: no cell in common between A = {labels[0]} ({some(index_a)}) and "
        f"B = {labels[1]} ({some(index_b)}); cells match on device/model/configuration",
        hint="compare two campaigns of the same devices, models and configuration "
             "(`host report FOLDER` lists each one's cells)")


# ------------------------------------------------------------------- one campaign, by one axis

AXES = ("precision", "batch", "device")
_Z95 = 1.959963984540054
BY_METHODS = {
    "paired bootstrap": "ratio of medians of session medians; 95 % percentile interval of the two-stage "
                        "bootstrap drawing the same rounds for both cells (paired: shared drift cancels)",
    "bootstrap": "as the paired bootstrap, drawing each cell's processes independently (fewer than 5 "
                 "rounds in common)",
    "from CIs": "ratio of the cells' p50; 95 % interval exp(ln r ± 1.96·√(s_a² + s_b²)), s = each p50 "
                "CI's log half-width / 1.96 (log-normal, cells independent): cells without rounds",
}
_HINTS = {"precision": "bench one campaign with --precision fp32,int8",
          "batch": "bench one campaign with --batch 1,8", "device": "bench one campaign on --devices a,b"}


def axis_value(cell: dict, axis: str):
    """The cell's value on ``axis``: its precision name, batch or device."""
    if axis == "precision":
        return (cell.get("precision") or {}).get("name") or "fp32"
    if axis == "batch":
        return (cell.get("configuration") or {}).get("batch")
    return (cell.get("cell") or {}).get("device")


def _setup(cell: dict, axis: str) -> str:
    """What else identifies the cell's configuration: its stored ``host.config`` without batch,
    precision, slug and timeout, else its slug without the batch and precision parts."""
    config = (cell.get("host") or {}).get("config")
    if isinstance(config, dict):
        drop = {"slug", "timeout_s", "precision", "batch"}
        return repr(sorted((k, repr(v)) for k, v in config.items() if k not in drop))
    parts = str((cell.get("cell") or {}).get("config")).split("-")
    noise = {f"b{axis_value(cell, 'batch')}", axis_value(cell, "precision")} - {"fp32"}
    return "-".join(p for p in parts if p not in noise)


def by_key(cell: dict, axis: str) -> tuple:
    """(campaign, device, model, batch, precision, setup) with ``axis`` left out (None): cells with
    the same key differ only in that axis."""
    info = cell.get("cell") or {}
    key = {"campaign": info.get("campaign"), "device": info.get("device"), "model": info.get("model_stem"),
           "batch": axis_value(cell, "batch"), "precision": axis_value(cell, "precision"),
           "setup": _setup(cell, axis)}
    key[axis] = None
    return tuple(key.values())


def ci_ratio(cell_a: dict, cell_b: dict) -> dict:
    """B's p50 over A's with the 95 % interval from the two cells' p50 CIs (:data:`BY_METHODS`);
    ``ci95`` None when a cell has no CI."""
    lat_a, lat_b = cell_a.get("latency") or {}, cell_b.get("latency") or {}
    pa, pb = lat_a.get("latency_ms_p50"), lat_b.get("latency_ms_p50")
    if not (_positive(pa) and _positive(pb)):
        return {"ratio": None, "ci95": None}
    r = pb / pa
    spreads = [_log_se(lat.get("latency_ms_p50_ci95")) for lat in (lat_a, lat_b)]
    if None in spreads:
        return {"ratio": r, "ci95": None}
    half = _Z95 * float(np.hypot(*spreads))
    return {"ratio": r, "ci95": [r * float(np.exp(-half)), r * float(np.exp(half))]}


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) and x > 0


def _log_se(ci) -> float | None:
    if not (isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_positive(x) for x in ci)):
        return None
    return float(np.log(max(ci)) - np.log(min(ci))) / (2 * _Z95)


def call_of(ci95) -> str:
    """same when the ratio's 95 % interval contains 1, faster when it lies below, slower above;
    n/a without an interval."""
    if not ci95:
        return "n/a"
    return "same" if ci95[0] <= 1.0 <= ci95[1] else ("faster" if ci95[1] < 1.0 else "slower")


def pair_ratio(ref: dict, other: dict, axis: str) -> dict:
    """``other`` against ``ref``: the paired bootstrap ratio (:func:`ratio`) when both cells have
    rounds, else :func:`ci_ratio`; per sample for ``axis`` batch (the per-call ratio times
    batch_ref / batch_other)."""
    r = ratio(ref, other, paired=True)
    method = "paired bootstrap" if r["paired"] else "bootstrap"
    if r["ci95"] is None:
        r, method = ci_ratio(ref, other), "from CIs"
    scale = 1.0
    if axis == "batch":
        scale = float(axis_value(ref, "batch") or 1) / float(axis_value(other, "batch") or 1)
    value = None if r["ratio"] is None else r["ratio"] * scale
    ci95 = None if r["ci95"] is None else [r["ci95"][0] * scale, r["ci95"][1] * scale]
    return {"ratio": value, "ci95": ci95, "method": method, "call": call_of(ci95)}


def compare_by(cells: list, axis: str, reference=None) -> dict:
    """Inside each campaign, every cell against the cell that differs from it only in ``axis``
    and holds the reference value (precision fp32, the smallest batch, the first device by name,
    or ``reference``): B/A latency ratio (per sample for batch) with its 95 % interval and a
    same/faster/slower call.

    Returns:
        ``{"axis", "rows": [{"campaign", "device", "model", "batch", "precision", "a", "b",
        "p50_ms_a", "p50_ms_b", "ratio", "ci95", "method", "call"}], "unpaired": int, "methods":
        {method: how}}`` (only the methods used).

    Raises:
        AnalysisError: an unknown axis; no measured cell; no two cells differ only in ``axis``
            (or none holds ``reference``).
    """
    from host.errors import AnalysisError, NothingToCompareError

    if axis not in AXES:
        raise AnalysisError(f"cannot compare by {axis!r}: one of {', '.join(AXES)}")
    groups: dict = {}
    for cell in sorted((c for c in cells if c.get("status") in ("ok", "invalid")), key=_start):
        groups.setdefault(by_key(cell, axis), {})[axis_value(cell, axis)] = cell
    rows = [row for key, members in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0])))
            for row in _rows(key, members, axis, reference)]
    if not rows:
        seen = sorted({str(axis_value(c, axis)) for c in cells})
        raise NothingToCompareError(
            f"nothing to compare by {axis}: no two measured cells of one campaign differ only in {axis}"
            + (f" with one at {reference}" if reference is not None else "") + f" ({axis}s seen: "
            + (", ".join(seen) or "none") + ")", hint=_HINTS[axis])
    used = {r["method"] for r in rows}
    return {"axis": axis, "rows": rows, "unpaired": sum(len(m) == 1 for m in groups.values()),
            "methods": {m: how for m, how in BY_METHODS.items() if m in used}}


def _start(cell: dict) -> str:
    return str((cell.get("timestamps") or {}).get("start_utc") or "")


def _reference(values: list, axis: str):
    if axis == "precision" and "fp32" in values:
        return "fp32"
    numbers = [v for v in values if isinstance(v, (int, float))]
    return min(numbers) if axis == "batch" and numbers else sorted(values, key=str)[0]


def _rows(key: tuple, members: dict, axis: str, reference) -> list:
    if len(members) < 2:
        return []
    ref_value = _reference(list(members), axis) if reference is None else _match(members, reference)
    if ref_value is None:
        return []
    ref = members[ref_value]
    out = []
    for value, other in sorted(members.items(), key=lambda kv: str(kv[0])):
        if value == ref_value:
            continue
        info = other.get("cell") or {}
        out.append({"campaign": info.get("campaign"), "device": info.get("device"),
                    "model": info.get("model_stem"),
                    "batch": axis_value(other, "batch"), "precision": axis_value(other, "precision"),
                    "a": ref_value, "b": value, "p50_ms_a": (ref.get("latency") or {}).get("latency_ms_p50"),
                    "p50_ms_b": (other.get("latency") or {}).get("latency_ms_p50"),
                    **pair_ratio(ref, other, axis)})
    return out


def _match(members: dict, reference):
    return next((v for v in members if str(v) == str(reference)), None)
