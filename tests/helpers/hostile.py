"""Generators of broken and hostile files for the reliability tests (all built in memory, no fixtures on disk).

Each function returns bytes (or writes a file when the result is too big to hold); the tests decide what the
user should see for it. PDFs are assembled by hand so that their structure can be made as broken as needed.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path

HELVETICA = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
PAGE_TAIL = b"/MediaBox [0 0 612 792] /Resources << /Font << /F1 1 0 R >> >>"


def assemble_pdf(objects: list[bytes], *, root: int | None = None, trailer_extra: bytes = b"") -> bytes:
    """A PDF whose object ``n`` (1-based) is ``objects[n-1]``, with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        root or len(objects),
        trailer_extra,
        xref,
    )
    return bytes(out)


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def _text_ops(text: str) -> bytes:
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return f"BT /F1 12 Tf 72 720 Td ({safe}) Tj ET".encode("latin-1")


def text_pdf(*pages: str) -> bytes:
    """A PDF with one page per argument, each showing that (Latin-1) text in Helvetica."""
    pages = pages or ("Hello hostile world",)
    objects: list[bytes] = [HELVETICA]
    page_numbers = []
    pages_obj = 2 + 2 * len(pages)  # the /Pages node comes after every content+page pair
    for text in pages:
        objects.append(_stream(_text_ops(text)))
        objects.append(b"<< /Type /Page /Parent %d 0 R %s /Contents %d 0 R >>" % (pages_obj, PAGE_TAIL, len(objects)))
        page_numbers.append(len(objects))
    kids = b" ".join(b"%d 0 R" % n for n in page_numbers)
    objects.append(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)))
    objects.append(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_obj)
    return assemble_pdf(objects)


def truncated_pdf(fraction: float = 0.6) -> bytes:
    data = text_pdf("This file was cut off in the middle of its download")
    return data[: int(len(data) * fraction)]


def encrypted_pdf(user_password: str = "user-pass") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf("Secret contents here"))))
    writer.encrypt(user_password=user_password, owner_password="owner-pass", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def image_only_pdf(side: int = 200) -> bytes:
    """One page that only draws a blank grey image: what a scan without a text layer looks like."""
    pixels = zlib.compress(bytes([200]) * side * side)
    image = _stream(
        pixels,
        b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 8 "
        b"/Filter /FlateDecode " % (side, side),
    )
    content = _stream(b"q 500 0 0 500 50 150 cm /Im1 Do Q")
    objects = [
        image,
        content,
        b"<< /Type /Page /Parent 4 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Im1 1 0 R >> >> "
        b"/Contents 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Catalog /Pages 4 0 R >>",
    ]
    return assemble_pdf(objects)


def flate_bomb_pdf(megabytes: int = 400, layers: int = 2) -> bytes:
    """A content stream that inflates ``layers`` times over to ``megabytes`` of spaces (a few hundred KB on disk).

    Built without ever holding the expanded data: zlib compresses a run of zeros chunk by chunk.
    """
    compressor = zlib.compressobj(9)
    block = b" " * (1 << 20)
    parts = [compressor.compress(block) for _ in range(megabytes)]
    data = b"".join(parts) + compressor.flush()
    for _ in range(layers - 1):
        data = zlib.compress(data, 9)
    filters = b"[" + b" ".join([b"/FlateDecode"] * layers) + b"]"
    objects = [
        HELVETICA,
        _stream(data, b"/Filter " + filters + b" "),
        b"<< /Type /Page /Parent 4 0 R %s /Contents 2 0 R >>" % PAGE_TAIL,
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Catalog /Pages 4 0 R >>",
    ]
    return assemble_pdf(objects)


def circular_kids_pdf() -> bytes:
    """A page tree whose /Pages node lists itself (and its parent) among its kids: walking it never ends."""
    objects = [
        HELVETICA,
        _stream(_text_ops("A page inside a loop")),
        b"<< /Type /Page /Parent 4 0 R %s /Contents 2 0 R >>" % PAGE_TAIL,
        b"<< /Type /Pages /Kids [3 0 R 4 0 R 5 0 R] /Count 3 /Parent 5 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R 5 0 R] /Count 1000000 >>",
        b"<< /Type /Catalog /Pages 5 0 R >>",
    ]
    return assemble_pdf(objects)


def self_drawing_form_pdf() -> bytes:
    """A Form XObject whose content draws itself: text extraction that follows forms recurses for ever."""
    form = _stream(
        b"BT /F1 12 Tf 72 700 Td (Form text) Tj ET /Fm1 Do",
        b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font << /F1 1 0 R >> "
        b"/XObject << /Fm1 2 0 R >> >> ",
    )
    objects = [
        HELVETICA,
        form,
        _stream(b"BT /F1 12 Tf 72 720 Td (Page text before the loop) Tj ET /Fm1 Do"),
        b"<< /Type /Page /Parent 5 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 1 0 R >> "
        b"/XObject << /Fm1 2 0 R >> >> /Contents 3 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Catalog /Pages 5 0 R >>",
    ]
    return assemble_pdf(objects)


def nested_arrays_pdf(depth: int = 200_000) -> bytes:
    """An object nested ``depth`` arrays deep (parsers that recurse run out of stack)."""
    nested = b"[" * depth + b"1" + b"]" * depth
    objects = [
        HELVETICA,
        _stream(_text_ops("Text next to a very deep array")),
        b"<< /Type /Page /Parent 4 0 R %s /Contents 2 0 R /Deep %s >>" % (PAGE_TAIL, nested),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Catalog /Pages 4 0 R >>",
    ]
    return assemble_pdf(objects)


def xref_loop_pdf() -> bytes:
    """Two cross-reference sections whose /Prev entries point at each other."""
    data = bytearray(text_pdf("Text behind a looping xref"))
    start = data.rindex(b"startxref\n") + len(b"startxref\n")
    xref = int(data[start : data.index(b"\n", start)])
    trailer = data.rindex(b"trailer\n<<") + len(b"trailer\n<<")
    data[trailer:trailer] = b" /Prev %d" % xref  # the only section is its own predecessor
    return bytes(data)


# --- DOCX ----------------------------------------------------------------------------------------------------

_CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    b'<Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/word/document.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
_RELS = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    b'officeDocument" Target="word/document.xml"/></Relationships>'
)
_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def document_xml(body: str, doctype: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{doctype}<w:document xmlns:w="{_W}"><w:body>'
        f"<w:p><w:r><w:t>{body}</w:t></w:r></w:p></w:body></w:document>"
    ).encode()


