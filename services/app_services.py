"""The one place where real collaborators are wired together (the app, the CLI and benchmarks use it;
tests build their own with fakes where they need to)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property

from services.config import Settings
from services.embeddings import OfflineEmbeddings, make_embedder
from services.library import Library
from services.retrieval import HybridRetriever
from services.store import LibraryStore


@dataclass
class AppServices:
    settings: Settings
    embedder: OfflineEmbeddings
    store: LibraryStore
    library: Library
    retriever: HybridRetriever
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @cached_property
    def ingest_queue(self):
        from services.jobs import IngestQueue

        return IngestQueue(self.library)

    def chat_service(self, settings: Settings | None = None):
        """A chat service for these settings (the chat page may override the LLM per session)."""
        from services.llm import make_chat_model
        from services.rag import ChatService

        settings = settings or self.settings
        return ChatService(self.retriever, make_chat_model(settings), settings)


def build_services(settings: Settings, embedder: OfflineEmbeddings | None = None) -> AppServices:
    from services.text_zh import keyword_tokens

    embedder = embedder or make_embedder(settings.embedder)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = LibraryStore(
        settings.data_dir, embedder.name, embedder.dimension, keyword_postings_budget=settings.keyword_postings_budget
    )
    library = Library(settings, embedder, store)
    retriever = HybridRetriever(store, embedder, keyword_tokens, dense_weight=settings.dense_weight)
    return AppServices(settings=settings, embedder=embedder, store=store, library=library, retriever=retriever)


def reset_for_new_embedder(settings: Settings) -> None:
    """The "re-index" action after switching embedding models: keep the text, forget the vectors.

    The next :func:`build_services` opens the library with the new model; its ingest queue then re-embeds
    every passage in the background.
    """
    from services.embeddings import EMBEDDERS

    model = EMBEDDERS[settings.embedder]
    LibraryStore.reset_embedding_model(settings.data_dir, model.name, model.dimension)
