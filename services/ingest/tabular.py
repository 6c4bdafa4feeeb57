"""CSV and JSON Lines: one ParsedDocument per row.

The text comes from one column (given, or found by name, or the column with the longest texts); the other
columns become metadata. A title column gives the row's title, a date column its ISO date. Rows are named
``file.csv#row-N`` where N is the spreadsheet row (the header is row 1) or the JSONL line number, or
``file.csv#<id>`` when an id column is given.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from services.errors import EmptyDocument, MissingColumn, ParseFailed
from services.ingest.encoding import decode_bytes
from services.models import ParsedDocument, ParsedPage

TEXT_COLUMN_NAMES = ("text", "content", "body", "內容", "内容", "正文")
TITLE_COLUMN_NAMES = ("title", "headline", "subject", "標題", "标题", "題目", "题目")
DATE_NAME_PARTS = ("date", "time", "published", "created", "日期", "時間", "时间")
_SAMPLE_ROWS = 500
_DATE_SUCCESS_SHARE = 0.8
_MAX_LISTED = 10
_DELIMITERS = (",", "\t", ";", "|")

Row = dict[str, Any]


def parse(
    path: Path,
    name: str,
    kind: str,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    date_column: str | None = None,
) -> list[ParsedDocument]:
    text, _ = decode_bytes(path.read_bytes(), name)
    rows, columns, warnings = _read_jsonl(text, name) if kind == "jsonl" else _read_csv(text, name)
    del text
    if not rows:
        raise EmptyDocument(f"{name} has no rows")
    text_col = _resolve(name, columns, text_column) if text_column else _guess_text_column(name, columns, rows)
    id_col = _resolve(name, columns, id_column) if id_column else None
    if date_column:
        date_col: str | None = _resolve(name, columns, date_column)
    else:
        date_col = _guess_date_column(columns, rows, exclude={text_col})
    title_col = _find_named(columns, TITLE_COLUMN_NAMES, exclude={text_col})

    documents: list[ParsedDocument] = []
    empty_rows: list[int] = []
    bad_dates: list[int] = []
    for number, row in rows:
        body = _as_text(row.get(text_col))
        if not body.strip():
            empty_rows.append(number)
            continue
        row_id = _as_text(row.get(id_col)).strip() if id_col else ""
        when = parse_date(row.get(date_col)) if date_col else None
        if date_col and when is None and _as_text(row.get(date_col)).strip():
            bad_dates.append(number)
        documents.append(
            ParsedDocument(
                source=f"{name}#{row_id}" if row_id else f"{name}#row-{number}",
                kind=kind,
                pages=[ParsedPage(number=1, text=body)],
                title=_as_text(row.get(title_col)).strip() if title_col else "",
                date=when,
                metadata={key: value for key, value in row.items() if key != text_col},
            )
        )
    if not documents:
        raise EmptyDocument(f"{name} has no text in column '{text_col}' on any row")
    unit = "line" if kind == "jsonl" else "row"
    if empty_rows:
        warnings.append(f"{_listing(unit, empty_rows)} of {name} had no text in column '{text_col}' and were skipped")
    if bad_dates:
        warnings.append(
            f"{_listing(unit, bad_dates)} of {name} had a date in column '{date_col}' that was not understood"
        )
    documents[0].warnings.extend(warnings)
    return documents


# --- reading -------------------------------------------------------------------------------------------------


def _read_csv(text: str, name: str) -> tuple[list[tuple[int, Row]], list[str], list[str]]:
    # A spreadsheet cell can hold a whole article; the default limit (128 KiB) would reject it.
    csv.field_size_limit(64 * 1024 * 1024)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    warnings: list[str] = []
    try:
        header = next(reader, None)
        if header is None:
            return [], [], warnings
        columns = _column_names(header)
        rows: list[tuple[int, Row]] = []
        ragged = 0
        for index, record in enumerate(reader):
            if not any(cell.strip() for cell in record):
                continue
            if len(record) > len(columns):
                ragged += 1
            values = record + [""] * (len(columns) - len(record))
            rows.append((index + 2, dict(zip(columns, values, strict=False))))
    except csv.Error as err:
        raise ParseFailed(f"{name} is not a valid CSV file (line {reader.line_num}: {err})") from err
    if ragged:
        warnings.append(f"{ragged} row(s) of {name} had more cells than the header; the extra cells were ignored")
    return rows, columns, warnings


def _delimiter(text: str) -> str:
    """The delimiter that occurs most in the header line (headers rarely contain one)."""
    header = text[: text.find("\n")] if "\n" in text else text[:10_000]
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _column_names(header: list[str]) -> list[str]:
    names: list[str] = []
    for index, raw in enumerate(header, start=1):
        base = raw.strip().lstrip("\ufeff") or f"column_{index}"
        candidate, n = base, 2
        while candidate in names:
            candidate, n = f"{base}_{n}", n + 1
        names.append(candidate)
    return names


def _read_jsonl(text: str, name: str) -> tuple[list[tuple[int, Row]], list[str], list[str]]:
    rows: list[tuple[int, Row]] = []
    columns: dict[str, None] = {}
    bad: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            bad.append(number)
            continue
        if not isinstance(value, dict):
            bad.append(number)
            continue
        for key in value:
            columns.setdefault(str(key), None)
        rows.append((number, {str(k): v for k, v in value.items()}))
    if bad and not rows:
        raise ParseFailed(f"{name} is not a JSON Lines file: line {bad[0]} is not a JSON object")
    warnings = [f"{_listing('line', bad)} of {name} were not JSON objects and were skipped"] if bad else []
    return rows, list(columns), warnings


# --- choosing columns ----------------------------------------------------------------------------------------


def _resolve(name: str, columns: list[str], wanted: str) -> str:
    if wanted in columns:
        return wanted
    folded = {c.strip().casefold(): c for c in columns}
    if wanted.strip().casefold() in folded:
        return folded[wanted.strip().casefold()]
    raise MissingColumn(f"{name} has no column '{wanted}'; its columns are: {', '.join(columns) or '(none)'}")


def _find_named(columns: list[str], names: Iterable[str], exclude: set[str | None]) -> str | None:
    folded = {c.strip().casefold(): c for c in columns if c not in exclude}
    for wanted in names:
        if wanted.casefold() in folded:
            return folded[wanted.casefold()]
    return None


def _guess_text_column(name: str, columns: list[str], rows: list[tuple[int, Row]]) -> str:
    named = _find_named(columns, TEXT_COLUMN_NAMES, exclude=set())
    if named is not None:
        return named
    sample = [row for _, row in rows[:_SAMPLE_ROWS]]
    title = _find_named(columns, TITLE_COLUMN_NAMES, exclude=set())
    best, best_length = None, 0.0
    for column in columns:
        values = [row.get(column) for row in sample]
        texts = [v for v in values if isinstance(v, str) and v.strip() and parse_date(v) is None]
        if not texts:
            continue
        length = sum(len(v) for v in texts) / len(values)
        # A title column only wins when there is nothing longer: the body is what we want to search.
        if column == title:
            length /= 4
        if length > best_length:
            best, best_length = column, length
    if best is None:
        raise MissingColumn(
            f"{name} has no column with text; its columns are: {', '.join(columns) or '(none)'}; "
            "choose the column that holds the text"
        )
    return best


def _guess_date_column(columns: list[str], rows: list[tuple[int, Row]], exclude: set[str]) -> str | None:
    sample = [row for _, row in rows[:_SAMPLE_ROWS]]
    for column in columns:
        if column in exclude or not any(part in column.casefold() for part in DATE_NAME_PARTS):
            continue
        values = [row.get(column) for row in sample if _as_text(row.get(column)).strip()]
        if values and sum(1 for v in values if parse_date(v) is not None) >= len(values) * _DATE_SUCCESS_SHARE:
            return column
    return None


# --- values --------------------------------------------------------------------------------------------------


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _listing(unit: str, numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:_MAX_LISTED])
    more = f" and {len(numbers) - _MAX_LISTED} more" if len(numbers) > _MAX_LISTED else ""
    return f"{unit}{'s' if len(numbers) > 1 else ''} {shown}{more}"


_ISO_LIKE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:$|[T\s])")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_CJK_DATE = re.compile(r"^(?:(?:民國|民国)\s*)?(\d{2,4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日號号]")
_ROC_NUMERIC = re.compile(r"^(?:(?:民國|民国)\s*)?(\d{2,3})[-/.](\d{1,2})[-/.](\d{1,2})$")
_DAY_MONTH_YEAR = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})(?:$|\s)")
_NAMED_MONTH_FORMATS = ("%b %d, %Y", "%B %d, %Y", "%d %b %Y", "%d %B %Y", "%b %d %Y", "%B %d %Y", "%d-%b-%Y")
_EPOCH_SECONDS = (1e8, 4.2e9)  # 1973 .. 2103


def parse_date(value: Any) -> str | None:
    """An ISO date (YYYY-MM-DD) from the date formats people put in spreadsheets, or None.

    Understands ISO dates and datetimes, 2024/05/01, 20240501, 2024年5月1日, Taiwan's ROC years (民國113年5月1日,
    113/05/01), 5/1/2024 (month first unless the first number is over 12), "May 1, 2024", RFC 2822 dates and
    Unix timestamps (JSON numbers only).
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > _EPOCH_SECONDS[1] * 10 else value
        if _EPOCH_SECONDS[0] <= seconds <= _EPOCH_SECONDS[1]:
            return datetime.fromtimestamp(seconds, tz=UTC).date().isoformat()
        return None
    text = str(value).strip()
    if not text or len(text) > 64:
        return None
    for pattern, roc in ((_ISO_LIKE, False), (_COMPACT, False), (_CJK_DATE, None), (_ROC_NUMERIC, True)):
        found = pattern.match(text)
        if found:
            year, month, day = (int(g) for g in found.groups())
            if roc or (roc is None and year < 1000):
                year += 1911
            return _iso(year, month, day)
    found = _DAY_MONTH_YEAR.match(text)
    if found:
        first, second, year = (int(g) for g in found.groups())
        month, day = (second, first) if first > 12 else (first, second)
        return _iso(year, month, day)
    for fmt in _NAMED_MONTH_FORMATS:
        try:
            return datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    try:
        return parsedate_to_datetime(text).date().isoformat()
    except (TypeError, ValueError, IndexError):
        return None


def _iso(year: int, month: int, day: int) -> str | None:
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None
