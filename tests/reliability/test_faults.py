"""Faults: a killed server, a damaged vector index, a full disk, a broken LLM endpoint, racing sessions.

After each, the store must be consistent (every chunk in FAISS is in SQLite and the reverse, no duplicate
chunks, keyword rows match chunks), the user must get a message, and the app must keep working.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.app_services import AppServices
from services.errors import DocQAError, DocumentNotFound, StorageFull
from services.store import LibraryStore
from tests.helpers.fake_openai_server import FakeOpenAIServer
from tests.reliability.conftest import close_services, open_services
from tests.ui.ui_helpers import HashEmbeddings, button, start_app, unescape, wait_idle

ROOT = Path(__file__).resolve().parents[2]
TEA = "Green tea is heated soon after picking, which stops oxidation. Oolong tea is partly oxidised and rolled."
TYPHOON = "颱風季節從六月開始，中央氣象署會發布颱風警報。強風豪雨可能造成土石流與淹水，山區居民應提早撤離。"


def assert_consistent(store: LibraryStore, *, all_embedded: bool = False) -> dict[str, int]:
    report = store.check_consistency()
    assert report["faiss_not_in_sqlite"] == 0, report
    assert report["embedded_not_in_faiss"] == 0, report
    assert report["terms_mismatch"] == 0, report
    assert report["duplicate_chunks"] == 0, report
    db = store._read()
    orphans = db.execute(
        "SELECT (SELECT COUNT(*) FROM pages WHERE document_id NOT IN (SELECT id FROM documents))"
        " + (SELECT COUNT(*) FROM chunks WHERE document_id NOT IN (SELECT id FROM documents))"
    ).fetchone()[0]
    assert orphans == 0, "pages or chunks of deleted documents were left behind"
    for doc in store.list_documents():
        actual = db.execute("SELECT COUNT(*) FROM chunks WHERE document_id=?", (doc.id,)).fetchone()[0]
        assert actual == doc.chunks, (doc.source, actual, doc.chunks)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    if all_embedded:
        assert report["chunks"] == report["embedded"] == report["faiss"], report
    return report


def open_store(data_dir: Path) -> LibraryStore:
    return LibraryStore(data_dir, HashEmbeddings.name, HashEmbeddings.dimension)


# --- kill -9 of a background ingest -----------------------------------------------------------------------------


def _background(data_dir: Path, *files: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.background_ingest", str(data_dir), *map(str, files)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.slow
def test_kill_9_of_the_background_ingest_in_a_loop(tmp_path: Path) -> None:
    """A server killed at random moments of reading and embedding: consistent every time, and a restart
    finishes the embeddings by itself; re-uploading everything then adds what was never read, once."""
    data_dir = tmp_path / "library"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    files = []
    # Enough embedding work (~150 chunks) that it outlasts the first kills: with parsing overlapping the
    # embedder, 12 files were all embedded before the second kill and no kill met pending embeddings.
    for i in range(36):
        path = corpus / f"doc{i:02}.txt"
        path.write_text(f"第{i}份文件。{TYPHOON * 12}\n\nDocument {i}. {TEA * 12}", encoding="utf-8")
        files.append(path)
    rng = random.Random(5)
    pending_seen = 0
    for attempt in range(7):
        # After each crash the user uploads again what is not in the library yet.
        stored = {d["source"] for d in _documents(data_dir)}
        proc = _background(data_dir, *[f for f in files if f.name not in stored])
        time.sleep(rng.uniform(1.0, 6.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        store = open_store(data_dir)
        try:
            assert_consistent(store)
            assert all(d.status != "failed" for d in store.list_documents())
            pending_seen += bool(store.pending_count())
        finally:
            store.close()
        print(f"kill {attempt}: {store_counts(data_dir)}")
    assert pending_seen, "no kill landed while embedding was unfinished: the loop tests nothing"

    resume = _background(data_dir)  # a restart with nothing new submitted
    out, _ = resume.communicate(timeout=300)
    assert resume.returncode == 0, out
    store = open_store(data_dir)
    try:
        assert store.pending_count() == 0
        assert all(d.status == "ready" for d in store.list_documents())
        assert_consistent(store, all_embedded=True)
    finally:
        store.close()

    again = _background(data_dir, *files)  # the user uploads the whole folder again
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    store = open_store(data_dir)
    try:
        docs = store.list_documents()
        assert sorted(d.source for d in docs) == sorted(f.name for f in files)
        assert all(d.status == "ready" for d in docs)
        assert_consistent(store, all_embedded=True)
    finally:
        store.close()


def _documents(data_dir: Path) -> list[dict]:
    if not (data_dir / "library.sqlite3").exists():
        return []
    store = open_store(data_dir)
    try:
        return [d.to_dict() for d in store.list_documents()]
    finally:
        store.close()


def store_counts(data_dir: Path) -> dict[str, int]:
    store = open_store(data_dir)
    try:
        return {**store.counts(), "pending": store.pending_count()}
    finally:
        store.close()


# --- the FAISS file deleted or damaged between runs -------------------------------------------------------------


@pytest.fixture
def built_library(app_data_dir: Path) -> Path:
    services = open_services(app_data_dir)
    src = app_data_dir.parent / "src"
    src.mkdir()
    (src / "tea.txt").write_text(TEA)
    (src / "typhoon.txt").write_text(TYPHOON, encoding="utf-8")
    assert [r.status for r in services.library.ingest_paths(sorted(src.iterdir()))] == ["added", "added"]
    services.store.save_index()
    close_services(services)
    return app_data_dir


@pytest.mark.parametrize("damage", ["deleted", "garbage", "truncated", "description deleted"])
def test_a_damaged_vector_index_is_rebuilt_and_the_app_says_so(built_library: Path, damage: str) -> None:
    index = built_library / "vectors.faiss"
    if damage == "deleted":
        index.unlink()
    elif damage == "garbage":
        index.write_bytes(os.urandom(4096))
    elif damage == "truncated":
        index.write_bytes(index.read_bytes()[:100])
    else:
        (built_library / "vectors.faiss.json").unlink()
    at = start_app()
    notices = [unescape(i.value) for i in at.info]
    assert any("vector index was damaged" in n and "rebuilt from the library" in n for n in notices), notices
    from components.resources import get_services

    services = get_services()
    hits = services.retriever.search("oxidation green tea", k=1, dense_weight=1.0)
    assert hits and hits[0].chunk.source == "tea.txt"
    assert_consistent(services.store, all_embedded=True)
    at.switch_page("pages/chat.py").run()  # the Ask page shows it too, and answers
    assert any("rebuilt" in unescape(i.value) for i in at.info)
    at.chat_input[0].set_value("What stops oxidation in green tea?").run()
    assert not at.exception
    assert at.session_state["chat_messages"][-1]["answer"].citations


def test_a_new_library_shows_no_repair_notice(app_data_dir: Path) -> None:
    """Building the index for the first time (or after this process's own writes) is not damage."""
    at = start_app()
    button(at, "Load sample documents").click()
    at.run()
    wait_idle(at)
    at.run()
    assert not [i.value for i in at.info if "rebuilt" in i.value]
    from components.resources import get_services

    docs = get_services().library.documents()
    get_services().library.delete(docs[0].id)  # a delete before any search loaded the index
    at.run()
    assert not [i.value for i in at.info if "rebuilt" in i.value]


# --- disk full ------------------------------------------------------------------------------------------------


def _fill(path: Path) -> Path:
    """Write zeros until the filesystem is full; returns the filler file (delete it to free the space)."""
    filler = path / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = bytes(1 << 16)
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (needs root; skipped elsewhere): a disk that really fills up, SQLite included."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root; the monkeypatched disk-full tests still run")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"could not mount a tmpfs: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_gives_messages_and_corrupts_nothing(tiny_disk: Path, tmp_path: Path) -> None:
    services = open_services(tiny_disk / "library")
    src = tmp_path / "src"
    src.mkdir()
    first, pending, late = src / "rivers.txt", src / "tea.txt", src / "typhoon.txt"
    first.write_text("Rivers carry sediment to the sea. " * 40)
    pending.write_text(TEA * 40)
    late.write_text(TYPHOON * 200, encoding="utf-8")
    try:
        assert services.library.ingest_paths([first])[0].status == "added"
        assert services.library.ingest_paths([pending], embed=False)[0].status == "added"  # vectors to come
        filler = _fill(tiny_disk)

        # 1. a new file cannot even be copied: it fails alone, with a message
        (result,) = services.library.ingest_paths([late], embed=False)
        assert result.status == "failed"
        assert result.message == (
            "typhoon.txt could not be saved: the disk holding the library is full; free some space and add it again."
        )
        assert not [p for p in (tiny_disk / "library" / "files").iterdir() if p.name.startswith(".")]  # no half copy
        # 2. the copy exists but the database cannot grow (re-reading a stored original)
        (result,) = services.library.ingest_file(late, keep_copy=False)
        assert result.status == "failed" and "is full, so nothing was saved" in result.message, result.message
        # 3. embedding the pending passages cannot store its vectors
        with pytest.raises(StorageFull) as caught:
            services.library.embed_pending()
        assert "Free some space and try again" in caught.value.message
        # Nothing was damaged: still consistent, still searchable.
        assert_consistent(services.store)
        assert {d.source for d in services.library.documents()} == {"rivers.txt", "tea.txt"}
        assert services.retriever.search("sediment rivers", k=1)[0].chunk.source == "rivers.txt"
        assert services.retriever.search("oolong rolled", k=1, dense_weight=0.0)[0].chunk.source == "tea.txt"

        filler.unlink()  # the user frees space: everything carries on
        assert services.library.embed_pending() > 0
        assert services.library.ingest_paths([late])[0].status == "added"
        assert_consistent(services.store, all_embedded=True)
    finally:
        close_services(services)
    reopened = open_store(tiny_disk / "library")
    try:
        assert reopened.notices == [] or all("rebuilt" in n for n in reopened.notices)
        assert_consistent(reopened, all_embedded=True)
        assert len(reopened.list_documents()) == 3
    finally:
        reopened.close()


