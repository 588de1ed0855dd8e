"""Across the stack (DLAS, Gibson et al., ACM TACO 2024): every compression of a model on every
runtime and code-generation level, against the dense fp32 model on the same one.

A cell is placed by four things, all read from the cell itself:

* **source**: the dense model it derives from: a pruned model's recipe ``source_sha256`` (its
  ``info``, schema ``edgegauge.prune/1``), else the cell's ``metrics.sha256`` (a precision variant's
  and a compiled model's static metrics are their source ONNX model's);
* **stack**: the configuration without its precision part (``cell.config`` less the trailing
  ``-<precision.name>``) and, for a compiled model, the compile tag (``precision.name`` less the
  variant's slug: ``tvm-untuned``, ``tvm-tuned16``): ``ort-b1-tall``, ``tvm-b1-tall/untuned``;
* **pruning**: ``dense``, or the prune recipe's method and ratio (``unstructured 0.9``);
* **precision**: the arithmetic of the variant (the precision recipe's ``precision``, for a compiled
  model its ``source_variant``'s): ``fp32``, ``int8``, ``fp16``.

For each cell, its **baseline** is the dense fp32 cell of the same device, source and stack (the
same campaign's when there is one), and:

* ``expected`` = the compression ratio: pruning's as :mod:`host.analysis.compression` (non-zero
  weights for unstructured, FLOPs for channels) times the width ratio of the precision (32 bits /
  8 for int8, / 16 for fp16: the speedup if time scaled with the bits each weight and activation
  carries); None for the baseline itself;
* ``achieved`` = baseline p50 / cell p50, its 95 % interval as :func:`compression.achieved` (the
  two cells' within-campaign intervals when both are of one campaign);
* ``share`` = achieved / expected;
* ``vs_reference`` = the reference stack's dense fp32 p50 / cell p50 (with its interval): what the
  whole stack (runtime, code generation and compression together) buys against the reference, which
  is the first stack without a compile tag (by name), else the first stack.
"""

from __future__ import annotations

from host.analysis.compression import PRUNE_SCHEMA, _expected, achieved, interval_field
from host.campaign.store import _get

__all__ = ["WIDTH_BITS", "stack_rows"]

#: bits of one value at each arithmetic (the width ratio against fp32 is the expected speedup)
WIDTH_BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "int4": 4}


def _prune(cell: dict) -> dict | None:
    info = cell.get("info")
    return info if isinstance(info, dict) and info.get("schema") == PRUNE_SCHEMA else None


def _precision(cell: dict) -> tuple[str, str, str]:
    """(arithmetic, variant slug, compile tag) of a cell."""
    name = str(_get(cell, "precision", "name") or "fp32")
    recipe = _get(cell, "precision", "recipe")
    recipe = recipe if isinstance(recipe, dict) else {}
    if "compile_options" not in recipe:
        return str(recipe.get("precision") or "fp32"), name, ""
    source = recipe.get("source_variant") if isinstance(recipe.get("source_variant"), dict) else {}
    slug = str(source.get("slug") or "") if source else ""
    if slug and name.startswith(slug + "-"):
        return str(source.get("precision") or "fp32"), slug, name[len(slug) + 1:]
    return str(source.get("precision") or "fp32"), "fp32", name


def _pruning(prune: dict | None) -> str:
    if prune is None:
        return "dense"
    ratio = prune.get("ratio")
    return f"{prune.get('method')} {ratio:g}" if isinstance(ratio, (int, float)) else str(prune.get("method"))


def place(cell: dict) -> dict | None:
    """``{"device", "source", "stack", "pruning", "precision" (the variant's slug), "arithmetic",
    "tag", "backend", "short_stack" (the backend and the tag), "config_rest" (the configuration after
    the backend)}`` of a cell, or None for a
    failed cell or one without its configuration or sha256."""
    config, sha = _get(cell, "cell", "config"), _get(cell, "metrics", "sha256")
    if cell.get("status") == "failed" or not config or not sha:
        return None
    prune = _prune(cell)
    arithmetic, slug, tag = _precision(cell)
    name = str(_get(cell, "precision", "name") or "fp32")
    config = str(config)
    base = config[: -len(name) - 1] if name != "fp32" and config.endswith("-" + name) else config
    backend = base.split("-", 1)[0]
    short = tag[len(backend) + 1:] if tag.startswith(backend + "-") else tag
    return {"device": _get(cell, "cell", "device"), "source": prune.get("source_sha256") if prune else sha,
            "stack": f"{base}/{short}" if short else base, "tag": tag, "backend": backend,
            "short_stack": f"{backend}/{short}" if short else backend, "config_rest": base[len(backend) + 1:],
            "pruning": _pruning(prune),
            "precision": "fp32" if arithmetic == "fp32" else slug, "arithmetic": arithmetic}


