"""Upload widget: many files at once, a text-column chooser for tables, hand-off to the ingest queue.

Uploaded bytes are written under ``<data_dir>/incoming`` with a generated name (the uploaded name is only
ever a label: it is never used as a path), then queued; the worker deletes the copy once it is read.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import pandas as pd
import streamlit as st

from components.errors import show_error
from components.text import inline
from services.app_services import AppServices
from services.errors import DocQAError
from services.jobs import IngestJob, QueuedFile

TABLE_SUFFIXES = (".csv", ".jsonl")
AUTO = "(detect automatically)"
_SUFFIX_RE = re.compile(r"^\.[a-z0-9]{1,10}$")
_PEEK_BYTES = 1 << 20


@dataclass
class TableChoice:
    text_column: str | None
    date_column: str | None


def safe_suffix(name: str) -> str:
    """The extension of an uploaded name, or "" when it is anything but a short alphanumeric suffix."""
    base = re.split(r"[\\/]", name)[-1].strip()
    suffix = PurePosixPath(base).suffix.lower()
    return suffix if _SUFFIX_RE.match(suffix) else ""


def is_table(name: str) -> bool:
    return safe_suffix(name) in TABLE_SUFFIXES


def peek_table(data: bytes, name: str, rows: int = 20) -> pd.DataFrame:
    """The first rows of a CSV or JSON Lines upload (``data``: its first bytes), decoded the way ingestion
    decodes text files."""
    from services.ingest.encoding import decode_bytes

    text, _encoding = decode_bytes(data[:_PEEK_BYTES], name)
    if safe_suffix(name) == ".jsonl":
        records = []
        for line in text.splitlines():
            if line.strip():
                try:
                    value = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by the peek limit, or a bad row the ingest will report
                if isinstance(value, dict):
                    records.append(value)
            if len(records) >= rows:
                break
        return pd.DataFrame.from_records(records)
    try:
        return pd.read_csv(io.StringIO(text), nrows=rows, dtype=str, on_bad_lines="skip", sep=None, engine="python")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DocQAError(f"{name}: the first rows could not be read as CSV ({exc}).") from exc


def _dates_share(values: pd.Series) -> float:
    from services.ingest.tabular import parse_date

    present = [v for v in values.dropna().astype(str) if v.strip()]
    return sum(parse_date(v) is not None for v in present) / len(present) if present else 0.0


def guess_text_column(frame: pd.DataFrame) -> str | None:
    """The column ingestion would pick: a conventional name, else the longest non-date text."""
    from services.ingest.tabular import TEXT_COLUMN_NAMES, TITLE_COLUMN_NAMES

    columns = [str(c) for c in frame.columns]
    folded = {c.strip().casefold(): c for c in columns}
    for wanted in TEXT_COLUMN_NAMES:
        if wanted.casefold() in folded:
            return folded[wanted.casefold()]
    titles = {t.casefold() for t in TITLE_COLUMN_NAMES}
    best, best_length = None, 0.0
    for col in frame.columns:
        if _dates_share(frame[col]) >= 0.8:
            continue
        length = float(frame[col].fillna("").astype(str).str.len().mean() or 0.0)
        if str(col).strip().casefold() in titles:
            length /= 4  # a title only wins when nothing is longer
        if length > best_length:
            best, best_length = str(col), length
    return best or (columns[0] if columns else None)


def guess_date_column(frame: pd.DataFrame) -> str | None:
    """A column named like a date, else one whose values mostly read as dates."""
    from services.ingest.tabular import DATE_NAME_PARTS

    named = [c for c in frame.columns if any(part in str(c).casefold() for part in DATE_NAME_PARTS)]
    for col in [*named, *[c for c in frame.columns if c not in named]]:
        if _dates_share(frame[col]) >= 0.8:
            return str(col)
    return None


def _head(upload: BinaryIO, limit: int = _PEEK_BYTES) -> bytes:
    upload.seek(0)
    data = upload.read(limit)
    upload.seek(0)
    return data


def save_upload(upload: BinaryIO, name: str, incoming: Path) -> QueuedFile:
    """Stream an upload to a fresh, generated path under ``incoming``; the user's name stays a label."""
    incoming.mkdir(parents=True, exist_ok=True)
    path = incoming / f"{uuid.uuid4().hex}{safe_suffix(name)}"
    upload.seek(0)
    try:
        with path.open("xb") as out:
            shutil.copyfileobj(upload, out, 1 << 20)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return QueuedFile(path=path, name=name, remove_after=True)


