"""The hostile-input sweep of issue 20: a library of cases and the harness that runs them.

Each :class:`Case` runs ``.venv/bin/host ARGV`` as a subprocess in a scratch folder of its own (the
current folder; ``HOME`` points at ``home/`` inside it), after its ``setup`` wrote the hostile files.
The harness snapshots every path of the scratch tree (type, mode, sha256 or link target) before and
after, and a case passes only when

* the exit code is one of ``exit`` (0 ok, 1 typed error, 2 usage error, 3 INVALID cells),
* every string of ``expect`` is in stdout + stderr (case-insensitive, whitespace collapsed, box
  characters dropped): the file, field or option the message must name,
* no output contains ``Traceback``,
* no path outside ``may_change`` (globs relative to the scratch folder, plus the tool's cache
  ``home/.cache/**`` and its device history ``home/.local/state/edgegauge/**``) was lost, changed
  or created, and the bytes of each ``moved_aside`` file are still somewhere in the tree (moved
  aside, never deleted).

``python tests/hostile_sweep.py --write`` regenerates the table in docs/testing.md from :data:`CASES`
(tests/test_hostile_sweep.py asserts the committed table equals it).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
HOST = ROOT / ".venv" / "bin" / "host"
TINY = ROOT / "tests" / "fixtures" / "models" / "tiny_cnn.onnx"
DIGITS = ROOT / "examples" / "models" / "digits_cnn.onnx"
DOC = ROOT / "docs" / "testing.md"
BEGIN, END = "<!-- hostile-sweep:begin -->", "<!-- hostile-sweep:end -->"
#: options that keep a real bench short: null backend, quick protocol, 1 s per model
FAST = ("--backend", "null", "--quick", "--max-s", "1")
#: the tool's own caches: always allowed to change
CACHE = ("home/.cache/**", "home/.config", "home/.config/matplotlib/**",  # ours, matplotlib's font cache
         "home/.local", "home/.local/state", "home/.local/state/edgegauge/**")  # the device history
#: the command line that runs ``host`` (HOSTILE_SWEEP_HOST, e.g. "python -m host" over another checkout)
HOST_CMD = os.environ.get("HOSTILE_SWEEP_HOST", "").split() or [str(HOST)]


@dataclass
class Ctx:
    """What a case's setup works with: the scratch folder, the base results copied into ``res/``
    (campaign ``base``, device ``local``, cells of tiny_cnn and digits_cnn), placeholders for
    argv (``{root}``, ``{port}``) and cleanups to run after the command."""

    root: Path
    fmt: dict = field(default_factory=dict)
    cleanups: list = field(default_factory=list)

    @property
    def device_dir(self) -> Path:
        return self.root / "res" / "base" / "local"

    def cell(self, stem: str = "tiny_cnn") -> Path:
        return next(self.device_dir.glob(f"{stem}__*.json"))


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple
    hostile: str
    exit: tuple
    expect: tuple = ()
    setup: Callable[[Ctx], None] | None = None
    may_change: tuple = ()
    moved_aside: tuple = ()
    timeout: float = 60.0

    @property
    def command(self) -> str:
        words = [a for a in self.argv if not str(a).startswith("-")]
        first = str(words[0]) if words else ""
        return f"{first} --html" if first == "report" and "--html" in self.argv else first


# ---------------------------------------------------------------- setup helpers


def _write(rel: str, data: bytes | str):
    def setup(ctx: Ctx) -> None:
        p = ctx.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    return setup


def _model(name: str | bytes, src: Path = TINY):
    def setup(ctx: Ctx) -> None:
        dest = os.path.join(os.fsencode(ctx.root), os.fsencode(name))
        shutil.copyfile(src, dest)

    return setup


def _chain(*steps):
    def setup(ctx: Ctx) -> None:
        for step in steps:
            step(ctx)

    return setup


def _edit_cell(mutate, stem: str = "tiny_cnn"):
    """Hand-edit the base cell of ``stem``: ``mutate(dict) -> dict | list | None`` (None: edited in place)."""

    def setup(ctx: Ctx) -> None:
        path = ctx.cell(stem)
        doc = json.loads(path.read_text())
        out = mutate(doc)
        path.write_text(json.dumps(doc if out is None else out, indent=2))

    return setup


def _set(dotted: str, value):
    def mutate(doc):
        *parents, leaf = dotted.split(".")
        node = doc
        for key in parents:
            node = node[key]
        node[leaf] = value

    return _edit_cell(mutate)


def _truncate_samples(ctx: Ctx) -> None:
    npz = next(ctx.device_dir.glob("tiny_cnn__*.samples.npz"))
    npz.write_bytes(npz.read_bytes()[:200])


def _rename_cell(stem: str):
    """The tiny_cnn cell as if its model were called ``stem`` (cell, samples and their names)."""

    def setup(ctx: Ctx) -> None:
        cell = ctx.cell()
        doc = json.loads(cell.read_text())
        config = doc["cell"]["config"]
        npz = cell.with_name(doc["samples"]["file"])
        new = f"{stem}__{config}"
        npz.rename(ctx.device_dir / f"{new}.samples.npz")
        doc["cell"]["model_stem"] = stem
        doc["samples"]["file"] = f"{new}.samples.npz"
        doc["model"]["host_path"] = str(ctx.root / f"{stem}.onnx")
        (ctx.device_dir / f"{new}.json").write_text(json.dumps(doc, indent=2))
        cell.unlink()

    return setup


def _split_campaigns(ctx: Ctx) -> None:
    """res/base keeps only tiny_cnn, res2/base only digits_cnn: two campaigns with no cell in common."""
    other = ctx.root / "res2" / "base"
    shutil.copytree(ctx.root / "res" / "base", other)
    for p in ctx.device_dir.glob("digits_cnn__*"):
        p.unlink()
    for p in (other / "local").glob("tiny_cnn__*"):
        p.unlink()


def _campaign_dir(rel: str, campaign_json: bytes | None = None):
    def setup(ctx: Ctx) -> None:
        d = ctx.root / rel
        d.mkdir(parents=True, exist_ok=True)
        if campaign_json is not None:
            (d / "campaign.json").write_bytes(campaign_json)

    return setup


def _existing_cell_for_bench(mutate_text: str):
    """A campaign res/c whose tiny_cnn cell (from the base) was hand-edited to ``mutate_text``."""

    def setup(ctx: Ctx) -> None:
        _model("tiny_cnn.onnx")(ctx)
        dest = ctx.root / "res" / "c" / "local"
        dest.mkdir(parents=True)
        cell = ctx.cell()
        shutil.copy(cell.with_name(json.loads(cell.read_text())["samples"]["file"]), dest)
        (dest / cell.name).write_text(mutate_text)
        ctx.fmt["cell"] = cell.name

    return setup


def _user_dir(rel: str):
    """A folder of the user's own files (which no command may touch)."""

    def setup(ctx: Ctx) -> None:
        d = ctx.root / rel
        (d / "notes").mkdir(parents=True, exist_ok=True)
        (d / "thesis.tex").write_text("\\chapter{Results}\n")
        (d / "notes" / "todo.txt").write_text("measure the Jetson\n")

    return setup


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _board(extra: str = "", port: int | None = None):
    """lab.ini with one board b1 on 127.0.0.1 (a closed port unless ``port``)."""

    def setup(ctx: Ctx) -> None:
        p = port or ctx.fmt.get("port") or _free_port()
        ctx.fmt["port"] = str(p)
        line = f"b1 ansible_host=127.0.0.1 ansible_port={p} ansible_user=edge {extra}".rstrip()
        (ctx.root / "lab.ini").write_text(f"[lab]\n{line.replace('{root}', str(ctx.root))}\n")

    return setup


