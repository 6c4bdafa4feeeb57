"""Choose the store backend from the settings: SQLite + FAISS (default) or PostgreSQL + pgvector."""

from __future__ import annotations

from services.config import Settings
from services.errors import StoreUnavailable
from services.store_api import Store


def open_store(settings: Settings, embedder_name: str, dimension: int) -> Store:
    if settings.store == "pgvector":
        if not settings.database_url:
            raise StoreUnavailable(
                "DOCQA_STORE=pgvector needs a database: set DOCQA_DATABASE_URL=postgresql://user:password@host/db."
            )
        try:
            from services.store_pg import PgVectorStore
        except ImportError as exc:  # psycopg / pgvector not installed
            raise StoreUnavailable(
                f"DOCQA_STORE=pgvector needs the PostgreSQL client packages ({exc.name}): "
                "pip install -r requirements.txt -c constraints.txt."
            ) from exc
        return PgVectorStore(
            settings.database_url,
            embedder_name,
            dimension,
            keyword_postings_budget=settings.keyword_postings_budget,
            ef_search=settings.pg_ef_search,
        )
    from services.store import LibraryStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return LibraryStore(
        settings.data_dir,
        embedder_name,
        dimension,
        keyword_postings_budget=settings.keyword_postings_budget,
        approximate_index_from=settings.approximate_index_from,
    )


def reset_embedding_model(settings: Settings, embedder_name: str, dimension: int) -> None:
    """Forget every stored vector and record the new model, in whichever backend the settings choose."""
    if settings.store == "pgvector":
        from services.store_pg import PgVectorStore

        PgVectorStore.reset_embedding_model(settings.database_url, embedder_name, dimension)
        return
    from services.store import LibraryStore

    LibraryStore.reset_embedding_model(settings.data_dir, embedder_name, dimension)
