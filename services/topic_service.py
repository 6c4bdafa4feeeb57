"""Topics over the user's library: items from the store (documents or chunks with their stored vectors),
the fit, persistence under ``data_dir/topics``, placement of documents added later, and the views the page
and the CLI need (topic documents, overview, export, quality). Never re-embeds library text.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.config import Settings
from services.errors import DocQAError, TopicsUnavailable
from services.store import ChunkRecord
from services.store_api import Store
from services.topics_model import OUTLIER_ID, TopicParams, TopicResult

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
DOCUMENT_TEXT_CHARS = 20_000  # enough words for c-TF-IDF keywords without letting one book dominate


@dataclass
class TopicItems:
    ids: list[str]  # document ids (level documents) or chunk ids (level chunks)
    texts: list[str]
    vectors: np.ndarray
    document_of: dict[str, str]  # item id -> document id
    chunks: list[ChunkRecord]
    words: list[list[str] | None]  # each item's possible keywords as stored at ingest (None: not stored)


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32)


def library_items(store: Store, level: str) -> TopicItems:
    """The library as topic items: whole documents (mean of their chunk vectors) or single chunks."""
    chunks, vectors = store.iter_embeddings()
    return items_of(chunks, vectors, level, store.dimension)


def items_of(chunks: list[ChunkRecord], vectors: np.ndarray, level: str, dimension: int) -> TopicItems:
    """Embedded chunks (rows of ``vectors``) as topic items at ``level`` ("chunks" or "documents")."""
    if level == "chunks":
        return TopicItems(
            ids=[c.id for c in chunks],
            texts=[c.text for c in chunks],
            vectors=vectors,
            document_of={c.id: c.document_id for c in chunks},
            chunks=chunks,
            words=[c.words for c in chunks],
        )
    rows: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(chunks):
        rows[c.document_id].append(i)
    ids = list(rows)
    texts: list[str] = []
    words: list[list[str] | None] = []
    doc_vectors = np.zeros((len(ids), dimension), dtype=np.float32)
    for n, doc_id in enumerate(ids):
        idx = rows[doc_id]
        doc_vectors[n] = vectors[idx].mean(axis=0)
        text: list[str] = []
        doc_words: list[str] | None = []
        used = 0
        for i in idx:
            if used >= DOCUMENT_TEXT_CHARS:
                break
            text.append(chunks[i].text)
            used += len(chunks[i].text)
            stored = chunks[i].words
            doc_words = None if stored is None or doc_words is None else doc_words + stored
        texts.append("\n".join(text))
        words.append(doc_words)
    return TopicItems(
        ids=ids,
        texts=texts,
        vectors=_unit(doc_vectors),
        document_of={d: d for d in ids},
        chunks=chunks,
        words=words,
    )


@dataclass
class MapState:
    """The saved topic map brought up to date with the library (see :meth:`TopicService.refresh`)."""

    result: TopicResult | None
    advice: str | None  # a refit suggestion, or None
    placed: list[str]  # items added after the build, placed into the nearest topic
    removed: list[str]  # items of the saved map no longer in the library


class TopicService:
    """Build, load and edit the library's topic map. One build at a time per library (a lock)."""

    _build_locks: dict[str, threading.Lock] = {}
    _locks_guard = threading.Lock()

    @property
    def _build_lock(self) -> threading.Lock:
        """One build at a time per library folder (shared by every session of this process)."""
        key = str(self.directory.resolve())
        with self._locks_guard:
            return self._build_locks.setdefault(key, threading.Lock())

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        embedder: Any = None,
        labeler: Callable[[list[str], list[str]], str] | None = None,
        chat_model: Any = None,
    ):
        """``chat_model``: a LangChain chat model (``services.llm.make_chat_model``) that writes topic
        labels and the library summary; None (the default, no LLM configured) keeps keyword labels.
        ``labeler``: any ``(keywords, passages) -> label`` callable; it wins over ``chat_model``."""
        self.store = store
        self.settings = settings
        self.embedder = embedder
        self.labeler = labeler
        self.chat_model = chat_model
        self.directory = Path(settings.topics_dir)

    def _labeler_for(self, texts: Sequence[str]) -> Callable[[list[str], list[str]], str] | None:
        if self.labeler is not None:
            return self.labeler
        if self.chat_model is None:
            return None
        from services.topic_labels import LLMTopicLabeler, library_script

        return LLMTopicLabeler(
            self.chat_model, script=library_script(texts[:500]), timeout_s=float(self.settings.llm_timeout_s)
        )

    # ---- build / load ------------------------------------------------------------------------------------
    def build(self, params: TopicParams | None = None, progress: Progress | None = None) -> TopicResult:
        from services.topics import build_topics, resolve_level
        from services.topics_store import save_topics

        params = params or TopicParams()
        if not self._build_lock.acquire(blocking=False):
            raise TopicsUnavailable("A topic build is already running for this library; wait for it to finish.")
        try:
            pending = self.store.pending_count()
            if pending:
                log.info("%d passages are still being embedded; topics use the embedded ones", pending)
            chunks, vectors = self.store.iter_embeddings()
            self._read_missing_words(chunks, progress)
            n_docs = len({c.document_id for c in chunks})
            level = resolve_level(params.level, n_docs, len(chunks))
            items = items_of(chunks, vectors, level, self.store.dimension)
            if not items.ids:
                raise TopicsUnavailable(
                    "The library has no embedded passages yet: add documents (or wait for embedding to finish)."
                )
            params = TopicParams(**{**params.__dict__, "level": level})

            def fit_progress(fraction: float, message: str) -> None:
                if progress:
                    progress(message, int(fraction * 100), 100)

            word_embedder = self.embedder.encode_passages if self.embedder is not None else None
            result = build_topics(
                items.texts,
                items.vectors,
                items.ids,
                params,
                progress=fit_progress,
                labeler=self._labeler_for(items.texts),
                embedder=word_embedder,
                words=items.words,
                fit_sample=self.settings.topic_fit_sample,
            )
            save_topics(result, self.directory)
            return result
        finally:
            self._build_lock.release()

    def _read_missing_words(self, chunks: Sequence[ChunkRecord], progress: Progress | None) -> None:
        """Read and store the topic words of passages ingested before words were stored with them, once:
        later builds (and other app servers) read them from the store."""
        from services.topic_keywords import passage_words

        missing = [c for c in chunks if c.words is None]
        if not missing:
            return
        step = max(1, len(missing) // 50)
        for i, chunk in enumerate(missing):
            if progress and i % step == 0:
                progress(f"Reading the words of older passages ({i + 1:,} of {len(missing):,}, once)", i, len(missing))
            chunk.words = passage_words(chunk.text)
        for start in range(0, len(missing), 5000):
            self.store.set_chunk_words({c.id: c.words or [] for c in missing[start : start + 5000]})

    def load(self) -> TopicResult | None:
        from services.topics_store import load_topics

        return load_topics(self.directory)

    def save(self, result: TopicResult) -> None:
        from services.topics_store import save_topics

        save_topics(result, self.directory)

    def current(self) -> tuple[TopicResult | None, str | None]:
        """The saved map brought up to date with the library: deleted items dropped, new ones placed in the
        nearest topic. Returns (result, a refit suggestion or None)."""
        state = self.refresh()
        return state.result, state.advice

    def refresh(self) -> MapState:
        """Like :meth:`current`, also saying which items were placed into the saved topics and which were
        dropped (the page tells the user; nothing is saved until the next edit or build)."""
        from services.topics import assign_new_items, refit_advised

        result = self.load()
        if result is None:
            return MapState(None, None, [], [])
        items = library_items(self.store, result.params.level)
        present = set(items.ids)
        gone = [i for i in result.assignments if i not in present]
        for item in gone:
            result.assignments.pop(item, None)
            result.probabilities.pop(item, None)
            result.coords.pop(item, None)
        new_idx = [n for n, i in enumerate(items.ids) if i not in result.assignments]
        if new_idx:
            fitted_idx = [n for n, i in enumerate(items.ids) if i in result.assignments]
            # Texts let the placement apply the same per-script offsets as the fit did.
            assign_new_items(
                result,
                [items.ids[n] for n in new_idx],
                items.vectors[new_idx],
                texts=[items.texts[n] for n in new_idx],
                fitted_ids=[items.ids[n] for n in fitted_idx],
                fitted_embeddings=items.vectors[fitted_idx] if fitted_idx else None,
                fitted_texts=[items.texts[n] for n in fitted_idx] if fitted_idx else None,
            )
        if gone:
            sizes = Counter(result.assignments.values())
            for topic in result.topics:
                topic.size = sizes.get(topic.id, 0)
        advice = refit_advised(result, len(new_idx), len(items.ids))
        return MapState(result, advice, [items.ids[n] for n in new_idx], gone)

    # ---- edits (each returns the edited copy and saves it) -----------------------------------------------
    def rename(self, result: TopicResult, topic_id: int, label: str) -> TopicResult:
        from services.topics import rename_topic

        out = rename_topic(result, topic_id, label)
        self.save(out)
        return out

    def merge(self, result: TopicResult, topic_ids: Sequence[int]) -> TopicResult:
        """Merge topics; keywords and representatives are recomputed from the library's items."""
        from services.topics import merge_topics

        items = library_items(self.store, result.params.level)
        out = merge_topics(
            result,
            list(topic_ids),
            item_ids=items.ids,
            texts=items.texts,
            embeddings=items.vectors,
            words=items.words,
        )
        self.save(out)
        return out

    def reduce_outliers(self, result: TopicResult) -> TopicResult:
        """Every outlier joins the topic with the nearest centre (custom labels are kept)."""
        from services.topics import reduce_outliers

        items = library_items(self.store, result.params.level)
        out = reduce_outliers(
            result, item_ids=items.ids, embeddings=items.vectors, texts=items.texts, words=items.words
        )
        self.save(out)
        return out

    def relabel(self, result: TopicResult) -> TopicResult:
        """Label every topic again with the chat model (keywords and representatives stay); topics it
        fails on keep their label. Raises TopicsUnavailable when no model is configured."""
        from services.topic_labels import name_topics
        from services.topics_edit import _copy

        items = library_items(self.store, result.params.level)
        labeler = self._labeler_for(items.texts)
        if labeler is None:
            raise TopicsUnavailable("No language model is configured: topics keep their keyword labels.")
        out = _copy(result)
        by_id = dict(zip(items.ids, items.texts, strict=True))
        ids = list(by_id)
        notices: list[str] = []
        name = name_topics(out.topics, [by_id[i] for i in ids], ids, labeler, lambda _f, _m: None, notices)
        out.label_model = name or out.label_model
        out.warnings = [w for w in out.warnings if not w.startswith("The naming model failed")] + notices
        self.save(out)
        return out

    def library_summary(self, overview: dict[str, Any]) -> tuple[str | None, str | None]:
        """(paragraph, notice): the chat model's summary of ``overview``; (None, None) without a model,
        (None, why) when the model failed (the structural overview stands on its own)."""
        if self.chat_model is None or not overview.get("topics"):
            return None, None
        from services.topic_labels import LabelerUnavailable, library_script, summarize_overview

        examples = [e["text"] for t in overview["topics"] for e in t.get("examples", [])]
        try:
            text = summarize_overview(
                self.chat_model,
                overview,
                script=library_script(examples),
                timeout_s=float(self.settings.llm_timeout_s),
            )
        except LabelerUnavailable as exc:
            return None, f"No summary: {exc}. The overview below is built from the topics alone."
        return text, None

    # ---- views -------------------------------------------------------------------------------------------
    def document_topics(self, result: TopicResult) -> dict[str, int]:
        """Each document's topic: its own at document level, the topic of most of its chunks otherwise."""
        if result.params.level == "documents":
            return dict(result.assignments)
        doc_of = {c.id: c.document_id for c in self.store.iter_embeddings()[0]}
        votes: dict[str, Counter] = defaultdict(Counter)
        for item, topic in result.assignments.items():
            if item in doc_of:
                votes[doc_of[item]][topic] += 1
        out = {}
        for doc, counter in votes.items():
            ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0] == OUTLIER_ID, kv[0]))
            out[doc] = ranked[0][0]
        return out

    def topic_document_ids(self, result: TopicResult, topic_id: int) -> list[str]:
        """Documents to search when chatting about a topic (any document with a passage in the topic)."""
        if result.params.level == "documents":
            return sorted(i for i, t in result.assignments.items() if t == topic_id)
        doc_of = {c.id: c.document_id for c in self.store.iter_embeddings()[0]}
        return sorted({doc_of[i] for i, t in result.assignments.items() if t == topic_id and i in doc_of})

    def representative_passages(
        self, result: TopicResult, topic_id: int, n: int = 3, *, chunks: Sequence[ChunkRecord] | None = None
    ) -> list[ChunkRecord]:
        """The passages closest to the topic's centre. ``chunks``: the library's embedded chunks, when the
        caller already has them (reading them for every topic of a large library is slow)."""
        topic = result.topic(topic_id)
        if chunks is None:
            chunks, _ = self.store.iter_embeddings()
        by_chunk = {c.id: c for c in chunks}
        first_of_doc: dict[str, ChunkRecord] = {}
        for c in chunks:
            first_of_doc.setdefault(c.document_id, c)
        out = []
        for item in topic.representative_ids:
            chunk = by_chunk.get(item) or first_of_doc.get(item)
            if chunk is not None:
                out.append(chunk)
            if len(out) == n:
                break
        return out

    def summary(self, result: TopicResult) -> dict[str, Any]:
        """The CLI's export contract: topics (id, label, keywords, size) and each document's topic."""
        docs = {d.id: d for d in self.store.list_documents()}
        doc_topics = self.document_topics(result)
        return {
            "topics": [
                {"id": t.id, "label": t.label, "keywords": list(t.keywords), "size": t.size} for t in result.topics
            ],
            "documents": [
                {"document": doc_id, "source": docs[doc_id].source if doc_id in docs else "", "topic": topic}
                for doc_id, topic in sorted(doc_topics.items(), key=lambda kv: (kv[1], kv[0]))
                if doc_id in docs
            ],
            "level": result.params.level,
            "label_model": result.label_model,
            "created_at": result.created_at,
            "warnings": list(result.warnings),
        }

    def export(self) -> dict[str, Any]:
        result, _ = self.current()
        if result is None:
            raise TopicsUnavailable("No topic map yet: build topics first (`topics build` or the Topics page).")
        return self.summary(result)

    def quality(self, result: TopicResult) -> dict[str, float]:
        """NPMI coherence and diversity of the keywords over the user's own library."""
        from services.text_zh import display_tokens
        from services.topic_metrics import npmi_coherence, topic_diversity

        items = library_items(self.store, result.params.level)
        tokenized = [display_tokens(t) for t in items.texts]
        keywords = [t.keywords for t in result.real_topics if t.keywords]
        if not keywords:
            return {"npmi": 0.0, "diversity": 0.0}
        return {"npmi": npmi_coherence(keywords, tokenized), "diversity": topic_diversity(keywords)}

    def overview(self, result: TopicResult, examples: int = 2) -> dict[str, Any]:
        """ "What is in my library?": topics by size with labels, keywords and example passages."""
        total = sum(t.size for t in result.topics) or 1
        chunks, _ = self.store.iter_embeddings()
        topics = []
        for t in sorted(result.real_topics, key=lambda t: -t.size):
            topics.append(
                {
                    "id": t.id,
                    "label": t.label,
                    "size": t.size,
                    "share": t.size / total,
                    "keywords": list(t.keywords[:8]),
                    "examples": [
                        {"source": c.source, "page": c.page, "text": c.text[:300]}
                        for c in self.representative_passages(result, t.id, examples, chunks=chunks)
                    ],
                }
            )
        outliers = next((t.size for t in result.topics if t.is_outliers), 0)
        return {"documents": self.store.counts()["documents"], "topics": topics, "unassigned": outliers}


