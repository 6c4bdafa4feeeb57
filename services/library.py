"""The document library: file → parse (sandboxed) → chunks + keyword terms → store → embeddings.

A batch of files goes through in order: each file is chunked and stored (keyword-searchable from then on),
then every whole batch of chunks without a vector is embedded before the next file is stored, and the last,
partial batch once all files are read. Meanwhile a background thread parses the next files in the sandboxed
parser (:class:`services.pipeline.ParseAhead`), so the user waits for the embedder, not for the parser as well.
Only chunks that have no vector yet are embedded (re-ingesting costs nothing). Results and progress messages
come in the files' order, whatever the parser's timing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.config import Settings
from services.embeddings import OfflineEmbeddings
from services.errors import DocQAError
from services.models import ParsedDocument
from services.pipeline import ParseAhead, ParsedFile, content_id, parse_one_file, prepare_document, write_document
from services.store import DocumentRecord, is_disk_full
from services.store_api import Store

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total)
FileRead = Callable[[int, list["IngestResult"]], None]  # (index of the file in the batch, its results)
Embedded = Callable[[int, int], None]  # (chunks embedded so far in this run, chunks known to need a vector)
MIB = 1024 * 1024


@dataclass
class IngestResult:
    source: str
    status: str  # "added" | "duplicate" | "failed"
    message: str = ""
    document_id: str | None = None
    pages: int = 0
    chunks: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("added", "duplicate")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def safe_display_name(name: str) -> str:
    """A file name fit to show and to store: no directories, no control characters, bounded length."""
    base = re.split(r"[\\/]", name.strip())[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip(" .")
    if len(base) > 180:
        stem, dot, ext = base.rpartition(".")
        base = (stem[:160] + "…" + dot + ext) if dot else base[:180]
    return base or "unnamed"


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given, folders walked recursively (sorted, hidden files skipped)."""
    out: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not any(part.startswith(".") for part in child.relative_to(path).parts):
                    out.append(child)
        else:
            out.append(path)
    return out


