"""The library's ingest parses the next files while the embedder works, and still behaves like one file at a time:
results and progress in the files' order, a bad file failing alone, a stop leaving nothing running.

Real parsing (the sandboxed parser process) and a fake embedder; the overlap is shown by the order of events,
never by timings.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from services.app_services import build_services
from services.config import load_settings
from services.errors import ParseMemoryExceeded
from services.ingest.sandbox import SandboxedParser
from services.jobs import QueuedFile
from tests.helpers.processes import parser_processes
from tests.ui.ui_helpers import HashEmbeddings

WAIT_S = 60  # how long a gate waits before giving up: only reached when the behaviour under test is missing


def parse_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "docqa-parse-ahead" and t.is_alive()]


def text_of(n: int) -> str:
    return "".join(f"第{n}份文件第{i}句，颱風警報發布。Typhoon warning {n}-{i}.\n" for i in range(60))


def corpus(folder: Path, count: int = 4) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = folder / f"doc{n}.txt"
        path.write_text(text_of(n), encoding="utf-8")
        paths.append(path)
    return paths


class Events:
    """What happened, in order, across the threads (list.append is atomic), plus a way to wait for an event."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.parse_waits_for: dict[str, tuple[str, str]] = {}  # file name -> event its parse must wait for
        self._seen = threading.Condition()

    def add(self, what: str, name: str) -> None:
        with self._seen:
            self.log.append((what, name))
            self._seen.notify_all()

    def wait_for(self, what: str, name: str) -> bool:
        with self._seen:
            return self._seen.wait_for(lambda: (what, name) in self.log, timeout=WAIT_S)

    def index(self, what: str, name: str) -> int:
        return self.log.index((what, name))


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Events:
    """Records when the sandboxed parser starts and finishes each file (the real parse runs in between); a
    file named in ``parse_waits_for`` starts only after the event given there."""
    recorded = Events()
    real_parse = SandboxedParser.parse

    def parse(self, path, *, source_name=None, **kwargs):
        if source_name in recorded.parse_waits_for:
            recorded.wait_for(*recorded.parse_waits_for[source_name])
        recorded.add("parse started", source_name)
        try:
            return real_parse(self, path, source_name=source_name, **kwargs)
        finally:
            recorded.add("parse finished", source_name)

    monkeypatch.setattr(SandboxedParser, "parse", parse)
    return recorded


class SlowFirstFileEmbedder(HashEmbeddings):
    """A model still busy with the first file's passages until the parser has finished the second file (it
    gives up after WAIT_S, so an ingest that does not parse while embedding fails the test instead of hanging)."""

    def __init__(self, events: Events, first: str, second: str):
        self.events, self.first, self.second = events, first, second

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        owner = "doc" + re.search(r"第(\d+)份", texts[0]).group(1) + ".txt"
        self.events.add("embed started", owner)
        if owner == self.first:
            self.events.wait_for("parse finished", self.second)
        try:
            return super().encode_passages(texts)
        finally:
            self.events.add("embed finished", owner)


def open_library(tmp_path: Path, embedder, **settings):
    settings.setdefault("embed_batch_size", 4)
    return build_services(load_settings(data_dir=tmp_path / "lib", ocr="off", **settings), embedder=embedder)


def assert_second_file_parsed_during_first_files_embedding(events: Events) -> None:
    assert events.index("embed started", "doc0.txt") < events.index("parse started", "doc1.txt")
    assert events.index("parse started", "doc1.txt") < events.index("parse finished", "doc1.txt")
    assert events.index("parse finished", "doc1.txt") < events.index("embed finished", "doc0.txt")


