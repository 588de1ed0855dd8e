"""``host zoo compile --backend NAME MODEL.onnx``: a runtime's own model file, made on the host by the
compiler its descriptor declares (:class:`runners.backends.base.ModelCompiler`).

The host knows no runtime here: it finds the descriptor, checks ``--option NAME=VALUE`` against the
compiler's declared options, loads the ONNX file (the host's own ONNX tooling) and hands the
``ModelProto`` to the compiler, which writes its file into its cache (``~/.cache/edgegauge/compiled/
<runtime>/`` unless ``--cache-dir``) with a ``.info`` recipe beside it. ``-o DIR`` copies both, under
the name the recipe gives, so that ``host bench DIR`` picks the ``.info`` up as the cell's ``info``.

With ``--device BOARD`` (an inventory board, not ``local``) and a compiler that declares
``board_compile``: the caller's ``board_session`` (:func:`host.campaign.compiled.compile_board`: the
board connected as ``host bench`` connects it, its lock held, its facts read) gives the
:class:`runners.backends.base.CompileBoard` the compiler gets, which takes the board's target from its
facts and may measure on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Tuple

from host.errors import CompileError, CompileUsageError, ModelFormatError
from host.models.onnxexport import copy_with_info

DEFAULT_CACHE_DIR = Path("~/.cache/edgegauge/compiled")


def compilers() -> dict:
    """``{runtime name: its ModelCompiler}`` of every descriptor that declares one."""
    from runners.backends import descriptors

    return {name: d.compiler for name, d in descriptors().items() if d.compiler is not None}


def parse_options(pairs) -> dict:
    """``["NAME=VALUE", ...]`` -> ``{NAME: VALUE}``. Raises CompileUsageError."""
    out = {}
    for pair in pairs or ():
        name, sep, value = str(pair).partition("=")
        if not sep or not name.strip():
            raise CompileUsageError(f"--option {pair!r}: expected NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def _load_onnx(model: Path):
    import onnx

    if not model.is_file():
        raise CompileError(f"{model} does not exist", hint="pass an .onnx model")
    try:
        return onnx.load(str(model))
    except Exception as exc:  # DecodeError and friends
        raise ModelFormatError(model, f"not readable as ONNX ({type(exc).__name__}: {exc})") from None


def _for_board(compiler, device) -> bool:
    """Whether ``compiler`` makes ``device``'s file on that board (an inventory board, not this
    machine, and a compiler that declares ``board_compile``)."""
    return device is not None and device.connection != "local" and compiler.board_compile is not None


def compile_with(backend: str, model, options: Mapping[str, str], *, target: Optional[str] = None,
                 cache_dir=None, device=None, board_session=None) -> Tuple[Path, dict]:
    """Compile ``model`` with the compiler of runtime ``backend``: ``(its file, recipe)``. With
    ``device`` (an inventory device) and a compiler that declares ``board_compile``: for that board,
    the :class:`runners.backends.base.CompileBoard` from ``with board_session(device) as board``
    (:func:`host.campaign.compiled.compile_board`); this machine (``local``) or a compiler without
    it: on this host, as without ``device``.

    Raises:
        CompileUsageError: no such runtime or it declares no compiler, an option it does not
            declare, a bad value or target (exit 2).
        ModelFormatError: the file is not ONNX.
        CompileError: the runtime's compiler is not installed (here, or on the board), or
            compiling failed.
        TransportError, DeployError: the board cannot be used (what ``board_session`` raises).
    """
    from runners.errors import BackendUnavailableError, BoardRuntimeMissingError, ModelCompileError

    known = compilers()
    if backend not in known:
        raise CompileUsageError(f"--backend {backend}: no compiler declared by that runtime",
                                hint="runtimes that compile: " + (", ".join(sorted(known)) or "none"))
    compiler = known[backend]
    try:
        values = compiler.resolve(dict(options))
    except ValueError as exc:
        raise CompileUsageError(str(exc)) from None
    model = Path(model)
    proto = _load_onnx(model)
    folder = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR / backend).expanduser()
    on_board = _for_board(compiler, device)
    if on_board and board_session is None:
        raise CompileUsageError(f"{device.name}: no way to reach the board was given to the compile")
    try:
        if not on_board:
            path, info = compiler.compile(model, proto, values, folder, target)
        else:
            with board_session(device) as board:
                path, info = compiler.board_compile(model, proto, values, folder, target, board)
    except ValueError as exc:
        raise CompileUsageError(f"{device.name}: {exc}" if on_board else str(exc)) from None
    except BoardRuntimeMissingError as exc:
        raise CompileError(f"{device.name}: {exc}",
                           hint=f"install the runtime on {device.name} (its image or the inventory's "
                           f"python), then `host check --device {device.name}`; or compile on this host "
                           "without --device") from None
    except BackendUnavailableError as exc:
        hint = "install the runtime's compiler on this host"
        if on_board:
            hint += (f"; to measure on {device.name}, it and this host must reach each other on the "
                     f"compiler's ports (`host check --device {device.name}`)")
        raise CompileError(f"{device.name}: {exc}" if on_board else str(exc), hint=hint) from None
    except ModelCompileError as exc:
        raise CompileError(f"{model.name}: {exc}") from None
    return Path(path), info


def copy_compiled(path: Path, info: dict, out: Path) -> Path:
    """Copy the compiled file and its ``.info`` into the folder ``out`` as ``info["name"]`` (else
    the file's own name); each written to a temp name and renamed. Raises CompileError."""
    dst = Path(out) / str(info.get("name") or path.name)
    try:
        copy_with_info(path, dst)
    except OSError as exc:
        raise CompileError(f"cannot copy {path} to {dst} ({exc})") from exc
    return dst
