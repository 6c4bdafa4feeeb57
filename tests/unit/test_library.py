"""Ingest through the library service, as the upload page and the CLI do it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.app_services import build_services
from services.config import load_settings

ROOT = Path(__file__).resolve().parents[2]

ZH_TW = (
    "颱風是台灣夏秋兩季最常見的天然災害。中央氣象署會在颱風接近時發布海上及陸上警報，"
    "提醒民眾做好防颱準備。強風豪雨可能造成土石流與淹水，山區居民應提早撤離。"
)
EN = (
    "Oolong tea is partially oxidised. Taiwan's high-mountain oolongs grow above one thousand metres, "
    "where cool air slows the growth of the leaves and concentrates their flavour."
)


@pytest.fixture
def services(tmp_path, embedder):
    settings = load_settings(data_dir=tmp_path / "lib")
    s = build_services(settings, embedder=embedder)
    yield s
    s.store.close()


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_ingest_then_search_finds_the_page(services, tmp_path):
    files = [write(tmp_path / "typhoon.txt", ZH_TW), write(tmp_path / "tea.md", "# Tea\n\n" + EN)]
    results = services.library.ingest_paths(files)
    assert [r.status for r in results] == ["added", "added"], [r.message for r in results]
    docs = {d.source: d for d in services.library.documents()}
    assert docs["typhoon.txt"].status == "ready" and docs["typhoon.txt"].script == "zh-Hant"
    hits = services.retriever.search("颱風警報由誰發布？", k=3)
    assert hits[0].chunk.source == "typhoon.txt" and hits[0].chunk.page == 1
    # Simplified query finds the Traditional document (script-normalised keywords)
    hits = services.retriever.search("台风警报", k=1)
    assert hits[0].chunk.source == "typhoon.txt"
    # English question over Chinese text works through the dense signal
    hits = services.retriever.search("typhoon warnings", k=1, dense_weight=1.0)
    assert hits[0].chunk.source == "typhoon.txt"


def test_same_content_under_another_name_or_encoding_is_a_duplicate(services, tmp_path):
    first = services.library.ingest_paths([write(tmp_path / "a.txt", ZH_TW)])
    again = services.library.ingest_paths(
        [write(tmp_path / "copy of a.txt", ZH_TW), write(tmp_path / "a-big5.txt", ZH_TW, "big5")]
    )
    assert first[0].status == "added"
    assert [r.status for r in again] == ["duplicate", "duplicate"]
    assert "a.txt" in again[0].message
    assert services.store.counts()["documents"] == 1


def test_reingesting_unchanged_files_embeds_nothing(services, tmp_path):
    f = write(tmp_path / "tea.txt", EN)
    services.library.ingest_paths([f])
    assert services.library.ingest_paths([f], embed=False)[0].status == "duplicate"
    assert services.library.embed_pending() == 0


def test_bad_file_fails_alone_with_a_message(services, tmp_path):
    good = write(tmp_path / "good.txt", EN)
    bad = tmp_path / "image.xyz"
    bad.write_bytes(b"\x89PNG\r\n")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    results = {r.source: r for r in services.library.ingest_paths([bad, good, empty])}
    assert results["good.txt"].status == "added"
    assert results["image.xyz"].status == "failed" and "not supported" in results["image.xyz"].message
    assert results["empty.txt"].status == "failed" and results["empty.txt"].message
    assert [d.source for d in services.library.documents()] == ["good.txt"]


def test_delete_removes_the_document_from_search_and_disk(services, tmp_path):
    services.library.ingest_paths([write(tmp_path / "typhoon.txt", ZH_TW), write(tmp_path / "tea.txt", EN)])
    doc = next(d for d in services.library.documents() if d.source == "typhoon.txt")
    stored_file = Path(doc.file_path)
    assert stored_file.exists()
    services.library.delete(doc.id)
    assert all(p.chunk.document_id != doc.id for p in services.retriever.search("颱風", k=5))
    assert not stored_file.exists()
    report = services.store.check_consistency()
    assert report["faiss_not_in_sqlite"] == 0 and report["embedded_not_in_faiss"] == 0


def test_folder_ingest_walks_subfolders(services, tmp_path):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    write(folder / "one.txt", EN)
    write(folder / "sub" / "two.txt", ZH_TW)
    write(folder / ".hidden.txt", "hidden")
    results = services.library.ingest_paths([folder])
    assert sorted(r.source for r in results) == ["one.txt", "two.txt"]


def _cli(*args: str, data_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_cli_contract(tmp_path):
    data = tmp_path / "cli-lib"
    a, b = write(tmp_path / "typhoon.txt", ZH_TW), write(tmp_path / "bad.xyz", "x")
    out = _cli("ingest", str(a), str(b), data_dir=data)
    assert out.returncode == 1, out.stderr
    assert "ADDED" in out.stdout and "typhoon.txt" in out.stdout and "FAILED" in out.stdout
    assert _cli("ingest", str(a), data_dir=data).returncode == 0  # duplicate counts as success
    docs = json.loads(_cli("documents", "list", "--json", data_dir=data).stdout)
    assert [d["source"] for d in docs] == ["typhoon.txt"]
    hit = json.loads(_cli("search", "颱風警報", "-k", "2", "--json", data_dir=data).stdout)["hits"][0]
    assert {"document", "source", "page", "chunk_id", "score", "text"} <= hit.keys()
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "q1", "query": "土石流"}\n{"id": "q2", "query": "防颱"}\n', encoding="utf-8")
    lines = _cli("search", "--queries", str(queries), "-k", "1", "--json", data_dir=data).stdout.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["q1", "q2"]
    assert json.loads(lines[0])["hits"][0]["source"] == "typhoon.txt"
    assert _cli("documents", "delete", docs[0]["id"], data_dir=data).returncode == 0
    assert json.loads(_cli("documents", "list", "--json", data_dir=data).stdout) == []
    missing = _cli("documents", "delete", "nope", data_dir=data)
    assert missing.returncode == 2 and "No document" in missing.stderr


@pytest.mark.slow
def test_kill_during_ingest_leaves_a_consistent_store_that_resumes(tmp_path, embedder):
    """kill -9 at random moments of an ingest, many times: the store stays consistent and finishes later."""
    data = tmp_path / "killed"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(30):
        write(corpus / f"doc{i:02}.txt", f"第{i}份文件。" + ZH_TW * 3 + f" Document number {i}. " + EN * 2)
    env = {**os.environ, "DOCQA_EMBED_BATCH_SIZE": "4"}
    for attempt, delay in enumerate([1.5, 2.0, 2.5, 3.0, 3.5, 4.0]):
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "cli.py"), "--data-dir", str(data), "ingest", "-q", str(corpus)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        doctor = _cli("doctor", data_dir=data)
        assert doctor.returncode == 0, (attempt, doctor.stdout, doctor.stderr)
    finish = _cli("ingest", "-q", str(corpus), data_dir=data)
    assert finish.returncode == 0, finish.stdout + finish.stderr
    settings = load_settings(data_dir=data)
    s = build_services(settings, embedder=embedder)
    docs = s.library.documents()
    assert len(docs) == 30 and all(d.status == "ready" for d in docs)
    report = s.store.check_consistency()
    assert report["chunks"] == report["embedded"] == report["faiss"] and report["duplicate_chunks"] == 0
