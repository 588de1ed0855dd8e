"""``host bench --compile-option NAME=V1,V2``: the code-generation axis on the command line
(:mod:`host.campaign.compiled`), checked against the runtime's declared compiler before anything is
written (a usage error, exit 2)."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from host.errors import CompileUsageError

CompileOptionOpt = Annotated[Optional[List[str]], typer.Option(
    "--compile-option",
    help="NAME=V1[,V2...]: an option of the runtime's compiler (its descriptor's, `host runtimes`; "
         "with --backend; repeatable): every ONNX model is compiled at each combination of the "
         "listed values (cached as by `host zoo compile`) and the compiled files are measured, the "
         "options in the cell's name and its recipe, e.g. codegen=untuned,tuned")]


def compile_axis(pairs, backend: Optional[str]) -> tuple:
    """The axis of ``--compile-option`` (``()`` without one). Raises typer.BadParameter (exit 2):
    not NAME=VALUE, no runtime with a compiler, an option it does not declare or a bad value."""
    from host.campaign.compiled import check_axis, parse_axis

    try:
        axis = parse_axis(pairs)
        check_axis(backend, axis)
    except CompileUsageError as exc:
        text = f"{exc} ({exc.hint})" if getattr(exc, "hint", None) else str(exc)
        raise typer.BadParameter(text, param_hint="--compile-option") from None
    return axis