def _not_ssh_server(ctx: Ctx) -> None:
    """A listener on 127.0.0.1 that answers every connection with a line that is not SSH."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    ctx.fmt["port"] = str(srv.getsockname()[1])

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nnot ssh\r\n")

    threading.Thread(target=serve, daemon=True).start()
    ctx.cleanups.append(srv.close)


def _ssh_config_proxycommand(ctx: Ctx) -> None:
    ssh = ctx.root / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "config").write_text(f"Host *\n    ProxyCommand sh -c 'touch {ctx.root}/pwned; nc %h %p'\n")


def _symlink_loop(name: str):
    def setup(ctx: Ctx) -> None:
        os.symlink(name, ctx.root / name)

    return setup


def _mkdir(rel: str):
    def setup(ctx: Ctx) -> None:
        (ctx.root / rel).mkdir(parents=True)

    return setup


# ---------------------------------------------------------------- the cases

_B = ("bench", "--results", "res", "--campaign", "c")
_RES = ("res/**",)
_BAD_CHILDREN = "[lab:children]\nnope\n"
_BAD_SECTION = "[lab:weird]\nb1\n"


def _cases() -> list[Case]:
    cell = "tiny_cnn__"  # every cell-file message names the file (its name starts so)
    corrupt = [  # (id suffix, hostile text, setup, strings the message names)
        ("latency_string", '`"latency": "x"` in a cell', _set("latency", "x"), (cell, "latency")),
        ("params_string", '`"params": "many"` in a cell', _set("metrics.params", "many"), (cell, "params")),
        (
            "ci95_one",
            "`latency_ms_p50_ci95: [1]`",
            _set("latency.latency_ms_p50_ci95", [1]),
            (cell, "latency_ms_p50_ci95"),
        ),
        ("cell_is_list", "a cell file holding a list", _edit_cell(lambda d: [d]), (cell,)),
        (
            "p50_nan",
            "`latency_ms_p50: NaN` in a cell",
            _set("latency.latency_ms_p50", float("nan")),
            (cell, "latency_ms_p50"),
        ),
        ("schema_99", '`"schema_version": "99.0"`', _set("schema_version", "99.0"), (cell, "schema_version")),
    ]
    cases = [
        # ---- bench: options (item 8)
        Case(
            "bench_max_s_inf",
            ("bench", "tiny_cnn.onnx", "--max-s", "inf"),
            "`--max-s inf`",
            (2,),
            ("--max-s",),
            _model("tiny_cnn.onnx"),
        ),
        Case(
            "bench_timeout_inf",
            ("bench", "tiny_cnn.onnx", "--timeout", "inf"),
            "`--timeout inf`",
            (2,),
            ("--timeout",),
            _model("tiny_cnn.onnx"),
        ),
        Case(
            "bench_fps_inf",
            ("bench", "tiny_cnn.onnx", "--fps", "inf"),
            "`--fps inf`",
            (2,),
            ("--fps",),
            _model("tiny_cnn.onnx"),
        ),
        Case(
            "bench_loop_max_s_inf",
            ("bench", "tiny_cnn.onnx", "--loop-max-s", "inf"),
            "`--loop-max-s inf`",
            (2,),
            ("--loop-max-s",),
            _model("tiny_cnn.onnx"),
        ),
        Case(
            "bench_threads_huge",
            ("bench", "tiny_cnn.onnx", "--threads", "99999999"),
            "`--threads 99999999`",
            (2,),
            ("--threads",),
            _model("tiny_cnn.onnx"),
        ),
        # ---- bench: results paths (item 7) and campaign.json (item 5), long names (item 6)
        Case(
            "bench_results_is_file",
            ("bench", "tiny_cnn.onnx", "--results", "res.txt", *FAST),
            "`--results` names a file",
            (1, 2),
            ("res.txt",),
            _chain(_model("tiny_cnn.onnx"), _write("res.txt", "my notes\n")),
        ),
        Case(
            "bench_campaign_dir_is_file",
            (*_B, "tiny_cnn.onnx", *FAST),
            "a file where RESULTS/<campaign> goes",
            (1, 2),
            ("res/c",),
            _chain(_model("tiny_cnn.onnx"), _write("res/c", "not a folder\n")),
        ),
        Case(
            "bench_device_dir_is_file",
            (*_B, "tiny_cnn.onnx", *FAST),
            "a file where the device folder goes",
            (1, 2),
            ("local",),
            _chain(_model("tiny_cnn.onnx"), _write("res/c/local", "not a folder\n")),
            may_change=("res/c/.lock", "res/c/campaign.json"),
        ),
        Case(
            "bench_campaign_json_truncated",
            (*_B, "tiny_cnn.onnx", *FAST),
            "a truncated campaign.json",
            (1,),
            ("campaign.json",),
            _chain(_model("tiny_cnn.onnx"), _campaign_dir("res/c", b'{"schema_version": "2.0", "camp')),
            may_change=("res/c/.lock",),
        ),
        Case(
            "bench_campaign_json_list",
            (*_B, "tiny_cnn.onnx", *FAST),
            "campaign.json holding a list",
            (1,),
            ("campaign.json",),
            _chain(_model("tiny_cnn.onnx"), _campaign_dir("res/c", b"[]")),
            may_change=("res/c/.lock",),
        ),
        Case(
            "bench_campaign_300",
            ("bench", "tiny_cnn.onnx", "--results", "res", "--campaign", "c" * 300, *FAST),
            "a 300-character `--campaign` (shortened with a hash, or refused)",
            (0, 1, 2, 3),
            ("c" * 16,),
            _model("tiny_cnn.onnx"),
            may_change=_RES,
        ),
        Case(
            "bench_model_name_245",
            ("bench", "m" * 245 + ".onnx", *_B[1:], *FAST),
            "a 245-character model name",
            (0, 3),
            (),
            _model("m" * 245 + ".onnx"),
            may_change=_RES,
        ),
        # ---- bench: hostile model files (own)
        Case(
            "bench_model_is_directory",
            (*_B, "dir.onnx", *FAST),
            "the model is a directory",
            (1, 2),
            ("dir.onnx",),
            _mkdir("dir.onnx"),
            may_change=_RES,
        ),
        Case(
            "bench_model_empty",
            (*_B, "zero_bytes.onnx", "--quick", "--max-s", "1"),
            "an empty model file (ort backend: the null one loads nothing)",
            (1, 2),
            ("zero_bytes",),
            _write("zero_bytes.onnx", b""),
            may_change=_RES,
        ),
        Case(
            "bench_model_symlink_loop",
            (*_B, "loop.onnx", *FAST),
            "a model that is a symlink loop",
            (1, 2),
            ("loop.onnx",),
            _symlink_loop("loop.onnx"),
            may_change=_RES,
        ),
        Case(
            "bench_model_non_utf8_name",
            (*_B, b"\xff\xfe.onnx", *FAST),
            "a non-UTF-8 model file name",
            (0, 1, 2, 3),
            (),
            _model(b"\xff\xfe.onnx"),
            may_change=_RES,
        ),
        Case(
            "bench_markup_model_name",
            (*_B, "[bold]x.onnx", *FAST),
            "a model called `[bold]x.onnx`",
            (0, 3),
            ("[bold]x",),
            _model("[bold]x.onnx"),
            may_change=_RES,
        ),
        Case(
            "bench_markup_campaign",
            ("bench", "tiny_cnn.onnx", "--results", "res", "--campaign", "x[/]y", *FAST),
            "a campaign named `x[/]y`",
            (0, 1, 2, 3),
            ("x[/]y",),
            _model("tiny_cnn.onnx"),
            may_change=_RES,
        ),
        # ---- bench resume over hand-edited cells (item 4): moved aside, measured again
        Case(
            "bench_resume_cell_latency_string",
            (*_B, "tiny_cnn.onnx", *FAST),
            'resume over a cell with `"latency": "x"`',
            (0, 3),
            ("{cell}",),
            _existing_cell_for_bench('{"schema_version": "2.0", "latency": "x"}'),
            may_change=_RES,
            moved_aside=("res/c/local/{cell}",),
        ),
        Case(
            "bench_resume_cell_is_list",
            (*_B, "tiny_cnn.onnx", *FAST),
            "resume over a cell holding a list",
            (0, 3),
            ("{cell}",),
            _existing_cell_for_bench("[1, 2]"),
            may_change=_RES,
            moved_aside=("res/c/local/{cell}",),
        ),
        # ---- report / report --html (items 3, 4, 9)
        *[
            Case(
                f"report_{sfx}",
                ("report", "res", "--out", "out"),
                text,
                (0, 1),
                names,
                setup,
                may_change=("out/**",),
            )
            for sfx, text, setup, names in corrupt
        ],
        *[
            Case(
                f"report_html_{sfx}",
                ("report", "res", "--out", "out", "--html"),
                text,
                (0, 1),
                names,
                setup,
                may_change=("out/**",),
            )
            for sfx, text, setup, names in corrupt[:4]
        ],
        Case(
            "report_html_truncated_samples",
            ("report", "res", "--out", "out", "--html"),
            "a truncated `.samples.npz`",
            (0, 1),
            ("samples.npz",),
            _truncate_samples,
            may_change=("out/**",),
        ),
        Case(
            "report_html_mathtext_model",
            ("report", "res", "--out", "out", "--html"),
            "a model named `x$\\foo^^$y.onnx`",
            (0,),
            ("report.html",),
            _rename_cell("x$\\foo^^$y"),
            may_change=("out/**",),
        ),
        Case(
            "report_markup_model",
            ("report", "res", "--out", "out"),
            "a model named `[bold]x.onnx`",
            (0,),
            ("[bold]x",),
            _rename_cell("[bold]x"),
            may_change=("out/**",),
        ),
        Case(
            "report_out_is_file",
            ("report", "res", "--out", "out.txt"),
            "`--out` names a file",
            (1, 2),
            ("out.txt",),
            _write("out.txt", "keep me\n"),
        ),
        Case(
            "report_missing_folder",
            ("report", "nowhere"),
            "a results folder that does not exist",
            (1, 2),
            ("nowhere",),
        ),
        # ---- compare (items 4, 8)
        Case(
            "compare_fail_above_no_percent",
            ("compare", "res", "res", "--fail-above", "5"),
            "`--fail-above 5` (no %)",
            (2,),
            ("--fail-above",),
        ),
        Case(
            "compare_fail_above_nan",
            ("compare", "res", "res", "--fail-above", "nan%"),
            "`--fail-above nan%`",
            (2,),
            ("--fail-above",),
        ),
        Case(
            "compare_fail_above_negative",
            ("compare", "res", "res", "--fail-above", "-5%"),
            "`--fail-above -5%`",
            (2,),
            ("--fail-above",),
        ),
        Case(
            "compare_nothing_in_common",
            ("compare", "res", "res2", "--fail-above", "5%"),
            "two campaigns with no cell in common",
            (1, 4),
            ("common",),
            _split_campaigns,
        ),
        Case(
            "compare_cell_latency_string",
            ("compare", "res", "res"),
            '`"latency": "x"` in a cell',
            (0, 1),
            (cell, "latency"),
            _set("latency", "x"),
        ),
        Case(
            "compare_cell_is_list",
            ("compare", "res", "res"),
            "a cell file holding a list",
            (0, 1),
            (cell,),
            _edit_cell(lambda d: [d]),
        ),
        # ---- dataset (items 1, 4, 11)
        Case(
            "dataset_out_is_results",
            ("dataset", "res", "--out", "res"),
            "`--out` is the results folder",
            (1, 2),
            ("res",),
        ),
        Case("dataset_out_dot", ("dataset", "res", "--out", "."), "`--out .`", (1, 2), ("--out",)),
        Case(
            "dataset_out_user_folder",
            ("dataset", "res", "--out", "thesis"),
            "`--out` a folder of user files",
            (1, 2),
            ("thesis",),
            _user_dir("thesis"),
        ),
        Case(
            "dataset_out_is_file",
            ("dataset", "res", "--out", "data.txt"),
            "`--out` names a file",
            (1, 2),
            ("data.txt",),
            _write("data.txt", "keep me\n"),
        ),
        Case(
            "dataset_cell_params_string",
            ("dataset", "res"),
            '`"params": "many"` in a cell',
            (0, 1),
            (cell, "params"),
            _set("metrics.params", "many"),
            may_change=("res/.dataset/**",),
        ),
        Case(
            "dataset_cell_is_list",
            ("dataset", "res"),
            "a cell file holding a list",
            (0, 1),
            (cell,),
            _edit_cell(lambda d: [d]),
            may_change=("res/.dataset/**",),
        ),
        # ---- query (items 1, 2, 3, 4, 11)
        Case(
            "query_copy_to",
            ("query", "--results", "res", "COPY (SELECT 1) TO '{root}/pwned.csv'"),
            "`COPY ... TO` a path",
            (1,),
            ("pwned.csv",),
            may_change=("res/.dataset/**",),
        ),
        Case(
            "query_attach",
            ("query", "--results", "res", "ATTACH '{root}/evil.db' AS e; CREATE TABLE e.t AS SELECT 1"),
            "`ATTACH` + `CREATE TABLE`",
            (1,),
            ("evil.db",),
            may_change=("res/.dataset/**",),
        ),
        Case(
            "query_install",
            ("query", "--results", "res", "INSTALL httpfs"),
            "`INSTALL httpfs`",
            (1,),
            ("httpfs",),
            may_change=("res/.dataset/**",),
        ),
        Case(
            "query_read_csv",
            ("query", "--results", "res", "SELECT * FROM read_csv('{root}/secret.csv')"),
            "`read_csv` of a file outside the dataset",
            (1,),
            ("secret.csv",),
            _write("secret.csv", "pin\n1234\n"),
            may_change=("res/.dataset/**",),
        ),
        Case(
            "query_set_external_access",
            ("query", "--results", "res", "SET enable_external_access = true"),
            "re-enabling external access",
            (1,),
            ("enable_external_access",),
            may_change=("res/.dataset/**",),
        ),
        Case(
            "query_empty_sql",
            ("query", "--results", "res", ""),
            '`host query ""`',
            (1, 2),
            ("sql",),
            may_change=("res/.dataset/**",),
        ),
        Case(
            "query_markup_result",
            ("query", "--results", "res", "SELECT 'a[/]b' AS x"),
            "SQL returning `'a[/]b'`",
            (0,),
            ("a[/]b",),
            may_change=("res/.dataset/**",),
        ),
        Case(
            "query_dataset_user_folder",
            ("query", "--results", "res", "--dataset", "thesis", "SELECT 1"),
            "`--dataset` a folder of user files",
            (1, 2),
            ("thesis",),
            _user_dir("thesis"),
        ),
        Case(
            "query_cell_latency_string",
            ("query", "--results", "res", "SELECT count(*) FROM cells"),
            '`"latency": "x"` in a cell',
            (0, 1),
            (cell, "latency"),
            _set("latency", "x"),
            may_change=("res/.dataset/**",),
        ),
        # ---- advise (items 4, 8, 3)
        Case(
            "advise_cell_params_string",
            ("advise", "res", "--device", "local", "--latency-ms", "16.67"),
            '`"params": "many"` in a cell',
            (0, 1),
            (cell, "params"),
            _set("metrics.params", "many"),
        ),
        Case(
            "advise_cell_is_list",
            ("advise", "res", "--device", "local", "--latency-ms", "16.67"),
            "a cell file holding a list",
            (0, 1),
            (cell,),
            _edit_cell(lambda d: [d]),
        ),
        Case(
            "advise_latency_inf",
            ("advise", "res", "--device", "local", "--latency-ms", "inf"),
            "`--latency-ms inf`",
            (2,),
            ("--latency-ms",),
        ),
        Case(
            "advise_memory_negative",
            ("advise", "res", "--device", "local", "--memory-mib", "-1"),
            "`--memory-mib -1`",
            (2,),
            ("--memory-mib",),
        ),
        Case(
            "advise_markup_device",
            ("advise", "res", "--device", "[bold]x", "--latency-ms", "16.67"),
            "`--device [bold]x`",
            (1, 2),
            ("[bold]x",),
        ),
        # ---- devices / check (items 3, 10, 12; own)
        Case(
            "devices_markup_group_in_error",
            ("devices", "-i", "lab.ini"),
            "`[lab:children]` naming an undefined group",
            (1,),
            ("lab.ini", "[lab:children]", "[nope]"),
            _write("lab.ini", _BAD_CHILDREN),
        ),
        Case(
            "devices_huge_line",
            ("devices", "-i", "lab.ini"),
            "a 16 MiB inventory line",
            (1,),
            ("lab.ini",),
            _write("lab.ini", "[lab]\nb1 ansible_host=" + "a" * (16 << 20) + "\n"),
            timeout=30,
        ),
        Case(
            "devices_long_line",
            ("devices", "-i", "lab.ini"),
            "a 1,000,000-character inventory line (under 1 MiB)",
            (1,),
            ("lab.ini",),
            _write("lab.ini", "[lab]\nb1 ansible_host=x meter_note=" + "a" * 1_000_000 + "\n"),
            timeout=20,
        ),
        Case(
            "devices_non_utf8_inventory",
            ("devices", "-i", "lab.ini"),
            "an inventory that is not UTF-8",
            (1,),
            ("lab.ini",),
            _write("lab.ini", b"[lab]\nb1 ansible_host=\xff\xfe\n"),
        ),
        Case(
            "devices_inventory_is_directory",
            ("devices", "-i", "lab.ini"),
            "`-i` names a directory",
            (1, 2),
            ("lab.ini",),
            _mkdir("lab.ini"),
        ),
        Case(
            "devices_inventory_symlink_loop",
            ("devices", "-i", "lab.ini"),
            "an inventory that is a symlink loop",
            (1, 2),
            ("lab.ini",),
            _symlink_loop("lab.ini"),
        ),
        Case(
            "devices_proxycommand",
            ("devices", "-i", "lab.ini"),
            "`ProxyCommand` in the inventory",
            (1,),
            ("ProxyCommand",),
            _board("ansible_ssh_common_args='-o ProxyCommand=\"touch {root}/pwned\"'"),
        ),
        Case(
            "check_markup_section_in_error",
            ("check", "-i", "lab.ini"),
            "an unknown section type `[lab:weird]`",
            (1,),
            ("lab.ini", "[lab:weird]", "[group:vars]"),
            _write("lab.ini", _BAD_SECTION),
        ),
        Case(
            "check_ssh_config_proxycommand",
            ("check", "-i", "lab.ini", "--connect-timeout", "2"),
            "`ProxyCommand` in `~/.ssh/config`",
            (1,),
            ("b1",),
            _chain(_ssh_config_proxycommand, _board()),
            timeout=90,
        ),
        Case(
            "check_missing_key_file",
            ("check", "-i", "lab.ini", "--connect-timeout", "2"),
            "a key file that does not exist",
            (1,),
            ("nokey",),
            _board("ansible_ssh_private_key_file={root}/nokey"),
            timeout=90,
        ),
        Case(
            "check_port_not_ssh",
            ("check", "-i", "lab.ini", "--connect-timeout", "2"),
            "a port that does not speak SSH",
            (1,),
            ("b1",),
            _chain(_not_ssh_server, _board()),
            timeout=90,
        ),
        Case(
            "check_connect_timeout_inf",
            ("check", "-i", "lab.ini", "--connect-timeout", "inf"),
            "`--connect-timeout inf`",
            (2,),
            ("--connect-timeout",),
            _board(),
        ),
        # ---- meter (item 11; own)
        Case(
            "meter_opt_baudrate_abc",
            ("meter", "read", "--meter", "um25c", "--port", "nope", "--opt", "baudrate=abc"),
            "`--opt baudrate=abc`",
            (1, 2),
            ("baudrate",),
        ),
        Case(
            "meter_opt_no_value",
            ("meter", "read", "--meter", "um25c", "--port", "nope", "--opt", "baudrate"),
            "`--opt baudrate` (no value)",
            (1, 2),
            ("baudrate",),
        ),
        Case(
            "meter_port_missing",
            ("meter", "read", "--meter", "um25c", "--port", "{root}/ttyNOPE"),
            "a serial port that does not exist",
            (1,),
            ("ttyNOPE",),
        ),
        Case(
            "meter_markup_name",
            ("meter", "read", "--meter", "[bold]x", "--port", "nope"),
            "`--meter [bold]x`",
            (1, 2),
            ("[bold]x",),
        ),
        Case(
            "meter_log_seconds_inf",
            ("meter", "log", "--meter", "um25c", "--port", "nope", "--seconds", "inf"),
            "`--seconds inf`",
            (2,),
            ("--seconds",),
        ),
        # ---- zoo (own)
        Case("zoo_unknown_set", ("zoo", "export", "--set", "nope"), "`--set nope`", (1, 2), ("nope",)),
        Case(
            "zoo_quantize_missing_model",
            ("zoo", "quantize", "nope.onnx", "--int8"),
            "a model that does not exist",
            (1, 2),
            ("nope.onnx",),
        ),
        Case(
            "zoo_quantize_empty_model",
            ("zoo", "quantize", "empty.onnx", "--int8"),
            "an empty model file",
            (1, 2),
            ("empty.onnx",),
            _write("empty.onnx", b""),
        ),
        Case(
            "zoo_convert_model_is_directory",
            ("zoo", "convert", "dir.onnx", "--fp16"),
            "the model is a directory",
            (1, 2),
            ("dir.onnx",),
            _mkdir("dir.onnx"),
        ),
    ]
    return cases


CASES = _cases()


# ---------------------------------------------------------------- the harness


def make_base(dest: Path) -> Path:
    """A real campaign ``base`` (device local, null backend) of tiny_cnn and digits_cnn under ``dest/res``."""
    dest.mkdir(parents=True, exist_ok=True)
    for m in (TINY, DIGITS):
        shutil.copy(m, dest / m.name)
    env = _env(dest)
    proc = subprocess.run(
        [
            *HOST_CMD,
            "bench",
            "tiny_cnn.onnx",
            "digits_cnn.onnx",
            "--results",
            "res",
            "--campaign",
            "base",
            *FAST,
        ],
        cwd=dest,
        env=env,
        capture_output=True,
        timeout=300,
    )
    cells = list((dest / "res" / "base" / "local").glob("*__*.json"))
    if len(cells) != 2:
        raise RuntimeError(
            f"base campaign not written (exit {proc.returncode}):\n{proc.stderr.decode()[-2000:]}"
        )
    for m in (TINY, DIGITS):
        (dest / m.name).unlink()
    return dest / "res"


def _env(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEGAUGE_", "PYTEST_", "COV_"))}
    env.update(
        HOME=str(root / "home"),
        COLUMNS="300",
        NO_COLOR="1",
        TERM="dumb",
        EDGEGAUGE_LOCAL_WORKDIR=str(root / "home" / ".cache" / "edgegauge" / "work"),
        EDGEGAUGE_AUTO_CALIBRATE="0",  # the inputs are the subject, not a device's first campaign
    )
    (root / "home").mkdir(exist_ok=True)
    return env


def snapshot(root: Path) -> dict:
    """relative path -> (kind, mode, sha256 | link target) of every path under root (links not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", st.st_mode, os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    out[rel] = (
                        "file",
                        stat.S_IMODE(st.st_mode),
                        hashlib.file_digest(f, "sha256").hexdigest(),
                    )
            else:
                out[rel] = ("dir" if stat.S_ISDIR(st.st_mode) else "other", stat.S_IMODE(st.st_mode), None)
    return out


