"""The retrieval evaluation gives the same hit@k on both store backends (issue #3's numbers carry over)."""

from __future__ import annotations

from services.config import Settings
from services.evaluate import evaluate_retrieval
from tests.unit.test_evaluate import HashEmbeddings, dataset  # noqa: F401 - the fixture


def test_same_hits_on_sqlite_and_pgvector(dataset, tmp_path, pg_url):  # noqa: F811
    embedder = HashEmbeddings()  # one instance: its hashing is salted per process, the same for both runs
    common = {"k": 3, "embedder": embedder, "compare_signals": True}
    local = evaluate_retrieval(dataset, tmp_path / "sqlite", settings=Settings(), **common)
    shared = evaluate_retrieval(
        dataset, tmp_path / "pg", settings=Settings(store="pgvector", database_url=pg_url), **common
    )
    for key in ("n_paragraphs", "n_chunks", "n_questions", "hit@1", "hit@3", "mrr", "signals"):
        assert local[key] == shared[key], key
