"""Every real PDF in ../shared/data/pdfs either parses (right page count, text on its pages) or fails with a
specific message; scanned ones ask for OCR (or are OCR'd when Tesseract is installed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.errors import DocQAError, NoTextLayer
from services.ingest import ocr, parse_file

PDF_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pdfs"
PDFS = sorted(PDF_DIR.glob("*.pdf")) if PDF_DIR.is_dir() else []
SCANNED = {"en_scanned_huckfinn-c02-22.pdf", "en_scanned_linn-sequencer_2col.pdf", "en_scanned_docling-ocr_test.pdf"}
# Known page counts, and pages known to carry no text layer (vector-only pages).
PAGES = {
    "zh-TW_roc-constitution.pdf": 19,
    "zh-CN_scanned-ocrlayer_audit-letter.pdf": 6,
    "zh-CN_chemistry-notation_1p.pdf": 1,
    "en_federal-register-2020-17221_3col.pdf": 15,
    "en_tableformer_arxiv2203.00274v2_2col_tables.pdf": 10,
    "en_nics-background-checks-2015-11_table.pdf": 1,
    "en_ca-warn-report_tables.pdf": 16,
    "en_ibm-redp5110_sampled_tables.pdf": 18,
    "en_faa-amt-handbook_sample_2col.pdf": 1,
    "en_scanned_huckfinn-c02-22.pdf": 1,
    "en_scanned_linn-sequencer_2col.pdf": 1,
    "en_scanned_docling-ocr_test.pdf": 1,
}
EMPTY_PAGES = {"en_ibm-redp5110_sampled_tables.pdf": [17]}
HAS_OCR = bool(shutil.which("tesseract")) and "eng" in ocr.available_languages()

pytestmark = pytest.mark.skipif(not PDFS, reason=f"shared test PDFs not found in {PDF_DIR}")


def _ids(paths: list[Path]) -> list[str]:
    return [path.name for path in paths]


@pytest.mark.parametrize("path", PDFS, ids=_ids(PDFS))
def test_shared_pdf_parses_or_fails_specifically(path: Path) -> None:
    try:
        documents = parse_file(path, ocr=False)
    except DocQAError as err:
        assert path.name in err.message  # a message for a person, naming the file
        if path.name in SCANNED:
            assert isinstance(err, NoTextLayer)
            assert "page 1" in err.message and "OCR" in err.message
            return
        if path.name in PAGES:
            pytest.fail(f"{path.name} should parse: {err.message}")
        return
    assert path.name not in SCANNED, "an image-only PDF must not parse without OCR"
    (document,) = documents
    expected = PAGES.get(path.name)
    if expected is not None:
        assert len(document.pages) == expected
        assert document.metadata["page_count"] == expected
    assert [p.number for p in document.pages] == list(range(1, len(document.pages) + 1))
    empty = [p.number for p in document.pages if not p.text.strip()]
    assert empty == document.skipped_pages
    if path.name in PAGES:
        assert empty == EMPTY_PAGES.get(path.name, [])
    for number in empty:
        assert f"page {number} has no text: scanned?" in document.warnings


def test_traditional_chinese_constitution() -> None:
    path = PDF_DIR / "zh-TW_roc-constitution.pdf"
    if not path.exists():
        pytest.skip(f"{path} not found")
    (document,) = parse_file(path)
    assert document.title == "中華民國憲法"
    assert "中華民國" in document.pages[0].text
    assert "中華民國基於三民主義，為民有民治民享之民主共和國。" in document.full_text
    assert document.warnings == []


def test_chemistry_notation_has_no_radicals_left() -> None:
    path = PDF_DIR / "zh-CN_chemistry-notation_1p.pdf"
    if not path.exists():
        pytest.skip(f"{path} not found")
    (document,) = parse_file(path)
    text = document.full_text
    assert not [ch for ch in text if 0x2E80 <= ord(ch) <= 0x2FDF], "CJK radical code points left"
    assert "常用符号" in text and "方程式" in text


def test_scanned_pdfs_name_pages_that_need_ocr() -> None:
    paths = [PDF_DIR / name for name in sorted(SCANNED) if (PDF_DIR / name).exists()]
    if not paths:
        pytest.skip("scanned PDFs not found")
    for path in paths:
        with pytest.raises(NoTextLayer) as caught:
            parse_file(path, ocr=False)
        assert f"{path.name} has no text layer on page 1" in caught.value.message


@pytest.mark.slow
@pytest.mark.skipif(not HAS_OCR, reason="Tesseract (with eng) is not installed")
@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("en_scanned_huckfinn-c02-22.pdf", ["tip-toeing", "garden"]),
        ("en_scanned_docling-ocr_test.pdf", ["Docling", "Markdown"]),
    ],
)
def test_scanned_pdfs_are_ocrd_when_tesseract_exists(name: str, words: list[str]) -> None:
    path = PDF_DIR / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    (document,) = parse_file(path)
    assert "page 1 was OCR'd" in document.warnings
    for word in words:
        assert word in document.pages[0].text


@pytest.mark.slow
@pytest.mark.skipif(not HAS_OCR, reason="Tesseract (with eng) is not installed")
def test_jbig2_scan_is_ocrd_or_explains_why_not() -> None:
    """Its scan is JBIG2-compressed: pypdf needs the jbig2dec program to decode it for OCR."""
    path = PDF_DIR / "en_scanned_linn-sequencer_2col.pdf"
    if not path.exists():
        pytest.skip(f"{path} not found")
    try:
        (document,) = parse_file(path)
    except NoTextLayer as err:
        assert shutil.which("jbig2dec") is None
        assert "jbig2dec" in err.message
        return
    assert "page 1 was OCR'd" in document.warnings
