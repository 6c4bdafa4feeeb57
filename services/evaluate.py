"""Retrieval, extractive-answer and abstention evaluation on SQuAD-format files (DRCD, CMRC 2018, SQuAD).

Every paragraph (``context``) becomes one document (source ``p{index}``) in a fresh evaluation store; a
question's gold document is its own paragraph. The store is kept in ``data_dir`` with a marker file that
names the dataset (path, content hash, paragraph subset, embedder, chunk size), so later runs on the same
data reuse it instead of re-embedding (about 1,000 DRCD paragraphs take several minutes on 2 cores).
Query vectors are cached in the same folder for the same reason: tuning runs only redo the fusion.

All public functions return JSON-ready dicts (the CLI prints them as is).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.config import Settings
from services.embeddings import OfflineEmbeddings
from services.errors import DocQAError
from services.models import ParsedDocument, ParsedPage
from services.store import LibraryStore, atomic_write_bytes

log = logging.getLogger(__name__)

MARKER_NAME = "eval_dataset.json"
QUERY_CACHE_NAME = "query_vectors"
MARKER_VERSION = 1

Progress = Callable[[str, int, int], None]


# ---- data ------------------------------------------------------------------------------------------------


@dataclass
class EvalQuestion:
    id: str
    question: str
    answers: list[str]
    paragraph: int  # index of its paragraph in the file


@dataclass
class EvalParagraph:
    index: int
    article: int
    context: str
    questions: list[EvalQuestion] = field(default_factory=list)


def load_squad(dataset_path: Path) -> list[EvalParagraph]:
    """Paragraphs with their questions, in file order, from a SQuAD v1 JSON file."""
    from services.text_zh import normalize_text

    path = Path(dataset_path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DocQAError(f"{path.name} could not be read as a SQuAD-format JSON file ({exc}).") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise DocQAError(f"{path.name} is not in SQuAD format (no top-level 'data' list).")
    out: list[EvalParagraph] = []
    for a, article in enumerate(raw["data"]):
        for para in article.get("paragraphs", []):
            index = len(out)
            p = EvalParagraph(index=index, article=a, context=normalize_text(para.get("context", "")))
            for qa in para.get("qas", []):
                answers = [normalize_text(x.get("text", "")) for x in qa.get("answers", []) if x.get("text")]
                p.questions.append(EvalQuestion(str(qa.get("id", "")), qa.get("question", ""), answers, index))
            out.append(p)
    if not out:
        raise DocQAError(f"{path.name} holds no paragraphs.")
    return out


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_script(text: str, script: str | None) -> str:
    """The question as asked in another script: OpenCC t2s ("simplified") or s2twp ("traditional").

    Full OpenCC conversion (phrases included), not the length-preserving character mapping the keyword
    index uses: this simulates a person typing the question in the other script.
    """
    if not script:
        return text

    config = {"simplified": "t2s.json", "traditional": "s2twp.json"}.get(script)
    if config is None:
        raise DocQAError(f"Unknown script {script!r}: use 'simplified' or 'traditional'.")
    return str(_opencc(config).convert(text))


_OPENCC: dict[str, Any] = {}


def _opencc(config: str) -> Any:
    import opencc

    if config not in _OPENCC:
        _OPENCC[config] = opencc.OpenCC(config)
    return _OPENCC[config]


# ---- evaluation store ------------------------------------------------------------------------------------


@dataclass
class EvalStore:
    store: LibraryStore
    settings: Settings
    paragraphs: list[EvalParagraph]  # every paragraph of the file
    doc_ids: dict[int, str]  # paragraph index → document id (ingested paragraphs only)
    reused: bool
    embed_seconds: float


def _default_embedder() -> OfflineEmbeddings:
    from services.embeddings import E5Embeddings

    return E5Embeddings()


def prepare_eval_store(
    dataset_path: Path,
    data_dir: Path,
    *,
    embedder: OfflineEmbeddings,
    settings: Settings | None = None,
    subset: str = "all",
    progress: Progress | None = None,
) -> EvalStore:
    """A store in ``data_dir`` holding the dataset's paragraphs (``subset``: "all", "article-even",
    "paragraph-even"), reused when the marker says it already holds exactly that."""
    from services.library import Library, content_id

    dataset_path = Path(dataset_path).resolve()
    data_dir = Path(data_dir)
    paragraphs = load_squad(dataset_path)
    chosen = [p for p in paragraphs if _in_subset(p, subset)]
    base = settings or Settings()
    settings = base.model_copy(update={"data_dir": data_dir})
    marker = {
        "kind": "docqa-eval-store",
        "version": MARKER_VERSION,
        "dataset": dataset_path.name,
        "sha256": _file_sha256(dataset_path),
        "subset": subset,
        "paragraphs": len(chosen),
        "embedder": embedder.name,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap_sentences": settings.chunk_overlap_sentences,
    }
    marker_path = data_dir / MARKER_NAME
    reused = False
    if marker_path.exists():
        try:
            old = json.loads(marker_path.read_text())
        except ValueError:
            old = {}
        same = {k: old.get(k) for k in marker} == marker
        if not same:
            _wipe_eval_dir(data_dir)
        else:
            reused = bool(old.get("complete"))
    elif data_dir.exists() and any(not c.name.startswith(QUERY_CACHE_NAME) for c in data_dir.iterdir()):
        raise DocQAError(
            f"{data_dir} already holds files that are not an evaluation store; choose an empty folder "
            "(the evaluation builds its own library there)."
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(marker_path, json.dumps({**marker, "complete": False}).encode())
    store = LibraryStore(
        data_dir, embedder.name, embedder.dimension, keyword_postings_budget=settings.keyword_postings_budget
    )
    library = Library(settings, embedder, store)
    docs = [
        ParsedDocument(source=f"p{p.index}", kind="txt", pages=[ParsedPage(1, p.context)], title=f"p{p.index}")
        for p in chosen
    ]
    started = time.monotonic()
    # Cheap when reused: every paragraph is recognised as a duplicate by its content id.
    results = library.ingest_parsed(docs, embed=False)
    _borrow_vectors(store, data_dir, marker)
    library.embed_pending(progress=progress)
    embed_seconds = time.monotonic() - started
    doc_ids: dict[int, str] = {}
    for p, result in zip(chosen, results, strict=True):
        doc_ids[p.index] = result.document_id or content_id(p.context)
    atomic_write_bytes(marker_path, json.dumps({**marker, "complete": True}).encode())
    return EvalStore(store, settings, paragraphs, doc_ids, reused, embed_seconds)


def _borrow_vectors(store: LibraryStore, data_dir: Path, marker: dict[str, Any]) -> int:
    """Copy vectors of identical chunks from sibling evaluation stores of the same file, embedder and
    chunking (e.g. the abstention half-store next to the full one), so they are not embedded again."""
    pending = store.pending_chunks(1_000_000)
    if not pending or not data_dir.parent.exists():
        return 0
    wanted = {text: vid for vid, text in pending}
    same = ("sha256", "embedder", "chunk_tokens", "chunk_overlap_sentences")
    borrowed = 0
    for sibling in sorted(data_dir.parent.iterdir()):
        if sibling == data_dir or not (sibling / MARKER_NAME).is_file() or not wanted:
            continue
        try:
            other = json.loads((sibling / MARKER_NAME).read_text())
        except ValueError:
            continue
        if any(other.get(k) != marker[k] for k in same):
            continue
        import sqlite3

        ids: list[int] = []
        vectors: list[np.ndarray] = []
        with sqlite3.connect(f"file:{sibling / 'library.sqlite3'}?mode=ro", uri=True) as db:
            for text, blob in db.execute("SELECT text, embedding FROM chunks WHERE embedding IS NOT NULL"):
                vid = wanted.pop(text, None)
                if vid is not None:
                    ids.append(vid)
                    vectors.append(np.frombuffer(blob, dtype=np.float32))
        if ids:
            store.set_embeddings(ids, np.stack(vectors))
            borrowed += len(ids)
    if borrowed:
        log.info("reused %d vectors from sibling evaluation stores", borrowed)
    return borrowed


def _in_subset(p: EvalParagraph, subset: str) -> bool:
    if subset == "all":
        return True
    if subset == "article-even":
        return p.article % 2 == 0
    if subset == "paragraph-even":
        return p.index % 2 == 0
    raise DocQAError(f"Unknown subset {subset!r}.")


def _wipe_eval_dir(data_dir: Path) -> None:
    """Empty a folder that our marker says is an evaluation store (never anything else)."""
    log.info("evaluation store %s holds other data; rebuilding it", data_dir)
    for child in data_dir.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


class CachedQueryEncoder:
    """Query vectors cached on disk (``.npy`` without pickle + a JSON list of texts) next to the store."""

    def __init__(self, embedder: OfflineEmbeddings, folder: Path):
        self.embedder = embedder
        self.folder = Path(folder)
        self._vectors: dict[str, np.ndarray] = {}
        self._dirty = False
        texts_path = self.folder / f"{QUERY_CACHE_NAME}.json"
        vectors_path = self.folder / f"{QUERY_CACHE_NAME}.npy"
        if texts_path.exists() and vectors_path.exists():
            try:
                meta = json.loads(texts_path.read_text(encoding="utf-8"))
                matrix = np.load(vectors_path, allow_pickle=False)
                if meta.get("embedder") == embedder.name and len(meta["texts"]) == len(matrix):
                    self._vectors = dict(zip(meta["texts"], matrix, strict=True))
            except (OSError, ValueError, KeyError) as exc:
                log.warning("query vector cache unreadable (%s); starting a new one", exc)

    @property
    def name(self) -> str:
        return self.embedder.name

    def prefetch(self, texts: Sequence[str], batch_size: int = 64, progress: Progress | None = None) -> None:
        """Encode the missing texts in batches (batched encoding is about twice as fast here)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        for start in range(0, len(missing), batch_size):
            batch = missing[start : start + batch_size]
            if len(batch) == 1:
                vectors = [self.embedder.encode_query(batch[0])]
            else:
                vectors = list(self._encode_batch(batch))
            for text, vec in zip(batch, vectors, strict=True):
                self._vectors[text] = np.asarray(vec, dtype=np.float32)
            self._dirty = True
            if progress:
                progress("Encoding questions", min(start + batch_size, len(missing)), len(missing))
            if (start // batch_size) % 10 == 9:
                self.save()  # a long run killed half-way keeps what it did
        self.save()

    def _encode_batch(self, batch: list[str]) -> np.ndarray:
        model = getattr(self.embedder, "_model", None)
        if model is not None and hasattr(model, "query"):
            lock = getattr(self.embedder, "_lock", None)
            if lock is not None:
                with lock:
                    matrix = np.asarray(model.query(batch), dtype=np.float32)
            else:
                matrix = np.asarray(model.query(batch), dtype=np.float32)
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            return matrix / norms
        return np.stack([self.embedder.encode_query(t) for t in batch])

    def encode_query(self, text: str) -> np.ndarray:
        vec = self._vectors.get(text)
        if vec is None:
            vec = np.asarray(self.embedder.encode_query(text), dtype=np.float32)
            self._vectors[text] = vec
            self._dirty = True
        return vec

    def save(self) -> None:
        if not self._dirty:
            return
        texts = list(self._vectors)
        matrix = np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, self.embedder.dimension))
        import io

        buf = io.BytesIO()
        np.save(buf, matrix.astype(np.float32), allow_pickle=False)
        atomic_write_bytes(self.folder / f"{QUERY_CACHE_NAME}.npy", buf.getvalue())
        meta = {"embedder": self.embedder.name, "texts": texts}
        atomic_write_bytes(self.folder / f"{QUERY_CACHE_NAME}.json", json.dumps(meta, ensure_ascii=False).encode())
        self._dirty = False


