"""Retrieval latency at 10k / 100k / 1M chunks, side by side with LangChain's FAISS ``similarity_search``.

The large libraries are synthesised by replicating the real DRCD chunks (text, keyword terms) with their
real embeddings plus small Gaussian noise (re-normalised), so posting lists and vector neighbourhoods look
like a real, repetitive library rather than uniform random data (approximate indexes look far worse on
uniform random vectors than on real ones). Queries are real DRCD questions.

Per size, in a fresh process (so peak memory is that size's alone): ``--repeats`` passes over the queries
for hybrid, dense-only and keyword-only retrieval and for LangChain's FAISS wrapper over the same vectors
(exact inner product); each pass gives p50/p95/p99 and the JSON keeps their median and spread. Recall@10 of
the store's dense search is measured against exact brute force over the same vectors, so an approximate index
(should the store use one) is scored; with today's exact index it is 1.0 by construction.

    .venv/bin/python bench/bench_retrieval.py --sizes 10000 100000 1000000 --queries 200 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    CACHE,
    RESULTS,
    SHARED_DATA,
    peak_rss_mb,
    percentiles_ms,
    summarise_runs,
    write_result,
)

DRCD = SHARED_DATA / "qa" / "drcd_dev.json"
RECALL_K = 10
TARGET_P95_MS = {100_000: 100.0, 1_000_000: 300.0}


def base_store() -> Path:
    """A store holding the DRCD dev paragraphs (built once, reused)."""
    from services.embeddings import E5Embeddings
    from services.evaluate import prepare_eval_store

    path = CACHE / "drcd-base"
    prepare_eval_store(DRCD, path, embedder=E5Embeddings())
    return path


def synthesise(base: Path, size: int, seed: int = 0) -> Path:
    """A library of ``size`` chunks made of noisy replicas of the base chunks (built once per size)."""
    from services.store import LibraryStore

    target = CACHE / f"synth-{size}"
    done = target / "SYNTH_OK"
    if done.exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    src = sqlite3.connect(base / "library.sqlite3")
    rows = src.execute(
        "SELECT c.vector_id, c.text, c.embedding, t.terms FROM chunks c JOIN chunk_terms t ON t.rowid = c.vector_id"
        " WHERE c.embedding IS NOT NULL ORDER BY c.vector_id"
    ).fetchall()
    model = dict(src.execute("SELECT key, value FROM manifest"))
    src.close()
    store = LibraryStore(target, model["embedding_model"], int(model["embedding_dimension"]))
    store.close()
    db = sqlite3.connect(target / "library.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")  # a cache we can rebuild: durability is not the point here
    rng = np.random.default_rng(seed)
    base_vecs = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
    n_base = len(rows)
    vid = 0
    replica = 0
    db.execute("BEGIN")
    while vid < size:
        doc_id = f"r{replica}"
        db.execute(
            "INSERT INTO documents(id, source, kind, title, pages, chunks, script, status, added_at)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (doc_id, f"replica-{replica}.txt", "txt", doc_id, 1, 0, "zh-Hant", "ready", "2026-01-01T00:00:00"),
        )
        take = min(n_base, size - vid)
        noise = rng.normal(scale=0.015, size=(take, base_vecs.shape[1])).astype(np.float32)
        vecs = base_vecs[:take] + noise
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        ids = range(vid + 1, vid + take + 1)
        db.executemany(
            "INSERT INTO chunks(vector_id, id, document_id, ordinal, page, start, end, text, tokens, embedding)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                (v, f"{doc_id}-{i}", doc_id, i, 1, 0, len(rows[i][1]), rows[i][1], 0, vecs[i].tobytes())
                for i, v in enumerate(ids)
            ),
        )
        db.executemany(
            "INSERT INTO chunk_terms(rowid, terms) VALUES (?, ?)", ((v, rows[i][3]) for i, v in enumerate(ids))
        )
        vid += take
        replica += 1
        if replica % 20 == 0:
            db.execute("COMMIT")
            db.execute("BEGIN")
    db.execute("UPDATE manifest SET value='1' WHERE key='vectors_version'")
    db.execute("COMMIT")
    db.execute("INSERT INTO chunk_terms(chunk_terms) VALUES('optimize')")
    db.close()
    done.write_text(str(size))
    return target


def questions(n: int) -> list[str]:
    from services.evaluate import load_squad

    qs = [q.question for p in load_squad(DRCD) for q in p.questions]
    step = max(len(qs) // n, 1)
    return qs[::step][:n]


def index_kind(store) -> str:
    """``IndexIDMap2(IndexFlatIP)`` and the like: says whether the store's dense search is exact."""
    import faiss

    load = getattr(store, "_ensure_index", None)  # FAISS store only; another backend names itself
    if load is None:
        return type(store).__name__
    index = load()
    name = type(index).__name__
    inner = getattr(index, "index", None)
    if inner is not None:
        return f"{name}({type(faiss.downcast_index(inner)).__name__})"
    return name