def submit_uploads(
    services: AppServices, uploads: list[tuple[str, BinaryIO]], choices: dict[int, TableChoice]
) -> list[IngestJob]:
    """Queue uploads: plain files in one job; each table in its own job (each has its own columns)."""
    incoming = services.settings.data_dir / "incoming"
    queue = services.ingest_queue
    jobs: list[IngestJob] = []
    plain = [save_upload(data, name, incoming) for i, (name, data) in enumerate(uploads) if i not in choices]
    if plain:
        jobs.append(queue.submit(plain))
    for i, choice in choices.items():
        name, data = uploads[i]
        jobs.append(
            queue.submit(
                [save_upload(data, name, incoming)],
                text_column=choice.text_column,
                date_column=choice.date_column,
            )
        )
    return jobs


def _table_chooser(index: int, name: str, upload: BinaryIO, key: str) -> TableChoice | None:
    """Column pickers for one CSV/JSONL upload, with a preview of its first rows."""
    with st.container(border=True):
        st.markdown(f"**{inline(name, 80)}** — one document per row")
        try:
            frame = peek_table(_head(upload), name)
        except DocQAError as exc:
            show_error(exc)
            return None
        if frame.empty or not len(frame.columns):
            st.warning(f"{inline(name, 80)}: no rows found in the first part of the file.")
            return None
        columns = [str(c) for c in frame.columns]
        guess = guess_text_column(frame)
        left, right = st.columns(2)
        text_col = left.selectbox(
            "Text column",
            columns,
            index=columns.index(guess) if guess in columns else 0,
            key=f"{key}_text_{index}",
            help="Each row's text comes from this column; the other columns are kept as metadata.",
        )
        date_guess = guess_date_column(frame)
        date_options = [AUTO, *columns]
        date_col = right.selectbox(
            "Date column",
            date_options,
            index=date_options.index(date_guess) if date_guess in date_options else 0,
            key=f"{key}_date_{index}",
            help="Used by the chat's date-range filter.",
        )
        # A dataframe renders cells as plain text: safe for whatever the file holds.
        st.dataframe(frame.head(5), hide_index=True, width="stretch")
        return TableChoice(text_column=text_col, date_column=None if date_col == AUTO else date_col)


def upload_section(services: AppServices) -> list[IngestJob]:
    """The uploader; returns the jobs queued in this run (empty when nothing was submitted)."""
    round_no = st.session_state.setdefault("upload_round", 0)
    key = f"uploader_{round_no}"
    files = st.file_uploader(
        "Add documents",
        accept_multiple_files=True,
        key=key,
        help="PDF, DOCX, TXT, Markdown, HTML, CSV and JSON Lines. Big folders keep ingesting in the background.",
    )
    if not files:
        return []
    # UploadedFile objects are file-like: read only a table's head here, stream whole files when saving.
    uploads: list[tuple[str, BinaryIO]] = [(f.name, f) for f in files]
    choices: dict[int, TableChoice] = {}
    for i, (name, upload) in enumerate(uploads):
        if is_table(name):
            # Unreadable tables are still queued: the ingest then reports the problem next to the file.
            choices[i] = _table_chooser(i, name, upload, key) or TableChoice(None, None)
    label = f"Add {len(uploads)} file{'s' if len(uploads) != 1 else ''} to the library"
    if st.button(label, type="primary", key=f"{key}_submit"):
        try:
            jobs = submit_uploads(services, uploads, choices)
        except OSError as exc:
            show_error(DocQAError(f"The uploads could not be saved on the server ({exc.strerror or exc})."))
            return []
        st.session_state["upload_round"] = round_no + 1  # a fresh, empty uploader next run
        return jobs
    return []
