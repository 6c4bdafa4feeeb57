"""DOCX: the text of paragraphs and tables in document order, after checking the ZIP package is not hostile.

A .docx is a ZIP of XML parts. Before python-docx opens it we refuse zip bombs (by the sizes the ZIP directory
declares; Python's zipfile never inflates an entry past its declared size) and XML with a DOCTYPE or entity
declarations (Word never writes them; they are how XXE attacks read local files). python-docx's own parser also
runs with ``resolve_entities=False``, so an entity would stay unresolved even without the check.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from services.errors import ParseFailed
from services.models import ParsedDocument, ParsedPage

MAX_UNCOMPRESSED_BYTES = 500 * 1024 * 1024
MAX_RATIO = 200  # real DOCX parts compress 5–30x; bombs compress 1000x and more
RATIO_CHECK_MIN_BYTES = 5 * 1024 * 1024  # a small part may compress extremely well without being a bomb
MAX_ENTRIES = 10_000
_XML_PREFIX_BYTES = 64 * 1024  # a DOCTYPE must come before the root element, so the start of a part suffices

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"


def check_package(path: Path, name: str) -> None:
    """Raise ParseFailed for a damaged ZIP, a zip bomb, or XML with DTD/entity declarations."""
    try:
        with zipfile.ZipFile(path) as package:
            entries = package.infolist()
            _check_sizes(entries, name)
            names = {entry.filename for entry in entries}
            if "word/document.xml" not in names:
                raise ParseFailed(
                    f"{name} is not a Word document: the ZIP package has no word/document.xml "
                    "(is it another Office format renamed to .docx?)"
                )
            for entry in entries:
                if entry.filename.endswith((".xml", ".rels")):
                    with package.open(entry) as part:
                        _check_xml_prefix(part.read(_XML_PREFIX_BYTES), name, entry.filename)
    except zipfile.BadZipFile as err:
        raise ParseFailed(f"{name} could not be read: the DOCX (ZIP) package is damaged or incomplete ({err})") from err
    except (NotImplementedError, RuntimeError) as err:  # unsupported compression, encrypted ZIP entries
        raise ParseFailed(f"{name} could not be read: {err}") from err


def _check_sizes(entries: list[zipfile.ZipInfo], name: str) -> None:
    if len(entries) > MAX_ENTRIES:
        raise ParseFailed(f"{name} was refused: its package has {len(entries):,} parts, more than any real document")
    total = sum(entry.file_size for entry in entries)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise ParseFailed(
            f"{name} was refused: it would expand to {total / 1024 / 1024:,.0f} MB when unpacked (limit "
            f"{MAX_UNCOMPRESSED_BYTES // 1024 // 1024} MB); it may be a zip bomb"
        )
    for entry in entries:
        if entry.file_size >= RATIO_CHECK_MIN_BYTES and entry.file_size > MAX_RATIO * max(1, entry.compress_size):
            ratio = entry.file_size / max(1, entry.compress_size)
            raise ParseFailed(
                f"{name} was refused: its part {entry.filename} is compressed {ratio:,.0f} to 1, which only "
                "zip bombs are; it may be hostile"
            )


def _check_xml_prefix(prefix: bytes, name: str, part: str) -> None:
    text = prefix
    if prefix[:2] in (b"\xff\xfe", b"\xfe\xff") or prefix[:4] in (b"<\x00?\x00", b"\x00<\x00?"):
        text = prefix.decode("utf-16", errors="ignore").encode("utf-8")
    if b"<!DOCTYPE" in text or b"<!ENTITY" in text:
        raise ParseFailed(
            f"{name} was refused: its part {part} declares a DOCTYPE or XML entities, which Word never writes; "
            "the file may be crafted to read files from this computer"
        )


def parse(path: Path, name: str) -> ParsedDocument:
    check_package(path, name)
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
        blocks = list(_blocks(document.element.body))
    except PackageNotFoundError as err:
        raise ParseFailed(f"{name} could not be read as a Word document ({err})") from err
    except (ValueError, KeyError, AttributeError, TypeError, SyntaxError) as err:
        # lxml's XMLSyntaxError is a SyntaxError; python-docx raises ValueError for .docm and other types.
        raise ParseFailed(f"{name} could not be read as a Word document: {err}") from err
    text = "\n".join(block for block in blocks if block.strip())
    title, date = _core_properties(document)
    return ParsedDocument(source=name, kind="docx", pages=[ParsedPage(number=1, text=text)], title=title, date=date)


def _blocks(container: Any) -> Any:
    """Yield the text of each paragraph and table row under ``container`` in document order.

    We walk the XML rather than python-docx's Paragraph/Table objects: those skip content controls (w:sdt,
    used for tables of contents and forms) and repeat merged cells once per grid column.
    """
    for child in container.iterchildren():
        tag = child.tag
        if tag == f"{_W}p":
            yield _paragraph_text(child)
        elif tag == f"{_W}tbl":
            yield from _table_rows(child)
        elif tag in (f"{_W}sdt", f"{_W}customXml", f"{_W}sdtContent", f"{_W}ins", f"{_W}smartTag"):
            yield from _blocks(child)


def _paragraph_text(paragraph: Any) -> str:
    # A text box is stored twice (DrawingML in mc:Choice, VML in mc:Fallback), and moved text is kept at its old
    # place too (w:moveFrom): drop the copies so their text is not read twice. The tree is ours to change.
    for copy in list(paragraph.iter(f"{_MC}Fallback", f"{_W}moveFrom")):
        parent = copy.getparent()
        if parent is not None:
            parent.remove(copy)
    parts = []
    for node in paragraph.iter(f"{_W}t", f"{_W}tab", f"{_W}br", f"{_W}cr", f"{_W}noBreakHyphen"):
        tag = node.tag
        if tag == f"{_W}t":
            parts.append(node.text or "")
        elif tag == f"{_W}tab":
            parts.append("\t")
        elif tag == f"{_W}noBreakHyphen":
            parts.append("-")
        else:
            parts.append("\n")
    return "".join(parts)


def _table_rows(table: Any) -> Any:
    for row in table.iterchildren(f"{_W}tr"):
        cells = []
        for cell in row.iterchildren(f"{_W}tc"):
            text = " ".join(block.strip() for block in _blocks(cell) if block.strip())
            if text:
                cells.append(text)
        if cells:
            yield " | ".join(cells)


def _core_properties(document: Any) -> tuple[str, str | None]:
    try:
        props = document.core_properties
        title = (props.title or "").strip()
        created = props.created
    except Exception:  # noqa: BLE001 - broken docProps/core.xml only loses the title and date
        return "", None
    return title, created.date().isoformat() if created is not None else None
