"""Chat widgets: message history, streamed answers, filters and the retrieval-test panel.

Everything the model or a document wrote is shown escaped (components.text): tokens are accumulated and
redrawn as escaped Markdown, never passed to ``st.write_stream`` raw.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import pandas as pd
import streamlit as st

from components.citations import sources_panel
from components.errors import show_notices
from components.text import escape_answer_markdown, escape_markdown, inline
from services.app_services import AppServices
from services.rag import Answer, AnswerEvent
from services.retrieval import SearchFilter

HISTORY_KEY = "chat_messages"
# Set by the Topics page's "Ask about this topic": {"topic_id", "label", "document_ids"}; shown as a
# removable chip and applied as SearchFilter.topic_document_ids.
TOPIC_FILTER_KEY = "chat_topic_filter"


def history() -> list[dict[str, Any]]:
    """This browser session's conversation: dicts with role, content and (assistant) the Answer."""
    return st.session_state.setdefault(HISTORY_KEY, [])


def new_chat() -> None:
    st.session_state.pop(HISTORY_KEY, None)


def answer_caption(answer: Answer) -> str:
    if answer.abstained:
        return "The documents do not contain an answer to this."
    if answer.mode == "extractive":
        return "Quoted passages from your documents (no language model)."
    return "Answer written by the language model from the cited passages."


def render_answer(answer: Answer, *, latest: bool = False) -> None:
    st.markdown(escape_answer_markdown(answer.text))
    st.caption(answer_caption(answer))
    show_notices(answer.notices)
    sources_panel(answer.citations, expanded=latest)


def render_history(messages: list[dict[str, Any]]) -> None:
    for i, message in enumerate(messages):
        with st.chat_message(message["role"]):
            answer = message.get("answer")
            if answer is not None:
                render_answer(answer, latest=i == len(messages) - 1)
            else:
                st.markdown(escape_markdown(message["content"]))


def stream_reply(events: Iterable[AnswerEvent]) -> tuple[Answer | None, list[str]]:
    """Draw a streamed reply in an assistant bubble; return the final Answer and any error messages."""
    answer: Answer | None = None
    errors: list[str] = []
    with st.chat_message("assistant"):
        status = st.empty()
        body = st.empty()
        for event in events:
            if event.kind == "status" and event.text:
                status.caption(inline(event.text, 200))
            elif event.kind == "token":
                # ``partial`` is the service's sanitised text so far; we escape it for display.
                body.markdown(escape_answer_markdown(event.partial or event.text) + " ▌")
            elif event.kind == "error":
                errors.append(event.error.message if event.error else event.text)
            elif event.kind == "done":
                answer = event.answer
        status.empty()
        body.empty()
        for message in errors:
            st.warning(escape_markdown(message))
        if answer is not None:
            render_answer(answer, latest=True)
    return answer, errors


def filters_panel(services: AppServices) -> SearchFilter | None:
    """Sidebar: restrict questions to some documents and/or a date range. None when unrestricted."""
    docs = services.library.documents()
    by_id = {d.id: d for d in docs}
    with st.sidebar:
        st.subheader("Search in")
        topic = topic_filter_chip()
        chosen = st.multiselect(
            "Documents",
            list(by_id),
            format_func=lambda i: by_id[i].source if i in by_id else i,
            key="chat_documents",
            placeholder="All documents",
        )
        date_from = date_to = None
        if st.checkbox("Only a date range", key="chat_use_dates"):
            dates = sorted((d.doc_date or d.added_at)[:10] for d in docs) or [dt.date.today().isoformat()]
            low, high = dt.date.fromisoformat(dates[0]), dt.date.fromisoformat(dates[-1])
            picked = st.date_input("Dates", value=(low, high), key="chat_dates")
            if isinstance(picked, tuple | list) and picked:
                date_from = picked[0].isoformat()
                date_to = (picked[1] if len(picked) > 1 else picked[0]).isoformat()
            elif isinstance(picked, dt.date):
                date_from = date_to = picked.isoformat()
            st.caption("A row's date column, otherwise the day the document was added.")
    chosen = [i for i in chosen if i in by_id]
    topic_docs = list(topic["document_ids"]) if topic else None
    if not chosen and not date_from and not date_to and topic_docs is None:
        return None
    return SearchFilter(
        document_ids=chosen or None, date_from=date_from, date_to=date_to, topic_document_ids=topic_docs
    )


def topic_filter_chip() -> dict[str, Any] | None:
    """The topic the chat is restricted to (from the Topics page), as a chip with a remove button."""
    topic = st.session_state.get(TOPIC_FILTER_KEY)
    if not isinstance(topic, dict) or "document_ids" not in topic:
        return None
    n = len(topic["document_ids"])
    with st.container(border=True):
        text, remove = st.columns([5, 1], vertical_alignment="center")
        text.markdown(
            f":material/bubble_chart: Topic **{inline(str(topic.get('label', '')), 60)}**  \n"
            f"{n} document{'s' * (n != 1)}"
        )
        if remove.button("", icon=":material/close:", key="chat_topic_clear", help="Search all documents again"):
            st.session_state.pop(TOPIC_FILTER_KEY, None)
            st.rerun()
    return topic


def _fmt(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def retrieval_rows(passages: list[Any]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Rank": rank,
                "Document": p.chunk.source,
                "Page": p.chunk.page,
                "Fused score": _fmt(p.score),
                "Dense rank": p.dense_rank,
                "Dense score": _fmt(p.dense_score),
                "Keyword rank": p.keyword_rank,
                "Keyword score (BM25)": _fmt(p.keyword_score),
                "Matched terms": " ".join(p.matched_terms),
                "Passage": " ".join(p.chunk.text.split())[:300],
            }
            for rank, p in enumerate(passages, start=1)
        ],
        columns=[
            "Rank",
            "Document",
            "Page",
            "Fused score",
            "Dense rank",
            "Dense score",
            "Keyword rank",
            "Keyword score (BM25)",
            "Matched terms",
            "Passage",
        ],
    )


def retrieval_test_panel(services: AppServices, search_filter: SearchFilter | None) -> None:
    """Type a question, see the ranked passages with each signal's rank and score."""
    with st.expander("Retrieval test", icon=":material/manage_search:"):
        st.caption(
            "How the hybrid search ranks your passages: dense (embedding cosine), keyword (BM25 over segmented "
            f"words) and the fused score (dense weight {services.retriever.dense_weight:.2f}). Filters apply."
        )
        with st.form("retrieval_test", border=False):
            query = st.text_input("Question", key="rt_query")
            k = st.slider("Passages", 1, 20, 8, key="rt_k")
            submitted = st.form_submit_button("Search")
        if submitted:
            st.session_state["rt_result"] = (
                services.retriever.search(query, k=k, search_filter=search_filter, match_terms=True)
                if query.strip()
                else None
            )
        passages = st.session_state.get("rt_result")
        if passages is None:
            return
        if not passages:
            st.info("Nothing matched.")
            return
        # A dataframe shows cells as plain text, so passage text needs no escaping here.
        st.dataframe(retrieval_rows(passages), hide_index=True, width="stretch")