def _allowed(rel: str, globs) -> bool:
    return any(fnmatch.fnmatchcase(rel, g) or rel == g.removesuffix("/**") for g in (*globs, *CACHE))


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─┃━┏┓┗┛]", " ", text)).lower()


def _fill(s, fmt: dict):
    if isinstance(s, bytes):
        return s
    for k, v in fmt.items():
        s = s.replace("{" + k + "}", v)
    return s


def run_case(case: Case, root: Path, base: Path, show: bool = False) -> list[str]:
    """Run one case in the empty folder ``root``; return the problems found (empty: it passed), then
    the output when there are problems or ``show``."""
    shutil.copytree(base, root / "res")
    env = _env(root)
    ctx = Ctx(root, fmt={"root": str(root)})
    if case.setup:
        case.setup(ctx)
    before = snapshot(root)
    aside = {_fill(r, ctx.fmt): before[_fill(r, ctx.fmt)][2] for r in case.moved_aside}
    argv = [*HOST_CMD, *(_fill(a, ctx.fmt) for a in case.argv)]
    try:
        proc = subprocess.run(
            argv, cwd=root, env=env, capture_output=True, timeout=case.timeout, stdin=subprocess.DEVNULL
        )
        code, out = proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")
    except subprocess.TimeoutExpired as exc:
        code, out = None, ((exc.stdout or b"") + (exc.stderr or b"")).decode(errors="replace")
    finally:
        for cleanup in ctx.cleanups:
            cleanup()
    after = snapshot(root)
    problems = []
    if code is None:
        problems.append(f"timed out after {case.timeout:.0f} s")
    elif code not in case.exit:
        problems.append(f"exit {code}, expected one of {case.exit}")
    if "Traceback" in out:
        problems.append("a traceback in the output")
    for want in case.expect:
        if _norm(_fill(want, ctx.fmt)) not in _norm(out):
            problems.append(f"the message does not name {_fill(want, ctx.fmt)!r}")
    for rel, was in before.items():
        if _allowed(rel, case.may_change) or rel in aside:
            continue
        if rel not in after:
            problems.append(f"lost: {rel}")
        elif after[rel] != was:
            problems.append(f"changed: {rel} {was[:2]} -> {after[rel][:2]}")
    problems += [
        f"created outside the results: {rel}"
        for rel in after
        if rel not in before and not _allowed(rel, case.may_change)
    ]
    hashes = {v[2] for v in after.values() if v[0] == "file"}
    problems += [
        f"not kept (moved aside, never deleted): {rel}" for rel, h in aside.items() if h not in hashes
    ]
    if problems or show:
        problems.append(f"exit {code}; output (last 1500 chars):\n" + out[-1500:])
    return problems


