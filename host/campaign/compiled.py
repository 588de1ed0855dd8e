"""Code generation as a matrix axis of ``host bench`` (issue 25): ``--compile-option NAME=V1,V2``
compiles every ONNX variant with the compiler the runtime's descriptor declares (its
``compiler``, :class:`runners.backends.base.ModelCompiler`; the host names no runtime), once per
combination of the listed values, through :func:`host.models.runtime_compile.compile_with` (the
same cache as ``host zoo compile --backend NAME``). Each compiled file becomes a variant whose
precision slug names the compile options (the compiler's recipe ``name``, e.g. ``tvm-untuned``,
``tvm-tuned8``) and whose recipe (the ``.info``) is the cell's ``precision.recipe``. A model that
does not compile is not run: its cells are stored as failed cells of category ``compile`` with the
compiler's reason (:func:`host.campaign.plan.compile_failure`), the other cells run.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from host.errors import CompileUsageError, HostError


def parse_axis(pairs) -> tuple:
    """``["codegen=untuned,tuned", "tune_trials=8"]`` -> every combination as a dict of texts, in the
    order given (``({"codegen": "untuned", "tune_trials": "8"}, {"codegen": "tuned", ...})``); ``()``
    for none. Raises CompileUsageError: not NAME=VALUE[,VALUE...], or a name given twice."""
    names, values = [], []
    for pair in pairs or ():
        name, sep, text = str(pair).partition("=")
        name = name.strip().replace("-", "_")
        listed = [v.strip() for v in text.split(",") if v.strip()]
        if not sep or not name or not listed:
            raise CompileUsageError(f"--compile-option {pair!r}: expected NAME=VALUE[,VALUE...]")
        if name in names:
            raise CompileUsageError(f"--compile-option {name} given twice: list its values as {name}=A,B")
        names.append(name)
        values.append(listed)
    return tuple(dict(zip(names, combo)) for combo in itertools.product(*values)) if names else ()


def check_axis(backend: str | None, axis: tuple) -> None:
    """Refuse, before anything is written, compile options the runtime's compiler does not take.

    Raises:
        CompileUsageError: no runtime named, a runtime that declares no compiler, an option it
            does not declare or a bad value.
    """
    from host.models.runtime_compile import compilers

    if not axis:
        return
    known = compilers()
    if backend is None or backend not in known:
        raise CompileUsageError(
            f"--compile-option: runtime {backend or '(each device’s own)'} declares no compiler",
            hint="name a runtime that compiles with --backend: " + (", ".join(sorted(known)) or "none"))
    for combo in axis:
        try:
            known[backend].resolve(combo)
        except ValueError as exc:
            raise CompileUsageError(f"--compile-option: {exc}") from None


def tag(info: dict, source: Path, backend: str) -> str:
    """The compile options' part of a cell's slug: the recipe's file ``name`` without the source's
    stem and the file suffix (``m.tvm-tuned8.tvm`` -> ``tvm-tuned8``); else the runtime's name and
    the recipe's key."""
    name = str(info.get("name") or "")
    stem = Path(source).stem + "."
    if name.startswith(stem) and len(name) > len(stem):
        middle = name[len(stem):]
        return middle.rsplit(".", 1)[0] if "." in middle else middle
    return f"{backend}-{str(info.get('key') or 'compiled')[:12]}"


def failed_tag(backend: str, combo: dict) -> str:
    """The compile options' part of the slug of a model that did not compile: the compiler's own
    ``tag`` of the options (the name a compiled file would have had), else the runtime's name and
    the options. Raises nothing."""
    from host.models.runtime_compile import compilers

    compiler = compilers().get(backend)
    if compiler is not None and compiler.tag is not None:
        try:
            return compiler.tag(compiler.resolve(combo))
        except (ValueError, KeyError):
            pass
    return "-".join([backend, *(f"{k}{val}" for k, val in combo.items())])


def compile_variants(variants: list, backend: str | None, axis: tuple, on_compile=None) -> list:
    """Every ONNX variant compiled at every combination of ``axis`` (``[]`` unchanged without
    one): :class:`host.campaign.plan.Variant` objects whose ``run_model`` is the compiled file and
    ``recipe`` the compiler's ``.info``; a model that fails to compile gives a variant with its
    ``problem`` (not run, its reason recorded). ``on_compile(variant, info_or_None, reason)`` is
    called after each. Raises CompileUsageError: an option the compiler refuses (checked first)."""
    from host.campaign.plan import Variant
    from host.models import ONNX_SUFFIX
    from host.models.runtime_compile import compile_with

    if not axis:
        return variants
    check_axis(backend, axis)
    out = []
    for v, combo in ((v, c) for v in variants for c in axis):
        if v.run_model.suffix.lower() != ONNX_SUFFIX:
            out.append(v)
            continue
        label = ",".join(f"{k}={val}" for k, val in combo.items())
        try:
            path, info = compile_with(backend, v.run_model, combo)
        except HostError as exc:  # CompileError, ModelFormatError: this model's cells fail, not the campaign
            reason = f"compile failed ({label}): {exc}"
            slug = failed_tag(backend, combo)
            slug = slug if v.precision == "fp32" else f"{v.precision}-{slug}"
            out.append(Variant(v.model, slug, v.run_model, None, v.arithmetic, problem=reason))
            if on_compile is not None:
                on_compile(v, None, reason)
            continue
        recipe = dict(info, compile_options=combo, source_variant=v.recipe)
        part = tag(info, v.run_model, backend)
        slug = part if v.precision == "fp32" else f"{v.precision}-{part}"
        out.append(Variant(v.model, slug, Path(path), recipe, v.arithmetic))
        if on_compile is not None:
            on_compile(v, info, None)
    return out
