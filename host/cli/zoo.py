"""``host zoo``: export the example models of :mod:`host.models.zoo` to ONNX; make int8 and fp16
variants of any ONNX model (``quantize``, ``convert``; :mod:`host.models.precision`) and pruned
ones (``prune``; :mod:`host.models.prune`).

The main app mounts this sub-app with ``app.add_typer(cli_zoo.app, name="zoo")``; it also
runs standalone as ``python -m host.cli.zoo export ...``. Commands only parse options, call
:mod:`host.models.zoo` and render; :class:`host.errors.HostError` becomes ``error: ...`` (plus the
hint) on stderr and exit code 1.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console

from host.cli.options import MAX_SEED, bounded
from host.cli.render import PlainTable as Table  # names and paths are text, not markup
from host.cli.render import styled
from host.errors import HostError
from host.models import ONNX_SUFFIX, zoo

app = typer.Typer(
    help="Example models: random-init torchvision classifiers exported to ONNX "
    "(for latency/memory benchmarks, not accuracy); int8/fp16 and pruned variants of ONNX models.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _zoo() -> None:
    # A callback keeps ``export`` a sub-command when this app runs standalone too.
    pass


def _fail(err: HostError) -> NoReturn:
    """Print a HostError as ``error: <msg>`` + ``hint: <hint>`` on stderr and exit."""
    console = Console(stderr=True, highlight=False)
    console.print(styled(("error:", "red"), f" {err}"), soft_wrap=True)
    if err.hint:
        console.print(f"hint: {err.hint}", markup=False, soft_wrap=True)
    raise typer.Exit(code=getattr(err, "exit_code", 1))


def _entry_row(e: zoo.ZooEntry) -> dict:
    return {
        "name": e.name,
        "arch": f"torchvision.models.{e.arch}",
        "input_shape": list(e.input_shape),
        "num_classes": e.num_classes,
        "width_mult": e.width_mult,
        "dataset_shape": e.dataset,
        "summary": e.summary,
    }


def _print_list(as_json: bool) -> None:
    rows = [_entry_row(e) for e in zoo.ZOO]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="host zoo models (random-init weights)")
    for col in ("name", "arch", "input shape", "classes", "width"):
        table.add_column(col, no_wrap=col != "arch", overflow="fold")
    for r in rows:
        table.add_row(
            r["name"],
            r["arch"].rsplit(".", 1)[-1],
            "x".join(str(d) for d in r["input_shape"]),
            str(r["num_classes"]),
            "" if r["width_mult"] is None else str(r["width_mult"]),
        )
    Console().print(table)


def _made_by(command: Optional[str]) -> str:  # noqa: UP045
    """``host zoo export``, or a script as ``name (folder)``: short enough for a 100-column table."""
    if not command:
        return "-"
    if command.startswith("host zoo export"):
        return "host zoo export"
    script = Path(command.split()[-1])
    return f"{script.name} ({script.parent})" if script.parent != Path(".") else script.name


@app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows instead of a table.")] = False,
) -> None:
    """List every example model: the zoo's (random weights, made by host zoo export) and the ones
    bundled in examples/models (digits_cnn: trained), with the command that re-creates each."""
    try:
        rows = zoo.catalogue()
    except HostError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="example models (bundled: in examples/models; the model sets: host zoo export "
                        "--set NAME --list)")
    for col in ("name", "weights", "input", "classes", "bundled", "made by"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["weights"], "x".join(str(d) for d in r["input_shape"] or []) or "-",
                      str(r["num_classes"] or "-"), "yes" if r["bundled"] else "no", _made_by(r["command"]))
    console = Console()
    console.print(table)
    console.print("re-create one: host zoo export --only NAME (random weights); --json: each one's command",
                  highlight=False, markup=False)


@app.command("export")
def export_cmd(
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--out", help="Folder for <name>.onnx and <name>.info (default examples/models; "
                     "with --set: ~/.cache/edgegauge/models/<set>)."),
    ] = None,
    only: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer evaluates this at runtime; 3.9-safe
        typer.Option("--only", help="Export only this zoo model (repeatable); see --list."),
    ] = None,
    list_only: Annotated[
        bool, typer.Option("--list", help="Print the exportable models and exit; exports nothing "
                           "(host zoo list: every example model, the trained digits_cnn too).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (the .info dicts) instead of a table.")
    ] = False,
    set_name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--set", help="Export a model set instead of the examples: modelgauge (32 models) or "
                     "scaling (12, width-scaled, CIFAR-10 shaped). Cached: same recipe, no re-export."),
    ] = None,
) -> None:
    """Export zoo models to ONNX (opset 17, static shape) with a .info provenance sidecar.

    Needs torch and torchvision: pip install torch==2.14.1 torchvision==0.29.1
    """
    if set_name is not None:
        _export_set(set_name, out, only, list_only, as_json)
        return
    if list_only:
        _print_list(as_json)
        return
    out = Path(zoo.DEFAULT_OUT_DIR) if out is None else out

    err_console = Console(stderr=True, highlight=False)

    def progress(i: int, total: int, entry: zoo.ZooEntry) -> None:
        if not as_json:
            err_console.print(f"[{i + 1}/{total}] exporting {entry.name} ...", markup=False)

    try:
        infos = zoo.export_zoo(out, only=only, progress=progress)
    except HostError as e:
        _fail(e)

    if as_json:
        typer.echo(json.dumps(infos, indent=2))
        return
    table = Table(title=f"exported to {out}")
    table.add_column("name", overflow="fold")
    table.add_column("file", overflow="fold")
    table.add_column("size MB", justify="right", no_wrap=True)
    table.add_column("torch params", justify="right", no_wrap=True)
    table.add_column("input shape", no_wrap=True)
    for info in infos:
        table.add_row(
            info["name"],
            info["file"],
            f"{info['size_bytes'] / 1e6:.2f}",
            f"{info['torch_params']:,}",
            "x".join(str(d) for d in info["input_shape"]),
        )
    Console().print(table)


def _export_set(set_name: str, out: Optional[Path], only, list_only: bool, as_json: bool) -> None:  # noqa: UP045
    """``export --set``: list the set, or export it (cached) and print one row per model."""
    err_console = Console(stderr=True, highlight=False)
    try:
        entries = zoo.set_entries(set_name, only)
        if list_only:
            rows = [dict(_entry_row(e), arch=e.arch, builder=e.builder, set=e.set_name) for e in entries]
            if as_json:
                typer.echo(json.dumps(rows, indent=2))
                return
            table = Table(title=f"model set {set_name}: {len(rows)} models (random-init weights)")
            for col in ("name", "builder", "arch", "input shape", "width"):
                table.add_column(col, overflow="fold")
            for r in rows:
                table.add_row(r["name"], r["builder"], r["arch"], "x".join(map(str, r["input_shape"])),
                              "" if r["width_mult"] is None else f"{r['width_mult']:g}")
            Console().print(table)
            return
        rows = zoo.export_set(set_name, out, only=only, progress=None if as_json else (
            lambda i, n, e: err_console.print(f"[{i + 1}/{n}] {e.name} ...", markup=False)))
    except HostError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"model set {set_name} in {out or zoo.default_set_dir(set_name)}")
    for col, just in (("name", "left"), ("status", "left"), ("s", "right"), ("torch params", "right"),
                      ("size MB", "right"), ("input", "left")):
        table.add_column(col, justify=just, overflow="fold")
    for r in rows:
        if r["status"] == "skipped":
            table.add_row(r["name"], "skipped", "", "", "", r["reason"])
            continue
        table.add_row(r["name"], r["status"], f"{r['export_s']:.1f}", f"{r['torch_params']:,}",
                      f"{r['size_bytes'] / 1e6:.1f}", "x".join(str(d) for d in r["input_shape"]))
    Console().print(table)


# --------------------------------------------------------------------------------------------
# precision variants: quantize (int8) and convert (fp16)

_METRIC_ROWS = (
    ("file size (bytes)", "file_bytes"),
    ("stored weight bytes (+ qparams)", "stored_weight_bytes"),
    ("weight bytes by dtype", "weight_bytes_by_dtype"),
    ("params by dtype", "params_by_dtype"),
    ("quantization params (bytes)", "qparam_bytes"),
    ("bits per weight", "bits_per_weight"),
    ("effective bits per weight", "effective_bits_per_weight"),
    ("compute ops in QDQ", "qdq_compute_share"),
    ("compute ops as integer kernels", "integer_compute_share"),
    ("op types left in float", "ops_left_in_float"),
)


def _cell(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:,}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(value) or "-"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def _warn_if_random(info: Optional[dict]) -> None:  # noqa: UP045
    """A warning on stderr when the variant was calibrated on seeded random data."""
    data = str(((info or {}).get("calibration") or {}).get("data") or "")
    if data.startswith("random"):
        Console(stderr=True, highlight=False, markup=False).print(
            f"warning: calibrated on random data ({data}), not on real inputs: the int8 scales fit noise, so "
            "its accuracy may drop more than real calibration data would give; pass --calibration-data DIR",
            soft_wrap=True)


def _make_variant(model: Path, recipe, cache_dir: Optional[Path], out: Optional[Path],  # noqa: UP045
                  as_json: bool) -> None:
    """Make (or re-use) the variant, copy it to ``out``, print path, size and metrics."""
    from host.models import precision

    started_ns = time.time_ns()
    try:
        path, info = precision.variant(model, recipe, cache_dir)
        _warn_if_random(info)
        cached = path.stat().st_mtime_ns < started_ns
        copied = precision.copy_variant(path, out, recipe.slug()) if out is not None else None
        before, after = precision.precision_metrics(model), precision.precision_metrics(path)
    except HostError as e:
        _fail(e)
    if as_json:
        doc = {"variant": str(path), "copied_to": None if copied is None else str(copied),
               "cache_hit": cached, "recipe": info, "metrics": after, "source_metrics": before}
        typer.echo(json.dumps(doc, indent=2))
        return
    console = Console(highlight=False, markup=False)
    ratio = after["file_bytes"] / before["file_bytes"] if before["file_bytes"] else float("nan")
    console.print(f"{recipe.slug()} variant ({'cached' if cached else 'new'}): {path}", soft_wrap=True)
    if copied is not None:
        console.print(f"copied to: {copied}", soft_wrap=True)
    console.print(f"size: {before['file_bytes']:,} -> {after['file_bytes']:,} bytes ({ratio:.2f}x)")
    table = Table(title=f"{model.name}: fp32 source vs {recipe.slug()}")
    table.add_column("metric")
    table.add_column("source", overflow="fold")
    table.add_column(recipe.slug(), overflow="fold")
    for label, key in _METRIC_ROWS:
        table.add_row(label, _cell(before[key]), _cell(after[key]))
    console.print(table)


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}", param_hint=option)
    return value


_OUT_HELP = "Also copy the variant (and its .info) here: a folder, or a file name ending in .onnx."
_CACHE_HELP = "Variant cache folder (default ~/.cache/edgegauge/variants)."


@app.command("quantize")
def quantize_cmd(
    model: Annotated[Path, typer.Argument(help="fp32 ONNX model.")],
    int8: Annotated[bool, typer.Option("--int8", help="Quantize to int8 (required).")] = False,
    method: Annotated[str, typer.Option("--method", help="static (QDQ, calibrated) | dynamic.")] = "static",
    calibrate: Annotated[
        str, typer.Option("--calibrate", help="Static: minmax | entropy | percentile.")
    ] = "minmax",
    calibration_data: Annotated[
        Optional[Path],  # noqa: UP045 - typer evaluates this at runtime; 3.9-safe
        typer.Option("--calibration-data", help="Folder of .npy/.npz arrays (leading axis = samples); "
                     "default: seeded random data."),
    ] = None,
    samples: Annotated[int, bounded(1, 100_000, "Calibration batches (at most).", "--samples")] = 32,
    seed: Annotated[int, bounded(0, MAX_SEED, "Seed of the random calibration data.", "--seed")] = 0,
    per_tensor: Annotated[
        bool, typer.Option("--per-tensor", help="One weight scale per tensor (default: per channel).")
    ] = False,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help=_OUT_HELP)] = None,  # noqa: UP045
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help=_CACHE_HELP)] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (variant, recipe, metrics).")] = False,
) -> None:
    """Make an int8 variant with ONNX Runtime (static QDQ post-training quantization, or dynamic)
    and print its path, size and precision metrics beside the source's. Cached by recipe."""
    from host.models.precision import Recipe

    if not int8:
        raise typer.BadParameter("say --int8 (fp16: host zoo convert MODEL --fp16)", param_hint="--int8")
    try:
        recipe = Recipe(
            "int8", method=_choice(method, ("static", "dynamic"), "--method"),
            calibration=_choice(calibrate, ("minmax", "entropy", "percentile"), "--calibrate"),
            per_channel=not per_tensor, calibration_samples=samples, seed=seed,
            calibration_data=None if calibration_data is None else str(calibration_data),
        )
    except HostError as e:
        _fail(e)
    _make_variant(model, recipe, cache_dir, out, as_json)


