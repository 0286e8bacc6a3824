"""Check the documentation's links and the repository paths it names.

    python docs/check_links.py        # from the repository root; exit 1 and one line per problem

Checked in README.md, CHANGELOG.md and every docs/**/*.md:
- every relative Markdown link points at a file or folder that exists, and its #anchor at a heading there;
and, except in CHANGELOG.md (history names paths that moved) and docs/reference/ (its paths are other
projects' files):
- every `path` in backticks that starts with a folder of this repository (core/, cspine_tui/, tests/,
  benchmarks/, docs/, data/, .ci/) exists; names with a placeholder (<job>, *, ...) are skipped;
- every `reference/<page>.md` names a page in docs/reference/;
- every dotted `core.x.y` / `cspine_tui.x.y` names a module (or a name inside one) that exists.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = ("core/", "cspine_tui/", "tests/", "benchmarks/", "docs/", "data/", ".ci/")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
# Paths that look like this repository's but name something else: a folder inside a release.
NOT_REPO_PATHS = {"data/train/"}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = FENCE.sub("", md.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, re.M)}


def module_exists(dotted: str) -> bool:
    parts = dotted.split(".")
    for n in range(len(parts), 1, -1):  # the longest prefix that is a module; the rest are names in it
        base = ROOT.joinpath(*parts[:n])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    return False


def check(md: Path) -> list[str]:
    problems = []
    text = md.read_text()
    rel = md.relative_to(ROOT)
    for m in LINK.finditer(FENCE.sub("", text)):
        target = m.group(1) or m.group(2)
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, frag = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            problems.append(f"{rel}: link to a missing file: {target}")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            problems.append(f"{rel}: link to a missing heading: {target}")
    if rel.name == "CHANGELOG.md" or rel.parts[:2] == ("docs", "reference"):
        return problems
    for m in CODE.finditer(text):
        for token in m.group(1).split():
            token = token.rstrip(".,;:)").lstrip("(")
            if re.search(r"[<>*{}|$]|\.\.\.", token) or token in NOT_REPO_PATHS:
                continue
            if token.startswith(TOP) and not (ROOT / token).exists():
                problems.append(f"{rel}: names a missing path: {token}")
            elif re.fullmatch(r"reference/\w+\.md", token) and not (ROOT / "docs" / token).exists():
                problems.append(f"{rel}: names a missing reference page: {token}")
            elif re.fullmatch(r"(core|cspine_tui)(\.\w+)+", token) and not module_exists(token):
                problems.append(f"{rel}: names a missing module: {token}")
    return problems


def main() -> int:
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
    problems = [p for md in pages if md.exists() for p in check(md)]
    print("\n".join(problems) or f"{len(pages)} pages: every link and path resolves")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
