"""The UMAPs of a topic build: the 5-d embedding HDBSCAN clusters, fitted on every item or on a seeded
sample of a large library (the other items placed by their most similar sampled ones), and the 2-d map,
laid out on the same neighbour graph at the same time on the second core. Heavy imports (umap, numba,
faiss) happen inside the functions."""

from __future__ import annotations

import threading
import warnings as pywarnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from services.topics_model import OUTLIER_ID, TopicParams

# The clustering UMAP's SGD epochs up to 10,000 items: UMAP's own 500. Fewer measured worse on THUCNews
# titles (NMI / NPMI 0.521 / -0.560 at 500; 0.519 / -0.573 at 300; 0.501 / -0.592 at 200).
CLUSTER_EPOCHS = 500
# The map's layout epochs, from a PCA start on the clustering run's neighbour graph (a picture, not the
# clusters).
MAP_EPOCHS = 100
# Above this many items UMAP and HDBSCAN are fitted on a seeded sample of this size and every other item
# joins the topic of its nearest sampled items (see UmapFit). UMAP's cost grows with the items it embeds;
# a topic of the whole library is still a topic of a sample this large.
FIT_SAMPLE = 8_000
# The sample's UMAP runs lighter SGD than a full fit: 150 epochs (UMAP's own above 10,000 items: 200) and
# 3 negative samples per edge instead of 500 and 5. On the 10,000 THUCNews headlines (an 8,000 sample)
# NMI over 10 seeds averaged 0.526 at 150 epochs and 0.515 at 200 (seed to seed: ±0.03); earlier, over
# seeds 42 / 7 / 1, 0.547 at 200, 0.533 at 300, 0.523 with a full fit's 500 and 5.
SAMPLE_EPOCHS = 150
SAMPLE_NEGATIVE_RATE = 3
EXTEND_NEIGHBOURS = 10  # sampled items an unsampled one is placed by
EXTEND_TEMPERATURE = 0.05  # cosine similarities -> weights: exp(sim / T), so the nearest few decide

KnnGraph = tuple[np.ndarray, np.ndarray, None]  # UMAP's precomputed_knn: indices, distances, no search index


def neighbour_count(n_neighbors: int, n_items: int) -> int:
    """UMAP's k for ``n_items``: at least 2 and fewer than the items."""
    return max(2, min(n_neighbors, n_items - 1))


def exact_knn_graph(X: np.ndarray, n_neighbors: int) -> KnnGraph:
    """UMAP's ``precomputed_knn``: each row's ``n_neighbors`` nearest rows (itself included) by cosine
    distance, exact, from FAISS. UMAP's own exact path (below 4,096 rows) calls a Python-level metric per
    pair (4,000 rows: ~12 s, FAISS: ~0.1 s), and its NN-descent above is approximate and seeded."""
    near, sims = _exact_knn(X, X, n_neighbors)
    return near, np.clip(1.0 - sims, 0.0, 2.0).astype(np.float32), None


def umap_embed(
    X: np.ndarray,
    n_components: int,
    n_neighbors: int,
    seed: int,
    min_dist: float,
    n_epochs: int | None = None,
    negative_sample_rate: int = 5,
    knn: KnnGraph | None = None,
    init: str = "spectral",
) -> np.ndarray:
    """UMAP embedding of ``X`` on the exact k-NN graph ``knn`` (computed when not given). Warnings are the
    caller's to silence: ``warnings.catch_warnings`` is not thread-safe."""
    from umap import UMAP

    n = len(X)
    k = neighbour_count(n_neighbors, n)
    if knn is None:
        knn = exact_knn_graph(X, k)
    model = UMAP(
        n_neighbors=k,
        n_components=n_components,
        min_dist=min_dist,
        metric="cosine",
        random_state=seed,
        n_epochs=n_epochs,
        # Spectral init solves an eigenproblem that fails when k >= N; random init is safe for small N.
        init=init if n > 4 * (n_components + 1) else "random",
        n_jobs=1,  # a seed forces one thread anyway; saying so avoids UMAP's warning
        low_memory=True,
        verbose=False,
        negative_sample_rate=negative_sample_rate,
        precomputed_knn=knn,
    )
    return np.nan_to_num(np.asarray(model.fit_transform(X), dtype=np.float64))


def cluster_epochs(n_items: int) -> int | None:
    """SGD epochs of the clustering UMAP: None (UMAP's own 500 up to 10,000 items, 200 above)."""
    return CLUSTER_EPOCHS if n_items <= 10_000 else None


def map_layout(X: np.ndarray, knn: KnnGraph | None, n_neighbors: int, seed: int) -> np.ndarray:
    """The 2-d map: ``MAP_EPOCHS`` of UMAP's layout (min_dist 0.1) on the clustering run's k-NN graph,
    started from the embeddings' first two principal axes. A full second UMAP (spectral start, 500 epochs)
    took about as long as the clustering itself; this one needs nothing from the clustering, so it runs
    beside it."""
    return umap_embed(X, 2, n_neighbors, seed, min_dist=0.1, n_epochs=MAP_EPOCHS, knn=knn, init="pca")


@dataclass
class UmapFit:
    """The clustering UMAP: the 5-d coordinates of the rows it embedded (``fitted``: every row, or a
    sample) and the map's layout of the same rows (``layout``, computed beside it; its error, if any, is
    raised by :meth:`map_coords`). Rows outside the sample are placed by their ``EXTEND_NEIGHBOURS`` most
    similar fitted rows (``near``, indices into ``fitted``; ``weights`` sum to one per row)."""

    reduced: np.ndarray
    fitted: np.ndarray
    others: np.ndarray
    near: np.ndarray
    weights: np.ndarray
    layout: Future

    def map_coords(self) -> np.ndarray:
        """2-d map coordinates of every row."""
        return self.spread(self.layout.result())

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


def fit_umap(
    X: np.ndarray,
    params: TopicParams,
    warnings: list[str],
    fit_sample: int | None = None,
    searching: threading.Event | None = None,
) -> UmapFit:
    """The 5-d clustering UMAP over every row, or over a seeded sample of ``fit_sample`` rows (default
    ``FIT_SAMPLE``; 0: never sample), with the map's layout and the placement of unsampled rows done on a
    second thread meanwhile (UMAP's seeded SGD uses one core). ``searching`` is set when the neighbour
    search starts: it runs without the GIL, so other work that holds it can run then."""
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
    X_fit = np.ascontiguousarray(X[fitted], dtype=np.float32)
    k = neighbour_count(params.n_neighbors, len(X_fit))
    if searching is not None:
        searching.set()
    knn = exact_knn_graph(X_fit, k)
    from services import umap_sgd

    # Our float32 epoch, without the GIL: the map is laid out on the second core meanwhile.
    with umap_sgd.in_use(), pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore", category=UserWarning)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="topic-map") as beside:
            layout = beside.submit(map_layout, X_fit, knn, k, params.seed)
            placement = beside.submit(_nearest_rows, X[others], X_fit, EXTEND_NEIGHBOURS) if sampled else None
            reduced = umap_embed(
                X_fit,
                5,
                k,
                params.seed,
                min_dist=0.0,
                n_epochs=SAMPLE_EPOCHS if sampled else cluster_epochs(n),
                negative_sample_rate=SAMPLE_NEGATIVE_RATE if sampled else 5,
                knn=knn,
            )
            if placement is not None:
                near, weights = placement.result()
            else:
                near, weights = np.zeros((0, 1), dtype=np.int64), np.zeros((0, 1), dtype=np.float32)
    return UmapFit(reduced, fitted, others, near, weights, layout)
