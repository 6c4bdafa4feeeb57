"""The bundled demo documents (``samples/``): where they are and how to add them to a library.

The CSV sample holds one document per row, so it is ingested with its own text and date columns; the other
files are plain text and Markdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for type hints: importing jobs starts nothing, but keep this module light
    from services.jobs import IngestJob, IngestQueue
    from services.library import IngestResult, Library

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
TABLE_SUFFIXES = (".csv", ".jsonl")
SAMPLE_TEXT_COLUMN = "text"
SAMPLE_DATE_COLUMN = "date"


def samples_dir() -> Path:
    return SAMPLES_DIR


def sample_files() -> list[Path]:
    """The demo documents, sorted by name (README.md describes them and is not one of them)."""
    if not SAMPLES_DIR.is_dir():
        return []
    return sorted(
        p for p in SAMPLES_DIR.iterdir() if p.is_file() and p.name != "README.md" and not p.name.startswith(".")
    )


def _split(files: list[Path]) -> tuple[list[Path], list[Path]]:
    texts = [p for p in files if p.suffix.lower() not in TABLE_SUFFIXES]
    tables = [p for p in files if p.suffix.lower() in TABLE_SUFFIXES]
    return texts, tables


def load_samples(library: Library) -> list[IngestResult]:
    """Ingest the demo documents and embed them, synchronously (CLI and tests; the app uses the queue)."""
    texts, tables = _split(sample_files())
    results = library.ingest_paths(texts, embed=False)
    if tables:
        results += library.ingest_paths(
            tables, text_column=SAMPLE_TEXT_COLUMN, date_column=SAMPLE_DATE_COLUMN, embed=False
        )
    library.embed_pending()
    return results


def submit_samples(queue: IngestQueue) -> list[IngestJob]:
    """Queue the demo documents for background ingestion; the originals are never removed."""
    from services.jobs import QueuedFile

    texts, tables = _split(sample_files())
    jobs: list[IngestJob] = []
    if texts:
        jobs.append(queue.submit([QueuedFile(p, p.name, remove_after=False) for p in texts]))
    if tables:
        jobs.append(
            queue.submit(
                [QueuedFile(p, p.name, remove_after=False) for p in tables],
                text_column=SAMPLE_TEXT_COLUMN,
                date_column=SAMPLE_DATE_COLUMN,
            )
        )
    return jobs
