"""Topic keywords: the presence matrix, c-TF-IDF against BERTopic's own fit, MMR, the vocabulary rules."""

from __future__ import annotations

import numpy as np
import pytest

from services import topics_ctfidf
from services.topics_ctfidf import N_CANDIDATE_WORDS, TOP_N_WORDS, count_words, topic_keywords


def _corpus(seed: int = 0) -> tuple[list[list[str]], list[int]]:
    """Three topics of 40 items, each item 6-12 words from its topic's 30 plus 4 shared, repeats included."""
    rng = np.random.default_rng(seed)
    topic_words = [[f"t{t}w{i}" for i in range(30)] for t in range(3)]
    shared = ["common", "report", "today", "news"]
    tokens, labels = [], []
    for t in range(3):
        for _ in range(40):
            own = list(rng.choice(topic_words[t], size=rng.integers(6, 13), p=_zipf(30)))
            tokens.append([*own, *rng.choice(shared, size=2), own[0]])  # the first word repeated
            labels.append(t)
    return tokens, labels


def _zipf(n: int) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1)
    return p / p.sum()


def test_presence_counts_each_word_once_per_item_over_the_kept_vocabulary() -> None:
    tokens = [["颱風", "颱風", "豪雨"], ["豪雨", "停班"], ["颱風"]]
    counts = count_words(tokens, min_topic_size=2)
    assert counts.vocab == sorted({"颱風", "豪雨", "停班"})  # under 50 items every word is kept
    dense = counts.presence.toarray()
    column = {w: j for j, w in enumerate(counts.vocab)}
    assert dense[0, column["颱風"]] == 1.0 and dense[0, column["豪雨"]] == 1.0 and dense[0].sum() == 2
    assert dense[:, column["颱風"]].tolist() == [1.0, 0.0, 1.0]
    assert counts.tokens is tokens


def test_rare_words_leave_the_vocabulary_and_the_cap_keeps_the_most_widespread(monkeypatch) -> None:
    tokens, _labels = _corpus()
    counts = count_words(tokens, min_topic_size=20)
    df = {w: sum(w in set(t) for t in tokens) for w in {w for t in tokens for w in t}}
    floor = topics_ctfidf.min_df(len(tokens), 20, np.mean([len(set(t)) for t in tokens]))
    assert floor > 1
    assert counts.vocab == sorted(w for w, c in df.items() if c >= floor)
    assert counts.presence.shape == (len(tokens), len(counts.vocab))
    assert counts.presence.sum(axis=0).A1.tolist() == [df[w] for w in counts.vocab]

    monkeypatch.setattr(topics_ctfidf, "MAX_VOCAB", 3)
    capped = count_words(tokens, min_topic_size=20)
    widest = sorted(df.items(), key=lambda wc: (-wc[1], wc[0]))[:3]
    assert capped.vocab == sorted(w for w, _c in widest)


def test_keywords_are_bertopics_ctfidf_of_the_same_grouping() -> None:
    """BERTopic's own fit (its CountVectorizer over each topic's joined items) is the reference."""
    from bertopic import BERTopic
    from bertopic.cluster import BaseCluster
    from bertopic.dimensionality import BaseDimensionalityReduction
    from bertopic.vectorizers import ClassTfidfTransformer
    from sklearn.feature_extraction.text import CountVectorizer

    tokens, labels = _corpus(seed=3)
    labels[::17] = [-1] * len(labels[::17])  # some outliers: they are a class of their own in c-TF-IDF
    counts = count_words(tokens, min_topic_size=20)
    ours = topic_keywords(counts, labels)

    reference = BERTopic(
        language=None,
        umap_model=BaseDimensionalityReduction(),
        hdbscan_model=BaseCluster(),
        vectorizer_model=CountVectorizer(analyzer=str.split, vocabulary=counts.vocab),
        ctfidf_model=ClassTfidfTransformer(reduce_frequent_words=True),
        top_n_words=30,  # deeper than ours: tied scores may order differently
    )
    presence_docs = [" ".join(dict.fromkeys(t)) for t in tokens]
    reference.fit_transform(presence_docs, embeddings=np.zeros((len(tokens), 2)), y=labels)
    theirs_of = dict(zip(labels, reference.topics_, strict=True))  # BERTopic renumbers topics by size
    assert set(ours) == {-1, 0, 1, 2}
    for topic, words in ours.items():
        theirs = dict(reference.get_topic(theirs_of[topic]))
        assert len(words) == TOP_N_WORDS
        for word, score in words:
            assert theirs.get(word) == pytest.approx(score, rel=1e-9)
        assert [s for _w, s in words] == sorted((s for _w, s in words), reverse=True)
    assert all(w.startswith("t0w") for w, _s in ours[0][:5])  # a topic's own words lead its keywords


def test_mmr_picks_ten_diverse_words_from_the_best_candidates() -> None:
    tokens, labels = _corpus(seed=5)
    counts = count_words(tokens, min_topic_size=20)
    plain = topic_keywords(counts, labels)
    topic_ids, scores = topics_ctfidf._ctfidf(counts.presence, labels)
    candidates = {
        t: [counts.vocab[j] for j in np.argsort(-row, kind="stable")[:N_CANDIDATE_WORDS]]
        for t, row in zip(topic_ids, scores, strict=True)
    }
    asked: list[str] = []

    def near_duplicates(word: str) -> bool:  # topic 0's words ending in an even digit mean the same
        return word.startswith("t0w") and word[-1] in "02468"

    def embed(words: list[str]) -> np.ndarray:
        asked.extend(words)
        rows = []
        for w in words:
            noise = np.random.default_rng(sum(map(ord, w))).normal(size=8)
            rows.append(
                (np.ones(8) * 10 if near_duplicates(w) else np.zeros(8)) + (0.01 if near_duplicates(w) else 1) * noise
            )
        return np.array(rows)

    chosen = topic_keywords(counts, labels, use_mmr=True, embedder=embed)
    assert set(chosen) == set(plain)
    for topic, words in chosen.items():
        picked = [w for w, _s in words]
        assert len(picked) == TOP_N_WORDS
        assert picked == [w for w in candidates[topic] if w in picked]  # candidates, in c-TF-IDF order
    assert sum(map(near_duplicates, (w for w, _s in plain[0]))) >= 3
    assert sum(map(near_duplicates, (w for w, _s in chosen[0]))) < sum(map(near_duplicates, (w for w, _s in plain[0])))
    assert len(asked) == len(set(asked))  # each word embedded once, then cached


def test_a_one_word_vocabulary_and_an_empty_one_still_answer() -> None:
    single = count_words([["颱風"], ["颱風"], ["颱風", "颱風"]], min_topic_size=2)
    assert topic_keywords(single, [0, 0, 1]) == {0: [("颱風", 1.0)], 1: [("颱風", 1.0)]}
    assert topic_keywords(count_words([[], []], min_topic_size=2), [0, 1]) == {}
