"""Hybrid retrieval: dense (FAISS) + BM25 (FTS5 over Chinese-segmented, script-normalised terms), fused by
weighted, per-query normalised scores, with document / topic / date filters.

Plain reciprocal-rank fusion with a weaker dense model is worse than BM25 alone on DRCD, so the two signals
are weighted (``dense_weight``, tuned on the dev sets; see the README's evaluation section).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from services.store import ChunkRecord


class SearchableStore(Protocol):
    def dense_search(
        self, query: np.ndarray, k: int, document_ids: Sequence[str] | None = None
    ) -> list[tuple[int, float]]: ...

    def keyword_search(
        self, terms: Sequence[str], k: int, document_ids: Sequence[str] | None = None
    ) -> list[tuple[int, float]]: ...

    def get_chunks(self, vector_ids: Sequence[int]) -> list[ChunkRecord]: ...

    def document_ids_between(self, start: str | None, end: str | None) -> list[str]: ...


class QueryEncoder(Protocol):
    def encode_query(self, text: str) -> np.ndarray: ...


@dataclass
class SearchFilter:
    document_ids: list[str] | None = None  # None: every document
    date_from: str | None = None
    date_to: str | None = None
    topic_document_ids: list[str] | None = None  # resolved by the caller from a topic id

    def resolve(self, store: SearchableStore) -> list[str] | None:
        """The allowed document ids, or None when nothing restricts the search."""
        allowed: set[str] | None = None
        for ids in (self.document_ids, self.topic_document_ids):
            if ids is not None:
                allowed = set(ids) if allowed is None else allowed & set(ids)
        if self.date_from or self.date_to:
            dated = set(store.document_ids_between(self.date_from, self.date_to))
            allowed = dated if allowed is None else allowed & dated
        return None if allowed is None else sorted(allowed)


@dataclass
class Passage:
    chunk: ChunkRecord
    score: float  # fused score in [0, 1]
    dense_score: float | None = None  # cosine similarity
    dense_rank: int | None = None  # 1-based rank in the dense list
    keyword_score: float | None = None  # BM25
    keyword_rank: int | None = None
    matched_terms: list[str] = field(default_factory=list)

    def to_hit(self) -> dict:
        c = self.chunk
        return {
            "document": c.document_id,
            "source": c.source,
            "page": c.page,
            "chunk_id": c.id,
            "score": round(self.score, 6),
            "text": c.text,
            "start": c.start,
            "end": c.end,
            "dense_score": None if self.dense_score is None else round(self.dense_score, 6),
            "dense_rank": self.dense_rank,
            "keyword_score": None if self.keyword_score is None else round(self.keyword_score, 6),
            "keyword_rank": self.keyword_rank,
        }


def _normalise(scores: dict[int, float]) -> dict[int, float]:
    if not scores:
        return {}
    values = np.fromiter(scores.values(), dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    span = high - low
    if span <= 1e-12:
        return {k: 1.0 for k in scores}
    return {k: (v - low) / span for k, v in scores.items()}


class HybridRetriever:
    """Weighted fusion of dense and keyword search. ``dense_weight`` 1.0 is dense only, 0.0 keyword only."""

    def __init__(
        self,
        store: SearchableStore,
        encoder: QueryEncoder,
        tokenize,  # Callable[[str], list[str]]: services.text_zh.keyword_tokens
        *,
        dense_weight: float = 0.5,
        candidates: int = 50,
    ):
        self.store = store
        self.encoder = encoder
        self.tokenize = tokenize
        self.dense_weight = dense_weight
        self.candidates = candidates

    def search(
        self, query: str, k: int = 5, search_filter: SearchFilter | None = None, *, dense_weight: float | None = None
    ) -> list[Passage]:
        query = query.strip()
        if not query:
            return []
        weight = self.dense_weight if dense_weight is None else dense_weight
        allowed = search_filter.resolve(self.store) if search_filter else None
        if allowed is not None and not allowed:
            return []
        n = max(self.candidates, k)
        dense: list[tuple[int, float]] = []
        keyword: list[tuple[int, float]] = []
        if weight > 0:
            dense = self.store.dense_search(self.encoder.encode_query(query), n, allowed)
        terms = self.tokenize(query)
        if weight < 1:
            keyword = self.store.keyword_search(terms, n, allowed)
        dense_scores = dict(dense)
        keyword_scores = dict(keyword)
        dense_norm = _normalise(dense_scores)
        keyword_norm = _normalise(keyword_scores)
        fused: dict[int, float] = {}
        for vid in set(dense_scores) | set(keyword_scores):
            fused[vid] = weight * dense_norm.get(vid, 0.0) + (1 - weight) * keyword_norm.get(vid, 0.0)
        ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
        dense_rank = {vid: r for r, (vid, _) in enumerate(dense, start=1)}
        keyword_rank = {vid: r for r, (vid, _) in enumerate(keyword, start=1)}
        chunks = {c.vector_id: c for c in self.store.get_chunks([vid for vid, _ in ranked[: k * 2 + 5]])}
        passages: list[Passage] = []
        term_set = set(terms)
        for vid, score in ranked:
            chunk = chunks.get(vid)
            if chunk is None:  # deleted since the index was read
                continue
            passages.append(
                Passage(
                    chunk=chunk,
                    score=score,
                    dense_score=dense_scores.get(vid),
                    dense_rank=dense_rank.get(vid),
                    keyword_score=keyword_scores.get(vid),
                    keyword_rank=keyword_rank.get(vid),
                    matched_terms=sorted(term_set & set(self.tokenize(chunk.text))) if term_set else [],
                )
            )
            if len(passages) == k:
                break
        return passages
