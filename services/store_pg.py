"""The shared library store: PostgreSQL + pgvector, for teams and large libraries (``DOCQA_STORE=pgvector``).

Same interface and the same scores as :class:`services.store.LibraryStore`, so retrieval's fusion and every
page work unchanged:

- documents, pages and chunks are tables; a chunk's embedding is a full-precision ``vector`` column (migration
  back to SQLite is lossless), indexed by an HNSW index over its ``halfvec`` cast (half the memory and build
  time of a ``vector`` index; scores are still computed in full precision from the column);
- the keyword signal is BM25 computed in SQL over a postings table (chunk, term, tf) that holds the same
  Chinese-segmented, script-normalised terms the SQLite store gives FTS5, with FTS5's formula and constants
  (k1=1.2, b=0.75, idf floor 1e-6), so both backends rank alike. PostgreSQL's own text search parsers do not
  segment Chinese and its ts_rank is not BM25;
- every write is one transaction; content ids are unique keys and inserts are ``ON CONFLICT DO NOTHING``, so
  two app servers ingesting the same file store it once, and a delete is visible to every connection as soon
  as it commits (reads run in autocommit, no snapshot is kept open);
- rows travel by binary ``COPY`` (chunks and vectors through per-connection staging tables, then one
  ``INSERT ... ON CONFLICT`` / ``UPDATE ... FROM``; postings straight into their table), and a bulk load into an
  empty library (:meth:`PgVectorStore.bulk_load`, used by the migration and the benchmark) builds the keyword
  index's keys and the HNSW index once, after the rows are in.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from services.errors import DocumentNotFound, EmbeddingModelMismatch, StoreUnavailable
from services.keyword_budget import DEFAULT_POSTINGS_BUDGET, DocumentFrequencyCache, terms_within_budget
from services.store import (
    SCHEMA_VERSION,
    ChunkRecord,
    DocumentRecord,
    NewChunk,
    _now,
    date_range_where,
    join_words,
    split_words,
)

log = logging.getLogger(__name__)

BM25_K1 = 1.2
BM25_B = 0.75
# HNSW candidates per query (hnsw.ef_search). A fixed beam loses recall as the library grows: on the 1M
# benchmark library dense recall@10 was 0.74 at 200, 0.84 at 400, 0.93 at 800 (p95 14 -> 29 ms, still far
# below BM25's); at 100k 0.98 at 200. So by default the beam grows with the library's size.
EF_SEARCH = 200  # the smallest beam (retrieval asks for 50 candidates)
EF_SEARCH_MAX = 1000  # pgvector's limit
CHUNKS_PER_EF = 1_250  # by size: one candidate per this many chunks above the floor (1M chunks: 800)
CHUNK_COUNT_TTL_S = 60.0  # how long the planner's chunk-count estimate is reused


def ef_search_for(chunks: int, k: int) -> int:
    """The HNSW beam by library size: 200 up to 250,000 chunks, then one per ``CHUNKS_PER_EF`` chunks, at
    most pgvector's 1,000, and never below ``k``."""
    return min(EF_SEARCH_MAX, max(EF_SEARCH, int(k), chunks // CHUNKS_PER_EF))


# A filter leaving at most this many chunks is searched exactly (a few ms); above it, iterative HNSW scans.
EXACT_FILTER_LIMIT = 20_000
_ADVISORY_LOCK_KEY = 0x646F6351  # "docQ": the library-wide lock behind locked()
_SCHEMA_LOCK_KEY = _ADVISORY_LOCK_KEY + 1  # held (per transaction) by whoever creates or rebuilds the schema
# Memory for index builds after a bulk load: the HNSW graph of 1M chunks (halfvec 384) fits in about 1.5 GB.
BULK_INDEX_MEMORY = "2GB"

# FTS5's unicode61 tokenizer splits on every character that is not a letter or a digit (underscore included)
# and folds case; the SQLite store hands it space-joined terms. The same split here gives the same tokens.
_TOKEN_RE = re.compile(r"[^\W_]+")


def fts_tokens(terms: Iterable[str]) -> list[str]:
    """The tokens FTS5 (unicode61) makes of these terms: what BM25 counts, in both backends."""
    return [t.lower() for term in terms for t in _TOKEN_RE.findall(term)]


# Binary COPY names every column's PostgreSQL type (psycopg's ``copy.set_types``): (column, type) pairs.
Columns = Sequence[tuple[str, str]]
DOCUMENT_COLUMNS: Columns = (
    ("id", "text"),
    ("source", "text"),
    ("kind", "text"),
    ("title", "text"),
    ("file_path", "text"),
    ("pages", "int4"),
    ("chunks", "int4"),
    ("script", "text"),
    ("status", "text"),
    ("error", "text"),
    ("warnings", "jsonb"),
    ("metadata", "jsonb"),
    ("doc_date", "text"),
    ("added_at", "text"),
)
PAGE_COLUMNS: Columns = (("document_id", "text"), ("number", "int4"), ("text", "text"))
CHUNK_COLUMNS: Columns = (
    ("vector_id", "int8"),
    ("id", "text"),
    ("document_id", "text"),
    ("ordinal", "int4"),
    ("page", "int4"),
    ("start", "int4"),
    ('"end"', "int4"),
    ("text", "text"),
    ("tokens", "int4"),
    ("terms", "text"),
    ("term_count", "int4"),
    ("embedding", "vector"),
    ("words", "text"),
)
POSTING_COLUMNS: Columns = (("term", "text"), ("vector_id", "int8"), ("tf", "int4"), ("dl", "int4"))
# What add_document stages before its INSERT ... ON CONFLICT: the chunk columns it knows (no vector id, no
# document id, no vector yet), the passage's topic words included.
_STAGED_CHUNK_COLUMNS: Columns = tuple(
    c for c in CHUNK_COLUMNS if c[0] not in ("vector_id", "document_id", "embedding")
)
_STAGED_EMBEDDING_COLUMNS: Columns = (("vector_id", "int8"), ("embedding", "vector"))
# Per-connection staging tables (temporary, emptied at every commit), so that rows can arrive by COPY and still
# be inserted idempotently (COPY has no ON CONFLICT). Each transaction fills each of them at most once.
_STAGING_TABLES = [
    "CREATE TEMP TABLE IF NOT EXISTS chunk_staging ("
    + ", ".join(f"{name} {'INTEGER' if kind == 'int4' else 'TEXT'}" for name, kind in _STAGED_CHUNK_COLUMNS)
    + ") ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS embedding_staging (vector_id BIGINT, embedding vector) ON COMMIT DELETE ROWS",
]


def copy_rows(db: Any, table: str, columns: Columns, rows: Iterable[Sequence[Any]], *, freeze: bool = False) -> None:
    """Write rows into ``table`` with one binary COPY: one statement and one stream, whatever their number.
    ``freeze`` (only for a table emptied in the same transaction) writes them already frozen, so the VACUUM
    after a bulk load has nothing to rewrite."""
    names = ", ".join(name for name, _ in columns)
    options = "FORMAT BINARY, FREEZE" if freeze else "FORMAT BINARY"
    with db.cursor().copy(f"COPY {table} ({names}) FROM STDIN ({options})") as copy:
        copy.set_types([kind for _, kind in columns])
        for row in rows:
            copy.write_row(row)


def posting_rows(vector_id: int, tokens: Sequence[str]) -> Iterator[tuple[str, int, int, int]]:
    """The keyword index rows of one chunk: (term, vector id, term frequency, chunk length in tokens)."""
    for term, tf in Counter(tokens).items():
        yield term, vector_id, tf, len(tokens)


def _deferred_structures(db: Any) -> list[tuple[str, str]]:
    """(drop, create) statements for what a bulk load builds once at the end instead of row by row: every key,
    foreign key and index of the postings, and the chunks' HNSW index. Read from the catalog, so that exactly
    what was there is rebuilt. In dropping order (foreign keys before the keys they rely on); create in
    reverse."""
    from psycopg import sql

    constraints = db.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'postings'::regclass AND contype IN ('f', 'p', 'u', 'x')"
        " ORDER BY contype = 'f' DESC, conname"
    ).fetchall()
    indexes = db.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam"
        " WHERE (i.indrelid = 'postings'::regclass OR (i.indrelid = 'chunks'::regclass AND am.amname = 'hnsw'))"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid)"
        " ORDER BY 1"
    ).fetchall()
    statements = [
        (
            sql.SQL("ALTER TABLE postings DROP CONSTRAINT {}").format(sql.Identifier(name)),
            sql.SQL("ALTER TABLE postings ADD CONSTRAINT {} {}").format(sql.Identifier(name), sql.SQL(definition)),
        )
        for name, definition in constraints
    ]
    statements += [
        (sql.SQL("DROP INDEX {}").format(sql.SQL(name)), sql.SQL(definition)) for name, definition in indexes
    ]
    return statements


