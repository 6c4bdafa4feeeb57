"""Several app processes against one PostgreSQL library: nothing lost or stored twice, deletes seen at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from services.store_pg import PgVectorStore
from tests.unit.test_store_contract import DIM, add_doc, embed_all

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_ingesting_the_same_files_store_them_once(tmp_path, pg_url):
    files = []
    for n in range(4):
        path = tmp_path / f"doc{n}.txt"
        path.write_text("".join(f"第{n}份文件，第{i}句：颱風警報發布。Typhoon warning {n}-{i}.\n" for i in range(60)))
        files.append(str(path))
    start_at = time.time() + 4  # both workers are up (imports done) before either starts ingesting
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.ingest_worker", pg_url, str(tmp_path / f"app{w}"), str(start_at)]
            + files,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(2)
    ]
    outputs = [w.communicate(timeout=180) for w in workers]
    for w, (_out, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
    statuses = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    for n in range(len(files)):  # each file: added by exactly one worker, a duplicate for the other
        assert sorted(s[n] for s in statuses) == ["added", "duplicate"], statuses
    store = PgVectorStore(pg_url, "test/hash-bigrams", 64)
    report = store.check_consistency()
    assert report["duplicate_chunks"] == 0 and report["terms_mismatch"] == 0
    docs = store.list_documents()
    assert len(docs) == len(files) and all(d.status == "ready" for d in docs)
    assert report["chunks"] == report["embedded"] == sum(d.chunks for d in docs)
    store.close()


def test_concurrent_adds_of_one_document_insert_it_once(pg_url):
    stores = [PgVectorStore(pg_url, "fake-model", DIM) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[bool] = []

    def add(store: PgVectorStore) -> None:
        barrier.wait()
        outcomes.append(add_doc(store, "same", [f"chunk number {i}" for i in range(50)]))

    threads = [threading.Thread(target=add, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [False, False, False, True]
    assert stores[0].counts()["chunks"] == 50 and stores[0].check_consistency()["terms_mismatch"] == 0
    for s in stores:
        s.close()


def test_delete_is_visible_to_another_server_at_once(pg_url):
    a, b = PgVectorStore(pg_url, "fake-model", DIM), PgVectorStore(pg_url, "fake-model", DIM)
    add_doc(a, "x", ["typhoon warning", "night market"])
    vectors = embed_all(a)
    q = next(iter(vectors.values()))
    assert b.dense_search(q, 5) and b.keyword_search(["typhoon"], 5)  # b sees a's writes
    a.delete_document("x")
    assert b.dense_search(q, 5) == [] and b.keyword_search(["typhoon"], 5) == []
    assert b.get_chunks(list(vectors)) == [] and b.has_document("x") is None
    a.close()
    b.close()


def test_embedding_racing_a_delete_neither_deadlocks_nor_resurrects(pg_url):
    a, b = PgVectorStore(pg_url, "fake-model", DIM), PgVectorStore(pg_url, "fake-model", DIM)
    for d in range(10):
        add_doc(a, f"d{d}", [f"text {d} {i}" for i in range(20)])
    pending = a.pending_chunks(1000)
    ids = [vid for vid, _ in pending]
    errors: list[BaseException] = []

    def embed() -> None:
        try:
            a.set_embeddings(ids, np.ones((len(ids), DIM), dtype=np.float32) / np.sqrt(DIM))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def delete() -> None:
        try:
            for d in range(0, 10, 2):
                b.delete_document(f"d{d}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=embed), threading.Thread(target=delete)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(d.id for d in a.list_documents()) == [f"d{d}" for d in range(1, 10, 2)]
    report = a.check_consistency()
    assert report["chunks"] == 100 and report["terms_mismatch"] == 0
    a.close()
    b.close()
