"""The store contract: the same tests against both backends (SQLite + FAISS, PostgreSQL + pgvector).

The pgvector backend runs against a real server that the session fixture starts on 127.0.0.1; without one the
pgvector cases skip with the reason (CI installs the pinned server wheel, so they run there).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.errors import DocumentNotFound, EmbeddingModelMismatch
from services.store import LibraryStore, NewChunk
from services.store_api import Store

DIM = 8


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def add_doc(
    store: Store, doc_id: str, texts: list[str], terms: list[list[str]] | None = None, *, doc_date: str | None = None
) -> bool:
    """A document of one page whose chunks are ``texts``; keyword terms are the lower-cased words unless given."""
    chunks = [
        NewChunk(
            id=f"{doc_id}-{i}",
            page=1,
            start=i * 10,
            end=i * 10 + len(t),
            text=t,
            tokens=3,
            terms=terms[i] if terms else t.lower().split(),
        )
        for i, t in enumerate(texts)
    ]
    return store.add_document(
        document_id=doc_id,
        source=f"{doc_id}.txt",
        kind="txt",
        title=doc_id,
        file_path=None,
        pages=[(1, " ".join(texts))],
        chunks=chunks,
        script="en",
        warnings=["w1"],
        metadata={"k": "v"},
        doc_date=doc_date,
    )


def embed_all(store: Store, seed: int = 0) -> dict[int, np.ndarray]:
    pending = store.pending_chunks(1000)
    ids = [vid for vid, _ in pending]
    vectors = {vid: unit(seed + vid) for vid in ids}
    if ids:
        store.set_embeddings(ids, np.stack([vectors[i] for i in ids]))
    return vectors


def open_backend(kind: str, location, **options) -> Store:
    if kind == "sqlite":
        return LibraryStore(location, "fake-model", DIM, **options)
    from services.store_pg import PgVectorStore

    return PgVectorStore(location, "fake-model", DIM, **options)


@pytest.fixture(params=["sqlite", "pgvector"])
def backend(request, tmp_path):
    """(kind, location): a library folder for SQLite, a fresh database URL for pgvector."""
    if request.param == "sqlite":
        return "sqlite", tmp_path / "lib"
    return "pgvector", request.getfixturevalue("pg_url")


@pytest.fixture
def store(backend):
    s = open_backend(*backend)
    yield s
    s.close()


def test_satisfies_the_store_protocol(store):
    assert isinstance(store, Store)


def test_add_get_list_and_pages(store):
    assert add_doc(store, "a", ["typhoon warning issued", "night market food"], doc_date="2024-05-01")
    doc = store.get_document("a")
    assert (doc.status, doc.chunks, doc.embedded, doc.pages) == ("embedding", 2, 0, 1)
    assert doc.warnings == ["w1"] and doc.metadata == {"k": "v"} and doc.doc_date == "2024-05-01"
    assert [d.id for d in store.list_documents()] == ["a"]
    assert store.pages_of("a") == [(1, "typhoon warning issued night market food")]
    assert store.page_text("a", 1).startswith("typhoon") and store.page_text("a", 9) == ""
    assert [c.text for c in store.document_chunks("a")] == ["typhoon warning issued", "night market food"]
    assert store.has_document("zzz") is None
    with pytest.raises(DocumentNotFound):
        store.get_document("zzz")


def test_topic_words_are_stored_with_their_chunks(store):
    chunks = [
        NewChunk(id="a-0", page=1, start=0, end=6, text="颱風警報 發布", tokens=3, terms=["台风"], words=["颱風"]),
        NewChunk(id="a-1", page=1, start=7, end=9, text="12", tokens=1, terms=[], words=[]),
        NewChunk(id="a-2", page=1, start=10, end=14, text="夜市", tokens=1, terms=["夜市"]),
    ]
    store.add_document(
        document_id="a",
        source="a.txt",
        kind="txt",
        title="a",
        file_path=None,
        pages=[(1, "颱風警報 發布 12 夜市")],
        chunks=chunks,
        script="zh-Hant",
    )
    embed_all(store)
    got, _vectors = store.iter_embeddings()
    # A chunk whose words were never read (None) is told apart from one with no keywords ([]).
    assert [c.words for c in got] == [["颱風"], [], None]
    store.set_chunk_words({"a-2": ["夜市"], "gone": ["x"]})  # words read later; a deleted chunk is skipped
    assert [c.words for c in store.iter_embeddings()[0]] == [["颱風"], [], ["夜市"]]


def test_same_content_id_is_not_added_twice(store):
    assert add_doc(store, "a", ["one two"])
    assert not add_doc(store, "a", ["one two"])
    assert store.counts()["chunks"] == 1


def test_failed_document_is_replaced_on_retry(store):
    add_doc(store, "a", ["one two"])
    store.mark_failed("a", "boom")
    assert store.get_document("a").status == "failed"
    assert add_doc(store, "a", ["one two"])
    assert store.get_document("a").status == "embedding" and store.counts()["chunks"] == 1


def test_embedding_marks_ready_and_dense_search_finds_exact_vector(store):
    add_doc(store, "a", ["alpha", "beta", "gamma"])
    assert store.pending_count() == 3
    vectors = embed_all(store)
    assert store.pending_count() == 0 and store.get_document("a").status == "ready"
    target = next(iter(vectors))
    hits = store.dense_search(vectors[target], 3)
    assert hits[0][0] == target and math.isclose(hits[0][1], 1.0, abs_tol=1e-5)
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)
    for vid, score in hits:  # inner products in full precision, the scale fusion expects
        assert math.isclose(score, float(vectors[vid] @ vectors[target]), abs_tol=1e-5)


def test_embeddings_round_trip_and_are_written_once(store):
    add_doc(store, "a", ["alpha", "beta"])
    vectors = embed_all(store)
    ids = list(vectors)
    store.set_embeddings(ids, np.stack([unit(999)] * len(ids)))  # already embedded: ignored
    chunks, matrix = store.iter_embeddings()
    assert [c.vector_id for c in chunks] == ids
    np.testing.assert_array_equal(matrix, np.stack([vectors[i] for i in ids]))
    assert store.iter_embeddings(["zzz"])[1].shape == (0, DIM)
    with pytest.raises(ValueError):
        store.set_embeddings(ids, np.zeros((1, DIM), dtype=np.float32))


def test_keyword_search_ranks_by_bm25(store):
    add_doc(store, "a", ["typhoon typhoon warning", "night market food", "typhoon season food"])
    hits = store.keyword_search(["typhoon"], 10)
    texts = {c.vector_id: c.text for c in store.get_chunks([v for v, _ in hits])}
    assert [texts[v] for v, _ in hits] == ["typhoon typhoon warning", "typhoon season food"]
    assert all(s > 0 for _, s in hits)
    assert store.keyword_search(["nothing"], 10) == [] and store.keyword_search([], 10) == []
    assert store.keyword_search(['"quoted" OR', "*"], 10) == []  # no query syntax leaks through


def test_keyword_scores_agree_across_backends(tmp_path, request):
    """The pgvector BM25 reproduces SQLite FTS5's bm25() scores, not just its order."""
    pg_url = request.getfixturevalue("pg_url")
    texts = ["typhoon warning issued tonight", "night market food stalls", "typhoon season food prices rise", "x"]
    other = ["typhoon relief", "food bank food drive", "market report"]
    results = []
    for s in (open_backend("sqlite", tmp_path / "lib"), open_backend("pgvector", pg_url)):
        add_doc(s, "a", texts)
        add_doc(s, "b", other)
        results.append(s.keyword_search(["typhoon", "food", "market"], 10))
        s.close()
    (sqlite_hits, pg_hits) = results
    assert [v for v, _ in sqlite_hits] == [v for v, _ in pg_hits]
    for (_, a), (_, b) in zip(sqlite_hits, pg_hits, strict=True):
        assert math.isclose(a, b, rel_tol=1e-6)


