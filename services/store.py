"""The local library store: SQLite (documents, pages, chunks, embeddings, keyword index, manifest) + FAISS.

SQLite is the source of truth; the FAISS file is derived and rebuilt from the embeddings kept in SQLite
whenever it is missing, corrupt or stale. Writes take a cross-process file lock (one writer at a time) and
run in SQLite transactions, so a process killed mid-ingest leaves either nothing or a document whose
remaining chunks are embedded on the next start. No pickle: FAISS's own format, SQLite, JSON.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from services.errors import DocumentNotFound, EmbeddingModelMismatch, StorageFull
from services.keyword_budget import DEFAULT_POSTINGS_BUDGET, DocumentFrequencyCache, terms_within_budget
from services.vector_index import (
    CANDIDATE_FACTOR,
    DEFAULT_APPROXIMATE_FROM,
    TRAINING_SAMPLE,
    compressed_index,
    exact_index,
    is_approximate,
    wants_compressed,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    file_path TEXT,
    pages INTEGER NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    script TEXT NOT NULL DEFAULT 'unknown',
    status TEXT NOT NULL,
    error TEXT,
    warnings TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}',
    doc_date TEXT,
    added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pages (
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (document_id, number)
);
CREATE TABLE IF NOT EXISTS chunks (
    vector_id INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    page INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    text TEXT NOT NULL,
    tokens INTEGER NOT NULL DEFAULT 0,
    embedding BLOB,
    words TEXT  -- the passage's possible topic keywords, space-separated (NULL: not read yet)
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
CREATE INDEX IF NOT EXISTS chunks_pending ON chunks(vector_id) WHERE embedding IS NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms USING fts5(terms, tokenize = 'unicode61 remove_diacritics 0');
"""


@dataclass
class DocumentRecord:
    id: str
    source: str
    kind: str
    title: str
    file_path: str | None
    pages: int
    chunks: int
    script: str
    status: str  # "embedding" (keyword-searchable, vectors pending) | "ready" | "failed"
    error: str | None
    warnings: list[str]
    metadata: dict[str, Any]
    doc_date: str | None
    added_at: str
    embedded: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ChunkRecord:
    vector_id: int
    id: str
    document_id: str
    source: str
    title: str
    ordinal: int
    page: int
    start: int
    end: int
    text: str
    words: list[str] | None = None  # possible topic keywords (filled by iter_embeddings), None: not stored


def split_words(stored: str | None) -> list[str] | None:
    """A chunk's stored topic words (space-separated) as a list; None when they were never stored."""
    if stored is None:
        return None
    return stored.split(" ") if stored else []


def join_words(words: Sequence[str] | None) -> str | None:
    return None if words is None else " ".join(words)


def stored_words_sql(db: sqlite3.Connection, alias: str = "") -> str:
    """The chunks' topic-words column for a SELECT, or NULL in a library made before it existed (read-only
    readers cannot add it)."""
    has = any(r[1] == "words" for r in db.execute("PRAGMA table_info(chunks)"))
    return f"{alias}words" if has else "NULL"


@dataclass
class NewChunk:
    id: str
    page: int
    start: int
    end: int
    text: str
    tokens: int
    terms: list[str] = field(default_factory=list)
    # Possible topic keywords, read once at ingest (segmenting Chinese is the slowest step of a topic build).
    words: list[str] | None = None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC from the OS, or SQLite's SQLITE_FULL ("database or disk is full")."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()


def date_range_where(start: str | None, end: str | None, mark: str) -> tuple[str, list[str]]:
    """SQL condition (with ``mark`` as the placeholder) for a document's date, else the day it was added,
    lying in [start, end] (ISO dates, inclusive; either may be None), and its arguments. Both backends use it."""
    clauses, args = [], []
    if start:
        clauses.append(f"substr(COALESCE(doc_date, added_at), 1, 10) >= {mark}")
        args.append(start[:10])
    if end:
        clauses.append(f"substr(COALESCE(doc_date, added_at), 1, 10) <= {mark}")
        args.append(end[:10])
    return " AND ".join(clauses) or "1 = 1", args


