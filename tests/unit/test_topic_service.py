"""TopicService wiring over a real store: build → persist → load, the library kept in sync (new documents
placed, deleted ones dropped), the views the page and the CLI use, and edits that persist.

The library is the bundled samples (under 40 passages: the non-UMAP path, no numba compile) embedded with a
fast hashing embedder; it is built once per module and copied for each test.
"""

from __future__ import annotations

import shutil
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from services.app_services import AppServices, build_services
from services.config import load_settings
from services.embeddings import OfflineEmbeddings
from services.errors import TopicsUnavailable
from services.samples import load_samples
from services.topic_service import MapState, TopicService, library_items
from services.topics_model import OUTLIER_ID, TopicParams, TopicResult


class HashEmbeddings(OfflineEmbeddings):
    """Character-bigram hashing: similar strings get similar vectors, no model, deterministic."""

    name = "test/hash-bigrams"
    dimension = 64

    def _one(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dimension, dtype=np.float32)
        low = text.lower()
        for a, b in zip(low, low[1:], strict=False):
            vec[zlib.crc32((a + b).encode()) % self.dimension] += 1.0
        return vec / (float(np.linalg.norm(vec)) or 1.0)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        return self._one(text)

    def count_tokens(self, text: str) -> int:
        return sum(1 for ch in text if "\u3400" <= ch <= "\u9fff") + len(text.split())


def _open(data_dir: Path) -> AppServices:
    return build_services(load_settings(data_dir=data_dir), embedder=HashEmbeddings())


def _service(services: AppServices) -> TopicService:
    return TopicService(services.store, services.settings, embedder=services.embedder)