def test_chinese_terms_are_keyword_searchable(store):
    from services.text_zh import keyword_tokens

    text = "颱風警報發布，高速鐵路停駛。"
    store.add_document(
        document_id="zh",
        source="zh.txt",
        kind="txt",
        title="zh",
        file_path=None,
        pages=[(1, text)],
        chunks=[NewChunk(id="zh-0", page=1, start=0, end=len(text), text=text, tokens=9, terms=keyword_tokens(text))],
        script="traditional",
    )
    hits = store.keyword_search(keyword_tokens("高速铁路"), 5)  # asked in Simplified
    assert len(hits) == 1


def test_delete_removes_chunks_terms_and_vectors_at_once(store):
    add_doc(store, "a", ["typhoon warning"])
    add_doc(store, "b", ["typhoon season"])
    vectors = embed_all(store)
    a_ids = [c.vector_id for c in store.document_chunks("a")]
    store.delete_document("a")
    assert store.get_chunks(a_ids) == []
    assert all(v not in a_ids for v, _ in store.dense_search(vectors[a_ids[0]], 10))
    assert all(v not in a_ids for v, _ in store.keyword_search(["typhoon"], 10))
    report = store.check_consistency()
    assert report["chunks"] == 1 and report["terms_mismatch"] == 0 and report["duplicate_chunks"] == 0
    assert report["faiss_not_in_sqlite"] == 0 and report["embedded_not_in_faiss"] == 0
    with pytest.raises(DocumentNotFound):
        store.delete_document("a")


