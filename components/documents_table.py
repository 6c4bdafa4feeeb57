"""The document list, a chunk preview with page numbers, and delete / retry with confirmation."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from components.errors import show_error
from components.text import escape_markdown, inline
from services.app_services import AppServices
from services.errors import DocQAError
from services.jobs import IngestJob
from services.store import DocumentRecord

SCRIPT_LABELS = {
    "zh-Hant": "Traditional Chinese",
    "zh-Hans": "Simplified Chinese",
    "en": "English",
    "mixed": "mixed",
    "unknown": "—",
}
PREVIEW_PAGE = 20  # chunks shown per step of the preview


FLASH_SECONDS = 8.0  # a confirmation outlives the automatic reruns that follow an action


def flash(message: str, kind: str = "success") -> None:
    """A message for the next few runs of the page (actions are followed by reruns)."""
    st.session_state["library_flash"] = (message, kind, time.monotonic())


def show_flash() -> None:
    item = st.session_state.get("library_flash")
    if not item:
        return
    message, kind, when = item
    if time.monotonic() - when > FLASH_SECONDS:
        st.session_state.pop("library_flash", None)
        return
    (st.error if kind == "error" else st.success)(escape_markdown(message))


def status_label(doc: DocumentRecord) -> str:
    if doc.status == "embedding":
        return f"keyword-searchable, embedding {doc.embedded}/{doc.chunks}"
    if doc.status == "failed":
        return f"failed: {doc.error}" if doc.error else "failed"
    return doc.status


def document_rows(docs: list[DocumentRecord]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Name": doc.source,
                "Type": doc.kind.upper(),
                "Pages": doc.pages,
                "Chunks": doc.chunks,
                "Language": SCRIPT_LABELS.get(doc.script, doc.script),
                "Status": status_label(doc),
                "Date": doc.doc_date or "",
                "Added": doc.added_at.replace("T", " ")[:16],
                "Notes": "; ".join(doc.warnings),
            }
            for doc in docs
        ],
        columns=["Name", "Type", "Pages", "Chunks", "Language", "Status", "Date", "Added", "Notes"],
    )


def documents_table(docs: list[DocumentRecord]) -> None:
    # st.dataframe draws every cell as plain text, so names and notes from documents cannot inject markup.
    st.dataframe(
        document_rows(docs),
        hide_index=True,
        width="stretch",
        column_config={
            "Pages": st.column_config.NumberColumn(width="small"),
            "Chunks": st.column_config.NumberColumn(width="small"),
        },
    )


def chunk_preview(services: AppServices, doc: DocumentRecord) -> None:
    chunks = services.store.document_chunks(doc.id)
    if not chunks:
        st.caption("This document has no passages.")
        return
    shown_key = f"preview_shown_{doc.id}"
    shown = st.session_state.get(shown_key, PREVIEW_PAGE)
    for chunk in chunks[:shown]:
        with st.container(border=True):
            st.caption(f"Passage {chunk.ordinal + 1} · page {chunk.page} · characters {chunk.start}–{chunk.end}")
            st.markdown(escape_markdown(chunk.text))
    if len(chunks) > shown:
        if st.button(f"Show more ({len(chunks) - shown} left)", key=f"more_{doc.id}"):
            st.session_state[shown_key] = shown + PREVIEW_PAGE
            st.rerun()


def delete_controls(services: AppServices, doc: DocumentRecord, *, key: str = "delete") -> bool:
    """A "Delete" button and, after it, a confirmation. Returns True once the document is deleted."""
    pending = st.session_state.get(f"{key}_pending")
    if pending != doc.id:
        if st.button("Delete…", key=f"{key}_ask", icon=":material/delete:"):
            st.session_state[f"{key}_pending"] = doc.id
            st.rerun()
        return False
    st.warning(
        f"Delete **{inline(doc.source, 80)}**? Its {doc.chunks} passages and their vectors are removed from "
        "search at once. This cannot be undone."
    )
    yes, no = st.columns(2)
    if yes.button("Yes, delete", type="primary", key=f"{key}_yes"):
        st.session_state.pop(f"{key}_pending", None)
        try:
            services.library.delete(doc.id)
        except DocQAError as exc:
            show_error(exc)
            return False
        flash(f"Deleted {doc.source}.")
        return True
    if no.button("Cancel", key=f"{key}_no"):
        st.session_state.pop(f"{key}_pending", None)
        st.rerun()
    return False


def reread_document(services: AppServices, doc: DocumentRecord) -> IngestJob | None:
    """Read a document again from its kept original (retry a failure, or pick up a parser fix); the new
    passages are embedded by the background worker."""
    try:
        with st.spinner(f"Reading {doc.source} again…"):
            results = services.library.reparse(doc.id)
    except DocQAError as exc:
        show_error(exc)
        return None
    failed = [r for r in results if r.status == "failed"]
    if failed:
        flash("; ".join(r.message for r in failed), kind="error")
    else:
        flash(f"Read {doc.source} again; its vectors follow.")
    return services.ingest_queue.submit([])
