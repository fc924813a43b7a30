"""Checks the documentation: every relative link and anchor in README.md and docs/*.md
resolves (files, folders, images, `#anchors` as GitHub makes them from headings), the README's
code map names every folder of webtv_dagster/ (and nothing that is gone), and every module of
the package has a docstring.

    .venv/bin/python docs/check_links.py     # exit status 1 and one line per problem
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """Lines outside fenced code blocks, inline code removed."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, re.sub(r"`[^`]*`", "", line)))
    return lines


def github_slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(path.read_text()):
        match = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def check_links(files: list[Path]) -> list[str]:
    problems = []
    for path in files:
        text = path.read_text()
        # Inline code is removed before links are read, but a link's own text may hold code.
        for number, line in prose_lines(re.sub(r"\[`([^`]*)`\]", r"[\1]", text)):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, mailto:, ...
                    continue
                where = f"{path.relative_to(ROOT)}:{number}: {target}"
                file_part, _, anchor = target.partition("#")
                resolved = (path.parent / file_part).resolve() if file_part else path
                if not resolved.exists():
                    problems.append(f"{where}: no such file")
                    continue
                if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                    problems.append(f"{where}: no heading with anchor #{anchor}")
    return problems


def package_folders() -> list[Path]:
    """Every folder of webtv_dagster/ (not the installed hls.js, not caches)."""
    package = ROOT / "webtv_dagster"
    return [package] + sorted(
        folder
        for folder in package.rglob("*")
        if folder.is_dir() and not {"node_modules", "__pycache__"} & set(folder.parts)
    )


def check_code_map(readme: Path) -> list[str]:
    """The README's code map names every folder of webtv_dagster/ (by a link to the folder or
    to its __init__.py), and every module of the package has a docstring, which says what
    lives there. Every webtv_dagster/ path it links exists (checked with the links)."""
    text = readme.read_text()
    start = text.find("## Code map")
    if start < 0:
        return ["README.md: no '## Code map' section"]
    linked = {
        link.removesuffix("/__init__.py").rstrip("/")
        for link in re.findall(r"\]\((webtv_dagster/[^)#\s]*)\)", text[start:])
    }
    problems = []
    for folder in package_folders():
        relative = folder.relative_to(ROOT).as_posix()
        if relative not in linked:
            problems.append(f"README.md code map: the folder {relative}/ is not named")
    for module in sorted((ROOT / "webtv_dagster").rglob("*.py")):
        if not ast.get_docstring(ast.parse(module.read_text())):
            problems.append(f"{module.relative_to(ROOT)}: no docstring saying what it holds")
    return problems


def main() -> int:
    readme = ROOT / "README.md"
    files = [readme, *sorted((ROOT / "docs").glob("*.md"))]
    problems = check_links(files) + check_code_map(readme)
    for problem in problems:
        print(problem)
    print(f"{len(files)} files checked, {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
