"""The ingestion pipeline as batch functions: a batch of files or records in, records out.

Each stage is a plain function of its inputs (no hidden state, no store until the last one), so the same code
runs in the app (:class:`services.library.Library` calls these), in a thread pool on one machine
(``examples/batch_ingest.py``), or on a cluster with Ray Data ``map_batches`` or Spark ``mapPartitions``
(README, "Scale out with PostgreSQL"). Records are JSON-friendly dicts, so they cross process boundaries
without pickling anything of ours.

    parse_batch(paths, settings)            -> parsed records   {"path", "document": ParsedDocument dict} or
                                                                {"path", "error"}
    chunk_batch(parsed, settings, counter)  -> document records {"document_id", ..., "chunks": [...]}
    embed_batch(documents, embedder)        -> the same records with "vectors" (one list per chunk)
    write_batch(store, documents)           -> IngestResult dicts

Everything is idempotent by content id: a document's id is the hash of its text and a chunk's id the hash of
its document, place and text, so running a batch twice, or two workers writing the same file, stores it once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.config import Settings
from services.errors import DocQAError, EmptyDocument, FileTooLarge, UnsupportedFile
from services.models import ParsedDocument
from services.store import NewChunk
from services.store_api import Store

log = logging.getLogger(__name__)

MIB = 1024 * 1024
TokenCounter = Callable[[str], int]


def content_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def chunk_id(document_id: str, page: int, start: int, text: str) -> str:
    return hashlib.sha256(f"{document_id}|{page}|{start}|{text}".encode()).hexdigest()[:20]


# ---- parse -----------------------------------------------------------------------------------------------
def parse_path(
    path: Path,
    settings: Settings,
    *,
    source: str,
    text_column: str | None = None,
    id_column: str | None = None,
    date_column: str | None = None,
) -> list[ParsedDocument]:
    """Parse one file in the sandboxed parser (time and memory limits). Raises a :class:`DocQAError`."""
    from services.ingest import SUPPORTED_EXTENSIONS, parse_file

    if not path.is_file():
        raise DocQAError(f"{source}: file not found.")
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        kinds = "PDF, DOCX, TXT, Markdown, HTML, CSV, JSON Lines"
        raise UnsupportedFile(
            f"{source}: {path.suffix or 'files without an extension'} files are not supported (supported: {kinds})."
        )
    # MB as Streamlit counts them for server.maxUploadSize (2**20 bytes), so both limits agree.
    size_mb = path.stat().st_size / MIB
    if size_mb > settings.max_file_mb:
        raise FileTooLarge(
            f"{source} is {size_mb:,.1f} MB, over the {settings.max_file_mb} MB limit (DOCQA_MAX_FILE_MB)."
        )
    return parse_file(
        path,
        source_name=source,
        text_column=text_column,
        id_column=id_column,
        date_column=date_column,
        timeout_s=settings.parse_timeout_s,
        memory_mb=settings.parse_memory_mb,
        ocr=settings.ocr == "auto",
    )


def parse_batch(paths: Iterable[str | Path], settings: Settings) -> list[dict[str, Any]]:
    """Parse files: one record per document found (a CSV gives several), or one error record per bad file."""
    from services.library import safe_display_name

    out: list[dict[str, Any]] = []
    for raw in paths:
        path = Path(raw)
        source = safe_display_name(path.name)
        try:
            docs = parse_path(path, settings, source=source)
        except DocQAError as exc:
            out.append({"path": str(path), "source": source, "error": exc.message})
            continue
        except Exception as exc:  # a parser bug must not take the batch down
            log.exception("unexpected failure parsing %s", source)
            out.append({"path": str(path), "source": source, "error": f"{source} could not be read ({exc})."})
            continue
        out.extend({"path": str(path), "source": source, "document": d.to_dict()} for d in docs)
    return out


# ---- chunk -----------------------------------------------------------------------------------------------
def prepare_document(
    doc: ParsedDocument, settings: Settings, count_tokens: TokenCounter, file_path: str | None
) -> dict[str, Any]:
    """A parsed document as a store-ready record: content id, chunks with ids and keyword terms, script.

    Raises :class:`EmptyDocument` when there is no text to index."""
    from services.chunking import chunk_pages
    from services.text_zh import detect_script, keyword_tokens
    from services.topic_keywords import passage_words

    full_text = doc.full_text
    if not full_text.strip():
        pages = ", ".join(str(p) for p in doc.skipped_pages) or "all"
        raise EmptyDocument(f"{doc.source} has no text to index (pages without text: {pages}).")
    document_id = content_id(full_text)
    spans = chunk_pages(doc.pages, count_tokens, settings.chunk_tokens, settings.chunk_overlap_sentences)
    return {
        "document_id": document_id,
        "source": doc.source,
        "kind": doc.kind,
        "title": doc.title or doc.source,
        "file_path": file_path,
        "pages": [[p.number, p.text] for p in doc.pages],
        "chunks": [
            {
                "id": chunk_id(document_id, s.page, s.start, s.text),
                "page": s.page,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": s.tokens,
                "terms": keyword_tokens(s.text),
                "words": passage_words(s.text),
            }
            for s in spans
        ],
        "script": detect_script(full_text[:20000]),
        "warnings": list(doc.warnings),
        "metadata": dict(doc.metadata),
        "doc_date": doc.date,
    }


def chunk_batch(parsed: Sequence[dict[str, Any]], settings: Settings, count_tokens: TokenCounter) -> list[dict]:
    """Parsed records → document records (error records pass through; empty documents become errors)."""
    out: list[dict[str, Any]] = []
    for rec in parsed:
        if "document" not in rec:
            out.append(rec)
            continue
        doc = ParsedDocument.from_dict(rec["document"])
        try:
            out.append(prepare_document(doc, settings, count_tokens, rec.get("file_path") or rec.get("path")))
        except DocQAError as exc:
            out.append({"path": rec.get("path"), "source": doc.source, "error": exc.message})
    return out


# ---- embed -----------------------------------------------------------------------------------------------
def embed_batch(documents: Sequence[dict[str, Any]], embedder: Any, batch_size: int = 32) -> list[dict]:
    """Add ``vectors`` (one float list per chunk) to each document record, embedding in batches across them."""
    texts = [c["text"] for d in documents if "chunks" in d for c in d["chunks"]]
    vectors = np.zeros((0, 0), dtype=np.float32)
    if texts:
        parts = [embedder.encode_passages(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        vectors = np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])
    out, at = [], 0
    for d in documents:
        if "chunks" not in d:
            out.append(d)
            continue
        n = len(d["chunks"])
        out.append({**d, "vectors": vectors[at : at + n].tolist()})
        at += n
    return out


# ---- write -----------------------------------------------------------------------------------------------
def new_chunks(record: dict[str, Any]) -> list[NewChunk]:
    return [NewChunk(**c) for c in record["chunks"]]


def write_document(store: Store, record: dict[str, Any]) -> bool:
    """Store one document record (and its vectors, when it has them). False when it was already there."""
    added = store.add_document(
        document_id=record["document_id"],
        source=record["source"],
        kind=record["kind"],
        title=record["title"],
        file_path=record["file_path"],
        pages=[(int(n), t) for n, t in record["pages"]],
        chunks=new_chunks(record),
        script=record["script"],
        warnings=record["warnings"],
        metadata=record["metadata"],
        doc_date=record["doc_date"],
    )
    if record.get("vectors"):
        # Also for a document that was already there: its chunks that still lack a vector (a worker died
        # between writing and embedding) get them; chunks that have one are left as they are.
        vector_of = dict(zip((c["id"] for c in record["chunks"]), record["vectors"], strict=True))
        stored = [
            (c.vector_id, vector_of[c.id]) for c in store.document_chunks(record["document_id"]) if c.id in vector_of
        ]
        if stored:
            ids = [vid for vid, _ in stored]
            store.set_embeddings(ids, np.asarray([v for _, v in stored], dtype=np.float32))
    return added


def write_batch(store: Store, documents: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write document records; one result per record: added / duplicate / failed (idempotent by content id)."""
    results: list[dict[str, Any]] = []
    for d in documents:
        if "chunks" not in d:
            results.append({"source": d.get("source"), "status": "failed", "message": d.get("error", "")})
            continue
        added = write_document(store, d)
        results.append(
            {
                "source": d["source"],
                "status": "added" if added else "duplicate",
                "document_id": d["document_id"],
                "chunks": len(d["chunks"]),
            }
        )
    store.save_index()
    return results
