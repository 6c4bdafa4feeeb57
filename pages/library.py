"""Library page: upload, live ingest progress, the document list, preview, delete, re-index, samples."""

from __future__ import annotations

import streamlit as st

from components.documents_table import (
    chunk_preview,
    delete_controls,
    documents_table,
    reread_document,
    show_flash,
)
from components.errors import show_error, show_shared_notices
from components.progress import jobs_panel
from components.resources import current_settings, get_services, reset_embeddings
from components.text import escape_markdown, inline
from components.uploader import upload_section
from services.app_services import AppServices
from services.errors import DocQAError, EmbeddingModelMismatch
from services.samples import submit_samples

POLL_SECONDS = 1.0


def _remember(job_ids: list[str]) -> None:
    st.session_state.setdefault("my_jobs", []).extend(job_ids)


def _visible_jobs(services: AppServices) -> list:
    """This session's jobs, plus whatever is running for anyone (jobs are shared by the whole server)."""
    mine = set(st.session_state.get("my_jobs", []))
    return [j for j in services.ingest_queue.jobs() if j.id in mine or j.state not in ("done", "failed")]


def _open_services() -> AppServices:
    settings = current_settings()
    try:
        return get_services(settings)
    except EmbeddingModelMismatch as exc:
        show_error(exc)
        st.write("Re-indexing keeps every document and passage and computes new vectors in the background.")
        if st.button("Re-index the library with the configured model", type="primary"):
            try:
                reset_embeddings(settings)
            except DocQAError as err:
                show_error(err)
            else:
                st.rerun()
        st.stop()
    except DocQAError as exc:
        show_error(exc)
        st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def _empty_library(services: AppServices, busy: bool) -> None:
    if busy:
        st.caption("Documents appear here as soon as they are read.")
        return
    st.info("The library is empty. Upload documents above, or start with a small demo set.")
    if st.button("Load sample documents", type="primary", icon=":material/auto_stories:"):
        jobs = submit_samples(services.ingest_queue)
        _remember([j.id for j in jobs])
        st.rerun()


RESELECT_KEY = "_library_reselect"


def _document_actions(services: AppServices, docs: list, busy: bool) -> None:
    by_id = {d.id: d for d in docs}
    if st.session_state.pop(RESELECT_KEY, False) or st.session_state.get("library_selected") not in by_id:
        # Set before the widget exists, so the browser is told too: merely dropping the key left the deleted
        # document's name showing in the box (the browser keeps its own copy of a widget's value).
        st.session_state["library_selected"] = next(iter(by_id))
    selected = st.selectbox(
        "Document",
        list(by_id),
        format_func=lambda i: by_id[i].source,
        key="library_selected",
    )
    doc = by_id.get(selected)
    if doc is None:
        return
    if doc.status == "failed":
        st.error(escape_markdown(f"{doc.source}: {doc.error or 'ingest failed'}"))
    left, right = st.columns(2)
    with left:
        if delete_controls(services, doc, key="delete"):
            st.session_state[RESELECT_KEY] = True
            st.rerun()
    with right:
        label = "Retry" if doc.status == "failed" else "Re-index this document"
        # A table row is re-read with its whole file (and its column choice), so rows are not offered this.
        rereadable = doc.file_path and (doc.status == "failed" or doc.kind not in ("csv", "jsonl"))
        if rereadable and st.button(label, key=f"reread_{doc.id}", icon=":material/refresh:", disabled=busy):
            job = reread_document(services, doc)
            if job is not None:
                _remember([job.id])
                st.session_state.pop("library_selected", None)
                st.rerun()
    if st.toggle("Preview passages", key=f"preview_{doc.id}"):
        chunk_preview(services, doc)


def _maintenance(services: AppServices, busy: bool) -> None:
    with st.expander("Re-index"):
        st.write(
            "Recompute every passage's vector with the configured embedding model "
            f"({inline(services.embedder.name)}). Documents stay keyword-searchable meanwhile."
        )
        if busy:
            st.caption("Wait for the running ingest to finish first.")
            return
        confirm = st.checkbox("I understand that semantic search is incomplete until this finishes", key="reindex_ok")
        if st.button("Re-index library", disabled=not confirm, key="reindex_go"):
            try:
                reset_embeddings(services.settings)
            except DocQAError as exc:
                show_error(exc)
                return
            _remember([services.ingest_queue.submit([]).id])
            st.session_state.pop("reindex_ok", None)
            st.rerun()


def library_page() -> None:
    st.title("Library")
    services = _open_services()
    show_shared_notices(services.store.notices, key="library")
    show_flash()

    queued = upload_section(services)
    if queued:
        _remember([j.id for j in queued])
        st.rerun()

    busy = bool(services.ingest_queue.active())

    # Only this part reruns while jobs are active: the uploader above keeps its state and stays responsive.
    @st.fragment(run_every=POLL_SECONDS if busy else None)
    def live() -> None:
        now_busy = bool(services.ingest_queue.active())
        if busy and not now_busy:
            st.rerun()  # jobs finished: redraw the whole page once and stop polling
        jobs_panel(_visible_jobs(services))
        docs = services.library.documents()
        if not docs:
            _empty_library(services, now_busy)
            return
        counts = services.store.counts()
        st.subheader(f"Documents ({len(docs)})")
        st.caption(
            f"{counts['chunks']} passages, {counts['embedded']} with vectors. A document is keyword-searchable as "
            "soon as it is read; semantic search joins when its vectors are done."
        )
        documents_table(docs)
        _document_actions(services, docs, now_busy)
        _maintenance(services, now_busy)

    live()


library_page()
