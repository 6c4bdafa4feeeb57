"""The pgvector store's bulk load (migration, benchmark): binary COPY into an empty library, indexes built once
afterwards, all or nothing; and the COPY-based ingest path (staging tables per connection)."""

from __future__ import annotations

import numpy as np
import pytest

from services.errors import DocQAError
from services.migrate import sqlite_rows
from services.store import LibraryStore
from services.store_pg import PgVectorStore, connect
from tests.unit.test_store_contract import DIM, add_doc, embed_all, unit

TEXTS = [
    "颱風警報發布，高速鐵路停駛。",
    "typhoon warning issued for the north coast",
    "the night market sells food late",
]


def _local_library(path, documents: int = 6) -> LibraryStore:
    local = LibraryStore(path, "fake-model", DIM)
    for d in range(documents):
        add_doc(local, f"d{d}", [f"{TEXTS[(d + i) % len(TEXTS)]} {d}-{i}" for i in range(4)])
    embed_all(local)
    return local


def _structures(url: str) -> set[tuple[str, str]]:
    """Every index and key of the chunk and postings tables, as the catalog spells them."""
    db = connect(url, register=False)
    try:
        indexes = db.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('chunks', 'postings')"
        ).fetchall()
        constraints = db.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid IN ('chunks'::regclass, 'postings'::regclass)"
        ).fetchall()
    finally:
        db.close()
    return set(indexes) | set(constraints)


def test_bulk_load_copies_everything_and_rebuilds_exactly_the_indexes_it_found(tmp_path, pg_url):
    local = _local_library(tmp_path / "lib")
    store = PgVectorStore(pg_url, "fake-model", DIM)
    before = _structures(pg_url)
    assert any("hnsw" in definition for _, definition in before)

    seconds = store.bulk_load(*sqlite_rows(local.db_path))
    assert set(seconds) == {"rows", "indexes", "vacuum"}
    assert _structures(pg_url) == before
    assert store.counts() == local.counts()
    assert store.check_consistency()["terms_mismatch"] == 0
    query = local.iter_embeddings()[1][5]
    pg_hits, local_hits = store.dense_search(query, 3), local.dense_search(query, 3)
    assert [v for v, _ in pg_hits] == [v for v, _ in local_hits]
    assert [s for _, s in pg_hits] == pytest.approx([s for _, s in local_hits], abs=1e-5)
    assert [v for v, _ in store.keyword_search(["typhoon"], 5)] == [v for v, _ in local.keyword_search(["typhoon"], 5)]

    # Ingest goes on after the copied vector ids, and deletes cascade through the rebuilt foreign keys.
    assert add_doc(store, "new", ["a new typhoon note"])
    assert min(c.vector_id for c in store.document_chunks("new")) > max(
        c.vector_id for c in local.document_chunks("d5")
    )
    store.delete_document("d0")
    assert store.check_consistency()["terms_mismatch"] == 0 and store.counts()["documents"] == 6
    store.close()
    local.close()


def test_bulk_load_into_a_library_with_documents_is_refused(tmp_path, pg_url):
    local = _local_library(tmp_path / "lib", documents=2)
    store = PgVectorStore(pg_url, "fake-model", DIM)
    add_doc(store, "mine", ["already here"])
    with pytest.raises(DocQAError, match="already holds documents"):
        store.bulk_load(*sqlite_rows(local.db_path))
    assert [d.id for d in store.list_documents()] == ["mine"]
    store.close()
    local.close()


def test_a_failed_bulk_load_leaves_the_library_empty_with_its_indexes(tmp_path, pg_url):
    local = _local_library(tmp_path / "lib")
    store = PgVectorStore(pg_url, "fake-model", DIM)
    before = _structures(pg_url)
    documents, pages, chunks = sqlite_rows(local.db_path)

    def batches_then_failure():
        yield next(chunks)
        raise OSError("source disk went away")

    with pytest.raises(OSError, match="went away"):
        store.bulk_load(documents, pages, batches_then_failure())
    assert store.counts() == {"documents": 0, "chunks": 0, "embedded": 0, "terms": 0}
    assert _structures(pg_url) == before
    assert add_doc(store, "a", ["alpha beta"]) and store.check_consistency()["terms_mismatch"] == 0
    store.close()
    local.close()


def test_staging_tables_are_per_connection_and_empty_after_each_write(pg_url):
    import threading

    store = PgVectorStore(pg_url, "fake-model", DIM)
    errors: list[BaseException] = []

    def ingest(prefix: str) -> None:  # a connection (and staging tables) per thread
        try:
            for d in range(5):
                add_doc(store, f"{prefix}{d}", [f"{prefix} chunk {d} {i}" for i in range(3)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(p,)) for p in ("x", "y", "z")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert store.counts()["chunks"] == 45
    embed_all(store)
    # Vectors already stored are kept: the staged copy updates only chunks still waiting for one.
    chunks, vectors = store.iter_embeddings()
    store.set_embeddings([chunks[0].vector_id], np.stack([unit(12345)]))
    np.testing.assert_array_equal(store.iter_embeddings()[1][0], vectors[0])
    staged = store._connect().execute(
        "SELECT (SELECT COUNT(*) FROM chunk_staging), (SELECT COUNT(*) FROM embedding_staging)"
    )
    assert staged.fetchone() == (0, 0)
    store.close()


def test_the_hnsw_beam_grows_with_the_library_unless_it_is_set(tmp_path, pg_url, monkeypatch):
    from services.config import load_settings
    from services.store_factory import open_store
    from services.store_pg import EF_SEARCH, ef_search_for

    assert ef_search_for(0, 10) == ef_search_for(100_000, 50) == EF_SEARCH == 200
    assert ef_search_for(1_000_000, 10) == 800  # the 1M benchmark library: recall@10 0.74 at 200, 0.93 at 800
    assert ef_search_for(10_000_000, 10) == 1000  # pgvector's limit
    assert ef_search_for(1_000, 300) == 300  # never fewer candidates than asked for

    local = _local_library(tmp_path / "lib")
    store = PgVectorStore(pg_url, "fake-model", DIM)
    store.bulk_load(*sqlite_rows(local.db_path))  # ends with VACUUM ANALYZE: the planner knows 24 chunks
    assert store.ef_search(10) == 200
    query = local.iter_embeddings()[1][5]
    assert [v for v, _ in store.dense_search(query, 3)] == [v for v, _ in local.dense_search(query, 3)]

    monkeypatch.setenv("DOCQA_PG_EF_SEARCH", "500")
    monkeypatch.setenv("DOCQA_STORE", "pgvector")
    monkeypatch.setenv("DOCQA_DATABASE_URL", pg_url)
    fixed = open_store(load_settings(data_dir=tmp_path / "data"), "fake-model", DIM)
    assert fixed.ef_search(10) == 500 and fixed.ef_search(700) == 700
    assert [v for v, _ in fixed.dense_search(query, 3)] == [v for v, _ in local.dense_search(query, 3)]
    monkeypatch.setenv("DOCQA_PG_EF_SEARCH", "1001")
    with pytest.raises(ValueError, match="pg_ef_search|1000"):
        load_settings()