def test_the_next_file_is_parsed_while_the_embedder_works_on_the_first(tmp_path, events):
    """The CLI's path (Library.ingest_paths). The parse of file 2 may start only once the embedding of file 1
    has, and that embedding ends only once file 2 is parsed: both can only happen if they overlap. The
    progress still says "Reading" file 2 after file 1's embedding (the order the user sees is unchanged)."""
    events.parse_waits_for["doc1.txt"] = ("embed started", "doc0.txt")
    services = open_library(tmp_path, SlowFirstFileEmbedder(events, "doc0.txt", "doc1.txt"), embed_batch_size=1)
    results = services.library.ingest_paths(
        [tmp_path / "in"] if corpus(tmp_path / "in", 3) else [],
        progress=lambda stage, done, total: events.add("progress", stage),
    )
    assert [r.source for r in results] == ["doc0.txt", "doc1.txt", "doc2.txt"]
    assert all(r.status == "added" for r in results)
    assert_second_file_parsed_during_first_files_embedding(events)
    assert events.index("embed finished", "doc0.txt") < events.index("progress", "Reading doc1.txt")
    report = services.store.check_consistency()
    assert report["chunks"] == report["embedded"] == report["faiss"] > 0
    services.store.close()


def test_the_app_queue_overlaps_parsing_and_embedding_too(tmp_path, events):
    """The Library page's path (IngestQueue → Library.ingest_files), with its temporary upload copies."""
    events.parse_waits_for["doc1.txt"] = ("embed started", "doc0.txt")
    services = open_library(tmp_path, SlowFirstFileEmbedder(events, "doc0.txt", "doc1.txt"), embed_batch_size=1)
    uploads = corpus(tmp_path / "incoming", 3)
    job = services.ingest_queue.submit([QueuedFile(path=p, name=p.name) for p in uploads])
    job = services.ingest_queue.wait(job.id, timeout=WAIT_S * 2)
    assert job.state == "done", job.error
    assert [r.source for r in job.results] == ["doc0.txt", "doc1.txt", "doc2.txt"]
    assert_second_file_parsed_during_first_files_embedding(events)
    assert job.files_done == 3 and job.embed_done == job.embed_total == services.store.counts()["chunks"]
    assert not any(p.exists() for p in uploads)  # the temporary copies were removed once read
    services.ingest_queue.stop()
    services.store.close()