def _schema(dimension: int) -> list[str]:
    dim = int(dimension)  # an int from the manifest, never user text: safe to format into DDL
    return [
        "CREATE TABLE IF NOT EXISTS manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS documents (
            id TEXT PRIMARY KEY, source TEXT NOT NULL, kind TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',
            file_path TEXT, pages INTEGER NOT NULL DEFAULT 0, chunks INTEGER NOT NULL DEFAULT 0,
            script TEXT NOT NULL DEFAULT 'unknown', status TEXT NOT NULL, error TEXT,
            warnings JSONB NOT NULL DEFAULT '[]', metadata JSONB NOT NULL DEFAULT '{}',
            doc_date TEXT, added_at TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS pages (
            document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            number INTEGER NOT NULL, text TEXT NOT NULL, PRIMARY KEY (document_id, number))""",
        f"""CREATE TABLE IF NOT EXISTS chunks (
            vector_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL, page INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
            text TEXT NOT NULL, tokens INTEGER NOT NULL DEFAULT 0,
            terms TEXT NOT NULL DEFAULT '', term_count INTEGER NOT NULL DEFAULT 0,
            embedding vector({dim}))""",
        # The passage's possible topic keywords, space-separated (NULL: not read yet); libraries made before
        # the column existed get it here.
        "ALTER TABLE chunks ADD COLUMN IF NOT EXISTS words TEXT",
        "CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id)",
        "CREATE INDEX IF NOT EXISTS chunks_pending ON chunks(vector_id) WHERE embedding IS NULL",
        f"""CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw ON chunks
            USING hnsw ((embedding::halfvec({dim})) halfvec_ip_ops) WITH (m = 16, ef_construction = 64)""",
        # The keyword index: one row per (term, chunk) with the term's count and the chunk's length, covered by
        # the primary key, so BM25 reads a term's postings with an index-only scan and never visits chunks.
        # Terms compare as bytes (COLLATE "C"): only equality matters here, and byte order sorts and compares
        # several times faster than a locale's (a bulk load builds this key by sorting ~80 rows per chunk).
        # Libraries created before keep their collation, which answers the same.
        """CREATE TABLE IF NOT EXISTS postings (
            term TEXT COLLATE "C" NOT NULL, vector_id BIGINT NOT NULL REFERENCES chunks(vector_id) ON DELETE CASCADE,
            tf INTEGER NOT NULL, dl INTEGER NOT NULL, PRIMARY KEY (term, vector_id) INCLUDE (tf, dl))""",
        "CREATE INDEX IF NOT EXISTS postings_chunk ON postings(vector_id)",
        # BM25's corpus statistics (chunks, tokens), kept by every write in the same transaction: reading
        # them is one row, not a count over millions of chunks per query.
        """CREATE TABLE IF NOT EXISTS corpus_stats (
            one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), chunks BIGINT NOT NULL, tokens BIGINT NOT NULL)""",
        "INSERT INTO corpus_stats(one, chunks, tokens) VALUES (TRUE, 0, 0) ON CONFLICT DO NOTHING",
    ]


_DOC_COLUMNS = (
    "d.id, d.source, d.kind, d.title, d.file_path, d.pages, d.chunks, d.script, d.status, d.error, d.warnings,"
    " d.metadata, d.doc_date, d.added_at,"
    " (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id AND c.embedding IS NOT NULL) AS embedded"
)
_CHUNK_COLUMNS = 'c.vector_id, c.id, c.document_id, d.source, d.title, c.ordinal, c.page, c.start, c."end", c.text'


def _describe(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _first_line(exc: BaseException) -> str:
    """libpq's message without its hint lines, e.g. 'connection to server at "db", port 5432 failed: ...'."""
    text = str(exc).strip()
    return (text.splitlines()[0].strip().rstrip(".") if text else "") or type(exc).__name__


