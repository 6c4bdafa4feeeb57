"""Source cards under an answer: document, page and the passage with the cited span highlighted.

Passage text comes from documents, so it is escaped (components.text) before our highlight markup is added.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from components.text import highlight_markdown, inline


def _spans(citation: Any) -> list[tuple[int, int]]:
    spans = [tuple(s) for s in (getattr(citation, "spans", None) or [])]
    start, end = getattr(citation, "highlight_start", None), getattr(citation, "highlight_end", None)
    if start is not None and end is not None:
        spans.append((start, end))
    return [(int(a), int(b)) for a, b in spans]


def citation_label(citation: Any) -> str:
    """ "[1] name.pdf · page 3" (escaped)."""
    title = getattr(citation, "title", "") or ""
    name = inline(citation.source, 80)
    if title and title != citation.source:
        name += f" — {inline(title, 80)}"
    return f"**\\[{citation.n}\\]** {name} · page {citation.page}"


def source_card(citation: Any) -> None:
    with st.container(border=True):
        st.markdown(citation_label(citation))
        text = getattr(citation, "text", "") or ""
        if text:
            spans = _spans(citation)
        else:  # only the quote is known: it is the cited span
            text = citation.quote
            spans = [(0, len(text))]
        st.markdown(highlight_markdown(text, spans=spans))


def sources_panel(citations: Sequence[Any], *, expanded: bool = False) -> None:
    if not citations:
        return
    with st.expander(f"Sources ({len(citations)})", expanded=expanded, icon=":material/format_quote:"):
        for citation in citations:
            source_card(citation)
