"""Choose the parser for a file, check its content matches its name, and normalise what the parser returns.

This module is imported by the parent process and by the worker, so it imports no parser at module level: the
worker imports only the one parser its file needs (startup time is most of a small file's parse time).
"""

from __future__ import annotations

import os
from pathlib import Path

from services.errors import EmptyDocument, ParseFailed, UnsupportedFile
from services.models import ParsedDocument, ParsedPage

KIND_BY_EXTENSION: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".csv": "csv",
    ".jsonl": "jsonl",
}
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(KIND_BY_EXTENSION)
SUPPORTED_LABEL = "PDF, DOCX, TXT, Markdown (.md, .markdown), HTML (.html, .htm), CSV and JSON Lines (.jsonl)"

_TEXT_KINDS = frozenset({"txt", "md", "html", "csv", "jsonl"})
_SNIFF_BYTES = 4096

# Signatures of common binary formats, to say what a misnamed file really is instead of decoding garbage.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive or an Office document (DOCX, XLSX, PPTX)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office file (.doc, .xls, .ppt) or a password-protected Office file"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", ""),  # too short to trust alone: checked below
    (b"\x7fELF", "a program (ELF executable)"),
    (b"MZ", ""),  # likewise
    (b"\xca\xfe\xba\xbe", "a program (Mach-O or Java class)"),
    (b"\xcf\xfa\xed\xfe", "a program (Mach-O)"),
    (b"\x00asm", "a WebAssembly program"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", ""),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"OggS", "an Ogg audio/video file"),
    (b"fLaC", "a FLAC audio file"),
    (b"ID3", ""),
    (b"{\\rtf", "an RTF document (save it as DOCX or TXT)"),
    (b"%!PS", "a PostScript document"),
    (b"8BPS", "a Photoshop image"),
)


def kind_of(path: Path, name: str | None = None) -> str:
    """The parser kind for a file name, or UnsupportedFile."""
    ext = path.suffix.lower()
    kind = KIND_BY_EXTENSION.get(ext)
    if kind is None:
        shown = f"{ext} files are" if ext else "files without an extension are"
        raise UnsupportedFile(f"{name or path.name}: {shown} not supported; supported: {SUPPORTED_LABEL}")
    return kind


def sniff(head: bytes) -> str | None:
    """What a file's first bytes say it is ("a PNG image"), or None for no known binary signature."""
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"WEBP": "a WebP image", b"WAVE": "a WAV audio file", b"AVI ": "an AVI video"}.get(
            head[8:12], "a RIFF media file"
        )
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "an MP4/MOV video or HEIC image"
    for signature, label in _SIGNATURES:
        if head.startswith(signature):
            # Two-letter signatures also start ordinary text ("MZ Bank", "BM 2024"): trust them only with NULs.
            if not label:
                return "a binary file (not text)" if b"\x00" in head[:64] else None
            return label
    return None


def check_content(path: Path, name: str, kind: str) -> None:
    """Refuse files whose bytes do not match their extension, with a message saying what they are."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as err:
        raise ParseFailed(f"{name} could not be opened ({err.strerror or err})") from err
    if size == 0:
        if kind in _TEXT_KINDS:
            raise EmptyDocument(f"{name} is empty (0 bytes)")
        raise ParseFailed(f"{name} is empty (0 bytes): the upload or download may have failed; try again")
    found = sniff(head)
    if kind == "pdf":
        if b"%PDF-" in head[:1024]:
            return
        if found:
            raise UnsupportedFile(f"{name} is named .pdf but is {found}; only real PDF files can be read")
        raise ParseFailed(f"{name} is not a valid PDF: it does not start with a PDF header (damaged or misnamed?)")
    if kind == "docx":
        if head.startswith(b"PK\x03\x04"):
            return
        if head.startswith(b"\xd0\xcf\x11\xe0"):
            raise UnsupportedFile(
                f"{name} is not a .docx file: it is an old Word .doc file or a password-protected document; "
                "open it in Word, remove any password, and save it as .docx"
            )
        if found:
            raise UnsupportedFile(f"{name} is named .docx but is {found}")
        raise ParseFailed(f"{name} is not a valid DOCX file: it is not a ZIP package (damaged or misnamed?)")
    if head.lstrip()[:5] == b"%PDF-":
        raise UnsupportedFile(f"{name} is a PDF document with a {path.suffix} name: rename it to .pdf and try again")
    if found:
        raise UnsupportedFile(f"{name} does not contain text: it looks like {found}. Supported: {SUPPORTED_LABEL}")


def parse_path(
    path: Path,
    *,
    source_name: str | None = None,
    text_column: str | None = None,
    id_column: str | None = None,
    date_column: str | None = None,
    ocr: bool = True,
    deadline: float | None = None,
) -> list[ParsedDocument]:
    """Parse in this process (the sandbox's worker calls this). ``deadline`` is a time.monotonic() value."""
    path = Path(path)
    name = source_name or path.name
    kind = kind_of(path, name)
    check_content(path, name, kind)
    _test_hook(name)
    if kind == "pdf":
        from services.ingest import pdf

        documents = [pdf.parse(path, name, ocr_enabled=ocr, deadline=deadline)]
    elif kind == "docx":
        from services.ingest import docx

        documents = [docx.parse(path, name)]
    elif kind == "html":
        from services.ingest import html

        documents = [html.parse(path, name)]
    elif kind in ("csv", "jsonl"):
        from services.ingest import tabular

        documents = tabular.parse(
            path, name, kind, text_column=text_column, id_column=id_column, date_column=date_column
        )
    else:
        from services.ingest import text

        documents = [text.parse(path, name, kind)]
    return [_finish(document, name) for document in documents]


def _finish(document: ParsedDocument, name: str) -> ParsedDocument:
    """Normalise every page and the title; refuse a document with no text at all (PDFs raise NoTextLayer)."""
    from services.ingest.normalize import normalize

    document.pages = [ParsedPage(number=p.number, text=normalize(p.text).strip()) for p in document.pages]
    document.title = normalize(document.title).strip()
    if document.kind != "pdf" and not any(p.text for p in document.pages):
        raise EmptyDocument(f"{name} contains no text")
    return document


def _test_hook(name: str) -> None:
    """Tests simulate a parser stuck in an endless loop (or a hostile file) with DOCQA_TEST_PARSER_SLEEP, or
    one that needs too much memory with DOCQA_TEST_PARSER_ALLOCATE_MB; with DOCQA_TEST_PARSER_ONLY (a shown
    file name), only that file of a batch behaves so."""
    only = os.environ.get("DOCQA_TEST_PARSER_ONLY")
    if only and only != name:
        return
    seconds = os.environ.get("DOCQA_TEST_PARSER_SLEEP")
    if seconds:
        import time

        time.sleep(float(seconds))
    megabytes = os.environ.get("DOCQA_TEST_PARSER_ALLOCATE_MB")
    if megabytes:  # a decompression bomb's effect: far more memory than the file's size
        hog = bytearray(int(megabytes) * 1024 * 1024)
        del hog