def connect(url: str, *, register: bool = True) -> Any:
    """An autocommit connection with pgvector's types registered; clear errors for the usual failures."""
    import psycopg

    if not url:
        raise StoreUnavailable(
            "DOCQA_STORE=pgvector needs a database: set DOCQA_DATABASE_URL=postgresql://user:password@host/dbname."
        )
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(
            f"Cannot reach the PostgreSQL server at {_describe(url)} ({_first_line(exc)}). "
            "Check DOCQA_DATABASE_URL and that the server is running."
        ) from exc
    except psycopg.ProgrammingError as exc:  # a malformed URL
        raise StoreUnavailable(f"DOCQA_DATABASE_URL is not a valid PostgreSQL URL ({exc}).") from exc
    if register:
        _ensure_extension(conn, url)
        from pgvector.psycopg import register_vector

        register_vector(conn)
    return conn


def _ensure_extension(conn: Any, url: str) -> None:
    import psycopg

    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
        return
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.Error as exc:
        available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
        hint = (
            "ask the database owner to run CREATE EXTENSION vector in this database"
            if available
            else "install pgvector (0.8 or later) on the server"
        )
        raise StoreUnavailable(
            f"The pgvector extension is not available in {_describe(url)} ({str(exc).strip()}): {hint}."
        ) from exc