@pytest.fixture(scope="module")
def built_template(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("topic_service") / "data"
    services = _open(data)
    load_samples(services.library)
    _service(services).build(TopicParams())
    services.store.close()
    return data


@pytest.fixture
def services(built_template: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(built_template, data)
    services = _open(data)
    yield services
    services.store.close()


@pytest.fixture
def result(services: AppServices) -> TopicResult:
    loaded = _service(services).load()
    assert loaded is not None
    return loaded


def _add_text(services: AppServices, tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    (added,) = services.library.ingest_paths([path])
    assert added.status == "added", added.message
    assert added.document_id
    return added.document_id


def _doc_id_of(services: AppServices, source: str) -> str:
    return next(d.id for d in services.store.list_documents() if d.source == source)


# ---- build and persistence --------------------------------------------------------------------------------
def test_build_resolves_the_level_and_persists_without_pickle(services: AppServices, result: TopicResult) -> None:
    counts = services.store.counts()
    # 11 sample documents are fewer than 30: "auto" maps their passages.
    assert result.params.level == "chunks"
    assert len(result.assignments) == counts["embedded"]
    assert set(result.coords) == set(result.assignments)
    assert result.real_topics and all(t.keywords for t in result.real_topics)
    assert sum(t.size for t in result.topics) == len(result.assignments)
    files = sorted(p.name for p in services.settings.topics_dir.iterdir() if not p.name.startswith("."))
    assert "topics.json" in files
    assert all(p.endswith((".json", ".npy")) for p in files), files


def test_load_round_trips_the_build(services: AppServices, result: TopicResult) -> None:
    again = _service(services).load()
    assert [(t.id, t.label, t.keywords, t.size) for t in again.topics] == [
        (t.id, t.label, t.keywords, t.size) for t in result.topics
    ]
    assert again.assignments == result.assignments


def test_the_same_library_gives_the_same_topics(services: AppServices, result: TopicResult) -> None:
    rebuilt = _service(services).build(TopicParams())
    assert rebuilt.assignments == result.assignments
    assert [t.label for t in rebuilt.topics] == [t.label for t in result.topics]


def test_document_level_maps_whole_documents(services: AppServices) -> None:
    service = _service(services)
    result = service.build(TopicParams(level="documents"))
    docs = {d.id for d in services.store.list_documents()}
    assert result.params.level == "documents" and set(result.assignments) == docs
    assert service.document_topics(result) == result.assignments
    for topic in result.topics:
        assert service.topic_document_ids(result, topic.id) == sorted(result.items_of(topic.id))


def test_an_empty_library_explains_itself(tmp_path: Path) -> None:
    services = _open(tmp_path / "empty")
    service = _service(services)
    with pytest.raises(TopicsUnavailable, match="no embedded passages"):
        service.build(TopicParams())
    assert service.load() is None
    assert service.refresh() == MapState(None, None, [], [])
    with pytest.raises(TopicsUnavailable, match="build topics first"):
        service.export()


def test_a_second_build_at_the_same_time_is_refused(services: AppServices) -> None:
    lock = _service(services)._build_lock  # the lock of this library's folder, shared by every session
    assert lock.acquire(blocking=False)
    try:
        with pytest.raises(TopicsUnavailable, match="already running"):
            _service(services).build(TopicParams())
    finally:
        lock.release()


def test_builds_of_different_libraries_do_not_block_each_other(services: AppServices, tmp_path) -> None:
    other = TopicService(services.store, services.settings.model_copy(update={"data_dir": tmp_path / "other"}))
    assert other._build_lock is not _service(services)._build_lock


def test_bad_parameters_are_a_message(services: AppServices) -> None:
    with pytest.raises(TopicsUnavailable, match="at least 2"):
        _service(services).build(TopicParams(min_topic_size=1))


def test_progress_is_reported(services: AppServices) -> None:
    seen: list[tuple[str, int, int]] = []
    _service(services).build(TopicParams(), progress=lambda m, d, t: seen.append((m, d, t)))
    assert seen and all(t == 100 and 0 <= d <= 100 for _m, d, t in seen)
    assert seen[-1][1] == 100


# ---- views ------------------------------------------------------------------------------------------------
def test_summary_is_the_cli_contract(services: AppServices, result: TopicResult) -> None:
    summary = _service(services).summary(result)
    assert {"topics", "documents"} <= set(summary)
    for topic in summary["topics"]:
        assert set(topic) == {"id", "label", "keywords", "size"}
        assert isinstance(topic["id"], int) and isinstance(topic["label"], str) and isinstance(topic["size"], int)
        assert all(isinstance(w, str) for w in topic["keywords"])
    ids = {t["id"] for t in summary["topics"]}
    sources = {d.id: d.source for d in services.store.list_documents()}
    assert sorted(d["document"] for d in summary["documents"]) == sorted(sources)  # each document once
    for row in summary["documents"]:
        assert set(row) == {"document", "source", "topic"}
        assert row["source"] == sources[row["document"]] and row["topic"] in ids


def test_a_documents_topic_is_the_topic_of_most_of_its_passages(services: AppServices, result: TopicResult) -> None:
    votes: dict[str, Counter] = defaultdict(Counter)
    for chunk in services.store.iter_embeddings()[0]:
        votes[chunk.document_id][result.assignments[chunk.id]] += 1
    for doc, topic in _service(services).document_topics(result).items():
        assert votes[doc][topic] == max(votes[doc].values())


def test_topic_documents_cover_every_document(services: AppServices, result: TopicResult) -> None:
    service = _service(services)
    doc_of = {c.id: c.document_id for c in services.store.iter_embeddings()[0]}
    covered: set[str] = set()
    for topic in result.topics:
        docs = service.topic_document_ids(result, topic.id)
        assert docs == sorted({doc_of[i] for i in result.items_of(topic.id)})
        covered.update(docs)
    assert covered == {d.id for d in services.store.list_documents()}


def test_representative_passages_belong_to_their_topic(services: AppServices, result: TopicResult) -> None:
    service = _service(services)
    chunks = services.store.iter_embeddings()[0]
    for topic in result.real_topics:
        passages = service.representative_passages(result, topic.id, 2)
        assert 1 <= len(passages) <= 2
        assert all(result.assignments[p.id] == topic.id for p in passages)
        assert service.representative_passages(result, topic.id, 2, chunks=chunks) == passages


def test_overview_and_quality(services: AppServices, result: TopicResult) -> None:
    service = _service(services)
    overview = service.overview(result)
    assert overview["documents"] == services.store.counts()["documents"]
    sizes = [t["size"] for t in overview["topics"]]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == len(result.real_topics)
    assert (
        abs(sum(t["share"] for t in overview["topics"]) + overview["unassigned"] / len(result.assignments) - 1) < 1e-9
    )
    assert all(t["examples"] and t["examples"][0]["text"] for t in overview["topics"])
    quality = service.quality(result)
    assert -1.0 <= quality["npmi"] <= 1.0 and 0.0 <= quality["diversity"] <= 1.0


# ---- keeping the map in sync with the library -------------------------------------------------------------
def test_new_documents_are_placed_and_deleted_ones_dropped(
    services: AppServices, result: TopicResult, tmp_path: Path
) -> None:
    service = _service(services)
    _add_text(services, tmp_path, "more_tea.txt", "Oolong and green tea: the leaves, the water, the tasting.")
    state = service.refresh()
    new_chunks = [c.id for c in services.store.iter_embeddings()[0] if c.source == "more_tea.txt"]
    assert state.placed == new_chunks and not state.removed
    assert all(i in state.result.assignments and i in state.result.coords for i in new_chunks)
    assert sum(t.size for t in state.result.topics) == len(state.result.assignments)
    assert len(service.load().assignments) == len(result.assignments)  # looking does not save

    gone = _doc_id_of(services, "rivers.txt")
    gone_chunks = {c.id for c in services.store.iter_embeddings([gone])[0]}
    services.library.delete(gone)
    state = service.refresh()
    assert set(state.removed) == gone_chunks
    assert not gone_chunks & set(state.result.assignments)
    assert sum(t.size for t in state.result.topics) == len(state.result.assignments)
    summary = service.export()
    assert gone not in {d["document"] for d in summary["documents"]}
    assert "more_tea.txt" in {d["source"] for d in summary["documents"]}


def test_many_new_documents_suggest_a_refit(services: AppServices, result: TopicResult, tmp_path: Path) -> None:
    for n in range(6):
        _add_text(services, tmp_path, f"note{n}.txt", f"Note {n}: bicycles, trains and buses in the city, part {n}.")
    fresh, advice = _service(services).current()
    assert fresh is not None and advice and "rebuild" in advice.lower()


# ---- edits ------------------------------------------------------------------------------------------------
def test_rename_persists(services: AppServices, result: TopicResult) -> None:
    service = _service(services)
    renamed = service.rename(result, 0, "  颱風與防災  ")
    assert renamed.topic(0).label == "颱風與防災"
    assert service.load().topic(0).label == "颱風與防災"
    assert result.topic(0).label != "颱風與防災"  # the input is not changed
    with pytest.raises(TopicsUnavailable):
        service.rename(result, 0, "   ")


def test_merge_persists_and_recomputes_keywords(services: AppServices, result: TopicResult) -> None:
    service = _service(services)
    a, b = [t.id for t in result.real_topics[:2]]
    merged = service.merge(result, [a, b])
    saved = service.load()
    assert len(saved.real_topics) == len(result.real_topics) - 1
    target = saved.topic(min(a, b))
    assert target.size == result.topic(a).size + result.topic(b).size
    assert target.keywords and merged.topic(min(a, b)).keywords == target.keywords
    assert all(t != max(a, b) for t in saved.assignments.values())
    with pytest.raises(TopicsUnavailable):
        service.merge(saved, [min(a, b)])


def test_reduce_outliers_persists(services: AppServices) -> None:
    service = _service(services)
    # Tiny topics become outliers when the minimum size is large for this library.
    result = service.build(TopicParams(level="chunks", min_topic_size=5))
    outliers = result.items_of(OUTLIER_ID)
    if not outliers:
        pytest.skip("this clustering left no outliers on the samples")
    reduced = service.reduce_outliers(result)
    assert not reduced.items_of(OUTLIER_ID)
    assert not service.load().items_of(OUTLIER_ID)
    assert len(reduced.assignments) == len(result.assignments)


def test_a_library_ingested_before_words_were_stored_gets_them_on_its_first_build(
    services: AppServices, result: TopicResult
) -> None:
    import sqlite3

    db = sqlite3.connect(services.store.db_path)
    db.execute("UPDATE chunks SET words = NULL")  # what an older library holds
    db.commit()
    db.close()
    steps: list[str] = []
    rebuilt = _service(services).build(result.params, progress=lambda message, _d, _t: steps.append(message))
    assert any("older passages" in s for s in steps)
    chunks, _vectors = services.store.iter_embeddings()
    assert all(c.words is not None for c in chunks)
    assert [t.keywords for t in rebuilt.topics] == [t.keywords for t in result.topics]  # the same words


def test_library_items_at_both_levels(services: AppServices) -> None:
    chunks = library_items(services.store, "chunks")
    docs = library_items(services.store, "documents")
    assert len(chunks.ids) == services.store.counts()["embedded"]
    assert len(docs.ids) == services.store.counts()["documents"]
    assert np.allclose(np.linalg.norm(docs.vectors, axis=1), 1.0, atol=1e-5)
    assert set(chunks.document_of.values()) == set(docs.ids)
    # Words were read at ingest: every chunk has them, and a document's words are its chunks' words.
    assert all(w is not None for w in chunks.words)
    first_doc = docs.ids[0]
    own = [w for c, w in zip(chunks.chunks, chunks.words, strict=True) if c.document_id == first_doc]
    assert docs.words[0] == [word for ws in own for word in ws]


# ---- LLM labels and summary -------------------------------------------------------------------------------
def test_build_with_a_chat_model_labels_topics_and_relabel_keeps_the_map(services: AppServices) -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    model = FakeListChatModel(responses=["台湾夜市与小吃"])  # Simplified drift: the samples are Traditional
    service = TopicService(services.store, services.settings, embedder=services.embedder, chat_model=model)
    built = service.build(TopicParams())
    assert built.label_model == model_name_of(model)
    assert {t.label for t in built.real_topics} == {"臺灣夜市與小吃"}
    assert service.summary(built)["label_model"] == built.label_model
    assert service.load().label_model == built.label_model  # persisted

    service.chat_model = FakeListChatModel(responses=["茶葉"])
    relabelled = service.relabel(built)
    assert {t.label for t in relabelled.real_topics} == {"茶葉"}
    assert relabelled.assignments == built.assignments
    overview = service.overview(relabelled)
    text, notice = service.library_summary(overview)
    assert text == "茶葉" and notice is None

    with pytest.raises(TopicsUnavailable, match="No language model"):
        _service(services).relabel(built)


def model_name_of(model) -> str:
    from services.topic_labels import model_name

    return model_name(model)
