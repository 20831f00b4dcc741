"""MkDocs hooks of the documentation site (mkdocs.yml).

The README is the quick start and stays the one source of the guides' text: a page says
``<!-- readme: Heading text -->`` (optionally ``level=N``) and gets that README section, with its
subsections, its headings shifted so the section's own heading is at level N (default 1), and its
links rewritten for the site: ``docs/x.md`` to the page's relative path, ``#anchor`` to the page
that includes that heading, ``bench/performance/...`` to the benchmark results carried by the site.
The benchmark results (``bench/performance``: results pages and plots) are added to the site as
they are in the repository, so nothing is written twice and nothing is fetched at build time.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BENCH = "bench/performance"

DIRECTIVE = re.compile(r"^<!-- readme: (?P<title>.+?)(?: level=(?P<level>[1-6]))? -->$", re.M)
HEADING = re.compile(r"^(?P<hashes>#{1,6}) (?P<text>.+)$")
LINK = re.compile(r"\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")
ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj|const):(?=<code>)")

# README slug -> the page (src path) whose directive includes that heading; filled by on_files
_anchor_pages: dict[str, str] = {}


def _slug(text: str) -> str:
    """The anchor GitHub and MkDocs' toc both give a heading like these (code spans and punctuation
    dropped, spaces to hyphens, lower case)."""
    text = re.sub(r"[^\w\s-]", "", text.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _readme_lines() -> list[str]:
    lines = README.read_text().splitlines()
    # headings inside fenced code blocks (shell comments) are not headings
    out, fenced = [], False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        out.append(("\0" + line) if fenced and line.startswith("#") else line)
    return out


def _section(title: str) -> tuple[int, list[str]]:
    """The README section whose heading text is ``title``: its level and its lines."""
    lines = _readme_lines()
    for i, line in enumerate(lines):
        m = HEADING.match(line)
        if m and m["text"] == title:
            level = len(m["hashes"])
            end = len(lines)
            for j in range(i + 1, len(lines)):
                n = HEADING.match(lines[j])
                if n and len(n["hashes"]) <= level:
                    end = j
                    break
            return level, lines[i:end]
    raise ValueError(f"README.md has no heading {title!r} (a readme directive of the docs names it)")


def on_files(files: Files, config: Any) -> Files:
    """Add the benchmark results and plots; note which page includes which README heading."""
    for path in sorted((ROOT / BENCH).rglob("*")):
        if path.suffix in {".md", ".png", ".svg"}:
            rel = path.relative_to(ROOT).as_posix()
            files.append(File.generated(config, rel, abs_src_path=str(path)))
    _anchor_pages.clear()
    for f in files.documentation_pages():
        if not f.abs_src_path or not f.abs_src_path.endswith(".md"):
            continue
        for m in DIRECTIVE.finditer(Path(f.abs_src_path).read_text()):
            for line in _section(m["title"])[1]:
                h = HEADING.match(line)
                if h:
                    _anchor_pages.setdefault(_slug(h["text"]), f.src_uri)
    return files


def _rewrite_links(line: str, base: str, page_src: str, from_readme: bool) -> str:
    """Rewrite the links of ``line``, written relative to ``base`` (a directory of the repository),
    for the page ``page_src`` of the site. A link to a repository file the site does not carry
    becomes its text and the file's path."""
    here = posixpath.dirname(page_src) or "."

    def one(m: re.Match[str]) -> str:
        text, target = m["text"], m["target"]
        if "://" in target or target.startswith("mailto:"):
            return m[0]
        if target.startswith("#"):
            owner = _anchor_pages.get(target[1:]) if from_readme else None
            if owner is None or owner == page_src:
                return m[0]
            return f"[{text}]({posixpath.relpath(owner, here)}{target})"
        path, _, frag = target.partition("#")
        repo = posixpath.normpath(posixpath.join(base, path))
        if repo.startswith("docs/"):
            site = repo[len("docs/"):]
        elif repo == BENCH:
            site = f"{BENCH}/results.md"
        elif repo.startswith(BENCH + "/"):
            site = repo
        else:
            return text if text.strip("`") == repo else f"{text} (`{repo}` in the source tree)"
        return f"[{text}]({posixpath.relpath(site, here)}{'#' + frag if frag else ''})"

    return LINK.sub(one, line)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Expand the readme directives of a page, and fit every link to the site."""
    src = page.file.src_uri
    if src.startswith(BENCH + "/"):
        return markdown  # the results pages link only to their own plots

    def expand(m: re.Match[str]) -> str:
        level, lines = _section(m["title"])
        shift = int(m["level"] or 1) - level
        out = []
        for line in lines:
            if line.startswith("\0"):
                out.append(line[1:])
                continue
            h = HEADING.match(line)
            if h:
                line = "#" * (len(h["hashes"]) + shift) + " " + h["text"]
            out.append(_rewrite_links(line, "", src, from_readme=True))
        return "\n".join(out)

    own = "\n".join(_rewrite_links(line, posixpath.join("docs", posixpath.dirname(src)), src, from_readme=False)
                    for line in markdown.split("\n"))
    return DIRECTIVE.sub(expand, own)


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    """Docstrings name objects Sphinx-style (:class:`Channel`): show just the code span."""
    return ROLE.sub("", html)
