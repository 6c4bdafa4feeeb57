"""The only place with ``st.cache_resource``: objects shared by every session of this server process.

Caches are keyed by the data directory (and embedder), so two libraries, or two tests with their own
``DOCQA_DATA_DIR``, never share state. Everything cached here is thread-safe (the embedders lock their
models; the store locks its writes; the ingest queue is a locked FIFO with one worker).
"""

from __future__ import annotations

import logging

import streamlit as st

from services.app_services import AppServices, build_services, reset_for_new_embedder
from services.config import Settings, load_settings
from services.embeddings import OfflineEmbeddings, make_embedder

log = logging.getLogger(__name__)

_opened: list[AppServices] = []  # every library opened, so clear_caches() can stop their workers


def current_settings() -> Settings:
    """Settings from the environment (``DOCQA_*``); cheap, read on every rerun."""
    return load_settings()


@st.cache_resource(show_spinner="Loading the embedding model…")
def _embedder(kind: str) -> OfflineEmbeddings:
    return make_embedder(kind)


@st.cache_resource(show_spinner="Opening the library…")
def _services(data_dir: str, embedder_kind: str) -> AppServices:
    settings = load_settings(data_dir=data_dir, embedder=embedder_kind)
    services = build_services(settings, embedder=_embedder(embedder_kind))
    # Start the worker now (not lazily from two sessions at once): it also resumes embeddings that a
    # previous run left unfinished, so search recovers its dense signal without anyone asking.
    _ = services.ingest_queue
    # Load (or repair) the vector index up front: a damaged one is rebuilt and its notice shows on the first page.
    services.store.open_index()
    _opened.append(services)
    return services


def get_services(settings: Settings | None = None) -> AppServices:
    """The shared services for this library. Raises DocQAError (e.g. a model mismatch) for the page to show."""
    settings = settings or current_settings()
    return _services(str(settings.data_dir.resolve()), settings.embedder)


def reset_embeddings(settings: Settings | None = None) -> None:
    """Forget stored vectors and adopt the configured embedder (the "re-index" action after a mismatch).

    The text, pages and chunks stay; the ingest worker re-embeds every chunk in the background.
    """
    reset_for_new_embedder(settings or current_settings())


def clear_caches() -> None:
    """Stop the workers and forget every cached library (tests; a fresh start)."""
    while _opened:
        _opened.pop().ingest_queue.stop()
    _services.clear()
    _embedder.clear()
