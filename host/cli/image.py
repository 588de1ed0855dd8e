"""``host image``: build the per-family device images, save them as archives for ``host
deploy`` (inventory ``image_archive``), and write the ZCU104 native bundle.

    host image list
    host image build FAMILY [--variant V] [--engine docker|podman|"podman --root ... --runtime runc"]
                     [--base IMAGE] [--tag T] [--build-arg K=V]... [--platform linux/arm64]
                     [--build-opt "--ulimit nofile=1024:1024"]... [--wheelhouse DIR] [--dry-run]
    host image build zcu104 [--out dist]                # the native bundle tarball
    host image build zcu104 --variant compile           # the Vitis AI 3.0 compile-flow image
    host image save IMAGE|FAMILY --output FILE [--variant V] [--engine ...]

FAMILY is a family's one name (``runners/families/<family>.py``); its variants come from its
descriptor. Exit codes: 0 done; 1 the build/save failed (message + hint); 2 bad usage (unknown
family, variant or option). The library is :mod:`host.lab.images` (and :mod:`host.lab.bundle`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from host.cli.lab import JsonOpt, fail
from host.cli.options import DAY_S, bounded
from host.errors import HostError

app = typer.Typer(no_args_is_help=True,
                  help="device images: build (docker/podman), save archives, the ZCU104 bundle")

def _families_help() -> str:
    """``jetson: jp5|jp6 [jp5]; ...`` from the family descriptors."""
    from runners.families import descriptors

    return "; ".join(f"{d.name}: {'|'.join(v.name for v in d.variants)} (default {d.variant().name})"
                     for d in descriptors().values() if len(d.variants) > 1)


def _family_names() -> str:
    from runners.families import descriptors

    return " | ".join(d.name for d in descriptors().values() if d.variants)


FamilyArg = Annotated[str, typer.Argument(help=f"{_family_names()} (`host image list`)")]
VariantOpt = Annotated[Optional[str], typer.Option("--variant", "-V", help=_families_help())]
EngineOpt = Annotated[str, typer.Option(
    "--engine", "-e", help="container engine command line: docker, podman, or e.g. "
                           "'podman --root /data/c --runtime runc' [docker]")]


@app.command("list")
def list_families(json_out: JsonOpt = False):
    """Families, their variants, default tags, Dockerfiles and target platforms."""
    from host.cli.render import PlainTable as Table
    from host.cli.render import console, print_json
    from host.lab.images import default_tag, image_families, image_version, smoke_runtime

    rows = []
    for fam, desc in image_families().items():
        for var in desc.variants:
            out = (f"dist/edgegauge-{desc.image_folder}-bundle-{image_version()}.tar.gz" if var.bundle
                   else default_tag(fam, var.name))
            rows.append({"family": fam, "variant": var.name, "default": var == desc.variant(),
                         "folder": f"images/{desc.image_folder}", "output": out,
                         "dockerfile": var.dockerfile or None, "platform": var.platform,
                         "base": var.default_base or None, "base_arg": None if var.bundle else var.base_arg,
                         "runtime": smoke_runtime(var), "build_args": var.build_args})
    if json_out:
        print_json(rows)
        return
    table = Table(title="host image list", title_justify="left")
    for col in ("family", "variant", "tag / file", "Dockerfile", "base", "platform", "runtime", "build args"):
        table.add_column(col)
    for r in rows:
        variant = r["variant"] + (" (default)" if r["default"] else "")
        args = " ".join(f"{k}={v}" for k, v in r["build_args"].items()) or "-"
        table.add_row(r["family"], variant, r["output"], r["dockerfile"] or "(native bundle)",
                      r["base"] or "-", r["platform"] or "-", r["runtime"], args)
    console().print(table)


@app.command()
def build(
    family: FamilyArg,
    variant: VariantOpt = None,
    engine: EngineOpt = "docker",
    base: Annotated[Optional[str], typer.Option(
        "--base", help="base image (the variant's BASE_IMAGE* build arg, see `host image list --json`), "
                       "e.g. localhost/debian:bookworm-minbase")] = None,
    tag: Annotated[Optional[str], typer.Option(
        "--tag", "-t", help="image tag [edgegauge/<family>:<version><-variant>]")] = None,
    build_arg: Annotated[Optional[List[str]], typer.Option(
        "--build-arg", help="KEY=VALUE build argument; repeatable")] = None,
    platform: Annotated[Optional[str], typer.Option(
        "--platform", help="target platform, e.g. linux/arm64 (cross builds need QEMU binfmt)")] = None,
    build_opt: Annotated[Optional[List[str]], typer.Option(
        "--build-opt", help="extra `<engine> build` options, split like a shell, e.g. "
                            "'--ulimit nofile=1024:1024'; repeatable")] = None,
    wheelhouse: Annotated[Optional[Path], typer.Option(
        "--wheelhouse", help="install Python wheels only from this folder (served on 127.0.0.1 "
                             "for the build, which then uses --network host) instead of PyPI")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="bundle variant: output folder [dist]")] = None,
    timeout: Annotated[Optional[float], bounded(
        1, 7 * DAY_S, "give up after this many seconds [none]", "--timeout")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="do not echo the engine's output")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the build command, run nothing")] = False,
    json_out: JsonOpt = False,
):
    """Build FAMILY's image with the docker CLI or podman (context: the repository root), or,
    for a bundle variant (zcu104's default), write the deterministic native bundle.

    Labels org.opencontainers.image.{version,revision,created,source} come from the edgegauge
    version, `git rev-parse HEAD`, the current UTC time and the origin remote.
    """
    import shlex

    from host.cli.render import console, print_json, styled
    from host.lab import images

    out_console = console()
    err = console(stderr=True)
    try:
        fam, var = images.resolve_variant(family, variant)
        if var.bundle:
            _write_bundle(fam, var, out, dry_run=dry_run, json_out=json_out)
            return
        opts: List[str] = []
        for item in build_opt or []:
            opts += shlex.split(item)
        plan = images.plan_build(fam, var.name, engine=engine, base=base, tag=tag, build_args=build_arg,
                                 platform=platform, build_opts=opts, wheelhouse=wheelhouse)
        if dry_run:
            extra = {"PIP_EXTRA_ARGS": "--no-index --find-links http://127.0.0.1:PORT/"} \
                if plan.wheelhouse else None
            out_console.print(shlex.join(plan.argv(extra, plan.wheelhouse is not None)), highlight=False,
                              soft_wrap=True)
            return
        if not quiet and not json_out:
            err.print(f"building {plan.tag} ({fam}/{var.name}) with {plan.engine[0]} …", highlight=False)
        log = None if (quiet or json_out) else (lambda line: err.print(line, markup=False, highlight=False,
                                                                       soft_wrap=True))
        res = images.build_image(plan, log=log, timeout=timeout)
    except HostError as exc:
        fail(exc)
        return
    if json_out:
        print_json({"family": fam, "variant": var.name, "tag": res.tag, "seconds": round(res.seconds, 1),
                    "labels": res.labels, "argv": res.argv})
    else:
        out_console.print(styled(("built", "green"), f" {res.tag} in {res.seconds:.1f} s "
                                 f"(revision {res.labels[images.OCI + '.revision']})"), highlight=False)
        out_console.print(f"save for boards: host image save {res.tag} --output {fam}.tar"
                          + (f" --engine {shlex.quote(engine)}" if engine != "docker" else ""),
                          highlight=False, soft_wrap=True)


def _write_bundle(fam: str, var, out: Path | None, *, dry_run: bool, json_out: bool) -> None:
    """``host image build zcu104``: write (or, dry run, name) the native bundle and report it.

    Raises:
        ImageBuildError, UnknownFamilyError: see :func:`host.lab.bundle.build_bundle`."""
    from host.cli.render import console, human_bytes, print_json, styled
    from host.lab import bundle, images

    if dry_run:
        folder = images.family(fam).image_folder
        console().print(f"would write {(out or images.REPO_ROOT / 'dist')}/"
                        f"edgegauge-{folder}-bundle-{images.image_version()}.tar.gz", highlight=False)
        return
    res = bundle.build_bundle(out, family=fam)
    if json_out:
        print_json({"family": fam, "variant": var.name, "bundle": str(res.path),
                    "sha256": res.sha256, "bytes": res.bytes, "files": res.files})
    else:
        console().print(styled(("wrote", "green"), f" {res.path} ({human_bytes(res.bytes)}, "
                               f"{len(res.files)} files)\nsha256 {res.sha256}"), highlight=False)


@app.command()
def save(
    image: Annotated[str, typer.Argument(help="image reference, or a family (its default tag)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="archive file to write")],
    variant: VariantOpt = None,
    engine: EngineOpt = "docker",
    json_out: JsonOpt = False,
):
    """Write `<engine> save -o FILE IMAGE`: an archive that `docker load` / `podman load` read.
    Point the inventory's image_archive at it and `host deploy` loads it onto boards that lack
    the image (no registry needed)."""
    from host.cli.render import console, human_bytes, print_json, styled
    from host.lab import images

    try:
        res = images.save_image(image, output, variant=variant, engine=engine)
    except HostError as exc:
        fail(exc)
        return
    if json_out:
        print_json({"image": res.image, "path": str(res.path), "bytes": res.bytes,
                    "seconds": round(res.seconds, 1)})
    else:
        console().print(styled(("saved", "green"), f" {res.image} -> {res.path} ({human_bytes(res.bytes)}, "
                               f"{res.seconds:.1f} s)\ninventory: image_archive={res.path}"), highlight=False)