def _translate_connection_errors(cls: type) -> type:
    """Wrap every public method: a lost connection or a server gone away becomes :class:`StoreUnavailable`
    (one sentence for the page, no traceback), and the broken connection is dropped so the next call
    reconnects."""
    import functools

    import psycopg

    def wrap(method: Any) -> Any:
        @functools.wraps(method)
        def call(self: PgVectorStore, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except psycopg.OperationalError as exc:
                self._local = threading.local()
                raise StoreUnavailable(
                    f"The PostgreSQL server at {_describe(self.database_url)} stopped answering "
                    f"({_first_line(exc)}). "
                    "Try again when it is back."
                ) from exc

        return call

    for name, member in list(vars(cls).items()):
        if callable(member) and not name.startswith("_") and name not in ("locked",):
            setattr(cls, name, wrap(member))
    return cls


@_translate_connection_errors
class PgVectorStore:
    """One library in one PostgreSQL database. Thread-safe (a connection per thread); any number of
    processes and app servers may use the same database at once."""

    def __init__(
        self,
        database_url: str,
        embedder_name: str,
        dimension: int,
        *,
        keyword_postings_budget: int = DEFAULT_POSTINGS_BUDGET,
        ef_search: int = 0,
    ):
        self.database_url = database_url
        self.keyword_postings_budget = keyword_postings_budget
        self.fixed_ef_search = ef_search  # 0: by the library's size
        self._chunk_estimate: tuple[float, int] = (float("-inf"), 0)  # (when read, chunks)
        self._df_cache = DocumentFrequencyCache()
        self.embedder_name = embedder_name
        self.dimension = dimension
        self.notices: list[str] = []
        self._local = threading.local()
        self._lock = threading.RLock()  # makes locked() re-entrant within this process
        self._lock_depth = 0
        self._lock_conn: Any = None
        self._all_conns: list[Any] = []
        db = self._connect()
        with db.transaction():
            # Two servers starting on an empty database at once must not both create the schema.
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            for statement in _schema(dimension):
                db.execute(statement)
            self._check_manifest(db)

    # ---- connections -------------------------------------------------------------------------------------
    def _connect(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = connect(self.database_url)
            for statement in _STAGING_TABLES:
                conn.execute(statement)
            self._local.conn = conn
            with self._lock:
                self._all_conns.append(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        db = self._connect()
        with db.transaction():
            yield db

    @contextmanager
    def locked(self) -> Iterator[None]:
        """A library-wide lock (a PostgreSQL advisory lock, so it holds across servers), re-entrant, for file
        work that must not interleave with another server's, such as removing an original a delete freed."""
        with self._lock:
            if self._lock_depth == 0:
                self._lock_conn = connect(self.database_url, register=False)
                self._lock_conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    self._lock_conn.close()  # closing the session releases the lock
                    self._lock_conn = None

    def close(self) -> None:
        with self._lock:
            for conn in self._all_conns:
                conn.close()
            self._all_conns.clear()
        self._local = threading.local()

    def open_index(self) -> None:
        """Nothing to load: the HNSW index lives in the database."""

    def save_index(self) -> None:
        """Nothing to save: every write is committed with its index entries."""

    # ---- manifest ----------------------------------------------------------------------------------------
    def _check_manifest(self, db: Any) -> None:
        rows = dict(db.execute("SELECT key, value FROM manifest").fetchall())
        if not rows:
            db.cursor().executemany(
                "INSERT INTO manifest(key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [
                    ("schema_version", SCHEMA_VERSION),
                    ("embedding_model", self.embedder_name),
                    ("embedding_dimension", str(self.dimension)),
                    ("created_at", _now()),
                ],
            )
            return
        model, dim = rows.get("embedding_model"), rows.get("embedding_dimension")
        if model != self.embedder_name or dim != str(self.dimension):
            raise EmbeddingModelMismatch(
                f"This library was indexed with the embedding model {model} ({dim} dimensions), but the app is "
                f"set to {self.embedder_name} ({self.dimension}). Re-index the library with the new model "
                "(`python cli.py reindex`), or switch DOCQA_EMBEDDER back."
            )

    def manifest(self) -> dict[str, str]:
        return dict(self._connect().execute("SELECT key, value FROM manifest").fetchall())

    @classmethod
    def reset_embedding_model(cls, database_url: str, embedder_name: str, dimension: int) -> None:
        """Forget every stored vector and record a new model: the library keeps its text and is re-embedded."""
        db = connect(database_url)
        try:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
                db.execute("DROP INDEX IF EXISTS chunks_embedding_hnsw")
                db.execute("UPDATE chunks SET embedding = NULL")
                db.execute(f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({int(dimension)})")
                db.execute("UPDATE documents SET status='embedding' WHERE status='ready'")
                db.execute("UPDATE manifest SET value=%s WHERE key='embedding_model'", (embedder_name,))
                db.execute("UPDATE manifest SET value=%s WHERE key='embedding_dimension'", (str(dimension),))
        finally:
            db.close()
        # The index over the new dimension is created by the next PgVectorStore(...) (CREATE ... IF NOT EXISTS).

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
        """Insert a parsed document with its pages, chunks and postings in one transaction.

        Returns False (and changes nothing) when a document with the same content id exists and did not fail.
        Two servers adding the same document at once: the second's insert waits on the first's uncommitted
        row, then finds it and returns False; no chunk is stored twice.
        """
        from psycopg.types.json import Jsonb

        with self._transaction() as db:
            row = db.execute("SELECT status FROM documents WHERE id=%s FOR UPDATE", (document_id,)).fetchone()
            if row is not None:
                if row[0] != "failed":
                    return False
                self._delete_rows(db, document_id)
            inserted = db.execute(
                "INSERT INTO documents(id, source, kind, title, file_path, pages, chunks, script, status, warnings,"
                " metadata, doc_date, added_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (id) DO NOTHING RETURNING id",
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
                    Jsonb(list(warnings)),
                    Jsonb(json.loads(json.dumps(metadata or {}, ensure_ascii=False, default=str))),
                    doc_date,
                    _now(),
                ),
            ).fetchone()
            if inserted is None:  # another server committed the same document while we waited
                return False
            if pages:
                db.cursor().executemany(
                    "INSERT INTO pages(document_id, number, text) VALUES (%s,%s,%s) ON CONFLICT DO NOTHING",
                    [(document_id, n, t) for n, t in pages],
                )
            self._insert_chunks(db, document_id, chunks)
            db.execute(
                "UPDATE documents SET chunks=(SELECT COUNT(*) FROM chunks WHERE document_id=%s) WHERE id=%s",
                (document_id, document_id),
            )
        return True

    @staticmethod
    def _insert_chunks(db: Any, document_id: str, chunks: Sequence[NewChunk]) -> None:
        """Chunks by COPY into the staging table, then one idempotent insert (a chunk id already stored is
        skipped); postings by COPY for the chunks actually inserted, which are new, so none can exist yet."""
        if not chunks:
            return
        tokens_of = {c.id: fts_tokens(c.terms) for c in chunks}
        copy_rows(
            db,
            "chunk_staging",
            _STAGED_CHUNK_COLUMNS,
            (
                (
                    c.id,
                    ordinal,
                    c.page,
                    c.start,
                    c.end,
                    c.text,
                    c.tokens,
                    " ".join(c.terms),
                    len(tokens_of[c.id]),
                    join_words(c.words),
                )
                for ordinal, c in enumerate(chunks)
            ),
        )
        staged = ", ".join(name for name, _ in _STAGED_CHUNK_COLUMNS)
        inserted = db.execute(
            f"INSERT INTO chunks(document_id, {staged}) SELECT %s, {staged} FROM chunk_staging"
            " ORDER BY ordinal ON CONFLICT (id) DO NOTHING RETURNING vector_id, id",
            (document_id,),
        ).fetchall()
        if not inserted:  # every chunk was stored already
            return
        copy_rows(
            db, "postings", POSTING_COLUMNS, (p for vid, cid in inserted for p in posting_rows(vid, tokens_of[cid]))
        )
        n_tokens = sum(len(tokens_of[cid]) for _, cid in inserted)
        db.execute("UPDATE corpus_stats SET chunks = chunks + %s, tokens = tokens + %s", (len(inserted), n_tokens))

    @staticmethod
    def _delete_rows(db: Any, document_id: str) -> None:
        # The corpus statistics first, from the rows about to go; postings and pages follow by cascade.
        db.execute(
            "UPDATE corpus_stats SET chunks = chunks - s.n, tokens = tokens - s.t FROM"
            " (SELECT COUNT(*) AS n, COALESCE(SUM(term_count), 0) AS t FROM chunks WHERE document_id=%s) s",
            (document_id,),
        )
        db.execute("DELETE FROM documents WHERE id=%s", (document_id,))

    def delete_document(self, document_id: str) -> DocumentRecord:
        """Remove a document, its pages, chunks, postings and vectors. Every server stops returning it as soon
        as this commits."""
        record = self.get_document(document_id)
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM documents WHERE id=%s FOR UPDATE", (document_id,)).fetchone():
                self._delete_rows(db, document_id)
        return record

    def mark_failed(self, document_id: str, error: str) -> None:
        self._connect().execute("UPDATE documents SET status='failed', error=%s WHERE id=%s", (error, document_id))

    @staticmethod
    def _record(row: Sequence[Any]) -> DocumentRecord:
        return DocumentRecord(*row[:14], embedded=int(row[14]))

    def get_document(self, document_id: str) -> DocumentRecord:
        row = (
            self._connect().execute(f"SELECT {_DOC_COLUMNS} FROM documents d WHERE d.id=%s", (document_id,)).fetchone()
        )
        if row is None:
            raise DocumentNotFound(f"No document with id {document_id} in the library.")
        return self._record(row)

    def list_documents(self) -> list[DocumentRecord]:
        rows = self._connect().execute(f"SELECT {_DOC_COLUMNS} FROM documents d ORDER BY d.added_at, d.source")
        return [self._record(r) for r in rows]

    def document_ids_between(self, start: str | None, end: str | None) -> list[str]:
        """Documents whose date (row date, else the day added) lies in [start, end] (ISO dates, inclusive)."""
        where, args = date_range_where(start, end, "%s")
        return [r[0] for r in self._connect().execute(f"SELECT id FROM documents WHERE {where}", args)]

    def pages_of(self, document_id: str) -> list[tuple[int, str]]:
        rows = self._connect().execute(
            "SELECT number, text FROM pages WHERE document_id=%s ORDER BY number", (document_id,)
        )
        return [(r[0], r[1]) for r in rows]

    def page_text(self, document_id: str, page: int) -> str:
        row = (
            self._connect()
            .execute("SELECT text FROM pages WHERE document_id=%s AND number=%s", (document_id, page))
            .fetchone()
        )
        return row[0] if row else ""

    def counts(self) -> dict[str, int]:
        row = (
            self._connect()
            .execute(
                "SELECT (SELECT COUNT(*) FROM documents), (SELECT COUNT(*) FROM chunks),"
                " (SELECT COUNT(*) FROM chunks WHERE embedding IS NOT NULL), (SELECT COUNT(*) FROM chunks)"
            )
            .fetchone()
        )
        # "terms" counts keyword rows like the SQLite store's FTS table: one per chunk.
        return {"documents": row[0], "chunks": row[1], "embedded": row[2], "terms": row[3]}

    # ---- chunks ------------------------------------------------------------------------------------------
    def get_chunks(self, vector_ids: Sequence[int]) -> list[ChunkRecord]:
        """Chunks by vector id, in the order asked; ids of deleted chunks are silently dropped."""
        if not vector_ids:
            return []
        ids = [int(i) for i in vector_ids]
        rows = self._connect().execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE c.vector_id = ANY(%s)",
            (ids,),
        )
        found = {r[0]: ChunkRecord(*r) for r in rows}
        return [found[i] for i in ids if i in found]

    def document_chunks(self, document_id: str) -> list[ChunkRecord]:
        rows = self._connect().execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE c.document_id=%s ORDER BY c.ordinal",
            (document_id,),
        )
        return [ChunkRecord(*r) for r in rows]

    def pending_chunks(self, limit: int) -> list[tuple[int, str]]:
        rows = self._connect().execute(
            "SELECT vector_id, text FROM chunks WHERE embedding IS NULL ORDER BY vector_id LIMIT %s", (limit,)
        )
        return [(r[0], r[1]) for r in rows]

    def pending_count(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM chunks WHERE embedding IS NULL").fetchone()[0]

    def set_embeddings(self, vector_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Store vectors for chunks (skipping chunks deleted or embedded meanwhile) and mark finished
        documents ready."""
        from pgvector import Vector

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(vector_ids), self.dimension):
            raise ValueError(f"expected {len(vector_ids)} vectors of {self.dimension} dims, got {vectors.shape}")
        if not len(vector_ids):
            return
        ids = [int(v) for v in vector_ids]
        with self._transaction() as db:
            # Documents first, in id order, as a delete takes them: an embed racing a delete of the same
            # document then waits instead of deadlocking on its chunk rows.
            db.execute(
                "SELECT id FROM documents WHERE id IN (SELECT document_id FROM chunks WHERE vector_id = ANY(%s))"
                " ORDER BY id FOR UPDATE",
                (ids,),
            )
            copy_rows(db, "embedding_staging", _STAGED_EMBEDDING_COLUMNS, zip(ids, map(Vector, vectors), strict=True))
            # The id list lets the planner read the chunks by primary key whatever it guesses of the staging
            # table (which has no statistics).
            db.execute(
                "UPDATE chunks c SET embedding = s.embedding FROM embedding_staging s"
                " WHERE c.vector_id = s.vector_id AND c.vector_id = ANY(%s) AND c.embedding IS NULL",
                (ids,),
            )
            db.execute(
                "UPDATE documents d SET status='ready' WHERE d.status='embedding'"
                " AND d.id IN (SELECT DISTINCT document_id FROM chunks WHERE vector_id = ANY(%s))"
                " AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id AND c.embedding IS NULL)",
                (ids,),
            )

    def set_chunk_words(self, words: dict[str, Sequence[str]]) -> None:
        """Store the topic words of chunks read after ingest; chunks deleted meanwhile are skipped."""
        if not words:
            return
        ids = list(words)
        with self._transaction() as db:
            db.execute(
                "UPDATE chunks c SET words = u.words FROM unnest(%s::text[], %s::text[]) AS u(id, words)"
                " WHERE c.id = u.id",
                (ids, [join_words(words[i]) for i in ids]),
            )

    def iter_embeddings(self, document_ids: Sequence[str] | None = None) -> tuple[list[ChunkRecord], np.ndarray]:
        """All embedded chunks (optionally of some documents) with their vectors, for topics."""
        where, args = "c.embedding IS NOT NULL", []
        if document_ids is not None:
            where += " AND c.document_id = ANY(%s)"
            args.append(list(document_ids))
        rows = (
            self._connect()
            .execute(
                f"SELECT {_CHUNK_COLUMNS}, c.embedding, c.words FROM chunks c JOIN documents d"
                f" ON d.id = c.document_id WHERE {where} ORDER BY c.vector_id",
                args,
            )
            .fetchall()
        )
        chunks = [ChunkRecord(*r[:10], words=split_words(r[11])) for r in rows]
        vectors = np.zeros((len(rows), self.dimension), dtype=np.float32)
        for i, r in enumerate(rows):
            vectors[i] = r[10].to_numpy()
        return chunks, vectors

    # ---- search ------------------------------------------------------------------------------------------
    def dense_search(
        self, query: np.ndarray, k: int, document_ids: Sequence[str] | None = None
    ) -> list[tuple[int, float]]:
        """Inner product (cosine on normalised vectors), highest first: the scale FAISS's IndexFlatIP gives.

        The HNSW index is walked on half precision; the returned scores are recomputed in full precision.
        A filter that leaves few chunks is searched exactly; larger filtered queries use iterative index scans,
        so they still return k.
        """
        if k <= 0 or (document_ids is not None and not document_ids):
            return []
        from pgvector import HalfVector, Vector

        q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        if document_ids is not None and self._few_chunks(document_ids):
            return self._exact_dense(q, k, document_ids)
        dim = int(self.dimension)
        where, args = "c.embedding IS NOT NULL", [HalfVector(q)]
        if document_ids is not None:
            where += " AND c.document_id = ANY(%s)"
            args.append(list(document_ids))
        sql = (
            f"SELECT vector_id, -(embedding <#> %s) AS score FROM (SELECT c.vector_id, c.embedding FROM chunks c"
            f" WHERE {where} ORDER BY c.embedding::halfvec({dim}) <#> %s::halfvec({dim}) LIMIT %s) AS near"
            " ORDER BY score DESC, vector_id"
        )
        # The outer query's parameter comes first in the text: the full-precision query vector.
        params = [Vector(q), *args[1:], args[0], int(k)]
        with self._transaction() as db:
            db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            db.execute(f"SET LOCAL hnsw.ef_search = {self.ef_search(k, db)}")
            rows = db.execute(sql, params).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def ef_search(self, k: int, db: Any = None) -> int:
        """The HNSW beam for a query of ``k``: DOCQA_PG_EF_SEARCH when set, else sized to the library (the
        planner's row estimate, re-read once a minute: exact counts of 1M rows cost tens of ms)."""
        if self.fixed_ef_search:
            return min(EF_SEARCH_MAX, max(self.fixed_ef_search, int(k)))
        read_at, chunks = self._chunk_estimate
        if time.monotonic() - read_at > CHUNK_COUNT_TTL_S:
            sql = "SELECT reltuples FROM pg_class WHERE oid = 'chunks'::regclass"
            row = (db or self._connect()).execute(sql).fetchone()
            chunks = max(int(row[0]), 0) if row else 0  # -1: never analysed (a new, small library)
            self._chunk_estimate = (time.monotonic(), chunks)
        return ef_search_for(chunks, k)

    def _few_chunks(self, document_ids: Sequence[str]) -> bool:
        """Whether the filter leaves few enough chunks to score them all (exact, recall 1) rather than walk
        the HNSW graph, where a filter keeping a small share of the library loses neighbours."""
        row = (
            self._connect()
            .execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM chunks WHERE document_id = ANY(%s) LIMIT %s) AS few",
                (list(document_ids), EXACT_FILTER_LIMIT + 1),
            )
            .fetchone()
        )
        return row[0] <= EXACT_FILTER_LIMIT

    def _exact_dense(self, q: np.ndarray, k: int, document_ids: Sequence[str]) -> list[tuple[int, float]]:
        from pgvector import Vector

        # Ordered by the full-precision distance, which the halfvec index cannot serve: the planner reads the
        # filtered chunks through chunks_document and sorts them, exactly like FAISS's flat index.
        rows = self._connect().execute(
            "SELECT vector_id, -(embedding <#> %s) AS score FROM chunks"
            " WHERE embedding IS NOT NULL AND document_id = ANY(%s) ORDER BY score DESC, vector_id LIMIT %s",
            (Vector(q), list(document_ids), int(k)),
        )
        return [(int(r[0]), float(r[1])) for r in rows]

    def keyword_search(
        self, terms: Sequence[str], k: int, document_ids: Sequence[str] | None = None
    ) -> list[tuple[int, float]]:
        """BM25 over the segmented terms with FTS5's formula (k1=1.2, b=0.75); higher score is better.

        Corpus statistics are over the whole library (as FTS5's are), also when a filter narrows the results.
        On a large library a question's most common terms are left out, as in the local store
        (services.keyword_budget).
        """
        budget = self.keyword_postings_budget
        query_terms = terms_within_budget(fts_tokens(terms), self.document_frequencies, budget)
        if not query_terms or k <= 0 or (document_ids is not None and not document_ids):
            return []
        doc_filter, args = "", [query_terms]
        if document_ids is not None:
            # After the window: document frequencies stay those of the whole library.
            doc_filter = "WHERE p.vector_id IN (SELECT vector_id FROM chunks WHERE document_id = ANY(%s))"
            args.append(list(document_ids))
        args.append(int(k))
        # One pass over the query terms' postings: each row carries its term's document frequency (a window
        # count), its term frequency and its chunk's length; the sum over a chunk's rows is its BM25 score.
        sql = f"""
            WITH stats AS (SELECT chunks::float8 AS n, tokens::float8 / GREATEST(chunks, 1) AS avgdl
                           FROM corpus_stats),
                 p AS (SELECT vector_id, tf, dl, COUNT(*) OVER (PARTITION BY term) AS df
                       FROM postings WHERE term = ANY(%s))
            SELECT p.vector_id,
                   SUM(GREATEST(LN((s.n - p.df + 0.5) / (p.df + 0.5)), 1e-6) * p.tf * {BM25_K1 + 1}
                       / (p.tf + {BM25_K1} * (1 - {BM25_B} + {BM25_B} * p.dl / GREATEST(s.avgdl, 1e-9))))
                       AS score
            FROM p CROSS JOIN stats s {doc_filter}
            GROUP BY p.vector_id ORDER BY score DESC, p.vector_id LIMIT %s"""
        rows = self._connect().execute(sql, args).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def document_frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        """How many chunks contain each term (cached while the corpus statistics are unchanged)."""
        corpus = tuple(self._connect().execute("SELECT chunks, tokens FROM corpus_stats").fetchone())
        return self._df_cache.counts(terms, corpus, self._count_chunks_with)

    def _count_chunks_with(self, terms: list[str]) -> dict[str, int]:
        rows = (
            self._connect()
            .execute("SELECT term, COUNT(*) FROM postings WHERE term = ANY(%s) GROUP BY term", (terms,))
            .fetchall()
        )
        return dict(rows)

    # ---- bulk load ---------------------------------------------------------------------------------------
    def bulk_load(
        self,
        documents: Iterable[dict[str, Any]],
        pages: Iterable[Sequence[Any]],
        chunk_batches: Iterable[Sequence[Sequence[Any]]],
    ) -> dict[str, float]:
        """Load a whole library into this empty one, keeping its vector ids: what the migration and the
        benchmark use. Returns the seconds spent on rows, on indexes and on the final VACUUM ANALYZE.

        ``documents`` are dicts of :data:`DOCUMENT_COLUMNS`, ``pages`` rows of :data:`PAGE_COLUMNS`, and each
        chunk row is :data:`CHUNK_COLUMNS` without ``term_count`` (computed here from the space-joined terms),
        its embedding a float32 array or None. One transaction under the schema lock, with the tables locked:
        a failure leaves the database empty, and no other server writes meanwhile. Rows go in by binary COPY
        into the tables emptied in this transaction (so written frozen); the postings' keys and foreign key
        and the HNSW index are dropped first and built once at the end, by sorting, with
        :data:`BULK_INDEX_MEMORY` (row-by-row index upkeep of ~80 postings per chunk was most of the time).
        """
        import time

        from pgvector import Vector
        from psycopg.types.json import Jsonb

        from services.errors import DocQAError

        seconds: dict[str, float] = {}
        started = time.perf_counter()
        with self._transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            db.execute("LOCK TABLE documents, pages, chunks, postings, corpus_stats IN ACCESS EXCLUSIVE MODE")
            if db.execute("SELECT EXISTS (SELECT 1 FROM documents)").fetchone()[0]:
                raise DocQAError("This PostgreSQL library already holds documents; bulk loading needs an empty one.")
            db.execute("TRUNCATE documents, pages, chunks, postings")  # empty already; lets COPY write frozen rows
            deferred = _deferred_structures(db)
            for drop, _ in deferred:
                db.execute(drop)
            json_columns = {"warnings", "metadata"}
            copy_rows(
                db,
                "documents",
                DOCUMENT_COLUMNS,
                ([Jsonb(d[k]) if k in json_columns else d[k] for k, _ in DOCUMENT_COLUMNS] for d in documents),
                freeze=True,
            )
            copy_rows(db, "pages", PAGE_COLUMNS, pages, freeze=True)
            chunks_n = tokens_n = 0
            for batch in chunk_batches:
                tokens = [fts_tokens(r[9].split()) for r in batch]
                copy_rows(
                    db,
                    "chunks",
                    CHUNK_COLUMNS,
                    (
                        (*r[:10], len(t), None if r[10] is None else Vector(r[10]), r[11])
                        for r, t in zip(batch, tokens, strict=True)
                    ),
                    freeze=True,
                )
                copy_rows(
                    db,
                    "postings",
                    POSTING_COLUMNS,
                    (p for r, t in zip(batch, tokens, strict=True) for p in posting_rows(r[0], t)),
                    freeze=True,
                )
                chunks_n += len(batch)
                tokens_n += sum(map(len, tokens))
            db.execute("UPDATE corpus_stats SET chunks = %s, tokens = %s", (chunks_n, tokens_n))
            db.execute(
                "SELECT setval(pg_get_serial_sequence('chunks', 'vector_id'), GREATEST((SELECT MAX(vector_id)"
                " FROM chunks), 1))"
            )
            seconds["rows"] = time.perf_counter() - started
            db.execute(f"SET LOCAL maintenance_work_mem = '{BULK_INDEX_MEMORY}'")
            for _, create in reversed(deferred):
                db.execute(create)
            seconds["indexes"] = time.perf_counter() - started - seconds["rows"]
        db.execute("VACUUM ANALYZE")  # planner statistics, and the visibility map index-only scans of postings use
        seconds["vacuum"] = time.perf_counter() - started - seconds["rows"] - seconds["indexes"]
        return seconds

    # ---- checks ------------------------------------------------------------------------------------------
    def check_consistency(self) -> dict[str, int]:
        """The SQLite store's report, for `cli.py doctor` and the tests. Vectors and rows cannot disagree here
        (one table), so the "faiss" figures count what the HNSW index covers: the embedded chunks."""
        row = (
            self._connect()
            .execute(
                """SELECT (SELECT COUNT(*) FROM chunks), (SELECT COUNT(*) FROM chunks WHERE embedding IS NOT NULL),
                      (SELECT COUNT(*) FROM chunks c WHERE term_count > 0
                         AND NOT EXISTS (SELECT 1 FROM postings p WHERE p.vector_id = c.vector_id)),
                      (SELECT COUNT(*) FROM (SELECT 1 FROM chunks GROUP BY document_id, page, start, "end"
                                             HAVING COUNT(*) > 1) AS dup),
                      (SELECT chunks FROM corpus_stats) - (SELECT COUNT(*) FROM chunks)"""
            )
            .fetchone()
        )
        return {
            "chunks": row[0],
            "embedded": row[1],
            "faiss": row[1],
            "faiss_not_in_sqlite": 0,
            "embedded_not_in_faiss": 0,
            "terms_mismatch": row[2] + abs(row[4]),
            "duplicate_chunks": row[3],
        }
