"""Every ``host …`` command line in README.md and docs/*.md names a real command and real options.

The lines are read from fenced code blocks (lines that start with ``host `` or ``.venv/bin/host ``)
and from inline code spans that start so; each is split with :mod:`shlex` and walked down the real
Typer/click command tree. Nothing is run. Placeholders (``MODEL``, ``[OPTIONS]``, ``…``, ``<x>``)
stand for arguments and are not checked; ``a|b`` alternatives are checked one by one.

An inline span that is only options (``--counters``, ``--provider cuda``) must name an option of
some ``host`` command, a general flag of ``python -m runners run``, or a flag of another tool listed
in :data:`FOREIGN`. A runtime's own option (declared in its descriptor) is written the host's way,
``-o NAME=VALUE``: its runner flag alone (``--provider``) reads as a ``host bench`` flag that is not.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest
import typer.main

from host.cli.main import app
from runners.backends import descriptors
from runners.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PREFIX = re.compile(r"^(?:\$\s+)?(?:\.venv/bin/)?host(?:\s+|$)")
FENCE = re.compile(r"^\s*(```|~~~)")
SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")
OPTION = re.compile(r"^--?[A-Za-z][\w-]*$")
ALWAYS = {"--help"}
BARE = re.compile(r"^(--[A-Za-z][\w-]*|-[A-Za-z])(?=$|[\s=])")
FOREIGN = {  # flags of other tools the docs name in passing, by tool
    "ssh / sshd": {"-J", "-C", "-L", "-R", "-D", "-p", "-F"},
    "pytest": {"-m", "--gpu", "-n", "--dist", "--strict-markers", "--qemu-arm64", "--root"},
    "pip / pip-compile": {"-c", "--upgrade-package"},
    "perf stat": {"--control"},
    "trtexec": {"--exportProfile"},
    "jetson_clocks": {"--show", "--store", "--restore"},
    "docker / podman": {"--runtime", "--gpus"},
    "pyperf": {"--fast"},
    "ansible-lint": {"--offline"},
}


@dataclass(frozen=True)
class DocLine:
    """One documented command line: where it is and its text (``host`` prefix removed)."""

    where: str
    text: str


def _split_text(text: str) -> Tuple[str, List[int]]:
    """The file's prose with fenced blocks blanked (line count kept), and the fenced line numbers."""
    prose, fenced, inside = [], [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            inside = not inside
            prose.append("")
            continue
        prose.append("" if inside else line)
        if inside:
            fenced.append(number)
    return "\n".join(prose), fenced


def doc_lines(path: Path) -> Iterator[DocLine]:
    """Every ``host …`` line of one Markdown file, from code blocks and inline code spans."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    name = path.relative_to(REPO).as_posix()
    prose, fenced = _split_text(text)
    for number in fenced:
        match = PREFIX.match(lines[number - 1].strip())
        if match:
            yield DocLine(f"{name}:{number}", lines[number - 1].strip()[match.end():])
    for span in SPAN.finditer(prose):
        body = " ".join(span.group(1).split())
        match = PREFIX.match(body)
        if match:
            number = prose.count("\n", 0, span.start()) + 1
            yield DocLine(f"{name}:{number}", body[match.end():])


def _tokens(text: str) -> List[str]:
    """Shell words of a line, comments dropped; a line shlex cannot parse is split on blanks."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        words = text.split("#", 1)[0].split()
    pieces = []
    for word in words:
        pieces.extend(piece for piece in word.split("|") if piece)
    return pieces


def _option_name(token: str) -> Optional[str]:
    """``--name`` of a token such as ``[--out``, ``(--latency-ms``, ``--opt=k=v``; None if no option."""
    name = token.lstrip("[(").split("=", 1)[0].rstrip("]),.;:")
    return name if OPTION.match(name) else None


def _subcommand_words(tokens: List[str]) -> List[str]:
    """The leading words that may name subcommands: plain lower-case words before the first option."""
    words = []
    for token in tokens:
        if not re.fullmatch(r"[a-z][a-z0-9-]*", token):
            break
        words.append(token)
    return words


def _resolve(group, words: List[str]) -> Tuple[list, List[str]]:
    """The commands a line's leading words name (several for ``show|tune|reset``), and its errors."""
    commands, problems, path = [group], [], ["host"]
    index = 0
    while index < len(words) and hasattr(commands[0], "commands"):
        names = []
        while index < len(words) and words[index] in commands[0].commands:
            names.append(words[index])
            index += 1
            if not _alternatives_follow(commands[0], words, index):
                break
        if not names:
            if index < len(words):
                problems.append(f"`{' '.join(path)}` has no subcommand {words[index]!r}")
            break
        commands = [commands[0].commands[name] for name in names]
        path.append("|".join(names))
    return commands, problems


def _alternatives_follow(group, words: List[str], index: int) -> bool:
    """Whether the next word is another subcommand of the same group (``list | read | log``)."""
    return index < len(words) and words[index] in group.commands and not hasattr(
        group.commands[words[index]], "commands")


def _options_of(command) -> set:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def check(line: DocLine, root) -> List[str]:
    """The mismatches of one documented line against the command tree (empty when it holds)."""
    tokens = _tokens(line.text)
    commands, problems = _resolve(root, _subcommand_words(tokens))
    if problems:
        return [f"{line.where}: {problem}: host {line.text}" for problem in problems]
    known = set().union(*(_options_of(command) for command in commands)) | ALWAYS
    for token in tokens:
        name = _option_name(token)
        if name and name not in known:
            where = " / ".join(command.name or "host" for command in commands)
            problems.append(f"{line.where}: `{where}` has no option {name}: host {line.text}")
    return problems


def bare_options(path: Path) -> Iterator[DocLine]:
    """Inline spans of one file that start with an option (``--provider cuda``), as (where, name)."""
    prose, _ = _split_text(path.read_text(encoding="utf-8"))
    name = path.relative_to(REPO).as_posix()
    for span in SPAN.finditer(prose):
        match = BARE.match(span.group(1).strip())
        if match and not re.search(r"[A-Z]{2}", match.group(1)):
            yield DocLine(f"{name}:{prose.count(chr(10), 0, span.start()) + 1}", match.group(1))


def _runner_flags() -> Tuple[set, set]:
    """``python -m runners run``'s general flags, and the flags made from runtime descriptors."""
    parser = build_parser()
    runtime = {opt.flag for desc in descriptors().values() for opt in desc.options}
    general = set()
    for action in parser._actions:
        for sub in (getattr(action, "choices", None) or {}).values() if isinstance(
                getattr(action, "choices", None), dict) else ():
            if sub.prog.endswith(" run"):
                general = {flag for act in sub._actions for flag in act.option_strings} - runtime
    return general, runtime


def check_bare(line: DocLine, host_options: set, general: set, runtime: set) -> List[str]:
    """The mismatch of one option-only span: an option no command here has, or a runtime flag."""
    name = line.text
    if name in host_options or name in general or any(name in flags for flags in FOREIGN.values()):
        return []
    if name in runtime:
        key = name[2:].removeprefix("no-").replace("-", "_")
        return [f"{line.where}: {name} is a runtime option, not a host flag: "
                f"write `-o {key}=…` (host bench) or `python -m runners run {name}`"]
    return [f"{line.where}: no host command has option {name}"]


def all_doc_lines() -> List[DocLine]:
    return [line for path in DOCS for line in doc_lines(path)]


def test_docs_hold_many_host_lines():
    """The extraction finds the README's command reference and the docs' inline spans."""
    lines = all_doc_lines()
    files = {line.where.split(":")[0] for line in lines}
    assert len(lines) > 100 and {"README.md", "docs/devices.md", "docs/testing.md"} <= files


def test_every_documented_host_command_exists():
    """Every ``host …`` line names an existing (sub)command and only options it has."""
    root = typer.main.get_command(app)
    problems = [problem for line in all_doc_lines() for problem in check(line, root)]
    assert not problems, "documented host commands that do not exist:\n" + "\n".join(problems)


def _all_host_options(command) -> set:
    found = _options_of(command)
    for sub in getattr(command, "commands", {}).values():
        found |= _all_host_options(sub)
    return found


def test_every_option_named_alone_exists():
    """Spans such as ``--counters`` name an option of some host command (or of a named other tool)."""
    host_options = _all_host_options(typer.main.get_command(app)) | ALWAYS
    general, runtime = _runner_flags()
    problems = [problem for path in DOCS for line in bare_options(path)
                for problem in check_bare(line, host_options, general, runtime)]
    assert not problems, "documented options that do not exist:\n" + "\n".join(problems)


@pytest.mark.parametrize("text, expected", [
    ("bench --precision fp32 --no-such-flag", "no option --no-such-flag"),
    ("benchh tiny.onnx", "no subcommand 'benchh'"),
    ("zoo exprt --list", "no subcommand 'exprt'"),
    ("meter list | log --seconds 3 [--bogus]", "no option --bogus"),
    ("meter list | read | log [--seconds 30] --meter NAME --port PORT [--opt k=v]", None),
    ("advise RESULTS --device D (--latency-ms 16.67 | --memory-mib N) [--base MODEL]", None),
    ("bench [MODELS...] [--device X|--group G] -o threads=2 --help", None),
    ("compare res res --fail-above -5%", None),
])
def test_checker_catches_what_it_should(text, expected):
    """The checker itself: a wrong command or option is reported, placeholders and ``a|b`` are not."""
    problems = check(DocLine("x.md:1", text), typer.main.get_command(app))
    if expected is None:
        assert problems == []
    else:
        assert problems and any(expected in problem for problem in problems)


def test_zoo_help_names_every_zoo_command():
    """``host --help`` describes ``host zoo`` truly: its line names each of its subcommands' work."""
    zoo = typer.main.get_command(app).commands["zoo"]
    assert set(zoo.commands) == {"list", "export", "quantize", "convert", "prune", "compile"}
    for verb in zoo.commands:
        assert verb in zoo.help


def test_docs_index_names_the_schema_version_written():
    """docs/README.md names the result schema version ``runners`` writes."""
    from runners import SCHEMA_VERSION

    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    assert re.findall(r"schema (\d+\.\d+)", index) == [SCHEMA_VERSION]
