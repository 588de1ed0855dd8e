"""Repository hygiene: the repo stands on its own.

* No file points at notes outside the repository (the team's private reference folder, written
  here in two pieces so that this file does not match itself).
* Every ``docs/<name>.md`` a file mentions exists, every ``docs/<name>.md §N`` names a numbered
  section of that document, and every link between the documents in ``docs/`` resolves to a file
  and, with ``#anchor``, to one of its headings.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: Pointers at notes that are not part of the repository.
FORBIDDEN = ("shared" + "/reference", ".." + "/shared")

#: A mention of one of our documents: docs/<name>.md at the start of a word, or after ``../``
#: (not another project's ``docs/`` folder written in backquotes or inside a URL).
DOC_MENTION = re.compile(r"(?:^|(?<=[\s(\[])|(?<=\.\./))docs/([\w.-]+?)\.md", re.M)
#: A document mention (optionally closing a Markdown link) followed by one or more ``§N[.M]``.
SECTION_REF = re.compile(r"(?:^|(?<=[\s(\[])|(?<=\.\./))docs/([\w-]+)\.md\)?((?:[ ,\-–]*§\d+(?:\.\d+)*)+)")
SECTION_NUMBER = re.compile(r"§(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
NUMBERED_HEADING = re.compile(r"^(\d+(?:\.\d+)*)\.?\s")
DOCS_LINK = re.compile(r"\]\(([\w-]+\.md)(?:#([^)\s]+))?\)")


def repo_files() -> list:
    """Tracked files plus untracked ones git does not ignore (what a commit would carry)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    paths = sorted({p for p in out.decode("utf-8", "surrogateescape").split("\0") if p})
    return [ROOT / p for p in paths if (ROOT / p).is_file()]


def text_files() -> dict:
    """``{relative path: text}`` for every repo file that decodes as UTF-8."""
    texts = {}
    for path in repo_files():
        try:
            texts[path.relative_to(ROOT).as_posix()] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def headings(doc: Path) -> list:
    return HEADING.findall(doc.read_text(encoding="utf-8"))


def test_no_file_points_at_notes_outside_the_repository():
    offenders = []
    for path in repo_files():
        data = path.read_bytes()
        for needle in FORBIDDEN:
            if needle.encode() in data:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders, "files citing notes that are not in the repository:\n" + "\n".join(offenders)


def test_every_mentioned_docs_file_exists():
    missing = sorted({f"{rel}: docs/{name}.md" for rel, text in text_files().items()
                      for name in DOC_MENTION.findall(text) if not (DOCS / f"{name}.md").is_file()})
    assert not missing, "mentions of documents that do not exist:\n" + "\n".join(missing)


def test_every_section_reference_names_an_existing_section():
    sections = {}
    for doc in DOCS.glob("*.md"):
        sections[doc.stem] = {m.group(1) for h in headings(doc) if (m := NUMBERED_HEADING.match(h))}
    bad = []
    for rel, text in text_files().items():
        for name, refs in SECTION_REF.findall(text):
            for number in SECTION_NUMBER.findall(refs):
                if number not in sections.get(name, set()):
                    bad.append(f"{rel}: docs/{name}.md §{number}")
    assert not bad, "section references without such a section:\n" + "\n".join(sorted(set(bad)))


def test_links_between_documents_resolve():
    assert DOCS.is_dir() and (DOCS / "README.md").is_file()
    anchors = {doc.name: {slug(h) for h in headings(doc)} for doc in DOCS.glob("*.md")}
    bad = []
    for doc in sorted(DOCS.glob("*.md")):
        for target, anchor in DOCS_LINK.findall(doc.read_text(encoding="utf-8")):
            if target not in anchors:
                bad.append(f"docs/{doc.name}: {target} does not exist")
            elif anchor and anchor not in anchors[target]:
                bad.append(f"docs/{doc.name}: {target}#{anchor} names no heading")
    assert not bad, "\n".join(bad)


def test_slug_matches_github_anchors():
    assert slug("8.6 Clock alignment") == "86-clock-alignment"
    assert slug("1. Latency levels: what is inside the timed region") == (
        "1-latency-levels-what-is-inside-the-timed-region")
    assert slug("9. Tests, and what is not verified") == "9-tests-and-what-is-not-verified"
