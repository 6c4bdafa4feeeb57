"""Topic-model quality: keyword coherence (NPMI), diversity, and agreement with labels (NMI, ARI).

Used by ``cli.py eval topics`` and the benchmarks. ``evaluate_bertopic_defaults`` scores an out-of-the-box
BERTopic on the same embeddings with the same metric functions and the same reference tokenization
(``display_tokens``) for NPMI, so the two sets of numbers compare.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

from services.topics_model import OUTLIER_ID, TopicParams

__all__ = [
    "ari",
    "evaluate_bertopic_defaults",
    "evaluate_topics",
    "nmi",
    "npmi_coherence",
    "topic_diversity",
]

_EPS = 1e-12


def _pair_npmi(p_i: float, p_j: float, p_ij: float) -> float:
    """NPMI of one word pair from document probabilities: log(p_ij / (p_i p_j)) / -log(p_ij).

    Limits of the definition: -1 when the words never co-occur (or one never occurs), 1 when they occur
    together in every document. ``eps`` only guards the logarithms against rounding."""
    if p_ij <= 0.0 or p_i <= 0.0 or p_j <= 0.0:
        return -1.0
    if p_ij >= 1.0 - _EPS:
        return 1.0
    value = math.log((p_ij + _EPS) / (p_i * p_j)) / -math.log(p_ij + _EPS)
    return max(-1.0, min(1.0, value))


def npmi_coherence(
    topics_keywords: Sequence[Sequence[str]], tokenized_docs: Sequence[Sequence[str]], top_n: int = 10
) -> float:
    """Mean NPMI coherence of topics, with document co-occurrence over ``tokenized_docs`` (a word
    "occurs" in a document when it is among its tokens; the reference corpus is usually the corpus the
    topics were fitted on).

    Per topic: the mean NPMI over all pairs of its first ``top_n`` keywords; topics with fewer than two
    keywords are skipped. Pass the keywords of real topics only (leave out the -1 outlier bucket).
    Returns 0.0 when no topic can be scored.
    """
    topics = [[w for w in dict.fromkeys(kw) if w][:top_n] for kw in topics_keywords]
    topics = [t for t in topics if len(t) >= 2]
    n_docs = len(tokenized_docs)
    if not topics or n_docs == 0:
        return 0.0
    vocab = sorted({w for t in topics for w in t})
    col = {w: j for j, w in enumerate(vocab)}
    occurs = np.zeros((n_docs, len(vocab)), dtype=bool)
    for i, doc in enumerate(tokenized_docs):
        for w in set(doc):
            j = col.get(w)
            if j is not None:
                occurs[i, j] = True
    p = occurs.mean(axis=0)
    occ = occurs.astype(np.float64)
    joint = (occ.T @ occ) / n_docs
    scores = []
    for t in topics:
        idx = [col[w] for w in t]
        pairs = [_pair_npmi(p[a], p[b], joint[a, b]) for a, b in combinations(idx, 2)]
        scores.append(sum(pairs) / len(pairs))
    return float(sum(scores) / len(scores))


def topic_diversity(topics_keywords: Sequence[Sequence[str]], top_n: int = 10) -> float:
    """Share of unique words among all topics' first ``top_n`` keywords (1.0: no word shared by two
    topics). Pass real topics only; 0.0 when there are no keywords."""
    words = [w for kw in topics_keywords for w in [x for x in kw if x][:top_n]]
    if not words:
        return 0.0
    return len(set(words)) / len(words)


def nmi(labels_true: Sequence[Any], labels_pred: Sequence[Any]) -> float:
    """Normalized mutual information (sklearn, arithmetic mean). Outliers (-1) count as one cluster of
    their own, so a model that leaves many items unassigned is penalised, not flattered."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(list(labels_true), list(labels_pred)))


