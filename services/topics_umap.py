"""The clustering UMAP of a topic build: the 5-d embedding HDBSCAN clusters, fitted on every item or on a
seeded sample of a large library (the other items placed by their most similar sampled ones), and the 2-d
map laid out on its neighbour graph. Heavy imports (umap, faiss, sklearn) happen inside the functions."""

from __future__ import annotations

import warnings as pywarnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.topics_model import OUTLIER_ID, TopicParams

# The clustering UMAP's SGD epochs up to 10,000 items: UMAP's own 500. Fewer measured worse on THUCNews
# titles (NMI / NPMI 0.521 / -0.560 at 500; 0.519 / -0.573 at 300; 0.501 / -0.592 at 200).
CLUSTER_EPOCHS = 500
MAP_EPOCHS = 100  # the map's layout epochs, on the clustering run's graph (a picture, not the clusters)
# Above this many items UMAP and HDBSCAN are fitted on a seeded sample of this size and every other item
# joins the topic of its nearest sampled items (see UmapFit). UMAP's cost grows with the items it embeds;
# a topic of the whole library is still a topic of a sample this large.
FIT_SAMPLE = 8_000
# The sample's UMAP runs lighter SGD than a full fit (300 epochs, 3 negative samples per edge instead of 500
# and 5: ~2.5x less work). On the 10,000 THUCNews headlines (an 8,000 sample, 3 seeds) NMI 0.533 vs 0.523,
# NPMI -0.309 vs -0.339: the lighter optimisation lost nothing measurable.
SAMPLE_EPOCHS = 300
SAMPLE_NEGATIVE_RATE = 3
EXACT_KNN_FROM = 4_096  # UMAP computes exact neighbours itself below this many items
EXTEND_NEIGHBOURS = 10  # sampled items an unsampled one is placed by
EXTEND_TEMPERATURE = 0.05  # cosine similarities -> weights: exp(sim / T), so the nearest few decide


def umap_embed(
    X: np.ndarray,
    n_components: int,
    n_neighbors: int,
    seed: int,
    min_dist: float,
    n_epochs: int | None = None,
    negative_sample_rate: int = 5,
) -> tuple[np.ndarray, Any]:
    """UMAP embedding of ``X`` and the fitted model (its fuzzy k-NN graph lays out the map as well)."""
    from umap import UMAP

    n = len(X)
    k = max(2, min(n_neighbors, n - 1))
    extra: dict[str, Any] = {}
    if n >= EXACT_KNN_FROM:
        # UMAP's own exact path covers smaller inputs; above, exact neighbours from FAISS are faster than
        # its approximate NN-descent and do not depend on its random projections.
        near, sims = _exact_knn(X, X, k)
        extra["precomputed_knn"] = (near, np.clip(1.0 - sims, 0.0, 2.0).astype(np.float32), None)
    model = UMAP(
        n_neighbors=k,
        n_components=n_components,
        min_dist=min_dist,
        metric="cosine",
        random_state=seed,
        n_epochs=n_epochs,
        # Spectral init solves an eigenproblem that fails when k >= N; random init is safe for small N.
        init="spectral" if n > 4 * (n_components + 1) else "random",
        n_jobs=1,  # a seed forces one thread anyway; saying so avoids UMAP's warning
        low_memory=True,
        verbose=False,
        negative_sample_rate=negative_sample_rate,
        **extra,
    )
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore", category=UserWarning)
        out = model.fit_transform(X)
    return np.nan_to_num(np.asarray(out, dtype=np.float64)), model


def cluster_epochs(n_items: int) -> int | None:
    """SGD epochs of the clustering UMAP: None (UMAP's own 500 up to 10,000 items, 200 above)."""
    return CLUSTER_EPOCHS if n_items <= 10_000 else None


def layout_from_graph(model: Any, reduced: np.ndarray, seed: int) -> np.ndarray:
    """The 2-d map from the clustering UMAP's fuzzy k-NN graph, instead of a second UMAP on the embeddings.

    A second ``UMAP(n_components=2)`` recomputes the same k-NN graph and a spectral initialisation and
    then runs 500 epochs (at 5,000 items about as long as the whole clustering). Here only the layout is
    optimised: started from the 5-d clustering embedding's first two principal axes (so clusters start
    apart, where the spectral init would put them), ``MAP_EPOCHS`` epochs, min_dist 0.1 as before."""
    from sklearn.decomposition import PCA
    from sklearn.utils import check_random_state
    from umap.umap_ import find_ab_params, simplicial_set_embedding

    start = PCA(n_components=2, svd_solver="full").fit_transform(reduced - reduced.mean(axis=0))
    start = (10.0 * start / max(float(np.abs(start).max()), 1e-12)).astype(np.float32)
    a, b = find_ab_params(1.0, 0.1)
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore", category=UserWarning)
        coords, _aux = simplicial_set_embedding(
            np.zeros((len(reduced), 1), dtype=np.float32),  # only a spectral init or densMAP read the data
            model.graph_.copy(),  # pruned in place by epoch count: keep the model's own graph intact
            2,
            1.0,
            a,
            b,
            1.0,
            5,
            MAP_EPOCHS,
            start,
            check_random_state(seed),
            model._input_distance_func,
            {},
            False,
            {},
            False,
        )
    return np.nan_to_num(np.asarray(coords, dtype=np.float64))