# ---- evaluation on labelled corpora (cli.py eval topics) --------------------------------------------------
def read_labelled(
    path: Path,
    text_field: str,
    label_field: str,
    per_label: int | None = None,
    limit: int | None = None,
    *,
    clean: str | None = None,
    max_chars: int | None = None,
) -> tuple[list[str], list[str]]:
    """Rows of a JSON-lines file (``.jsonl``: fields by name) or of a tab-separated file (any other
    suffix, e.g. THUCNews ``title<TAB>label``): there the fields are 0-based column numbers (``--text-field
    0 --label-field 1``); a field that is not a number means the first column for the text and the last
    for the label.

    ``clean="email"`` strips message headers, quotes and signatures (20 Newsgroups); ``max_chars`` keeps the
    first characters of each text (the evaluation protocol's cap, so a run takes minutes on this CPU)."""
    texts, labels = [], []
    counts: Counter = Counter()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                row = json.loads(line)
                text, label = str(row.get(text_field, "")), str(row.get(label_field, ""))
            else:
                cols = line.split("\t")
                text = cols[int(text_field)] if text_field.isdigit() else cols[0]
                label = cols[int(label_field)] if label_field.isdigit() else cols[-1]
            if clean == "email":
                from services.text_clean import email_body

                text = email_body(text)
            if max_chars:
                text = text[:max_chars]
            if not text.strip() or (per_label and counts[label] >= per_label):
                continue
            counts[label] += 1
            texts.append(text)
            labels.append(label)
            if limit and len(texts) >= limit:
                break
    return texts, labels


