"""Working with a fitted topic map: place new items, advise a rebuild, rename, merge, reduce outliers.

``rename_topic``, ``merge_topics`` and ``reduce_outliers`` return a new result and leave theirs alone;
``assign_new_items`` updates the result in place (it is called as documents arrive, then saved).
Topic ids stay stable through all of these, so selections and filters keyed by id keep working.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from services.errors import TopicsUnavailable
from services.topics_build import (
    N_REPRESENTATIVES,
    _apply_offsets,
    _clean_label,
    _join_floor,
    _normalize,
    _refresh_derived,
    _scripts,
    _sort_topics,
    _unit_rows,
    _xy,
    keyword_label,
)
from services.topics_ctfidf import TOP_N_WORDS, keywords_of_grouping, read_words
from services.topics_model import OUTLIER_ID, OUTLIER_LABEL, TopicInfo, TopicResult

__all__ = ["assign_new_items", "merge_topics", "reduce_outliers", "refit_advised", "rename_topic"]


def _jitter(item_id: str, scale: float) -> tuple[float, float]:
    """Deterministic small offset per item (so new items near one spot do not overlap exactly)."""
    h = zlib.crc32(item_id.encode("utf-8"))
    angle = (h % 3600) / 3600 * 2 * math.pi
    radius = scale * (0.3 + 0.7 * ((h >> 12) % 1000) / 1000)
    return radius * math.cos(angle), radius * math.sin(angle)


def _set_sizes(result: TopicResult) -> None:
    counts = Counter(result.assignments.values())
    for t in result.topics:
        t.size = counts.get(t.id, 0)


def _ensure_outlier_entry(result: TopicResult, vectors: np.ndarray) -> None:
    if any(t.is_outliers for t in result.topics):
        return
    result.topics.insert(0, TopicInfo(OUTLIER_ID, OUTLIER_LABEL, [], [], 0, []))
    row = np.asarray(vectors, dtype=np.float32).mean(axis=0, keepdims=True)
    result.topic_embeddings = np.vstack([row, np.asarray(result.topic_embeddings, dtype=np.float32)])


def _aligned_rows(result: TopicResult, embeddings: np.ndarray, texts: Sequence[str] | None, n: int) -> np.ndarray:
    X = _unit_rows(embeddings, n)
    if texts is None or not result.language_offsets:
        return X
    if len(texts) != n:
        raise TopicsUnavailable(f"Got {len(texts)} texts for {n} items.")
    offsets = {g: np.asarray(v, dtype=np.float32) for g, v in result.language_offsets.items()}
    return _apply_offsets(X, _scripts(texts), offsets)


def assign_new_items(
    result: TopicResult,
    item_ids: list[str],
    embeddings: np.ndarray,
    *,
    texts: list[str] | None = None,
    fitted_ids: list[str] | None = None,
    fitted_embeddings: np.ndarray | None = None,
    fitted_texts: list[str] | None = None,
) -> dict[str, int]:
    """Place items added after the fit: the topic with the nearest centroid (cosine), or -1 when that
    similarity is far below the topic's own members' (``TopicInfo.min_similarity``).

    Updates ``result`` in place (assignments, probabilities, coords, topic sizes) and returns the new
    assignments. Map coordinates: the similarity-weighted mean of the 5 nearest fitted items when
    ``fitted_ids``/``fitted_embeddings`` are given, else near the middle of the chosen topic. ``texts``
    (and ``fitted_texts``) let a mixed-language library apply its language alignment; without them the
    raw embeddings are compared (slightly less exact for such libraries, identical for one language).
    """
    if len(item_ids) == 0:
        return {}
    X = _aligned_rows(result, embeddings, texts, len(item_ids))
    if fitted_embeddings is not None and fitted_ids is not None:
        fitted_embeddings = _aligned_rows(result, fitted_embeddings, fitted_texts, len(fitted_ids))
    real = [(i, t) for i, t in enumerate(result.topics) if not t.is_outliers]
    if real:
        C = _normalize(np.asarray(result.topic_embeddings)[[i for i, _t in real]]).astype(np.float32)
        sims = X @ C.T
        best = sims.argmax(axis=1)
        best_sim = sims[np.arange(len(X)), best]
    new: dict[str, int] = {}
    near: dict[str, int] = {}
    for r, item in enumerate(item_ids):
        if not real:
            new[item] = OUTLIER_ID
            continue
        topic = real[int(best[r])][1]
        near[item] = topic.id
        new[item] = topic.id if best_sim[r] >= topic.min_similarity else OUTLIER_ID
        result.probabilities[item] = round(float(np.clip(best_sim[r], 0.0, 1.0)), 4)
    if any(t == OUTLIER_ID for t in new.values()):
        _ensure_outlier_entry(result, X[[r for r, i in enumerate(item_ids) if new[i] == OUTLIER_ID]])
    for item, t in new.items():
        result.assignments[item] = t
        if t == OUTLIER_ID:
            result.probabilities[item] = 0.0
    _place_coords(result, item_ids, X, near, fitted_ids, fitted_embeddings)
    _set_sizes(result)
    _refresh_derived(result)
    return new


def _place_coords(
    result: TopicResult,
    item_ids: list[str],
    X: np.ndarray,
    near: dict[str, int],
    fitted_ids: list[str] | None,
    fitted_embeddings: np.ndarray | None,
) -> None:
    all_xy = np.array(list(result.coords.values()) or [(0.0, 0.0)], dtype=float)
    scale = float(all_xy.std()) * 0.05 + 1e-3
    knn_ok = fitted_ids is not None and fitted_embeddings is not None and len(fitted_ids) > 0
    if knn_ok:
        assert fitted_ids is not None and fitted_embeddings is not None
        new_ids = set(item_ids)
        keep = [i for i, f in enumerate(fitted_ids) if f in result.coords and f not in new_ids]
        if keep:
            F = _unit_rows(np.asarray(fitted_embeddings)[keep], len(keep))
            F_xy = np.array([result.coords[fitted_ids[i]] for i in keep], dtype=float)
            sims = X @ F.T
            k = min(5, len(keep))
            for r, item in enumerate(item_ids):
                top = np.argsort(-sims[r], kind="stable")[:k]
                w = np.clip(sims[r, top], 1e-3, None)
                x, y = (F_xy[top] * w[:, None]).sum(axis=0) / w.sum()
                dx, dy = _jitter(item, scale)
                result.coords[item] = _xy(x + dx, y + dy)
            return
    new_items = set(item_ids)
    centres: dict[int, np.ndarray] = {}
    for item in item_ids:
        t = near.get(item, OUTLIER_ID)
        if t not in centres:
            pts = [
                result.coords[i]
                for i, a in result.assignments.items()
                if a == t and i in result.coords and i not in new_items
            ]
            centres[t] = np.mean(np.array(pts, dtype=float), axis=0) if pts else all_xy.mean(axis=0)
        cx, cy = centres[t]
        dx, dy = _jitter(item, scale * 5)
        result.coords[item] = _xy(cx + dx, cy + dy)


def refit_advised(result: TopicResult, n_new: int, n_total: int) -> str | None:
    """A message for the user when the topic map should be rebuilt: more than ~20% of the items were
    added after the fit, or many items are outliers; None when the map is fine."""
    messages = []
    if n_total > 0 and n_new > 0 and n_new / n_total > 0.2:
        messages.append(
            f"{n_new} of {n_total} passages were added after the topics were built ({n_new / n_total:.0%}): "
            "rebuild the topics to include them properly."
        )
    total = len(result.assignments)
    outliers = sum(1 for t in result.assignments.values() if t == OUTLIER_ID)
    if total >= 20 and outliers / total > 0.35:
        messages.append(
            f"{outliers / total:.0%} of the passages are outliers: rebuild with a smaller minimum topic size "
            "or with outlier reduction."
        )
    return " ".join(messages) or None


def _copy(result: TopicResult) -> TopicResult:
    return replace(
        result,
        topics=[
            replace(
                t,
                keywords=list(t.keywords),
                keyword_scores=list(t.keyword_scores),
                representative_ids=list(t.representative_ids),
            )
            for t in result.topics
        ],
        assignments=dict(result.assignments),
        probabilities=dict(result.probabilities),
        coords=dict(result.coords),
        params=replace(result.params),
        hierarchy=list(result.hierarchy),
        similarity=[list(r) for r in result.similarity],
        warnings=list(result.warnings),
        topic_embeddings=np.array(result.topic_embeddings, dtype=np.float32, copy=True),
        language_offsets={k: list(v) for k, v in result.language_offsets.items()},
        label_model=result.label_model,
    )


def rename_topic(result: TopicResult, topic_id: int, label: str) -> TopicResult:
    """A copy of ``result`` with topic ``topic_id`` renamed (the input is not changed)."""
    clean = _clean_label(label)
    if not clean:
        raise TopicsUnavailable("A topic name cannot be empty.")
    out = _copy(result)
    out.topic(topic_id).label = clean
    return out


def _aligned(
    result: TopicResult, item_ids: Sequence[str] | None, texts: Sequence[str] | None, embeddings: np.ndarray | None
) -> tuple[list[str], Sequence[str] | None, np.ndarray | None]:
    ids = list(item_ids) if item_ids is not None else list(result.assignments)
    if texts is not None and len(texts) != len(ids):
        raise TopicsUnavailable(f"Got {len(texts)} texts for {len(ids)} items.")
    X = _aligned_rows(result, embeddings, texts, len(ids)) if embeddings is not None else None
    return ids, texts, X


def _update_keywords(
    out: TopicResult,
    topic_ids: set[int],
    ids: list[str],
    texts: Sequence[str],
    old_labels: dict[int, str],
    words: Sequence[Sequence[str] | None] | None = None,
) -> None:
    """Re-run c-TF-IDF over the current grouping and refresh the keywords (and keyword-made labels) of
    ``topic_ids``. Items without an assignment are ignored. ``words``: the items' stored words, if any."""
    if words is not None and len(words) != len(ids):
        raise TopicsUnavailable(f"Got {len(words)} word lists for {len(ids)} items.")
    rows = [r for r, i in enumerate(ids) if i in out.assignments]
    stored = [words[r] for r in rows] if words is not None else None
    tokens = read_words([texts[r] for r in rows], None, 0.0, 1.0, stored)
    labels = [out.assignments[ids[r]] for r in rows]
    by_topic = keywords_of_grouping(tokens, labels, out.params.min_topic_size or 2)
    for t in topic_ids:
        topic = out.topic(t)
        kw = by_topic.get(t, [])
        topic.keywords = [w for w, _s in kw]
        topic.keyword_scores = [round(s, 6) for _w, s in kw]
        if old_labels.get(t) is None or topic.label == old_labels[t]:
            topic.label = keyword_label(topic.keywords, t)


