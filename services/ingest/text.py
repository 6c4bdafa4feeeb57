"""Plain text and Markdown: the decoded text as one page (Markdown is kept as written, not rendered)."""

from __future__ import annotations

import re
from pathlib import Path

from services.ingest.encoding import decode_bytes
from services.models import ParsedDocument, ParsedPage

_MD_HEADING = re.compile(r"^ {0,3}#{1,2}[ \t]+(.+?)[ \t#]*$")
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*['\"]?(.+?)['\"]?[ \t]*$")
_TITLE_SEARCH_LINES = 50


def parse(path: Path, name: str, kind: str) -> ParsedDocument:
    text, encoding = decode_bytes(path.read_bytes(), name)
    title = markdown_title(text) if kind == "md" else ""
    return ParsedDocument(
        source=name,
        kind=kind,
        pages=[ParsedPage(number=1, text=text)],
        title=title,
        metadata={"encoding": encoding},
    )


def markdown_title(text: str) -> str:
    """The YAML front matter's title, else the first level-1 or level-2 ATX heading near the top."""
    lines = text[:20_000].splitlines()[:_TITLE_SEARCH_LINES]
    if lines and lines[0].strip() == "---":
        for line in lines[1:]:
            if line.strip() in ("---", "..."):
                break
            found = _FRONT_MATTER_TITLE.match(line)
            if found:
                return found.group(1).strip()
    for line in lines:
        found = _MD_HEADING.match(line)
        if found:
            return found.group(1).strip()
    return ""
