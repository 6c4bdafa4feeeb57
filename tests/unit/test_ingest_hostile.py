"""Broken and hostile files: each fails with a specific message, and the parent process stays fine."""

from __future__ import annotations

import io
import time
import zipfile
import zlib
from pathlib import Path

import docx
import pytest
from pypdf import PdfReader, PdfWriter

from services.errors import (
    DocQAError,
    EmptyDocument,
    EncryptedPdf,
    ParseFailed,
    ParseMemoryExceeded,
    ParseTimeout,
    UnknownEncoding,
    UnsupportedFile,
)
from services.ingest import docx as docx_parser
from services.ingest import parse_file, parse_file_inprocess, sandbox
from tests.helpers.hostile import assemble_pdf
from tests.helpers.processes import parser_processes

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x02\x00\x00\x00" + bytes(200)
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + bytes(200)
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500)


def text_pdf(text: str = "Hello hostile world") -> bytes:
    """A one-page PDF with Helvetica text, written by hand."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Page /Parent 4 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 1 0 R >> >> "
        b"/Contents 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Catalog /Pages 4 0 R >>",
    ]
    return assemble_pdf(objects)


def bomb_pdf() -> bytes:
    """A page whose content stream inflates from ~150 KB to 150 MB (past pypdf's 75 MB limit)."""
    data = zlib.compress(b" " * 150_000_000, 9)
    objects = [
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Filter /FlateDecode /Length %d >>\nstream\n" % len(data) + data + b"\nendstream",
        b"<< /Type /Page /Parent 4 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 1 0 R >> >> "
        b"/Contents 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Catalog /Pages 4 0 R >>",
    ]
    return assemble_pdf(objects)


def encrypted_pdf(user_password: str, algorithm: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf("Secret contents here"))))
    writer.encrypt(user_password=user_password, owner_password="owner-pass", algorithm=algorithm)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


# --- PDF -----------------------------------------------------------------------------------------------------


def test_zero_byte_pdf(tmp_path: Path) -> None:
    with pytest.raises(ParseFailed) as caught:
        parse_file(write(tmp_path, "empty.pdf", b""))
    assert caught.value.message.startswith("empty.pdf is empty (0 bytes)")


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_pdf(tmp_path: Path, fraction: float) -> None:
    data = text_pdf()
    with pytest.raises(ParseFailed) as caught:
        parse_file_inprocess(write(tmp_path, "cut.pdf", data[: int(len(data) * fraction)]))
    assert "cut.pdf could not be read as a PDF: the file is damaged or incomplete" in caught.value.message


def test_pdf_header_then_garbage(tmp_path: Path) -> None:
    with pytest.raises(ParseFailed) as caught:
        parse_file_inprocess(write(tmp_path, "junk.pdf", b"%PDF-1.7\n" + b"\x00garbage" * 100))
    assert "junk.pdf" in caught.value.message


def test_not_a_pdf_at_all(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFile) as caught:
        parse_file_inprocess(write(tmp_path, "photo.pdf", PNG))
    assert caught.value.message.startswith("photo.pdf is named .pdf but is a PNG image")
    with pytest.raises(ParseFailed) as caught_text:
        parse_file_inprocess(write(tmp_path, "notes.pdf", "just some text"))
    assert "notes.pdf is not a valid PDF" in caught_text.value.message


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_password_protected_pdf(tmp_path: Path, algorithm: str) -> None:
    path = write(tmp_path, "locked.pdf", encrypted_pdf("user-pass", algorithm))
    with pytest.raises(EncryptedPdf) as caught:
        parse_file(path)
    assert caught.value.message == "locked.pdf is password-protected; remove the password and upload it again"


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_pdf_encrypted_with_empty_user_password_opens(tmp_path: Path, algorithm: str) -> None:
    (document,) = parse_file(write(tmp_path, "restricted.pdf", encrypted_pdf("", algorithm)))
    assert "Secret contents here" in document.pages[0].text


def test_decompression_bomb_pdf_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "bomb.pdf", bomb_pdf())
    started = time.monotonic()
    with pytest.raises(ParseFailed) as caught:
        parse_file(path, memory_mb=1024, timeout_s=60)
    assert time.monotonic() - started < 30
    assert "bomb.pdf could not be read" in caught.value.message and "hostile" in caught.value.message


