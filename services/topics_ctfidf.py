"""Topic keywords: each item's possible keywords, the item × word presence matrix, BERTopic's c-TF-IDF
over it and, on request, BERTopic's MMR.

Words are read once per item (jieba + OpenCC is the slow part) or come stored from ingest. Each word
counts once per item: c-TF-IDF then weighs in how many of a topic's items a word appears rather than how
often, so one long post repeating a name cannot take over its topic's keywords (NPMI on 20NG 0.06 with raw
counts, 0.18 with presence).

The presence matrix is built while the clustering runs (it needs no labels), so after clustering the
keywords cost one sparse product and BERTopic's ``ClassTfidfTransformer`` (20,000 passages: ~0.05 s;
BERTopic's own fit over joined topic documents took ~0.6 s).

Heavy imports (scipy, bertopic) happen inside functions."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from typing import Any

import numpy as np

from services.topic_keywords import passage_words

Progress = Callable[[float, str], None]
Embedder = Callable[[list[str]], np.ndarray]
Keywords = dict[int, list[tuple[str, float]]]  # topic id -> (word, score), best first

TOP_N_WORDS = 10
N_CANDIDATE_WORDS = 15  # c-TF-IDF candidates MMR may choose from (BERTopic passes 30)
MMR_DIVERSITY = 0.3
MAX_VOCAB = 50_000
TOKEN_CACHE_ITEMS = 100_000  # passages whose words a process remembers (~50 words each: tens of MB)
MIN_SCORE = 1e-4  # c-TF-IDF scores below this are words the topic does not really use


@dataclass
class WordCounts:
    """The possible keywords of each item (``tokens``), the kept vocabulary (sorted) and which items use
    which kept word (``presence``: scipy CSR, items × vocabulary, ones)."""

    tokens: list[list[str]]
    vocab: list[str]
    presence: Any


def report_progress(progress: Progress | None, fraction: float, message: str) -> None:
    """Tell ``progress`` (if any) how far a build is, the fraction clamped to [0, 1]."""
    if progress is not None:
        progress(float(min(max(fraction, 0.0), 1.0)), message)


def read_words(
    texts: Sequence[str],
    progress: Progress | None,
    lo: float,
    hi: float,
    stored: Sequence[Sequence[str] | None] | None = None,
) -> list[list[str]]:
    """Each passage's possible keywords: the words stored at ingest where there are some (``stored[i]``),
    else read now (progress from ``lo`` to ``hi``)."""
    n = len(texts)
    step = max(1, n // 20)
    out: list[list[str]] = []
    for i, text in enumerate(texts):
        known = stored[i] if stored is not None else None
        if known is not None:
            out.append(list(known))
            continue
        if i % step == 0:
            report_progress(progress, lo + (hi - lo) * i / max(n, 1), f"Reading the words of passage {i + 1} of {n}")
        out.append(list(_keyword_words(text or "")))
    return out


@lru_cache(maxsize=TOKEN_CACHE_ITEMS)
def _keyword_words(text: str) -> tuple[str, ...]:
    """The possible keywords of a passage whose words were not stored at ingest (libraries made before
    they were), remembered per text for the process: jieba + OpenCC costs ~1 ms a passage, and a rebuild
    reads the same passages again. A tuple: cached values are shared, callers get their own list."""
    return tuple(passage_words(text))


def clear_token_cache() -> None:
    """Forget remembered passage words (the benchmark times builds that read every passage afresh)."""
    _keyword_words.cache_clear()


def min_df(n_items: int, min_topic_size: int, mean_words: float) -> int:
    """Items a keyword must appear in. Rare words rarely co-occur with the rest of their topic (20NG
    NPMI 0.18 at 2 items, 0.22 at 10 = 0.5% of the corpus), so 0.5% of the corpus, scaled down for
    short items (40+ distinct words each: full; a news title has ~8: 20%), since words there are rarer
    (titles at 10 items: diversity 0.50; at 2: 0.99). Never more than half the smallest topic (its own
    words must survive); corpora under 50 items keep every word."""
    if n_items < 50:
        return 1
    scaled = n_items * 0.005 * min(1.0, mean_words / 40.0)
    return int(min(max(2, math.ceil(scaled)), max(2, min_topic_size // 2)))


def count_words(tokens: list[list[str]], min_topic_size: int) -> WordCounts:
    """The vocabulary (words in at least :func:`min_df` items; all words if none is; the ``MAX_VOCAB``
    most widespread, ties by word) and the presence matrix over it.

    Counted in C (pandas' hash factorisation, numpy's sort): it runs beside the clustering's neighbour
    search, and a Python loop over every word (~0.7 s at 20,000 passages) would hold the GIL the main
    thread needs meanwhile."""
    import pandas as pd
    import scipy.sparse as sp

    n = len(tokens)
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=n)
    codes, uniques = pd.factorize(np.array(list(chain.from_iterable(tokens)), dtype=object))
    words = np.asarray(uniques, dtype=object)
    n_words = max(len(words), 1)
    # (item, word) pairs, each once, item-major. Sorted and de-duplicated by hand: np.unique (numpy 2.4)
    # takes ~0.7 s on these 650k integers, a sort ~0.05 s.
    pairs = np.sort(np.repeat(np.arange(n, dtype=np.int64), lengths) * n_words + codes)
    pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))] if len(pairs) else pairs
    rows, cols = pairs // n_words, pairs % n_words
    df = np.bincount(cols, minlength=len(words))
    threshold = min_df(n, min_topic_size, len(pairs) / max(n, 1))
    keep = np.flatnonzero(df >= threshold)
    if not len(keep) and threshold > 1:
        keep = np.arange(len(words))
    if len(keep) > MAX_VOCAB:
        keep = keep[np.lexsort((words[keep], -df[keep]))][:MAX_VOCAB]
    keep = keep[np.argsort(words[keep], kind="stable")]  # the vocabulary in word order
    column_of = np.full(len(words), -1, dtype=np.int64)
    column_of[keep] = np.arange(len(keep))
    new_cols = column_of[cols]
    used = new_cols >= 0
    presence = sp.csr_matrix(
        (np.ones(int(used.sum()), dtype=np.float64), (rows[used], new_cols[used])), shape=(n, len(keep))
    )
    return WordCounts(tokens=tokens, vocab=[str(w) for w in words[keep]], presence=presence)


def read_and_count(
    texts: Sequence[str],
    progress: Progress | None,
    stored: Sequence[Sequence[str] | None] | None,
    min_topic_size: int,
) -> WordCounts:
    return count_words(read_words(texts, progress, 0.02, 0.28, stored), min_topic_size)


def topic_keywords(
    counts: WordCounts, labels: Sequence[int], use_mmr: bool = False, embedder: Embedder | None = None
) -> Keywords:
    """Keywords per topic id in ``labels`` (one per item): c-TF-IDF's top words, then MMR among the best
    ``N_CANDIDATE_WORDS`` when ``use_mmr`` and an ``embedder`` is given."""
    if not counts.vocab:
        return {}
    if len(counts.vocab) == 1:  # c-TF-IDF's sparse diagonal fails on a one-word vocabulary (scipy TypeError)
        return _single_word_keywords(counts.tokens, labels, counts.vocab[0])
    topic_ids, scores = _ctfidf(counts.presence, labels)
    depth = N_CANDIDATE_WORDS if use_mmr and embedder is not None else TOP_N_WORDS
    out: Keywords = {}
    for t, row in zip(topic_ids, scores, strict=True):
        top = np.argsort(-row, kind="stable")[:depth]  # ties: the word first in word order
        out[t] = [(counts.vocab[j], float(row[j])) for j in top if row[j] > MIN_SCORE]
    if depth > TOP_N_WORDS and embedder is not None:
        out = _mmr(out, embedder)
    return out


def _ctfidf(presence: Any, labels: Sequence[int]) -> tuple[list[int], np.ndarray]:
    """Topic ids (sorted) and BERTopic's c-TF-IDF (``reduce_frequent_words``) of each topic's words, a
    topic's count of a word being how many of its items use it."""
    import scipy.sparse as sp
    from bertopic.vectorizers import ClassTfidfTransformer

    label_array = np.asarray(labels, dtype=np.int64)
    topic_ids = sorted(set(label_array.tolist()))
    rows = np.searchsorted(topic_ids, label_array)
    n = len(label_array)
    members = sp.csr_matrix((np.ones(n), (rows, np.arange(n))), shape=(len(topic_ids), n))
    per_topic = sp.csr_matrix(members @ presence)
    scores = ClassTfidfTransformer(reduce_frequent_words=True).fit_transform(per_topic)
    return topic_ids, np.asarray(scores.toarray())


