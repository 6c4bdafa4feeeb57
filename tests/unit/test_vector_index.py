"""Large libraries get a compressed vector index whose results carry the exact cosines of an exact index."""

from __future__ import annotations

import numpy as np
from test_store import DIM, add_doc, embed_all, unit

from services.store import LibraryStore
from services.vector_index import is_approximate


def _library(path, approximate_from: int) -> LibraryStore:
    return LibraryStore(path, "fake-model", DIM, approximate_index_from=approximate_from)


def _texts(prefix: str, n: int) -> list[str]:
    return [f"{prefix} passage {i}" for i in range(n)]


def test_a_large_library_searches_a_compressed_index_with_exact_scores(tmp_path):
    big = _library(tmp_path / "big", approximate_from=50)
    exact = _library(tmp_path / "exact", approximate_from=0)
    for store in (big, exact):
        add_doc(store, "a", _texts("a", 40))
        add_doc(store, "b", _texts("b", 40))
        embed_all(store)
    assert is_approximate(big._ensure_index()) and not is_approximate(exact._ensure_index())
    for seed in range(5):
        query = unit(1000 + seed)
        got, want = big.dense_search(query, 5), exact.dense_search(query, 5)
        assert [vid for vid, _ in got] == [vid for vid, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-5)
    only_b = big.dense_search(unit(7), 5, document_ids=["b"])  # filters work on the compressed index too
    assert only_b and {c.document_id for c in big.get_chunks([vid for vid, _ in only_b])} == {"b"}
    big.delete_document("a")
    assert big._ensure_index().ntotal == 40 and all(
        c.document_id == "b" for c in big.get_chunks([vid for vid, _ in big.dense_search(unit(3), 10)])
    )
    big.close()
    exact.close()


def test_the_index_kind_follows_the_library_size_across_growth_and_restarts(tmp_path):
    store = _library(tmp_path / "lib", approximate_from=50)
    add_doc(store, "a", _texts("a", 30))
    embed_all(store)
    assert not is_approximate(store._ensure_index())
    add_doc(store, "b", _texts("b", 30))  # grows past the threshold while open
    embed_all(store, seed=100)
    assert is_approximate(store._ensure_index()) and store._ensure_index().ntotal == 60
    store.save_index()
    store.close()

    reopened = _library(tmp_path / "lib", approximate_from=50)  # the saved compressed index loads as is
    assert is_approximate(reopened._ensure_index())
    report = reopened.check_consistency()
    assert report["faiss"] == report["embedded"] == 60 and report["embedded_not_in_faiss"] == 0
    assert not reopened.notices  # nothing was damaged
    reopened.close()
    exact_again = _library(tmp_path / "lib", approximate_from=0)  # configured back to exact: rebuilt exact
    assert not is_approximate(exact_again._ensure_index()) and exact_again._ensure_index().ntotal == 60
    assert not exact_again.notices
    exact_again.close()
