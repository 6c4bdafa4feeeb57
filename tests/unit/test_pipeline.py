"""The batch pipeline: the same records as the Library's ingest, idempotent, on both store backends."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from services.config import Settings
from services.library import Library
from services.pipeline import chunk_batch, embed_batch, parse_batch
from tests.ui.ui_helpers import HashEmbeddings

ROOT = Path(__file__).resolve().parents[2]


def load_example():
    spec = importlib.util.spec_from_file_location("batch_ingest", ROOT / "examples" / "batch_ingest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def files(tmp_path):
    out = []
    for n in range(5):
        path = tmp_path / "in" / f"doc{n}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(f"第{n}份文件第{i}句，颱風警報發布。Typhoon warning {n}-{i}.\n" for i in range(30)))
        out.append(str(path))
    (tmp_path / "in" / "bad.xyz").write_text("not supported")
    return out + [str(tmp_path / "in" / "bad.xyz")]


@pytest.fixture(params=["sqlite", "pgvector"])
def settings(request, tmp_path):
    if request.param == "sqlite":
        return Settings(data_dir=tmp_path / "lib")
    return Settings(data_dir=tmp_path / "lib", store="pgvector", database_url=request.getfixturevalue("pg_url"))


def test_example_ingests_in_parallel_and_is_idempotent(files, settings):
    from services.store_factory import open_store

    example = load_example()
    embedder = HashEmbeddings()
    store = open_store(settings, embedder.name, embedder.dimension)
    first = example.run(files, settings, embedder, store, workers=2, batch=2)
    assert sorted(r["status"] for r in first) == ["added"] * 5 + ["failed"]
    counts = store.counts()
    assert counts["documents"] == 5 and counts["embedded"] == counts["chunks"] > 5
    again = example.run(files, settings, embedder, store, workers=2, batch=3)
    assert sorted(r["status"] for r in again) == ["duplicate"] * 5 + ["failed"]
    assert store.counts() == counts and store.check_consistency()["duplicate_chunks"] == 0
    assert all(d.status == "ready" for d in store.list_documents())
    store.close()


def test_batch_records_match_the_library_ingest(files, tmp_path):
    settings = Settings(data_dir=tmp_path / "lib2")
    embedder = HashEmbeddings()
    from services.store import LibraryStore

    store = LibraryStore(settings.data_dir, embedder.name, embedder.dimension)
    Library(settings, embedder, store).ingest_paths([Path(f) for f in files[:2]])
    records = embed_batch(chunk_batch(parse_batch(files[:2], settings), settings, embedder.count_tokens), embedder)
    by_doc = {r["document_id"]: r for r in records}
    for doc in store.list_documents():
        stored = store.document_chunks(doc.id)
        assert [c.id for c in stored] == [c["id"] for c in by_doc[doc.id]["chunks"]]
        assert [c.text for c in stored] == [c["text"] for c in by_doc[doc.id]["chunks"]]
    assert all(len(r["vectors"]) == len(r["chunks"]) for r in records)
    store.close()