@app.command("convert")
def convert_cmd(
    model: Annotated[Path, typer.Argument(help="fp32 ONNX model.")],
    fp16: Annotated[bool, typer.Option("--fp16", help="Convert to fp16 (required).")] = False,
    fp16_io: Annotated[
        bool, typer.Option("--fp16-io", help="fp16 graph inputs/outputs too (default: kept fp32).")
    ] = False,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help=_OUT_HELP)] = None,  # noqa: UP045
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help=_CACHE_HELP)] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (variant, recipe, metrics).")] = False,
) -> None:
    """Make an fp16 variant (onnxruntime.transformers.float16) and print its path, size and
    precision metrics beside the source's. Cached by recipe."""
    from host.models.precision import Recipe

    if not fp16:
        raise typer.BadParameter("say --fp16 (int8: host zoo quantize MODEL --int8)", param_hint="--fp16")
    _make_variant(model, Recipe("fp16", keep_io_fp32=not fp16_io), cache_dir, out, as_json)


@app.command("prune")
def prune_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX model (fp32).")],
    unstructured: Annotated[Optional[float], typer.Option(  # noqa: UP045
        "--unstructured", help="Zero this share of the Conv/Gemm/MatMul weights (global L1 magnitude), "
        "0.5 to 0.99.")] = None,
    channels: Annotated[Optional[float], typer.Option(  # noqa: UP045
        "--channels", help="Remove this share of each prunable conv's output channels (L1), 0.1 to 0.9: "
        "a smaller dense model.")] = None,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help=_OUT_HELP)] = None,  # noqa: UP045
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help=_CACHE_HELP)] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (variant, recipe).")] = False,
) -> None:
    """Make a pruned variant (no fine-tune) and print its path, the sparsity reached and the layers
    pruned or skipped. Cached by source sha256 x method x ratio; combine with `host zoo quantize` /
    `convert` on the pruned file (or `host bench --precision`)."""
    from host.models import precision, prune

    if (unstructured is None) == (channels is None):
        raise typer.BadParameter("say one of --unstructured RATIO or --channels RATIO",
                                 param_hint="--unstructured")
    started_ns = time.time_ns()
    try:
        recipe = prune.PruneRecipe("unstructured", unstructured) if channels is None \
            else prune.PruneRecipe("channels", channels)
        path, info = prune.variant(model, recipe, cache_dir)
        if out is not None and (out.suffix != ONNX_SUFFIX or out.is_dir()):  # keep a dotted stem whole
            out = out / f"{model.stem}.{recipe.slug()}{ONNX_SUFFIX}"
        copied = precision.copy_variant(path, out, recipe.slug()) if out is not None else None
    except HostError as e:
        _fail(e)
    cached = path.stat().st_mtime_ns < started_ns
    if as_json:
        typer.echo(json.dumps({"variant": str(path), "copied_to": None if copied is None else str(copied),
                               "cache_hit": cached, "recipe": info}, indent=2))
        return
    _print_pruned(model, path, copied, cached, info)