def merge_topics(
    result: TopicResult,
    topic_ids: list[int],
    *,
    item_ids: list[str] | None = None,
    texts: list[str] | None = None,
    embeddings: np.ndarray | None = None,
    words: Sequence[Sequence[str] | None] | None = None,
) -> TopicResult:
    """A copy of ``result`` with ``topic_ids`` merged into the smallest of those ids (other ids stay).

    texts (aligned with ``item_ids``, default: the fitted items in order): keywords of the merged topic
    are re-computed by c-TF-IDF over the new grouping (plain c-TF-IDF, no MMR); without texts they are
    combined from the merged topics' keywords (score × size). embeddings (aligned likewise): picks new
    representative items; without, the merged topics' representatives are interleaved. The merged topic
    keeps the largest merged topic's custom label, or gets a keyword label.
    """
    wanted = sorted(set(int(t) for t in topic_ids))
    if len(wanted) < 2:
        raise TopicsUnavailable("Choose at least two topics to merge.")
    if OUTLIER_ID in wanted:
        raise TopicsUnavailable("Outliers cannot be merged into a topic; use outlier reduction instead.")
    parts = [result.topic(t) for t in wanted]  # raises for an unknown id
    ids, texts_, X = _aligned(result, item_ids, texts, embeddings)
    out = _copy(result)
    target = wanted[0]
    biggest = max(parts, key=lambda p: p.size)
    custom_label = biggest.label != keyword_label(biggest.keywords, biggest.id)

    idx = [out.topic_index(t) for t in wanted]
    sizes = np.array([out.topics[i].size for i in idx], dtype=float)
    emb = np.asarray(out.topic_embeddings, dtype=np.float64)
    merged_vec = (emb[idx] * sizes[:, None]).sum(axis=0) / max(sizes.sum(), 1.0)
    for item, t in out.assignments.items():
        if t in wanted:
            out.assignments[item] = target
    keep = [i for i in range(len(out.topics)) if out.topics[i].id not in wanted[1:]]
    ti = out.topic_index(target)
    emb[ti] = merged_vec
    merged = out.topics[ti]
    merged.min_similarity = min(p.min_similarity for p in parts)
    if texts_ is None:
        score: Counter[str] = Counter()
        for p in parts:
            for w, s in zip(p.keywords, p.keyword_scores, strict=False):
                score[w] += s * p.size
        top = sorted(score.items(), key=lambda ws: (-ws[1], ws[0]))[:TOP_N_WORDS]
        total = sum(p.size for p in parts) or 1
        merged.keywords = [w for w, _s in top]
        merged.keyword_scores = [round(s / total, 6) for _w, s in top]
    reps: list[str] = []
    for r in range(N_REPRESENTATIVES):
        for p in sorted(parts, key=lambda p: -p.size):
            if r < len(p.representative_ids) and p.representative_ids[r] not in reps:
                reps.append(p.representative_ids[r])
    merged.representative_ids = reps[:N_REPRESENTATIVES]
    out.topics = [out.topics[i] for i in keep]
    out.topic_embeddings = emb[keep].astype(np.float32)
    _set_sizes(out)
    if X is not None:
        members = [r for r, i in enumerate(ids) if out.assignments.get(i) == target]
        if members:
            c = _normalize(merged_vec).astype(np.float32)
            sims = X[members] @ c
            order = np.argsort(-sims, kind="stable")
            merged.representative_ids = [ids[members[j]] for j in order[:N_REPRESENTATIVES]]
            merged.min_similarity = _join_floor(sims)
    if texts_ is not None:
        _update_keywords(out, {target}, ids, texts_, {}, words)
    if custom_label:
        merged.label = biggest.label
    elif texts_ is None:
        merged.label = keyword_label(merged.keywords, target)
    _sort_topics(out)
    _refresh_derived(out)
    return out


