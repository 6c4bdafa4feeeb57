"""Live progress of background ingest jobs: one bar per job, an overall bar, per-file results and ETA.

The jobs run in the server's worker thread; this only reads their counters, so a user can leave the page
(or close the tab) and come back to the same progress.
"""

from __future__ import annotations

import streamlit as st

from components.text import escape_markdown, inline
from services.jobs import IngestJob
from services.library import IngestResult

MAX_RESULT_LINES = 25  # a CSV yields one result per row: list the first ones, count the rest


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"about {max(int(seconds), 1)} s left"
    return f"about {int(seconds // 60)} min {int(seconds % 60):02d} s left"


def job_caption(job: IngestJob) -> str:
    files = len(job.files)
    if job.state == "queued":
        return f"Waiting to start ({files} file{'s' if files != 1 else ''})"
    if job.state == "reading":
        current = f": {job.current}" if job.current else ""
        embedded = f" · {job.embed_done} passage{'s' if job.embed_done != 1 else ''} embedded" if job.embed_done else ""
        return f"Reading file {min(job.files_done + 1, files)} of {files}{current}{embedded}"
    if job.state == "embedding":
        eta = format_eta(job.eta_seconds)
        return f"Embedding passages {job.embed_done}/{job.embed_total}" + (f" · {eta}" if eta else "")
    if job.state == "failed":
        return job.error or "The ingest stopped."
    added = sum(r.status == "added" for r in job.results)
    dup = sum(r.status == "duplicate" for r in job.results)
    failed = sum(r.status == "failed" for r in job.results)
    parts = [f"{added} added"] + ([f"{dup} duplicate"] if dup else []) + ([f"{failed} failed"] if failed else [])
    return "Done: " + ", ".join(parts) if job.results or not job.files else "Done"


def result_line(result: IngestResult) -> str:
    name = f"**{inline(result.source, 100)}**"
    if result.status == "added":
        pages = f"{result.pages} page{'s' if result.pages != 1 else ''}"
        text = f"{name} — added, {pages}, {result.chunks} passage{'s' if result.chunks != 1 else ''}"
        if result.warnings:
            text += " — " + inline("; ".join(result.warnings), 300)
        return ":material/check_circle: " + text
    if result.status == "duplicate":
        return f":material/content_copy: {name} — duplicate: {inline(result.message, 300)}"
    return f":material/error: {name} — {inline(result.message, 300)}"


def failure_text(result: IngestResult) -> str:
    """The service's message names the file already; add the name only when it does not."""
    message = result.message or "could not be added"
    return message if result.source in message else f"{result.source}: {message}"


def _file_lines(job: IngestJob) -> None:
    results = job.results
    for result in results[:MAX_RESULT_LINES]:
        if result.status == "failed":
            # Errors stand out next to their file.
            st.error(escape_markdown(failure_text(result)))
        else:
            st.markdown(result_line(result))
    hidden = results[MAX_RESULT_LINES:]
    if hidden:
        failed = [r for r in hidden if r.status == "failed"]
        st.caption(f"…and {len(hidden)} more results ({len(failed)} failed).")
        for result in failed[:MAX_RESULT_LINES]:
            st.error(escape_markdown(failure_text(result)))
    if job.state in ("queued", "reading"):
        for queued in job.files[job.files_done :]:
            marker = "reading…" if queued.name == job.current else "waiting"
            st.caption(f"{inline(queued.name, 100)} — {marker}")


def jobs_panel(jobs: list[IngestJob]) -> None:
    """Draw progress for ``jobs`` (active ones open, finished ones folded)."""
    if not jobs:
        return
    active = [j for j in jobs if j.state not in ("done", "failed")]
    if len(active) > 1:
        overall = sum(j.fraction for j in active) / len(active)
        st.progress(overall, text=f"Overall: {len(active)} ingest jobs running")
    for job in jobs:
        caption = job_caption(job)
        if job.state in ("done", "failed"):
            failed = any(r.status == "failed" for r in job.results) or job.state == "failed"
            with st.expander(escape_markdown(caption), expanded=failed, icon=":material/error:" if failed else None):
                if job.state == "failed":
                    st.error(escape_markdown(caption))
                _file_lines(job)
        else:
            with st.container(border=True):
                st.progress(job.fraction, text=escape_markdown(caption))
                _file_lines(job)
