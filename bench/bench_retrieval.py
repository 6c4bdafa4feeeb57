"""Retrieval latency at 10k / 100k / 1M chunks, side by side with LangChain's FAISS ``similarity_search``.

The large libraries are synthesised by replicating the real DRCD chunks (text, keyword terms) with their
real embeddings plus small Gaussian noise (re-normalised), so posting lists and vector neighbourhoods look
like a real, repetitive library rather than uniform random data. Queries are real DRCD questions.

    .venv/bin/python bench/bench_retrieval.py --sizes 10000 100000 [1000000] --queries 200
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = ROOT / "bench" / ".cache"
DRCD = ROOT.parent / "shared" / "data" / "qa" / "drcd_dev.json"


def percentiles(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
    }


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
    db.execute("PRAGMA synchronous=OFF")
    rng = np.random.default_rng(seed)
    base_vecs = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
    n_base = len(rows)
    vid = 0
    db.execute("BEGIN")
    replica = 0
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
        for i in range(take):
            vid += 1
            _, text, _, terms = rows[i]
            db.execute(
                "INSERT INTO chunks(vector_id, id, document_id, ordinal, page, start, end, text, tokens, embedding)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (vid, f"{doc_id}-{i}", doc_id, i, 1, 0, len(text), text, 0, vecs[i].tobytes()),
            )
            db.execute("INSERT INTO chunk_terms(rowid, terms) VALUES (?, ?)", (vid, terms))
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


def measure(store_dir: Path, queries: list[str], k: int = 10) -> dict:
    """Latency of our hybrid retrieval (and each signal) vs LangChain FAISS on the same vectors."""
    from services.app_services import build_services
    from services.config import load_settings

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    services = build_services(load_settings(data_dir=store_dir))
    services.store.dense_search(services.embedder.encode_query("warm up"), 1)  # loads / builds the index
    open_s = time.perf_counter() - t
    qvecs = [services.embedder.encode_query(q) for q in queries]  # the embedder is not what we time
    retriever = services.retriever
    results: dict = {"chunks": services.store.counts()["chunks"], "open_seconds": round(open_s, 2)}

    class Cached:
        def __init__(self):
            self.i = 0

        def encode_query(self, text):
            return qvecs[self.i]

    cached = Cached()
    retriever.encoder = cached
    for name, weight in (("hybrid", None), ("dense_only", 1.0), ("keyword_only", 0.0)):
        samples = []
        for i, q in enumerate(queries):
            cached.i = i
            t = time.perf_counter()
            retriever.search(q, k, dense_weight=weight)
            samples.append(time.perf_counter() - t)
        results[name] = percentiles(samples)
    # LangChain's FAISS wrapper over the same vectors (exact inner product, like ours)
    try:
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS as LCFAISS
        from langchain_core.documents import Document

        chunks, vectors = services.store.iter_embeddings()
        import faiss

        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        ids = [str(c.vector_id) for c in chunks]
        docstore = InMemoryDocstore({i: Document(page_content=c.text) for i, c in zip(ids, chunks, strict=True)})
        lc = LCFAISS(services.embedder, index, docstore, dict(enumerate(ids)))
        samples = []
        for i, _q in enumerate(queries):
            t = time.perf_counter()
            lc.similarity_search_by_vector(qvecs[i].tolist(), k=k)
            samples.append(time.perf_counter() - t)
        results["langchain_faiss_similarity_search"] = percentiles(samples)
        del lc, index, docstore, chunks, vectors
    except ImportError as exc:
        results["langchain_faiss_similarity_search"] = f"not measured: {exc}"
    results["peak_rss_mb"] = round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024, 1)
    disk = sum(f.stat().st_size for f in store_dir.iterdir() if f.is_file())
    results["disk_mb"] = round(disk / 1e6, 1)
    results["disk_mb_per_100k"] = round(disk / 1e6 / results["chunks"] * 100_000, 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one store in this process
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "retrieval.json"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(Path(args.one), questions(args.queries))))
        return
    base = base_store()
    report = {"machine": f"{os.cpu_count()} cores", "queries": args.queries, "sizes": {}}
    for size in args.sizes:
        t = time.perf_counter()
        store = synthesise(base, size)
        build_s = time.perf_counter() - t
        # A fresh process per size, so peak memory is that size's alone.
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(store), "--queries", str(args.queries)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["synthesis_seconds"] = round(build_s, 1)
        report["sizes"][str(size)] = result
        print(json.dumps({size: result}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
