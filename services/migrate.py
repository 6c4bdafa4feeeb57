"""Move a library between the local store (SQLite + FAISS) and PostgreSQL + pgvector, both ways.

Rows are copied as they are (documents, pages, chunks with their vector ids, keyword terms and stored
embeddings): nothing is parsed or embedded again. Afterwards the two stores are compared: counts, and the
dense, keyword and hybrid top-k of a sample of queries made from the library's own chunks (so no embedding
model is needed for the check).

    python cli.py [--data-dir DIR] migrate --to pgvector --database-url postgresql://...
    python cli.py [--data-dir DIR] migrate --to sqlite --database-url postgresql://...
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.errors import DocQAError
from services.store import LibraryStore, stored_words_sql
from services.store_api import Store
from services.store_pg import CHUNK_COLUMNS, DOCUMENT_COLUMNS, PgVectorStore, connect

log = logging.getLogger(__name__)

BATCH = 5000
DOC_FIELDS = ", ".join(name for name, _ in DOCUMENT_COLUMNS)
CHUNK_FIELDS = ", ".join(name for name, _ in CHUNK_COLUMNS[:9])  # vector_id ... tokens

# A chunk row as both backends exchange it: the chunk columns, its space-joined terms, its vector or None,
# its space-joined topic words or None (not read yet).
ChunkRow = tuple[int, str, str, int, int, int, int, str, int, str, np.ndarray | None, str | None]


@dataclass
class MigrationReport:
    direction: str
    counts_source: dict[str, int]
    counts_target: dict[str, int]
    seconds: float
    queries: int = 0
    identical: dict[str, int] = field(default_factory=dict)  # signal → queries whose top-k ids are identical
    overlap: dict[str, float] = field(default_factory=dict)  # signal → mean share of the top-k both return

    @property
    def counts_match(self) -> bool:
        keys = ("documents", "chunks", "embedded")
        return all(self.counts_source[k] == self.counts_target[k] for k in keys)

    @property
    def ok(self) -> bool:
        # Approximate (HNSW) against exact (FAISS) dense search may swap near-equal neighbours: the check asks
        # for identical hybrid results on at least 95% of the queries and 99% overlap of every signal.
        if not self.counts_match:
            return False
        if not self.queries:
            return True
        return self.identical.get("hybrid", 0) >= 0.95 * self.queries and min(self.overlap.values()) >= 0.99

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "counts_match": self.counts_match, "ok": self.ok}


# ---- reading ---------------------------------------------------------------------------------------------
def sqlite_rows(
    db_path: Path, *, immutable: bool = False
) -> tuple[list[dict[str, Any]], Iterator[tuple], Iterator[list[ChunkRow]]]:
    """Documents, pages and chunk batches of a local library, read-only. ``immutable`` is for a library that
    no process writes while it is read (the benchmark's cache): SQLite then takes no locks and creates no
    shared-memory file beside it."""
    db = sqlite3.connect(f"file:{db_path}?{'immutable=1' if immutable else 'mode=ro'}", uri=True)
    db.row_factory = sqlite3.Row
    docs = []
    for r in db.execute(f"SELECT {DOC_FIELDS} FROM documents ORDER BY added_at, id"):
        d = dict(r)
        d["warnings"] = json.loads(d["warnings"] or "[]")
        d["metadata"] = json.loads(d["metadata"] or "{}")
        docs.append(d)

    def pages() -> Iterator[tuple]:
        yield from db.execute("SELECT document_id, number, text FROM pages ORDER BY document_id, number")

    words = stored_words_sql(db, "c.")

    def chunks() -> Iterator[list[ChunkRow]]:
        cur = db.execute(
            "SELECT c.vector_id, c.id, c.document_id, c.ordinal, c.page, c.start, c.end, c.text, c.tokens,"
            f" COALESCE(t.terms, ''), c.embedding, {words} FROM chunks c LEFT JOIN chunk_terms t"
            " ON t.rowid = c.vector_id ORDER BY c.vector_id"
        )
        while batch := cur.fetchmany(BATCH):
            yield [
                (*r[:10], None if r[10] is None else np.frombuffer(r[10], dtype=np.float32).copy(), r[11])
                for r in batch
            ]

    return docs, pages(), chunks()


def _pg_rows(store: PgVectorStore) -> tuple[list[dict[str, Any]], Iterator[tuple], Iterator[list[ChunkRow]]]:
    db = connect(store.database_url)
    names = [n.strip() for n in DOC_FIELDS.split(",")]
    docs = [
        dict(zip(names, r, strict=True))
        for r in db.execute(f"SELECT {DOC_FIELDS} FROM documents ORDER BY added_at, id")
    ]

    def pages() -> Iterator[tuple]:
        with (
            db.transaction(),
            db.cursor(name="pages") as cur,
        ):  # server-side cursors: a large library is not held in memory
            cur.execute("SELECT document_id, number, text FROM pages ORDER BY document_id, number")
            yield from cur

    def chunks() -> Iterator[list[ChunkRow]]:
        with db.transaction(), db.cursor(name="chunks") as cur:
            cur.execute(f"SELECT {CHUNK_FIELDS}, terms, embedding, words FROM chunks ORDER BY vector_id")
            while batch := cur.fetchmany(BATCH):
                yield [(*r[:10], None if r[10] is None else r[10].to_numpy(), r[11]) for r in batch]

    return docs, pages(), chunks()


# ---- writing ---------------------------------------------------------------------------------------------
def _write_sqlite(store: LibraryStore, docs, pages, chunks) -> None:
    with store.writing() as db:
        db.executemany(
            f"INSERT INTO documents({DOC_FIELDS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    *[d[k] for k in ("id", "source", "kind", "title", "file_path", "pages", "chunks", "script")],
                    d["status"],
                    d["error"],
                    json.dumps(d["warnings"], ensure_ascii=False),
                    json.dumps(d["metadata"], ensure_ascii=False),
                    d["doc_date"],
                    d["added_at"],
                )
                for d in docs
            ],
        )
        db.executemany("INSERT INTO pages(document_id, number, text) VALUES (?,?,?)", pages)
        for batch in chunks:
            db.executemany(
                "INSERT INTO chunks(vector_id, id, document_id, ordinal, page, start, end, text, tokens, embedding,"
                " words) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (*r[:9], None if r[10] is None else np.asarray(r[10], dtype=np.float32).tobytes(), r[11])
                    for r in batch
                ],
            )
            db.executemany("INSERT INTO chunk_terms(rowid, terms) VALUES (?, ?)", [(r[0], r[9]) for r in batch])
        store._bump_vectors_version(db)  # the FAISS file is rebuilt from the copied vectors
    store.save_index()


def write_pg(store: PgVectorStore, docs, pages, chunks) -> dict[str, float]:
    """Bulk-load rows into an empty pgvector library (binary COPY, indexes built once afterwards); the seconds
    spent on rows, indexes and VACUUM."""
    return store.bulk_load(docs, pages, chunks)


# ---- the command -----------------------------------------------------------------------------------------
def migrate(source: Store, target: Store, *, sample_queries: int = 50, k: int = 10) -> MigrationReport:
    """Copy ``source`` into the empty ``target`` (opened with the same embedding model), then verify."""
    if target.counts()["documents"]:
        raise DocQAError("The migration target already holds documents; migrate into an empty library or database.")
    if (source.embedder_name, source.dimension) != (target.embedder_name, target.dimension):
        raise DocQAError("Source and target must be opened with the same embedding model.")
    started = time.monotonic()
    if isinstance(source, LibraryStore):
        docs, pages, chunks = sqlite_rows(source.db_path)
    else:
        docs, pages, chunks = _pg_rows(source)  # type: ignore[arg-type]
    if isinstance(target, LibraryStore):
        _write_sqlite(target, docs, pages, chunks)
        direction = "pgvector → sqlite"
    else:
        write_pg(target, docs, pages, chunks)  # type: ignore[arg-type]
        direction = "sqlite → pgvector"
    report = MigrationReport(direction, source.counts(), target.counts(), round(time.monotonic() - started, 1))
    compare_search(source, target, report, sample_queries, k)
    return report


class _VectorEncoder:
    """Retrieval's query encoder for the check: the query vectors are made from stored embeddings."""

    def __init__(self, vectors: dict[str, np.ndarray]):
        self.vectors = vectors

    def encode_query(self, text: str) -> np.ndarray:
        return self.vectors[text]


def _canonical(hits: list[tuple[int, float]]) -> list[int]:
    """Ids by score, with scores equal to 1e-5 counted as ties (ordered by id): FAISS and pgvector sum a dot
    product in different orders, so neighbours equally close can swap in the last bits."""
    return [v for v, _ in sorted(hits, key=lambda h: (-round(h[1], 5), h[0]))]


def compare_search(source: Store, target: Store, report: MigrationReport, n: int, k: int) -> None:
    """Dense, keyword and hybrid top-k of ``n`` queries, each the blend of two stored chunks (their vectors
    averaged, a few terms of each), in both stores."""
    from services.retrieval import HybridRetriever
    from services.text_zh import keyword_tokens

    chunks, vectors = source.iter_embeddings()
    if len(chunks) < 2 or n <= 0:
        return
    rng = np.random.default_rng(0)
    picks = rng.choice(len(chunks), size=(n, 2))
    queries: dict[str, np.ndarray] = {}
    for a, b in picks:
        terms_a, terms_b = keyword_tokens(chunks[a].text)[:4], keyword_tokens(chunks[b].text)[:2]
        text = " ".join(terms_a + terms_b) or chunks[a].text[:20]
        v = 0.7 * vectors[a] + 0.3 * vectors[b]
        queries[text] = (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)
    encoder = _VectorEncoder(queries)
    retrievers = [HybridRetriever(s, encoder, keyword_tokens) for s in (source, target)]
    identical: Counter[str] = Counter()
    overlap: Counter[str] = Counter()
    for text, vector in queries.items():
        lists = {
            "dense": [_canonical(s.dense_search(vector, k)) for s in (source, target)],
            "keyword": [_canonical(s.keyword_search(keyword_tokens(text), k)) for s in (source, target)],
            "hybrid": [_canonical([(p.chunk.vector_id, p.score) for p in r.search(text, k)]) for r in retrievers],
        }
        for signal, (a, b) in lists.items():
            identical[signal] += a == b
            overlap[signal] += len(set(a) & set(b)) / max(len(a), len(b)) if a or b else 1.0
    report.queries = len(queries)
    report.identical = dict(identical)
    report.overlap = {s: round(overlap[s] / len(queries), 4) for s in ("dense", "keyword", "hybrid")}


def open_pair(data_dir: Path, database_url: str, to: str) -> tuple[Store, Store]:
    """(source, target) for ``migrate --to``: the source's manifest names the embedding model for both."""
    if to == "pgvector":
        if not (Path(data_dir) / "library.sqlite3").exists():
            raise DocQAError(f"No local library in {data_dir} to migrate.")
        model, dim = _sqlite_manifest(Path(data_dir))
        return LibraryStore(data_dir, model, dim), PgVectorStore(database_url, model, dim)
    db = connect(database_url)
    try:
        manifest = dict(db.execute("SELECT key, value FROM manifest").fetchall())
    except Exception as exc:
        raise DocQAError(f"The database holds no DocQA library to migrate ({exc}).") from exc
    finally:
        db.close()
    model, dim = manifest["embedding_model"], int(manifest["embedding_dimension"])
    if (Path(data_dir) / "library.sqlite3").exists():
        existing = LibraryStore(data_dir, model, dim)
        if existing.counts()["documents"]:
            raise DocQAError(f"{data_dir} already holds a library; migrate into an empty folder (--data-dir).")
        existing.close()
    return PgVectorStore(database_url, model, dim), LibraryStore(data_dir, model, dim)


def _sqlite_manifest(data_dir: Path) -> tuple[str, int]:
    with sqlite3.connect(f"file:{data_dir / 'library.sqlite3'}?mode=ro", uri=True) as db:
        rows = dict(db.execute("SELECT key, value FROM manifest").fetchall())
    return rows["embedding_model"], int(rows["embedding_dimension"])
