"""Every document the project refers to is in the repository.

Scans the repository's text files (tracked, or new and not ignored) for references to Markdown documents
(``docs/design.md#formulation``, ``[RESULTS](benchmarks/RESULTS.md)``, ``README.md``) and checks that each one
exists, relative to the repository root or to the referring file, and that an ``#anchor`` names one of its
headings. It also fails on the ways of pointing at documents that a clone does not contain: design notes by
section sign, a ``shared/`` folder, or an issue tracker's numbers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".txt", ".cfg", ".ini", ""}
# A Markdown file name, possibly with folders and an anchor; not part of a longer path or a URL's host.
MD_REFERENCE = re.compile(r"(?<![\w./-])((?:\.\./|\./)?[\w][\w./-]*\.md)(?:#([\w-]+))?(?![\w])")
# Names of documents outside the repository (assembled so that this file does not match itself).
FORBIDDEN = [
    re.compile(r"\b(?:DESIGN|GAMES|STYLE|SCALE_NOTES|LIGHTNING_RECIPES)" + r"(?:\.md|\s*§)"),
    re.compile("LIGHTNING" + "_RECIPES"),
    re.compile(r"(?<![\w/.])" + "shared/"),
    re.compile(r"\b[Ii]ssue" + r"s? #?\d+"),
]
# Markdown names that are not references to documents: files a benchmark writes (and a test, in its temporary folder).
NOT_REFERENCES = {
    "tests/kernels/test_bench_pg_loss.py": {"bench.md"},
    "benchmarks/ablation.py": {"ablation.md"},
    "tests/test_ablation.py": {"ablation.md"},
    "README.md": {"ablation.md", "results.md"},
    "maro_lightning/transfer.py": {"results.md"},
}


def _text_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to list the repository's files")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    paths = [ROOT / name for name in listed]
    return [p for p in paths if p.is_file() and p.suffix in TEXT_SUFFIXES and p.name != Path(__file__).name]


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return frozenset(slug(h) for h in headings)


def resolve(reference: str, referrer: Path, basenames: set[str]) -> Path | None:
    for base in (ROOT, referrer.parent):
        candidate = (base / reference).resolve()
        if candidate.is_file() and candidate.is_relative_to(ROOT):
            return candidate
    if "/" not in reference and reference in basenames:  # a bare name, e.g. "see RESULTS.md"
        return next(p for p in _text_files() if p.name == reference)
    return None


def problems_in(path: Path, basenames: set[str]) -> list[str]:
    relative = path.relative_to(ROOT).as_posix()
    text = path.read_text(encoding="utf-8", errors="replace")
    found = []
    for pattern in FORBIDDEN:
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{relative}:{line}: {match.group(0)!r} points at a document outside the repository")
    for match in MD_REFERENCE.finditer(text):
        reference, anchor = match.group(1), match.group(2)
        if reference in NOT_REFERENCES.get(relative, ()):
            continue
        line = text.count("\n", 0, match.start()) + 1
        target = resolve(reference, path, basenames)
        if target is None:
            found.append(f"{relative}:{line}: {reference} is not in the repository")
        elif anchor and anchor not in anchors(target):
            found.append(f"{relative}:{line}: {reference} has no heading for #{anchor}")
    return found


def test_every_referenced_document_is_in_the_repository():
    files = _text_files()
    basenames = {p.name for p in files}
    problems = [problem for path in files for problem in problems_in(path, basenames)]
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_missing_document_an_anchor_and_outside_notes(tmp_path):
    files = _text_files()
    basenames = {p.name for p in files}
    probe = ROOT / "tests" / "_probe_missing_doc.py"  # inside the repository, so relative paths resolve from it
    probe.write_text(
        "# see docs/nowhere.md, docs/design.md#no-such-heading, DESIGN" + " §5, shared/" + "GAMES.md, issue" + " 12\n"
        "# fine: docs/design.md#formulation, [games](../docs/games.md#mafia), README.md\n",
        encoding="utf-8",
    )
    try:
        problems = problems_in(probe, basenames)
    finally:
        probe.unlink()
    joined = "\n".join(problems)
    assert "docs/nowhere.md is not in the repository" in joined
    assert "#no-such-heading" in joined
    assert "DESIGN" + " §" in joined and "shared/" in joined and "issue" + " 12" in joined
    assert "formulation" not in joined and "mafia" not in joined and ":2:" not in joined
    assert slug("What `maro fit` does: M1, M2") == "what-maro-fit-does-m1-m2"