# ---------------------------------------------------------------- the table in docs/testing.md


def _shown(arg) -> str:
    text = ascii(arg)[2:-1] if isinstance(arg, bytes) else arg
    if len(text) > 40:
        text = f"{text[:12]}…({len(text)} chars)"
    return f"'{text}'" if (not text or re.search(r"[\s;*'()]", text)) else text


def _outcome(case: Case) -> str:
    codes = {0: "ok", 1: "error", 2: "usage error", 3: "INVALID", 4: "regression"}
    names = ", ".join("the cell file" if w == "{cell}" else f"`{w}`" for w in case.expect)
    return " / ".join(f"{c} {codes[c]}" for c in case.exit) + (f"; names {names}" if names else "")


def table() -> str:
    """The sweep's table (Markdown) as docs/testing.md holds it, generated from CASES."""
    rows = ["| case | command | hostile input | expected |", "|---|---|---|---|"]
    for c in CASES:
        cmd = "host " + " ".join(_shown(a) for a in c.argv)
        cells = [f"`{c.id}`", f"`{cmd}`", c.hostile, _outcome(c)]
        rows.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return "\n".join(rows) + "\n"


def doc_table(text: str) -> str:
    """The part of docs/testing.md between the sweep markers."""
    return text.split(BEGIN, 1)[1].split(END, 1)[0].lstrip("\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        text = DOC.read_text()
        head, rest = text.split(BEGIN, 1)
        DOC.write_text(head + BEGIN + "\n" + table() + END + rest.split(END, 1)[1])
    else:
        print(table(), end="")