def reduce_outliers(
    result: TopicResult,
    *,
    item_ids: list[str],
    embeddings: np.ndarray,
    texts: list[str] | None = None,
    words: Sequence[Sequence[str] | None] | None = None,
) -> TopicResult:
    """A copy of ``result`` where every outlier among ``item_ids`` (rows of ``embeddings``) joins the
    topic with the nearest centroid. With ``texts`` (aligned), the keywords of the topics that grew are
    re-computed by c-TF-IDF; custom labels are kept."""
    ids, texts_, X = _aligned(result, item_ids, texts, embeddings)
    assert X is not None
    out = _copy(result)
    real = [(i, t) for i, t in enumerate(out.topics) if not t.is_outliers]
    rows = [r for r, i in enumerate(ids) if out.assignments.get(i) == OUTLIER_ID]
    if not real or not rows:
        return out
    emb = np.asarray(out.topic_embeddings, dtype=np.float64)
    C = _normalize(emb[[i for i, _t in real]]).astype(np.float32)
    sims = X[rows] @ C.T
    best = sims.argmax(axis=1)
    grown: set[int] = set()
    old_labels = {t.id: keyword_label(t.keywords, t.id) for _i, t in real}
    for j, (r, b) in enumerate(zip(rows, best, strict=True)):
        pos, topic = real[int(b)]
        # Running mean keeps the centroid the exact mean of its members.
        emb[pos] = (emb[pos] * topic.size + X[r]) / (topic.size + 1)
        topic.size += 1
        out.assignments[ids[r]] = topic.id
        out.probabilities[ids[r]] = round(float(np.clip(sims[j, int(b)], 0.0, 1.0)), 4)
        grown.add(topic.id)
    out.topic_embeddings = emb.astype(np.float32)
    _set_sizes(out)
    if not any(a == OUTLIER_ID for a in out.assignments.values()):
        keep = [i for i, t in enumerate(out.topics) if not t.is_outliers]
        out.topics = [out.topics[i] for i in keep]
        out.topic_embeddings = out.topic_embeddings[keep]
    out.params = replace(out.params, reduce_outliers=True)
    if texts_ is not None:
        _update_keywords(out, grown, ids, texts_, old_labels, words)
    _sort_topics(out)
    _refresh_derived(out)
    return out