def test_a_full_disk_while_saving_the_vector_index_keeps_the_old_file(
    fast_services: AppServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.store

    (tmp_path / "a.txt").write_text(TEA)
    fast_services.library.ingest_paths([tmp_path / "a.txt"])
    index_bytes = fast_services.store.faiss_path.read_bytes()

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(services.store, "atomic_write_bytes", full)
    (tmp_path / "b.txt").write_text(TYPHOON, encoding="utf-8")
    assert fast_services.library.ingest_paths([tmp_path / "b.txt"])[0].status == "added"  # no exception
    assert fast_services.store.faiss_path.read_bytes() == index_bytes  # the old index is intact
    assert_consistent(fast_services.store, all_embedded=True)  # the in-memory index has everything
    monkeypatch.undo()
    again = open_store(fast_services.settings.data_dir)
    try:
        assert again.notices == []  # an index behind the library is rebuilt quietly: nothing was lost
        assert_consistent(again, all_embedded=True)
        assert again.check_consistency()["faiss"] == fast_services.store.check_consistency()["faiss"]
    finally:
        again.close()


def test_a_full_disk_while_saving_an_upload_tells_the_user(app_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import components.uploader

    def full(src: object, dst: object, length: int = 0) -> None:
        dst.write(b"partial")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    at = start_app()
    monkeypatch.setattr(components.uploader.shutil, "copyfileobj", full)
    at.file_uploader[0].set_value([("notes.txt", b"Rivers drain their watersheds.", "text/plain")])
    at.run()
    button(at, "Add 1 file to the library").click()
    at.run()
    assert not at.exception
    errors = [unescape(e.value) for e in at.error]
    assert "The uploads could not be saved on the server (No space left on device)." in errors, errors
    assert not list((app_data_dir / "incoming").iterdir())  # the partial copy was removed
    monkeypatch.undo()
    from components.resources import get_services

    assert get_services().ingest_queue.jobs() == []  # nothing was queued


# --- the LLM endpoint down, slow, or talking nonsense -----------------------------------------------------------


def _dead_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


@pytest.mark.parametrize("failure", ["down", "slow", "garbage", "http 500"])
def test_the_chat_page_falls_back_to_quotes_when_the_llm_fails(
    app_data_dir: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    server = None
    if failure == "down":
        base_url = f"http://127.0.0.1:{_dead_port()}/v1"
    else:
        mode = {"slow": "slow", "garbage": "garbage", "http 500": "error"}[failure]
        server = FakeOpenAIServer(mode=mode, delay_s=30).start()
        base_url = server.base_url
    monkeypatch.setenv("DOCQA_LLM_PROVIDER", "openai")
    monkeypatch.setenv("DOCQA_LLM_BASE_URL", base_url)
    monkeypatch.setenv("DOCQA_LLM_MODEL", "test-model")
    monkeypatch.setenv("DOCQA_LLM_API_KEY", "sk-test")
    monkeypatch.setenv("DOCQA_LLM_TIMEOUT_S", "2")
    try:
        services = open_services(app_data_dir)
        (app_data_dir.parent / "tea.txt").write_text(TEA)
        services.library.ingest_paths([app_data_dir.parent / "tea.txt"])
        close_services(services)
        at = start_app()
        at.switch_page("pages/chat.py").run()
        assert [s.value for s in at.sidebar.selectbox if s.label == "LLM backend"] == ["openai"]
        started = time.monotonic()
        at.chat_input[0].set_value("What stops oxidation in green tea?").run(timeout=60)
        elapsed = time.monotonic() - started
        assert not at.exception, at.exception
        answer = at.session_state["chat_messages"][-1]["answer"]
        assert answer.mode == "extractive" and answer.citations, answer
        notices = [unescape(i.value) for i in at.chat_message[1].info]
        assert any("showing quoted passages instead" in n for n in notices), notices
        assert any("Quoted passages" in c.value for c in at.chat_message[1].caption)
        assert "stops oxidation" in answer.text
        print(f"\nLLM {failure}: extractive fallback after {elapsed:.1f} s; notice: {notices[0]}")
        assert elapsed < 25
    finally:
        if server is not None:
            server.stop()


# --- two sessions ingesting and deleting at the same time -------------------------------------------------------


def test_sessions_ingesting_and_deleting_at_once_stay_consistent(tmp_path: Path) -> None:
    """One server's shared services used by two sessions, plus a second process's services on the same
    library: uploads, deletes and searches interleave for a few seconds."""
    data_dir = tmp_path / "library"
    shared, other = open_services(data_dir), open_services(data_dir)
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for i in range(8):
        path = src / f"note{i}.txt"
        path.write_text(f"Note {i}. " + TEA * (1 + i % 3) + " " + TYPHOON, encoding="utf-8")
        files.append(path)
    stop = time.monotonic() + 4.0
    errors: list[BaseException] = []
    deleted = [0]

    def guard(fn):
        def run() -> None:
            try:
                while time.monotonic() < stop:
                    fn()
            except BaseException as exc:  # reported below
                import traceback

                traceback.print_exc()
                errors.append(exc)

        return run

    rng = random.Random(11)

    def upload(services: AppServices) -> None:
        results = services.library.ingest_paths([rng.choice(files)])
        assert all(r.status in ("added", "duplicate") for r in results), [r.message for r in results]

    def delete(services: AppServices) -> None:
        docs = services.library.documents()
        if docs:
            try:
                services.library.delete(rng.choice(docs).id)
                deleted[0] += 1
            except DocumentNotFound:
                pass  # the other session deleted it first: the user sees "No document ..."
        time.sleep(0.01)

    def search(services: AppServices) -> None:
        services.retriever.search("oxidation typhoon", k=5)

    workers = [
        threading.Thread(target=guard(lambda: upload(shared))),
        threading.Thread(target=guard(lambda: upload(other))),
        threading.Thread(target=guard(lambda: delete(shared))),
        threading.Thread(target=guard(lambda: delete(other))),
        threading.Thread(target=guard(lambda: search(shared))),
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    try:
        assert not errors, errors
        assert deleted[0] > 0
        for services in (shared, other):
            services.library.embed_pending()
            assert_consistent(services.store, all_embedded=True)
        # Every listed document keeps its original file (a delete racing an upload of the same file must not
        # remove the copy the new document points to), and no original is kept for nothing.
        docs = shared.library.documents()
        for doc in docs:
            assert doc.file_path and Path(doc.file_path).is_file(), f"{doc.source}: its stored original is gone"
        kept = {str(p) for p in (data_dir / "files").iterdir()}
        assert kept == {d.file_path for d in docs}, kept ^ {d.file_path for d in docs}
        for doc in docs:  # and search finds every remaining document
            hits = shared.retriever.search(f"Note {doc.source[4]}", k=20, dense_weight=0.0)
            assert any(h.chunk.document_id == doc.id for h in hits), doc.source
    finally:
        close_services(shared)
        close_services(other)


def test_deleting_a_document_twice_is_a_clear_message(fast_services: AppServices, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(TEA)
    (result,) = fast_services.library.ingest_paths([tmp_path / "a.txt"])
    fast_services.library.delete(result.document_id)
    with pytest.raises(DocQAError) as caught:
        fast_services.library.delete(result.document_id)
    assert caught.value.message == f"No document with id {result.document_id} in the library."


def test_keyword_terms_are_the_same_under_concurrent_sessions() -> None:
    """Sessions tokenize queries and passages at the same time (a shared stemmer used to garble words)."""
    from services.text_zh import keyword_tokens

    texts = ["oxidation of national relational tea", "typhoon warnings generalization happily", TYPHOON + " rolled"]
    expected = {t: keyword_tokens(t) for t in texts}
    wrong: list[str] = []

    def run() -> None:
        for _ in range(400):
            for text in texts:
                if keyword_tokens(text) != expected[text]:
                    wrong.append(text)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not wrong, wrong[:3]
