"""Each format's parser on small fixtures built in tmp_path, in-process and through the sandbox."""

from __future__ import annotations

import json
import shutil
import time
import zlib
from pathlib import Path

import docx
import pytest

from services.errors import EmptyDocument, MissingColumn, NoTextLayer, UnsupportedFile
from services.ingest import SUPPORTED_EXTENSIONS, parse_file, parse_file_inprocess
from services.ingest import ocr as ocr_module
from services.ingest.normalize import fold_text, normalize
from services.ingest.tabular import parse_date
from tests.helpers.hostile import assemble_pdf

HAS_TESSERACT = bool(shutil.which("tesseract")) and "eng" in ocr_module.available_languages()


# --- fixtures ------------------------------------------------------------------------------------------------


def make_pdf(pages: list[str | None], images: dict[int, tuple[int, int, bytes]] | None = None) -> bytes:
    """A minimal PDF by hand: Helvetica text per page (None: blank), optional grey image per page index."""
    images = images or {}
    objects: list[bytes] = [b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    pages_id = 2 + 3 * len(pages)  # after the font and (content, image, page) triples
    page_ids = []
    for index, text in enumerate(pages):
        ops = []
        if text:
            ops += ["BT", "/F1 12 Tf", "72 720 Td", "14 TL"]
            for line in text.split("\n"):
                escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
                ops.append(f"({escaped}) Tj T*")
            ops.append("ET")
        xobject = b""
        if index in images:
            width, height, grey = images[index]
            ops.append(f"q {width // 2} 0 0 {height // 2} 36 300 cm /Im1 Do Q")
            data = zlib.compress(grey)
            objects.append(
                b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
                b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n"
                % (width, height, len(data))
                + data
                + b"\nendstream"
            )
            xobject = b" /XObject << /Im1 %d 0 R >>" % len(objects)
        else:
            objects.append(b"<< /Length 0 >>\nstream\n\nendstream")  # unused placeholder keeps ids simple
        stream = "\n".join(ops).encode("cp1252")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        content_id = len(objects)
        objects.append(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 1 0 R >>%s >> "
            b"/Contents %d 0 R >>" % (pages_id, xobject, content_id)
        )
        page_ids.append(len(objects))
    kids = b" ".join(b"%d 0 R" % pid for pid in page_ids)
    objects.append(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)))
    assert len(objects) == pages_id
    objects.append(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    return assemble_pdf(objects)


def text_image(text: str) -> tuple[int, int, bytes]:
    """A grey image of large black text, like a scanned page, for OCR."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (1400, 220), 255)
    draw = ImageDraw.Draw(image)
    draw.text((40, 50), text, fill=0, font=ImageFont.load_default(size=90))
    return image.width, image.height, image.tobytes()


def write(tmp_path: Path, name: str, data: bytes | str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


# --- API -----------------------------------------------------------------------------------------------------


def test_supported_extensions() -> None:
    assert SUPPORTED_EXTENSIONS == {".pdf", ".docx", ".txt", ".md", ".markdown", ".html", ".htm", ".csv", ".jsonl"}


def test_unsupported_extension_names_the_supported_formats(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.xyz", "hello")
    with pytest.raises(UnsupportedFile) as caught:
        parse_file(path)
    assert ".xyz files are not supported; supported: PDF, DOCX" in caught.value.message
    assert "notes.xyz" in caught.value.message


def test_sandbox_parses_a_small_file_under_the_shown_name(tmp_path: Path) -> None:
    """The sandbox's speed is measured in bench/bench_ingest.py; here only that it answers, without hanging."""
    path = write(tmp_path, "a.txt", "hello world\n")
    started = time.monotonic()
    documents = parse_file(path, source_name="shown.txt")
    assert [d.source for d in documents] == ["shown.txt"]
    assert documents[0].pages[0].text == "hello world"
    assert time.monotonic() - started < 60, "the sandbox hung"


def test_sandbox_and_inprocess_agree(tmp_path: Path) -> None:
    path = write(tmp_path, "r.pdf", make_pdf(["First page", None, "Third page"]))
    assert [d.to_dict() for d in parse_file(path)] == [d.to_dict() for d in parse_file_inprocess(path)]


# --- PDF -----------------------------------------------------------------------------------------------------


def test_pdf_pages_numbers_and_blank_page_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "report.pdf", make_pdf(["Hello from page one\nsecond line", None, "Page three text"]))
    (document,) = parse_file_inprocess(path)
    assert document.kind == "pdf"
    assert [p.number for p in document.pages] == [1, 2, 3]
    assert "Hello from page one" in document.pages[0].text
    assert document.pages[1].text == ""
    assert "Page three text" in document.pages[2].text
    assert document.skipped_pages == [2]
    assert "page 2 has no text: scanned?" in document.warnings
    assert document.metadata["page_count"] == 3