class Library:
    """Ingest, embed, delete and re-index documents. Thread-safe through the store's locking."""

    def __init__(self, settings: Settings, embedder: OfflineEmbeddings, store: Store):
        self.settings = settings
        self.embedder = embedder
        self.store = store

    # ---- ingest ------------------------------------------------------------------------------------------
    def ingest_paths(
        self,
        paths: Sequence[Path],
        *,
        text_column: str | None = None,
        id_column: str | None = None,
        date_column: str | None = None,
        progress: Progress | None = None,
        embed: bool = True,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[IngestResult]:
        """Ingest files and folders (walked recursively): :meth:`ingest_files` on what they contain."""
        return self.ingest_files(
            expand_paths(paths),
            text_column=text_column,
            id_column=id_column,
            date_column=date_column,
            progress=progress,
            embed=embed,
            should_stop=should_stop,
        )

    def ingest_files(
        self,
        files: Sequence[Path],
        *,
        source_names: Sequence[str] | None = None,
        text_column: str | None = None,
        id_column: str | None = None,
        date_column: str | None = None,
        progress: Progress | None = None,
        on_file_read: FileRead | None = None,
        on_embedded: Embedded | None = None,
        should_stop: Callable[[], bool] | None = None,
        embed: bool = True,
    ) -> list[IngestResult]:
        """Parse, store and embed ``files`` in order, parsing the next ones while the embedder works (see the
        module docstring). Never raises for a bad file: it gets a "failed" result and the others go on.

        ``source_names`` are the names to show (the names users gave uploads), one per file. ``progress`` gets
        "Reading NAME" before each file and the embedding's progress after each batch; ``on_file_read`` each
        file's results once it is stored, before its chunks are embedded; ``on_embedded`` the embedding counts.
        When ``should_stop`` turns true, the ingest stops before the next file or batch: the files stored so
        far are kept (their remaining chunks are embedded by a later :meth:`embed_pending`), the parse in
        progress is killed, and the files not reached get no result."""
        files = [Path(f) for f in files]
        names = [
            safe_display_name(name or path.name)
            for path, name in zip(files, source_names or [None] * len(files), strict=True)
        ]
        stop = should_stop or (lambda: False)
        embedding = _EmbeddingRun(self, progress=progress, on_embedded=on_embedded, should_stop=stop)
        results: list[IngestResult] = []
        try:
            with ParseAhead(
                list(zip(files, names, strict=True)),
                self.settings,
                text_column=text_column,
                id_column=id_column,
                date_column=date_column,
            ) as parse_ahead:
                for index, path in enumerate(files):
                    if stop():
                        return results
                    if progress:
                        progress(f"Reading {path.name}", index, len(files))
                    parsed = parse_ahead.next_file(should_stop=should_stop)
                    if parsed is None:  # stopped while this file was being parsed: that parse is killed
                        return results
                    file_results = self._store_file(parsed, keep_copy=True)
                    results.extend(file_results)
                    if on_file_read:
                        on_file_read(index, file_results)
                    if embed:
                        embedding.embed(whole_batches_only=True, files_left=len(files) - index - 1)
            if progress:
                progress("Read all files", len(files), len(files))
            if embed:
                embedding.embed(whole_batches_only=False, files_left=0)
        finally:
            embedding.finish()
        return results

    def ingest_file(
        self,
        path: Path,
        *,
        source_name: str | None = None,
        text_column: str | None = None,
        id_column: str | None = None,
        date_column: str | None = None,
        keep_copy: bool = True,
    ) -> list[IngestResult]:
        """Parse one file and store its document(s) without embedding. Never raises for a bad file."""
        parsed = parse_one_file(
            path,
            self.settings,
            source=safe_display_name(source_name or path.name),
            text_column=text_column,
            id_column=id_column,
            date_column=date_column,
        )
        return self._store_file(parsed, keep_copy=keep_copy)

    def _store_file(self, parsed: ParsedFile, *, keep_copy: bool) -> list[IngestResult]:
        """Store a parsed file's documents (and keep a copy of the original). Never raises for a bad file."""
        source, path = parsed.source, parsed.path
        if parsed.error is not None:
            return [IngestResult(source=source, status="failed", message=parsed.error)]
        try:
            stored_path = self._keep_file(path) if keep_copy else str(path)
        except OSError as exc:  # e.g. a full disk: this file fails, the batch goes on
            log.warning("could not keep a copy of %s: %s", source, exc)
            reason = (
                "the disk holding the library is full; free some space and add it again"
                if is_disk_full(exc)
                else f"its copy could not be written ({exc.strerror or exc})"
            )
            return [IngestResult(source=source, status="failed", message=f"{source} could not be saved: {reason}.")]
        results = [self._store_parsed(doc, stored_path) for doc in parsed.documents]
        if keep_copy and any(r.status == "added" for r in results):
            # Another session may have deleted the last document using this very copy between our copy and our
            # insert (and removed the file). Deletes check and unlink under the store's lock; so do we.
            added = [r.document_id for r in results if r.status == "added" and r.document_id]
            with self.store.locked():
                if not Path(stored_path).exists() and any(self.store.has_document(i) for i in added):
                    try:
                        self._keep_file(path)
                    except OSError as exc:
                        log.warning("could not keep a copy of %s: %s", source, exc)
        return results

    def ingest_parsed(self, docs: Sequence[ParsedDocument], *, embed: bool = True) -> list[IngestResult]:
        """Store already-parsed documents (evaluation sets, batch pipelines); then embed what is new."""
        results = [self._store_parsed(doc, None) for doc in docs]
        if embed:
            self.embed_pending()
        return results

    def _keep_file(self, path: Path) -> str:
        """Copy the original under its content hash: the database plus these files are the source of truth."""
        digest = hashlib.sha256()
        with path.open("rb") as handle:  # streamed: a file at the size limit is not held in memory
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        target = self.settings.uploads_dir / f"{digest.hexdigest()[:16]}{path.suffix.lower()}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            # A temporary name of its own: two sessions may copy the same file at once.
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                shutil.copyfile(path, tmp)
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)  # a half-written copy would only take the space that is missing
                raise
        return str(target)

    def _store_parsed(self, doc: ParsedDocument, stored_path: str | None) -> IngestResult:
        try:
            if doc.full_text.strip():
                existing = self.store.has_document(content_id(doc.full_text))
                if existing is not None and existing.status != "failed":  # skip chunking a known document
                    return IngestResult(
                        source=doc.source,
                        status="duplicate",
                        message=f"{doc.source} has the same content as {existing.source}, already in the library.",
                        document_id=existing.id,
                        pages=existing.pages,
                        chunks=existing.chunks,
                    )
            record = prepare_document(doc, self.settings, self.embedder.count_tokens, stored_path)
            if not write_document(self.store, record):  # another session stored it between our check and insert
                return IngestResult(
                    source=doc.source,
                    status="duplicate",
                    message=f"{doc.source} is already in the library.",
                    document_id=record["document_id"],
                )
            return IngestResult(
                source=doc.source,
                status="added",
                document_id=record["document_id"],
                pages=len(doc.pages),
                chunks=len(record["chunks"]),
                warnings=list(doc.warnings),
                message="; ".join(doc.warnings),
            )
        except DocQAError as exc:
            return IngestResult(source=doc.source, status="failed", message=exc.message, warnings=doc.warnings)

    # ---- embeddings --------------------------------------------------------------------------------------
    def embed_pending(self, *, progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> int:
        """Embed every chunk that has no vector yet, batch by batch; returns how many were embedded."""
        embedding = _EmbeddingRun(self, progress=progress, should_stop=should_stop or (lambda: False))
        try:
            embedding.embed(whole_batches_only=False, files_left=0)
        finally:
            embedding.finish()
        return embedding.done

    # ---- maintenance -------------------------------------------------------------------------------------
    def delete(self, document_id: str) -> DocumentRecord:
        # Under the store's lock, so that an upload of the same file cannot slip in between our check that no
        # document uses the original any more and its removal.
        with self.store.locked():
            record = self.store.delete_document(document_id)
            if record.file_path and not self._file_still_used(record.file_path):
                Path(record.file_path).unlink(missing_ok=True)
        return record

    def reparse(self, document_id: str) -> list[IngestResult]:
        """Read a document again from its stored original (after a parser upgrade, or to retry a failure)."""
        record = self.store.get_document(document_id)
        if not record.file_path or not Path(record.file_path).is_file():
            raise DocQAError(f"The original file of {record.source} is no longer stored; upload it again.")
        path = Path(record.file_path)
        self.store.delete_document(document_id)
        return self.ingest_file(path, source_name=record.source, keep_copy=False)

    def _file_still_used(self, file_path: str) -> bool:
        return any(d.file_path == file_path for d in self.store.list_documents())

    def documents(self) -> list[DocumentRecord]:
        return self.store.list_documents()


class _EmbeddingRun:
    """Embeds the store's chunks without a vector, a batch at a time, over one or more calls of :meth:`embed`
    (one ingest interleaves them with storing files), counting and reporting as it goes; :meth:`finish` saves
    the vector index once at the end."""

    def __init__(
        self,
        library: Library,
        *,
        progress: Progress | None = None,
        on_embedded: Embedded | None = None,
        should_stop: Callable[[], bool],
    ):
        self.store = library.store
        self.embedder = library.embedder
        self.batch_size = library.settings.embed_batch_size
        self.progress = progress
        self.on_embedded = on_embedded
        self.should_stop = should_stop
        self.done = 0
        self.started: float | None = None  # when the first batch began: the rate is the embedder's pace

    def embed(self, *, whole_batches_only: bool, files_left: int) -> None:
        """Embed pending chunks until none are left, or, with ``whole_batches_only``, until fewer than a batch
        are (more files are coming to fill it: the batches stay the same as when embedding all at the end)."""
        total = self.done + self.store.pending_count()  # known so far: the files still to read add to it
        if self.on_embedded:
            self.on_embedded(self.done, total)
        while not self.should_stop():
            pending = self.store.pending_chunks(self.batch_size)
            if not pending or (whole_batches_only and len(pending) < self.batch_size):
                return
            started = self.started = self.started or time.monotonic()
            ids = [vid for vid, _ in pending]
            vectors = self.embedder.encode_passages([text for _, text in pending])
            self.store.set_embeddings(ids, vectors)
            self.done += len(ids)
            total = max(total, self.done)
            if self.on_embedded:
                self.on_embedded(self.done, total)
            if self.progress:
                rate = self.done / max(time.monotonic() - started, 1e-6)
                if files_left:  # the chunks still to come are unknown: no time estimate yet
                    self.progress(f"Embedding passages ({rate:.1f}/s)", self.done, total)
                else:
                    left = (total - self.done) / rate if rate else 0
                    self.progress(f"Embedding passages ({rate:.1f}/s, about {left:.0f} s left)", self.done, total)

    def finish(self) -> None:
        if self.done:
            self.store.save_index()