def _print_pruned(model: Path, path: Path, copied: Optional[Path], cached: bool, info: dict) -> None:  # noqa: UP045
    console = Console(highlight=False, markup=False)
    console.print(f"{info['slug']} variant ({'cached' if cached else 'new'}): {path}", soft_wrap=True)
    if copied is not None:
        console.print(f"copied to: {copied}", soft_wrap=True)
    console.print(f"{info['method']} {info['ratio']:g}: Conv/Gemm/MatMul weights {info['params_before']:,} "
                  f"-> {info['params']:,}, non-zeros {info['nonzeros_before']:,} -> {info['nonzeros']:,} "
                  f"(sparsity {info['sparsity']:.4f})", soft_wrap=True)
    table = Table(title=f"{model.name}: layers pruned ({len(info['layers'])})")
    for col in ("node", "op", "params", "non-zeros", "density", "channels kept"):
        table.add_column(col, overflow="fold", justify="left" if col in ("node", "op") else "right")
    for r in info["layers"]:
        kept = f"{r['kept']}/{r['channels']}" if "kept" in r else "-"
        table.add_row(r["node"] or r["weight"], r["op"], f"{r['params']:,}", f"{r['nonzeros']:,}",
                      f"{r['density']:.3f}", kept)
    console.print(table)
    for s in info["skipped"]:
        console.print(f"skipped {s['node']}: {s['reason']}", soft_wrap=True)


