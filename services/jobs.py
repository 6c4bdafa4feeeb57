"""Background ingestion: a queue and one worker thread per library.

The worker lives in the server process, so closing a browser tab does not stop an ingest; every session
sees the same jobs and their progress. Files are read in order (each becomes keyword-searchable once stored)
and their chunks embedded in batches as they come, while the next files are parsed in the background
(:meth:`services.library.Library.ingest_files`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.errors import DocQAError
from services.library import IngestResult, Library

log = logging.getLogger(__name__)


@dataclass
class QueuedFile:
    path: Path
    name: str  # the name the user gave the file
    remove_after: bool = True  # temporary upload copies are removed once read


@dataclass
class IngestJob:
    id: str
    files: list[QueuedFile]
    text_column: str | None = None
    id_column: str | None = None
    date_column: str | None = None
    state: str = "queued"  # queued | reading | embedding | done | failed
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    files_done: int = 0
    current: str = ""
    embed_done: int = 0
    embed_total: int = 0
    embed_rate: float = 0.0
    results: list[IngestResult] = field(default_factory=list)
    error: str | None = None

    @property
    def eta_seconds(self) -> float | None:
        if self.state == "embedding" and self.embed_rate > 0:
            return max(self.embed_total - self.embed_done, 0) / self.embed_rate
        return None

    @property
    def fraction(self) -> float:
        """Overall progress. Files are read one after another and the passages of those read are embedded as
        they come, so: the share of files read, times how far the passages known so far are embedded (reading
        counts for a fifth of a file's work, embedding for the rest)."""
        if self.state == "done":
            return 1.0
        read = self.files_done / len(self.files) if self.files else 1.0
        embed = self.embed_done / self.embed_total if self.embed_total else 0.0
        return min(read * (0.2 + 0.8 * embed), 1.0)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "files": len(self.files),
            "files_done": self.files_done,
            "current": self.current,
            "embed_done": self.embed_done,
            "embed_total": self.embed_total,
            "eta_seconds": self.eta_seconds,
            "fraction": self.fraction,
            "added": sum(r.status == "added" for r in self.results),
            "duplicates": sum(r.status == "duplicate" for r in self.results),
            "failed": sum(r.status == "failed" for r in self.results),
        }


class IngestQueue:
    """FIFO of ingest jobs run by one daemon thread. Thread-safe; share one per library."""

    def __init__(self, library: Library, *, keep_finished: int = 20):
        self.library = library
        self._queue: queue.Queue[IngestJob] = queue.Queue()
        self._jobs: dict[str, IngestJob] = {}
        self._lock = threading.Lock()
        self._keep_finished = keep_finished
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="docqa-ingest", daemon=True)
        self._thread.start()
        if library.store.pending_count():
            # A previous run was stopped mid-embedding: finish it in the background.
            self.submit([])

    def submit(
        self,
        files: list[QueuedFile],
        *,
        text_column: str | None = None,
        id_column: str | None = None,
        date_column: str | None = None,
    ) -> IngestJob:
        job = IngestJob(
            id=uuid.uuid4().hex[:12],
            files=list(files),
            text_column=text_column,
            id_column=id_column,
            date_column=date_column,
        )
        with self._lock:
            self._jobs[job.id] = job
            self._trim()
        self._queue.put(job)
        return job

    def jobs(self) -> list[IngestJob]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created)

    def active(self) -> list[IngestJob]:
        return [j for j in self.jobs() if j.state not in ("done", "failed")]

    def get(self, job_id: str) -> IngestJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def wait(self, job_id: str, timeout: float = 600) -> IngestJob:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job is None or job.state in ("done", "failed"):
                return job  # type: ignore[return-value]
            time.sleep(0.05)
        raise TimeoutError(f"ingest job {job_id} still running after {timeout} s")

    def stop(self) -> None:
        self._stop.set()

    def _trim(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in ("done", "failed")]
        for job in sorted(finished, key=lambda j: j.created)[: max(len(finished) - self._keep_finished, 0)]:
            del self._jobs[job.id]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._process(job)
                job.state = "done"
            except DocQAError as exc:  # e.g. the disk filled up while embedding: say so plainly
                log.warning("ingest job %s stopped: %s", job.id, exc.message)
                job.state = "failed"
                job.error = f"The ingest stopped: {exc.message}"
            except Exception as exc:  # the worker must survive anything a job does
                log.exception("ingest job %s failed", job.id)
                job.state = "failed"
                job.error = f"The ingest stopped unexpectedly: {exc}"
            finally:
                job.finished = time.time()
                job.current = ""

    def _process(self, job: IngestJob) -> None:
        job.started = time.time()
        job.state = "reading" if job.files else "embedding"
        job.current = job.files[0].name if job.files else "embedding passages"
        embed_started = time.time()

        def file_read(index: int, results: list[IngestResult]) -> None:
            queued = job.files[index]
            if queued.remove_after:
                queued.path.unlink(missing_ok=True)
            job.results.extend(results)
            job.files_done = index + 1
            if job.files_done < len(job.files):
                job.current = job.files[job.files_done].name
            else:
                job.state = "embedding"
                job.current = "embedding passages"

        def embedded(done: int, total: int) -> None:
            job.embed_done = done
            job.embed_total = max(total, job.embed_total)
            elapsed = time.time() - embed_started
            job.embed_rate = done / elapsed if elapsed > 0 else 0.0

        try:
            self.library.ingest_files(
                [queued.path for queued in job.files],
                source_names=[queued.name for queued in job.files],
                text_column=job.text_column,
                id_column=job.id_column,
                date_column=job.date_column,
                on_file_read=file_read,
                on_embedded=embedded,
                should_stop=self._stop.is_set,
            )
        finally:
            for queued in job.files[job.files_done :]:  # not reached (stopped, or an error): no copy stays behind
                if queued.remove_after:
                    queued.path.unlink(missing_ok=True)