def test_pdf_without_any_text_raises_no_text_layer_naming_pages(tmp_path: Path) -> None:
    path = write(tmp_path, "blank.pdf", make_pdf([None, None, None]))
    with pytest.raises(NoTextLayer) as caught:
        parse_file_inprocess(path)
    assert "blank.pdf" in caught.value.message
    assert "pages 1–3" in caught.value.message


def test_scanned_pdf_with_ocr_off_names_pages_needing_ocr(tmp_path: Path) -> None:
    path = write(tmp_path, "scan.pdf", make_pdf([None, "Some real text on page two"], {0: text_image("HELLO")}))
    (document,) = parse_file_inprocess(path, ocr=False)
    assert document.skipped_pages == [1]
    assert "page 1 has no text: scanned?" in document.warnings
    assert any("OCR is turned off" in w for w in document.warnings)


def test_scanned_pdf_without_tesseract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr_module, "available_languages", lambda: ())
    path = write(tmp_path, "scan.pdf", make_pdf([None], {0: text_image("HELLO")}))
    with pytest.raises(NoTextLayer) as caught:
        parse_file_inprocess(path)
    assert "page 1" in caught.value.message and "Tesseract" in caught.value.message


@pytest.mark.skipif(not HAS_TESSERACT, reason="Tesseract (with eng) is not installed")
def test_scanned_page_is_ocrd_when_tesseract_exists(tmp_path: Path) -> None:
    path = write(tmp_path, "scan.pdf", make_pdf([None, "Typed page"], {0: text_image("HELLO OCR 2024")}))
    (document,) = parse_file(path)
    assert "page 1 was OCR'd" in document.warnings
    assert "HELLO" in document.pages[0].text.upper()
    assert document.skipped_pages == []


def test_ocr_text_cleanup_joins_cjk() -> None:
    assert ocr_module.clean_ocr_text("中 華 民 國 憲 法 Article 1  \n\n") == "中華民國憲法 Article 1"


# --- DOCX ----------------------------------------------------------------------------------------------------


def make_docx(path: Path) -> Path:
    document = docx.Document()
    document.core_properties.title = "季度報告"
    document.add_heading("第一章 概述", level=1)
    document.add_paragraph("這是第一段。It has English too.")
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).text = "名稱"
    table.cell(0, 1).text = "數量"
    table.cell(0, 2).text = "備註"
    table.cell(1, 0).text = "蘋果"
    merged = table.cell(1, 1).merge(table.cell(1, 2))
    merged.text = "三個"
    document.add_paragraph("表格之後的段落。")
    # A content control (w:sdt), as in tables of contents: python-docx's own API would skip its text.
    sdt = docx.oxml.parse_xml(
        '<w:sdt xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:sdtContent>'
        "<w:p><w:r><w:t>目錄內容</w:t></w:r></w:p></w:sdtContent></w:sdt>"
    )
    document.element.body.insert(len(document.element.body) - 1, sdt)
    document.save(str(path))
    return path


def test_docx_paragraphs_and_tables_in_order(tmp_path: Path) -> None:
    (document,) = parse_file_inprocess(make_docx(tmp_path / "report.docx"))
    assert document.kind == "docx"
    assert document.title == "季度報告"
    lines = document.pages[0].text.split("\n")
    assert lines == [
        "第一章 概述",
        "這是第一段。It has English too.",
        "名稱 | 數量 | 備註",
        "蘋果 | 三個",  # the merged cell once, not once per grid column
        "表格之後的段落。",
        "目錄內容",
    ]


def test_empty_docx_is_empty_document(tmp_path: Path) -> None:
    path = tmp_path / "empty.docx"
    docx.Document().save(str(path))
    with pytest.raises(EmptyDocument):
        parse_file_inprocess(path)


# --- HTML ----------------------------------------------------------------------------------------------------

HTML = """<!DOCTYPE html><html><head><meta charset="big5"><title>  測試 頁面 </title>
<style>p { color: red }</style><script>var secret = "script text";</script></head>
<body><noscript>enable javascript</noscript><template><p>template text</p></template>
<h1>標題</h1><p>這是第一段，
內容很長。</p><p hidden>hidden text</p><div style="display: none">invisible</div>
<table><tr><th>名稱</th><th>數量</th></tr><tr><td>蘋果</td><td>3</td></tr></table>
<ul><li>one</li><li>two <a href="#">link</a></li></ul>Hello<br>World<!-- a comment --></body></html>"""