# --- text formats that are not text --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "what"),
    [
        ("image.txt", PNG, "a PNG image"),
        ("archive.csv", b"PK\x03\x04" + bytes(100), "a ZIP archive"),
        ("program.md", ELF, "a program (ELF executable)"),
        ("page.html", b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(100), "a JPEG image"),
        ("rows.jsonl", b"SQLite format 3\x00" + bytes(100), "an SQLite database"),
    ],
    ids=["png", "zip", "elf", "jpeg", "sqlite"],
)
def test_binary_renamed_as_text(tmp_path: Path, name: str, data: bytes, what: str) -> None:
    with pytest.raises(UnsupportedFile) as caught:
        parse_file(write(tmp_path, name, data))
    assert caught.value.message.startswith(f"{name} does not contain text: it looks like {what}")


def test_pdf_renamed_as_txt(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFile) as caught:
        parse_file_inprocess(write(tmp_path, "paper.txt", text_pdf()))
    assert "rename it to .pdf" in caught.value.message


def test_unknown_binary_renamed_as_txt(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    with pytest.raises(UnknownEncoding) as caught:
        parse_file_inprocess(write(tmp_path, "blob.txt", data))
    assert "blob.txt" in caught.value.message and "binary data" in caught.value.message


# --- DOCX ----------------------------------------------------------------------------------------------------


def small_docx(text: str = "Ordinary paragraph") -> bytes:
    document = docx.Document()
    document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def replace_part(data: bytes, part: str, content: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            target.writestr(entry.filename, content if entry.filename == part else source.read(entry.filename))
    return buffer.getvalue()


def test_docx_zip_bomb_by_ratio(tmp_path: Path) -> None:
    data = small_docx()
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as package:
        package.writestr("word/media/padding.bin", bytes(20 * 1024 * 1024))  # 20 MB of zeros: ~20 KB packed
    with pytest.raises(ParseFailed) as caught:
        parse_file(write(tmp_path, "bomb.docx", buffer.getvalue()))
    assert "bomb.docx was refused" in caught.value.message and "to 1" in caught.value.message


def test_docx_zip_bomb_by_total_size() -> None:
    entries = []
    for index in range(3):
        info = zipfile.ZipInfo(f"word/part{index}.xml")
        info.file_size, info.compress_size = 200 * 1024 * 1024, 20 * 1024 * 1024
        entries.append(info)
    with pytest.raises(ParseFailed) as caught:
        docx_parser._check_sizes(entries, "big.docx")
    assert "big.docx was refused: it would expand to 600 MB" in caught.value.message


def test_docx_external_entity_is_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
        "<w:p><w:r><w:t>before &xxe; after</w:t></w:r></w:p></w:body></w:document>"
    ).encode()
    path = write(tmp_path, "xxe.docx", replace_part(small_docx(), "word/document.xml", xml))
    with pytest.raises(ParseFailed) as caught:
        parse_file(path)
    assert "xxe.docx was refused" in caught.value.message
    assert "TOP-SECRET" not in caught.value.message
    # Defence in depth: python-docx's own XML parser would not resolve the entity either.
    element = docx.oxml.parse_xml(xml)
    assert "TOP-SECRET" not in "".join(element.itertext())


def test_docx_billion_laughs_is_refused(tmp_path: Path) -> None:
    entities = '<!ENTITY a "lol">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8)
    )
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE d [{entities}]>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
        "<w:p><w:r><w:t>&i;</w:t></w:r></w:p></w:body></w:document>"
    ).encode()
    with pytest.raises(ParseFailed) as caught:
        parse_file(write(tmp_path, "laughs.docx", replace_part(small_docx(), "word/document.xml", xml)))
    assert "DOCTYPE" in caught.value.message


def test_old_doc_renamed_docx(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFile) as caught:
        parse_file_inprocess(write(tmp_path, "old.docx", OLE2))
    assert "old Word .doc file or a password-protected document" in caught.value.message


def test_damaged_docx_and_plain_zip(tmp_path: Path) -> None:
    with pytest.raises(ParseFailed) as caught:
        parse_file_inprocess(write(tmp_path, "broken.docx", b"PK\x03\x04" + b"\x00garbage" * 50))
    assert "broken.docx could not be read: the DOCX (ZIP) package is damaged" in caught.value.message
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        package.writestr("readme.txt", "not a document")
    with pytest.raises(ParseFailed) as caught:
        parse_file_inprocess(write(tmp_path, "plain.docx", buffer.getvalue()))
    assert "plain.docx is not a Word document" in caught.value.message


