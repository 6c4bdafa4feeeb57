"""The store keeps SQLite and FAISS in agreement through deletes, restarts, damage and model changes."""

from __future__ import annotations

import pytest

from services.errors import DocumentNotFound, EmbeddingModelMismatch
from services.store import LibraryStore, fts_query
from tests.unit.test_store_contract import DIM, add_doc, embed_all, unit

# The helpers are the store contract's (tests/unit/test_store_contract.py), shared by both backends.


@pytest.fixture
def store(tmp_path):
    s = LibraryStore(tmp_path / "lib", "fake-model", DIM)
    yield s
    s.close()


def test_documents_are_keyword_searchable_before_embedding(store):
    add_doc(store, "a", ["typhoon warning issued", "night market food"])
    doc = store.get_document("a")
    assert doc.status == "embedding" and doc.chunks == 2 and doc.embedded == 0
    hits = store.keyword_search(["typhoon"], 5)
    assert [store.get_chunks([vid])[0].text for vid, _ in hits] == ["typhoon warning issued"]
    assert store.dense_search(unit(1), 5) == []


def test_embedding_marks_ready_and_dense_search_finds_exact_vector(store):
    add_doc(store, "a", ["one", "two", "three"])
    embed_all(store)
    assert store.get_document("a").status == "ready"
    target = store.pending_chunks(10)
    assert target == []
    vid = store.document_chunks("a")[1].vector_id
    hits = store.dense_search(unit(vid), 1)
    assert hits[0][0] == vid and hits[0][1] == pytest.approx(1.0, abs=1e-5)


def test_same_content_id_is_not_added_twice(store):
    assert add_doc(store, "a", ["hello world"]) is True
    assert add_doc(store, "a", ["hello world"]) is False
    assert store.counts()["chunks"] == 1


def test_delete_removes_chunks_terms_and_vectors_at_once(store):
    add_doc(store, "a", ["alpha text"])
    add_doc(store, "b", ["beta text"])
    embed_all(store)
    a_vid = store.document_chunks("a")[0].vector_id
    assert store.dense_search(unit(a_vid), 1)[0][0] == a_vid
    store.delete_document("a")
    assert all(vid != a_vid for vid, _ in store.dense_search(unit(a_vid), 5))
    assert store.keyword_search(["alpha"], 5) == []
    with pytest.raises(DocumentNotFound):
        store.get_document("a")
    report = store.check_consistency()
    assert report["faiss"] == report["embedded"] == 1 and report["terms_mismatch"] == 0


def test_restart_loads_the_saved_index(tmp_path):
    s = LibraryStore(tmp_path, "fake-model", DIM)
    add_doc(s, "a", ["x", "y"])
    embed_all(s)
    s.save_index()
    vid = s.document_chunks("a")[0].vector_id
    s.close()
    again = LibraryStore(tmp_path, "fake-model", DIM)
    assert again.dense_search(unit(vid), 1)[0][0] == vid
    assert again.notices == []


@pytest.mark.parametrize("damage", ["delete", "corrupt", "truncate"])
def test_missing_or_corrupt_index_is_rebuilt_with_a_notice(tmp_path, damage):
    s = LibraryStore(tmp_path, "fake-model", DIM)
    add_doc(s, "a", ["x", "y", "z"])
    embed_all(s)
    s.save_index()
    vid = s.document_chunks("a")[2].vector_id
    s.close()
    path = tmp_path / "vectors.faiss"
    if damage == "delete":
        path.unlink()
    elif damage == "corrupt":
        path.write_bytes(b"\x00garbage" * 100)
    else:
        path.write_bytes(path.read_bytes()[:50])
    again = LibraryStore(tmp_path, "fake-model", DIM)
    assert again.dense_search(unit(vid), 1)[0][0] == vid
    assert any("rebuilt" in n for n in again.notices)
    assert again.check_consistency()["embedded_not_in_faiss"] == 0


def test_other_model_gives_a_clear_error_and_reset_allows_reindex(tmp_path):
    s = LibraryStore(tmp_path, "fake-model", DIM)
    add_doc(s, "a", ["x"])
    embed_all(s)
    s.close()
    with pytest.raises(EmbeddingModelMismatch, match="Re-index"):
        LibraryStore(tmp_path, "other-model", 16)
    LibraryStore.reset_embedding_model(tmp_path, "other-model", 16)
    other = LibraryStore(tmp_path, "other-model", 16)
    assert other.pending_count() == 1 and other.get_document("a").status == "embedding"


def test_stale_index_in_another_process_is_reloaded(tmp_path):
    writer = LibraryStore(tmp_path, "fake-model", DIM)
    reader = LibraryStore(tmp_path, "fake-model", DIM)
    add_doc(writer, "a", ["x"])
    embed_all(writer)
    assert reader.dense_search(unit(1), 5)  # reader builds its index
    add_doc(writer, "b", ["y"])
    embed_all(writer, seed=100)
    writer.save_index()
    vid = writer.document_chunks("b")[0].vector_id
    assert reader.dense_search(unit(100 + vid), 1)[0][0] == vid


def test_filters_restrict_both_signals(store):
    add_doc(store, "a", ["shared word alpha"])
    add_doc(store, "b", ["shared word beta"])
    embed_all(store)
    kw = store.keyword_search(["shared"], 5, document_ids=["b"])
    assert {store.get_chunks([v])[0].document_id for v, _ in kw} == {"b"}
    dense = store.dense_search(unit(3), 5, document_ids=["a"])
    assert {store.get_chunks([v])[0].document_id for v, _ in dense} == {"a"}
    assert store.dense_search(unit(3), 5, document_ids=[]) == []


def test_fts_query_neutralises_syntax():
    assert fts_query(['a"b', "OR", "NEAR(x", 'a"b']) == '"a""b" OR "OR" OR "NEAR(x"'


def test_a_library_made_before_topic_words_opens_and_reads_them_as_missing(tmp_path):
    import sqlite3

    folder = tmp_path / "old"
    s = LibraryStore(folder, "fake-model", DIM)
    add_doc(s, "a", ["typhoon warning", "night market"])
    embed_all(s)
    s.close()
    db = sqlite3.connect(folder / "library.sqlite3")
    db.execute("ALTER TABLE chunks DROP COLUMN words")  # what a library of the previous version looks like
    db.commit()
    db.close()
    reopened = LibraryStore(folder, "fake-model", DIM)
    chunks, vectors = reopened.iter_embeddings()
    assert [c.text for c in chunks] == ["typhoon warning", "night market"] and len(vectors) == 2
    assert [c.words for c in chunks] == [None, None]
    add_doc(reopened, "b", ["new passage"])  # and it can be written to again
    assert reopened.get_document("b").chunks == 1
    reopened.close()