def test_html_visible_text_title_and_meta_charset(tmp_path: Path) -> None:
    path = write(tmp_path, "page.html", HTML, encoding="cp950")
    (document,) = parse_file_inprocess(path)
    assert document.kind == "html"
    assert document.title == "測試 頁面"
    assert document.metadata["encoding"] == "cp950"
    text = document.pages[0].text
    assert text.split("\n") == [
        "標題",
        "這是第一段，內容很長。",
        "名稱 | 數量",
        "蘋果 | 3",
        "one",
        "two link",
        "Hello",
        "World",
    ]
    for invisible in ("script text", "color: red", "enable javascript", "template text", "hidden", "invisible"):
        assert invisible not in text


def test_html_without_charset_is_detected(tmp_path: Path) -> None:
    path = write(tmp_path, "page.htm", "<p>简体中文的网页内容，没有声明编码。</p>", encoding="gb18030")
    (document,) = parse_file_inprocess(path)
    assert document.pages[0].text == "简体中文的网页内容，没有声明编码。"


def test_html_wrong_charset_falls_back_to_detection(tmp_path: Path) -> None:
    page = '<meta charset="utf-8"><p>這個網頁宣稱是 UTF-8，其實是以 Big5 儲存的檔案。</p>'
    (document,) = parse_file_inprocess(write(tmp_path, "wrong.html", page, encoding="cp950"))
    assert "其實是以 Big5 儲存的檔案" in document.pages[0].text


# --- TXT / MD ------------------------------------------------------------------------------------------------


def test_txt_utf8_and_crlf(tmp_path: Path) -> None:
    (document,) = parse_file_inprocess(write(tmp_path, "a.txt", "第一行\r\n第二行\r\n"))
    assert document.kind == "txt"
    assert document.pages == [document.pages[0]] and document.pages[0].number == 1
    assert document.pages[0].text == "第一行\n第二行"


def test_txt_utf16_with_bom(tmp_path: Path) -> None:
    (document,) = parse_file_inprocess(write(tmp_path, "u.txt", "\ufeff中文 text", encoding="utf-16-le"))
    assert document.pages[0].text == "中文 text"


def test_markdown_kept_as_text_with_title(tmp_path: Path) -> None:
    source = "---\nlayout: post\n---\n\n# 使用說明\n\n- item **bold**\n\n```\ncode\n```\n"
    (document,) = parse_file_inprocess(write(tmp_path, "guide.markdown", source))
    assert document.kind == "md"
    assert document.title == "使用說明"
    assert "- item **bold**" in document.pages[0].text
    assert "```\ncode\n```" in document.pages[0].text


def test_empty_and_whitespace_text_files(tmp_path: Path) -> None:
    with pytest.raises(EmptyDocument):
        parse_file_inprocess(write(tmp_path, "empty.txt", b""))
    with pytest.raises(EmptyDocument):
        parse_file_inprocess(write(tmp_path, "blank.md", " \n\t\n"))


# --- normalisation -------------------------------------------------------------------------------------------


def test_normalisation_folds_radicals_but_keeps_cjk_punctuation() -> None:
    text = "常⽤符号⻅下表。真的嗎？是！注意；ﬁne Ａ１\x00"
    assert fold_text(text) == "常用符号见下表。真的嗎？是！注意；fine A1"
    assert normalize(text) == "常用符号见下表。真的嗎？是！注意；fine A1"
    assert not any(0x2E80 <= ord(ch) <= 0x2FDF for ch in normalize("⺟⻅⻣⻄⻆⻓⻧⼀⽤⾯"))


def test_parsed_text_is_normalised(tmp_path: Path) -> None:
    (document,) = parse_file_inprocess(write(tmp_path, "r.txt", "化学⽅程式⼀般⽤“+”号连接。"))
    assert document.pages[0].text == "化学方程式一般用“+”号连接。"


# --- CSV / JSONL ---------------------------------------------------------------------------------------------

PEOPLE = (
    "id,title,published,內容,city\n"
    "A1,第一篇,2024-05-01,今天天氣很好。,台北\n"
    "A2,第二篇,民國113年5月2日,明天會下雨。,高雄\n"
)


def test_csv_one_document_per_row(tmp_path: Path) -> None:
    documents = parse_file_inprocess(write(tmp_path, "people.csv", PEOPLE))
    assert [d.source for d in documents] == ["people.csv#row-2", "people.csv#row-3"]
    first = documents[0]
    assert first.kind == "csv"
    assert first.pages[0].text == "今天天氣很好。"
    assert first.title == "第一篇"
    assert first.date == "2024-05-01"
    assert documents[1].date == "2024-05-02"  # ROC year 113 = 2024
    assert first.metadata == {"id": "A1", "title": "第一篇", "published": "2024-05-01", "city": "台北"}