@app.command("compile")
def compile_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX model (fp32).")],
    backend: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--backend", help="Compile for this runtime with the compiler its descriptor declares (`host "
        "runtimes`); without it: the Vitis AI flow for the ZCU104's DPU.")] = None,
    option: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--option", help="NAME=VALUE: an option of the runtime's compiler (with --backend; repeatable)."),
    ] = None,
    target: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--target", help="Vitis AI: the board, zcu104 (DPUCZDX8G; the default). With --backend: the "
        "runtime compiler's target (default: this host's CPU).")] = None,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Output folder [the model's; with "  # noqa: UP045
                                                "--backend: the cache only].")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--cache-dir", help="With --backend: the compiler's cache [~/.cache/edgegauge/compiled/<runtime>]."),
    ] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Network name [the model's stem].")] = None,  # noqa: UP045
    input_shape: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--input-shape", help="Calibration batch NxCxHxW (default: the ONNX input, batch 1)."),
    ] = None,
    calibration_data: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--calibration-data", help="Folder of .npy batches (float32 NCHW, one batch per file); "
                     "default: random batches (latency only)."),
    ] = None,
    calib_batches: Annotated[int, bounded(1, 100_000, "Random calib batches.", "--calib-batches")] = 8,
    engine: Annotated[str, typer.Option("--engine", help="docker, podman, or a podman command.")] = "docker",
    image: Annotated[Optional[str], typer.Option("--image", help="Compile image tag (default: "  # noqa: UP045
                                                 "edgegauge/vitis-ai-compile:<version>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the .info recipe as JSON.")] = False,
    device: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--device", "-d", help="With --backend: compile for this inventory board, its target from its "
        "facts; a compiler that measures (TVM codegen=tuned) measures on it, over its SSH connection "
        "(TVM's RPC). `local` or none: this host.")] = None,
    inventory: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--inventory", "-i", help="With --device: inventory file or NAME [./inventory.ini].")] = None,
) -> None:
    """Quantize and compile MODEL for the board's DPU in the Vitis AI 3.0 image (docker/podman):
    writes NAME.xmodel and NAME.info (recipe: source sha256, VAI version, arch.json fingerprint,
    calibration) and prints the xmodel's path. With --backend NAME: the runtime's own compiler
    makes its model file on this host, cached with a .info recipe (e.g. TVM: --option
    codegen=untuned|tuned --option tune_trials=32); with --device BOARD for that board (TVM tuned:
    MetaSchedule measures on the board through TVM's RPC)."""
    if backend is not None:
        _compile_for_runtime(model, backend, option, target, out, cache_dir, as_json, (device, inventory))
        return
    if option or device:
        flag = "--option" if option else "--device"
        raise typer.BadParameter(f"{flag} needs --backend NAME", param_hint=flag)
    from host.lab.images import default_tag, engine_argv, qualify
    from host.models import compile as vai

    try:
        words = engine_argv(engine)
        shape = None
        if input_shape:
            try:
                shape = tuple(int(d) for d in input_shape.lower().replace(",", "x").split("x"))
            except ValueError:
                raise typer.BadParameter(f"{input_shape!r}: expected NxCxHxW",
                                         param_hint="--input-shape") from None
        job = vai.make_job(model, target or "zcu104",
                           image=qualify(image or default_tag("vitis-ai", "compile"), words),
                           out=out, name=name, input_shape=shape, calibration_data=calibration_data,
                           calib_batches=calib_batches)
        xmodel = vai.compile_model(words, job)
    except HostError as e:
        _fail(e)
    if as_json:
        typer.echo(xmodel.with_suffix(".info").read_text(encoding="utf-8"))
    else:
        typer.echo(str(xmodel))


