"""Large libraries leave a question's most common words out of the keyword search; small ones never do."""

from __future__ import annotations

from test_store import add_doc, embed_all

from services.keyword_budget import terms_within_budget
from services.store import LibraryStore


def _df(counts):
    return lambda terms: {t: counts.get(t, 0) for t in terms}


def test_everything_is_searched_when_the_postings_fit():
    assert terms_within_budget(["typhoon", "the", "warning"], _df({"typhoon": 3, "the": 90, "warning": 5}), 100) == [
        "typhoon",
        "the",
        "warning",
    ]


def test_the_most_common_words_are_left_out_first():
    counts = {"typhoon": 3, "the": 900, "warning": 50, "of": 800}
    assert terms_within_budget(["the", "typhoon", "of", "warning"], _df(counts), 100) == ["typhoon", "warning"]


def test_the_rarest_word_is_kept_even_when_it_alone_exceeds_the_budget():
    assert terms_within_budget(["the", "of"], _df({"the": 900, "of": 800}), 100) == ["of"]


def test_words_absent_from_the_library_and_duplicates_are_dropped_and_zero_means_no_limit():
    assert terms_within_budget(["x", "the", "x", "zzz"], _df({"x": 2, "the": 50}), 100) == ["x", "the"]
    assert terms_within_budget(["the", "of"], _df({"the": 900, "of": 800}), 0) == ["the", "of"]


def test_store_search_with_a_small_budget_ranks_by_the_rare_words(tmp_path):
    """A library where "report" is in every passage: with a budget the search is decided by the rare word."""
    texts = [f"report number {i} about rivers" for i in range(30)] + ["report about the typhoon season"]
    store = LibraryStore(tmp_path / "lib", "fake-model", 8, keyword_postings_budget=10)
    add_doc(store, "a", texts)
    embed_all(store)
    assert store.document_frequencies(["report", "typhoon", "missing"]) == {"report": 31, "typhoon": 1, "missing": 0}
    hits = store.keyword_search(["report", "typhoon"], 5)
    assert len(hits) == 1 and store.get_chunks([hits[0][0]])[0].text == texts[-1]

    unlimited = LibraryStore(tmp_path / "lib", "fake-model", 8, keyword_postings_budget=0)
    assert len(unlimited.keyword_search(["report", "typhoon"], 5)) == 5  # every "report" passage matches
    add_doc(store, "b", ["typhoon shelters open"])  # counts follow the library as it changes
    embed_all(store, seed=100)
    assert store.document_frequencies(["typhoon"]) == {"typhoon": 2}
    store.close()
    unlimited.close()
