"""Ask page: a cited chat over the library, with filters, export and a retrieval test."""

from __future__ import annotations

from typing import Any

import streamlit as st

from components.chat_view import (
    filters_panel,
    history,
    new_chat,
    render_history,
    retrieval_test_panel,
    stream_reply,
)
from components.errors import show_error, show_notices, show_shared_notices
from components.resources import current_settings, get_services
from components.settings_panel import llm_settings_panel
from components.text import escape_markdown
from services.app_services import AppServices
from services.config import Settings
from services.errors import DocQAError
from services.rag import export_markdown


def _chat_service(services: AppServices, settings: Settings) -> tuple[Any, list[str]]:
    """This session's chat service for its LLM choice (kept per session; rebuilt when the choice changes).

    A misconfigured or missing LLM is reported and the chat falls back to quoted passages.
    """
    key = (
        id(services.retriever),  # a re-opened library gets a fresh service
        settings.llm_provider,
        settings.llm_base_url,
        settings.llm_model,
        settings.llm_api_key,
    )
    cached = st.session_state.get("_chat_service")
    if cached and cached[0] == key:
        return cached[1], cached[2]
    notices: list[str] = []
    try:
        service = services.chat_service(settings)
    except DocQAError as exc:
        notices.append(f"{exc.message} Answers are quoted passages until this is fixed.")
        service = services.chat_service(settings.model_copy(update={"llm_provider": "none"}))
    st.session_state["_chat_service"] = (key, service, notices)
    return service, notices


def _conversation_controls(messages: list[dict[str, Any]]) -> None:
    st.subheader("Conversation")
    if st.button("New chat", icon=":material/add_comment:", disabled=not messages, key="new_chat"):
        new_chat()
        st.rerun()
    if messages:
        st.download_button(
            "Export chat (Markdown)",
            data=export_markdown(messages),
            file_name="chat.md",
            mime="text/markdown",
            icon=":material/download:",
            key="export_chat",
        )


def _ask(chat: Any, question: str, messages: list[dict[str, Any]], search_filter: Any) -> None:
    prior = list(messages)  # dicts the service reads as ChatMessage (with each answer's sources)
    messages.append({"role": "user", "content": question})
    with st.chat_message("user"):
        st.markdown(escape_markdown(question))
    try:
        answer, errors = stream_reply(chat.stream_answer(question, prior, search_filter))
    except Exception as exc:  # a bug must not lose the conversation: show it, log it, keep going
        show_error(exc, doing="answering")
        return
    if answer is None:
        messages.append({"role": "assistant", "content": "; ".join(errors) or "No answer came back."})
        return
    messages.append({"role": "assistant", "content": answer.text, "answer": answer})


def chat_page() -> None:
    st.title("Ask your documents")
    try:
        services = get_services(current_settings())
    except DocQAError as exc:
        show_error(exc)
        st.stop()
    # Filled last, so "New chat" and the export already include the answer given in this run.
    controls = st.sidebar.container()
    settings = llm_settings_panel(services.settings)
    search_filter = filters_panel(services)
    messages = history()

    chat, notices = _chat_service(services, settings)
    show_shared_notices(services.store.notices, key="chat")
    show_notices(notices)
    if not services.store.counts()["documents"]:
        st.info("The library is empty: add documents (or the samples) on the Library page first.")
    retrieval_test_panel(services, search_filter)
    render_history(messages)

    question = st.chat_input("Ask a question about your documents")
    if question:
        _ask(chat, question, messages, search_filter)
    with controls:
        _conversation_controls(messages)


chat_page()