def test_csv_id_and_explicit_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv", PEOPLE)
    documents = parse_file(path, text_column="city", id_column="id", date_column="published")
    assert [d.source for d in documents] == ["people.csv#A1", "people.csv#A2"]
    assert [d.pages[0].text for d in documents] == ["台北", "高雄"]
    assert "內容" in documents[0].metadata


def test_csv_missing_column_lists_available(tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv", PEOPLE)
    with pytest.raises(MissingColumn) as caught:
        parse_file(path, text_column="body_text")
    assert "body_text" in caught.value.message
    assert "id, title, published, 內容, city" in caught.value.message


def test_csv_picks_longest_column_and_tsv(tmp_path: Path) -> None:
    rows = (
        "code\tnote\twhen\n"
        "X\t這是一段比較長的說明文字，應該被當成內文。\t2024/01/02\n"
        "Y\t另一段很長的說明文字，也是內文。\t2024/01/03\n"
    )
    documents = parse_file_inprocess(write(tmp_path, "notes.csv", rows))
    assert [d.pages[0].text for d in documents][0].startswith("這是一段")
    assert documents[0].date is None  # "when" is not a date-like column name
    documents = parse_file_inprocess(write(tmp_path, "notes2.csv", rows.replace("when", "date")))
    assert documents[0].date == "2024-01-02"


def test_csv_in_big5_with_empty_rows(tmp_path: Path) -> None:
    rows = "標題,內容\n第一,這是用 Big5 編碼儲存的試算表內容。\n第二,\n第三,另一列也有中文內容。\n"
    documents = parse_file_inprocess(write(tmp_path, "big5.csv", rows, encoding="cp950"))
    assert [d.source for d in documents] == ["big5.csv#row-2", "big5.csv#row-4"]
    assert documents[0].title == "第一"
    assert any("row 3" in w and "skipped" in w for w in documents[0].warnings)


def test_csv_with_only_a_header_is_empty(tmp_path: Path) -> None:
    with pytest.raises(EmptyDocument):
        parse_file_inprocess(write(tmp_path, "h.csv", "text,id\n"))


def test_jsonl_rows_lines_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": 7, "text": "First post", "created": "2024-03-04T10:00:00Z", "tags": ["a", "b"]}),
        "",
        "not json",
        json.dumps({"id": 8, "text": "Second post", "created": 1714521600}),
    ]
    documents = parse_file_inprocess(write(tmp_path, "posts.jsonl", "\n".join(lines)))
    assert [d.source for d in documents] == ["posts.jsonl#row-1", "posts.jsonl#row-4"]
    assert documents[0].metadata == {"id": 7, "created": "2024-03-04T10:00:00Z", "tags": ["a", "b"]}
    assert [d.date for d in documents] == ["2024-03-04", "2024-05-01"]
    assert any("line 3" in w for w in documents[0].warnings)
    with pytest.raises(MissingColumn) as caught:
        parse_file_inprocess(tmp_path / "posts.jsonl", text_column="body")
    assert "id, text, created, tags" in caught.value.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01", "2024-05-01"),
        ("2024-05-01T23:10:00+08:00", "2024-05-01"),
        ("2024/5/1", "2024-05-01"),
        ("20240501", "2024-05-01"),
        ("2024年5月1日", "2024-05-01"),
        ("民國113年5月1日", "2024-05-01"),
        ("113/05/01", "2024-05-01"),
        ("5/1/2024", "2024-05-01"),
        ("25/12/2024", "2024-12-25"),
        ("May 1, 2024", "2024-05-01"),
        ("1 May 2024", "2024-05-01"),
        ("Wed, 01 May 2024 10:00:00 +0000", "2024-05-01"),
        (1714521600, "2024-05-01"),
        ("2024-02-30", None),
        ("soon", None),
        ("10:30", None),
        ("", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_date(value: object, expected: str | None) -> None:
    assert parse_date(value) == expected


def test_jsonl_lone_surrogates_survive_the_sandbox(tmp_path: Path) -> None:
    path = write(tmp_path, "s.jsonl", '{"text": "abc\\ud800def", "note": "x\\udfffy"}\n')
    (document,) = parse_file(path)
    assert document.pages[0].text == "abcdef"  # dropped from the text we index
    assert document.metadata == {"note": "x\udfffy"}  # metadata comes back as the file had it