def ari(labels_true: Sequence[Any], labels_pred: Sequence[Any]) -> float:
    """Adjusted Rand index (sklearn). Outliers (-1) count as one cluster of their own, as in :func:`nmi`."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(list(labels_true), list(labels_pred)))


def _scores(
    labels: Sequence[Any],
    predicted: Sequence[int],
    keywords: Sequence[Sequence[str]],
    tokenized: Sequence[Sequence[str]],
    seconds: float,
    top_n: int,
) -> dict[str, Any]:
    n = len(predicted)
    return {
        "nmi": round(nmi(labels, predicted), 4),
        "ari": round(ari(labels, predicted), 4),
        "npmi": round(npmi_coherence(keywords, tokenized, top_n), 4),
        "diversity": round(topic_diversity(keywords, top_n), 4),
        "n_topics": len({t for t in predicted if t != OUTLIER_ID}),
        "outlier_share": round(sum(1 for t in predicted if t == OUTLIER_ID) / max(n, 1), 4),
        "seconds": round(seconds, 2),
        "n_items": n,
    }


def evaluate_topics(
    texts: Sequence[str],
    labels: Sequence[Any],
    embeddings: np.ndarray,
    params: TopicParams | None = None,
    *,
    embedder: Any = None,
    top_n: int = 10,
    tokenized_docs: Sequence[Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Fit our topic model on ``texts``/``embeddings`` and score it against ``labels``.

    Returns nmi, ari, npmi, diversity, n_topics, outlier_share, seconds (the fit, including reading
    words), n_items, plus the resolved params, warnings and the topics (id, size, label, keywords). NPMI uses document
    co-occurrence of ``display_tokens`` words over ``texts`` (pass ``tokenized_docs`` to reuse them).
    """
    from services.text_zh import display_tokens
    from services.topics_build import _build

    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    ids = [str(i) for i in range(len(texts))]
    start = time.perf_counter()
    result, _keyword_tokens = _build(list(texts), embeddings, ids, params, None, None, embedder)
    seconds = time.perf_counter() - start
    predicted = [result.assignments[i] for i in ids]
    keywords = [t.keywords for t in result.real_topics]
    tokenized = tokenized_docs if tokenized_docs is not None else [display_tokens(t or "") for t in texts]
    out = _scores(labels, predicted, keywords, tokenized, seconds, top_n)
    out["params"] = {k: v for k, v in vars(result.params).items()}
    out["warnings"] = list(result.warnings)
    out["topics"] = [
        {"id": t.id, "size": t.size, "label": t.label, "keywords": list(t.keywords)} for t in result.real_topics
    ]
    return out


def evaluate_bertopic_defaults(
    texts: Sequence[str],
    labels: Sequence[Any],
    embeddings: np.ndarray,
    *,
    seed: int = 42,
    top_n: int = 10,
    tokenized_docs: Sequence[Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Out-of-the-box ``BERTopic()`` on the same embeddings, scored like :func:`evaluate_topics`.

    Only the embeddings are passed (default CountVectorizer, i.e. whitespace/regex tokens; default
    language handling; HDBSCAN min_topic_size=10); the default UMAP gets ``random_state=seed`` purely for
    reproducibility. NPMI uses the same ``display_tokens`` reference corpus as ours. When BERTopic itself
    fails (pure-Chinese text: "empty vocabulary"), the metrics are None and ``error`` says why.
    """
    from bertopic import BERTopic
    from umap import UMAP

    from services.text_zh import display_tokens

    start = time.perf_counter()
    umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed, n_jobs=1)
    model = BERTopic(umap_model=umap_model)  # embedding_model stays None: nothing is downloaded
    try:
        predicted, _ = model.fit_transform(list(texts), embeddings=np.asarray(embeddings, dtype=np.float32))
    except ValueError as exc:
        # Pure-Chinese text is a known failure: language="english" strips every non-ASCII character, and
        # the default CountVectorizer then raises "empty vocabulary". Report it instead of crashing.
        return {
            "error": f"BERTopic defaults failed: {exc}",
            **dict.fromkeys(["nmi", "ari", "npmi", "diversity", "n_topics", "outlier_share"]),
            "seconds": round(time.perf_counter() - start, 2),
            "n_items": len(texts),
        }
    seconds = time.perf_counter() - start
    keywords = [[w for w, _s in (model.get_topic(t) or []) if w] for t in sorted(set(predicted)) if t != OUTLIER_ID]
    tokenized = tokenized_docs if tokenized_docs is not None else [display_tokens(t or "") for t in texts]
    return _scores(labels, [int(p) for p in predicted], keywords, tokenized, seconds, top_n)
