"""Code generation as a matrix axis of ``host bench`` (issue 25): ``--compile-option NAME=V1,V2``
compiles every ONNX variant with the compiler the runtime's descriptor declares (its
``compiler``, :class:`runners.backends.base.ModelCompiler`; the host names no runtime), once per
combination of the listed values, through :func:`host.models.runtime_compile.compile_with` (the
same cache as ``host zoo compile --backend NAME``). Each compiled file becomes a variant whose
precision slug names the compile options (the compiler's recipe ``name``, e.g. ``tvm-untuned``,
``tvm-tuned8``) and whose recipe (the ``.info``) is the cell's ``precision.recipe``. A model that
does not compile is not run: its cells are stored as failed cells of category ``compile`` with the
compiler's reason (:func:`host.campaign.plan.compile_failure`), the other cells run.

A compiler that declares ``board_compile`` makes each inventory board its own file, on that board:
:func:`compile_board` (also ``host zoo compile --device``) connects the board as ``host bench`` does
(:func:`host.lab.board.open_transport`), prepares its work folder, holds its lock, reads its facts
(``host check``'s plus :func:`host.lab.facts.cpu_facts`) and hands them with the open connection to
the compiler as a :class:`runners.backends.base.CompileBoard`.
"""

from __future__ import annotations

import itertools
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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


def _host_address(conn) -> str | None:
    """This host's address on the SSH connection ``conn`` (the board reaches it there); None through a
    jump host (the connection runs in a channel, not a socket) or when unknown."""
    try:
        sock = conn.client.get_transport().sock
        return str(sock.getsockname()[0]) if isinstance(sock, socket.socket) else None
    except (AttributeError, OSError):
        return None


@contextmanager
def compile_board(device, open_board=None, command: str = "host zoo compile") -> Iterator:
    """The inventory ``device`` as a :class:`runners.backends.base.CompileBoard` for the ``with``
    block: connected (``open_board(device)``, default a :class:`host.lab.board.Board` over
    :func:`host.lab.board.open_transport`), work folder prepared, its lock held for ``command``,
    facts read; the lock released and the connection closed afterwards.

    Raises:
        TransportError: the board cannot be reached (UnreachableError, HostKeyError, ...) or is
            locked by another run (BoardBusyError).
        DeployError: its work folder cannot be made.
        CompileError: its transport has no SSH connection to hand over.
    """
    from host.errors import CompileError
    from host.lab.board import Board, open_transport
    from host.lab.facts import cpu_facts
    from host.lab.lease import campaign_tag, owner_info
    from runners.backends.base import CompileBoard

    board = open_board(device) if open_board is not None else Board(device, open_transport(device))
    try:
        board.prepare()
        board.lease_tag = campaign_tag(f"compile-{uuid.uuid4().hex}")
        board.take_lock(owner_info(command, board.lease_tag))
        facts = dict(cpu_facts(board), **board.facts())
        conn = getattr(board.transport, "conn", None)
        if conn is None:
            raise CompileError(f"{device.name}: its {board.transport.kind} transport has no SSH connection "
                               "for the compiler", hint="compile for a board reached over SSH")
        yield CompileBoard(name=device.name, facts=facts, connection=conn, python=board._python(),
                           workdir=board.workdir, host_address=_host_address(conn))
    finally:
        board.release_lock()
        board.transport.close()


def compile_targets(backend: str | None, devices) -> list:
    """Where each compiled file is made: ``[(None, None)]`` (on this host, for every device) unless
    the runtime's compiler declares ``board_compile`` and some devices are inventory boards; then
    ``(board, (its name,))`` for each such board, and ``(None, names)`` for this machine's devices,
    if any. Raises nothing."""
    from host.models.runtime_compile import compilers

    compiler = compilers().get(backend or "")
    boards = [d for d in devices or () if d.connection != "local"]
    if compiler is None or compiler.board_compile is None or not boards:
        return [(None, None)]
    here = tuple(d.name for d in devices if d.connection == "local")
    return [(d, (d.name,)) for d in boards] + ([(None, here)] if here else [])


def compile_variants(variants: list, backend: str | None, axis: tuple, on_compile=None, devices=(),
                     open_board=None) -> list:
    """Every ONNX variant compiled at every combination of ``axis`` (``[]`` unchanged without
    one): :class:`host.campaign.plan.Variant` objects whose ``run_model`` is the compiled file and
    ``recipe`` the compiler's ``.info``; a model that fails to compile gives a variant with its
    ``problem`` (not run, its reason recorded). ``on_compile(variant, info_or_None, reason)`` is
    called after each. A compiler that declares ``board_compile`` makes each inventory board of
    ``devices`` its own file, on that board (:func:`compile_targets`; ``open_board(device)`` opens it,
    the board's lock held meanwhile): those variants name their board (``devices``). Raises
    CompileUsageError: an option the compiler refuses (checked first)."""
    from host.campaign.plan import Variant
    from host.models import ONNX_SUFFIX
    from host.models.runtime_compile import compile_with

    if not axis:
        return variants
    check_axis(backend, axis)
    out = []
    targets = compile_targets(backend, devices)
    for v, combo, (board, names) in ((v, c, t) for v in variants for c in axis for t in targets):
        if v.run_model.suffix.lower() != ONNX_SUFFIX:
            if board is None:
                out.append(v)
            continue
        label = ",".join(f"{k}={val}" for k, val in combo.items())
        try:
            path, info = compile_with(backend, v.run_model, combo, device=board,
                                      board_session=lambda d: compile_board(d, open_board, "host bench"))
        except HostError as exc:  # CompileError, ModelFormatError: this model's cells fail, not the campaign
            reason = f"compile failed ({label}{f', for {board.name}' if board else ''}): {exc}"
            slug = failed_tag(backend, combo)
            slug = slug if v.precision == "fp32" else f"{v.precision}-{slug}"
            out.append(Variant(v.model, slug, v.run_model, None, v.arithmetic, problem=reason, devices=names))
            if on_compile is not None:
                on_compile(v, None, reason)
            continue
        recipe = dict(info, compile_options=combo, source_variant=v.recipe)
        part = tag(info, v.run_model, backend)
        slug = part if v.precision == "fp32" else f"{v.precision}-{part}"
        out.append(Variant(v.model, slug, Path(path), recipe, v.arithmetic, devices=names))
        if on_compile is not None:
            on_compile(v, info, None)
    return out