def _expected_total(base: dict, cell: dict, where: dict) -> tuple[float | None, str]:
    """(expected speedup, what it is a ratio of) of ``cell`` against its baseline ``base``."""
    factor, of = 1.0, []
    prune = _prune(cell)
    if prune is not None:
        ratio, what = _expected(base, cell, prune)
        if ratio is None:
            return None, what
        factor, of = ratio, [what]
    bits = WIDTH_BITS.get(where["arithmetic"])
    if where["arithmetic"] != "fp32":
        if bits is None:
            return None, "bits"
        factor, of = factor * 32 / bits, [*of, "bits"]
    return (None, "") if not of else (factor, "x".join(of))


def _pick(candidates: list, campaign) -> dict | None:
    same = [c for c in candidates if _get(c, "cell", "campaign") == campaign]
    return (same or candidates or [None])[-1]


def stack_rows(cells: list[dict]) -> list[dict]:
    """One row per placed cell that has its baseline in ``cells``: the :func:`place` fields plus
    ``model`` (the cell's stem), ``source_model`` (the baseline's stem), ``campaign``, ``p50_ms``,
    ``p50_ci95``, ``verdict``, ``interval`` (the latency field the intervals came from), ``expected``,
    ``expected_of`` (``nonzeros``, ``flops``, ``bits`` or a
    product such as ``nonzerosxbits``; empty for the baseline), ``achieved``, ``achieved_ci95``,
    ``share``, ``share_ci95``, ``vs_reference``, ``vs_reference_ci95``, ``reference_stack``.
    Ordered by device, source, pruning, precision, then stack (the reference stack first). [] when no
    cell has a baseline. Raises nothing."""
    placed = [(c, w) for c, w in ((c, place(c)) for c in cells) if w is not None]
    bases: dict = {}
    for c, w in placed:
        if w["pruning"] == "dense" and w["arithmetic"] == "fp32":
            bases.setdefault((w["device"], w["source"], w["stack"]), []).append((c, w))
    refs = _reference_stacks(bases)
    rows = []
    for c, w in placed:
        group = bases.get((w["device"], w["source"], w["stack"]))
        if not group:
            continue
        campaign = _get(c, "cell", "campaign")
        base = _pick([b for b, _ in group], campaign)
        ref_stack = refs[(w["device"], w["source"])]
        ref = _pick([b for b, _ in bases[(w["device"], w["source"], ref_stack)]], campaign)
        rows.append(_row(c, w, base, ref, ref_stack))
    rows.sort(key=lambda r: (str(r["device"]), str(r["source_model"]), r["pruning"] != "dense", r["pruning"],
                             r["precision"] != "fp32", r["precision"], r["stack"] != r["reference_stack"],
                             r["stack"]))
    return rows


def _reference_stacks(bases: dict) -> dict:
    """``{(device, source): its reference stack}``: the first stack without a compile tag by name,
    else the first stack."""
    best: dict = {}
    for (device, source, stack), group in bases.items():
        rank = (group[0][1]["tag"] != "", stack)
        best[(device, source)] = min(best.get((device, source), rank), rank)
    return {key: rank[1] for key, rank in best.items()}


def _row(cell: dict, where: dict, base: dict, ref: dict, ref_stack: str) -> dict:
    is_base = cell is base
    expected, of = (None, "") if is_base else _expected_total(base, cell, where)
    value, ci = achieved(base, cell)
    vs, vs_ci = achieved(ref, cell)
    share = None if value is None or not expected else value / expected
    return {**where, "model": _get(cell, "cell", "model_stem"),
            "source_model": _get(base, "cell", "model_stem"),
            "campaign": _get(cell, "cell", "campaign"), "p50_ms": _get(cell, "latency", "latency_ms_p50"),
            "p50_ci95": _get(cell, "latency", "latency_ms_p50_ci95"),
            "verdict": _get(cell, "verdict", "result") or cell.get("status"),
            "expected": expected, "expected_of": of, "achieved": value, "achieved_ci95": ci,
            "interval": interval_field(base, cell), "share": share,
            "share_ci95": None if ci is None or not expected else [ci[0] / expected, ci[1] / expected],
            "vs_reference": vs, "vs_reference_ci95": vs_ci, "reference_stack": ref_stack}
