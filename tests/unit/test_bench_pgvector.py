"""bench/bench_pgvector.py's exact neighbours, read block by block (so 1M vectors never sit in memory at once),
are those of one brute-force pass over all vectors; the cached library is read without being written."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from bench.bench_pgvector import epsilon_recall, exact_scores, exact_top, recall


@pytest.fixture
def cached_library(tmp_path):
    path = tmp_path / "library.sqlite3"
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")  # as bench_retrieval.py leaves its synthetic libraries
        db.execute("CREATE TABLE chunks (vector_id INTEGER PRIMARY KEY, document_id TEXT, embedding BLOB)")
        db.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?)",
            [(i + 1, f"doc{i % 4}", v.tobytes()) for i, v in enumerate(vectors)] + [(99, "doc0", None)],
        )
    db.close()
    return path, vectors


@pytest.mark.parametrize("allowed", [None, {"doc1", "doc3"}], ids=["all", "filtered"])
def test_exact_top_in_blocks_equals_one_brute_force_pass(cached_library, allowed):
    path, vectors = cached_library
    queries = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    ids = np.asarray([i + 1 for i in range(len(vectors)) if allowed is None or f"doc{i % 4}" in allowed])
    expected = [ids[row].tolist() for row in np.argsort(-(queries @ vectors[ids - 1].T), axis=1)[:, :4]]
    before = sorted(p.name for p in path.parent.iterdir())
    found, scores = exact_top(path, queries, 4, allowed, block=7)
    assert found == expected
    assert np.allclose(scores, np.asarray(exact_scores(path, queries, found)), atol=1e-5)
    assert sorted(p.name for p in path.parent.iterdir()) == before  # no -wal / -shm left beside the cache
    assert recall(expected, expected) == 1.0


def test_epsilon_recall_counts_a_near_twin_of_an_exact_neighbour_but_not_a_worse_result():
    exact = np.array([[0.90, 0.80, 0.70]])  # cosine distances 0.10, 0.20, 0.30
    assert epsilon_recall([[0.90, 0.80, 0.70]], exact) == 1.0
    assert epsilon_recall([[0.90, 0.80, 0.698]], exact) == 1.0  # distance 0.302: within 1% of 0.30
    assert epsilon_recall([[0.90, 0.80, 0.60]], exact) == pytest.approx(2 / 3, abs=1e-4)  # 0.40 is a miss