def _compile_for_runtime(model: Path, backend: str, option, target, out, cache_dir, as_json: bool,
                         board: tuple = (None, None)) -> None:
    """``host zoo compile --backend NAME [--device BOARD [-i INVENTORY]]``: the descriptor's compiler
    (host.models.runtime_compile), for the board when one is named."""
    from host.campaign.compiled import compile_board
    from host.cli.lab import select
    from host.models import runtime_compile

    # --json: stdout holds the document only; what the compiler logs there (MetaSchedule) goes to stderr
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    try:
        found = select(board[1], [board[0]], (), False)[1][0] if board[0] else None
        with quiet:
            path, info = runtime_compile.compile_with(backend, model, runtime_compile.parse_options(option),
                                                      target=target, cache_dir=cache_dir, device=found,
                                                      board_session=compile_board)
        copied = runtime_compile.copy_compiled(path, info, out) if out is not None else None
    except HostError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps({"compiled": str(path), "copied_to": None if copied is None else str(copied),
                               "cache_hit": bool(info.get("cache_hit")), "recipe": info}, indent=2))
        return
    console = Console(highlight=False, markup=False)
    console.print(f"{info.get('name') or path.name} ({'cached' if info.get('cache_hit') else 'new'}): {path}",
                  soft_wrap=True)
    if copied is not None:
        console.print(f"copied to: {copied}", soft_wrap=True)
    tuning = info.get("tuning") or {}
    facts = [f"{k} {info[k]}" for k in ("codegen", "trials", "target_text") if info.get(k) is not None]
    if info.get("measured_on"):
        facts.append(f"measured on {info['measured_on'].get('board')}")
    facts.append(f"compile {info.get('compile_s')} s")
    if tuning:
        facts.append("tuning: database re-used" if tuning.get("cache_hit") else f"tuning {tuning.get('s')} s")
    console.print("; ".join(facts), soft_wrap=True)


if __name__ == "__main__":  # python -m host.cli.zoo export ...
    app()
