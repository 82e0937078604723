"""Every file a document of the clone points at is in the clone: Markdown links and
backticked repository paths (src/, tests/, docs/, references/, ...) in README.md, RESULTS.md,
BENCHMARKS.md and docs/*.md."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / n for n in ("README.md", "RESULTS.md", "BENCHMARKS.md")] + sorted(
    (REPO / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")
TICKED = re.compile(r"`([^`\s]+)`")
ROOTS = ("src/", "tests/", "docs/", "references/", "docker/", ".ci/")
PLACEHOLDER = re.compile(r"[<>*{}]|\bN\b|\.\.\.")


def referenced(doc: Path) -> set[str]:
    text = doc.read_text()
    refs = {m for m in LINK.findall(text) if not re.match(r"[a-z]+:|#", m)}
    refs |= {m for m in TICKED.findall(text) if m.startswith(ROOTS)}
    return {r.split("#", 1)[0].split("::", 1)[0].rstrip(".,;:") for r in refs
            if not PLACEHOLDER.search(r)}


def test_every_referenced_file_exists():
    missing = []
    for doc in DOCS:
        for ref in sorted(referenced(doc)):
            base = doc.parent if not ref.startswith(ROOTS) else REPO
            if ref and not (base / ref).exists() and not (REPO / ref).exists():
                missing.append(f"{doc.relative_to(REPO)}: {ref}")
    assert not missing, "documents point at files the clone lacks:\n" + "\n".join(missing)