@dataclass
class UmapFit:
    """The clustering UMAP: the model (its fuzzy k-NN graph also lays out the map) and the 5-d coordinates
    of the rows it embedded (``fitted``: every row, or a sample). Rows outside the sample are placed by
    their ``EXTEND_NEIGHBOURS`` most similar fitted rows (``near``, indices into ``fitted``; ``weights``
    sum to one per row)."""

    model: Any
    reduced: np.ndarray
    fitted: np.ndarray
    others: np.ndarray
    near: np.ndarray
    weights: np.ndarray

    def spread(self, fitted_values: np.ndarray) -> np.ndarray:
        """Per-row values (coordinates) of the fitted rows, extended to every row by weighted average."""
        n = len(self.fitted) + len(self.others)
        out = np.zeros((n, *fitted_values.shape[1:]), dtype=np.float64)
        out[self.fitted] = fitted_values
        if len(self.others):
            out[self.others] = np.einsum("ik,ik...->i...", self.weights, fitted_values[self.near])
        return out

    def spread_labels(self, labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Topic of every row: a fitted row keeps its own; another takes the topic with the largest weight
        among its nearest fitted rows (outliers included; ties: the lower id), its probability that weight
        share times their mean probability."""
        n = len(self.fitted) + len(self.others)
        all_labels = np.full(n, OUTLIER_ID, dtype=int)
        all_probs = np.zeros(n, dtype=float)
        all_labels[self.fitted] = labels
        all_probs[self.fitted] = probs
        if not len(self.others):
            return all_labels, all_probs
        topic_ids = np.unique(labels)  # sorted, so argmax's first maximum is the lowest id
        neighbour_topics = np.searchsorted(topic_ids, labels[self.near])
        votes = np.zeros((len(self.others), len(topic_ids)))
        np.add.at(votes, (np.arange(len(self.others))[:, None], neighbour_topics), self.weights)
        best = votes.argmax(axis=1)
        same = neighbour_topics == best[:, None]
        mean_prob = (probs[self.near] * same).sum(axis=1) / np.maximum(same.sum(axis=1), 1)
        chosen = topic_ids[best]
        all_labels[self.others] = chosen
        all_probs[self.others] = np.where(chosen == OUTLIER_ID, 0.0, votes.max(axis=1) * mean_prob)
        return all_labels, all_probs


def _nearest_rows(queries: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each (unit) query row the ``k`` most cosine-similar ``pool`` rows, most similar first, with
    softmax weights (``EXTEND_TEMPERATURE``). Exact (FAISS flat inner product: ~3x faster than a numpy
    matrix product and partition at 12k x 8k)."""
    near, sims = _exact_knn(queries, pool, k)
    weights = np.exp((sims - sims[:, :1]) / EXTEND_TEMPERATURE)
    return near, weights / weights.sum(axis=1, keepdims=True)


def _exact_knn(queries: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``pool`` and inner products of each query's ``k`` nearest rows, nearest first."""
    import faiss

    pool = np.ascontiguousarray(pool, dtype=np.float32)
    index = faiss.IndexFlatIP(pool.shape[1])
    index.add(pool)
    sims, near = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(pool)))
    return near.astype(np.int64), sims


def fit_umap(X: np.ndarray, params: TopicParams, warnings: list[str], fit_sample: int | None = None) -> UmapFit:
    """The 5-d clustering UMAP over every row, or over a seeded sample of ``fit_sample`` rows (default
    ``FIT_SAMPLE``; 0: never sample)."""
    n = len(X)
    sample = FIT_SAMPLE if fit_sample is None else fit_sample
    if 0 < sample < n:
        rng = np.random.default_rng(params.seed)
        fitted = np.sort(rng.choice(n, sample, replace=False))
        warnings.append(
            f"Topics were fitted on a sample of {sample:,} of the {n:,} passages (the same sample each "
            "time); every other passage joined the topic of the sampled passages most like it."
        )
    else:
        fitted = np.arange(n)
    others = np.setdiff1d(np.arange(n), fitted)
    sampled = len(others) > 0
    reduced, model = umap_embed(
        X[fitted],
        5,
        params.n_neighbors,
        params.seed,
        min_dist=0.0,
        n_epochs=SAMPLE_EPOCHS if sampled else cluster_epochs(n),
        negative_sample_rate=SAMPLE_NEGATIVE_RATE if sampled else 5,
    )
    if sampled:
        near, weights = _nearest_rows(X[others], X[fitted], EXTEND_NEIGHBOURS)
    else:
        near, weights = np.zeros((0, 1), dtype=np.int64), np.zeros((0, 1), dtype=np.float32)
    return UmapFit(model, reduced, fitted, others, near, weights)
