"""Comparisons of cells: the ratio of two cells' p50 with its 95 % CI and whether the
difference is significant; which models of a campaign are indistinguishable; one campaign
against another (``host compare``).

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
