"""Scaling advice (``host advise``): how much to width-scale a model so that it meets a latency,
memory or energy budget on a device, which measured models already meet it, and the Pareto
fronts of the measured models.

Derivation (the scaling study's equation 1). Uniform width scaling multiplies every layer's
channel count by a ratio S. A convolution's multiply–adds are ``k²·C_in·C_out·H·W`` and its
weights ``k²·C_in·C_out``: both channel counts scale by S, so FLOPs and params scale by S²
(``X(S) = S²·X₀``, X₀ the base model's value at S = 1). On a device the measured metric is fitted
as a straight line against the static metric over the measured models,
``y = a·X + b`` (:func:`host.analysis.correlate.fit`, raw values): latency and energy per
inference against FLOPs, peak RSS against params. The scaled model meets the target T when
``a·S²·X₀ + b = T``, hence

    S = sqrt((T − b) / (a · X₀)),  and the static size it needs is  X_T = (T − b) / a.

Assumptions, each a reason the answer is a starting point to measure, not a guarantee:
S² scaling is exact only for layers whose input and output channels both scale (the stem's
input channels and the classifier's output classes do not: X(S) is slightly above S²·X₀ for
S < 1); the line fitted over *other* models holds for the scaled one (the fit's r says how
well the line explains the measured models, and is reported with a warning when weak); the
line is only trusted inside the range of X it was fitted on: a target whose X_T lies outside
the measured models' range is refused (:class:`host.errors.AnalysisError`) instead of
extrapolated. S > 1 means the base model could be widened and still meet the target.

Budgets: a model meets a latency budget only if the upper bound of its p50's 95 % CI
(``latency.latency_ms_p50_ci95``) is under the budget; when the interval contains the budget,
or there is no interval (fewer than 5 processes), it is ``uncertain``. Peak RSS and energy per
inference have no interval: their measured value is compared as is.
"""

from __future__ import annotations

import math

from host.analysis.correlate import MIN_N, fit, latest_per_model, precision_of, value
from host.campaign.store import _get
from host.errors import AnalysisError, UnknownDeviceError

# target name: (static metric X, measured metric y, unit, what to say when it has no data)
TARGETS = {
    "latency_ms": ("flops", "latency_ms", "ms", "latency (a measured cell)"),
    "memory_mib": ("params", "rss_mib_peak", "MiB", "peak RSS (memory.rss_mib_peak)"),
    "energy_mj": ("flops", "energy_mj", "mJ",
                  "energy per inference (power.energy_mj_per_inference: bench with a power meter)"),
}


def device_cells(cells: list[dict], device: str) -> list[dict]:
    """The device's measured cells, one per model, precision and batch (latest campaign).

    Raises:
        AnalysisError: ``cells`` is empty.
        UnknownDeviceError: no measured cell of ``device`` (the message lists the devices seen).
    """
    if not cells:
        raise AnalysisError("no result cells", hint="run `host bench` first, or pass the folder it wrote")
    measured = latest_per_model(cells)
    mine = [c for c in measured if _get(c, "cell", "device") == device]
    if not mine:
        seen = sorted({str(_get(c, "cell", "device")) for c in cells})
        raise UnknownDeviceError(f"no measured cell of device {device!r} in these results "
                                 f"(devices: {', '.join(seen) or 'none'})",
                                 hint="pass --device with one of those names")
    return mine


def fit_group(cells: list[dict], precision: str | None) -> tuple:
    """(precision, batch, cells) the fit uses: ``precision`` (default ``fp32`` when measured,
    else the only precision measured) and the batch with the most models (ties: the smaller).

    Raises:
        AnalysisError: ``precision`` not measured, or several precisions and none fp32.
    """
    precisions = sorted({precision_of(c) for c in cells})
    if precision is None:
        precision = "fp32" if "fp32" in precisions else (precisions[0] if len(precisions) == 1 else None)
        if precision is None:
            raise AnalysisError(f"several precisions measured ({', '.join(precisions)}) and no fp32",
                                hint="pass --precision")
    if precision not in precisions:
        raise AnalysisError(f"precision {precision!r} not measured on this device "
                            f"(measured: {', '.join(precisions)})", hint="pass one of those to --precision")
    mine = [c for c in cells if precision_of(c) == precision]
    counts: dict = {}
    for c in mine:
        counts[_get(c, "configuration", "batch")] = counts.get(_get(c, "configuration", "batch"), 0) + 1
    batch = min(counts, key=lambda b: (-counts[b], b if isinstance(b, int) else math.inf))
    return precision, batch, [c for c in mine if _get(c, "configuration", "batch") == batch]


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