def stages(messages: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Progress messages without the embedding rate and time left (the only parts that depend on timing)."""
    return [(re.sub(r" \(.*\)$", "", stage), done, total) for stage, done, total in messages]


def test_results_and_progress_come_in_the_files_order_every_time(tmp_path):
    files = corpus(tmp_path / "in", 5)
    runs = []
    for attempt in range(2):
        services = open_library(tmp_path / f"run{attempt}", HashEmbeddings(), embed_batch_size=8)
        messages: list[tuple[str, int, int]] = []
        results = services.library.ingest_paths(files, progress=lambda *m, into=messages: into.append(m))
        runs.append(([r.source for r in results], stages(messages)))
        chunks = services.store.counts()["chunks"]
        services.store.close()
    (sources, progress), again = runs
    assert again == runs[0]
    assert sources == [f"doc{n}.txt" for n in range(5)]
    reading = [(stage, done) for stage, done, _ in progress if stage.startswith("Reading")]
    assert reading == [(f"Reading doc{n}.txt", n) for n in range(5)]
    # Whole batches of 8 as soon as they are there, the rest after the last file, and nothing embedded twice.
    embedded = [done for stage, done, _ in progress if stage.startswith("Embedding")]
    assert embedded == sorted(set(embedded)) and embedded[-1] == chunks
    assert all(done % 8 == 0 for done in embedded[:-1])
    assert progress.index(("Read all files", 5, 5)) > progress.index(("Reading doc4.txt", 4, 5))


def test_a_broken_file_in_the_middle_fails_alone(tmp_path):
    files = corpus(tmp_path / "in", 4)
    broken = tmp_path / "in" / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40)
    binary = tmp_path / "in" / "program.txt"
    binary.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(512))
    order = [files[0], broken, files[1], binary, files[2], files[3]]
    services = open_library(tmp_path, HashEmbeddings())
    results = services.library.ingest_files(order)
    assert [r.source for r in results] == [p.name for p in order]
    assert [r.status for r in results] == ["added", "failed", "added", "failed", "added", "added"]
    assert results[1].message.startswith("broken.pdf") and results[3].message.startswith("program.txt")
    assert sorted(d.source for d in services.library.documents()) == [f"doc{n}.txt" for n in range(4)]
    report = services.store.check_consistency()
    assert report["chunks"] == report["embedded"] == report["faiss"]
    assert parser_processes() == [] and parse_ahead_threads() == []
    services.store.close()


def test_a_stuck_file_in_the_middle_times_out_alone_and_the_next_gets_a_fresh_parser(tmp_path, monkeypatch):
    files = corpus(tmp_path / "in", 3)
    monkeypatch.setenv("DOCQA_TEST_PARSER_ONLY", "doc1.txt")
    monkeypatch.setenv("DOCQA_TEST_PARSER_SLEEP", "600")
    services = open_library(tmp_path, HashEmbeddings(), parse_timeout_s=5)
    results = services.library.ingest_files(files)
    assert [r.status for r in results] == ["added", "failed", "added"]
    assert results[1].message == (
        "doc1.txt took longer than 5 s to read and was stopped: the file may be broken or hostile"
    )
    assert parser_processes() == []
    services.store.close()


def test_one_parser_process_serves_a_batch_and_a_memory_failure_is_retried_in_a_fresh_one(tmp_path, monkeypatch):
    files = corpus(tmp_path / "in", 4)
    with SandboxedParser(timeout_s=60, memory_mb=512) as parser:
        assert [parser.parse(p)[0].source for p in files[:2]] == ["doc0.txt", "doc1.txt"]
        assert parser.children_started == 1
        monkeypatch.setenv("DOCQA_TEST_PARSER_ONLY", "doc2.txt")
        monkeypatch.setenv("DOCQA_TEST_PARSER_ALLOCATE_MB", "4096")
        # The environment is read when a child starts: the current one does not see the hook, a fresh one does.
        parser.close()
        parser.parse(files[0])  # the fresh child (2) has read a file before doc2
        with pytest.raises(ParseMemoryExceeded) as caught:
            parser.parse(files[2])
        assert caught.value.message.startswith("doc2.txt needed more than 512 MB of memory")
        assert parser.children_started == 3  # tried again in a child of its own before failing
        assert parser.parse(files[3])[0].source == "doc3.txt"
        assert parser.children_started == 4  # the child that ran out of memory is not reused
    assert parser_processes() == []


def test_a_stop_between_files_keeps_what_was_stored_and_leaves_nothing_running(tmp_path):
    files = corpus(tmp_path / "in", 5)
    services = open_library(tmp_path, HashEmbeddings())
    stop = threading.Event()
    results = services.library.ingest_files(
        files, on_file_read=lambda index, rs: index == 1 and stop.set(), should_stop=stop.is_set
    )
    assert [r.source for r in results] == ["doc0.txt", "doc1.txt"]
    assert parser_processes() == [] and parse_ahead_threads() == []
    assert sorted(d.source for d in services.library.documents()) == ["doc0.txt", "doc1.txt"]
    report = services.store.check_consistency()
    assert report["faiss_not_in_sqlite"] == report["embedded_not_in_faiss"] == report["duplicate_chunks"] == 0
    # A later run finishes the job: the stored files are duplicates, the rest is added, everything embedded.
    again = services.library.ingest_files(files)
    assert [r.status for r in again] == ["duplicate", "duplicate", "added", "added", "added"]
    assert services.store.pending_count() == 0
    services.store.close()


def test_stopping_the_app_queue_while_a_file_is_parsed_kills_that_parse(tmp_path, monkeypatch, events):
    files = corpus(tmp_path / "incoming", 3)
    monkeypatch.setenv("DOCQA_TEST_PARSER_ONLY", "doc1.txt")
    monkeypatch.setenv("DOCQA_TEST_PARSER_SLEEP", "600")
    services = open_library(tmp_path, HashEmbeddings(), parse_timeout_s=600)
    job = services.ingest_queue.submit([QueuedFile(path=p, name=p.name) for p in files])
    assert events.wait_for("parse started", "doc1.txt")
    services.ingest_queue.stop()
    assert events.wait_for("parse finished", "doc1.txt")  # killed: it would otherwise sleep for 10 minutes
    job = services.ingest_queue.wait(job.id, timeout=WAIT_S)
    assert [r.source for r in job.results] == ["doc0.txt"]
    assert ("parse started", "doc2.txt") not in events.log
    assert parser_processes() == [] and parse_ahead_threads() == []
    assert not any(p.exists() for p in files)  # no temporary copy stays behind, read or not
    assert [d.source for d in services.library.documents()] == ["doc0.txt"]
    services.store.close()
