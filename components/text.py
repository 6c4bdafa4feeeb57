"""Turning document and model text into safe Markdown.

Document text is data: it must never become HTML, links, images, LaTeX or Streamlit colour directives.
Every ASCII punctuation character Markdown could act on is backslash-escaped (CommonMark makes any escaped
punctuation literal), so ``<script>`` shows as the characters ``<script>``. The only markup we add is our own
``:orange-background[...]`` around a cited span, wrapped around text that is already escaped.
"""

from __future__ import annotations

import re

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:&])")
# GFM turns bare "http://…" and "www.…" into clickable links even when every character is escaped (checked in
# a real browser), so a document could put a link in front of the user. An invisible WORD JOINER (U+2060)
# between "http" and "://" (or after "www") keeps the text as it reads but no longer forms a link.
_AUTOLINK = re.compile(r"(?i)(?<![a-z0-9])(https?(?=\\:/)|www(?=\\\.))")
WORD_JOINER = "\u2060"


def _escape(text: str) -> str:
    return _AUTOLINK.sub(lambda m: m.group(1) + WORD_JOINER, _MD_SPECIAL.sub(r"\\\1", text))


def escape_markdown(text: str) -> str:
    """Escape ``text`` so Markdown shows it literally (one line or many; newlines become hard breaks)."""
    lines = [_escape(line.strip()) for line in text.splitlines()]
    return _join(lines)


_STRUCTURE_RE = re.compile(r"^((?:>[ \t]?)+|[-*][ \t]+|\d{1,3}\.[ \t]+)?(.*)$")


def escape_answer_markdown(text: str) -> str:
    """Like :func:`escape_markdown`, but a line may keep a leading quote (``> ``) or list marker (``- ``,
    ``1. ``): answers quote passages that way. Only that prefix is Markdown; the rest of the line is escaped."""
    out: list[str] = []
    for raw in text.splitlines():
        prefix, rest = _STRUCTURE_RE.match(raw.strip()).groups()  # type: ignore[union-attr]
        escaped = _escape(rest.strip())
        if prefix and prefix.lstrip().startswith(">"):
            out.append(">" * prefix.count(">") + (" " + escaped if escaped else ""))
        elif prefix and escaped:
            out.append(prefix.strip() + " " + escaped)
        else:
            out.append(escaped)
    # Quote lines need plain newlines (a bare ">" separates quoted paragraphs); others get hard breaks.
    for i in range(len(out) - 1):
        if out[i] and out[i + 1] and not out[i].startswith(">") and not out[i + 1].startswith(">"):
            out[i] += "  "
    return "\n".join(out)


def _join(lines: list[str]) -> str:
    # Blank lines separate paragraphs; other newlines become hard line breaks ("  \n").
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line:
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return "\n\n".join("  \n".join(p) for p in paragraphs if p)


def highlight_markdown(
    text: str,
    start: int | None = None,
    end: int | None = None,
    *,
    spans: list[tuple[int, int]] | None = None,
    color: str = "orange",
) -> str:
    """``text`` escaped, with ``text[start:end]`` (or every span in ``spans``) on a coloured background.

    Spans out of range are ignored; overlapping spans are merged.
    """
    wanted = list(spans or []) + ([(start, end)] if start is not None and end is not None else [])
    marks = _merge([(a, b) for a, b in wanted if 0 <= a < b <= len(text)])
    if not marks:
        return escape_markdown(text)
    parts: list[tuple[bool, str]] = []
    pos = 0
    for a, b in marks:
        parts += [(False, text[pos:a]), (True, text[a:b])]
        pos = b
    parts.append((False, text[pos:]))
    pieces: list[str] = []
    # Directives cannot span lines, so each line of a cited span gets its own background.
    for marked, part in parts:
        for n, line in enumerate(part.split("\n")):
            if n:
                pieces.append("\n")
            escaped = _escape(line)
            if marked and line.strip():
                escaped = f":{color}-background[{escaped}]"
            pieces.append(escaped)
    return _join([line.strip() for line in "".join(pieces).split("\n")])


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def inline(text: str, limit: int | None = None) -> str:
    """A short escaped one-liner (document names, labels): newlines folded, optionally shortened."""
    flat = " ".join(text.split())
    if limit and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _escape(flat)