def docx_bytes(document: bytes | None = None, extra: dict[str, bytes] | None = None) -> bytes:
    """A minimal DOCX package (content types, relationships, the main part) plus ``extra`` parts."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("[Content_Types].xml", _CONTENT_TYPES)
        package.writestr("_rels/.rels", _RELS)
        package.writestr("word/document.xml", document or document_xml("An ordinary paragraph."))
        for name, data in (extra or {}).items():
            package.writestr(name, data)
    return buffer.getvalue()


def docx_zip_bomb(megabytes: int = 300) -> bytes:
    """A DOCX whose main part inflates to ``megabytes`` of XML (about 1000:1); built chunk by chunk."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("[Content_Types].xml", _CONTENT_TYPES)
        package.writestr("_rels/.rels", _RELS)
        with package.open("word/document.xml", "w", force_zip64=True) as part:
            part.write(f'<?xml version="1.0"?><w:document xmlns:w="{_W}"><w:body><w:p><w:r><w:t>'.encode())
            block = b"A" * (1 << 20)
            for _ in range(megabytes):
                part.write(block)
            part.write(b"</w:t></w:r></w:p></w:body></w:document>")
    return buffer.getvalue()


def docx_xxe(secret_path: Path) -> bytes:
    """A DOCX whose text pulls a local file in through an external entity."""
    doctype = f'<!DOCTYPE d [<!ENTITY xxe SYSTEM "file://{secret_path}">]>'
    return docx_bytes(document_xml("before &xxe; after", doctype))


# --- text ------------------------------------------------------------------------------------------------------

ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + bytes(200)


def binary_blob(size: int = 8192, seed: int = 7) -> bytes:
    """Bytes with no signature that no text encoding reads plausibly (a renamed archive or program)."""
    import random

    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(size))


def mixed_encoding_text(big5_line: str, utf8_line: str) -> bytes:
    """One file, two encodings: a Big5 line followed by a UTF-8 line (what concatenating exports produces)."""
    return big5_line.encode("big5") + b"\n" + utf8_line.encode("utf-8") + b"\n"


def write_big_text(path: Path, size_bytes: int, line: str = "The quick brown fox jumps over the lazy dog. ") -> Path:
    """Stream ``size_bytes`` of text to ``path`` (never held in memory)."""
    block = (line * (1 + (1 << 20) // len(line))).encode("utf-8")[: 1 << 20]
    with path.open("wb") as handle:
        left = size_bytes
        while left > 0:
            piece = block[: min(left, len(block))]
            handle.write(piece)
            left -= len(piece)
    assert path.stat().st_size == size_bytes
    return path


def sparse_file(path: Path, size_bytes: int) -> Path:
    """A file of ``size_bytes`` that takes no disk space (a hole): for size checks that must not read it."""
    with path.open("wb") as handle:
        handle.truncate(size_bytes)
    os.utime(path)
    return path
