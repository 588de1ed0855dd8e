"""Advice (``host advise``): which measured models meet every budget on a device, how much to
width-scale a model of each architecture family to meet them, and the Pareto fronts.

Budgets are judged by the one rule of :mod:`host.analysis.budgets` (meets / uncertain / misses /
no meter / not measured, on a named statistic and its 95 % interval); this module adds no rule.

Families. Width scaling keeps a model's architecture and multiplies its channels, so a line is
fitted only over width-scaled variants of one architecture: the family of a model is its stem
with the width tag ``_w<number>`` (how ``host zoo`` names scaled variants: ``mobilenet_v2_w0.5_cifar10``,
``sc_vgg11_w0.25_cifar10``, ``mg_mobilenet_v2_w1_s224``) and any variant suffix after the first
``.`` removed. Models of different families are never fitted together (8×8 digits and 224 px
SqueezeNet share no line); a family needs at least :data:`MIN_N` models.

Derivation (the scaling study's equation 1). Uniform width scaling multiplies every layer's
channel count by a ratio S. A convolution's multiply–adds are ``k²·C_in·C_out·H·W`` and its
weights ``k²·C_in·C_out``: both channel counts scale by S, so FLOPs and params scale by S²
(``X(S) = S²·X₀``). Within a family the budget's figure (the statistic the rule judges: e.g.
``latency_ms_p99``, the peak RSS of the memory scope, energy per inference) is fitted as a
straight line ``y = a·X + b`` against FLOPs (latency, energy) or params (memory)
(:func:`host.analysis.correlate.fit`, raw values). The scaled model meets the target T when
``a·S²·X₀ + b = T``, hence

    S = sqrt((T − b) / (a · X₀)),  and the static size it needs is  X_T = (T − b) / a.

Assumptions, each a reason S is a starting point to measure, not a guarantee: S² scaling is
exact only for layers whose input and output channels both scale; the line fitted over the
family's other widths holds for the scaled one (the fit's r is reported, with a warning when
weak); the line is fitted on point values while the rule judges the interval's end; and it is
trusted only inside the measured range of X: an X_T outside it is reported, not extrapolated.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict

from host.analysis.budgets import MEETS, MISSES, UNCERTAIN, Budgets, judge
from host.analysis.correlate import MIN_N, fit, latest_per_model, precision_of, value
from host.campaign.store import _get
from host.errors import AnalysisError, UnknownDeviceError

#: budget: the static metric its figure is fitted against (power and accuracy are not scaled).
SCALED = {"latency": "flops", "memory": "params", "energy": "flops"}
_WIDTH_TAG = re.compile(r"_w\d+(?:\.\d+)?(?=[_.]|$)")
_RANK = {MEETS: 0, UNCERTAIN: 1, MISSES: 2}


def family_of(cell: dict) -> str:
    """The architecture family of a cell's model: its stem without the width tag ``_w<number>``
    and without a variant suffix after the first ``.`` (module docstring)."""
    stem = str(_get(cell, "cell", "model_stem"))
    return _WIDTH_TAG.sub("", stem).split(".")[0] or stem


def pick_device(cells: list[dict], device: str | None) -> str:
    """``device``, or the only device of ``cells`` when None.

    Raises:
        AnalysisError: no cells; several devices and none named.
    """
    if not cells:
        raise AnalysisError("no result cells", hint="run `host bench` first, or pass the folder it wrote")
    if device is not None:
        return device
    seen = sorted({str(_get(c, "cell", "device")) for c in cells})
    if len(seen) > 1:
        raise AnalysisError(f"these results hold several devices ({', '.join(seen)})",
                            hint="pass --device with one of them")
    return seen[0]


def device_cells(cells: list[dict], device: str) -> list[dict]:
    """The device's measured cells, one per model, precision and batch (latest campaign).

    Raises:
        AnalysisError: ``cells`` is empty.
        UnknownDeviceError: no measured cell of ``device`` (the message lists the devices seen).
    """
    if not cells:
        raise AnalysisError("no result cells", hint="run `host bench` first, or pass the folder it wrote")
    mine = [c for c in latest_per_model(cells) if _get(c, "cell", "device") == device]
    if not mine:
        seen = sorted({str(_get(c, "cell", "device")) for c in cells})
        raise UnknownDeviceError(f"no measured cell of device {device!r} in these results "
                                 f"(devices: {', '.join(seen) or 'none'})",
                                 hint="pass --device with one of those names")
    return mine


def fit_group(cells: list[dict], precision: str | None) -> tuple:
    """(precision, batch, cells) the fits use: ``precision`` (default ``fp32`` when measured,
    else the precision with the most models) and the batch with the most models (ties: the smaller).

    Raises:
        AnalysisError: ``precision`` is given and not measured.
    """
    precisions = sorted({precision_of(c) for c in cells})
    if precision is None:
        precision = "fp32" if "fp32" in precisions else _most(cells, precision_of)
    if precision not in precisions:
        raise AnalysisError(f"precision {precision!r} not measured on this device "
                            f"(measured: {', '.join(precisions)})", hint="pass one of those to --precision")
    mine = [c for c in cells if precision_of(c) == precision]
    batch = _most(mine, lambda c: _get(c, "configuration", "batch"))
    return precision, batch, [c for c in mine if _get(c, "configuration", "batch") == batch]


def _most(cells: list[dict], key):
    counts: dict = {}
    for c in cells:
        counts[key(c)] = counts.get(key(c), 0) + 1
    return min(counts, key=lambda k: (-counts[k], (0, k) if isinstance(k, (int, float)) else (1, str(k))))


def solve_s(slope: float, intercept: float, x0: float, target: float) -> float:
    """S = sqrt((target − intercept) / (slope · x0)) (module docstring).

    Raises:
        AnalysisError: slope ≤ 0, x0 ≤ 0, or target ≤ intercept (no positive S reaches it).
    """
    if slope <= 0:
        raise AnalysisError(f"the fitted line does not rise with size (slope {slope:.3g}): "
                            "no width scaling is predicted to meet the target")
    if x0 <= 0:
        raise AnalysisError("the base model's size is not positive: S is undefined")
    if target <= intercept:
        raise AnalysisError(f"the target {target:g} is at or below the line's intercept {intercept:.4g} "
                            "(the cost of a model of size 0): no width scaling reaches it")
    return math.sqrt((target - intercept) / (slope * x0))


def budget_rows(cells: list[dict], budgets: Budgets) -> list[dict]:
    """Every cell judged on every budget (:func:`host.analysis.budgets.judge`), meets first.

    Returns:
        ``[{"model", "family", "precision", "batch", "verdict", "checks": [Check as a dict with
        its ``mark``], "reasons": [str]}]``.
    """
    rows = []
    for cell in cells:
        judged = judge(cell, budgets)
        rows.append({"model": str(_get(cell, "cell", "model_stem")), "family": family_of(cell),
                     "precision": precision_of(cell), "batch": _get(cell, "configuration", "batch"),
                     "verdict": judged.verdict, "reasons": judged.reasons(),
                     "checks": [{**asdict(c), "mark": c.mark} for c in judged.checks]})
    return sorted(rows, key=lambda r: (_RANK.get(r["verdict"], 3), r["family"], r["model"], r["precision"],
                                       str(r["batch"])))


def answer(rows: list[dict]) -> str:
    """One sentence: which of ``rows`` (:func:`budget_rows`) meet every budget."""
    meets = [_label(r, rows) for r in rows if r["verdict"] == MEETS]
    if meets and len(meets) == len(rows):
        return f"every measured model meets every budget ({len(rows)}: {', '.join(meets)})"
    uncertain = sum(r["verdict"] == UNCERTAIN for r in rows)
    tail = f"; {uncertain} uncertain (see why below)" if uncertain else ""
    if not meets:
        return f"no measured model meets every budget ({len(rows)} measured{tail})"
    return f"{len(meets)} of {len(rows)} measured models meet every budget: {', '.join(meets)}{tail}"


def _label(row: dict, rows: list[dict]) -> str:
    extra = [row["precision"]] if len({r["precision"] for r in rows}) > 1 else []
    extra += [f"batch {row['batch']}"] if len({str(r["batch"]) for r in rows}) > 1 else []
    return row["model"] + (f" ({', '.join(extra)})" if extra else "")


def family_fits(group: list[dict], budgets: Budgets, base: str | None = None) -> dict:
    """Per budget that scales (:data:`SCALED`) and per family of ``group`` (one device, precision
    and batch) with at least :data:`MIN_N` models, the line and S (module docstring).

    Returns:
        ``{"fits": [{"budget", "family", "models", "x", "y", "unit", "target", "fit", "x_target",
        "scaling": [{"model", "x0", "y", "s", "direction"}], "note", "warnings"}], "not_fitted":
        [str]}``; ``note`` says why no S is given, or that the target lies outside the measured
        range; ``not_fitted`` names the families too small to fit and says they are not pooled.
    """
    families: dict = {}
    for cell in group:
        families.setdefault(family_of(cell), []).append(cell)
    big = {f: cs for f, cs in sorted(families.items()) if len(cs) >= MIN_N}
    fits = [_family_fit(name, members, budget, budgets, base)
            for budget in budgets.names() if budget in SCALED for name, members in big.items()]
    return {"fits": fits, "not_fitted": _not_fitted(families, big) if _scales(budgets) else []}


def _scales(budgets: Budgets) -> bool:
    return any(b in SCALED for b in budgets.names())


def _not_fitted(families: dict, big: dict) -> list[str]:
    small = {f: cs for f, cs in sorted(families.items()) if f not in big}
    if not small:
        return []
    names = [_family_name(f, cs[0]) for f, cs in small.items()]
    need = f"a line is fitted only within one family of width variants (<arch>_w<width>, ≥ {MIN_N} models)"
    if len(families) > 1:
        these = " and ".join(names) if len(names) == 2 else ", ".join(names)
        what = "is a different architecture" if len(names) == 1 else "are different architectures"
        sizes = "/".join(sorted({str(len(cs)) for cs in small.values()}))
        each = " each" if len(names) > 1 else ""
        return [f"not fitted: {these} {what} ({sizes} model(s){each}); {need}"]
    (name, members), = small.items()
    return [f"not fitted: {names[0]} has {len(members)} model(s); {need}"]


def _family_name(family: str, cell: dict) -> str:
    shape = _get(cell, "info", "input_shape")
    if isinstance(shape, list) and len(shape) >= 2 and all(isinstance(d, int) for d in shape[-2:]):
        return f"{shape[-2]}×{shape[-1]} {family}"
    return family


def _family_fit(family: str, members: list[dict], budget: str, budgets: Budgets, base: str | None) -> dict:
    xm = SCALED[budget]
    only = Budgets(statistic=budgets.statistic, memory_scope=budgets.memory_scope,
                   **{name: getattr(budgets, name) for name in _FIELDS[budget]})
    checks = [(cell, judge(cell, only).checks[0]) for cell in members]
    stat, unit, target = checks[0][1].statistic, checks[0][1].unit, checks[0][1].limit
    points = [(str(_get(cell, "cell", "model_stem")), value(cell, xm), check.value) for cell, check in checks]
    points = [p for p in points if p[1] is not None and p[2] is not None]
    out = {"budget": budget, "family": family, "models": [m for m, _, _ in points], "x": xm, "y": stat,
           "unit": unit, "target": target, "fit": None, "x_target": None, "scaling": [], "note": None,
           "warnings": []}
    if len(points) < MIN_N:
        out["note"] = f"{len(points)} model(s) with {xm} and {stat}: a line needs at least {MIN_N}"
        return out
    line = fit([x for _, x, _ in points], [y for _, _, y in points])
    out.update(fit=line, warnings=_fit_warnings(line) if line["slope"] is not None else [])
    try:
        if line["slope"] is None:
            raise AnalysisError(f"{xm} or {stat} does not vary over the family: no line to solve")
        solve_s(line["slope"], line["intercept"], 1.0, target)  # the slope and intercept cases
        out["x_target"] = (target - line["intercept"]) / line["slope"]
        out["note"] = _range_note(out["x_target"], line, xm)
        if out["note"] is None:
            out["scaling"] = [_scaled(m, x0, y, line, target) for m, x0, y in points if base in (None, m)]
    except AnalysisError as exc:
        out["note"] = str(exc)
    return out


_FIELDS = {"latency": ("fps", "latency_ms"), "memory": ("memory_mib",), "energy": ("energy_mj",)}


def _range_note(x_target: float, line: dict, xm: str) -> str | None:
    if x_target > line["x_max"]:
        return (f"the target needs {xm} ≈ {x_target:.4g}, above the largest measured ({line['x_max']:.4g}): "
                "every measured width is predicted to meet it; the line is not extrapolated (no S)")
    if x_target < line["x_min"]:
        return (f"the target needs {xm} ≈ {x_target:.4g}, below the smallest measured ({line['x_min']:.4g}): "
                "the line is not extrapolated (no S): measure a narrower variant")
    return None


def _scaled(model: str, x0: float, y: float, line: dict, target: float) -> dict:
    s = solve_s(line["slope"], line["intercept"], x0, target)
    return {"model": model, "x0": x0, "y": y, "s": s,
            "direction": "shrink" if s < 1 else ("widen" if s > 1 else "as is")}


def _fit_warnings(line: dict) -> list[str]:
    if line["label"] == "ok":
        return []
    r = "-" if line["r"] is None else f"{line['r']:.3f}"
    p = "-" if line["p_value"] is None else f"{line['p_value']:.3g}"
    return [f"the fit is {line['label']} (r = {r}, p = {p}, n = {line['n']}): S is a weak guide"]


def pareto_front(points: list[dict], a: str, b: str, *, maximize_b: bool = False) -> list[dict]:
    """The points (dicts with numeric ``a`` and ``b`` keys) that no other point dominates,
    minimizing ``a`` and minimizing ``b`` (maximizing it with ``maximize_b``), sorted by ``a``.
    A point dominates another when it is at least as good in both and better in one; equal
    points are all kept. Points missing either value are ignored."""
    sign = -1.0 if maximize_b else 1.0
    pts = [p for p in points if p.get(a) is not None and p.get(b) is not None]

    def dominates(p, q):
        pa, pb, qa, qb = p[a], sign * p[b], q[a], sign * q[b]
        return pa <= qa and pb <= qb and (pa < qa or pb < qb)

    front = [q for q in pts if not any(dominates(p, q) for p in pts)]
    return sorted(front, key=lambda p: (p[a], sign * p[b]))


def pareto_fronts(cells: list[dict]) -> dict:
    """Latency (p50 ms) against params, top-1 accuracy (higher is better) and energy per
    inference (mJ): ``{"latency_params": [...], "latency_accuracy": [...], "latency_energy":
    [...]}``, each a list of ``{"model", "precision", "batch", "latency_ms", "params", "top1",
    "energy_mj"}`` on the front; an empty list where no cell measured the second metric."""
    points = [{"model": _get(c, "cell", "model_stem"), "precision": precision_of(c),
               "batch": _get(c, "configuration", "batch"), "latency_ms": value(c, "latency_ms"),
               "params": value(c, "params"), "top1": _top1(c), "energy_mj": value(c, "energy_mj")}
              for c in cells]
    return {"latency_params": pareto_front(points, "latency_ms", "params"),
            "latency_accuracy": pareto_front(points, "latency_ms", "top1", maximize_b=True),
            "latency_energy": pareto_front(points, "latency_ms", "energy_mj")}


def _top1(cell: dict) -> float | None:
    top1 = _get(cell, "accuracy", "top1")
    return float(top1) if isinstance(top1, (int, float)) and not isinstance(top1, bool) else None


def advise(cells: list[dict], budgets: Budgets, *, device: str | None = None, base: str | None = None,
           precision: str | None = None) -> dict:
    """The whole answer of ``host advise``: the device's models judged on every budget (all
    precisions and batches unless ``precision`` is given), the one-sentence answer, the
    per-family width-scaling fits on the fit group (:func:`fit_group`) and the Pareto fronts.
    "Every model meets" and "none meets" are answers, not errors.

    Returns:
        ``{"device", "budgets": {name: Check-like limit}, "rows": budget_rows(...), "answer": str,
        "precision", "batch", **family_fits(...), "pareto": pareto_fronts(...)}``.

    Raises:
        AnalysisError: no cells, several devices and none named, no budget given, ``precision``
            not measured, ``base`` not a model of the fit group.
        UnknownDeviceError: no measured cell of ``device``.
    """
    if not budgets.names():
        raise AnalysisError("no budget given", hint="pass --fps, --latency-ms, --memory-mib, --power-w, "
                                                    "--energy-mj or --accuracy-min")
    device = pick_device(cells, device)
    mine = device_cells(cells, device)
    prec, batch, group = fit_group(mine, precision)
    if base is not None and base not in {str(_get(c, "cell", "model_stem")) for c in group}:
        raise AnalysisError(f"base model {base!r} is not measured at {prec}, batch {batch} on {device}",
                            hint="pass a model stem listed by `host report` to --base")
    listed = [c for c in mine if precision is None or precision_of(c) == precision]
    rows = budget_rows(listed, budgets)
    return {"device": device, "statistic": budgets.statistic, "memory_scope": budgets.memory_scope,
            "limits": _limits(rows), "rows": rows, "answer": answer(rows), "precision": prec,
            "batch": batch, **family_fits(group, budgets, base), "pareto": pareto_fronts(listed)}


def _limits(rows: list[dict]) -> list[dict]:
    """Each budget's name, statistic, unit, limit and kind, in table order (from the first row)."""
    keep = ("budget", "statistic", "unit", "limit", "kind")
    return [{k: c[k] for k in keep} for c in rows[0]["checks"]] if rows else []