def _mmr(candidates: Keywords, embedder: Embedder) -> Keywords:
    """BERTopic's MaximalMarginalRelevance over each topic's candidates (BERTopic hands it 30: deeper
    candidates are rare words that co-occur little with the topic). It picks ``TOP_N_WORDS`` and fails
    with fewer candidates: such topics keep theirs."""
    from bertopic import BERTopic
    from bertopic.representation import MaximalMarginalRelevance

    choose = {t: words for t, words in candidates.items() if len(words) > TOP_N_WORDS}
    if not choose:
        return candidates
    # MMR asks a BERTopic model for word embeddings; an unfitted one with our embedder answers.
    words_from = BERTopic(embedding_model=_embedder_backend(embedder), language=None)
    mmr = MaximalMarginalRelevance(diversity=MMR_DIVERSITY, top_n_words=TOP_N_WORDS)
    chosen = mmr.extract_topics(words_from, None, None, choose)
    return {t: [(str(w), float(s)) for w, s in chosen.get(t, words)] for t, words in candidates.items()}


def _embedder_backend(embedder: Embedder) -> Any:
    """A BERTopic embedding backend around a plain callable, caching word embeddings (MMR embeds each
    candidate word, and the same words recur across topics)."""
    from bertopic.backend import BaseEmbedder

    class _CallableBackend(BaseEmbedder):  # type: ignore[misc]
        def __init__(self, fn: Embedder):
            super().__init__()
            self._fn = fn
            self._cache: dict[str, np.ndarray] = {}

        def embed(self, documents: list[str], verbose: bool = False) -> np.ndarray:
            missing = [d for d in dict.fromkeys(documents) if d not in self._cache]
            if missing:
                vecs = np.asarray(self._fn([m if m else " " for m in missing]), dtype=np.float32)
                for m, v in zip(missing, vecs.reshape(len(missing), -1), strict=True):
                    self._cache[m] = v
            return np.vstack([self._cache[d] for d in documents])

    return _CallableBackend(embedder)


def keywords_of_grouping(tokens: list[list[str]], labels: Sequence[int], min_topic_size: int = 2) -> Keywords:
    """c-TF-IDF keywords of an edited grouping (merged topics, reassigned outliers)."""
    return topic_keywords(count_words(tokens, min_topic_size), labels)


def _single_word_keywords(tokens: Sequence[Sequence[str]], labels: Sequence[int], word: str) -> Keywords:
    """The degenerate one-word vocabulary: each topic whose items use the word gets it, scored by its share."""
    out: Keywords = {}
    for topic in sorted(set(labels)):
        members = [toks for toks, t in zip(tokens, labels, strict=True) if t == topic]
        share = sum(word in toks for toks in members) / max(len(members), 1)
        out[topic] = [(word, float(share))] if share > 0 else []
    return out