def stored_vectors(db_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every stored vector id and embedding, straight from SQLite: the ground truth exact search runs on."""
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute("SELECT vector_id, embedding FROM chunks WHERE embedding IS NOT NULL ORDER BY vector_id")
        ids, blobs = [], []
        for vid, blob in rows:
            ids.append(vid)
            blobs.append(blob)
    finally:
        db.close()
    matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), -1)
    return np.asarray(ids, dtype=np.int64), matrix


def exact_top_k(matrix: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> set[int]:
    scores = matrix @ query
    top = np.argpartition(-scores, k)[:k]
    return set(ids[top].tolist())


def timed_passes(run_query, n_queries: int, repeats: int) -> dict:
    passes = []
    for _ in range(repeats):
        samples = []
        for i in range(n_queries):
            started = time.perf_counter()
            run_query(i)
            samples.append(time.perf_counter() - started)
        passes.append(percentiles_ms(samples))
    return summarise_runs(passes)


def measure(store_dir: Path, queries: list[str], repeats: int, k: int = 10) -> dict:
    """Latency of our hybrid retrieval (and each signal) vs LangChain FAISS on the same vectors."""
    from services.app_services import build_services
    from services.config import load_settings

    started = time.perf_counter()
    services = build_services(load_settings(data_dir=store_dir))
    services.store.dense_search(services.embedder.encode_query("warm up"), 1)  # loads the index, as at start
    open_s = time.perf_counter() - started
    # Embedding the question is timed on its own (it does not depend on the library's size): a user waits for
    # it plus the retrieval figures below.
    embed_samples, qvecs = [], []
    for q in queries:
        started = time.perf_counter()
        qvecs.append(services.embedder.encode_query(q))
        embed_samples.append(time.perf_counter() - started)
    retriever = services.retriever
    results: dict = {
        "chunks": services.store.counts()["chunks"],
        "open_seconds": round(open_s, 2),
        "index": index_kind(services.store),
        "query_embedding": percentiles_ms(embed_samples),
    }

    class PrecomputedQueries:
        """Stands in for the embedder: each query's vector was computed above."""

        current = 0

        def encode_query(self, text):
            return qvecs[self.current]

    precomputed = PrecomputedQueries()
    retriever.encoder = precomputed

    def retrieve(weight):
        def one(i):
            precomputed.current = i
            retriever.search(queries[i], k, dense_weight=weight)

        return one

    retriever.search(queries[0], k)  # first-query costs (FTS pages, index pages) belong to opening
    for name, weight in (("hybrid", None), ("dense_only", 1.0), ("keyword_only", 0.0)):
        results[name] = timed_passes(retrieve(weight), len(queries), repeats)
    results["peak_rss_mb"] = peak_rss_mb()  # ours only: LangChain's copy below is not the product's memory

    ids, matrix = stored_vectors(store_dir / "library.sqlite3")
    hits = []
    for q in qvecs:
        found = {vid for vid, _ in services.store.dense_search(q, RECALL_K)}
        hits.append(len(found & exact_top_k(matrix, ids, q, RECALL_K)) / RECALL_K)
    results[f"recall_at_{RECALL_K}_vs_exact"] = round(float(np.mean(hits)), 4)

    try:
        results["langchain_faiss_similarity_search"] = langchain_latency(services, ids, matrix, qvecs, k, repeats)
    except ImportError as exc:
        results["langchain_faiss_similarity_search"] = f"not measured: {exc}"
    results["peak_rss_mb_with_langchain_copy"] = peak_rss_mb()
    disk = sum(f.stat().st_size for f in store_dir.iterdir() if f.is_file())
    results["disk_mb"] = round(disk / 1e6, 1)
    results["disk_mb_per_100k"] = round(disk / 1e6 / results["chunks"] * 100_000, 1)
    return results


def langchain_latency(services, ids, matrix, qvecs, k: int, repeats: int) -> dict:
    """LangChain's FAISS wrapper (exact inner product, like ours) holding the same vectors and texts."""
    import warnings

    import faiss

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS as LangChainFAISS
    from langchain_core.documents import Document

    index = faiss.IndexFlatIP(matrix.shape[1])
    index.add(matrix)
    db = sqlite3.connect(services.settings.db_path)
    texts = dict(db.execute("SELECT vector_id, text FROM chunks WHERE embedding IS NOT NULL"))
    db.close()
    keys = [str(v) for v in ids.tolist()]
    docstore = InMemoryDocstore({key: Document(page_content=texts[int(key)]) for key in keys})
    del texts
    lc = LangChainFAISS(services.embedder, index, docstore, dict(enumerate(keys)))
    query_lists = [q.tolist() for q in qvecs]
    return timed_passes(lambda i: lc.similarity_search_by_vector(query_lists[i], k=k), len(qvecs), repeats)


def targets(sizes: dict) -> list[dict]:
    out = []
    for size, limit in TARGET_P95_MS.items():
        result = sizes.get(str(size))
        if not result:
            continue
        p95 = result["hybrid"]["p95_ms"]["median"]
        out.append(
            {
                "name": f"hybrid retrieval p95 at {size:,} chunks",
                "target": f"< {limit:g} ms",
                "value": p95,
                "unit": "ms",
                "met": p95 < limit,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the queries per signal")
    parser.add_argument("--merge", action="store_true", help="keep the other sizes already in the output file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one store in this process
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(Path(args.one), questions(args.queries), args.repeats)))
        return
    base = base_store()
    sizes: dict = {}
    out_path = args.out or RESULTS / "retrieval.json"
    if args.merge and out_path.exists():  # a size measured in another run (1M takes long) stays in the table
        sizes = json.loads(out_path.read_text(encoding="utf-8")).get("sizes", {})
    for size in args.sizes:
        started = time.perf_counter()
        store = synthesise(base, size)
        build_s = time.perf_counter() - started
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                str(store),
                "--queries",
                str(args.queries),
                "--repeats",
                str(args.repeats),
            ],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            sys.stderr.write(out.stderr[-4000:])
            raise SystemExit(f"measuring {size} chunks failed ({out.returncode})")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["synthesis_seconds"] = round(build_s, 1)  # 0 when reused from bench/.cache
        result["queries"], result["repeats"] = args.queries, args.repeats
        sizes[str(size)] = result
        print(json.dumps({size: result}), flush=True)
    report = {
        "settings": {"queries": args.queries, "repeats": args.repeats, "k": 10, "recall_k": RECALL_K},
        "sizes": dict(sorted(sizes.items(), key=lambda kv: int(kv[0]))),
        "targets": targets(sizes),
    }
    print(write_result("retrieval", report, out_path))


if __name__ == "__main__":
    main()