def scaling_advice(group: list[dict], target_name: str, target: float, base: str | None = None) -> dict:
    """The fit of the target's metric on its static metric over ``group`` (one device,
    precision and batch) and S for ``base`` (a model stem) or, without one, for every model.

    Returns:
        ``{"x", "y", "unit", "target", "fit": fit(...) + "models" | None, "x_target": float | None,
        "warnings": [str], "scaling": [{"model", "x0", "y", "s", "direction"}], "refused": None |
        {"message", "hint"}}``. ``refused`` says why no S is given: fewer than 3 models, a line
        that does not rise, a target at or below its intercept, or X_T outside the fitted range.

    Raises:
        AnalysisError: no model of ``group`` has both metrics; ``base`` is not one of those models.
    """
    xm, ym, unit, what = TARGETS[target_name]
    points = [(str(_get(c, "cell", "model_stem")), value(c, xm), value(c, ym)) for c in group]
    points = [p for p in points if p[1] is not None and p[2] is not None]
    if not points:
        raise AnalysisError(f"no cell of this device has {what} together with {xm}")
    if base is not None and base not in {m for m, _, _ in points}:
        raise AnalysisError(f"base model {base!r} has no {xm} and {ym} here "
                            f"(models: {', '.join(m for m, _, _ in points)})",
                            hint="pass one of those to --base")
    out = {"x": xm, "y": ym, "unit": unit, "target": target, "fit": None, "x_target": None, "warnings": [],
           "scaling": [], "refused": None}
    try:
        if len(points) < MIN_N:
            raise AnalysisError(f"{len(points)} model(s) with {xm} and {ym}: a line needs at least {MIN_N}",
                                hint="measure more models of the family on this device")
        line = fit([x for _, x, _ in points], [y for _, _, y in points])
        out.update(fit={**line, "models": len(points)}, warnings=_fit_warnings(line))
        if line["slope"] is None:
            raise AnalysisError(f"{xm} or {ym} does not vary over the measured models: no line to solve")
        out["x_target"] = _x_target(line, target, xm)
        out["scaling"] = [_scaled(model, x0, y, line, target) for model, x0, y in points
                          if base is None or model == base]
    except AnalysisError as exc:
        out.update(x_target=None, scaling=[], refused={"message": str(exc), "hint": exc.hint})
    return out


def _scaled(model: str, x0: float, y: float, line: dict, target: float) -> dict:
    s = solve_s(line["slope"], line["intercept"], x0, target)
    return {"model": model, "x0": x0, "y": y, "s": s,
            "direction": "shrink" if s < 1 else ("widen" if s > 1 else "as is")}


def _x_target(line: dict, target: float, xm: str) -> float:
    solve_s(line["slope"], line["intercept"], 1.0, target)  # the slope and intercept cases
    x_target = (target - line["intercept"]) / line["slope"]
    if not line["x_min"] <= x_target <= line["x_max"]:
        raise AnalysisError(
            f"the target needs {xm} = {x_target:.4g}, outside the fitted range "
            f"[{line['x_min']:.4g}, {line['x_max']:.4g}] of the measured models: the line is not "
            "extrapolated",
            hint="measure a model of about that size (e.g. a width-scaled variant) and ask again")
    return x_target


def _fit_warnings(line: dict) -> list[str]:
    out = []
    if line["label"] != "ok":
        out.append(f"the fit is {line['label']} (r = {line['r']:.3f}, p = {line['p_value']:.3g}, "
                   f"n = {line['n']}): S is a weak guide on this device")
    return out


def budget_check(cells: list[dict], target_name: str, target: float) -> list[dict]:
    """Every cell of ``cells`` with the target's metric, against ``target`` (module docstring).

    Returns:
        ``[{"model", "precision", "batch", "value", "ci95": [lo, hi] | None, "status":
        "meets" | "uncertain" | "misses", "reason"}]`` sorted by value.
    """
    ym = TARGETS[target_name][1]
    rows = []
    for cell in cells:
        y = value(cell, ym)
        if y is None:
            continue
        ci = _get(cell, "latency", "latency_ms_p50_ci95") if ym == "latency_ms" else None
        status, reason = _budget_status(y, ci, target, ym == "latency_ms")
        rows.append({"model": _get(cell, "cell", "model_stem"), "precision": precision_of(cell),
                     "batch": _get(cell, "configuration", "batch"), "value": y,
                     "ci95": list(ci) if ci else None, "status": status, "reason": reason})
    return sorted(rows, key=lambda r: r["value"])


def _budget_status(y: float, ci, target: float, has_ci: bool) -> tuple:
    if not has_ci:
        return ("meets", "value ≤ budget") if y <= target else ("misses", "value > budget")
    if not ci or ci[0] is None or ci[1] is None:
        if y > target:
            return "misses", "p50 > budget"
        return "uncertain", "p50 ≤ budget but no 95 % CI (fewer than 5 processes)"
    if ci[1] < target:
        return "meets", "CI upper bound < budget"
    if ci[0] > target:
        return "misses", "CI lower bound > budget"
    return "uncertain", "the 95 % CI contains the budget"


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


def advise(cells: list[dict], device: str, target_name: str, target: float, *, base: str | None = None,
           precision: str | None = None) -> dict:
    """The whole answer of ``host advise``: the scaling advice on the device's fit group, the
    budget check and the Pareto fronts over the device's cells of that batch (of every precision
    unless ``precision`` is given).

    Args:
        target_name: ``latency_ms``, ``memory_mib`` or ``energy_mj`` (:data:`TARGETS`).
        target: the budget in that unit (> 0).

    Returns:
        ``{"device", "precision", "batch", "target_name", **scaling_advice(...), "budget":
        budget_check(...), "pareto": pareto_fronts(...)}``.

    Raises:
        AnalysisError, UnknownDeviceError: as :func:`device_cells`, :func:`fit_group`,
            :func:`scaling_advice` (a refused S is not an error: see ``refused``); a target that
            is not positive; an unknown ``target_name``.
    """
    if target_name not in TARGETS:
        raise AnalysisError(f"unknown target {target_name!r} (known: {', '.join(TARGETS)})")
    if not (isinstance(target, (int, float)) and math.isfinite(target) and target > 0):
        raise AnalysisError(f"the target must be a positive number, not {target!r}")
    mine = device_cells(cells, device)
    prec, batch, group = fit_group(mine, precision)
    advice = scaling_advice(group, target_name, float(target), base)
    listed = [c for c in mine if _get(c, "configuration", "batch") == batch
              and (precision is None or precision_of(c) == precision)]
    return {"device": device, "precision": prec, "batch": batch, "target_name": target_name, **advice,
            "budget": budget_check(listed, target_name, float(target)), "pareto": pareto_fronts(listed)}