# --- HTML ----------------------------------------------------------------------------------------------------


def test_html_entity_bomb_is_not_expanded(tmp_path: Path) -> None:
    entities = '<!ENTITY a "lol">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8)
    )
    page = f'<?xml version="1.0"?><!DOCTYPE html [{entities}]><html><body><p>&i;</p><p>after</p></body></html>'
    started = time.monotonic()
    (document,) = parse_file(write(tmp_path, "laughs.html", page), timeout_s=30)
    assert time.monotonic() - started < 10
    assert "lollol" not in document.pages[0].text
    assert "after" in document.pages[0].text
    assert "ENTITY" not in document.pages[0].text


def test_deeply_nested_html_finishes(tmp_path: Path) -> None:
    page = "<html><body>" + "<div>" * 100_000 + "deep" + "</div>" * 100_000 + "</body></html>"
    started = time.monotonic()
    try:
        parse_file(write(tmp_path, "deep.html", page), timeout_s=30)
    except EmptyDocument:
        pass  # libxml2 gives up on absurd nesting: the file then has no text for us, which is fine
    assert time.monotonic() - started < 10


# --- the sandbox ---------------------------------------------------------------------------------------------


def test_endless_parser_is_killed_and_parent_stays_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "stuck.txt", "some text")
    monkeypatch.setenv("DOCQA_TEST_PARSER_SLEEP", "60")
    started = time.monotonic()
    with pytest.raises(ParseTimeout) as caught:
        parse_file(path, timeout_s=1)
    assert time.monotonic() - started < 10
    assert caught.value.message == (
        "stuck.txt took longer than 1 s to read and was stopped: the file may be broken or hostile"
    )
    assert parser_processes() == []
    monkeypatch.delenv("DOCQA_TEST_PARSER_SLEEP")
    assert parse_file(path)[0].pages[0].text == "some text"


def test_memory_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "hungry.txt", "some text")
    monkeypatch.setenv("DOCQA_TEST_PARSER_ALLOCATE_MB", "4096")
    with pytest.raises(ParseMemoryExceeded) as caught:
        parse_file(path, memory_mb=512)
    assert caught.value.message.startswith("hungry.txt needed more than 512 MB of memory to read and was stopped")
    monkeypatch.setenv("DOCQA_TEST_PARSER_ALLOCATE_MB", "64")
    assert parse_file(path, memory_mb=512)[0].pages[0].text == "some text"


def test_child_result_mapping() -> None:
    with pytest.raises(ParseFailed) as crashed:
        sandbox._result(b"", b"Segmentation fault", -11, "x.pdf", 2048)
    assert "x.pdf could not be read: the parser stopped unexpectedly (killed by SIGSEGV)" in crashed.value.message
    with pytest.raises(ParseMemoryExceeded):
        sandbox._result(b"", b"Traceback ...\nMemoryError\n", 1, "x.pdf", 2048)
    # The child names an error class; only DocQAError subclasses from services.errors are honoured.
    with pytest.raises(ParseFailed) as odd:
        sandbox._result(b'{"ok": false, "error": "SystemExit", "message": "x.pdf: odd"}', b"", 0, "x.pdf", 2048)
    assert type(odd.value) is ParseFailed and odd.value.message == "x.pdf: odd"
    with pytest.raises(EncryptedPdf):
        sandbox._result(b'{"ok": false, "error": "EncryptedPdf", "message": "m"}', b"", 0, "x.pdf", 2048)
    with pytest.raises(DocQAError):
        sandbox._result(b"{not json", b"", 0, "x.pdf", 2048)


@pytest.mark.slow
def test_large_text_file_within_limits(tmp_path: Path) -> None:
    """~50 MB of text (Chinese and English lines) goes through the default limits."""
    line = "第 {} 行：今天天氣很好，我們一起去公園散步吧。The quick brown fox jumps over the lazy dog.\n"
    path = tmp_path / "big.txt"
    with path.open("w", encoding="utf-8") as handle:
        for index in range(500_000):
            handle.write(line.format(index))
    assert path.stat().st_size > 50_000_000
    started = time.monotonic()
    (document,) = parse_file(path)
    elapsed = time.monotonic() - started
    text = document.pages[0].text
    assert text.startswith("第 0 行：") and text.endswith("lazy dog.")
    assert text.count("\n") == 500_000 - 1
    assert elapsed < 60, f"50 MB took {elapsed:.1f} s"
