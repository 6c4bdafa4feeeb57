"""Ingest a folder with the pipeline's batch functions, several batches at a time, on one machine.

The same four functions run on a cluster unchanged (README, "Scale out with PostgreSQL"): here a thread pool
plays the part of Ray Data's ``map_batches`` or Spark's ``mapPartitions``. Parsing already runs in sandboxed
child processes, so threads are enough to keep several CPUs busy.

    python examples/batch_ingest.py FOLDER [--workers 2] [--batch 16]
    DOCQA_STORE=pgvector DOCQA_DATABASE_URL=postgresql://... python examples/batch_ingest.py FOLDER

Running it twice stores nothing new: every record is keyed by its content id.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.config import Settings, load_settings  # noqa: E402
from services.library import expand_paths  # noqa: E402
from services.pipeline import chunk_batch, embed_batch, parse_batch, write_batch  # noqa: E402
from services.store_api import Store  # noqa: E402


def ingest_batch(paths: list[str], settings: Settings, embedder, store: Store) -> list[dict]:
    """One batch through every stage: what a Ray or Spark worker would run on its share."""
    parsed = parse_batch(paths, settings)
    documents = chunk_batch(parsed, settings, embedder.count_tokens)
    documents = embed_batch(documents, embedder, settings.embed_batch_size)
    return write_batch(store, documents)


def run(paths: list[str], settings: Settings, embedder, store: Store, *, workers: int = 2, batch: int = 16) -> list:
    batches = [paths[i : i + batch] for i in range(0, len(paths), batch)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = pool.map(lambda b: ingest_batch(b, settings, embedder, store), batches)
        return [result for results in done for result in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)

    from services.embeddings import make_embedder
    from services.store_factory import open_store

    settings = load_settings(data_dir=Path(args.data_dir) if args.data_dir else None)
    embedder = make_embedder(settings.embedder)
    store = open_store(settings, embedder.name, embedder.dimension)
    paths = [str(p) for p in expand_paths([Path(args.folder)])]
    results = run(paths, settings, embedder, store, workers=args.workers, batch=args.batch)
    print(json.dumps({"files": len(paths), **Counter(r["status"] for r in results), "counts": store.counts()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
