"""Plain data passed between services. Everything here is JSON-serialisable (no pickle anywhere)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ParsedPage:
    """One page (PDF) or one whole text (other formats, ``number`` 1)."""

    number: int
    text: str


@dataclass
class ParsedDocument:
    """What a parser returns for one logical document (a file, or one CSV/JSONL row)."""

    source: str  # file name shown to the user (for rows: "name.csv#row 12" style)
    kind: str  # pdf, docx, txt, md, html, csv, jsonl
    pages: list[ParsedPage]
    title: str = ""
    date: str | None = None  # ISO date when known (row date column, file date)
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # e.g. "page 3 has no text: scanned?"
    skipped_pages: list[int] = field(default_factory=list)  # pages with no text that were not OCR'd

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParsedDocument:
        pages = [ParsedPage(**p) for p in data.get("pages", [])]
        return cls(**{**data, "pages": pages})

    @property
    def full_text(self) -> str:
        return "\n\n".join(p.text for p in self.pages)


@dataclass
class ChunkSpan:
    """A chunk of one page: ``text == page_text[start:end]``."""

    page: int
    start: int
    end: int
    text: str
    tokens: int = 0