def test_filters_restrict_both_signals(store):
    add_doc(store, "a", ["typhoon warning"], doc_date="2020-01-05")
    add_doc(store, "b", ["typhoon season"], doc_date="2024-07-01")
    vectors = embed_all(store)
    q = next(iter(vectors.values()))
    b_ids = {c.vector_id for c in store.document_chunks("b")}
    assert {v for v, _ in store.dense_search(q, 10, ["b"])} == b_ids
    assert {v for v, _ in store.keyword_search(["typhoon"], 10, ["b"])} == b_ids
    assert store.dense_search(q, 10, []) == [] and store.keyword_search(["typhoon"], 10, []) == []
    assert store.document_ids_between("2024-01-01", None) == ["b"]
    assert store.document_ids_between(None, "2020-12-31") == ["a"]
    assert sorted(store.document_ids_between(None, None)) == ["a", "b"]


@pytest.mark.parametrize("exact_limit", [20_000, 0], ids=["exact-scan", "hnsw-iterative"])
def test_filtered_dense_search_keeps_its_recall(store, exact_limit, monkeypatch):
    """A filter that leaves 1 document in 50 still returns every one of its chunks: pgvector scores small
    filtered sets exactly, larger ones with iterative HNSW scans (forced here with a limit of 0)."""
    monkeypatch.setattr("services.store_pg.EXACT_FILTER_LIMIT", exact_limit)
    for d in range(50):
        add_doc(store, f"d{d:02}", [f"text {d} {i}" for i in range(8)])
    vectors = embed_all(store)
    q = unit(12345)
    wanted = {c.vector_id for c in store.document_chunks("d07")}
    hits = store.dense_search(q, 8, ["d07"])
    assert {v for v, _ in hits} == wanted
    exact = sorted(wanted, key=lambda v: -float(vectors[v] @ q))
    assert [v for v, _ in hits] == exact


def test_counts_and_consistency(store):
    add_doc(store, "a", ["one", "two"])
    add_doc(store, "b", ["three"])
    embed_all(store)
    assert store.counts() == {"documents": 2, "chunks": 3, "embedded": 3, "terms": 3}
    report = store.check_consistency()
    assert report["chunks"] == report["embedded"] == report["faiss"] == 3


def test_reopen_keeps_everything_and_other_model_is_refused(backend):
    s = open_backend(*backend)
    add_doc(s, "a", ["alpha"])
    vectors = embed_all(s)
    s.close()
    s = open_backend(*backend)
    vid = next(iter(vectors))
    assert s.dense_search(vectors[vid], 1)[0][0] == vid
    assert s.manifest()["embedding_model"] == "fake-model"
    s.close()
    kind, location = backend
    with pytest.raises(EmbeddingModelMismatch):
        if kind == "sqlite":
            LibraryStore(location, "other-model", DIM)
        else:
            from services.store_pg import PgVectorStore

            PgVectorStore(location, "other-model", DIM)


def test_locked_is_reentrant(store):
    with store.locked(), store.locked():
        add_doc(store, "a", ["alpha"])
    assert store.counts()["documents"] == 1


def test_reset_for_a_new_model_keeps_text_and_forgets_vectors(backend, tmp_path):
    from services.config import Settings
    from services.store_factory import open_store, reset_embedding_model

    kind, location = backend
    settings = (
        Settings(data_dir=location)
        if kind == "sqlite"
        else Settings(data_dir=tmp_path / "files", store="pgvector", database_url=location)
    )
    s = open_store(settings, "fake-model", DIM)
    add_doc(s, "a", ["alpha beta", "gamma delta"])
    embed_all(s)
    s.close()
    reset_embedding_model(settings, "other-model", 4)
    s = open_store(settings, "other-model", 4)
    assert s.pending_count() == 2 and s.get_document("a").status == "embedding"
    ids = [vid for vid, _ in s.pending_chunks(10)]
    s.set_embeddings(ids, np.eye(4, dtype=np.float32)[: len(ids)])
    assert s.dense_search(np.eye(4, dtype=np.float32)[0], 1)[0][0] == ids[0]
    assert s.keyword_search(["gamma"], 5) and s.get_document("a").status == "ready"
    s.close()


def test_keyword_postings_budget_leaves_out_common_terms(backend):
    """Beyond the budget, a question's most common terms are dropped, on both backends alike."""
    s = open_backend(*backend, keyword_postings_budget=3)
    add_doc(s, "a", [f"common word {i}" for i in range(5)] + ["common rare"])
    hits = s.keyword_search(["common", "rare"], 10)
    assert [c.text for c in s.get_chunks([v for v, _ in hits])] == ["common rare"]
    assert s.document_frequencies(["common", "rare", "none"]) == {"common": 6, "rare": 1, "none": 0}
    s.close()