def fts_query(terms: Iterable[str]) -> str:
    """An FTS5 OR-query of quoted terms (quotes inside terms are doubled, so nothing is FTS syntax)."""
    unique = dict.fromkeys(t for t in terms if t.strip())
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in unique)


class LibraryStore:
    """One library on local disk. Thread-safe; safe against other processes through a file lock."""

    def __init__(
        self,
        data_dir: Path,
        embedder_name: str,
        dimension: int,
        *,
        lock_timeout_s: float = 120,
        keyword_postings_budget: int = DEFAULT_POSTINGS_BUDGET,
        approximate_index_from: int = DEFAULT_APPROXIMATE_FROM,
    ):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.embedder_name = embedder_name
        self.dimension = dimension
        self.db_path = self.data_dir / "library.sqlite3"
        self.faiss_path = self.data_dir / "vectors.faiss"
        self.faiss_meta_path = self.data_dir / "vectors.faiss.json"
        self._file_lock = FileLock(str(self.data_dir / "write.lock"), timeout=lock_timeout_s)
        self._lock = threading.RLock()
        self._local = threading.local()
        self._index: Any = None
        self._index_version = -1
        self.notices: list[str] = []  # messages for the user about repairs made on open
        self.keyword_postings_budget = keyword_postings_budget
        self.approximate_index_from = approximate_index_from
        self._df_cache = DocumentFrequencyCache()
        with self._lock, self._file_lock:
            self._connect().executescript(_SCHEMA)  # executescript commits on its own
            self._add_missing_columns()
        with self.writing() as db:
            self._check_manifest(db)

    def _add_missing_columns(self) -> None:
        """Libraries made before a column existed get it (empty), so they open without a rebuild."""
        db = self._connect()
        if stored_words_sql(db) == "NULL":
            db.execute("ALTER TABLE chunks ADD COLUMN words TEXT")

    # ---- connections and locking -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.db_path, timeout=60, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One writer at a time across threads and processes; the block is one transaction.

        A full disk (SQLITE_FULL, ENOSPC) rolls the transaction back and raises :class:`StorageFull`.
        """
        with self._lock, self._file_lock:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:  # SQLite may already have rolled back on its own (SQLITE_FULL)
                        db.execute("ROLLBACK")
                    raise
                else:
                    db.execute("COMMIT")
            except (sqlite3.OperationalError, OSError) as exc:
                if not is_disk_full(exc):
                    raise
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise StorageFull(
                    f"The disk holding the library ({self.data_dir}) is full, so nothing was saved. "
                    "Free some space and try again."
                ) from exc

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The writer lock without a transaction (re-entrant): for file work that must not interleave with
        other writers, such as keeping or removing an original together with the rows that refer to it."""
        with self._lock, self._file_lock:
            yield

    def _read(self) -> sqlite3.Connection:
        return self._connect()

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # ---- manifest ----------------------------------------------------------------------------------------
    def _check_manifest(self, db: sqlite3.Connection) -> None:
        rows = dict(db.execute("SELECT key, value FROM manifest").fetchall())
        if not rows:
            db.executemany(
                "INSERT INTO manifest(key, value) VALUES (?, ?)",
                [
                    ("schema_version", SCHEMA_VERSION),
                    ("embedding_model", self.embedder_name),
                    ("embedding_dimension", str(self.dimension)),
                    ("vectors_version", "0"),
                    ("created_at", _now()),
                ],
            )
            return
        model, dim = rows.get("embedding_model"), rows.get("embedding_dimension")
        if model != self.embedder_name or dim != str(self.dimension):
            raise EmbeddingModelMismatch(
                f"This library was indexed with the embedding model {model} ({dim} dimensions), but the app is "
                f"set to {self.embedder_name} ({self.dimension}). Re-index the library with the new model "
                "(Library page → Re-index, or `python cli.py reindex`), or switch DOCQA_EMBEDDER back."
            )

    def manifest(self) -> dict[str, str]:
        return dict(self._read().execute("SELECT key, value FROM manifest").fetchall())

    def _vectors_version(self) -> int:
        row = self._read().execute("SELECT value FROM manifest WHERE key='vectors_version'").fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _bump_vectors_version(db: sqlite3.Connection) -> int:
        db.execute("UPDATE manifest SET value = CAST(value AS INTEGER) + 1 WHERE key='vectors_version'")
        return int(db.execute("SELECT value FROM manifest WHERE key='vectors_version'").fetchone()[0])

    @classmethod
    def reset_embedding_model(cls, data_dir: Path, embedder_name: str, dimension: int) -> None:
        """Forget every stored vector and record a new model: the library keeps its text and is re-embedded."""
        db_path = Path(data_dir) / "library.sqlite3"
        lock = FileLock(str(Path(data_dir) / "write.lock"), timeout=120)
        with lock, sqlite3.connect(db_path, isolation_level=None) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE chunks SET embedding = NULL")
            db.execute("UPDATE documents SET status='embedding' WHERE status='ready'")
            db.execute("UPDATE manifest SET value=? WHERE key='embedding_model'", (embedder_name,))
            db.execute("UPDATE manifest SET value=? WHERE key='embedding_dimension'", (str(dimension),))
            db.execute("UPDATE manifest SET value = CAST(value AS INTEGER) + 1 WHERE key='vectors_version'")
            db.execute("COMMIT")
        for name in ("vectors.faiss", "vectors.faiss.json"):
            (Path(data_dir) / name).unlink(missing_ok=True)

    # ---- documents ---------------------------------------------------------------------------------------
    def has_document(self, document_id: str) -> DocumentRecord | None:
        try:
            return self.get_document(document_id)
        except DocumentNotFound:
            return None

    def add_document(
        self,
        *,
        document_id: str,
        source: str,
        kind: str,
        title: str,
        file_path: str | None,
        pages: Sequence[tuple[int, str]],
        chunks: Sequence[NewChunk],
        script: str,
        warnings: Sequence[str] = (),
        metadata: dict[str, Any] | None = None,
        doc_date: str | None = None,
    ) -> bool:
        """Insert a parsed document with its pages, chunks and keyword terms in one transaction.

        Returns False (and changes nothing) when a document with the same content id already exists and did
        not fail; a failed one is replaced, so a retry works.
        """
        with self.writing() as db:
            row = db.execute("SELECT status FROM documents WHERE id=?", (document_id,)).fetchone()
            if row is not None:
                if row["status"] != "failed":
                    return False
                self._delete_rows(db, document_id)
            db.execute(
                "INSERT INTO documents(id, source, kind, title, file_path, pages, chunks, script, status, warnings,"
                " metadata, doc_date, added_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    document_id,
                    source,
                    kind,
                    title,
                    file_path,
                    len(pages),
                    len(chunks),
                    script,
                    "embedding" if chunks else "ready",
                    json.dumps(list(warnings), ensure_ascii=False),
                    json.dumps(metadata or {}, ensure_ascii=False, default=str),
                    doc_date,
                    _now(),
                ),
            )
            db.executemany(
                "INSERT INTO pages(document_id, number, text) VALUES (?,?,?)",
                [(document_id, n, t) for n, t in pages],
            )
            for ordinal, chunk in enumerate(chunks):
                cur = db.execute(
                    "INSERT OR IGNORE INTO chunks(id, document_id, ordinal, page, start, end, text, tokens, words)"
                    " VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        chunk.id,
                        document_id,
                        ordinal,
                        chunk.page,
                        chunk.start,
                        chunk.end,
                        chunk.text,
                        chunk.tokens,
                        join_words(chunk.words),
                    ),
                )
                if cur.rowcount:
                    db.execute(
                        "INSERT INTO chunk_terms(rowid, terms) VALUES (?, ?)", (cur.lastrowid, " ".join(chunk.terms))
                    )
            actual = db.execute("SELECT COUNT(*) FROM chunks WHERE document_id=?", (document_id,)).fetchone()[0]
            db.execute("UPDATE documents SET chunks=? WHERE id=?", (actual, document_id))
        return True

    def _delete_rows(self, db: sqlite3.Connection, document_id: str) -> list[int]:
        ids = [r[0] for r in db.execute("SELECT vector_id FROM chunks WHERE document_id=?", (document_id,))]
        db.executemany("DELETE FROM chunk_terms WHERE rowid=?", [(i,) for i in ids])
        db.execute("DELETE FROM chunks WHERE document_id=?", (document_id,))
        db.execute("DELETE FROM pages WHERE document_id=?", (document_id,))
        db.execute("DELETE FROM documents WHERE id=?", (document_id,))
        return ids

    def delete_document(self, document_id: str) -> DocumentRecord:
        """Remove a document, its chunks, terms and vectors. Search stops returning it at once."""
        record = self.get_document(document_id)
        with self.writing() as db:
            ids = self._delete_rows(db, document_id)
            version = self._bump_vectors_version(db)
            # Patch the in-memory index only if it was current: if another process changed the vectors since,
            # it is stale and gets reloaded; patching it would mark it current while it misses their changes.
            if self._index is not None and self._index_version == version - 1:
                if ids:
                    self._index.remove_ids(np.asarray(ids, dtype=np.int64))
                self._index_version = version
        self._save_index_quietly()
        return record

    def mark_failed(self, document_id: str, error: str) -> None:
        with self.writing() as db:
            db.execute("UPDATE documents SET status='failed', error=? WHERE id=?", (error, document_id))

    def _record(self, row: sqlite3.Row) -> DocumentRecord:
        data = dict(row)
        data["warnings"] = json.loads(data["warnings"] or "[]")
        data["metadata"] = json.loads(data["metadata"] or "{}")
        return DocumentRecord(**data)

    _DOC_COLUMNS = (
        "d.id, d.source, d.kind, d.title, d.file_path, d.pages, d.chunks, d.script, d.status, d.error, d.warnings,"
        " d.metadata, d.doc_date, d.added_at,"
        " (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id AND c.embedding IS NOT NULL) AS embedded"
    )

    def get_document(self, document_id: str) -> DocumentRecord:
        row = (
            self._read().execute(f"SELECT {self._DOC_COLUMNS} FROM documents d WHERE d.id=?", (document_id,)).fetchone()
        )
        if row is None:
            raise DocumentNotFound(f"No document with id {document_id} in the library.")
        return self._record(row)

    def list_documents(self) -> list[DocumentRecord]:
        rows = self._read().execute(f"SELECT {self._DOC_COLUMNS} FROM documents d ORDER BY d.added_at, d.source")
        return [self._record(r) for r in rows]

    def document_ids_between(self, start: str | None, end: str | None) -> list[str]:
        """Documents whose date (row date, else the day added) lies in [start, end] (ISO dates, inclusive)."""
        where, args = date_range_where(start, end, "?")
        return [r[0] for r in self._read().execute(f"SELECT id FROM documents WHERE {where}", args)]

    def pages_of(self, document_id: str) -> list[tuple[int, str]]:
        rows = self._read().execute(
            "SELECT number, text FROM pages WHERE document_id=? ORDER BY number", (document_id,)
        )
        return [(r[0], r[1]) for r in rows]

    def page_text(self, document_id: str, page: int) -> str:
        row = (
            self._read()
            .execute("SELECT text FROM pages WHERE document_id=? AND number=?", (document_id, page))
            .fetchone()
        )
        return row[0] if row else ""

    def counts(self) -> dict[str, int]:
        db = self._read()
        return {
            "documents": db.execute("SELECT COUNT(*) FROM documents").fetchone()[0],
            "chunks": db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0],
            "embedded": db.execute("SELECT COUNT(*) FROM chunks WHERE embedding IS NOT NULL").fetchone()[0],
            "terms": db.execute("SELECT COUNT(*) FROM chunk_terms").fetchone()[0],
        }

    # ---- chunks ------------------------------------------------------------------------------------------
    _CHUNK_COLUMNS = "c.vector_id, c.id, c.document_id, d.source, d.title, c.ordinal, c.page, c.start, c.end, c.text"

    def get_chunks(self, vector_ids: Sequence[int]) -> list[ChunkRecord]:
        """Chunks by vector id, in the order asked; ids of deleted chunks are silently dropped."""
        if not vector_ids:
            return []
        found: dict[int, ChunkRecord] = {}
        db = self._read()
        ids = list(vector_ids)
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            for row in db.execute(
                f"SELECT {self._CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id"
                f" WHERE c.vector_id IN ({marks})",
                part,
            ):
                found[row[0]] = ChunkRecord(*row)
        return [found[i] for i in ids if i in found]

    def document_chunks(self, document_id: str) -> list[ChunkRecord]:
        rows = self._read().execute(
            f"SELECT {self._CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE c.document_id=? ORDER BY c.ordinal",
            (document_id,),
        )
        return [ChunkRecord(*r) for r in rows]

    def vector_ids_of(self, document_ids: Sequence[str]) -> np.ndarray:
        if not document_ids:
            return np.zeros(0, dtype=np.int64)
        db = self._read()
        out: list[int] = []
        docs = list(document_ids)
        for start in range(0, len(docs), 500):
            part = docs[start : start + 500]
            marks = ",".join("?" * len(part))
            out.extend(r[0] for r in db.execute(f"SELECT vector_id FROM chunks WHERE document_id IN ({marks})", part))
        return np.asarray(out, dtype=np.int64)

    def pending_chunks(self, limit: int) -> list[tuple[int, str]]:
        rows = self._read().execute(
            "SELECT vector_id, text FROM chunks WHERE embedding IS NULL ORDER BY vector_id LIMIT ?", (limit,)
        )
        return [(r[0], r[1]) for r in rows]

    def pending_count(self) -> int:
        return self._read().execute("SELECT COUNT(*) FROM chunks WHERE embedding IS NULL").fetchone()[0]

    def set_chunk_words(self, words: dict[str, Sequence[str]]) -> None:
        """Store the topic words of chunks read after ingest (libraries made before words were stored);
        chunks deleted meanwhile are skipped."""
        with self.writing() as db:
            db.executemany("UPDATE chunks SET words=? WHERE id=?", [(join_words(w), cid) for cid, w in words.items()])

    def set_embeddings(self, vector_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Store vectors for chunks (skipping chunks deleted meanwhile) and mark finished documents ready."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(vector_ids), self.dimension):
            raise ValueError(f"expected {len(vector_ids)} vectors of {self.dimension} dims, got {vectors.shape}")
        with self.writing() as db:
            stored: list[int] = []
            for vid, vec in zip(vector_ids, vectors, strict=True):
                cur = db.execute(
                    "UPDATE chunks SET embedding=? WHERE vector_id=? AND embedding IS NULL", (vec.tobytes(), int(vid))
                )
                if cur.rowcount:
                    stored.append(int(vid))
            db.execute(
                "UPDATE documents SET status='ready' WHERE status='embedding' AND NOT EXISTS"
                " (SELECT 1 FROM chunks c WHERE c.document_id = documents.id AND c.embedding IS NULL)"
            )
            version = self._bump_vectors_version(db)
            if self._index is not None and self._index_version == version - 1:
                if stored:
                    kept = set(stored)
                    keep = [i for i, vid in enumerate(vector_ids) if int(vid) in kept]
                    self._index.add_with_ids(vectors[keep], np.asarray(stored, dtype=np.int64))
                self._index_version = version
                if wants_compressed(self._index.ntotal, self.approximate_index_from) and not is_approximate(
                    self._index
                ):
                    self._index = None  # grown past the exact index's size: rebuilt compressed on next use

    def iter_embeddings(self, document_ids: Sequence[str] | None = None) -> tuple[list[ChunkRecord], np.ndarray]:
        """All embedded chunks (optionally of some documents) with their vectors, for topics."""
        db = self._read()
        where = "c.embedding IS NOT NULL"
        args: list[Any] = []
        if document_ids is not None:
            marks = ",".join("?" * len(document_ids)) or "NULL"
            where += f" AND c.document_id IN ({marks})"
            args = list(document_ids)
        rows = db.execute(
            f"SELECT {self._CHUNK_COLUMNS}, c.embedding, c.words FROM chunks c JOIN documents d ON d.id = c.document_id"
            f" WHERE {where} ORDER BY c.vector_id",
            args,
        ).fetchall()
        chunks = [ChunkRecord(*r[:10], words=split_words(r[11])) for r in rows]
        vectors = np.zeros((len(rows), self.dimension), dtype=np.float32)
        for i, r in enumerate(rows):
            vectors[i] = np.frombuffer(r[10], dtype=np.float32)
        return chunks, vectors

    # ---- FAISS -------------------------------------------------------------------------------------------
    def _ensure_index(self) -> Any:
        """The in-memory FAISS index, (re)loaded when another process changed the vectors."""
        version = self._vectors_version()
        with self._lock:
            if self._index is not None and self._index_version == version:
                return self._index
            # Under the writers' lock: the version, the index file and its description are then read as one
            # state (writers change all three under it), not halfway through another process's save.
            with self._file_lock:
                version = self._vectors_version()
                self._index = self._load_or_rebuild(version)
                self._index_version = version
            return self._index

    def _load_or_rebuild(self, version: int) -> Any:
        import faiss

        # One question at a time: FAISS's OpenMP threads only add overhead to a single-query scan (measured at
        # 100k: 10.4 ms on one thread vs 16.7 ms on two; equal at 1M), and they took the core the keyword
        # signal runs on beside it (hybrid p50 25 ms vs 34 ms).
        faiss.omp_set_num_threads(1)

        # Only real damage is worth telling the user about. A file that is merely behind (this process wrote
        # vectors before it ever loaded the index, or another process did) or was never written (a new library)
        # is rebuilt silently: nothing was wrong. A damaged one, or an index file deleted while its metadata
        # remains, gets a notice.
        damaged = ""
        has_file, has_meta = self.faiss_path.exists(), self.faiss_meta_path.exists()
        if has_file and has_meta:
            try:
                meta = json.loads(self.faiss_meta_path.read_text())
                if meta.get("version") == version and meta.get("model") == self.embedder_name:
                    index = faiss.read_index(str(self.faiss_path))
                    if index.ntotal != meta.get("count") or index.d != self.dimension:
                        damaged = "its size does not match the library"
                    elif is_approximate(index) == wants_compressed(index.ntotal, self.approximate_index_from):
                        return index
                    # else the library crossed the size where the index kind changes: rebuilt below, silently
            except Exception as exc:  # a corrupt file is rebuilt below
                damaged = "it could not be read"
                log.warning("vector index unreadable (%s); rebuilding from the library database", exc)
        elif has_meta:
            damaged = "its file was missing"
        elif has_file:
            damaged = "its description file was missing"
        index = self._rebuild(version)
        embedded = index.ntotal
        if damaged and embedded:
            log.warning("vector index rebuilt: %s", damaged)
            self.notices.append(
                f"The vector index was damaged ({damaged}) and was rebuilt from the library ({embedded} vectors); "
                "search works as before."
            )
        return index

    def _rebuild(self, version: int) -> Any:
        db = self._read()
        count = db.execute("SELECT COUNT(*) FROM chunks WHERE embedding IS NOT NULL").fetchone()[0]
        if wants_compressed(count, self.approximate_index_from):
            step = max(count // TRAINING_SAMPLE, 1)
            sample = [
                r[0]
                for r in db.execute(
                    "SELECT embedding FROM chunks WHERE embedding IS NOT NULL AND vector_id % ? = 0 LIMIT ?",
                    (step, TRAINING_SAMPLE),
                )
            ]
            training = np.frombuffer(b"".join(sample), dtype=np.float32).reshape(-1, self.dimension)
            index = compressed_index(self.dimension, training)
        else:
            index = exact_index(self.dimension)
        batch_ids: list[int] = []
        batch_vecs: list[bytes] = []
        for vid, blob in db.execute("SELECT vector_id, embedding FROM chunks WHERE embedding IS NOT NULL"):
            batch_ids.append(vid)
            batch_vecs.append(blob)
            if len(batch_ids) >= 10000:
                self._add_blobs(index, batch_ids, batch_vecs)
                batch_ids, batch_vecs = [], []
        if batch_ids:
            self._add_blobs(index, batch_ids, batch_vecs)
        self._write_index(index, version)
        return index

    def _add_blobs(self, index: Any, ids: list[int], blobs: list[bytes]) -> None:
        matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), self.dimension)
        index.add_with_ids(matrix, np.asarray(ids, dtype=np.int64))

    def _write_index(self, index: Any, version: int) -> None:
        import faiss

        try:
            data = faiss.serialize_index(index).tobytes()
            meta = {"version": version, "count": int(index.ntotal), "model": self.embedder_name}
            # The index file and its description are a pair: under the file lock, so that two processes saving
            # at once cannot leave one's index next to the other's description (which reads as damage).
            with self._file_lock:
                atomic_write_bytes(self.faiss_path, data)
                atomic_write_bytes(self.faiss_meta_path, json.dumps(meta).encode())
        except OSError as exc:  # disk full: the index lives on in memory and is rebuilt next start
            log.error("could not save the vector index: %s", exc)

    def open_index(self) -> None:
        """Load the vector index now (rebuilding it if damaged), so that a repair notice is ready for the first
        page instead of appearing after the first search."""
        self._ensure_index()

    def save_index(self) -> None:
        """Persist the in-memory index (called after an ingest batch finishes and after deletes)."""
        self._ensure_index()  # brings the in-memory index up to the current version first
        with self._lock:
            if self._index is not None and self._read_meta_version() != self._index_version:
                self._write_index(self._index, self._index_version)

    def _read_meta_version(self) -> int | None:
        try:
            return json.loads(self.faiss_meta_path.read_text()).get("version")
        except (OSError, ValueError):
            return None

    def _save_index_quietly(self) -> None:
        try:
            self.save_index()
        except Exception as exc:
            log.error("saving the vector index failed: %s", exc)

    def dense_search(
        self, query: np.ndarray, k: int, document_ids: Sequence[str] | None = None
    ) -> list[tuple[int, float]]:
        import faiss

        index = self._ensure_index()
        if index.ntotal == 0:
            return []
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        params = None
        if document_ids is not None:
            allowed = self.vector_ids_of(document_ids)
            if allowed.size == 0:
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        with self._lock:
            # ntotal again under the lock: another thread may have deleted the last vectors meanwhile.
            if index.ntotal == 0 or k <= 0:
                return []
            approximate = is_approximate(index)
            wanted = k * CANDIDATE_FACTOR if approximate else k
            scores, ids = index.search(q, min(wanted, index.ntotal), params=params)
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        return self._rescore_exactly(q[0], found)[:k] if approximate else found

    def _rescore_exactly(self, query: np.ndarray, candidates: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """True cosines of a compressed index's candidates, from the float vectors kept in SQLite."""
        if not candidates:
            return []
        ids = [vid for vid, _ in candidates]
        marks = ",".join("?" * len(ids))
        rows = (
            self._read()
            .execute(
                f"SELECT vector_id, embedding FROM chunks WHERE embedding IS NOT NULL AND vector_id IN ({marks})", ids
            )
            .fetchall()
        )
        if not rows:
            return []
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dimension)
        scores = matrix @ query
        return sorted(
            ((int(r[0]), float(s)) for r, s in zip(rows, scores, strict=True)), key=lambda item: (-item[1], item[0])
        )

    def keyword_search(
        self, terms: Sequence[str], k: int, document_ids: Sequence[str] | None = None
    ) -> list[tuple[int, float]]:
        """BM25 (SQLite FTS5, k1=1.2, b=0.75) over the segmented terms; higher score is better. On a large
        library a question's most common terms are left out (see services.keyword_budget)."""
        query = fts_query(terms_within_budget(terms, self.document_frequencies, self.keyword_postings_budget))
        if not query:
            return []
        db = self._read()
        args: list[Any] = [query]
        sql = "SELECT rowid, -bm25(chunk_terms) AS score FROM chunk_terms WHERE chunk_terms MATCH ?"
        if document_ids is not None:
            if not document_ids:
                return []
            marks = ",".join("?" * len(document_ids))
            sql += f" AND rowid IN (SELECT vector_id FROM chunks WHERE document_id IN ({marks}))"
            args.extend(document_ids)
        sql += " ORDER BY bm25(chunk_terms) LIMIT ?"
        args.append(k)
        try:
            return [(int(r[0]), float(r[1])) for r in db.execute(sql, args)]
        except sqlite3.OperationalError as exc:
            log.warning("keyword query failed (%s): %r", exc, query)
            return []

    def document_frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        """How many passages contain each term (cached while the library's vectors are unchanged)."""
        return self._df_cache.counts(terms, self._vectors_version(), self._count_passages_with)

    def _count_passages_with(self, terms: list[str]) -> dict[str, int]:
        db = self._read()
        # fts5vocab is a view of the keyword index's own term list; TEMP, so nothing is added to the file.
        db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunk_vocab USING fts5vocab(main, chunk_terms, row)")
        counts = {}
        for term in terms:
            row = db.execute("SELECT doc FROM temp.chunk_vocab WHERE term = ?", (term,)).fetchone()
            counts[term] = int(row[0]) if row else 0
        return counts

    def check_consistency(self) -> dict[str, int]:
        """Counts that must agree: chunks vs keyword rows vs FAISS vectors (for tests and `cli.py doctor`)."""
        index = self._ensure_index()
        db = self._read()
        faiss_ids = set()
        if index.ntotal:
            import faiss

            faiss_ids = set(faiss.vector_to_array(index.id_map).tolist())
        embedded_ids = {r[0] for r in db.execute("SELECT vector_id FROM chunks WHERE embedding IS NOT NULL")}
        chunk_ids = {r[0] for r in db.execute("SELECT vector_id FROM chunks")}
        term_ids = {r[0] for r in db.execute("SELECT rowid FROM chunk_terms")}
        return {
            "chunks": len(chunk_ids),
            "embedded": len(embedded_ids),
            "faiss": len(faiss_ids),
            "faiss_not_in_sqlite": len(faiss_ids - embedded_ids),
            "embedded_not_in_faiss": len(embedded_ids - faiss_ids),
            "terms_mismatch": len(term_ids ^ chunk_ids),
            "duplicate_chunks": db.execute(
                "SELECT COUNT(*) FROM (SELECT document_id, page, start, end FROM chunks"
                " GROUP BY document_id, page, start, end HAVING COUNT(*) > 1)"
            ).fetchone()[0],
        }