def evaluate_topics_file(
    dataset: Path,
    *,
    text_field: str,
    label_field: str,
    per_label: int | None = None,
    limit: int | None = None,
    compare_defaults: bool = False,
    traditional: bool = False,
    data_dir: Path | None = None,
    params: TopicParams | None = None,
    clean: str | None = None,
    max_chars: int | None = None,
) -> dict[str, Any]:
    """Ingest a labelled corpus into a fresh store (one document per row), build topics on the stored
    embeddings exactly as the app does, and score them (NMI, ARI, NPMI, diversity); optionally BERTopic's
    defaults on the same embeddings, scored the same way."""
    from services.app_services import build_services
    from services.config import load_settings
    from services.library import content_id
    from services.models import ParsedDocument, ParsedPage
    from services.text_zh import display_tokens, to_traditional_tw
    from services.topic_metrics import ari, evaluate_bertopic_defaults, nmi, npmi_coherence, topic_diversity

    texts, labels = read_labelled(
        Path(dataset), text_field, label_field, per_label, limit, clean=clean, max_chars=max_chars
    )
    if traditional:
        texts = [to_traditional_tw(t) for t in texts]
    if not texts:
        raise DocQAError(f"No rows with text field {text_field!r} in {dataset}.")
    workdir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="docqa-eval-topics-"))
    services = build_services(load_settings(data_dir=workdir))
    docs = [
        ParsedDocument(source=f"row-{i}", kind="txt", pages=[ParsedPage(1, t)], title=f"row {i}")
        for i, t in enumerate(texts)
    ]
    started = time.perf_counter()
    services.library.ingest_parsed(docs)
    ingest_seconds = time.perf_counter() - started
    label_of: dict[str, str] = {}
    for text, label in zip(texts, labels, strict=True):
        label_of.setdefault(content_id(text.strip() and text), label)
    topic_service = TopicService(services.store, services.settings, embedder=services.embedder)
    started = time.perf_counter()
    result = topic_service.build(params or TopicParams(level="documents"))
    fit_seconds = time.perf_counter() - started
    items = library_items(services.store, "documents")
    known = [i for i in items.ids if i in label_of]
    gold = [label_of[i] for i in known]
    predicted = [result.assignments[i] for i in known]
    by_id = dict(zip(items.ids, items.texts, strict=True))
    tokenized = [display_tokens(by_id[i]) for i in known]
    keywords = [t.keywords for t in result.real_topics if t.keywords]
    report: dict[str, Any] = {
        "dataset": str(dataset),
        "documents": len(known),
        "n_topics": len(result.real_topics),
        "outlier_share": round(sum(p == OUTLIER_ID for p in predicted) / max(len(predicted), 1), 4),
        "nmi": round(nmi(gold, predicted), 4),
        "ari": round(ari(gold, predicted), 4),
        "npmi": round(npmi_coherence(keywords, tokenized), 4),
        "diversity": round(topic_diversity(keywords), 4),
        "fit_seconds": round(fit_seconds, 2),
        "ingest_seconds": round(ingest_seconds, 2),
        "params": {k: v for k, v in result.params.__dict__.items()},
        "topics": [{"id": t.id, "label": t.label, "size": t.size, "keywords": t.keywords[:10]} for t in result.topics],
    }
    if traditional:
        from services.topic_keywords import not_traditional

        shown = [w for t in result.real_topics for w in t.keywords[:10]]
        report["keywords_checked"] = len(set(shown))
        report["keywords_not_traditional"] = not_traditional(shown)
    if compare_defaults:
        vectors = items.vectors[[items.ids.index(i) for i in known]]
        defaults = evaluate_bertopic_defaults([by_id[i] for i in known], gold, vectors, tokenized_docs=tokenized)
        report["bertopic_defaults"] = {
            k: defaults[k] for k in ("nmi", "ari", "npmi", "diversity", "n_topics", "seconds") if k in defaults
        }
    return report


def split_topic_filter(result: TopicResult | None, service: TopicService, topic_ids: Sequence[int]) -> list[str] | None:
    """Document ids for a chat restricted to topics (None when no topic is chosen)."""
    if result is None or not topic_ids:
        return None
    out: set[str] = set()
    for topic_id in topic_ids:
        out.update(service.topic_document_ids(result, topic_id))
    return sorted(out)