# ---- retrieval -------------------------------------------------------------------------------------------


def _sample(items: list[Any], limit: int | None) -> list[Any]:
    """An evenly spaced sample (the first N questions would all come from the first few articles)."""
    if limit is None or limit >= len(items):
        return items
    if limit <= 0:
        return []
    picks = np.linspace(0, len(items) - 1, num=limit).round().astype(int)
    return [items[i] for i in dict.fromkeys(picks.tolist())]


def document_ranking(passages: Sequence[Any]) -> list[str]:
    """Documents in the order of their best passage (a paragraph may be split into several chunks)."""
    return list(dict.fromkeys(p.chunk.document_id for p in passages))


def _metrics(ranks: list[int | None], k: int) -> dict[str, float]:
    n = max(len(ranks), 1)
    out = {}
    for cut in sorted({1, 3, 5, 10, k}):
        if cut <= k:
            out[f"hit@{cut}"] = round(sum(1 for r in ranks if r is not None and r <= cut) / n, 4)
    out["mrr"] = round(sum(1.0 / r for r in ranks if r is not None and r <= k) / n, 4)
    return out


def evaluate_retrieval(
    dataset_path: Path,
    data_dir: Path,
    script: str | None = None,
    k: int = 10,
    limit: int | None = None,
    dense_weight: float | None = None,
    embedder: OfflineEmbeddings | None = None,
    *,
    settings: Settings | None = None,
    compare_signals: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """hit@1/@3/@5/@10 and MRR@k of hybrid retrieval over the dataset's paragraphs.

    ``script="simplified"`` asks every question converted to Simplified with OpenCC t2s (the documents
    stay as they are: Traditional DRCD paragraphs, Simplified questions). ``limit`` evaluates an evenly
    spaced sample of that many questions. ``compare_signals`` also reports dense-only and keyword-only.
    """
    from services.retrieval import HybridRetriever
    from services.text_zh import keyword_tokens

    started = time.monotonic()
    embedder = embedder or _default_embedder()
    ev = prepare_eval_store(dataset_path, data_dir, embedder=embedder, settings=settings, progress=progress)
    questions = _sample([q for p in ev.paragraphs for q in p.questions], limit)
    asked = [convert_script(q.question, script) for q in questions]
    encoder = CachedQueryEncoder(embedder, data_dir)
    encoder.prefetch(asked, progress=progress)
    weight = ev.settings.dense_weight if dense_weight is None else dense_weight
    retriever = HybridRetriever(ev.store, encoder, keyword_tokens, dense_weight=weight)
    variants: dict[str, float | None] = {"hybrid": None}
    if compare_signals:
        variants.update({"dense_only": 1.0, "keyword_only": 0.0})
    ranks: dict[str, list[int | None]] = {name: [] for name in variants}
    latencies: list[float] = []
    depth = max(k * 3, 30)  # chunks, so that k distinct documents survive de-duplication
    query_started = time.monotonic()
    for i, (q, text) in enumerate(zip(questions, asked, strict=True)):
        gold = ev.doc_ids.get(q.paragraph)
        for name, w in variants.items():
            t0 = time.perf_counter()
            passages = retriever.search(text, k=depth, dense_weight=w)
            if name == "hybrid":
                latencies.append(time.perf_counter() - t0)
            docs = document_ranking(passages)[:k]
            ranks[name].append(docs.index(gold) + 1 if gold in docs else None)
        if progress and i % 200 == 0:
            progress("Asking questions", i, len(questions))
    encoder.save()
    result: dict[str, Any] = {
        "dataset": Path(dataset_path).name,
        "script": script or "as-is",
        "k": k,
        "n_paragraphs": len(ev.doc_ids),
        "n_chunks": ev.store.counts()["chunks"],
        "n_questions": len(questions),
        "dense_weight": weight,
        **_metrics(ranks["hybrid"], k),
        "query_ms_p50": round(float(np.percentile(latencies, 50)) * 1000, 2) if latencies else None,
        "query_ms_p95": round(float(np.percentile(latencies, 95)) * 1000, 2) if latencies else None,
        "store_reused": ev.reused,
        "seconds": round(time.monotonic() - started, 1),
        "query_seconds": round(time.monotonic() - query_started, 1),
    }
    if compare_signals:
        result["signals"] = {name: _metrics(r, k) for name, r in ranks.items()}
    return result


# ---- extractive answers ----------------------------------------------------------------------------------


def evaluate_extractive(
    dataset_path: Path,
    data_dir: Path,
    limit: int | None = None,
    embedder: OfflineEmbeddings | None = None,
    *,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """How often a gold answer text appears in the no-LLM (extractive) answer, over the whole library.

    Also reported: how often it appears anywhere in the retrieved passages (``retrieval_k`` of them, the
    ceiling for any sentence picker), in the single top passage, and how often the evidence gate
    abstained (an abstention counts as a miss in the containment rate).
    """
    from services.rag import ChatService
    from services.retrieval import HybridRetriever
    from services.text_zh import keyword_tokens

    started = time.monotonic()
    embedder = embedder or _default_embedder()
    ev = prepare_eval_store(dataset_path, data_dir, embedder=embedder, settings=settings, progress=progress)
    questions = _sample([q for p in ev.paragraphs for q in p.questions if q.answers], limit)
    encoder = CachedQueryEncoder(embedder, data_dir)
    encoder.prefetch([q.question for q in questions], progress=progress)
    retriever = HybridRetriever(ev.store, encoder, keyword_tokens, dense_weight=ev.settings.dense_weight)
    service = ChatService(retriever, None, ev.settings)
    in_answer = in_passages = in_top = abstained = 0
    sentences = chars = 0
    for i, q in enumerate(questions):
        answer = service.answer(q.question)
        if answer.abstained:
            abstained += 1
        quoted = " ".join(c.quote for c in answer.citations)
        if any(a in answer.text or a in quoted for a in q.answers):
            in_answer += 1
        texts = [p.chunk.text for p in answer.passages]
        if any(a in t for a in q.answers for t in texts):
            in_passages += 1
        if texts and any(a in texts[0] for a in q.answers):
            in_top += 1
        sentences += sum(len(c.spans) for c in answer.citations)
        chars += len(answer.text)
        if progress and i % 200 == 0:
            progress("Answering questions", i, len(questions))
    encoder.save()
    n = max(len(questions), 1)
    return {
        "dataset": Path(dataset_path).name,
        "n_questions": len(questions),
        "answer_in_extractive_answer": round(in_answer / n, 4),
        "answer_in_retrieved_passages": round(in_passages / n, 4),
        "answer_in_top_passage": round(in_top / n, 4),
        "abstained": round(abstained / n, 4),
        "answer_in_extractive_answer_when_answered": round(in_answer / max(n - abstained, 1), 4),
        "mean_sentences": round(sentences / n, 2),
        "mean_answer_chars": round(chars / n, 1),
        "seconds": round(time.monotonic() - started, 1),
    }


# ---- abstention ------------------------------------------------------------------------------------------


def evaluate_abstention(
    dataset_path: Path,
    data_dir: Path,
    split: str = "article",
    limit: int | None = None,
    embedder: OfflineEmbeddings | None = None,
    *,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Ingest half of the dataset, then ask questions of both halves (no LLM: the retrieval gate decides).

    ``split="article"`` (default) ingests the paragraphs of every other article, so an unanswerable
    question is about a topic the library does not hold; ``split="paragraph"`` ingests every other
    paragraph, so the library holds the neighbouring paragraphs of the same article (much harder: the
    topic is there, only the fact is missing). Reports the answered rate for questions whose paragraph
    is ingested and the declined rate for the others.
    """
    from services.rag import ChatService
    from services.retrieval import HybridRetriever
    from services.text_zh import keyword_tokens

    subset = {"article": "article-even", "paragraph": "paragraph-even"}.get(split)
    if subset is None:
        raise DocQAError(f"Unknown split {split!r}: use 'article' or 'paragraph'.")
    started = time.monotonic()
    embedder = embedder or _default_embedder()
    ev = prepare_eval_store(
        dataset_path, data_dir, embedder=embedder, settings=settings, subset=subset, progress=progress
    )
    inside = _sample([q for p in ev.paragraphs if p.index in ev.doc_ids for q in p.questions], limit)
    outside = _sample([q for p in ev.paragraphs if p.index not in ev.doc_ids for q in p.questions], limit)
    encoder = CachedQueryEncoder(embedder, data_dir)
    encoder.prefetch([q.question for q in inside + outside], progress=progress)
    retriever = HybridRetriever(ev.store, encoder, keyword_tokens, dense_weight=ev.settings.dense_weight)
    service = ChatService(retriever, None, ev.settings)
    answered_in = sum(1 for q in inside if not service.answer(q.question).abstained)
    declined_out = sum(1 for q in outside if service.answer(q.question).abstained)
    encoder.save()
    return {
        "dataset": Path(dataset_path).name,
        "split": split,
        "n_ingested_paragraphs": len(ev.doc_ids),
        "n_questions_ingested": len(inside),
        "n_questions_not_ingested": len(outside),
        "answered_when_ingested": round(answered_in / max(len(inside), 1), 4),
        "declined_when_not_ingested": round(declined_out / max(len(outside), 1), 4),
        "seconds": round(time.monotonic() - started, 1),
    }
