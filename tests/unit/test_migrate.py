"""Migration SQLite → PostgreSQL + pgvector → SQLite copies everything and verifies itself."""

from __future__ import annotations

import numpy as np

from services.migrate import migrate, open_pair
from services.store import LibraryStore
from services.text_zh import keyword_tokens
from tests.unit.test_store_contract import DIM, add_doc, embed_all

TEXTS = [
    "颱風警報發布，高速鐵路停駛。",
    "臺北市夜市的小吃很有名。",
    "typhoon warning issued for the north coast",
    "the night market sells food late",
    "高速公路在颱風期間封閉。",
]


def test_round_trip_keeps_rows_vectors_and_search_results(tmp_path, pg_url):
    local = LibraryStore(tmp_path / "a", "fake-model", DIM)
    for d in range(12):
        add_doc(local, f"d{d}", [TEXTS[(d + i) % len(TEXTS)] + f" {d}-{i}" for i in range(3)])
    embed_all(local)
    local.set_chunk_words({"d0-0": ["颱風", "警報"], "d1-1": []})  # stored topic words travel too (others: None)
    local.close()

    source, target = open_pair(tmp_path / "a", pg_url, "pgvector")
    report = migrate(source, target, sample_queries=20)
    assert report.counts_match and report.ok, report.to_dict()
    assert report.identical == {signal: report.queries for signal in ("dense", "keyword", "hybrid")}

    back_source, back = open_pair(tmp_path / "b", pg_url, "sqlite")
    report_back = migrate(back_source, back, sample_queries=20)
    assert report_back.ok, report_back.to_dict()

    original = LibraryStore(tmp_path / "a", "fake-model", DIM)
    for s in (target, back):
        a_chunks, a_vecs = original.iter_embeddings()
        b_chunks, b_vecs = s.iter_embeddings()
        assert a_chunks == b_chunks  # same vector ids, ids, texts, offsets, topic words
        assert {c.id: c.words for c in b_chunks if c.words is not None} == {"d0-0": ["颱風", "警報"], "d1-1": []}
        np.testing.assert_array_equal(a_vecs, b_vecs)  # bit-identical vectors: never re-embedded
        assert [d.to_dict() for d in s.list_documents()] == [d.to_dict() for d in original.list_documents()]
        query = keyword_tokens("颱風 高速鐵路")
        assert s.keyword_search(query, 5) == original.keyword_search(query, 5) or [
            v for v, _ in s.keyword_search(query, 5)
        ] == [v for v, _ in original.keyword_search(query, 5)]
    assert back.check_consistency()["embedded_not_in_faiss"] == 0


def test_migrating_into_a_non_empty_target_is_refused(tmp_path, pg_url):
    import pytest

    from services.errors import DocQAError

    local = LibraryStore(tmp_path / "a", "fake-model", DIM)
    add_doc(local, "x", ["alpha beta"])
    local.close()
    source, target = open_pair(tmp_path / "a", pg_url, "pgvector")
    migrate(source, target, sample_queries=0)
    with pytest.raises(DocQAError, match="already holds"):
        migrate(source, target, sample_queries=0)
